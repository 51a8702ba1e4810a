"""Letterboxing: parameters, exact coordinate round trips, where pixels land, padding helper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepercut.model.letterbox import (
    Letterbox,
    letterbox_params,
    map_candidates,
    pad_to_multiple,
    padding_box,
)
from deepercut.model.letterbox_image import apply_letterbox
from deepercut.types import Candidates

CASES = [
    ((480, 640), (256, 320)),  # landscape, downscale, fits by height
    ((640, 480), (256, 320)),  # portrait, downscale
    ((100, 60), (320, 256)),  # portrait, upscale
    ((90, 160), (256, 320)),  # landscape, upscale, fits by width
    ((256, 320), (256, 320)),  # identity
    ((333, 517), (368, 640)),  # odd sizes
]


@pytest.mark.parametrize(("image_hw", "input_hw"), CASES)
def test_params_fit_and_centre(image_hw: tuple[int, int], input_hw: tuple[int, int]) -> None:
    box = letterbox_params(image_hw, input_hw)
    rh, rw = box.resized_hw
    ih, iw = input_hw
    assert rh == ih or rw == iw  # fills one axis
    assert rh <= ih and rw <= iw
    assert box.pad_x == (iw - rw) // 2 and box.pad_y == (ih - rh) // 2
    assert box.scale == pytest.approx(min(ih / image_hw[0], iw / image_hw[1]), rel=1e-12)


def test_params_fill_axis_despite_rounding() -> None:
    # 3 × (100/3) is 99.99999999999999 in floating point: floor would lose a row.
    box = letterbox_params((3, 3), (100, 100))
    assert box.resized_hw == (100, 100)
    img = torch.rand(1, 3, 3, 3)
    assert apply_letterbox(img, box).shape == (1, 3, 100, 100)


@pytest.mark.parametrize(("image_hw", "input_hw"), CASES)
def test_round_trip(image_hw: tuple[int, int], input_hw: tuple[int, int]) -> None:
    box = letterbox_params(image_hw, input_hw)
    rng = np.random.default_rng(0)
    xy = rng.uniform(-10, max(image_hw) + 10, (100, 2))
    np.testing.assert_allclose(box.to_image(box.to_input(xy)), xy, atol=1e-9)
    t = torch.from_numpy(xy)
    torch.testing.assert_close(box.to_image(box.to_input(t)), t, atol=1e-9, rtol=0)
    f32 = xy.astype(np.float32)
    back = box.to_image(box.to_input(f32))
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, f32, atol=1e-3)


def test_coordinate_convention() -> None:
    box = Letterbox(scale=2.0, pad_x=3, pad_y=5, input_hw=(64, 64), image_hw=(20, 20))
    # The image's top-left corner (-0.5, -0.5) maps to the input's corner of the pad.
    np.testing.assert_allclose(box.to_input(np.array([-0.5, -0.5])), [3 - 0.5, 5 - 0.5])
    np.testing.assert_allclose(box.to_input(np.array([0.0, 0.0])), [3.5, 5.5])
    np.testing.assert_allclose(box.scale_vectors(np.array([4.0, -2.0])), [2.0, -1.0])


@pytest.mark.parametrize(("image_hw", "input_hw"), CASES)
def test_dot_lands_at_mapped_pixel(image_hw: tuple[int, int], input_hw: tuple[int, int]) -> None:
    box = letterbox_params(image_hw, input_hw)
    h, w = image_hw
    rng = np.random.default_rng(1)
    for _ in range(3):
        y, x = int(rng.integers(2, h - 2)), int(rng.integers(2, w - 2))
        image = np.zeros((h, w, 3), np.uint8)
        image[y, x] = 255
        out = apply_letterbox(image, box)
        assert out.shape == (*input_hw, 3) and out.dtype == np.uint8
        iy, ix = np.unravel_index(np.argmax(out[..., 0]), input_hw)
        ex, ey = box.to_input(np.array([x, y], np.float64))
        assert abs(ix - ex) <= 1 and abs(iy - ey) <= 1, (ix, iy, ex, ey)


def test_padding_content_and_fill() -> None:
    box = letterbox_params((60, 120), (96, 128))  # scale 16/15, pads above and below
    image = np.full((60, 120, 3), 200, np.uint8)
    out = apply_letterbox(image, box, fill=7)
    rh, rw = box.resized_hw
    assert (out[: box.pad_y] == 7).all() and (out[box.pad_y + rh :] == 7).all()
    assert (out[:, : box.pad_x] == 7).all() and (out[:, box.pad_x + rw :] == 7).all()
    inner = out[box.pad_y : box.pad_y + rh, box.pad_x : box.pad_x + rw]
    assert (inner == 200).all()


def test_tensor_layouts_and_dtypes() -> None:
    box = letterbox_params((48, 64), (32, 32))
    batch = torch.rand(2, 3, 48, 64)
    out = apply_letterbox(batch, box)
    assert out.shape == (2, 3, 32, 32) and out.dtype == torch.float32
    single = apply_letterbox(batch[1], box)
    torch.testing.assert_close(single, out[1])
    as_u8 = apply_letterbox((batch * 255).to(torch.uint8), box)
    assert as_u8.dtype == torch.uint8 and as_u8.shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="letterbox expects"):
        apply_letterbox(torch.rand(3, 10, 10), box)


def test_numpy_matches_tensor_path() -> None:
    box = letterbox_params((50, 70), (64, 64))
    image = np.random.default_rng(2).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    image.setflags(write=False)  # decoded frames may be read-only
    out = apply_letterbox(image, box)
    ref = apply_letterbox(torch.from_numpy(image.copy()).permute(2, 0, 1).float(), box)
    np.testing.assert_array_equal(out, ref.round().clamp(0, 255).byte().permute(1, 2, 0).numpy())


def test_pad_to_multiple() -> None:
    assert pad_to_multiple(480, 640) == (480, 640)
    assert pad_to_multiple(481, 630) == (496, 640)
    assert pad_to_multiple(1, 1, 8) == (8, 8)
    box = padding_box((481, 630))
    assert box.input_hw == (496, 640) and box.scale == 1.0
    image = np.full((481, 630, 3), 9, np.uint8)
    out = apply_letterbox(image, box)
    assert out.shape == (496, 640, 3)
    assert (out[:481, :630] == 9).all() and (out[481:] == 0).all() and (out[:, 630:] == 0).all()
    xy = np.array([[3.0, 4.0]])
    np.testing.assert_array_equal(box.to_image(xy), xy)


def test_map_candidates() -> None:
    box = Letterbox(scale=0.5, pad_x=0, pad_y=16, input_hw=(256, 320), image_hw=(448, 640))
    cand = Candidates(
        xy=np.array([[9.5, 31.5]], np.float32),
        part=np.array([3]),
        score=np.array([0.7], np.float32),
        offsets=np.array([[[0.0, 0.0], [10.0, -4.0]]], np.float32),
    )
    out = map_candidates(cand, box)
    np.testing.assert_allclose(out.xy, [[19.5, 31.5]])  # ((x - pad + 0.5) / s - 0.5)
    np.testing.assert_allclose(out.offsets, [[[0.0, 0.0], [20.0, -8.0]]])
    assert out.xy.dtype == np.float32 and out.offsets.dtype == np.float32
    assert out.part.tolist() == [3] and out.score.tolist() == cand.score.tolist()


def test_rejects_bad_boxes() -> None:
    with pytest.raises(ValueError):
        Letterbox(scale=1.0, pad_x=10, pad_y=0, input_hw=(32, 32), image_hw=(32, 32))
    with pytest.raises(ValueError):
        letterbox_params((0, 10), (32, 32))
    with pytest.raises(ValueError, match="elongated"):
        letterbox_params((1, 100), (32, 32))


@pytest.mark.parametrize(("image_hw", "input_hw"), [*CASES, ((1000, 700), (64, 64))])
def test_ramp_reads_back_its_coordinates(
    image_hw: tuple[int, int], input_hw: tuple[int, int]
) -> None:
    # An image whose value is its own x (or y) coordinate: bilinear resampling reproduces
    # linear functions, so away from the borders each input pixel holds to_image(its position).
    # Catches half-pixel convention errors that the dot's 1-px argmax tolerance would miss.
    box = letterbox_params(image_hw, input_hw)
    h, w = image_hw
    rh, rw = box.resized_hw
    grid = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    ramp = torch.stack([grid[1], grid[0]])  # channels: x, y
    out = apply_letterbox(ramp, box)
    inner = (
        slice(None),
        slice(box.pad_y + 3, box.pad_y + rh - 3),
        slice(box.pad_x + 3, box.pad_x + rw - 3),
    )
    iy, ix = torch.meshgrid(
        torch.arange(input_hw[0], dtype=torch.float64),
        torch.arange(input_hw[1], dtype=torch.float64),
        indexing="ij",
    )
    expected = box.to_image(torch.stack([ix, iy], dim=-1)).permute(2, 0, 1)
    # Exact when upscaling; the anti-aliasing kernel's discretisation costs < 0.02 px.
    torch.testing.assert_close(out[inner], expected[inner], atol=0.02, rtol=0)
