"""The pose-tensorflow / DeepLabCut 2.x network, reproduced exactly in torch.

pose-tensorflow (Insafutdinov et al.'s DeeperCut release) and DeepLabCut 2.x build the same
network: TF-slim ``resnet_v1_{50,101,152}`` with ``output_stride=16`` on mean-pixel-centred
RGB in 0..255, and one 3×3 stride-2 transposed convolution per head (``pose/part_pred``,
``pose/locref_pred``, ``pose/pairwise_pred``, ``pose/intermediate_supervision`` on the output
of a block-3 unit), so every map has stride 8. What differs from :mod:`deepercut.model.resnet`
(torchvision's layout) and has to be reproduced for equal outputs:

- TF-slim's bottleneck strides in its 3×3 ``conv2``, and a block's stride sits in its *last*
  unit (torchvision: the first).
- A strided 3×3/7×7 convolution (``conv2d_same``) pads explicitly by ``(k−1)//2`` before and
  the rest after; every other convolution and the 3×3 max-pool use TF ``SAME`` padding, which
  pads ``total//2`` before and the remainder after (so a stride-2 pool of an even size pads 0
  before, 1 after, unlike torch's symmetric padding).
- A unit whose input already has its output depth takes the shortcut by 1×1 subsampling
  (``x[::s, ::s]``), not a convolution.
- ``output_stride=16`` turns the remaining strides into dilation, starting with the unit that
  would have reached stride 32 (TF-slim's ``stack_blocks_dense``): the last unit of block 3
  runs at stride 1, rate 1, and block 4 at rate 2.
- BatchNorm at inference with ε = 1e-5; the input is ``RGB·255 − mean_pixel``.
- A transposed convolution with ``SAME`` padding yields exactly ``stride ×`` its input: the
  full output is cropped by ``max(k − s, 0)`` split as ``total//2`` before, the rest after.

The module names here are our own; :func:`tf_variable_map` gives the TF variable behind each
state-dict entry (and how to lay it out), which the converters use.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from deepercut.model.codecs import LOCREF_STD
from deepercut.model.net import (
    DecodedMaps,
    DetectorOutput,
    config_from_dict,
    decode_maps,
    pairwise_stat,
)
from deepercut.model.resnet import FrozenBatchNorm2d

FAMILY = "tfslim_resnet_v1"

#: Units per block of the TF-slim ResNets (pose-tensorflow and DeepLabCut 2.x net types).
STANDARD_UNITS: dict[int, tuple[int, int, int, int]] = {
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
#: pose-tensorflow's and DeepLabCut's ``mean_pixel`` (ImageNet RGB means, 0..255).
MEAN_PIXEL = (123.68, 116.779, 103.939)


@dataclass
class TFSlimPoseConfig:
    """Everything that rebuilds a TF-slim pose network; stored in our checkpoints.

    Attributes:
        depth: the ResNet's nominal depth (names the TF scope ``resnet_v1_{depth}``).
        units: units per block (``STANDARD_UNITS[depth]`` for real models).
        root_width: channels of ``conv1`` (64).
        bottleneck_widths: per block, the bottleneck width (64, 128, 256, 512); a unit outputs
            4× that.
        block_strides: per block, the stride of its last unit (2, 2, 2, 1).
        output_stride: the trunk's output stride (pose-tensorflow and DeepLabCut: 16).
        deconv_stride: stride of each head's 3×3 transposed convolution (2).
        num_parts: P.
        locref: whether the location-refinement head exists.
        pairwise: whether the pairwise head (2·P·(P−1) channels) exists.
        intermediate_unit: 1-based block-3 unit feeding ``intermediate_supervision``, or None.
        mean_pixel: subtracted from RGB in 0..255.
        bn_eps: BatchNorm ε.
        locref_std: locref outputs are offsets divided by this (pixels).
        pairwise_mean, pairwise_std: per (part, other part) statistics in input pixels,
            [P, P−1, 2] nested lists (own part skipped), or None (0 and 1).
    """

    depth: int = 101
    units: tuple[int, ...] = STANDARD_UNITS[101]
    root_width: int = 64
    bottleneck_widths: tuple[int, ...] = (64, 128, 256, 512)
    block_strides: tuple[int, ...] = (2, 2, 2, 1)
    output_stride: int = 16
    deconv_stride: int = 2
    num_parts: int = 14
    locref: bool = True
    pairwise: bool = False
    intermediate_unit: int | None = None
    mean_pixel: tuple[float, float, float] = MEAN_PIXEL
    bn_eps: float = 1e-5
    locref_std: float = LOCREF_STD
    pairwise_mean: list[Any] | None = field(default=None)
    pairwise_std: list[Any] | None = field(default=None)

    def __post_init__(self) -> None:
        self.units = tuple(int(u) for u in self.units)
        self.bottleneck_widths = tuple(int(w) for w in self.bottleneck_widths)
        self.block_strides = tuple(int(s) for s in self.block_strides)
        self.mean_pixel = tuple(float(m) for m in self.mean_pixel)  # type: ignore[assignment]
        n = len(self.units)
        if n < 3 or len(self.bottleneck_widths) != n or len(self.block_strides) != n:
            raise ValueError(
                f"units {self.units}, widths {self.bottleneck_widths} and strides "
                f"{self.block_strides} must have one entry per block (at least 3 blocks)"
            )
        if min(self.units) < 1 or self.num_parts < 1:
            raise ValueError("every block needs a unit and the network a part")
        if self.output_stride % 4 or self.output_stride < 4:
            raise ValueError(f"output_stride must be a multiple of 4, got {self.output_stride}")
        if self.intermediate_unit is not None and not 1 <= self.intermediate_unit <= self.units[2]:
            raise ValueError(
                f"intermediate unit {self.intermediate_unit} is not in block 3 "
                f"(1..{self.units[2]})"
            )

    @property
    def scope(self) -> str:
        """The trunk's TF variable scope."""
        return f"resnet_v1_{self.depth}"

    @property
    def stride(self) -> int:
        """Stride of the output maps over the input (8 for every released model)."""
        total = 4 * math.prod(self.block_strides)
        return min(total, self.output_stride) // self.deconv_stride

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("units", "bottleneck_widths", "block_strides", "mean_pixel"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TFSlimPoseConfig:
        return config_from_dict(cls, data, "TF-slim network")


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF ``SAME`` padding ``(before, after)`` of one dimension."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Module):
    """A bias-free convolution with TF-slim padding, followed by frozen BatchNorm (and ReLU).

    ``explicit=True`` is ``resnet_utils.conv2d_same`` with stride > 1 (fixed padding, then
    ``VALID``); otherwise TF ``SAME``.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: int = 1,
        rate: int = 1,
        relu: bool = True,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, dilation=rate, bias=False)
        self.bn = FrozenBatchNorm2d(cout, eps)
        self.relu = relu
        self.kernel = kernel + (kernel - 1) * (rate - 1)
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        if self.kernel > 1:
            if self.stride > 1:  # conv2d_same: pad independent of the input size
                before = (self.kernel - 1) // 2
                pads = (before, self.kernel - 1 - before) * 2
            else:
                h = _same_pads(x.shape[-2], self.kernel, 1)
                w = _same_pads(x.shape[-1], self.kernel, 1)
                pads = (*w, *h)
            x = F.pad(x, pads)
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class Bottleneck(nn.Module):
    """TF-slim ``bottleneck`` (v1): 1×1 → 3×3 (strided, dilated) → 1×1, plus shortcut."""

    def __init__(self, cin: int, width: int, cout: int, stride: int, rate: int, eps: float):
        super().__init__()
        self.stride = stride
        self.shortcut = (
            None if cin == cout else SameConv2d(cin, cout, 1, stride, relu=False, eps=eps)
        )
        self.conv1 = SameConv2d(cin, width, 1, eps=eps)
        self.conv2 = SameConv2d(width, width, 3, stride, rate, eps=eps)
        self.conv3 = SameConv2d(width, cout, 1, relu=False, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        if self.shortcut is not None:
            shortcut = self.shortcut(x)
        else:  # resnet_utils.subsample: a 1×1 max-pool with the unit's stride
            shortcut = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        return F.relu(shortcut + self.conv3(self.conv2(self.conv1(x))))


class SameDeconv(nn.Module):
    """``slim.conv2d_transpose`` / keras ``Conv2DTranspose`` with ``SAME`` padding and bias."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 2) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose2d(cin, cout, kernel, stride)
        total = max(kernel - stride, 0)
        self.crop = total // 2
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2] * self.stride, x.shape[-1] * self.stride
        full = self.deconv(x)
        return full[:, :, self.crop : self.crop + h, self.crop : self.crop + w]


