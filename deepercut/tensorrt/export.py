"""Exporting the detector: ONNX (any runtime) and a serialised TensorRT ExportedProgram.

ONNX: the FP32 deployment network (:func:`~deepercut.tensorrt.network.prepare`: frozen
BatchNorm folded) with one input ``images`` float32 [batch, 3, H, W] in [0, 1] (ImageNet
normalisation is inside the graph) and outputs ``scmap``, ``locref``, ``pairwise``,
``intermediate`` (raw logits/offsets as :class:`~deepercut.model.net.DetectorOutput`; no
``pairwise`` for a network without that head). The batch dimension is dynamic, H×W static.
Exporter: torch's dynamo-based ``torch.onnx.export(dynamo=True)`` (needs ``onnxscript``) at
opset 18 by default; ``exporter="torchscript"`` selects the older TorchScript exporter. When
onnxruntime is installed the file is run on CPU and compared with the torch network.
"""

from __future__ import annotations

import copy
import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepercut.tensorrt.network import BackendUnavailable, InferenceNet, prepare
from deepercut.tensorrt.trt_module import build_tensorrt_module, require_tensorrt

#: Default ONNX opset (the dynamo exporter's native one in torch 2.13).
DEFAULT_OPSET = 18
EXPORTERS = ("dynamo", "torchscript")


class ExportMismatch(RuntimeError):
    """The exported model's outputs differ from the torch network's beyond tolerance."""


@dataclass
class OnnxExport:
    """What :func:`export_onnx` wrote and how it was checked.

    Attributes:
        path: the ``.onnx`` file.
        opset: its ONNX opset.
        exporter: ``dynamo`` or ``torchscript``.
        input_hw: the static input H×W.
        max_batch: the largest batch the export was declared for.
        outputs: output names in order.
        max_abs_diff: largest |onnxruntime − torch| over the outputs of a check batch, or
            ``None`` when not checked.
        checked: how it was checked (onnxruntime version) or why not.
    """

    path: Path
    opset: int
    exporter: str
    input_hw: tuple[int, int]
    max_batch: int
    outputs: tuple[str, ...]
    max_abs_diff: float | None
    checked: str


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    input_hw: tuple[int, int],
    *,
    max_batch: int = 32,
    opset: int = DEFAULT_OPSET,
    exporter: str = "dynamo",
    check: bool = True,
    rtol: float = 1e-3,
    atol: float = 1e-4,
) -> OnnxExport:
    """Write the detector as ONNX with a dynamic batch dimension.

    Args:
        model: a :class:`~deepercut.model.net.DeeperCut` (or a loaded ``Model``).
        path: the output file.
        input_hw: static H×W, multiples of 16.
        max_batch: largest batch size declared for the dynamic batch dimension.
        opset: ONNX opset.
        exporter: ``dynamo`` (needs ``onnxscript``) or ``torchscript``.
        check: when onnxruntime is installed, run a batch of 3 through it and compare with the
            torch network (|diff| <= atol + rtol·max|torch| per output).
        rtol, atol: that tolerance.

    Raises:
        ExportMismatch: the check failed.
        ValueError: bad arguments.
        BackendUnavailable: the dynamo exporter without ``onnxscript`` installed.
    """
    _check_export_args(exporter, input_hw, max_batch)
    net: nn.Module = getattr(model, "net", model)
    prepared = prepare(net, "fp32", channels_last=False, device="cpu")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = prepared.output_names
    example = torch.rand(2, 3, *input_hw)  # batch 2: a batch of 1 would be specialised
    dynamic = _dynamic_batch(exporter, max_batch, names)
    with torch.no_grad():
        torch.onnx.export(
            prepared,
            (example,),
            str(path),
            input_names=["images"],
            output_names=list(names),
            opset_version=opset,
            **dynamic,
        )
    report = OnnxExport(path, opset, exporter, tuple(input_hw), max_batch, names, None, "")
    if not check:
        report.checked = "not checked (check=False)"
    elif importlib.util.find_spec("onnxruntime") is None:
        report.checked = "not checked: onnxruntime is not installed"
    else:
        report.max_abs_diff, report.checked = _check_onnx(net, prepared, path, input_hw, rtol, atol)
    return report


