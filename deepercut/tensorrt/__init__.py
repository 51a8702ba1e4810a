"""Detector backends: torch-tensorrt, ``torch.compile``, ONNX Runtime (CPU), eager FP16; exports.

Lives inside the package (``deepercut.tensorrt``) so it never shadows NVIDIA's ``tensorrt``
module. Imports only torch (and numpy); torch-tensorrt, onnx and onnxruntime load on use.
"""

from deepercut.tensorrt.cache import EngineCache, EngineKey, default_cache_dir
from deepercut.tensorrt.compile import BACKENDS, CompiledDetector, compile_detector
from deepercut.tensorrt.export import OnnxExport, export_onnx, export_tensorrt
from deepercut.tensorrt.network import (
    PRECISIONS,
    BackendUnavailable,
    InferenceNet,
    fold_batchnorm,
    prepare,
)

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "BackendUnavailable",
    "CompiledDetector",
    "EngineCache",
    "EngineKey",
    "InferenceNet",
    "OnnxExport",
    "compile_detector",
    "default_cache_dir",
    "export_onnx",
    "export_tensorrt",
    "fold_batchnorm",
    "prepare",
]
