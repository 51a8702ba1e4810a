"""Frame sources: video files, image folders, cameras and network streams, decoded by PyAV.

:func:`open_source` turns a spec into a :class:`Source`, a context-managed iterator of
:class:`~deepercut.types.Frame`. Decoding runs in a background thread that fills a bounded
queue:

* **file mode** (files, image folders): the decoder waits while the queue is full, so nothing
  is lost and memory stays bounded (backpressure);
* **live mode** (cameras, network streams, ``live=True``, ``realtime=...``): the *oldest*
  queued frame is dropped (counted in :attr:`SourceStats.dropped`) so latency stays bounded
  when the consumer is slower than the source.

Frame indices count decoded frames from 0, before ``start``/``stride`` filtering (for image
folders: the position in the sorted file list). For a file with timestamps and a known frame
rate the index also follows the timeline (``index == round(pts * fps)`` for constant-frame-rate
files): frames missing from it (damaged data) leave a gap counted in
:attr:`SourceStats.missing`, and a ``start`` reached by seeking gives the same indices as
decoding from the beginning. ``pts`` is in seconds from the stream's start time (0 for the
first frame of most files); without timestamps it is ``index / fps`` (files) or the wall-clock
time since opening (live). Frames whose timestamp does not increase (reordered or damaged
data) are skipped as corrupt, so ``pts`` always increases.

Damaged data never raises: packets the decoder rejects are skipped and counted. FFmpeg's H.264
decoder conceals most damage instead of failing, so what shows is frames missing from the
timeline. With frame-threaded decoding (files), damage in the last packets can also cost the
few frames still inside the decoder's threads.

Live sources that fail (read error, timeout, end of stream) are reopened with exponential
backoff (:class:`Reconnect`); the frames the outage cost are estimated as fps × outage time
(:attr:`SourceStats.lost_outage`), the outage lasting from the start of the read that failed
(a stalled input's wait for its timeout included) to the reopening, and timestamps are rebased
so they keep increasing. A source that cannot be opened at all fails at :func:`open_source`.

``realtime=True`` plays a file or folder at its frame rate (or ``realtime=RATE`` frames per
second) as a virtual camera in live mode: live code (dropping under overload, the camera
example ``examples/camera.py``) is tested with it instead of a camera.
"""

from __future__ import annotations

import itertools
import math
import queue
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from deepercut.io.redact import redact_text, redact_url
from deepercut.types import Frame

__all__ = [
    "IMAGE_SUFFIXES",
    "NETWORK_SCHEMES",
    "Reconnect",
    "Source",
    "SourceError",
    "SourceStats",
    "list_images",
    "open_source",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt")
_CAMERA_FORMATS = ("v4l2", "avfoundation", "dshow")
_MAX_ERRORS = 100  # kept in SourceStats.errors; older ones are discarded
_MAX_READ_ERRORS = 8  # consecutive demuxer errors before a file is treated as ended
_SEEK_TRIES = 4  # seeks ever further back before decoding from the beginning
_DEFAULT_RECONNECT_ATTEMPTS = 5


class SourceError(ValueError):
    """A source that cannot be opened or read (the message names it and gives FFmpeg's reason)."""


@dataclass
class SourceStats:
    """Counters of a :class:`Source`, updated while it runs.

    Attributes:
        decoded: frames the decoder produced (for videos including those before ``start``
            and between ``stride`` steps; image folders skip those without decoding).
        delivered: frames handed to the consumer.
        skipped_corrupt: packets the decoder rejected, unreadable images, and frames skipped
            because their timestamp did not increase.
        missing: frames absent from a file's timeline (gaps in timestamps: damaged data).
        dropped: frames discarded in live mode because the consumer fell behind.
        lost_outage: frames estimated lost while a live source was reconnecting.
        reconnects: reconnection attempts (successful or not).
        errors: short descriptions of the last problems (at most 100).
    """

    decoded: int = 0
    delivered: int = 0
    skipped_corrupt: int = 0
    missing: int = 0
    dropped: int = 0
    lost_outage: int = 0
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)

    def error(self, message: str) -> None:
        """Record a problem, keeping the most recent ones."""
        self.errors.append(message)
        if len(self.errors) > _MAX_ERRORS:
            del self.errors[0]


