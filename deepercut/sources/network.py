"""Network streams as sources: RTSP, RTMP, UDP, TCP, SRT and HTTP(S) URLs.

A ``http(s)://`` URL is a file when the server gives its size (``Content-Length``) and it is
not a live playlist (HLS/DASH without a duration): it is read like a file, every frame, and a
read failure ends it with a :class:`SourceError` naming the URL (no reconnection). Other URLs
(RTSP, RTMP, UDP, endless HTTP/MJPEG, live HLS) are live streams, reopened when they fail.
"""

from __future__ import annotations

import av

from deepercut.sources.container import ContainerReader
from deepercut.sources.errors import SourceError
from deepercut.sources.reader import Outlet

__all__ = ["StreamReader", "stream_options"]

_FILE_SCHEMES = ("http", "https")  # URLs that may name a finite file
_PLAYLIST_FORMATS = ("hls", "dash")  # finite only with a duration (VOD, not live)
_RANGE_HINT = (
    " (an MP4/MOV with its index at the end needs a server with HTTP Range support; "
    "or remux it with -movflags +faststart)"
)


def stream_options(url: str, timeout: float) -> dict[str, str]:
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


class StreamReader(ContainerReader):
    """A network URL: a live stream, or a finite file on an HTTP(S) server."""

    def _input_defaults(self, timeout: float) -> tuple[dict[str, str], float | None]:
        return stream_options(self.spec.url, timeout), timeout

    def _is_finite(self, container: av.container.InputContainer) -> bool:
        """http(s) with a known size (a playlist: with a duration), not a live stream."""
        if self.spec.url.partition("://")[0].lower() not in _FILE_SCHEMES:
            return False
        if any(name in _PLAYLIST_FORMATS for name in container.format.name.split(",")):
            return container.duration is not None
        return container.size > 0  # negative: no Content-Length (an endless stream)

    def _read_failed(
        self, container: av.container.InputContainer, exc: av.FFmpegError, out: Outlet
    ) -> None:
        """A URL read as a file (without a reconnection policy) ends with an error: what is
        left of it cannot be told from what was lost."""
        if self.finite and self.reconnect is None:
            hint = _RANGE_HINT if "mov" in container.format.name.split(",") else ""
            raise SourceError(
                f"{self}: read failed after {out.stats.decoded} frames: {self._end_reason}{hint}"
            ) from exc
