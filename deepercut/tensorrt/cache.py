"""An on-disk cache of built TensorRT engines, so that the second start is fast.

A key is the SHA-256 of everything an engine depends on: the network's weights (every
state-dict tensor's name, dtype, shape and bytes), the static input H×W, the batch range, the
precision, the GPU's name and the torch / torch-tensorrt / TensorRT versions. Changing any of
them gives a new key, so a stale engine is never loaded; old entries are simply left behind.

The directory is ``$DEEPERCUT_CACHE`` when set, else ``~/.cache/deepercut/engines``.
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

log = logging.getLogger(__name__)

#: Environment variable overriding the cache directory.
CACHE_ENV = "DEEPERCUT_CACHE"


def default_cache_dir() -> Path:
    """``$DEEPERCUT_CACHE`` or ``~/.cache/deepercut/engines``."""
    override = os.environ.get(CACHE_ENV)
    return Path(override) if override else Path.home() / ".cache" / "deepercut" / "engines"


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


class EngineCache:
    """A folder of serialised engines named by key, each with a JSON note of its key's fields.

    Args:
        directory: where engines live; default :func:`default_cache_dir`.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()

    def path(self, key: EngineKey, suffix: str = ".ep") -> Path:
        """Where the engine for ``key`` is (or will be) stored."""
        return self.directory / f"{key.digest[:32]}{suffix}"

    def lookup(self, key: EngineKey, suffix: str = ".ep") -> Path | None:
        """The stored engine's path, or ``None`` when there is none yet."""
        path = self.path(key, suffix)
        return path if path.is_file() else None

    def staging_path(self, key: EngineKey, suffix: str = ".ep") -> Path:
        """A temporary path to write a new engine to before :meth:`commit` moves it in place
        (so a reader never sees a half-written engine)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        return self.path(key, suffix).with_name(f"{key.digest[:32]}.{os.getpid()}.tmp{suffix}")

    def commit(self, key: EngineKey, staged: Path, suffix: str = ".ep") -> Path:
        """Move a staged engine into place and write its note; returns the final path."""
        path = self.path(key, suffix)
        os.replace(staged, path)
        note = dict(asdict(key), versions=dict(key.versions), digest=key.digest)
        path.with_suffix(".json").write_text(json.dumps(note, indent=2) + "\n")
        log.info("cached engine %s", path)
        return path
