"""``deepercut eval`` end to end with the bundled model: synthetic PCK and pose metrics per
solver, COCO OKS AP on synthetic people written as a COCO file, MPII/LSP-style datasets, and
the errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from deepercut.cli import main
from deepercut.data import dataset as dataset_mod
from deepercut.data.synthetic import generate_image, write_png
from deepercut.evaluate import HELD_OUT_SEED
from deepercut.evaluate.drivers.config import ALL_SOLVERS, data_kind, parse_solvers
from deepercut.model.io import load_model
from deepercut.skeleton import MPII14


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_solver_and_data_arguments(tmp_path: Path) -> None:
    assert parse_solvers(None, ("3stage",)) == ("3stage",)
    assert parse_solvers("all", ()) == ALL_SOLVERS
    assert parse_solvers("exact, heuristic,exact", ()) == ("exact", "heuristic")
    with pytest.raises(ValueError, match="unknown --solver"):
        parse_solvers("fast", ())
    assert data_kind("synthetic") == "synthetic"
    with pytest.raises(FileNotFoundError, match="no such file"):
        data_kind(str(tmp_path / "missing.json"))
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "a.txt").write_text("")
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "config.yaml").write_text("Task: x\n")
    assert data_kind(str(tmp_path / "a.json")) == "coco"
    assert data_kind(str(tmp_path / "proj")) == "dlc"
    with pytest.raises(ValueError, match="expected"):
        data_kind(str(tmp_path / "a.txt"))


def test_synthetic_pck_report_keeps_its_layout(tmp_path: Path, capsys) -> None:
    out = tmp_path / "pck.json"
    assert main(["eval", "--images", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report) == {
        "input_hw", "backend", "precision", "data", "model", "images", "seed", "min_height",
        "threshold", "per_part", "joints", "mean_pck", "seconds",
    }  # fmt: skip
    assert (report["backend"], report["precision"]) == ("onnxruntime", "fp32")  # as `run` on CPU
    assert report["images"] == 2 and report["seed"] == HELD_OUT_SEED
    assert report["input_hw"] == list(load_model().input_hw)
    assert list(report["per_part"]) == list(MPII14.parts)
    assert 0 < report["mean_pck"] <= 1
    assert "mean" in capsys.readouterr().out


def test_input_size_overrides_the_models(tmp_path: Path, capsys) -> None:
    out = tmp_path / "pck.json"
    assert main(["eval", "--images", "1", "--input-size", "240x320", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["input_hw"] == [240, 320]
    assert "at 240x320" in capsys.readouterr().out
    assert main(["eval", "--images", "1", "--input-size", "250x320"]) == 2
    assert "multiple of 16" in capsys.readouterr().err


def test_synthetic_pose_metrics_per_solver(tmp_path: Path, capsys) -> None:
    out = tmp_path / "ap.json"
    argv = ["eval", "--images", "3", "--solver", "3stage,heuristic", "--json", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "mAP" in printed and "heuristic" in printed
    solvers = json.loads(out.read_text())["pose_metrics"]["solvers"]
    assert list(solvers) == ["3stage", "heuristic"]
    for entry in solvers.values():
        for key in ("mAP", "PCKh@0.5", "AUC", "mPCP", "AOP"):
            assert 0 <= entry[key] <= 1
        # The bundled model finds most big synthetic people.
        assert entry["mAP"] > 0.3 and entry["PCKh@0.5"] > 0.3
        assert entry["median_ms"] > 0 and entry["gt_joints"] > 0
        assert set(entry["ap_per_part"]) == set(MPII14.parts)


def test_plot_writes_pngs(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib (the eval extra)")
    plots = tmp_path / "plots"
    assert main(["eval", "--images", "1", "--solver", "heuristic", "--plot", str(plots)]) == 0
    assert (plots / "ap_heuristic.png").stat().st_size > 0
    assert (plots / "pckh.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_without_matplotlib_is_a_clear_error(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    assert main(["eval", "--images", "1", "--plot", "x"]) == 2
    assert "pip install matplotlib" in capsys.readouterr().err


# ----------------------------------------------------------------------------- COCO


def _coco_set(root: Path, count: int = 2) -> Path:
    """Synthetic images with their people as a COCO keypoint file (body joints labelled; the
    face keypoints, which synthetic people lack, unlabelled)."""
    from deepercut.data.coco import COCO_PARTS

    (root / "images").mkdir(parents=True)
    images, anns = [], []
    for i in range(count):
        sample = generate_image(HELD_OUT_SEED + 500 + i, (240, 320), 2, (150.0, 220.0))
        write_png(root / "images" / f"{i}.png", sample.image)
        images.append({"id": 10 + i, "file_name": f"{i}.png", "width": 320, "height": 240})
        for kp, vis in zip(sample.keypoints, sample.visible, strict=True):
            out = np.zeros((17, 3))
            for j, name in enumerate(COCO_PARTS):
                if name in MPII14.parts and vis[MPII14.index(name)]:
                    out[j] = (*kp[MPII14.index(name)], 2)
            xy = kp[vis]
            x0, y0 = xy.min(0) - 5
            w, h = np.ptp(xy, axis=0) + 10
            ann = {"id": len(anns) + 1, "image_id": 10 + i, "category_id": 1, "iscrowd": 0}
            ann["keypoints"] = out.ravel().tolist()
            ann["num_keypoints"] = int((out[:, 2] > 0).sum())
            ann["area"], ann["bbox"] = (
                float(w * h * 0.5),
                [float(x0), float(y0), float(w), float(h)],
            )
            anns.append(ann)
    category = {"id": 1, "name": "person", "keypoints": list(COCO_PARTS)}
    path = root / "person_keypoints.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [category]}))
    return path


def test_coco_eval_on_synthetic_people(tmp_path: Path, capsys) -> None:
    pytest.importorskip("pycocotools", reason="COCO evaluation needs pycocotools (the eval extra)")
    from deepercut.data.coco import COCO_PARTS

    ann = _coco_set(tmp_path)
    out, results = tmp_path / "coco.json", tmp_path / "results.json"
    argv = ["eval", "--data", str(ann), "--images", str(tmp_path / "images")]
    argv += ["--solver", "heuristic", "--json", str(out), "--coco-results", str(results)]
    assert main(argv) == 0
    assert "AP" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["images"] == 2
    oks = report["solvers"]["heuristic"]["oks"]
    # Right people in the right place: clearly above chance (wrong coordinates score 0).
    assert 0.2 < oks["AP50"] <= 1 and 0 <= oks["AP"] <= oks["AP50"]
    assert report["keypoints_predicted"] == [n for n in COCO_PARTS if n in MPII14.parts]
    assert len(report["keypoints_predicted"]) == 12
    detections = json.loads(results.read_text())
    assert detections and {d["image_id"] for d in detections} <= {10, 11}
    assert all(len(d["keypoints"]) == 51 for d in detections)


def test_coco_missing_images_is_an_error(tmp_path: Path, capsys) -> None:
    pytest.importorskip("pycocotools", reason="COCO evaluation needs pycocotools (the eval extra)")
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": [{"id": 1, "file_name": "x.png"}], "annotations": []}))
    (tmp_path / "imgs").mkdir()
    assert main(["eval", "--data", str(ann), "--images", str(tmp_path / "imgs")]) == 2
    assert "are not in" in capsys.readouterr().err


# ----------------------------------------------------------------------------- MPII / LSP


def _pose_dataset(root: Path, with_heads: bool):
    from deepercut.evaluate.synthetic import synthetic_truth

    records = []
    for i in range(2):
        sample = generate_image(HELD_OUT_SEED + 700 + i, (240, 320), 1, (180.0, 220.0))
        path = root / f"{i}.png"
        write_png(path, sample.image)
        truth = synthetic_truth(sample, (240, 320))
        records.append(
            dataset_mod.PoseRecord(
                path, i, truth.keypoints, truth.head_size if with_heads else None
            )
        )
    return dataset_mod.PoseDataset(MPII14, records, "synthetic-as-dataset")


@pytest.mark.parametrize("with_heads", [True, False])
def test_dataset_evaluation(tmp_path: Path, with_heads: bool) -> None:
    from deepercut.detection import NetworkDetector
    from deepercut.evaluate.report import evaluate_dataset
    from deepercut.model.io import load_model

    model = load_model(None)
    dataset = _pose_dataset(tmp_path, with_heads)
    detector = NetworkDetector(model, device="cpu", backend="eager")
    result = evaluate_dataset(model, detector, dataset, ("heuristic",))["heuristic"]
    assert len(result.solved.keypoints) == 2
    if with_heads:  # MPII: AP, PCKh, PCP
        assert result.metrics is not None and result.pck is None
        assert 0.3 < result.metrics.pckh.pckh.mean <= 1
        assert 0.3 < result.metrics.ap.mean <= 1
    else:  # LSP: PCK of the torso, PCP of all limbs
        assert result.metrics is None and result.pck is not None
        assert 0.3 < result.pck.mean <= 1
        assert "lower_leg" in result.pcp.limb_types


# ----------------------------------------------------------------------------- DeepLabCut


def test_dlc_project_pixel_error(tmp_path: Path, capsys) -> None:
    from deepercut.data.dlc import dlc_skeleton
    from deepercut.model.io import Model, save_model
    from deepercut.model.net import DeeperCut, DetectorConfig

    parts = ["snout", "leftear", "rightear", "tailbase"]
    project = tmp_path / "proj"
    (project / "labeled-data" / "v").mkdir(parents=True)
    config = "Task: mice\nscorer: me\nbodyparts:\n" + "".join(f"- {p}\n" for p in parts)
    (project / "config.yaml").write_text(config + "TrainingFraction:\n- 0.5\npcutoff: 0.6\n")
    rows = ["scorer" + ",me" * 8, "bodyparts," + ",".join(p for p in parts for _ in "xy")]
    rows.append("coords" + ",x,y" * 4)
    rng = np.random.default_rng(0)
    for i in range(4):
        write_png(
            project / "labeled-data" / "v" / f"img{i}.png",
            rng.integers(0, 255, (64, 96, 3), np.uint8),
        )
        xy = rng.uniform(5, 60, 8).round(1).tolist()
        xy[6:] = ["", ""] if i == 3 else xy[6:]  # tailbase unlabelled in one image
        rows.append(f"labeled-data/v/img{i}.png," + ",".join(map(str, xy)))
    (project / "labeled-data" / "v" / "CollectedData_me.csv").write_text("\n".join(rows) + "\n")
    torch.manual_seed(0)
    net = DeeperCut(DetectorConfig(arch="resnet18", num_parts=4, width=8, head_channels=16))
    skeleton = dlc_skeleton({"bodyparts": parts})
    save_model(tmp_path / "m.pt", Model(net.eval(), skeleton, (64, 96)))
    out = tmp_path / "dlc.json"
    argv = ["eval", "--data", str(project / "config.yaml"), "--model", str(tmp_path / "m.pt")]
    assert main([*argv, "--test-images", "img1,img3", "--json", str(out)]) == 0
    assert "pixel error" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert (
        report["test_images"] == ["img1.png", "img3.png"] and report["readout"] == "best-per-part"
    )
    test = report["test"]
    assert test["images"] == 2 and test["pcutoff"] == 0.6  # the config's cut-off
    # Every labelled keypoint gets a distance (7 in the test images); none is missed.
    assert test["no_cutoff"]["all"]["n"] == 7 and test["missed"] == 0
    assert test["with_cutoff"]["all"]["n"] <= 7
    assert report["train"]["no_cutoff"]["all"]["n"] == 8
    # The bundled (MPII14) model shares no part with the project.
    assert main(["eval", "--data", str(project)]) == 2
    assert "share none" in capsys.readouterr().err


def test_lsp_mat_through_the_cli(tmp_path: Path, capsys) -> None:
    (tmp_path / "images").mkdir()
    joints = np.zeros((3, 14, 2))
    for i in range(2):
        sample = generate_image(HELD_OUT_SEED + 800 + i, (240, 320), 1, (180.0, 220.0))
        # PNG bytes under LSP's .jpg name: the reader goes by content.
        write_png(tmp_path / "images" / f"im{i + 1:04d}.jpg", sample.image)
        joints[:2, :, i] = sample.keypoints[0].T + 1  # MATLAB's 1-based pixels
        joints[2, :, i] = ~sample.visible[0]  # LSP's flag: 1 = occluded
    scipy.io.savemat(tmp_path / "joints.mat", {"joints": joints})
    out = tmp_path / "lsp.json"
    argv = ["eval", "--data", str(tmp_path / "joints.mat"), "--solver", "heuristic"]
    assert main([*argv, "--json", str(out)]) == 0
    assert "mPCP" in capsys.readouterr().out
    report = json.loads(out.read_text())
    entry = report["solvers"]["heuristic"]
    assert 0.3 < entry["PCK@0.2_torso"] <= 1 and 0 < entry["mPCP"] <= 1
    assert set(entry["pck_per_part"]) == set(MPII14.parts)
    single = report["single_person"]  # LSP's protocol: each part's best cell
    assert 0.3 < single["PCK@0.2_torso"] <= 1 and 0 < single["AUC"] < single["PCK@0.2_torso"]
    assert report["scale"] == 1.0 and single["people"] == 2
