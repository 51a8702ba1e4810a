"""Files of per-class logistic models (pairwise and temporal): plain arrays plus JSON metadata in
one ``.npz``, loaded without pickle and size-checked before anything inflates."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deepercut.bounded_files import check_npz_size

#: Arrays of a file of per-class logistic models (pairwise and temporal).
LOGISTIC_ARRAYS = ("weights", "feature_mean", "feature_std")
#: Most bytes a pairwise/temporal model file's arrays may take (real ones: a few KB).
MAX_NPZ_BYTES = 64 << 20


def save_npz(path: str | Path, meta: dict, **arrays: np.ndarray) -> None:
    """Write ``arrays`` and a JSON ``meta`` to one ``.npz`` that loads without pickle."""
    with open(path, "wb") as fh:
        np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)


def load_npz(
    path: str | Path,
    kind: str,
    file_format: str,
    version: int,
    features: Sequence[str],
    required: Sequence[str],
) -> tuple[dict[str, np.ndarray], dict]:
    """Arrays and metadata of a file written by :func:`save_npz`, checked against the
    ``file_format``, ``version`` and ``features`` this code writes; arrays larger than
    :data:`MAX_NPZ_BYTES` in all are refused from their headers, before loading.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable ``kind`` file (e.g. "pairwise model"), another version or
            feature list, or missing ``required`` arrays.
    """
    try:
        check_npz_size(path, MAX_NPZ_BYTES)  # from the headers, before anything inflates
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with data:
            arrays = {key: data[key] for key in data.files}
        meta = json.loads(str(arrays["meta"]))
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a deepercut {kind} file ({err})") from err
    if not isinstance(meta, dict) or meta.get("format") != file_format:
        raise ValueError(f"{path}: not a deepercut {kind} file (format mismatch)")
    if meta.get("version") != version:
        raise ValueError(f"{path}: {kind} version {meta.get('version')!r}, expected {version}")
    if meta.get("features") != list(features):
        raise ValueError(
            f"{path}: {kind} features {meta.get('features')} differ from this code's "
            f"{list(features)}"
        )
    missing = set(required) - arrays.keys()
    if missing:
        raise ValueError(f"{path}: {kind} file lacks arrays {sorted(missing)}")
    return arrays, meta
