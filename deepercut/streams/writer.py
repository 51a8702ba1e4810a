"""The pose-stream file writer: header, one record per frame, footer."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import IO, Any

from deepercut.streams.binary_file import open_binary
from deepercut.streams.format import FORMAT, VERSION, check_header, exit_end, make_footer
from deepercut.streams.records import Encoder
from deepercut.types import Poses

__all__ = ["PoseWriter"]


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
        self._encoder = Encoder()
        self._fsync = fsync
        self.frames = 0
        self.footer: dict[str, Any] | None = None
        self._file, self._owns = open_binary(path_or_file, "wb")
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
        end, error = exit_end(exc)
        self.close(end, error=error)
