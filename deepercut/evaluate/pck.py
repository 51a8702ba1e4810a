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
