"""Skeletons: part names, drawing edges, flip pairs and the part groups of incremental solving."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Skeleton:
    """A body model shared by the detector, the pairwise model, the solvers and the sinks.

    Attributes:
        name: short identifier, e.g. ``"mpii14"``.
        parts: part names; a part's index is its channel in every map and array.
        edges: index pairs drawn when rendering (and used as tree edges by trackers).
        stages: part groups of the incremental solver, in solving order. Stage ``k`` solves
            the parts of groups ``0..k``; earlier clusters are fixed. Every part appears once.
        flip_pairs: left/right part pairs swapped by a horizontal flip.
    """

    name: str
    parts: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    stages: tuple[tuple[int, ...], ...]
    flip_pairs: tuple[tuple[int, int], ...] = field(default=())

    def __post_init__(self) -> None:
        n = len(self.parts)
        if n == 0:
            raise ValueError("a skeleton needs at least one part")
        if len(set(self.parts)) != n:
            raise ValueError(f"duplicate part names in {self.parts}")
        staged = sorted(p for group in self.stages for p in group)
        if staged != list(range(n)):
            raise ValueError(f"stages {self.stages} must cover each of the {n} parts exactly once")
        for a, b in (*self.edges, *self.flip_pairs):
            if not (0 <= a < n and 0 <= b < n) or a == b:
                raise ValueError(f"invalid part pair ({a}, {b}) for {n} parts")

    @property
    def num_parts(self) -> int:
        return len(self.parts)

    def index(self, part: str) -> int:
        """Index of a part by name."""
        return self.parts.index(part)

    def flip_permutation(self) -> list[int]:
        """Channel permutation mapping parts to their mirror image (identity for unpaired ones)."""
        perm = list(range(self.num_parts))
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    def stage_groups(self, num_stages: int) -> tuple[tuple[int, ...], ...]:
        """Part groups for an ``num_stages``-stage solve.

        Uses :attr:`stages` when it has that many groups; fewer stages merge the leading groups
        (MPII: 3 stages {head, shoulders} → {elbows, wrists} → {hips, knees, ankles}; 2 stages
        upper body → lower body); one stage is all parts at once.
        """
        if num_stages < 1:
            raise ValueError("num_stages must be >= 1")
        groups = list(self.stages)
        while len(groups) > num_stages:
            groups[0:2] = [tuple(groups[0]) + tuple(groups[1])]
        return tuple(tuple(g) for g in groups)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (msgpack/JSON/checkpoint metadata)."""
        return {
            "name": self.name,
            "parts": list(self.parts),
            "edges": [list(e) for e in self.edges],
            "stages": [list(s) for s in self.stages],
            "flip_pairs": [list(p) for p in self.flip_pairs],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Skeleton:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=str(data["name"]),
            parts=tuple(str(p) for p in data["parts"]),
            edges=tuple((int(a), int(b)) for a, b in data.get("edges", ())),
            stages=tuple(tuple(int(p) for p in s) for s in data["stages"]),
            flip_pairs=tuple((int(a), int(b)) for a, b in data.get("flip_pairs", ())),
        )


# The 14-part LSP/MPII order used by DeeperCut and pose-tensorflow, so their checkpoints map 1:1.
MPII14 = Skeleton(
    name="mpii14",
    parts=(
        "right_ankle",
        "right_knee",
        "right_hip",
        "left_hip",
        "left_knee",
        "left_ankle",
        "right_wrist",
        "right_elbow",
        "right_shoulder",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
        "neck",
        "head_top",
    ),
    edges=(
        (13, 12),
        (12, 8),
        (12, 9),
        (8, 7),
        (7, 6),
        (9, 10),
        (10, 11),
        (8, 2),
        (9, 3),
        (2, 3),
        (2, 1),
        (1, 0),
        (3, 4),
        (4, 5),
    ),
    # DeeperCut's incremental optimisation:
    # {head, shoulders} → +{elbows, wrists} → +{hips, knees, ankles}.
    stages=((13, 12, 8, 9), (7, 10, 6, 11), (2, 3, 1, 4, 0, 5)),
    flip_pairs=((0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9)),
)


#: COCO's 17 keypoints in COCO's own order.
COCO_PARTS = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)

#: COCO's 17-keypoint skeleton: the json's ``categories[0].skeleton``, 0-based.
COCO17 = Skeleton(
    name="coco17",
    parts=COCO_PARTS,
    edges=(
        (15, 13),
        (13, 11),
        (16, 14),
        (14, 12),
        (11, 12),
        (5, 11),
        (6, 12),
        (5, 6),
        (5, 7),
        (6, 8),
        (7, 9),
        (8, 10),
        (1, 2),
        (0, 1),
        (0, 2),
        (1, 3),
        (2, 4),
        (3, 5),
        (4, 6),
    ),
    # DeeperCut's order, COCO's parts: {head, shoulders} → +{elbows, wrists} → +{legs}.
    stages=((0, 1, 2, 3, 4, 5, 6), (7, 8, 9, 10), (11, 12, 13, 14, 15, 16)),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
)
