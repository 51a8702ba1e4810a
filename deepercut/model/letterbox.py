"""Fitting images into the network's fixed input size, and mapping results back: the
geometry, in NumPy (no torch, so the overlay renderer needs none); resizing the images
themselves is :func:`deepercut.model.letterbox_image.apply_letterbox`.

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

from deepercut.types import Candidates

#: Coordinates: NumPy arrays, or torch tensors (mapped with their own methods, so that this
#: module imports no torch, not even for type checking).
ArrayT = TypeVar("ArrayT")


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
        if _is_tensor(v):
            return v / self.scale
        return (np.asarray(v, np.float64) / self.scale).astype(_float_dtype(v))


def _float_dtype(a: np.ndarray) -> np.dtype:
    return a.dtype if np.issubdtype(a.dtype, np.floating) else np.dtype(np.float64)


def _is_tensor(a: object) -> bool:
    """Whether ``a`` is a torch tensor (told without importing torch)."""
    return type(a).__module__.startswith("torch")


def _affine(xy: ArrayT, scale: float, pad: tuple[int, int], inverse: bool) -> ArrayT:
    if _is_tensor(xy):
        work = xy.double()
        offset = work.new_tensor(pad)
        dtype = xy.dtype if xy.is_floating_point() else work.dtype
    else:
        work = np.asarray(xy, np.float64)
        offset = np.asarray(pad, np.float64)
        dtype = _float_dtype(xy)
    # float64 inside so the round trip is exact to ~1e-12 px before the final cast.
    out = (work - offset + 0.5) / scale - 0.5 if inverse else (work + 0.5) * scale - 0.5 + offset
    return out.to(dtype) if _is_tensor(out) else out.astype(dtype)


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


def map_candidates(candidates: Candidates, box: Letterbox) -> Candidates:
    """Candidates in network-input pixels → original-image pixels."""
    return Candidates(
        xy=box.to_image(candidates.xy.astype(np.float32)),
        part=candidates.part,
        score=candidates.score,
        offsets=box.scale_vectors(candidates.offsets.astype(np.float32)),
    )
