"""Multi-object tracking metrics for poses: CLEAR MOT (MOTA, ID switches) and IDF1.

A documented implementation (``motmetrics`` is not a dependency) following Bernardin &
Stiefelhagen 2008 (CLEAR MOT) and Ristani et al. 2016 (identity measures), with a pose
similarity in place of box overlap:

- **Similarity** of a ground-truth person ``g`` and a hypothesis ``h`` in one frame: an
  OKS-like score, the mean over ``g``'s visible joints of ``exp(−d² / (2 (κ·height_g)²))`` where
  ``d`` is the distance to ``h``'s keypoint of that part (a part ``h`` lacks scores 0). A pair
  *can match* when the similarity is at least ``threshold``.
- **Who counts.** A ground-truth person with fewer than ``min_visible`` visible joints (hidden
  behind someone, or outside the image) is *don't-care*: not a miss when nobody finds it, and a
  hypothesis matching it is not a false positive. Hypotheses with track id −1 (untracked, e.g.
  a tracker's tentative births) are not output: they count as nothing, so the ground truth they
  cover is missed.
- **CLEAR MOT, per frame:** a correspondence of the previous frames is kept when its pair can
  still match; the remaining people and hypotheses are matched by the Hungarian algorithm
  (``scipy.optimize.linear_sum_assignment``) maximising similarity. An *ID switch* is a match
  whose hypothesis id differs from the last one this person was matched to (at any earlier
  frame). ``MOTA = 1 − (FN + FP + IDSW) / GT`` with GT the counted ground-truth detections.
- **IDF1:** the best one-to-one mapping between ground-truth and hypothesis *trajectories*
  (maximum total number of frames in which the two can match, again by the Hungarian
  algorithm); IDTP is that total, ``IDF1 = 2·IDTP / (2·IDTP + IDFP + IDFN)`` with IDFP = counted
  hypothesis detections − IDTP and IDFN = counted ground-truth detections − IDTP.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

#: OKS fall-off as a fraction of the person's height.
DEFAULT_KAPPA = 0.07
#: Smallest similarity of a match.
DEFAULT_THRESHOLD = 0.3
#: Fewest visible joints of a ground-truth person that counts.
DEFAULT_MIN_VISIBLE = 3


@dataclass
class MotSummary:
    """Tracking metrics of one or several sequences (see the module docstring).

    Attributes:
        frames: frames evaluated.
        gt: counted ground-truth detections; ``matches``, ``fp``, ``fn``, ``id_switches``: CLEAR
            MOT counts; ``mota``; ``idtp``, ``idfp``, ``idfn``, ``idf1``, ``idp``, ``idr``:
            identity measures; ``switches_per_100``: ID switches per 100 frames;
            ``similarity``: mean similarity of the matches; ``gt_tracks``, ``hyp_tracks``:
            distinct identities.
    """

    frames: int
    gt: int
    matches: int
    fp: int
    fn: int
    id_switches: int
    mota: float
    idtp: int
    idfp: int
    idfn: int
    idf1: float
    idp: float
    idr: float
    switches_per_100: float
    similarity: float
    gt_tracks: int
    hyp_tracks: int

    def to_dict(self) -> dict[str, float | int]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def pose_similarity(
    gt_keypoints: np.ndarray,
    gt_visible: np.ndarray,
    gt_heights: np.ndarray,
    hyp_keypoints: np.ndarray,
    kappa: float = DEFAULT_KAPPA,
) -> np.ndarray:
    """OKS-like similarity [G, H] of ground-truth people and hypotheses (module docstring).

    Args:
        gt_keypoints: [G, P, 2] (x, y).
        gt_visible: bool [G, P].
        gt_heights: [G] standing heights in pixels.
        hyp_keypoints: [H, P, 2 or 3] (x, y[, score]); NaN where a part is absent.
    """
    gt_keypoints = np.asarray(gt_keypoints, np.float64)
    hyp = np.asarray(hyp_keypoints, np.float64)[..., :2]
    vis = np.asarray(gt_visible, bool)
    if len(gt_keypoints) == 0 or len(hyp) == 0:
        return np.zeros((len(gt_keypoints), len(hyp)))
    d2 = ((gt_keypoints[:, None] - hyp[None]) ** 2).sum(-1)  # [G, H, P]
    sigma = kappa * np.asarray(gt_heights, np.float64)[:, None, None]
    score = np.where(np.isfinite(d2), np.exp(-np.nan_to_num(d2, nan=np.inf) / (2 * sigma**2)), 0.0)
    score = np.where(vis[:, None, :], score, 0.0)
    return score.sum(-1) / np.maximum(vis.sum(-1), 1)[:, None]


class MotAccumulator:
    """Collects frames of one sequence; :meth:`summary` computes the metrics.

    Args:
        kappa, threshold, min_visible: see the module docstring.
    """

    def __init__(
        self,
        kappa: float = DEFAULT_KAPPA,
        threshold: float = DEFAULT_THRESHOLD,
        min_visible: int = DEFAULT_MIN_VISIBLE,
    ) -> None:
        if not (kappa > 0 and 0 < threshold <= 1 and min_visible >= 1):
            raise ValueError("kappa > 0, 0 < threshold <= 1 and min_visible >= 1 are required")
        self.kappa, self.threshold, self.min_visible = kappa, threshold, min_visible
        self.frames = 0
        self.gt = self.matches = self.fp = self.fn = self.id_switches = 0
        self._similarity_sum = 0.0
        self._current: dict[int, int] = {}  # gt id → hyp id matched in the previous frame
        self._last: dict[int, int] = {}  # gt id → hyp id of its last match, ever
        self._pair_frames: defaultdict[tuple[int, int], int] = defaultdict(int)
        self._gt_count: defaultdict[int, int] = defaultdict(int)
        self._hyp_count: defaultdict[int, int] = defaultdict(int)

    def update(
        self,
        gt_ids: np.ndarray,
        gt_keypoints: np.ndarray,
        gt_visible: np.ndarray,
        gt_heights: np.ndarray,
        hyp_ids: np.ndarray,
        hyp_keypoints: np.ndarray,
    ) -> None:
        """Add one frame: ground truth ``ids`` [G], ``keypoints`` [G, P, 2], ``visible`` [G, P],
        ``heights`` [G]; hypotheses ``ids`` [H] (−1 = untracked, ignored) and ``keypoints``
        [H, P, 2|3]."""
        gt_ids = np.asarray(gt_ids, np.int64)
        hyp_ids = np.asarray(hyp_ids, np.int64)
        if len(set(hyp_ids[hyp_ids >= 0].tolist())) < int((hyp_ids >= 0).sum()):
            raise ValueError(f"frame {self.frames}: a track id occurs twice in one frame")
        tracked = hyp_ids >= 0
        hyp_ids = hyp_ids[tracked]
        hyp_keypoints = np.asarray(hyp_keypoints)[tracked]
        self.frames += 1
        sim = pose_similarity(gt_keypoints, gt_visible, gt_heights, hyp_keypoints, self.kappa)
        can = sim >= self.threshold
        counted = np.asarray(gt_visible, bool).sum(-1) >= self.min_visible
        g_cnt = np.flatnonzero(counted)

        pairs, ignored_h = self._correspondences(gt_ids, hyp_ids, sim, can, counted)
        self._current = {}
        for gi, hi in pairs:
            g_id, h_id = int(gt_ids[gi]), int(hyp_ids[hi])
            if g_id in self._last and self._last[g_id] != h_id:
                self.id_switches += 1
            self._last[g_id] = self._current[g_id] = h_id
            self._similarity_sum += float(sim[gi, hi])
        self.gt += len(g_cnt)
        self.matches += len(pairs)
        self.fn += len(g_cnt) - len(pairs)
        self.fp += len(hyp_ids) - len(pairs) - len(ignored_h)
        # Identity measures: frames each (gt, hyp) trajectory pair can match.
        for g in g_cnt.tolist():
            self._gt_count[int(gt_ids[g])] += 1
        for h in range(len(hyp_ids)):
            if h not in ignored_h:
                self._hyp_count[int(hyp_ids[h])] += 1
        for g, h in zip(*np.nonzero(can[g_cnt]), strict=True):
            if int(h) not in ignored_h:
                self._pair_frames[(int(gt_ids[g_cnt[g]]), int(hyp_ids[h]))] += 1

    def _correspondences(
        self,
        gt_ids: np.ndarray,
        hyp_ids: np.ndarray,
        sim: np.ndarray,
        can: np.ndarray,
        counted: np.ndarray,
    ) -> tuple[list[tuple[int, int]], set[int]]:
        """One frame's matches (gt index, hyp index) by CLEAR MOT: the valid correspondences
        kept, then Hungarian on the rest (counted gts); and the hypotheses left over that
        match a don't-care person (no false positives)."""
        pairs: list[tuple[int, int]] = []
        gt_pos = {int(g): k for k, g in enumerate(gt_ids)}
        hyp_pos = {int(h): k for k, h in enumerate(hyp_ids)}
        used_g, used_h = set(), set()
        for g_id, h_id in self._current.items():
            gi, hi = gt_pos.get(g_id), hyp_pos.get(h_id)
            if gi is not None and hi is not None and counted[gi] and can[gi, hi]:
                pairs.append((gi, hi))
                used_g.add(gi)
                used_h.add(hi)
        free_g = [g for g in np.flatnonzero(counted).tolist() if g not in used_g]
        free_h = [h for h in range(len(hyp_ids)) if h not in used_h]
        pairs += _hungarian(sim, can, free_g, free_h)
        matched_h = {h for _, h in pairs}
        dont_care = [g for g in np.flatnonzero(~counted).tolist()]
        rest_h = [h for h in range(len(hyp_ids)) if h not in matched_h]
        return pairs, {h for _, h in _hungarian(sim, can, dont_care, rest_h)}

    def summary(self) -> MotSummary:
        """The metrics of everything added so far."""
        gts, hyps = sorted(self._gt_count), sorted(self._hyp_count)
        idtp = 0
        if gts and hyps:
            gi = {g: k for k, g in enumerate(gts)}
            hi = {h: k for k, h in enumerate(hyps)}
            overlap = np.zeros((len(gts), len(hyps)))
            for (g, h), n in self._pair_frames.items():
                overlap[gi[g], hi[h]] = n
            rows, cols = linear_sum_assignment(-overlap)
            idtp = int(overlap[rows, cols].sum())
        num_gt = sum(self._gt_count.values())
        num_hyp = sum(self._hyp_count.values())
        idfp, idfn = num_hyp - idtp, num_gt - idtp
        return MotSummary(
            frames=self.frames,
            gt=self.gt,
            matches=self.matches,
            fp=self.fp,
            fn=self.fn,
            id_switches=self.id_switches,
            mota=1.0 - (self.fn + self.fp + self.id_switches) / max(self.gt, 1),
            idtp=idtp,
            idfp=idfp,
            idfn=idfn,
            idf1=2 * idtp / max(2 * idtp + idfp + idfn, 1),
            idp=idtp / max(num_hyp, 1),
            idr=idtp / max(num_gt, 1),
            switches_per_100=100.0 * self.id_switches / max(self.frames, 1),
            similarity=self._similarity_sum / max(self.matches, 1),
            gt_tracks=len(gts),
            hyp_tracks=len(hyps),
        )


