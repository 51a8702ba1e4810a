"""A source: decoded frames from a reader, through a bounded queue filled by a decoding thread.

The queue is bounded in frames (``queue_size``) and in bytes (``queue_bytes``, default 256 MiB:
32 frames at 1080p, 8 at 4K; one frame always fits), see
:mod:`deepercut.sources.frame_queue`:

* **file mode** (files, image folders, URLs of finite files): the decoder waits while the
  queue is full, so nothing is lost and memory stays bounded (backpressure);
* **live mode** (cameras, live streams, ``live=True``, ``realtime=...``): the *oldest*
  queued frame is dropped (counted in :attr:`SourceStats.dropped`) so latency stays bounded
  when the consumer is slower than the source.

Every decoded frame is accounted for: ``decoded == delivered + filtered + corrupt + dropped +
discarded`` once a source is closed (:attr:`SourceStats.pending` is 0).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator

from deepercut.sources.background import END
from deepercut.sources.frame_queue import DEFAULT_MAX_BYTES
from deepercut.sources.pacing import Pacer
from deepercut.sources.reader import Outlet, Reader
from deepercut.sources.stats import SourceStats
from deepercut.types import Frame

__all__ = ["Source"]

_POLL_S = 0.1  # how often a waiting consumer checks whether the decoding thread died


class Source:
    """Decoded frames of a video, image folder, camera or stream; see :func:`open_source`.

    A context manager and an iterator of :class:`~deepercut.types.Frame`. Closing it (or
    leaving the ``with`` block) stops the decoder thread promptly.
    """

    def __init__(
        self,
        reader: Reader,
        *,
        start: int = 0,
        stop: int | None = None,
        stride: int = 1,
        max_frames: int | None = None,
        queue_size: int = 32,
        queue_bytes: int = DEFAULT_MAX_BYTES,
        live: bool = False,
        realtime: bool | float = False,
        join_timeout: float = 5.0,
    ) -> None:
        pacer = None
        if realtime is not False:
            rate = reader.fps if realtime is True else float(realtime)
            if not rate > 0:  # also nan: a folder without fps
                reader.close()
                raise ValueError(f"{reader}: unknown frame rate; pass realtime=RATE")
            pacer = Pacer(rate)
        self.description = str(reader)
        self._reader = reader
        self._is_live = live
        self._start, self._stop, self._stride = start, stop, stride
        self._max_frames = max_frames
        self._join_timeout = join_timeout
        self.stats = SourceStats()
        self._outlet = Outlet(
            reader,
            start=start,
            stop=stop,
            stride=stride,
            max_frames=max_frames,
            queue_size=queue_size,
            queue_bytes=queue_bytes,
            live=live,
            pacer=pacer,
            stats=self.stats,
        )
        self._done = max_frames == 0
        self._background = self._outlet.background
        self._finalizer = weakref.finalize(self, self._outlet.shutdown, join_timeout)
        self._background.start()

    # -- properties

    @property
    def fps(self) -> float:
        """Frame rate (``nan`` when unknown)."""
        return self._reader.fps

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """``(width, height)`` of the frames when known, as displayed (rotated); for an image
        folder, of its first image (each frame has its own)."""
        return self._reader.frame_size

    @property
    def is_live(self) -> bool:
        """Whether frames are dropped (oldest first) rather than waited for."""
        return self._is_live

    @property
    def num_frames(self) -> int | None:
        """Estimate of the frames this source will deliver (``None`` for live sources)."""
        total = self._reader.num_frames
        if self._is_live or total is None:
            return None
        end = total if self._stop is None else min(total, self._stop)
        count = max(0, -(-(end - self._start) // self._stride))
        return count if self._max_frames is None else min(count, self._max_frames)

    # -- iteration

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        if self._done:
            raise StopIteration
        if self._max_frames is not None and self.stats.delivered >= self._max_frames:
            self.close()
            raise StopIteration
        while True:
            try:
                item = self._background.get(_POLL_S)
            except BaseException:  # the reader's error, after its frames
                self._finish()
                raise
            if item is END:
                self._finish()
                raise StopIteration
            if item is not None:
                break
            if self._background.finished:
                self._done = True  # closed from another thread
                raise StopIteration
        self.stats.delivered += 1
        return item

    def _finish(self) -> None:
        self._done = True
        self._background.join(self._join_timeout)

    # -- lifetime

    def close(self) -> None:
        """Stop decoding and release the input; idempotent."""
        self._done = True
        if self._finalizer() is False:
            self.stats.error(f"decoder thread still busy {self._join_timeout:g} s after close")

    @property
    def closed(self) -> bool:
        """True once closed or finished and the decoder thread has ended."""
        return self._done and not self._background.is_alive()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "live" if self._is_live else "file"
        return f"Source({self.description!r}, {mode}, fps={self.fps:.3f})"
