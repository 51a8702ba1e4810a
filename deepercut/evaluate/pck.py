"""Detector accuracy before grouping: per-part PCK of the best candidate of each true person.

Each candidate of part ``p`` belongs to the ground-truth person whose joint ``p`` is nearest to
it, if it lies within ``search · h`` of that joint (``h`` = the person's height). A person's
prediction for part ``p`` is their best-scoring candidate of that part (the peak the solver would
most likely keep for them); it is correct when it lies within ``threshold · h`` of the joint. A
joint with no candidate of its own counts as missed. This isolates the detector from the solver:
it measures how well the candidates cover the people.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepercut.types import Candidates


@dataclass
class PCKResult:
    """PCK per part and its mean over parts; ``counts`` = evaluated joints per part."""

    per_part: np.ndarray
    counts: np.ndarray
    mean: float
    threshold: float

    def table(self, part_names: tuple[str, ...]) -> str:
        rows = [f"{'part':<16}{'PCK':>8}{'joints':>9}"]
        for name, value, count in zip(part_names, self.per_part, self.counts, strict=True):
            rows.append(f"{name:<16}{value:>8.3f}{int(count):>9d}")
        rows.append(f"{'mean':<16}{self.mean:>8.3f}{int(self.counts.sum()):>9d}")
        return "\n".join(rows)


def auc_table(
    metric: str,
    result: PCKResult,
    auc_per_part: np.ndarray,
    auc: float,
    part_names: tuple[str, ...],
) -> str:
    """Per-part ``metric`` (e.g. ``PCKh``) at ``result``'s threshold, AUC and joints, and
    their means: the table of a PCK curve."""
    t = result.threshold
    rows = [f"{'part':<16}{f'{metric}@{t:g}':>10}{'AUC':>8}{'joints':>9}"]
    for name, value, area, count in zip(
        part_names, result.per_part, auc_per_part, result.counts, strict=True
    ):
        rows.append(f"{name:<16}{value:>10.3f}{area:>8.3f}{int(count):>9d}")
    total = int(result.counts.sum())
    rows.append(f"{'mean':<16}{result.mean:>10.3f}{auc:>8.3f}{total:>9d}")
    return "\n".join(rows)


def best_candidate_hits(
    candidates: Candidates,
    keypoints: np.ndarray,
    visible: np.ndarray,
    heights: np.ndarray,
    threshold: float = 0.2,
    search: float = 0.5,
) -> np.ndarray:
    """[M, P] bool: each person's best candidate of a part lies within ``threshold · height``."""
    m, p = visible.shape
    hits = np.zeros((m, p), bool)
    n = len(candidates)
    if n == 0 or m == 0:
        return hits
    # [M, N] distance from each person's joint of the candidate's part to the candidate.
    dist = np.linalg.norm(keypoints[:, candidates.part, :] - candidates.xy[None], axis=-1)
    dist = np.where(np.isfinite(dist), dist, np.inf)
    owner = dist.argmin(0)  # [N] nearest person
    cols = np.arange(n)
    owned = dist[owner, cols] <= search * heights[owner]
    for person in range(m):
        for part in range(p):
            mine = np.flatnonzero(owned & (owner == person) & (candidates.part == part))
            if len(mine):
                best = mine[np.argmax(candidates.score[mine])]
                hits[person, part] = dist[person, best] <= threshold * heights[person]
    return hits


def accumulate_pck(
    hits: list[np.ndarray], visible: list[np.ndarray], threshold: float
) -> PCKResult:
    """Combine per-image hit masks (only visible joints count)."""
    num_parts = visible[0].shape[1] if visible else 0
    correct = np.zeros(num_parts)
    counts = np.zeros(num_parts)
    for hit, vis in zip(hits, visible, strict=True):
        correct += (hit & vis).sum(0)
        counts += vis.sum(0)
    per_part = correct / np.maximum(counts, 1)
    # The mean over parts (as PCK tables report it), over parts that occur at all.
    mean = float(per_part[counts > 0].mean()) if counts.any() else 0.0
    return PCKResult(per_part, counts, mean, threshold)


# ----------------------------------------------------------------- poses against ground truth
#
# The pose metrics below (PCK, PCKh, multi-person AP, PCP) share one convention: predictions of
# an image are float [M', P, 3] (x, y, score; NaN where a part is absent) and ground truth is
# float [M, P, 3] (x, y, visibility: 0 not labelled, 1 labelled occluded, 2 labelled visible,
# as in COCO), with a reference length per ground-truth person (head size for PCKh, torso size
# for LSP's PCK).


def check_poses(pred: np.ndarray, gt: np.ndarray, ref_length: np.ndarray) -> None:
    """Raise ``ValueError`` unless the arrays follow the convention above."""
    if pred.ndim != 3 or pred.shape[2] != 3 or gt.ndim != 3 or gt.shape[2] != 3:
        raise ValueError(f"expected pred [M', P, 3] and gt [M, P, 3], got {pred.shape}, {gt.shape}")
    if pred.shape[1] != gt.shape[1]:
        raise ValueError(f"pred has {pred.shape[1]} parts, gt {gt.shape[1]}")
    if ref_length.shape != (gt.shape[0],):
        raise ValueError(f"need one reference length per gt person, got {ref_length.shape}")


