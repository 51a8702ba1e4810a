"""PCK of candidates against hand-computed values."""

from __future__ import annotations

import numpy as np

from deepercut.evaluate.pck import accumulate_pck, best_candidate_hits
from deepercut.types import Candidates


def _cands(xy, part, score, num_parts=2) -> Candidates:
    n = len(xy)
    return Candidates(
        np.asarray(xy, np.float32).reshape(n, 2),
        np.asarray(part, np.int64),
        np.asarray(score, np.float32),
        np.zeros((n, num_parts, 2), np.float32),
    )


def test_best_candidate_per_person_decides_the_hit() -> None:
    # Two people of height 100 (threshold 20 px, search 50 px); parts 0 and 1.
    keypoints = np.array([[[10.0, 10.0], [10.0, 50.0]], [[100.0, 10.0], [100.0, 50.0]]])
    visible = np.ones((2, 2), bool)
    heights = np.array([100.0, 100.0])
    cands = _cands(
        [
            [12, 10],  # part 0, person 0, 2 px off: hit
            [128, 10],  # part 0, person 1, 28 px off but the stronger one: person 1 misses
            [101, 10],  # part 0, person 1, 1 px off, weaker
            [10, 95],  # part 1, 45 px from person 0's joint: owned, best, 45 > 20: miss
            [300, 50],  # part 1, far from everyone: nobody's
        ],
        [0, 0, 0, 1, 1],
        [0.9, 0.8, 0.5, 0.7, 0.99],
    )
    hits = best_candidate_hits(cands, keypoints, visible, heights)
    assert hits.tolist() == [[True, False], [False, False]]
    # A looser threshold (0.3 h = 30 px) turns person 1's part 0 into a hit.
    assert best_candidate_hits(cands, keypoints, visible, heights, threshold=0.3)[1, 0]


def test_candidates_go_to_the_nearest_person() -> None:
    keypoints = np.array([[[10.0, 10.0]], [[40.0, 10.0]]])
    heights = np.array([100.0, 100.0])
    # Strong candidate right on person 1 is not person 0's, even inside person 0's search region.
    cands = _cands([[39, 10], [15, 10]], [0, 0], [0.95, 0.3], num_parts=1)
    hits = best_candidate_hits(cands, keypoints, np.ones((2, 1), bool), heights)
    assert hits.tolist() == [[True], [True]]


def test_empty_candidates_and_accumulation() -> None:
    keypoints = np.zeros((1, 2, 2))
    hits = best_candidate_hits(
        _cands(np.zeros((0, 2)), [], []), keypoints, np.ones((1, 2), bool), np.array([100.0])
    )
    assert not hits.any()
    result = accumulate_pck(
        [np.array([[True, False], [False, True]]), np.array([[False, True]])],
        [np.array([[True, True], [False, True]]), np.array([[True, False]])],
        threshold=0.2,
    )
    # Part 0: visible joints 2 (one hit); part 1: visible 2 (one hit; the other hit is on an
    # invisible joint and does not count).
    assert result.counts.tolist() == [2, 2]
    np.testing.assert_allclose(result.per_part, [0.5, 0.5])
    assert result.mean == 0.5
    assert "mean" in result.table(("a", "b"))
