"""Building a TensorRT engine with torch-tensorrt: the dynamo path, a dynamic batch and a
static H×W, saved as an ExportedProgram (for the ``tensorrt`` backend and ``deepercut export``).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch
from torch import nn

from deepercut.tensorrt.cache import EngineCache, EngineKey
from deepercut.tensorrt.network import BackendUnavailable, InferenceNet, device_of, first_line

log = logging.getLogger(__name__)


def require_tensorrt(device: torch.device) -> None:
    """Raise :class:`BackendUnavailable` unless torch-tensorrt can run on ``device``."""
    if importlib.util.find_spec("torch_tensorrt") is None:
        raise BackendUnavailable("torch_tensorrt is not installed (pip install -e '.[gpu]')")
    if device.type != "cuda":
        raise BackendUnavailable("TensorRT needs a CUDA device")


def build_tensorrt_module(
    prepared: InferenceNet,
    input_hw: tuple[int, int],
    batch_range: tuple[int, int, int],
    cache: EngineCache | None = None,
    key: EngineKey | None = None,
    path: Path | None = None,
) -> tuple[nn.Module, Path | None]:
    """Compile a prepared network with torch-tensorrt (dynamo IR, dynamic batch, static H×W)
    and save it as an ExportedProgram to ``path`` or into ``cache`` under ``key`` (neither:
    not saved).

    Returns the compiled module and where it was saved (``None`` when not saved or saving
    failed: the module still works, the next start just builds again).
    """
    import torch_tensorrt

    lo, opt, hi = batch_range
    device = device_of(prepared)
    # torch.export specialises a dimension of size 1, so a dynamic batch is traced with >= 2.
    traced = opt if opt >= 2 or lo == hi else 2
    with torch.inference_mode():
        example = torch.rand(traced, 3, *input_hw, device=device)
    dynamic = {"images": {0: torch.export.Dim("batch", min=lo, max=hi)}} if hi > lo else None
    program = torch.export.export(prepared, (example,), dynamic_shapes=dynamic, strict=False)
    spec = torch_tensorrt.Input(
        min_shape=(lo, 3, *input_hw),
        opt_shape=(opt, 3, *input_hw),
        max_shape=(hi, 3, *input_hw),
        dtype=torch.float32,
    )
    module = torch_tensorrt.dynamo.compile(program, inputs=[spec])
    if path is None and cache is None:
        return module, None
    if path is None and key is None:
        raise ValueError("a cache needs the engine's key")
    saved: Path | None = None
    try:
        target = path if path is not None else cache.staging_path(cache.entry(key))
        torch_tensorrt.save(
            module,
            str(target),
            output_format="exported_program",
            arg_inputs=[example],
            dynamic_shapes=dynamic,
        )
        saved = target if path is not None else cache.commit_engine(key, target)
    except Exception as exc:  # a working engine that could not be saved is still an engine
        if path is not None:
            raise
        log.warning("TensorRT engine built but not cached: %s", first_line(exc))
    return module, saved
