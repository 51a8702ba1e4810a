"""Images in, candidates out: letterbox, batch, run the network, extract candidates on-device."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from deepercut.model.candidates import CandidateParams, extract_candidate_tensors
from deepercut.model.io import Model
from deepercut.model.letterbox import Letterbox, apply_letterbox, letterbox_params, map_candidates
from deepercut.model.net import STRIDE, DetectorOutput
from deepercut.types import Candidates

#: Anything that maps a float image batch [B, 3, H, W] to :class:`DetectorOutput` (the eager
#: network, or a compiled/TensorRT version of it).
Forward = Callable[[Tensor], DetectorOutput]


class Predictor:
    """Runs a :class:`Model` on batches of RGB images of any size.

    Args:
        model: the loaded detector.
        input_hw: network input size (multiples of 16); default: the model's ``input_hw``.
        params: candidate extraction settings.
        device: where the network runs.
        forward: an optimised forward function (default: the eager network).
    """

    def __init__(
        self,
        model: Model,
        input_hw: tuple[int, int] | None = None,
        params: CandidateParams | None = None,
        device: str | torch.device = "cpu",
        forward: Forward | None = None,
    ) -> None:
        self.model = model
        self.input_hw = tuple(input_hw or model.input_hw)
        if self.input_hw[0] % 16 or self.input_hw[1] % 16:
            raise ValueError(f"input size must be a multiple of 16, got {self.input_hw}")
        self.params = params or CandidateParams()
        self.device = torch.device(device)
        self.net = model.net.to(self.device).eval()
        self.forward = forward or self.net

    def preprocess(self, images: Sequence[np.ndarray]) -> tuple[Tensor, list[Letterbox]]:
        """Letterbox uint8 H×W×3 RGB images into one float batch on the device."""
        boxes, batch = [], []
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(
                    f"expected uint8 H×W×3 RGB images, got {image.dtype} {image.shape}"
                )
            box = letterbox_params(image.shape[:2], self.input_hw)
            tensor = torch.from_numpy(image).to(self.device).permute(2, 0, 1).float().div_(255)
            batch.append(apply_letterbox(tensor[None], box)[0])
            boxes.append(box)
        return torch.stack(batch), boxes

    @torch.inference_mode()
    def __call__(self, images: Sequence[np.ndarray]) -> list[Candidates]:
        """Candidates per image, in original image pixels."""
        if not images:
            return []
        batch, boxes = self.preprocess(images)
        maps = self.net.decode(self.forward(batch))
        found = extract_candidate_tensors(
            maps.probs, maps.locref, maps.pairwise, STRIDE, self.params
        ).to_candidates()
        return [map_candidates(c, box) for c, box in zip(found, boxes, strict=True)]
