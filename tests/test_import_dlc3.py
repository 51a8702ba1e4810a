"""DeepLabCut 3 (PyTorch) snapshots → our model, checked against DeepLabCut's own forward pass.

tests/fixtures/dlc3/<case>/ holds a real ``pytorch_config.yaml``, the state-dict layout and seed
of its weights (``weights.json``), and what DeepLabCut 3's ``PoseModel`` (timm backbone, its
HeatmapHead and HeatmapPredictor) computed from them on one image (``expected.npz``), all
written by tests/fixtures/dlc3/make_fixture.py. The tests rebuild the snapshot from the seed
(no timm needed), convert it and compare.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from engine_support import make_video

from deepercut.cli.import_model import register
from deepercut.detection import NetworkDetector
from deepercut.engine.pipeline import Engine
from deepercut.model.candidates import CandidateParams, best_per_part
from deepercut.model.convert import (
    UnsupportedArchitecture,
    WeightsMismatch,
    _dlc3_input,
    _refuse_multi_animal,
    convert,
    detect_source,
    source_key,
)
from deepercut.model.external.dlc3 import IMAGENET_MEAN, IMAGENET_STD, DLC3PoseConfig, DLC3PoseNet
from deepercut.model.io import CheckpointError, load_model, save_model
from deepercut.model.net import STRIDE

yaml = pytest.importorskip("yaml", reason="the converters read YAML configs (pip install pyyaml)")

FIXTURES = Path(__file__).parent / "fixtures" / "dlc3"
#: case → (timm model, heatmap cells for the 64×80 image): un-padded 3×3/2 transposed
#: convolutions give 2n + 1 cells from n (stride 16: 4×5 → 9×11; stride 32: 2×3 → 5×7 → 11×15).
CASES = {
    "resnet50_gn": ("resnet50_gn", (9, 11)),
    "resnet101": ("resnet101", (9, 11)),
    "resnet50_gn_2deconv": ("resnet50_gn", (11, 15)),
}
TOLERANCE = 1e-4
TRAIN = "dlc-models-pytorch/iteration-0/mouseNov25-trainset95shuffle1/train"


def _load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("dlc3_make_fixture", FIXTURES / "make_fixture.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPERCUT_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, torch.Tensor]]:
    """Each case's DeepLabCut state dict, rebuilt from its recorded layout and seed."""
    generator = _load_generator()
    out = {}
    for case in CASES:
        recipe = json.loads((FIXTURES / case / "weights.json").read_text())
        out[case] = generator.random_state_dict(recipe["state"], recipe["seed"])
    return out


def _expected(case: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / case / "expected.npz") as data:
        return dict(data)


def _train_folder(
    root: Path, case: str, state: dict[str, torch.Tensor], **config_changes: Any
) -> Path:
    """A DeepLabCut 3 train folder: the fixture's config (edited) and a snapshot."""
    root.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((FIXTURES / case / "pytorch_config.yaml").read_text())
    for dotted, value in config_changes.items():
        *parents, leaf = dotted.split("__")
        node = cfg
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    (root / "pytorch_config.yaml").write_text(yaml.safe_dump(cfg))
    torch.save({"model": state, "metadata": {"epoch": 200}}, root / "snapshot-200.pt")
    return root


def _project(root: Path, state: dict[str, torch.Tensor]) -> Path:
    """A DeepLabCut 3 project (config.yaml + dlc-models-pytorch) around the resnet50_gn case."""
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "Task": "mouse",
                "bodyparts": ["snout", "leftear", "rightear", "tailbase"],
                "skeleton": [["snout", "leftear"], ["snout", "rightear"]],
                "video_sets": {"/data/m.avi": {"crop": "0, 80, 0, 60"}},
                "engine": "pytorch",
            }
        )
    )
    _train_folder(root / TRAIN, "resnet50_gn", state)
    return root


