"""Identities across frames: the online tracker on crossing people, a person leaving and coming
back, frames solved out of order by Ray workers; the MOT metrics; One-Euro smoothing."""

from __future__ import annotations

import random
import sys
import time

import numpy as np
import pytest
from engine_support import (
    TRUTH_NOISE,
    TruthDetector,
    fitted_pairwise,
    local_ray,
    make_video,
    save_tiny_model,
    tiny_model,
)

from deepercut.cli import main
from deepercut.data.synthetic import write_png
from deepercut.data.synthetic_tracks import crossing, leave_and_return, simulated_sequence
from deepercut.engine.pipeline import Engine
from deepercut.engine.pool import SolverPool
from deepercut.evaluate.mot import MotAccumulator, pose_similarity
from deepercut.skeleton import MPII14
from deepercut.solvers.frame_solver import FrameSolver
from deepercut.streams import read_poses
from deepercut.tracking import OneEuroConfig, OneEuroSmoother, PoseTracker, TrackerConfig
from deepercut.types import Candidates, Poses

HW = (240, 320)


@pytest.fixture(scope="module")
def solver() -> FrameSolver:
    return FrameSolver(fitted_pairwise(), MPII14, method="3stage")


def track_video(frames, solver, config=None) -> tuple[list[Poses], MotAccumulator]:
    """Per-frame solves of simulated candidates, tracked; with their MOT accumulator."""
    tracker = PoseTracker(config or TrackerConfig())
    acc = MotAccumulator()
    out = []
    sequence = simulated_sequence(frames, HW, 0, **TRUTH_NOISE)
    for f, (cands, _) in zip(frames, sequence, strict=True):
        poses = tracker.update(solver(f.index, f.t, cands))
        acc.update(f.ids, f.keypoints, f.visible, f.heights, poses.track_id, poses.keypoints)
        out.append(poses)
    return out, acc


def ids_of_truth(frames, poses: list[Poses]) -> list[dict[int, int]]:
    """Per frame, the track id of the pose best matching each visible truth person."""
    out = []
    for f, p in zip(frames, poses, strict=True):
        sim = pose_similarity(f.keypoints, f.visible, f.heights, p.keypoints)
        found = {}
        for g in range(len(f.ids)):
            if f.visible[g].sum() >= 3 and len(p.track_id) and sim[g].max() > 0.3:
                found[int(f.ids[g])] = int(p.track_id[sim[g].argmax()])
        out.append(found)
    return out


def test_two_people_crossing_keep_their_ids(solver) -> None:
    frames = crossing()
    # They do cross: their feet come within a tenth of their height of each other.
    gap = [abs(np.diff(f.keypoints[:, [0, 5], 0].mean(1))[0]) for f in frames]
    assert min(gap) < 0.1 * frames[0].heights.min()
    poses, acc = track_video(frames, solver)
    summary = acc.summary()
    assert summary.id_switches == 0 and summary.idf1 > 0.97 and summary.mota > 0.95
    per_person = {0: set(), 1: set()}
    for found in ids_of_truth(frames, poses):
        for person, track in found.items():
            per_person[person].add(track)
    assert per_person[0] == {0} or per_person[0] == {1}
    assert len(per_person[1]) == 1 and per_person[0] != per_person[1]


def test_person_leaving_and_coming_back_keeps_the_id_within_the_window(solver) -> None:
    frames = leave_and_return(away_frames=12)
    away = [f.index for f in frames if f.visible[0].sum() == 0]
    assert len(away) >= 12  # entirely outside the image for a while
    poses, _ = track_video(frames, solver)
    found = ids_of_truth(frames, poses)
    before = {d[0] for d in found[: away[0]] if 0 in d}
    after = {d[0] for d in found[away[-1] + 8 :] if 0 in d}  # back in, several parts visible
    assert len(before) == 1 and before == after
    # With a re-identification window shorter than the absence, the person comes back new.
    poses, _ = track_video(frames, solver, TrackerConfig(max_age=5))
    found = ids_of_truth(frames, poses)
    before = {d[0] for d in found[: away[0]] if 0 in d}
    after = {d[0] for d in found[away[-1] + 8 :] if 0 in d}
    assert len(before) == 1 and len(after) == 1 and before != after


