"""Training targets of the DeeperCut heads, computed on the fly from keypoints (vectorised).

Per image and part: a cell is positive when a visible joint of that part lies within the
positive radius of the cell centre (the paper's 17 px at its 340-px person scale, scaled to each
person's height, never below ``min_radius`` so every joint owns at least its nearest cell).
Cells near joints that are annotated but occluded are ignored (weight 0) rather than negative.
At positive cells the locref target encodes joint − cell centre, and the pairwise target for every
other part q of the same person joint_q − joint_p (both: :mod:`deepercut.model.codecs`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from deepercut.model.candidates import cell_centers
from deepercut.model.codecs import encode_locref, encode_offsets, other_parts

#: The paper's positive radius (pixels) at its person height of 340 pixels.
PAPER_POS_RADIUS = 17.0
PAPER_PERSON_HEIGHT = 340.0


@dataclass
class Targets:
    """Batched targets, all on one device.

    scmap [B,P,h,w] in {0,1}; scmap_weight [B,P,h,w] (0 = ignore); locref [B,P,2,h,w];
    pairwise [B,P,P−1,2,h,w] (normalised); pairwise_weight [B,P,P−1,h,w] (1 where the other part
    is annotated); positive [B,P,h,w] bool.
    """

    scmap: Tensor
    scmap_weight: Tensor
    locref: Tensor
    locref_weight: Tensor
    pairwise: Tensor
    pairwise_weight: Tensor


def positive_radius(heights: Tensor, min_radius: float) -> Tensor:
    """Per-person positive radius in pixels."""
    return (heights * (PAPER_POS_RADIUS / PAPER_PERSON_HEIGHT)).clamp(min=min_radius)


def make_targets(
    keypoints: list[Tensor],
    visible: list[Tensor],
    annotated: list[Tensor],
    heights: list[Tensor],
    map_hw: tuple[int, int],
    stride: int,
    locref_std: float,
    pairwise_mean: Tensor,
    pairwise_std: Tensor,
    min_radius: float = 6.0,
    loss_masks: list[Tensor | None] | None = None,
) -> Targets:
    """Targets for a batch.

    Args:
        keypoints: per image [M, P, 2] joint positions in input pixels.
        visible: per image [M, P] bool, joint visible (positive).
        annotated: per image [M, P] bool, joint position known (occluded ones are ignored).
        heights: per image [M] person heights in pixels.
        map_hw: output map size (h, w).
        stride: output stride.
        locref_std, pairwise_mean, pairwise_std: normalisation (see ``DetectorConfig``).
        min_radius: smallest positive radius in pixels.
        loss_masks: per image None or bool [h, w]: the cells where the scoremap loss applies
            (elsewhere its weight is 0, except at positives, which always count).
    """
    h, w = map_hw
    device = pairwise_mean.device
    grid = _Grid(
        centers=cell_centers(h, w, stride, device=device),  # [h, w, 2]
        others=other_parts(pairwise_mean.shape[0]).to(device),  # [P, P-1]
        locref_std=locref_std,
        pairwise_mean=pairwise_mean,
        pairwise_std=pairwise_std,
        min_radius=min_radius,
    )
    out: dict[str, list[Tensor]] = {name: [] for name in _TARGET_NAMES}
    masks = loss_masks if loss_masks is not None else [None] * len(keypoints)
    for kp, vis, ann, hgt, mask in zip(keypoints, visible, annotated, heights, masks, strict=True):
        region = torch.ones(h, w, device=device) if mask is None else mask.to(device).float()
        if kp.shape[0] == 0:
            maps = _no_people(grid, region)
        else:
            maps = _people_targets(grid, kp, vis.to(device), ann.to(device), hgt, region)
        for name in _TARGET_NAMES:
            out[name].append(maps[name])
    return Targets(**{k: torch.stack(v) for k, v in out.items()})


_TARGET_NAMES = ("scmap", "scmap_weight", "locref", "locref_weight", "pairwise", "pairwise_weight")


@dataclass(frozen=True)
class _Grid:
    """What every image's targets share: the cell centres, the other-part table, the
    normalisation of the regressions and the smallest positive radius."""

    centers: Tensor
    others: Tensor
    locref_std: float
    pairwise_mean: Tensor
    pairwise_std: Tensor
    min_radius: float


def _no_people(grid: _Grid, region: Tensor) -> dict[str, Tensor]:
    """The targets of an image without people: all negative within the loss region."""
    p, (h, w), device = grid.others.shape[0], grid.centers.shape[:2], region.device
    return {
        "scmap": torch.zeros(p, h, w, device=device),
        "scmap_weight": region.expand(p, h, w).clone(),
        "locref": torch.zeros(p, 2, h, w, device=device),
        "locref_weight": torch.zeros(p, h, w, device=device),
        "pairwise": torch.zeros(p, p - 1, 2, h, w, device=device),
        "pairwise_weight": torch.zeros(p, p - 1, h, w, device=device),
    }


def _people_targets(
    grid: _Grid, kp: Tensor, vis: Tensor, ann: Tensor, hgt: Tensor, region: Tensor
) -> dict[str, Tensor]:
    """The targets of an image with people ``kp`` [M, P, 2] (``vis``, ``ann``: [M, P])."""
    p, (h, w), device = grid.others.shape[0], grid.centers.shape[:2], region.device
    kp = kp.to(device, torch.float32)
    radius = positive_radius(hgt.to(device, torch.float32), grid.min_radius)  # [M]
    # [M, P, h, w, 2] vectors from cell centres to joints
    delta = kp[:, :, None, None, :] - grid.centers[None, None]
    dist = delta.norm(dim=-1)
    within = dist <= radius[:, None, None, None]
    vis_d, ann_d = vis[:, :, None, None], ann[:, :, None, None]
    pos_m = within & vis_d  # [M, P, h, w]
    ignore = (within & ann_d & ~vis_d).any(0)
    positive = pos_m.any(0)  # [P, h, w]
    # The nearest positive person owns a cell (overlapping people of the same part).
    owner_dist = torch.where(pos_m, dist, torch.full_like(dist, float("inf")))
    owner = owner_dist.argmin(0)  # [P, h, w]
    own_delta = torch.gather(delta, 0, owner[None, :, :, :, None].expand(1, p, h, w, 2)).squeeze(
        0
    )  # [P, h, w, 2]
    # Pairwise: vector from joint p to joint q of the owning person.
    others = grid.others
    vec = kp[:, others, :] - kp[:, :, None, :]  # [M, P, P-1, 2]
    vec_ann = ann[:, others] & ann[:, :, None]  # [M, P, P-1]
    cells = (owner.view(-1), torch.arange(p, device=device).repeat_interleave(h * w))
    own_vec = vec[cells].view(p, h, w, p - 1, 2).permute(0, 3, 4, 1, 2)  # [P, P-1, 2, h, w]
    own_ann = vec_ann[cells].view(p, h, w, p - 1).permute(0, 3, 1, 2)  # [P, P-1, h, w]
    return {
        "scmap": positive.float(),
        "scmap_weight": (~(ignore & ~positive)).float() * torch.maximum(region, positive.float()),
        "locref": encode_locref(own_delta.permute(0, 3, 1, 2), grid.locref_std),
        "locref_weight": positive.float(),
        "pairwise": encode_offsets(own_vec, grid.pairwise_mean, grid.pairwise_std),
        "pairwise_weight": (own_ann & positive[:, None]).float(),
    }
