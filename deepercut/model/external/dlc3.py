"""DeepLabCut 3's single-animal ResNet pose model, reproduced exactly in torch (no timm).

DeepLabCut 3 (PyTorch) builds its ResNet models as ``PoseModel(backbone, heads)``:

- ``backbone.model`` is ``timm.create_model(model_name, output_stride=...)`` with the
  classifier removed, run up to ``layer4`` (``forward_features``). The ``resnet_50`` net type
  is timm's ``resnet50_gn`` (GroupNorm, 32 groups), ``resnet_101`` timm's ``resnet101``
  (BatchNorm, used with its running statistics at inference). timm's layout: a 7×7/2 stem
  (padding 3) and a 3×3/2 max-pool (padding 1); bottlenecks stride in their 3×3 ``conv2``
  and project the shortcut with a strided 1×1 ``downsample`` conv + norm. ``output_stride``
  16 (or 8) turns the strides of the last stage(s) into dilation the way timm's
  ``make_blocks`` does: such a stage's *first* block keeps the previous dilation in its
  ``conv2`` (``first_dilation``), the others use the new one.
- ``heads.bodypart`` is a ``HeatmapHead``: a heatmap and a locref ``DeconvModule``, each a
  chain of *un-padded* ``ConvTranspose2d(kernel, stride)`` (ReLU between them, none after),
  so an n-cell input gives ``(n − 1)·stride + kernel`` cells: with the default 3×3/2 on a
  stride-16 trunk, ``2n + 1`` cells, one more per axis than ``H/8``.
- Its ``HeatmapPredictor`` puts cell ``(i, j)`` at ``(j·s + s/2, i·s + s/2)`` input pixels
  with ``s = output_stride / ∏ head strides`` (8), plus ``locref · locref_std`` (channels
  ``2k, 2k+1`` are x, y of part k); scores are ``sigmoid(heatmap)`` with ``apply_sigmoid``,
  else the raw heatmap clipped to [0, 1] (``clip_scores``). That grid is our candidate grid
  (:func:`~deepercut.model.candidates.cell_centers`), so the extra last row and column are
  kept as DeepLabCut keeps them: cells centred just past the image's right and bottom edges.
- Input: RGB (or BGR with ``colormode: BGR``) in 0..255, normalised with the ImageNet mean and
  std on ``/255`` when ``data.inference.normalize_images`` is set (the default).

Module and parameter names here equal DeepLabCut's state-dict keys (``backbone.model.
layer1.0.conv1.weight``, ``heads.bodypart.heatmap_head.deconv_layers.0.weight``), so a
snapshot's ``model`` state loads as it is.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

# DeepLabCut 3's default ``locref_std`` is pose-tensorflow's.
from deepercut.model.codecs import LOCREF_STD, decode_locref
from deepercut.model.net import (
    STRIDE,
    DecodedMaps,
    DetectorOutput,
    config_from_dict,
)
from deepercut.model.resnet import Bottleneck, FrozenBatchNorm2d

FAMILY = "dlc3_resnet"

#: timm model names DeepLabCut 3 ResNets use (a ``.tag`` suffix names pretrained weights
#: only): bottleneck units per stage and the norm layer.
TIMM_RESNETS: dict[str, tuple[tuple[int, int, int, int], str]] = {
    "resnet50_gn": ((3, 4, 6, 3), "group"),
    "resnet50": ((3, 4, 6, 3), "batch"),
    "resnet101": ((3, 4, 23, 3), "batch"),
    "resnet152": ((3, 8, 36, 3), "batch"),
}
#: Output channels of the trunk (4 × 512, every bottleneck ResNet).
TRUNK_CHANNELS = 2048
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: A transposed convolution of a DeconvModule: ``(out_channels, kernel, stride)``.
Deconv = tuple[int, int, int]


@dataclass
class DLC3PoseConfig:
    """Everything that rebuilds a DeepLabCut 3 ResNet + HeatmapHead model; stored in our
    checkpoints.

    Attributes:
        model_name: the timm model (a key of :data:`TIMM_RESNETS`).
        output_stride: the trunk's stride (timm ``output_stride``: 8, 16 or 32).
        num_parts: P.
        heatmap_layers: the heatmap DeconvModule's layers, the last with P outputs.
        locref_layers: the locref DeconvModule's layers (last: 2P), or empty when the head has
            none.
        locref: whether the predictor uses location refinement.
        apply_sigmoid: scores are ``sigmoid(heatmap)``; otherwise the heatmap clipped to [0, 1].
        locref_std: locref outputs are offsets divided by this (pixels).
        pixel_mean, pixel_std: normalisation of RGB in [0, 1] (``(x − mean) / std``).
        bgr: the network reads BGR (``colormode: BGR``).
        norm_eps: ε of the trunk's BatchNorm / GroupNorm.
        groups: GroupNorm groups (timm: 32).
    """

    model_name: str = "resnet50_gn"
    output_stride: int = 16
    num_parts: int = 1
    heatmap_layers: tuple[Deconv, ...] = ((1, 3, 2),)
    locref_layers: tuple[Deconv, ...] = ((2, 3, 2),)
    locref: bool = True
    apply_sigmoid: bool = False
    locref_std: float = LOCREF_STD
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN
    pixel_std: tuple[float, float, float] = IMAGENET_STD
    bgr: bool = False
    norm_eps: float = 1e-5
    groups: int = 32

    def __post_init__(self) -> None:
        self.heatmap_layers = _triples(self.heatmap_layers)
        self.locref_layers = _triples(self.locref_layers)
        self.pixel_mean = tuple(float(v) for v in self.pixel_mean)  # type: ignore[assignment]
        self.pixel_std = tuple(float(v) for v in self.pixel_std)  # type: ignore[assignment]
        if self.model_name not in TIMM_RESNETS:
            raise ValueError(f"timm model {self.model_name!r} is not one of {sorted(TIMM_RESNETS)}")
        if self.output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {self.output_stride}")
        if self.num_parts < 1 or not self.heatmap_layers:
            raise ValueError("the model needs a part and a heatmap layer")
        if any(min(layer) < 1 for layer in self.heatmap_layers + self.locref_layers):
            raise ValueError("deconv layers are positive (out_channels, kernel, stride) triples")
        if self.heatmap_layers[-1][0] != self.num_parts:
            raise ValueError(
                f"the heatmap has {self.heatmap_layers[-1][0]} channels for {self.num_parts} parts"
            )
        if self.locref_layers and self.locref_layers[-1][0] != 2 * self.num_parts:
            raise ValueError(
                f"the locref map has {self.locref_layers[-1][0]} channels for "
                f"{self.num_parts} parts (expected {2 * self.num_parts})"
            )
        if self.locref and not self.locref_layers:
            raise ValueError("location refinement needs a locref head")
        strides = {_head_stride(self.heatmap_layers)}
        if self.locref_layers:
            strides.add(_head_stride(self.locref_layers))
        if len(strides) != 1:
            raise ValueError(f"heatmap and locref heads have different strides {sorted(strides)}")
        if self.stride != STRIDE:
            raise ValueError(
                f"maps at stride {self.stride:g} (output_stride {self.output_stride} / head "
                f"stride {strides.pop()}); deepercut's candidate grid has stride {STRIDE}"
            )

    @property
    def scope(self) -> str:
        """The backbone's name (as TF-slim networks name their scope)."""
        return self.model_name

    @property
    def pairwise(self) -> bool:
        """DeepLabCut 3 heads regress no pairwise offsets."""
        return False

    @property
    def stride(self) -> float:
        """Input pixels per map cell: ``output_stride / ∏ head strides``."""
        return self.output_stride / _head_stride(self.heatmap_layers)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("heatmap_layers", "locref_layers"):
            data[key] = [list(layer) for layer in data[key]]
        for key in ("pixel_mean", "pixel_std"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DLC3PoseConfig:
        return config_from_dict(cls, data, "DeepLabCut 3 network")


def _triples(layers: Any) -> tuple[Deconv, ...]:
    out = []
    for layer in layers:
        values = tuple(int(v) for v in layer)
        if len(values) != 3:
            raise ValueError(f"a deconv layer is (out_channels, kernel, stride), got {layer}")
        out.append(values)
    return tuple(out)  # type: ignore[return-value]


def _head_stride(layers: tuple[Deconv, ...]) -> int:
    return math.prod(stride for _, _, stride in layers)


def _norm(channels: int, config: DLC3PoseConfig) -> nn.Module:
    if TIMM_RESNETS[config.model_name][1] == "group":
        return nn.GroupNorm(config.groups, channels, eps=config.norm_eps)
    return FrozenBatchNorm2d(channels, config.norm_eps)


class TimmResNet(nn.Module):
    """timm's bottleneck ``ResNet`` up to ``layer4`` (``forward_features``)."""

    def __init__(self, config: DLC3PoseConfig) -> None:
        super().__init__()
        units = TIMM_RESNETS[config.model_name][0]
        norm = partial(_norm, config=config)
        self.conv1 = nn.Conv2d(3, 64, 7, 2, padding=3, bias=False)
        self.bn1 = norm(64)
        cin, net_stride, dilation, previous = 64, 4, 1, 1
        for index, (count, width) in enumerate(zip(units, (64, 128, 256, 512), strict=True)):
            stride = 1 if index == 0 else 2
            if net_stride >= config.output_stride:  # atrous from here on
                dilation, stride = dilation * stride, 1
            else:
                net_stride *= stride
            downsample = None
            if stride != 1 or cin != 4 * width:
                downsample = nn.Sequential(
                    nn.Conv2d(cin, 4 * width, 1, stride, bias=False), norm(4 * width)
                )
            # timm's Bottleneck is torchvision's (same layers, names and dilation rule).
            blocks = []
            for b in range(count):
                blocks.append(
                    Bottleneck(
                        cin,
                        width,
                        stride if b == 0 else 1,
                        downsample if b == 0 else None,
                        previous,  # timm: a stage's first block keeps the old dilation
                        norm,
                    )
                )
                previous, cin = dilation, 4 * width
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, 3, 2, padding=1)
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
        return x


