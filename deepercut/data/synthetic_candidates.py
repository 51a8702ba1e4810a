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

from dataclasses import dataclass

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
    known = np.isfinite(keypoints).all(-1)
    # People with no known joint can't produce detections or templates.
    has_pose = known.any(1)
    sim = _Simulation(rng, _fill_missing(keypoints), known, heights, jitter, offset_noise)
    # The steps draw from ``rng`` in this order: keep it, the output depends on it.
    true = sim.true_detections(visible & known & has_pose[:, None], miss_rate)
    sim.duplicates(true, duplicate_rate)
    sim.confusions(true, _confusable_parts(skeleton), confusion_rate)
    posed = np.flatnonzero(has_pose)
    if isinstance(false_positives, tuple):
        lo, hi = false_positives
        num_fp = int(rng.integers(lo, hi + 1))
    else:
        num_fp = int(rng.poisson(float(false_positives) * num_people))
    near = rng.random(num_fp) < fp_near_people if len(posed) else np.zeros(num_fp, bool)
    sim.limb_false_positives(int(near.sum()), posed, skeleton)
    sim.background_false_positives(num_fp - int(near.sum()), posed, image_hw)
    return sim.candidates(image_hw)


@dataclass(frozen=True)
class _Detections:
    """The true detections: positions, parts, scores and the person each lies on."""

    xy: np.ndarray
    part: np.ndarray
    score: np.ndarray
    person: np.ndarray


class _Simulation:
    """The candidates of :func:`candidates_from_truth` as they are emitted, kind by kind."""

    def __init__(
        self,
        rng: np.random.Generator,
        joints: np.ndarray,
        known: np.ndarray,
        heights: np.ndarray,
        jitter: float,
        offset_noise: float,
    ) -> None:
        self.rng, self.joints, self.known, self.heights = rng, joints, known, heights
        self.jitter, self.offset_noise = jitter, offset_noise
        self.emitted: list[tuple[np.ndarray, ...]] = []  # (xy, part, score, offsets, owner)

    def emit(
        self,
        xy: np.ndarray,
        part: np.ndarray,
        score: np.ndarray,
        offsets: np.ndarray,
        owner: np.ndarray,
    ) -> None:
        self.emitted.append((xy, part, score, offsets, owner))

    def person_offsets(self, xy: np.ndarray, person: np.ndarray, noise: float) -> np.ndarray:
        """Regressed vectors from each ``xy`` to every joint of its person, ``noise`` × the
        usual regression error."""
        true = self.joints[person] - xy[:, None, :]
        sigma = noise * self.offset_noise * self.heights[person]
        return true + self.rng.normal(size=true.shape) * sigma[:, None, None]

    def true_detections(self, detectable: np.ndarray, miss_rate: float) -> _Detections:
        """One detection per detectable joint that is not missed, jittered."""
        rng = self.rng
        m_idx, p_idx = np.nonzero(detectable & (rng.random(detectable.shape) >= miss_rate))
        h = self.heights[m_idx]
        xy = (
            self.joints[m_idx, p_idx]
            + rng.normal(size=(len(m_idx), 2)) * (self.jitter * h)[:, None]
        )
        score = rng.beta(*_TRUE_SCORE, size=len(m_idx))
        self.emit(xy, p_idx, score, self.person_offsets(xy, m_idx, 1.0), m_idx)
        return _Detections(xy, p_idx, score, m_idx)

    def duplicates(self, true: _Detections, duplicate_rate: float) -> None:
        """Near-duplicates of true detections: shifted just past an NMS radius, weaker."""
        rng = self.rng
        dup = rng.random(len(true.person)) < duplicate_rate
        if dup.any():
            angle = rng.uniform(0, 2 * np.pi, dup.sum())
            dist = rng.uniform(0.04, 0.10, dup.sum()) * self.heights[true.person[dup]]
            dxy = true.xy[dup] + dist[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
            dscore = true.score[dup] * rng.uniform(0.3, 0.8, dup.sum())
            person = true.person[dup]
            self.emit(dxy, true.part[dup], dscore, self.person_offsets(dxy, person, 1.0), person)

    def confusions(
        self, true: _Detections, confusable: list[list[int]], confusion_rate: float
    ) -> None:
        """True joints that also fire a confusable part's channel."""
        rng = self.rng
        conf = np.flatnonzero(rng.random(len(true.person)) < confusion_rate)
        conf = conf[[len(confusable[p]) > 0 for p in true.part[conf]]]
        if len(conf):
            person = true.person[conf]
            label = np.array(
                [confusable[p][rng.integers(len(confusable[p]))] for p in true.part[conf]]
            )
            cxy = (
                true.xy[conf]
                + rng.normal(size=(len(conf), 2)) * (self.jitter * self.heights[person])[:, None]
            )
            cscore = rng.beta(*_CONFUSED_SCORE, size=len(conf))
            self.emit(cxy, label, cscore, self.person_offsets(cxy, person, 1.0), person)

    def limb_false_positives(self, count: int, posed: np.ndarray, skeleton: Skeleton) -> None:
        """False positives on people's limbs; their regression still points at that person's
        joints, less precisely."""
        if not count:
            return
        rng = self.rng
        lxy, lpart, lperson = _limb_false_positives(
            rng, count, self.joints, self.known, posed, skeleton
        )
        lxy += rng.normal(size=lxy.shape) * (self.jitter * self.heights[lperson])[:, None]
        self.emit(
            lxy,
            lpart,
            rng.beta(*_FALSE_SCORE, size=count),
            self.person_offsets(lxy, lperson, 2.0),
            np.full(count, -1),
        )

    def background_false_positives(
        self, count: int, posed: np.ndarray, image_hw: tuple[int, int]
    ) -> None:
        """False positives anywhere in the image, regressing a template pose."""
        if not count:
            return
        rng = self.rng
        img_h, img_w = image_hw
        bxy = rng.uniform((0, 0), (img_w, img_h), size=(count, 2))
        bpart = rng.integers(self.joints.shape[1], size=count)
        self.emit(
            bxy,
            bpart,
            rng.beta(*_FALSE_SCORE, size=count),
            _template_offsets(
                rng, bpart, self.joints, self.heights, posed, self.offset_noise, image_hw
            ),
            np.full(count, -1),
        )

    def candidates(self, image_hw: tuple[int, int]) -> tuple[Candidates, np.ndarray]:
        """The emitted candidates inside the image, in per-channel NMS order, and their
        owners."""
        xy, part, score, offsets, owner = (
            np.concatenate(c) for c in zip(*self.emitted, strict=True)
        )
        part, owner = part.astype(np.int64), owner.astype(np.int64)
        score = np.clip(score, _SCORE_EPS, 1 - _SCORE_EPS)
        offsets[np.arange(len(part)), part] = 0.0
        img_h, img_w = image_hw
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
