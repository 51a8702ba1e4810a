"""The detector on ONNX Runtime's CPU execution provider: the fast CPU backend.

The FP32 deployment network is exported once to ONNX (:func:`~deepercut.tensorrt.export_onnx`,
checked against torch when written) into the engine cache
(:mod:`deepercut.tensorrt.cache`) under a key covering the weights, the input H×W, the batch
range and the torch / onnx / onnxruntime versions. Next to the model file a sidecar
``.sha256`` records the SHA-256 of its bytes; a cached model is loaded only when its bytes
still match (the session is built from the very bytes that were hashed), else it is rebuilt.

ONNX Runtime uses ``threads`` intra-op threads (default: torch's thread count, the budget the
eager backend would use) and one inter-op thread.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from deepercut.private_cache import UntrustedCache
from deepercut.tensorrt.cache import EngineCache, EngineKey, library_versions

log = logging.getLogger(__name__)

#: Suffix of cached ONNX models.
MODEL_SUFFIX = ".onnx"


def onnxruntime_available() -> bool:
    """Whether the ONNX backend can be built here (onnxruntime and onnx installed)."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def onnx_versions() -> dict[str, str]:
    """The library versions a cached ONNX model depends on (exporter and runtime)."""
    versions = library_versions()
    for package in ("onnx", "onnxruntime"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return versions


def onnx_key(
    net: nn.Module, input_hw: tuple[int, int], batch_range: tuple[int, int, int]
) -> EngineKey:
    """The cache key of ``net`` exported for ``input_hw`` and ``batch_range`` (FP32, CPU)."""
    return EngineKey.of(
        net, input_hw, batch_range, "fp32", torch.device("cpu"), versions=onnx_versions()
    )


def cached_onnx(
    net: nn.Module,
    input_hw: tuple[int, int],
    batch_range: tuple[int, int, int],
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[bytes, Path | None]:
    """The verified bytes of ``net``'s ONNX export, from the cache or freshly exported.

    A cached entry that fails verification is replaced (with a warning). Returns the model's
    bytes and its cache path (``None`` when the export could not be stored: it still runs).
    """
    from deepercut.tensorrt.export import export_onnx

    key = onnx_key(net, input_hw, batch_range)
    cache = EngineCache(cache_dir)
    entry = cache.entry(key, MODEL_SUFFIX)
    try:
        data = cache.read(entry)
    except (UntrustedCache, OSError) as exc:  # rebuilt below (and replaced, if we may)
        log.warning("rebuilding the ONNX model: %s", exc)
        data = None
    if data is not None:
        return data, cache.path(entry)
    try:
        staged = cache.staging_path(entry)
    except (UntrustedCache, OSError) as exc:  # a folder others control is not used
        log.warning("ONNX model not cached: %s", exc)
        staged = None
    with tempfile.TemporaryDirectory() as scratch:
        target = staged if staged is not None else Path(scratch) / f"model{MODEL_SUFFIX}"
        # The TorchScript exporter: 5x faster to build than dynamo, same graph speed under ORT.
        # A dynamic batch needs max_batch >= 2 even when the engine only ever runs batches of 1.
        export_onnx(net, target, input_hw, max_batch=max(2, batch_range[2]), exporter="torchscript")
        data = target.read_bytes()
    path = None
    if staged is not None:
        try:
            path = cache.commit_engine(key, staged, MODEL_SUFFIX)
        except (UntrustedCache, OSError) as exc:  # a working model not cached is still a model
            log.warning("ONNX model built but not cached: %s", exc)
            staged.unlink(missing_ok=True)
    return data, path


class OrtForward:
    """An ONNX Runtime session as a forward function: float32 images [B, 3, H, W] → the tuple
    of output tensors (in :class:`~deepercut.tensorrt.network.InferenceNet` order).

    Args:
        model: the ONNX model's bytes.
        threads: intra-op threads.
    """

    def __init__(self, model: bytes, threads: int) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = onnxruntime.InferenceSession(
            model, options, providers=["CPUExecutionProvider"]
        )
        self.threads = threads
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, images: Tensor) -> tuple[Tensor, ...]:
        array = np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())
        outputs = self.session.run(self.output_names, {"images": array})
        return tuple(torch.from_numpy(out) for out in outputs)
