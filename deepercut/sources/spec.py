"""What a source spec names: a file, an image folder, a camera or a network stream."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from deepercut.sources.errors import SourceError

__all__ = ["NETWORK_SCHEMES", "Spec", "resolve"]

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt")
_CAMERA_FORMATS = ("v4l2", "avfoundation", "dshow")


@dataclass(frozen=True)
class Spec:
    """A classified source spec: what to open and with which FFmpeg input format."""

    kind: str  # "file" | "folder" | "camera" | "stream"
    url: str
    format: str | None = None


def resolve(spec: str | int | Path, format: str | None = None) -> Spec:
    """Classify a source spec: camera index or device, stream URL, image folder or file."""
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return _camera_index(int(spec), format)
    text = str(spec)
    prefix, sep, rest = text.partition(":")
    if sep and prefix in _CAMERA_FORMATS:  # "dshow:video=Name", "avfoundation:0"
        return Spec("camera", rest, prefix)
    if text.startswith("/dev/video"):
        return Spec("camera", text, format or "v4l2")
    scheme, sep, _ = text.partition("://")
    if sep and scheme.lower() in NETWORK_SCHEMES:
        return Spec("stream", text, format)
    path = Path(text)
    if path.is_dir():
        return Spec("folder", text, format)
    return Spec("file", text, format)


def _camera_index(index: int, format: str | None) -> Spec:
    """Camera ``index`` as this platform's capture device."""
    if sys.platform.startswith("linux"):
        return Spec("camera", f"/dev/video{index}", format or "v4l2")
    if sys.platform == "darwin":
        return Spec("camera", str(index), format or "avfoundation")
    raise SourceError(
        f"camera {index}: name the device instead, e.g. 'dshow:video=Integrated Camera'"
    )
