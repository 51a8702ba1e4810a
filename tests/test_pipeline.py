"""The engine end to end on a real H.264 video: order, accuracy with a truth detector, Ray
equivalence, a killed actor, live overload, slicing, abandoned runs, backend selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_support import (
    UNHURRIED,
    VIDEO_FRAMES,
    VIDEO_HEIGHTS,
    TruthDetector,
    assert_same_poses,
    local_ray,
    make_video,
    match_error,
    tiny_model,
)

from deepercut.detection import NetworkDetector
from deepercut.engine.pipeline import Engine
from deepercut.sources import open_source
from deepercut.streams import PoseWriter, make_header, read_poses
from deepercut.tensorrt import compile_detector
from deepercut.types import Frame

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    with local_ray():
        yield


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "people.mp4"
    return str(path), make_video(path)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def reference(video, model):
    """Poses of the whole video, in-process, exact solver on simulated candidates."""
    path, truth = video
    with Engine(
        model, solver="exact", workers=0, **UNHURRIED, detector=TruthDetector(truth)
    ) as engine:
        poses = list(engine.run(path))
        return poses, engine.stats


def test_one_result_per_frame_in_order_near_the_truth(video, reference) -> None:
    _, truth = video
    poses, stats = reference
    assert [p.frame for p in poses] == list(range(VIDEO_FRAMES))
    assert stats.frames == stats.solved == VIDEO_FRAMES and stats.dropped == 0
    assert stats.statuses == {"optimal": VIDEO_FRAMES}
    for p in poses:
        assert p.pts == pytest.approx(p.frame / 25.0)
        assert match_error(p, truth["frames"][p.frame]) < 0.1 * VIDEO_HEIGHTS[0]
    assert stats.people_per_frame >= 2
    assert stats.latency_ms(0.5) > 0 and stats.fps > 0
    assert "frames 24 (solved 24, dropped 0, skipped 0)" in stats.summary()


def test_ray_workers_give_the_same_poses(video, model, reference) -> None:
    path, truth = video
    with Engine(
        model, solver="exact", workers=2, **UNHURRIED, detector=TruthDetector(truth)
    ) as engine:
        poses = list(engine.run(path))
    assert_same_poses(poses, reference[0])


def test_killed_actor_loses_and_duplicates_no_frame(video, model, reference) -> None:
    path, truth = video
    detector = TruthDetector(truth)
    with Engine(
        model, solver="exact", workers=2, **UNHURRIED, detector=detector, batch_size=2
    ) as engine:
        poses = []
        for p in engine.run(path):
            poses.append(p)
            if len(poses) == 5:
                ray.kill(engine.pool.actors[0])
        assert engine.stats.pool.actor_restarts == 1
    assert_same_poses(poses, reference[0])


def test_live_overload_drops_frames_with_a_bounded_window(video, model) -> None:
    path, truth = video
    # Frames arrive at 200 fps, each batch is held 50 ms by the detector: drops on any machine.
    detector = TruthDetector(truth, delay=0.05)
    with Engine(model, solver="exact", workers=1, max_in_flight=1, detector=detector) as engine:
        with open_source(path, realtime=200.0) as source:
            assert source.is_live
            results = list(engine.run_frames(source))
        stats = engine.stats
    indices = [r.index for r in results]
    assert indices == sorted(set(indices))
    solved = [r for r in results if r.poses is not None]
    assert stats.dropped > 0 and stats.dropped_solver == len(results) - len(solved)
    assert stats.frames + stats.dropped_source == VIDEO_FRAMES
    assert stats.pool.max_window <= 1 and stats.pool.max_pending <= 1
    assert results[-1].poses is not None  # the newest frame is never the one dropped


def test_time_limit_fallback_is_flagged_in_the_stream(video, model, tmp_path) -> None:
    path, truth = video
    with Engine(model, solver="exact", time_limit=1e-6, detector=TruthDetector(truth)) as engine:
        header = make_header(engine.skeleton, model=engine.info())
        with PoseWriter(tmp_path / "poses.msgpack", header) as writer:
            for poses in engine.run(path, max_frames=6):
                writer.write(poses)
        assert engine.stats.fallbacks > 0
    with read_poses(tmp_path / "poses.msgpack") as stream:
        records = list(stream)
    limited = [p for p in records if p.solver["status"] == "time_limit"]
    assert len(records) == 6 and limited
    assert all(p.solver["fallback"] is True and p.solver["used"] for p in limited)
    assert all(p.num_people >= 1 for p in limited)


def test_slicing_keep_images_and_an_abandoned_run(video, model) -> None:
    path, truth = video
    with Engine(model, solver="heuristic", workers=2, detector=TruthDetector(truth)) as engine:
        results = list(engine.run_frames(path, start=2, stride=3, max_frames=5, keep_images=True))
        assert [r.index for r in results] == [2, 5, 8, 11, 14]
        assert all(r.image is not None and r.image.shape == (240, 320, 3) for r in results)
        for i, _ in enumerate(engine.run(path)):
            if i == 3:
                break  # abandoned with frames in flight
        again = list(engine.run(path, max_frames=6))
    assert [p.frame for p in again] == list(range(6))


def test_network_detector_runs_every_frame(video, model) -> None:
    path, _ = video
    with Engine(model, solver="heuristic", workers=0, batch_size=4) as engine:
        poses = list(engine.run(path, max_frames=6))
        assert engine.backend == "onnxruntime"  # auto on the CPU
        assert engine.stats.stage_s["detect"] > 0
    assert [p.frame for p in poses] == list(range(6))
    assert all(p.keypoints.shape[1:] == (14, 3) for p in poses)


def test_batched_preprocessing_matches_the_per_image_path(model) -> None:
    detector = NetworkDetector(model, device="cpu", backend="eager")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (200, 300, 3), np.uint8) for _ in range(3)]
    batched, boxes = detector.preprocess(images)
    mixed = [images[0][:100], *images]  # different sizes: letterboxed one by one
    single, single_boxes = detector.preprocess(mixed)
    assert boxes == single_boxes[1:] and single_boxes[0].image_hw == (100, 300)
    torch.testing.assert_close(batched, single[1:])


def test_backend_selection_falls_back_to_eager_on_cpu() -> None:
    net = torch.nn.Conv2d(3, 3, 1)
    built = compile_detector(net, None, 1, "fp32", "auto", device="cpu")
    assert (built.forward, built.backend) == (net, "eager") and "CPU" in built.reason
    # No CUDA: TensorRT is unavailable; without an input size compile can't be built.
    built = compile_detector(net, None, 1, "fp32", "tensorrt", device="cpu")
    assert (built.forward, built.backend) == (net, "eager")
    assert "tensorrt unavailable" in built.reason and "compile unavailable" in built.reason
    with pytest.raises(ValueError, match="unknown backend"):
        NetworkDetector(tiny_model(), device="cpu", backend="onnx")


def test_bad_inputs_fail_clearly(video, model) -> None:
    with Engine(model, solver="heuristic") as engine:
        with pytest.raises(FileNotFoundError):
            list(engine.run("/nonexistent/video.mp4"))
        with pytest.raises(ValueError, match="source spec"):
            list(engine.run([], start=3))
    with pytest.raises(ValueError, match="batch_size"):
        Engine(model, batch_size=0)


def test_precision_reaches_the_detector_and_bad_values_are_refused() -> None:
    frames = [
        Frame(i, i / 25, np.random.default_rng(i).integers(0, 255, (64, 80, 3), np.uint8), "t")
        for i in range(3)
    ]
    results = {}
    for precision in ("fp32", "fp16"):
        with Engine(tiny_model(), precision=precision, input_hw=(64, 80), batch_size=2) as engine:
            assert engine.detector.precision == precision
            results[precision] = [r.index for r in engine.run_frames(frames)]
    assert results["fp32"] == results["fp16"] == [0, 1, 2]
    with pytest.raises(ValueError, match="unknown precision 'int8'"):
        Engine(tiny_model(), precision="int8")
