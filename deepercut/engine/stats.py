"""What a run of the engine hands back and counts: :class:`FrameResult` per frame,
:class:`EngineStats` for the run."""

from __future__ import annotations

import contextlib
import math
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepercut.detection.dynamic_crop import CropStats
from deepercut.engine.pool import PoolStats
from deepercut.types import Poses

#: Latencies kept for the percentiles (the most recent ones on an endless stream).
LATENCY_WINDOW = 10_000

#: The stages timed in :attr:`EngineStats.stage_s`.
STAGES = ("decode", "detect", "solve", "write")


@dataclass
class FrameResult:
    """One frame's outcome, in frame order.

    Attributes:
        index, pts: the frame.
        poses: its people, or ``None`` when the solver stage dropped it (live overload).
        image: the decoded frame, when :meth:`Engine.run_frames` was asked to keep images.
        latency_s: from the engine receiving the decoded frame to this result.
    """

    index: int
    pts: float
    poses: Poses | None
    image: np.ndarray | None
    latency_s: float


@dataclass
class EngineStats:
    """What a run did; updated while it runs.

    Attributes:
        frames: frames the engine received from the source.
        solved: frames with poses.
        dropped_source: frames the source decoded but dropped before the engine saw them
            (live: the consumer fell behind; or still queued when it was closed).
        skipped_source: source frames lost to damaged data: flagged corrupt, or missing from
            the file's timeline (see :class:`~deepercut.sources.SourceStats`).
        dropped_solver: frames the solver pool dropped (live).
        dropped_stale: frames the engine skipped before detection because newer ones were
            waiting (live); they get no :class:`FrameResult`, like the source's drops.
        people: people found, summed over frames.
        statuses: solver status per frame (``optimal``, ``time_limit``, ``error``...).
        fallbacks: frames whose solve fell back to the heuristic.
        stage_s: seconds per stage: ``decode`` (waiting for decoded frames) and ``detect``
            (the network, or waiting for detector actors) in the detection thread; ``solve``
            (in-process solving, or waiting for the Ray actors) and ``write`` (the caller's
            time per yielded result: sinks, rendering) in the caller's thread. The threads
            overlap, so stages add up to more than the wall time.
        solver_cpu_s: solver time summed over frames and workers.
        wall_s: run time so far.
        latencies: recent per-frame latencies in seconds (at most :data:`LATENCY_WINDOW`).
        pool: the solver pool's counters (restarts, resubmissions, window).
        crop: dynamic cropping's counts (frames cropped / full / fallbacks), when it is on.
    """

    frames: int = 0
    solved: int = 0
    dropped_source: int = 0
    skipped_source: int = 0
    dropped_solver: int = 0
    dropped_stale: int = 0
    people: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    fallbacks: int = 0
    stage_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    solver_cpu_s: float = 0.0
    wall_s: float = 0.0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    pool: PoolStats = field(default_factory=PoolStats)
    crop: CropStats | None = None

    @property
    def dropped(self) -> int:
        return self.dropped_source + self.dropped_solver + self.dropped_stale

    @property
    def fps(self) -> float:
        """Frames handed back per second of wall time."""
        return (self.solved + self.dropped_solver) / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def people_per_frame(self) -> float:
        return self.people / self.solved if self.solved else 0.0

    def latency_ms(self, quantile: float) -> float:
        """A latency percentile (``quantile`` in [0, 1]) in milliseconds (nan before any)."""
        if not self.latencies:
            return math.nan
        return float(np.quantile(np.fromiter(self.latencies, float), quantile) * 1e3)

    def status_line(self) -> str:
        """One line for live progress: fps, latency, drops."""
        return (
            f"{self.fps:5.1f} fps  latency p50 {self.latency_ms(0.5):4.0f} ms "
            f"p99 {self.latency_ms(0.99):4.0f} ms  dropped {self.dropped}"
        )

    def summary(self) -> str:
        """A few lines for the end of a run."""
        total = sum(self.stage_s.values()) or 1.0
        stages = ", ".join(
            f"{name} {s:.1f} s ({100 * s / total:.0f}%)" for name, s in self.stage_s.items()
        )
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items())) or "none"
        pool = self.pool
        faults = (
            f"; actor restarts {pool.actor_restarts}, frames resubmitted {pool.resubmitted}"
            if pool.actor_restarts
            else ""
        )
        if pool.solved_in_process:
            faults += f"; {pool.solved_in_process} frames solved in-process after a Ray failure"
        return "\n".join(
            [
                f"frames {self.frames} (solved {self.solved}, dropped {self.dropped}, "
                f"skipped {self.skipped_source}) in "
                f"{self.wall_s:.1f} s: {self.fps:.1f} fps, {self.people_per_frame:.2f} "
                "people/frame",
                f"latency p50 {self.latency_ms(0.5):.0f} ms, p99 {self.latency_ms(0.99):.0f} ms",
                f"solver: {statuses}; heuristic fallbacks {self.fallbacks}{faults}",
                f"time per stage: {stages}; solver CPU {self.solver_cpu_s:.1f} s",
                *([self.crop.summary()] if self.crop is not None else []),
            ]
        )

    def counts(self) -> dict[str, int]:
        """The run's counters (for a stream footer): frames received, solved and dropped,
        solver errors and fallbacks, actor restarts and frames solved in-process after a Ray
        failure."""
        return {
            "frames": self.frames,
            "solved": self.solved,
            "dropped_source": self.dropped_source,
            "dropped_solver": self.dropped_solver,
            "solver_errors": self.statuses.get("error", 0),
            "fallbacks": self.fallbacks,
            "actor_restarts": self.pool.actor_restarts,
            "solved_in_process": self.pool.solved_in_process,
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready)."""
        return {
            "frames": self.frames,
            "solved": self.solved,
            "dropped_source": self.dropped_source,
            "skipped_source": self.skipped_source,
            "dropped_solver": self.dropped_solver,
            "dropped_stale": self.dropped_stale,
            "people_per_frame": round(self.people_per_frame, 3),
            "statuses": dict(self.statuses),
            "fallbacks": self.fallbacks,
            "stage_s": {k: round(v, 4) for k, v in self.stage_s.items()},
            "solver_cpu_s": round(self.solver_cpu_s, 4),
            "wall_s": round(self.wall_s, 4),
            "fps": round(self.fps, 3),
            "latency_ms": {
                "p50": round(self.latency_ms(0.5), 2),
                "p99": round(self.latency_ms(0.99), 2),
            },
            "pool": self.pool.to_dict(),
            **({"crop": self.crop.to_dict()} if self.crop is not None else {}),
        }

    @contextlib.contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add the time spent in the ``with`` block to ``stage``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stage_s[stage] += time.perf_counter() - started

    def record(self, poses: Poses | None) -> None:
        """Count one frame handed back: solved (its people, solver status, fallback, solver
        time) or dropped by the solver pool (``None``)."""
        if poses is None:
            self.dropped_solver += 1
            return
        self.solved += 1
        self.people += poses.num_people
        self.statuses[poses.solver.get("status", "unknown")] += 1
        self.fallbacks += bool(poses.solver.get("fallback"))
        self.solver_cpu_s += float(poses.solver.get("ms", 0.0)) / 1e3
