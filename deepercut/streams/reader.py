"""The pose-stream reader: header, records as :class:`~deepercut.types.Poses`, footer, following
a file that is still being written.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Iterator
from typing import IO, Any

import msgpack

from deepercut.skeleton import Skeleton
from deepercut.streams.binary_file import open_binary
from deepercut.streams.format import ENDS, FORMAT, READABLE_VERSIONS, check_header
from deepercut.streams.framing import (
    FOOTER,
    FRAME,
    HEADER,
    MAX_RECORD_BYTES,
    CorruptStreamError,
    Deframer,
    find_header_check,
    header_check_follows,
    read_header_check,
)
from deepercut.streams.records import record_poses
from deepercut.types import Poses

__all__ = ["PoseStream", "read_poses"]

_CHUNK = 1 << 16
#: Versions whose header has no check record after it.
_UNCHECKED_VERSIONS = (1, 2)


def _ours(header: Any) -> bool:
    """Whether ``header`` says it is a readable pose stream's (it may still be damaged)."""
    return (
        isinstance(header, dict)
        and header.get("format") == FORMAT
        and header.get("version") in READABLE_VERSIONS
    )


class PoseStream:
    """A pose stream being read: :attr:`header`, :attr:`skeleton`, and iteration over
    :class:`~deepercut.types.Poses` (keypoints float32 [M,P,3], track_id int64 [M]).

    After the iteration, :attr:`footer` holds the stream's footer and :attr:`complete` says
    whether it was there (``False``: the writer has not finished: still running, crashed or
    killed; always ``False`` for version 1 streams, which have no footer).

    Made by :func:`read_poses`. A context manager; closes files it opened.
    """

    def __init__(
        self,
        file: IO[bytes],
        *,
        owns: bool,
        name: str,
        follow: bool,
        poll: float,
        timeout: float | None,
    ) -> None:
        self.name = name
        self._file = file
        self._owns = owns
        self._read = getattr(file, "read1", file.read)  # what is there, without waiting for more
        self._follow = follow
        self._poll = poll
        self._timeout = timeout
        self._last_data = time.monotonic()
        self.records = 0
        #: The footer, once read (a dict with ``records``, ``end``, ``counts``).
        self.footer: dict[str, Any] | None = None
        self._unpacker = msgpack.Unpacker(raw=False, max_buffer_size=MAX_RECORD_BYTES)
        self._deframer: Deframer | None = None
        try:
            self.header: dict[str, Any] = self._read_header()
        except BaseException:
            self.close()
            raise
        self.version: int = self.header["version"]
        self.skeleton = Skeleton.from_dict(self.header["skeleton"])

    @property
    def complete(self) -> bool:
        """Whether the footer was read: the writer finished the stream (see ``footer["end"]``
        for how the run ended)."""
        return self.footer is not None

    def _more(self) -> bytes:
        """The next bytes; ``b""`` at the end (or, following, after ``timeout`` s without
        data)."""
        while True:
            chunk = self._read(_CHUNK) if not self._file.closed else b""
            if chunk:
                self._last_data = time.monotonic()
                return chunk
            if not self._follow:
                return b""
            if self._timeout is not None and time.monotonic() - self._last_data >= self._timeout:
                return b""
            time.sleep(self._poll)

    def _read_header(self) -> dict[str, Any]:
        """The header map, checked (version 3: against its check record), and the reading of
        the records after it set up (:attr:`_deframer`, or the unpacker for version 1).

        Raises:
            ValueError: not a pose stream, or cut inside the header or its check record.
            CorruptStreamError: a damaged header (offset 0).
        """
        raw = bytearray()  # everything read so far
        parsed: tuple[Any, int] | None = None  # the header map and its length in bytes
        scan = 0
        while True:
            error = None
            if parsed is None:
                try:
                    parsed = self._unpacker.unpack(), self._unpacker.tell()
                except msgpack.OutOfData:
                    pass  # the unpacker keeps the partial object and resumes when fed
                except (ValueError, msgpack.UnpackException) as exc:
                    error = exc
            # A damaged length or type byte can make the map end early, late, or never (the
            # reader would wait for a "cut" header): a whole, valid check record says where the
            # header really ends.
            found, scan = find_header_check(raw, scan)
            if error is not None:
                # Garbage, or a damaged header whose check record was not read yet: look for
                # it (without waiting, when following), as far as a header may reach.
                while found is None and not self._follow and len(raw) < MAX_RECORD_BYTES:
                    chunk = self._more()
                    if not chunk:
                        break
                    raw += chunk
                    found, scan = find_header_check(raw, scan)
                if found is None:
                    raise ValueError(f"{self.name}: not a deepercut pose stream ({error})")
                raise self._header_damage(f"does not parse ({error}; it ends at byte {found})")
            if found is not None and (parsed is None or parsed[1] != found):
                raise self._header_damage(f"does not end at byte {found} as its check record says")
            if parsed is not None:
                header = self._checked_header(*parsed, raw, ended=False)
                if header is not None:
                    return header
            # Read on for the rest of the header, or to see what follows it; not, when following,
            # for a header that is not a pose stream's anyway.
            chunk = self._more() if parsed is None or _ours(parsed[0]) or not self._follow else b""
            if not chunk:
                if parsed is None:
                    raise ValueError(
                        f"{self.name}: empty or truncated pose stream (no complete header)"
                    )
                header = self._checked_header(*parsed, raw, ended=True)
                assert header is not None  # the end decides
                return header
            self._feed_unpacker(chunk, "header")
            raw += chunk

    def _checked_header(
        self, header: Any, size: int, raw: bytearray, *, ended: bool
    ) -> dict[str, Any] | None:
        """The header map of ``size`` bytes, checked against what follows it in ``raw``;
        ``None`` until more bytes tell (``ended``: no more will come)."""
        version = header.get("version") if isinstance(header, dict) else None
        rest = bytes(raw[size:])
        follows = header_check_follows(rest)
        if follows is None and not ended:
            return None  # too few bytes to tell
        if follows:
            deframer = Deframer(start=size)
            deframer.feed(rest)
            try:
                item = deframer.next(kinds=(HEADER,))
            except CorruptStreamError as exc:
                raise self._header_damage(f"check record is damaged ({exc})") from None
            if item is not None:
                self._verify_header(raw[:size], item[1], version)
                self._deframer = deframer
                return check_header(header, self.name)
            if not ended:
                return None  # the rest of the check record
            if version in _UNCHECKED_VERSIONS:
                raise self._header_damage(f"of version {version} is followed by a check record")
        elif follows is False and _ours(header) and version not in _UNCHECKED_VERSIONS:
            raise self._header_damage("has no check record")
        elif version in _UNCHECKED_VERSIONS:  # no header check
            header = check_header(header, self.name)
            if version == 2:
                self._deframer = Deframer(start=size)
                self._deframer.feed(rest)
            return header
        check_header(header, self.name)  # not a pose stream's header: says so
        raise ValueError(
            f"{self.name}: truncated pose stream (no complete header: its check record is cut)"
        )

    def _verify_header(self, header: bytes | bytearray, body: bytes, version: Any) -> None:
        """Raise unless the check record's ``body`` matches the header map's bytes."""
        check = read_header_check(body)
        if check is None:
            raise self._header_damage(f"check record is malformed ({body!r:.80})")
        crc = zlib.crc32(header)
        if check != {"crc": crc, "bytes": len(header)}:
            raise self._header_damage(
                f"fails its checksum (CRC-32 {crc:#010x} of {len(header)} bytes; its check "
                f"record says {check['crc']!r:.12} of {check['bytes']!r:.12} bytes)"
            )
        if version in _UNCHECKED_VERSIONS:  # intact, but of a version without a check record
            raise self._header_damage(f"of version {version!r} is followed by a check record")

    def _header_damage(self, what: str) -> CorruptStreamError:
        return CorruptStreamError(f"{self.name}: corrupt pose stream: header {what}", 0, 0)

    def _feed_unpacker(self, chunk: bytes, what: str) -> None:
        try:
            self._unpacker.feed(chunk)
        except msgpack.BufferFull:
            raise CorruptStreamError(
                f"{self.name}: corrupt pose stream: {what} after {self.records} records is "
                f"larger than the {MAX_RECORD_BYTES}-byte cap",
                self.records,
            ) from None

    def _corrupt(self, what: object, offset: int | None = None) -> CorruptStreamError:
        return CorruptStreamError(
            f"{self.name}: corrupt pose stream after {self.records} records ({what})",
            self.records,
            offset,
        )

    def _records(self) -> Iterator[tuple[int, Any]]:
        """``(kind, map)`` of each whole record until the footer, the end, or a partial tail."""
        if self._deframer is None:
            yield from self._records_v1()
            return
        deframer = self._deframer
        while True:
            start = deframer.offset  # where the next record starts
            try:
                item = deframer.next()
            except CorruptStreamError as exc:
                raise self._corrupt(exc, exc.offset) from None
            if item is None:
                chunk = self._more()
                if not chunk:
                    return  # the end, or a partial tail: no footer, so not complete
                deframer.feed(chunk)
                continue
            kind, body = item
            try:
                obj = msgpack.unpackb(body, raw=False)
            except (ValueError, msgpack.UnpackException) as exc:
                raise self._corrupt(f"undecodable record: {exc!r}", start) from None
            if kind == FOOTER and (deframer.buffered or self._read(_CHUNK)):
                raise self._corrupt("data after the footer", deframer.offset)
            yield kind, obj
            if kind == FOOTER:
                return

    def _records_v1(self) -> Iterator[tuple[int, Any]]:
        """Version 1: plain msgpack maps, no checksums, no footer."""
        while True:
            try:
                obj = self._unpacker.unpack()
            except msgpack.OutOfData:
                chunk = self._more()
                if not chunk:
                    return
                self._feed_unpacker(chunk, "a record")
                continue
            except (ValueError, msgpack.UnpackException) as exc:
                # repr: msgpack's FormatError has no message of its own.
                raise self._corrupt(f"undecodable record: {exc!r}") from None
            yield FRAME, obj

    def __iter__(self) -> Iterator[Poses]:
        num_parts = self.skeleton.num_parts
        for kind, record in self._records():
            if kind == FOOTER:
                self.footer = self._check_footer(record)
                return
            try:
                poses = record_poses(record, num_parts)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ValueError(
                    f"{self.name}: record {self.records} is not a pose frame ({exc!r})"
                ) from None
            self.records += 1
            yield poses

    def _check_footer(self, footer: Any) -> dict[str, Any]:
        if not isinstance(footer, dict) or footer.get("end") not in ENDS:
            raise self._corrupt(f"malformed footer {footer!r:.200}")
        if footer.get("records") != self.records:
            raise self._corrupt(f"the footer counts {footer.get('records')!r} records")
        return footer

    def close(self) -> None:
        """Close the file if :func:`read_poses` opened it."""
        if self._owns:
            self._file.close()

    def __enter__(self) -> PoseStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_poses(
    path_or_file: str | os.PathLike[str] | IO[bytes],
    *,
    follow: bool = False,
    poll: float = 0.1,
    timeout: float | None = None,
) -> PoseStream:
    """Open a pose stream for reading; the header is read at once.

    The iteration ends at the footer (:attr:`PoseStream.complete` then ``True``). Without one,
    a partial last record (a file still being written, or cut by a crash) ends the iteration
    with every whole record before it and ``complete`` ``False``. With ``follow=True`` the
    reader waits for the file to grow instead, checking every ``poll`` seconds, and stops at
    the footer or after ``timeout`` seconds without new data (never with ``None``).

    Raises:
        FileNotFoundError: a missing path.
        ValueError: not a deepercut pose stream (wrong or missing header), or one cut inside
            its header (a version 3 header is whole with its check record).
        CorruptStreamError: (a ``ValueError``) a damaged header (raised at once, ``offset``
            0); a damaged record, a record over the size cap, or a footer that disagrees with
            the records (raised when the iteration reaches it).
    """
    file, owns = open_binary(path_or_file, "rb")
    name = str(path_or_file) if owns else getattr(file, "name", "pose stream")
    return PoseStream(file, owns=owns, name=str(name), follow=follow, poll=poll, timeout=timeout)
