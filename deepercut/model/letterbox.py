"""Fitting images into the network's fixed input size, and mapping results back.

Coordinates are continuous with pixel centres at integers (pixel ``(0, 0)`` spans
``[-0.5, 0.5]²``). Resizing by a factor ``s`` maps ``x → (x + 0.5)·s − 0.5`` (the
``align_corners=False`` convention of :func:`torch.nn.functional.interpolate`), and the resized
image sits at integer offsets ``(pad_x, pad_y)`` inside the input, so
``x_input = (x + 0.5)·s − 0.5 + pad_x``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from deepercut.types import Candidates

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class Letterbox:
    """An image resized by ``scale`` and placed at ``(pad_x, pad_y)`` in the network input.

    Attributes:
        scale: uniform resize factor (input pixels per image pixel).
        pad_x: columns of padding left of the resized image.
        pad_y: rows of padding above the resized image.
        input_hw: network input (H, W).
        image_hw: original image (H, W).
    """

    scale: float
    pad_x: int
    pad_y: int
    input_hw: tuple[int, int]
    image_hw: tuple[int, int]

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError(f"scale must be positive, got {self.scale}")
        rh, rw = self.resized_hw
        ih, iw = self.input_hw
        if self.pad_x < 0 or self.pad_y < 0 or self.pad_y + rh > ih or self.pad_x + rw > iw:
            raise ValueError(
                f"resized image {rh}×{rw} at {self.pad_x, self.pad_y} exceeds {ih}×{iw}"
            )

    @property
    def resized_hw(self) -> tuple[int, int]:
        """Size of the resized image: what ``interpolate(scale_factor=scale)`` produces."""
        h, w = self.image_hw
        return math.floor(h * self.scale), math.floor(w * self.scale)

    def to_input(self, xy: ArrayT) -> ArrayT:
        """Original-image coordinates [..., 2] (x, y) → network-input coordinates."""
        return _affine(xy, self.scale, (self.pad_x, self.pad_y), inverse=False)

    def to_image(self, xy: ArrayT) -> ArrayT:
        """Network-input coordinates [..., 2] (x, y) → original-image coordinates."""
        return _affine(xy, self.scale, (self.pad_x, self.pad_y), inverse=True)

    def scale_vectors(self, v: ArrayT) -> ArrayT:
        """Displacements (offsets, locref) in input pixels → image pixels."""
        if isinstance(v, torch.Tensor):
            return v / self.scale
        return (np.asarray(v, np.float64) / self.scale).astype(_float_dtype(v))


def _float_dtype(a: np.ndarray) -> np.dtype:
    return a.dtype if np.issubdtype(a.dtype, np.floating) else np.dtype(np.float64)


def _affine(xy: ArrayT, scale: float, pad: tuple[int, int], inverse: bool) -> ArrayT:
    if isinstance(xy, torch.Tensor):
        work = xy.to(torch.float64)
        offset = torch.tensor(pad, dtype=torch.float64, device=xy.device)
        dtype = xy.dtype if xy.is_floating_point() else torch.float64
    else:
        work = np.asarray(xy, np.float64)
        offset = np.asarray(pad, np.float64)
        dtype = _float_dtype(xy)
    # float64 inside so the round trip is exact to ~1e-12 px before the final cast.
    out = (work - offset + 0.5) / scale - 0.5 if inverse else (work + 0.5) * scale - 0.5 + offset
    return out.to(dtype) if isinstance(out, torch.Tensor) else out.astype(dtype)


def letterbox_params(image_hw: tuple[int, int], input_hw: tuple[int, int]) -> Letterbox:
    """The largest uniform resize of ``image_hw`` that fits ``input_hw``, centred.

    Pads are integers (any odd pixel goes to the bottom/right). The scale is nudged up by at
    most a few ulps where rounding would otherwise make ``floor(size·scale)`` one pixel short
    of the input along the fitting axis.
    """
    (h, w), (ih, iw) = image_hw, input_hw
    if min(h, w, ih, iw) <= 0:
        raise ValueError(f"sizes must be positive, got image {image_hw}, input {input_hw}")
    scale = min(ih / h, iw / w)
    for n, target in ((h, ih), (w, iw)):
        if target / n == scale:  # a fitting axis: floor(n·scale) must reach the input size
            while math.floor(n * scale) < target:
                scale = math.nextafter(scale, math.inf)
    rh, rw = math.floor(h * scale), math.floor(w * scale)
    if min(rh, rw) == 0:
        raise ValueError(f"image {image_hw} is too elongated to fit {input_hw}")
    return Letterbox(scale, (iw - rw) // 2, (ih - rh) // 2, (ih, iw), (h, w))


def pad_to_multiple(h: int, w: int, multiple: int = 16) -> tuple[int, int]:
    """The smallest ``(H, W) >= (h, w)`` that are multiples of ``multiple``."""
    return -(-h // multiple) * multiple, -(-w // multiple) * multiple


def padding_box(image_hw: tuple[int, int], multiple: int = 16) -> Letterbox:
    """A :class:`Letterbox` that only pads bottom/right to a multiple (no resizing)."""
    h, w = image_hw
    return Letterbox(1.0, 0, 0, pad_to_multiple(h, w, multiple), (h, w))


def apply_letterbox(image: ArrayT, box: Letterbox, fill: float = 0.0) -> ArrayT:
    """Resize and pad an image (or a batch) into the network input.

    Args:
        image: uint8 numpy [H, W, C] (RGB frame), or a torch tensor [C, H, W] or [B, C, H, W]
            of any dtype on any device.
        box: from :func:`letterbox_params` for this image size.
        fill: value of the padding.

    Returns:
        The same kind, layout and dtype, with spatial size ``box.input_hw``. Resizing is
        bilinear (anti-aliased when shrinking); integer outputs are rounded and clamped.
    """
    if isinstance(image, np.ndarray):
        if image.ndim != 3:
            raise ValueError(f"numpy images must be [H, W, C], got {image.shape}")
        # np.require: torch.from_numpy needs a writable array (decoded frames may not be).
        chw = torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1)
        return np.ascontiguousarray(apply_letterbox(chw, box, fill).permute(1, 2, 0).numpy())
    if image.ndim not in (3, 4):
        raise ValueError(f"tensors must be [C, H, W] or [B, C, H, W], got {tuple(image.shape)}")
    if tuple(image.shape[-2:]) != tuple(box.image_hw):
        raise ValueError(f"image is {tuple(image.shape[-2:])}, letterbox expects {box.image_hw}")
    batch = image if image.ndim == 4 else image[None]
    work = batch if batch.is_floating_point() else batch.to(torch.float32)
    if box.scale != 1.0:
        # scale_factor (not size) so the sampling grid uses exactly box.scale.
        work = F.interpolate(
            work,
            scale_factor=box.scale,
            mode="bilinear",
            align_corners=False,
            antialias=box.scale < 1.0,
            recompute_scale_factor=False,
        )
    rh, rw = box.resized_hw
    if tuple(work.shape[-2:]) != (rh, rw):  # guards the floor() agreement with torch
        raise RuntimeError(f"resize gave {tuple(work.shape[-2:])}, expected {(rh, rw)}")
    ih, iw = box.input_hw
    out = work.new_full((*work.shape[:2], ih, iw), fill)
    out[..., box.pad_y : box.pad_y + rh, box.pad_x : box.pad_x + rw] = work
    if not batch.is_floating_point():
        info = torch.iinfo(batch.dtype)
        out = out.round_().clamp_(info.min, info.max).to(batch.dtype)
    return out if image.ndim == 4 else out[0]


def map_candidates(candidates: Candidates, box: Letterbox) -> Candidates:
    """Candidates in network-input pixels → original-image pixels."""
    return Candidates(
        xy=box.to_image(candidates.xy.astype(np.float32)),
        part=candidates.part,
        score=candidates.score,
        offsets=box.scale_vectors(candidates.offsets.astype(np.float32)),
    )
