"""``deepercut run FOLDER --render``: one overlay image per input image (same names, own sizes),
or a video on a fixed canvas, for folders of mixed sizes."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from engine_support import save_tiny_model
from PIL import Image

from deepercut.cli import main
from deepercut.engine.render import draw_poses
from deepercut.skeleton import MPII14
from deepercut.streams import read_poses

#: (name, width, height): mixed sizes and orientations, odd sizes, two formats.
IMAGES = [
    ("img1.png", 157, 105),
    ("img2.jpg", 194, 265),
    ("img10.png", 320, 240),
    ("photo.jpeg", 99, 77),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("folder")
    (root / "in").mkdir()
    rng = np.random.default_rng(3)
    for name, w, h in IMAGES:
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "in" / name)
    save_tiny_model(root / "tiny.pt")
    return root


def run(root: Path, *args: str) -> int:
    flags = ["--model", str(root / "tiny.pt"), "--workers", "0", "--quiet"]
    return main(["run", str(root / "in"), *flags, *args])


def test_folder_render_writes_one_overlay_per_image(folder: Path) -> None:
    out = folder / "overlays"
    assert run(folder, "-o", str(folder / "p.msgpack"), "--render", str(out)) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(name for name, _, _ in IMAGES)
    with read_poses(folder / "p.msgpack") as stream:
        poses = list(stream)
    order = ["img1.png", "img2.jpg", "img10.png", "photo.jpeg"]  # natural order
    assert [p.frame for p in poses] == list(range(len(IMAGES)))
    drawn = 0
    for name, record in zip(order, poses, strict=True):
        source = np.asarray(Image.open(folder / "in" / name).convert("RGB"))
        overlay = np.asarray(Image.open(out / name).convert("RGB"))
        assert overlay.shape == source.shape  # each in its own pixels
        if name.endswith(".png"):  # lossless: exactly the poses of its record
            assert np.array_equal(overlay, draw_poses(source, record, MPII14))
        drawn += record.num_people
    assert drawn > 0  # the overlays show something


def test_folder_render_to_a_video_uses_a_fixed_canvas(folder: Path) -> None:
    first = folder / "first.mp4"
    assert run(folder, "--render", str(first)) == 0
    sized = folder / "sized.mkv"
    assert run(folder, "--render", str(sized), "--render-size", "320x180") == 0
    for path, (w, h) in ((first, (158, 106)), (sized, (320, 180))):  # 157x105 padded to even
        with av.open(str(path)) as container:
            shapes = [f.to_ndarray(format="rgb24").shape for f in container.decode(video=0)]
        assert shapes == [(h, w, 3)] * len(IMAGES)


def test_folder_render_refuses_bad_targets(folder: Path, capsys) -> None:
    before = {p.name: p.read_bytes() for p in (folder / "in").iterdir()}
    assert run(folder, "--render", str(folder / "in")) == 2
    assert "refusing to overwrite" in capsys.readouterr().err  # deepercut.outputs' check
    assert {p.name: p.read_bytes() for p in (folder / "in").iterdir()} == before
    assert run(folder, "--render", str(folder / "o"), "--render-size", "64x48") == 2
    assert "--render-size is for a video" in capsys.readouterr().err
    assert not (folder / "o").exists()