class TFSlimPoseNet(nn.Module):
    """pose-tensorflow's / DeepLabCut 2.x's pose network.

    Input: float RGB in [0, 1], [B, 3, H, W] with H, W multiples of 16; output: a
    :class:`~deepercut.model.net.DetectorOutput` at stride :attr:`stride` (8), with
    ``intermediate`` at the same resolution (empty channels without that head) and ``locref``
    zero without a locref head, so the engine uses it exactly like our own network.
    """

    def __init__(self, config: TFSlimPoseConfig) -> None:
        super().__init__()
        self.config = config
        eps = config.bn_eps
        self.conv1 = SameConv2d(3, config.root_width, 7, 2, eps=eps)
        blocks, self._intermediate_at = [], None
        cin, current, rate = config.root_width, 1, 1
        target = config.output_stride // 4  # stack_blocks_dense counts after the root (4)
        for b, (units, width, stride) in enumerate(
            zip(config.units, config.bottleneck_widths, config.block_strides, strict=True)
        ):
            layers = []
            for u in range(units):
                unit_stride = stride if u == units - 1 else 1
                if current == target:  # atrous from here on
                    layers.append(Bottleneck(cin, width, 4 * width, 1, rate, eps))
                    rate *= unit_stride
                else:
                    layers.append(Bottleneck(cin, width, 4 * width, unit_stride, 1, eps))
                    current *= unit_stride
                cin = 4 * width
            blocks.append(nn.Sequential(*layers))
            if b == 2 and config.intermediate_unit is not None:
                self._intermediate_at = config.intermediate_unit - 1
        if current * 4 > config.output_stride:
            raise ValueError(f"cannot reach output stride {config.output_stride}")
        self.blocks = nn.ModuleList(blocks)
        p, s = config.num_parts, config.deconv_stride
        self.part_pred = SameDeconv(cin, p, 3, s)
        self.locref_pred = SameDeconv(cin, 2 * p, 3, s) if config.locref else None
        self.pairwise_pred = SameDeconv(cin, 2 * p * (p - 1), 3, s) if config.pairwise else None
        c3 = 4 * config.bottleneck_widths[2]
        self.intermediate_supervision = (
            SameDeconv(c3, p, 3, s) if config.intermediate_unit is not None else None
        )
        self.register_buffer("mean_pixel", torch.tensor(config.mean_pixel).view(1, 3, 1, 1))
        self.register_buffer("pairwise_mean", pairwise_stat(config.pairwise_mean, p, 0.0))
        self.register_buffer("pairwise_std", pairwise_stat(config.pairwise_std, p, 1.0))

    @property
    def num_parts(self) -> int:
        return self.config.num_parts

    @property
    def stride(self) -> int:
        """Stride of the output maps (8)."""
        return self.config.stride

    def forward(self, images: Tensor) -> DetectorOutput:
        b, _, h, w = images.shape
        if h % 16 or w % 16:
            raise ValueError(f"input H×W must be multiples of 16, got {h}×{w}")
        x = images * 255.0 - self.mean_pixel
        x = self.conv1(x)
        ph, pw = _same_pads(x.shape[-2], 3, 2), _same_pads(x.shape[-1], 3, 2)
        x = F.max_pool2d(F.pad(x, (*pw, *ph), value=float("-inf")), 3, 2)
        intermediate = None
        for i, block in enumerate(self.blocks):
            if i == 2 and self.intermediate_supervision is not None:
                for u, unit in enumerate(block):
                    x = unit(x)
                    if u == self._intermediate_at:
                        intermediate = self.intermediate_supervision(x)
            else:
                x = block(x)
        scmap = self.part_pred(x)
        p, (mh, mw) = self.config.num_parts, scmap.shape[-2:]
        locref = self.locref_pred(x) if self.locref_pred is not None else None
        pairwise = self.pairwise_pred(x) if self.pairwise_pred is not None else None
        return DetectorOutput(
            scmap,
            locref if locref is not None else scmap.new_zeros(b, 2 * p, mh, mw),
            pairwise if pairwise is not None else scmap.new_zeros(b, 0, mh, mw),
            intermediate if intermediate is not None else scmap.new_zeros(b, 0, mh, mw),
        )

    def decode(self, out: DetectorOutput) -> DecodedMaps:
        """Sigmoid probabilities and offsets in input pixels, as pose-tensorflow decodes them."""
        return decode_maps(out, self.config.locref_std, self.pairwise_mean, self.pairwise_std)


