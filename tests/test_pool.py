"""The solver pool: order, Ray/in-process equivalence, actor death, backpressure, live drops."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest
from engine_support import (
    CrashingSolver,
    GatedSolver,
    SlowSolver,
    SlowStartSolver,
    StallingSolver,
    TruthDetector,
    assert_same_poses,
    fitted_pairwise,
    local_ray,
)

from deepercut.data.synthetic import generate_video
from deepercut.engine.actors import _check_reachable
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
    # Resubmitted frames were solved from their own candidates and time stamps.
    direct = [solver(i, t, c) for i, t, c in frames]
    assert_same_poses([p for _, p in out], direct)
    assert [p.pts for _, p in out] == [p.pts for p in direct]


def test_file_mode_blocks_instead_of_dropping(frames, solver) -> None:
    with SolverPool(SlowSolver(solver, 0.05), workers=2, max_in_flight=2) as pool:
        out = run_all(pool, frames)
    assert len(out) == len(frames) and all(p is not None for _, p in out)
    assert pool.stats.max_window <= 2 and pool.stats.dropped == 0
    assert pool.stats.wait_s > 0


def test_live_overload_drops_oldest_pending_and_stays_bounded(frames, solver, tmp_path) -> None:
    # Every solve is held until the gate opens: submissions must return anyway (a blocking
    # submit would wait for a solve that cannot finish), the window and the pending queue stay
    # at their bounds, and the oldest pending frames are dropped. The timer only turns a
    # blocking pool into a failure instead of a hang.
    gate = tmp_path / "gate"
    opener = threading.Timer(60.0, gate.touch)
    opener.start()
    try:
        with SolverPool(
            GatedSolver(solver, gate), workers=2, live=True, max_in_flight=2, max_pending=1
        ) as pool:
            out = []
            for index, pts, cands in frames:
                out += pool.submit(index, pts, cands)
                assert pool.window <= 2 and pool.pending <= 1
            assert not gate.exists() and out == []  # nothing solved: nothing waited for
            # Two frames went to the actors, the newest waits; the rest were dropped.
            assert pool.stats.dropped == len(frames) - 3
            gate.touch()
            out += pool.drain()
            stats = pool.stats
    finally:
        opener.cancel()
    assert [i for i, _ in out] == [i for i, _, _ in frames]
    solved = [i for i, p in out if p is not None]
    assert solved == [frames[0][0], frames[1][0], frames[-1][0]]  # the newest survives
    assert stats.completed == 3 and stats.dropped == len(frames) - 3
    assert stats.max_window <= 2 and stats.max_pending <= 1


def test_reset_starts_a_new_stream_and_may_switch_mode(frames, solver) -> None:
    with SolverPool(solver, workers=0) as pool:
        run_all(pool, frames[:3])
        pool.reset(live=True)
        assert pool.live and pool.stats.accepted == 0
        out = run_all(pool, frames[:2])  # frame indices start over
        assert [i for i, _ in out] == [frames[0][0], frames[1][0]]
        assert pool.stats.accepted == pool.stats.completed == 2
        pool.reset()
        assert pool.live  # unchanged unless given
        pool.reset(live=False)
        assert not pool.live


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
def test_a_replacement_that_starts_slowly_is_not_taken_for_hung(frames, solver, tmp_path) -> None:
    """A replacement imports and compiles before its first frame (for long on a loaded
    machine): its stall clock starts once it has started, so it is not retired as hung."""
    flag = tmp_path / "replacements start slowly"
    slow = SlowStartSolver(solver, flag, delay=4.0)  # twice the stall timeout
    killed = []

    def kill_once(pool: SolverPool, out: list) -> None:
        if len(out) >= 2 and not killed:
            flag.touch()
            killed.append(pool.actors[0])
            ray.kill(pool.actors[0])

    with SolverPool(slow, workers=1, max_in_flight=3, stall_timeout=2.0) as pool:
        out = run_all(pool, frames, kill_once)
        stats = pool.stats
    assert [i for i, _ in out] == [i for i, _, _ in frames]
    assert stats.actor_restarts == 1
    assert stats.solved_in_process == 0  # the replacement solved the rest
    assert stats.completed == len(frames)


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


def test_solver_actors_of_our_own_ray_run_at_the_driver_priority(solver) -> None:
    # Ray's default starts workers 15 nicer than the driver: under load they starve.
    with SolverPool(solver, workers=1) as pool:
        pid = ray.get(pool.actors[0].ready.remote(), timeout=120)
        assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, 0)


def test_unreachable_cluster_addresses_fail_fast() -> None:
    # A listening loopback port passes (plain, ray:// and bracketed IPv6-style hosts); a closed
    # one is a clear error instead of ray.init retrying for minutes; "auto" is left to Ray.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}", f"[127.0.0.1]:{port}"):
            _check_reachable(address)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, not listening: connections are refused
        for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
            with pytest.raises(RuntimeError, match=f"cannot reach the Ray cluster at '{address}'"):
                _check_reachable(address)
    for address in ("auto", "localhost", "127.0.0.1:abc"):
        _check_reachable(address)  # not HOST:PORT: no connection attempted
