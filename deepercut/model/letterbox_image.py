"""Resizing images into the network input: :func:`apply_letterbox` (torch; the geometry is
:mod:`deepercut.model.letterbox`).

Resizing by a factor ``s`` uses the ``align_corners=False`` convention of
:func:`torch.nn.functional.interpolate`, which :class:`~deepercut.model.letterbox.Letterbox`'s
coordinate maps assume.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from deepercut.model.letterbox import Letterbox

ImageT = TypeVar("ImageT", np.ndarray, torch.Tensor)


def apply_letterbox(image: ImageT, box: Letterbox, fill: float = 0.0) -> ImageT:
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
