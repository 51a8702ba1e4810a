"""Frames to batches for the detector: file mode's full batches, live mode's newest frames.

Two hand-offs between threads: :class:`Background` runs an iterator in a daemon thread behind
a bounded queue (backpressure: the thread waits while the queue is full), and
:class:`NewestFrames` keeps only the newest frames of a live source, dropping older ones as
stale. :func:`file_batches` cuts the prefetched frames of a file into full batches.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from deepercut.engine.stats import EngineStats
from deepercut.types import Frame

#: Marks the end of a stream in :meth:`Background.get` and :meth:`NewestFrames.take`.
END = object()

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


class Background:
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
            self._put(END)
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
        """The next item, ``END`` after the last, or ``None`` after ``timeout`` seconds."""
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
