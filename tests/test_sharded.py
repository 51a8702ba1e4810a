"""Detection spread over Ray detector actors: keyframe chunks, in-order merge, actor death."""

from __future__ import annotations

import pytest
from engine_support import (
    UNHURRIED,
    VIDEO_FRAMES,
    TruthDetector,
    assert_same_poses,
    local_ray,
    make_video,
    save_tiny_model,
    tiny_model,
)

from deepercut.cli import main
from deepercut.engine.config import EngineConfig
from deepercut.engine.pipeline import Engine
from deepercut.engine.sharded import keyframe_indices, plan_chunks
from deepercut.streams import read_poses

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    with local_ray(num_cpus=3):
        yield


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("sharded") / "gop6.mp4"
    return str(path), make_video(path, keyframe_interval=6)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def reference(video, model):
    path, truth = video
    with Engine(model, solver="exact", **UNHURRIED, detector=TruthDetector(truth)) as engine:
        return list(engine.run(path))


def test_keyframes_and_chunks(video) -> None:
    assert keyframe_indices(video[0]) == [0, 6, 12, 18]
    keys = [0, 6, 12, 18]
    assert plan_chunks(keys, 0, None, 1, 6) == [(0, 6), (6, 12), (12, 18), (18, None)]
    assert plan_chunks(keys, 0, None, 1, 10) == [(0, 12), (12, None)]
    # Chunks start on the stride grid from `start` and stay inside [start, stop).
    assert plan_chunks(keys, 2, 20, 3, 5) == [(2, 8), (8, 14), (14, 20)]
    assert plan_chunks([0], 0, None, 1, 6) == [(0, None)]


def test_detector_actors_give_the_same_poses_in_order(video, model, reference) -> None:
    path, truth = video
    with Engine(
        model,
        **UNHURRIED,
        solver="exact",
        workers=1,
        detector=TruthDetector(truth),
        detector_actors=2,
        detector_gpus=0,
        chunk_frames=6,
    ) as engine:
        # A dead actor: the chunks sent to it fail, a new actor detects them again.
        ray.kill(engine._sharded.actors[0])
        poses = list(engine.run(path))
        assert engine._sharded.restarts == 1
        assert engine.stats.frames == VIDEO_FRAMES
        sliced = list(engine.run(path, start=2, stride=3, max_frames=5))
        # Images are wanted: the driver detects (the actors' images never leave them).
        results = list(engine.run_frames(path, keep_images=True, max_frames=3))
    assert [r.index for r in results] == [0, 1, 2] and results[0].image is not None
    assert_same_poses(poses, reference)
    assert_same_poses(sliced, [p for p in reference if p.frame in (2, 5, 8, 11, 14)])


def test_cli_detects_on_actors_with_the_network(video, tmp_path) -> None:
    path, _ = video
    model, out = save_tiny_model(tmp_path / "tiny.pt"), tmp_path / "poses.msgpack"
    # Room for the actors to start on a loaded machine (importing torch can take minutes).
    flags = (
        "--detector-actors 2 --workers 0 --solver heuristic --startup-timeout 900 --quiet".split()
    )
    assert main(["run", path, "-o", str(out), "--model", str(model), *flags]) == 0
    with read_poses(out) as stream:
        assert [p.frame for p in stream] == list(range(VIDEO_FRAMES))


def test_actors_that_do_not_start_in_time_are_a_clear_error(video, model) -> None:
    path, truth = video
    config = EngineConfig(
        model,
        workers=0,
        detector=TruthDetector(truth),
        detector_actors=1,
        detector_gpus=0,
        startup_timeout=1e-3,  # no actor imports torch in a millisecond
    )
    with pytest.raises(RuntimeError, match=r"1 detector actors .* did not start"):
        with Engine(config) as engine:
            list(engine.run(path))
