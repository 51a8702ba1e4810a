"""The streaming engine: frames in, poses out, strictly in frame order.

::

    Source ──▶ prefetch ──▶ Batcher + Detector ──▶ SolverPool ──────▶ in-order results
    (decoder    thread       (detection thread:      (caller's thread;    (caller's thread)
     thread)                  GPU when present)       in-process or Ray)

The source decodes in its own thread; a prefetch thread hands frames over so a live batch can
close on time (``max_batch_wait`` after its first frame) even when no further frame comes.
File batches are always full (but the last): the same frames are batched together on every
run, so results are reproducible (a network's float results depend slightly on the batch).
Detection runs batched in a thread of the driver, so the caller's thread keeps collecting and
handing back solved frames meanwhile; only the compact per-frame
:class:`~deepercut.types.Candidates` go on to the solver pool, which keeps a bounded window,
re-orders and applies backpressure (see :mod:`deepercut.engine.pool`). With
``detector_actors``, video files are detected by Ray actors instead
(:mod:`deepercut.engine.sharded`).

Modes: in *file mode* nothing is dropped: a slow solver stage blocks the driver, which stops
reading, and the source's decoder waits. In *live mode* (cameras, streams, ``realtime`` files)
the source drops its oldest queued frame when the driver falls behind, and the pool drops its
oldest pending frame when the solvers fall behind; both are counted in :class:`EngineStats`.

Identities: the solved frames leave the pool in frame order and only then go through the
online tracker (:mod:`deepercut.engine.tracking`, ``track``) and the optional One-Euro smoother
(:mod:`deepercut.engine.smoothing`, ``smooth``), in the caller's thread, so track ids are the
same whatever order the workers finished in. ``temporal=K`` instead decides identities inside
the solve (:mod:`deepercut.solvers.temporal`): each frame's multicut links its candidates to
the people of the previous ``K`` frames, so a frame's solve needs its predecessor's result.
That solve runs in the driver, in frame order (the pool in-process, ``workers`` then only
sizes a Ray for detector actors): solving is serialised, which caps throughput at one solve
at a time (see ``benchmarks/results/tracking.md`` for its cost per frame).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from deepercut.engine.assemble import DEFAULT_MIN_PARTS
from deepercut.engine.backend import NetworkDetector
from deepercut.engine.frame_solver import FrameSolver
from deepercut.engine.pool import PoolStats, Result, SolverPool, connect_ray
from deepercut.engine.smoothing import OneEuroConfig, OneEuroSmoother
from deepercut.engine.sources import open_source
from deepercut.engine.tracking import PoseTracker, TrackerConfig

if TYPE_CHECKING:
    from deepercut.engine.sharded import ShardedDetector
    from deepercut.model.temporal import TemporalModel
from deepercut.model.candidates import CandidateParams
from deepercut.model.io import Model, load_model
from deepercut.types import Candidates, Frame, Poses

#: A detector: frames (index, pts, image) → their candidates in image pixels. The default wraps
#: the model's network; tests pass e.g. a detector that simulates candidates from ground truth.
Detector = Callable[[Sequence[Frame]], list[Candidates]]

#: What :meth:`Engine.run` reads: a source spec (file, folder, camera, URL), an opened
#: :class:`~deepercut.engine.sources.Source`, or any iterable of frames with increasing indices.
SourceLike = str | int | os.PathLike[str] | Iterable[Frame]

#: Latencies kept for the percentiles (the most recent ones on an endless stream).
LATENCY_WINDOW = 10_000

#: Decoded frames buffered ahead of the engine for file sources.
FILE_QUEUE_SIZE = 32

#: A detected frame on its way to the solvers: index, pts, time received, image (kept for
#: rendering, else None), candidates.
_Detected = tuple[int, float, float, "np.ndarray | None", Candidates]

_STAGES = ("decode", "detect", "solve", "write")
_POLL_S = 0.01  # how often the driver collects finished frames while it waits for new ones


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
        dropped_source: frames the source dropped before the engine saw them (live).
        dropped_solver: frames the solver pool dropped (live).
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
    """

    frames: int = 0
    solved: int = 0
    dropped_source: int = 0
    dropped_solver: int = 0
    people: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    fallbacks: int = 0
    stage_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_STAGES, 0.0))
    solver_cpu_s: float = 0.0
    wall_s: float = 0.0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    pool: PoolStats = field(default_factory=PoolStats)

    @property
    def dropped(self) -> int:
        return self.dropped_source + self.dropped_solver

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
                f"frames {self.frames} (solved {self.solved}, dropped {self.dropped}) in "
                f"{self.wall_s:.1f} s: {self.fps:.1f} fps, {self.people_per_frame:.2f} "
                "people/frame",
                f"latency p50 {self.latency_ms(0.5):.0f} ms, p99 {self.latency_ms(0.99):.0f} ms",
                f"solver: {statuses}; heuristic fallbacks {self.fallbacks}{faults}",
                f"time per stage: {stages}; solver CPU {self.solver_cpu_s:.1f} s",
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
            "dropped_solver": self.dropped_solver,
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
        }


