"""The typed records that flow between stages: frame → candidates → problem → solution → poses.

All arrays are numpy; shapes are documented per field. See docs/architecture.md for the flow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: ``Solution.status`` values.
SOLUTION_STATUSES = ("optimal", "feasible", "time_limit", "heuristic")


@dataclass
class Frame:
    """One decoded image.

    Attributes:
        index: 0-based position in the source (counting every decoded frame).
        pts: presentation time in seconds (``nan`` when unknown).
        image: uint8 RGB array, H×W×3.
        source: a short description of where the frame came from (path, URL, camera).
    """

    index: int
    pts: float
    image: np.ndarray
    source: str = ""


@dataclass
class Candidates:
    """Body-part detections of one image, the solver's input.

    Attributes:
        xy: float32 [N, 2] refined locations in image pixels (x, y).
        part: int64 [N] detected part index.
        score: float32 [N] scoremap probability of ``part`` at the location.
        offsets: float32 [N, P, 2] regressed vectors (pixels) from the candidate to every part;
            the own-part entry is zero.
    """

    xy: np.ndarray
    part: np.ndarray
    score: np.ndarray
    offsets: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.xy)
        if self.xy.shape != (n, 2) or self.part.shape != (n,) or self.score.shape != (n,):
            raise ValueError(
                f"inconsistent candidate shapes: xy {self.xy.shape}, part {self.part.shape}, "
                f"score {self.score.shape}"
            )
        if self.offsets.ndim != 3 or self.offsets.shape[0] != n or self.offsets.shape[2] != 2:
            raise ValueError(f"offsets must be [N, P, 2], got {self.offsets.shape}")

    def __len__(self) -> int:
        return len(self.xy)

    @property
    def num_parts(self) -> int:
        return self.offsets.shape[1]

    @classmethod
    def empty(cls, num_parts: int) -> Candidates:
        return cls(
            xy=np.zeros((0, 2), np.float32),
            part=np.zeros((0,), np.int64),
            score=np.zeros((0,), np.float32),
            offsets=np.zeros((0, num_parts, 2), np.float32),
        )

    def select(self, index: np.ndarray) -> Candidates:
        """A subset (boolean mask or integer index), in the given order."""
        return Candidates(self.xy[index], self.part[index], self.score[index], self.offsets[index])


@dataclass
class Problem:
    """A subset partition and labelling problem (SPLP), minimised.

    ``objective = Σ_d unary[d, label[d]] + Σ_{e=(d,d')} pair_cost[e, label[d], label[d']]``
    over kept candidates (label ≥ 0); the pair term counts only when both ends are kept and in
    the same cluster. A pair absent from ``edges`` costs nothing to join. ``unary = +inf`` forbids
    a label; ``pair_cost = +inf`` forbids a join with those labels.

    Attributes:
        unary: float64 [N, P] cost of keeping candidate d as part c (−log-odds).
        edges: int64 [E, 2] candidate index pairs with i < j.
        pair_cost: float64 [E, P, P] cost of joining the pair with labels (c, c').
    """

    unary: np.ndarray
    edges: np.ndarray
    pair_cost: np.ndarray

    def __post_init__(self) -> None:
        n, p = self.unary.shape
        e = len(self.edges)
        if self.edges.shape != (e, 2) or self.pair_cost.shape != (e, p, p):
            raise ValueError(
                f"inconsistent problem shapes: unary {self.unary.shape}, edges "
                f"{self.edges.shape}, pair_cost {self.pair_cost.shape}"
            )
        if e and (self.edges.min() < 0 or self.edges.max() >= n):
            raise ValueError("edge endpoints out of range")

    @property
    def num_candidates(self) -> int:
        return self.unary.shape[0]

    @property
    def num_parts(self) -> int:
        return self.unary.shape[1]

    def objective(self, label: np.ndarray, cluster: np.ndarray) -> float:
        """Cost of a labelling and clustering (``inf`` if it uses a forbidden label or join)."""
        label = np.asarray(label)
        cluster = np.asarray(cluster)
        kept = label >= 0
        total = float(self.unary[np.flatnonzero(kept), label[kept]].sum())
        if len(self.edges):
            i, j = self.edges[:, 0], self.edges[:, 1]
            joined = kept[i] & kept[j] & (cluster[i] == cluster[j])
            e = np.flatnonzero(joined)
            total += float(self.pair_cost[e, label[i[e]], label[j[e]]].sum())
        return total


@dataclass
class Solution:
    """A solver's answer to a :class:`Problem`.

    Attributes:
        label: int64 [N] part of each candidate, −1 = suppressed.
        cluster: int64 [N] person index per candidate (−1 for suppressed ones), 0..M−1.
        objective: value of :meth:`Problem.objective` for this solution (up to float rounding).
        bound: proven lower bound on the optimum (``-inf`` when none).
        gap: relative gap ``(objective − bound) / max(1, |objective|)``; 0 when proven optimal.
        status: one of ``optimal``, ``feasible``, ``time_limit``, ``heuristic``.
        seconds: wall-clock solve time.
        stats: free-form solver statistics (stages, lazy rounds, ...).
    """

    label: np.ndarray
    cluster: np.ndarray
    objective: float
    bound: float
    gap: float
    status: str
    seconds: float
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in SOLUTION_STATUSES:
            raise ValueError(f"unknown solution status {self.status!r}")

    @property
    def num_people(self) -> int:
        kept = self.cluster[self.label >= 0]
        return len(np.unique(kept))


@dataclass
class Poses:
    """The people found in one frame.

    Attributes:
        frame: frame index in the source.
        pts: presentation time in seconds.
        keypoints: float32 [M, P, 3] (x, y, score) per person and part; NaN where absent.
        track_id: int64 [M] identity across frames (−1 when untracked).
        solver: solver report: ``status``, ``gap``, ``ms``.
    """

    frame: int
    pts: float
    keypoints: np.ndarray
    track_id: np.ndarray
    solver: dict[str, Any] = field(default_factory=dict)

    @property
    def num_people(self) -> int:
        return self.keypoints.shape[0]
