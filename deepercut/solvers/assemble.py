"""From a solver's clustering to keypoint arrays: one row per person, one column per part.

Rules (deterministic, so an in-process run and a Ray run give bit-identical poses):

- **Part of a person.** A cluster's keypoint for part ``p`` is its kept candidate labelled ``p``.
  With ``forbid_same_part`` (the default problem) there is at most one; otherwise the one with
  the highest score wins (ties: the lower candidate index).
- **Dropping.** A cluster is kept when it has at least ``min_parts`` parts and the sum of its
  keypoint scores is at least ``min_score``. The default ``min_parts=2`` removes lone
  detections (a single part is no pose, and false positives mostly end up alone); the default
  ``min_score=0`` keeps everything else.
- **Order.** People are sorted by descending total score, ties by their smallest candidate
  index (the solver's cluster numbering never matters); ``max_people`` keeps the first ones
  (e.g. 1 for a single-animal DeepLabCut project, where a second "animal" can only be clutter).
"""

from __future__ import annotations

import numpy as np

from deepercut.types import Candidates, Solution

#: Fewest parts a person needs to be reported.
DEFAULT_MIN_PARTS = 2


def assemble_poses(
    candidates: Candidates,
    kept_index: np.ndarray,
    solution: Solution,
    num_parts: int,
    *,
    min_parts: int = DEFAULT_MIN_PARTS,
    min_score: float = 0.0,
    max_people: int | None = None,
) -> np.ndarray:
    """Keypoints of the people in a solution.

    Args:
        candidates: all candidates of the image (as passed to ``build_problem``).
        kept_index: [n] candidate index of each problem node (``build_problem``'s second
            result).
        solution: the solver's ``label`` [n] and ``cluster`` [n] over the problem's nodes.
        num_parts: ``P``.
        min_parts: fewest distinct parts a person needs.
        min_score: smallest sum of keypoint scores a person needs.
        max_people: report at most this many people, the highest-scoring (``None``: all).

    Returns:
        float32 [M, P, 3]: (x, y, score) per person and part, NaN where the part is absent.
    """
    kept_index = np.asarray(kept_index, np.int64)
    label = np.asarray(solution.label, np.int64)
    cluster = np.asarray(solution.cluster, np.int64)
    if not (len(kept_index) == len(label) == len(cluster)):
        raise ValueError(
            f"kept_index ({len(kept_index)}), label ({len(label)}) and cluster "
            f"({len(cluster)}) must have one entry per problem node"
        )
    nodes = np.flatnonzero((label >= 0) & (cluster >= 0))
    if len(nodes) == 0:
        return np.full((0, num_parts, 3), np.nan, np.float32)
    if label[nodes].max() >= num_parts:
        raise ValueError(f"labels out of range for {num_parts} parts")

    cand = kept_index[nodes]
    score = candidates.score[cand].astype(np.float64)
    # Best candidate per (cluster, part): sort by cluster, part, −score, candidate index and
    # keep the first of each (cluster, part) run.
    order = np.lexsort((cand, -score, label[nodes], cluster[nodes]))
    c_sorted, p_sorted = cluster[nodes][order], label[nodes][order]
    first = np.ones(len(order), bool)
    first[1:] = (c_sorted[1:] != c_sorted[:-1]) | (p_sorted[1:] != p_sorted[:-1])
    best = order[first]

    clusters, person = np.unique(cluster[nodes][best], return_inverse=True)
    parts = label[nodes][best]
    keypoints = np.full((len(clusters), num_parts, 3), np.nan, np.float32)
    keypoints[person, parts, :2] = candidates.xy[cand[best]]
    keypoints[person, parts, 2] = score[best]

    part_count = np.bincount(person, minlength=len(clusters))
    total = np.bincount(person, weights=score[best], minlength=len(clusters))
    # Smallest candidate index over *all* of a cluster's kept nodes (not only the winners).
    _, member = np.unique(cluster[nodes], return_inverse=True)
    first_cand = np.full(len(clusters), np.iinfo(np.int64).max)
    np.minimum.at(first_cand, member, cand)

    keep = (part_count >= min_parts) & (total >= min_score)
    ranked = np.lexsort((first_cand, -total))
    return keypoints[ranked[keep[ranked]][:max_people]]