def _check_export_args(exporter: str, input_hw: tuple[int, int], max_batch: int) -> None:
    """Refuse what :func:`export_onnx` cannot export, before exporting anything."""
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}; choose one of {EXPORTERS}")
    if input_hw[0] % 16 or input_hw[1] % 16:
        raise ValueError(f"input H×W must be multiples of 16, got {tuple(input_hw)}")
    if max_batch < 2:
        raise ValueError(f"max_batch must be >= 2 (a dynamic batch), got {max_batch}")
    if exporter == "dynamo" and importlib.util.find_spec("onnxscript") is None:
        raise BackendUnavailable(
            "the dynamo ONNX exporter needs onnxscript (pip install onnxscript), "
            "or choose exporter='torchscript'"
        )


def _dynamic_batch(exporter: str, max_batch: int, names: Sequence[str]) -> dict[str, Any]:
    """``torch.onnx.export``'s arguments declaring the dynamic batch: each exporter states it
    in its own argument."""
    if exporter == "dynamo":
        batch = torch.export.Dim("batch", min=1, max=max_batch)
        return {"dynamo": True, "dynamic_shapes": {"images": {0: batch}}, "external_data": False}
    axes = {name: {0: "batch"} for name in ("images", *names)}
    return {"dynamo": False, "dynamic_axes": axes}


def _check_onnx(
    net: nn.Module,
    prepared: InferenceNet,
    path: Path,
    input_hw: tuple[int, int],
    rtol: float,
    atol: float,
) -> tuple[float, str]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = torch.rand(3, 3, *input_hw, generator=torch.Generator().manual_seed(0))
    got = session.run(None, {"images": images.numpy()})
    # Against the caller's network as trained (unfolded, FP32), so folding is checked too.
    reference = copy.deepcopy(net).to("cpu").eval()
    with torch.no_grad():
        expected = reference(images)
    worst = 0.0
    named = dict(zip(prepared.output_names, got, strict=True))
    for name in prepared.output_names:
        ref = getattr(expected, name).numpy()
        out = named[name]
        if out.shape != ref.shape:
            raise ExportMismatch(f"ONNX output {name} has shape {out.shape}, torch {ref.shape}")
        diff = np.abs(out - ref)
        worst = max(worst, float(diff.max(initial=0.0)))
        if not np.all(diff <= atol + rtol * float(np.abs(ref).max(initial=0.0))):
            raise ExportMismatch(
                f"ONNX output {name} differs from torch by up to {float(diff.max()):.3g}"
            )
    return worst, f"onnxruntime {onnxruntime.__version__} CPU, batch 3, max |diff| {worst:.3g}"


def export_tensorrt(
    model: nn.Module,
    path: str | os.PathLike[str],
    input_hw: tuple[int, int],
    batch_range: tuple[int, int, int] = (1, 8, 32),
    precision: str = "fp16",
    device: str | torch.device = "cuda",
) -> Path:
    """Compile with torch-tensorrt and save the result as an ExportedProgram (``.ep``).

    Load it with ``import torch_tensorrt; torch.export.load(path).module()``: it takes
    float32 images [B, 3, H, W] in [0, 1] (min <= B <= max of ``batch_range``) and returns the
    tuple described in the module docstring, computed in ``precision``.

    Raises:
        BackendUnavailable: torch-tensorrt is not installed or ``device`` is not a GPU.
    """
    device = torch.device(device)
    require_tensorrt(device)
    net: nn.Module = getattr(model, "net", model)
    prepared = prepare(net, precision, channels_last=False, device=device)
    lo, opt, hi = batch_range
    if not 1 <= lo <= opt <= hi:
        raise ValueError(f"batch_range must be (min, opt, max) ascending, got {batch_range}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _, saved = build_tensorrt_module(prepared, input_hw, (lo, opt, hi), path=path)
    assert saved is not None  # with an explicit path, a failed save raises
    return saved
