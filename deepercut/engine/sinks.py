"""Pose sinks: the msgpack pose stream (to a file or TCP clients), callbacks, and converters to
JSON lines and DeepLabCut CSV.

Pose stream format, version 2: a header msgpack map::

    {"format": "deepercut.poses", "version": 2, "skeleton": Skeleton.to_dict(),
     "source": {...}, "model": {...}, "created": "2024-05-01T12:00:00+00:00",
     "deepercut": "0.1.0"}

(``created`` and ``deepercut``, the package version, are added by :func:`make_header`; any
other extra keys are kept as they are), then checksummed records (:mod:`~deepercut.engine.framing`:
each a msgpack ``ext 32`` object holding a CRC-checked msgpack map), one per frame::

    {"i": 17, "t": 0.68, "kp": [[[x, y, s], ...], ...], "id": [3, -1],
     "solver": {"status": "optimal", "gap": 0.0, "ms": 4.2}}

and, when the writer is closed, a footer record::

    {"records": 1000, "end": "complete", "counts": {"frames": 1000, "dropped_source": 0, ...}}

(``end`` is ``complete``, ``interrupted`` or ``error``, with ``"error": "..."`` for the
latter; ``counts`` holds the run's counters). ``kp`` holds M people × P parts × (x, y, score)
as float32, NaN where a part is absent; ``t`` (pts in seconds) is a float64; ``id`` is the
track id per person (−1 untracked). Strings are msgpack str, binary is msgpack bin.

:class:`PoseWriter` writes whole records and flushes after each, so a reader following the
file (``read_poses(..., follow=True)``) sees complete records or a partial tail, which it
waits for (or, without ``follow``, ignores: :attr:`PoseStream.complete` stays ``False``).
A damaged record anywhere raises :class:`CorruptStreamError`. Version 1 streams (plain msgpack
maps, no checksums, no footer) are still read, with the size cap but without damage detection.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import ipaddress
import itertools
import json
import logging
import math
import os
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import msgpack
import numpy as np

from deepercut.engine.framing import (
    FOOTER,
    FRAME,
    MAX_RECORD_BYTES,
    CorruptStreamError,
    Deframer,
    frame,
)
from deepercut.outputs import atomic_output, refuse_overwriting_inputs
from deepercut.skeleton import Skeleton
from deepercut.types import Poses

log = logging.getLogger(__name__)

__all__ = [
    "FORMAT",
    "READABLE_VERSIONS",
    "VERSION",
    "CallbackSink",
    "CorruptStreamError",
    "PoseSink",
    "PoseStream",
    "PoseWriter",
    "TcpSink",
    "check_header",
    "make_footer",
    "make_header",
    "read_poses",
    "to_dlc_csv",
    "to_jsonl",
]

FORMAT = "deepercut.poses"
VERSION = 2
#: Versions :func:`read_poses` reads.
READABLE_VERSIONS = (1, 2)
#: How a stream ended, as its footer's ``end`` says.
ENDS = ("complete", "interrupted", "error")
_CHUNK = 1 << 16


@runtime_checkable
class PoseSink(Protocol):
    """Where the pipeline sends each frame's poses."""

    def write(self, poses: Poses) -> None: ...

    def close(self) -> None: ...


# ----------------------------------------------------------------------------- records