@dataclass(frozen=True)
class Reconnect:
    """Reconnection policy: up to ``attempts`` reopenings, waiting ``delay·2^k`` (at most
    ``max_delay``) seconds before attempt ``k``."""

    attempts: int = _DEFAULT_RECONNECT_ATTEMPTS
    delay: float = 0.5
    max_delay: float = 8.0

    def wait(self, attempt: int) -> float:
        """Seconds to wait before the 0-based ``attempt``."""
        return min(self.max_delay, self.delay * 2.0**attempt)


_END = object()  # queued after the last frame


# ----------------------------------------------------------------------------- spec parsing


@dataclass(frozen=True)
class _Spec:
    kind: str  # "file" | "folder" | "camera" | "stream"
    url: str
    format: str | None = None


def _resolve(spec: str | int | Path, format: str | None = None) -> _Spec:
    """Classify a source spec: camera index or device, stream URL, image folder or file."""
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        index = int(spec)
        if sys.platform.startswith("linux"):
            return _Spec("camera", f"/dev/video{index}", format or "v4l2")
        if sys.platform == "darwin":
            return _Spec("camera", str(index), format or "avfoundation")
        raise SourceError(
            f"camera {index}: name the device instead, e.g. 'dshow:video=Integrated Camera'"
        )
    text = str(spec)
    prefix, sep, rest = text.partition(":")
    if sep and prefix in _CAMERA_FORMATS:  # "dshow:video=Name", "avfoundation:0"
        return _Spec("camera", rest, prefix)
    if text.startswith("/dev/video"):
        return _Spec("camera", text, format or "v4l2")
    scheme, sep, _ = text.partition("://")
    if sep and scheme.lower() in NETWORK_SCHEMES:
        return _Spec("stream", text, format)
    path = Path(text)
    if path.is_dir():
        return _Spec("folder", text, format)
    return _Spec("file", text, format)


def _stream_options(url: str, timeout: float) -> dict[str, str]:
    """FFmpeg input options for a network stream: TCP for RTSP, socket timeouts in µs."""
    micros = str(round(timeout * 1e6))
    scheme = url.partition("://")[0].lower()
    # rw_timeout is understood by every protocol; "timeout" is the socket I/O timeout of
    # rtsp (FFmpeg >= 5, formerly "stimeout"), http, tcp and udp.
    options = {"rw_timeout": micros}
    if scheme.startswith("rtsp"):
        options.update(rtsp_transport="tcp", timeout=micros)
    elif scheme in ("http", "https", "tcp", "udp"):
        options["timeout"] = micros
    return options


def _natural_key(path: Path) -> list[Any]:
    """Sort key that orders ``img2`` before ``img10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def list_images(folder: Path) -> list[Path]:
    """The images of ``folder`` (:data:`IMAGE_SUFFIXES`) in source order: frame ``i`` of the
    folder is ``list_images(folder)[i]``."""
    return sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
        key=_natural_key,
    )


def _reason(exc: BaseException) -> str:
    """FFmpeg's short reason (``strerror``) or the exception text."""
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


# ----------------------------------------------------------------------------- decoder thread


