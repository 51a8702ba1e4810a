"""Untrusted input files: checkpoints whose config would build a huge network, malformed
checkpoints, ``.mat``/``.npz`` label files that inflate, malformed COCO json, DeepLabCut
``.h5`` labels with pickled columns. Each is crafted here and must fail fast with a clear
error; memory is measured in a fresh subprocess (peak RSS growth, a count of bytes)."""

from __future__ import annotations

import contextlib
import json
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from deepercut.data.dataset import DatasetError
from deepercut.data.dlc import read_collected_h5
from deepercut.data.load import load_dataset
from deepercut.model.io import Model, load_model, save_model
from deepercut.model.net import DeeperCut, DetectorConfig
from deepercut.skeleton import Skeleton

REPO = Path(__file__).resolve().parent.parent
#: Most a refused file may grow the loading process's peak RSS by.
RSS_BUDGET_MB = 64

# Loads each file given, prints one JSON line: the error per file and the peak RSS growth.
_PROBE = """
import json, resource, sys
from deepercut.model.io import CheckpointError, load_model
from deepercut.data.load import load_dataset
from deepercut.model.pairwise import PairwiseModel
loaders = {"checkpoint": load_model, "labels": load_dataset, "pairwise": PairwiseModel.load}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
errors = {}
for kind, path in zip(sys.argv[1::2], sys.argv[2::2]):
    try:
        loaders[kind](path)
        errors[path] = None
    except Exception as exc:
        errors[path] = f"{type(exc).__name__}: {exc}"
growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"errors": errors, "growth_mb": growth / 1024}))
"""


def probe(files: list[tuple[str, Path]]) -> dict:
    """Load ``files`` (kind, path) in a fresh interpreter; its errors and peak RSS growth."""
    args = [str(a) for kind, path in files for a in (kind, path)]
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def tiny_checkpoint(path: Path) -> dict:
    """A real, loadable small checkpoint; returns its raw content."""
    torch.manual_seed(0)
    config = DetectorConfig(arch="resnet18", num_parts=4, width=8, head_channels=16)
    skeleton = Skeleton("tiny", ("a", "b", "c", "d"), ((0, 1), (1, 2), (2, 3)), ((0, 1, 2, 3),))
    save_model(path, Model(DeeperCut(config).eval(), skeleton, (64, 96)))
    return torch.load(path, weights_only=True)


def _skeleton(num_parts: int) -> dict:
    parts = tuple(f"p{i}" for i in range(num_parts))
    return Skeleton("many", parts, (), (tuple(range(num_parts)),)).to_dict()


# (name, changes to the checkpoint, expected error text)
HOSTILE = [
    (
        "issue_19",
        {"config": {"num_parts": 400, "head_channels": 256}, "skeleton": _skeleton(400)},
        "not in [1, 256]",
    ),
    ("pairwise", {"config": {"num_parts": 100}}, "a pairwise head for 100 parts (at most 64"),
    ("parts", {"config": {"num_parts": 10**6, "pairwise": False}}, "not in [1, 256]"),
    ("width", {"config": {"width": 10**5}}, "'width' = 100000 is not in"),
    ("params", {"config": {"arch": "resnet152", "width": 256}}, "parameters (at most"),
    ("arch", {"config": {"arch": "resnet9999"}}, "unknown arch"),
    ("type", {"config": {"num_parts": "4"}}, "'num_parts' must be int"),
    ("float", {"config": {"locref_std": float("nan")}}, "'locref_std' must be float"),
    ("input_hw", {"input_hw": [100, 7]}, "input_hw must be two multiples of 16"),
    ("input_hw_huge", {"input_hw": [2**20, 2**20]}, "input_hw must be"),
    ("state_dict", {"state_dict": [1, 2]}, "state_dict is a list, not a dict"),
    ("meta", {"meta": "x"}, "meta is a str, not a dict"),
    ("config", {"config": [1]}, "config is a list, not a dict"),
]


def test_hostile_checkpoints_fail_fast_in_bounded_memory(tmp_path: Path) -> None:
    raw = tiny_checkpoint(tmp_path / "good.pt")
    files = []
    for name, changes, _ in HOSTILE:
        content = {**raw, "state_dict": {}}  # refused before weights matter: a ~7 KB file
        for key, value in changes.items():
            merge = isinstance(value, dict) and key == "config"
            content[key] = {**raw[key], **value} if merge else value
        path = tmp_path / f"{name}.pt"
        torch.save(content, path)
        assert path.stat().st_size < 20_000  # small files...
        files.append(("checkpoint", path))
    result = probe(files)
    for (name, _, expected), (_, path) in zip(HOSTILE, files, strict=True):
        error = result["errors"][str(path)]
        assert error is not None and error.startswith("CheckpointError"), (name, error)
        assert expected in error, (name, error)
    # ... that ask for huge networks allocate nothing of them.
    assert result["growth_mb"] < RSS_BUDGET_MB, result["growth_mb"]
    assert load_model(tmp_path / "good.pt").net.num_parts == 4


# ---------------------------------------------------------------- .mat / .npz / COCO json