# ---------------------------------------------------------------------- TF variable names

#: A TF array → the torch tensor layout.
Layout = Callable[[np.ndarray], np.ndarray]


def _conv_layout(a: np.ndarray) -> np.ndarray:
    return a.transpose(3, 2, 0, 1)  # HWIO → OIHW


def _deconv_layout(a: np.ndarray) -> np.ndarray:
    return a.transpose(3, 2, 0, 1)  # H, W, out, in → in, out, H, W (no flip: both are ∂conv)


def _same(a: np.ndarray) -> np.ndarray:
    return a


#: The two names heads are stored under: TF-slim (pose-tensorflow, DeepLabCut ≤ 2.1) and
#: keras ``Conv2DTranspose`` inside the head's scope (DeepLabCut ≥ 2.2).
HEAD_NAMINGS: dict[str, tuple[str, str]] = {
    "slim": ("block4/weights", "block4/biases"),
    "keras": ("{head}/kernel", "{head}/bias"),
}


def tf_variable_map(
    config: TFSlimPoseConfig, head_naming: str = "slim", bn_scale: bool = True
) -> dict[str, tuple[str, Layout]]:
    """State-dict key → (TF variable name, layout function) of every learned tensor.

    Args:
        config: the network.
        head_naming: ``"slim"`` (``pose/part_pred/block4/weights``) or ``"keras"``
            (``pose/part_pred/part_pred/kernel``).
        bn_scale: whether BatchNorm layers have ``gamma`` (TF-slim's ``resnet_arg_scope``
            default); without, the state dict's BN weights stay 1.
    """
    mapping: dict[str, tuple[str, Layout]] = {}

    def conv(key: str, tf_scope: str) -> None:
        mapping[f"{key}.conv.weight"] = (f"{tf_scope}/weights", _conv_layout)
        bn = f"{tf_scope}/BatchNorm"
        if bn_scale:
            mapping[f"{key}.bn.weight"] = (f"{bn}/gamma", _same)
        mapping[f"{key}.bn.bias"] = (f"{bn}/beta", _same)
        mapping[f"{key}.bn.running_mean"] = (f"{bn}/moving_mean", _same)
        mapping[f"{key}.bn.running_var"] = (f"{bn}/moving_variance", _same)

    scope = config.scope
    conv("conv1", f"{scope}/conv1")
    cin = config.root_width
    for b, (units, width) in enumerate(zip(config.units, config.bottleneck_widths, strict=True)):
        for u in range(units):
            tf_unit = f"{scope}/block{b + 1}/unit_{u + 1}/bottleneck_v1"
            key = f"blocks.{b}.{u}"
            if cin != 4 * width:
                conv(f"{key}.shortcut", f"{tf_unit}/shortcut")
            for name in ("conv1", "conv2", "conv3"):
                conv(f"{key}.{name}", f"{tf_unit}/{name}")
            cin = 4 * width
    weights, biases = HEAD_NAMINGS[head_naming]
    heads = ["part_pred"]
    heads += ["locref_pred"] if config.locref else []
    heads += ["pairwise_pred"] if config.pairwise else []
    heads += ["intermediate_supervision"] if config.intermediate_unit is not None else []
    for head in heads:
        mapping[f"{head}.deconv.weight"] = (
            f"pose/{head}/{weights.format(head=head)}",
            _deconv_layout,
        )
        mapping[f"{head}.deconv.bias"] = (f"pose/{head}/{biases.format(head=head)}", _same)
    return mapping
