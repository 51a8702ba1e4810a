"""DeepLabCut projects: ``config.yaml`` + ``labeled-data/<video>/CollectedData_<scorer>.csv|.h5``.

The skeleton comes from the config: ``bodyparts`` (single animal) or ``multianimalbodyparts``
(multi-animal; ``uniquebodyparts``, which belong to no individual, are not read), drawing edges
from ``skeleton``, left/right flip pairs from part names, and solver stages: one group for up to
six parts, else groups of up to six parts along the skeleton graph (or ``stages`` given
explicitly). Labelled rows become records with one person per animal (single-animal projects:
one); a part with no label (empty or NaN) has visibility 0, a labelled one 2 (DLC does not mark
occlusion).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deepercut.data.dataset import VISIBLE, DatasetError, PoseDataset, PoseRecord
from deepercut.data.h5_pickles import PickledCode, check_h5_has_no_code
from deepercut.skeleton import Skeleton

#: Largest part group a derived skeleton solves in one incremental stage.
MAX_STAGE_PARTS = 6

_COORDS = ("x", "y", "likelihood")


def read_config(config_path: str | Path) -> dict[str, Any]:
    """The project's ``config.yaml`` as a dict."""
    import yaml

    path = Path(config_path)
    try:
        with open(path) as f:
            config = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        raise DatasetError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(config, dict):
        raise DatasetError(f"{path}: not a DeepLabCut config (expected a mapping)")
    return config


def project_parts(config: dict[str, Any]) -> list[str]:
    """The body parts one animal has, in config order."""
    if config.get("multianimalproject"):
        parts = config.get("multianimalbodyparts") or []
    else:
        parts = config.get("bodyparts") or []
    if parts == "MULTI!":  # DLC's placeholder in multi-animal configs
        parts = config.get("multianimalbodyparts") or []
    if not parts or not all(isinstance(p, str) for p in parts):
        raise DatasetError("the config lists no body parts (bodyparts / multianimalbodyparts)")
    return list(parts)


