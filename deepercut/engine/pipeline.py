"""The streaming engine: frames in, poses out, strictly in frame order.

::

    Source ──▶ prefetch ──▶ Batcher + Detector ──▶ SolverPool ──────▶ in-order results
    (decoder    thread       (detection thread:      (caller's thread;    (caller's thread)
     thread)                  GPU when present)       in-process or Ray)

The source decodes in its own thread; a prefetch thread hands frames over (in live mode only
the newest ones, see below). File batches are always full (but the last): the same frames
are batched together on every run, so results are reproducible (a network's float results
depend slightly on the batch).
Detection runs batched in a thread of the driver, so the caller's thread keeps collecting and
handing back solved frames meanwhile; only the compact per-frame
:class:`~deepercut.types.Candidates` go on to the solver pool, which keeps a bounded window,
re-orders and applies backpressure (see :mod:`deepercut.engine.pool`). With
``detector_actors``, video files are detected by Ray actors instead
(:mod:`deepercut.engine.sharded`).

Modes: in *file mode* nothing is dropped: a slow solver stage blocks the driver, which stops
reading, and the source's decoder waits. In *live mode* (cameras, streams, ``realtime`` files)
latency never builds up: a reader thread keeps only the newest ``live_batch_size`` frames
(older ones are dropped as stale); the detector, whenever it is free, takes what is waiting
(never waiting for a batch to fill); a detected batch is handed to the solvers before the next
one is taken, so at most one detected batch waits; and the pool keeps a window of two frames
per solver actor and drops its oldest pending frame when the solvers fall behind. Every drop
is counted in :class:`EngineStats`.

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
import logging
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

from deepercut.engine.backend import NetworkDetector
from deepercut.engine.dynamic_crop import CropConfig, CropStats, DynamicCropDetector
from deepercut.engine.pool import PoolStats, RayUnavailable, Result, SolverPool, connect_ray
from deepercut.engine.smoothing import OneEuroConfig, OneEuroSmoother
from deepercut.engine.sources import Source, SourceStats, open_source
from deepercut.engine.tracking import PoseTracker, TrackerConfig
from deepercut.solvers.assemble import DEFAULT_MIN_PARTS
from deepercut.solvers.frame_solver import FrameSolver

if TYPE_CHECKING:
    from deepercut.engine.sharded import ShardedDetector
    from deepercut.model.temporal_costs import TemporalModel
from deepercut.model.candidates import CandidateParams
from deepercut.model.io import Model, load_model
from deepercut.types import Candidates, Frame, Poses

log = logging.getLogger(__name__)

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
        dropped_source: frames the source decoded but dropped before the engine saw them
            (live: the consumer fell behind; or still queued when it was closed).
        skipped_source: source frames lost to damaged data: flagged corrupt, or missing from
            the file's timeline (see :class:`~deepercut.engine.sources.SourceStats`).
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
    stage_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_STAGES, 0.0))
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
        workers: solver processes: ``0`` = in the driver, ``N`` = ``N`` Ray actors. When Ray
            cannot be imported or a local Ray cannot be started (no ``ray_address``, no
            ``detector_actors``), frames are solved in the driver instead, with one logged
            warning, and :attr:`ray_fallback` says why.
        ray_address: a Ray cluster to use (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``);
            default: a local Ray started with ``workers`` CPUs.
        backend: detector backend, ``auto``, ``tensorrt``, ``compile``, ``onnxruntime`` or
            ``eager`` (see :func:`~deepercut.engine.backend.select_backend`).
        threads: the detector's CPU threads (ONNX Runtime intra-op); default torch's count.
        device: ``cuda`` when available, else ``cpu``.
        batch_size: frames per detector batch in file mode.
        live_batch_size: live mode's largest batch, and how many of the newest frames wait
            for the detector; default 1 on the CPU (where a batch costs as much as its frames
            one by one, so batching only adds latency), ``batch_size`` on CUDA.
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
        max_in_flight: solver window; default ``3 × workers`` (live: ``2 × workers``, one
            frame solving and one queued per actor).
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
            :class:`~deepercut.model.temporal_costs.TemporalModel` or an ``.npz`` path); default:
            the bundled one.
        dynamic_crop: detect in a crop around the animals of the previous frames (a
            :class:`~deepercut.engine.dynamic_crop.CropConfig` for its settings; see
            :mod:`deepercut.engine.dynamic_crop`), for single- and few-animal video. Not with
            ``detector_actors``.
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
        threads: int | None = None,
        batch_size: int = 8,
        live_batch_size: int | None = None,
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
        dynamic_crop: bool | CropConfig = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if live_batch_size is not None and live_batch_size < 1:
            raise ValueError(f"live_batch_size must be >= 1, got {live_batch_size}")
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
        #: Why the solver actors were replaced by in-process solving (Ray could not be
        #: imported or started); ``None`` when they were not.
        self.ray_fallback: str | None = None
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
                threads=threads,
            )
            self.detector: Detector = network
            self.backend, self.backend_reason = network.backend, network.reason
            self.device, self.input_hw = network.device, network.input_hw
        else:
            self.detector = detector
            self.backend, self.backend_reason = "custom", "detector given"
            self.device = torch.device("cpu")
            self.input_hw = tuple(input_hw or self.model.input_hw)
        self.live_batch_size = live_batch_size or (batch_size if self.device.type == "cuda" else 1)
        if dynamic_crop is not False:
            if detector_actors:
                raise ValueError("dynamic cropping runs in the driver, not in detector actors")

            def crop_detector(hw: tuple[int, int]) -> Detector:
                if detector is not None:  # a custom detector takes any image size
                    return detector
                return NetworkDetector(
                    self.model,
                    input_hw=hw,
                    params=candidate_params,
                    device=self.device,
                    backend=self.backend,
                    batch_size=batch_size,
                    precision=precision,
                    threads=threads,
                )

            self.detector = DynamicCropDetector(
                self.detector,
                crop_detector,
                dynamic_crop if isinstance(dynamic_crop, CropConfig) else CropConfig(),
                self.skeleton.num_parts,
                input_hw=None if detector is not None else self.input_hw,
            )
            self.detector.prepare()  # one backend per crop size, built before any stream

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
            try:
                self._owns_ray = connect_ray(
                    num_cpus=self.workers + self.detector_actors, **self._ray_args
                )
            except RayUnavailable as exc:
                # Only a local solver pool has an in-process equivalent: a named cluster or
                # detector actors were asked for explicitly.
                if self._ray_args["address"] or self.detector_actors:
                    raise
                self.ray_fallback = str(exc)
                self.workers = 0
                log.warning("%s: solving in-process instead", exc)
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
        if isinstance(self.detector, DynamicCropDetector):
            stats.crop = self.detector.reset()
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
            if self.max_in_flight is None and pool.workers:
                # Live: one frame solving and one queued per actor; more only waits.
                pool.max_in_flight = (2 if live else 3) * pool.workers
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
            self._count_source(getattr(frames, "stats", None))  # losses after the last frame
            if not finished:
                pool.discard()
            stats.wall_s = time.perf_counter() - started

    def run_opened(
        self,
        source: Source,
        spec: str | int | os.PathLike[str],
        *,
        keep_images: bool = False,
        **selection: Any,
    ) -> Iterator[FrameResult]:
        """:meth:`run_frames` of a source the caller opened from ``spec`` with ``selection``
        (``start``, ``stop``, ``stride``, ``max_frames``, ``realtime``), e.g. to read its fps
        before the run.

        With detector actors and no images kept, the actors decode the file themselves: the
        opened source is closed and ``spec`` is run with ``selection`` instead (a spec that is
        not a file is then detected in the driver).
        """
        if self.detector_actors and not keep_images:
            source.close()
            return self.run_frames(spec, **selection)
        return self.run_frames(source, keep_images=keep_images)

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
        prefetch: _Background | _NewestFrames
        if live:
            prefetch = _NewestFrames(frames, self.live_batch_size, name="deepercut-newest")
            work = self._detect_live(prefetch, keep_images)
        else:
            received = ((frame, time.perf_counter()) for frame in frames)
            prefetch = _Background(received, maxsize=1, name="deepercut-prefetch")
            work = self._detect_batches(prefetch, keep_images)
        # Live: the next batch is taken only once the previous one was handed over, so the
        # detector works on the newest frames and at most one detected batch waits.
        detection = _Background(work, maxsize=1, name="deepercut-detect", handoff=live)
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
        self, prefetch: _Background, keep_images: bool
    ) -> Iterator[list[_Detected]]:
        """The detection thread's work in file mode: full batches through the detector."""
        for batch in self._batches(prefetch):
            if batch:
                yield self._detect(batch, keep_images)

    def _detect_live(self, newest: _NewestFrames, keep_images: bool) -> Iterator[list[_Detected]]:
        """The detection thread's work in live mode: whatever newest frames wait, at once."""
        while True:
            with self._timed("decode"):
                batch = newest.take(_POLL_S)
            stats = self.stats
            stats.frames += newest.dropped - stats.dropped_stale
            stats.dropped_stale = newest.dropped
            if batch is _END:
                return
            if batch:
                yield self._detect(batch, keep_images)

    def _detect(self, batch: list[tuple[Frame, float]], keep_images: bool) -> list[_Detected]:
        with self._timed("detect"):
            found = self.detector([frame for frame, _ in batch])
        self.stats.frames += len(batch)
        return [
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

    def _batches(self, prefetch: _Background) -> Iterator[list[tuple[Frame, float]]]:
        """File mode's batches of ``(frame, received_time)``: full ones (the last may not be);
        an empty list after each idle poll interval."""
        batch: list[tuple[Frame, float]] = []
        while True:
            with self._timed("decode"):
                try:
                    item = prefetch.get(_POLL_S)
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
            if len(batch) >= self.batch_size:
                yield batch
                batch = []
            elif item is None:
                yield []

    @contextlib.contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stats.stage_s[stage] += time.perf_counter() - started

    def _count_source(self, source_stats: Any) -> None:
        """Take the source's losses into the run's counts."""
        if isinstance(source_stats, SourceStats):
            self.stats.dropped_source = source_stats.dropped + source_stats.discarded
            self.stats.skipped_source = source_stats.corrupt + source_stats.missing

    def _record(self, poses: Poses | None, source_stats: Any, wall_s: float) -> None:
        stats = self.stats
        stats.wall_s = wall_s
        self._count_source(source_stats)
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
    exception in the consumer. With ``handoff`` the thread asks for its next item only once
    the consumer took the previous one (so that item is made from the freshest input)."""

    def __init__(
        self, items: Iterator[Any], maxsize: int, name: str, handoff: bool = False
    ) -> None:
        self._items = items
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
        self._stopping = threading.Event()
        self._handoff = handoff
        self._taken = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for item in self._items:
                self._taken.clear()
                if not self._put(item) or (self._handoff and not self._wait_taken()):
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

    def _wait_taken(self) -> bool:
        while not self._stopping.is_set():
            if self._taken.wait(timeout=0.1):
                return True
        return False

    def get(self, timeout: float) -> Any:
        """The next item, ``_END`` after the last, or ``None`` after ``timeout`` seconds."""
        try:
            item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None
        self._taken.set()
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


class _NewestFrames:
    """Live mode's hand-off from the source: a daemon thread reads frames as they come and
    keeps only the newest ``capacity`` of them with their arrival times; older ones are
    dropped (counted in :attr:`dropped`), so a frame never waits behind stale ones."""

    def __init__(self, frames: Iterable[Frame], capacity: int, name: str) -> None:
        self._frames = frames
        self._waiting: deque[tuple[Frame, float]] = deque()
        self._capacity = capacity
        self._ready = threading.Condition()
        self._stopping = False
        self._ended = False
        self._error: BaseException | None = None
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for frame in self._frames:
                now = time.perf_counter()
                with self._ready:
                    if self._stopping:
                        return
                    self._waiting.append((frame, now))
                    if len(self._waiting) > self._capacity:
                        self._waiting.popleft()
                        self.dropped += 1
                    self._ready.notify()
        except BaseException as exc:  # re-raised in the consumer once the waiting frames went
            self._error = exc
        finally:
            with self._ready:
                self._ended = True
                self._ready.notify()

    def take(self, timeout: float) -> list[tuple[Frame, float]] | object:
        """Every waiting frame, oldest first (at most ``capacity``); ``[]`` when none came
        within ``timeout`` seconds; ``_END`` once the source ended and none waits (or the
        source's exception)."""
        with self._ready:
            if not self._waiting and not self._ended:
                self._ready.wait(timeout)
            if self._waiting:
                batch = list(self._waiting)
                self._waiting.clear()
                return batch
            if self._error is not None:
                raise self._error
            return _END if self._ended else []

    def stop(self) -> None:
        """Ask the reader to end (closing the source unblocks one waiting for a frame)."""
        with self._ready:
            self._stopping = True
            self._waiting.clear()

    def join(self) -> None:
        self._thread.join(timeout=5.0)
