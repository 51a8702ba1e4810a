"""What the engine sends poses to: the :class:`PoseSink` protocol, and a callback as a sink."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from deepercut.types import Poses

__all__ = ["CallbackSink", "PoseSink"]


@runtime_checkable
class PoseSink(Protocol):
    """Where the pipeline sends each frame's poses."""

    def write(self, poses: Poses) -> None: ...

    def close(self) -> None: ...


class CallbackSink:
    """Calls ``fn(poses)`` for every frame (for embedding the engine in an application)."""

    def __init__(self, fn: Callable[[Poses], object]) -> None:
        self._fn = fn

    def write(self, poses: Poses) -> None:
        self._fn(poses)

    def close(self) -> None:
        pass

    def __enter__(self) -> CallbackSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
