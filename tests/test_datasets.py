"""Dataset readers (DLC csv/h5, COCO json, MPII .mat, LSP joints.mat), splits, the training
source, and a custom (DLC) skeleton through training, the pairwise model and the solvers."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from deepercut.data.dataset import DatasetError, PoseDataset, PoseRecord
from deepercut.data.dlc import derive_stages, read_collected_csv
from deepercut.data.load import load_dataset

Image = pytest.importorskip("PIL.Image")  # reading images needs Pillow

FIXTURES = Path(__file__).parent / "fixtures" / "datasets"
DLC_SINGLE = FIXTURES / "dlc_single"
DLC_MULTI = FIXTURES / "dlc_multi"


def _write_image(path: Path, h: int = 40, w: int = 50) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(path)


# ----------------------------------------------------------------------------- DLC


def test_dlc_single_animal_csv():
    ds = load_dataset(DLC_SINGLE / "config.yaml")
    assert ds.skeleton.parts == ("snout", "leftear", "rightear", "tailbase")
    assert ds.skeleton.edges == ((0, 3),)
    assert ds.skeleton.stages == ((0, 1, 2, 3),)
    assert ds.skeleton.flip_pairs == ((1, 2),)
    assert [r.image_path.name for r in ds.records] == [f"img00{i}.png" for i in range(4)]
    np.testing.assert_allclose(
        ds[0].keypoints[0], [[10.5, 20.25, 2], [14, 18, 2], [14, 23, 2], [40, 21, 2]]
    )
    # An empty cell is an unlabelled part; a row with no labels has no animal.
    np.testing.assert_array_equal(ds[1].keypoints[0, :, 2], [2, 0, 2, 2])
    assert ds[3].keypoints.shape == (0, 4, 3)
    assert [r.image_id for r in ds.records] == [0, 1, 2, 3]
    assert ds.image(0).shape == (48, 64, 3) and ds.image(0).dtype == np.uint8
    assert ds.image(0) is ds.image(0)  # cached


def test_dlc_multi_animal_csv_with_three_index_columns():
    ds = load_dataset(DLC_MULTI)  # the project folder works too
    assert ds.skeleton.parts == ("nose", "left_ear", "right_ear", "tail")
    assert ds.skeleton.edges == ((0, 1), (0, 2), (0, 3))
    assert ds[0].keypoints.shape == (2, 4, 3)
    np.testing.assert_allclose(ds[0].keypoints[1, :, :2], [[40, 30], [41, 31], [42, 32], [43, 33]])
    # mouse2 has no labels in f1: one animal only; mouse1 lacks its right ear.
    assert ds[1].keypoints.shape == (1, 4, 3)
    np.testing.assert_array_equal(ds[1].keypoints[0, :, 2], [2, 2, 0, 2])


def _to_dataframe(csv_path: Path, multi: bool):
    pd = pytest.importorskip("pandas")
    n_header = 4 if multi else 3
    n_index = 3 if multi else 1
    df = pd.read_csv(csv_path, header=list(range(n_header)), index_col=list(range(n_index)))
    return df.astype(float)


@pytest.mark.parametrize("project, multi", [(DLC_SINGLE, False), (DLC_MULTI, True)])
def test_dlc_h5_matches_csv(tmp_path, project, multi):
    pytest.importorskip("tables")
    copy = tmp_path / "project"
    shutil.copytree(project, copy)
    csv = next((copy / "labeled-data").glob("*/CollectedData_*.csv"))
    df = _to_dataframe(csv, multi)
    df.to_hdf(csv.with_suffix(".h5"), key="df_with_missing", mode="w")
    from_csv = load_dataset(copy / "config.yaml")
    csv.unlink()  # now only the h5 is there
    from_h5 = load_dataset(copy / "config.yaml")
    assert len(from_h5) == len(from_csv)
    for a, b in zip(from_csv.records, from_h5.records, strict=True):
        assert a.image_path == b.image_path
        np.testing.assert_allclose(a.keypoints, b.keypoints)


def test_dlc_csv_errors(tmp_path):
    bad = tmp_path / "CollectedData_x.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(DatasetError, match="not a DeepLabCut"):
        read_collected_csv(bad, ["snout"])
    short = tmp_path / "CollectedData_y.csv"
    short.write_text("scorer,s,s\nbodyparts,snout,snout\ncoords,x,y\nimg.png,1\n")
    with pytest.raises(DatasetError, match="row 0 has 2 cells"):
        read_collected_csv(short, ["snout"])


def test_derive_stages_groups_connected_parts():
    # A chain 0-1-...-8 plus an isolated part 9: groups of at most six, along the chain.
    edges = [(i, i + 1) for i in range(8)]
    stages = derive_stages(10, edges)
    assert stages == ((0, 1, 2, 3, 4, 5), (6, 7, 8, 9))
    assert derive_stages(4, []) == ((0, 1, 2, 3),)


# ----------------------------------------------------------------------------- COCO


def _coco_fixture(root: Path) -> Path:
    kp_a = [0.0] * 51
    kp_a[0:3] = [10, 12, 2]  # nose
    kp_a[15:18] = [20, 30, 1]  # left shoulder, occluded
    data = {
        "images": [
            {"id": 7, "file_name": "000000000007.jpg", "height": 40, "width": 50},
            {"id": 9, "file_name": "000000000009.jpg", "height": 40, "width": 50},
            {"id": 11, "file_name": "000000000011.jpg", "height": 40, "width": 50},
        ],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "iscrowd": 0, "keypoints": kp_a,
             "num_keypoints": 2, "area": 321.5, "bbox": [5, 6, 30, 32]},
            {"id": 2, "image_id": 7, "category_id": 1, "iscrowd": 0, "keypoints": [0] * 51,
             "num_keypoints": 0, "area": 50.0, "bbox": [1, 1, 5, 10]},
            {"id": 3, "image_id": 9, "category_id": 1, "iscrowd": 1, "keypoints": [0] * 51,
             "area": 900.0, "bbox": [0, 0, 30, 30]},
        ],
        "categories": [{"id": 1, "name": "person", "keypoints": [], "skeleton": []}],
    }  # fmt: skip
    (root / "annotations").mkdir(parents=True)
    path = root / "annotations" / "person_keypoints_val2017.json"
    path.write_text(json.dumps(data))
    for info in data["images"]:
        _write_image(root / "val2017" / info["file_name"])
    return path


def test_coco_reader(tmp_path):
    ds = load_dataset(_coco_fixture(tmp_path))
    assert ds.skeleton.name == "coco17" and ds.skeleton.num_parts == 17
    assert ds.skeleton.parts[5] == "left_shoulder"
    assert ds.skeleton.flip_permutation()[5] == 6
    # Image 9 has only a crowd region and image 11 nobody: neither becomes a record.
    assert [r.image_id for r in ds.records] == [7]
    rec = ds[0]
    assert rec.image_path == tmp_path / "val2017" / "000000000007.jpg"
    assert rec.keypoints.shape == (2, 17, 3)
    np.testing.assert_allclose(rec.keypoints[0, 0], [10, 12, 2])
    np.testing.assert_allclose(rec.keypoints[0, 5], [20, 30, 1])
    assert rec.keypoints[1, :, 2].sum() == 0
    np.testing.assert_allclose(rec.area, [321.5, 50.0])
    np.testing.assert_allclose(rec.bbox[0], [5, 6, 30, 32])
    assert ds.image(0).shape == (40, 50, 3)


def test_coco_reader_errors(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_dataset(bad, tmp_path)
    bad.write_text(json.dumps({"foo": 1}))
    with pytest.raises(DatasetError, match="not a COCO"):
        load_dataset(bad, tmp_path)


# ----------------------------------------------------------------------------- MPII / LSP


def _mpii_points(points):
    dtype = [("x", "O"), ("y", "O"), ("id", "O"), ("is_visible", "O")]
    return np.array([tuple(p) for p in points], dtype=dtype)


def _mpii_fixture(path: Path) -> None:
    """The release's layout: RELEASE.annolist(i).{image.name, annorect(j)}, img_train."""
    from scipy.io import savemat

    rect_dtype = [("x1", "O"), ("y1", "O"), ("x2", "O"), ("y2", "O"), ("annopoints", "O"),
                  ("scale", "O"), ("objpos", "O")]  # fmt: skip
    person_a = (
        101.0, 51.0, 131.0, 91.0,
        {"point": _mpii_points([
            (11.0, 21.0, 0, 1),  # right ankle
            (201.0, 301.0, 9, "1"),  # head top
            (151.0, 161.0, 8, np.zeros((0, 0))),  # upper neck, no visibility flag
            (60.0, 70.0, 14, "0"),  # left elbow, occluded
            (5.0, 5.0, 6, 1),  # pelvis: not an MPII14 part
        ])},
        1.5, {"x": 100.0, "y": 200.0},
    )  # fmt: skip
    person_b = (1.0, 1.0, 4.0, 5.0, {"point": _mpii_points([(9.0, 9.0, 15, 1)])}, 0.5,
                {"x": 1.0, "y": 1.0})  # fmt: skip
    no_joints = (1.0, 1.0, 2.0, 2.0, np.zeros((0, 0)), 1.0, {"x": 1.0, "y": 1.0})
    rects_1 = np.array([person_a, person_b], dtype=rect_dtype)
    rects_2 = np.array([no_joints], dtype=rect_dtype)
    anno_dtype = [("image", "O"), ("annorect", "O"), ("frame_sec", "O"), ("vididx", "O")]
    annolist = np.array(
        [
            ({"name": "a.jpg"}, rects_1, 0.0, 1.0),
            ({"name": "b.jpg"}, rects_2, 0.0, 1.0),  # no person has joints
            ({"name": "c.jpg"}, rects_1, 0.0, 1.0),  # a test image
        ],
        dtype=anno_dtype,
    )
    release = {"annolist": annolist, "img_train": np.array([1, 1, 0]), "version": "12"}
    savemat(path, {"RELEASE": release})


