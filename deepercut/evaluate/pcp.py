"""PCP per limb, mPCP and AOP (the multi-person upper-body protocol of WAF, as DeepCut reports).

What is implemented (WAF's original code is MATLAB with its own matching; this follows its
definitions on our pose arrays):

- **Limbs** are sticks between two endpoints; an endpoint is a part or the midpoint of two parts
  (the torso runs from the shoulders' midpoint to the hips' midpoint). :data:`LIMBS` lists them
  by name; limbs whose parts the skeleton lacks are skipped.
- **Matching.** Predicted people are assigned to ground-truth people one-to-one by DeepCut's
  rule (:func:`deepercut.evaluate.pck.assign_people`, joints within ``0.5 × ref_length``).
- **PCP** (strict): a ground-truth limb, both endpoints labelled, is correct when both
  predicted endpoints of the assigned person lie within ``0.5 × the true limb length`` of their
  true positions. A person without a prediction misses all their limbs. PCP per limb type
  pools left and right; **mPCP** is the mean over limb types.
- **AOP** (accuracy of occlusion prediction): for each labelled ground-truth limb, the truth is
  "occluded" when an endpoint is labelled occluded (visibility 1) and the prediction is
  "occluded" when the assigned person lacks an endpoint (or no person is assigned); AOP is the
  fraction of limbs where the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepercut.evaluate.pck import assign_people, joint_distances, torso_size

#: (limb type, endpoint a, endpoint b); an endpoint is a part name or a "+"-joined pair whose
#: midpoint is used.
LIMBS: tuple[tuple[str, str, str], ...] = (
    ("head", "neck", "head_top"),
    ("torso", "left_shoulder+right_shoulder", "left_hip+right_hip"),
    ("upper_arm", "right_shoulder", "right_elbow"),
    ("upper_arm", "left_shoulder", "left_elbow"),
    ("lower_arm", "right_elbow", "right_wrist"),
    ("lower_arm", "left_elbow", "left_wrist"),
    ("upper_leg", "right_hip", "right_knee"),
    ("upper_leg", "left_hip", "left_knee"),
    ("lower_leg", "right_knee", "right_ankle"),
    ("lower_leg", "left_knee", "left_ankle"),
)
#: WAF evaluates the upper body only.
UPPER_BODY = ("head", "torso", "upper_arm", "lower_arm")


@dataclass
class PCPResult:
    """PCP per limb type, mPCP, AOP and the limb counts behind them."""

    limb_types: tuple[str, ...]
    per_limb: np.ndarray
    counts: np.ndarray
    mean: float
    aop: float
    threshold: float

    def table(self) -> str:
        rows = [f"{'limb':<16}{'PCP':>8}{'limbs':>9}"]
        for name, value, count in zip(self.limb_types, self.per_limb, self.counts, strict=True):
            rows.append(f"{name:<16}{value:>8.3f}{int(count):>9d}")
        rows.append(f"{'mPCP':<16}{self.mean:>8.3f}{int(self.counts.sum()):>9d}")
        rows.append(f"{'AOP':<16}{self.aop:>8.3f}")
        return "\n".join(rows)


def _endpoint(points: np.ndarray, spec: str, parts: tuple[str, ...]) -> np.ndarray:
    """[M, 3] an endpoint's (x, y, v): a part, or the midpoint of two (v = their minimum)."""
    idx = [parts.index(name) for name in spec.split("+")]
    xy = points[:, idx, :2].mean(1)
    v = points[:, idx, 2].min(1)
    return np.concatenate([xy, v[:, None]], axis=1)


def _limbs(parts: tuple[str, ...], limb_types: tuple[str, ...]) -> list[tuple[str, str, str]]:
    known = set(parts)
    return [
        limb
        for limb in LIMBS
        if limb[0] in limb_types and all(n in known for e in limb[1:] for n in e.split("+"))
    ]


def pcp(
    preds: list[np.ndarray],
    gts: list[np.ndarray],
    ref_lengths: list[np.ndarray],
    parts: tuple[str, ...],
    limb_types: tuple[str, ...] = UPPER_BODY,
    threshold: float = 0.5,
    match_threshold: float = 0.5,
) -> PCPResult:
    """PCP per limb type, mPCP and AOP over a set of images (see the module docstring).

    Args:
        preds: per image, predicted people [M', P, 3] (x, y, score; NaN where absent).
        gts: per image, ground-truth people [M, P, 3] (x, y, visibility).
        ref_lengths: per image, [M] the reference length used to match people (head size).
        parts: the skeleton's part names (to find the limbs' endpoints).
        limb_types: which limb types to score (default: WAF's upper body).
        threshold: PCP's fraction of the limb length.
        match_threshold: the matching's fraction of ``ref_lengths``.
    """
    limbs = _limbs(parts, limb_types)
    types = tuple(t for t in limb_types if any(limb[0] == t for limb in limbs))
    if not types:
        raise ValueError(f"the skeleton {parts} has none of the limbs {limb_types}")
    correct = np.zeros(len(types))
    counts = np.zeros(len(types))
    agree = total = 0
    for pred, gt, ref in zip(preds, gts, ref_lengths, strict=True):
        dist = joint_distances(pred, gt, np.asarray(ref, np.float64))
        owner = assign_people(dist, match_threshold)
        assigned = np.full(gt.shape, np.nan)
        assigned[owner >= 0] = pred[owner[owner >= 0]]
        for limb_type, a, b in limbs:
            k = types.index(limb_type)
            ga, gb = _endpoint(gt, a, parts), _endpoint(gt, b, parts)
            pa, pb = _endpoint(assigned, a, parts), _endpoint(assigned, b, parts)
            labelled = (ga[:, 2] > 0) & (gb[:, 2] > 0)
            length = np.linalg.norm(ga[:, :2] - gb[:, :2], axis=1)
            with np.errstate(invalid="ignore"):
                ok = (np.linalg.norm(pa[:, :2] - ga[:, :2], axis=1) <= threshold * length) & (
                    np.linalg.norm(pb[:, :2] - gb[:, :2], axis=1) <= threshold * length
                )
            correct[k] += (ok & labelled).sum()
            counts[k] += labelled.sum()
            true_occluded = (ga[:, 2] == 1) | (gb[:, 2] == 1)
            pred_occluded = ~(np.isfinite(pa[:, 0]) & np.isfinite(pb[:, 0]))
            agree += ((true_occluded == pred_occluded) & labelled).sum()
            total += labelled.sum()
    per_limb = correct / np.maximum(counts, 1)
    mean = float(per_limb[counts > 0].mean()) if counts.any() else 0.0
    aop = float(agree / total) if total else 0.0
    return PCPResult(types, per_limb, counts, mean, aop, threshold)


#: Every limb type, as the LSP/person-centric protocol scores them.
ALL_LIMBS = ("head", "torso", "upper_arm", "lower_arm", "upper_leg", "lower_leg")


def torso_pcp(
    preds: list[np.ndarray], gts: list[np.ndarray], parts: tuple[str, ...]
) -> PCPResult | None:
    """PCP of all limbs with people matched at 0.2 of the torso size (gt people without a
    torso are left out); ``None`` for a skeleton without these limbs."""
    torsos = [torso_size(g, parts) for g in gts]
    ok = [np.isfinite(t) & (t > 0) for t in torsos]
    try:
        return pcp(
            preds,
            [g[k] for g, k in zip(gts, ok, strict=True)],
            [t[k] for t, k in zip(torsos, ok, strict=True)],
            parts,
            limb_types=ALL_LIMBS,
            match_threshold=0.2,
        )
    except ValueError:  # a skeleton without these limbs
        return None
