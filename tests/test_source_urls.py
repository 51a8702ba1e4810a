"""URLs on a real loopback HTTP server: a finite file is read like a file, an endless stream is
live, and what cannot be read fails within a bounded number of requests, naming the URL."""

from __future__ import annotations

import contextlib
import functools
import http.server
import socket
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from deepercut.sources import SourceError, open_source

N, FPS = 30, 25


def encode(path: Path, n: int = N, size: tuple[int, int] = (160, 120), **options: str) -> Path:
    """H.264 at level ``i`` per frame; ``noise`` frames (lossless) make a file of some MB."""
    width, height = size
    rng = np.random.default_rng(0)
    noisy = options.pop("noise", None) is not None
    movflags = options.pop("movflags", None)
    with av.open(str(path), "w", options={"movflags": movflags} if movflags else {}) as out:
        stream = out.add_stream("libx264", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", **options}
        for i in range(n):
            image = (
                rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
                if noisy
                else np.full((height, width, 3), 20 + 6 * i, np.uint8)
            )
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


class _Files(http.server.SimpleHTTPRequestHandler):
    """Serves a folder without Range support (Python's handler ignores ``Range``), counting
    requests; ``/endless.ts`` streams a file over and over without a ``Content-Length``."""

    requests: list[str]

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.requests.append(self.path)
        if self.path == "/endless.ts":
            data = (Path(self.directory) / "clip.ts").read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.end_headers()
            try:
                while True:
                    self.wfile.write(data)
            except OSError:  # the client went away
                return
        super().do_GET()


class _RangeFiles(_Files):
    """Also answers ``Range: bytes=A-[B]`` (206), as real file servers do."""

    def do_GET(self) -> None:
        spec = self.headers.get("Range", "")
        if not spec.startswith("bytes="):
            return super().do_GET()
        self.requests.append(self.path)
        data = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
        first, _, last = spec[6:].partition("-")
        begin, end = int(first), int(last) + 1 if last else len(data)
        self.send_response(206)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Range", f"bytes {begin}-{end - 1}/{len(data)}")
        self.send_header("Content-Length", str(end - begin))
        self.end_headers()
        self.wfile.write(data[begin:end])


def _serve(handler: type[_Files], root: Path) -> Iterator[tuple[str, list[str]]]:
    requests: list[str] = []
    cls = type("Handler", (handler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(cls, directory=str(root))
    )
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("served")
    encode(root / "clip.ts", bf="3")
    encode(root / "clip.mp4", bf="3", movflags="+faststart")
    # Index at the end, an mdat of ~1.4 MB: FFmpeg must seek back to read the frames.
    encode(root / "indexed_last.mp4", n=40, noise="1", qp="0")
    _hls(root)
    return root


def _hls(root: Path) -> None:
    """An HLS VOD playlist of 3 segments, and the same as a live playlist still being written
    (no ``#EXT-X-ENDLIST``)."""
    options = {"hls_time": "0.4", "hls_list_size": "0", "hls_playlist_type": "vod"}
    options["hls_segment_filename"] = str(root / "seg%d.ts")
    with av.open(str(root / "vod.m3u8"), "w", format="hls", options=options) as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.options = {"g": "10", "preset": "ultrafast"}
        for i in range(N):
            frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), 20 + 6 * i, np.uint8))
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    vod = (root / "vod.m3u8").read_text()
    assert "#EXT-X-ENDLIST" in vod
    live = vod.replace("#EXT-X-ENDLIST\n", "").replace("#EXT-X-PLAYLIST-TYPE:VOD\n", "")
    (root / "live.m3u8").write_text(live)


@pytest.fixture
def plain(files: Path) -> Iterator[tuple[str, list[str]]]:
    yield from _serve(_Files, files)


@pytest.fixture
def ranged(files: Path) -> Iterator[tuple[str, list[str]]]:
    yield from _serve(_RangeFiles, files)


@pytest.mark.parametrize("name", ["clip.ts", "clip.mp4"])
def test_url_of_a_file_is_read_like_a_file(plain: tuple[str, list[str]], name: str) -> None:
    base, requests = plain
    # A slow consumer (a queue of 2) loses nothing: backpressure, not live dropping.
    with open_source(f"{base}/{name}", queue_size=2) as src:
        assert not src.is_live
        frames = list(src)
    assert [f.index for f in frames] == list(range(N))
    assert np.all(np.diff([f.pts for f in frames]) > 0)
    assert src.stats.dropped == src.stats.discarded == 0
    assert src.stats.delivered == src.stats.decoded == N
    assert requests == [f"/{name}"]  # read once, never reopened


def test_mp4_indexed_last_without_range_support_fails_clearly(
    plain: tuple[str, list[str]],
) -> None:
    base, requests = plain
    url = f"{base}/indexed_last.mp4"
    with open_source(url) as src, pytest.raises(SourceError) as caught:
        list(src)
    message = str(caught.value)
    assert url in message and "Range" in message and "faststart" in message
    assert len(requests) <= 2  # bounded: no reopening loop (was 112 requests in 60 s)
    assert src.stats.reconnects == 0


def test_mp4_indexed_last_with_range_support_is_read_fully(
    ranged: tuple[str, list[str]],
) -> None:
    base, requests = ranged
    with open_source(f"{base}/indexed_last.mp4") as src:
        assert not src.is_live and src.num_frames == 40
        frames = list(src)
    assert [f.index for f in frames] == list(range(40))
    assert src.stats.decoded == src.stats.delivered == 40
    assert len(requests) <= 10


def test_endless_http_stream_is_live(plain: tuple[str, list[str]]) -> None:
    base, _ = plain
    with open_source(f"{base}/endless.ts", reconnect=0) as src:
        assert src.is_live and src.num_frames is None
        frames = [next(src) for _ in range(3)]
    assert [f.index for f in frames] == sorted({f.index for f in frames})


def test_hls_vod_is_a_file_and_hls_live_is_live(plain: tuple[str, list[str]]) -> None:
    base, _ = plain
    with open_source(f"{base}/vod.m3u8") as src:
        assert not src.is_live and src.num_frames == N
        frames = list(src)
    assert [f.index for f in frames] == list(range(N))
    with open_source(f"{base}/live.m3u8", reconnect=0) as src:
        assert src.is_live and src.num_frames is None
        assert next(src).index == 0


def test_unreachable_url_fails_at_open_naming_it_without_password() -> None:
    with socket_closed_port() as port:
        url = f"http://admin:secret@127.0.0.1:{port}/clip.mp4"
        with pytest.raises(SourceError) as caught:
            open_source(url, timeout=2.0)
    message = str(caught.value)
    assert f"127.0.0.1:{port}/clip.mp4" in message and "secret" not in message


@contextlib.contextmanager
def socket_closed_port() -> Iterator[int]:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    yield port
