"""The pose-stream format: its header and footer, and what a reader accepts.

Pose stream format, version 3: a header msgpack map::

    {"format": "deepercut.poses", "version": 3, "skeleton": Skeleton.to_dict(),
     "source": {...}, "model": {...}, "created": "2024-05-01T12:00:00+00:00",
     "deepercut": "0.1.0"}

(``created`` and ``deepercut``, the package version, are added by :func:`make_header`; any
other extra keys are kept as they are), then checksummed records
(:mod:`~deepercut.streams.framing`: each a msgpack ``ext 32`` object holding a CRC-checked
msgpack map, :mod:`~deepercut.streams.records`): first the header's check record (kind
``HEADER``), the CRC-32 and length of the header map's bytes as written::

    {"crc": 3735928559, "bytes": 412}

then one per frame::

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
A changed byte anywhere, header included, raises :class:`CorruptStreamError`; a stream cut
inside the header or its check record has no complete header yet (a ``ValueError``; followed,
it is waited for). Older versions are still read, without the header check: version 2 (no
check record; a version 2 header followed by one is refused) and version 1 (plain msgpack
maps, no checksums, no footer: the size cap only).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from deepercut.skeleton import Skeleton

__all__ = [
    "ENDS",
    "FORMAT",
    "READABLE_VERSIONS",
    "VERSION",
    "check_header",
    "exit_end",
    "make_footer",
    "make_header",
]

FORMAT = "deepercut.poses"
VERSION = 3
#: Versions :func:`read_poses` reads.
READABLE_VERSIONS = (1, 2, 3)
#: How a stream ended, as its footer's ``end`` says.
ENDS = ("complete", "interrupted", "error")


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


def exit_end(exc: BaseException | None) -> tuple[str, str | None]:
    """A footer's ``end`` and ``error`` for a context manager left with ``exc``."""
    if exc is None:
        return "complete", None
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", None
    return "error", f"{type(exc).__name__}: {exc}"