def _image_batch(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255


# ---------------------------------------------------------------------- equality


@pytest.mark.parametrize("case", CASES)
def test_converted_model_equals_deeplabcut_forward_pass(
    tmp_path: Path, snapshots, case: str
) -> None:
    train = _train_folder(tmp_path / "train", case, snapshots[case])
    assert detect_source(train) == detect_source(train / "snapshot-200.pt") == "dlc3"
    model = convert(train / "snapshot-200.pt")
    expected = _expected(case)
    timm_name, cells = CASES[case]
    assert model.net.config.model_name == timm_name and model.net.stride == STRIDE
    with torch.no_grad():
        out = model.net(_image_batch(expected["image"]))
    assert out.scmap.shape == expected["heatmap"].shape == (1, 4, *cells)
    np.testing.assert_allclose(out.scmap.numpy(), expected["heatmap"], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(out.locref.numpy(), expected["locref"], rtol=0, atol=TOLERANCE)
    assert out.pairwise.shape[1] == out.intermediate.shape[1] == 0
    # Decoded like DeepLabCut's HeatmapPredictor: its argmax pose of each part.
    maps = model.net.decode(out)
    best = best_per_part(maps.probs, maps.locref, STRIDE)[0].numpy()
    np.testing.assert_allclose(best, expected["poses"][0, 0], rtol=0, atol=TOLERANCE)
    assert model.skeleton.parts == ("snout", "leftear", "rightear", "tailbase")
    assert model.meta["imported_from"]["family"] == "deeplabcut3"


def test_configured_locref_std_is_used(tmp_path: Path, snapshots) -> None:
    """A non-default predictor ``locref_std`` scales the decoded offsets (the fixtures hold the
    default, so ignoring the setting would go unnoticed there)."""
    train = _train_folder(
        tmp_path / "train",
        "resnet50_gn",
        snapshots["resnet50_gn"],
        model__heads__bodypart__predictor__locref_std=3.5,
    )
    model = convert(train)
    expected = _expected("resnet50_gn")
    with torch.no_grad():
        maps = model.net.decode(model.net(_image_batch(expected["image"])))
    _, _, h, w = expected["locref"].shape
    locref = expected["locref"].reshape(1, 4, 2, h, w) * 3.5
    np.testing.assert_allclose(maps.locref.numpy(), locref, rtol=0, atol=1e-3)
    assert np.abs(locref).max() > 0.5  # offsets large enough for a wrong scale to show


def test_pipeline_candidates_hold_deeplabcut_poses(tmp_path: Path, snapshots) -> None:
    train = _train_folder(tmp_path / "train", "resnet50_gn", snapshots["resnet50_gn"])
    expected = _expected("resnet50_gn")
    model = convert(train, input_hw=(64, 80))
    detector = NetworkDetector(
        model, params=CandidateParams(min_score=0.05), device="cpu", backend="eager"
    )
    [candidates] = detector.detect([expected["image"]])
    for part, (x, y, score) in enumerate(expected["poses"][0, 0]):
        mine = candidates.part == part
        top = int(np.argmax(np.where(mine, candidates.score, -1)))
        assert candidates.part[top] == part
        np.testing.assert_allclose(candidates.xy[top], [x, y], atol=1e-3)
        assert abs(candidates.score[top] - score) < 1e-5


def test_checkpoint_roundtrip_keeps_outputs(tmp_path: Path, snapshots) -> None:
    train = _train_folder(tmp_path / "train", "resnet101", snapshots["resnet101"])
    model = convert(train)
    save_model(tmp_path / "model.pt", model)
    loaded = load_model(tmp_path / "model.pt")
    assert isinstance(loaded.net, DLC3PoseNet)
    assert loaded.net.config == model.net.config and loaded.net.config.apply_sigmoid
    image = _image_batch(_expected("resnet101")["image"])
    with torch.no_grad():
        a, b = model.net(image), loaded.net(image)
    assert torch.equal(a.scmap, b.scmap) and torch.equal(a.locref, b.locref)


# ---------------------------------------------------------------------- import, run, cache


def test_project_converts_once_and_caches(tmp_path: Path, snapshots, monkeypatch) -> None:
    project = _project(tmp_path / "project", snapshots["resnet50_gn"])
    assert detect_source(project) == "dlc3"
    first = load_model(project)
    cached = list((tmp_path / "cache" / "imported").glob("*.pt"))
    assert len(cached) == 1 and cached[0].stem == source_key(project)
    assert first.skeleton.edges == ((0, 1), (0, 2)) and first.skeleton.name == "mouse"
    assert first.input_hw == (64, 80)  # the project's video, rounded up to multiples of 16

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr("deepercut.model.convert.convert", no_conversion)
    again = load_model(project)
    expected = _expected("resnet50_gn")
    with torch.no_grad():
        out = again.net(_image_batch(expected["image"]))
    np.testing.assert_allclose(out.scmap.numpy(), expected["heatmap"], rtol=0, atol=TOLERANCE)
    # The project's config.yaml is part of the key: an edit converts afresh.
    cfg = yaml.safe_load((project / "config.yaml").read_text())
    (project / "config.yaml").write_text(yaml.safe_dump({**cfg, "skeleton": []}))
    with pytest.raises(AssertionError, match="converted again"):
        load_model(project)


def test_cli_import_and_engine_run(tmp_path: Path, snapshots, capsys) -> None:
    project = _project(tmp_path / "project", snapshots["resnet50_gn"])
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    out = tmp_path / "model.pt"
    args = parser.parse_args(["import", str(project), "-o", str(out), "--input-size", "48x64"])
    assert args.func(args) == 0
    assert "4 parts (snout, leftear, rightear, tailbase)" in capsys.readouterr().out
    assert load_model(out).input_hw == (48, 64)
    video = tmp_path / "walk.mp4"
    make_video(video, frames=2)
    with Engine(str(project), workers=0, input_hw=(48, 64), solver="3stage") as engine:
        poses = list(engine.run(video))
    assert [p.frame for p in poses] == [0, 1]
    assert all(p.keypoints.shape[1:] == (4, 3) for p in poses)


# ---------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (
            {"model__backbone__type": "HRNet", "model__backbone__model_name": "hrnet_w32"},
            r"backbone HRNet hrnet_w32.*backbone 'HRNet'",
        ),
        ({"model__backbone__model_name": "resnet50d"}, "timm model 'resnet50d'"),
        ({"method": "td"}, "method 'td'"),
        ({"model__heads__bodypart__type": "DEKRHead"}, "a DEKRHead bodypart head"),
        (
            {"model__heads__bodypart__predictor__type": "PartAffinityFieldPredictor"},
            "a PartAffinityFieldPredictor",
        ),
        ({"model__heads__identity": {"type": "HeatmapHead"}}, r"heads \['bodypart', 'identity'\]"),
        ({"model__neck": {"type": "Transformer"}}, "a Transformer neck"),
        ({"metadata__unique_bodyparts": ["corner"]}, "unique body parts"),
        ({"model__backbone__output_stride": 32}, "stride 16"),
        (
            {
                "model__heads__bodypart__heatmap_config__final_conv": {
                    "out_channels": 4,
                    "kernel_size": 1,
                }
            },
            "final_conv",
        ),
        ({"data__colormode": "GRAY"}, "colormode 'GRAY'"),
    ],
)
def test_unsupported_architectures_are_named(tmp_path: Path, changes: dict, match: str) -> None:
    train = _train_folder(tmp_path / "train", "resnet50_gn", {}, **changes)
    with pytest.raises(UnsupportedArchitecture, match=match):
        convert(train)


