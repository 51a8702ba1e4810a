"""The error of a source that cannot be opened or read, and FFmpeg's reason for it."""

from __future__ import annotations

__all__ = ["SourceError", "ffmpeg_reason"]


class SourceError(ValueError):
    """A source that cannot be opened or read (the message names it and gives FFmpeg's reason)."""


def ffmpeg_reason(exc: BaseException) -> str:
    """FFmpeg's short reason (``strerror``) or the exception text."""
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
