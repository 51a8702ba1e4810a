"""The detector: its execution backend, batched pinned-memory input, and the network as the
engine's frames → candidates callable.

:func:`select_backend` turns a requested backend into a working forward function through
:func:`~deepercut.tensorrt.compile_detector`, falling back along ``tensorrt → compile →
eager`` (``onnxruntime → eager`` on CPU) when one is unavailable or fails to build (each
candidate is built and run once on an example batch, so a failure shows here and not
mid-stream). ``auto`` is ``onnxruntime`` on CPU when installed (else ``eager``) and the whole
GPU chain on CUDA.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from deepercut.model.candidates import CandidateParams
from deepercut.model.io import Model
from deepercut.model.letterbox import Letterbox, apply_letterbox, letterbox_params
from deepercut.model.predict import Forward, Predictor
from deepercut.tensorrt.compile import BACKENDS, CompiledDetector, compile_detector
from deepercut.types import Candidates, Frame

log = logging.getLogger(__name__)

__all__ = ["BACKENDS", "BatchedPredictor", "NetworkDetector", "PinnedUploader", "select_backend"]


def select_backend(
    name: str,
    net: nn.Module,
    device: str | torch.device,
    example: Tensor | None = None,
    precision: str = "fp32",
) -> tuple[Forward, str, str]:
    """A forward function for ``net`` on ``device``.

    Args:
        name: ``auto``, ``tensorrt``, ``compile``, ``onnxruntime`` or ``eager``.
        net: the detector (already on ``device``, eval mode).
        device: where it runs.
        example: an input batch [B, 3, H, W] giving the static H×W and the batch size compiled
            backends are built for; without it only ``eager`` can be built.
        precision: ``fp32`` or ``fp16`` (see :func:`~deepercut.tensorrt.compile_detector`).

    Returns:
        ``(forward, chosen, reason)``: the callable (``net`` itself for FP32 eager), the
        backend actually used and why (also logged as one line).
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {BACKENDS}")
    input_hw = None if example is None else (int(example.shape[-2]), int(example.shape[-1]))
    batch = 1 if example is None else int(example.shape[0])
    compiled = compile_detector(net, input_hw, batch, precision, name, device=device)
    return _as_forward(compiled), compiled.backend, compiled.reason


def _as_forward(compiled: CompiledDetector) -> Forward:
    if compiled.backend == "eager" and compiled.precision == "fp32":
        return compiled.forward  # the network itself: nothing to adapt
    return compiled


class PinnedUploader:
    """Host → GPU copies of uint8 frame batches through reused pinned buffers on a side stream.

    Frames are stacked straight into a page-locked buffer (one host copy, no allocation per
    batch), copied asynchronously on a dedicated CUDA stream, and the compute stream waits
    for that copy only where it uses the result. Two buffers alternate, so filling the next
    batch never waits for a copy still reading the previous one unless both are in flight.

    Args:
        device: the CUDA device.
        slots: pinned buffers in rotation.
    """

    def __init__(self, device: torch.device, slots: int = 2) -> None:
        if device.type != "cuda":
            raise ValueError(f"pinned uploads are for CUDA devices, got {device}")
        self.device = device
        self.stream = torch.cuda.Stream(device)
        self._buffers: list[Tensor | None] = [None] * slots
        self._copied: list[torch.cuda.Event | None] = [None] * slots
        self._next = 0

    def upload(self, images: Sequence[np.ndarray]) -> Tensor:
        """The images as one uint8 [B, H, W, 3] tensor on the device (usable on the current
        stream)."""
        slot, self._next = self._next, (self._next + 1) % len(self._buffers)
        shape = (len(images), *images[0].shape)
        if self._copied[slot] is not None:
            self._copied[slot].synchronize()  # the buffer's last copy has read it
        buffer = self._buffers[slot]
        if buffer is None or buffer.shape[1:] != shape[1:] or buffer.shape[0] < shape[0]:
            buffer = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
            self._buffers[slot] = buffer
        host = buffer[: shape[0]]
        np.stack(images, out=host.numpy())
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self.stream):
            batch = host.to(self.device, non_blocking=True)
            done = torch.cuda.Event()
            done.record(self.stream)
        self._copied[slot] = done
        compute.wait_event(done)
        batch.record_stream(compute)  # allocated on the copy stream, used on compute
        return batch


