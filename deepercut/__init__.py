"""deepercut: streaming multi-person pose estimation (DeeperCut detector + SPLP solvers)."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from deepercut.skeleton import MPII14, Skeleton
from deepercut.types import Candidates, Frame, Poses, Problem, Solution

__version__ = "0.1.0"

# Heavy entry points (torch, PyAV, Ray) load on first use, so `import deepercut` stays light.
_LAZY = {
    "CorruptStreamError": "deepercut.streams",
    "Engine": "deepercut.engine.pipeline",
    "EngineConfig": "deepercut.engine.config",
    "load_model": "deepercut.model.io",
    "read_poses": "deepercut.streams",
    "solve": "deepercut.solvers",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deepercut' has no attribute {name!r}")


__all__ = [
    "MPII14",
    "Candidates",
    "CorruptStreamError",
    "Engine",
    "EngineConfig",
    "Frame",
    "Poses",
    "Problem",
    "Skeleton",
    "Solution",
    "__version__",
    "load_model",
    "read_poses",
    "solve",
]
