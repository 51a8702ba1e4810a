"""MPII Human Pose: the release's ``mpii_human_pose_v1_u12_1.mat`` (struct ``RELEASE``).

Read with ``scipy.io.loadmat``: ``RELEASE.annolist(i).image.name``, ``.annorect(j)`` with the
head box ``x1, y1, x2, y2``, ``scale``, ``objpos`` and ``annopoints.point(k)`` (``x, y, id,
is_visible``), and ``RELEASE.img_train(i)``. Only annotated training images (``img_train`` = 1)
are loaded (the test annotations are withheld), one person per rectangle with joints, mapped to
DeeperCut's 14 parts (:data:`~deepercut.skeleton.MPII14`; MPII's pelvis and thorax are not
used). A joint without ``is_visible`` counts as visible. ``image_id`` is the index in
``annolist``; ``head_size`` is 0.6 × the head box diagonal (PCKh's reference length) and
``height`` 200 × ``scale`` pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deepercut.bounded_files import FileTooLarge, check_mat_size
from deepercut.data.dataset import OCCLUDED, VISIBLE, DatasetError, PoseDataset, PoseRecord
from deepercut.skeleton import MPII14

#: MPII joint id → MPII14 index (ids 6 pelvis and 7 thorax are dropped).
MPII_TO_MPII14 = {0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 10: 6, 11: 7, 12: 8, 13: 9, 14: 10, 15: 11,
                  8: 12, 9: 13}  # fmt: skip

#: PCKh's head segment length as a fraction of the head box diagonal (MPII's ``SC_BIAS``).
HEAD_SIZE_FACTOR = 0.6
#: Most bytes the annotation .mat may inflate to (an upper bound for MPII's release file).
MAX_MAT_BYTES = 256 << 20


def _items(value: Any) -> list[Any]:
    """A MATLAB struct array / cell / scalar as a list (``loadmat(squeeze_me=True)`` collapses
    one-element arrays to scalars and empty ones to 0-size arrays)."""
    if isinstance(value, np.ndarray):
        return list(value.ravel())
    return [value]


def _number(value: Any) -> float | None:
    """A scalar field as a float; None for an empty field."""
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return None
        value = value.ravel()[0]
    if isinstance(value, (bytes, str)):
        value = value.strip()
        return float(value) if value else None
    return float(value)


def load_mpii(mat_path: str | Path, images: str | Path | None = None) -> PoseDataset:
    """MPII's training annotations as a :class:`PoseDataset` (images default to ``images/``
    next to the .mat file, as the release unpacks)."""
    import scipy.io

    mat_path = Path(mat_path)
    try:
        check_mat_size(mat_path, MAX_MAT_BYTES)
        mat = scipy.io.loadmat(
            mat_path, struct_as_record=False, squeeze_me=True, variable_names=["RELEASE"]
        )
    except FileTooLarge as exc:
        raise DatasetError(str(exc)) from exc
    except (ValueError, OSError, NotImplementedError) as exc:
        raise DatasetError(f"{mat_path}: not a readable MATLAB file: {exc}") from exc
    if "RELEASE" not in mat:
        raise DatasetError(f"{mat_path}: no RELEASE struct (not the MPII annotation file)")
    release = mat["RELEASE"]
    try:
        annolist = _items(release.annolist)
        train = np.asarray(release.img_train).ravel()
    except AttributeError as exc:
        raise DatasetError(f"{mat_path}: RELEASE lacks {exc.name}") from exc
    if len(train) != len(annolist):
        raise DatasetError(f"{mat_path}: {len(annolist)} images but {len(train)} img_train flags")
    image_dir = Path(images) if images is not None else mat_path.parent / "images"
    records = []
    for index, (anno, is_train) in enumerate(zip(annolist, train, strict=True)):
        if not is_train:
            continue
        people = [_person(rect, mat_path, index) for rect in _items(anno.annorect)]
        people = [p for p in people if p is not None]
        if not people:
            continue
        records.append(
            PoseRecord(
                image_path=image_dir / str(anno.image.name),
                image_id=index,
                keypoints=np.stack([p[0] for p in people]),
                head_size=np.array([p[1] for p in people], np.float64),
                height=np.array([p[2] for p in people], np.float64),
            )
        )
    return PoseDataset(MPII14, records, f"mpii:{mat_path}")


def _person(rect: Any, mat_path: Path, index: int) -> tuple[np.ndarray, float, float] | None:
    """(keypoints [14, 3], head size, height) of one annotated rectangle; None without joints."""
    fields = getattr(rect, "_fieldnames", None) or []
    if "annopoints" not in fields:
        return None
    annopoints = rect.annopoints
    points = _items(getattr(annopoints, "point", np.zeros(0)))
    if not points:
        return None
    kp = np.zeros((MPII14.num_parts, 3), np.float32)
    for point in points:
        try:
            joint = int(_number(point.id))
            x, y = _number(point.x), _number(point.y)
        except (AttributeError, TypeError) as exc:
            raise DatasetError(f"{mat_path}: annolist({index + 1}) has a malformed point") from exc
        part = MPII_TO_MPII14.get(joint)
        if part is None or x is None or y is None:
            continue
        vis = _number(getattr(point, "is_visible", np.zeros(0)))
        # MPII's coordinates are 1-based MATLAB pixels.
        kp[part] = (x - 1, y - 1, OCCLUDED if vis == 0 else VISIBLE)
    try:
        head = np.hypot(_number(rect.x2) - _number(rect.x1), _number(rect.y2) - _number(rect.y1))
    except (AttributeError, TypeError) as exc:
        raise DatasetError(f"{mat_path}: annolist({index + 1}) lacks its head box") from exc
    scale = _number(getattr(rect, "scale", np.zeros(0)))
    return kp, HEAD_SIZE_FACTOR * float(head), 200.0 * scale if scale else 0.0
