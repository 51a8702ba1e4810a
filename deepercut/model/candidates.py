"""Body-part candidates from the detector's maps: refine, suppress, cap, split, read offsets.

Map conventions (shared with the network and the training targets): maps have stride ``s``
over an ``H×W`` input; cell ``(i, j)`` is centred on input pixel ``(j·s + s/2, i·s + s/2)``
(:func:`cell_centers`). ``locref`` holds ``(dx, dy)`` in input pixels from the cell centre to
the part, ``pairwise[p, q]`` the vector from part ``p`` at that cell to part ``q``.

Everything runs batched on the maps' device; the only host synchronisations are one per
fixed-point iteration of the non-maximum suppression (a handful) and the final copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from deepercut.types import Candidates


@dataclass(frozen=True)
class CandidateParams:
    """Settings of :func:`extract_candidates`.

    Attributes:
        min_score: smallest probability a cell needs to become a candidate (the
            pose-tensorflow / DeepCut default, 0.2).
        max_per_part: most candidates kept per part and image (highest scores).
        nms_radius: suppression radius in input pixels between *refined* positions of the same
            part. The paper uses 24 px (twice the unrefined radius) for people rescaled to about
            340 px; our frames hold people of 60–340 px at native scale, so the default is
            smaller to keep nearby small people apart.
        split_threshold: probability above which a location keeps candidates for several parts
            (the multi-part split); see :func:`extract_candidates`.
        split_radius: cell-centre distance (input pixels) under which candidates of different
            parts count as the same location; ``None`` = one stride (the same cell or one of its
            four neighbours).
        top_k: cells per part considered for suppression (the highest-scoring ones). Greedy
            NMS decides each cell from higher-scoring ones only, so the result equals NMS over
            all cells whenever the top ``top_k`` cells already hold ``max_per_part`` survivors;
            otherwise weaker peaks beyond them are missed.
    """

    min_score: float = 0.2
    max_per_part: int = 20
    nms_radius: float = 16.0
    split_threshold: float = 0.4
    split_radius: float | None = None
    top_k: int = 128

    def __post_init__(self) -> None:
        if self.max_per_part < 1 or self.top_k < self.max_per_part:
            raise ValueError(
                f"need 1 <= max_per_part <= top_k, got {self.max_per_part} and {self.top_k}"
            )
        if self.nms_radius < 0 or (self.split_radius is not None and self.split_radius < 0):
            raise ValueError("radii must be non-negative")


@dataclass
class CandidateTensors:
    """Candidates of a batch as padded device tensors, ``K`` slots per image.

    Slots are grouped by part (``max_per_part`` slots each, in part order) and sorted by
    descending score within a part; ``valid`` marks the slots that hold a candidate (invalid
    slots have zero score, position and offsets).

    Attributes:
        xy: float32 [B, K, 2] refined positions in input pixels.
        part: int64 [B, K] part of each slot.
        score: float32 [B, K] probability.
        offsets: float32 [B, K, P, 2] regressed vectors to every part (own part zero).
        valid: bool [B, K].
    """

    xy: Tensor
    part: Tensor
    score: Tensor
    offsets: Tensor
    valid: Tensor

    def to_candidates(self) -> list[Candidates]:
        """One numpy :class:`Candidates` per image, moved to the host in a single copy."""
        b, k, p, _ = self.offsets.shape
        packed = torch.cat(
            [
                self.xy,
                self.part.to(torch.float32)[..., None],  # exact: part indices < 2**24
                self.score[..., None],
                self.valid.to(torch.float32)[..., None],
                self.offsets.reshape(b, k, 2 * p),
            ],
            dim=-1,
        )
        host = packed.cpu().numpy()
        out = []
        for item in host:
            rows = item[item[:, 4] > 0.5]
            out.append(
                Candidates(
                    xy=np.ascontiguousarray(rows[:, 0:2]),
                    part=rows[:, 2].astype(np.int64),
                    score=np.ascontiguousarray(rows[:, 3]),
                    offsets=np.ascontiguousarray(rows[:, 5:].reshape(-1, p, 2)),
                )
            )
        return out


def cell_centers(
    h: int,
    w: int,
    stride: int,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Input-pixel centres ``(x, y)`` of an ``h×w`` map's cells: [h, w, 2].

    Cell ``(i, j)`` is centred on ``(j·stride + stride/2, i·stride + stride/2)``.
    """
    ys = torch.arange(h, device=device, dtype=dtype) * stride + stride / 2
    xs = torch.arange(w, device=device, dtype=dtype) * stride + stride / 2
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)


