"""Pose metrics against values computed by hand on small fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deepercut.evaluate.mpii_ap import image_detections, multi_person_ap, voc_ap
from deepercut.evaluate.pck import assign_people, joint_distances, person_pck, torso_size
from deepercut.evaluate.pckh import head_size, pckh
from deepercut.evaluate.pcp import pcp
from deepercut.skeleton import MPII14

FIXTURES = Path(__file__).parent / "fixtures" / "metrics"
NAN = np.nan


def _people(*rows: list[tuple[float, float, float]]) -> np.ndarray:
    """[M, P, 3] from per-person lists of (x, y, third)."""
    return np.asarray(rows, np.float64).reshape(len(rows), -1, 3)


# ----------------------------------------------------------------------------- matching


def test_assignment_keeps_each_predictions_best_person_then_best_prediction() -> None:
    # Two parts, two gt people of head size 10 (threshold 5 px).
    gt = _people([(0, 0, 2), (0, 10, 2)], [(50, 0, 2), (50, 10, 2)])
    pred = _people(
        [(1, 0, 0.9), (NAN, NAN, NAN)],  # 1 of gt 0's 2 joints: 0.5
        [(0, 1, 0.8), (0, 11, 0.8)],  # 2 of 2 of gt 0: 1.0, so gt 0 takes this one
        [(51, 0, 0.7), (80, 80, 0.7)],  # 1 of 2 of gt 1: 0.5
    )
    dist = joint_distances(pred, gt, np.array([10.0, 10.0]))
    assert dist.shape == (3, 2, 2)
    assert dist[0, 0, 0] == pytest.approx(0.1) and np.isinf(dist[0, 0, 1])
    assert assign_people(dist, 0.5).tolist() == [1, 2]
    # A gt joint that is not labelled is NaN and counts for nobody.
    gt[0, 1, 2] = 0
    dist = joint_distances(pred, gt, np.array([10.0, 10.0]))
    assert np.isnan(dist[:, 0, 1]).all()
    # Now prediction 0 has 1 of 1 labelled joint of gt 0 and ties prediction 1: the first wins.
    assert assign_people(dist, 0.5).tolist() == [0, 2]


def test_assignment_with_no_people() -> None:
    assert assign_people(np.zeros((0, 2, 3)), 0.5).tolist() == [-1, -1]
    assert assign_people(np.zeros((2, 0, 3)), 0.5).tolist() == []


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="parts"):
        joint_distances(np.zeros((1, 3, 3)), np.zeros((1, 2, 3)), np.ones(1))
    with pytest.raises(ValueError, match="reference length"):
        joint_distances(np.zeros((1, 2, 3)), np.zeros((2, 2, 3)), np.ones(1))


# ----------------------------------------------------------------------------- PCKh


def test_mpii_head_size() -> None:
    # 0.6 × the diagonal of a 30 × 40 box.
    assert head_size(np.array([[10, 20, 40, 60]])).tolist() == pytest.approx([30.0])


def test_pckh_and_auc_by_hand() -> None:
    # Head size 10: part 0 is 2 px off (0.2), part 1 is 4 px off (0.4), part 2 is 7 px off
    # (0.7), part 3 is not predicted, part 4 is not labelled.
    gt = _people([(0, 0, 2), (10, 0, 2), (20, 0, 1), (30, 0, 2), (40, 0, 0)])
    pred = _people([(2, 0, 1), (10, 4, 1), (27, 0, 1), (NAN, NAN, NAN), (40, 0, 1)])
    res = pckh([pred], [gt], [np.array([10.0])])
    assert res.pckh.counts.tolist() == [1, 1, 1, 1, 0]
    np.testing.assert_allclose(res.pckh.per_part, [1, 1, 0, 0, 0])
    assert res.pckh.mean == pytest.approx(0.5)  # over the 4 labelled parts
    # A step from 0 to 1 at threshold d on the 0.01 grid: trapezoid area 0.5 − d + 0.005,
    # normalised by 0.5.
    np.testing.assert_allclose(res.auc_per_part[:2], [0.61, 0.21])
    assert res.auc_per_part[2] == 0 and res.auc_per_part[3] == 0
    assert res.auc == pytest.approx((0.61 + 0.21) / 4)
    assert res.curve[20].tolist() == [1, 0, 0, 0, 0]  # threshold 0.2


def test_pckh_person_without_prediction_misses_everything() -> None:
    gt = _people([(0, 0, 2), (0, 10, 2)], [(50, 0, 2), (50, 10, 2)])
    pred = _people([(50, 1, 0.9), (50, 9, 0.9)])
    res = pckh([pred], [gt], [np.array([10.0, 10.0])])
    np.testing.assert_allclose(res.pckh.per_part, [0.5, 0.5])


# ----------------------------------------------------------------------------- multi-person AP


def test_voc_ap_by_hand() -> None:
    # Ranked: FP, TP, TP, FP with 3 positives. Precision made monotone: 2/3 up to recall 2/3.
    precision = np.array([0, 1 / 2, 2 / 3, 2 / 4])
    recall = np.array([0, 1 / 3, 2 / 3, 2 / 3])
    assert voc_ap(precision, recall) == pytest.approx(4 / 9)
    assert voc_ap(np.ones(2), np.array([0.5, 1.0])) == pytest.approx(1.0)


def test_multi_person_ap_by_hand() -> None:
    heads = [np.array([10.0, 10.0]), np.array([10.0])]
    gts = [_people([(0, 0, 2)], [(100, 0, 2)]), _people([(0, 0, 2)])]
    preds = [
        # 1 px from gt 0 (TP, 0.9); 3 px from gt 1 (TP, 0.8); near nobody (FP, 0.95).
        _people([(1, 0, 0.9)], [(100, 3, 0.8)], [(50, 0, 0.95)]),
        # 8 px off = 0.8 head sizes: no person matched, a false positive.
        _people([(8, 0, 0.7)]),
    ]
    res = multi_person_ap(preds, gts, heads)
    assert res.counts.tolist() == [3]
    assert res.per_part[0] == pytest.approx(4 / 9)  # the ranking of test_voc_ap_by_hand
    assert res.mean == pytest.approx(4 / 9)
    np.testing.assert_allclose(res.recall[0], [0, 1 / 3, 2 / 3, 2 / 3])


def test_unassigned_person_is_wrong_even_near_the_truth() -> None:
    gt = _people([(0, 0, 2), (0, 10, 2)])
    pred = _people(
        [(0, 1, 0.9), (NAN, NAN, NAN)],  # 1 of 2 joints
        [(0, 2, 0.5), (0, 11, 0.5)],  # 2 of 2: takes the person
    )
    part, score, tp, n_gt = image_detections(pred, gt, np.array([10.0]))
    assert part.tolist() == [0, 0, 1] and tp.tolist() == [False, True, True]
    assert score.tolist() == [0.9, 0.5, 0.5] and n_gt.tolist() == [1, 1]
    res = multi_person_ap([pred], [gt], [np.array([10.0])])
    # Part 0: FP at 0.9 then TP at 0.5 → AP 1/2; part 1: one TP → 1.
    np.testing.assert_allclose(res.per_part, [0.5, 1.0])
    assert res.mean == pytest.approx(0.75)


def test_ignored_people_drop_their_predictions_and_joints() -> None:
    gt = _people([(0, 0, 2)], [(100, 0, 2)])
    pred = _people([(0, 1, 0.6)], [(100, 1, 0.9)])
    ignore = np.array([False, True])
    part, _, tp, n_gt = image_detections(pred, gt, np.array([10.0, 10.0]), ignore=ignore)
    assert part.tolist() == [0]
    assert tp.tolist() == [True] and n_gt.tolist() == [1]
    res = multi_person_ap([pred], [gt], [np.array([10.0, 10.0])], ignore=[ignore])
    assert res.per_part[0] == pytest.approx(1.0)
    # Not ignored, the same prediction is simply right.
    assert multi_person_ap([pred], [gt], [np.array([10.0, 10.0])]).counts.tolist() == [2]


def test_part_without_ground_truth_is_left_out_of_the_mean() -> None:
    gt = _people([(0, 0, 2), (5, 5, 0)])
    pred = _people([(0, 0, 0.9), (5, 5, 0.9)])
    res = multi_person_ap([pred], [gt], [np.array([10.0])])
    assert res.per_part[0] == pytest.approx(1.0) and np.isnan(res.per_part[1])
    assert res.mean == pytest.approx(1.0)
    assert "mAP" in res.table(("a", "b"))


# ----------------------------------------------------------------------------- PCK, PCP


def _mpii_person(xy: dict[str, tuple[float, float]], v: dict[str, int] | None = None) -> np.ndarray:
    out = np.full((14, 3), NAN)
    out[:, 2] = 0
    for name, (x, y) in xy.items():
        out[MPII14.index(name)] = (x, y, (v or {}).get(name, 2))
    return out


UPPER = {
    "neck": (0, 0),
    "head_top": (0, -20),
    "right_shoulder": (-10, 0),
    "left_shoulder": (10, 0),
    "right_elbow": (-10, 20),
    "left_elbow": (10, 20),
    "right_hip": (-8, 40),
    "left_hip": (8, 40),
}


def test_pcp_and_aop_by_hand() -> None:
    gt = _mpii_person(UPPER, {"head_top": 1})[None]  # head top labelled as occluded
    moved = dict(UPPER, neck=(0, 5), right_elbow=(-10, 35))
    moved.pop("left_elbow")
    pred = _mpii_person(moved)[None]
    pred[:, :, 2] = np.where(np.isnan(pred[:, :, 0]), NAN, 0.9)
    res = pcp([pred], [gt], [np.array([20.0])], MPII14.parts, limb_types=("head", "upper_arm"))
    # Head: neck 5 px off, within 0.5 × 20 → right. Right upper arm: elbow 15 px off > 10 →
    # wrong; left upper arm: elbow missing → wrong.
    assert res.limb_types == ("head", "upper_arm")
    np.testing.assert_allclose(res.per_limb, [1.0, 0.0])
    assert res.counts.tolist() == [1, 2] and res.mean == pytest.approx(0.5)
    # Occlusion: head truth occluded, predicted present → disagree; right arm visible and
    # present → agree; left arm visible but missing → disagree.
    assert res.aop == pytest.approx(1 / 3)
    # Torso: shoulder and hip midpoints, exact here.
    torso = pcp([pred], [gt], [np.array([20.0])], MPII14.parts, limb_types=("torso",))
    assert torso.per_limb.tolist() == [1.0] and torso.aop == 1.0
    assert "AOP" in res.table()


def test_pcp_unmatched_person_misses_its_limbs() -> None:
    gt = _mpii_person(UPPER)[None]
    res = pcp([np.zeros((0, 14, 3))], [gt], [np.array([20.0])], MPII14.parts)
    assert res.mean == 0 and res.counts.sum() == 4  # head, torso, two upper arms


def test_lsp_person_centric_pck() -> None:
    body = dict(UPPER, left_shoulder=(10, 0), right_hip=(-20, 40))  # torso 50 px: 10 px at 0.2
    gt = _mpii_person(body)[None]
    torso = torso_size(gt, MPII14.parts)
    assert torso.tolist() == pytest.approx([50.0])
    pred = gt.copy()
    pred[0, MPII14.index("head_top"), :2] += (0, 9)  # inside 10 px
    pred[0, MPII14.index("neck"), :2] += (11, 0)  # outside
    pred[0, :, 2] = np.where(gt[0, :, 2] > 0, 0.9, NAN)
    pred[0, gt[0, :, 2] == 0, :2] = NAN
    res = person_pck([pred], [gt], [torso])
    neck, top = MPII14.index("neck"), MPII14.index("head_top")
    assert res.per_part[top] == 1 and res.per_part[neck] == 0
    assert res.mean == pytest.approx(7 / 8)  # 8 labelled parts, one wrong
    # A person without a torso reference is skipped.
    assert person_pck([pred], [gt], [np.array([NAN])]).counts.sum() == 0


# ----------------------------------------------------------------------------- COCO


def _coco_gt() -> dict:
    return json.loads((FIXTURES / "coco_gt.json").read_text())


def _perfect(gt: dict, shift: float = 0.0) -> list[dict]:
    return [
        {
            "image_id": a["image_id"],
            "category_id": 1,
            "keypoints": [v + shift if i % 3 != 2 else 2 for i, v in enumerate(a["keypoints"])],
            "score": 1.0,
        }
        for a in gt["annotations"]
    ]


def test_coco_oks_ap_perfect_shifted_and_missing() -> None:
    pytest.importorskip("pycocotools")
    from deepercut.evaluate.coco import coco_keypoint_eval

    gt = _coco_gt()
    perfect = coco_keypoint_eval(gt, _perfect(gt))
    assert perfect.stats["AP"] == pytest.approx(1.0) and perfect.stats["AR"] == pytest.approx(1.0)
    np.testing.assert_allclose(perfect.best_oks, [1.0, 1.0, 1.0])
    shifted = coco_keypoint_eval(gt, _perfect(gt, shift=3.0))
    assert 0 <= shifted.stats["AP"] < perfect.stats["AP"]
    assert shifted.stats["AP50"] >= shifted.stats["AP75"]
    assert len(shifted.best_oks) == 3 and (shifted.best_oks < 1).all()
    # Only two of three people found: recall caps at 2/3.
    partial = coco_keypoint_eval(gt, _perfect(gt)[:2])
    assert partial.stats["AR"] == pytest.approx(2 / 3)
    np.testing.assert_allclose(partial.best_oks, [1.0, 1.0, 0.0])
    nothing = coco_keypoint_eval(gt, [])
    assert nothing.stats["AP"] == 0.0 and nothing.best_oks.tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="image ids"):
        coco_keypoint_eval(gt, [dict(_perfect(gt)[0], image_id=99)])


def test_mpii_model_output_maps_to_coco_by_name() -> None:
    pytest.importorskip("pycocotools")
    from deepercut.data.coco import COCO_PARTS
    from deepercut.evaluate.coco import coco_keypoint_eval, to_coco_results

    gt = _coco_gt()
    # The exact body joints of each gt person in MPII14 order (neck, head top: anywhere).
    entries = []
    for a in gt["annotations"]:
        kp = np.asarray(a["keypoints"], np.float64).reshape(17, 3)
        person = np.full((1, 14, 3), NAN)
        for j, name in enumerate(MPII14.parts):
            if name in COCO_PARTS:
                person[0, j] = (*kp[COCO_PARTS.index(name), :2], 0.5)
        entries += to_coco_results(a["image_id"], person, MPII14.parts)
    assert len(entries) == 3
    first = np.asarray(entries[0]["keypoints"]).reshape(17, 3)
    assert (first[:5] == 0).all()  # no nose, eyes, ears
    np.testing.assert_allclose(
        first[5:, :2], np.reshape(gt["annotations"][0]["keypoints"], (17, 3))[5:, :2]
    )
    # Score: 12 parts of 0.5 over 14 model parts.
    assert entries[0]["score"] == pytest.approx(12 * 0.5 / 14, abs=1e-5)
    standard = coco_keypoint_eval(gt, entries)
    body = coco_keypoint_eval(gt, entries, body_only=True)
    assert standard.stats["AP"] < 1.0  # the missing face keypoints are misses
    assert body.stats["AP"] == pytest.approx(1.0)


def test_people_without_coco_keypoints_are_not_written() -> None:
    from deepercut.evaluate.coco import to_coco_results

    person = np.full((1, 14, 3), NAN)
    person[0, MPII14.index("neck")] = (5, 5, 0.9)  # COCO has no neck
    assert to_coco_results(1, person, MPII14.parts) == []
