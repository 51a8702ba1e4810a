"""Loading a model from a path: a deepercut checkpoint (:mod:`deepercut.model.checkpoint`),
the bundled model, or a pose-tensorflow model or DeepLabCut project/snapshot, converted once and
cached (:mod:`deepercut.model.convert`, imported only for those).

The checkpoint format's names are re-exported here, where most callers import them.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import torch

from deepercut.model.checkpoint import (
    DEFAULT_MODEL,
    FORMAT,
    MAX_INPUT_SIDE,
    OWN_NETWORK,
    VERSION,
    CheckpointError,
    Model,
    load_model_bytes,
    model_from_checkpoint,
    pairwise_state,
    read_checkpoint_file,
    save_model,
)
from deepercut.model.external.formats import detect_source

__all__ = [
    "DEFAULT_MODEL",
    "FORMAT",
    "MAX_INPUT_SIDE",
    "OWN_NETWORK",
    "VERSION",
    "CheckpointError",
    "Model",
    "load_model",
    "load_model_bytes",
    "pairwise_state",
    "save_model",
]


def load_model(
    path: str | os.PathLike[str] | None = None, map_location: str | torch.device = "cpu"
) -> Model:
    """Load a checkpoint; with no path, the small model bundled with the package.

    ``path`` may also be a pose-tensorflow model or a DeepLabCut project, train folder or
    snapshot: it is converted on first use and the result cached (keyed by the hashes of the
    files it was converted from), see :func:`deepercut.model.convert.import_model`.

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointError: the file is corrupt, not a deepercut model, or does not fit its network
            (for imported models: :class:`~deepercut.model.convert.WeightsMismatch`,
            :class:`~deepercut.model.convert.UnsupportedArchitecture`).
    """
    if path is None:
        with resources.as_file(resources.files("deepercut") / "assets" / DEFAULT_MODEL) as p:
            return load_model(p, map_location)
    path = Path(path)
    external = detect_source(path)
    if external is not None and not (path.is_file() and path.suffix == ".pt"):
        return _convert(path, map_location)
    if not path.is_file():
        raise FileNotFoundError(f"no model checkpoint at {path}")
    ckpt = read_checkpoint_file(path, str(path), map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        if external is not None:  # a DeepLabCut 3 snapshot, not one of ours
            return _convert(path, map_location)
        raise CheckpointError(f"{path} is not a deepercut model (missing format {FORMAT!r})")
    return model_from_checkpoint(ckpt, str(path))


def _convert(path: Path, map_location: str | torch.device) -> Model:
    """A foreign model converted (or taken from the conversion cache)."""
    # Imported here: the converter is large and only foreign models need it.
    from deepercut.model.convert import import_model

    return import_model(path, map_location=map_location)
