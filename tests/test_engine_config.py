"""EngineConfig: every setting checked once when it is made; Engine(config) and the keyword form
build the same engine; the tracking stage's chain of processors, reset per stream."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from engine_support import VIDEO_FRAMES, TruthDetector, make_video, tiny_model

from deepercut.cli import build_parser
from deepercut.cli.run import engine_config
from deepercut.engine.config import EngineConfig
from deepercut.engine.pipeline import Engine
from deepercut.tracking import (
    Chain,
    OneEuroConfig,
    OneEuroSmoother,
    PoseTracker,
    Processor,
    TrackerConfig,
)
from deepercut.types import Poses


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
        ({"live_batch_size": 0}, "live_batch_size must be >= 1"),
        ({"chunk_frames": 0}, "chunk_frames must be >= 1"),
        ({"startup_timeout": 0.0}, "startup_timeout must be > 0, got 0.0"),
        ({"workers": -1}, "workers must be >= 0, got -1"),
        ({"detector_actors": -2}, "detector_actors must be >= 0"),
        ({"temporal": -1}, "temporal must be >= 0"),
        ({"solver": "fast"}, "unknown solver method 'fast'"),
        ({"fallback": "none"}, "unknown fallback method 'none'"),
        ({"backend": "onnx"}, "unknown backend 'onnx'"),
        ({"precision": "int8"}, "unknown precision 'int8'"),
        ({"ray_address": "auto"}, "a Ray address needs workers >= 1"),
    ],
)
def test_bad_settings_fail_when_the_config_is_made(settings, message) -> None:
    with pytest.raises(ValueError, match=message):
        EngineConfig(**settings)
    # The keyword form checks the same, before any model is loaded.
    with pytest.raises(ValueError, match=message):
        Engine("/nonexistent/model.pt", **settings)


def test_wrong_kinds_of_identity_settings_are_refused() -> None:
    with pytest.raises(TypeError, match="track must be a bool or a TrackerConfig"):
        EngineConfig(track="online")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="smooth must be a bool or a OneEuroConfig"):
        EngineConfig(smooth=0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_cutoff must be positive, got 0"):
        OneEuroConfig(min_cutoff=0)


def test_config_is_frozen_and_options_replace_its_settings() -> None:
    config = EngineConfig(solver="heuristic", workers=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.workers = 2  # type: ignore[misc]
    assert EngineConfig.of(config) is config
    assert EngineConfig.of(config, workers=3) == EngineConfig(solver="heuristic", workers=3)
    assert EngineConfig.of("m.pt", solver="exact") == EngineConfig(model="m.pt", solver="exact")
    with pytest.raises(ValueError, match="batch_size"):  # replacing re-checks
        EngineConfig.of(config, batch_size=0)
    with pytest.raises(TypeError, match="model was given twice"):
        EngineConfig.of("a.pt", model="b.pt")


def test_identity_settings_resolve_to_the_steps_that_run() -> None:
    assert EngineConfig().tracker == TrackerConfig() and EngineConfig().smoother is None
    assert EngineConfig(track=False).tracker is None
    assert EngineConfig(temporal=2).tracker is None  # the temporal solve decides the ids
    custom = TrackerConfig(max_age=5)
    assert EngineConfig(track=custom).tracker is custom
    assert EngineConfig(smooth=True).smoother == OneEuroConfig()


def test_cli_arguments_become_the_engine_config(tmp_path) -> None:
    args = build_parser().parse_args(
        ["run", str(tmp_path), "--solver", "exact", "--workers", "0", "--batch-size", "3"]
    )
    config = engine_config(args)
    assert (config.solver, config.workers, config.batch_size) == ("exact", 0, 3)
    assert config.track is False  # an image folder: unrelated images, no tracking by default
    args = build_parser().parse_args(["run", str(tmp_path), "--workers", "-1"])
    with pytest.raises(ValueError, match="workers must be >= 0"):
        engine_config(args)


def test_config_and_keyword_forms_run_the_same(tmp_path) -> None:
    path = tmp_path / "people.mp4"
    truth = make_video(path)
    model = tiny_model()
    settings = {"solver": "heuristic", "detector": TruthDetector(truth), "smooth": True}
    runs = []
    for engine in (Engine(model, **settings), Engine(EngineConfig(model=model, **settings))):
        with engine:
            assert engine.tracking_info()["mode"] == "online"
            assert "smoothing" in engine.tracking_info()
            # Twice on one engine: the chain is reset per stream, so ids start again from 0.
            runs += [list(engine.run(str(path))) for _ in range(2)]
    assert all(len(run) == VIDEO_FRAMES for run in runs)
    for run in runs[1:]:
        for a, b in zip(runs[0], run, strict=True):
            np.testing.assert_array_equal(a.track_id, b.track_id)
            np.testing.assert_array_equal(a.keypoints, b.keypoints)
    assert max(int(p.track_id.max(initial=-1)) for p in runs[0]) >= 0


def _poses(frame: int, xs: list[float]) -> Poses:
    keypoints = np.zeros((len(xs), 14, 3), np.float32)
    for m, x in enumerate(xs):
        keypoints[m, :, 0] = x + np.arange(14) * 3.0
        keypoints[m, :, 1] = 50.0 + np.arange(14) * 12.0
        keypoints[m, :, 2] = 1.0
    return Poses(frame, frame / 25.0, keypoints, np.full(len(xs), -1, np.int64), {})


def test_chain_applies_its_steps_in_order_and_resets_them() -> None:
    tracker, smoother = PoseTracker(TrackerConfig(min_hits=1)), OneEuroSmoother()
    assert isinstance(tracker, Processor) and isinstance(smoother, Processor)
    chain = Chain([tracker, smoother])
    first = [chain.update(_poses(f, [10.0 + 4 * f, 200.0])) for f in range(3)]
    assert [p.track_id.tolist() for p in first] == [[0, 1]] * 3
    # The smoother ran after the tracker: tracked people's keypoints lag behind the motion.
    assert first[2].keypoints[0, 0, 0] < 18.0
    chain.reset()
    assert tracker.tracks == [] and chain.update(_poses(0, [300.0])).track_id.tolist() == [0]
