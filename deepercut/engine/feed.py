"""The engine's feed: frames in, detected batches out, in frame order, for the solver pool.

In this process (:class:`DriverFeed`), decoding hand-off and detection run in two threads
(the network releases the GIL), so the caller keeps collecting and handing back solved frames
while the next batch is being detected; one detected batch waits at most, so backpressure
reaches the source. File mode detects full batches
(:func:`~deepercut.engine.batching.file_batches`); live mode whatever newest frames wait
(:class:`~deepercut.engine.batching.NewestFrames`), the next batch taken only once the
previous one was handed over. With detector actors, :func:`sharded_feed` yields their chunks
instead.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from deepercut.engine.batching import POLL_S, NewestFrames, Received, file_batches
from deepercut.engine.config import DetectFn
from deepercut.engine.stats import EngineStats
from deepercut.sources.background import END, Background
from deepercut.types import Candidates, Frame

if TYPE_CHECKING:
    from deepercut.engine.sharded import ShardedDetector

#: Decoded frames buffered ahead of the engine for file sources.
FILE_QUEUE_SIZE = 32


class DetectedFrame(NamedTuple):
    """A detected frame on its way to the solvers."""

    index: int
    pts: float
    received: float  # when the engine received the decoded frame (perf_counter)
    image: np.ndarray | None  # kept for rendering, else None
    candidates: Candidates


def source_queue_size(
    spec: str | int | os.PathLike[str], live: bool | None, realtime: bool | float, batch_size: int
) -> int:
    """Decoded frames to buffer ahead of the engine: a deep queue for files (smooths decoding);
    one batch for live sources, whose queued frames all add latency before any is dropped.

    A spec that is not an existing path is a camera or stream (live by default).
    """
    live_source = live or realtime is not False or not _exists(spec)
    return batch_size if live_source and live is not False else FILE_QUEUE_SIZE


def is_file(spec: str | int | os.PathLike[str]) -> bool:
    """Whether a source spec names an existing file."""
    return not isinstance(spec, int) and Path(spec).is_file()


def _exists(spec: str | int | os.PathLike[str]) -> bool:
    return not isinstance(spec, int) and Path(spec).exists()


@dataclass
class DriverFeed:
    """Detection in this process (module docstring).

    Attributes:
        detect: frames → candidates.
        stats: the run's counters (``frames``, ``dropped_stale``, ``decode`` and ``detect``
            times).
        keep_images: attach each decoded image to its detected frame.
    """

    detect: DetectFn
    stats: EngineStats
    keep_images: bool

    def batches(
        self,
        frames: Iterable[Frame],
        *,
        owned: bool,
        live: bool,
        batch_size: int,
        live_batch_size: int,
    ) -> Generator[list[DetectedFrame], None, None]:
        """Detected batches; an empty list after each idle poll interval. Closes ``frames`` at
        the end if ``owned``."""
        prefetch: Background | NewestFrames
        if live:
            prefetch = NewestFrames(frames, live_batch_size, name="deepercut-newest")
            work = self._live(prefetch)
        else:
            received = ((frame, time.perf_counter()) for frame in frames)
            prefetch = Background.iterate(received, max_items=1, name="deepercut-prefetch")
            work = self._file(prefetch, batch_size)
        # Live: the next batch is taken only once the previous one was handed over, so the
        # detector works on the newest frames and at most one detected batch waits.
        detection = Background.iterate(work, max_items=1, name="deepercut-detect", handoff=live)
        try:
            while True:
                item = detection.get(POLL_S)
                if item is END:
                    return
                yield [] if item is None else item
        finally:
            detection.stop()
            prefetch.stop()
            if owned:  # closing the source also unblocks a prefetch thread waiting on it
                frames.close()  # type: ignore[attr-defined]
            prefetch.join()
            detection.join()

    def _file(self, prefetch: Background, batch_size: int) -> Iterator[list[DetectedFrame]]:
        """The detection thread's work in file mode: full batches through the detector."""
        for batch in file_batches(prefetch, batch_size, self.stats):
            if batch:
                yield self._detect(batch)

    def _live(self, newest: NewestFrames) -> Iterator[list[DetectedFrame]]:
        """The detection thread's work in live mode: whatever newest frames wait, at once."""
        stats = self.stats
        while True:
            with stats.timed("decode"):
                batch = newest.take(POLL_S)
            stats.frames += newest.dropped - stats.dropped_stale
            stats.dropped_stale = newest.dropped
            if batch is END:
                return
            if batch:
                yield self._detect(batch)  # type: ignore[arg-type]

    def _detect(self, batch: list[Received]) -> list[DetectedFrame]:
        with self.stats.timed("detect"):
            found = self.detect([frame for frame, _ in batch])
        self.stats.frames += len(batch)
        return [
            DetectedFrame(f.index, f.pts, received, f.image if self.keep_images else None, c)
            for (f, received), c in zip(batch, found, strict=True)
        ]


def sharded_feed(
    sharded: ShardedDetector,
    path: str,
    start: int,
    stop: int | None,
    stride: int,
    stats: EngineStats,
) -> Generator[list[DetectedFrame], None, None]:
    """Chunks detected by the detector actors, in frame order (waiting for them counts as
    ``detect``); an empty list after each idle poll interval."""
    chunks = sharded.run(path, start, stop, stride, idle_s=POLL_S)
    while True:
        with stats.timed("detect"):
            chunk = next(chunks, None)
        if chunk is None:
            return
        received = time.perf_counter()
        stats.frames += len(chunk)
        yield [DetectedFrame(index, pts, received, None, c) for index, pts, c in chunk]