def test_mpii_reader(tmp_path):
    mat = tmp_path / "mpii_human_pose_v1_u12_1.mat"
    _mpii_fixture(mat)
    ds = load_dataset(mat)
    assert ds.skeleton.name == "mpii14"
    assert [r.image_id for r in ds.records] == [0]
    rec = ds[0]
    assert rec.image_path == tmp_path / "images" / "a.jpg"
    assert rec.keypoints.shape == (2, 14, 3)
    kp = rec.keypoints[0]
    np.testing.assert_allclose(kp[0], [10, 20, 2])  # 1-based → 0-based
    np.testing.assert_allclose(kp[13], [200, 300, 2])
    np.testing.assert_allclose(kp[12], [150, 160, 2])
    np.testing.assert_allclose(kp[10], [59, 69, 1])
    assert (kp[[1, 2, 3, 4, 5, 6, 7, 8, 9, 11], 2] == 0).all()
    np.testing.assert_allclose(rec.keypoints[1, 11], [8, 8, 2])
    np.testing.assert_allclose(rec.head_size, [0.6 * 50.0, 0.6 * 5.0])
    np.testing.assert_allclose(rec.person_heights(), [300.0, 100.0])


def test_mpii_reader_rejects_other_mat(tmp_path):
    from scipy.io import savemat

    mat = tmp_path / "other.mat"
    savemat(mat, {"something": np.zeros(3)})
    with pytest.raises(DatasetError, match="no RELEASE"):
        load_dataset(mat)


