"""The solver pool: order, Ray/in-process equivalence, actor death, backpressure, live drops."""

from __future__ import annotations

import time

import pytest
from engine_support import (
    CrashingSolver,
    SlowSolver,
    StallingSolver,
    TruthDetector,
    assert_same_poses,
    fitted_pairwise,
    local_ray,
)

from deepercut.data.synthetic import generate_video
from deepercut.engine.pool import SolverPool
from deepercut.skeleton import MPII14
from deepercut.solvers.frame_solver import FrameSolver
from deepercut.types import Candidates

ray = pytest.importorskip("ray")

NUM_FRAMES = 12


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    with local_ray():
        yield


@pytest.fixture(scope="module")
def frames() -> list[tuple[int, float, Candidates]]:
    """Simulated candidates of a few video frames, indices with gaps (a strided source)."""
    video = list(generate_video(11, (240, 320), 2, NUM_FRAMES, 25.0, (120.0, 200.0)))
    truth = {  # the load_truth form the truth detector reads
        "image_size": [320, 240],
        "frames": [
            {"i": f.index, "keypoints": f.keypoints, "visible": f.visible, "heights": f.heights}
            for f in video
        ],
    }
    detector = TruthDetector(truth)
    return [(3 * f.index + 1, f.t, detector.candidates(f.index)) for f in video]


@pytest.fixture(scope="module")
def solver() -> FrameSolver:
    # The pool does not care how a frame is solved: the fast method keeps this module quick.
    return FrameSolver(fitted_pairwise(), MPII14, method="heuristic")


def run_all(pool: SolverPool, frames, on_result=None) -> list:
    out = []
    for index, pts, cands in frames:
        out += pool.submit(index, pts, cands)
        if on_result:
            on_result(pool, out)
    out += pool.drain()
    return out


def test_in_process_results_in_order_and_equal_to_direct_calls(frames, solver) -> None:
    with SolverPool(solver, workers=0) as pool:
        out = run_all(pool, frames)
    assert [i for i, _ in out] == [i for i, _, _ in frames]
    direct = [solver(i, t, c) for i, t, c in frames]
    assert_same_poses([p for _, p in out], direct)
    assert pool.stats.completed == len(frames) and pool.stats.dropped == 0


def test_ray_workers_give_identical_poses_in_order(frames, solver) -> None:
    with SolverPool(solver, workers=0) as pool:
        reference = [p for _, p in run_all(pool, frames)]
    with SolverPool(solver, workers=2, max_in_flight=6) as pool:
        assert len(pool.actors) == 2
        out = run_all(pool, frames)
        stats = pool.stats
    assert [i for i, _ in out] == [i for i, _, _ in frames]
    assert_same_poses([p for _, p in out], reference)
    assert stats.completed == stats.submitted == len(frames)
    assert stats.max_window <= 6 and stats.resubmitted == 0


def test_killed_actor_loses_and_duplicates_no_frame(frames, solver) -> None:
    killed = []

    def kill_after_three(pool: SolverPool, out: list) -> None:
        if len(out) >= 3 and not killed:
            killed.append(pool.actors[0])
            ray.kill(pool.actors[0])

    with SolverPool(SlowSolver(solver, 0.1), workers=2, max_in_flight=6) as pool:
        out = run_all(pool, frames, kill_after_three)
        stats = pool.stats
        assert killed[0] not in pool.actors
    assert [i for i, _ in out] == [i for i, _, _ in frames]
    assert all(p is not None and p.frame == i for i, p in out)
    assert stats.actor_restarts == 1
    assert stats.resubmitted >= 1  # the killed actor held queued frames
    assert stats.completed == len(frames)


def test_file_mode_blocks_instead_of_dropping(frames, solver) -> None:
    with SolverPool(SlowSolver(solver, 0.05), workers=2, max_in_flight=2) as pool:
        out = run_all(pool, frames)
    assert len(out) == len(frames) and all(p is not None for _, p in out)
    assert pool.stats.max_window <= 2 and pool.stats.dropped == 0
    assert pool.stats.wait_s > 0


def test_live_overload_drops_oldest_pending_and_stays_bounded(frames, solver) -> None:
    # A solver far slower than the frame rate: submissions never block, the window and the
    # pending queue stay at their bounds, and the oldest pending frames are dropped.
    with SolverPool(
        SlowSolver(solver, 0.3), workers=2, live=True, max_in_flight=2, max_pending=1
    ) as pool:
        out = []
        longest = 0.0
        for index, pts, cands in frames:
            started = time.perf_counter()
            out += pool.submit(index, pts, cands)
            longest = max(longest, time.perf_counter() - started)
            assert pool.window <= 2 and pool.pending <= 1
            time.sleep(0.01)  # frames arrive far faster than they are solved
        out += pool.drain()
        stats = pool.stats
    assert longest < 0.25  # never waited for a 0.3 s solve
    assert [i for i, _ in out] == [i for i, _, _ in frames]
    dropped = [i for i, p in out if p is None]
    assert len(dropped) == stats.dropped > 0
    assert stats.completed + stats.dropped == len(frames)
    assert stats.max_window <= 2 and stats.max_pending <= 1
    # The newest frames survive: the last submitted frame is always solved.
    assert out[-1][1] is not None


def test_rejects_out_of_order_submissions(frames, solver) -> None:
    with SolverPool(solver, workers=0) as pool:
        pool.submit(*frames[1])
        with pytest.raises(ValueError, match="increase"):
            pool.submit(*frames[0])


def test_an_actor_that_always_dies_is_given_up_on(frames) -> None:
    with SolverPool(CrashingSolver(), workers=1, max_actor_restarts=1) as pool:
        with pytest.raises(RuntimeError, match="died 2 times; giving up"):
            run_all(pool, frames[:2])
        assert pool.stats.actor_restarts == 1


@pytest.mark.timeout(120)
def test_a_hung_actor_is_retired_and_its_frames_solved_in_process(frames, solver) -> None:
    with SolverPool(solver, workers=0) as pool:
        reference = [p for _, p in run_all(pool, frames)]
    stall_at = frames[3][0]
    hung = StallingSolver(solver, stall_at)
    with SolverPool(hung, workers=2, max_in_flight=4, stall_timeout=2.0) as pool:
        out = run_all(pool, frames)
        stats = pool.stats
    assert [i for i, _ in out] == [i for i, _, _ in frames]  # every frame once, in order
    assert_same_poses([p for _, p in out], reference)
    # The hung actor's frames (the stalled one at least) were solved here, no actor replaced.
    assert stats.solved_in_process >= 1 and stats.resubmitted == stats.solved_in_process
    assert stats.actor_restarts == 0


@pytest.mark.timeout(120)
def test_live_mode_never_waits_on_a_hung_actor(frames, solver) -> None:
    stall_at = frames[0][0]  # the first frame is always dispatched
    hung = StallingSolver(solver, stall_at)
    with SolverPool(hung, workers=1, live=True, stall_timeout=2.0) as pool:
        out = []
        for index, pts, cands in frames:
            out += pool.submit(index, pts, cands)
        while pool.window or pool.pending:  # polling only: live mode never blocks
            out += pool.poll()
            time.sleep(0.05)
        stats = pool.stats
    assert [i for i, _ in out] == [i for i, _, _ in frames]  # every frame once, in order
    assert out[0][1] is not None and stats.solved_in_process >= 1
    assert_same_poses([out[0][1]], [solver(*frames[0])])
