"""Pairwise offsets: at a cell of part p, the vector to each other part q of the same person,
standardised with the (p, q) mean and std of such vectors (:func:`offset_statistics`).

Maps hold the P − 1 *other* parts per part (:func:`other_parts`); decoding expands them to all
P with zeros for q = p (:func:`expand_pairwise`).
"""

from __future__ import annotations

import torch
from torch import Tensor


def other_parts(num_parts: int) -> Tensor:
    """[P, P−1] index of the q-th *other* part of part p (own part skipped)."""
    idx = torch.arange(num_parts)
    return torch.stack([torch.cat([idx[:p], idx[p + 1 :]]) for p in range(num_parts)])


def expand_pairwise(pw: Tensor) -> Tensor:
    """[B, P, P−1, 2, h, w] (own part skipped) → [B, P, P, 2, h, w] with zeros for q = p."""
    b, p, _, _, h, w = pw.shape
    full = pw.new_zeros(b, p, p, 2, h, w)
    index = other_parts(p).to(pw.device).view(1, p, p - 1, 1, 1, 1).expand_as(pw)
    return full.scatter_(2, index, pw)


def encode_offsets(vectors: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """The training target of offsets [P, P−1, 2, h, w] (pixels), with ``mean`` and ``std``
    [P, P−1, 2]."""
    return (vectors - mean[..., None, None]) / std[..., None, None]


def decode_offsets(raw: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """The network's pairwise maps [B, P·(P−1)·2, h, w] as float32 offsets [B, P, P, 2, h, w]
    in pixels (zero for q = p)."""
    b, _, h, w = raw.shape
    p = mean.shape[0]
    pw = raw.float().view(b, p, p - 1, 2, h, w)
    pw = pw * std.view(1, p, p - 1, 2, 1, 1)
    pw = pw + mean.view(1, p, p - 1, 2, 1, 1)
    return expand_pairwise(pw)


def offset_statistics(
    keypoints: list[Tensor], annotated: list[Tensor], num_parts: int
) -> tuple[Tensor, Tensor]:
    """Mean and std [P, P−1, 2] of joint-to-joint vectors over a sample of people (std at least
    one pixel).

    Args:
        keypoints: per image [M, P, 2] joint positions.
        annotated: per image [M, P] bool, joint position known.
        num_parts: P.
    """
    others = other_parts(num_parts)
    vecs, masks = [], []
    for kp, ann in zip(keypoints, annotated, strict=True):
        if len(kp):
            vecs.append(kp[:, others, :] - kp[:, :, None, :])
            masks.append(ann[:, others] & ann[:, :, None])
    if not vecs:
        raise ValueError("no annotated people to compute pairwise statistics from")
    vec = torch.cat(vecs).float()  # [N, P, P-1, 2]
    mask = torch.cat(masks).float()[..., None]
    count = mask.sum(0).clamp(min=1)
    mean = (vec * mask).sum(0) / count
    var = ((vec - mean) ** 2 * mask).sum(0) / count
    return mean, var.sqrt().clamp(min=1.0)
