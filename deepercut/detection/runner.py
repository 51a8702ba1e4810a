"""The one interface between the detector and its backends (as DLC-Live's ``runner.py``).

A :class:`Runner` maps a float32 image batch [B, 3, H, W] in [0, 1] to the network's raw
:class:`~deepercut.model.net.DetectorOutput` and says which backend it is.
:func:`build_runner` builds one with :func:`~deepercut.tensorrt.compile_detector` (TensorRT,
``torch.compile``, ONNX Runtime or eager, with its fallbacks); :func:`custom_runner` wraps any
forward function (a test's hand-made maps, a benchmark's variant of the network).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor, nn

from deepercut.model.net import DetectorOutput
from deepercut.tensorrt.compile import BACKENDS, CompiledDetector, compile_detector

__all__ = ["BACKENDS", "Runner", "build_runner", "custom_runner"]


class Runner(Protocol):
    """A detector backend: images [B, 3, H, W] (float32, [0, 1]) → :class:`DetectorOutput`.

    Any batch size works (compiled backends pad or split it). Outputs may live in memory the
    next call reuses (CUDA graphs), so use them before calling again.

    Attributes:
        backend: ``tensorrt``, ``compile``, ``onnxruntime``, ``eager`` or ``custom``.
        precision: ``fp16`` or ``fp32``.
        reason: why this backend runs (the fallbacks' errors, if any).
        input_hw: the only input H×W it accepts, or ``None`` for any.
    """

    backend: str
    precision: str
    reason: str
    input_hw: tuple[int, int] | None

    def __call__(self, images: Tensor) -> DetectorOutput: ...


def build_runner(
    net: nn.Module,
    input_hw: tuple[int, int],
    *,
    backend: str = "auto",
    device: torch.device,
    batch_size: int = 8,
    precision: str = "fp32",
    cache_dir: str | None = None,
    threads: int | None = None,
) -> Runner:
    """The fastest backend among ``backend``'s fallback chain that builds and runs on
    ``device`` (see :func:`~deepercut.tensorrt.compile_detector`).

    Args:
        net: the eval-mode network on ``device`` (never modified).
        input_hw: the input H×W compiled backends are built for.
        backend: ``auto``, ``tensorrt``, ``compile``, ``onnxruntime`` or ``eager``.
        device: where it runs.
        batch_size: the batch size compiled backends are optimised for (TensorRT accepts 1 to
            ``batch_size``; ``torch.compile`` pads smaller batches to it).
        precision: ``fp16`` or ``fp32``.
        cache_dir: TensorRT engine / ONNX model folder (default: see
            :func:`~deepercut.tensorrt.default_cache_dir`).
        threads: ONNX Runtime intra-op threads; default torch's thread count.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    return compile_detector(
        net,
        input_hw,
        (1, batch_size, batch_size),
        precision,
        backend,
        device=device,
        cache_dir=cache_dir,
        # No CUDA graphs: the engine calls the detector from its detection thread, and
        # torch.compile's CUDA-graph trees assert across threads (pytorch#123177).
        compile_mode="default",
        threads=threads,
    )


def custom_runner(forward: Callable[[Tensor], DetectorOutput]) -> Runner:
    """``forward`` as a runner of any input size and batch (``backend == "custom"``)."""
    return CompiledDetector(
        forward, "custom", "fp32", "forward given", input_hw=None, batch_range=(1, 1, 1)
    )
