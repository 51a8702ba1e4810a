"""Geometric augmentation of (image, keypoints): scale/rotation jitter and left/right flips.

One affine warp per sample (``torch.nn.functional.grid_sample``), so image and keypoints move
together exactly; a flip also permutes part channels with the skeleton's flip pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentParams:
    """Jitter ranges. ``scale`` multiplies the image (and person heights)."""

    scale: tuple[float, float] = (0.85, 1.15)
    rotation_deg: float = 15.0
    flip_prob: float = 0.5


@dataclass
class PoseSample:
    """One training image with its people, in the common form every data source produces.

    image: uint8 [H, W, 3]; keypoints float32 [M, P, 2]; visible bool [M, P] (a positive);
    annotated bool [M, P] (position known; occluded joints are annotated, not visible);
    heights float32 [M] person heights in pixels; loss_mask bool [H, W] or None: where the
    scoremap loss applies (None: everywhere). Datasets that label only some of the people in
    an image (LSP: one per image) mask the rest of the scene, so that unlabelled bystanders are
    not taught as background.
    """

    image: np.ndarray
    keypoints: np.ndarray
    visible: np.ndarray
    annotated: np.ndarray
    heights: np.ndarray
    loss_mask: np.ndarray | None = None


def augment(
    sample: PoseSample,
    rng: np.random.Generator,
    params: AugmentParams,
    flip_permutation: list[int],
    out_hw: tuple[int, int] | None = None,
) -> PoseSample:
    """Warp a sample: the image and its annotations, moved together.

    The output has size ``out_hw`` (default: the input size) and is centred on the input's
    centre. Joints that leave the frame stay annotated but stop being visible.
    """
    h, w = sample.image.shape[:2]
    oh, ow = out_hw or (h, w)
    s = rng.uniform(*params.scale)
    angle = math.radians(rng.uniform(-params.rotation_deg, params.rotation_deg))
    flip = rng.random() < params.flip_prob
    # Forward map (input px → output px): x' = A (x − c_in) + c_out, A = s·R·(flip).
    cos, sin = math.cos(angle), math.sin(angle)
    a = s * np.array([[cos, -sin], [sin, cos]])
    if flip:
        a = a @ np.array([[-1.0, 0.0], [0.0, 1.0]])
    c_in = np.array([(w - 1) / 2, (h - 1) / 2])
    c_out = np.array([(ow - 1) / 2, (oh - 1) / 2])

    kp_out, visible, annotated = _moved_joints(sample, a, c_in, c_out)
    if flip:
        kp_out = kp_out[:, flip_permutation]
        visible = visible[:, flip_permutation]
        annotated = annotated[:, flip_permutation]
    inside = (
        (kp_out[..., 0] >= 0) & (kp_out[..., 0] <= ow - 1)
        & (kp_out[..., 1] >= 0) & (kp_out[..., 1] <= oh - 1)
    )  # fmt: skip
    visible &= inside
    grid = _sampling_grid(a, (h, w), (oh, ow))
    image = torch.from_numpy(sample.image).permute(2, 0, 1).float()[None]
    warped = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    mask = None
    if sample.loss_mask is not None:
        # Nearest sampling; outside the input the mask is 0 (no loss there).
        m = torch.from_numpy(sample.loss_mask.astype(np.float32))[None, None]
        mask = F.grid_sample(m, grid, mode="nearest", padding_mode="zeros", align_corners=True)
        mask = mask[0, 0].numpy() > 0.5
    return PoseSample(
        image=warped[0].round_().byte().permute(1, 2, 0).numpy(),
        keypoints=kp_out,
        visible=visible,
        annotated=annotated,
        heights=sample.heights * np.float32(s),
        loss_mask=mask,
    )


def _moved_joints(
    sample: PoseSample, a: np.ndarray, c_in: np.ndarray, c_out: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sample's joints under ``x' = a (x − c_in) + c_out``, with copies of its visible and
    annotated flags."""
    kp = sample.keypoints.reshape(-1, 2).astype(np.float64)
    kp_out = ((kp - c_in) @ a.T + c_out).reshape(sample.keypoints.shape).astype(np.float32)
    return kp_out, sample.visible.copy(), sample.annotated.copy()


def _sampling_grid(a: np.ndarray, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> torch.Tensor:
    """``grid_sample``'s grid of the warp ``a`` about the centres: output pixel → input pixel by
    the inverse map, in normalised coordinates (align_corners=True: -1 and 1 are the border
    pixel centres)."""
    (h, w), (oh, ow) = in_hw, out_hw
    inv = np.linalg.inv(a)
    to_norm_in = np.diag([2 / max(w - 1, 1), 2 / max(h - 1, 1)])
    from_norm_out = np.diag([(ow - 1) / 2, (oh - 1) / 2])
    theta = np.zeros((2, 3))  # both centres map to normalised 0, so no translation term
    theta[:, :2] = to_norm_in @ inv @ from_norm_out
    return F.affine_grid(torch.from_numpy(theta).float()[None], [1, 3, oh, ow], align_corners=True)