def make_header(
    skeleton: Skeleton,
    *,
    source: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A pose-stream header: format, version, skeleton, source and model descriptions, the
    creation time (UTC, ISO 8601), the package version, and any ``extra`` keys."""
    from deepercut import __version__

    return {
        "format": FORMAT,
        "version": VERSION,
        "skeleton": skeleton.to_dict(),
        "source": dict(source or {}),
        "model": dict(model or {}),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "deepercut": __version__,
        **extra,
    }


def check_header(header: Any, name: str = "pose stream") -> dict[str, Any]:
    """Validate a header (``name`` prefixes the error); returns it.

    Raises:
        ValueError: not a map, another format or version, or no valid skeleton.
    """
    if not isinstance(header, dict):
        raise ValueError(f"{name}: not a deepercut pose stream (header is {type(header).__name__})")
    if header.get("format") != FORMAT:
        raise ValueError(
            f"{name}: not a deepercut pose stream (format {header.get('format')!r}, "
            f"expected {FORMAT!r})"
        )
    if header.get("version") not in READABLE_VERSIONS:
        raise ValueError(f"{name}: unsupported pose stream version {header.get('version')!r}")
    try:
        Skeleton.from_dict(header["skeleton"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{name}: header has no valid skeleton ({exc})") from None
    return header


def _plain(obj: Any) -> Any:
    """msgpack fallback for numpy scalars and arrays in headers and solver reports."""
    if isinstance(obj, np.generic | np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__}")


class _Encoder:
    """Packs headers and framed records; float32 for keypoints and solver numbers, float64
    for pts, headers and footers. Not thread-safe (msgpack packers keep a buffer)."""

    def __init__(self) -> None:
        self._single = msgpack.Packer(use_bin_type=True, use_single_float=True, default=_plain)
        self._double = msgpack.Packer(use_bin_type=True, default=_plain)

    def header(self, header: dict[str, Any]) -> bytes:
        return self._double.pack(header)

    def poses(self, poses: Poses) -> bytes:
        single = self._single.pack
        body = b"".join(
            (
                self._single.pack_map_header(5),
                single("i"),
                single(int(poses.frame)),
                single("t"),
                self._double.pack(float(poses.pts)),  # float32 would lose ms after ~4.6 h
                single("kp"),
                single(np.asarray(poses.keypoints, np.float32).tolist()),
                single("id"),
                single(np.asarray(poses.track_id, np.int64).tolist()),
                single("solver"),
                single(dict(poses.solver)),
            )
        )
        return frame(FRAME, body)

    def footer(self, footer: dict[str, Any]) -> bytes:
        return frame(FOOTER, self._double.pack(footer))


def make_footer(
    records: int,
    end: str = "complete",
    *,
    error: str | None = None,
    counts: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A footer: records written, how the run ended (one of :data:`ENDS`), the error that
    ended it, and the run's counters (frames, drops, errors...)."""
    if end not in ENDS:
        raise ValueError(f"end must be one of {ENDS}, got {end!r}")
    footer: dict[str, Any] = {"records": int(records), "end": end}
    if error is not None:
        footer["error"] = str(error)
    footer["counts"] = dict(counts or {})
    return footer


def _exit_end(exc: BaseException | None) -> tuple[str, str | None]:
    """A footer's ``end`` and ``error`` for a context manager left with ``exc``."""
    if exc is None:
        return "complete", None
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", None
    return "error", f"{type(exc).__name__}: {exc}"


def _record_poses(record: Any, num_parts: int) -> Poses:
    """A frame record as :class:`Poses` (``id`` defaults to −1s, ``solver`` to ``{}``)."""
    kp = np.asarray(record["kp"], np.float32)  # None (from JSON) becomes NaN
    count = len(kp)
    ids = record.get("id")
    track_id = np.full(count, -1, np.int64) if ids is None else np.asarray(ids, np.int64)
    if kp.size == 0:
        kp = kp.reshape(count, num_parts, 3)
    if kp.shape != (count, num_parts, 3) or track_id.shape != (count,):
        raise ValueError(f"kp {kp.shape} and id {track_id.shape} for {num_parts} parts")
    return Poses(
        frame=int(record["i"]),
        pts=float(record["t"]),
        keypoints=kp,
        track_id=track_id,
        solver=dict(record.get("solver") or {}),
    )


# ----------------------------------------------------------------------------- file writer / reader


def _open(path_or_file: str | os.PathLike[str] | IO[bytes], mode: str) -> tuple[IO[bytes], bool]:
    """A binary file and whether we opened it (and so must close it)."""
    if isinstance(path_or_file, str | os.PathLike):
        if "w" in mode:  # `-o out/poses.msgpack` should work without creating out/ first
            Path(path_or_file).parent.mkdir(parents=True, exist_ok=True)
        return open(path_or_file, mode), True  # closed by the owner's close()
    return path_or_file, False


class PoseWriter:
    """Writes a pose stream to a file: the header at once, then one record per :meth:`write`,
    and the footer on :meth:`close`.

    Each record is written whole and flushed (and, with ``fsync=True``, synced to disk), so a
    reader can follow the file while it grows. A context manager that closes with the footer
    (``end`` ``error`` or ``interrupted`` when left by an exception or Ctrl-C); closes files
    it opened.

    Args:
        path_or_file: a path or a writable binary file.
        header: see :func:`make_header`; ``format`` and ``version`` are filled in if absent.
        fsync: ``os.fsync`` after every record (survives a power cut; slower).
    """

    def __init__(
        self,
        path_or_file: str | os.PathLike[str] | IO[bytes],
        header: dict[str, Any],
        *,
        fsync: bool = False,
    ) -> None:
        self.header = check_header({**header, "format": FORMAT, "version": VERSION})
        self._encoder = _Encoder()
        self._fsync = fsync
        self.frames = 0
        self.footer: dict[str, Any] | None = None
        self._file, self._owns = _open(path_or_file, "wb")
        self._emit(self._encoder.header(self.header))

    def write(self, poses: Poses) -> None:
        """Append one frame's poses."""
        if self.footer is not None:
            raise ValueError("pose stream already closed")
        self._emit(self._encoder.poses(poses))
        self.frames += 1

    def _emit(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())

    def close(
        self,
        end: str = "complete",
        *,
        error: str | None = None,
        counts: Mapping[str, Any] | None = None,
    ) -> None:
        """Write the footer (see :func:`make_footer`), flush, and close the file if this writer
        opened it; idempotent (the first call's footer stays)."""
        if self.footer is not None or self._file.closed:
            return
        self.footer = make_footer(self.frames, end, error=error, counts=counts)
        try:
            self._emit(self._encoder.footer(self.footer))
        finally:
            if self._owns:
                self._file.close()

    def __enter__(self) -> PoseWriter:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        end, error = _exit_end(exc)
        self.close(end, error=error)


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
            self.header: dict[str, Any] = check_header(self._read_header(), name)
        except BaseException:
            self.close()
            raise
        self.version: int = self.header["version"]
        self.skeleton = Skeleton.from_dict(self.header["skeleton"])
        if self.version >= 2:
            self._deframer = Deframer(start=self._unpacker.tell())
            self._deframer.feed(self._header_rest)
        self._header_rest = b""

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

    def _read_header(self) -> Any:
        """The first msgpack object; keeps the bytes after it in ``_header_rest``."""
        raw = bytearray()
        while True:
            try:
                header = self._unpacker.unpack()
            except msgpack.OutOfData:
                pass  # the unpacker keeps the partial object and resumes when fed
            except (ValueError, msgpack.UnpackException) as exc:
                raise ValueError(f"{self.name}: not a deepercut pose stream ({exc})") from None
            else:
                self._header_rest = bytes(raw[self._unpacker.tell() :])
                return header
            chunk = self._more()
            if not chunk:
                raise ValueError(
                    f"{self.name}: empty or truncated pose stream (no complete header)"
                )
            self._feed_unpacker(chunk, "header")
            raw += chunk

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
                raise self._corrupt(f"undecodable record: {exc}", deframer.offset) from None
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
                raise self._corrupt(exc) from None
            yield FRAME, obj

    def __iter__(self) -> Iterator[Poses]:
        num_parts = self.skeleton.num_parts
        for kind, record in self._records():
            if kind == FOOTER:
                self.footer = self._check_footer(record)
                return
            try:
                poses = _record_poses(record, num_parts)
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
        ValueError: not a deepercut pose stream (wrong or missing header).
        CorruptStreamError: (a ``ValueError``) a damaged record, a record over the size cap,
            or a footer that disagrees with the records; raised when the iteration reaches it.
    """
    file, owns = _open(path_or_file, "rb")
    name = str(path_or_file) if owns else getattr(file, "name", "pose stream")
    return PoseStream(file, owns=owns, name=str(name), follow=follow, poll=poll, timeout=timeout)


# ----------------------------------------------------------------------------- live sinks


class CallbackSink:
    """Calls ``fn(poses)`` for every frame (for embedding the engine in an application)."""

    def __init__(self, fn: Callable[[Poses], object]) -> None:
        self._fn = fn

    def write(self, poses: Poses) -> None:
        self._fn(poses)

    def close(self) -> None:
        pass

    def __enter__(self) -> CallbackSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Client:
    """One TCP subscriber: the bytes being sent now, and whole records waiting."""

    def __init__(self, sock: socket.socket, header: bytes) -> None:
        self.sock = sock
        self.current: memoryview | None = memoryview(header)  # the header is never dropped
        self.pending: deque[bytes] = deque()
        self.queued = 0  # records queued for this client (sent, pending or dropped)
        self.dropped = 0
        self.footer: bytes | None = None


#: ``accept()`` backs off this long after an error (doubling up to :data:`_ACCEPT_BACKOFF_MAX`).
_ACCEPT_BACKOFF_S = 0.05
_ACCEPT_BACKOFF_MAX = 2.0


def _is_loopback(host: str) -> bool:
    """Whether every address ``host`` resolves to is a loopback address."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise ValueError(f"cannot resolve {host!r}: {exc}") from None
    return all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


class TcpSink:
    """Publishes the pose stream to every client of a TCP server.

    Each client receives the header when it connects, then every record written after that,
    and the footer on :meth:`close`. Records are queued per client (at most ``max_pending``);
    a client that reads too slowly loses its oldest queued records (whole records, never part
    of one; counted in :attr:`dropped`), so :meth:`write` never blocks. One background thread
    does all the network I/O.

    The server binds loopback addresses only, unless ``public=True`` (then it warns: the
    stream is unauthenticated and unencrypted). At most ``max_clients`` are served at once;
    further ones are closed at once and counted (:attr:`refused`). Errors of ``accept()``
    (e.g. ``EMFILE``, out of file descriptors) are counted and the server backs off and
    carries on; if the server thread dies anyway, :meth:`write` raises with the cause.

    Args:
        address: ``"tcp://HOST:PORT"`` (port 0 picks a free one; see :attr:`address`).
        header: see :func:`make_header`.
        max_pending: records queued per client before the oldest is dropped.
        linger: seconds :meth:`close` spends sending what is still queued.
        max_clients: clients served at once.
        public: allow a non-loopback address (every interface for ``0.0.0.0``, ``0`` or ``::``).
    """

    def __init__(
        self,
        address: str,
        header: dict[str, Any],
        *,
        max_pending: int = 64,
        linger: float = 1.0,
        max_clients: int = 16,
        public: bool = False,
    ) -> None:
        parts = urlsplit(address)
        if parts.scheme != "tcp" or parts.hostname is None or parts.port is None:
            raise ValueError(f"expected tcp://HOST:PORT, got {address!r}")
        if max_clients < 1:
            raise ValueError(f"max_clients must be >= 1, got {max_clients}")
        host = parts.hostname
        if not _is_loopback(host):
            if not public:
                raise ValueError(
                    f"{address} is reachable from other machines and the pose stream has no "
                    "authentication: serve on tcp://127.0.0.1:PORT, or pass --serve-public "
                    "(public=True) to publish it anyway"
                )
            log.warning(
                "serving poses on %s: anyone who can reach this port can read the stream "
                "(no authentication, no encryption)",
                address,
            )
        self._encoder = _Encoder()
        self._header = self._encoder.header(
            check_header({**header, "format": FORMAT, "version": VERSION})
        )
        self._max_pending = max_pending
        self._max_clients = max_clients
        self._linger = linger
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._server = socket.create_server((host, parts.port), family=family)
        self._server.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        for s in (self._wake_r, self._wake_w):
            s.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._server, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._accepting = True
        self._accept_backoff = 0.0
        self._resume_accept = 0.0
        self._clients: list[_Client] = []
        self._lock = threading.Lock()  # guards _clients, their pending queues, the encoder
        self._closing = threading.Event()
        self._footer: bytes | None = None
        #: Records dropped for slow clients (and still queued when ``linger`` ran out).
        self.dropped = 0
        #: Records written.
        self.records = 0
        #: Clients served, refused over ``max_clients``, and ``accept()`` errors survived.
        self.served = 0
        self.refused = 0
        self.accept_errors = 0
        #: Why the server thread died (``None`` while it works).
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="deepercut-tcp-sink", daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` the server listens on."""
        host, port = self._server.getsockname()[:2]
        return host, port

    @property
    def num_clients(self) -> int:
        with self._lock:
            return len(self._clients)

    def stats(self) -> dict[str, int]:
        """Counters for the run's summary and the stream's footer."""
        return {
            "records": self.records,
            "clients": self.served,
            "refused": self.refused,
            "dropped": self.dropped,
            "accept_errors": self.accept_errors,
        }

    def summary(self) -> str:
        """One line for the end of a run."""
        return (
            f"served {self.records} records to {self.served} clients ({self.refused} refused over "
            f"the cap of {self._max_clients}); {self.dropped} records dropped for slow clients; "
            f"{self.accept_errors} accept errors survived"
        )

    def write(self, poses: Poses) -> None:
        """Queue one frame's record for every connected client.

        Raises:
            RuntimeError: the server thread died (the cause is chained).
        """
        self.check()
        with self._lock:  # also serialises the encoder between writing threads
            data = self._encoder.poses(poses)
            for client in self._clients:
                if len(client.pending) >= self._max_pending:
                    client.pending.popleft()
                    client.dropped += 1
                    self.dropped += 1
                client.pending.append(data)
                client.queued += 1
        self.records += 1
        self._wake()

    def check(self) -> None:
        """Raise if the server thread died.

        Raises:
            RuntimeError: with the cause chained.
        """
        if self.error is not None:
            raise RuntimeError(f"the pose server died: {self.error!r}") from self.error

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # a full wake-up pipe is already a wake-up
            self._wake_w.send(b"\0")

    def _loop(self) -> None:
        deadline = math.inf
        try:
            while True:
                if self._closing.is_set():
                    deadline = min(deadline, time.monotonic() + self._linger)
                    if time.monotonic() >= deadline or not self._has_output():
                        return
                if not self._accepting and time.monotonic() >= self._resume_accept:
                    self._selector.register(self._server, selectors.EVENT_READ)
                    self._accepting = True
                self._update_interest()
                for key, events in self._selector.select(timeout=0.2):
                    if key.fileobj is self._server:
                        self._accept()
                    elif key.fileobj is self._wake_r:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                    else:
                        self._service(key.data, events)
        except BaseException as exc:  # reported by write() and close()
            self.error = exc
        finally:
            self._shutdown()

    def _has_output(self) -> bool:
        with self._lock:
            return any(c.current is not None or c.pending for c in self._clients)

    def _update_interest(self) -> None:
        with self._lock:
            for client in self._clients:
                writing = client.current is not None or bool(client.pending)
                events = selectors.EVENT_READ | (selectors.EVENT_WRITE if writing else 0)
                self._selector.modify(client.sock, events, client)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._server.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # EMFILE/ENFILE/ENOBUFS...: the connection stays in the backlog and the
                # listening socket stays readable, so stop watching it for a while.
                self.accept_errors += 1
                self._accept_backoff = min(
                    _ACCEPT_BACKOFF_MAX, max(_ACCEPT_BACKOFF_S, 2 * self._accept_backoff)
                )
                log.warning(
                    "pose server: accept() failed (%s); retrying in %.2f s",
                    exc,
                    self._accept_backoff,
                )
                self._selector.unregister(self._server)
                self._accepting = False
                self._resume_accept = time.monotonic() + self._accept_backoff
                return
            self._accept_backoff = 0.0
            with self._lock:
                full = len(self._clients) >= self._max_clients
            if full:
                self.refused += 1
                sock.close()
                continue
            sock.setblocking(False)
            client = _Client(sock, self._header)
            self._selector.register(sock, selectors.EVENT_READ, client)
            with self._lock:
                self._clients.append(client)
            self.served += 1

    def _service(self, client: _Client, events: int) -> None:
        if events & selectors.EVENT_READ:
            try:
                if not client.sock.recv(4096):  # clients send nothing; b"" means it left
                    self._drop(client)
                    return
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._drop(client)
                return
        if events & selectors.EVENT_WRITE:
            self._send(client)

    def _send(self, client: _Client) -> None:
        while True:
            if client.current is None:
                with self._lock:
                    if not client.pending:
                        return
                    client.current = memoryview(client.pending.popleft())
            try:
                sent = client.sock.send(client.current)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._drop(client)
                return
            client.current = client.current[sent:] if sent < len(client.current) else None

    def _drop(self, client: _Client) -> None:
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)
        self._selector.unregister(client.sock)
        client.sock.close()

    def _shutdown(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
            # Records still queued when ``linger`` ran out count as dropped too.
            for c in clients:
                left = [*c.pending, *([c.current.obj] if c.current is not None else [])]
                self.dropped += sum(d is not c.footer and d is not self._header for d in left)
        for client in clients:
            with contextlib.suppress(OSError):
                client.sock.shutdown(socket.SHUT_RDWR)  # the client reads EOF after the data
            client.sock.close()
        self._selector.close()
        self._server.close()
        self._wake_r.close()
        self._wake_w.close()

    def close(
        self,
        end: str = "complete",
        *,
        error: str | None = None,
        counts: Mapping[str, Any] | None = None,
    ) -> None:
        """Queue each client's footer (see :func:`make_footer`; its ``records`` are those that
        client was sent, its ``counts`` gain ``dropped_for_client``), send what is queued (for
        up to ``linger`` seconds), then disconnect everyone."""
        if self._closing.is_set():
            return
        with self._lock:
            for client in self._clients:
                sent = client.queued - client.dropped
                client.footer = self._encoder.footer(
                    make_footer(
                        sent,
                        end,
                        error=error,
                        counts={**(counts or {}), "dropped_for_client": client.dropped},
                    )
                )
                client.pending.append(client.footer)
        self._closing.set()
        self._wake()
        self._thread.join(self._linger + 5.0)

    def __enter__(self) -> TcpSink:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        end, error = _exit_end(exc)
        self.close(end, error=error)


# ----------------------------------------------------------------------------- converters


def _stream(stream: PoseStream | str | os.PathLike[str]) -> PoseStream:
    return stream if isinstance(stream, PoseStream) else read_poses(stream)


def _refuse_same(stream: PoseStream | str | os.PathLike[str], out_path: Any) -> None:
    """Converting a stream onto itself would destroy it: refuse before reading."""
    source = stream.name if isinstance(stream, PoseStream) else stream
    refuse_overwriting_inputs({"output": out_path}, {"input": source})


def _json_safe(obj: Any) -> Any:
    """JSON-ready data: non-finite floats become null, tuples lists, numpy plain Python."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic | np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, bytes):
        return obj.hex()
    return obj


def _json_record(poses: Poses) -> dict[str, Any]:
    # Four decimals: 0.0001 px / score units, well below float32 noise at image scale.
    kp = np.round(poses.keypoints.astype(np.float64), 4).tolist()
    return {
        "i": int(poses.frame),
        "t": _json_safe(float(poses.pts)),
        "kp": [[[v if v == v else None for v in part] for part in person] for person in kp],
        "id": poses.track_id.tolist(),
        "solver": _json_safe(poses.solver),
    }


def to_jsonl(stream: PoseStream | str | os.PathLike[str], out_path: str | os.PathLike[str]) -> int:
    """Convert a pose stream to JSON lines: the header, then one frame object per line, with
    the stream's keys; NaN (and ±inf) become ``null``, numbers are rounded to 4 decimals.
    Written atomically (temporary file, then rename); an output that is the input is refused
    (:class:`~deepercut.outputs.OutputOverwritesInput`).

    Returns:
        The number of frames written.
    """
    _refuse_same(stream, out_path)
    source = _stream(stream)
    count = 0
    with source, atomic_output(out_path) as staged, open(staged, "w", encoding="utf-8") as out:
        out.write(json.dumps(_json_safe(source.header), allow_nan=False, default=str) + "\n")
        for poses in source:
            out.write(json.dumps(_json_record(poses), allow_nan=False, separators=(",", ":")))
            out.write("\n")
            count += 1
    return count


def _dlc_slots(track_ids: list[np.ndarray]) -> tuple[list[str], list[list[int]]]:
    """Individual names, and per frame the individual column of each person."""
    tracked = sorted({int(t) for ids in track_ids for t in ids if t >= 0})
    untracked = max((int(np.sum(ids < 0)) for ids in track_ids), default=0)
    column = {tid: k for k, tid in enumerate(tracked)}
    names = [f"id{tid}" for tid in tracked] + [f"ind{j + 1}" for j in range(untracked)]
    slots = []
    for ids in track_ids:
        slot, j = [], len(tracked)
        for tid in ids.tolist():
            if tid >= 0:
                slot.append(column[tid])
            else:
                slot.append(j)
                j += 1
        slots.append(slot)
    return names, slots


def to_dlc_csv(
    stream: PoseStream | str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    scorer: str = "deepercut",
) -> int:
    """Convert a pose stream to DeepLabCut's multi-animal CSV layout.

    Four header rows (``scorer``, ``individuals``, ``bodyparts``, ``coords``) and one row per
    frame, indexed by frame index, with columns x, y, likelihood per individual and part.
    Tracked people are named ``id<track id>``; untracked ones (id −1) ``ind1..indM`` by their
    order in the frame, M the most untracked people in any frame. Absent parts are empty cells.
    The columns need a first pass over the frames: a path is read twice, an open
    :class:`PoseStream` is held in memory. Written atomically; an output that is the input is
    refused.

    Returns:
        The number of frames (data rows) written.
    """
    _refuse_same(stream, out_path)
    if isinstance(stream, PoseStream):
        with stream:
            frames = list(stream)
        skeleton, track_ids = stream.skeleton, [p.track_id for p in frames]

        def again() -> Iterator[Poses]:
            yield from frames
    else:
        with read_poses(stream) as first:
            skeleton, track_ids = first.skeleton, [p.track_id for p in first]

        def again() -> Iterator[Poses]:
            with read_poses(stream) as second:  # a growing file may have more frames now
                yield from itertools.islice(second, len(track_ids))

    parts = list(skeleton.parts)
    names, slots = _dlc_slots(track_ids)
    width = len(names) * len(parts) * 3
    with atomic_output(out_path) as staged, open(staged, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["scorer"] + [scorer] * width)
        writer.writerow(["individuals"] + [n for n in names for _ in range(len(parts) * 3)])
        writer.writerow(["bodyparts"] + [p for _ in names for p in parts for _ in range(3)])
        writer.writerow(["coords"] + ["x", "y", "likelihood"] * (len(names) * len(parts)))
        for poses, slot in zip(again(), slots, strict=True):
            row = [""] * width
            for m, k in enumerate(slot):
                for p, (x, y, s) in enumerate(poses.keypoints[m].tolist()):
                    if math.isnan(x) or math.isnan(y):
                        continue
                    base = (k * len(parts) + p) * 3
                    row[base : base + 3] = [f"{x:.6g}", f"{y:.6g}", f"{s:.6g}"]
            writer.writerow([poses.frame, *row])
    return len(slots)
