"""The DeeperCut body-part detector (Insafutdinov et al., ECCV 2016, section 3).

ResNet trunk with conv5 at stride 1 / dilation 2 (output stride 16), a 2× transposed convolution
to stride 8, a skip connection from conv3 (``layer2``) added before the heads, and an
intermediate supervision head inside conv4 (a scoremap predictor on the output of the
block given by ``intermediate_block``; by default the last conv4 block: 4b22 of ResNet-101,
4f of ResNet-50, 4b35 of ResNet-152). Heads per part: scoremap logits, location refinement
(2 per part) and pairwise regression to every other part (2·P·(P−1) channels, laid out as
[P, P−1, 2] with the own part skipped).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple, TypeVar

import torch
from torch import Tensor, nn

from deepercut.model.codecs import LOCREF_STD, decode_locref, decode_offsets
from deepercut.model.config_limits import check_config_values
from deepercut.model.resnet import ResNet, freeze_batchnorm

STRIDE = 8


ConfigT = TypeVar("ConfigT")


def config_from_dict(cls: type[ConfigT], data: dict[str, Any], what: str) -> ConfigT:
    """``cls(**data)`` for a network config dataclass, refusing keys it does not have (a
    checkpoint from another version or network) and values of the wrong type or out of
    bounds (:mod:`deepercut.model.config_limits`), named as ``what`` in the error."""
    if not isinstance(data, dict):
        raise ValueError(f"{what} config must be a dict, got {type(data).__name__}")
    unknown = set(data) - set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    if unknown:
        raise ValueError(f"unknown {what} config keys {sorted(unknown)}")
    check_config_values(cls, data, what)
    return cls(**data)


@dataclass
class DetectorConfig:
    """Everything needed to rebuild a detector; stored in checkpoints.

    Attributes:
        arch: ResNet depth (``resnet18`` … ``resnet152``).
        num_parts: P.
        width: stem width (64 standard; 32 = half-width variant).
        head_channels: channels of the fused stride-8 features the heads read.
        norm: ``"frozen"`` (paper) or ``"batch"`` (training from scratch).
        intermediate_block: conv4 block index for intermediate supervision (``None`` = last).
        pairwise: whether the pairwise regression head exists.
        locref_std: locref targets are offsets divided by this (pixels).
        pairwise_mean, pairwise_std: per (part, other part) statistics of the pairwise
            vectors in pixels, [P, P−1, 2] nested lists; targets are normalised with them.
    """

    arch: str = "resnet101"
    num_parts: int = 14
    width: int = 64
    head_channels: int = 256
    norm: str = "frozen"
    intermediate_block: int | None = None
    pairwise: bool = True
    locref_std: float = LOCREF_STD
    pairwise_mean: list[Any] | None = field(default=None)
    pairwise_std: list[Any] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorConfig:
        return config_from_dict(cls, data, "detector")


class DetectorOutput(NamedTuple):
    """Raw network outputs (a tuple, so compilers and exporters handle it).

    scmap: [B, P, h, w] logits; locref: [B, 2P, h, w] normalised; pairwise: [B, 2P(P−1), h, w]
    normalised (empty channel dim when disabled); intermediate: [B, P, h/2, w/2] logits.
    """

    scmap: Tensor
    locref: Tensor
    pairwise: Tensor
    intermediate: Tensor


class DecodedMaps(NamedTuple):
    """Maps in input pixels, as candidate extraction consumes them.

    probs: [B, P, h, w]; locref: [B, P, 2, h, w] offsets from cell centres;
    pairwise: [B, P, P, 2, h, w] vectors from part p to part q (zero for q = p) or ``None``.
    """

    probs: Tensor
    locref: Tensor
    pairwise: Tensor | None


class DeeperCut(nn.Module):
    """The detector network. Input: float RGB in [0, 1], [B, 3, H, W] with H, W multiples of 16."""

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__()
        self.config = config
        p = config.num_parts
        self.backbone = ResNet(config.arch, config.width, dilate_last=True, norm=config.norm)
        c3 = self.backbone.channels["layer2"]
        c4 = self.backbone.channels["layer3"]
        c5 = self.backbone.channels["layer4"]
        f = config.head_channels
        n_conv4 = len(self.backbone.layer3)
        self.intermediate_block = (
            n_conv4 - 1 if config.intermediate_block is None else config.intermediate_block
        )
        if not 0 <= self.intermediate_block < n_conv4:
            raise ValueError(f"intermediate_block must be in [0, {n_conv4})")
        self.intermediate_head = nn.Conv2d(c4, p, 1)
        self.upsample = nn.ConvTranspose2d(c5, f, 4, stride=2, padding=1)
        self.skip = nn.Conv2d(c3, f, 1)
        self.relu = nn.ReLU(inplace=True)
        self.scmap_head = nn.Conv2d(f, p, 1)
        self.locref_head = nn.Conv2d(f, 2 * p, 1)
        self.pairwise_head = nn.Conv2d(f, 2 * p * (p - 1), 1) if config.pairwise else None
        # ImageNet normalisation, as the ResNet trunk expects (and torchvision weights assume).
        self.register_buffer("pixel_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        p = config.num_parts
        self.register_buffer("pairwise_mean", pairwise_stat(config.pairwise_mean, p, 0.0))
        self.register_buffer("pairwise_std", pairwise_stat(config.pairwise_std, p, 1.0))
        # Low initial scoremap prior (p≈0.01): most cells are negative (focal-loss init trick).
        nn.init.constant_(self.scmap_head.bias, -4.6)
        nn.init.constant_(self.intermediate_head.bias, -4.6)
        for head in (self.locref_head, self.pairwise_head):
            if head is not None:
                nn.init.normal_(head.weight, std=1e-3)
                nn.init.zeros_(head.bias)

    @property
    def num_parts(self) -> int:
        return self.config.num_parts

    def forward(self, images: Tensor) -> DetectorOutput:
        b, _, h, w = images.shape
        if h % 16 or w % 16:
            raise ValueError(f"input H×W must be multiples of 16, got {h}×{w}")
        x = (images - self.pixel_mean) / self.pixel_std
        trunk = self.backbone
        c3 = trunk.layer2(trunk.stem(x))
        x = c3
        intermediate = None
        for i, block in enumerate(trunk.layer3):
            x = block(x)
            if i == self.intermediate_block:
                intermediate = self.intermediate_head(x)
        c5 = trunk.layer4(x)
        fused = self.relu(self.upsample(c5) + self.skip(c3))
        pairwise = (
            self.pairwise_head(fused)
            if self.pairwise_head is not None
            else fused.new_zeros(b, 0, h // STRIDE, w // STRIDE)
        )
        assert intermediate is not None
        return DetectorOutput(
            self.scmap_head(fused), self.locref_head(fused), pairwise, intermediate
        )

    def decode(self, out: DetectorOutput) -> DecodedMaps:
        """Sigmoid probabilities and offsets in input pixels (de-normalised)."""
        return decode_maps(out, self.config.locref_std, self.pairwise_mean, self.pairwise_std)

    def freeze_batchnorm(self) -> DeeperCut:
        """Turn trained BatchNorm layers into frozen ones (inference/deployment form)."""
        freeze_batchnorm(self.backbone)
        self.config.norm = "frozen"
        return self


def pairwise_stat(value: list[Any] | None, num_parts: int, default: float) -> Tensor:
    """Per-(part, other part) mean or std [P, P−1, 2] of the pairwise offsets (``default``
    everywhere when ``value`` is None)."""
    p = num_parts
    if value is None:
        return torch.full((p, p - 1, 2), default)
    if len(value) != p:  # before converting: the list may be anything a checkpoint holds
        raise ValueError(f"pairwise stats must be [{p}, {p - 1}, 2], got {len(value)} rows")
    stat = torch.tensor(value, dtype=torch.float32)
    if stat.shape != (p, p - 1, 2):
        raise ValueError(f"pairwise stats must be [{p}, {p - 1}, 2], got {tuple(stat.shape)}")
    return stat


def decode_maps(
    out: DetectorOutput, locref_std: float, pairwise_mean: Tensor, pairwise_std: Tensor
) -> DecodedMaps:
    """Sigmoid probabilities, location refinement in input pixels and the pairwise offsets
    in pixels, own part zero (see :mod:`deepercut.model.codecs`)."""
    probs = torch.sigmoid(out.scmap.float())
    locref = decode_locref(out.locref, locref_std)
    if out.pairwise.shape[1] == 0:
        return DecodedMaps(probs, locref, None)
    return DecodedMaps(probs, locref, decode_offsets(out.pairwise, pairwise_mean, pairwise_std))
