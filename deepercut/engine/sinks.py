"""Pose sinks: the msgpack pose stream (to a file or TCP clients), callbacks, and converters to
JSON lines and DeepLabCut CSV.

Pose stream format (DESIGN.md): a sequence of msgpack maps. The first is the header::

    {"format": "deepercut.poses", "version": 1, "skeleton": Skeleton.to_dict(),
     "source": {...}, "model": {...}, "created": "2024-05-01T12:00:00+00:00",
     "deepercut": "0.1.0"}

(``created`` and ``deepercut``, the package version, are added by :func:`make_header`; any
other extra keys are kept as they are), then one map per frame::

    {"i": 17, "t": 0.68, "kp": [[[x, y, s], ...], ...], "id": [3, -1],
     "solver": {"status": "optimal", "gap": 0.0, "ms": 4.2}}

``kp`` holds M people × P parts × (x, y, score) as float32, NaN where a part is absent; ``t``
(pts in seconds) is a float64; ``id`` is the track id per person (−1 untracked). Strings are
msgpack str, binary is msgpack bin. :class:`PoseWriter` writes whole records and flushes after
each, so a reader following the file (``read_poses(..., follow=True)``) sees complete records
or a partial tail, which it waits for (or, without ``follow``, ignores).
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import itertools
import json
import math
import os
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import msgpack
import numpy as np

from deepercut.outputs import atomic_output, refuse_overwriting_inputs
from deepercut.skeleton import Skeleton
from deepercut.types import Poses

__all__ = [
    "FORMAT",
    "VERSION",
    "CallbackSink",
    "PoseSink",
    "PoseStream",
    "PoseWriter",
    "TcpSink",
    "check_header",
    "make_header",
    "read_poses",
    "to_dlc_csv",
    "to_jsonl",
]

FORMAT = "deepercut.poses"
VERSION = 1
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
    if header.get("version") != VERSION:
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
    """Packs headers and records; float32 for keypoints and solver numbers, float64 for
    pts and headers. Not thread-safe (msgpack packers keep a buffer)."""

    def __init__(self) -> None:
        self._single = msgpack.Packer(use_bin_type=True, use_single_float=True, default=_plain)
        self._double = msgpack.Packer(use_bin_type=True, default=_plain)

    def header(self, header: dict[str, Any]) -> bytes:
        return self._double.pack(header)

    def poses(self, poses: Poses) -> bytes:
        single = self._single.pack
        return b"".join(
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
    """Writes a pose stream to a file: the header at once, then one record per :meth:`write`.

    Each record is written whole and flushed (and, with ``fsync=True``, synced to disk), so a
    reader can follow the file while it grows. A context manager; closes files it opened.

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
        self.header = check_header({"format": FORMAT, "version": VERSION, **header})
        self._encoder = _Encoder()
        self._fsync = fsync
        self.frames = 0
        self._file, self._owns = _open(path_or_file, "wb")
        self._emit(self._encoder.header(self.header))

    def write(self, poses: Poses) -> None:
        """Append one frame's poses."""
        self._emit(self._encoder.poses(poses))
        self.frames += 1

    def _emit(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        """Flush, and close the file if this writer opened it; idempotent."""
        if self._file.closed:
            return
        self._file.flush()
        if self._owns:
            self._file.close()

    def __enter__(self) -> PoseWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PoseStream:
    """A pose stream being read: :attr:`header`, :attr:`skeleton`, and iteration over
    :class:`~deepercut.types.Poses` (keypoints float32 [M,P,3], track_id int64 [M]).

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
        self._unpacker = msgpack.Unpacker(raw=False)
        self.records = 0
        try:
            header = next(self._objects(), None)
            if header is None:
                raise ValueError(f"{name}: empty or truncated pose stream (no complete header)")
            self.header: dict[str, Any] = check_header(header, name)
        except BaseException:
            self.close()
            raise
        self.skeleton = Skeleton.from_dict(self.header["skeleton"])

    def _objects(self) -> Iterator[Any]:
        """Whole msgpack objects; stops at the end (or a partial tail), or, following, after
        ``timeout`` seconds without new data."""
        last_data = time.monotonic()
        while True:
            try:
                obj = self._unpacker.unpack()
            except msgpack.OutOfData:
                pass  # the unpacker keeps the partial object and resumes when fed
            except (ValueError, msgpack.UnpackException) as exc:
                raise ValueError(
                    f"{self.name}: corrupt pose stream after {self.records} records ({exc})"
                ) from None
            else:
                yield obj
                continue
            chunk = self._read(_CHUNK) if not self._file.closed else b""
            if chunk:
                self._unpacker.feed(chunk)
                last_data = time.monotonic()
                continue
            if not self._follow:
                return
            if self._timeout is not None and time.monotonic() - last_data >= self._timeout:
                return
            time.sleep(self._poll)

    def __iter__(self) -> Iterator[Poses]:
        num_parts = self.skeleton.num_parts
        for record in self._objects():
            try:
                poses = _record_poses(record, num_parts)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ValueError(
                    f"{self.name}: record {self.records} is not a pose frame ({exc!r})"
                ) from None
            self.records += 1
            yield poses

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

    A partial last record (a file still being written, or cut short) ends the iteration
    cleanly. With ``follow=True`` the reader waits for the file to grow instead, checking
    every ``poll`` seconds, and stops after ``timeout`` seconds without new data (never with
    ``None``).

    Raises:
        FileNotFoundError: a missing path.
        ValueError: not a deepercut pose stream (wrong or missing header), or corrupt data.
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
        self.dropped = 0


class TcpSink:
    """Publishes the pose stream to every client of a TCP server.

    Each client receives the header when it connects, then every record written after that.
    Records are queued per client (at most ``max_pending``); a client that reads too slowly
    loses its oldest queued records (whole records, never part of one), so :meth:`write`
    never blocks. One background thread does all the network I/O.

    Args:
        address: ``"tcp://HOST:PORT"`` (port 0 picks a free one; see :attr:`address`).
        header: see :func:`make_header`.
        max_pending: records queued per client before the oldest is dropped.
        linger: seconds :meth:`close` spends sending what is still queued.
    """

    def __init__(
        self,
        address: str,
        header: dict[str, Any],
        *,
        max_pending: int = 64,
        linger: float = 1.0,
    ) -> None:
        parts = urlsplit(address)
        if parts.scheme != "tcp" or parts.hostname is None or parts.port is None:
            raise ValueError(f"expected tcp://HOST:PORT, got {address!r}")
        self._encoder = _Encoder()
        self._header = self._encoder.header(
            check_header({"format": FORMAT, "version": VERSION, **header})
        )
        self._max_pending = max_pending
        self._linger = linger
        family = socket.AF_INET6 if ":" in parts.hostname else socket.AF_INET
        self._server = socket.create_server((parts.hostname, parts.port), family=family)
        self._server.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        for s in (self._wake_r, self._wake_w):
            s.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._server, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._clients: list[_Client] = []
        self._lock = threading.Lock()  # guards _clients, their pending queues, the encoder
        self._closing = threading.Event()
        self.dropped = 0
        self.records = 0
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

    def write(self, poses: Poses) -> None:
        """Queue one frame's record for every connected client."""
        with self._lock:  # also serialises the encoder between writing threads
            data = self._encoder.poses(poses)
            for client in self._clients:
                if len(client.pending) >= self._max_pending:
                    client.pending.popleft()
                    client.dropped += 1
                    self.dropped += 1
                client.pending.append(data)
        self.records += 1
        self._wake()

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
                self._update_interest()
                for key, events in self._selector.select(timeout=0.2):
                    if key.fileobj is self._server:
                        self._accept()
                    elif key.fileobj is self._wake_r:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                    else:
                        self._service(key.data, events)
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
            sock.setblocking(False)
            client = _Client(sock, self._header)
            self._selector.register(sock, selectors.EVENT_READ, client)
            with self._lock:
                self._clients.append(client)

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
            self.dropped += sum(len(c.pending) + (c.current is not None) for c in clients)
        for client in clients:
            with contextlib.suppress(OSError):
                client.sock.shutdown(socket.SHUT_RDWR)  # the client reads EOF after the data
            client.sock.close()
        self._selector.close()
        self._server.close()
        self._wake_r.close()
        self._wake_w.close()

    def close(self) -> None:
        """Send what is queued (for up to ``linger`` seconds), then disconnect everyone."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._wake()
        self._thread.join(self._linger + 5.0)

    def __enter__(self) -> TcpSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
