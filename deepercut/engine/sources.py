"""Frame sources: video files, image folders, cameras and network streams, decoded by PyAV.

:func:`open_source` turns a spec into a :class:`Source`, a context-managed iterator of
:class:`~deepercut.types.Frame`. Decoding runs in a background thread that fills a queue
bounded in frames (``queue_size``) and in bytes (``queue_bytes``, default 256 MiB: 32 frames
at 1080p, 8 at 4K; one frame always fits), see :mod:`deepercut.engine.frame_queue`:

* **file mode** (files, image folders, URLs of finite files): the decoder waits while the
  queue is full, so nothing is lost and memory stays bounded (backpressure);
* **live mode** (cameras, live streams, ``live=True``, ``realtime=...``): the *oldest*
  queued frame is dropped (counted in :attr:`SourceStats.dropped`) so latency stays bounded
  when the consumer is slower than the source.

A ``http(s)://`` URL is a file when the server gives its size (``Content-Length``) and it is
not a live playlist (HLS/DASH without a duration): it is read like a file, every frame, and a
read failure ends it with a :class:`SourceError` naming the URL (no reconnection). Other URLs
(RTSP, RTMP, UDP, endless HTTP/MJPEG, live HLS) are live streams.

Every frame the decoder outputs is delivered, in presentation order (the decoder's output
order), whatever the container's timestamps say. Frame indices count from 0, before
``start``/``stride`` filtering (for image folders: the position in the sorted file list):

* for files with timestamps at a constant frame rate the index follows the timeline
  (``index == round(pts * fps)``), so a frame missing from it (damaged data) leaves a gap
  counted in :attr:`SourceStats.missing`, and a ``start`` reached by seeking gives the same
  indices as decoding from the beginning;
* otherwise (variable frame rate, no timestamps, cameras and streams, files played live) the
  index is the decode order, and a frame flagged corrupt takes no index.

``pts`` is in seconds from the stream's start time (MP4/MOV, MKV/WebM, MPEG-TS) or from the
first frame (other containers).
Containers that store timestamps in decode order (AVI with B-frames: 1, 4, 3, 5, 2, ...) are
put back in order over a window of a few frames (:mod:`deepercut.engine.timestamps`); frames
without one get the previous ``pts`` + 1/fps (files) or the wall-clock time since opening
(live); ``pts`` always increases. Frames are rotated to their display orientation (the
container's display matrix, as phones record portrait video).

Damaged data never raises: packets the decoder rejects and frames it flags as corrupt are
counted (:attr:`SourceStats.decode_errors`, :attr:`SourceStats.corrupt`). Every decoded frame
is accounted for: ``decoded == delivered + filtered + corrupt + dropped + discarded`` once a
source is closed (:attr:`SourceStats.pending` is 0).

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

import dataclasses
import itertools
import math
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
from PIL import Image

from deepercut.engine.frame_queue import DEFAULT_MAX_BYTES, FrameQueue
from deepercut.engine.timestamps import REORDER_WINDOW, PtsReorderer
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
_FILE_SCHEMES = ("http", "https")  # URLs that may name a finite file
_PLAYLIST_FORMATS = ("hls", "dash")  # finite only with a duration (VOD, not live)
# Demuxers whose timestamps are presentation times from the stream's start time, so the frame
# a seek lands on can be placed on the timeline (AVI's are decode times; raw streams have none).
_PRESENTATION_PTS_FORMATS = ("mov", "matroska", "mpegts")
_CFR_TOLERANCE = 0.01
_EXIF_ORIENTATION = 0x0112  # average and base frame rates this close: constant frame rate
_RANGE_HINT = (
    " (an MP4/MOV with its index at the end needs a server with HTTP Range support; "
    "or remux it with -movflags +faststart)"
)
_DEFAULT_RECONNECT_ATTEMPTS = 5


class SourceError(ValueError):
    """A source that cannot be opened or read (the message names it and gives FFmpeg's reason)."""


@dataclass
class SourceStats:
    """Counters of a :class:`Source`, updated while it runs.

    Every decoded frame ends in exactly one of ``delivered``, ``filtered``, ``corrupt``,
    ``dropped`` or ``discarded``; :attr:`pending` are those still queued.

    Attributes:
        decoded: frames the decoder produced (for videos including those before ``start``
            and between ``stride`` steps; image folders skip those without decoding; not the
            few still in the timestamp reordering window when decoding stops early).
        delivered: frames handed to the consumer.
        filtered: decoded frames not asked for (before ``start``, at or after ``stop``,
            between ``stride`` steps).
        corrupt: decoded frames the decoder flagged as corrupt (not delivered).
        dropped: frames discarded in live mode because the consumer fell behind.
        discarded: frames decoded but still queued when the source was closed early.
        decode_errors: packets the decoder rejected and unreadable images (no frame came
            out of them, so they are not in ``decoded``).
        missing: frames absent from a file's timeline (gaps in its timestamps: damaged data;
            their indices are skipped).
        lost_outage: frames estimated lost while a live source was reconnecting.
        reconnects: reconnection attempts (successful or not).
        errors: short descriptions of the last problems (at most 100).
    """

    decoded: int = 0
    delivered: int = 0
    filtered: int = 0
    corrupt: int = 0
    dropped: int = 0
    discarded: int = 0
    decode_errors: int = 0
    missing: int = 0
    lost_outage: int = 0
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def skipped_corrupt(self) -> int:
        """Damage skipped: corrupt frames and rejected packets or images."""
        return self.corrupt + self.decode_errors

    @property
    def pending(self) -> int:
        """Decoded frames not yet accounted for (queued for the consumer); 0 once closed."""
        done = self.delivered + self.filtered + self.corrupt + self.dropped + self.discarded
        return self.decoded - done

    def counts(self) -> dict[str, int]:
        """The counters as plain ints (for a stream footer or a summary)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if isinstance(v, int)}

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


def _is_finite(container: av.container.InputContainer, url: str) -> bool:
    """Whether an opened URL names a finite file: http(s) with a known size (a playlist: with
    a duration), not a live stream."""
    if url.partition("://")[0].lower() not in _FILE_SCHEMES:
        return False
    if any(name in _PLAYLIST_FORMATS for name in container.format.name.split(",")):
        return container.duration is not None
    return container.size > 0  # negative: no Content-Length (an endless stream)


def _display_rotation(path: str) -> int:
    """Counter-clockwise degrees a file's frames are rotated by to be displayed (from the
    display matrix of its first frame; 0 when it has none or cannot be read)."""
    try:
        with av.open(path) as container:
            for frame in container.decode(video=0):
                return int(frame.rotation)
    except (av.FFmpegError, OSError):
        pass
    return 0


def _exif_orientation(path: Path) -> int:
    """A photo's EXIF orientation tag (1: upright, also without EXIF)."""
    try:
        with Image.open(path) as image:  # reads the header only
            return int(image.getexif().get(_EXIF_ORIENTATION, 1))
    except (OSError, ValueError, SyntaxError):
        return 1