def test_lsp_reader(tmp_path):
    from scipy.io import savemat

    xy = np.arange(2 * 14 * 2, dtype=float).reshape(2, 14, 2) + 1  # [N, P, 2], 1-based
    occluded = np.zeros((2, 14))
    occluded[1, 3] = 1
    joints = np.concatenate([xy, occluded[..., None]], axis=2).transpose(2, 1, 0)  # 3×14×N
    savemat(tmp_path / "joints.mat", {"joints": joints})
    ds = load_dataset(tmp_path / "joints.mat")
    assert len(ds) == 2 and ds.skeleton.name == "mpii14"
    assert ds[1].image_path == tmp_path / "images" / "im0002.jpg"
    np.testing.assert_allclose(ds[1].keypoints[0, :, :2], xy[1] - 1)
    assert ds[1].keypoints[0, 3, 2] == 1 and ds[1].keypoints[0, 4, 2] == 2
    # LSP extended: 14×3×N and the flag means visible; flag 0 (outside the image) = unlabelled.
    ext = np.concatenate([xy, 1 - occluded[..., None]], axis=2).transpose(1, 2, 0)
    savemat(tmp_path / "ext.mat", {"joints": ext})
    ds = load_dataset(tmp_path / "ext.mat")
    assert ds[1].image_path.name == "im00002.jpg"
    np.testing.assert_array_equal(ds[1].keypoints[0, :, 2], np.where(occluded[1], 0, 2))


