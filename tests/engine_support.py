"""Shared helpers of the engine tests: a fitted pairwise model, a tiny detector checkpoint, a
synthetic video with truth, and a "truth detector" that emits simulated candidates per frame.

Everything here is real code (no mocks): the pairwise model is fitted on simulated detector
output, the checkpoint goes through ``save_model``/``load_model``, the video is H.264 via PyAV.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch

from deepercut.data.synthetic import (
    generate_video,
    load_truth,
    truth_document,
    truth_frame,
    write_video,
)
from deepercut.data.synthetic_candidates import candidates_from_truth
from deepercut.engine.actors import connect_ray
from deepercut.model.io import Model, pairwise_state, save_model
from deepercut.model.net import DeeperCut, DetectorConfig
from deepercut.model.pairwise import PairwiseModel
from deepercut.skeleton import MPII14
from deepercut.types import Candidates, Frame, Poses

VIDEO_HW = (240, 320)
VIDEO_FRAMES = 24
VIDEO_PEOPLE = 2
VIDEO_HEIGHTS = (120.0, 200.0)
# Mild detector noise: the truth detector's candidates should assemble close to the truth.
TRUTH_NOISE = {"miss_rate": 0.0, "false_positives": (0, 2), "confusion_rate": 0.0}


@functools.lru_cache(maxsize=1)
def fitted_pairwise() -> PairwiseModel:
    """A pairwise model fitted on simulated candidates of synthetic walking people."""
    rng = np.random.default_rng(0)
    samples = []
    for seed in (100, 101):
        for f in generate_video(seed, VIDEO_HW, 3, 8, 25.0, VIDEO_HEIGHTS):
            samples.append(candidates_from_truth(rng, f.keypoints, f.visible, f.heights, VIDEO_HW))
    return PairwiseModel.fit(samples, MPII14.num_parts, pairs_per_image=800)


def tiny_model(input_hw: tuple[int, int] = VIDEO_HW) -> Model:
    """A small random DeeperCut (ResNet-18, width 8) with the fitted pairwise model.

    The scoremap bias is raised so the untrained net emits a few candidates per part (the
    default −4.6 prior would give none), which exercises the whole solver path.
    """
    torch.manual_seed(0)
    config = DetectorConfig(arch="resnet18", num_parts=MPII14.num_parts, width=8, head_channels=16)
    net = DeeperCut(config).eval()
    with torch.no_grad():
        net.scmap_head.bias.fill_(-0.5)
    return Model(net, MPII14, input_hw, pairwise_state(fitted_pairwise()), {"test": True})


def save_tiny_model(path: Path) -> Path:
    save_model(path, tiny_model())
    return path


def make_video(
    path: Path, frames: int = VIDEO_FRAMES, seed: int = 7, keyframe_interval: int | None = None
) -> dict[str, Any]:
    """An H.264 MP4 of walking people and its truth document (``load_truth`` form); with
    ``keyframe_interval``, a keyframe exactly every that many frames (x264's default is 250)."""
    truth_path = path.with_suffix(".json")
    video = generate_video(seed, VIDEO_HW, VIDEO_PEOPLE, frames, 25.0, VIDEO_HEIGHTS)
    if keyframe_interval is None:
        write_video(path, video, 25.0, truth_path=truth_path)
        return load_truth(truth_path)
    records = []
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width = VIDEO_HW
        stream.pix_fmt = "yuv420p"
        gop = str(keyframe_interval)
        stream.options = {"g": gop, "keyint_min": gop, "sc_threshold": "0"}
        for f in video:
            image = av.VideoFrame.from_ndarray(f.image, format="rgb24")
            image.pts = f.index
            container.mux(stream.encode(image))
            records.append(truth_frame(f.index, f.t, f.keypoints, f.visible, f.ids, f.heights))
        container.mux(stream.encode(None))
    truth_path.write_text(json.dumps(truth_document(VIDEO_HW, 25.0, records)))
    return load_truth(truth_path)


class TruthDetector:
    """A detector callable for :class:`deepercut.Engine` that simulates candidates from the
    ground truth of each frame (seeded by the frame index, so every run sees the same ones)."""

    def __init__(self, truth: dict[str, Any], seed: int = 0, delay: float = 0.0) -> None:
        self.frames = {f["i"]: f for f in truth["frames"]}
        width, height = truth["image_size"]
        self.image_hw = (height, width)
        self.seed = seed
        self.delay = delay  # seconds per call: a slow detector

    def __call__(self, frames: Sequence[Frame]) -> list[Candidates]:
        time.sleep(self.delay)
        return [self.candidates(f.index) for f in frames]

    def candidates(self, index: int) -> Candidates:
        t = self.frames[index]
        rng = np.random.default_rng([self.seed, index])
        cands, _ = candidates_from_truth(
            rng, t["keypoints"], t["visible"], t["heights"], self.image_hw, **TRUTH_NOISE
        )
        return cands


class SlowSolver:
    """Wraps a frame solver and sleeps first: an overloaded or slow solver stage."""

    def __init__(self, solver: Any, delay: float) -> None:
        self.solver = solver
        self.delay = delay

    def __call__(self, index: int, pts: float, candidates: Candidates) -> Poses:
        time.sleep(self.delay)
        return self.solver(index, pts, candidates)


class StallingSolver:
    """Wraps a frame solver; in any process but the driver's it hangs for good on frame
    ``stall_at`` (a deadlocked actor), so only an in-process solve gets past it."""

    def __init__(self, solver: Any, stall_at: int) -> None:
        self.solver = solver
        self.stall_at = stall_at
        self.driver = os.getpid()

    def __call__(self, index: int, pts: float, candidates: Candidates) -> Poses:
        if index == self.stall_at and os.getpid() != self.driver:
            threading.Event().wait()
        return self.solver(index, pts, candidates)


class SlowStartSolver:
    """Wraps a frame solver; once ``flag`` (a file) exists, every new process that receives
    it (a replacement actor unpickling its arguments) takes ``delay`` seconds to start."""

    def __init__(self, solver: Any, flag: Path, delay: float) -> None:
        self.solver, self.flag, self.delay = solver, flag, delay

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.flag.exists():
            time.sleep(self.delay)

    def __call__(self, index: int, pts: float, candidates: Candidates) -> Poses:
        return self.solver(index, pts, candidates)


class GatedSolver:
    """Wraps a frame solver and holds every solve until ``gate`` (a file) exists: a solver
    stage stalled for as long as a test wants, in Ray actors too (they share the disk)."""

    def __init__(self, solver: Any, gate: Path) -> None:
        self.solver = solver
        self.gate = gate

    def __call__(self, index: int, pts: float, candidates: Candidates) -> Poses:
        while not self.gate.exists():
            time.sleep(0.005)
        return self.solver(index, pts, candidates)


def slow_network_detector(monkeypatch: Any, seconds_per_frame: float) -> None:
    """The model's real detector, stalled ``seconds_per_frame`` per frame first: slower than a
    fast live source on any machine, so that source must drop frames."""
    from deepercut.detection import NetworkDetector

    detect = NetworkDetector.__call__

    def slow(self: NetworkDetector, frames: Sequence[Frame]) -> list[Candidates]:
        time.sleep(seconds_per_frame * len(frames))
        return detect(self, frames)

    monkeypatch.setattr(NetworkDetector, "__call__", slow)


class CrashingSolver:
    """A frame solver whose process dies on every call (a segfault, the OOM killer)."""

    def __call__(self, index: int, pts: float, candidates: Candidates) -> Poses:
        os._exit(1)


#: Engine settings for tests that compare poses across execution modes (in-process, Ray
#: actors, detector actors, damaged files) on a machine of any speed or load: a solve limit no
#: frame of these small videos reaches (a frame cut short by the wall clock may rightly get
#: other poses), and room for Ray actors to start (importing torch takes minutes under load).
UNHURRIED: dict[str, float] = {"time_limit": 120.0, "startup_timeout": 900.0}


def match_error(poses: Poses, truth_frame: dict[str, Any]) -> float:
    """Median over truth people of the mean pixel error of their best-matching pose, using
    the visible joints both have (inf when a person has no match)."""
    errors = []
    for kp, vis in zip(truth_frame["keypoints"], truth_frame["visible"], strict=True):
        best = np.inf
        for person in poses.keypoints:
            both = vis & np.isfinite(person[:, 0])
            if both.sum() >= 3:
                best = min(best, float(np.linalg.norm(person[both, :2] - kp[both], axis=1).mean()))
        errors.append(best)
    return float(np.median(errors)) if errors else 0.0


def assert_same_poses(a: Sequence[Poses], b: Sequence[Poses]) -> None:
    assert [p.frame for p in a] == [p.frame for p in b]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.keypoints, y.keypoints)


@contextlib.contextmanager
def local_ray(num_cpus: int = 2) -> Iterator[None]:
    """A real local Ray for one test module, shut down afterwards.

    This module is shipped to the actors by value: they cannot import a test helper.
    """
    import ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    connect_ray(None, num_cpus=num_cpus)  # started as the engine starts its own
    try:
        yield
    finally:
        ray.shutdown()
