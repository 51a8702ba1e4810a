"""Read TensorFlow V2 checkpoints (``PREFIX.index`` + ``PREFIX.data-*``) without TensorFlow.

The format, as TensorFlow's ``tensor_bundle`` writes it:

- ``PREFIX.index`` is a LevelDB-style table (SSTable). It ends in a 48-byte footer: two block
  handles (meta-index, index; each a varint64 offset and size), zero padding to 40 bytes and the
  8-byte magic ``0xdb4775248b80fb57``. The index block maps the last key of every data block to
  that block's handle. Every block is followed by a 5-byte trailer: a compression byte (TF
  writes 0 = none) and the masked CRC32C of the block and that byte.
- A block is a run of entries ``varint32 shared, varint32 non_shared, varint32 value_len,
  key[shared:] bytes, value bytes``, where a key shares its first ``shared`` bytes with the
  previous key, then a ``uint32`` array of restart offsets and its ``uint32`` length. We scan
  blocks front to back, so restarts only mark where the entries end.
- Keys are tensor names, sorted. The value of the empty key ``""`` is a ``BundleHeaderProto``
  (``num_shards`` = 1, ``endianness`` = 2, ``version`` = 3); every other value is a
  ``BundleEntryProto``: ``dtype`` = 1, ``shape`` = 2 (``TensorShapeProto``: repeated ``dim`` =
  2 with ``size`` = 1), ``shard_id`` = 3, ``offset`` = 4, ``size`` = 5, ``crc32c`` = 6
  (fixed32), ``slices`` = 7. Those few fields are decoded here from the protobuf wire format
  rather than depending on the ``protobuf`` package.
- A numeric tensor is ``size`` raw bytes at ``offset`` of ``PREFIX.data-{shard:05d}-of-
  {num_shards:05d}``, C order, in the header's byte order; ``crc32c`` is the masked CRC32C of
  those bytes.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_MAGIC = 0xDB4775248B80FB57
_FOOTER_LEN = 48
_MASK_DELTA = 0xA282EAD8

#: TensorFlow ``DataType`` enum values we can read, as numpy dtypes (bfloat16 is widened).
_DTYPES: dict[int, str] = {
    1: "float32",
    2: "float64",
    3: "int32",
    4: "uint8",
    5: "int16",
    6: "int8",
    9: "int64",
    10: "bool",
    14: "bfloat16",
    17: "uint16",
    19: "float16",
    22: "uint32",
    23: "uint64",
}
_ITEMSIZE = {"bfloat16": 2}


class CheckpointFormatError(ValueError):
    """A file that is not a readable TensorFlow V2 checkpoint, or a corrupt one."""


@dataclass(frozen=True)
class TensorEntry:
    """Where and what one stored tensor is (a decoded ``BundleEntryProto``).

    Attributes:
        dtype: numpy dtype name (``"bfloat16"`` is read as float32), or ``None`` when TF's
            type is not a plain numeric one (strings, resources, variants).
        tf_dtype: TensorFlow's ``DataType`` number.
        shape: dimensions.
        shard_id, offset, size: location of the bytes in the data files.
        crc32c: the masked CRC32C TensorFlow stored for them.
        sliced: the tensor is saved in slices (partitioned variables; not supported).
    """

    dtype: str | None
    tf_dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int | None
    sliced: bool


# ---------------------------------------------------------------------- checksums


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # Castagnoli, reflected
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


def _crc32c_python(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _fast_crc32c():
    """A compiled CRC32C when one is installed (``google-crc32c`` or ``crc32c``), else None."""
    try:
        import google_crc32c  # type: ignore[import-not-found]

        return lambda data: google_crc32c.value(bytes(data))
    except ImportError:
        pass
    try:
        import crc32c  # type: ignore[import-not-found]

        return crc32c.crc32c
    except ImportError:
        return None


_FAST_CRC = _fast_crc32c()


def crc32c(data: bytes) -> int:
    """CRC32C (Castagnoli) of ``data``: compiled when available, else pure Python (slow)."""
    return _FAST_CRC(data) if _FAST_CRC is not None else _crc32c_python(data)


def masked_crc32c(data: bytes) -> int:
    """LevelDB/TensorFlow's masked CRC: rotate right by 15 bits and add a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


# ---------------------------------------------------------------------- wire format


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``: ``(value, next position)``."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointFormatError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CheckpointFormatError("varint longer than 10 bytes")


