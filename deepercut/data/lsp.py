"""Leeds Sports Pose: ``joints.mat`` with one person per image, in MPII14's part order.

LSP stores ``joints`` as 3×14×N (x, y, and a flag that is 1 for an *occluded* joint): every
joint is labelled (LSP annotates occluded joints at their estimated position). LSP extended
stores 14×3×N with the flag 1 for a *visible* joint; its flag-0 joints lie outside the image
(the person is cut off by the frame) at placeholder coordinates, so they are read as not
labelled. Images are ``im0001.jpg``… (``im00001.jpg``… for LSP extended) in ``images/`` next to
the file; coordinates are MATLAB's 1-based pixels, stored 0-based. LSP extended's distribution
withholds some images while keeping their rows (row *i* is still image *i* + 1):
:meth:`PoseDataset.with_existing_images` drops those.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepercut.bounded_files import FileTooLarge, check_mat_size
from deepercut.data.dataset import (
    NOT_LABELLED,
    OCCLUDED,
    VISIBLE,
    DatasetError,
    PoseDataset,
    PoseRecord,
)
from deepercut.skeleton import MPII14

#: Most bytes a joints.mat may inflate to (LSP extended: 14×3×10 000 doubles, 3.4 MB).
MAX_MAT_BYTES = 64 << 20


def _joints_shape(mat_path: Path) -> tuple[int, ...] | None:
    """The shape of a 3-D ``joints`` variable, from the file's variable headers only."""
    import scipy.io

    try:
        variables = scipy.io.whosmat(mat_path)
    except (ValueError, OSError, NotImplementedError) as exc:
        raise DatasetError(f"{mat_path}: not a readable MATLAB file: {exc}") from exc
    shapes = [tuple(shape) for name, shape, _ in variables if name == "joints"]
    return shapes[0] if shapes and len(shapes[0]) == 3 else None


def _read_joints(mat_path: Path) -> np.ndarray | None:
    import scipy.io

    try:
        check_mat_size(mat_path, MAX_MAT_BYTES)
        mat = scipy.io.loadmat(mat_path, variable_names=["joints"])
    except FileTooLarge as exc:
        raise DatasetError(str(exc)) from exc
    except (ValueError, OSError, NotImplementedError) as exc:
        raise DatasetError(f"{mat_path}: not a readable MATLAB file: {exc}") from exc
    joints = mat.get("joints")
    return joints if isinstance(joints, np.ndarray) and joints.ndim == 3 else None


def is_lsp_mat(mat_path: str | Path) -> bool:
    """Whether ``mat_path`` holds an LSP ``joints`` array (3×14×N or 14×3×N); reads only the
    variables' headers."""
    shape = _joints_shape(Path(mat_path))
    return shape is not None and shape[:2] in ((3, 14), (14, 3))


def load_lsp(mat_path: str | Path, images: str | Path | None = None) -> PoseDataset:
    """LSP or LSP-extended ``joints.mat`` as a :class:`PoseDataset` (``image_id`` = index)."""
    mat_path = Path(mat_path)
    joints = _read_joints(mat_path)
    if joints is None:
        raise DatasetError(f"{mat_path}: no 3-D 'joints' array (not an LSP joints.mat)")
    if joints.shape[:2] == (3, 14):  # LSP: flag = occluded
        xy = joints[:2].transpose(2, 1, 0)
        visible = joints[2].T == 0
        hidden = OCCLUDED
        digits = 4
    elif joints.shape[:2] == (14, 3):  # LSP extended: flag = visible, 0 = outside the image
        xy = joints[:, :2].transpose(2, 0, 1)
        visible = joints[:, 2].T != 0
        hidden = NOT_LABELLED
        digits = 5
    else:
        raise DatasetError(f"{mat_path}: joints shape {joints.shape} is not 3×14×N or 14×3×N")
    image_dir = Path(images) if images is not None else mat_path.parent / "images"
    records = []
    for i in range(xy.shape[0]):
        kp = np.zeros((1, MPII14.num_parts, 3), np.float32)
        kp[0, :, :2] = xy[i] - 1
        kp[0, :, 2] = np.where(visible[i], VISIBLE, hidden)
        records.append(PoseRecord(image_dir / f"im{i + 1:0{digits}d}.jpg", i, kp))
    return PoseDataset(MPII14, records, f"lsp:{mat_path}")


def validation_split(
    dataset: PoseDataset, count: int = 500, seed: int = 18
) -> tuple[PoseDataset, PoseDataset]:
    """(train, validation): ``count`` images drawn (seeded permutation) from the images present,
    the rest for training; both in dataset order. The rule behind the committed LSPET split."""
    present, _ = dataset.with_existing_images()
    if not 0 < count < len(present):
        raise ValueError(f"validation count {count} must be in (0, {len(present)})")
    order = np.random.default_rng(seed).permutation(len(present))
    val = sorted(order[:count].tolist())
    train = sorted(order[count:].tolist())
    return (
        present.subset(train, f"{dataset.name} [train]"),
        present.subset(val, f"{dataset.name} [validation]"),
    )