class BatchedPredictor(Predictor):
    """A :class:`~deepercut.model.predict.Predictor` that letterboxes a batch of same-sized
    frames (a video) in one go; on CUDA the uint8 frames go up through a
    :class:`PinnedUploader` (pinned buffers, asynchronous copy on a side stream).

    Frames of mixed sizes take the per-image path of the base class.
    """

    def __init__(
        self,
        model: Model,
        input_hw: tuple[int, int] | None = None,
        params: CandidateParams | None = None,
        device: str | torch.device = "cpu",
        forward: Forward | None = None,
    ) -> None:
        super().__init__(model, input_hw, params, device, forward)
        self.uploader = PinnedUploader(self.device) if self.device.type == "cuda" else None

    def preprocess(self, images: Sequence[np.ndarray]) -> tuple[Tensor, list[Letterbox]]:
        shape = images[0].shape
        if any(image.shape != shape for image in images) or images[0].dtype != np.uint8:
            return super().preprocess(images)
        if len(shape) != 3 or shape[2] != 3:
            raise ValueError(f"expected uint8 H×W×3 RGB images, got {shape}")
        if self.uploader is not None:
            frames = self.uploader.upload(images)
        else:
            frames = torch.from_numpy(np.stack(images)).to(self.device)
        # Contiguous NCHW: compiled backends are specialised to the example batch's strides.
        batch = frames.permute(0, 3, 1, 2).float().contiguous()
        batch.div_(255)
        box = letterbox_params(shape[:2], self.input_hw)
        return apply_letterbox(batch, box), [box] * len(images)


class NetworkDetector:
    """A model's network as the engine's detector: frames → candidates, batched, on the best
    backend for ``device`` (see :func:`~deepercut.tensorrt.compile_detector`).

    Args:
        model: the detector.
        input_hw: network input size (multiples of 16); default: the model's.
        params: candidate extraction settings.
        device: default ``cuda`` when available, else ``cpu``.
        backend: ``auto``, ``tensorrt``, ``compile``, ``onnxruntime`` or ``eager``.
        batch_size: the batch size compiled backends are optimised for (TensorRT accepts 1 to
            ``batch_size``; ``torch.compile`` pads smaller batches to it).
        precision: ``fp16`` or ``fp32``; default FP16 on CUDA, FP32 on the CPU.
        cache_dir: TensorRT engine / ONNX model folder (default ``engines`` under
            ``$DEEPERCUT_CACHE`` or ``~/.cache/deepercut``; see :mod:`deepercut.private_cache`).
        threads: ONNX Runtime intra-op threads; default torch's thread count.
    """

    def __init__(
        self,
        model: Model,
        *,
        input_hw: tuple[int, int] | None = None,
        params: CandidateParams | None = None,
        device: str | torch.device | None = None,
        backend: str = "auto",
        batch_size: int = 8,
        precision: str | None = None,
        cache_dir: str | None = None,
        threads: int | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.precision = precision or ("fp16" if self.device.type == "cuda" else "fp32")
        self.predictor = BatchedPredictor(model, input_hw, params=params, device=self.device)
        self.input_hw = self.predictor.input_hw
        self.compiled = compile_detector(
            self.predictor.net,
            self.input_hw,
            (1, batch_size, batch_size),
            self.precision,
            backend,
            device=self.device,
            cache_dir=cache_dir,
            # No CUDA graphs: the engine calls the detector from its detection thread, and
            # torch.compile's CUDA-graph trees assert across threads (pytorch#123177).
            compile_mode="default",
            threads=threads,
        )
        self.backend, self.reason = self.compiled.backend, self.compiled.reason
        self.predictor.forward = _as_forward(self.compiled)
        self.batch_size = batch_size

    def __call__(self, frames: Sequence[Frame]) -> list[Candidates]:
        # Batch sizes a compiled backend was not built for are padded by it.
        return self.predictor([f.image for f in frames])