def test_weights_that_do_not_fit_are_listed(tmp_path: Path, snapshots) -> None:
    state = dict(snapshots["resnet50_gn"])
    del state["backbone.model.layer2.0.conv1.weight"]
    state["heads.bodypart.extra.weight"] = torch.zeros(1)
    state["heads.bodypart.locref_head.deconv_layers.0.bias"] = torch.zeros(6)
    train = _train_folder(tmp_path / "train", "resnet50_gn", state)
    with pytest.raises(WeightsMismatch) as info:
        convert(train)
    message = str(info.value)
    assert "missing ['backbone.model.layer2.0.conv1.weight'] (1)" in message
    assert "unexpected ['heads.bodypart.extra.weight'] (1)" in message
    assert "locref_head.deconv_layers.0.bias (6,) (expected (8,))" in message
    # A resnet50_gn snapshot under a resnet101 config: no BatchNorm statistics, 17 blocks short.
    train = _train_folder(tmp_path / "other", "resnet101", snapshots["resnet50_gn"])
    with pytest.raises(WeightsMismatch, match=r"missing \['backbone\.model\.bn1\.running_mean'"):
        convert(train)


def test_network_config_validates() -> None:
    config = DLC3PoseConfig(num_parts=2, heatmap_layers=((2, 3, 2),), locref_layers=((4, 3, 2),))
    assert DLC3PoseConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="3 channels for 2 parts"):
        DLC3PoseConfig(num_parts=2, heatmap_layers=((3, 3, 2),), locref_layers=())
    with pytest.raises(ValueError, match="stride 4"):
        DLC3PoseConfig(
            num_parts=1, heatmap_layers=((8, 3, 2), (1, 3, 2)), locref=False, locref_layers=()
        )
    with pytest.raises(ValueError, match="different strides"):
        DLC3PoseConfig(num_parts=1, heatmap_layers=((1, 3, 2),), locref_layers=((2, 3, 1),))
    with pytest.raises(ValueError, match="not one of"):
        DLC3PoseConfig(model_name="resnet18", num_parts=1, heatmap_layers=((1, 3, 2),))


