"""Frames to batches for the detector: file mode's full batches, live mode's newest frames.

Two hand-offs between threads: :class:`~deepercut.sources.background.Background` (the one
bounded-queue thread) prefetches file frames, and :class:`NewestFrames` keeps only the newest
frames of a live source, dropping older ones as stale. :func:`file_batches` cuts the
prefetched frames of a file into full batches.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator

from deepercut.engine.stats import EngineStats
from deepercut.sources.background import END, Background
from deepercut.types import Frame

#: How often a waiting consumer wakes up (to collect finished frames meanwhile), seconds.
POLL_S = 0.01

#: A frame with the time the engine received it.
Received = tuple[Frame, float]


def file_batches(
    prefetch: Background, batch_size: int, stats: EngineStats
) -> Iterator[list[Received]]:
    """File mode's batches of ``(frame, received_time)``: full ones (the last may not be);
    an empty list after each idle poll interval. Waiting for frames counts as ``decode``."""
    batch: list[Received] = []
    while True:
        with stats.timed("decode"):
            try:
                item = prefetch.get(POLL_S)
            except Exception:
                if batch:  # the source failed: the frames it gave still get their poses
                    yield batch
                raise
        if item is END:
            if batch:
                yield batch
            return
        if isinstance(item, tuple):
            batch.append(item)
        if len(batch) >= batch_size:
            yield batch
            batch = []
        elif item is None:
            yield []


class NewestFrames:
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
        within ``timeout`` seconds; ``END`` once the source ended and none waits (or the
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
            return END if self._ended else []

    def stop(self) -> None:
        """Ask the reader to end (closing the source unblocks one waiting for a frame)."""
        with self._ready:
            self._stopping = True
            self._waiting.clear()

    def join(self) -> None:
        self._thread.join(timeout=5.0)
