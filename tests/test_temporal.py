"""Temporal multicut: the learned temporal costs, the joint solve with earlier tracks as fixed
clusters, identities through crossings, and ``Engine(temporal=K)``."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from engine_support import TRUTH_NOISE, TruthDetector, fitted_pairwise, make_video, tiny_model

from deepercut.data.synthetic_tracks import (
    crossing,
    simulated_sequence,
    temporal_training_data,
    walking_tracks,
)
from deepercut.engine.pipeline import Engine
from deepercut.evaluate.mot import MotAccumulator
from deepercut.model.temporal_costs import TemporalModel, observations, truth_people
from deepercut.skeleton import MPII14
from deepercut.solvers.frame_solver import FrameSolver
from deepercut.solvers.temporal import TemporalFrameSolver, solve_temporal, temporal_problem

HW = (240, 320)
K = 2


@functools.lru_cache(maxsize=1)
def fitted_temporal() -> TemporalModel:
    data = temporal_training_data([31, 32], num_people=3, num_frames=16, image_hw=HW)
    return TemporalModel.fit(data, MPII14.num_parts, K)


@pytest.fixture(scope="module")
def solver() -> FrameSolver:
    return FrameSolver(fitted_pairwise(), MPII14, method="3stage")


def held_out(seed: int = 5, frames: int = 6):
    """A walking video: per frame, candidates, identities and the truth people."""
    video = list(walking_tracks(seed, 3, frames, HW, height_range=(100.0, 180.0)))
    return [
        (c, owner, truth_people(f.index, c, owner, MPII14.num_parts))
        for f, (c, owner) in zip(video, simulated_sequence(video, HW, seed), strict=True)
    ]


def test_costs_attract_the_same_person_and_repel_others(tmp_path) -> None:
    model = fitted_temporal()
    frames = held_out()
    pos, neg = [], []
    for t in range(1, len(frames)):
        cands, owner, _ = frames[t]
        obs = observations([frames[t - 1][2]], frames[t][2].index, MPII14.num_parts)
        d, o, cost = model.link_costs(cands, obs)
        same = owner[d] == obs.track[o]
        pos += cost[same].tolist()
        neg += cost[~same].tolist()
    assert len(pos) > 50 and len(neg) > 10
    assert np.mean(np.array(pos) < 0) > 0.9 and np.mean(np.array(neg) > 0) > 0.7
    path = tmp_path / "temporal.npz"
    model.save(path)
    again = TemporalModel.load(path)
    np.testing.assert_array_equal(again.link_costs(cands, obs)[2], cost)
    path.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a deepercut temporal model"):
        TemporalModel.load(path)


def test_joint_solve_links_each_person_to_their_track(solver) -> None:
    model = fitted_temporal()
    frames = held_out(seed=6, frames=3)
    history = [frames[0][2], frames[1][2]]
    cands, owner, _ = frames[2]
    problem, kept = solver.pairwise.build_problem(cands)
    sub = cands.select(kept)
    obs = observations(history, frames[2][2].index, MPII14.num_parts, per_track=K)
    sol = solve_temporal(problem, sub, obs, model, method="exact")
    assert sol.status == "optimal"
    linked = 0
    for c, track in sol.cluster_track.items():
        members = owner[kept][sol.cluster == c]
        if len(members):
            assert np.bincount(members[members >= 0]).argmax() == track
            linked += 1
    assert linked == len(np.unique(owner[owner >= 0]))
    # The joint objective is the extended problem's objective of the same assignment.
    extended, past_track, _ = temporal_problem(problem, sub, obs, model)
    n = problem.num_candidates
    label = np.concatenate([sol.label, extended.unary[n:].argmin(1)])
    track_cluster = {t: c for c, t in sol.cluster_track.items()}
    other = sol.cluster.max(initial=0) + 1 + np.arange(len(past_track))
    past = np.array([track_cluster.get(t, o) for t, o in zip(past_track, other, strict=True)])
    value = extended.objective(label, np.concatenate([sol.cluster, past]))
    assert value == pytest.approx(sol.objective, abs=1e-4)


def test_crossing_people_keep_their_ids(solver) -> None:
    frames = crossing()
    joint = TemporalFrameSolver(solver, K, fitted_temporal())
    acc = MotAccumulator()
    sequence = simulated_sequence(frames, HW, 0, **TRUTH_NOISE)
    for f, (cands, _) in zip(frames, sequence, strict=True):
        poses = joint(f.index, f.t, cands)
        acc.update(f.ids, f.keypoints, f.visible, f.heights, poses.track_id, poses.keypoints)
    s = acc.summary()
    assert s.id_switches == 0 and s.idf1 > 0.95
    with pytest.raises(ValueError, match="after frame"):
        joint(frames[-1].index, 0.0, cands)


def test_engine_temporal_mode_gives_ids_in_the_driver(tmp_path) -> None:
    path = tmp_path / "v.mp4"
    truth = make_video(path, frames=10)
    with Engine(
        tiny_model(), workers=2, detector=TruthDetector(truth), temporal=K,
        temporal_model=fitted_temporal(),
    ) as engine:
        poses = list(engine.run(str(path)))
        assert engine.workers == 0 and engine.info()["tracking"] == {"mode": "temporal",
                                                                     "frames": K}
        again = list(engine.run(str(path)))  # a new stream starts over
    assert [p.frame for p in poses] == list(range(10))
    ids = {int(t) for p in poses for t in p.track_id}
    assert {0, 1} <= ids and len(ids - {-1}) <= 3
    for a, b in zip(poses, again, strict=True):
        np.testing.assert_array_equal(a.track_id, b.track_id)
