"""One entry point to every dataset format: the reader is chosen by the file."""

from __future__ import annotations

from pathlib import Path

from deepercut.data.dataset import DatasetError, PoseDataset


def load_dataset(path: str | Path, images: str | Path | None = None) -> PoseDataset:
    """Load an annotated dataset, the reader chosen by the file.

    ``.json``: COCO person keypoints (images default to a sibling ``val2017/`` or
    ``train2017/`` folder, else ``images``); ``.mat``: the MPII release's annotation struct or
    LSP's ``joints.mat``; ``config.yaml`` (or its project folder): a DeepLabCut project.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DatasetError: the file is not one of these formats or is malformed.
    """
    path = Path(path)
    if path.is_dir() and (path / "config.yaml").is_file():
        path = path / "config.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no dataset at {path}")
    suffix = path.suffix.lower()
    if suffix == ".json":
        from deepercut.data.coco import load_coco

        return load_coco(path, images)
    if suffix == ".mat":
        from deepercut.data.lsp import is_lsp_mat, load_lsp
        from deepercut.data.mpii import load_mpii

        return load_lsp(path, images) if is_lsp_mat(path) else load_mpii(path, images)
    if suffix in (".yaml", ".yml"):
        from deepercut.data.dlc import load_dlc_project

        return load_dlc_project(path)
    raise DatasetError(
        f"unknown dataset format {path}: expected a COCO .json, an MPII/LSP .mat or a "
        "DeepLabCut config.yaml"
    )
