"""The streaming engine: frames in, poses out, strictly in frame order.

::

    Source ──▶ prefetch ──▶ Batcher + Detector ──▶ SolverPool ──────▶ in-order results
    (decoder    thread       (detection thread:      (caller's thread;    (caller's thread)
     thread)                  GPU when present)       in-process or Ray)

The source decodes in its own thread; a prefetch thread hands frames over (in live mode only
the newest ones, see below). File batches are always full (but the last): the same frames
are batched together on every run, so results are reproducible (a network's float results
depend slightly on the batch).
Detection runs batched in a thread of the driver (:mod:`deepercut.engine.feed`), so the
caller's thread keeps collecting and handing back solved frames meanwhile; only the compact
per-frame :class:`~deepercut.types.Candidates` go on to the solver pool, which keeps a bounded
window, re-orders and applies backpressure (see :mod:`deepercut.engine.pool`). With
``detector_actors``, video files are detected by Ray actors instead
(:mod:`deepercut.engine.sharded`).

Modes: in *file mode* nothing is dropped: a slow solver stage blocks the driver, which stops
reading, and the source's decoder waits. In *live mode* (cameras, streams, ``realtime`` files)
latency never builds up: a reader thread keeps only the newest ``live_batch_size`` frames
(older ones are dropped as stale); the detector, whenever it is free, takes what is waiting
(never waiting for a batch to fill); a detected batch is handed to the solvers before the next
one is taken, so at most one detected batch waits; and the pool keeps a window of two frames
per solver actor and drops its oldest pending frame when the solvers fall behind. Every drop
is counted in :class:`~deepercut.engine.stats.EngineStats`.

Identities: the solved frames leave the pool in frame order and only then go through the
post-processing chain of :mod:`deepercut.tracking` (the online tracker, ``track``, then the
optional One-Euro smoother, ``smooth``), in the caller's thread, so track ids are the same
whatever order the workers finished in. ``temporal=K`` instead decides identities inside the
solve (:mod:`deepercut.solvers.temporal`): each frame's multicut links its candidates to the
people of the previous ``K`` frames, so a frame's solve needs its predecessor's result. That
solve runs in the driver, in frame order (the pool in-process, ``workers`` then only sizes a
Ray for detector actors): solving is serialised, which caps throughput at one solve at a time
(see ``benchmarks/results/tracking.md`` for its cost per frame).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import torch

from deepercut.detection import NetworkDetector
from deepercut.detection.dynamic_crop import CropConfig, DynamicCropDetector
from deepercut.engine.actors import RayUnavailable, connect_ray
from deepercut.engine.config import DetectFn, EngineConfig
from deepercut.engine.feed import (
    DetectedFrame,
    DriverFeed,
    is_file,
    sharded_feed,
    source_queue_size,
)
from deepercut.engine.pool import Result, SolverPool
from deepercut.engine.stats import EngineStats, FrameResult
from deepercut.model.io import Model, load_model
from deepercut.solvers.frame_solver import FrameSolver
from deepercut.sources import Source, SourceStats, open_source
from deepercut.tracking import Chain, OneEuroSmoother, PoseTracker
from deepercut.types import Frame, Poses

if TYPE_CHECKING:
    from deepercut.engine.sharded import ShardedDetector

log = logging.getLogger(__name__)

#: What :meth:`Engine.run` reads: a source spec (file, folder, camera, URL), an opened
#: :class:`~deepercut.sources.Source`, or any iterable of frames with increasing indices.
SourceLike = str | int | os.PathLike[str] | Iterable[Frame]

#: The source selection of :meth:`Engine.run_frames` when none is given.
_NO_SELECTION = {"start": 0, "stop": None, "stride": 1, "max_frames": None, "realtime": False}


class Engine:
    """Multi-person pose estimation on a stream of frames.

    A context manager: ``with Engine(...) as engine: for poses in engine.run("video.mp4"):``.
    Ray actors (``workers > 0``) start on entry (or on the first run) and stop on exit.

    Args:
        config: an :class:`~deepercut.engine.config.EngineConfig`, or the model (a
            :class:`~deepercut.model.io.Model`, a checkpoint path, ``None`` for the bundled
            one) with the other settings as keywords: ``Engine(solver="3stage", workers=2)``.
        options: :class:`~deepercut.engine.config.EngineConfig` settings (with a config: they
            replace its own).
    """

    def __init__(
        self,
        config: EngineConfig | Model | str | os.PathLike[str] | None = None,
        /,
        **options: Any,
    ) -> None:
        self.config = config = EngineConfig.of(config, **options)
        model = config.model
        self.model = model if isinstance(model, Model) else load_model(model)
        self.model_path = None if isinstance(model, Model) or model is None else str(model)
        self.skeleton = self.model.skeleton
        self.frame_solver = _frame_solver(config, self.model)
        self._solve_fn: Any = self.frame_solver
        if config.temporal:
            from deepercut.solvers.temporal import TemporalFrameSolver

            self._solve_fn = TemporalFrameSolver(
                self.frame_solver, config.temporal, config.temporal_model
            )
        #: Post-processing of the ordered poses (tracker, then smoother), reset per stream.
        self.postprocess = _postprocessing(config)
        self.workers = 0 if config.temporal else config.workers  # temporal solves in the driver
        self._pool: SolverPool | None = None
        self._sharded: ShardedDetector | None = None
        self._owns_ray = False
        #: Why the solver actors were replaced by in-process solving (Ray could not be
        #: imported or started); ``None`` when they were not.
        self.ray_fallback: str | None = None
        self.stats = EngineStats()
        self._init_detector(config)
        self.live_batch_size = config.live_batch_size or (
            config.batch_size if self.device.type == "cuda" else 1
        )

    def _init_detector(self, config: EngineConfig) -> None:
        """The detector (the model's network unless ``config.detector`` replaces it), its
        backend, device and input size; wrapped for dynamic cropping when asked."""
        if config.detector is not None:
            self.detector: DetectFn = config.detector
            self.backend, self.backend_reason = "custom", "detector given"
            self.device = torch.device("cpu")
            self.input_hw = tuple(config.input_hw or self.model.input_hw)
        else:
            network = self._network(config, config.input_hw, config.device)
            self.detector = network
            self.backend, self.backend_reason = network.backend, network.reason
            self.device, self.input_hw = network.device, network.input_hw
        if config.dynamic_crop is not False:
            custom = config.detector
            crop = config.dynamic_crop
            crop = crop if isinstance(crop, CropConfig) else CropConfig()
            if crop.max_animals is None:  # follow the people the engine keeps
                crop = dataclasses.replace(crop, max_animals=config.max_people)
            if crop.group is None and self.device.type == "cpu":
                # Frame by frame: crops need no motion allowance for a batch's frames ahead,
                # and a CPU batch costs about as much as its frames one by one.
                crop = dataclasses.replace(crop, group=1)
            self.detector = DynamicCropDetector(
                self.detector,
                # a custom detector takes any image size
                lambda hw: custom if custom is not None else self._network(config, hw, self.device),
                crop,
                self.skeleton.num_parts,
                input_hw=None if custom is not None else self.input_hw,
            )
            self.detector.prepare()  # one backend per crop size, built before any stream

    def _network(
        self, config: EngineConfig, input_hw: tuple[int, int] | None, device: Any
    ) -> NetworkDetector:
        return NetworkDetector(
            self.model,
            input_hw=input_hw,
            params=config.candidate_params,
            device=device,
            backend=config.backend,
            batch_size=config.batch_size,
            precision=config.precision,
            threads=config.threads,
        )

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
        config = self.config
        if self.workers or config.detector_actors:
            self._connect_ray()
        self._pool = SolverPool(
            self._solve_fn,
            workers=self.workers,
            max_in_flight=config.max_in_flight,
            # An actor silent for this long is hung: far beyond a solve's time limit.
            stall_timeout=max(15.0, 5 * self.frame_solver.time_limit + 5),
            startup_timeout=config.startup_timeout,
        )
        if config.detector_actors:
            from deepercut.engine.sharded import ShardedDetector

            self._sharded = ShardedDetector(
                self.model,
                actors=config.detector_actors,
                gpus_per_actor=config.detector_gpus,
                chunk_frames=config.chunk_frames,
                detector=config.detector,
                startup_timeout=config.startup_timeout,
                options={
                    "input_hw": config.input_hw,
                    "params": config.candidate_params,
                    "backend": config.backend,
                    "batch_size": config.batch_size,
                },
            )

    def _connect_ray(self) -> None:
        """One Ray for the solver and the detector actors (a local one has room for both);
        without Ray, a local solver pool falls back to solving in-process."""
        config = self.config
        try:
            self._owns_ray = connect_ray(
                config.ray_address,
                num_cpus=self.workers + config.detector_actors,
                log_to_driver=config.log_to_driver,
                ray_init_kwargs=config.ray_init_kwargs,
            )
        except RayUnavailable as exc:
            # Only a local solver pool has an in-process equivalent: a named cluster or
            # detector actors were asked for explicitly.
            if config.ray_address or config.detector_actors:
                raise
            self.ray_fallback = str(exc)
            self.workers = 0
            log.warning("%s: solving in-process instead", exc)

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
            "detector_actors": self.config.detector_actors,
            "tracking": self.tracking_info(),
            "meta": self.model.meta,
        }

    def tracking_info(self) -> dict[str, Any]:
        """How identities and smoothing are done, for stream headers."""
        config = self.config
        if config.temporal:
            mode: dict[str, Any] = {"mode": "temporal", "frames": config.temporal}
        elif config.tracker is not None:
            mode = {"mode": "online", **config.tracker.to_dict()}
        else:
            mode = {"mode": "none"}
        if config.smoother is not None:
            mode["smoothing"] = {"one_euro": dataclasses.asdict(config.smoother)}
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
        """A :class:`~deepercut.engine.stats.FrameResult` for every frame the engine receives,
        in frame order.

        Args:
            source: a spec for :func:`~deepercut.sources.open_source` (opened and
                closed here, with ``start``, ``stop``, ``stride``, ``max_frames``,
                ``realtime``), an opened source, or an iterable of frames.
            keep_images: attach each decoded image to its result (for rendering); images
                otherwise stay in the driver only until detection.

        ``self.stats`` is reset at the start and updated as results are yielded. One run at a
        time per engine; abandoning one (``break``) discards its unfinished frames.
        """
        selection = {
            "start": start,
            "stop": stop,
            "stride": stride,
            "max_frames": max_frames,
            "realtime": realtime,
        }
        spec = isinstance(source, str | int | os.PathLike)
        if not spec and selection != _NO_SELECTION:
            raise ValueError("start/stop/stride/max_frames/realtime apply to a source spec only")
        pool = self.pool
        crop = self.detector.reset() if isinstance(self.detector, DynamicCropDetector) else None
        self.stats = EngineStats(crop=crop)
        frames, detected, live = self._feed(source, spec, selection, keep_images)
        yield from self._solve(pool, detected, frames, spec, live)

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
        if self.config.detector_actors and not keep_images:
            source.close()
            return self.run_frames(spec, **selection)
        return self.run_frames(source, keep_images=keep_images)

    def _feed(
        self, source: SourceLike, spec: bool, selection: dict[str, Any], keep_images: bool
    ) -> tuple[Any, Generator[list[DetectedFrame], None, None], bool]:
        """``(frames, detected batches, live)``: the frames the engine reads (``None`` when
        detector actors decode the file themselves)."""
        config = self.config
        if (
            self._sharded is not None
            and spec
            and is_file(source)  # type: ignore[arg-type]
            and not config.live
            and selection["realtime"] is False
            and not keep_images
        ):
            start, stop, stride = selection["start"], selection["stop"], selection["stride"]
            if selection["max_frames"] is not None:
                end = start + selection["max_frames"] * stride
                stop = end if stop is None else min(stop, end)
            detected = sharded_feed(self._sharded, str(source), start, stop, stride, self.stats)
            return None, detected, False
        frames: Any = source
        if spec:
            queue_size = source_queue_size(
                source,  # type: ignore[arg-type]
                config.live,
                selection["realtime"],
                config.batch_size,
            )
            frames = open_source(source, **selection, queue_size=queue_size, live=config.live)
        live = config.live if config.live is not None else bool(getattr(frames, "is_live", False))
        feed = DriverFeed(self.detector, self.stats, keep_images)
        detected = feed.batches(
            frames,
            owned=spec,
            live=live,
            batch_size=config.batch_size,
            live_batch_size=self.live_batch_size,
        )
        return frames, detected, live

    def _solve(
        self,
        pool: SolverPool,
        detected: Generator[list[DetectedFrame], None, None],
        frames: Any,
        spec: bool,
        live: bool,
    ) -> Iterator[FrameResult]:
        """Detected batches through the solver pool and post-processing, in frame order; on a
        failure the frames already in the pool are handed back before the error."""
        stats = self.stats
        order = _InOrder(stats, self.postprocess, frames, self._count_source)
        finished = False
        failure: Exception | None = None
        try:
            self._start_stream(pool, live)
            try:
                for batch in detected:
                    with stats.timed("solve"):
                        results = self._submit(pool, batch, order)
                    yield from order.hand_back(results)
            except Exception as error:
                # A source that gives up (or a failed detection) ends the stream, but the
                # frames already in the pool are solved and handed back before the error.
                failure = error
            yield from self._drain(pool, order)
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
            stats.wall_s = time.perf_counter() - order.started

    def _drain(self, pool: SolverPool, order: _InOrder) -> Iterator[FrameResult]:
        """Everything left in the pool, in order (waiting for it counts as ``solve``)."""
        drain = pool.drain()
        while True:
            with self.stats.timed("solve"):
                result = next(drain, None)
            if result is None:
                return
            yield from order.hand_back([result])

    def _start_stream(self, pool: SolverPool, live: bool) -> None:
        """A new stream: the pool in this mode, fresh post-processing (or temporal) state."""
        if self.config.temporal:
            self._solve_fn.reset()
        self.postprocess.reset()
        pool.reset(live)
        if self.config.max_in_flight is None and pool.workers:
            # Live: one frame solving and one queued per actor; more only waits.
            pool.max_in_flight = (2 if live else 3) * pool.workers
        self.stats.pool = pool.stats

    @staticmethod
    def _submit(pool: SolverPool, batch: list[DetectedFrame], order: _InOrder) -> list[Result]:
        """A detected batch into the pool; the results ready now. An empty batch (the feed
        was idle) collects what the actors finished meanwhile."""
        results: list[Result] = []
        if not batch and pool.workers:
            results = pool.poll()
        for frame in batch:
            order.expect(frame)
            results += pool.submit(frame.index, frame.pts, frame.candidates)
        return results

    def _count_source(self, source_stats: Any) -> None:
        """Take the source's losses into the run's counts."""
        if isinstance(source_stats, SourceStats):
            self.stats.dropped_source = source_stats.dropped + source_stats.discarded
            self.stats.skipped_source = source_stats.corrupt + source_stats.missing


class _InOrder:
    """The frames sent to the pool, in order, and their hand-back: post-processing, counts,
    latency, one :class:`~deepercut.engine.stats.FrameResult` each."""

    def __init__(
        self,
        stats: EngineStats,
        postprocess: Chain,
        frames: Any,
        count_source: Callable[[Any], None],
    ) -> None:
        self.stats = stats
        self.postprocess = postprocess
        self.frames = frames
        self.count_source = count_source
        self.sent: deque[DetectedFrame] = deque()
        self.started = time.perf_counter()

    def expect(self, frame: DetectedFrame) -> None:
        self.sent.append(frame)

    def hand_back(self, results: list[Result]) -> Iterator[FrameResult]:
        stats = self.stats
        for index, poses in results:
            frame = self.sent.popleft()
            assert frame.index == index, "the pool hands frames back in order"
            if poses is not None:
                poses = self.postprocess.update(poses)
            now = time.perf_counter()
            stats.wall_s = now - self.started
            self.count_source(getattr(self.frames, "stats", None))
            stats.record(poses)
            if poses is not None:
                stats.latencies.append(now - frame.received)
            yield FrameResult(index, frame.pts, poses, frame.image, now - frame.received)
            stats.stage_s["write"] += time.perf_counter() - now


def _frame_solver(config: EngineConfig, model: Model) -> FrameSolver:
    return FrameSolver(
        model.pairwise_model(),
        model.skeleton,
        method=config.solver,
        time_limit=config.time_limit,
        fallback=config.fallback,
        max_candidates=config.max_candidates,
        min_parts=config.min_parts,
        max_people=config.max_people,
    )


def _postprocessing(config: EngineConfig) -> Chain:
    """The chain of :mod:`deepercut.tracking` steps the settings ask for."""
    chain = Chain()
    if config.tracker is not None:
        chain.steps.append(PoseTracker(config.tracker))
    if config.smoother is not None:
        chain.steps.append(OneEuroSmoother(config.smoother))
    return chain
