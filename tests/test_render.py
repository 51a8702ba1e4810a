"""Pose drawing (pixels on limbs and keypoints, nothing far away) and video encoding."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from deepercut.engine.render import (
    PALETTE,
    ImageFolderRenderer,
    VideoRenderer,
    draw_poses,
    fit_canvas,
    person_colors,
)
from deepercut.skeleton import MPII14, Skeleton
from deepercut.types import Poses

LINE = Skeleton(name="line", parts=("a", "b", "c"), edges=((0, 1), (1, 2)), stages=((0, 1, 2),))


def person(points: list[tuple[float, float]], score: float = 0.9) -> np.ndarray:
    return np.array([[x, y, score] for x, y in points], np.float32)


def test_draws_limbs_and_keypoints_only() -> None:
    image = np.zeros((120, 160, 3), np.uint8)
    kp = person([(20, 30), (100, 30), (np.nan, np.nan)])[None]
    poses = Poses(0, 0.0, kp, np.array([4]))
    out = draw_poses(image, poses, LINE, radius=4, thickness=3)
    assert not image.any()  # the input is left alone
    changed = out.any(axis=2)
    # Along the limb a→b, at both keypoints, and nowhere far from them.
    assert changed[30, 20:101].all()
    assert changed[30, 60] and (out[30, 60] == PALETTE[4]).all()  # limb in the track colour
    assert changed[26:35, 20].all() and changed[26:35, 100].all()
    assert not changed[:24].any() and not changed[37:].any()
    assert not changed[:, :14].any() and not changed[:, 106:].any()
    # The edge to the absent part c is skipped.
    assert changed.sum() < 81 * 3 + 2 * 81


def test_colours_follow_track_ids_and_scores() -> None:
    colors = person_colors(np.array([0, 21, -1, -1]))
    np.testing.assert_array_equal(colors[:2], PALETTE[[0, 1]])
    np.testing.assert_array_equal(colors[2:], PALETTE[[2, 3]])  # untracked: by position
    image = np.zeros((60, 100, 3), np.uint8)
    kp = np.stack([person([(20, 20)] * 3, 1.0), person([(70, 20)] * 3, 0.1)])
    out = draw_poses(image, Poses(0, 0.0, kp, np.array([1, 1])), LINE, radius=5)
    assert int(out[20, 20].sum()) > int(out[20, 70].sum())  # confident dots are brighter
    hidden = draw_poses(image, Poses(0, 0.0, kp, np.array([1, 1])), LINE, min_score=0.5)
    assert hidden[:, :45].any() and not hidden[:, 45:].any()


def test_far_away_and_empty_poses() -> None:
    image = np.zeros((90, 120, 3), np.uint8)
    far = person([(-1e7, 45), (1e7, 45), (60, -1e9)])[None]
    out = draw_poses(image, Poses(0, 0.0, far, np.array([-1])), LINE, thickness=3)
    assert out[45].any(axis=1).all()  # the visible part of a huge segment, clipped
    assert not out[:40].any() and not out[50:].any()
    empty = Poses(0, 0.0, np.zeros((0, MPII14.num_parts, 3), np.float32), np.zeros(0, np.int64))
    np.testing.assert_array_equal(draw_poses(image, empty, MPII14), image)
    with pytest.raises(ValueError, match="uint8"):
        draw_poses(image.astype(np.float32), empty, MPII14)


def _decode(path: Path) -> tuple[list[np.ndarray], Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return frames, stream.average_rate


@pytest.mark.parametrize(("size", "fps"), [((160, 96), 29.97), ((161, 121), 25.0)])
def test_video_has_one_frame_per_input_frame(tmp_path: Path, size: tuple[int, int], fps: float):
    w, h = size
    path = tmp_path / "out.mp4"
    rng = np.random.default_rng(0)
    kp = person([(20, 20), (w - 20, h - 20), (w - 20, 20)])[None]
    with VideoRenderer(path, fps, size) as renderer:
        for i in range(12):
            image = np.full((h, w, 3), 10 * i, np.uint8)
            image[: h // 2] = rng.integers(0, 255, (h // 2, w, 3), dtype=np.uint8)
            renderer.write(draw_poses(image, Poses(i, i / fps, kp, np.array([0])), LINE))
    assert renderer.encoded_size == (w + w % 2, h + h % 2)
    frames, rate = _decode(path)
    assert len(frames) == 12
    assert frames[0].shape == (h + h % 2, w + w % 2, 3)
    assert rate == Fraction(fps).limit_denominator(1001)
    levels = [float(f[-4:-2, 4:10].mean()) for f in frames]  # the flat lower half
    np.testing.assert_allclose(levels, 10 * np.arange(12), atol=3)


def test_video_renderer_checks_its_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="frame rate"):
        VideoRenderer(tmp_path / "a.mp4", float("nan"), (64, 64))
    with VideoRenderer(tmp_path / "b.mkv", 30, (64, 48)) as renderer:
        with pytest.raises(ValueError, match=r"\(48, 64, 3\)"):
            renderer.write(np.zeros((64, 48, 3), np.uint8))
        renderer.write(np.zeros((48, 64, 3), np.uint8))
    assert len(_decode(tmp_path / "b.mkv")[0]) == 1


def test_fit_canvas_letterboxes_centred() -> None:
    white = np.full((50, 100, 3), 255, np.uint8)  # 2:1 into a square: bars above and below
    out = fit_canvas(white, (200, 200))
    assert out.shape == (200, 200, 3)
    assert (out[50:150] == 255).all() and not out[:50].any() and not out[150:].any()
    tall = fit_canvas(np.full((100, 20, 3), 255, np.uint8), (60, 50))  # bars left and right
    assert tall.shape == (50, 60, 3)
    assert (tall[:, 25:35] == 255).all() and not tall[:, :25].any() and not tall[:, 35:].any()
    assert fit_canvas(white, (100, 50)) is white


def test_letterboxing_renderer_takes_mixed_sizes(tmp_path: Path) -> None:
    path = tmp_path / "mixed.mp4"
    sizes = [(48, 64), (100, 30), (31, 77), (64, 48)]  # (h, w)
    with VideoRenderer(path, 10, (64, 48), letterbox=True) as renderer:
        for h, w in sizes:
            renderer.write(np.full((h, w, 3), 200, np.uint8))
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert [f.shape for f in frames] == [(48, 64, 3)] * len(sizes)
    # 100x30 (h x w) into 64x48: 16 px wide, centred; bars black (x264 keeps them near 0).
    assert frames[1][:, 30:34].mean() > 150 and frames[1][:, :20].mean() < 30


def test_image_folder_renderer_keeps_names_and_refuses_its_input(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    names = ["b.png", "a.jpg"]
    with ImageFolderRenderer(tmp_path / "out", names, source_folder=tmp_path / "in") as images:
        images.write(1, np.full((30, 40, 3), 90, np.uint8))
        images.write(0, np.full((50, 20, 3), 10, np.uint8))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jpg", "b.png"]
    assert np.array_equal(
        np.asarray(Image.open(tmp_path / "out" / "b.png")), np.full((50, 20, 3), 10)
    )
    with pytest.raises(ValueError, match="input folder"):
        ImageFolderRenderer(tmp_path / "in", names, source_folder=tmp_path / "in")
