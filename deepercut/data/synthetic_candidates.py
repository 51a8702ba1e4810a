"""Simulated part-detector output from ground truth, and matching real detections to it.

:func:`candidates_from_truth` turns ground-truth people into the :class:`Candidates` a DeeperCut
detector would emit — jittered joints, regressed offsets, misses, near-duplicates that NMS left
behind, part confusions and false positives on limbs and in the background — together with the
person each candidate lies on. It feeds the pairwise model's fit and solver benchmarks without a
CNN. :func:`assign_candidates_to_truth` gives real detector candidates the same ``owner`` labels.

Conventions: ``keypoints`` [M, P, 2] in image pixels (x, y), NaN allowed where a joint is
unknown; ``visible`` [M, P] bool; ``heights`` [M] person heights in pixels (all noise levels are
fractions of the owner's height, since detector errors scale with the person).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from deepercut.skeleton import MPII14, Skeleton
from deepercut.types import Candidates

# Score distributions (Beta parameters): true detections are confident but spread out, false
# positives and confusions lower with overlapping tails, so a score threshold alone can't
# separate them — the pairwise terms have to.
_TRUE_SCORE = (6.0, 1.5)  # mean 0.80
_CONFUSED_SCORE = (2.0, 3.0)  # mean 0.40
_FALSE_SCORE = (1.5, 4.0)  # mean 0.27
_SCORE_EPS = 1e-3


def candidates_from_truth(
    rng: np.random.Generator,
    keypoints: np.ndarray,
    visible: np.ndarray,
    heights: np.ndarray,
    image_hw: tuple[int, int],
    *,
    jitter: float = 0.03,
    offset_noise: float = 0.08,
    miss_rate: float = 0.05,
    false_positives: tuple[int, int] | float = (1, 8),
    fp_near_people: float = 0.5,
    duplicate_rate: float = 0.05,
    confusion_rate: float = 0.03,
    skeleton: Skeleton = MPII14,
) -> tuple[Candidates, np.ndarray]:
    """Simulate a part detector's candidates for one image of ground-truth people.

    Args:
        rng: the random source (the output is a deterministic function of its state).
        keypoints: float [M, P, 2] true joint locations (x, y) in pixels; NaN = unknown.
        visible: bool [M, P] joints the detector can see; only these get true detections.
        heights: float [M] person heights in pixels.
        image_hw: (height, width) of the image; detections outside it are dropped.
        jitter: std of the detection position error, as a fraction of the owner's height.
        offset_noise: std (per coordinate) of the regressed-offset error, as a fraction of the
            owner's height.
        miss_rate: probability that a visible joint gets no detection.
        false_positives: ``(lo, hi)`` = uniform integer count per image (inclusive), or a float
            = expected count per person (Poisson), so clutter grows with the crowd.
        fp_near_people: fraction of false positives placed on a person's limb (between two
            skeleton-adjacent joints) rather than anywhere in the background.
        duplicate_rate: probability that a true detection gets a near-duplicate (shifted by
            4–10 % of the height, lower score), as NMS leaves behind.
        confusion_rate: probability that a true joint also fires the channel of a confusable
            part (the mirror part, or a skeleton neighbour) at the same place.
        skeleton: the part set; ``keypoints.shape[1]`` must equal its number of parts.

    Returns:
        ``(candidates, owner)``. Candidates are ordered by part, then by descending score (like
        per-channel NMS output). ``owner`` int64 [N] is the index of the person a candidate lies
        on, −1 for false positives. Duplicates and confusions keep their person's index: they
        *are* on that person, and their regressed offsets point at its joints, but a pose keeps
        one candidate per part, so a solver should merge or drop them.

    Offsets: a candidate on person ``m`` regresses ``keypoints[m, q] − xy`` plus noise for every
    part ``q`` (an unknown joint is replaced by the person's centroid of known joints, a
    plausible guess for an occluded part). Limb false positives regress toward that person with
    doubled noise; background ones copy a random person's pose anchored at the candidate, scaled
    by 0.6–1.5 and rotated up to ±0.3 rad (random vectors when the image has nobody). The
    candidate's own-part offset is exactly zero.
    """
    keypoints = np.asarray(keypoints, np.float64)
    visible = np.asarray(visible, bool)
    heights = np.asarray(heights, np.float64)
    num_people, num_parts = keypoints.shape[:2]
    if keypoints.shape != (num_people, num_parts, 2) or num_parts != skeleton.num_parts:
        raise ValueError(f"keypoints must be [M, {skeleton.num_parts}, 2], got {keypoints.shape}")
    if visible.shape != (num_people, num_parts) or heights.shape != (num_people,):
        raise ValueError(
            f"visible {visible.shape} / heights {heights.shape} don't match keypoints "
            f"{keypoints.shape}"
        )
    img_h, img_w = image_hw
    joints = _fill_missing(keypoints)
    known = np.isfinite(keypoints).all(-1)
    # People with no known joint can't produce detections or templates.
    has_pose = known.any(1)
    detectable = visible & known & has_pose[:, None]

    xy_parts: list[np.ndarray] = []
    part_parts: list[np.ndarray] = []
    score_parts: list[np.ndarray] = []
    off_parts: list[np.ndarray] = []
    owner_parts: list[np.ndarray] = []

    def emit(
        xy: np.ndarray, part: np.ndarray, score: np.ndarray, offsets: np.ndarray, owner: np.ndarray
    ) -> None:
        xy_parts.append(xy)
        part_parts.append(part)
        score_parts.append(score)
        off_parts.append(offsets)
        owner_parts.append(owner)

    def person_offsets(xy: np.ndarray, person: np.ndarray, noise: float) -> np.ndarray:
        """Regressed vectors from each ``xy`` to every joint of its person, ``noise`` × the
        usual regression error."""
        true = joints[person] - xy[:, None, :]
        sigma = noise * offset_noise * heights[person]
        return true + rng.normal(size=true.shape) * sigma[:, None, None]

    # True detections.
    m_idx, p_idx = np.nonzero(detectable & (rng.random(detectable.shape) >= miss_rate))
    h = heights[m_idx]
    xy = joints[m_idx, p_idx] + rng.normal(size=(len(m_idx), 2)) * (jitter * h)[:, None]
    score = rng.beta(*_TRUE_SCORE, size=len(m_idx))
    emit(xy, p_idx, score, person_offsets(xy, m_idx, 1.0), m_idx)

    # Near-duplicates of true detections: shifted just past an NMS radius, weaker.
    dup = rng.random(len(m_idx)) < duplicate_rate
    if dup.any():
        angle = rng.uniform(0, 2 * np.pi, dup.sum())
        dist = rng.uniform(0.04, 0.10, dup.sum()) * h[dup]
        dxy = xy[dup] + dist[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
        dscore = score[dup] * rng.uniform(0.3, 0.8, dup.sum())
        emit(dxy, p_idx[dup], dscore, person_offsets(dxy, m_idx[dup], 1.0), m_idx[dup])

    # Confusions: the joint also fires a confusable part's channel.
    confusable = _confusable_parts(skeleton)
    conf = np.flatnonzero(rng.random(len(m_idx)) < confusion_rate)
    conf = conf[[len(confusable[p]) > 0 for p in p_idx[conf]]]
    if len(conf):
        clabel = np.array([confusable[p][rng.integers(len(confusable[p]))] for p in p_idx[conf]])
        cxy = xy[conf] + rng.normal(size=(len(conf), 2)) * (jitter * h[conf])[:, None]
        cscore = rng.beta(*_CONFUSED_SCORE, size=len(conf))
        emit(cxy, clabel, cscore, person_offsets(cxy, m_idx[conf], 1.0), m_idx[conf])

    # False positives.
    posed = np.flatnonzero(has_pose)
    if isinstance(false_positives, tuple):
        lo, hi = false_positives
        num_fp = int(rng.integers(lo, hi + 1))
    else:
        num_fp = int(rng.poisson(float(false_positives) * num_people))
    near = rng.random(num_fp) < fp_near_people if len(posed) else np.zeros(num_fp, bool)
    num_near = int(near.sum())
    if num_near:
        lxy, lpart, lperson = _limb_false_positives(rng, num_near, joints, known, posed, skeleton)
        lxy += rng.normal(size=lxy.shape) * (jitter * heights[lperson])[:, None]
        # The regression still points at that person's joints, less precisely.
        emit(
            lxy,
            lpart,
            rng.beta(*_FALSE_SCORE, size=num_near),
            person_offsets(lxy, lperson, 2.0),
            np.full(num_near, -1),
        )
    num_bg = num_fp - num_near
    if num_bg:
        bxy = rng.uniform((0, 0), (img_w, img_h), size=(num_bg, 2))
        bpart = rng.integers(num_parts, size=num_bg)
        emit(
            bxy,
            bpart,
            rng.beta(*_FALSE_SCORE, size=num_bg),
            _template_offsets(rng, bpart, joints, heights, posed, offset_noise, image_hw),
            np.full(num_bg, -1),
        )

    xy = np.concatenate(xy_parts)
    part = np.concatenate(part_parts).astype(np.int64)
    score = np.clip(np.concatenate(score_parts), _SCORE_EPS, 1 - _SCORE_EPS)
    offsets = np.concatenate(off_parts)
    owner = np.concatenate(owner_parts).astype(np.int64)
    offsets[np.arange(len(part)), part] = 0.0

    inside = (xy[:, 0] >= 0) & (xy[:, 0] < img_w) & (xy[:, 1] >= 0) & (xy[:, 1] < img_h)
    # Per-channel NMS order: by part, strongest first.
    order = np.lexsort((-score, part))
    order = order[inside[order]]
    cands = Candidates(
        xy=xy[order].astype(np.float32),
        part=part[order],
        score=score[order].astype(np.float32),
        offsets=offsets[order].astype(np.float32),
    )
    return cands, owner[order]


def assign_candidates_to_truth(
    candidates: Candidates,
    keypoints: np.ndarray,
    visible: np.ndarray,
    heights: np.ndarray,
    radius_frac: float = 0.1,
) -> np.ndarray:
    """Match detector candidates to ground-truth people.

    Per part, candidates and the visible joints of that part are matched one-to-one by the
    Hungarian algorithm on height-normalised distance ``|xy − joint| / heights[m]`` (so a small
    person's joint isn't out-bid by a large neighbour's), allowing only pairs within
    ``radius_frac · heights[m]``. One ground-truth joint gets at most one candidate; the rest
    (false positives, duplicates, confusions) get −1.

    Returns:
        owner: int64 [N] matched person index, −1 when unmatched.
    """
    keypoints = np.asarray(keypoints, np.float64)
    visible = np.asarray(visible, bool) & np.isfinite(keypoints).all(-1)
    heights = np.asarray(heights, np.float64)
    owner = np.full(len(candidates), -1, np.int64)
    xy = candidates.xy.astype(np.float64)
    for part in np.unique(candidates.part):
        cand = np.flatnonzero(candidates.part == part)
        people = np.flatnonzero(visible[:, part])
        if len(people) == 0:
            continue
        dist = np.linalg.norm(xy[cand, None, :] - keypoints[None, people, part], axis=-1)
        dist /= heights[people][None, :]
        allowed = dist <= radius_frac
        # Disallowed pairs get a cost above any feasible total so they're never preferred.
        cost = np.where(allowed, dist, radius_frac * (len(cand) + len(people) + 1))
        rows, cols = linear_sum_assignment(cost)
        ok = allowed[rows, cols]
        owner[cand[rows[ok]]] = people[cols[ok]]
    return owner


def _fill_missing(keypoints: np.ndarray) -> np.ndarray:
    """Unknown (NaN) joints replaced by the centroid of the person's known joints."""
    known = np.isfinite(keypoints).all(-1, keepdims=True)
    count = known.sum(1, keepdims=True)
    centroid = np.where(known, keypoints, 0.0).sum(1, keepdims=True) / np.maximum(count, 1)
    return np.where(known, keypoints, centroid)


def _confusable_parts(skeleton: Skeleton) -> list[list[int]]:
    """Per part, the parts a detector confuses it with: its mirror part and its neighbours."""
    out: list[set[int]] = [set() for _ in range(skeleton.num_parts)]
    for a, b in (*skeleton.flip_pairs, *skeleton.edges):
        out[a].add(b)
        out[b].add(a)
    return [sorted(s) for s in out]


def _limb_false_positives(
    rng: np.random.Generator,
    count: int,
    joints: np.ndarray,
    known: np.ndarray,
    posed: np.ndarray,
    skeleton: Skeleton,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Locations [count, 2], parts and persons of false positives part-way along a random limb
    (skeleton edge with both joints known) of a random person (before position jitter)."""
    person = posed[rng.integers(len(posed), size=count)]
    edges = np.array(skeleton.edges, np.int64).reshape(-1, 2)
    xy = np.empty((count, 2))
    part = rng.integers(skeleton.num_parts, size=count)
    for k, m in enumerate(person):
        limbs = edges[known[m, edges[:, 0]] & known[m, edges[:, 1]]]
        if len(limbs):
            a, b = limbs[rng.integers(len(limbs))]
        else:  # no complete limb: fire on a known joint instead
            a = b = rng.choice(np.flatnonzero(known[m]))
        t = rng.uniform(0.25, 0.75)
        xy[k] = (1 - t) * joints[m, a] + t * joints[m, b]
        # Half carry a limb endpoint's label: the detector fires on the limb itself.
        if rng.random() < 0.5:
            part[k] = a if rng.random() < 0.5 else b
    return xy, part, person


def _template_offsets(
    rng: np.random.Generator,
    part: np.ndarray,
    joints: np.ndarray,
    heights: np.ndarray,
    posed: np.ndarray,
    offset_noise: float,
    image_hw: tuple[int, int],
) -> np.ndarray:
    """Plausible offsets for background false positives: a random person's pose, anchored at
    the candidate's part, randomly scaled and rotated, plus regression noise."""
    count, num_parts = len(part), joints.shape[1]
    if len(posed) == 0:
        size = rng.uniform(0.1, 0.5, count) * image_hw[0]
        return rng.normal(size=(count, num_parts, 2)) * (0.3 * size)[:, None, None]
    person = posed[rng.integers(len(posed), size=count)]
    vec = joints[person] - joints[person, part][:, None, :]
    scale = rng.uniform(0.6, 1.5, count)
    angle = rng.uniform(-0.3, 0.3, count)
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)  # [count, 2, 2]
    vec = np.einsum("nij,nqj->nqi", rot, vec)
    sigma = offset_noise * heights[person] * scale
    return vec + rng.normal(size=vec.shape) * sigma[:, None, None]
