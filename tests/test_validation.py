"""Input validation: absurd frame sizes, odd pixel formats and non-finite model outputs give a
clear error or are handled, never a hang.

* frames of 0×0, 0×N, 1×1, 1×10000 and 8K (7680×4320) handed to the engine;
* grayscale, alpha, 16-bit and float arrays as frames; grayscale, 16-bit grayscale, alpha and
  10-bit H.264 files and images decoded by the sources (converted to 8-bit RGB);
* NaN and ±inf in the network's maps (dropped cells), in a model's weights (frames without
  people) and in a custom detector's candidates (dropped and counted).

Everything solves in-process; no Ray.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from engine_support import fitted_pairwise, tiny_model

from deepercut.engine.pipeline import Engine
from deepercut.model.candidates import CandidateParams, extract_candidates
from deepercut.model.io import CheckpointError, load_model, save_model
from deepercut.skeleton import MPII14
from deepercut.solvers.frame_solver import FrameSolver
from deepercut.sources import SourceError, open_source
from deepercut.types import Candidates, Frame

P = MPII14.num_parts
INPUT_HW = (96, 128)  # small: these tests are about the inputs, not the network


@pytest.fixture(scope="module")
def engine():
    with Engine(tiny_model(), solver="heuristic", input_hw=INPUT_HW, batch_size=1) as engine:
        yield engine


def run_one(engine: Engine, image: np.ndarray) -> list:
    return list(engine.run_frames([Frame(0, 0.0, image, "test")]))


# ----------------------------------------------------------------------------- frame sizes


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((0, 0, 3), "sizes must be positive"),
        ((0, 5, 3), "sizes must be positive"),
        ((1, 10000, 3), "too elongated"),
    ],
)
def test_degenerate_frames_are_a_clear_error(engine, shape, message) -> None:
    with pytest.raises(ValueError, match=message):
        run_one(engine, np.zeros(shape, np.uint8))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("shape", [(1, 1, 3), (4320, 7680, 3)], ids=["1x1", "8K"])
def test_tiny_and_8k_frames_are_handled(engine, shape) -> None:
    image = np.random.default_rng(0).integers(0, 256, shape, np.uint8)
    (result,) = run_one(engine, image)
    poses = result.poses
    assert poses is not None and poses.frame == 0
    present = np.isfinite(poses.keypoints[..., 0])
    assert np.all(np.isfinite(poses.keypoints[present]))
    # Candidates come back in the frame's own pixels, not the network input's (96×128).
    (candidates,) = engine.detector([Frame(0, 0.0, image, "test")])
    assert len(candidates) > 0 and np.all(np.isfinite(candidates.xy))
    if shape[0] > 1000:
        assert candidates.xy[:, 0].max() > 4 * INPUT_HW[1]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "image",
    [
        np.zeros((48, 64), np.uint8),  # grayscale, 2-D
        np.zeros((48, 64, 1), np.uint8),  # grayscale, one channel
        np.zeros((48, 64, 4), np.uint8),  # RGBA
        np.zeros((48, 64, 3), np.uint16),  # 10/16-bit samples
        np.zeros((48, 64, 3), np.float32),  # float
    ],
    ids=["gray2d", "gray1", "rgba", "uint16", "float32"],
)
def test_frames_that_are_not_8bit_rgb_are_a_clear_error(engine, image) -> None:
    with pytest.raises(ValueError, match="expected uint8 H×W×3 RGB"):
        run_one(engine, image)


# ----------------------------------------------------------------------------- pixel formats


def _write_video(path: Path, codec: str, pix_fmt: str, levels: list[int]) -> Path:
    """Flat frames at the given 8-bit gray levels, stored as ``pix_fmt``."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, pix_fmt
        for i, level in enumerate(levels):
            rgb = np.full((48, 64, 3), level, np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _write_image(path: Path, array: np.ndarray, pix_fmt: str) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = array.shape[1], array.shape[0], pix_fmt
        frame = av.VideoFrame.from_ndarray(array, format=pix_fmt)
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


LEVELS = [40, 120, 200]


@pytest.mark.parametrize(
    ("codec", "pix_fmt"),
    [("libx264", "yuv420p10le"), ("ffv1", "gray"), ("ffv1", "gray16le"), ("ffv1", "yuv444p")],
)
def test_video_pixel_formats_decode_to_8bit_rgb(tmp_path: Path, codec, pix_fmt) -> None:
    path = _write_video(tmp_path / f"{pix_fmt}.mkv", codec, pix_fmt, LEVELS)
    with open_source(path) as src:
        frames = list(src)
    assert [f.index for f in frames] == list(range(len(LEVELS)))
    for frame, level in zip(frames, LEVELS, strict=True):
        assert frame.image.dtype == np.uint8 and frame.image.shape == (48, 64, 3)
        assert abs(float(frame.image.mean()) - level) < 3  # the content survives conversion


def test_image_pixel_formats_decode_to_8bit_rgb(tmp_path: Path, engine) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    gray = np.full((48, 64), 90, np.uint8)
    _write_image(folder / "a_gray.png", gray, "gray")
    _write_image(folder / "b_gray16.png", gray.astype(np.uint16) * 257, "gray16be")
    rgba = np.zeros((48, 64, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = 90, 128  # half-transparent
    _write_image(folder / "c_rgba.png", rgba, "rgba")
    _write_image(folder / "d_tiny.png", np.full((1, 1, 3), 90, np.uint8), "rgb24")
    with open_source(folder) as src:
        frames = list(src)
    assert [f.image.shape for f in frames] == [(48, 64, 3)] * 3 + [(1, 1, 3)]
    for frame in frames:
        assert frame.image.dtype == np.uint8
        np.testing.assert_allclose(frame.image, 90, atol=1)  # alpha dropped, not blended
    # And the engine takes them all, the 1×1 image included.
    results = list(engine.run_frames(folder))
    assert [r.index for r in results] == [0, 1, 2, 3]
    assert all(r.poses is not None for r in results)


def test_a_video_without_frames_is_a_clear_error(tmp_path: Path, engine) -> None:
    # A Matroska file cut where its first cluster of frames starts: headers, no frames. FFmpeg
    # cannot even learn the stream's parameters, so it fails at opening, naming the file.
    data = _write_video(tmp_path / "full.mkv", "libx264", "yuv420p", LEVELS).read_bytes()
    empty = tmp_path / "empty.mkv"
    empty.write_bytes(data[: data.index(b"\x1f\x43\xb6\x75")])  # the Cluster element id
    with pytest.raises(SourceError, match=r"cannot open .*empty\.mkv: End of file"):
        list(engine.run_frames(str(empty)))


# ----------------------------------------------------------------------------- non-finite


def _maps(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Maps of one image with a few clear peaks per part (probabilities, locref, pairwise)."""
    g = torch.Generator().manual_seed(seed)
    h, w = 12, 16
    probs = torch.rand(1, P, h, w, generator=g) * 0.1
    for part in range(P):
        for _ in range(3):
            i, j = torch.randint(0, h, (1,), generator=g), torch.randint(0, w, (1,), generator=g)
            probs[0, part, i, j] = 0.5 + 0.5 * torch.rand(1, generator=g)
    locref = torch.randn(1, P, 2, h, w, generator=g)
    pairwise = torch.randn(1, P, P, 2, h, w, generator=g) * 10
    return probs, locref, pairwise


def _peak(probs: torch.Tensor, part: int) -> tuple[int, int]:
    flat = int(probs[0, part].argmax())
    return divmod(flat, probs.shape[-1])


@pytest.mark.parametrize(
    "where", ["probs nan", "probs +inf", "probs -inf", "locref nan", "pairwise inf"]
)
def test_non_finite_maps_drop_exactly_their_cells(where: str) -> None:
    probs, locref, pairwise = _maps()
    params = CandidateParams(nms_radius=4.0)
    bad = {"probs": probs.clone(), "locref": locref.clone(), "pairwise": pairwise.clone()}
    reference = probs.clone()
    value = {"nan": float("nan"), "+inf": float("inf"), "-inf": float("-inf"), "inf": np.inf}
    name, kind = where.split()
    for part in (0, 5, 13):
        i, j = _peak(probs, part)
        if name == "probs":
            bad["probs"][0, part, i, j] = value[kind]
        elif name == "locref":
            bad["locref"][0, part, 1, i, j] = value[kind]
        else:
            bad["pairwise"][0, part, (part + 1) % P, 0, i, j] = value[kind]
        reference[0, part, i, j] = 0.0  # as if nothing had been detected there
    (got,) = extract_candidates(bad["probs"], bad["locref"], bad["pairwise"], 8, params)
    (want,) = extract_candidates(reference, locref, pairwise, 8, params)
    for field in ("xy", "part", "score", "offsets"):
        got_value, want_value = getattr(got, field), getattr(want, field)
        assert np.all(np.isfinite(got_value)), field
        np.testing.assert_array_equal(got_value, want_value)
    assert len(got) > 0


def test_all_nan_maps_give_no_candidates() -> None:
    probs, locref, pairwise = _maps()
    (got,) = extract_candidates(torch.full_like(probs, float("nan")), locref, pairwise)
    assert len(got) == 0


@pytest.mark.timeout(120)
def test_a_model_with_nan_weights_yields_frames_without_people(tmp_path: Path) -> None:
    model = tiny_model()
    with torch.no_grad():
        model.net.scmap_head.weight.fill_(float("nan"))  # e.g. an fp16 overflow, a bad file
    frames = [Frame(i, i / 25, np.full((48, 64, 3), 100, np.uint8), "test") for i in range(3)]
    with Engine(model, solver="3stage", input_hw=INPUT_HW, batch_size=2) as engine:
        results = list(engine.run_frames(frames))
    assert [r.index for r in results] == [0, 1, 2]
    assert all(r.poses is not None and r.poses.num_people == 0 for r in results)
    assert all(r.poses.solver["candidates"] == 0 for r in results)


def test_a_checkpoint_with_non_finite_weights_is_refused(tmp_path: Path) -> None:
    model = tiny_model()
    save_model(tmp_path / "good.pt", model)
    load_model(tmp_path / "good.pt")  # the same file without damage loads
    with torch.no_grad():
        model.net.scmap_head.weight[0, 0, 0, 0] = float("inf")
    save_model(tmp_path / "bad.pt", model)
    with pytest.raises(CheckpointError, match=r"non-finite values in \['scmap_head.weight'\]"):
        load_model(tmp_path / "bad.pt")


def test_non_finite_candidates_are_dropped_and_counted() -> None:
    rng = np.random.default_rng(0)
    n = 40
    candidates = Candidates(
        xy=rng.uniform(0, 200, (n, 2)).astype(np.float32),
        part=rng.integers(0, P, n),
        score=rng.uniform(0.3, 1.0, n).astype(np.float32),
        offsets=rng.normal(0, 20, (n, P, 2)).astype(np.float32),
    )
    bad = Candidates(
        candidates.xy.copy(), candidates.part, candidates.score.copy(), candidates.offsets.copy()
    )
    bad.xy[3, 0] = np.nan
    bad.score[7] = np.inf
    bad.offsets[11, 2, 1] = -np.inf
    solver = FrameSolver(fitted_pairwise(), MPII14, method="3stage")
    got = solver(0, 0.0, bad)
    want = solver(0, 0.0, candidates.select(np.setdiff1d(np.arange(n), [3, 7, 11])))
    assert got.solver["nonfinite"] == 3 and "nonfinite" not in want.solver
    assert got.solver["candidates"] == want.solver["candidates"] == n - 3
    np.testing.assert_array_equal(got.keypoints, want.keypoints)
    assert np.all(np.isfinite(got.keypoints[..., 2][np.isfinite(got.keypoints[..., 0])]))
