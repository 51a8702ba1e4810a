"""LSP's single-person protocol: person-centric PCK@0.2 of the torso size, per part, and its AUC.

LSP images are crops centred on one annotated person, so the prediction is one pose per image:
each part's best-scoring cell of the detector, refined by its offset (the single-person
read-out DeeperCut reports on LSP), not one of the fragments a multi-person solver may cut the
person into. Images run at a fixed ``scale`` of their own size (padded to a multiple of 16)
instead of being letterboxed into the model's input: LSP people are about 150 px tall in
images of 100-400 px, and letterboxing those into 480×640 would blow them up two to five
times, far outside the sizes the detector was trained for. Joints that are not labelled (LSP
extended's flag 0: outside the image) do not count; people without both the left shoulder and
the right hip labelled (no torso size) are skipped. The AUC is the area under the PCK curve
over thresholds 0 … 0.2 (step 0.01, trapezoid rule), normalised to [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deepercut.detection import NetworkDetector
from deepercut.evaluate.pck import (
    PCKResult,
    assigned_distances,
    auc_table,
    pck_from_distances,
    torso_size,
)
from deepercut.evaluate.pckh import normalised_auc

#: Thresholds (× torso size) of the PCK curve whose area is the AUC.
LSP_THRESHOLDS = np.round(np.arange(21) * 0.01, 2)


@dataclass
class PCKCurve:
    """PCK at one threshold, the PCK curve and its normalised area (as :class:`PCKhResult`)."""

    pck: PCKResult
    thresholds: np.ndarray
    curve: np.ndarray
    auc_per_part: np.ndarray
    auc: float
    people: int

    def table(self, part_names: tuple[str, ...]) -> str:
        """Per-part PCK and AUC."""
        return auc_table("PCK", self.pck, self.auc_per_part, self.auc, part_names)

    def to_dict(self, part_names: tuple[str, ...]) -> dict[str, object]:
        """JSON-ready summary."""
        return {
            f"PCK@{self.pck.threshold:g}_torso": round(self.pck.mean, 4),
            "AUC": round(self.auc, 4),
            "pck_per_part": dict(zip(part_names, self.pck.per_part.round(4).tolist(), strict=True)),
            "auc_per_part": dict(zip(part_names, self.auc_per_part.round(4).tolist(), strict=True)),
            "joints": int(self.pck.counts.sum()),
            "people": self.people,
        }


def lsp_pck(
    preds: Sequence[np.ndarray],
    gts: Sequence[np.ndarray],
    parts: tuple[str, ...],
    threshold: float = 0.2,
    thresholds: np.ndarray = LSP_THRESHOLDS,
) -> PCKCurve:
    """Person-centric PCK@``threshold`` of the torso size and its AUC over ``thresholds``.

    ``preds`` per image [M', P, 3] (NaN where a part is absent), ``gts`` per image [M, P, 3]
    (visibility 0 = not labelled). Each gt person is scored against the prediction assigned to
    it (:func:`~deepercut.evaluate.pck.assign_people` at ``threshold``): with the single-person
    read-out, the image's one pose.
    """
    rows = []
    for pred, gt in zip(preds, gts, strict=True):
        torso = torso_size(gt, parts)
        ok = np.isfinite(torso) & (torso > 0)
        rows.append(assigned_distances(pred, gt[ok], torso[ok], threshold))
    dist = np.concatenate(rows) if rows else np.zeros((0, len(parts)))
    at = pck_from_distances(dist, threshold)
    curve = np.stack([pck_from_distances(dist, float(t)).per_part for t in thresholds])
    present = at.counts > 0
    auc_per_part = normalised_auc(thresholds, curve)
    auc = float(normalised_auc(thresholds, curve[:, present].mean(1))) if present.any() else 0.0
    return PCKCurve(at, thresholds, curve, auc_per_part, auc, len(dist))


def scaled_input_hw(image_hw: tuple[int, int], scale: float) -> tuple[int, int]:
    """The network input for an image run at ``scale`` × its size: rounded up to 16."""
    h, w = image_hw
    return (16 * max(1, math.ceil(h * scale / 16)), 16 * max(1, math.ceil(w * scale / 16)))


def predict_single_person(
    detector: NetworkDetector, images: Sequence[np.ndarray], scale: float
) -> list[np.ndarray]:
    """Per image, float32 [1, P, 3]: each part's best cell (refined), in image pixels, with the
    image run at ``scale`` × its own size (``detector`` :meth:`~NetworkDetector.resized`: a
    backend of any input size)."""
    out = []
    for image in images:
        out += detector.resized(scaled_input_hw(image.shape[:2], scale)).best_per_part([image])
    return out
