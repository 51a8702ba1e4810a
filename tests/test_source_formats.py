"""The format matrix: real-world containers and codecs, each made here with PyAV.

For every file: the source delivers as many frames as PyAV decodes, indexed 0..N-1 in
presentation order (each frame's grey level tells its number), with increasing timestamps,
and its counters add up (``delivered + filtered + corrupt + dropped + discarded == decoded``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from deepercut.sources import SourceStats, open_source

FPS = 25


def level(i: int) -> int:
    """The grey level of frame ``i`` (distinct after lossy coding, any bit depth)."""
    return 16 + 9 * (i % 24)


def picture(i: int, width: int, height: int) -> np.ndarray:
    """Frame ``i``: flat at :func:`level`, with a white marker in its top-left corner."""
    image = np.full((height, width, 3), level(i), np.uint8)
    image[: height // 6, : width // 6] = 255
    return image


def frame_number(image: np.ndarray) -> int:
    """The ``i`` of :func:`picture` (modulo 24) from a decoded frame, from its centre."""
    h, w = image.shape[:2]
    centre = float(np.median(image[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3, 1]))
    return round((centre - 16) / 9)


@dataclass(frozen=True)
class Case:
    """One file of the matrix."""

    name: str  # file name: its suffix picks the container
    codec: str
    width: int = 160
    height: int = 120
    frames: int = 24
    pix_fmt: str = "yuv420p"
    options: dict[str, str] = field(default_factory=dict)
    rotation: int = 0  # display matrix, degrees counter-clockwise
    audio: bool = False
    times_ms: tuple[int, ...] = ()  # variable frame rate: each frame's time


X264 = {"bf": "3", "g": "12", "preset": "ultrafast", "tune": "zerolatency"}
BFRAMES = {"bf": "3", "g": "12", "preset": "veryfast"}  # zerolatency would disable B-frames
VFR_MS = tuple(int(t) for t in np.cumsum([0] + [20, 60, 40, 33, 80, 20, 47] * 3))

CASES = [
    Case("h264_bframes.avi", "libx264", options=BFRAMES),
    Case("h264_bframes.mp4", "libx264", options=BFRAMES),
    Case("h264_bframes.mkv", "libx264", options=BFRAMES),
    Case("h264.ts", "libx264", options=BFRAMES),  # MPEG-TS: starts at 1.4 s, not 0
    Case("h264_annexb.h264", "libx264", options=BFRAMES),  # no timestamps at all
    Case("hevc.mp4", "libx265", options={"x265-params": "log-level=error:bframes=3"}),
    Case("hevc_annexb.hevc", "libx265", options={"x265-params": "log-level=error"}),
    Case("vp9.webm", "libvpx-vp9", options={"deadline": "realtime", "cpu-used": "8"}),
    Case("mjpeg.avi", "mjpeg", pix_fmt="yuvj420p"),
    Case("portrait_phone.mp4", "libx264", options=X264, rotation=90),
    Case("rotated_270.mov", "libx264", options=X264, rotation=-90),
    Case("odd_854x480.mp4", "libx264", width=854, height=480, frames=12, options=X264),
    Case("tall_1080x1920.mp4", "libx264", width=1080, height=1920, frames=6, options=X264),
    Case("with_audio.mp4", "libx264", options=BFRAMES, audio=True),
    Case("ten_bit.mkv", "libx264", pix_fmt="yuv420p10le", options=BFRAMES),
    Case("vfr_phone.mp4", "libx264", frames=len(VFR_MS), options=X264, times_ms=VFR_MS),
    # Matroska has no frame count: its duration at a variable rate is no count either.
    Case("vfr_phone.mkv", "libx264", frames=len(VFR_MS), options=X264, times_ms=VFR_MS),
]


def make(case: Case, path: Path) -> None:
    """Encode ``case`` to ``path`` with PyAV (skips when this PyAV lacks the encoder)."""
    try:
        av.codec.Codec(case.codec, "w")
    except av.FFmpegError:  # e.g. a PyAV wheel built without libx265
        pytest.skip(f"this PyAV has no {case.codec} encoder")
    if case.rotation and not hasattr(av.video.stream.VideoStream, "set_display_rotation"):
        pytest.skip("this PyAV cannot write a display matrix (set_display_rotation)")
    with av.open(str(path), "w") as container:
        stream = container.add_stream(case.codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = case.width, case.height, case.pix_fmt
        stream.options = dict(case.options)
        if case.times_ms:
            stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        if case.rotation:
            stream.set_display_rotation(case.rotation)
        audio = container.add_stream("aac", rate=48000) if case.audio else None
        for i in range(case.frames):
            frame = av.VideoFrame.from_ndarray(picture(i, case.width, case.height), format="rgb24")
            if case.times_ms:
                frame.pts, frame.time_base = case.times_ms[i], Fraction(1, 1000)
            else:
                frame.pts = i
            container.mux(stream.encode(frame))
            if audio is not None:  # 40 ms of a tone per video frame
                t = np.arange(1920) / 48000 + i * 0.04
                samples = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
                chunk = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 48000, i * 1920
                container.mux(audio.encode(chunk))
        container.mux(stream.encode(None))
        if audio is not None:
            container.mux(audio.encode(None))


def pyav_count(path: Path) -> int:
    """Frames PyAV itself decodes from the file."""
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def assert_accounted(stats: SourceStats) -> None:
    """Every decoded frame is delivered or counted; nothing pending once closed."""
    done = stats.delivered + stats.filtered + stats.corrupt + stats.dropped + stats.discarded
    assert stats.decoded == done and stats.pending == 0, stats


@pytest.fixture(scope="module", params=CASES, ids=lambda case: case.name)
def made(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    case: Case = request.param
    path = tmp_path_factory.mktemp("formats") / case.name
    make(case, path)
    return case, path


def test_every_frame_in_order_with_increasing_time(made: tuple[Case, Path]) -> None:
    case, path = made
    expected = pyav_count(path)
    assert expected == case.frames  # the encoder wrote them all
    with open_source(path) as src:
        frames = list(src)
    assert len(frames) == expected
    assert [f.index for f in frames] == list(range(expected))
    # Presentation order: frame i shows picture i (B-frames and reordered pts included).
    assert [frame_number(f.image) for f in frames] == [i % 24 for i in range(expected)]
    pts = np.array([f.pts for f in frames])
    assert pts[0] == 0.0 and np.all(np.diff(pts) > 0)
    if case.times_ms:
        np.testing.assert_allclose(pts, np.array(case.times_ms) / 1000, atol=1e-6)
    else:  # constant rate (raw streams: FFmpeg's guess of it, 25 fps)
        np.testing.assert_allclose(pts, np.arange(expected) / FPS, atol=1e-6)
    stats = src.stats
    assert stats.delivered == expected
    assert stats.missing == stats.corrupt == stats.decode_errors == 0
    assert_accounted(stats)


def test_frames_are_in_display_orientation(made: tuple[Case, Path]) -> None:
    case, path = made
    with open_source(path, max_frames=1) as src:
        size = src.frame_size
        (frame,) = list(src)
    turned = case.rotation % 180 != 0
    width, height = (case.height, case.width) if turned else (case.width, case.height)
    assert size == (width, height)
    assert frame.image.shape == (height, width, 3) and frame.image.flags.c_contiguous
    # Where the top-left marker ends up: rotated counter-clockwise by `rotation` degrees.
    corner = {0: (0, 0), 90: (-1, 0), 270: (0, -1)}[case.rotation % 360]
    row, col = corner
    assert frame.image[row, col].min() > 200
    assert frame.image[-1 - row, -1 - col].max() < 200  # the opposite corner is not marked


@pytest.mark.parametrize(("start", "stride"), [(5, 1), (3, 4)])
def test_start_and_stride_count_what_they_skip(
    made: tuple[Case, Path], start: int, stride: int
) -> None:
    case, path = made
    expected = list(range(start, case.frames, stride))
    with open_source(path, start=start, stride=stride) as src:
        frames = list(src)
    assert [f.index for f in frames] == expected
    assert [frame_number(f.image) for f in frames] == [i % 24 for i in expected]
    assert_accounted(src.stats)
    assert src.stats.missing == 0
