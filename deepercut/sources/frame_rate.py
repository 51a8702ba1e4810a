"""The frame rate assumed where a source does not know its own (image folders, some streams)."""

from __future__ import annotations

import math

#: Frames per second of a source without a usable rate.
DEFAULT_FPS = 25.0


def known_fps(fps: float) -> float:
    """``fps`` when it is a usable rate (finite, positive), else :data:`DEFAULT_FPS`."""
    return fps if math.isfinite(fps) and fps > 0 else DEFAULT_FPS