def _centre_of(cell: Tensor, w: int, stride: int) -> Tensor:
    """Centres (x, y) [..., 2] of flat cell indices ``i·w + j`` (same formula as cell_centers)."""
    i = torch.div(cell, w, rounding_mode="floor")
    j = cell - i * w
    return torch.stack([j, i], dim=-1).to(torch.float32) * stride + stride / 2


def _gather_cells(maps: Tensor, cell: Tensor) -> Tensor:
    """``maps`` [B, P, C, h·w] read at ``cell`` [B, P, K]: [B, P, C, K]."""
    b, p, c, _ = maps.shape
    return maps.gather(-1, cell[:, :, None, :].expand(b, p, c, cell.shape[-1]))


def _sq_dist(xy: Tensor) -> Tensor:
    """Squared distances [..., n, n] between points [..., n, 2]."""
    x, y = xy[..., 0].contiguous(), xy[..., 1].contiguous()  # contiguous: faster broadcasting
    dx = x[..., :, None] - x[..., None, :]
    dy = y[..., :, None] - y[..., None, :]
    return dx.square_().add_(dy.square_())


def _greedy_keep(conflict: Tensor, valid: Tensor) -> Tensor:
    """Greedy suppression in list order, as a fixed point batched over leading dims.

    ``conflict[..., i, j]``: ``j`` would suppress ``i`` if ``j`` came first; only ``j < i``
    counts. Sequential greedy keeps ``i`` iff ``valid[i]`` and no *kept* ``j < i`` conflicts
    with it. The relation is acyclic, so that equation has one solution, and Jacobi iteration
    from "all valid kept" reaches it after at most (longest suppression chain + 1) steps: each
    step settles the candidates one level deeper in the chains.
    """
    # Strictly lower triangle: only earlier candidates suppress. Each step counts the kept
    # suppressors as a float multiply-and-sum (exact for 0/1 terms; several times faster on
    # CPU than a bool and-any or a batched matrix-vector product).
    suppresses = conflict.tril_(-1).to(torch.float32)
    keep = valid
    for _ in range(suppresses.shape[-1] + 1):
        new = valid & (suppresses * keep.to(torch.float32)[..., None, :]).sum(-1).eq(0)
        if torch.equal(new, keep):
            break
        keep = new
    return keep


