"""Record framing of pose streams (format version 2): checksummed, size-capped records.

After the header map, every record is one msgpack ``ext 32`` object, so generic msgpack tools
still parse the stream (as ext objects)::

    0xc9 | size: uint32 BE | kind: int8 | head_crc: uint32 BE | body_crc: uint32 BE | body

``size`` is ``8 + len(body)``; ``head_crc`` is the CRC-32 of the first six bytes (marker,
size, kind) and ``body_crc`` that of ``body``, a msgpack map. ``kind`` is :data:`FRAME` (one
frame's poses) or :data:`FOOTER` (the last record of a finished stream).

Why this tells damage from a cut tail: a crash or a file still being written can only leave a
*prefix* of the last record, whose checked head says how long it should be; any changed byte
in a whole record fails a checksum (or the marker), and a size can only be trusted once its
head checksum matched, so a damaged size never makes the reader wait for, or buffer, data that
is not there.
"""

from __future__ import annotations

import struct
import zlib

__all__ = [
    "FOOTER",
    "FRAME",
    "MAX_RECORD_BYTES",
    "CorruptStreamError",
    "Deframer",
    "frame",
]

#: Record kinds.
FRAME = 1
FOOTER = 2
_KINDS = (FRAME, FOOTER)

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

    def next(self) -> tuple[int, bytes] | None:
        """The next ``(kind, body)``, or ``None`` until more bytes arrive.

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
        if kind not in _KINDS or not _CHECKS.size <= size <= MAX_RECORD_BYTES + _CHECKS.size:
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
