"""Sources through the engine: one record per decoded frame on awkward files, per-image sizes
in a photo folder, and a summary whose counts add up (no "dropped 0" with missing indices)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from engine_support import tiny_model
from PIL import Image
from test_source_formats import CASES, make, pyav_count
from test_sources import _damage, encode

from deepercut.engine.pipeline import Engine
from deepercut.model.io import Model
from deepercut.skeleton import MPII14
from deepercut.sources import open_source
from deepercut.types import Candidates, Frame

AWKWARD = ("h264_bframes.avi", "vfr_phone.mp4", "portrait_phone.mp4", "h264_annexb.h264")


@pytest.fixture(scope="module")
def model() -> Model:
    return tiny_model()


def _no_people(frames: Sequence[Frame]) -> list[Candidates]:
    """A detector that finds nothing (these tests count frames, not people)."""
    return [Candidates.empty(MPII14.num_parts) for _ in frames]


@pytest.mark.parametrize("name", AWKWARD)
def test_one_record_per_decoded_frame(model: Model, name: str, tmp_path: Path) -> None:
    case = next(c for c in CASES if c.name == name)
    path = tmp_path / name
    make(case, path)
    with Engine(model, workers=0, batch_size=4, detector=_no_people) as engine:
        poses = list(engine.run(path))
        stats = engine.stats
    assert [p.frame for p in poses] == list(range(pyav_count(path)))
    assert np.all(np.diff([p.pts for p in poses]) > 0)
    assert stats.solved == len(poses) and stats.dropped == stats.skipped_source == 0


def test_damaged_file_counts_every_lost_frame(model: Model, tmp_path: Path) -> None:
    clean, damaged = encode(tmp_path / "clean.mkv"), tmp_path / "damaged.mkv"
    lost = _damage(clean, damaged, {5, 15})
    with open_source(damaged) as source, Engine(model, workers=0, detector=_no_people) as engine:
        poses = list(engine.run(source))
        stats = engine.stats
    indices = [p.frame for p in poses]
    assert indices == [i for i in range(indices[-1] + 1) if i not in lost]
    # Every index is a record or counted: the summary cannot say nothing was lost.
    assert len(poses) + stats.skipped_source + stats.dropped == indices[-1] + 1
    assert stats.skipped_source == len(lost) == 2
    assert "skipped 2)" in stats.summary().splitlines()[0]
    assert source.stats.decoded == source.stats.delivered == len(poses)


def test_folder_of_mixed_sizes_is_detected_per_image(model: Model, tmp_path: Path) -> None:
    sizes = [(157, 105), (194, 265), (320, 240), (61, 300)]
    rng = np.random.default_rng(0)
    for n, (w, h) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8)).save(tmp_path / f"{n}.png")
    with Engine(model, solver="heuristic", workers=0, batch_size=4) as engine:
        results = list(engine.run_frames(str(tmp_path), keep_images=True))
        frames = [Frame(r.index, r.pts, r.image) for r in results]
        together = engine.detector(frames)
        alone = [engine.detector([frame])[0] for frame in frames]
    assert [r.index for r in results] == [0, 1, 2, 3]
    assert all(r.poses is not None for r in results)
    assert [r.image.shape[1::-1] for r in results] == sizes  # each image as it was
    # Each image letterboxed on its own, candidates in its own pixels: as if it came alone.
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_array_equal(a.part, b.part)
        np.testing.assert_allclose(a.xy, b.xy, atol=1e-3)
