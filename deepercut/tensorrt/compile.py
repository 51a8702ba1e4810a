"""The detector compiled for its device: torch-tensorrt, ``torch.compile`` or ONNX Runtime,
else eager.

:func:`compile_detector` builds the fastest backend it can and falls back along
``tensorrt → compile → eager`` (GPU) or ``onnxruntime → eager`` (CPU) with one log line
saying what it chose and why:

- ``tensorrt``: torch-tensorrt's dynamo path (``torch.export`` with a dynamic batch dimension
  and a static H×W, since a dynamic H/W through the transposed-convolution + skip path is known
  to fail), cached on disk (:mod:`deepercut.tensorrt.cache`) so the second start only loads it.
- ``compile``: ``torch.compile`` (default mode ``reduce-overhead``: Inductor kernels replayed
  as CUDA graphs), specialised to one batch size.
- ``onnxruntime``: the FP32 ONNX export on ONNX Runtime's CPU provider, cached and verified
  (:mod:`deepercut.tensorrt.ort`).
- ``eager``: the network as it is (``fp32``), or a copy with frozen BatchNorm folded into the
  convolutions, cast to FP16 and in channels-last layout (``fp16``).

Every compiled variant runs on a deployment copy (:func:`prepare`): frozen BatchNorm folded
into the preceding convolutions, cast to the precision, with the float32 → compute-dtype cast
inside the graph, so callers always pass float32 images in [0, 1]. The caller's network is
never modified. Imports only torch: usable on a GPU machine without PyAV, Ray or OR-Tools.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from deepercut.model.net import DetectorOutput
from deepercut.private_cache import UntrustedCache
from deepercut.tensorrt.cache import EngineCache, EngineKey
from deepercut.tensorrt.network import (
    BackendUnavailable,
    as_detector_output,
    check_precision,
    device_of,
    first_line,
    prepare,
)
from deepercut.tensorrt.ort import OrtForward, cached_onnx, onnxruntime_available
from deepercut.tensorrt.safe_load import UnsafeArchive, load_exported_program
from deepercut.tensorrt.trt_module import build_tensorrt_module, require_tensorrt

log = logging.getLogger(__name__)

#: Backends :func:`compile_detector` accepts (``auto``: the best one the device allows).
BACKENDS = ("auto", "tensorrt", "compile", "onnxruntime", "eager")
_CHAINS = {
    "auto": ("tensorrt", "compile", "eager"),
    "tensorrt": ("tensorrt", "compile", "eager"),
    "compile": ("compile", "eager"),
    "onnxruntime": ("onnxruntime", "eager"),
    "eager": ("eager",),
}


@dataclass
class CompiledDetector:
    """A built detector backend: float32 images [B, 3, H, W] → :class:`DetectorOutput`.

    Calls with a batch size the backend was not built for are padded (and split above the
    largest size), so any batch works. Outputs may live in memory the next call reuses (CUDA
    graphs), so use them before calling again.

    Attributes:
        backend: ``tensorrt``, ``compile`` or ``eager``.
        precision: ``fp16`` or ``fp32``.
        reason: why this backend was chosen (the fallbacks' errors, if any).
        input_hw: the static H×W compiled backends are built for (``None``: any).
        batch_range: (min, opt, max) batch sizes.
        batch_sizes: ``None`` (any batch runs as is) or the sizes it runs without padding:
            ``range(min, max + 1)`` for TensorRT, ``(opt,)`` for ``torch.compile``.
        cache_path: the TensorRT engine file, when cached.
        build_seconds: time spent building (or loading) the backend.
    """

    forward: Callable[[Tensor], Any]
    backend: str
    precision: str
    reason: str
    input_hw: tuple[int, int] | None
    batch_range: tuple[int, int, int]
    batch_sizes: range | tuple[int, ...] | None = None
    cache_path: Path | None = None
    build_seconds: float = 0.0
    to_output: Callable[[Any], DetectorOutput] = field(default=lambda out: out, repr=False)

    def __call__(self, images: Tensor) -> DetectorOutput:
        if self.batch_sizes is None or images.shape[0] in self.batch_sizes:
            return self.to_output(self.forward(images))
        largest = max(self.batch_sizes)
        chunks = images.split(largest)
        parts = []
        for chunk in chunks:
            n = chunk.shape[0]
            size = min(s for s in self.batch_sizes if s >= n)
            if size > n:  # pad with copies of the last image; their outputs are dropped
                chunk = torch.cat([chunk, chunk[-1:].expand(size - n, *chunk.shape[1:])])
            out = self.to_output(self.forward(chunk))
            # Several chunks: copy, as a CUDA-graph replay overwrites the previous outputs.
            parts.append([t[:n].clone() if len(chunks) > 1 else t[:n] for t in out])
        if len(parts) == 1:
            return DetectorOutput(*parts[0])
        return DetectorOutput(*(torch.cat(ts) for ts in zip(*parts, strict=True)))


def compile_detector(
    model: nn.Module,
    input_hw: tuple[int, int] | None,
    batch_range: tuple[int, int, int] | int = (1, 8, 32),
    precision: str = "fp16",
    backend: str = "auto",
    *,
    device: str | torch.device | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    compile_mode: str = "reduce-overhead",
    channels_last: bool = True,
    threads: int | None = None,
) -> CompiledDetector:
    """The detector on the best available backend, falling back ``tensorrt → compile → eager``.

    Args:
        model: a :class:`~deepercut.model.net.DeeperCut` (or a loaded ``Model``: its ``net``).
        input_hw: static input H×W, multiples of 16; compiled backends need it (``None``
            leaves only ``eager``).
        batch_range: (min, opt, max) batch sizes, or one size. TensorRT gets a dynamic batch
            over the range, optimised for ``opt``; ``torch.compile`` is specialised to ``opt``.
        precision: ``fp16`` (cast inside the graph) or ``fp32``.
        backend: ``auto`` (on CPU ``onnxruntime`` when installed, else ``eager``; on CUDA the
            whole GPU chain), ``tensorrt``, ``compile``, ``onnxruntime`` or ``eager``; a
            failing backend falls back to the next one.
        device: where it runs (default: where the network is).
        cache_dir: TensorRT engine folder (default ``engines`` under the cache root,
            ``$DEEPERCUT_CACHE`` or ``~/.cache/deepercut``); it must be private to the user
            (else engines are built but not cached, with a warning).
        compile_mode: ``torch.compile`` mode (``reduce-overhead``: CUDA graphs;
            ``max-autotune``: also benchmark kernel choices, minutes per shape; ``default``).
            Modes with CUDA graphs must run in the thread that built them (pytorch#123177).
        channels_last: channels-last layout for ``compile`` and FP16 ``eager``.
        threads: ONNX Runtime intra-op threads; default torch's thread count (the budget
            eager runs with).

    Returns:
        The built detector; its ``backend`` and ``reason`` say what was chosen and why (also
        logged as one line).
    """
    net: nn.Module = getattr(model, "net", model)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    check_precision(precision)
    bounds = _batch_range(batch_range)
    if input_hw is not None:
        input_hw = (int(input_hw[0]), int(input_hw[1]))
        if input_hw[0] % 16 or input_hw[1] % 16 or min(input_hw) <= 0:
            raise ValueError(f"input H×W must be positive multiples of 16, got {input_hw}")
    device = torch.device(device) if device is not None else device_of(net)
    chain, note = _backend_chain(backend, device, input_hw)
    threads = threads or torch.get_num_threads()
    spec = _Spec(
        net, input_hw, bounds, precision, device, cache_dir, compile_mode, channels_last, threads
    )
    return _build_first(chain, spec, note)


def _backend_chain(
    backend: str, device: torch.device, input_hw: tuple[int, int] | None
) -> tuple[tuple[str, ...], str]:
    """The backends to try, in order, and why that chain."""
    if backend == "auto" and device.type != "cuda":
        if onnxruntime_available() and input_hw is not None:
            return _CHAINS["onnxruntime"], "auto on CPU: ONNX Runtime installed"
        return ("eager",), "auto on CPU without ONNX Runtime (or an input size)"
    return _CHAINS[backend], "requested" if backend != "auto" else "auto on CUDA"


def _build_first(chain: tuple[str, ...], spec: _Spec, note: str) -> CompiledDetector:
    """The first backend of ``chain`` that builds (``eager`` always does, or raises); its
    reason says which were skipped and why, else ``note``."""
    skipped: list[str] = []
    for candidate in chain:
        started = time.perf_counter()
        try:
            built = _BUILDERS[candidate](spec)
        except Exception as exc:  # unavailable or failed to build: try the next one
            if candidate == "eager":
                raise
            skipped.append(f"{candidate} unavailable: {first_line(exc)}")
            continue
        built.build_seconds = time.perf_counter() - started
        # The builder's own notes (e.g. a refused cached engine) follow the choice's reason.
        built.reason = "; ".join([*(skipped or [note]), *([built.reason] if built.reason else [])])
        log.info(
            "detector backend: %s %s (%s)%s",
            built.backend,
            built.precision,
            built.reason,
            f", engine {built.cache_path}" if built.cache_path else "",
        )
        return built
    raise AssertionError("unreachable: eager never falls through")


@dataclass(frozen=True)
class _Spec:
    net: nn.Module
    input_hw: tuple[int, int] | None
    batch_range: tuple[int, int, int]
    precision: str
    device: torch.device
    cache_dir: str | os.PathLike[str] | None
    compile_mode: str
    channels_last: bool
    threads: int

    def example(self, batch: int) -> Tensor:
        if self.input_hw is None:
            raise BackendUnavailable("compiled backends need a static input H×W")
        # Under inference mode, like the real batches: compiled graphs specialise on it.
        with torch.inference_mode():
            return torch.rand(batch, 3, *self.input_hw, device=self.device)


def _build_eager(spec: _Spec) -> CompiledDetector:
    if spec.precision == "fp32":  # the baseline: the network exactly as given
        net = spec.net.to(spec.device).eval()
        return CompiledDetector(net, "eager", "fp32", "", spec.input_hw, spec.batch_range)
    prepared = prepare(spec.net, spec.precision, spec.channels_last, spec.device)
    return CompiledDetector(
        prepared,
        "eager",
        spec.precision,
        "",
        spec.input_hw,
        spec.batch_range,
        to_output=prepared.to_output,
    )


def _build_compile(spec: _Spec) -> CompiledDetector:
    opt = spec.batch_range[1]
    example = spec.example(opt)
    prepared = prepare(spec.net, spec.precision, spec.channels_last, spec.device)
    compiled = torch.compile(prepared, mode=spec.compile_mode, dynamic=False)

    def forward(images: Tensor) -> tuple[Tensor, ...]:
        # Each call is a new step: CUDA-graph trees may then reuse the previous outputs' memory
        # (callers use outputs before calling again, see CompiledDetector).
        torch.compiler.cudagraph_mark_step_begin()
        return compiled(images)

    with torch.inference_mode():
        for _ in range(3):  # CUDA graphs warm up, then record: all before the first frame
            forward(example)
    return CompiledDetector(
        forward,
        "compile",
        spec.precision,
        "",
        spec.input_hw,
        spec.batch_range,
        batch_sizes=(opt,),
        to_output=prepared.to_output,
    )


def _build_onnxruntime(spec: _Spec) -> CompiledDetector:
    if not onnxruntime_available():
        raise BackendUnavailable("onnxruntime is not installed (pip install onnx onnxruntime)")
    if spec.device.type != "cpu":
        raise BackendUnavailable("the onnxruntime backend runs on the CPU")
    if spec.precision != "fp32":
        raise BackendUnavailable("the onnxruntime backend runs in fp32")
    if spec.input_hw is None:
        raise BackendUnavailable("compiled backends need a static input H×W")
    lo, _, hi = spec.batch_range
    model, path = cached_onnx(spec.net, spec.input_hw, spec.batch_range, spec.cache_dir)
    forward = OrtForward(model, spec.threads)
    has_pairwise = getattr(spec.net, "pairwise_head", None) is not None
    forward(spec.example(lo))  # a session that cannot run fails here, not mid-stream
    return CompiledDetector(
        forward,
        "onnxruntime",
        "fp32",
        "",
        spec.input_hw,
        spec.batch_range,
        batch_sizes=range(1, max(2, hi) + 1),
        cache_path=path,
        to_output=functools.partial(as_detector_output, has_pairwise=has_pairwise),
    )


def _build_tensorrt(spec: _Spec) -> CompiledDetector:
    require_tensorrt(spec.device)
    lo, opt, hi = spec.batch_range
    import torch_tensorrt  # noqa: F401  (registers TensorRT's runtime ops: loading needs them)

    if spec.input_hw is None:
        raise BackendUnavailable("compiled backends need a static input H×W")
    key = EngineKey.of(spec.net, spec.input_hw, spec.batch_range, spec.precision, spec.device)
    module, path, notes = None, None, []
    cache: EngineCache | None = EngineCache(spec.cache_dir)
    try:
        cache.prepare()
    except (UntrustedCache, OSError) as exc:  # build anyway; a folder others control is unused
        notes.append(f"engine cache not used: {exc}")
        cache = None
    if cache is not None:
        try:
            data = cache.read(cache.entry(key))
            if data is not None:
                module = load_exported_program(data).module()
                path = cache.path(cache.entry(key))
        except (UntrustedCache, UnsafeArchive) as exc:  # rebuilt below, replacing it
            notes.append(f"cached engine refused: {exc}")
    for line in notes:
        log.warning("TensorRT %s", line)
    if module is None:
        prepared = prepare(spec.net, spec.precision, channels_last=False, device=spec.device)
        module, path = build_tensorrt_module(prepared, spec.input_hw, spec.batch_range, cache, key)
        del prepared  # the engine holds its own weights
    has_pairwise = getattr(spec.net, "pairwise_head", None) is not None
    with torch.inference_mode():
        for batch in sorted({lo, opt, hi}):  # the whole batch range works, not just one size
            module(spec.example(batch))
    return CompiledDetector(
        module,
        "tensorrt",
        spec.precision,
        "; ".join(notes),
        spec.input_hw,
        spec.batch_range,
        batch_sizes=range(lo, hi + 1),
        cache_path=path,
        to_output=functools.partial(as_detector_output, has_pairwise=has_pairwise),
    )


_BUILDERS: dict[str, Callable[[_Spec], CompiledDetector]] = {
    "tensorrt": _build_tensorrt,
    "compile": _build_compile,
    "onnxruntime": _build_onnxruntime,
    "eager": _build_eager,
}


def _batch_range(value: tuple[int, int, int] | int) -> tuple[int, int, int]:
    bounds = (value, value, value) if isinstance(value, int) else tuple(int(v) for v in value)
    if len(bounds) != 3 or not 1 <= bounds[0] <= bounds[1] <= bounds[2]:
        raise ValueError(
            f"batch_range must be (min, opt, max) with 1 <= min <= opt <= max, got {value!r}"
        )
    return bounds  # type: ignore[return-value]