class _Backbone(nn.Module):
    """DeepLabCut's ``ResNet`` backbone wrapper (its timm model lives in ``.model``)."""

    def __init__(self, config: DLC3PoseConfig) -> None:
        super().__init__()
        self.model = TimmResNet(config)


class DeconvModule(nn.Module):
    """DeepLabCut's ``DeconvModule``: un-padded transposed convolutions, ReLU between them."""

    def __init__(self, cin: int, layers: tuple[Deconv, ...]) -> None:
        super().__init__()
        modules: list[nn.Module] = []
        for out, kernel, stride in layers:
            modules += [nn.ConvTranspose2d(cin, out, kernel, stride), nn.ReLU()]
            cin = out
        self.deconv_layers = nn.Sequential(*modules[:-1])

    def forward(self, x: Tensor) -> Tensor:
        return self.deconv_layers(x)


class _HeatmapHead(nn.Module):
    def __init__(self, config: DLC3PoseConfig) -> None:
        super().__init__()
        self.heatmap_head = DeconvModule(TRUNK_CHANNELS, config.heatmap_layers)
        self.locref_head = (
            DeconvModule(TRUNK_CHANNELS, config.locref_layers) if config.locref_layers else None
        )


class DLC3PoseNet(nn.Module):
    """A DeepLabCut 3 single-animal ResNet model behind our detector interface.

    Input: float RGB in [0, 1], [B, 3, H, W]; output: a
    :class:`~deepercut.model.net.DetectorOutput` with DeepLabCut's raw heatmap as ``scmap``
    and its locref map (zero without location refinement); ``pairwise`` and ``intermediate``
    have no channels.
    """

    def __init__(self, config: DLC3PoseConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = _Backbone(config)
        self.heads = nn.ModuleDict({"bodypart": _HeatmapHead(config)})
        # Not in the state dict: a DeepLabCut snapshot has no such entries.
        self.register_buffer(
            "pixel_mean", torch.tensor(config.pixel_mean).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "pixel_std", torch.tensor(config.pixel_std).view(1, 3, 1, 1), persistent=False
        )

    @property
    def num_parts(self) -> int:
        return self.config.num_parts

    @property
    def stride(self) -> int:
        """Input pixels per map cell (8)."""
        return int(self.config.stride)

    def forward(self, images: Tensor) -> DetectorOutput:
        x = images.flip(1) if self.config.bgr else images
        x = (x - self.pixel_mean) / self.pixel_std
        features = self.backbone.model(x)
        head = self.heads["bodypart"]
        heatmap = head.heatmap_head(features)
        b, p, h, w = heatmap.shape
        locref = (
            head.locref_head(features)
            if head.locref_head is not None and self.config.locref
            else heatmap.new_zeros(b, 2 * p, h, w)
        )
        empty = heatmap.new_zeros(b, 0, h, w)
        return DetectorOutput(heatmap, locref, empty, empty)

    def decode(self, out: DetectorOutput) -> DecodedMaps:
        """Scores as DeepLabCut's ``HeatmapPredictor`` gives them and offsets in pixels."""
        heatmap = out.scmap.float()
        probs = torch.sigmoid(heatmap) if self.config.apply_sigmoid else heatmap.clamp(0, 1)
        return DecodedMaps(probs, decode_locref(out.locref, self.config.locref_std), None)