def test_inflating_mat_and_npz_files_are_refused_in_bounded_memory(tmp_path: Path) -> None:
    scipy_io = pytest.importorskip("scipy.io")
    lsp = tmp_path / "joints.mat"  # LSP layout, 1 M people: 336 MB of zeros
    scipy_io.savemat(lsp, {"joints": np.zeros((3, 14, 1_000_000))}, do_compression=True)
    mpii = tmp_path / "mpii.mat"  # an MPII-like RELEASE struct with a 320 MB field
    release = {"annolist": np.zeros((1, 40_000_000)), "img_train": np.zeros(1)}
    scipy_io.savemat(mpii, {"RELEASE": release}, do_compression=True)
    npz = tmp_path / "pairwise.npz"  # a pairwise model file with a 400 MB weights array
    meta = json.dumps({"format": "deepercut.pairwise", "version": 1})
    np.savez_compressed(npz, meta=np.array(meta), weights=np.zeros(50_000_000))
    objects = tmp_path / "objects.npz"
    np.savez(objects, meta=np.array(meta), weights=np.array([{"a": 1}], dtype=object))
    for path in (lsp, mpii, npz):
        assert path.stat().st_size < 2_000_000  # small files...
    files = [("labels", lsp), ("labels", mpii), ("pairwise", npz), ("pairwise", objects)]
    result = probe(files)
    errors = [result["errors"][str(path)] for _, path in files]
    for error in errors[:3]:
        assert error is not None and "more than" in error and "refusing to load it" in error
    assert errors[0].startswith("DatasetError") and errors[1].startswith("DatasetError")
    assert errors[2].startswith("ValueError") and "pairwise model" in errors[2]
    assert "object array" in errors[3]
    # ... that would inflate to hundreds of MB allocate none of it.
    assert result["growth_mb"] < RSS_BUDGET_MB, result["growth_mb"]


def test_small_lsp_mat_still_loads(tmp_path: Path) -> None:
    scipy_io = pytest.importorskip("scipy.io")
    lsp = tmp_path / "joints.mat"
    joints = np.ones((3, 14, 5))
    joints[2] = 0  # LSP: flag 0 = visible
    scipy_io.savemat(lsp, {"joints": joints, "other": np.zeros(3)}, do_compression=True)
    dataset = load_dataset(lsp)
    assert len(dataset) == 5 and dataset.records[0].keypoints.shape == (1, 14, 3)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["annotations"][0].pop("image_id"),
            "lacks the key 'image_id'",
        ),
        (lambda d: d["images"][0].pop("id"), r"images\[0\] lacks the key 'id'"),
        (lambda d: d["annotations"][0].update(keypoints=7), "has int keypoint values"),
        (lambda d: d["annotations"][0].update(image_id="x"), r"annotations\[0\] is malformed"),
        (lambda d: d["annotations"].append(3), r"annotations\[1\] is malformed"),
    ],
)
def test_malformed_coco_json_is_a_clear_error(tmp_path: Path, change, expected) -> None:
    (tmp_path / "images").mkdir()
    doc = {
        "images": [{"id": 1, "file_name": "a.jpg"}],
        "annotations": [
            {"id": 5, "image_id": 1, "category_id": 1, "keypoints": [0] * 51, "area": 1.0}
        ],
        "categories": [{"id": 1, "name": "person"}],
    }
    path = tmp_path / "person_keypoints_x.json"
    path.write_text(json.dumps(doc))
    assert len(load_dataset(path)) == 1
    change(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match=expected):
        load_dataset(path)


# ---------------------------------------------------------------- DeepLabCut .h5 labels


class _Touch:
    """Unpickles as ``open(path, "w")``: code that leaves a marker file when it runs."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def _labels_frame():
    """A DeepLabCut CollectedData frame: 2 images, parts a/b, x/y (as DLC writes it)."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("tables")
    pytest.importorskip("h5py")
    columns = pd.MultiIndex.from_product(
        [["scorer"], ["a", "b"], ["x", "y"]], names=["scorer", "bodyparts", "coords"]
    )
    index = pd.MultiIndex.from_tuples([("labeled-data", "v", f"img{i}.png") for i in range(2)])
    return pd.DataFrame(np.arange(8.0).reshape(2, 4), index=index, columns=columns)


def test_h5_labels_with_an_object_column_are_refused(tmp_path: Path) -> None:
    import pandas as pd

    frame = _labels_frame()
    marker = tmp_path / "pwned"
    frame[("scorer", "a", "note")] = [_Touch(marker), "x"]  # an object column: pickled
    path = tmp_path / "CollectedData_scorer.h5"
    with warnings.catch_warnings():  # pandas warns that it pickles the object column
        warnings.simplefilter("ignore")
        frame.to_hdf(path, key="df_with_missing", mode="w")
    pd.read_hdf(path)  # the crafted file really runs code through pandas...
    assert marker.exists()
    marker.unlink()
    with pytest.raises(DatasetError, match="object column"):
        read_collected_h5(path, ["a", "b"])
    assert not marker.exists()


def test_h5_labels_with_a_code_attribute_are_refused(tmp_path: Path) -> None:
    import pandas as pd
    import tables

    path = tmp_path / "CollectedData_scorer.h5"
    _labels_frame().to_hdf(path, key="df_with_missing", mode="w")
    assert read_collected_h5(path, ["a", "b"])[1].shape == (2, 1, 2, 2)  # real files pass
    marker = tmp_path / "pwned"
    with tables.open_file(str(path), mode="a") as h5:  # PyTables unpickles "...." attributes
        h5.root.df_with_missing.axis0_level0._v_attrs.name = np.bytes_(
            pickle.dumps(_Touch(marker), protocol=0)
        )
    with contextlib.suppress(Exception):
        pd.read_hdf(path)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(DatasetError, match=r"attribute 'name' .* is a pickle that runs code"):
        read_collected_h5(path, ["a", "b"])
    assert not marker.exists()