def _upright(image: np.ndarray, orientation: int) -> np.ndarray:
    """``image`` turned as EXIF ``orientation`` (1-8) says, contiguous."""
    if orientation in (5, 6, 7, 8):  # stored on its side
        image = np.rot90(image, 1 if orientation in (5, 8) else -1)
    if orientation in (2, 4, 5, 7):  # stored mirrored
        image = image[:, ::-1] if orientation == 2 else image[::-1]
    if orientation == 3:
        image = image[::-1, ::-1]
    return np.ascontiguousarray(image)


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """A frame as contiguous RGB (odd widths come padded), turned to its display orientation
    (multiples of 90°)."""
    image = frame.to_ndarray(format="rgb24")
    turns = round(frame.rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns) if turns else image)


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
        queue_bytes: int,
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
        self.queue = FrameQueue(queue_size, queue_bytes)
        self.closing = threading.Event()
        self._queued = 0
        self._discard_lock = threading.Lock()  # `discarded` is counted by both threads

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
        frame = Frame(index, pts, image(), source or str(self.reader))
        if not self._put(frame, droppable=self.live):
            self._discard(1)  # closed while it waited for room
            return False
        self._queued += 1
        # In live mode frames may still be dropped, so the consumer counts max_frames.
        if not self.live and self.max_frames is not None and self._queued >= self.max_frames:
            return False
        return not self.closing.is_set()

    def _put(self, item: Any, droppable: bool = False) -> bool:
        """Queue an item (False if closed first); live frames displace the oldest queued
        frames instead of waiting."""
        nbytes = item.image.nbytes if isinstance(item, Frame) else 0
        if droppable:
            # Only frames are queued before the end marker, so only frames are displaced.
            self.stats.dropped += len(self.queue.put_displacing(item, nbytes))
            return True
        while not self.closing.is_set():
            if self.queue.put(item, nbytes, timeout=0.1):  # re-checks `closing` while blocked
                return True
        return False

    def shutdown(self, thread: threading.Thread, timeout: float) -> bool:
        """Stop the thread (unblocking it if it waits on the queue); True if it ended."""
        self.closing.set()
        self._drain()
        thread.join(timeout)
        self._drain()
        return not thread.is_alive()

    def _drain(self) -> None:
        self._discard(sum(isinstance(item, Frame) for item in self.queue.clear()))

    def _discard(self, frames: int) -> None:
        with self._discard_lock:
            self.stats.discarded += frames


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
        live: bool | None,
    ) -> None:
        self.spec = spec
        self._options = options
        self._timeout = timeout
        self.reconnect = reconnect
        self.container: av.container.InputContainer | None = self._open()
        #: A file, or a URL naming one: read like a file (every frame, no reconnection).
        self.finite = spec.kind == "file" or _is_finite(self.container, spec.url)
        self.live = not self.finite if live is None else live
        stream = self.container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.fps = float(rate) if rate else math.nan
        # Constant frame rate: timestamps place frames on a timeline of 1/fps steps (variable
        # rates, as phones record, would leave false gaps: those count in decode order).
        avg, base = stream.average_rate, stream.base_rate
        self._cfr = bool(avg and base and abs(float(avg / base) - 1) < _CFR_TOLERANCE)
        names = self.container.format.name.split(",")
        self._presentation_pts = any(name in _PRESENTATION_PTS_FORMATS for name in names)
        ctx = stream.codec_context
        rotation = _display_rotation(spec.url) if spec.kind == "file" else 0
        size = (ctx.width, ctx.height) if ctx.width and ctx.height else None
        self.frame_size = size[::-1] if size and rotation % 180 else size
        self.num_frames = None if self.live else self._count_frames(stream)
        # Timeline state; index and pts carry on across reconnections.
        self._index = -1
        self._from_pts = False  # the next frame's index comes from its timestamp (a seek)
        self._last_pts = -math.inf
        self._offset = 0.0  # added to timestamps of a reopened stream
        self._outage = math.nan  # seconds the last outage lasted (nan: none pending)
        self._wall0 = time.monotonic()
        # When the last read began: a stalled input's outage starts there, not when the read
        # finally times out (the frames of the wait are lost too).
        self._read_began = self._wall0
        # Per session: time base, raw timestamp of pts 0, and whether indices follow the
        # timestamps (files at a constant frame rate; live clocks jitter and restart).
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
        # pts 0: the stream's start, or the first frame's timestamp where timestamps are not
        # presentation times (then frames lost at the very start leave no gap).
        self._origin = stream.start_time if self._presentation_pts else None
        # Only files (and URLs of files) have a timeline: a stream's clock, live or not, is no
        # evidence of frames lost.
        self._timeline = (
            self.finite
            and not self.live
            and self._cfr
            and self._index < 0
            and not math.isnan(self.fps)
        )
        self._end_reason = "end of stream"
        if seek > 0:
            frames = self._seek(container, stream, seek, out)
        else:
            frames = self._decode(container, stream, out)
        # Files may store timestamps in decode order: sort them over a few frames. Live sources
        # pass frames straight on (latency); cameras' and streams' clocks are presentation
        # times (a file played live keeps its order, its pts may only be bumped to increase).
        reorder: PtsReorderer[av.VideoFrame] = PtsReorderer(0 if self.live else REORDER_WINDOW)
        for frame in frames:
            for ready, pts in reorder.push(frame, frame.pts):
                if not self._deliver(ready, pts, out):
                    reorder.clear()
                    return False, "stopped"
        for ready, pts in reorder.flush():
            if not self._deliver(ready, pts, out):
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
        ends at the end of the data or after read errors (``_end_reason`` says which).

        Raises:
            SourceError: a read error on a URL read as a file (without a reconnection
                policy): what is left of it cannot be told from what was lost.
        """
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
                if self.spec.kind == "stream" and self.finite and self.reconnect is None:
                    hint = _RANGE_HINT if "mov" in container.format.name.split(",") else ""
                    raise SourceError(
                        f"{self}: read failed after {out.stats.decoded} frames: "
                        f"{self._end_reason}{hint}"
                    ) from exc
                read_errors += 1
                if self.live or self.reconnect is not None or read_errors >= _MAX_READ_ERRORS:
                    yield from self._drain(stream)
                    return
                packets = container.demux(stream)  # the demuxer resynchronises on the next read
                continue
            try:
                yield from packet.decode()
            except av.FFmpegError as exc:
                out.stats.decode_errors += 1
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
        ``index``, the seek is retried from further back. Without a timeline (no timestamps,
        decode-order timestamps, variable frame rate), or when seeking fails, the input is
        decoded from the beginning, counting frames.
        """
        origin = self._origin
        if not self._timeline or self._tb is None or origin is None:
            return self._decode(container, stream, out)
        margin = 0.0  # seconds before the target
        for _ in range(_SEEK_TRIES):
            seconds = max(0.0, index / self.fps - margin)
            target = origin + int(Fraction(seconds) / self._tb)
            try:
                container.seek(target, stream=stream, backward=True, any_frame=False)
            except av.FFmpegError:
                break
            frames = self._decode(container, stream, out)
            first = next(frames, None)
            if first is None or first.pts is None:
                break
            if round(float((first.pts - origin) * self._tb) * self.fps) <= index:
                self._from_pts = True
                return itertools.chain([first], frames)
            if seconds == 0.0:
                break
            margin = max(1.0, 2 * margin)
        # Reopen rather than seek to 0, which MPEG-TS does not do reliably either.
        self.close()
        self.container = self._open()
        self._from_pts = False
        return self._decode(self.container, self._video(self.container), out)

    def _seconds(self, raw: int | None) -> float | None:
        """A raw timestamp in seconds since the session's origin; None without one."""
        if raw is None or self._tb is None:
            return None
        if self._origin is None:
            self._origin = raw
        return float((raw - self._origin) * self._tb)

    def _deliver(self, frame: av.VideoFrame, raw_pts: int | None, out: _Decoder) -> bool:
        """Give a decoded frame (in presentation order) its index and pts, and offer it;
        False = stop decoding."""
        pts = self._seconds(raw_pts)
        timed = pts is not None
        if pts is None:  # estimated: wall clock (live) or one frame after the last (files)
            if self.live:
                pts = time.monotonic() - self._wall0
            else:
                pts = self._last_pts + 1 / self.fps if self._index >= 0 else 0.0
        if not math.isnan(self._outage):
            # A reopened stream may restart its clock: continue after the outage.
            if pts + self._offset <= self._last_pts:
                step = self._outage if math.isnan(self.fps) else max(self._outage, 1 / self.fps)
                self._offset = self._last_pts + step - pts
            self._outage = math.nan
        pts += self._offset
        if pts <= self._last_pts:  # displaced beyond the window, repeated or reset
            pts = self._last_pts + (1 / self.fps if self.fps > 0 else 1e-3)
        if self._timeline and timed:
            index = max(self._index + 1, round(pts * self.fps))
            if not self._from_pts:  # after a seek, the frames before it were not wanted
                out.stats.missing += index - self._index - 1
        elif frame.is_corrupt:  # counted in decode order: takes no index (no gap)
            out.reject()
            return not out.closing.is_set()
        else:
            index = self._index + 1
        self._from_pts = False
        self._index = index
        self._last_pts = pts
        if frame.is_corrupt:  # on the timeline: its index stays empty, counted as corrupt
            out.reject()
            return not out.closing.is_set()
        return out.offer(index, pts, lambda: _to_rgb(frame))


