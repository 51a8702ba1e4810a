"""Location refinement: at a positive cell, the offset from the cell centre to its joint,
divided by :data:`LOCREF_STD` so the regression target is of order 1."""

from __future__ import annotations

from torch import Tensor

#: pose-tensorflow's locref normalisation (pixels at stride 8); DeepLabCut 3's default too.
LOCREF_STD = 7.2801


def encode_locref(offsets: Tensor, std: float = LOCREF_STD) -> Tensor:
    """The training target of ``offsets`` (pixels, any shape)."""
    return offsets / std


def decode_locref(raw: Tensor, std: float = LOCREF_STD) -> Tensor:
    """The network's locref maps [B, 2P, h, w] as float32 offsets [B, P, 2, h, w] in pixels."""
    b, c, h, w = raw.shape
    return raw.float().view(b, c // 2, 2, h, w) * std
