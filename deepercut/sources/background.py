"""The one bounded-queue thread: a producer in a daemon thread, a consumer that takes its items.

A source's decoder and the engine's prefetch and detection threads all hand items over this
way: the queue is bounded (in items, and in bytes for frames: :class:`FrameQueue`) so a fast
producer waits for a slow consumer (backpressure), the producer's exception is re-raised in the
consumer, and stopping unblocks a producer waiting for room.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from deepercut.sources.frame_queue import DEFAULT_MAX_BYTES, FrameQueue

__all__ = ["END", "Background"]

#: Queued after the producer's last item.
END = object()

_WAKE_S = 0.1  # how often a waiting producer re-checks whether it was stopped


class Background:
    """Runs ``produce`` in a daemon thread (once :meth:`start` ed); what it :meth:`put` s
    reaches :meth:`get` in order, then :data:`END`, or the exception ``produce`` raised.

    With ``handoff`` the producer returns from :meth:`put` only once the consumer took the
    item, so its next item is made from the freshest input.
    """

    def __init__(
        self,
        produce: Callable[[], None],
        *,
        name: str,
        max_items: int,
        max_bytes: int = DEFAULT_MAX_BYTES,
        handoff: bool = False,
    ) -> None:
        self.queue = FrameQueue(max_items, max_bytes)
        #: Set by :meth:`stop`; a producer checks it to end early.
        self.stopping = threading.Event()
        self._produce = produce
        self._handoff = handoff
        self._taken = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @classmethod
    def iterate(
        cls, items: Iterable[Any], *, name: str, max_items: int, handoff: bool = False
    ) -> Background:
        """A started thread handing over ``items`` one by one."""

        def produce() -> None:
            for item in items:
                if not background.put(item):
                    return

        background = cls(produce, name=name, max_items=max_items, handoff=handoff)
        return background.start()

    def start(self) -> Background:
        """Start the producer thread; returns ``self``."""
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._produce()
            self._enqueue(END)
        except BaseException as exc:  # re-raised in the consumer
            self._enqueue(exc)

    # -- the producer's side

    def put(self, item: Any, nbytes: int = 0) -> bool:
        """Queue ``item`` (of ``nbytes``), waiting for room (and, with ``handoff``, for the
        consumer to take it); False when stopped first."""
        self._taken.clear()
        if not self._enqueue(item, nbytes):
            return False
        return not self._handoff or self._wait_taken()

    def put_displacing(self, item: Any, nbytes: int) -> list[Any]:
        """Queue ``item`` at once, removing the oldest items until it fits; returns them."""
        return self.queue.put_displacing(item, nbytes)

    def _enqueue(self, item: Any, nbytes: int = 0) -> bool:
        while not self.stopping.is_set():
            if self.queue.put(item, nbytes, timeout=_WAKE_S):
                return True
        return False

    def _wait_taken(self) -> bool:
        while not self.stopping.is_set():
            if self._taken.wait(timeout=_WAKE_S):
                return True
        return False

    # -- the consumer's side

    def get(self, timeout: float) -> Any:
        """The next item, :data:`END` after the last, or None after ``timeout`` seconds.

        Raises:
            BaseException: the exception the producer raised, after its items.
        """
        got, item = self.queue.get(timeout=timeout)
        if not got:
            return None
        self._taken.set()
        if isinstance(item, BaseException):
            raise item
        return item

    @property
    def finished(self) -> bool:
        """True once the thread ended and nothing is left to take."""
        return not self._thread.is_alive() and not len(self.queue)

    def is_alive(self) -> bool:
        """Whether the producer thread is running."""
        return self._thread.is_alive()

    def stop(self) -> list[Any]:
        """Ask the producer to end (it finishes the item in hand) and unblock it; returns the
        items it had queued, which are discarded."""
        self.stopping.set()
        return self.queue.clear()

    def join(self, timeout: float = 5.0) -> bool:
        """Wait up to ``timeout`` seconds for the thread to end; True if it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()