def combine(summaries: list[MotSummary]) -> MotSummary:
    """Metrics of several sequences pooled (counts added, ratios recomputed)."""
    if not summaries:
        raise ValueError("nothing to combine")
    s = {
        k: sum(getattr(x, k) for x in summaries)
        for k in (
            "frames",
            "gt",
            "matches",
            "fp",
            "fn",
            "id_switches",
            "idtp",
            "idfp",
            "idfn",
            "gt_tracks",
            "hyp_tracks",
        )
    }
    sim = sum(x.similarity * x.matches for x in summaries) / max(s["matches"], 1)
    return MotSummary(
        **s,
        mota=1.0 - (s["fn"] + s["fp"] + s["id_switches"]) / max(s["gt"], 1),
        idf1=2 * s["idtp"] / max(2 * s["idtp"] + s["idfp"] + s["idfn"], 1),
        idp=s["idtp"] / max(s["idtp"] + s["idfp"], 1),
        idr=s["idtp"] / max(s["idtp"] + s["idfn"], 1),
        switches_per_100=100.0 * s["id_switches"] / max(s["frames"], 1),
        similarity=sim,
    )


def _hungarian(
    sim: np.ndarray, can: np.ndarray, rows: list[int], cols: list[int]
) -> list[tuple[int, int]]:
    """Maximum-similarity one-to-one matching of ``rows`` × ``cols`` among pairs that can
    match."""
    if not rows or not cols:
        return []
    sub = sim[np.ix_(rows, cols)]
    ok = can[np.ix_(rows, cols)]
    r, c = linear_sum_assignment(np.where(ok, -sub, 1.0))
    return [(rows[i], cols[j]) for i, j in zip(r, c, strict=True) if ok[i, j]]