def _signed64(value: int) -> int:
    """An int64 protobuf field read as an unsigned varint (negatives are 10-byte varints)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """``(field number, wire type, value)`` of a protobuf message, in order."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        else:
            raise CheckpointFormatError(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise CheckpointFormatError("truncated protobuf message")
        yield number, wire, value


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    dims = []
    for number, _, value in _fields(buf):
        if number == 2:  # dim
            size = 0
            for n, _, v in _fields(value):  # type: ignore[arg-type]
                if n == 1:
                    size = _signed64(v)  # type: ignore[arg-type]
            dims.append(size)
        elif number == 3 and value:  # unknown_rank
            raise CheckpointFormatError("tensor of unknown rank")
    return tuple(dims)


def _parse_entry(buf: bytes) -> TensorEntry:
    dtype, shape, shard, offset, size, crc, sliced = 0, (), 0, 0, 0, None, False
    for number, _, value in _fields(buf):
        if number == 1:
            dtype = value
        elif number == 2:
            shape = _parse_shape(value)  # type: ignore[arg-type]
        elif number == 3:
            shard = value
        elif number == 4:
            offset = _signed64(value)  # type: ignore[arg-type]
        elif number == 5:
            size = _signed64(value)  # type: ignore[arg-type]
        elif number == 6:
            crc = value
        elif number == 7:
            sliced = True
    return TensorEntry(
        _DTYPES.get(dtype), dtype, shape, shard, offset, size, crc, sliced  # type: ignore[arg-type]
    )


def _parse_header(buf: bytes) -> tuple[int, str]:
    """``(num_shards, byte order)`` of a ``BundleHeaderProto``."""
    num_shards, endian = 1, "<"
    for number, _, value in _fields(buf):
        if number == 1:
            num_shards = value  # type: ignore[assignment]
        elif number == 2:
            endian = ">" if value == 1 else "<"
    return num_shards, endian


# ---------------------------------------------------------------------- table


def _block(data: bytes, handle: tuple[int, int], verify: bool, where: str) -> bytes:
    offset, size = handle
    end = offset + size + 5
    if end > len(data):
        raise CheckpointFormatError(f"{where}: block at {offset} runs past the end of the file")
    block, kind = data[offset : offset + size], data[offset + size]
    if kind != 0:
        raise CheckpointFormatError(
            f"{where}: compressed index block (type {kind}); TensorFlow writes uncompressed ones"
        )
    if verify:
        (stored,) = struct.unpack_from("<I", data, offset + size + 1)
        if masked_crc32c(data[offset : offset + size + 1]) != stored:
            raise CheckpointFormatError(f"{where}: checksum mismatch in block at {offset}")
    return block


def _block_entries(block: bytes, where: str) -> Iterator[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise CheckpointFormatError(f"{where}: block too short")
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * num_restarts
    if end < 0:
        raise CheckpointFormatError(f"{where}: bad restart count {num_restarts}")
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        if shared > len(key) or pos + unshared + length > end:
            raise CheckpointFormatError(f"{where}: corrupt block entry at {pos}")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + length]
        pos += length


def _handle(buf: bytes, pos: int = 0) -> tuple[tuple[int, int], int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return (offset, size), pos


def checkpoint_prefix(path: str | os.PathLike[str]) -> Path:
    """The checkpoint prefix for a path to it, its ``.index`` or one of its ``.data-*`` files.

    Raises:
        FileNotFoundError: there is no ``PREFIX.index``.
    """
    path = Path(path)
    name = path.name
    if name.endswith(".index"):
        prefix = path.with_name(name[: -len(".index")])
    elif ".data-" in name:
        prefix = path.with_name(name[: name.index(".data-")])
    elif name.endswith(".meta"):
        prefix = path.with_name(name[: -len(".meta")])
    else:
        prefix = path
    if not prefix.with_name(prefix.name + ".index").is_file():
        raise FileNotFoundError(f"no TensorFlow checkpoint index {prefix}.index")
    return prefix


class TFCheckpoint:
    """A TensorFlow V2 checkpoint opened for reading: tensor names, shapes and arrays.

    Args:
        path: the checkpoint prefix (``.../snapshot-1030000``), or its ``.index``/``.data``
            file.
        verify: check CRC32Cs of the index blocks and of every tensor read. ``None`` (default):
            only when a compiled CRC32C (``google-crc32c`` or ``crc32c``) is installed, since
            the pure-Python one runs at a few MB/s; sizes are always checked.

    Raises:
        FileNotFoundError: no ``.index`` file, or a data shard is missing.
        CheckpointFormatError: the index is corrupt or not a V2 checkpoint.
    """

    def __init__(self, path: str | os.PathLike[str], verify: bool | None = None) -> None:
        self.prefix = checkpoint_prefix(path)
        self.verify = _FAST_CRC is not None if verify is None else verify
        index_path = self.prefix.with_name(self.prefix.name + ".index")
        data = index_path.read_bytes()
        where = str(index_path)
        if len(data) < _FOOTER_LEN:
            raise CheckpointFormatError(f"{where}: too short to be a checkpoint index")
        footer = data[-_FOOTER_LEN:]
        (magic,) = struct.unpack_from("<Q", footer, 40)
        if magic != _MAGIC:
            raise CheckpointFormatError(
                f"{where}: not a TensorFlow V2 checkpoint index (bad magic {magic:#x})"
            )
        _, pos = _handle(footer)
        index_handle, _ = _handle(footer, pos)
        entries: dict[str, TensorEntry] = {}
        header: bytes | None = None
        index = _block(data, index_handle, self.verify, where)
        for _, value in _block_entries(index, where):
            handle, _ = _handle(value)
            for key, entry in _block_entries(_block(data, handle, self.verify, where), where):
                if key == b"":
                    header = entry
                else:
                    entries[key.decode("utf-8")] = _parse_entry(entry)
        if header is None:
            raise CheckpointFormatError(f"{where}: no bundle header entry")
        self.num_shards, self._endian = _parse_header(header)
        self.entries = entries

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def names(self) -> list[str]:
        """Stored tensor names, sorted."""
        return sorted(self.entries)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Name → shape of every stored tensor."""
        return {name: e.shape for name, e in self.entries.items()}

    def data_path(self, shard: int) -> Path:
        """The data file of a shard."""
        return self.prefix.with_name(
            f"{self.prefix.name}.data-{shard:05d}-of-{self.num_shards:05d}"
        )

    def read(self, name: str) -> np.ndarray:
        """One tensor as a numpy array (bfloat16 is returned as float32).

        Raises:
            KeyError: no tensor of that name.
            CheckpointFormatError: a non-numeric or sliced tensor, a short read or a checksum
                mismatch.
        """
        if name not in self.entries:
            raise KeyError(f"{self.prefix}: no tensor {name!r}")
        entry = self.entries[name]
        if entry.dtype is None or entry.sliced:
            kind = "sliced" if entry.sliced else f"TF dtype {entry.tf_dtype}"
            raise CheckpointFormatError(f"{self.prefix}: {name!r} is {kind}, not readable here")
        itemsize = _ITEMSIZE.get(entry.dtype) or np.dtype(entry.dtype).itemsize
        expected = int(np.prod(entry.shape, dtype=np.int64)) * itemsize
        if entry.size != expected:
            raise CheckpointFormatError(
                f"{self.prefix}: {name!r} holds {entry.size} bytes, shape {entry.shape} of "
                f"{entry.dtype} needs {expected}"
            )
        path = self.data_path(entry.shard_id)
        if not path.is_file():
            raise FileNotFoundError(f"missing checkpoint data file {path}")
        with open(path, "rb") as f:
            f.seek(entry.offset)
            raw = f.read(entry.size)
        if len(raw) != entry.size:
            raise CheckpointFormatError(f"{path}: {name!r} is truncated")
        if self.verify and entry.crc32c is not None and masked_crc32c(raw) != entry.crc32c:
            raise CheckpointFormatError(f"{path}: checksum mismatch for {name!r}")
        if entry.dtype == "bfloat16":
            bits = np.frombuffer(raw, np.dtype(self._endian + "u2")).astype(np.uint32) << 16
            return bits.view(np.float32).reshape(entry.shape)
        dtype = np.dtype(entry.dtype).newbyteorder(self._endian)
        return np.frombuffer(raw, dtype).astype(np.dtype(entry.dtype)).reshape(entry.shape)

    def read_all(self, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """Several tensors (default: every numeric, unsliced one) as name → array."""
        if names is None:
            names = [n for n, e in sorted(self.entries.items()) if e.dtype and not e.sliced]
        return {name: self.read(name) for name in names}
