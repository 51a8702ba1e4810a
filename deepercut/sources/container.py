"""What files, cameras and network streams share: FFmpeg demuxes and decodes them (PyAV).

:class:`ContainerReader` reads the main video stream (:func:`main_video`) of anything FFmpeg
opens and gives each frame its index and ``pts``; the kinds differ only in a few decisions,
made by the subclasses (:mod:`~deepercut.sources.files`, :mod:`~deepercut.sources.cameras`,
:mod:`~deepercut.sources.network`): whether the input is finite, how it is opened, how it is
turned for display, what a read error means, and whether it is reopened when it fails.

Every frame the decoder outputs is delivered, in presentation order (the decoder's output
order), whatever the container's timestamps say. Frame indices count from 0, before
``start``/``stride`` filtering:

* for files with timestamps at a constant frame rate the index follows the timeline
  (``index == round(pts * fps)``), so a frame missing from it (damaged data) leaves a gap
  counted in :attr:`SourceStats.missing`, and a ``start`` reached by seeking gives the same
  indices as decoding from the beginning;
* otherwise (variable frame rate, no timestamps, cameras and streams, files played live) the
  index is the decode order, and a frame flagged corrupt takes no index.

``pts`` is in seconds from the stream's start time (MP4/MOV, MKV/WebM, MPEG-TS) or from the
first frame (other containers).
Containers that store timestamps in decode order (AVI with B-frames: 1, 4, 3, 5, 2, ...) are
put back in order over a window of a few frames (:mod:`deepercut.sources.timestamps`); frames
without one get the previous ``pts`` + 1/fps (files) or the wall-clock time since opening
(live); ``pts`` always increases. Frames are rotated to their display orientation (the
container's display matrix, as phones record portrait video).

Damaged data never raises: packets the decoder rejects and frames it flags as corrupt are
counted (:attr:`SourceStats.decode_errors`, :attr:`SourceStats.corrupt`).

Live sources that fail (read error, timeout, end of stream) are reopened with exponential
backoff (:class:`~deepercut.sources.reconnect.Reconnect`); the frames the outage cost are
estimated as fps × outage time (:attr:`SourceStats.lost_outage`), the outage lasting from the
start of the read that failed (a stalled input's wait for its timeout included) to the
reopening, and timestamps are rebased so they keep increasing.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np

from deepercut.io.redact import redact_url
from deepercut.sources.errors import SourceError, ffmpeg_reason
from deepercut.sources.reader import Outlet
from deepercut.sources.reconnect import Reconnect
from deepercut.sources.spec import Spec
from deepercut.sources.timestamps import REORDER_WINDOW, PtsReorderer

__all__ = ["ContainerReader", "main_video"]

_MAX_READ_ERRORS = 8  # consecutive demuxer errors before a file is treated as ended
_SEEK_TRIES = 4  # seeks ever further back before decoding from the beginning
# Demuxers whose timestamps are presentation times from the stream's start time, so the frame
# a seek lands on can be placed on the timeline (AVI's are decode times; raw streams have none).
_PRESENTATION_PTS_FORMATS = ("mov", "matroska", "mpegts")
_CFR_TOLERANCE = 0.01  # average and base frame rates this close: constant frame rate
_DURATION_TAG = re.compile(r"(\d+):(\d+):(\d+(?:\.\d*)?)")  # Matroska's per-stream DURATION


def main_video(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    """The video stream a player shows (FFmpeg's best: not a cover picture or a thumbnail
    track stored before it); None without video."""
    return container.streams.best("video")


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """A frame as contiguous RGB (odd widths come padded), turned to its display orientation
    (multiples of 90°)."""
    image = frame.to_ndarray(format="rgb24")
    turns = round(frame.rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns) if turns else image)


class ContainerReader:
    """Demuxes and decodes the main video stream of anything FFmpeg opens; a subclass per
    kind of input makes the decisions that differ (the methods that raise
    :class:`NotImplementedError` here)."""

    def __init__(
        self,
        spec: Spec,
        *,
        timeout: float,
        options: dict[str, str] | None = None,
        live: bool | None = None,
    ) -> None:
        self.spec = spec
        defaults, self._timeout = self._input_defaults(timeout)
        self._options = {**defaults, **(options or {})}
        self.container: av.container.InputContainer | None = self._open()
        #: A file, or a URL naming one: read like a file (every frame, no reconnection).
        self.finite = self._is_finite(self.container)
        self.live = not self.finite if live is None else live
        #: Reopening policy when the input fails or ends (None: the source ends with it).
        self.reconnect: Reconnect | None = None if self.finite else Reconnect()
        stream = main_video(self.container)
        assert stream is not None  # _open checked
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.fps = float(rate) if rate else math.nan
        # Constant frame rate: timestamps place frames on a timeline of 1/fps steps (variable
        # rates, as phones record, would leave false gaps: those count in decode order).
        avg, base = stream.average_rate, stream.base_rate
        self._cfr = bool(avg and base and abs(float(avg / base) - 1) < _CFR_TOLERANCE)
        # Matroska and WebM headers state the encoder's rate whatever the timestamps do
        # (a live read has no timeline: no need to look).
        self._cfr = self._cfr and (self.live or self._regular_timestamps())
        names = self.container.format.name.split(",")
        self._presentation_pts = any(name in _PRESENTATION_PTS_FORMATS for name in names)
        ctx = stream.codec_context
        size = (ctx.width, ctx.height) if ctx.width and ctx.height else None
        self.frame_size = size[::-1] if size and self._rotation() % 180 else size
        self.num_frames = None if self.live else self._count_frames(stream)
        # What the header says of the video stream itself (a container's duration may be its
        # audio's): a file that ends short of it was cut, and its missing tail is counted. A
        # duration is a frame count only at a constant rate (a phone's variable rate times
        # its duration is no count), and may round a frame off.
        known = self.num_frames is not None and (bool(stream.frames) or self._cfr)
        self._announced = self._announced_frames(stream) if known else None
        self._announced_slack = 0 if stream.frames else 1
        self._init_timeline()

    def _init_timeline(self) -> None:
        """Timeline state; index and pts carry on across reconnections."""
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

    # -- what the kinds of input decide

    def _input_defaults(self, timeout: float) -> tuple[dict[str, str], float | None]:
        """FFmpeg input options (the caller's are merged over them) and the timeout for
        opening and reading (None: wait as long as it takes)."""
        raise NotImplementedError

    def _regular_timestamps(self) -> bool:
        """Whether the first frames' timestamps are whole steps of 1/fps (True where the
        kind of input cannot tell without reading frames ahead)."""
        return True

    def _is_finite(self, container: av.container.InputContainer) -> bool:
        """Whether the opened input has an end that is its last frame (read like a file)."""
        raise NotImplementedError

    def _rotation(self) -> int:
        """Counter-clockwise degrees the frames are turned by to be displayed."""
        return 0

    def _read_failed(
        self, container: av.container.InputContainer, exc: av.FFmpegError, out: Outlet
    ) -> None:
        """A read failed (already counted); raise :class:`SourceError` if what is left of
        the input cannot be told from what was lost."""

    def __str__(self) -> str:
        # Descriptions end up in pose-stream headers and logs: no credentials from stream URLs.
        url = redact_url(self.spec.url)
        return url if self.spec.format is None else f"{self.spec.format}:{url}"

    def _open(self) -> av.container.InputContainer:
        """The input opened, with a video stream."""
        try:
            container = av.open(
                self.spec.url, format=self.spec.format, options=self._options, timeout=self._timeout
            )
        except FileNotFoundError:
            raise
        except (av.FFmpegError, OSError) as exc:
            raise SourceError(f"cannot open {self}: {ffmpeg_reason(exc)}") from exc
        if main_video(container) is None:
            container.close()
            raise SourceError(f"cannot open {self}: no video stream")
        return container

    def _count_frames(self, stream: av.video.stream.VideoStream) -> int | None:
        """The frames of a finite input, as its header tells them (None: unknown)."""
        if stream.frames:
            return int(stream.frames)
        if math.isnan(self.fps):
            return None
        if stream.duration is not None and stream.time_base is not None:
            return round(float(stream.duration * stream.time_base) * self.fps)
        if self.container is not None and self.container.duration is not None:
            return round(self.container.duration / av.time_base * self.fps)
        return None

    def _announced_frames(self, stream: av.video.stream.VideoStream) -> int | None:
        """The video stream's frame count or duration × fps as its file's header gives them;
        None when only a duration shared with other streams is known."""
        if stream.frames:
            return int(stream.frames)
        seconds = None
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        elif match := _DURATION_TAG.fullmatch(stream.metadata.get("DURATION", "")):
            hours, minutes, secs = match.groups()
            seconds = 3600 * int(hours) + 60 * int(minutes) + float(secs)
        elif self.container is not None and len(self.container.streams) == 1:
            seconds = (
                None if self.container.duration is None else self.container.duration / av.time_base
            )
        return None if seconds is None else round(seconds * self.fps)

    def close(self) -> None:
        """Close the input; idempotent."""
        if self.container is not None:
            self.container.close()
            self.container = None

    def run(self, out: Outlet) -> None:
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

    def _reopen(self, out: Outlet, reason: str) -> None:
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
                stats.error(f"reconnect {attempt + 1}: {ffmpeg_reason(exc)}")
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
        self, container: av.container.InputContainer, out: Outlet, seek: int
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
        if self.finite:
            self._check_end(out)
        return True, self._end_reason

    def _check_end(self, out: Outlet) -> None:
        """At a file's end: no frame at all is an error; frames short of what its header
        announces (a file cut short) are counted as missing.

        Raises:
            SourceError: not one frame was decoded.
        """
        stats = out.stats
        if stats.decoded == 0:
            rejected = f" ({stats.decode_errors} packets rejected)" if stats.decode_errors else ""
            raise SourceError(f"{self}: no video frame could be decoded{rejected}")
        if self._announced is None:
            return
        # Decoded from the start (no timeline) or placed on it: where the file stopped.
        reached = self._index + 1 if self._timeline else stats.decoded
        if self._announced - reached > self._announced_slack:
            short = self._announced - reached
            stats.missing += short
            stats.error(
                f"ended after {reached} of the {self._announced} frames its header announces: "
                f"{short} missing (file cut short?)"
            )

    def _video(self, container: av.container.InputContainer) -> av.video.stream.VideoStream:
        """The stream to decode, set up for threaded decoding."""
        stream = main_video(container)
        if stream is None:  # a reopened input that lost its video
            raise SourceError(f"cannot open {self}: no video stream")
        # Frame threading delays output by a frame per thread: fine for files, not for cameras.
        stream.thread_type = "SLICE" if self.live else "AUTO"
        return stream

    def _decode(
        self,
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
        out: Outlet,
    ) -> Iterator[av.VideoFrame]:
        """Decoded frames from the current position: corrupt packets are skipped and counted;
        ends at the end of the data or after read errors (``_end_reason`` says which).

        Raises:
            SourceError: from :meth:`_read_failed`, when a read error cannot be skipped.
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
                self._end_reason = ffmpeg_reason(exc)
                out.stats.error(f"read: {self._end_reason}")
                self._read_failed(container, exc, out)
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
                out.stats.error(f"decode: {ffmpeg_reason(exc)}")

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
        out: Outlet,
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

    def _deliver(self, frame: av.VideoFrame, raw_pts: int | None, out: Outlet) -> bool:
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
