"""The pairwise model: logistic fit, same-person costs, problem building, persistence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import rankdata, spearmanr

from deepercut.data.synthetic_candidates import candidates_from_truth
from deepercut.model.pairwise import (
    FEATURE_NAMES,
    PairwiseModel,
    candidate_scale,
    fit_logistic,
    num_pair_classes,
    pair_class,
)
from deepercut.types import Candidates

P = 14
IMAGE_HW = (480, 640)
# An upright MPII14 person facing the camera, height 1, head top at the origin (y down).
TEMPLATE = np.array(
    [
        (-0.08, 1.0), (-0.08, 0.74), (-0.08, 0.5), (0.08, 0.5), (0.08, 0.74), (0.08, 1.0),
        (-0.2, 0.5), (-0.18, 0.35), (-0.13, 0.2), (0.13, 0.2), (0.18, 0.35), (0.2, 0.5),
        (0.0, 0.17), (0.0, 0.0),
    ]
)  # fmt: skip


def make_people(rng: np.random.Generator, num: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``num`` people 60–340 px tall: the template, jittered per joint and tilted ±0.3 rad."""
    heights = rng.uniform(60, 340, num)
    pose = TEMPLATE[None] + rng.normal(size=(num, P, 2)) * 0.04
    angle = rng.uniform(-0.3, 0.3, num)
    cos, sin = np.cos(angle), np.sin(angle)
    rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    pose = np.einsum("mij,mqj->mqi", rot, pose) * heights[:, None, None]
    h, w = IMAGE_HW
    origin = np.stack([rng.uniform(0, w, num), rng.uniform(0, h - 0.5 * heights)], 1)
    return pose + origin[:, None], rng.random((num, P)) < 0.9, heights


