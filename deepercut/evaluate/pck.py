"""Detector accuracy before grouping: per-part PCK of the best candidate for each true person.

For a ground-truth person of height ``h`` and a visible joint of part ``p``, the prediction is
the highest-scoring candidate of part ``p`` within ``search · h`` of the joint (the candidate the
solver would most likely pick for that person); it is correct when it lies within
``threshold · h`` of the joint. A joint with no candidate in the search region counts as missed.
This isolates the detector from the solver: it measures how well candidates cover the people.
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
    """[M, P] bool: the best candidate near each joint lies within ``threshold · height``."""
    m, p = visible.shape
    hits = np.zeros((m, p), bool)
    if len(candidates) == 0 or m == 0:
        return hits
    # [M, N] distances from each person's joint of the candidate's part to the candidate.
    joint_of_cand = keypoints[:, candidates.part, :]  # [M, N, 2]
    dist = np.linalg.norm(joint_of_cand - candidates.xy[None], axis=-1)
    in_region = dist <= search * heights[:, None]
    score = np.where(in_region, candidates.score[None], -np.inf)
    for part in range(p):
        cols = np.flatnonzero(candidates.part == part)
        if len(cols) == 0:
            continue
        best = cols[np.argmax(score[:, cols], axis=1)]  # [M]
        found = np.isfinite(score[np.arange(m), best])
        hits[:, part] = found & (dist[np.arange(m), best] <= threshold * heights)
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