def joint_distances(pred: np.ndarray, gt: np.ndarray, ref_length: np.ndarray) -> np.ndarray:
    """[M', M, P] distance of predicted person i's joint to gt person j's, in units of j's
    reference length: ``inf`` where the prediction lacks the part, NaN where the gt joint is not
    labelled (those never count)."""
    check_poses(pred, gt, ref_length)
    diff = pred[:, None, :, :2].astype(np.float64) - gt[None, :, :, :2]
    with np.errstate(invalid="ignore", divide="ignore"):
        dist = np.linalg.norm(diff, axis=-1) / ref_length[None, :, None]
    dist[np.isnan(dist)] = np.inf
    dist[:, gt[:, :, 2] <= 0] = np.nan
    return dist


def assign_people(dist: np.ndarray, threshold: float) -> np.ndarray:
    """Predicted person of each gt person (−1: none), by DeepCut's ``evaluateAP`` rule.

    ``dist`` is :func:`joint_distances`' [M', M, P]. The score of a pair is the fraction of the
    gt person's labelled joints the prediction places within ``threshold``. Each prediction
    keeps only its best gt person (first on ties); each gt person then takes the prediction with
    the highest remaining score (first on ties), none when that score is 0. One-to-one.
    """
    m_pred, m_gt = dist.shape[:2]
    if m_pred == 0 or m_gt == 0:
        return np.full(m_gt, -1, np.int64)
    labelled = ~np.isnan(dist)
    with np.errstate(invalid="ignore"):
        hit = (dist <= threshold) & labelled
    score = hit.sum(2) / np.maximum(labelled[0].sum(1), 1)[None]
    best_gt = score.argmax(1)
    keep = np.zeros_like(score)
    rows = np.arange(m_pred)
    keep[rows, best_gt] = score[rows, best_gt]
    gt_to_pred = keep.argmax(0)
    gt_to_pred[keep.max(0) <= 0] = -1
    return gt_to_pred.astype(np.int64)


def assigned_distances(
    pred: np.ndarray, gt: np.ndarray, ref_length: np.ndarray, threshold: float
) -> np.ndarray:
    """[M, P] normalised distance of each gt joint to its assigned prediction (``inf`` when the
    gt person has no prediction or it lacks the part; NaN where the joint is not labelled)."""
    dist = joint_distances(pred, gt, ref_length)
    owner = assign_people(dist, threshold)
    out = np.full(gt.shape[:2], np.inf)
    matched = owner >= 0
    out[matched] = dist[owner[matched], np.flatnonzero(matched)]
    out[gt[:, :, 2] <= 0] = np.nan
    return out


def pck_from_distances(dist: np.ndarray, threshold: float) -> PCKResult:
    """PCK from [N, P] normalised distances (NaN = not labelled, ``inf`` = missed)."""
    labelled = ~np.isnan(dist)
    counts = labelled.sum(0).astype(np.float64)
    with np.errstate(invalid="ignore"):
        correct = ((dist <= threshold) & labelled).sum(0)
    per_part = correct / np.maximum(counts, 1)
    mean = float(per_part[counts > 0].mean()) if counts.any() else 0.0
    return PCKResult(per_part, counts, mean, threshold)


def torso_size(gt: np.ndarray, skeleton_parts: tuple[str, ...]) -> np.ndarray:
    """[M] LSP's PCK reference: the distance from the left shoulder to the right hip (NaN when
    either is not labelled)."""
    a, b = skeleton_parts.index("left_shoulder"), skeleton_parts.index("right_hip")
    size = np.linalg.norm(gt[:, a, :2] - gt[:, b, :2], axis=-1).astype(np.float64)
    size[(gt[:, a, 2] <= 0) | (gt[:, b, 2] <= 0)] = np.nan
    return size


def person_pck(
    preds: list[np.ndarray],
    gts: list[np.ndarray],
    ref_lengths: list[np.ndarray],
    threshold: float = 0.2,
) -> PCKResult:
    """Person-centric PCK (LSP: ``ref_lengths`` = :func:`torso_size`, threshold 0.2) of
    multi-person predictions: each gt person is scored against the prediction assigned to it
    by :func:`assign_people` at ``threshold``; gt people whose reference length is not finite
    are skipped."""
    rows = []
    for pred, gt, ref in zip(preds, gts, ref_lengths, strict=True):
        ok = np.isfinite(ref) & (ref > 0)
        rows.append(assigned_distances(pred, gt[ok], ref[ok], threshold))
    p = gts[0].shape[1] if gts else 0
    return pck_from_distances(np.concatenate(rows) if rows else np.zeros((0, p)), threshold)
