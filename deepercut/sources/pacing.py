"""A virtual camera's clock: frames leave at a fixed rate."""

from __future__ import annotations

import threading
import time

__all__ = ["Pacer"]


class Pacer:
    """Sleeps so frames leave at ``rate`` per second (a virtual camera)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._origin: tuple[float, int] | None = None

    def wait(self, index: int, stop: threading.Event) -> None:
        """Sleep until frame ``index`` is due (the first frame sets the clock); ``stop`` ends
        the wait early."""
        now = time.monotonic()
        if self._origin is None:
            self._origin = (now, index)
            return
        t0, i0 = self._origin
        delay = t0 + (index - i0) / self.rate - now
        if delay > 0:
            stop.wait(delay)
