"""Frame sources on real PyAV-encoded files: counts, seeking, damage, live mode, reconnection."""

from __future__ import annotations

import dataclasses
import socket
import sys
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageOps

from deepercut.data.synthetic import write_png
from deepercut.sources import Reconnect, SourceError, open_source
from deepercut.sources.container import ContainerReader
from deepercut.sources.network import stream_options
from deepercut.sources.spec import Spec, resolve
from deepercut.sources.stats import SourceStats

W, H, N, FPS = 160, 128, 30, 25.0
_TEXTURE = np.random.default_rng(0).integers(0, 60, (H, W + 64), dtype=np.uint8)


def pattern(i: int) -> np.ndarray:
    """Frame ``i``: a moving texture (so packets carry data) and a flat patch at level 20 + 6i
    that tells the frame's index after lossy coding."""
    img = np.repeat(_TEXTURE[:, 2 * i : 2 * i + W, None], 3, axis=2)
    img[:, W // 2 :] = 20 + 6 * i
    return img


def level_index(image: np.ndarray) -> int:
    """The ``i`` of :func:`pattern` from a decoded frame."""
    return round((float(image[:, W // 2 + 8 :, 1].mean()) - 20) / 6)


def encode(
    path: Path,
    n: int = N,
    *,
    fps: float = FPS,
    format: str | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    """H.264 with a keyframe every 10 frames (so seeks land before their target)."""
    with av.open(str(path), "w", format=format, options=options or {}) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.gop_size = 10
        stream.options = {"crf": "18", "scenecut": "0"}
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(pattern(i), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    return {
        "mp4": encode(root / "a.mp4"),
        "mkv": encode(root / "a.mkv"),
        "ts": encode(root / "a.ts"),
        "h264": encode(root / "a.h264"),  # Annex-B: no timestamps at all
        "faststart": encode(root / "fs.mp4", options={"movflags": "+faststart"}),
    }


@pytest.mark.parametrize("kind", ["mp4", "mkv", "ts", "h264"])
def test_file_yields_every_frame_in_order(videos: dict[str, Path], kind: str) -> None:
    with open_source(videos[kind]) as src:
        assert src.fps == pytest.approx(FPS)
        assert src.frame_size == (W, H)
        assert not src.is_live
        # Raw H.264 has no duration; the containers give it (or the frame count).
        assert src.num_frames == (None if kind == "h264" else N)
        frames = list(src)
    assert [f.index for f in frames] == list(range(N))
    assert [level_index(f.image) for f in frames] == list(range(N))
    pts = np.array([f.pts for f in frames])
    np.testing.assert_allclose(pts, np.arange(N) / FPS, atol=1e-6)
    assert all(f.image.shape == (H, W, 3) and f.image.dtype == np.uint8 for f in frames)
    assert frames[0].source == str(videos[kind])
    assert src.stats.decoded == src.stats.delivered == N
    assert src.closed


@pytest.mark.parametrize("kind", ["mp4", "mkv", "ts", "h264"])
@pytest.mark.parametrize(("start", "stop", "stride", "max_frames"), [
    (12, None, 1, None), (3, 25, 3, None), (21, None, 4, 2), (0, None, 7, None), (40, None, 1, None)
])  # fmt: skip
def test_start_stop_stride_max_frames(
    videos: dict[str, Path], kind: str, start: int, stop: int | None, stride: int, max_frames: int
) -> None:
    expected = list(range(start, N if stop is None else stop, stride))[:max_frames]
    with open_source(
        videos[kind], start=start, stop=stop, stride=stride, max_frames=max_frames
    ) as src:
        if kind != "h264":
            assert src.num_frames == len(expected)
        frames = list(src)
    assert [f.index for f in frames] == expected
    assert [level_index(f.image) for f in frames] == expected  # seeks land on the right frame
    np.testing.assert_allclose([f.pts for f in frames], np.array(expected) / FPS, atol=1e-6)


def test_image_folder_natural_order(tmp_path: Path) -> None:
    for i in (2, 10, 1):
        write_png(tmp_path / f"img{i}.png", pattern(i))
    (tmp_path / "notes.txt").write_text("not an image")
    with open_source(tmp_path, fps=10.0, start=1) as src:
        assert src.frame_size == (W, H)
        assert src.num_frames == 2
        frames = list(src)
    assert [f.index for f in frames] == [1, 2]
    assert [level_index(f.image) for f in frames] == [2, 10]  # img2 before img10
    assert [f.pts for f in frames] == [0.1, 0.2]
    assert frames[0].source.endswith("img2.png")


def test_image_folder_skips_unreadable_images(tmp_path: Path) -> None:
    write_png(tmp_path / "a0.png", pattern(0))
    (tmp_path / "a1.png").write_bytes(b"\x89PNG garbage")
    write_png(tmp_path / "a2.png", pattern(2))
    with open_source(str(tmp_path)) as src:
        frames = list(src)
    assert [f.index for f in frames] == [0, 2]
    assert np.isnan(frames[0].pts)
    assert src.stats.decode_errors == src.stats.skipped_corrupt == 1
    assert "a1.png" in src.stats.errors[0]


def _photo(path: Path, size: tuple[int, int], orientation: int | None = None) -> None:
    """A JPEG of ``size`` (width, height), grey with a white top-left corner, stored with an
    EXIF orientation tag as cameras write it."""
    width, height = size
    image = np.full((height, width, 3), 90, np.uint8)
    image[: height // 4, : width // 4] = 255
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    Image.fromarray(image).save(path, exif=exif, quality=95)


def test_image_folder_of_mixed_sizes_and_orientations(tmp_path: Path) -> None:
    _photo(tmp_path / "p1.jpg", (157, 105))
    _photo(tmp_path / "p2.jpg", (194, 265))
    _photo(tmp_path / "p3.jpg", (120, 80), orientation=6)  # shot rotated: 90° clockwise
    _photo(tmp_path / "p4.jpg", (120, 80), orientation=3)  # upside down
    with open_source(tmp_path) as src:
        assert src.frame_size == (157, 105)  # the first image's
        frames = list(src)
    # Each image at its own size, upright as a viewer shows it.
    shapes = [f.image.shape[:2] for f in frames]
    assert shapes == [(105, 157), (265, 194), (120, 80), (80, 120)]
    turned, flipped = frames[2].image, frames[3].image
    assert turned[0, -1].min() > 200 and turned[0, 0].max() < 150  # marker now top-right
    assert flipped[-1, -1].min() > 200 and flipped[0, 0].max() < 150  # now bottom-right
    assert src.stats.decoded == src.stats.delivered == 4


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_shown_as_pillow_shows_it(
    tmp_path: Path, orientation: int
) -> None:
    stored = np.random.default_rng(orientation).integers(0, 256, (30, 44, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(tmp_path / "photo.png", exif=exif)  # lossless
    with Image.open(tmp_path / "photo.png") as photo:
        expected = np.asarray(ImageOps.exif_transpose(photo).convert("RGB"))
    with open_source(tmp_path) as src:
        (frame,) = list(src)
    np.testing.assert_array_equal(frame.image, expected)


def test_missing_and_unreadable_inputs(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.mp4"):
        open_source(tmp_path / "nope.mp4")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(SourceError, match=r"garbage\.mp4.*Invalid data"):
        open_source(garbage)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        open_source(tmp_path / "empty")
    with pytest.raises(ValueError, match="stride"):
        open_source(garbage, stride=0)
    with pytest.raises(SourceError, match=r"rtsp://127\.0\.0\.1:1/x: Connection refused"):
        open_source("rtsp://127.0.0.1:1/x", timeout=1.0)
    if sys.platform.startswith("linux"):
        with pytest.raises(FileNotFoundError, match="/dev/video99"):
            open_source(99)


@pytest.mark.parametrize("kind", ["mkv", "faststart", "ts"])
def test_truncated_file_ends_cleanly(videos: dict[str, Path], kind: str, tmp_path: Path) -> None:
    data = videos[kind].read_bytes()
    cut = tmp_path / f"cut{videos[kind].suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with open_source(cut) as src:
        frames = list(src)
    indices = [f.index for f in frames]
    assert 3 <= len(frames) < N
    # Frames up to the cut; one whose data was cut short leaves a gap in the timeline, and
    # the tail its header announces (MKV's duration, MP4's frame count) counts as missing.
    assert indices[0] == 0 and indices == sorted(set(indices))
    announced = indices[-1] + 1 if kind == "ts" else N  # MPEG-TS has no header to tell
    assert len(frames) + src.stats.missing == announced
    assert [level_index(f.image) for f in frames] == indices


def _damage(source: Path, target: Path, packets: set[int]) -> set[int]:
    """Remux ``source`` with the payload of the given packets (in decode order) replaced by
    random bytes; returns the indices of their frames (in presentation order)."""
    lost = set()
    rng = np.random.default_rng(3)
    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for n, packet in enumerate(inp.demux(video=0)):
            if packet.size == 0:
                continue  # the flush packet
            if n in packets:
                lost.add(round(float(packet.pts * packet.time_base) * FPS))
                garbage = av.Packet(rng.bytes(packet.size))
                garbage.pts, garbage.dts = packet.pts, packet.dts
                garbage.time_base, garbage.is_keyframe = packet.time_base, packet.is_keyframe
                packet = garbage
            packet.stream = stream
            out.mux(packet)
    return lost


def test_decode_errors_are_skipped_and_counted_exactly(
    videos: dict[str, Path], tmp_path: Path
) -> None:
    damaged = tmp_path / "damaged.mkv"
    lost = _damage(videos["mkv"], damaged, {5, 15})  # two P-frames: garbage
    assert len(lost) == 2
    with open_source(damaged) as src:
        frames = list(src)
    stats = src.stats
    # The decoder rejects both packets: real decode errors, each counted.
    assert stats.decode_errors == stats.skipped_corrupt == 2 and stats.corrupt == 0
    assert sum(e.startswith("decode: ") for e in stats.errors) == 2
    # Exactly their frames are lost; their places in the timeline stay empty, counted.
    assert stats.decoded == stats.delivered == N - 2 and stats.missing == 2
    assert [f.index for f in frames] == [i for i in range(N) if i not in lost]
    np.testing.assert_allclose([f.pts for f in frames], [f.index / FPS for f in frames])
    # From the keyframe after the damage on, each frame is its own picture (no shift).
    healed = [f for f in frames if f.index >= 20]
    assert [level_index(f.image) for f in healed] == list(range(20, N))


def test_damaged_stream_keeps_time_increasing(videos: dict[str, Path], tmp_path: Path) -> None:
    data = bytearray(videos["ts"].read_bytes())
    mid = len(data) // 2
    data[mid : mid + 1500] = np.random.default_rng(2).bytes(1500)
    damaged = tmp_path / "damaged.ts"
    damaged.write_bytes(bytes(data))
    with open_source(damaged) as src:
        frames = list(src)
    stats = src.stats
    indices = [f.index for f in frames]
    # Every index is a delivered frame or counted: lost from the timeline or skipped.
    assert len(frames) + stats.missing + stats.corrupt == N
    assert stats.decoded == stats.delivered + stats.corrupt
    assert indices == sorted(set(indices)) and indices[-1] == N - 1
    assert np.all(np.diff([f.pts for f in frames]) > 0)
    tail = [f for f in frames if f.index >= N - 5]
    assert [level_index(f.image) for f in tail] == [f.index for f in tail]


def _large(path: Path, n: int, size: tuple[int, int] = (1920, 1080)) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(
                np.full((size[1], size[0], 3), 10 * i, np.uint8), format="rgb24"
            )
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("live", [False, True])
def test_queue_is_bounded_in_bytes(tmp_path: Path, live: bool) -> None:
    path = _large(tmp_path / "big.mkv", 10)
    frame_bytes = 1920 * 1080 * 3
    with open_source(path, queue_size=32, queue_bytes=3 * frame_bytes, live=live) as src:
        queue = src._background.queue
        deadline = time.monotonic() + 30  # a guard against hanging, not a speed bound
        # The consumer stalls: the decoder fills the queue (file mode: then waits; live: then
        # displaces the oldest frames until the last one is in).
        while time.monotonic() < deadline and (
            src.stats.dropped < 7 if live else src.stats.decoded < 4
        ):
            time.sleep(0.01)
        held = queue.nbytes
        frames = list(src)
    # 32 frames were allowed, but only 3 frames' bytes: 3 at most (18.7 MB, not 199 MB).
    assert held == queue.peak_bytes == 3 * frame_bytes
    if live:  # the oldest displaced to make room
        assert [f.index for f in frames] == [7, 8, 9] and src.stats.dropped == 7
    else:
        assert [f.index for f in frames] == list(range(10))


def test_a_frame_larger_than_the_byte_bound_still_passes(tmp_path: Path) -> None:
    path = _large(tmp_path / "big.mkv", 3, size=(640, 480))
    with open_source(path, queue_bytes=1) as src:
        frames = list(src)
    assert [f.index for f in frames] == [0, 1, 2]
    assert src._background.queue.peak_bytes == 640 * 480 * 3  # one frame at a time


def test_live_mode_drops_oldest_for_a_slow_consumer(videos: dict[str, Path]) -> None:
    with open_source(videos["mkv"], live=True, queue_size=2) as src:
        assert src.is_live and src.num_frames is None
        deadline = time.monotonic() + 10
        while src.stats.dropped < N - 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # the consumer stalls while the whole file decodes
        frames = list(src)
    assert [f.index for f in frames] == [N - 2, N - 1]  # the newest ones survive
    assert src.stats.dropped == N - 2
    assert src.stats.delivered + src.stats.dropped == src.stats.decoded


def test_realtime_playback_is_paced_and_drops(videos: dict[str, Path]) -> None:
    began = time.monotonic()
    with open_source(videos["mkv"], realtime=100.0, queue_size=1, max_frames=8) as src:
        assert src.is_live
        frames = []
        for frame in src:
            frames.append(frame)
            # The consumer stalls after the first frame until the paced source drops one
            # (the deadline only turns a source that never drops into a failure).
            deadline = time.monotonic() + 30
            while len(frames) == 1 and not src.stats.dropped and time.monotonic() < deadline:
                time.sleep(0.01)
    elapsed = time.monotonic() - began
    indices = [f.index for f in frames]
    assert len(frames) == 8
    assert indices == sorted(indices) and indices[-1] - indices[0] > 7  # frames were skipped
    assert src.stats.dropped > 0
    assert elapsed >= (indices[-1] - indices[0]) / 100.0


def test_reconnect_reopens_and_keeps_time_increasing(videos: dict[str, Path]) -> None:
    policy = Reconnect(attempts=2, delay=0.1)
    with open_source(videos["mkv"], reconnect=policy, max_frames=N + 5) as src:
        frames = list(src)
    assert [f.index for f in frames] == list(range(N + 5))
    assert [level_index(f.image) for f in frames[N:]] == list(range(5))  # replayed
    pts = np.array([f.pts for f in frames])
    assert np.all(np.diff(pts) > 0)
    assert pts[N] - pts[N - 1] >= 0.1  # the outage shows in the timeline
    assert src.stats.reconnects == 1
    assert src.stats.lost_outage >= 2  # 0.1 s at 25 fps
    assert "stream lost: end of stream" in src.stats.errors


def test_source_that_disappears_gives_up_with_a_clear_error(
    videos: dict[str, Path], tmp_path: Path
) -> None:
    path = tmp_path / "gone.mkv"
    path.write_bytes(videos["mkv"].read_bytes())
    policy = Reconnect(attempts=2, delay=0.05)
    with open_source(path, reconnect=policy, queue_size=64) as src:
        path.unlink()  # the open file stays readable; reopening fails
        frames = []
        with pytest.raises(SourceError, match=r"gone\.mkv.*gave up after 2 reconnect attempts"):
            for frame in src:
                frames.append(frame)
    assert [f.index for f in frames] == list(range(N))  # everything before the outage
    assert src.stats.reconnects == 2
    assert src.stats.lost_outage >= 3  # 0.05 + 0.1 s at 25 fps
    assert sum("reconnect" in e for e in src.stats.errors) == 2


class _FailingContainer:
    """A container whose demuxer raises an I/O error after ``fail_after`` packets."""

    def __init__(self, inner: av.container.InputContainer, fail_after: int) -> None:
        self._inner = inner
        self._fail_after = fail_after

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def demux(self, *args: object, **kwargs: object) -> Iterator[av.Packet]:
        for n, packet in enumerate(self._inner.demux(*args, **kwargs)):
            if n == self._fail_after:
                raise av.error.OSError(5, "Input/output error")
            yield packet


def test_read_error_mid_stream_triggers_reconnect(
    videos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = av.open
    opened = []

    def flaky_open(url: str, **kwargs: object) -> object:
        opened.append(url)
        if len(opened) > 1:  # from the probe of the display rotation on
            raise av.error.ConnectionRefusedError(111, "Connection refused")
        return _FailingContainer(real_open(url, **kwargs), fail_after=12)

    monkeypatch.setattr(av, "open", flaky_open)
    policy = Reconnect(attempts=3, delay=0.02)
    with open_source(videos["mkv"], reconnect=policy, live=True, queue_size=64) as src:
        frames = []
        with pytest.raises(SourceError, match="Input/output error"):
            frames.extend(src)
    assert len(opened) == 5  # the first open, the (failed) rotation probe, 3 attempts
    assert 5 <= len(frames) <= 12  # decoded before the error (minus the decoder's delay)
    assert [f.index for f in frames] == list(range(len(frames)))
    assert src.stats.reconnects == 3 and src.stats.lost_outage >= 1
    assert "read: Input/output error" in src.stats.errors


def test_close_mid_iteration_stops_the_thread(videos: dict[str, Path]) -> None:
    src = open_source(videos["mkv"], queue_size=1)
    next(src)
    time.sleep(0.05)  # the decoder is now blocked on the full queue
    src.close()
    assert not src._background.is_alive()
    assert src.closed
    assert list(src) == []
    # A paced live source is stopped in its sleep: the next frame is due in 1000 s, so a
    # sleep that close() did not interrupt would outlast close()'s join.
    with open_source(videos["mkv"], realtime=0.001) as slow:
        next(slow)
    assert not slow._background.is_alive()


def test_abandoned_source_stops_its_thread(videos: dict[str, Path]) -> None:
    src = open_source(videos["mkv"], queue_size=1)
    background = src._background
    next(src)
    del src  # no close(): the finalizer stops the decoder
    background.join(2.0)
    assert not background.is_alive()


def test_spec_resolution_and_stream_options(tmp_path: Path) -> None:
    assert resolve(tmp_path).kind == "folder"
    assert resolve("clip.mp4").kind == "file"
    assert resolve("rtsp://cam.local/stream") == Spec("stream", "rtsp://cam.local/stream")
    assert resolve("dshow:video=Integrated Camera") == Spec(
        "camera", "video=Integrated Camera", "dshow"
    )
    if sys.platform.startswith("linux"):
        assert resolve(0) == Spec("camera", "/dev/video0", "v4l2")
        assert resolve("/dev/video2").format == "v4l2"
    secret = ContainerReader.__str__(
        type("R", (), {"spec": Spec("stream", "rtsp://admin:hunter2@cam/live")})()
    )
    assert secret == "rtsp://***@cam/live"
    rtsp = stream_options("rtsp://cam.local/stream", 2.5)
    assert rtsp == {"rtsp_transport": "tcp", "timeout": "2500000", "rw_timeout": "2500000"}
    assert stream_options("http://x/y.m3u8", 1.0)["timeout"] == "1000000"


def test_concurrent_sources_are_independent(videos: dict[str, Path]) -> None:
    results: dict[str, list[int]] = {}

    def read(kind: str) -> None:
        with open_source(videos[kind], stride=5) as src:
            results[kind] = [f.index for f in src]

    threads = [threading.Thread(target=read, args=(k,)) for k in ("mp4", "mkv")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {"mp4": list(range(0, N, 5)), "mkv": list(range(0, N, 5))}


def test_network_stream_reconnects_then_gives_up(videos: dict[str, Path]) -> None:
    """A real MPEG-TS stream over loopback TCP: served twice, then the server goes away."""
    data = videos["ts"].read_bytes()
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        with server:
            for _ in range(2):
                conn, _ = server.accept()
                with conn:
                    conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    policy = Reconnect(attempts=2, delay=0.05)
    with open_source(f"tcp://127.0.0.1:{port}", reconnect=policy, queue_size=4 * N) as src:
        assert src.is_live and src.fps == pytest.approx(FPS)
        frames = []
        with pytest.raises(SourceError, match="gave up after 2 reconnect attempts"):
            frames.extend(src)
    thread.join(5)
    assert [f.index for f in frames] == list(range(2 * N))
    assert [level_index(f.image) for f in frames] == [*range(N), *range(N)]
    assert np.all(np.diff([f.pts for f in frames]) > 0)
    assert src.stats.reconnects == 3  # one that worked, two refused
    assert src.stats.dropped == 0


@pytest.mark.parametrize("kind", ["mp4", "mkv", "ts"])
def test_a_start_past_the_first_keyframes_seeks_instead_of_decoding_them(
    videos: dict[str, Path], kind: str
) -> None:
    with open_source(videos[kind], start=25) as src:
        frames = list(src)
    assert [f.index for f in frames] == list(range(25, N))
    stats = src.stats
    # Keyframes every 10 frames: decoding starts near frame 20 (11 decoded for MP4 and MKV;
    # MPEG-TS seeks only roughly: 20), never from the start; the frames before 25 are filtered.
    assert N - 25 < stats.decoded <= (N - 19 if kind != "ts" else N - 1)
    assert stats.filtered == stats.decoded - stats.delivered and stats.delivered == N - 25


def test_source_stats_keep_the_last_100_errors_and_count_in_plain_ints() -> None:
    stats = SourceStats(decoded=7, delivered=4, filtered=1, corrupt=1, decode_errors=2)
    for i in range(105):
        stats.error(f"e{i}")
    assert stats.errors == [f"e{i}" for i in range(5, 105)]  # the oldest dropped first
    counts = stats.counts()
    assert "errors" not in counts and counts["decoded"] == 7 and counts["decode_errors"] == 2
    assert set(counts) == {f.name for f in dataclasses.fields(SourceStats)} - {"errors"}
    assert (stats.skipped_corrupt, stats.pending) == (3, 1)
