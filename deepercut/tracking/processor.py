"""One interface for the post-processing of ordered poses, and a chain of such steps.

A processor sees a stream's poses one frame at a time, in frame order (as DeepLabCut-Live's
processors do): :meth:`Processor.update` returns the frame's poses, changed (ids, smoothed
keypoints) or not; :meth:`Processor.reset` forgets the stream before the next one starts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from deepercut.types import Poses


@runtime_checkable
class Processor(Protocol):
    """A per-stream post-processing step: poses in frame order → poses."""

    def update(self, poses: Poses) -> Poses:
        """This frame's poses after the step."""
        ...

    def reset(self) -> None:
        """Forget the stream (the next :meth:`update` starts a new one)."""
        ...


class Chain:
    """Processors applied one after another (itself a :class:`Processor`)."""

    def __init__(self, steps: Iterable[Processor] = ()) -> None:
        self.steps: list[Processor] = list(steps)

    def update(self, poses: Poses) -> Poses:
        for step in self.steps:
            poses = step.update(poses)
        return poses

    def reset(self) -> None:
        for step in self.steps:
            step.reset()

    def __len__(self) -> int:
        return len(self.steps)
