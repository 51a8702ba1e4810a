"""How much memory a ``.mat`` or ``.npz`` file would take once loaded, found before loading it.

Both formats compress: a few hundred KB of zeros inflate to hundreds of MB in
``scipy.io.loadmat`` / ``np.load``. :func:`check_mat_size` walks a MATLAB v5 file's top-level
elements and counts the inflated bytes of compressed ones by streaming them through zlib in
small chunks (nothing kept); :func:`check_npz_size` reads each ``.npy`` member's header
(shape and dtype) without its data. Both raise :class:`FileTooLarge` above a caller's limit,
and ``ValueError`` for malformed files.
"""

from __future__ import annotations

import math
import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

_MI_COMPRESSED = 15
_CHUNK = 1 << 16


class FileTooLarge(ValueError):
    """A file whose loaded content would exceed the allowed size (or need pickle)."""


def check_mat_size(path: str | os.PathLike[str], limit: int) -> int:
    """The bytes a MATLAB v5 file's variables inflate to; raises :class:`FileTooLarge` above
    ``limit``. Other versions (v4: uncompressed; v7.3: HDF5, which scipy cannot read) count
    their file size."""
    path = Path(path)
    total = 0
    with open(path, "rb") as f:
        header = f.read(128)
        if len(header) < 128 or header[126:128] not in (b"IM", b"MI"):
            return _within(path.stat().st_size, limit, path)
        endian = "<" if header[126:128] == b"IM" else ">"
        while tag := f.read(8):
            if len(tag) < 8:
                raise ValueError(f"{path}: truncated MATLAB element tag")
            kind, nbytes = struct.unpack(endian + "II", tag)
            if kind >> 16:  # a small element: data in the tag itself
                continue
            if kind == _MI_COMPRESSED:
                total += _inflated(f, nbytes, limit - total, path)
            else:
                total += nbytes
                f.seek(nbytes, os.SEEK_CUR)
            _within(total, limit, path)
    return total


def check_npz_size(path: str | os.PathLike[str], limit: int) -> int:
    """The bytes an ``.npz`` archive's arrays take once loaded, from their ``.npy`` headers;
    raises :class:`FileTooLarge` above ``limit`` or for object arrays (which need pickle)."""
    path = Path(path)
    total = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                with archive.open(name) as member:
                    fmt = np.lib.format
                    read_header = (
                        fmt.read_array_header_1_0
                        if fmt.read_magic(member) == (1, 0)
                        else fmt.read_array_header_2_0
                    )
                    shape, _, dtype = read_header(member, max_header_size=10_000)
                if dtype.hasobject:
                    raise FileTooLarge(f"{path}: {name} is an object array (pickled)")
                total += math.prod(shape) * dtype.itemsize
                _within(total, limit, path)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{path}: not an .npz archive ({exc})") from exc
    return total


def _inflated(f, nbytes: int, budget: int, path: Path) -> int:
    """Stream ``nbytes`` of zlib data from ``f``; the output size, stopping past ``budget``."""
    inflater = zlib.decompressobj()
    out, left = 0, nbytes
    try:
        while left > 0:
            chunk = f.read(min(_CHUNK, left))
            if not chunk:
                raise ValueError(f"{path}: truncated compressed MATLAB element")
            left -= len(chunk)
            data = inflater.decompress(chunk, _CHUNK)
            out += len(data)
            while inflater.unconsumed_tail and out <= budget:
                data = inflater.decompress(inflater.unconsumed_tail, _CHUNK)
                out += len(data)
            if out > budget:
                return out
    except zlib.error as exc:
        raise ValueError(f"{path}: corrupt compressed MATLAB element: {exc}") from exc
    return out


def _within(total: int, limit: int, path: Path) -> int:
    if total > limit:
        raise FileTooLarge(
            f"{path}: its content takes more than {limit / 2**20:.0f} MB once loaded "
            f"(at least {total / 2**20:.0f} MB); refusing to load it"
        )
    return total
