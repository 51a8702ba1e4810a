"""The contract between a reader (one kind of source) and the thread that runs it.

A reader decodes its input and hands every decoded frame to an :class:`Outlet`, which filters
it (``start``/``stop``/``stride``), paces it (a virtual camera) and queues it for the consumer
on a :class:`~deepercut.sources.background.Background` thread, counting every frame in
:class:`~deepercut.sources.stats.SourceStats`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

import numpy as np

from deepercut.io.redact import redact_text
from deepercut.sources.background import Background
from deepercut.sources.errors import SourceError
from deepercut.sources.pacing import Pacer
from deepercut.sources.stats import SourceStats
from deepercut.types import Frame

__all__ = ["Outlet", "Reader"]


class Reader(Protocol):
    """One kind of source: what :class:`~deepercut.sources.source.Source` needs of it."""

    fps: float  #: frame rate, ``nan`` when unknown
    frame_size: tuple[int, int] | None  #: ``(width, height)`` as displayed, when known
    num_frames: int | None  #: frames in the input, when known

    def run(self, out: Outlet) -> None:
        """Decode until the end (or until ``out`` says stop), offering each frame to ``out``."""

    def close(self) -> None:
        """Release the input; idempotent."""


class Outlet:
    """The decoding thread's side: filters frames by start/stop/stride and queues them.

    Holds no reference to its :class:`~deepercut.sources.source.Source`, so an abandoned
    source is garbage collected and its finalizer stops the thread.
    """

    def __init__(
        self,
        reader: Reader,
        *,
        start: int,
        stop: int | None,
        stride: int,
        max_frames: int | None,
        queue_size: int,
        queue_bytes: int,
        live: bool,
        pacer: Pacer | None,
        stats: SourceStats,
    ) -> None:
        self.reader = reader
        self.start = start
        self.stop = stop
        self.stride = stride
        self.max_frames = max_frames
        self.live = live
        self.pacer = pacer
        self.stats = stats
        self.background = Background(
            self._run,
            name=f"deepercut-source:{reader}",
            max_items=queue_size,
            max_bytes=queue_bytes,
        )
        #: Set once the consumer closes the source: readers stop decoding.
        self.closing: threading.Event = self.background.stopping
        self._queued = 0
        self._discard_lock = threading.Lock()  # `discarded` is counted by both threads

    def _run(self) -> None:
        try:
            self.reader.run(self)
        except SourceError:
            raise
        except Exception as exc:  # a bug or an unexpected library error: report, don't hang
            raise SourceError(
                f"{self.reader}: {type(exc).__name__}: {redact_text(str(exc))}"
            ) from exc
        finally:
            self.reader.close()

    def reject(self) -> None:
        """Count a decoded frame flagged as corrupt (not delivered)."""
        self.stats.decoded += 1
        self.stats.corrupt += 1

    def offer(
        self, index: int, pts: float, image: Callable[[], np.ndarray], source: str = ""
    ) -> bool:
        """Handle one decoded frame; ``image`` converts it only if it is kept; ``source``
        overrides the reader's description.

        Returns:
            False when decoding should stop (closed, past ``stop``, ``max_frames`` queued).
        """
        stats = self.stats
        stats.decoded += 1
        if index < self.start:
            stats.filtered += 1
            return not self.closing.is_set()
        if self.stop is not None and index >= self.stop:
            stats.filtered += 1
            return False
        if self.pacer is not None:
            self.pacer.wait(index, self.closing)
        if (index - self.start) % self.stride:
            stats.filtered += 1
            return not self.closing.is_set()
        if not self._queue(Frame(index, pts, image(), source or str(self.reader))):
            self._discard(1)  # closed while it waited for room
            return False
        self._queued += 1
        # In live mode frames may still be dropped, so the consumer counts max_frames.
        if not self.live and self.max_frames is not None and self._queued >= self.max_frames:
            return False
        return not self.closing.is_set()

    def _queue(self, frame: Frame) -> bool:
        """Queue a frame (False if closed first); live frames displace the oldest queued
        frames instead of waiting."""
        nbytes = frame.image.nbytes
        if self.live:
            self.stats.dropped += len(self.background.put_displacing(frame, nbytes))
            return True
        return self.background.put(frame, nbytes)

    def shutdown(self, timeout: float) -> bool:
        """Stop the thread (unblocking it if it waits on the queue); True if it ended."""
        self._drain()
        ended = self.background.join(timeout)
        self._drain()
        return ended

    def _drain(self) -> None:
        queued = self.background.stop()
        self._discard(sum(isinstance(item, Frame) for item in queued))

    def _discard(self, frames: int) -> None:
        with self._discard_lock:
            self.stats.discarded += frames
