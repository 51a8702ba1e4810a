"""Simulated detector candidates from ground truth, and matching candidates to ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from deepercut.data.synthetic_candidates import assign_candidates_to_truth, candidates_from_truth
from deepercut.skeleton import MPII14
from deepercut.types import Candidates

IMAGE_HW = (480, 640)
# An upright MPII14 person facing the camera, height 1, head top at the origin (y down).
TEMPLATE = np.array(
    [
        (-0.08, 1.0), (-0.08, 0.74), (-0.08, 0.5), (0.08, 0.5), (0.08, 0.74), (0.08, 1.0),
        (-0.2, 0.5), (-0.18, 0.35), (-0.13, 0.2), (0.13, 0.2), (0.18, 0.35), (0.2, 0.5),
        (0.0, 0.17), (0.0, 0.0),
    ]
)  # fmt: skip


def make_people(
    rng: np.random.Generator, num: int, visible_frac: float = 1.0, margin: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``num`` template people, 60–340 px tall, with ``margin`` px kept inside the image."""
    heights = rng.uniform(60, 340, num)
    h, w = IMAGE_HW
    heights = np.minimum(heights, h - 2 * margin - 1)
    x = rng.uniform(margin + 0.2 * heights, w - margin - 0.2 * heights)
    y = rng.uniform(margin, h - margin - heights)
    kp = TEMPLATE[None] * heights[:, None, None] + np.stack([x, y], 1)[:, None]
    visible = rng.random((num, MPII14.num_parts)) < visible_frac
    return kp, visible, heights


def simulate(seed: int, num: int, **kwargs) -> tuple[Candidates, np.ndarray, tuple]:
    rng = np.random.default_rng(seed)
    truth = make_people(
        rng, num, visible_frac=kwargs.pop("visible_frac", 1.0), margin=kwargs.pop("margin", 0.0)
    )
    cands, owner = candidates_from_truth(rng, *truth, IMAGE_HW, **kwargs)
    return cands, owner, truth