class _Pacer:
    """Sleeps so frames leave at ``rate`` per second (a virtual camera)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._origin: tuple[float, int] | None = None

    def wait(self, index: int, stop: threading.Event) -> None:
        now = time.monotonic()
        if self._origin is None:
            self._origin = (now, index)
            return
        t0, i0 = self._origin
        delay = t0 + (index - i0) / self.rate - now
        if delay > 0:
            stop.wait(delay)


class _Decoder:
    """The background thread's side: filters frames by start/stop/stride and queues them.

    Holds no reference to its :class:`Source`, so an abandoned source is garbage collected and
    its finalizer stops the thread.
    """

    def __init__(
        self,
        reader: _ContainerReader | _FolderReader,
        *,
        start: int,
        stop: int | None,
        stride: int,
        max_frames: int | None,
        queue_size: int,
        live: bool,
        pacer: _Pacer | None,
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
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self.closing = threading.Event()
        self._queued = 0

    def run(self) -> None:
        try:
            self.reader.run(self)
            self._put(_END)
        except SourceError as exc:
            self._put(exc)
        except Exception as exc:  # a bug or an unexpected library error: report, don't hang
            error = SourceError(f"{self.reader}: {type(exc).__name__}: {redact_text(str(exc))}")
            error.__cause__ = exc
            self._put(error)
        finally:
            self.reader.close()

    def offer(
        self, index: int, pts: float, image: Callable[[], np.ndarray], source: str = ""
    ) -> bool:
        """Handle one decoded frame; ``image`` converts it only if it is kept; ``source``
        overrides the reader's description.

        Returns:
            False when decoding should stop (closed, past ``stop``, ``max_frames`` queued).
        """
        self.stats.decoded += 1
        if index < self.start:
            return not self.closing.is_set()
        if self.stop is not None and index >= self.stop:
            return False
        if self.pacer is not None:
            self.pacer.wait(index, self.closing)
        if (index - self.start) % self.stride == 0:
            frame = Frame(index, pts, image(), source or str(self.reader))
            self._put(frame, droppable=self.live)
            self._queued += 1
            # In live mode frames may still be dropped, so the consumer counts max_frames.
            if not self.live and self.max_frames is not None and self._queued >= self.max_frames:
                return False
        return not self.closing.is_set()

    def _put(self, item: Any, droppable: bool = False) -> None:
        """Queue an item; live frames displace the oldest queued frame instead of waiting."""
        while not self.closing.is_set():
            if droppable:
                try:
                    self.queue.put_nowait(item)
                    return
                except queue.Full:
                    try:
                        self.queue.get_nowait()  # only frames are queued before the end marker
                        self.stats.dropped += 1
                    except queue.Empty:
                        pass
                    continue
            try:
                self.queue.put(item, timeout=0.1)  # re-checks `closing` while blocked
                return
            except queue.Full:
                continue

    def shutdown(self, thread: threading.Thread, timeout: float) -> bool:
        """Stop the thread (unblocking it if it waits on the queue); True if it ended."""
        self.closing.set()
        self._drain()
        thread.join(timeout)
        self._drain()
        return not thread.is_alive()

    def _drain(self) -> None:
        try:
            while True:
                self.queue.get_nowait()
        except queue.Empty:
            pass


# ----------------------------------------------------------------------------- readers


class _ContainerReader:
    """Demuxes and decodes the first video stream of anything FFmpeg opens."""

    def __init__(
        self,
        spec: _Spec,
        *,
        options: dict[str, str],
        timeout: float | None,
        reconnect: Reconnect | None,
        live: bool,
    ) -> None:
        self.spec = spec
        self._options = options
        self._timeout = timeout
        self.reconnect = reconnect
        self.live = live
        self.container: av.container.InputContainer | None = self._open()
        stream = self.container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.fps = float(rate) if rate else math.nan
        ctx = stream.codec_context
        self.frame_size = (ctx.width, ctx.height) if ctx.width and ctx.height else None
        self.num_frames = None if live else self._count_frames(stream)
        # Timeline state; index and pts carry on across reconnections.
        self._index = -1
        self._from_pts = True  # the next frame's index comes from its timestamp
        self._last_pts = -math.inf
        self._offset = 0.0  # added to timestamps of a reopened stream
        self._outage = math.nan  # seconds the last outage lasted (nan: none pending)
        self._wall0 = time.monotonic()
        # When the last read began: a stalled input's outage starts there, not when the read
        # finally times out (the frames of the wait are lost too).
        self._read_began = self._wall0
        # Per session: time base, timestamp of pts 0, and whether gaps in the timestamps
        # advance the index (files only; live clocks jitter and restart).
        self._tb: Fraction | None = None
        self._origin: int | None = None
        self._timeline = False
        self._end_reason = ""

    def __str__(self) -> str:
        # Descriptions end up in pose-stream headers and logs: no credentials from stream URLs.
        url = redact_url(self.spec.url)
        return url if self.spec.format is None else f"{self.spec.format}:{url}"

    def _open(self) -> av.container.InputContainer:
        try:
            container = av.open(
                self.spec.url, format=self.spec.format, options=self._options, timeout=self._timeout
            )
        except FileNotFoundError:
            raise
        except (av.FFmpegError, OSError) as exc:
            raise SourceError(f"cannot open {self}: {_reason(exc)}") from exc
        if not container.streams.video:
            container.close()
            raise SourceError(f"cannot open {self}: no video stream")
        return container

    def _count_frames(self, stream: av.video.stream.VideoStream) -> int | None:
        if stream.frames:
            return int(stream.frames)
        if math.isnan(self.fps):
            return None
        if stream.duration is not None and stream.time_base is not None:
            return round(float(stream.duration * stream.time_base) * self.fps)
        if self.container is not None and self.container.duration is not None:
            return round(self.container.duration / av.time_base * self.fps)
        return None

    def close(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None

    def run(self, out: _Decoder) -> None:
        """Decode until the end; reopen (with a reconnection policy) when the input ends or
        fails."""
        first = True
        while self.container is not None:
            ended, reason = self._session(self.container, out, seek=out.start if first else 0)
            self.close()
            if not ended or self.reconnect is None or out.closing.is_set():
                return
            self._reopen(out, reason)
            first = False

    def _reopen(self, out: _Decoder, reason: str) -> None:
        """Reconnect with backoff (returns without a container if closed meanwhile).

        Raises:
            SourceError: after the last failed attempt.
        """
        assert self.reconnect is not None
        stats = out.stats
        stats.error(f"stream lost: {reason}")
        began = self._read_began
        for attempt in range(self.reconnect.attempts):
            if out.closing.wait(self.reconnect.wait(attempt)):
                return
            stats.reconnects += 1
            try:
                self.container = self._open()
            except (OSError, SourceError) as exc:
                stats.error(f"reconnect {attempt + 1}: {_reason(exc)}")
                continue
            self._outage = time.monotonic() - began
            stats.lost_outage += self._frames_in(self._outage)
            return
        stats.lost_outage += self._frames_in(time.monotonic() - began)
        raise SourceError(
            f"{self}: stream lost ({reason}); gave up after {self.reconnect.attempts} "
            "reconnect attempts"
        )

    def _frames_in(self, seconds: float) -> int:
        return 0 if math.isnan(self.fps) else round(seconds * self.fps)

    def _session(
        self, container: av.container.InputContainer, out: _Decoder, seek: int
    ) -> tuple[bool, str]:
        """Decode one opened container.

        Returns:
            ``(ended, reason)``: False when decoding was stopped by the consumer's side; True
            at the end of the data or after read errors, with the reason.
        """
        stream = self._video(container)
        self._tb = stream.time_base
        self._origin = stream.start_time  # None: the first frame's pts (cameras)
        self._timeline = not self.live and self._index < 0
        self._end_reason = "end of stream"
        if seek > 0:
            frames = self._seek(container, stream, seek, out)
        else:
            frames = self._decode(container, stream, out)
        for frame in frames:
            if not self._deliver(frame, out):
                return False, "stopped"
        return True, self._end_reason

    def _video(self, container: av.container.InputContainer) -> av.video.stream.VideoStream:
        """The stream to decode, set up for threaded decoding."""
        stream = container.streams.video[0]
        # Frame threading delays output by a frame per thread: fine for files, not for cameras.
        stream.thread_type = "SLICE" if self.live else "AUTO"
        return stream

    def _decode(
        self,
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
        out: _Decoder,
    ) -> Iterator[av.VideoFrame]:
        """Decoded frames from the current position: corrupt packets are skipped and counted;
        ends at the end of the data or after read errors (``_end_reason`` says which)."""
        read_errors = 0
        packets = container.demux(stream)
        while True:
            try:
                self._read_began = time.monotonic()
                packet = next(packets)  # the last one is a flush packet: nothing stays buffered
                read_errors = 0
            except StopIteration:
                return
            except av.FFmpegError as exc:
                self._end_reason = _reason(exc)
                out.stats.error(f"read: {self._end_reason}")
                read_errors += 1
                if self.live or self.reconnect is not None or read_errors >= _MAX_READ_ERRORS:
                    yield from self._drain(stream)
                    return
                packets = container.demux(stream)  # the demuxer resynchronises on the next read
                continue
            try:
                yield from packet.decode()
            except av.FFmpegError as exc:
                out.stats.skipped_corrupt += 1
                out.stats.error(f"decode: {_reason(exc)}")

    @staticmethod
    def _drain(stream: av.video.stream.VideoStream) -> list[av.VideoFrame]:
        """The frames still buffered in the decoder after a fatal read error."""
        try:
            return stream.codec_context.decode(None)
        except av.FFmpegError:
            return []

    def _seek(
        self,
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
        index: int,
        out: _Decoder,
    ) -> Iterator[av.VideoFrame]:
        """Frames from the keyframe at or before frame ``index`` (the consumer's side discards
        those before it).

        Some demuxers (MPEG-TS) seek only approximately: when the first frame is past
        ``index``, the seek is retried from further back. Without timestamps, or when seeking
        fails, the input is decoded from the beginning, counting frames.
        """
        if math.isnan(self.fps) or self._tb is None or self._origin is None:
            self._from_pts = False
            return self._decode(container, stream, out)
        margin = 0.0  # seconds before the target
        for _ in range(_SEEK_TRIES):
            seconds = max(0.0, index / self.fps - margin)
            target = self._origin + int(Fraction(seconds) / self._tb)
            try:
                container.seek(target, stream=stream, backward=True, any_frame=False)
            except av.FFmpegError:
                break
            frames = self._decode(container, stream, out)
            first = next(frames, None)
            if first is None or first.pts is None:
                break
            if round(float((first.pts - self._origin) * self._tb) * self.fps) <= index:
                return itertools.chain([first], frames)
            if seconds == 0.0:
                break
            margin = max(1.0, 2 * margin)
        # Reopen rather than seek to 0, which MPEG-TS does not do reliably either.
        self.close()
        self.container = self._open()
        self._from_pts = False
        return self._decode(self.container, self._video(self.container), out)

    def _pts(self, frame: av.VideoFrame) -> float:
        """Seconds since the session's start; estimated when the frame has no timestamp."""
        if frame.pts is not None and self._tb is not None:
            if self._origin is None:
                self._origin = frame.pts
            return float((frame.pts - self._origin) * self._tb)
        if self.live:
            return time.monotonic() - self._wall0
        return (self._index + 1) / self.fps  # nan when the rate is unknown too

    def _deliver(self, frame: av.VideoFrame, out: _Decoder) -> bool:
        """Give a decoded frame its index and pts and offer it; False = stop decoding."""
        stats = out.stats
        if frame.is_corrupt:
            stats.skipped_corrupt += 1
            return True
        pts = self._pts(frame)
        if not math.isnan(self._outage):
            # A reopened stream may restart its clock: continue after the outage.
            if pts + self._offset <= self._last_pts:
                step = self._outage if math.isnan(self.fps) else max(self._outage, 1 / self.fps)
                self._offset = self._last_pts + step - pts
            self._outage = math.nan
        pts += self._offset
        if pts <= self._last_pts:
            stats.skipped_corrupt += 1  # reordered or damaged: keep the timeline increasing
            return True
        fps = self.fps
        timed = self._timeline and not math.isnan(fps) and not math.isnan(pts)
        if self._from_pts and timed:
            index = max(self._index + 1, round(pts * fps))
        else:
            index = self._index + 1
            if timed and math.isfinite(self._last_pts):
                gap = round((pts - self._last_pts) * fps) - 1
                if gap > 0:
                    stats.missing += gap
                    index += gap
        self._from_pts = False
        self._index = index
        self._last_pts = pts
        return out.offer(index, pts, lambda: frame.to_ndarray(format="rgb24"))


