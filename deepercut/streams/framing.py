"""Record framing of pose streams (format versions 2 and 3): checksummed, size-capped records.

After the header map, every record is one msgpack ``ext 32`` object, so generic msgpack tools
still parse the stream (as ext objects)::

    0xc9 | size: uint32 BE | kind: int8 | head_crc: uint32 BE | body_crc: uint32 BE | body

``size`` is ``8 + len(body)``; ``head_crc`` is the CRC-32 of the first six bytes (marker,
size, kind) and ``body_crc`` that of ``body``, a msgpack map. ``kind`` is :data:`FRAME` (one
frame's poses), :data:`FOOTER` (the last record of a finished stream) or, in version 3 only
and only right after the header map, :data:`HEADER` (:func:`header_check`: the CRC-32 and
length of the header map's bytes; version 2 readers refuse this kind).

Why this tells damage from a cut tail: a crash or a file still being written can only leave a
*prefix* of the last record, whose checked head says how long it should be; any changed byte
in a whole record fails a checksum (or the marker), and a size can only be trusted once its
head checksum matched, so a damaged size never makes the reader wait for, or buffer, data that
is not there. The same holds for the header through its check record (and
:func:`find_header_check` finds that record even when a damaged length byte in the header map
makes the map run past it).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Collection
from typing import Any

import msgpack

__all__ = [
    "FOOTER",
    "FRAME",
    "HEADER",
    "MAX_RECORD_BYTES",
    "CorruptStreamError",
    "Deframer",
    "find_header_check",
    "frame",
    "header_check",
    "header_check_follows",
    "read_header_check",
]

#: Record kinds.
FRAME = 1
FOOTER = 2
HEADER = 3
_KINDS = (FRAME, FOOTER)  # the records after the header
#: A header check record's body is far smaller (two ints in a map).
_HEADER_CHECK_MAX_BODY = 64

#: The largest record body written or read (a frame of 1,000 people × 100 parts is ~1.5 MB).
MAX_RECORD_BYTES = 16 << 20

_MARKER = 0xC9  # msgpack ext 32
_HEAD = struct.Struct(">BIb")  # marker, size, kind
_CHECKS = struct.Struct(">II")  # head_crc, body_crc
_PREFIX = _HEAD.size + _CHECKS.size


class CorruptStreamError(ValueError):
    """A pose stream is damaged (not merely cut short): a record failed its checks.

    Attributes:
        records: whole records read before the damage.
        offset: byte offset of the damaged record in the stream (``None`` when unknown).
    """

    def __init__(self, message: str, records: int = 0, offset: int | None = None) -> None:
        super().__init__(message)
        self.records = records
        self.offset = offset


def frame(kind: int, body: bytes) -> bytes:
    """One framed record.

    Raises:
        ValueError: ``body`` is larger than :data:`MAX_RECORD_BYTES`.
    """
    if len(body) > MAX_RECORD_BYTES:
        raise ValueError(
            f"pose record of {len(body)} bytes exceeds the {MAX_RECORD_BYTES}-byte cap"
        )
    head = _HEAD.pack(_MARKER, len(body) + _CHECKS.size, kind)
    return head + _CHECKS.pack(zlib.crc32(head), zlib.crc32(body)) + body


class Deframer:
    """Splits fed bytes into checked records; :meth:`next` raises on damage.

    Attributes:
        offset: stream offset of the next record (bytes consumed so far, plus ``start``).
    """

    def __init__(self, start: int = 0) -> None:
        self._buf = bytearray()
        self._pos = 0
        self.offset = start

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole record (a partial tail at the end)."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        if self._pos > _CHUNK_COMPACT:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next(self, kinds: Collection[int] = _KINDS) -> tuple[int, bytes] | None:
        """The next ``(kind, body)``, or ``None`` until more bytes arrive; ``kinds`` are the
        kinds allowed here (:data:`FRAME` and :data:`FOOTER`: the records after the header).

        Raises:
            CorruptStreamError: the bytes at the current offset are not a valid record (the
                error's ``records`` is left 0 for the caller to fill in).
        """
        buf, pos = self._buf, self._pos
        available = len(buf) - pos
        if available == 0:
            return None
        if buf[pos] != _MARKER:
            raise self._damage(f"no record starts here (byte 0x{buf[pos]:02x})")
        if available < _PREFIX:
            return None
        _, size, kind = _HEAD.unpack_from(buf, pos)
        head_crc, body_crc = _CHECKS.unpack_from(buf, pos + _HEAD.size)
        if zlib.crc32(buf[pos : pos + _HEAD.size]) != head_crc:
            raise self._damage("record head fails its checksum")
        if kind not in kinds or not _CHECKS.size <= size <= MAX_RECORD_BYTES + _CHECKS.size:
            raise self._damage(f"record of kind {kind} and size {size}")  # a writer bug
        end = pos + _HEAD.size + size
        if len(buf) < end:
            return None
        body = bytes(buf[pos + _PREFIX : end])
        if zlib.crc32(body) != body_crc:
            raise self._damage("record body fails its checksum")
        self._pos = end
        self.offset += end - pos
        return kind, body

    def _damage(self, what: str) -> CorruptStreamError:
        return CorruptStreamError(f"{what} at byte {self.offset}", offset=self.offset)


_CHUNK_COMPACT = 1 << 20  # drop consumed bytes from the buffer once this many accumulate


def header_check(header: bytes) -> bytes:
    """The check record that follows a header map's bytes in a version 3 stream: its body is
    ``{"crc": CRC-32 of header, "bytes": len(header)}``."""
    return frame(HEADER, msgpack.packb({"crc": zlib.crc32(header), "bytes": len(header)}))


def read_header_check(body: bytes) -> dict[str, Any] | None:
    """The ``{"crc", "bytes"}`` map of a header check record's body (``None`` if it is not
    one; a body that passed its checksum always is, unless a writer bug made it)."""
    try:
        check = msgpack.unpackb(body, raw=False)
    except (ValueError, msgpack.UnpackException):
        return None
    if not isinstance(check, dict) or set(check) != {"crc", "bytes"}:
        return None
    return check


def header_check_follows(data: bytes | bytearray) -> bool | None:
    """Whether ``data`` (what follows a header map) starts with a header check record, by its
    marker and (unchecked) kind; ``None`` until enough bytes tell."""
    if not data:
        return None
    if data[0] != _MARKER:
        return False
    if len(data) < _HEAD.size:
        return None
    return data[_HEAD.size - 1] == HEADER


def find_header_check(data: bytes | bytearray, start: int = 0) -> tuple[int | None, int]:
    """Look for a whole, valid header check record in ``data`` from ``start`` that sits right
    after the header it describes (its ``bytes`` is its own offset): where the header map ends
    (or must end) whatever its bytes say.

    Returns:
        That offset (``None`` if there is none yet), and where to look next time ``data`` has
        grown (at the first candidate that is not whole yet).
    """
    resume = None
    pos = start
    while (pos := data.find(_MARKER, pos)) >= 0:
        head_end = pos + _PREFIX
        if head_end > len(data):
            resume = pos if resume is None else resume
            break
        _, size, kind = _HEAD.unpack_from(data, pos)
        head_crc, body_crc = _CHECKS.unpack_from(data, pos + _HEAD.size)
        if (
            kind == HEADER
            and _CHECKS.size <= size <= _CHECKS.size + _HEADER_CHECK_MAX_BODY
            and zlib.crc32(data[pos : pos + _HEAD.size]) == head_crc
        ):
            end = pos + _HEAD.size + size
            if end > len(data):
                resume = pos if resume is None else resume
            else:
                body = bytes(data[head_end:end])
                check = read_header_check(body) if zlib.crc32(body) == body_crc else None
                if check is not None and check["bytes"] == pos:
                    return pos, pos
        pos += 1
    return None, len(data) if resume is None else resume