def test_deterministic_by_seed() -> None:
    a, oa, _ = simulate(7, 5)
    b, ob, _ = simulate(7, 5)
    for field in ("xy", "part", "score", "offsets"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    np.testing.assert_array_equal(oa, ob)
    c, _, _ = simulate(8, 5)
    assert len(a) != len(c) or not np.array_equal(a.xy, c.xy)


def test_shapes_dtypes_and_order() -> None:
    cands, owner, _ = simulate(0, 4)
    n = len(cands)
    assert cands.xy.dtype == np.float32 and cands.score.dtype == np.float32
    assert cands.offsets.shape == (n, MPII14.num_parts, 2) and cands.offsets.dtype == np.float32
    assert cands.part.dtype == np.int64 and owner.shape == (n,) and owner.dtype == np.int64
    assert ((cands.score > 0) & (cands.score < 1)).all()
    # Per-channel NMS order: by part, then strongest first.
    key = cands.part * 2.0 - cands.score
    assert (np.diff(key) >= 0).all()
    np.testing.assert_array_equal(cands.offsets[np.arange(n), cands.part], 0.0)
    h, w = IMAGE_HW
    assert ((cands.xy >= 0) & (cands.xy < (w, h))).all()


def test_true_candidates_lie_on_their_owner() -> None:
    cands, owner, (kp, _, heights) = simulate(
        1, 6, duplicate_rate=0.0, confusion_rate=0.0, jitter=0.02, offset_noise=0.01
    )
    true = np.flatnonzero(owner >= 0)
    assert len(true) > 0.8 * 6 * MPII14.num_parts
    m, p = owner[true], cands.part[true]
    err = np.linalg.norm(cands.xy[true] - kp[m, p], axis=1) / heights[m]
    assert err.max() < 5 * 0.02
    # The regressed offsets point at the owner's joints.
    predicted = cands.xy[true, None, :] + cands.offsets[true]
    off_err = np.linalg.norm(predicted - kp[m], axis=-1) / heights[m, None]
    assert off_err.max() < 5 * 0.01 * np.sqrt(2) + 5 * 0.02


def test_duplicates_and_confusions_stay_on_their_person() -> None:
    cands, owner, (kp, _, heights) = simulate(2, 8, duplicate_rate=0.5, confusion_rate=0.5)
    on = np.flatnonzero(owner >= 0)
    m = owner[on]
    nearest = np.linalg.norm(cands.xy[on, None, :] - kp[m], axis=-1).min(1) / heights[m]
    assert nearest.max() < 0.25
    # Duplicates and confusions mean some person has a part more than once.
    pairs = np.stack([owner[on], cands.part[on]], 1)
    assert len(np.unique(pairs, axis=0)) < len(pairs)


def test_false_positive_count_and_rate() -> None:
    cands, owner, _ = simulate(
        3, 3, false_positives=(4, 4), margin=60.0, miss_rate=1.0, fp_near_people=0.0
    )
    assert len(cands) == 4 and (owner == -1).all()
    # A float rate is per person: ~2 × 10 false positives on average.
    counts = [(simulate(s, 10, false_positives=2.0, margin=60.0)[1] == -1).sum() for s in range(20)]
    assert 12 <= np.mean(counts) <= 28


def test_limb_false_positives_are_near_people() -> None:
    cands, owner, (kp, _, heights) = simulate(
        4, 2, false_positives=(30, 30), fp_near_people=1.0, margin=60.0
    )
    fp = np.flatnonzero(owner == -1)
    assert len(fp) == 30
    dist = np.linalg.norm(cands.xy[fp, None, None, :] - kp[None], axis=-1).min(-1)
    assert (dist / heights[None]).min(1).max() < 0.35


def test_density_for_ten_people() -> None:
    # MPII-like visibility (~90 % of joints): about 130 candidates for 10 people.
    counts = [len(simulate(s, 10, visible_frac=0.9)[0]) for s in range(20)]
    assert 110 <= np.mean(counts) <= 145
    # Every joint visible: 140 joints, 95 % detected, plus duplicates, confusions and clutter.
    counts = [len(simulate(s, 10)[0]) for s in range(20)]
    assert np.mean(counts) <= 160 and max(counts) <= 180


def test_people_with_unknown_joints_and_empty_images() -> None:
    rng = np.random.default_rng(5)
    kp, visible, heights = make_people(rng, 2)
    kp[0, :7] = np.nan
    cands, owner = candidates_from_truth(rng, kp, visible, heights, IMAGE_HW, confusion_rate=0.0)
    assert np.isfinite(cands.offsets).all()
    assert not np.isin(cands.part[owner == 0], np.arange(7)).any()
    nobody = (np.zeros((0, 14, 2)), np.zeros((0, 14), bool), np.zeros(0))
    empty, owner = candidates_from_truth(rng, *nobody, IMAGE_HW, false_positives=(5, 5))
    assert len(empty) == 5 and (owner == -1).all() and np.isfinite(empty.offsets).all()


def test_shape_mismatch_raises() -> None:
    rng = np.random.default_rng(0)
    kp, visible, heights = make_people(rng, 2)
    with pytest.raises(ValueError, match="keypoints"):
        candidates_from_truth(rng, kp[:, :10], visible, heights, IMAGE_HW)
    with pytest.raises(ValueError, match="heights"):
        candidates_from_truth(rng, kp, visible, heights[:1], IMAGE_HW)


def _candidates(xy: list, part: list) -> Candidates:
    n = len(xy)
    return Candidates(
        xy=np.array(xy, np.float32).reshape(n, 2),
        part=np.array(part, np.int64),
        score=np.full(n, 0.9, np.float32),
        offsets=np.zeros((n, 2, 2), np.float32),
    )


def test_assign_hand_made() -> None:
    # Two people of height 100 (radius 10 px), two parts; part 1 of person 1 is not visible.
    kp = np.array([[[0.0, 0.0], [0.0, 50.0]], [[200.0, 0.0], [200.0, 50.0]]])
    visible = np.array([[True, True], [True, False]])
    heights = np.array([100.0, 100.0])
    cands = _candidates(
        [
            [2, 1],  # person 0, part 0
            [6, 0],  # a weaker duplicate of it: the joint is taken → −1
            [199, 3],  # person 1, part 0
            [201, 52],  # part 1 of person 1, which is not visible → −1
            [0, 49],  # person 0, part 1
            [100, 0],  # background → −1
            [0, 49],  # part 0 near person 0's part 1: wrong part → −1
        ],
        [0, 0, 0, 1, 1, 0, 0],
    )
    owner = assign_candidates_to_truth(cands, kp, visible, heights)
    np.testing.assert_array_equal(owner, [0, -1, 1, -1, 0, -1, -1])


def test_assign_is_one_to_one_optimal_not_greedy() -> None:
    # A is nearest to J0, but B can only reach J0: the assignment gives J1 to A, J0 to B.
    kp = np.array([[[0.0, 0.0]], [[0.0, 8.0]]])
    heights = np.array([100.0, 100.0])
    cands = _candidates([[0, 3], [0, -6]], [0, 0])
    owner = assign_candidates_to_truth(cands, kp, np.ones((2, 1), bool), heights)
    np.testing.assert_array_equal(owner, [1, 0])


def test_assign_scales_radius_with_height() -> None:
    kp = np.array([[[0.0, 0.0]], [[300.0, 0.0]]])
    heights = np.array([60.0, 340.0])
    cands = _candidates([[8, 0], [330, 0]], [0, 0])  # 8 > 6 px for the small person
    owner = assign_candidates_to_truth(cands, kp, np.ones((2, 1), bool), heights)
    np.testing.assert_array_equal(owner, [-1, 1])


def test_assign_recovers_simulated_owners() -> None:
    cands, owner, (kp, visible, heights) = simulate(6, 8, duplicate_rate=0.0, confusion_rate=0.0)
    assigned = assign_candidates_to_truth(cands, kp, visible, heights)
    true = owner >= 0
    assert (assigned[true] == owner[true]).mean() > 0.9
    assert (assigned[~true] == -1).mean() > 0.7
