"""``open_source``: a spec (path, folder, camera, URL) to an opened :class:`Source`.

A source that cannot be opened at all fails here. ``realtime=True`` plays a file or folder at
its frame rate (or ``realtime=RATE`` frames per second) as a virtual camera in live mode: live
code (dropping under overload, the camera example ``examples/camera.py``) is tested with it
instead of a camera.
"""

from __future__ import annotations

from pathlib import Path

from deepercut.io.redact import redact_url
from deepercut.sources.cameras import CameraReader
from deepercut.sources.container import ContainerReader
from deepercut.sources.files import FileReader
from deepercut.sources.folder import FolderReader
from deepercut.sources.frame_queue import DEFAULT_MAX_BYTES
from deepercut.sources.network import StreamReader
from deepercut.sources.reconnect import Reconnect
from deepercut.sources.source import Source
from deepercut.sources.spec import Spec, resolve

__all__ = ["open_source"]

#: The reader of each kind of spec that FFmpeg opens as a container.
_CONTAINER_READERS: dict[str, type[ContainerReader]] = {
    "file": FileReader,
    "camera": CameraReader,
    "stream": StreamReader,
}


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
    _check(start, stride, max_frames, queue_size, queue_bytes)
    resolved = resolve(spec, format)
    if resolved.kind in ("file", "folder") and not Path(resolved.url).exists():
        raise FileNotFoundError(f"no such file or folder: {redact_url(resolved.url)}")
    if live is None and realtime is not False:
        live = True
    reader: FolderReader | ContainerReader
    if resolved.kind == "folder":
        reader = FolderReader(Path(resolved.url), fps)
        live = bool(live)
    else:
        reader = _open_container(resolved, timeout, options, live, reconnect)
        live = reader.live
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


def _check(
    start: int, stride: int, max_frames: int | None, queue_size: int, queue_bytes: int
) -> None:
    """Raise :class:`ValueError` for arguments out of range."""
    if start < 0 or stride < 1 or queue_size < 1 or queue_bytes < 1:
        raise ValueError(
            f"need start >= 0, stride >= 1, queue_size >= 1, queue_bytes >= 1; got {start=}, "
            f"{stride=}, {queue_size=}, {queue_bytes=}"
        )
    if max_frames is not None and max_frames < 0:
        raise ValueError(f"need max_frames >= 0, got {max_frames}")


def _open_container(
    spec: Spec,
    timeout: float,
    options: dict[str, str] | None,
    live: bool | None,
    reconnect: Reconnect | int | None,
) -> ContainerReader:
    """The reader of a file, camera or stream, with its reconnection policy."""
    reader = _CONTAINER_READERS[spec.kind](spec, timeout=timeout, options=options, live=live)
    if isinstance(reconnect, int):
        reader.reconnect = Reconnect(attempts=reconnect) if reconnect > 0 else None
    elif reconnect is not None:
        reader.reconnect = reconnect
    return reader
