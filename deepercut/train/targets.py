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
    p = pairwise_mean.shape[0]
    device = pairwise_mean.device
    centers = cell_centers(h, w, stride, device=device)  # [h, w, 2]
    others = other_parts(p).to(device)  # [P, P-1]
    out = {
        "scmap": [],
        "scmap_weight": [],
        "locref": [],
        "locref_weight": [],
        "pairwise": [],
        "pairwise_weight": [],
    }
    masks = loss_masks if loss_masks is not None else [None] * len(keypoints)
    for kp, vis, ann, hgt, mask in zip(keypoints, visible, annotated, heights, masks, strict=True):
        m = kp.shape[0]
        region = torch.ones(h, w, device=device) if mask is None else mask.to(device).float()
        if m == 0:
            out["scmap"].append(torch.zeros(p, h, w, device=device))
            out["scmap_weight"].append(region.expand(p, h, w).clone())
            out["locref"].append(torch.zeros(p, 2, h, w, device=device))
            out["locref_weight"].append(torch.zeros(p, h, w, device=device))
            out["pairwise"].append(torch.zeros(p, p - 1, 2, h, w, device=device))
            out["pairwise_weight"].append(torch.zeros(p, p - 1, h, w, device=device))
            continue
        kp = kp.to(device, torch.float32)
        radius = positive_radius(hgt.to(device, torch.float32), min_radius)  # [M]
        # [M, P, h, w, 2] vectors from cell centres to joints
        delta = kp[:, :, None, None, :] - centers[None, None]
        dist = delta.norm(dim=-1)
        within = dist <= radius[:, None, None, None]
        vis_d = vis.to(device)[:, :, None, None]
        ann_d = ann.to(device)[:, :, None, None]
        pos_m = within & vis_d  # [M, P, h, w]
        ignore = (within & ann_d & ~vis_d).any(0)
        positive = pos_m.any(0)  # [P, h, w]
        # The nearest positive person owns a cell (overlapping people of the same part).
        owner_dist = torch.where(pos_m, dist, torch.full_like(dist, float("inf")))
        owner = owner_dist.argmin(0)  # [P, h, w]
        own_delta = torch.gather(
            delta, 0, owner[None, :, :, :, None].expand(1, p, h, w, 2)
        ).squeeze(0)  # [P, h, w, 2]
        out["scmap"].append(positive.float())
        weight = (~(ignore & ~positive)).float() * torch.maximum(region, positive.float())
        out["scmap_weight"].append(weight)
        out["locref"].append(encode_locref(own_delta.permute(0, 3, 1, 2), locref_std))
        out["locref_weight"].append(positive.float())
        # Pairwise: vector from joint p to joint q of the owning person.
        vec = kp[:, others, :] - kp[:, :, None, :]  # [M, P, P-1, 2]
        vec_ann = ann.to(device)[:, others] & ann.to(device)[:, :, None]  # [M, P, P-1]
        own_vec = vec[owner.view(-1), torch.arange(p, device=device).repeat_interleave(h * w)]
        own_vec = own_vec.view(p, h, w, p - 1, 2).permute(0, 3, 4, 1, 2)  # [P, P-1, 2, h, w]
        own_ann = vec_ann[owner.view(-1), torch.arange(p, device=device).repeat_interleave(h * w)]
        own_ann = own_ann.view(p, h, w, p - 1).permute(0, 3, 1, 2)  # [P, P-1, h, w]
        out["pairwise"].append(encode_offsets(own_vec, pairwise_mean, pairwise_std))
        out["pairwise_weight"].append((own_ann & positive[:, None]).float())
    return Targets(**{k: torch.stack(v) for k, v in out.items()})