def test_births_wait_for_confirmation_and_ids_are_never_reused() -> None:
    kp = np.full((1, 14, 3), np.nan, np.float32)
    kp[0, :, :2] = np.stack([np.linspace(100, 110, 14), np.linspace(50, 200, 14)], 1)
    kp[0, :, 2] = 0.9
    far = kp.copy()
    far[0, :, 0] += 150
    tracker = PoseTracker(TrackerConfig(min_hits=2, max_age=3))
    both = np.concatenate([kp, far])
    # The first frame confirms at once; "far" then appears for one frame, goes, comes back.
    ids = [
        tracker.update(Poses(frame, 0.0, people, np.full(len(people), -1))).track_id.tolist()
        for frame, people in enumerate([kp, both, kp, both, both])
    ]
    assert ids == [[0], [0, -1], [0], [0, -1], [0, 1]]
    empty = np.zeros((0, 14, 3), np.float32)
    for frame in range(5, 10):  # everyone gone longer than max_age
        tracker.update(Poses(frame, 0.0, empty, np.zeros(0, np.int64)))
    assert tracker.update(Poses(10, 0.0, kp, np.full(1, -1))).track_id.tolist() == [-1]
    assert tracker.update(Poses(11, 0.0, kp, np.full(1, -1))).track_id.tolist() == [2]
    with pytest.raises(ValueError, match="frame 11 after frame 11"):
        tracker.update(Poses(11, 0.0, kp, np.full(1, -1)))


class _ShuffledSolver:
    """A frame solver that sleeps a random time first, so Ray workers finish out of order,
    and records when each frame finished."""

    def __init__(self, solver: FrameSolver) -> None:
        self.solver = solver

    def __call__(self, index: int, pts: float, candidates: Candidates) -> Poses:
        time.sleep(random.Random(index).uniform(0.0, 0.15))
        poses = self.solver(index, pts, candidates)
        poses.solver["done"] = time.time()
        return poses


def test_track_ids_do_not_depend_on_the_order_workers_finish(solver) -> None:
    ray = pytest.importorskip("ray")
    frames = crossing(num_frames=30)
    cands = [c for c, _ in simulated_sequence(frames, HW, 0, **TRUTH_NOISE)]
    reference = PoseTracker()
    expected = [
        reference.update(solver(f.index, f.t, c)).track_id
        for f, c in zip(frames, cands, strict=True)
    ]
    with local_ray(2):
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # for _ShuffledSolver
        pool = SolverPool(_ShuffledSolver(solver), workers=2, max_in_flight=6)
        tracker = PoseTracker()
        results = []
        for f, c in zip(frames, cands, strict=True):
            results += pool.submit(f.index, f.t, c)
        results += list(pool.drain())
        pool.close()
    assert [i for i, _ in results] == [f.index for f in frames]
    done = [p.solver["done"] for _, p in results]
    assert done != sorted(done)  # the workers did finish out of order
    got = [tracker.update(p).track_id for _, p in results]
    assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))


def test_engine_tracks_by_default_and_no_track_leaves_ids_unset(tmp_path) -> None:
    path = tmp_path / "v.mp4"
    truth = make_video(path, frames=12)
    model = tiny_model()
    with Engine(model, workers=0, detector=TruthDetector(truth)) as engine:
        tracked = list(engine.run(str(path)))
        assert engine.info()["tracking"]["mode"] == "online"
    with Engine(model, workers=0, detector=TruthDetector(truth), track=False) as engine:
        plain = list(engine.run(str(path)))
    assert all((p.track_id == -1).all() for p in plain)
    tracker = PoseTracker()
    for a, b in zip(tracked, plain, strict=True):
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
        np.testing.assert_array_equal(a.track_id, tracker.update(b).track_id)
    assert {int(t) for p in tracked for t in p.track_id} >= {0, 1}


def test_cli_flags_choose_how_ids_are_made(tmp_path) -> None:
    make_video(tmp_path / "v.mp4", frames=4)
    model = save_tiny_model(tmp_path / "tiny.pt")
    base = ["run", str(tmp_path / "v.mp4"), "--model", str(model), "--workers", "0", "--quiet"]
    modes = {
        "none": ["--no-track"],
        "online": ["--solver", "heuristic"],
        "temporal": ["--temporal", "2", "--smooth", "0.8"],
    }
    for mode, flags in modes.items():
        out = tmp_path / f"{mode}.msgpack"
        assert main([*base, "-o", str(out), *flags]) == 0
        with read_poses(out) as stream:
            tracking = stream.header["model"]["tracking"]
            poses = list(stream)
        assert tracking["mode"] == mode and len(poses) == 4
        if mode == "none":
            assert all((p.track_id == -1).all() for p in poses)
    assert tracking["frames"] == 2 and tracking["smoothing"]["one_euro"]["min_cutoff"] == 0.8
    # An image folder holds unrelated images: no tracking unless asked for.
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        write_png(folder / f"{i}.png", np.zeros((64, 96, 3), np.uint8))
    for flags, mode in (([], "none"), (["--track"], "online")):
        out = tmp_path / f"folder-{mode}.msgpack"
        assert main([*base[:1], str(folder), *base[2:], "-o", str(out), *flags]) == 0
        with read_poses(out) as stream:
            assert stream.header["model"]["tracking"]["mode"] == mode