def test_unknown_format(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("x")
    with pytest.raises(DatasetError, match="unknown dataset format"):
        load_dataset(path)
    with pytest.raises(FileNotFoundError):
        load_dataset(tmp_path / "missing.json")


# ----------------------------------------------------------------------------- splits


def test_split_by_names_and_fraction():
    ds = load_dataset(DLC_SINGLE)
    train, test = ds.split(test_names=["img001", "img003.png"])
    assert [r.image_path.name for r in test.records] == ["img001.png", "img003.png"]
    assert [r.image_path.name for r in train.records] == ["img000.png", "img002.png"]
    assert train.cache is ds.cache
    with pytest.raises(DatasetError, match="img009"):
        ds.split(test_names=["img009"])
    a, b = ds.split(0.75, seed=1)
    assert len(a) == 3 and len(b) == 1
    assert {r.image_id for r in a.records} | {r.image_id for r in b.records} == {0, 1, 2, 3}
    assert ds.split(0.75, seed=1)[1][0].image_id == b[0].image_id  # seeded


# ----------------------------------------------------------------------------- training source


def _dot_dataset(tmp_path: Path) -> PoseDataset:
    """A 120×160 image with a bright 3×3 dot at each of two people's 4 joints."""
    from deepercut.data.dlc import dlc_skeleton

    kp = np.array(
        [[[30, 40, 2], [40, 35, 2], [40, 45, 2], [80, 40, 2]],
         [[100, 90, 2], [110, 85, 2], [110, 95, 1], [140, 100, 2]]], np.float32
    )  # fmt: skip
    image = np.zeros((120, 160, 3), np.uint8)
    for x, y, _ in kp.reshape(-1, 3).astype(int):
        image[y - 1 : y + 2, x - 1 : x + 2] = 255
    path = tmp_path / "dots.png"
    Image.fromarray(image).save(path)
    skeleton = dlc_skeleton({"bodyparts": ["snout", "leftear", "rightear", "tailbase"]})
    return PoseDataset(skeleton, [PoseRecord(path, 0, kp)], "dots")


@pytest.mark.parametrize("target_height", [None, 100.0])
def test_dataset_source_crops_follow_keypoints(tmp_path, target_height):
    from deepercut.train.sources import DatasetSource

    ds = _dot_dataset(tmp_path)
    source = DatasetSource(ds, image_hw=(64, 64), target_height=target_height)
    rng = np.random.default_rng(0)
    seen = 0
    for _ in range(30):
        s = source(rng)
        assert s.image.shape == (64, 64, 3) and s.keypoints.shape == (2, 4, 2)
        np.testing.assert_array_equal(s.annotated, ds[0].labelled)
        assert not (s.visible & ~ds[0].visible).any()  # the occluded joint never is
        scale = s.heights / ds[0].person_heights()
        np.testing.assert_allclose(scale, scale[0], rtol=1e-5)
        if target_height is None:
            np.testing.assert_allclose(scale, 1.0, rtol=1e-5)
        for x, y in s.keypoints[s.visible]:
            # The dot is where the keypoint went (the brightest pixel near it).
            xi, yi = round(float(x)), round(float(y))
            assert s.image[max(yi - 1, 0) : yi + 2, max(xi - 1, 0) : xi + 2].max() > 100
            seen += 1
    assert seen >= 15


def test_dataset_source_scales_people_to_target_height(tmp_path):
    from deepercut.train.sources import DatasetSource

    ds = _dot_dataset(tmp_path)
    source = DatasetSource(ds, image_hw=(96, 96), target_height=150.0)
    rng = np.random.default_rng(1)
    for _ in range(10):
        s = source(rng)
        assert np.isclose(s.heights, 150.0, rtol=1e-4).any()  # the person the crop is about


# ----------------------------------------------------------------------------- custom skeleton


def test_custom_skeleton_through_pairwise_and_solvers():
    """A 4-part DLC skeleton: pairwise fit, problem, every solver, assembled animals."""
    from deepercut.data.synthetic_candidates import candidates_from_truth
    from deepercut.model.pairwise import PairwiseModel
    from deepercut.solvers import solve
    from deepercut.solvers.assemble import assemble_poses

    skeleton = load_dataset(DLC_MULTI).skeleton
    rng = np.random.default_rng(0)

    def image() -> tuple:
        centres = rng.uniform(80, 400, (3, 2))
        template = np.array([[0, -40], [-12, -28], [12, -28], [0, 40]], float)
        kp = centres[:, None] + template[None]
        heights = np.full(3, 90.0)
        cands, owner = candidates_from_truth(
            rng, kp, np.ones((3, 4), bool), heights, (480, 480), skeleton=skeleton,
            false_positives=(0, 2), confusion_rate=0.0,
        )  # fmt: skip
        return kp, cands, owner

    model = PairwiseModel.fit([image()[1:] for _ in range(40)], skeleton.num_parts)
    kp, cands, _ = image()
    problem, kept = model.build_problem(cands)
    assert problem.num_parts == 4
    for method in ("exact", "3stage", "2stage", "heuristic", "deepcut"):
        sol = solve(problem, method, skeleton=skeleton, time_limit=5.0)
        assert abs(problem.objective(sol.label, sol.cluster) - sol.objective) < 1e-6
        people = assemble_poses(cands, kept, sol, skeleton.num_parts)
        assert people.shape[1:] == (4, 3)
        # Three well-separated animals: each found once, its keypoints near the truth.
        assert len(people) == 3, method
        for person in people:
            err = np.nanmean(np.linalg.norm(kp[:, :, :] - person[None, :, :2], axis=-1), 1)
            assert err.min() < 10, (method, err)


def test_train_cli_on_dlc_project(tmp_path):
    """`deepercut train --data config.yaml`: the checkpoint has the project's skeleton and
    frame size, and predicts its 4 parts."""
    from deepercut.cli.train import register
    from deepercut.detection import NetworkDetector
    from deepercut.model.io import load_model

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    out = tmp_path / "m.pt"
    args = parser.parse_args(
        ["train", "--data", str(DLC_SINGLE / "config.yaml"), "--test-images", "img002",
         "--steps", "2", "--batch-size", "2", "--crop-hw", "64x64", "--width", "8",
         "--head-channels", "16", "--threads", "1", "--pairwise-images", "0", "-o", str(out)]
    )  # fmt: skip
    assert args.func(args) == 0
    model = load_model(out)
    assert model.skeleton.parts == ("snout", "leftear", "rightear", "tailbase")
    assert model.input_hw == (48, 64)
    assert model.meta["split"]["test"] == ["img002.png"]
    assert model.meta["split"]["train"] == 3
    detector = NetworkDetector(model, device="cpu", backend="eager")
    cands = detector.detect([np.zeros((48, 64, 3), np.uint8)])[0]
    assert cands.num_parts == 4
