"""Refuse HDF5 files that would run code when pandas reads them.

``pandas.read_hdf`` (through PyTables) unpickles two things: object columns, stored as
``VLArray`` nodes of ``ObjectAtom`` (one pickle per row, marked ``PSEUDOATOM=object``), and
any attribute whose raw value is a byte string ending in ``.`` (PyTables' "maybe pickled"
rule). Real DeepLabCut label files
hold only inert attribute pickles (``None``, lists of names, dicts of settings).
:func:`check_h5_has_no_code` reads every node and attribute raw with h5py, and
refuses object columns and any attribute pickle with an opcode that can import or call
(``GLOBAL``, ``REDUCE``, ``BUILD``, ``INST``, ``OBJ``, ``NEWOBJ``, extension codes, persistent
ids): an inert pickle can only build strings, numbers, lists, tuples, dicts and ``None``.
"""

from __future__ import annotations

import pickletools
from pathlib import Path

import numpy as np

#: Pickle opcodes that import a name, call something or hand data to outside code.
CODE_OPCODES = frozenset(
    {
        "GLOBAL",
        "STACK_GLOBAL",
        "REDUCE",
        "BUILD",
        "INST",
        "OBJ",
        "NEWOBJ",
        "NEWOBJ_EX",
        "EXT1",
        "EXT2",
        "EXT4",
        "PERSID",
        "BINPERSID",
    }
)


class PickledCode(ValueError):
    """An HDF5 file with content that would run code when unpickled."""


def is_inert_pickle(data: bytes) -> bool:
    """Whether unpickling ``data`` can only build plain data (or fail) and never run code.
    Opcodes run in order, so those before a parse error are the ones that would run."""
    try:
        for opcode, _, _ in pickletools.genops(data):
            if opcode.name in CODE_OPCODES:
                return False
    except Exception:  # not (entirely) a pickle: what parsed so far was inert
        return True
    return True


def check_h5_has_no_code(path: str | Path) -> None:
    """Raise :class:`PickledCode` when reading ``path`` with pandas could unpickle code.

    Read with h5py, which never unpickles (PyTables unpickles attributes as soon as a node is
    opened, so it cannot do this check).

    Raises:
        PickledCode: an object column or an attribute pickle that imports or calls.
        OSError: not an HDF5 file.
    """
    import h5py

    def check(where: str, obj: h5py.HLObject) -> None:
        for name in obj.attrs:
            try:
                raw = obj.attrs[name]
            except (OSError, TypeError):  # a type h5py cannot decode: not a byte string
                continue
            if name == "PSEUDOATOM" and _text(raw) == "object":
                raise PickledCode(
                    f"{path}: {where} is an object column (stored as pickles); label files "
                    "must hold numbers and strings only"
                )
            if isinstance(raw, np.bytes_ | bytes) and raw.endswith(b"."):
                if not is_inert_pickle(bytes(raw)):
                    raise PickledCode(
                        f"{path}: attribute {name!r} of {where} is a pickle that runs code"
                    )

    with h5py.File(path, "r") as h5:
        check("/", h5)
        h5.visititems(lambda name, obj: check("/" + name, obj))


def _text(raw: object) -> str | None:
    return bytes(raw).decode("ascii", "replace") if isinstance(raw, np.bytes_ | bytes) else None
