"""Presentation timestamps for decoded frames whose container gives them out of order.

A decoder outputs frames in presentation order, but some containers do not store presentation
timestamps: AVI keeps one time per packet in *decode* order, so with B-frames the decoded
frames' ``pts`` come out permuted (1, 4, 3, 5, 2, 8, 7, 9, 6, ...). The set of values is right,
only their order is not, and each is displaced by at most the decoder's reordering depth. So
holding the last few frames and giving the oldest one the smallest timestamp seen restores the
timeline; for well-formed files (increasing ``pts``) this changes nothing.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Generic, TypeVar

__all__ = ["REORDER_WINDOW", "PtsReorderer"]

#: Frames held back to sort timestamps: H.264/HEVC reorder at most a few frames in practice
#: (x264's default is 3 B-frames; the standards allow up to 16).
REORDER_WINDOW = 8

T = TypeVar("T")


class PtsReorderer(Generic[T]):
    """Pairs items (decoded frames, in output order) with their timestamps sorted over a
    sliding window of ``window`` items (0: no reordering, items pass straight through).

    Items without a timestamp (``None``) keep ``None``: the caller estimates one.
    """

    def __init__(self, window: int = REORDER_WINDOW) -> None:
        if window < 0:
            raise ValueError(f"window must be >= 0, got {window}")
        self.window = window
        self._items: deque[tuple[T, bool]] = deque()
        self._pts: list[int] = []

    def __len__(self) -> int:
        return len(self._items)

    def push(self, item: T, pts: int | None) -> list[tuple[T, int | None]]:
        """Add an item; returns the items that leave the window, oldest first."""
        self._items.append((item, pts is not None))
        if pts is not None:
            heapq.heappush(self._pts, pts)
        ready = []
        while len(self._items) > self.window:
            ready.append(self._pop())
        return ready

    def flush(self) -> list[tuple[T, int | None]]:
        """Every item still held (at the end of the data), oldest first."""
        return [self._pop() for _ in range(len(self._items))]

    def clear(self) -> int:
        """Forget the items held (when decoding stops early); returns how many there were."""
        held = len(self._items)
        self._items.clear()
        self._pts.clear()
        return held

    def _pop(self) -> tuple[T, int | None]:
        item, timed = self._items.popleft()
        return item, heapq.heappop(self._pts) if timed else None
