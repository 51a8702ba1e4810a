"""COCO person keypoints (``person_keypoints_*.json``): 17 parts in COCO's own order.

One record per image that has at least one non-crowd person annotation, ``image_id`` = COCO's
id, one person per annotation (annotations without keypoints included, all visibility 0, as
COCO's evaluation ignores them), with ``area`` and ``bbox`` for OKS. Crowd regions are left out.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from deepercut.data.dataset import DatasetError, PoseDataset, PoseRecord
from deepercut.skeleton import COCO17, COCO_PARTS


def default_image_dir(json_path: Path) -> Path:
    """Where COCO keeps the images of ``annotations/person_keypoints_<split>.json``."""
    split = json_path.stem.rsplit("_", 1)[-1]  # e.g. val2017
    for base in (json_path.parent, json_path.parent.parent):
        if (base / split).is_dir():
            return base / split
    for name in ("val2017", "train2017", "images"):
        for base in (json_path.parent, json_path.parent.parent):
            if (base / name).is_dir():
                return base / name
    raise DatasetError(
        f"{json_path}: no image folder found next to it ({split}/, val2017/, train2017/, "
        "images/); pass it explicitly"
    )


def load_coco(json_path: str | Path, images: str | Path | None = None) -> PoseDataset:
    """A COCO person-keypoints json as a :class:`PoseDataset` (images in ``images``)."""
    json_path = Path(json_path)
    try:
        with open(json_path) as f:
            data: dict[str, Any] = json.load(f)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{json_path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise DatasetError(f"{json_path}: not a COCO annotation file (no images/annotations)")
    image_dir = Path(images) if images is not None else default_image_dir(json_path)
    where = "categories"
    try:
        person_ids = {c["id"] for c in data.get("categories", []) if c.get("name") == "person"}
        if not person_ids:
            person_ids = {1}
        by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for i, ann in enumerate(data["annotations"]):
            where = f"annotations[{i}]"
            if ann.get("category_id") in person_ids and not ann.get("iscrowd", 0):
                by_image[int(ann["image_id"])].append(ann)
        records = []
        for i, info in enumerate(data["images"]):
            where = f"images[{i}]"
            anns = by_image.get(int(info["id"]))
            if anns:
                records.append(_record(info, anns, image_dir, json_path))
    except DatasetError:
        raise
    except KeyError as exc:
        raise DatasetError(f"{json_path}: {where} lacks the key {exc}") from exc
    except (TypeError, ValueError, AttributeError) as exc:
        raise DatasetError(f"{json_path}: {where} is malformed: {exc}") from exc
    return PoseDataset(COCO17, records, f"coco:{json_path}")


def _record(
    info: dict[str, Any], anns: list[dict[str, Any]], image_dir: Path, json_path: Path
) -> PoseRecord:
    """One image's people (annotations with no keypoints count as all unlabelled)."""
    p = len(COCO_PARTS)
    kp = np.zeros((len(anns), p, 3), np.float32)
    for m, ann in enumerate(anns):
        values = ann.get("keypoints") or [0] * (3 * p)
        if not isinstance(values, list) or len(values) != 3 * p:
            count = len(values) if isinstance(values, list) else type(values).__name__
            raise DatasetError(
                f"{json_path}: annotation {ann.get('id')} has {count} keypoint values, "
                f"expected {3 * p}"
            )
        kp[m] = np.asarray(values, np.float32).reshape(p, 3)
    return PoseRecord(
        image_path=image_dir / info["file_name"],
        image_id=int(info["id"]),
        keypoints=kp,
        area=np.array([float(a.get("area", 0.0)) for a in anns], np.float64),
        bbox=np.array([a.get("bbox", [0, 0, 0, 0]) for a in anns], np.float64),
    )
