"""COCO keypoint results and OKS AP through pycocotools (the official COCOeval, nothing
hand-written).

A model's people become COCO result entries (``{"image_id", "category_id": 1, "keypoints":
[x, y, v] × 17, "score"}``). Model parts map to COCO's 17 keypoints by name; an MPII14 model
has 12 of them (shoulders, elbows, wrists, hips, knees, ankles) and no nose, eyes or ears:
those are written as ``0, 0, 0``. COCOeval ignores the written visibility, so each missing
keypoint counts as a miss against every labelled one: a perfect MPII14 body scores an OKS of
about 12/17 on a fully labelled person and can never reach the strict thresholds. To show what
the body joints alone achieve, :func:`coco_keypoint_eval` can also score against a copy of the
ground truth with the face keypoints unlabelled (``body_only=True``), reported separately.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepercut.data.coco import COCO_PARTS

#: Keypoints an MPII14 model cannot predict.
FACE_PARTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")
#: Names of ``COCOeval.stats`` for keypoints, in order.
STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
PERSON_CATEGORY = 1


def require_pycocotools() -> tuple[Any, Any]:
    """pycocotools' ``COCO`` and ``COCOeval``, or an ImportError saying how to install it."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as exc:  # an optional extra
        raise ImportError(
            "COCO evaluation needs pycocotools: pip install pycocotools (or deepercut[eval])"
        ) from exc
    return COCO, COCOeval


def coco_part_map(parts: tuple[str, ...]) -> np.ndarray:
    """[17] the model part index of each COCO keypoint (−1 where the model has none)."""
    return np.array([parts.index(n) if n in parts else -1 for n in COCO_PARTS], np.int64)


def to_coco_results(
    image_id: int, keypoints: np.ndarray, parts: tuple[str, ...]
) -> list[dict[str, Any]]:
    """COCO result entries of one image's people.

    Args:
        image_id: the COCO image id.
        keypoints: [M, P, 3] (x, y, score; NaN where absent) in the model's part order.
        parts: the model's part names.

    A person's score is the sum of its keypoint scores over all model parts divided by their
    number (absent parts count 0), so fuller, surer people rank first. People with no COCO
    keypoint are left out.
    """
    index = coco_part_map(parts)
    has = index >= 0
    results = []
    for person in np.asarray(keypoints, np.float64):
        present = np.isfinite(person[:, 0]) & np.isfinite(person[:, 1])
        out = np.zeros((len(COCO_PARTS), 3))
        mapped = has.copy()
        mapped[has] = present[index[has]]
        if not mapped.any():
            continue
        out[mapped, :2] = person[index[mapped], :2]
        out[mapped, 2] = 2  # COCOeval ignores it; 2 marks "predicted"
        score = float(np.where(present, person[:, 2], 0.0).sum() / len(parts))
        results.append(
            {
                "image_id": int(image_id),
                "category_id": PERSON_CATEGORY,
                "keypoints": [round(float(v), 2) for v in out.ravel()],
                "score": round(score, 5),
            }
        )
    return results