class _FolderReader:
    """Decodes the images of a folder in natural order (``img2`` before ``img10``)."""

    def __init__(self, path: Path, fps: float | None) -> None:
        self.path = path
        self.files = list_images(path)
        if not self.files:
            raise SourceError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)})")
        self.fps = math.nan if fps is None else float(fps)
        self.num_frames = len(self.files)
        self.frame_size: tuple[int, int] | None = None
        for file in self.files:  # the first readable image sets the size
            try:
                first = self._decode(file)
            except SourceError:
                continue
            self.frame_size = (first.shape[1], first.shape[0])
            break
        else:
            raise SourceError(f"{path}: none of its {len(self.files)} images can be decoded")

    def __str__(self) -> str:
        return str(self.path)

    @staticmethod
    def _decode(path: Path) -> np.ndarray:
        try:
            with av.open(str(path)) as container:
                for frame in container.decode(video=0):
                    return frame.to_ndarray(format="rgb24")
        except (av.FFmpegError, OSError) as exc:
            raise SourceError(f"cannot decode {path}: {_reason(exc)}") from exc
        raise SourceError(f"cannot decode {path}: no image in it")

    def close(self) -> None:
        pass

    def run(self, out: _Decoder) -> None:
        for index in range(out.start, len(self.files)):
            if (index - out.start) % out.stride:
                continue  # cheaper than decoding and discarding
            path = self.files[index]
            try:
                image = self._decode(path)
            except SourceError as exc:
                out.stats.skipped_corrupt += 1
                out.stats.error(str(exc))
                continue
            # The offer counts it as decoded; strides were skipped without decoding.
            if not out.offer(index, index / self.fps, lambda image=image: image, str(path)):
                return