# ----------------------------------------------------------------------------- metrics


def _people(frames: int, swap_at: int | None = None):
    """Two ground-truth people walking apart, and hypotheses that swap ids at ``swap_at``."""
    out = []
    for i in range(frames):
        kp = np.zeros((2, 14, 2))
        kp[:, :, 1] = np.linspace(0, 100, 14)
        kp[0, :, 0], kp[1, :, 0] = 100 + i, 300 - i
        hyp_ids = np.array([7, 9]) if swap_at is None or i < swap_at else np.array([9, 7])
        hyp = np.concatenate([kp, np.ones((2, 14, 1))], -1)
        truth = (np.array([0, 1]), kp, np.ones((2, 14), bool), np.array([120.0, 120.0]))
        out.append((*truth, hyp_ids, hyp))
    return out


def test_mot_metrics_count_switches_and_identity_overlap() -> None:
    perfect = MotAccumulator()
    for frame in _people(10):
        perfect.update(*frame)
    s = perfect.summary()
    assert (s.mota, s.idf1, s.id_switches, s.fp, s.fn) == (1.0, 1.0, 0, 0, 0)
    swapped = MotAccumulator()
    for frame in _people(10, swap_at=5):
        swapped.update(*frame)
    s = swapped.summary()
    assert s.id_switches == 2 and s.switches_per_100 == 20.0
    assert s.mota == pytest.approx(1 - 2 / 20) and s.idf1 == pytest.approx(0.5)
    # A hypothesis far from everyone is a false positive; an untracked one (−1) is not output.
    acc = MotAccumulator()
    gt_ids, kp, vis, h, _, hyp = _people(1)[0]
    stray = hyp[:1].copy()
    stray[..., 0] += 1000
    acc.update(gt_ids, kp, vis, h, np.array([3, -1, 5]), np.concatenate([hyp[:1], hyp[1:], stray]))
    s = acc.summary()
    assert (s.matches, s.fp, s.fn) == (1, 1, 1)


def test_hidden_people_are_dont_care() -> None:
    acc = MotAccumulator(min_visible=3)
    gt_ids, kp, vis, h, ids, hyp = _people(1)[0]
    vis = vis.copy()
    vis[1, 2:] = False  # person 1 mostly hidden
    acc.update(gt_ids, kp, vis, h, ids, hyp)
    s = acc.summary()
    assert (s.gt, s.matches, s.fp, s.fn) == (1, 1, 0, 0)


# ----------------------------------------------------------------------------- smoothing


def _poses(frame: int, xy: np.ndarray, track: int = 0) -> Poses:
    kp = np.full((1, 14, 3), np.nan, np.float32)
    kp[0, :, :2] = xy
    kp[0, :, 2] = 1.0
    return Poses(frame, frame / 25.0, kp, np.array([track]))


def test_one_euro_removes_jitter_at_rest_and_follows_motion() -> None:
    rng = np.random.default_rng(0)
    base = np.stack([np.full(14, 100.0), np.linspace(0, 130, 14)], 1)
    one_euro = OneEuroSmoother(OneEuroConfig(min_cutoff=0.5, beta=0.01))
    fixed = OneEuroSmoother(OneEuroConfig(min_cutoff=0.5, beta=0.0))  # a plain low-pass
    raw, smooth = [], []
    for i in range(100):
        xy = base + rng.normal(0, 2.0, base.shape)
        raw.append(xy)
        smooth.append(one_euro.update(_poses(i, xy)).keypoints[0, :, :2])
        fixed.update(_poses(i, xy))
    assert np.std(np.array(smooth)[20:] - base) < 0.45 * np.std(np.array(raw)[20:] - base)
    # Walking at 200 px/s: One-Euro opens up and lags far less than the plain low-pass.
    for i in range(100, 150):
        moving = base + np.array([(i - 100) * 8.0, 0.0])
        lag = np.abs(one_euro.update(_poses(i, moving)).keypoints[0, :, 0] - moving[:, 0]).max()
        lag_fixed = np.abs(fixed.update(_poses(i, moving)).keypoints[0, :, 0] - moving[:, 0]).max()
    assert lag < 0.3 * lag_fixed
    # Untracked people and absent parts pass unchanged.
    kp = _poses(150, base, track=-1)
    kp.keypoints[0, 3] = np.nan
    out = one_euro.update(kp)
    np.testing.assert_array_equal(out.keypoints, kp.keypoints)
