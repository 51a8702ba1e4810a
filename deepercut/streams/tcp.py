"""The TCP server of pose streams: every client gets the header, then the records live."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from deepercut.streams.format import FORMAT, VERSION, check_header, exit_end, make_footer
from deepercut.streams.records import Encoder
from deepercut.types import Poses

log = logging.getLogger(__name__)

__all__ = ["TcpSink"]


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


def _bind_address(address: str, public: bool) -> tuple[str, int]:
    """``(host, port)`` of ``"tcp://HOST:PORT"``; a non-loopback host only when ``public``
    (with a warning: the stream is unauthenticated)."""
    parts = urlsplit(address)
    if parts.scheme != "tcp" or parts.hostname is None or parts.port is None:
        raise ValueError(f"expected tcp://HOST:PORT, got {address!r}")
    if not _is_loopback(parts.hostname):
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
    return parts.hostname, parts.port


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
        if max_clients < 1:
            raise ValueError(f"max_clients must be >= 1, got {max_clients}")
        host, port = _bind_address(address, public)
        self._encoder = Encoder()
        self._header = self._encoder.header(
            check_header({**header, "format": FORMAT, "version": VERSION})
        )
        self._max_pending = max_pending
        self._max_clients = max_clients
        self._linger = linger
        self._open_sockets(host, port)
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

    def _open_sockets(self, host: str, port: int) -> None:
        """The listening socket, the wake-up pair that interrupts the selector, the selector."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._server = socket.create_server((host, port), family=family)
        self._server.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        for s in (self._wake_r, self._wake_w):
            s.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._server, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)

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
        end, error = exit_end(exc)
        self.close(end, error=error)
