"""A queue bounded both in items and in bytes, between a source's decoder thread and its reader.

A queue of 32 frames holds 2.4 MB at 160×120 but 800 MB at 4K: bounding it in bytes keeps a
source's memory the same whatever the frame size. One item is always accepted when the queue
is empty, so a single frame larger than the budget still passes.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

#: Default byte budget of a source's queue (decoded RGB frames waiting for the consumer).
DEFAULT_MAX_BYTES = 256 * 2**20

__all__ = ["DEFAULT_MAX_BYTES", "FrameQueue"]


class FrameQueue:
    """A FIFO of items with their sizes; at most ``max_items`` items and ``max_bytes`` bytes
    (but always room for one item).

    Thread-safe for one producer and one consumer (or more).
    """

    def __init__(self, max_items: int, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_items < 1 or max_bytes < 1:
            raise ValueError(
                f"need max_items >= 1 and max_bytes >= 1, got {max_items}, {max_bytes}"
            )
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: deque[tuple[Any, int]] = deque()
        self._bytes = 0
        self.peak_bytes = 0  # most bytes held at once (for tests and diagnostics)
        self._cond = threading.Condition()

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def _fits(self, nbytes: int) -> bool:
        if not self._items:
            return True
        return len(self._items) < self.max_items and self._bytes + nbytes <= self.max_bytes

    def put(self, item: Any, nbytes: int = 0, timeout: float | None = None) -> bool:
        """Add ``item``, waiting up to ``timeout`` seconds for room; False if there was none."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._fits(nbytes), timeout):
                return False
            self._append(item, nbytes)
            return True

    def put_displacing(self, item: Any, nbytes: int) -> list[Any]:
        """Add ``item`` at once, removing the oldest items until it fits; returns them."""
        with self._cond:
            removed = []
            while not self._fits(nbytes):
                removed.append(self._popleft())
            self._append(item, nbytes)
            return removed

    def get(self, timeout: float | None = None) -> tuple[bool, Any]:
        """``(True, item)`` for the oldest item, or ``(False, None)`` after ``timeout`` s."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._items), timeout):
                return False, None
            return True, self._popleft()

    def clear(self) -> list[Any]:
        """Remove and return every item."""
        with self._cond:
            removed = [item for item, _ in self._items]
            self._items.clear()
            self._bytes = 0
            self._cond.notify_all()
            return removed

    def _append(self, item: Any, nbytes: int) -> None:
        self._items.append((item, nbytes))
        self._bytes += nbytes
        self.peak_bytes = max(self.peak_bytes, self._bytes)
        self._cond.notify_all()

    def _popleft(self) -> Any:
        item, nbytes = self._items.popleft()
        self._bytes -= nbytes
        self._cond.notify_all()
        return item
