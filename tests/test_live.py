"""Live mode never builds up latency: checked by counts and structure, not by the clock.

A scripted source and a slow detector move in lock-step: while the detector works on one
batch, the source delivers a burst of frames. The detector must then get only the newest
frames (at most ``live_batch_size``), the older ones must be counted as stale drops, and every
detected frame must come back in order.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import numpy as np
import pytest
from engine_support import tiny_model

from deepercut.engine.pipeline import Engine
from deepercut.types import Candidates, Frame

BURST = 5  # frames the source delivers while the detector works on one batch
BURSTS = 6
WAIT_S = 20.0  # a generous bound on each hand-shake; only reached when the engine hangs


def empty_candidates(num_parts: int) -> Candidates:
    return Candidates(
        xy=np.zeros((0, 2), np.float32),
        part=np.zeros(0, np.int64),
        score=np.zeros(0, np.float32),
        offsets=np.zeros((0, num_parts, 2), np.float32),
    )


class LockStep:
    """A source and a detector in lock-step: detector call ``k`` waits until the source has
    delivered burst ``k`` (and the engine's reader has taken all of it)."""

    def __init__(self, num_parts: int) -> None:
        self.num_parts = num_parts
        self.started = [threading.Event() for _ in range(BURSTS + 1)]
        self.delivered = [threading.Event() for _ in range(BURSTS + 1)]
        self.batches: list[list[int]] = []
        self.produced = 0

    def frames(self) -> Iterator[Frame]:
        image = np.zeros((32, 48, 3), np.uint8)
        yield self._frame(image)  # the first frame starts the detector
        for burst in range(BURSTS):
            assert self.started[burst].wait(WAIT_S), "the detector never took a batch"
            for _ in range(BURST):
                yield self._frame(image)
            # Resumed: the reader stored the burst's last frame and asks for the next one.
            self.delivered[burst].set()

    def _frame(self, image: np.ndarray) -> Frame:
        frame = Frame(self.produced, self.produced / 30, image)
        self.produced += 1
        return frame

    def detect(self, frames: Sequence[Frame]) -> list[Candidates]:
        call = len(self.batches)
        self.batches.append([f.index for f in frames])
        self.started[call].set()
        if call < BURSTS:  # the slow part: the next burst arrives meanwhile
            assert self.delivered[call].wait(WAIT_S), "the source never delivered"
        return [empty_candidates(self.num_parts) for _ in frames]


@pytest.mark.parametrize("live_batch", [1, 3])
def test_detector_gets_only_the_newest_frames(live_batch: int) -> None:
    model = tiny_model()
    step = LockStep(model.skeleton.num_parts)
    with Engine(
        model, solver="heuristic", detector=step.detect, live=True, live_batch_size=live_batch
    ) as engine:
        results = list(engine.run_frames(step.frames()))
        stats = engine.stats
    total = 1 + BURST * BURSTS
    # Each batch: the newest `live_batch` frames of the burst that came while detecting.
    expected = [[0]] + [
        list(range(b * BURST + 1, (b + 1) * BURST + 1))[-live_batch:] for b in range(BURSTS)
    ]
    assert step.batches == expected
    assert stats.dropped_stale == BURSTS * (BURST - live_batch)
    assert stats.frames == total and stats.dropped == stats.dropped_stale
    delivered = [i for batch in expected for i in batch]
    assert [r.index for r in results] == delivered
    assert all(r.poses is not None for r in results)
    assert stats.solved == len(delivered)


def test_file_mode_detects_every_frame_in_full_batches() -> None:
    model = tiny_model()
    seen: list[list[int]] = []

    def detect(frames: Sequence[Frame]) -> list[Candidates]:
        seen.append([f.index for f in frames])
        return [empty_candidates(model.skeleton.num_parts) for _ in frames]

    image = np.zeros((32, 48, 3), np.uint8)
    frames = [Frame(i, i / 30, image) for i in range(10)]
    with Engine(model, solver="heuristic", detector=detect, batch_size=4, live=False) as engine:
        results = list(engine.run_frames(frames))
        assert engine.stats.dropped == 0
    assert seen == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [r.index for r in results] == list(range(10))


def test_live_batch_size_defaults_and_validation() -> None:
    model = tiny_model()
    detect = LockStep(model.skeleton.num_parts).detect
    assert Engine(model, detector=detect, batch_size=8).live_batch_size == 1  # CPU
    assert Engine(model, detector=detect, live_batch_size=4).live_batch_size == 4
    with pytest.raises(ValueError, match="live_batch_size"):
        Engine(model, detector=detect, live_batch_size=0)


def test_a_failing_live_source_still_hands_back_what_it_gave() -> None:
    model = tiny_model()

    def frames() -> Iterator[Frame]:
        yield Frame(0, 0.0, np.zeros((32, 48, 3), np.uint8))
        raise OSError("camera unplugged")

    def detect(batch: Sequence[Frame]) -> list[Candidates]:
        return [empty_candidates(model.skeleton.num_parts) for _ in batch]

    got: list[int] = []
    with Engine(model, solver="heuristic", detector=detect, live=True) as engine:
        with pytest.raises(OSError, match="unplugged"):
            for result in engine.run_frames(frames()):
                got.append(result.index)
    assert got == [0]
