"""PCKh (MPII single person): a joint is correct within ``threshold × head size`` of the truth.

The head size is MPII's: 0.6 × the diagonal of the annotated head box (:func:`head_size`).
PCKh@0.5 is the standard number; the AUC is the area under the PCKh curve over thresholds
0 … 0.5 (step 0.01, trapezoid rule), normalised to [0, 1], as MPII's evaluation reports it.

The model here is multi-person, so each ground-truth person is first given the predicted person
assigned to it by DeepCut's rule (:func:`deepercut.evaluate.pck.assign_people` at PCKh 0.5);
a person left without one misses all their joints. Only labelled joints (visibility > 0) count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepercut.evaluate.pck import PCKResult, assigned_distances, auc_table, pck_from_distances

#: MPII's head size is this factor times the head box diagonal.
MPII_HEAD_FACTOR = 0.6
#: Thresholds of the PCKh curve whose area is the AUC.
AUC_THRESHOLDS = np.round(np.arange(51) * 0.01, 2)


def head_size(head_box: np.ndarray) -> np.ndarray:
    """[M] MPII head size from head boxes [M, 4] given as (x1, y1, x2, y2)."""
    box = np.asarray(head_box, np.float64).reshape(-1, 4)
    return MPII_HEAD_FACTOR * np.hypot(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1])


@dataclass
class PCKhResult:
    """PCKh at one threshold, the PCKh curve and its area.

    Attributes:
        pckh: per-part PCKh at ``threshold`` (0.5), its mean and joint counts.
        thresholds: [T] the curve's thresholds.
        curve: [T, P] PCKh per threshold and part.
        auc_per_part: [P] normalised area under each part's curve.
        auc: normalised area under the mean curve (mean over parts with joints).
    """

    pckh: PCKResult
    thresholds: np.ndarray
    curve: np.ndarray
    auc_per_part: np.ndarray
    auc: float

    def table(self, part_names: tuple[str, ...]) -> str:
        """Per-part PCKh and AUC."""
        return auc_table("PCKh", self.pckh, self.auc_per_part, self.auc, part_names)


def normalised_auc(thresholds: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Area under ``values`` [T, ...] over ``thresholds`` [T] divided by the threshold span."""
    span = float(thresholds[-1] - thresholds[0])
    if span <= 0:
        raise ValueError("thresholds must increase")
    widths = np.diff(thresholds)[:, None] if values.ndim > 1 else np.diff(thresholds)
    return ((values[1:] + values[:-1]) * 0.5 * widths).sum(0) / span


def pckh(
    preds: list[np.ndarray],
    gts: list[np.ndarray],
    head_sizes: list[np.ndarray],
    threshold: float = 0.5,
    thresholds: np.ndarray = AUC_THRESHOLDS,
) -> PCKhResult:
    """PCKh@``threshold`` and AUC over a set of images.

    Args:
        preds: per image, predictions [M', P, 3] (x, y, score; NaN where absent).
        gts: per image, ground truth [M, P, 3] (x, y, visibility).
        head_sizes: per image, [M] head sizes (see :func:`head_size`); people without a finite
            positive head size are skipped.
        threshold: the reported PCKh threshold; people are assigned at this threshold.
        thresholds: the curve's thresholds, increasing.
    """
    if not gts:
        raise ValueError("pckh needs at least one image")
    rows = []
    for pred, gt, size in zip(preds, gts, head_sizes, strict=True):
        size = np.asarray(size, np.float64)
        ok = np.isfinite(size) & (size > 0)
        rows.append(assigned_distances(pred, gt[ok], size[ok], threshold))
    dist = np.concatenate(rows)
    labelled = ~np.isnan(dist)
    counts = labelled.sum(0)
    with np.errstate(invalid="ignore"):
        hits = (dist[None] <= np.asarray(thresholds)[:, None, None]) & labelled[None]
    curve = hits.sum(1) / np.maximum(counts, 1)[None]
    present = counts > 0
    auc_per_part = normalised_auc(np.asarray(thresholds, np.float64), curve)
    mean_curve = curve[:, present].mean(1) if present.any() else np.zeros(len(thresholds))
    auc = float(normalised_auc(np.asarray(thresholds, np.float64), mean_curve))
    return PCKhResult(
        pck_from_distances(dist, threshold), np.asarray(thresholds), curve, auc_per_part, auc
    )
