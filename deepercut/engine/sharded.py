"""Detection of a video file spread over Ray actors (one per GPU), in keyframe-aligned chunks.

When detection is the bottleneck (the engine's summary shows it), a cluster's GPUs (or CPU
nodes) can each detect a part of the video: the frame range is cut into chunks that start at
keyframes (a chunk decodes from its own keyframe, so no frame is decoded twice), detector
actors take chunks as they become free, and the driver merges their candidates back in frame
order into the solver pool. Only compact candidates travel; images never leave the actor that
decoded them. Every actor opens the file itself, so it must be at the same path on every node
(a shared file system). A detector actor that dies is replaced and its chunk detected again.
Waiting for a chunk never hangs: the actors' Ray nodes are checked every
:data:`~deepercut.engine.actors.HEALTH_INTERVAL_S` while waiting, and a lost node, or no chunk
done for ``stall_timeout`` seconds, ends the run with a :class:`RuntimeError`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np

from deepercut.detection import NetworkDetector
from deepercut.engine.actors import (
    HEALTH_INTERVAL_S,
    dead_ray_nodes,
    import_ray,
    node_id,
    replace_actor,
)
from deepercut.model.io import Model
from deepercut.sources import main_video, open_source
from deepercut.types import Candidates, Frame

log = logging.getLogger(__name__)

#: One detected frame: index, pts, candidates.
Detected = tuple[int, float, Candidates]


def keyframe_indices(path: str | Path) -> list[int]:
    """Frame indices of the keyframes of a video file, from its packets (nothing is decoded).

    Indices count frames from the stream's start as :func:`~deepercut.sources.open_source`
    does (``round(pts × fps)``); a stream without timestamps or frame rate has only ``[0]``.
    """
    with av.open(str(path)) as container:
        stream = main_video(container)
        if stream is None:
            return [0]  # opening it as a source says why
        rate = stream.average_rate or stream.guessed_rate
        time_base, origin = stream.time_base, stream.start_time
        if rate is None or time_base is None:
            return [0]
        packets = [
            (p.pts, p.is_keyframe) for p in container.demux(stream) if p.pts is not None and p.size
        ]
    if origin is None:
        origin = min((pts for pts, _ in packets), default=0)
    keys = {round(float((pts - origin) * time_base * rate)) for pts, key in packets if key}
    return sorted(keys | {0})


def plan_chunks(
    keyframes: list[int], start: int, stop: int | None, stride: int, chunk_frames: int
) -> list[tuple[int, int | None]]:
    """Cut ``[start, stop)`` (``stop=None``: to the end) into chunks ``[a, b)`` of at least
    ``chunk_frames`` frames that begin at keyframes (the first at ``start``), each on the
    ``stride`` grid from ``start``.

    Chunks are only as fine as the keyframes allow: a video with one keyframe is one chunk.
    """
    bounds: list[int] = [start]
    for key in keyframes:
        first = start + math.ceil((key - start) / stride) * stride  # the grid from ``start``
        if first - bounds[-1] >= chunk_frames and (stop is None or first < stop):
            bounds.append(first)
    return list(zip(bounds, [*bounds[1:], stop], strict=True))


def _private(detected: list[Detected]) -> list[Detected]:
    """The chunk copied out of Ray's object store: Ray kills a driver that still references an
    object lost with its node (as numpy arrays read zero-copy from the store do)."""
    return [
        (
            i,
            pts,
            Candidates(np.array(c.xy), np.array(c.part), np.array(c.score), np.array(c.offsets)),
        )
        for i, pts, c in detected
    ]


class _DetectorActor:
    """A Ray actor that detects chunks of a video file (the network built once, on its GPU)."""

    def __init__(self, model: Model | None, detector: Any, options: dict[str, Any]) -> None:
        self.detector = detector if detector is not None else NetworkDetector(model, **options)
        self.batch_size = options.get("batch_size", 8)

    def backend(self) -> str:
        return getattr(self.detector, "backend", "custom")

    def node(self) -> str:
        return node_id()

    def detect(self, path: str, start: int, stop: int | None, stride: int) -> list[Detected]:
        out: list[Detected] = []
        batch: list[Frame] = []
        with open_source(path, start=start, stop=stop, stride=stride) as source:
            for frame in source:
                batch.append(frame)
                if len(batch) == self.batch_size:
                    out += self._detect(batch)
                    batch = []
        if batch:
            out += self._detect(batch)
        return out

    def _detect(self, frames: list[Frame]) -> list[Detected]:
        found = self.detector(frames)
        return [(f.index, f.pts, c) for f, c in zip(frames, found, strict=True)]


class ShardedDetector:
    """Detector actors over a Ray cluster; Ray must be initialised (see
    :func:`~deepercut.engine.actors.connect_ray`).

    Args:
        model: the detector (sent once to each actor).
        actors: detector actors.
        gpus_per_actor: GPUs per actor; default 1 when the cluster has GPUs, else 0.
        cpus_per_actor: CPUs per actor (decoding, and the network on CPU).
        chunk_frames: about this many frames per chunk (keyframes permitting).
        detector: a custom frames → candidates callable to run instead of the network (it
            must pickle; e.g. a simulated detector in tests).
        options: :class:`~deepercut.detection.NetworkDetector` settings (``input_hw``,
            ``params``, ``backend``, ``batch_size``; the device is the actor's).
        max_restarts: detector actors replaced before giving up.
        startup_timeout: seconds to wait for the actors to start (a cluster without the
            resources would otherwise hang).
        stall_timeout: seconds without a finished chunk before the actors count as hung.
    """

    def __init__(
        self,
        model: Model,
        *,
        actors: int,
        gpus_per_actor: float | None = None,
        cpus_per_actor: float = 1.0,
        chunk_frames: int = 64,
        detector: Any = None,
        options: dict[str, Any] | None = None,
        max_restarts: int | None = None,
        startup_timeout: float = 120.0,
        stall_timeout: float = 600.0,
    ) -> None:
        if actors < 1 or chunk_frames < 1:
            raise ValueError(
                f"need actors >= 1 and chunk_frames >= 1, got {actors}, {chunk_frames}"
            )
        self._ray = ray = import_ray("detector actors")
        if gpus_per_actor is None:
            gpus_per_actor = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        self.chunk_frames = chunk_frames
        self.restarts = 0
        self._max_restarts = 2 * actors + 2 if max_restarts is None else max_restarts
        self._actor_class = ray.remote(
            num_gpus=gpus_per_actor, num_cpus=cpus_per_actor, max_restarts=0
        )(_DetectorActor)
        options = {k: v for k, v in (options or {}).items() if k != "device"}
        # By value, not ray.put: Ray kills a driver whose put object is lost with its node.
        self._args = (model if detector is None else None, detector, options)
        self.stall_timeout = stall_timeout
        self.actors = [self._actor_class.remote(*self._args) for _ in range(actors)]
        try:
            backends = ray.get([a.backend.remote() for a in self.actors], timeout=startup_timeout)
            self._nodes: list[str | None] = ray.get(
                [a.node.remote() for a in self.actors], timeout=startup_timeout
            )
        except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError) as exc:
            self.close()
            raise RuntimeError(
                f"{actors} detector actors ({gpus_per_actor:g} GPU, {cpus_per_actor:g} CPU each) "
                f"did not start: {type(exc).__name__}; free resources: "
                f"{ray.available_resources()}"
            ) from exc
        self.backend = backends[0]
        log.info(
            "%d detector actors (%g GPU each, backend %s)", actors, gpus_per_actor, self.backend
        )

    def run(
        self, path: str, start: int, stop: int | None, stride: int, idle_s: float
    ) -> Iterator[list[Detected]]:
        """Detected frames of ``[start, stop)`` on the ``stride`` grid, chunk by chunk in frame
        order; an empty list every ``idle_s`` seconds spent waiting (so the caller can collect
        finished solves meanwhile)."""
        chunks = deque(plan_chunks(keyframe_indices(path), start, stop, stride, self.chunk_frames))
        if len(chunks) < len(self.actors):
            log.warning(
                "%s: %d chunks for %d detector actors; the video has few keyframes (re-encode "
                "with a keyframe every second or so to spread it)",
                path,
                len(chunks),
                len(self.actors),
            )
        ray = self._ray
        # Chunks out at once: two per actor keeps every actor busy while the driver merges.
        outstanding: deque[tuple[tuple[int, int | None], Any, int, Any]] = deque()
        load = [0] * len(self.actors)

        def send(chunk: tuple[int, int | None]) -> tuple[tuple[int, int | None], Any, int, Any]:
            slot = min(range(len(self.actors)), key=load.__getitem__)
            load[slot] += 1
            actor = self.actors[slot]
            return chunk, actor.detect.remote(path, *chunk, stride), slot, actor

        progress = checked = time.monotonic()
        while chunks or outstanding:
            while chunks and len(outstanding) < 2 * len(self.actors):
                outstanding.append(send(chunks.popleft()))
            chunk, ref, slot, actor = outstanding[0]
            ready, _ = ray.wait([ref], timeout=idle_s)
            if not ready:
                now = time.monotonic()
                if now - checked >= HEALTH_INTERVAL_S:
                    checked = now
                    self._check_health(now - progress)
                yield []
                continue
            progress = time.monotonic()
            outstanding.popleft()
            load[slot] -= 1
            try:
                detected = _private(ray.get(ref))
                ref = None  # nothing of the chunk left in Ray's object store is referenced
            except ray.exceptions.RayActorError as exc:
                if self.actors[slot] is actor:  # not yet replaced for an earlier chunk
                    self._replace(slot, exc)
                outstanding.appendleft(send(chunk))
                continue
            yield detected

    def _check_health(self, waited: float) -> None:
        """Raise when an actor's node died or no chunk was finished for ``stall_timeout``."""
        dead = dead_ray_nodes(self._ray, self._nodes)
        lost = [slot for slot, node in enumerate(self._nodes) if node in dead]
        if lost:
            raise RuntimeError(
                f"the Ray node of detector actor{'s' * (len(lost) > 1)} "
                f"{', '.join(map(str, lost))} died mid-run"
            )
        if waited > self.stall_timeout:
            raise RuntimeError(f"detector actors finished no chunk in {self.stall_timeout:g} s")

    def _replace(self, slot: int, cause: BaseException) -> None:
        replaced = replace_actor(
            self._ray,
            self.actors,
            self._nodes,
            slot,
            cause,
            kind="detector",
            restarts=self.restarts,
            max_restarts=self._max_restarts,
            make=lambda: self._actor_class.remote(*self._args),
        )
        if not replaced:
            raise RuntimeError(f"the Ray node of detector actor {slot} died mid-run")
        self.restarts += 1

    def close(self) -> None:
        for actor in self.actors:
            with contextlib.suppress(Exception):  # a lost node's actors are gone already
                self._ray.kill(actor, no_restart=True)
        self.actors = []