def extract_candidate_tensors(
    probs: Tensor,
    locref: Tensor,
    pairwise: Tensor | None,
    stride: int = 8,
    params: CandidateParams = CandidateParams(),
) -> CandidateTensors:
    """Candidates of a batch as padded tensors on the maps' device.

    See :func:`extract_candidates` for the steps and the argument shapes.
    """
    if probs.ndim != 4:
        raise ValueError(f"probs must be [B, P, h, w], got {tuple(probs.shape)}")
    b, p, h, w = probs.shape
    if locref.shape != (b, p, 2, h, w):
        raise ValueError(f"locref must be {(b, p, 2, h, w)}, got {tuple(locref.shape)}")
    if pairwise is not None and pairwise.shape != (b, p, p, 2, h, w):
        raise ValueError(f"pairwise must be {(b, p, p, 2, h, w)}, got {tuple(pairwise.shape)}")
    k = min(params.top_k, h * w)
    score, cell, valid = _ranked_cells(probs, locref, pairwise, k, params.min_score)
    # Location refinement before NMS: suppression compares refined positions.
    refine = _gather_cells(locref.reshape(b, p, 2, h * w).float(), cell)
    xy = _centre_of(cell, w, stride) + refine.transpose(-1, -2)  # [B, P, k, 2]
    # Per-part greedy NMS: a higher-scoring candidate within nms_radius suppresses.
    keep = _greedy_keep(_sq_dist(xy) <= params.nms_radius**2, valid)
    # Cap: the first `cap` survivors in score order. A stable sort of ~keep moves them, still
    # in score order, to the front.
    cap = min(params.max_per_part, k)
    order = (~keep).to(torch.uint8).sort(dim=-1, stable=True).indices[..., :cap]
    keep = keep.gather(-1, order)
    cell = cell.gather(-1, order)
    score = score.gather(-1, order)
    xy = xy.gather(-2, order[..., None].expand(b, p, cap, 2))
    keep = _split_multi_part(cell, score, keep, w, stride, params)  # [B, P·cap]
    n = p * cap
    if pairwise is None:
        offsets = xy.new_zeros(b, n, p, 2)
    else:
        off = _gather_cells(pairwise.reshape(b, p, 2 * p, h * w).float(), cell)
        off = off.reshape(b, p, p, 2, cap).permute(0, 1, 4, 2, 3)  # [B, P, cap, P, 2]
        own = torch.eye(p, dtype=torch.bool, device=probs.device)[None, :, None, :, None]
        offsets = off.masked_fill(own, 0.0).reshape(b, n, p, 2)
    offsets = offsets.masked_fill(~keep[..., None, None], 0.0)
    return CandidateTensors(
        xy=xy.reshape(b, n, 2).masked_fill(~keep[..., None], 0.0),
        part=torch.arange(p, device=probs.device)[None, :, None].expand(b, p, cap).reshape(b, n),
        score=score.reshape(b, n).masked_fill(~keep, 0.0),
        offsets=offsets,
        valid=keep,
    )


def _ranked_cells(
    probs: Tensor, locref: Tensor, pairwise: Tensor | None, k: int, min_score: float
) -> tuple[Tensor, Tensor, Tensor]:
    """The ``k`` best cells of each part map: their scores, cell indices and validity
    [B, P, k], ordered by (score desc, cell index asc)."""
    b, p, h, w = probs.shape
    n_cells = h * w
    # A cell with any non-finite output (a broken model, an fp16 overflow) is no candidate: it
    # is ranked below every finite cell and never valid, so one bad frame costs its detections
    # and not the stream. Checked on the device, without a host synchronisation.
    flat = probs.reshape(b, p, n_cells).float()
    finite = flat.isfinite() & locref.reshape(b, p, 2, n_cells).isfinite().all(dim=2)
    if pairwise is not None:
        finite &= pairwise.reshape(b, p, 2 * p, n_cells).isfinite().all(dim=2)
    flat = flat.masked_fill(~finite, -1.0)
    # Ties break the same way on every device: sort the top-k by cell, then stable-sort by
    # score.
    score, cell = torch.topk(flat, k, dim=-1)
    cell, order = cell.sort(dim=-1)
    score = score.gather(-1, order)
    score, order = score.sort(dim=-1, descending=True, stable=True)
    cell = cell.gather(-1, order)
    return score, cell, (score >= min_score) & finite.gather(-1, cell)