# ----------------------------------------------------------------------------- public API


class Source:
    """Decoded frames of a video, image folder, camera or stream; see :func:`open_source`.

    A context manager and an iterator of :class:`~deepercut.types.Frame`. Closing it (or
    leaving the ``with`` block) stops the decoder thread promptly.
    """

    def __init__(
        self,
        reader: _ContainerReader | _FolderReader,
        *,
        start: int = 0,
        stop: int | None = None,
        stride: int = 1,
        max_frames: int | None = None,
        queue_size: int = 32,
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
            pacer = _Pacer(rate)
        self.description = str(reader)
        self._reader = reader
        self._is_live = live
        self._start, self._stop, self._stride = start, stop, stride
        self._max_frames = max_frames
        self._join_timeout = join_timeout
        self.stats = SourceStats()
        self._decoder = _Decoder(
            reader,
            start=start,
            stop=stop,
            stride=stride,
            max_frames=max_frames,
            queue_size=queue_size,
            live=live,
            pacer=pacer,
            stats=self.stats,
        )
        self._done = max_frames == 0
        self._thread = threading.Thread(
            target=self._decoder.run, name=f"deepercut-source:{self.description}", daemon=True
        )
        self._finalizer = weakref.finalize(self, self._decoder.shutdown, self._thread, join_timeout)
        self._thread.start()

    # -- properties

    @property
    def fps(self) -> float:
        """Frame rate (``nan`` when unknown)."""
        return self._reader.fps

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """``(width, height)`` of the frames when known."""
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
                item = self._decoder.queue.get(timeout=0.1)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._decoder.queue.empty():
                    self._done = True  # closed from another thread
                    raise StopIteration from None
        if item is _END or isinstance(item, BaseException):
            self._done = True
            self._thread.join(self._join_timeout)
            if item is _END:
                raise StopIteration
            raise item
        self.stats.delivered += 1
        return item

    # -- lifetime

    def close(self) -> None:
        """Stop decoding and release the input; idempotent."""
        self._done = True
        if self._finalizer() is False:
            self.stats.error(f"decoder thread still busy {self._join_timeout:g} s after close")

    @property
    def closed(self) -> bool:
        """True once closed or finished and the decoder thread has ended."""
        return self._done and not self._thread.is_alive()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "live" if self._is_live else "file"
        return f"Source({self.description!r}, {mode}, fps={self.fps:.3f})"


def open_source(
    spec: str | int | Path,
    *,
    start: int = 0,
    stop: int | None = None,
    stride: int = 1,
    max_frames: int | None = None,
    queue_size: int = 32,
    live: bool | None = None,
    realtime: bool | float = False,
    timeout: float = 5.0,
    reconnect: Reconnect | int | None = None,
    format: str | None = None,
    options: dict[str, str] | None = None,
    fps: float | None = None,
) -> Source:
    """Open a video file, image folder, camera or network stream.

    Args:
        spec: a video file (any container/codec FFmpeg reads); a folder of images (png, jpg,
            jpeg, bmp, tif, in natural order); a camera: an index (``0`` or ``"0"``:
            ``/dev/video0`` with v4l2 on Linux, avfoundation on macOS), a device
            (``/dev/video2``) or ``"FORMAT:DEVICE"`` (``"dshow:video=Integrated Camera"``,
            ``"avfoundation:0"``); or a stream URL (rtsp, rtmp, http(s), udp, tcp, srt).
        start: first frame index to deliver; files seek to the keyframe before it and decode
            up to it (exact for constant-frame-rate files with timestamps; otherwise indices
            after a seek are estimated from pts × fps, and streams without timestamps are
            decoded from the beginning).
        stop: frame index to stop before (exclusive).
        stride: deliver every ``stride``-th frame from ``start``.
        max_frames: deliver at most this many frames.
        queue_size: decoded frames buffered ahead of the consumer.
        live: drop the oldest frame when the consumer falls behind; default True for cameras,
            streams and ``realtime``, False for files and folders (a live file still ends at
            its end, unless ``reconnect`` is given).
        realtime: play a file or folder as a virtual camera at its frame rate (True) or at
            this many frames per second; implies ``live`` unless ``live=False``.
        timeout: seconds to wait when opening and reading cameras and streams.
        reconnect: reopening policy when a live source fails or ends: a :class:`Reconnect`, a
            number of attempts, or 0 for none; default 5 attempts for cameras and streams and
            none for files (a file with a policy is reopened at its end, i.e. looped).
        format: FFmpeg input format, overriding the guess (e.g. ``"mjpeg"``).
        options: FFmpeg input options (strings), merged over the defaults (for RTSP:
            ``rtsp_transport=tcp`` and socket timeouts in µs as ``timeout``/``rw_timeout``).
        fps: frame rate of an image folder (sets ``pts = index / fps``; ``nan`` without).

    Raises:
        FileNotFoundError: a missing file, folder or device.
        SourceError: anything else that cannot be opened (the message has FFmpeg's reason).
    """
    if start < 0 or stride < 1 or queue_size < 1 or (max_frames is not None and max_frames < 0):
        raise ValueError(
            f"need start >= 0, stride >= 1, queue_size >= 1, max_frames >= 0; got {start=}, "
            f"{stride=}, {queue_size=}, {max_frames=}"
        )
    resolved = _resolve(spec, format)
    if resolved.kind in ("file", "folder") and not Path(resolved.url).exists():
        raise FileNotFoundError(f"no such file or folder: {redact_url(resolved.url)}")
    network = resolved.kind in ("camera", "stream")
    if live is None:
        live = network or realtime is not False
    if reconnect is None:
        policy = Reconnect() if network else None
    elif isinstance(reconnect, int):
        policy = Reconnect(attempts=reconnect) if reconnect > 0 else None
    else:
        policy = reconnect
    reader: _ContainerReader | _FolderReader
    if resolved.kind == "folder":
        reader = _FolderReader(Path(resolved.url), fps)
    else:
        merged = _stream_options(resolved.url, timeout) if resolved.kind == "stream" else {}
        merged.update(options or {})
        reader = _ContainerReader(
            resolved,
            options=merged,
            timeout=timeout if network else None,
            reconnect=policy,
            live=live,
        )
    return Source(
        reader,
        start=start,
        stop=stop,
        stride=stride,
        max_frames=max_frames,
        queue_size=queue_size,
        live=live,
        realtime=realtime,
    )
