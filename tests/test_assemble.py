"""Assembling people from a solution, and the per-frame solver with its fallback."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
from engine_support import VIDEO_HEIGHTS, VIDEO_HW, fitted_pairwise, match_error

import deepercut.solvers.frame_solver as frame_solver_module
from deepercut.data.synthetic import generate_video
from deepercut.data.synthetic_candidates import candidates_from_truth
from deepercut.skeleton import MPII14
from deepercut.solvers.assemble import assemble_poses
from deepercut.solvers.frame_solver import FrameSolver
from deepercut.types import Candidates, Problem, Solution

P = 4


def make_candidates(
    xy: list[tuple[float, float]], part: list[int], score: list[float]
) -> Candidates:
    n = len(xy)
    return Candidates(
        xy=np.array(xy, np.float32).reshape(n, 2),
        part=np.array(part, np.int64),
        score=np.array(score, np.float32),
        offsets=np.zeros((n, P, 2), np.float32),
    )


def make_solution(label: list[int], cluster: list[int]) -> Solution:
    return Solution(
        label=np.array(label, np.int64),
        cluster=np.array(cluster, np.int64),
        objective=0.0,
        bound=0.0,
        gap=0.0,
        status="optimal",
        seconds=0.0,
    )


def test_keypoints_per_cluster_and_part_with_nan_for_absent_parts() -> None:
    c = make_candidates([(1, 2), (3, 4), (5, 6), (7, 8), (9, 10)], [0, 1, 0, 2, 3], [0.5] * 5)
    # Node n is candidate kept[n]; candidate 3 was pruned before the problem.
    kept = np.array([0, 1, 2, 4])
    sol = make_solution([0, 1, 0, 3], [0, 0, 1, 1])
    kp = assemble_poses(c, kept, sol, P)
    assert kp.shape == (2, P, 3) and kp.dtype == np.float32
    # Equal totals: ordered by smallest candidate index.
    np.testing.assert_array_equal(kp[0, 0], [1, 2, 0.5])
    np.testing.assert_array_equal(kp[0, 1], [3, 4, 0.5])
    assert np.isnan(kp[0, 2:]).all()
    np.testing.assert_array_equal(kp[1, 0], [5, 6, 0.5])
    np.testing.assert_array_equal(kp[1, 3], [9, 10, 0.5])


def test_label_not_detected_part_decides_and_highest_score_wins() -> None:
    c = make_candidates([(0, 0), (1, 1), (2, 2)], [0, 0, 1], [0.5, 0.7, 0.6])
    # Both candidates labelled 0 in one cluster (allowed without forbid-same-part); the label
    # (not the detected part) sets the column: candidate 2 is relabelled as part 3.
    sol = make_solution([0, 0, 3], [0, 0, 0])
    kp = assemble_poses(c, np.arange(3), sol, P)
    np.testing.assert_allclose(kp[0, 0], [1, 1, 0.7])
    np.testing.assert_allclose(kp[0, 3], [2, 2, 0.6])
    assert np.isnan(kp[0, 1]).all()


def test_order_by_total_score_then_first_candidate_independent_of_cluster_ids() -> None:
    c = make_candidates(
        [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 5)],
        [0, 1, 0, 1, 0, 1],
        [0.3, 0.3, 0.9, 0.9, 0.3, 0.3],
    )
    a = assemble_poses(c, np.arange(6), make_solution([0, 1, 0, 1, 0, 1], [0, 0, 1, 1, 2, 2]), P)
    b = assemble_poses(c, np.arange(6), make_solution([0, 1, 0, 1, 0, 1], [2, 2, 0, 0, 1, 1]), P)
    np.testing.assert_array_equal(a, b)
    assert a[:, 0, 0].tolist() == [2, 0, 4]
    # max_people keeps the best-ranked people only.
    sol = make_solution([0, 1, 0, 1, 0, 1], [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(assemble_poses(c, np.arange(6), sol, P, max_people=2), a[:2])
    np.testing.assert_array_equal(assemble_poses(c, np.arange(6), sol, P, max_people=1), a[:1])


def test_suppressed_single_part_and_low_score_people_are_dropped() -> None:
    c = make_candidates(
        [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)], [0, 1, 2, 0, 1], [0.9] * 4 + [0.1]
    )
    sol = make_solution([0, 1, 2, 0, -1], [0, 0, 1, 2, -1])
    kp = assemble_poses(c, np.arange(5), sol, P)
    assert kp.shape[0] == 1  # clusters 1 and 2 have a single part
    assert len(assemble_poses(c, np.arange(5), sol, P, min_parts=1)) == 3
    assert len(assemble_poses(c, np.arange(5), sol, P, min_parts=1, min_score=1.0)) == 1
    empty = assemble_poses(c, np.arange(5), make_solution([-1] * 5, [-1] * 5), P)
    assert empty.shape == (0, P, 3) and empty.dtype == np.float32
    # A lone kept node is a person when one part is enough.
    lone = assemble_poses(c, np.arange(1), make_solution([2], [0]), P, min_parts=1)
    np.testing.assert_array_equal(lone[:, 2], np.array([[0, 0, 0.9]], np.float32))
    assert np.isnan(lone[:, [0, 1, 3]]).all()


def test_ties_go_to_the_lower_candidate_whatever_the_node_order() -> None:
    # Scores are exact in float32, so both people total exactly 1.0.
    c = make_candidates([(i, 10 * i) for i in range(6)], [0] * 6, [0.25, 0.5, 0.5, 0.5, 0.75, 0.25])
    # Nodes list candidates out of order: 3 before 1, both labelled 1 in person Y with equal
    # scores (1 wins: the lower candidate, not the earlier node). Person X's lowest candidate
    # (0) loses its part to candidate 4, yet still ranks X before Y (lowest member 1).
    kept = np.array([3, 4, 1, 0, 2, 5])
    sol = make_solution([1, 0, 1, 0, 0, 1], [7, 2, 7, 2, 7, 2])
    kp = assemble_poses(c, kept, sol, P)
    np.testing.assert_array_equal(kp[:, :2, :2], [[[4, 40], [5, 50]], [[2, 20], [1, 10]]])
    np.testing.assert_array_equal(kp[:, :2, 2], [[0.75, 0.25], [0.5, 0.5]])
    # min_score keeps a person whose total equals it, and drops one just below it.
    assert len(assemble_poses(c, kept, sol, P, min_score=1.0)) == 2
    assert len(assemble_poses(c, kept, sol, P, min_score=np.nextafter(1.0, 2.0))) == 0


def test_inconsistent_solutions_are_rejected() -> None:
    c = make_candidates([(0, 0), (1, 1)], [0, 1], [0.5, 0.5])
    with pytest.raises(ValueError, match="one entry per problem node"):
        assemble_poses(c, np.arange(2), make_solution([0, 1, 1], [0, 0, 0]), P)
    with pytest.raises(ValueError, match="one entry per problem node"):
        assemble_poses(c, np.arange(2), make_solution([0, 1], [0]), P)
    with pytest.raises(ValueError, match="labels out of range for 4 parts"):
        assemble_poses(c, np.arange(2), make_solution([0, P], [0, 0]), P)


def truth_frames(count: int = 4) -> list:
    return list(generate_video(3, VIDEO_HW, 2, count, 25.0, VIDEO_HEIGHTS))


@pytest.fixture(scope="module")
def solver() -> FrameSolver:
    return FrameSolver(fitted_pairwise(), MPII14, method="exact", time_limit=5.0)


def test_frame_solver_finds_people_near_the_truth(solver: FrameSolver) -> None:
    rng = np.random.default_rng(1)
    for f in truth_frames():
        cands, _ = candidates_from_truth(
            rng, f.keypoints, f.visible, f.heights, VIDEO_HW, false_positives=(0, 2)
        )
        poses = solver(f.index, f.t, cands)
        assert poses.frame == f.index and poses.pts == f.t
        assert poses.solver["status"] == "optimal" and poses.solver["fallback"] is False
        assert poses.track_id.tolist() == [-1] * poses.num_people
        truth = {"keypoints": f.keypoints, "visible": f.visible}
        # Candidates are jittered by 3 % of the height: a right pose is within ~2 σ of it.
        assert match_error(poses, truth) < 0.1 * VIDEO_HEIGHTS[0]


def test_frame_solver_max_people_keeps_the_best_people(solver: FrameSolver) -> None:
    frame = truth_frames(1)[0]
    candidates, _ = candidates_from_truth(
        np.random.default_rng(0), frame.keypoints, frame.visible, frame.heights, VIDEO_HW
    )
    every = solver(0, 0.0, candidates)
    assert every.num_people >= 2
    one = FrameSolver(fitted_pairwise(), MPII14, method="exact", time_limit=5.0, max_people=1)
    best = one(0, 0.0, candidates)
    assert best.num_people == 1
    np.testing.assert_array_equal(best.keypoints, every.keypoints[:1])
    with pytest.raises(ValueError, match="max_people"):
        FrameSolver(fitted_pairwise(), MPII14, max_people=0)


def test_empty_frame_and_pickle_round_trip(solver: FrameSolver) -> None:
    poses = solver(5, 0.2, Candidates.empty(MPII14.num_parts))
    assert poses.keypoints.shape == (0, MPII14.num_parts, 3)
    copy = pickle.loads(pickle.dumps(solver))
    f = truth_frames(1)[0]
    cands, _ = candidates_from_truth(
        np.random.default_rng(0), f.keypoints, f.visible, f.heights, VIDEO_HW
    )
    np.testing.assert_array_equal(copy(0, 0.0, cands).keypoints, solver(0, 0.0, cands).keypoints)


def test_time_limit_falls_back_to_heuristic_and_flags_it() -> None:
    f = truth_frames(1)[0]
    cands, _ = candidates_from_truth(
        np.random.default_rng(0), f.keypoints, f.visible, f.heights, VIDEO_HW
    )
    tight = FrameSolver(fitted_pairwise(), MPII14, method="exact", time_limit=1e-6)
    poses = tight(0, 0.0, cands)
    assert poses.solver["status"] == "time_limit"
    assert poses.solver["fallback"] is True
    assert poses.solver["used"] in ("exact", "heuristic")
    assert poses.num_people >= 1


def test_solver_error_falls_back_or_propagates(monkeypatch: pytest.MonkeyPatch) -> None:
    real_solve = frame_solver_module.solve

    def broken_exact(problem: Problem, method: str, **kwargs: Any) -> Solution:
        if method == "exact":
            raise RuntimeError("solver crashed")
        return real_solve(problem, method, **kwargs)

    monkeypatch.setattr(frame_solver_module, "solve", broken_exact)
    f = truth_frames(1)[0]
    cands, _ = candidates_from_truth(
        np.random.default_rng(0), f.keypoints, f.visible, f.heights, VIDEO_HW
    )
    poses = FrameSolver(fitted_pairwise(), MPII14, method="exact")(0, 0.0, cands)
    assert poses.solver["status"] == "error" and poses.solver["used"] == "heuristic"
    assert "solver crashed" in poses.solver["error"]
    with pytest.raises(RuntimeError, match="solver crashed"):
        FrameSolver(fitted_pairwise(), MPII14, method="exact", fallback=None)(0, 0.0, cands)


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown solver method"):
        FrameSolver(fitted_pairwise(), MPII14, method="fastest")
    with pytest.raises(ValueError, match="time_limit"):
        FrameSolver(fitted_pairwise(), MPII14, time_limit=0)
