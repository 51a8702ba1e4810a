"""Multi-person average precision of body joints: the DeepCut / DeeperCut (MPII) protocol.

Per image, predicted people are assigned to ground-truth people one-to-one by PCKh
(:func:`deepercut.evaluate.pck.assign_people` at 0.5 of each ground-truth person's head size).
Then, per part, every predicted joint is a detection with the joint's score: a true positive
when its person is assigned to a ground-truth person whose labelled joint lies within the
threshold, a false positive otherwise (unassigned people's joints are all false positives).
Detections of all images are ranked by score; the part's AP is the area under the
interpolated precision/recall curve (the VOC rule: precision made monotone, summed over recall
steps), with recall over all labelled ground-truth joints of that part. mAP is the mean over
parts that have ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepercut.evaluate.pck import assign_people, joint_distances


@dataclass
class APResult:
    """Per-part AP, mAP and the precision/recall curves behind them.

    Attributes:
        per_part: [P] AP per part (NaN for parts without ground truth).
        counts: [P] labelled ground-truth joints per part.
        mean: mAP over parts with ground truth.
        threshold: the PCKh threshold.
        precision, recall: per part, the curve over the ranked detections.
    """

    per_part: np.ndarray
    counts: np.ndarray
    mean: float
    threshold: float
    precision: list[np.ndarray]
    recall: list[np.ndarray]

    def table(self, part_names: tuple[str, ...]) -> str:
        rows = [f"{'part':<16}{'AP':>8}{'joints':>9}"]
        for name, value, count in zip(part_names, self.per_part, self.counts, strict=True):
            rows.append(f"{name:<16}{value:>8.3f}{int(count):>9d}")
        rows.append(f"{'mAP':<16}{self.mean:>8.3f}{int(self.counts.sum()):>9d}")
        return "\n".join(rows)


def image_detections(
    pred: np.ndarray,
    gt: np.ndarray,
    head_size: np.ndarray,
    threshold: float = 0.5,
    ignore: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One image's detections: (part [D], score [D], true positive [D], gt joints per part [P]).

    ``pred`` [M', P, 3] (x, y, score; NaN absent), ``gt`` [M, P, 3] (x, y, visibility),
    ``head_size`` [M]. ``ignore`` [M] marks gt people who are not scored (like MPII's ignore
    regions): their joints are not counted and the predicted people assigned to them are
    dropped, neither right nor wrong.
    """
    head_size = np.asarray(head_size, np.float64)
    ignore = np.zeros(len(gt), bool) if ignore is None else np.asarray(ignore, bool)
    if ignore.shape != (len(gt),):
        raise ValueError(f"ignore must be [M] = [{len(gt)}], got {ignore.shape}")
    dist = joint_distances(pred, gt, head_size)
    owner = assign_people(dist, threshold)
    with np.errstate(invalid="ignore"):
        hit = dist <= threshold  # NaN (unlabelled) compares False
    true_pos = np.zeros(pred.shape[:2], bool)
    dropped = np.zeros(len(pred), bool)
    for g, i in enumerate(owner):
        if i >= 0:
            true_pos[i] = hit[i, g]
            dropped[i] = ignore[g]
    present = np.isfinite(pred[:, :, 0]) & np.isfinite(pred[:, :, 1]) & ~dropped[:, None]
    person, part = np.nonzero(present)
    score = pred[person, part, 2].astype(np.float64)
    gt_joints = (gt[~ignore, :, 2] > 0).sum(0)
    return part, score, true_pos[person, part], gt_joints


def precision_recall(
    score: np.ndarray, true_pos: np.ndarray, positives: int
) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each detection, ranked by descending score (stable)."""
    order = np.argsort(-score, kind="stable")
    tp = np.cumsum(true_pos[order])
    precision = tp / np.arange(1, len(order) + 1)
    recall = tp / max(positives, 1)
    return precision, recall


def voc_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the precision/recall curve with precision made non-increasing in recall."""
    rec = np.concatenate([[0.0], recall, [1.0]])
    prec = np.concatenate([[0.0], precision, [0.0]])
    prec = np.maximum.accumulate(prec[::-1])[::-1]
    step = np.flatnonzero(rec[1:] != rec[:-1]) + 1
    return float(((rec[step] - rec[step - 1]) * prec[step]).sum())


def multi_person_ap(
    preds: list[np.ndarray],
    gts: list[np.ndarray],
    head_sizes: list[np.ndarray],
    threshold: float = 0.5,
    ignore: list[np.ndarray] | None = None,
) -> APResult:
    """Per-part AP and mAP over a set of images (see the module docstring).

    Args:
        preds: per image, predicted people [M', P, 3] (x, y, score; NaN where absent).
        gts: per image, ground-truth people [M, P, 3] (x, y, visibility).
        head_sizes: per image, [M] head size of each ground-truth person.
        threshold: PCKh threshold (fraction of the head size).
        ignore: per image, [M] bool: gt people not scored (see :func:`image_detections`).
    """
    if not gts:
        raise ValueError("multi_person_ap needs at least one image")
    num_parts = gts[0].shape[1]
    parts, scores, labels = [], [], []
    counts = np.zeros(num_parts, np.int64)
    ignores = ignore if ignore is not None else [None] * len(gts)
    for pred, gt, size, skip in zip(preds, gts, head_sizes, ignores, strict=True):
        part, score, tp, n_gt = image_detections(pred, gt, size, threshold, skip)
        parts.append(part)
        scores.append(score)
        labels.append(tp)
        counts += n_gt
    part, score, tp = np.concatenate(parts), np.concatenate(scores), np.concatenate(labels)
    per_part = np.full(num_parts, np.nan)
    precisions, recalls = [], []
    for p in range(num_parts):
        mine = part == p
        precision, recall = precision_recall(score[mine], tp[mine], int(counts[p]))
        precisions.append(precision)
        recalls.append(recall)
        if counts[p] > 0:
            per_part[p] = voc_ap(precision, recall)
    has_gt = counts > 0
    mean = float(per_part[has_gt].mean()) if has_gt.any() else 0.0
    return APResult(per_part, counts, mean, threshold, precisions, recalls)