def source_queue_size(
    spec: str | int | os.PathLike[str], live: bool | None, realtime: bool | float, batch_size: int
) -> int:
    """Decoded frames to buffer ahead of the engine: a deep queue for files (smooths decoding);
    one batch for live sources, whose queued frames all add latency before any is dropped.

    A spec that is not an existing path is a camera or stream (live by default).
    """
    live_source = live or realtime is not False or not _exists(spec)
    return batch_size if live_source and live is not False else FILE_QUEUE_SIZE


def _is_file(spec: str | int | os.PathLike[str]) -> bool:
    return not isinstance(spec, int) and Path(spec).is_file()


def _exists(spec: str | int | os.PathLike[str]) -> bool:
    return not isinstance(spec, int) and Path(spec).exists()


class Engine:
    """Multi-person pose estimation on a stream of frames.

    A context manager: ``with Engine(...) as engine: for poses in engine.run("video.mp4"):``.
    Ray actors (``workers > 0``) start on entry (or on the first run) and stop on exit.

    Args:
        model: a :class:`~deepercut.model.io.Model`, a checkpoint path, or ``None`` for the
            bundled model. It must hold a pairwise model.
        solver: ``3stage`` (DeeperCut), ``2stage``, ``exact``, ``heuristic`` or ``deepcut``.
        workers: solver processes: ``0`` = in the driver, ``N`` = ``N`` Ray actors.
        ray_address: a Ray cluster to use (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``);
            default: a local Ray started with ``workers`` CPUs.
        backend: detector backend, ``auto``, ``tensorrt``, ``compile`` or ``eager`` (see
            :func:`~deepercut.engine.backend.select_backend`).
        device: ``cuda`` when available, else ``cpu``.
        batch_size: frames per detector batch.
        max_batch_wait: live mode: seconds a batch waits for more frames after its first
            (file mode always fills batches).
        live: drop instead of waiting under overload; default: the source's own mode.
        precision: detector precision, ``fp16`` or ``fp32``; default FP16 on CUDA, FP32 on
            the CPU.
        input_hw: network input size (multiples of 16); default: the model's.
        time_limit: seconds per frame's solve before falling back to ``fallback``.
        fallback: method used when a solve hits its time limit or fails.
        max_candidates: candidates kept per frame (highest scores).
        min_parts: fewest parts a reported person has.
        max_people: at most this many people per frame, the highest-scoring (``None``: all;
            1 for a single-animal project).
        max_in_flight: solver window; default ``3 × workers``.
        candidate_params: candidate extraction settings of the default detector.
        detector: replaces the network (``frames → candidates``); the model then only
            provides the skeleton and the pairwise model.
        detector_actors: detect video files in this many Ray actors instead of the driver
            (keyframe-aligned chunks, merged in order; see :mod:`deepercut.engine.sharded`).
            Used for file sources in file mode without ``keep_images``; others are detected
            in the driver.
        detector_gpus: GPUs per detector actor; default 1 when the cluster has GPUs, else 0.
        chunk_frames: about this many frames per detector actor chunk.
        log_to_driver: show the Ray actors' output.
        ray_init_kwargs: extra ``ray.init`` arguments (e.g. a ``runtime_env`` for a cluster).
        track: give people a ``track_id`` with the online tracker (a :class:`TrackerConfig`
            for its settings); ``False``: ids stay −1.
        smooth: One-Euro smoothing of tracked keypoints (an :class:`OneEuroConfig` for its
            settings); off by default.
        temporal: ``K > 0``: temporal multicut over the previous ``K`` frames' people instead
            of the online tracker (solved in the driver, in frame order; see the module
            docstring).
        temporal_model: the temporal cost model (a
            :class:`~deepercut.model.temporal.TemporalModel` or an ``.npz`` path); default:
            the bundled one.
    """

    def __init__(
        self,
        model: Model | str | os.PathLike[str] | None = None,
        *,
        solver: str = "3stage",
        workers: int = 0,
        ray_address: str | None = None,
        backend: str = "auto",
        device: str | torch.device | None = None,
        precision: str | None = None,
        batch_size: int = 8,
        max_batch_wait: float = 0.05,
        live: bool | None = None,
        input_hw: tuple[int, int] | None = None,
        time_limit: float = 1.0,
        fallback: str | None = "heuristic",
        max_candidates: int = 150,
        min_parts: int = DEFAULT_MIN_PARTS,
        max_people: int | None = None,
        max_in_flight: int | None = None,
        candidate_params: CandidateParams | None = None,
        detector: Detector | None = None,
        detector_actors: int = 0,
        detector_gpus: float | None = None,
        chunk_frames: int = 64,
        log_to_driver: bool = False,
        ray_init_kwargs: dict[str, Any] | None = None,
        track: bool | TrackerConfig = True,
        smooth: bool | OneEuroConfig = False,
        temporal: int = 0,
        temporal_model: TemporalModel | str | os.PathLike[str] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_batch_wait < 0:
            raise ValueError(f"max_batch_wait must be >= 0, got {max_batch_wait}")
        if ray_address and workers == 0 and detector_actors == 0:
            raise ValueError("a Ray address needs workers >= 1 (workers=0 solves in-process)")
        self.model = model if isinstance(model, Model) else load_model(model)
        self.model_path = None if isinstance(model, Model) or model is None else str(model)
        self.skeleton = self.model.skeleton
        self.frame_solver = FrameSolver(
            self.model.pairwise_model(),
            self.skeleton,
            method=solver,
            time_limit=time_limit,
            fallback=fallback,
            max_candidates=max_candidates,
            min_parts=min_parts,
            max_people=max_people,
        )
        if temporal < 0:
            raise ValueError(f"temporal must be >= 0 frames, got {temporal}")
        self.temporal = temporal
        self._solve_fn: Any = self.frame_solver
        if temporal:
            from deepercut.solvers.temporal import TemporalFrameSolver

            self._solve_fn = TemporalFrameSolver(self.frame_solver, temporal, temporal_model)
        self.tracker_config = (
            None
            if temporal or track is False
            else (track if isinstance(track, TrackerConfig) else TrackerConfig())
        )
        self.smooth_config = (
            None
            if smooth is False
            else (smooth if isinstance(smooth, OneEuroConfig) else OneEuroConfig())
        )
        self.batch_size = batch_size
        self.max_batch_wait = max_batch_wait
        self.live = live
        self.workers = 0 if temporal else workers  # the temporal solve runs in the driver
        self.max_in_flight = max_in_flight
        self.detector_actors = detector_actors
        self._ray_args: dict[str, Any] = {
            "address": ray_address,
            "log_to_driver": log_to_driver,
            "ray_init_kwargs": ray_init_kwargs,
        }
        self._sharded_args: dict[str, Any] = {
            "actors": detector_actors,
            "gpus_per_actor": detector_gpus,
            "chunk_frames": chunk_frames,
            "detector": detector,
            "options": {
                "input_hw": input_hw,
                "params": candidate_params,
                "backend": backend,
                "batch_size": batch_size,
            },
        }
        self._pool: SolverPool | None = None
        self._sharded: ShardedDetector | None = None
        self._owns_ray = False
        self.stats = EngineStats()
        if detector is None:
            network = NetworkDetector(
                self.model,
                input_hw=input_hw,
                params=candidate_params,
                device=device,
                backend=backend,
                batch_size=batch_size,
                precision=precision,
            )
            self.detector: Detector = network
            self.backend, self.backend_reason = network.backend, network.reason
            self.device, self.input_hw = network.device, network.input_hw
        else:
            self.detector = detector
            self.backend, self.backend_reason = "custom", "detector given"
            self.device = torch.device("cpu")
            self.input_hw = tuple(input_hw or self.model.input_hw)

    # ------------------------------------------------------------------ lifetime

    @property
    def pool(self) -> SolverPool:
        """The solver pool (started, with the detector actors, on first use)."""
        if self._pool is None:
            self._start()
        assert self._pool is not None
        return self._pool

    def _start(self) -> None:
        if self._pool is not None:
            return
        if self.workers or self.detector_actors:
            # One Ray for the solver and the detector actors (a local one has room for both).
            self._owns_ray = connect_ray(
                num_cpus=self.workers + self.detector_actors, **self._ray_args
            )
        self._pool = SolverPool(
            self._solve_fn,
            workers=self.workers,
            max_in_flight=self.max_in_flight,
            # An actor silent for this long is hung: far beyond a solve's time limit.
            stall_timeout=max(15.0, 5 * self.frame_solver.time_limit + 5),
        )
        if self.detector_actors:
            from deepercut.engine.sharded import ShardedDetector

            self._sharded = ShardedDetector(self.model, **self._sharded_args)

    def close(self) -> None:
        """Stop the solver pool, the detector actors and a Ray started for them."""
        if self._sharded is not None:
            self._sharded.close()
            self._sharded = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._owns_ray:
            import ray

            ray.shutdown()
            self._owns_ray = False

    def __enter__(self) -> Engine:
        self._start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def info(self) -> dict[str, Any]:
        """The model and settings, for stream headers."""
        return {
            "path": self.model_path or "bundled",
            "input_hw": list(self.input_hw),
            "backend": self.backend,
            "device": str(self.device),
            "solver": self.frame_solver.method,
            "time_limit": self.frame_solver.time_limit,
            "workers": self.workers,
            "detector_actors": self.detector_actors,
            "tracking": self.tracking_info(),
            "meta": self.model.meta,
        }

    def tracking_info(self) -> dict[str, Any]:
        """How identities and smoothing are done, for stream headers."""
        if self.temporal:
            mode: dict[str, Any] = {"mode": "temporal", "frames": self.temporal}
        elif self.tracker_config is not None:
            mode = {"mode": "online", **self.tracker_config.to_dict()}
        else:
            mode = {"mode": "none"}
        if self.smooth_config is not None:
            mode["smoothing"] = {"one_euro": dataclasses.asdict(self.smooth_config)}
        return mode

    # ------------------------------------------------------------------ running

    def run(self, source: SourceLike, **options: Any) -> Iterator[Poses]:
        """Poses of every solved frame, strictly in frame order.

        ``source`` and ``options`` as in :meth:`run_frames`; frames dropped in live mode are
        skipped (``stats`` counts them).
        """
        for result in self.run_frames(source, **options):
            if result.poses is not None:
                yield result.poses

    def run_frames(
        self,
        source: SourceLike,
        *,
        start: int = 0,
        stop: int | None = None,
        stride: int = 1,
        max_frames: int | None = None,
        realtime: bool | float = False,
        keep_images: bool = False,
    ) -> Iterator[FrameResult]:
        """A :class:`FrameResult` for every frame the engine receives, in frame order.

        Args:
            source: a spec for :func:`~deepercut.engine.sources.open_source` (opened and
                closed here, with ``start``, ``stop``, ``stride``, ``max_frames``,
                ``realtime``), an opened source, or an iterable of frames.
            keep_images: attach each decoded image to its result (for rendering); images
                otherwise stay in the driver only until detection.

        ``self.stats`` is reset at the start and updated as results are yielded. One run at a
        time per engine; abandoning one (``break``) discards its unfinished frames.
        """
        spec = isinstance(source, str | int | os.PathLike)
        if not spec and (start, stop, stride, max_frames, realtime) != (0, None, 1, None, False):
            raise ValueError("start/stop/stride/max_frames/realtime apply to a source spec only")
        pool = self.pool
        sharded = (
            self._sharded is not None
            and spec
            and _is_file(source)
            and not self.live
            and realtime is False
            and not keep_images
        )
        frames: Any = None
        if sharded:
            if max_frames is not None:
                end = start + max_frames * stride
                stop = end if stop is None else min(stop, end)
            live = False
            detected = self._detect_sharded(str(source), start, stop, stride)
        else:
            if spec:
                frames = open_source(
                    source,
                    start=start,
                    stop=stop,
                    stride=stride,
                    max_frames=max_frames,
                    queue_size=source_queue_size(source, self.live, realtime, self.batch_size),
                    live=self.live,
                    realtime=realtime,
                )
            else:
                frames = source
            live = self.live if self.live is not None else bool(getattr(frames, "is_live", False))
            detected = self._detect_in_driver(frames, spec, live, keep_images)
        self.stats = stats = EngineStats()
        identify = self._identities()
        timeline: deque[tuple[int, float, float, np.ndarray | None]] = deque()
        started = time.perf_counter()
        finished = False

        def handed_back(results: list[Result]) -> Iterator[FrameResult]:
            for index, poses in results:
                frame_index, pts, received, image = timeline.popleft()
                assert frame_index == index, "the pool hands frames back in order"
                if poses is not None:
                    poses = identify(poses)
                now = time.perf_counter()
                self._record(poses, getattr(frames, "stats", None), now - started)
                if poses is not None:
                    stats.latencies.append(now - received)
                yield FrameResult(index, pts, poses, image, now - received)
                stats.stage_s["write"] += time.perf_counter() - now

        failure: Exception | None = None
        try:
            pool.reset(live)
            stats.pool = pool.stats
            try:
                for batch in detected:
                    results: list[Result] = []
                    with self._timed("solve"):
                        if not batch and pool.workers:  # idle: what actors finished meanwhile
                            results = pool.poll()
                        for index, pts, received, image, candidates in batch:
                            timeline.append((index, pts, received, image))
                            results += pool.submit(index, pts, candidates)
                    yield from handed_back(results)
            except Exception as error:
                # A source that gives up (or a failed detection) ends the stream, but the
                # frames already in the pool are solved and handed back before the error.
                failure = error
            drain = pool.drain()
            while True:
                with self._timed("solve"):
                    result = next(drain, None)
                if result is None:
                    break
                yield from handed_back([result])
            finished = True
            if failure is not None:
                raise failure
        finally:
            detected.close()
            if spec and frames is not None:
                frames.close()  # also when detection never started (idempotent)
            if not finished:
                pool.discard()
            stats.wall_s = time.perf_counter() - started

    def _identities(self) -> Callable[[Poses], Poses]:
        """A fresh per-stream post-processing of ordered poses: tracker, then smoother."""
        steps: list[Callable[[Poses], Poses]] = []
        if self.temporal:
            self._solve_fn.reset()
        elif self.tracker_config is not None:
            steps.append(PoseTracker(self.tracker_config).update)
        if self.smooth_config is not None:
            steps.append(OneEuroSmoother(self.smooth_config).update)

        def apply(poses: Poses) -> Poses:
            for step in steps:
                poses = step(poses)
            return poses

        return apply

    def _detect_in_driver(
        self, frames: Iterable[Frame], owned: bool, live: bool, keep_images: bool
    ) -> Generator[list[_Detected], None, None]:
        """Batches detected in this process: ``(index, pts, received, image, candidates)`` per
        frame; an empty list after each idle poll interval. Closes ``frames`` at the end if
        ``owned``.

        Decoding hand-off and detection run in two threads (the network releases the GIL), so
        the caller keeps collecting and handing back solved frames while the next batch is
        being detected; one detected batch waits at most, so backpressure reaches the source.
        """
        received = ((frame, time.perf_counter()) for frame in frames)
        prefetch = _Background(received, maxsize=1, name="deepercut-prefetch")
        detection = _Background(
            self._detect_batches(prefetch, live, keep_images), maxsize=1, name="deepercut-detect"
        )
        try:
            while True:
                item = detection.get(_POLL_S)
                if item is _END:
                    return
                yield [] if item is None else item
        finally:
            detection.stop()
            prefetch.stop()
            if owned:  # closing the source also unblocks a prefetch thread waiting on it
                frames.close()  # type: ignore[attr-defined]
            prefetch.join()
            detection.join()

    def _detect_batches(
        self, prefetch: _Background, live: bool, keep_images: bool
    ) -> Iterator[list[_Detected]]:
        """The detection thread's work: batches of frames through the detector."""
        for batch in self._batches(prefetch, live):
            if not batch:
                continue
            with self._timed("detect"):
                found = self.detector([frame for frame, _ in batch])
            self.stats.frames += len(batch)
            yield [
                (f.index, f.pts, received, f.image if keep_images else None, c)
                for (f, received), c in zip(batch, found, strict=True)
            ]

    def _detect_sharded(
        self, path: str, start: int, stop: int | None, stride: int
    ) -> Generator[list[_Detected], None, None]:
        """Chunks detected by the detector actors, in frame order (waiting for them counts as
        ``detect``)."""
        assert self._sharded is not None
        chunks = self._sharded.run(path, start, stop, stride, idle_s=_POLL_S)
        while True:
            with self._timed("detect"):
                chunk = next(chunks, None)
            if chunk is None:
                return
            received = time.perf_counter()
            self.stats.frames += len(chunk)
            yield [(index, pts, received, None, c) for index, pts, c in chunk]

    def _batches(self, prefetch: _Background, live: bool) -> Iterator[list[tuple[Frame, float]]]:
        """Batches of ``(frame, received_time)``: full ones, or in live mode those whose first
        frame waited ``max_batch_wait``; an empty list after each idle poll interval."""
        batch: list[tuple[Frame, float]] = []
        deadline = math.inf
        while True:
            wait = _POLL_S if not batch else min(_POLL_S, max(0.0, deadline - time.monotonic()))
            with self._timed("decode"):
                try:
                    item = prefetch.get(wait)
                except Exception:
                    if batch:  # the source failed: the frames it gave still get their poses
                        yield batch
                    raise
            if item is _END:
                if batch:
                    yield batch
                return
            if isinstance(item, tuple):
                batch.append(item)
                if len(batch) == 1 and live:
                    deadline = time.monotonic() + self.max_batch_wait
            if batch and (len(batch) >= self.batch_size or time.monotonic() >= deadline):
                yield batch
                batch, deadline = [], math.inf
            elif item is None:
                yield []

    @contextlib.contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stats.stage_s[stage] += time.perf_counter() - started

    def _record(self, poses: Poses | None, source_stats: Any, wall_s: float) -> None:
        stats = self.stats
        stats.wall_s = wall_s
        stats.dropped_source = getattr(source_stats, "dropped", 0)
        if poses is None:
            stats.dropped_solver += 1
            return
        stats.solved += 1
        stats.people += poses.num_people
        stats.statuses[poses.solver.get("status", "unknown")] += 1
        stats.fallbacks += bool(poses.solver.get("fallback"))
        stats.solver_cpu_s += float(poses.solver.get("ms", 0.0)) / 1e3


_END = object()


class _Background:
    """Runs an iterator in a daemon thread, handing its items over through a bounded queue
    (the thread waits while it is full: backpressure). ``get`` re-raises the iterator's
    exception in the consumer."""

    def __init__(self, items: Iterator[Any], maxsize: int, name: str) -> None:
        self._items = items
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as exc:  # re-raised in the consumer
            self._put(exc)

    def _put(self, item: Any) -> bool:
        while not self._stopping.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(self, timeout: float) -> Any:
        """The next item, ``_END`` after the last, or ``None`` after ``timeout`` seconds."""
        try:
            item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def stop(self) -> None:
        """Ask the thread to end (it finishes the item in hand) and unblock it."""
        self._stopping.set()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    def join(self) -> None:
        self._thread.join(timeout=5.0)
