"""An on-disk cache of built TensorRT engines, so that the second start is fast.

A key is the SHA-256 of everything an engine depends on: the network's weights (every
state-dict tensor's name, dtype, shape and bytes), the static input H×W, the batch range, the
precision, the GPU's name and the torch / torch-tensorrt / TensorRT versions. Changing any of
them gives a new key, so a stale engine is never loaded; old entries are simply left behind.

The folder is ``engines`` under the cache root (``$DEEPERCUT_CACHE``, else
``~/.cache/deepercut``): a private, MAC-verified cache (:mod:`deepercut.private_cache`), and
engines are deserialised without any pickle path (:mod:`deepercut.tensorrt.safe_load`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

from deepercut.private_cache import CACHE_ENV, PrivateCache, folder

log = logging.getLogger(__name__)

__all__ = ["CACHE_ENV", "EngineCache", "EngineKey", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``engines`` under the cache root (``$DEEPERCUT_CACHE`` or ``~/.cache/deepercut``)."""
    return folder("engines")


def weights_digest(net: nn.Module) -> str:
    """SHA-256 over the state dict: names, dtypes, shapes and bytes of every tensor."""
    digest = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        value = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        # Raw bytes through a uint8 view: works for every dtype (numpy has no bfloat16).
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of the libraries an engine is tied to (``absent`` when not installed)."""
    versions = {"torch": torch.__version__, "cuda": str(torch.version.cuda)}
    for package in ("torch_tensorrt", "tensorrt"):
        try:
            versions[package] = metadata.version(package.replace("_", "-"))
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return versions


def device_name(device: torch.device) -> str:
    """The GPU's marketing name (``cpu`` for the CPU): engines are specific to a GPU model."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


@dataclass(frozen=True)
class EngineKey:
    """What a built engine depends on; :attr:`digest` is its cache key.

    Attributes:
        weights: :func:`weights_digest` of the network.
        input_hw: the static input height and width.
        batch_range: (min, opt, max) batch sizes of the engine's dynamic batch dimension.
        precision: ``fp16`` or ``fp32``.
        device: the GPU's name.
        versions: :func:`library_versions`.
    """

    weights: str
    input_hw: tuple[int, int]
    batch_range: tuple[int, int, int]
    precision: str
    device: str
    versions: tuple[tuple[str, str], ...]

    @classmethod
    def of(
        cls,
        net: nn.Module,
        input_hw: tuple[int, int],
        batch_range: tuple[int, int, int],
        precision: str,
        device: torch.device,
        versions: dict[str, str] | None = None,
    ) -> EngineKey:
        """The key of ``net`` built for these settings on ``device``."""
        return cls(
            weights=weights_digest(net),
            input_hw=(int(input_hw[0]), int(input_hw[1])),
            batch_range=tuple(int(b) for b in batch_range),  # type: ignore[arg-type]
            precision=precision,
            device=device_name(device),
            versions=tuple(sorted((versions or library_versions()).items())),
        )

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON of every field."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


class EngineCache(PrivateCache):
    """A private folder of serialised engines named by key, each with a MAC sidecar and a JSON
    note of its key's fields.

    Args:
        directory: where engines live; default :func:`default_cache_dir`.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        super().__init__(directory if directory is not None else default_cache_dir())

    @staticmethod
    def entry(key: EngineKey, suffix: str = ".pt2") -> str:
        """The file name of the engine for ``key``."""
        return f"{key.digest[:32]}{suffix}"

    def commit_engine(self, key: EngineKey, staged: Path, suffix: str = ".pt2") -> Path:
        """Sign a staged engine, move it into place and write its note; returns its path."""
        path = self.commit(self.entry(key, suffix), staged)
        note = dict(asdict(key), versions=dict(key.versions), digest=key.digest)
        path.with_suffix(".json").write_text(json.dumps(note, indent=2) + "\n")
        log.info("cached engine %s", path)
        return path