def make_images(seed: int, count: int) -> list[tuple[Candidates, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        truth = make_people(rng, int(rng.integers(1, 11)))
        out.append(candidates_from_truth(rng, *truth, IMAGE_HW))
    return out


@pytest.fixture(scope="module")
def model() -> PairwiseModel:
    return PairwiseModel.fit(make_images(0, 60), P, pairs_per_image=600)


@pytest.fixture(scope="module")
def held_out() -> list[tuple[Candidates, np.ndarray]]:
    return make_images(1, 25)


def auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for the binary ``positive``."""
    ranks = rankdata(score)
    n_pos = positive.sum()
    n_neg = len(positive) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def test_pair_class_enumerates_unordered_pairs() -> None:
    a, b = np.triu_indices(P)
    k = pair_class(a, b, P)
    np.testing.assert_array_equal(np.sort(k), np.arange(num_pair_classes(P)))
    np.testing.assert_array_equal(pair_class(b, a, P), k)


def test_fit_logistic_recovers_known_model() -> None:
    rng = np.random.default_rng(0)
    num_classes, n = 3, 3000
    w_true = np.array([[-1.0, 2.0, -1.5, 0.0], [0.5, -2.0, 0.0, 1.5], [2.0, 0.0, 1.0, -1.0]])
    x = np.concatenate([np.ones((num_classes * n, 1)), rng.normal(size=(num_classes * n, 3))], 1)
    cls = np.repeat(np.arange(num_classes), n)
    p_true = 1 / (1 + np.exp(-(x * w_true[cls]).sum(1)))
    y = rng.random(len(p_true)) < p_true
    w = fit_logistic(x, y, cls, num_classes + 1, l2=1.0)
    big = np.abs(w_true) >= 1.0
    np.testing.assert_array_equal(np.sign(w[:num_classes][big]), np.sign(w_true[big]))
    assert np.abs(w[:num_classes] - w_true).max() < 0.4
    p_fit = 1 / (1 + np.exp(-(x * w[cls]).sum(1)))
    assert spearmanr(p_fit, p_true).statistic > 0.98
    assert abs(p_fit.mean() - y.mean()) < 0.01  # the MLE is calibrated on average
    np.testing.assert_array_equal(w[num_classes], 0.0)  # a class without samples


def test_same_person_pairs_cost_less_on_held_out_data(
    model: PairwiseModel, held_out: list[tuple[Candidates, np.ndarray]]
) -> None:
    same, cost, same_part = [], [], []
    for cands, owner in held_out:
        problem, kept = model.build_problem(cands, forbid_same_part=False)
        i, j = problem.edges.T
        o, part = owner[kept], cands.part[kept]
        same.append((o[i] == o[j]) & (o[i] >= 0))
        cost.append(problem.pair_cost[np.arange(len(i)), part[i], part[j]])
        same_part.append(part[i] == part[j])
    same, cost, same_part = map(np.concatenate, (same, cost, same_part))
    assert np.isfinite(cost).all() and np.abs(cost).max() <= model.cmax
    assert auc(same, -cost) > 0.95
    assert auc(same[same_part], -cost[same_part]) > 0.9  # duplicates vs. another person's joint
    assert cost[same].mean() < 0 < cost[~same].mean()


def test_features_are_scale_invariant(model: PairwiseModel) -> None:
    rng = np.random.default_rng(3)
    kp, visible, heights = make_people(rng, 1)
    cands, _ = candidates_from_truth(
        rng, kp, visible, heights, (4000, 4000), false_positives=(0, 0), confusion_rate=0.0
    )
    i, j = np.triu_indices(len(cands), 1)
    small = Candidates(cands.xy * 0.25, cands.part, cands.score, cands.offsets * 0.25)
    big = Candidates(cands.xy * 4.0, cands.part, cands.score, cands.offsets * 4.0)
    p_small, p_big = model.pair_probability(small, i, j), model.pair_probability(big, i, j)
    np.testing.assert_allclose(p_small, p_big, atol=1e-4)
    np.testing.assert_allclose(candidate_scale(big.offsets), 16 * candidate_scale(small.offsets))


def test_build_problem_fixed_labels(
    model: PairwiseModel, held_out: list[tuple[Candidates, np.ndarray]]
) -> None:
    cands = held_out[0][0]
    problem, kept = model.build_problem(cands)
    n, e = len(kept), len(problem.edges)
    assert problem.unary.shape == (n, P) and problem.pair_cost.shape == (e, P, P)
    np.testing.assert_array_equal(kept, np.arange(len(cands)))
    part = cands.part
    own = np.zeros((n, P), bool)
    own[np.arange(n), part] = True
    assert np.isfinite(problem.unary[own]).all() and np.isinf(problem.unary[~own]).all()
    np.testing.assert_allclose(
        problem.unary[own], np.clip(np.log((1 - cands.score) / cands.score), -10, 10), rtol=1e-5
    )
    i, j = problem.edges.T
    assert (i < j).all()
    finite = np.isfinite(problem.pair_cost)
    # Only the detected-label entry of a different-part edge is finite.
    rows = np.flatnonzero(part[i] != part[j])
    assert finite.sum() == len(rows)
    assert finite[rows, part[i[rows]], part[j[rows]]].all()


def test_build_problem_edge_pruning(model: PairwiseModel) -> None:
    rng = np.random.default_rng(4)
    cands, _ = candidates_from_truth(rng, *make_people(rng, 10), IMAGE_HW)
    sigma = candidate_scale(cands.offsets, model.min_scale)
    i, j = np.triu_indices(len(cands), 1)
    dist = np.linalg.norm(cands.xy[j] - cands.xy[i], axis=1) / (0.5 * (sigma[i] + sigma[j]))
    near = dist <= model.max_distance_factor
    same_part = cands.part[i] == cands.part[j]
    assert 0 < near.sum() < len(near)

    def edge_set(problem) -> set:
        return set(map(tuple, problem.edges.tolist()))

    forbid, _ = model.build_problem(cands)
    expected = {(a, b) for a, b, keep in zip(i, j, near | same_part, strict=True) if keep}
    assert edge_set(forbid) == expected
    # Same-part pairs are forbidden however far apart: no cluster holds a part twice.
    sp = np.flatnonzero(cands.part[forbid.edges[:, 0]] == cands.part[forbid.edges[:, 1]])
    assert np.isinf(forbid.pair_cost[sp]).all()

    free, _ = model.build_problem(cands, forbid_same_part=False)
    assert edge_set(free) == {(a, b) for a, b, keep in zip(i, j, near, strict=True) if keep}
    sp = np.flatnonzero(cands.part[free.edges[:, 0]] == cands.part[free.edges[:, 1]])
    c = cands.part[free.edges[sp, 0]]
    assert np.isfinite(free.pair_cost[sp, c, c]).all()

    tight, _ = model.build_problem(cands, max_distance_factor=1.0, forbid_same_part=False)
    assert len(tight.edges) == (dist <= 1.0).sum()


def test_build_problem_candidate_pruning(
    model: PairwiseModel, held_out: list[tuple[Candidates, np.ndarray]]
) -> None:
    cands = max((c for c, _ in held_out), key=len)
    problem, kept = model.build_problem(cands, max_candidates=20, min_score=0.3)
    assert problem.num_candidates == len(kept) == 20
    assert (np.diff(kept) > 0).all()
    dropped = np.setdiff1d(np.arange(len(cands)), kept)
    assert cands.score[kept].min() >= cands.score[dropped].max()
    _, kept = model.build_problem(cands, min_score=0.5)
    np.testing.assert_array_equal(kept, np.flatnonzero(cands.score >= 0.5))


def test_build_problem_free_labels(
    model: PairwiseModel, held_out: list[tuple[Candidates, np.ndarray]]
) -> None:
    cands = held_out[1][0]
    fixed, kept = model.build_problem(cands, max_candidates=40)
    free, kept_free = model.build_problem(cands, max_candidates=40, free_labels=True)
    np.testing.assert_array_equal(kept, kept_free)
    n = len(kept)
    assert len(free.edges) == n * (n - 1) // 2  # every pair could share a label
    assert np.isfinite(free.unary).all()
    diag = np.arange(P)
    assert np.isinf(free.pair_cost[:, diag, diag]).all()
    off_diag = ~np.eye(P, dtype=bool)
    assert np.isfinite(free.pair_cost[:, off_diag]).all()
    # At the detected labels, free-label costs equal the fixed-label ones.
    index = {tuple(e): k for k, e in enumerate(free.edges.tolist())}
    rows = [index[tuple(e)] for e in fixed.edges.tolist()]
    part = cands.part[kept]
    i, j = fixed.edges.T
    np.testing.assert_allclose(
        free.pair_cost[rows, part[i], part[j]], fixed.pair_cost[np.arange(len(i)), part[i], part[j]]
    )
    # Part probabilities give every label a finite unary.
    probs = np.random.default_rng(0).dirichlet(np.ones(P), len(cands))
    scored, _ = model.build_problem(cands, max_candidates=40, free_labels=True, part_scores=probs)
    expected = np.clip(np.log((1 - probs[kept]) / probs[kept]), -10, 10)
    np.testing.assert_allclose(scored.unary, expected)
    with pytest.raises(ValueError, match="part_scores"):
        model.build_problem(cands, free_labels=True, part_scores=probs[:3])


def test_ground_truth_beats_singletons(
    model: PairwiseModel, held_out: list[tuple[Candidates, np.ndarray]]
) -> None:
    cands, owner = max(held_out, key=lambda s: len(s[0]))
    problem, kept = model.build_problem(cands)
    owner, part, score = owner[kept], cands.part[kept], cands.score[kept]
    label = np.full(len(kept), -1)
    for m in np.unique(owner[owner >= 0]):
        for c in range(P):
            idx = np.flatnonzero((owner == m) & (part == c))
            if len(idx):
                label[idx[np.argmax(score[idx])]] = c  # one candidate per part per person
    truth = problem.objective(label, np.where(label >= 0, owner, -1))
    singletons = problem.objective(np.where(score > 0.5, part, -1), np.arange(len(kept)))
    assert np.isfinite(truth) and truth < singletons
    # Two of one part in one person is forbidden.
    both = np.flatnonzero(part == part[0])[:2]
    assert len(both) == 2
    label = np.full(len(kept), -1)
    label[both] = part[both]
    assert problem.objective(label, np.zeros(len(kept), np.int64)) == np.inf


def test_empty_and_single_candidate(model: PairwiseModel) -> None:
    problem, kept = model.build_problem(Candidates.empty(P))
    assert problem.unary.shape == (0, P) and problem.edges.shape == (0, 2) and len(kept) == 0
    one = Candidates(
        np.zeros((1, 2), np.float32),
        np.zeros(1, np.int64),
        np.full(1, 0.9, np.float32),
        np.zeros((1, P, 2), np.float32),
    )
    problem, kept = model.build_problem(one)
    assert problem.pair_cost.shape == (0, P, P) and np.isfinite(problem.unary[0, 0])


def test_wrong_part_count_raises(model: PairwiseModel) -> None:
    with pytest.raises(ValueError, match="parts"):
        model.build_problem(Candidates.empty(P - 1))


def test_save_load_round_trip(
    model: PairwiseModel, held_out: list[tuple[Candidates, np.ndarray]], tmp_path: Path
) -> None:
    path = tmp_path / "pairwise.npz"
    model.save(path)
    loaded = PairwiseModel.load(path)
    for name in ("weights", "feature_mean", "feature_std"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
    for name in ("num_parts", "cmax", "max_distance_factor", "min_scale"):
        assert getattr(loaded, name) == getattr(model, name)
    a, _ = model.build_problem(held_out[0][0])
    b, _ = loaded.build_problem(held_out[0][0])
    np.testing.assert_array_equal(a.pair_cost, b.pair_cost)
    np.testing.assert_array_equal(a.unary, b.unary)


def test_load_rejects_bad_files(model: PairwiseModel, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a model" * 10)
    with pytest.raises(ValueError, match="not a deepercut pairwise model"):
        PairwiseModel.load(garbage)

    truncated = tmp_path / "truncated.npz"
    model.save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a deepercut pairwise model"):
        PairwiseModel.load(truncated)

    plain = tmp_path / "plain.npy"
    np.save(plain, np.zeros(3))
    with pytest.raises(ValueError, match=r"not an \.npz archive"):
        PairwiseModel.load(plain)

    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, meta=np.array([{"format": "deepercut.pairwise"}], dtype=object))
    with pytest.raises(ValueError, match="not a deepercut pairwise model"):
        PairwiseModel.load(pickled)

    def tampered(name: str, **changes) -> Path:
        path = tmp_path / name
        model.save(path)
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        arrays.update(changes)
        np.savez(path, **arrays)
        return path

    head = {"format": "deepercut.pairwise", "version": 1, "num_parts": P}
    features = {**head, "features": list(FEATURE_NAMES)}
    with pytest.raises(ValueError, match="weights must be"):
        PairwiseModel.load(tampered("shape.npz", weights=np.zeros((5, len(FEATURE_NAMES)))))
    with pytest.raises(ValueError, match="version"):
        PairwiseModel.load(tampered("version.npz", meta=_json({**features, "version": 9})))
    with pytest.raises(ValueError, match="features"):
        PairwiseModel.load(tampered("features.npz", meta=_json({**head, "features": []})))
    with pytest.raises(ValueError, match="malformed"):
        PairwiseModel.load(tampered("settings.npz", meta=_json(features)))
    with pytest.raises(ValueError, match="lacks arrays"):
        path = tmp_path / "missing.npz"
        np.savez(path, meta=_json(features))
        PairwiseModel.load(path)
    with pytest.raises(FileNotFoundError):
        PairwiseModel.load(tmp_path / "absent.npz")


def _json(meta: dict) -> np.ndarray:
    return np.array(json.dumps(meta))