def _split_multi_part(
    cell: Tensor, score: Tensor, keep: Tensor, w: int, stride: int, params: CandidateParams
) -> Tensor:
    """Multi-part split across parts, greedy in descending score over the image's
    candidates: which of the [B, P, cap] candidates survive, flattened to [B, P·cap]."""
    b, p, cap = cell.shape
    n = p * cap
    part = torch.arange(p, device=cell.device)[None, :, None].expand(b, p, cap).reshape(b, n)
    flat_score = score.reshape(b, n)
    by_score = flat_score.sort(dim=-1, descending=True, stable=True).indices
    s_part = part.gather(-1, by_score)
    s_score = flat_score.gather(-1, by_score)
    s_centre = _centre_of(cell.reshape(b, n).gather(-1, by_score), w, stride)
    split_radius = stride if params.split_radius is None else params.split_radius
    # A stronger candidate j suppresses i at the same location unless both exceed the
    # threshold; as score[j] >= score[i], that is unless score[i] > split_threshold.
    conflict = (
        (_sq_dist(s_centre) <= split_radius**2)
        & (s_part[..., :, None] != s_part[..., None, :])
        & (s_score <= params.split_threshold)[..., :, None]
    )
    s_keep = _greedy_keep(conflict, keep.reshape(b, n).gather(-1, by_score))
    return torch.empty_like(s_keep).scatter_(-1, by_score, s_keep)


def extract_candidates(
    probs: Tensor,
    locref: Tensor,
    pairwise: Tensor | None,
    stride: int = 8,
    params: CandidateParams = CandidateParams(),
) -> list[Candidates]:
    """Body-part candidates of each image of a batch, in input pixels.

    Steps, all batched on the maps' device:

    1. Refine: part ``p`` at cell ``c`` sits at ``cell_centre(c) + locref[p, :, c]``.
    2. Per part, the ``top_k`` cells with probability ``>= min_score`` go through greedy NMS on
       their refined positions: a cell is kept iff no kept, higher-scoring cell of the same
       part lies within ``nms_radius`` (distance ``<=``); ties in score keep the lower flat
       cell index first.
    3. At most ``max_per_part`` survivors per part (the highest scores).
    4. Multi-part split (DeepCut/DeeperCut): one location can hold several parts. Candidates of
       different parts whose cell centres are within ``split_radius`` are the same location;
       both are kept only if each has probability ``> split_threshold``, otherwise only the
       stronger one survives. Applied greedily in descending score (a candidate dropped this
       way drops nothing else). So probabilities 0.9 (part A) and 0.5 (part B) at one location
       give two candidates, each at its own refined position; 0.9 and 0.3 give only A.
    5. Offsets: ``pairwise[b, p, :, :, i, j]`` at the candidate's cell (zeros when ``pairwise``
       is ``None``); the own-part entry is zero.

    Non-finite outputs (NaN or ±inf, e.g. from a corrupt checkpoint or an fp16 overflow) are
    dropped, not raised: a cell whose probability, refinement or any pairwise vector of its part
    is non-finite never becomes a candidate (as if its probability were below ``min_score``), so
    every returned value is finite and a damaged frame yields fewer (or no) candidates.

    Args:
        probs: [B, P, h, w] part probabilities (after the sigmoid).
        locref: [B, P, 2, h, w] refinement vectors (dx, dy) in input pixels.
        pairwise: [B, P, P, 2, h, w] vectors in input pixels from part p to part q, or ``None``.
        stride: input pixels per map cell.
        params: thresholds, radii and caps.

    Returns:
        One :class:`Candidates` per image (input-pixel coordinates), sorted by part and then by
        descending score.
    """
    return extract_candidate_tensors(probs, locref, pairwise, stride, params).to_candidates()


def best_per_part(probs: Tensor, locref: Tensor, stride: int = 8) -> Tensor:
    """Refined position and probability of each part's best cell (single-person use).

    Args:
        probs: [B, P, h, w] probabilities.
        locref: [B, P, 2, h, w] refinement vectors in input pixels.
        stride: input pixels per map cell.

    Returns:
        [B, P, 3] float32 ``(x, y, prob)`` in input pixels.
    """
    b, p, h, w = probs.shape
    score, cell = probs.reshape(b, p, h * w).float().max(dim=-1)
    refine = _gather_cells(locref.reshape(b, p, 2, h * w).float(), cell[..., None])[..., 0]
    xy = _centre_of(cell, w, stride) + refine
    return torch.cat([xy, score[..., None]], dim=-1)
