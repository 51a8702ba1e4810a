"""The timestamp reorderer and the byte-bounded frame queue, on their own."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from deepercut.sources.frame_queue import FrameQueue
from deepercut.sources.timestamps import REORDER_WINDOW, PtsReorderer


@given(
    steps=st.lists(st.integers(1, 5000), min_size=1, max_size=60),
    block=st.integers(1, REORDER_WINDOW // 2),
    seed=st.integers(0, 2**32 - 1),
)
def test_timestamps_permuted_within_the_window_come_out_sorted(
    steps: list[int], block: int, seed: int
) -> None:
    pts = np.cumsum(steps).tolist()
    # As AVI with B-frames gives them: permuted within small groups (displacement < window).
    rng = np.random.default_rng(seed)
    permuted = [p for i in range(0, len(pts), block) for p in rng.permutation(pts[i : i + block])]
    reorder: PtsReorderer[int] = PtsReorderer()
    out = [pair for n, p in enumerate(permuted) for pair in reorder.push(n, int(p))]
    out += reorder.flush()
    assert [item for item, _ in out] == list(range(len(pts)))  # items keep their order
    assert [p for _, p in out] == pts  # timestamps are sorted back


def test_items_without_timestamps_keep_none_and_clear_forgets() -> None:
    reorder: PtsReorderer[str] = PtsReorderer(window=2)
    assert reorder.push("a", 20) == [] and reorder.push("b", None) == []
    assert reorder.push("c", 10) == [("a", 10)]
    assert reorder.flush() == [("b", None), ("c", 20)]
    passthrough: PtsReorderer[str] = PtsReorderer(window=0)
    assert passthrough.push("x", 5) == [("x", 5)]
    reorder.push("d", 1)
    assert reorder.clear() == 1 and reorder.flush() == []


def test_frame_queue_bounds_items_and_bytes() -> None:
    queue = FrameQueue(max_items=3, max_bytes=100)
    assert queue.put("a", 60, timeout=0) and not queue.put("b", 60, timeout=0)  # bytes
    assert queue.put("b", 40, timeout=0) and queue.nbytes == 100
    assert queue.put_displacing("c", 70) == ["a", "b"]  # room made, oldest first
    assert queue.get(timeout=0) == (True, "c") and queue.get(timeout=0) == (False, None)
    assert queue.put("huge", 10_000, timeout=0)  # one item always fits an empty queue
    assert queue.put_displacing("small", 1) == ["huge"] and queue.peak_bytes == 10_000
    for item in "xy":
        queue.put(item, 0, timeout=0)
    assert not queue.put("z", 0, timeout=0)  # items
    assert queue.clear() == ["small", "x", "y"] and len(queue) == 0 and queue.nbytes == 0
