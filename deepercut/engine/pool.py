"""The solver stage: frames' candidates in, poses out, strictly in frame order.

:class:`SolverPool` runs a frame solver either in-process (``workers=0``, no Ray import) or in
``N`` Ray actors that each build the solver once. The driver submits ``(index, pts,
Candidates)``; the pool keeps a bounded **window** of frames (dispatched to an actor and not yet
handed back), **re-orders** results by frame index, and applies **backpressure**:

- *file mode* (``live=False``): :meth:`SolverPool.submit` blocks while the window is full, so
  a fast decoder/detector waits for the solvers and nothing is lost;
- *live mode* (``live=True``): :meth:`SolverPool.submit` never blocks; frames wait in a short
  pending queue and, when it overflows, the *oldest* pending frame is dropped (counted), so the
  freshest frames are solved and latency stays bounded.

Every accepted frame comes back exactly once, in order, as ``(index, Poses)`` or ``(index,
None)`` when it was dropped.

**Faults.** The pool tracks which frames each actor holds. When an actor dies
(:class:`ray.exceptions.RayActorError`: killed, crashed, node lost), a fresh actor takes its
place and its frames are resubmitted; results are keyed by frame index and each index is handed
back once, so no frame is lost or duplicated. After ``max_actor_restarts`` replacements the pool
gives up with a :class:`RuntimeError` (an actor that cannot even start, e.g. a node without
``deepercut`` installed, would otherwise loop forever).

**Never hang.** The driver never waits on Ray without a timeout: while it waits for results it
checks, every :data:`HEALTH_INTERVAL_S`, that the actors' Ray nodes are alive and that every
actor holding frames made progress within ``stall_timeout`` seconds (a replacement's clock
starts once it has started: importing and compiling on a loaded machine is not a stall; one
that does not start within ``startup_timeout`` is retired). An actor that is hung, or
whose node died (e.g. its raylet was killed: new actors would never start there), is killed and
retired, and its frames are solved in this process, with one warning line; once no actor is
left, every further frame is solved here too (:attr:`PoolStats.solved_in_process`).

Dispatch goes to the least-loaded actor (fewest frames held), ties to the lowest slot.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from deepercut.engine.actors import (
    HEALTH_INTERVAL_S,
    connect_ray,
    dead_ray_nodes,
    import_ray,
    node_id,
    replace_actor,
)
from deepercut.types import Candidates, Poses

log = logging.getLogger(__name__)

#: A frame solver: ``(index, pts, candidates) -> Poses`` (e.g. a
#: :class:`~deepercut.solvers.frame_solver.FrameSolver`; must pickle for Ray).
SolveFn = Callable[[int, float, Candidates], Poses]

#: One output of the pool: a frame index and its poses (``None`` = dropped in live mode).
Result = tuple[int, Poses | None]


@dataclass
class PoolStats:
    """Counters of a :class:`SolverPool`.

    Attributes:
        accepted: frames passed to :meth:`~SolverPool.submit`.
        submitted: frames dispatched to a worker for the first time.
        completed: frames solved.
        resubmitted: frames dispatched again after their actor died.
        actor_restarts: actors replaced.
        dropped: frames dropped from the pending queue (live mode).
        solve_s: solver time summed over frames (worker side, all workers).
        wait_s: time the driver spent blocked on the pool (backpressure or draining).
        max_window: most frames dispatched and not yet handed back at any time.
        max_pending: most frames waiting to be dispatched at any time.
        solved_in_process: frames solved in the driver after their actor hung or its node
            died.
    """

    accepted: int = 0
    submitted: int = 0
    completed: int = 0
    resubmitted: int = 0
    actor_restarts: int = 0
    dropped: int = 0
    solve_s: float = 0.0
    wait_s: float = 0.0
    max_window: int = 0
    max_pending: int = 0
    solved_in_process: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SolverPool:
    """Solve frames in parallel, hand them back in order (see the module docstring).

    Args:
        solver: the frame solver (pickled once per actor when ``workers > 0``).
        workers: ``0`` = in-process; ``N`` = ``N`` Ray actors.
        max_in_flight: window size; default ``3 × workers`` (``1`` in-process).
        live: drop instead of blocking when the window is full.
        max_pending: live mode's pending queue length; default ``max(1, workers)``.
        ray_address: connect to this cluster (``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``);
            without it a local Ray is started with ``num_cpus=workers``. An already initialised
            Ray (``ray.init`` by the caller) is reused either way and left running.
        actor_cpus: CPUs reserved per actor (a solve uses one core).
        log_to_driver: forward the actors' stdout/stderr to this process.
        max_actor_restarts: replacements allowed before giving up; default ``2 × workers + 2``.
        startup_timeout: seconds to wait for the actors, and for each replacement, to start (a
            cluster without enough free CPUs would otherwise hang).
        stall_timeout: seconds an actor holding frames may go without finishing one before it
            counts as hung (see the module docstring); more than a frame's solve can take.
        ray_init_kwargs: extra ``ray.init`` arguments (e.g. ``runtime_env``).
    """

    def __init__(
        self,
        solver: SolveFn,
        workers: int = 0,
        *,
        max_in_flight: int | None = None,
        live: bool = False,
        max_pending: int | None = None,
        ray_address: str | None = None,
        actor_cpus: float = 1.0,
        log_to_driver: bool = False,
        max_actor_restarts: int | None = None,
        startup_timeout: float = 120.0,
        stall_timeout: float = 30.0,
        ray_init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.workers = workers
        self.live = live
        self.max_in_flight = max_in_flight or max(1, 3 * workers)
        self.max_pending = max_pending or max(1, workers)
        if self.max_in_flight < 1 or self.max_pending < 1:
            raise ValueError("max_in_flight and max_pending must be >= 1")
        self.stats = PoolStats()
        self._order: deque[int] = deque()  # accepted, not yet handed back, in frame order
        self._pending: deque[tuple[int, float, Candidates]] = deque()
        self._done: dict[int, Poses | None] = {}
        self._last_index: int | None = None
        self._window = 0
        self._backend: _InProcess | _RayActors
        if workers == 0:
            self._backend = _InProcess(solver)
        else:
            self._backend = _RayActors(
                solver,
                workers,
                ray_address=ray_address,
                actor_cpus=actor_cpus,
                log_to_driver=log_to_driver,
                max_restarts=(
                    2 * workers + 2 if max_actor_restarts is None else max_actor_restarts
                ),
                startup_timeout=startup_timeout,
                stall_timeout=stall_timeout,
                ray_init_kwargs=ray_init_kwargs or {},
                stats=self.stats,
            )

    # ------------------------------------------------------------------ public API

    @property
    def window(self) -> int:
        """Frames dispatched and not yet handed back (solving, or solved and waiting for an
        earlier frame)."""
        return self._window

    @property
    def pending(self) -> int:
        """Frames accepted but not yet dispatched."""
        return len(self._pending)

    @property
    def actors(self) -> list[Any]:
        """The live Ray actor handles (empty in-process); e.g. to kill one in a test."""
        return list(self._backend.actors)

    def reset(self, live: bool | None = None) -> None:
        """Start a new stream (frame indices may start over, counters restart), optionally
        switching mode.

        Raises:
            RuntimeError: frames of the previous stream are still unfinished.
        """
        if self._order:
            raise RuntimeError(f"{len(self._order)} frames of the previous stream are unfinished")
        self._last_index = None
        self.stats = self._backend.stats = PoolStats()
        if live is not None:
            self.live = live

    def submit(self, index: int, pts: float, candidates: Candidates) -> list[Result]:
        """Accept a frame; returns the results that are now ready, in order.

        Frame indices must increase. In file mode this blocks while the window is full; in
        live mode it never blocks and may drop the oldest pending frame.
        """
        if self._last_index is not None and index <= self._last_index:
            raise ValueError(f"frame indices must increase: {index} after {self._last_index}")
        self._last_index = index
        self.stats.accepted += 1
        self._collect(block=False)
        self._order.append(index)
        self._pending.append((index, pts, candidates))
        self._dispatch()
        out: list[Result] = []
        if self.live:
            while len(self._pending) > self.max_pending:
                dropped, _, _ = self._pending.popleft()
                self._done[dropped] = None
                self.stats.dropped += 1
        else:
            while self._pending:
                self._emit(out)
                if self._pending and self.window >= self.max_in_flight:
                    self._collect(block=True)
                self._dispatch()
        self.stats.max_pending = max(self.stats.max_pending, len(self._pending))
        self._emit(out)
        return out

    def poll(self) -> list[Result]:
        """Results ready now, in order (never blocks)."""
        self._collect(block=False)
        self._dispatch()
        out: list[Result] = []
        self._emit(out)
        return out

    def drain(self) -> Iterator[Result]:
        """Solve everything accepted (pending frames too, even in live mode) and yield the
        results in order."""
        while self._order:
            out: list[Result] = []
            self._emit(out)
            yield from out
            if self._order:
                self._dispatch()
                if self._order[0] not in self._done:
                    self._collect(block=True)

    def discard(self) -> None:
        """Forget every unfinished frame (an abandoned stream); the pool stays usable.

        Actors finish the tasks they already hold, but their results are ignored.
        """
        self._order.clear()
        self._pending.clear()
        self._done.clear()
        self._window = 0
        self._backend.discard()

    def close(self) -> None:
        """Stop the actors (and the local Ray this pool started). Unfinished frames are lost."""
        self._backend.close()

    def __enter__(self) -> SolverPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _dispatch(self) -> None:
        while self._pending and self.window < self.max_in_flight:
            index, pts, candidates = self._pending.popleft()
            self.stats.submitted += 1
            self._window += 1
            self._backend.dispatch(index, pts, candidates)
            self.stats.max_window = max(self.stats.max_window, self.window)
            if isinstance(self._backend, _InProcess):
                self._collect(block=False)

    def _collect(self, block: bool) -> None:
        started = time.perf_counter()
        for index, poses in self._backend.collect(block):
            self._done[index] = poses
            self.stats.completed += 1
            self.stats.solve_s += float(poses.solver.get("ms", 0.0)) / 1e3
        if block:
            self.stats.wait_s += time.perf_counter() - started

    def _emit(self, out: list[Result]) -> None:
        while self._order and self._order[0] in self._done:
            index = self._order.popleft()
            poses = self._done.pop(index)
            if poses is not None:
                self._window -= 1
            out.append((index, poses))


class _InProcess:
    """Solves synchronously in the caller's thread."""

    actors: tuple[Any, ...] = ()

    def __init__(self, solver: SolveFn) -> None:
        self._solver = solver
        self.stats = PoolStats()
        self._ready: list[tuple[int, Poses]] = []

    def dispatch(self, index: int, pts: float, candidates: Candidates) -> None:
        self._ready.append((index, self._solver(index, pts, candidates)))

    def collect(self, block: bool) -> list[tuple[int, Poses]]:
        ready, self._ready = self._ready, []
        return ready

    def discard(self) -> None:
        self._ready.clear()

    def close(self) -> None:
        pass