def test_missing_parts_and_unreadable_snapshots(tmp_path: Path, snapshots) -> None:
    train = _train_folder(tmp_path / "train", "resnet50_gn", {}, metadata__bodyparts=[])
    with pytest.raises(CheckpointError, match=r"metadata\.bodyparts"):
        convert(train)
    shutil.rmtree(train)
    train = _train_folder(tmp_path / "train", "resnet50_gn", {})
    torch.save({"model": {"x": argparse.Namespace(a=1)}}, train / "snapshot-200.pt")
    with pytest.raises(CheckpointError, match="not a readable PyTorch snapshot"):
        convert(train)


@pytest.mark.parametrize(
    ("inference", "mean", "std"),
    [
        ({}, IMAGENET_MEAN, IMAGENET_STD),
        ({"normalize_images": False, "scale_to_unit_range": True}, (0.0,) * 3, (1.0,) * 3),
        ({"normalize_images": False}, (0.0,) * 3, (1 / 255,) * 3),  # the network reads 0..255
    ],
)
def test_the_pixel_normalisation_follows_the_config(
    inference: dict[str, Any], mean: tuple[float, ...], std: tuple[float, ...]
) -> None:
    assert _dlc3_input({"inference": inference, "colormode": "bgr"}, "cfg") == (mean, std, "BGR")
    with pytest.raises(UnsupportedArchitecture, match="cfg: colormode 'GRAY'"):
        _dlc3_input({"inference": inference, "colormode": "gray"}, "cfg")


def test_each_multi_animal_feature_is_named_when_refused() -> None:
    cfg = {"dataset_type": "multi-animal-imgaug", "partaffinityfield_predict": True,
           "multi_stage": True, "num_idchannel": 2}  # fmt: skip
    reasons = ("a multi-animal dataset_type", "part affinity fields", "the multi-stage decoder",
               "identity channels")  # fmt: skip
    with pytest.raises(UnsupportedArchitecture, match=re.escape(", ".join(reasons))):
        _refuse_multi_animal(cfg, "pose_cfg.yaml")
