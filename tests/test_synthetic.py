"""The synthetic data generator: determinism, truth consistent with the pixels, video, CLI."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from deepercut.data.synthetic import (
    generate_image,
    generate_video,
    load_truth,
    render_people,
    sample_people,
    textured_background,
    write_video,
)
from deepercut.skeleton import MPII14


def test_same_seed_same_bytes_and_different_seed_differs() -> None:
    a = generate_image(7, (96, 128), (2, 4))
    b = generate_image(7, (96, 128), (2, 4))
    c = generate_image(8, (96, 128), (2, 4))
    assert a.image.tobytes() == b.image.tobytes()
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    np.testing.assert_array_equal(a.person_map, b.person_map)
    assert a.image.tobytes() != c.image.tobytes()


def test_sample_shapes_and_types() -> None:
    s = generate_image(3, (120, 160), 4)
    assert s.image.shape == (120, 160, 3) and s.image.dtype == np.uint8
    assert s.keypoints.shape == (4, 14, 2) and s.keypoints.dtype == np.float32
    assert s.visible.shape == (4, 14) and s.visible.dtype == bool
    assert s.heights.shape == (4,) and s.heights.dtype == np.float32
    assert s.person_map.shape == (120, 160) and s.person_map.dtype == np.int16
    assert set(np.unique(s.person_map)) <= {-1, 0, 1, 2, 3}


@pytest.mark.parametrize("seed", range(4))
def test_keypoints_lie_on_their_own_drawn_person(seed: int) -> None:
    hw = (160, 200)
    s = generate_image(seed, hw, (3, 6), height_range=(30.0, 180.0))
    H, W = hw
    xy = np.rint(s.keypoints).astype(int)
    inside = (xy[..., 0] >= 0) & (xy[..., 0] < W) & (xy[..., 1] >= 0) & (xy[..., 1] < H)
    assert s.visible.sum() > 0.3 * inside.sum()
    assert not (s.visible & ~inside).any()
    for m in range(len(s.keypoints)):
        # Drawn alone, every in-image keypoint is covered by the person's own shapes.
        alone_img, alone = render_people(
            np.random.default_rng(seed), hw, s.keypoints[m : m + 1], s.heights[m : m + 1]
        )
        assert alone_img.shape == (H, W, 3)
        for p in np.flatnonzero(inside[m]):
            x, y = xy[m, p]
            assert alone[y, x] == 0, (m, MPII14.parts[p])
            owner = s.person_map[y, x]
            if s.visible[m, p]:
                assert owner == m
            else:  # hidden: someone drawn later (in front) covers it
                assert owner > m, (m, MPII14.parts[p], owner)


def test_people_look_like_people() -> None:
    kps, heights = sample_people(np.random.default_rng(0), (480, 640), 200, (100.0, 300.0))
    assert kps.shape == (200, 14, 2) and heights.shape == (200,)
    assert ((heights >= 100) & (heights <= 300)).all()
    h = heights[:, None]
    # Limb lengths within the sampled proportions (segments may look shorter when foreshortened).
    for (a, b), longest in {(2, 1): 0.27, (1, 0): 0.27, (8, 7): 0.19, (7, 6): 0.17}.items():
        length = np.linalg.norm(kps[:, a] - kps[:, b], axis=1)
        assert (length <= longest * h[:, 0] + 1e-3).all()
    # The head top is above the neck, the neck above the hips (nobody stands on their head),
    # and the person's right shoulder appears left of their left shoulder (facing the camera).
    assert (kps[:, 13, 1] < kps[:, 12, 1]).all()
    assert (kps[:, 12, 1] < kps[:, [2, 3], 1].min(axis=1)).all()
    assert (kps[:, 8, 0] < kps[:, 9, 0]).mean() > 0.95
    # Poses vary: some wrists above the shoulders, some ankles spread.
    raised = (kps[:, [6, 11], 1] < kps[:, [8, 9], 1]).any(axis=1)
    assert 0.1 < raised.mean() < 0.9


def test_people_count_and_heights_in_range() -> None:
    counts = set()
    for seed in range(12):
        s = generate_image(seed, (48, 64), (2, 4), height_range=(20.0, 40.0))
        counts.add(len(s.keypoints))
        assert ((s.heights >= 20.0) & (s.heights <= 40.0)).all()
    assert counts == {2, 3, 4}
    assert len(generate_image(0, (48, 64), 0).keypoints) == 0


def test_background_is_textured() -> None:
    bg = textured_background(np.random.default_rng(1), (60, 80))
    assert bg.shape == (60, 80, 3) and bg.dtype == np.uint8
    assert bg.reshape(-1, 3).std(axis=0).max() > 2.0


def test_video_round_trip_identities_and_smooth_motion(tmp_path) -> None:
    frames = list(generate_video(5, (128, 160), num_people=2, num_frames=12, fps=25.0))
    again = next(iter(generate_video(5, (128, 160), num_people=2, num_frames=1, fps=25.0)))
    assert again.image.tobytes() == frames[0].image.tobytes()
    for f in frames:
        np.testing.assert_array_equal(f.ids, [0, 1])
    kps = np.stack([f.keypoints for f in frames])  # [T, M, 14, 2]
    step = np.linalg.norm(np.diff(kps, axis=0), axis=-1)  # [T-1, M, 14]
    assert step.max() < 0.2 * frames[0].heights.max()
    assert step.mean() > 0.0  # they do move

    video, truth = tmp_path / "v.mp4", tmp_path / "v.json"
    doc = write_video(video, iter(frames), 25.0, truth_path=truth)
    with av.open(str(video)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 12 and decoded[0].shape == (128, 160, 3)
    # Lossy, but close to what was rendered.
    assert np.abs(decoded[3].astype(int) - frames[3].image.astype(int)).mean() < 12

    raw = json.loads(truth.read_text())
    assert raw["format"] == "deepercut.truth" and raw["version"] == 1
    assert raw["image_size"] == [160, 128] and raw["fps"] == 25.0
    assert len(raw["frames"][0]["people"][0]["keypoints"]) == 14
    loaded = load_truth(truth)
    assert loaded["skeleton"] == MPII14
    assert len(loaded["frames"]) == len(doc["frames"]) == 12
    for f, back in zip(frames, loaded["frames"], strict=True):
        np.testing.assert_allclose(back["keypoints"], f.keypoints, atol=0.006)
        np.testing.assert_array_equal(back["visible"], f.visible)
        np.testing.assert_array_equal(back["ids"], f.ids)
        assert back["t"] == pytest.approx(f.t)


def test_load_truth_rejects_other_files(tmp_path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError):
        load_truth(path)


def test_cli_writes_images_and_truth(tmp_path) -> None:
    from deepercut.cli import main

    out = tmp_path / "set"
    argv = ["synth", "images", "--count", "3", "--people", "1-3", "--size", "96x64"]
    assert main([*argv, "--seed", "2", "-o", str(out)]) == 0
    pngs = sorted(out.glob("img*.png"))
    assert [p.name for p in pngs] == ["img00000.png", "img00001.png", "img00002.png"]
    with av.open(str(pngs[1])) as container:
        image = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert image.shape == (64, 96, 3)
    truth = load_truth(out / "truth.json")
    assert truth["image_size"] == [96, 64] and len(truth["frames"]) == 3
    # PNG is lossless: the file is exactly the image the generator made.
    expected = generate_image([2, 1], (64, 96), (1, 3))
    np.testing.assert_array_equal(image, expected.image)
    np.testing.assert_allclose(truth["frames"][1]["keypoints"], expected.keypoints, atol=0.006)
    assert truth["frames"][1]["file"] == "img00001.png"
    assert 1 <= len(truth["frames"][0]["ids"]) <= 3


def test_cli_writes_video(tmp_path) -> None:
    from deepercut.cli import main

    out = tmp_path / "v.mp4"
    argv = ["synth", "video", "--people", "2", "--frames", "5", "--size", "96x64"]
    assert main([*argv, "-o", str(out), "--truth", str(tmp_path / "t.json")]) == 0
    assert out.stat().st_size > 0
    assert len(load_truth(tmp_path / "t.json")["frames"]) == 5