class _SolverActor:
    """A Ray actor holding one frame solver, built once."""

    def __init__(self, solver: SolveFn) -> None:
        self._solver = solver

    def ready(self) -> int:
        return os.getpid()

    def node(self) -> str:
        """The id of the Ray node this actor runs on."""
        return node_id()

    def solve(self, index: int, pts: float, candidates: Candidates) -> Poses:
        return self._solver(index, pts, candidates)


class _RayActors:
    """``N`` solver actors with per-actor bookkeeping of the frames they hold."""

    def __init__(
        self,
        solver: SolveFn,
        workers: int,
        *,
        ray_address: str | None,
        actor_cpus: float,
        log_to_driver: bool,
        max_restarts: int,
        startup_timeout: float,
        stall_timeout: float,
        ray_init_kwargs: dict[str, Any],
        stats: PoolStats,
    ) -> None:
        self._ray = ray = import_ray(f"workers={workers}")
        self.stats = stats
        self._max_restarts = max_restarts
        self._solver = solver  # the in-process fallback
        self._stall_timeout = stall_timeout
        self._startup_timeout = startup_timeout
        # Replacements still starting: slot → (their ready() ref, when they were made). A new
        # actor imports and compiles before its first frame; that is not a stall.
        self._starting: dict[int, tuple[Any, float]] = {}
        self._local: list[tuple[int, Poses]] = []  # solved here, not yet collected
        self._retired: set[int] = set()
        self._progress = [time.monotonic()] * workers  # per slot: last result, or when busy
        self._nodes: list[str | None] = [None] * workers
        self._checked = time.monotonic()  # last health check
        self._started_ray = connect_ray(
            ray_address,
            num_cpus=max(1, round(workers * actor_cpus)),
            log_to_driver=log_to_driver,
            ray_init_kwargs=ray_init_kwargs,
        )
        self._actor_class = ray.remote(num_cpus=actor_cpus, max_restarts=0)(_SolverActor)
        # By value, not ray.put: Ray kills a driver whose put object is lost with its node
        # (a frame solver pickles to ~14 kB, under Ray's inline limit of 100 kB).
        self.actors: list[Any] = [self._actor_class.remote(solver) for _ in range(workers)]
        # held[slot]: frame index → (task ref, pts, candidates), kept for resubmission.
        self._held: list[dict[int, tuple[Any, float, Candidates]]] = [{} for _ in range(workers)]
        self._owner: dict[Any, tuple[int, int]] = {}  # task ref → (slot, frame index)
        self._wait_ready(self.actors, startup_timeout)

    def _wait_ready(self, actors: list[Any], timeout: float) -> None:
        refs = [a.ready.remote() for a in actors]
        ready, missing = self._ray.wait(refs, num_returns=len(refs), timeout=timeout)
        if missing:
            cpus = self._ray.available_resources().get("CPU", 0.0)
            self.close()
            raise RuntimeError(
                f"{len(missing)} of {len(refs)} solver actors did not start within {timeout:g} s "
                f"(free CPUs in the Ray cluster: {cpus:g}); use fewer --workers or a bigger "
                "cluster"
            )
        try:
            self._ray.get(ready, timeout=timeout)
            self._nodes = self._ray.get([a.node.remote() for a in actors], timeout=timeout)
        except self._ray.exceptions.RayActorError as exc:
            self.close()
            raise RuntimeError(f"solver actors failed to start: {exc}") from exc

    def dispatch(self, index: int, pts: float, candidates: Candidates) -> None:
        live = [s for s in range(len(self.actors)) if s not in self._retired]
        if not live:
            self._solve_here(index, pts, candidates)
            return
        slot = min(live, key=lambda s: len(self._held[s]))
        if not self._held[slot]:
            self._progress[slot] = time.monotonic()  # idle until now: not a stall
        ref = self.actors[slot].solve.remote(index, pts, candidates)
        self._held[slot][index] = (ref, pts, candidates)
        self._owner[ref] = (slot, index)

    def _solve_here(self, index: int, pts: float, candidates: Candidates) -> None:
        self._local.append((index, self._solver(index, pts, candidates)))
        self.stats.solved_in_process += 1

    def collect(self, block: bool) -> list[tuple[int, Poses]]:
        """Finished frames as ``(index, poses)``; replaces dead actors and retires hung ones
        on the way. Blocking waits at most until one frame is done (or solved here)."""
        results, self._local = self._local, []
        if not self._owner:
            return results
        refs = list(self._owner)
        if block and not results:
            while not self._ray.wait(refs, num_returns=1, timeout=HEALTH_INTERVAL_S)[0]:
                self._check_health()
                if self._local or not self._owner:
                    results, self._local = self._local, []
                    return results
                refs = list(self._owner)
        ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
        dead: dict[int, BaseException] = {}
        for ref in ready:
            slot, index = self._owner[ref]
            try:
                poses = self._ray.get(ref, timeout=HEALTH_INTERVAL_S)
            except self._ray.exceptions.RayActorError as exc:
                dead[slot] = exc
                continue
            del self._owner[ref]
            del self._held[slot][index]
            self._progress[slot] = time.monotonic()
            results.append((index, poses))
        for slot, exc in dead.items():
            self._replace(slot, exc)
        # Live mode never blocks: without this, a hung actor would hold back every later frame.
        if not block and self._owner and time.monotonic() - self._checked >= HEALTH_INTERVAL_S:
            self._check_health()
        results += self._local
        self._local = []
        return results

    def _dead_nodes(self) -> set[str | None]:
        return dead_ray_nodes(self._ray, self._nodes)

    def _check_health(self) -> None:
        """Retire actors whose node died or that made no progress for ``stall_timeout``."""
        self._checked = time.monotonic()
        dead_nodes = self._dead_nodes()
        now = time.monotonic()
        for slot in range(len(self.actors)):
            if slot in self._retired or not self._held[slot]:
                continue
            if self._nodes[slot] in dead_nodes:
                self._retire(slot, "lost its Ray node")
            elif self._still_starting(slot, now):
                self._progress[slot] = now  # the stall clock starts once it is ready
            elif now - self._progress[slot] > self._stall_timeout:
                self._retire(slot, f"finished no frame in {self._stall_timeout:g} s (hung)")

    def _still_starting(self, slot: int, now: float) -> bool:
        """Whether the replacement in ``slot`` is still starting (within the startup timeout;
        past it, it is retired as one that did not start)."""
        if slot not in self._starting:
            return False
        ref, since = self._starting[slot]
        ready, _ = self._ray.wait([ref], timeout=0)
        if ready:
            del self._starting[slot]
            return False
        if now - since > self._startup_timeout:
            del self._starting[slot]
            self._retire(slot, f"did not start within {self._startup_timeout:g} s")
        return True

    def _retire(self, slot: int, why: str) -> None:
        """Kill the actor in ``slot`` for good and solve its frames here."""
        self._retired.add(slot)
        lost, self._held[slot] = self._held[slot], {}
        for ref in [r for r, (s, _) in self._owner.items() if s == slot]:
            del self._owner[ref]
        with contextlib.suppress(Exception):  # its node may be gone already
            self._ray.kill(self.actors[slot], no_restart=True)
        rest = (
            "; no actor left: solving every further frame in this process"
            if len(self._retired) == len(self.actors)
            else ""
        )
        log.warning(
            "solver actor %d %s: solving its %d frames here%s",
            slot,
            why,
            len(lost),
            rest,
        )
        for index, (_, pts, candidates) in sorted(lost.items()):
            self.stats.resubmitted += 1
            self._solve_here(index, pts, candidates)

    def discard(self) -> None:
        self._held = [{} for _ in self.actors]
        self._owner.clear()
        self._local.clear()

    def _replace(self, slot: int, cause: BaseException) -> None:
        """A new actor in ``slot``; the frames the dead one held go out again."""
        stats = self.stats
        lost = self._held[slot]
        replaced = replace_actor(
            self._ray,
            self.actors,
            self._nodes,
            slot,
            cause,
            kind="solver",
            restarts=stats.actor_restarts,
            max_restarts=self._max_restarts,
            make=lambda: self._actor_class.remote(self._solver),
            detail=f" and resubmitting {len(lost)} frames",
        )
        if not replaced:
            self._retire(slot, "lost its Ray node")
            return
        stats.actor_restarts += 1
        self._starting[slot] = (self.actors[slot].ready.remote(), time.monotonic())
        self._held[slot] = {}
        for ref in [r for r, (s, _) in self._owner.items() if s == slot]:
            del self._owner[ref]
        for index, (_, pts, candidates) in sorted(lost.items()):
            stats.resubmitted += 1
            self.dispatch(index, pts, candidates)

    def close(self) -> None:
        for actor in self.actors:
            with contextlib.suppress(Exception):  # a lost node's actors are gone already
                self._ray.kill(actor, no_restart=True)
        self.actors = []
        if self._started_ray:
            self._ray.shutdown()
            self._started_ray = False
