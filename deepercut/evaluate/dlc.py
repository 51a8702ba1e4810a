"""DeepLabCut's pixel error: Euclidean distance between predicted and labelled keypoints.

DeepLabCut reports the mean distance (pixels) over labelled keypoints of the test (and train)
images, once over all predictions and once only over predictions whose likelihood reaches the
p-cutoff (0.4 by default). We report it per keypoint and over all keypoints, mean and median.

Predictions are ``[M', P, 3]`` arrays (x, y, likelihood; NaN where absent) per image. For single-
animal projects :func:`predict_best_per_part` gives DeepLabCut's own read-out (per part, the
best scoremap cell refined by its location offset); for multi-animal ones pass assembled poses:
predicted animals are matched to labelled ones by the Hungarian algorithm on mean distance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from deepercut.detection import NetworkDetector

#: DeepLabCut's default likelihood cut-off (``pcutoff`` in config.yaml).
DEFAULT_PCUTOFF = 0.4


def predict_best_per_part(
    detector: NetworkDetector, images: Sequence[np.ndarray], batch_size: int = 4
) -> list[np.ndarray]:
    """Per image, float32 [1, P, 3]: each part's best cell, refined, in image pixels
    (:meth:`NetworkDetector.best_per_part` in batches of ``batch_size``)."""
    out: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        out += detector.best_per_part(images[start : start + batch_size])
    return out


def match_animals(predicted: np.ndarray, truth: np.ndarray) -> list[tuple[int, int]]:
    """(truth index, predicted index) pairs minimising the summed mean keypoint distance.

    Args:
        predicted: [M', P, 3] (x, y, likelihood), NaN where absent.
        truth: [M, P, 3] (x, y, visibility); parts with visibility 0 are unlabelled.
    """
    m, mp = len(truth), len(predicted)
    if m == 0 or mp == 0:
        return []
    dist = np.linalg.norm(truth[:, None, :, :2] - predicted[None, :, :, :2], axis=-1)
    usable = (truth[:, None, :, 2] > 0) & np.isfinite(dist)  # [M, M', P]
    count = usable.sum(-1)
    mean = np.where(usable, dist, 0.0).sum(-1) / np.maximum(count, 1)
    cost = np.where(count > 0, mean, 1e12)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if count[r, c] > 0]


@dataclass
class PixelErrors:
    """Distances of matched labelled keypoints.

    Attributes:
        parts: part names.
        distance: float64 [K, P] per matched labelled animal (NaN where the part is unlabelled
            or not predicted).
        likelihood: float64 [K, P] the prediction's likelihood (NaN likewise).
        missed: labelled keypoints with no prediction (an unmatched animal or an absent part).
    """

    parts: tuple[str, ...]
    distance: np.ndarray
    likelihood: np.ndarray
    missed: int

    def summary(self, pcutoff: float | None = None) -> dict[str, dict[str, float]]:
        """Per part and ``"all"``: ``mean``, ``median`` (px) and ``n``; with ``pcutoff``, only
        predictions whose likelihood is at least ``pcutoff`` count."""
        keep = np.isfinite(self.distance)
        if pcutoff is not None:
            keep &= self.likelihood >= pcutoff
        out = {}
        columns = [(name, keep[:, p], self.distance[:, p]) for p, name in enumerate(self.parts)]
        columns.append(("all", keep, self.distance))
        for name, mask, values in columns:
            v = values[mask]
            out[name] = {
                "mean": float(v.mean()) if len(v) else float("nan"),
                "median": float(np.median(v)) if len(v) else float("nan"),
                "n": len(v),
            }
        return out

    def table(self, pcutoff: float = DEFAULT_PCUTOFF) -> str:
        """A text table: mean/median per part, without and with the cut-off."""
        plain, cut = self.summary(), self.summary(pcutoff)
        rows = [
            f"{'part':<14}{'mean':>8}{'median':>8}{'n':>5}   "
            f"{'mean':>8}{'median':>8}{'n':>5}  (p >= {pcutoff})"
        ]
        for name in (*self.parts, "all"):
            a, b = plain[name], cut[name]
            rows.append(
                f"{name:<14}{a['mean']:>8.2f}{a['median']:>8.2f}{a['n']:>5d}   "
                f"{b['mean']:>8.2f}{b['median']:>8.2f}{b['n']:>5d}"
            )
        return "\n".join(rows)

    def to_dict(self, pcutoff: float = DEFAULT_PCUTOFF) -> dict[str, Any]:
        return {
            "no_cutoff": self.summary(),
            "pcutoff": pcutoff,
            "with_cutoff": self.summary(pcutoff),
            "missed": self.missed,
        }


def pixel_errors(
    predictions: Sequence[np.ndarray], truths: Sequence[np.ndarray], parts: Sequence[str]
) -> PixelErrors:
    """Match predictions to labelled animals per image and measure every labelled keypoint.

    Args:
        predictions: per image [M', P, 3] (x, y, likelihood), NaN where absent.
        truths: per image [M, P, 3] (x, y, visibility), e.g. ``PoseRecord.keypoints``.
        parts: the ``P`` part names.
    """
    if len(predictions) != len(truths):
        raise ValueError(f"{len(predictions)} predictions for {len(truths)} images")
    p = len(parts)
    dist_rows, like_rows, missed = [], [], 0
    for pred, truth in zip(predictions, truths, strict=True):
        pred = np.asarray(pred, np.float64).reshape(-1, p, 3)
        truth = np.asarray(truth, np.float64).reshape(-1, p, 3)
        labelled = truth[..., 2] > 0
        matched = dict(match_animals(pred, truth))
        for t in range(len(truth)):
            d = np.full(p, np.nan)
            like = np.full(p, np.nan)
            if t in matched:
                q = pred[matched[t]]
                d = np.linalg.norm(q[:, :2] - truth[t, :, :2], axis=-1)
                like = q[:, 2].copy()
                d[~labelled[t]] = np.nan
                like[~np.isfinite(d)] = np.nan
            missed += int((labelled[t] & ~np.isfinite(d)).sum())
            dist_rows.append(d)
            like_rows.append(like)
    shape = (len(dist_rows), p)
    return PixelErrors(
        tuple(parts),
        np.array(dist_rows).reshape(shape),
        np.array(like_rows).reshape(shape),
        missed,
    )
