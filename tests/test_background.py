"""The bounded-queue thread shared by sources and the engine (deepercut.sources.background)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from deepercut.sources.background import END, Background


def _take_all(background: Background) -> list[object]:
    items = []
    while (item := background.get(timeout=1.0)) is not END:
        if item is not None:
            items.append(item)
    return items


def _recorded(count: int, produced: list[int]) -> Iterator[int]:
    """0..count-1, each noted in ``produced`` as the producer takes it."""
    for i in range(count):
        produced.append(i)
        yield i


def test_items_arrive_in_order_then_end() -> None:
    background = Background.iterate(range(50), name="test", max_items=2)
    assert _take_all(background) == list(range(50))
    assert background.join(5.0)
    assert background.finished


def test_producer_error_reaches_the_consumer_after_its_items() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise KeyError("boom")

    background = Background.iterate(items(), name="test", max_items=4)
    assert background.get(1.0) == 1
    assert background.get(1.0) == 2
    with pytest.raises(KeyError, match="boom"):
        background.get(1.0)


def test_queue_bounds_the_producer() -> None:
    produced: list[int] = []
    background = Background.iterate(_recorded(10, produced), name="test", max_items=3)
    # The producer fills the queue (3) and holds one more item waiting for room.
    while len(background.queue) < 3:
        threading.Event().wait(0.01)
    threading.Event().wait(0.2)
    assert len(produced) == 4
    assert _take_all(background) == list(range(10))


def test_stop_unblocks_a_producer_waiting_for_room() -> None:
    def forever() -> Iterator[int]:
        i = 0
        while True:
            yield i
            i += 1

    background = Background.iterate(forever(), name="test", max_items=1)
    assert background.get(1.0) == 0
    discarded = background.stop()
    assert background.join(5.0)
    assert len(discarded) <= 1  # whatever was queued is handed back, not delivered


def test_handoff_waits_for_the_consumer_to_take_each_item() -> None:
    produced: list[int] = []
    background = Background.iterate(_recorded(5, produced), name="test", max_items=5, handoff=True)
    while len(background.queue) < 1:
        threading.Event().wait(0.01)
    threading.Event().wait(0.2)
    assert produced == [0]  # room for 5, yet the next item waits until this one is taken
    assert background.get(1.0) == 0
    assert _take_all(background) == [1, 2, 3, 4]


def test_put_displacing_returns_the_oldest_items() -> None:
    background = Background(lambda: None, name="test", max_items=2)
    background.put_displacing("a", 1)
    background.put_displacing("b", 1)
    assert background.put_displacing("c", 1) == ["a"]
    assert [background.get(0), background.get(0)] == ["b", "c"]
    assert background.get(0) is None