class _FolderReader:
    """Decodes the images of a folder in natural order (``img2`` before ``img10``), each at its
    own size, upright by its EXIF orientation."""

    def __init__(self, path: Path, fps: float | None) -> None:
        self.path = path
        self.files = list_images(path)
        if not self.files:
            raise SourceError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)})")
        self.fps = math.nan if fps is None else float(fps)
        self.num_frames = len(self.files)
        self.frame_size: tuple[int, int] | None = None  # of the first image; others may differ
        for file in self.files:
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
        """An image as 8-bit RGB (FFmpeg converts any pixel format: 16-bit, gray, alpha),
        turned upright by its EXIF orientation, as viewers show it."""
        try:
            with av.open(str(path)) as container:
                for frame in container.decode(video=0):
                    # Pixels as stored: FFmpeg 8 also turns EXIF into a display rotation,
                    # older versions do not; the tag is applied here, once, for all.
                    return _upright(frame.to_ndarray(format="rgb24"), _exif_orientation(path))
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
                out.stats.decode_errors += 1
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
            queue_bytes=queue_bytes,
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
            got, item = self._decoder.queue.get(timeout=0.1)
            if got:
                break
            if not self._thread.is_alive() and not len(self._decoder.queue):
                self._done = True  # closed from another thread
                raise StopIteration
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
    queue_bytes: int = DEFAULT_MAX_BYTES,
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
            ``"avfoundation:0"``); or a URL (rtsp, rtmp, http(s), udp, tcp, srt): an
            http(s) URL of a file with a known size is read as a file, others are streams.
        start: first frame index to deliver; files seek to the keyframe before it and decode
            up to it (exact for constant-frame-rate files with timestamps; otherwise indices
            after a seek are estimated from pts × fps, and streams without timestamps are
            decoded from the beginning).
        stop: frame index to stop before (exclusive).
        stride: deliver every ``stride``-th frame from ``start``.
        max_frames: deliver at most this many frames.
        queue_size: decoded frames buffered ahead of the consumer.
        queue_bytes: bytes of decoded frames buffered ahead of the consumer (at least one
            frame whatever its size); with ``queue_size`` this bounds a source's memory.
        live: drop the oldest frame when the consumer falls behind; default True for cameras,
            live streams and ``realtime``, False for files, folders and URLs of files (a live
            file still ends at its end, unless ``reconnect`` is given).
        realtime: play a file or folder as a virtual camera at its frame rate (True) or at
            this many frames per second; implies ``live`` unless ``live=False``.
        timeout: seconds to wait when opening and reading cameras and streams.
        reconnect: reopening policy when a live source fails or ends: a :class:`Reconnect`, a
            number of attempts, or 0 for none; default 5 attempts for cameras and live streams
            and none for files and URLs of files (a file with a policy is reopened at its
            end, i.e. looped).
        format: FFmpeg input format, overriding the guess (e.g. ``"mjpeg"``).
        options: FFmpeg input options (strings), merged over the defaults (for RTSP:
            ``rtsp_transport=tcp`` and socket timeouts in µs as ``timeout``/``rw_timeout``).
        fps: frame rate of an image folder (sets ``pts = index / fps``; ``nan`` without).

    Raises:
        FileNotFoundError: a missing file, folder or device.
        SourceError: anything else that cannot be opened (the message has FFmpeg's reason).
    """
    if start < 0 or stride < 1 or queue_size < 1 or queue_bytes < 1:
        raise ValueError(
            f"need start >= 0, stride >= 1, queue_size >= 1, queue_bytes >= 1; got {start=}, "
            f"{stride=}, {queue_size=}, {queue_bytes=}"
        )
    if max_frames is not None and max_frames < 0:
        raise ValueError(f"need max_frames >= 0, got {max_frames}")
    resolved = _resolve(spec, format)
    if resolved.kind in ("file", "folder") and not Path(resolved.url).exists():
        raise FileNotFoundError(f"no such file or folder: {redact_url(resolved.url)}")
    network = resolved.kind in ("camera", "stream")
    if live is None and realtime is not False:
        live = True
    reader: _ContainerReader | _FolderReader
    if resolved.kind == "folder":
        reader = _FolderReader(Path(resolved.url), fps)
        live = bool(live)
    else:
        merged = _stream_options(resolved.url, timeout) if resolved.kind == "stream" else {}
        merged.update(options or {})
        reader = _ContainerReader(
            resolved,
            options=merged,
            timeout=timeout if network else None,
            reconnect=None,
            live=live,
        )
        live = reader.live
        if reconnect is None:
            reader.reconnect = Reconnect() if network and not reader.finite else None
        elif isinstance(reconnect, int):
            reader.reconnect = Reconnect(attempts=reconnect) if reconnect > 0 else None
        else:
            reader.reconnect = reconnect
    return Source(
        reader,
        start=start,
        stop=stop,
        stride=stride,
        max_frames=max_frames,
        queue_size=queue_size,
        queue_bytes=queue_bytes,
        live=live,
        realtime=realtime,
    )
