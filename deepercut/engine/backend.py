"""The detector: its execution backend, batched pinned-memory input, and the network as the
engine's frames → candidates callable.

:func:`select_backend` turns a requested backend into a working forward function, falling back
along ``tensorrt → compile → eager`` when one is unavailable or fails to build (each candidate
is built and run once on an example batch, so a failure shows here and not mid-stream).
``auto`` is ``eager`` on CPU (compilation costs minutes and rarely pays off there) and the
whole chain on CUDA.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from deepercut.model.candidates import CandidateParams
from deepercut.model.io import Model
from deepercut.model.letterbox import Letterbox, apply_letterbox, letterbox_params
from deepercut.model.predict import Forward, Predictor
from deepercut.types import Candidates, Frame

log = logging.getLogger(__name__)

#: Accepted backend names.
BACKENDS = ("auto", "tensorrt", "compile", "eager")


def select_backend(
    name: str, net: nn.Module, device: str | torch.device, example: Tensor | None = None
) -> tuple[Forward, str, str]:
    """A forward function for ``net`` on ``device``.

    Args:
        name: ``auto``, ``tensorrt``, ``compile`` or ``eager``.
        net: the detector (already on ``device``, eval mode).
        device: where it runs.
        example: an input batch [B, 3, H, W] on ``device`` to build and check compiled
            backends with; required for ``tensorrt``/``compile``. Compiled graphs are
            specialised to its shape, strides and inference-mode flag, so make it like the
            real batches (contiguous, created under ``torch.inference_mode()``).

    Returns:
        ``(forward, chosen, reason)``: the callable, the backend actually used and why (also
        logged as one line).
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {BACKENDS}")
    device = torch.device(device)
    if name == "eager":
        return _chosen(net, "eager", "requested")
    if name == "auto" and device.type != "cuda":
        return _chosen(net, "eager", "auto on CPU: compilation rarely pays off there")
    chain = {"auto": ("tensorrt", "compile"), "tensorrt": ("tensorrt", "compile")}.get(
        name, ("compile",)
    )
    skipped: list[str] = []
    for candidate in chain:
        try:
            forward = _BUILDERS[candidate](net, device, example)
        except Exception as exc:  # unavailable or failed to build: try the next one
            skipped.append(f"{candidate} unavailable: {_first_line(exc)}")
            continue
        if skipped:
            reason = "; ".join(skipped)
        else:
            reason = "requested" if candidate == name else "auto: best available on CUDA"
        return _chosen(forward, candidate, reason)
    return _chosen(net, "eager", "; ".join(skipped))


def _chosen(forward: Forward, chosen: str, reason: str) -> tuple[Forward, str, str]:
    log.info("detector backend: %s (%s)", chosen, reason)
    return forward, chosen, reason


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _check(forward: Forward, example: Tensor) -> Forward:
    with torch.inference_mode():
        forward(example)
    return forward


def _need_example(example: Tensor | None) -> Tensor:
    if example is None:
        raise ValueError("an example batch is needed to build a compiled backend")
    return example


def _build_tensorrt(net: nn.Module, device: torch.device, example: Tensor | None) -> Forward:
    if device.type != "cuda":
        raise RuntimeError("TensorRT needs a CUDA device")
    if importlib.util.find_spec("torch_tensorrt") is None:
        raise RuntimeError("torch_tensorrt is not installed")
    example = _need_example(example)
    import torch_tensorrt  # noqa: F401  (registers the torch.compile backend)

    compiled = torch.compile(net, backend="torch_tensorrt", dynamic=False)
    return _check(compiled, example)


def _build_compile(net: nn.Module, device: torch.device, example: Tensor | None) -> Forward:
    example = _need_example(example)
    compiled = torch.compile(net, dynamic=False)
    return _check(compiled, example)


_BUILDERS: dict[str, Callable[[nn.Module, torch.device, Tensor | None], Forward]] = {
    "tensorrt": _build_tensorrt,
    "compile": _build_compile,
}


class BatchedPredictor(Predictor):
    """A :class:`~deepercut.model.predict.Predictor` that letterboxes a batch of same-sized
    frames (a video) in one go, staging it in pinned memory for an asynchronous copy to CUDA.

    Frames of mixed sizes take the per-image path of the base class.
    """

    def preprocess(self, images: Sequence[np.ndarray]) -> tuple[Tensor, list[Letterbox]]:
        shape = images[0].shape
        if any(image.shape != shape for image in images) or images[0].dtype != np.uint8:
            return super().preprocess(images)
        if len(shape) != 3 or shape[2] != 3:
            raise ValueError(f"expected uint8 H×W×3 RGB images, got {shape}")
        host = torch.from_numpy(np.stack(images))
        if self.device.type == "cuda":
            host = host.pin_memory()
        # Contiguous NCHW: compiled backends are specialised to the example batch's strides.
        batch = host.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().contiguous()
        batch.div_(255)
        box = letterbox_params(shape[:2], self.input_hw)
        return apply_letterbox(batch, box), [box] * len(images)


class NetworkDetector:
    """A model's network as the engine's detector: frames → candidates, batched, on the best
    backend for ``device`` (see :func:`select_backend`).

    Args:
        model: the detector.
        input_hw: network input size (multiples of 16); default: the model's.
        params: candidate extraction settings.
        device: default ``cuda`` when available, else ``cpu``.
        backend: ``auto``, ``tensorrt``, ``compile`` or ``eager``.
        batch_size: the batch size compiled backends are built for (smaller batches are padded).
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
    ) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.predictor = BatchedPredictor(model, input_hw, params=params, device=self.device)
        self.input_hw = self.predictor.input_hw
        with torch.inference_mode():  # like the real batches, or compiled graphs recompile
            example = torch.zeros((batch_size, 3, *self.input_hw), device=self.device)
        forward, self.backend, self.reason = select_backend(
            backend, self.predictor.net, self.device, example
        )
        self.predictor.forward = forward
        self.batch_size = batch_size

    def __call__(self, frames: Sequence[Frame]) -> list[Candidates]:
        images = [f.image for f in frames]
        if self.backend != "eager" and len(images) < self.batch_size:
            # Compiled backends are specialised to the example's batch size.
            images += [images[-1]] * (self.batch_size - len(images))
        return self.predictor(images)[: len(frames)]
