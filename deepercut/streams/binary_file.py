"""A path or an open binary file, and whether the caller owns it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

__all__ = ["open_binary"]


def open_binary(
    path_or_file: str | os.PathLike[str] | IO[bytes], mode: str
) -> tuple[IO[bytes], bool]:
    """A binary file and whether we opened it (and so must close it)."""
    if isinstance(path_or_file, str | os.PathLike):
        if "w" in mode:  # `-o out/poses.msgpack` should work without creating out/ first
            Path(path_or_file).parent.mkdir(parents=True, exist_ok=True)
        return open(path_or_file, mode), True  # closed by the owner's close()
    return path_or_file, False