def write_results(results: Iterable[dict[str, Any]], path: str | Path) -> None:
    """Write result entries as a COCO results JSON file (a list)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(list(results)))


def without_face(dataset: dict[str, Any]) -> dict[str, Any]:
    """A copy of a COCO keypoint ground truth with the face keypoints unlabelled."""
    out = copy.deepcopy(dataset)
    face = [COCO_PARTS.index(n) for n in FACE_PARTS]
    for ann in out["annotations"]:
        kp = np.asarray(ann.get("keypoints", [0] * 51), np.float64).reshape(-1, 3)
        kp[face] = 0
        ann["keypoints"] = kp.ravel().tolist()
        ann["num_keypoints"] = int((kp[:, 2] > 0).sum())
    return out


@dataclass
class CocoResult:
    """COCOeval's keypoint summary.

    Attributes:
        stats: ``AP``, ``AP50``, ``AP75``, ``APm``, ``APl``, ``AR``, ... (see
            :data:`STAT_NAMES`); −1 where COCOeval has nothing to score (its convention).
        precision: COCOeval's ``eval["precision"]`` [T, R, K, A, M] (for PR plots), or
            ``None`` when there were no detections.
        recall_thresholds: [R] COCOeval's recall points.
        iou_thresholds: [T] the OKS thresholds.
        detections: number of result entries scored.
        images: number of images scored.
        best_oks: per scored ground-truth person (not crowd, with keypoints), the highest OKS
            of any detection in its image (0 when none): how close the nearest miss came.
    """

    stats: dict[str, float]
    precision: np.ndarray | None
    recall_thresholds: np.ndarray
    iou_thresholds: np.ndarray
    detections: int
    images: int
    best_oks: np.ndarray

    def table(self) -> str:
        return "\n".join(f"{name:<8}{value:>8.3f}" for name, value in self.stats.items())


def load_coco_gt(source: str | Path | dict[str, Any]) -> Any:
    """A pycocotools ``COCO`` from a keypoint annotation file or its loaded dict (quietly)."""
    COCO, _ = require_pycocotools()
    data = json.loads(Path(source).read_text()) if not isinstance(source, dict) else source
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = data
        gt.createIndex()
    return gt


def coco_keypoint_eval(
    gt: str | Path | dict[str, Any] | Any,
    results: list[dict[str, Any]],
    image_ids: Iterable[int] | None = None,
    body_only: bool = False,
) -> CocoResult:
    """OKS AP/AR of keypoint results with pycocotools' ``COCOeval``.

    Args:
        gt: the ground truth: an annotation file, its dict, or a loaded ``COCO``.
        results: COCO result entries (:func:`to_coco_results`).
        image_ids: the images to score (default: every image of the ground truth); images
            with people but no results count their people as missed.
        body_only: score against the ground truth with face keypoints unlabelled.
    """
    _, COCOeval = require_pycocotools()
    if not isinstance(gt, (str, Path, dict)):
        gt = gt.dataset
    data = json.loads(Path(gt).read_text()) if isinstance(gt, (str, Path)) else gt
    if body_only:
        data = without_face(data)
    coco_gt = load_coco_gt(data)
    ids = sorted(coco_gt.getImgIds() if image_ids is None else {int(i) for i in image_ids})
    unknown = {r["image_id"] for r in results} - set(coco_gt.getImgIds())
    if unknown:
        raise ValueError(f"results for image ids not in the ground truth: {sorted(unknown)[:5]}")
    if not results:  # COCO.loadRes cannot take an empty list: nothing found, nothing right
        stats = dict.fromkeys(STAT_NAMES, 0.0)
        scored = [
            a
            for a in coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=ids))
            if not a.get("iscrowd") and a.get("num_keypoints", 0) > 0
        ]
        return CocoResult(
            stats,
            None,
            np.linspace(0, 1, 101),
            np.linspace(0.5, 0.95, 10),
            0,
            len(ids),
            np.zeros(len(scored)),
        )
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(coco_gt, coco_dt, "keypoints")
        ev.params.imgIds = ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = {name: float(v) for name, v in zip(STAT_NAMES, ev.stats, strict=True)}
    return CocoResult(
        stats,
        np.asarray(ev.eval["precision"]),
        np.asarray(ev.params.recThrs),
        np.asarray(ev.params.iouThrs),
        len(results),
        len(ids),
        _best_oks(ev, ids),
    )


def _best_oks(ev: Any, ids: list[int]) -> np.ndarray:
    """Per scored gt person, the best OKS of the detections COCOeval compared with it."""
    best = []
    for image_id in ids:
        gts = ev._gts[image_id, PERSON_CATEGORY]  # the order of the OKS matrix's columns
        oks = np.asarray(ev.ious.get((image_id, PERSON_CATEGORY), []), np.float64)
        for g, ann in enumerate(gts):
            if ann.get("iscrowd") or ann.get("num_keypoints", 0) == 0:
                continue
            best.append(float(oks[:, g].max()) if oks.ndim == 2 and oks.shape[0] else 0.0)
    return np.asarray(best)