def flip_pairs_from_names(parts: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """Pairs of parts whose names differ only by ``left``/``right`` (case-insensitive)."""
    lower = [p.lower() for p in parts]
    pairs = []
    for i, name in enumerate(lower):
        if "left" in name:
            mirror = name.replace("left", "right")
            if mirror in lower:
                pairs.append((i, lower.index(mirror)))
    return tuple(pairs)


def derive_stages(
    num_parts: int, edges: Sequence[tuple[int, int]], max_parts: int = MAX_STAGE_PARTS
) -> tuple[tuple[int, ...], ...]:
    """Solver stages for a custom skeleton: one group when small, else connected chunks.

    Parts are visited breadth-first along ``edges`` from part 0 (unconnected parts in index
    order), and cut into consecutive groups of at most ``max_parts``, so each stage adds parts
    adjacent to the ones already solved where the skeleton allows.
    """
    if num_parts <= max_parts:
        return (tuple(range(num_parts)),)
    neighbours: list[list[int]] = [[] for _ in range(num_parts)]
    for a, b in edges:
        neighbours[a].append(b)
        neighbours[b].append(a)
    order: list[int] = []
    seen = [False] * num_parts
    for root in range(num_parts):
        if seen[root]:
            continue
        seen[root] = True
        queue = [root]
        while queue:
            part = queue.pop(0)
            order.append(part)
            for nb in sorted(neighbours[part]):
                if not seen[nb]:
                    seen[nb] = True
                    queue.append(nb)
    return tuple(tuple(order[i : i + max_parts]) for i in range(0, num_parts, max_parts))


def dlc_skeleton(config: dict[str, Any], stages: Sequence[Sequence[str]] | None = None) -> Skeleton:
    """The :class:`Skeleton` of a DLC config (``stages``: part-name groups, to override)."""
    parts = project_parts(config)
    edges = []
    for pair in config.get("skeleton") or []:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise DatasetError(f"config skeleton entry {pair!r} is not a pair of part names")
        a, b = pair
        if a not in parts or b not in parts:
            raise DatasetError(f"config skeleton edge {pair!r} names a part not in {parts}")
        edges.append((parts.index(a), parts.index(b)))
    if stages is None:
        groups = derive_stages(len(parts), edges)
    else:
        try:
            groups = tuple(tuple(parts.index(p) for p in g) for g in stages)
        except ValueError as exc:
            raise DatasetError(f"stages {stages} name a part not in {parts}") from exc
    return Skeleton(
        name=f"dlc-{config.get('Task') or 'project'}",
        parts=tuple(parts),
        edges=tuple(edges),
        stages=groups,
        flip_pairs=flip_pairs_from_names(parts),
    )


def read_collected_csv(
    path: str | Path, parts: Sequence[str]
) -> tuple[list[str], np.ndarray, list[str]]:
    """Read a ``CollectedData_*.csv`` (single- or multi-animal header, 1 or 3 index columns).

    Returns:
        image paths as written (joined with ``/``), keypoints float32 [N, A, P, 2] (NaN where
        unlabelled) and the individuals' names (``[""]`` for single-animal files).
    """
    path = Path(path)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header = {row[0]: row for row in rows[:4] if row}
    if "coords" not in header or "bodyparts" not in header:
        raise DatasetError(f"{path}: not a DeepLabCut CollectedData csv (no bodyparts/coords rows)")
    coords = header["coords"]
    n_index = next((i for i, c in enumerate(coords) if c in _COORDS), None)
    if n_index is None or n_index == 0:
        raise DatasetError(f"{path}: no x/y columns in the coords row")
    n_header = 4 if "individuals" in header else 3
    columns = [
        (
            header["individuals"][c] if n_header == 4 else "",
            header["bodyparts"][c],
            coords[c],
        )
        for c in range(n_index, len(coords))
    ]
    return _assemble(path, columns, rows[n_header:], n_index, parts)


def read_collected_h5(
    path: str | Path, parts: Sequence[str]
) -> tuple[list[str], np.ndarray, list[str]]:
    """Read a ``CollectedData_*.h5`` (a pandas DataFrame; needs pandas, PyTables and h5py).

    The file is first checked for anything pandas would unpickle into code (object columns,
    attribute pickles that import or call: :mod:`deepercut.data.h5_pickles`) and refused.
    """
    try:
        import h5py  # noqa: F401  (the pickle check)
        import pandas as pd
        import tables
    except ImportError as exc:
        raise ImportError("reading DLC .h5 files needs pandas, tables and h5py") from exc
    path = Path(path)
    try:
        check_h5_has_no_code(path)
        df = pd.read_hdf(path)
    except PickledCode as exc:
        raise DatasetError(f"refusing a label file that would run code: {exc}") from exc
    except (ValueError, KeyError, OSError, tables.HDF5ExtError) as exc:
        raise DatasetError(f"{path}: not a readable DLC h5 file: {exc}") from exc
    names = list(df.columns.names)
    if "bodyparts" not in names or "coords" not in names:
        raise DatasetError(f"{path}: columns lack bodyparts/coords levels ({names})")
    columns = [
        (
            col[names.index("individuals")] if "individuals" in names else "",
            col[names.index("bodyparts")],
            col[names.index("coords")],
        )
        for col in df.columns
    ]
    index = [("/".join(map(str, i)) if isinstance(i, tuple) else str(i)) for i in df.index]
    rows = [[name, *("" if pd.isna(v) else str(v) for v in values)]
            for name, values in zip(index, df.to_numpy(), strict=True)]  # fmt: skip
    return _assemble(path, columns, rows, 1, parts)


def _assemble(
    path: Path,
    columns: list[tuple[str, str, str]],
    rows: list[list[str]],
    n_index: int,
    parts: Sequence[str],
) -> tuple[list[str], np.ndarray, list[str]]:
    individuals = list(dict.fromkeys(ind for ind, part, _ in columns if part in parts))
    if not individuals:
        raise DatasetError(f"{path}: none of the parts {list(parts)} has columns")
    images = []
    kp = np.full((len(rows), len(individuals), len(parts), 2), np.nan, np.float32)
    for r, row in enumerate(rows):
        if len(row) != n_index + len(columns):
            raise DatasetError(
                f"{path}: row {r} has {len(row)} cells, expected {n_index + len(columns)}"
            )
        images.append("/".join(c for c in row[:n_index] if c))
        for c, (ind, part, coord) in enumerate(columns):
            if part not in parts or coord not in ("x", "y"):
                continue
            cell = row[n_index + c].strip()
            if cell and cell.lower() != "nan":
                try:
                    value = float(cell)
                except ValueError as exc:
                    raise DatasetError(f"{path}: row {r}: bad {coord} value {cell!r}") from exc
                kp[r, individuals.index(ind), parts.index(part), int(coord == "y")] = value
    return images, kp, individuals


def find_label_files(project: Path) -> list[Path]:
    """One ``CollectedData_*`` file per labelled video folder (csv preferred to h5)."""
    files = []
    for folder in sorted((project / "labeled-data").glob("*")):
        if not folder.is_dir() or folder.name.endswith("_labeled"):
            continue
        found = sorted(folder.glob("CollectedData_*.csv")) or sorted(
            folder.glob("CollectedData_*.h5")
        )
        files.extend(found[:1])
    return files


def load_dlc_project(
    config_path: str | Path, stages: Sequence[Sequence[str]] | None = None
) -> PoseDataset:
    """A DLC project's labelled frames as a :class:`PoseDataset` (rows in file order).

    Records with no labelled part at all are kept (they are negatives for training); image
    paths in the label files are resolved against the project folder, or the label file's own
    folder when the project was moved.
    """
    config_path = Path(config_path)
    config = read_config(config_path)
    skeleton = dlc_skeleton(config, stages)
    project = config_path.parent
    label_files = find_label_files(project)
    if not label_files:
        raise DatasetError(f"{project}: no labeled-data/*/CollectedData_*.csv or .h5 files")
    records = []
    for label_file in label_files:
        reader = read_collected_h5 if label_file.suffix == ".h5" else read_collected_csv
        images, kp, _ = reader(label_file, skeleton.parts)
        for name, animals in zip(images, kp, strict=True):
            image_path = project / name
            if not image_path.is_file():
                image_path = label_file.parent / Path(name).name
            if not image_path.is_file():
                raise DatasetError(f"{label_file}: image {name} not found under {project}")
            labelled = np.isfinite(animals).all(-1)
            keypoints = np.zeros((*animals.shape[:2], 3), np.float32)
            keypoints[..., :2] = np.where(labelled[..., None], animals, 0.0)
            keypoints[..., 2] = np.where(labelled, VISIBLE, 0)
            # Animals with no label in this frame are not there: no person record for them.
            present = labelled.any(1)
            records.append(PoseRecord(image_path, len(records), keypoints[present]))
    return PoseDataset(skeleton, records, f"dlc:{config_path}")


def training_fraction(config: dict[str, Any]) -> float:
    """The project's first ``TrainingFraction`` (DLC's default 0.95 when absent)."""
    fractions = config.get("TrainingFraction") or [0.95]
    return float(fractions[0])
