"""Which foreign model a path holds, from its files alone (nothing is read or converted)."""

from __future__ import annotations

import os
from pathlib import Path


def detect_source(path: str | os.PathLike[str]) -> str | None:
    """What ``path`` is: ``"pose-tensorflow"``, ``"dlc2"``, ``"dlc3"`` or None (not one of
    ours to convert: e.g. a deepercut checkpoint)."""
    path = Path(path)
    if path.is_dir():
        if (path / "config.yaml").is_file() and (path / "dlc-models-pytorch").is_dir():
            return "dlc3"
        if (path / "config.yaml").is_file() and (path / "dlc-models").is_dir():
            return "dlc2"
        if (path / "pytorch_config.yaml").is_file():
            return "dlc3"
        if (path / "pose_cfg.yaml").is_file():
            return "pose-tensorflow"
        return None
    if path.name.endswith(".yaml") and path.is_file():
        return "pose-tensorflow" if path.name != "pytorch_config.yaml" else "dlc3"
    if path.suffix == ".pt" and (path.parent / "pytorch_config.yaml").is_file():
        return "dlc3"
    if path.suffix in (".pt", ".pth"):
        return None
    index = path if path.name.endswith(".index") else path.with_name(path.name + ".index")
    if ".data-" in path.name:
        index = path.with_name(path.name[: path.name.index(".data-")] + ".index")
    return "pose-tensorflow" if index.is_file() else None
