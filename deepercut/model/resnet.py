"""ResNet backbones with torchvision-compatible parameter names.

torchvision cannot be installed beside our CPU torch, so the backbone is written here. Module
and parameter names follow ``torchvision.models.resnet`` exactly (``conv1``, ``bn1``,
``layer1.0.downsample.0`` ...), so a torchvision ResNet state dict loads with
:func:`load_torchvision_state_dict`. The bottleneck puts its stride in the 3×3 convolution
(torchvision's "v1.5"), and ``dilate_last=True`` gives conv5 stride 1 with dilation 2, as
torchvision's ``replace_stride_with_dilation=[False, False, True]`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

NormFactory = Callable[[int], nn.Module]


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics (eval-mode BN), as DeeperCut trains its backbone.

    Statistics are buffers and never update; the affine ``weight``/``bias`` are buffers too
    unless ``trainable_affine`` is set. A torchvision checkpoint's ``num_batches_tracked`` is
    accepted and ignored.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, trainable_affine: bool = False):
        super().__init__()
        self.eps = eps
        if trainable_affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_buffer("weight", torch.ones(num_features))
            self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d) -> FrozenBatchNorm2d:
        """A frozen copy of a trained ``BatchNorm2d`` (same eval-mode output)."""
        frozen = cls(bn.num_features, bn.eps)
        with torch.no_grad():
            frozen.weight.copy_(bn.weight if bn.affine else torch.ones_like(frozen.weight))
            frozen.bias.copy_(bn.bias if bn.affine else torch.zeros_like(frozen.bias))
            frozen.running_mean.copy_(bn.running_mean)
            frozen.running_var.copy_(bn.running_var)
        return frozen


def norm_factory(kind: str) -> NormFactory:
    """``"frozen"`` (DeeperCut; needs pretrained statistics) or ``"batch"`` (from scratch)."""
    if kind == "frozen":
        return FrozenBatchNorm2d
    if kind == "batch":
        return nn.BatchNorm2d
    raise ValueError(f"unknown norm {kind!r}: expected 'frozen' or 'batch'")


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` in ``module`` by a :class:`FrozenBatchNorm2d` (in place)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, FrozenBatchNorm2d.from_batchnorm(child))
        else:
            freeze_batchnorm(child)
    return module


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions (ResNet-18/34)."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int,
        downsample: nn.Module | None,
        dilation: int,
        norm: NormFactory,
    ):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride, dilation)
        self.bn1 = norm(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, 1, dilation)
        self.bn2 = norm(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1 → 3×3 (strided, dilated) → 1×1 (ResNet-50/101/152)."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int,
        downsample: nn.Module | None,
        dilation: int,
        norm: NormFactory,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = norm(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = norm(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = norm(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


@dataclass(frozen=True)
class ResNetSpec:
    """Block type and blocks per stage (conv2_x … conv5_x)."""

    block: type[BasicBlock] | type[Bottleneck]
    layers: tuple[int, int, int, int]


RESNET_SPECS: dict[str, ResNetSpec] = {
    "resnet18": ResNetSpec(BasicBlock, (2, 2, 2, 2)),
    "resnet34": ResNetSpec(BasicBlock, (3, 4, 6, 3)),
    "resnet50": ResNetSpec(Bottleneck, (3, 4, 6, 3)),
    "resnet101": ResNetSpec(Bottleneck, (3, 4, 23, 3)),
    "resnet152": ResNetSpec(Bottleneck, (3, 8, 36, 3)),
}


class ResNet(nn.Module):
    """A ResNet trunk (no ``fc``) returning the conv3 (``layer2``) … conv5 (``layer4``) features.

    Args:
        arch: one of :data:`RESNET_SPECS`.
        width: channels of the stem and ``layer1`` (64 in the standard nets; the bundled CPU
            model uses 32, i.e. half width everywhere).
        dilate_last: conv5 with stride 1 and dilation 2 (output stride 16 instead of 32).
        norm: ``"frozen"`` or ``"batch"``.
    """

    def __init__(
        self, arch: str, width: int = 64, dilate_last: bool = True, norm: str = "frozen"
    ) -> None:
        super().__init__()
        if arch not in RESNET_SPECS:
            raise ValueError(f"unknown arch {arch!r}; expected one of {sorted(RESNET_SPECS)}")
        spec = RESNET_SPECS[arch]
        make_norm = norm_factory(norm)
        self.arch = arch
        self._norm = make_norm
        self._block = spec.block
        self.inplanes = width
        self.dilation = 1
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = make_norm(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(width, spec.layers[0], 1, False)
        self.layer2 = self._make_layer(width * 2, spec.layers[1], 2, False)
        self.layer3 = self._make_layer(width * 4, spec.layers[2], 2, False)
        self.layer4 = self._make_layer(width * 8, spec.layers[3], 2, dilate_last)
        self.channels = {
            "layer2": width * 2 * spec.block.expansion,
            "layer3": width * 4 * spec.block.expansion,
            "layer4": width * 8 * spec.block.expansion,
        }
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        # Zero-init the last norm of each residual branch: blocks start as identities, which
        # lets a deep net train from scratch (Goyal et al. 2017).
        for m in self.modules():
            last = getattr(m, "bn3", None) if isinstance(m, Bottleneck) else None
            last = getattr(m, "bn2", None) if isinstance(m, BasicBlock) else last
            if isinstance(last, nn.BatchNorm2d):
                nn.init.zeros_(last.weight)

    def _make_layer(self, planes: int, blocks: int, stride: int, dilate: bool) -> nn.Sequential:
        block, norm = self._block, self._norm
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                norm(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, previous_dilation, norm)]
        self.inplanes = planes * block.expansion
        layers += [
            block(self.inplanes, planes, 1, None, self.dilation, norm) for _ in range(1, blocks)
        ]
        return nn.Sequential(*layers)

    def stem(self, x: Tensor) -> Tensor:
        """conv1 … conv2_x: stride 4."""
        return self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))


def load_torchvision_state_dict(model: ResNet, state_dict: Mapping[str, Tensor]) -> None:
    """Load a torchvision ResNet state dict (its ``fc`` is dropped; every other key must match).

    Raises:
        ValueError: listing missing or unexpected keys or wrong shapes.
    """
    state = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(k for k in set(state) - set(own) if not k.endswith("num_batches_tracked"))
    wrong = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if state[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        raise ValueError(
            f"state dict does not fit {model.arch}: missing {missing[:5]} ({len(missing)}), "
            f"unexpected {unexpected[:5]} ({len(unexpected)}), wrong shapes {wrong[:5]}"
        )
    model.load_state_dict(state, strict=False)
