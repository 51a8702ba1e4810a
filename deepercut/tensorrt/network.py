"""The deployment network every backend runs: a detector copy with frozen BatchNorm folded,
cast to its precision, taking float32 images and returning plain tensors (:class:`InferenceNet`).
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import Tensor, nn

from deepercut.model.net import DetectorOutput
from deepercut.model.resnet import FrozenBatchNorm2d

#: Precisions a backend runs at.
PRECISIONS = ("fp16", "fp32")
_DTYPES = {"fp16": torch.float16, "fp32": torch.float32}
#: Fallback order per requested backend.
#: Output names, in the order :class:`InferenceNet` returns them.
OUTPUT_NAMES = ("scmap", "locref", "pairwise", "intermediate")


class BackendUnavailable(RuntimeError):
    """A backend cannot be built here (library missing, no GPU, no input size)."""


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold eval-mode BatchNorm into the convolution before it, in place.

    Pairs are found by the torchvision naming the ResNet trunk uses: ``convK``/``bnK``
    attributes of one module, and consecutive (conv, norm) entries of an ``nn.Sequential``
    (the downsample branch). The norm becomes ``nn.Identity``; the convolution gets the
    norm's scale in its weights and its shift as bias. Only for inference copies: a folded
    network computes the same function but is no longer the trained parametrisation.
    """
    for parent in list(module.modules()):
        for conv_name, norm_name in _conv_norm_pairs(parent):
            conv, norm = getattr(parent, conv_name), getattr(parent, norm_name)
            if isinstance(conv, nn.Conv2d) and isinstance(norm, FrozenBatchNorm2d | nn.BatchNorm2d):
                _fold_into(conv, norm)
                setattr(parent, norm_name, nn.Identity())
    return module


def _conv_norm_pairs(parent: nn.Module) -> list[tuple[str, str]]:
    names = [name for name, _ in parent.named_children()]
    if isinstance(parent, nn.Sequential):
        return list(itertools.pairwise(names))
    return [(n, "bn" + n[4:]) for n in names if n.startswith("conv") and "bn" + n[4:] in names]


@torch.no_grad()
def _fold_into(conv: nn.Conv2d, norm: nn.Module) -> None:
    if isinstance(norm, nn.BatchNorm2d) and (norm.training or norm.running_var is None):
        raise ValueError("only eval-mode BatchNorm with running statistics can be folded")
    weight = norm.weight if norm.weight is not None else torch.ones_like(norm.running_var)
    bias = norm.bias if norm.bias is not None else torch.zeros_like(norm.running_var)
    # In float64, so folding adds no rounding of its own before any cast to FP16.
    scale = weight.double() * (norm.running_var.double() + norm.eps).rsqrt()
    shift = bias.double() - norm.running_mean.double() * scale
    if conv.bias is not None:
        shift = shift + conv.bias.double() * scale
    dtype = conv.weight.dtype
    conv.weight.copy_((conv.weight.double() * scale.view(-1, 1, 1, 1)).to(dtype))
    conv.bias = nn.Parameter(shift.to(dtype), requires_grad=False)


class InferenceNet(nn.Module):
    """A detector as compilers and exporters take it.

    Input: float32 [B, 3, H, W] in [0, 1], cast inside to the network's dtype and memory
    format. Output: a plain tuple ``(scmap, locref, pairwise, intermediate)`` (no pairwise when
    the network has no pairwise head), as TensorRT and ONNX want plain tensors;
    :meth:`to_output` turns it back into a :class:`DetectorOutput`.
    """

    def __init__(
        self, net: nn.Module, dtype: torch.dtype = torch.float32, channels_last: bool = False
    ) -> None:
        super().__init__()
        self.net = net
        self.dtype = dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.has_pairwise = getattr(net, "pairwise_head", None) is not None

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the returned tensors, in order."""
        return OUTPUT_NAMES if self.has_pairwise else ("scmap", "locref", "intermediate")

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        out = self.net(images.to(dtype=self.dtype, memory_format=self.memory_format))
        if self.has_pairwise:
            return tuple(out)
        return out.scmap, out.locref, out.intermediate

    def to_output(self, outputs: tuple[Tensor, ...] | list[Tensor]) -> DetectorOutput:
        """The tuple this module (or its compiled form) returned, as a :class:`DetectorOutput`."""
        return as_detector_output(outputs, self.has_pairwise)


def as_detector_output(
    outputs: tuple[Tensor, ...] | list[Tensor], has_pairwise: bool
) -> DetectorOutput:
    """An :class:`InferenceNet`'s tuple as a :class:`DetectorOutput` (an empty pairwise map
    for networks without that head)."""
    if has_pairwise:
        return DetectorOutput(*outputs)
    scmap, locref, intermediate = outputs
    b, _, h, w = scmap.shape
    return DetectorOutput(scmap, locref, scmap.new_zeros(b, 0, h, w), intermediate)


def prepare(
    net: nn.Module,
    precision: str = "fp16",
    channels_last: bool = True,
    device: str | torch.device | None = None,
) -> InferenceNet:
    """A deployment copy of ``net``: eval mode, BatchNorm folded, cast to ``precision``, moved
    to ``device`` (default: where ``net`` is), optionally channels-last. ``net`` is unchanged."""
    check_precision(precision)
    device = torch.device(device) if device is not None else device_of(net)
    copied = fold_batchnorm(copy.deepcopy(net).eval())
    copied = copied.to(device=device, dtype=_DTYPES[precision])
    if channels_last:
        copied = copied.to(memory_format=torch.channels_last)
    for p in copied.parameters():
        p.requires_grad_(False)
    return InferenceNet(copied, _DTYPES[precision], channels_last).eval()


def check_precision(precision: str) -> None:
    """Raise ``ValueError`` unless ``precision`` is one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")


def device_of(net: nn.Module) -> torch.device:
    """The device of ``net``'s first parameter or buffer (the CPU for an empty one)."""
    for tensor in net.parameters():
        return tensor.device
    for tensor in net.buffers():
        return tensor.device
    return torch.device("cpu")


def first_line(exc: BaseException) -> str:
    """An exception as one short log line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
