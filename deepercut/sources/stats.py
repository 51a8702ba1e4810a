"""The counters of a source: every decoded frame accounted for."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

__all__ = ["SourceStats"]

_MAX_ERRORS = 100  # kept in SourceStats.errors; older ones are discarded


@dataclass
class SourceStats:
    """Counters of a :class:`Source`, updated while it runs.

    Every decoded frame ends in exactly one of ``delivered``, ``filtered``, ``corrupt``,
    ``dropped`` or ``discarded``; :attr:`pending` are those still queued.

    Attributes:
        decoded: frames the decoder produced (for videos including those before ``start``
            and between ``stride`` steps; image folders skip those without decoding; not the
            few still in the timestamp reordering window when decoding stops early).
        delivered: frames handed to the consumer.
        filtered: decoded frames not asked for (before ``start``, at or after ``stop``,
            between ``stride`` steps).
        corrupt: decoded frames the decoder flagged as corrupt (not delivered).
        dropped: frames discarded in live mode because the consumer fell behind.
        discarded: frames decoded but still queued when the source was closed early.
        decode_errors: packets the decoder rejected and unreadable images (no frame came
            out of them, so they are not in ``decoded``).
        missing: frames absent from a file's timeline (gaps in its timestamps, or a tail
            short of the frames its header announces: damaged or cut data) and a folder's
            unreadable images; their indices are skipped.
        lost_outage: frames estimated lost while a live source was reconnecting.
        reconnects: reconnection attempts (successful or not).
        errors: short descriptions of the last problems (at most 100).
    """

    decoded: int = 0
    delivered: int = 0
    filtered: int = 0
    corrupt: int = 0
    dropped: int = 0
    discarded: int = 0
    decode_errors: int = 0
    missing: int = 0
    lost_outage: int = 0
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def skipped_corrupt(self) -> int:
        """Damage skipped: corrupt frames and rejected packets or images."""
        return self.corrupt + self.decode_errors

    @property
    def pending(self) -> int:
        """Decoded frames not yet accounted for (queued for the consumer); 0 once closed."""
        done = self.delivered + self.filtered + self.corrupt + self.dropped + self.discarded
        return self.decoded - done

    def counts(self) -> dict[str, int]:
        """The counters as plain ints (for a stream footer or a summary)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if isinstance(v, int)}

    def error(self, message: str) -> None:
        """Record a problem, keeping the most recent ones."""
        self.errors.append(message)
        if len(self.errors) > _MAX_ERRORS:
            del self.errors[0]
