"""The detector: frames (or images) → :class:`~deepercut.types.Candidates`, one object for
``deepercut run``, ``deepercut eval``, the pairwise fit of ``deepercut train`` and the detector
actors.

:class:`NetworkDetector` letterboxes a batch into the network input, runs the network on its
:class:`~deepercut.detection.runner.Runner` (the backend: ``auto`` picks TensorRT, then
``torch.compile`` on CUDA, ONNX Runtime on the CPU, eager as the last resort), extracts the
candidates on the device and maps them back to image pixels.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from deepercut.detection.runner import build_runner, custom_runner
from deepercut.detection.upload import PinnedUploader
from deepercut.model.candidates import CandidateParams, best_per_part, extract_candidate_tensors
from deepercut.model.io import Model
from deepercut.model.letterbox import Letterbox, letterbox_params, map_candidates
from deepercut.model.letterbox_image import apply_letterbox
from deepercut.model.net import STRIDE, DecodedMaps, DetectorOutput
from deepercut.skeleton import Skeleton
from deepercut.types import Candidates, Frame

__all__ = ["ANY_SIZE_BACKENDS", "NetworkDetector"]

log = logging.getLogger(__name__)

#: Backends that run any input size (the others are built for one).
ANY_SIZE_BACKENDS = ("eager", "custom")


class NetworkDetector:
    """A model's network as frames → candidates, batched, on a backend for ``device``.

    Args:
        model: the detector.
        input_hw: network input size (multiples of 16); default: the model's.
        params: candidate extraction settings.
        device: default ``cuda`` when available, else ``cpu``.
        backend: ``auto``, ``tensorrt``, ``compile``, ``onnxruntime`` or ``eager`` (see
            :func:`~deepercut.detection.runner.build_runner`).
        batch_size: the batch size compiled backends are optimised for; any batch runs.
        precision: ``fp16`` or ``fp32``; default FP16 on CUDA, FP32 on the CPU.
        cache_dir: TensorRT engine / ONNX model folder (default ``engines`` under
            ``$DEEPERCUT_CACHE`` or ``~/.cache/deepercut``; see :mod:`deepercut.private_cache`).
        threads: ONNX Runtime intra-op threads; default torch's thread count.
        forward: run this function instead of building a backend (``backend == "custom"``):
            float32 images [B, 3, H, W] → :class:`~deepercut.model.net.DetectorOutput`.

    Attributes:
        backend, reason, precision: the runner's (what runs, and why).
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
        forward: Callable[[Tensor], DetectorOutput] | None = None,
    ) -> None:
        self.model = model
        self.input_hw: tuple[int, int] = tuple(input_hw or model.input_hw)  # type: ignore[assignment]
        if self.input_hw[0] % 16 or self.input_hw[1] % 16:
            raise ValueError(f"input size must be a multiple of 16, got {self.input_hw}")
        self.params = params or CandidateParams()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.batch_size = batch_size
        self.net = model.net.to(self.device).eval()
        if forward is not None:
            self.runner = custom_runner(forward)
        else:
            self.runner = build_runner(
                self.net,
                self.input_hw,
                backend=backend,
                device=self.device,
                batch_size=batch_size,
                precision=precision or ("fp16" if self.device.type == "cuda" else "fp32"),
                cache_dir=cache_dir,
                threads=threads,
            )
        self.uploader = PinnedUploader(self.device) if self.device.type == "cuda" else None
        # With the network on ONNX Runtime (its own thread pool), torch only letterboxes and
        # extracts candidates: small tensors, where a second OpenMP thread costs more in
        # barriers than it gains, and many times more on a busy CPU (ORT's threads still
        # spinning, other processes): 1.4 s against 21 ms per 4-part crop measured under load.
        self.torch_threads = 1 if self.backend == "onnxruntime" else None
        self._any_size: NetworkDetector | None = None  # see resized()

    @property
    def skeleton(self) -> Skeleton:
        return self.model.skeleton

    @property
    def backend(self) -> str:
        return self.runner.backend

    @property
    def reason(self) -> str:
        return self.runner.reason

    @property
    def precision(self) -> str:
        return self.runner.precision

    def resized(self, input_hw: tuple[int, int]) -> NetworkDetector:
        """The same detector at another input size (e.g. an image run at its own scale).

        Backends of any input size (``eager``, ``custom``) are shared; a compiled one, built
        for :attr:`input_hw` only, is replaced by the eager backend at the same precision
        (built once, then shared by every size).
        """
        input_hw = (int(input_hw[0]), int(input_hw[1]))
        if input_hw[0] % 16 or input_hw[1] % 16:
            raise ValueError(f"input size must be a multiple of 16, got {input_hw}")
        if input_hw == self.input_hw:
            return self
        if self.backend not in ANY_SIZE_BACKENDS:
            if self._any_size is None:
                log.info("%s runs one input size: other sizes run on eager", self.backend)
                self._any_size = NetworkDetector(
                    self.model,
                    input_hw=self.input_hw,
                    params=self.params,
                    device=self.device,
                    backend="eager",
                    precision=self.precision,
                )
            return self._any_size.resized(input_hw)
        other = copy.copy(self)
        other.input_hw = input_hw
        return other

    def __call__(self, frames: Sequence[Frame]) -> list[Candidates]:
        """Candidates per frame, in image pixels (the engine's detector contract)."""
        return self.detect([f.image for f in frames])

    @torch.inference_mode()
    def detect(self, images: Sequence[np.ndarray]) -> list[Candidates]:
        """Candidates per uint8 H×W×3 RGB image (any sizes), in image pixels."""
        if not images:
            return []
        with _torch_threads(self.torch_threads):
            maps, boxes = self.maps(images)
            found = extract_candidate_tensors(
                maps.probs, maps.locref, maps.pairwise, STRIDE, self.params
            ).to_candidates()
        return [map_candidates(c, box) for c, box in zip(found, boxes, strict=True)]

    @torch.inference_mode()
    def best_per_part(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per image, float32 [1, P, 3]: each part's best cell, refined, in image pixels (the
        single-animal read-out of DeepLabCut and LSP's single-person protocol)."""
        if not images:
            return []
        with _torch_threads(self.torch_threads):
            maps, boxes = self.maps(images)
            best = best_per_part(maps.probs, maps.locref, STRIDE).cpu().numpy()
        out = []
        for kp, box in zip(best, boxes, strict=True):
            xy = box.to_image(kp[:, :2].astype(np.float64))
            out.append(np.concatenate([xy, kp[:, 2:]], axis=1)[None].astype(np.float32))
        return out

    def maps(self, images: Sequence[np.ndarray]) -> tuple[DecodedMaps, list[Letterbox]]:
        """The decoded maps of a batch (probabilities, offsets in input pixels) and each
        image's letterbox; use them before the next call (a backend may reuse the memory)."""
        batch, boxes = self.preprocess(images)
        return self.net.decode(self.runner(batch)), boxes

    def preprocess(self, images: Sequence[np.ndarray]) -> tuple[Tensor, list[Letterbox]]:
        """Letterbox uint8 H×W×3 RGB images into one float [B, 3, H, W] batch on the device:
        same-sized images in one go (on CUDA through pinned buffers), mixed sizes one by
        one."""
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(
                    f"expected uint8 H×W×3 RGB images, got {image.dtype} {image.shape}"
                )
        shape = images[0].shape
        if any(image.shape != shape for image in images):
            boxes = [letterbox_params(image.shape[:2], self.input_hw) for image in images]
            batch = [
                self._letterbox(image[None], box)[0]
                for image, box in zip(images, boxes, strict=True)
            ]
            return torch.stack(batch), boxes
        box = letterbox_params(shape[:2], self.input_hw)
        return self._letterbox(images, box), [box] * len(images)

    def _letterbox(self, images: Sequence[np.ndarray] | np.ndarray, box: Letterbox) -> Tensor:
        if self.uploader is not None:
            frames = self.uploader.upload(images)
        else:
            frames = torch.from_numpy(np.stack(images)).to(self.device)
        # Contiguous NCHW: compiled backends are specialised to the example batch's strides.
        batch = frames.permute(0, 3, 1, 2).float().contiguous()
        batch.div_(255)
        return apply_letterbox(batch, box)


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` for the block, then restored (``None``:
    unchanged). The setting is process-wide: only for blocks of the detection thread while
    no other thread runs torch (the engine's driver solves with numpy and numba)."""
    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
