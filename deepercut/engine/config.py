"""The engine's settings in one frozen record, checked once when it is made.

``EngineConfig(solver="3stage", workers=2)`` holds every setting of an
:class:`~deepercut.engine.pipeline.Engine`; ``Engine(config)`` runs it, and
``Engine(solver=..., ...)`` builds one from the same keywords. Each setting is checked in
:meth:`EngineConfig.__post_init__`, before anything is loaded, so a wrong value fails at once
with its name in the message.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from deepercut.detection.dynamic_crop import CropConfig
from deepercut.solvers import METHODS
from deepercut.solvers.assemble import DEFAULT_MIN_PARTS
from deepercut.tensorrt.compile import BACKENDS
from deepercut.tensorrt.network import PRECISIONS
from deepercut.tracking import OneEuroConfig, TrackerConfig
from deepercut.types import Candidates, Frame

if TYPE_CHECKING:
    import torch

    from deepercut.model.candidates import CandidateParams
    from deepercut.model.io import Model
    from deepercut.model.temporal_costs import TemporalModel

#: A detection function: frames (index, pts, image) → their candidates in image pixels. The
#: default is the model's network; tests pass e.g. one that simulates candidates from ground
#: truth.
DetectFn = Callable[[Sequence[Frame]], list[Candidates]]


@dataclass(frozen=True)
class EngineConfig:
    """Every setting of an :class:`~deepercut.engine.pipeline.Engine` (all optional).

    Model and solving:
        model: a :class:`~deepercut.model.io.Model`, a checkpoint path, or ``None`` for the
            bundled model. It must hold a pairwise model.
        solver: ``3stage`` (DeeperCut), ``2stage``, ``exact``, ``heuristic`` or ``deepcut``.
        time_limit: seconds per frame's solve before falling back to ``fallback``.
        fallback: method used when a solve hits its time limit or fails.
        max_candidates: candidates kept per frame (highest scores).
        min_parts: fewest parts a reported person has.
        max_people: at most this many people per frame, the highest-scoring (``None``: all;
            1 for a single-animal project).

    Solver processes (Ray):
        workers: solver processes: ``0`` = in the driver, ``N`` = ``N`` Ray actors. When Ray
            cannot be imported or a local Ray cannot be started (no ``ray_address``, no
            ``detector_actors``), frames are solved in the driver instead, with one logged
            warning, and the engine's ``ray_fallback`` says why.
        ray_address: a Ray cluster to use (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``);
            default: a local Ray started with ``workers`` CPUs.
        max_in_flight: solver window; default ``3 × workers`` (live: ``2 × workers``, one
            frame solving and one queued per actor).
        log_to_driver: show the Ray actors' output.
        ray_init_kwargs: extra ``ray.init`` arguments (e.g. a ``runtime_env`` for a cluster).
        startup_timeout: seconds a Ray actor (a solver actor, its replacement, a detector
            actor) may take to start before it counts as failed; a loaded machine or an
            autoscaling cluster needs more than the default.

    Detection:
        backend: ``auto``, ``tensorrt``, ``compile``, ``onnxruntime`` or ``eager`` (see
            :func:`~deepercut.detection.build_runner`).
        device: ``cuda`` when available, else ``cpu``.
        precision: ``fp16`` or ``fp32``; default FP16 on CUDA, FP32 on the CPU.
        threads: the detector's CPU threads (ONNX Runtime intra-op); default torch's count.
        input_hw: network input size (multiples of 16); default: the model's.
        candidate_params: candidate extraction settings of the default detector.
        detector: replaces the network (``frames → candidates``); the model then only
            provides the skeleton and the pairwise model.
        detector_actors: detect video files in this many Ray actors instead of the driver
            (keyframe-aligned chunks, merged in order; see :mod:`deepercut.engine.sharded`).
            Used for file sources in file mode without ``keep_images``; others are detected
            in the driver.
        detector_gpus: GPUs per detector actor; default 1 when the cluster has GPUs, else 0.
        chunk_frames: about this many frames per detector actor chunk.

    Batching and modes:
        batch_size: frames per detector batch in file mode.
        live_batch_size: live mode's largest batch, and how many of the newest frames wait
            for the detector; default 1 on the CPU (where a batch costs as much as its frames
            one by one, so batching only adds latency), ``batch_size`` on CUDA.
        live: drop instead of waiting under overload; default: the source's own mode.

    Identities (post-processing, :mod:`deepercut.tracking`):
        track: give people a ``track_id`` with the online tracker (a :class:`TrackerConfig`
            for its settings); ``False``: ids stay −1.
        smooth: One-Euro smoothing of tracked keypoints (an :class:`OneEuroConfig` for its
            settings); off by default.
        temporal: ``K > 0``: temporal multicut over the previous ``K`` frames' people instead
            of the online tracker (solved in the driver, in frame order; see
            :mod:`deepercut.engine.pipeline`).
        temporal_model: the temporal cost model (a
            :class:`~deepercut.model.temporal_costs.TemporalModel` or an ``.npz`` path);
            default: the bundled one.
        dynamic_crop: detect in a crop around the animals of the previous frames (a
            :class:`~deepercut.detection.dynamic_crop.CropConfig` for its settings), for
            single- and few-animal video; runs in the driver (not with ``detector_actors``).
    """

    model: Model | str | os.PathLike[str] | None = None
    solver: str = "3stage"
    time_limit: float = 1.0
    fallback: str | None = "heuristic"
    max_candidates: int = 150
    min_parts: int = DEFAULT_MIN_PARTS
    max_people: int | None = None

    workers: int = 0
    ray_address: str | None = None
    max_in_flight: int | None = None
    log_to_driver: bool = False
    ray_init_kwargs: dict[str, Any] | None = None
    startup_timeout: float = 120.0

    backend: str = "auto"
    device: str | torch.device | None = None
    precision: str | None = None
    threads: int | None = None
    input_hw: tuple[int, int] | None = None
    candidate_params: CandidateParams | None = None
    detector: DetectFn | None = None
    detector_actors: int = 0
    detector_gpus: float | None = None
    chunk_frames: int = 64

    batch_size: int = 8
    live_batch_size: int | None = None
    live: bool | None = None

    track: bool | TrackerConfig = True
    smooth: bool | OneEuroConfig = False
    temporal: int = 0
    temporal_model: TemporalModel | str | os.PathLike[str] | None = None

    dynamic_crop: bool | CropConfig = False

    def __post_init__(self) -> None:
        self._check_solving()
        self._check_counts()
        self._check_detection()
        self._check_identities()

    def _check_solving(self) -> None:
        for name, method in (("solver", self.solver), ("fallback", self.fallback)):
            if method is not None and method not in METHODS:
                raise ValueError(f"unknown {name} method {method!r}; choose one of {METHODS}")
        if self.ray_address and self.workers == 0 and self.detector_actors == 0:
            raise ValueError("a Ray address needs workers >= 1 (workers=0 solves in-process)")
        if not self.startup_timeout > 0:
            raise ValueError(f"startup_timeout must be > 0, got {self.startup_timeout}")

    def _check_counts(self) -> None:
        for name in ("workers", "detector_actors", "temporal"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("batch_size", "live_batch_size", "chunk_frames"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")

    def _check_detection(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; choose one of {BACKENDS}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {PRECISIONS}")
        if not isinstance(self.dynamic_crop, bool | CropConfig):
            raise TypeError(
                f"dynamic_crop must be a bool or a CropConfig, got {self.dynamic_crop!r}"
            )
        if self.dynamic_crop is not False and self.detector_actors:
            raise ValueError("dynamic cropping runs in the driver, not in detector actors")

    def _check_identities(self) -> None:
        if not isinstance(self.track, bool | TrackerConfig):
            raise TypeError(f"track must be a bool or a TrackerConfig, got {self.track!r}")
        if not isinstance(self.smooth, bool | OneEuroConfig):
            raise TypeError(f"smooth must be a bool or a OneEuroConfig, got {self.smooth!r}")

    @classmethod
    def of(cls, config: Any = None, /, **options: Any) -> EngineConfig:
        """A config from an :class:`EngineConfig` (``options`` then replace its settings) or
        from a model (or ``None``) and keyword settings, as :class:`Engine` accepts them."""
        if isinstance(config, EngineConfig):
            return replace(config, **options) if options else config
        if config is not None:
            if "model" in options:
                raise TypeError("the model was given twice (positionally and as model=)")
            options["model"] = config
        return cls(**options)

    @property
    def tracker(self) -> TrackerConfig | None:
        """The online tracker's settings; ``None`` when it does not run (``track=False``, or
        ``temporal`` decides identities)."""
        if self.temporal or self.track is False:
            return None
        return self.track if isinstance(self.track, TrackerConfig) else TrackerConfig()

    @property
    def smoother(self) -> OneEuroConfig | None:
        """The One-Euro smoother's settings; ``None`` when off."""
        if self.smooth is False:
            return None
        return self.smooth if isinstance(self.smooth, OneEuroConfig) else OneEuroConfig()
