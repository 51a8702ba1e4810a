"""Bring your own weights: the TF checkpoint reader, the TF-slim pose network and the
pose-tensorflow / DeepLabCut converters, checked against TensorFlow's own forward pass.

tests/fixtures/tf/ holds a tiny pose-tensorflow model and a DeepLabCut 2.x project with the same
random weights, and TensorFlow's outputs on one image (``expected.npz``), all written by
tests/fixtures/tf/make_fixture.py. With tensorflow and tf-slim installed, one test rebuilds the
fixture and compares against that fresh TensorFlow run too.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from engine_support import make_video

from deepercut.cli.import_model import register
from deepercut.detection import NetworkDetector
from deepercut.engine.pipeline import Engine
from deepercut.model.candidates import CandidateParams
from deepercut.model.convert import (
    COCO17,
    UnsupportedArchitecture,
    WeightsMismatch,
    _tf_architecture,
    convert,
    detect_source,
    import_model,
    prior_pairwise_model,
    skeleton_from_config,
    source_key,
)
from deepercut.model.external.tf_checkpoint import (
    CheckpointFormatError,
    TFCheckpoint,
    crc32c,
    masked_crc32c,
)
from deepercut.model.external.tfslim_resnet import (
    MEAN_PIXEL,
    STANDARD_UNITS,
    TFSlimPoseConfig,
    TFSlimPoseNet,
    tf_variable_map,
)
from deepercut.model.io import CheckpointError, load_model, save_model
from deepercut.skeleton import MPII14
from deepercut.solvers.api import solve
from deepercut.types import Candidates

yaml = pytest.importorskip("yaml", reason="the converters read YAML configs (pip install pyyaml)")

FIXTURES = Path(__file__).parent / "fixtures" / "tf"
POSETF = FIXTURES / "posetf"
DLC = FIXTURES / "dlc"
DLC_TRAIN = DLC / "dlc-models/iteration-0/tinyJan1-trainset95shuffle1/train"
TOLERANCE = 1e-4


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPERCUT_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "expected.npz") as data:
        return dict(data)


def _image_batch(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t[0].permute(1, 2, 0).numpy()


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def _edit_cfg(path: Path, **changes: object) -> None:
    cfg = yaml.safe_load(path.read_text())
    cfg.update(changes)
    path.write_text(yaml.safe_dump(cfg))


# ---------------------------------------------------------------------- reader


def test_crc32c_matches_the_castagnoli_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    crc = 0xE3069283
    assert masked_crc32c(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_reader_lists_and_reads_the_fixture_checkpoint() -> None:
    ckpt = TFCheckpoint(POSETF / "snapshot-5", verify=True)  # every CRC checked
    names = ckpt.names()
    assert "resnet_v1_20/conv1/weights" in names and "global_step" in names
    assert "pose/part_pred/block4/biases/Momentum" in names
    assert ckpt.shapes()["resnet_v1_20/conv1/weights"] == (7, 7, 3, 8)
    assert ckpt.shapes()["pose/pairwise_pred/block4/weights"] == (3, 3, 12, 16)
    weights = ckpt.read("resnet_v1_20/conv1/weights")
    assert weights.dtype == np.float32 and weights.shape == (7, 7, 3, 8)
    assert np.isfinite(weights).all() and weights.std() > 0
    assert int(ckpt.read("global_step")) == 5
    variance = ckpt.read("resnet_v1_20/block1/unit_1/bottleneck_v1/conv1/BatchNorm/moving_variance")
    assert (variance >= 0.5).all() and (variance <= 2.0).all()  # as make_fixture drew them
    # The same checkpoint opened by its .index or data file name.
    assert TFCheckpoint(POSETF / "snapshot-5.index").names() == names
    assert TFCheckpoint(POSETF / "snapshot-5.data-00000-of-00001").names() == names
    with pytest.raises(KeyError, match="nope"):
        ckpt.read("nope")


def test_reader_detects_corruption(tmp_path: Path) -> None:
    folder = _copy(POSETF, tmp_path)
    prefix = folder / "snapshot-5"
    ckpt = TFCheckpoint(prefix, verify=True)
    entry = ckpt.entries["resnet_v1_20/conv1/weights"]
    data = folder / "snapshot-5.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[entry.offset + 5] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(CheckpointFormatError, match=r"checksum mismatch.*conv1/weights"):
        TFCheckpoint(prefix, verify=True).read("resnet_v1_20/conv1/weights")
    data.write_bytes(bytes(raw[: entry.offset + 10]))  # truncated
    with pytest.raises(CheckpointFormatError, match="truncated"):
        TFCheckpoint(prefix, verify=False).read("resnet_v1_20/conv1/weights")
    data.unlink()
    with pytest.raises(FileNotFoundError, match="data-00000-of-00001"):
        TFCheckpoint(prefix).read("resnet_v1_20/conv1/weights")

    index = folder / "snapshot-5.index"
    raw = bytearray(index.read_bytes())
    raw[-1] ^= 0xFF  # magic
    index.write_bytes(bytes(raw))
    with pytest.raises(CheckpointFormatError, match="bad magic"):
        TFCheckpoint(prefix)
    raw[-1] ^= 0xFF
    raw[10] ^= 0xFF  # inside the first data block of the index
    index.write_bytes(bytes(raw))
    with pytest.raises(CheckpointFormatError):
        TFCheckpoint(prefix, verify=True)
    with pytest.raises(FileNotFoundError, match="no TensorFlow checkpoint index"):
        TFCheckpoint(folder / "snapshot-6")


def test_reader_rejects_a_file_that_is_no_table(tmp_path: Path) -> None:
    bad = tmp_path / "x.index"
    bad.write_bytes(b"\0" * 40 + struct.pack("<Q", 123))
    with pytest.raises(CheckpointFormatError, match="not a TensorFlow V2 checkpoint"):
        TFCheckpoint(tmp_path / "x")


# ---------------------------------------------------------------------- network


def test_variable_map_covers_resnet_v1_101_exactly() -> None:
    """Names and shapes of TF-slim's resnet_v1_101 as its definition gives them."""
    config = TFSlimPoseConfig(depth=101, num_parts=14, pairwise=True, intermediate_unit=12)
    net = TFSlimPoseNet(config)
    mapping = tf_variable_map(config)
    state = net.state_dict()
    learned = {k for k in state if k not in ("mean_pixel", "pairwise_mean", "pairwise_std")}
    assert set(mapping) == learned
    # Shapes in our layouts: conv OIHW (TF: HWIO), deconv (in, out, H, W) (TF: H, W, out, in).
    named = {tf: tuple(state[k].shape) for k, (tf, _) in mapping.items()}
    unit = "resnet_v1_101/block{}/unit_{}/bottleneck_v1/{}/weights"
    assert named["resnet_v1_101/conv1/weights"] == (64, 3, 7, 7)
    assert named[unit.format(1, 1, "shortcut")] == (256, 64, 1, 1)
    assert unit.format(1, 2, "shortcut") not in named  # same depth: subsampled identity
    assert named[unit.format(3, 23, "conv2")] == (256, 256, 3, 3)
    assert unit.format(3, 24, "conv1") not in named
    assert named[unit.format(4, 1, "shortcut")] == (2048, 1024, 1, 1)
    assert named["pose/pairwise_pred/block4/weights"] == (2048, 14 * 13 * 2, 3, 3)
    assert named["pose/intermediate_supervision/block4/weights"] == (1024, 14, 3, 3)
    convs = 1 + sum(3 * n for n in STANDARD_UNITS[101]) + 4  # + one projection per block
    assert sum(name.endswith("/weights") for name in named) == convs + 4  # + 4 heads
    assert sum(name.endswith("/gamma") for name in named) == convs


def test_resnet_101_strides_and_output_contract() -> None:
    config = TFSlimPoseConfig(depth=101, num_parts=5, pairwise=True, intermediate_unit=12)
    net = TFSlimPoseNet(config).eval()
    assert net.stride == 8
    rates = [unit.conv2.conv.dilation[0] for block in net.blocks for unit in block]
    strides = [unit.conv2.conv.stride[0] for block in net.blocks for unit in block]
    # TF-slim: stride in the last unit of blocks 1-2; block 3's last unit atrous at rate 1,
    # block 4 at rate 2 (output stride 16).
    assert [i for i, s in enumerate(strides) if s == 2] == [2, 6]
    assert rates == [1] * 30 + [2] * 3
    with torch.no_grad():
        out = net(torch.rand(1, 3, 64, 96))
    assert out.scmap.shape == (1, 5, 8, 12) and out.locref.shape == (1, 10, 8, 12)
    assert out.pairwise.shape == (1, 40, 8, 12) and out.intermediate.shape == (1, 5, 8, 12)
    maps = net.decode(out)
    assert maps.pairwise is not None and maps.pairwise.shape == (1, 5, 5, 2, 8, 12)
    assert torch.all(maps.pairwise[:, torch.arange(5), torch.arange(5)] == 0)
    with pytest.raises(ValueError, match="multiples of 16"):
        net(torch.rand(1, 3, 60, 96))


# ---------------------------------------------------------------------- equality with TF


def _check_equal(model, expected: dict[str, np.ndarray], heads: tuple[str, ...]) -> None:
    with torch.no_grad():
        out = model.net(_image_batch(expected["image"]))
    ours = {
        "part_pred": out.scmap,
        "locref": out.locref,
        "pairwise_pred": out.pairwise,
        "part_pred_interm": out.intermediate,
    }
    for head in heads:
        got, want = _hwc(ours[head]), expected[head]
        assert got.shape == want.shape, head
        assert np.abs(want).max() > 0.5  # a live network, not zeros
        np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE, err_msg=head)


def test_pose_tensorflow_model_equals_tensorflow(expected) -> None:
    model = convert(POSETF)
    assert model.meta["imported_from"]["family"] == "pose-tensorflow"
    assert model.meta["imported_from"]["head_naming"] == "slim"
    assert model.skeleton.parts == ("snout", "left_ear", "right_ear")
    _check_equal(model, expected, ("part_pred", "locref", "pairwise_pred", "part_pred_interm"))


def test_decoded_maps_follow_pose_tensorflow(expected) -> None:
    """probs = sigmoid, locref · locref_stdev, pairwise · std + mean (stats × global_scale)."""
    model = convert(POSETF)
    with torch.no_grad():
        maps = model.net.decode(model.net(_image_batch(expected["image"])))
    probs = 1 / (1 + np.exp(-expected["part_pred"]))
    np.testing.assert_allclose(_hwc(maps.probs), probs, atol=TOLERANCE)
    h, w, _ = expected["locref"].shape
    locref = expected["locref"].reshape(h, w, 3, 2) * 7.2801  # (x, y) per joint
    np.testing.assert_allclose(maps.locref[0].permute(2, 3, 0, 1).numpy(), locref, atol=1e-3)
    stats = scipy.io.loadmat(POSETF / "pairwise_stats.mat")
    raw = expected["pairwise_pred"].reshape(h, w, 6, 2)
    for (a, b), mean, std in zip(stats["graph"], stats["means"], stats["std_devs"], strict=True):
        a, b = int(a), int(b)
        pair = 2 * a + b - int(a < b)  # pose-tensorflow's get_pairwise_index for 3 joints
        want = raw[:, :, pair] * std * 0.8 + mean * 0.8
        got = maps.pairwise[0, a, b].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(got, want, atol=1e-3, err_msg=f"pair {a}->{b}")


def test_deeplabcut_project_equals_tensorflow(expected) -> None:
    model = convert(DLC)
    origin = model.meta["imported_from"]
    assert origin["family"] == "deeplabcut2" and origin["head_naming"] == "keras"
    assert origin["step"] == 7
    assert model.skeleton.name == "tiny"
    assert model.skeleton.parts == ("snout", "left_ear", "right_ear")
    assert model.skeleton.edges == ((0, 1), (0, 2))
    assert model.net.config.pairwise is False and model.net.config.intermediate_unit is None
    assert model.input_hw == (480, 640)  # no video_sets: the default
    _check_equal(model, expected, ("part_pred", "locref"))
    # Its train folder and its snapshot are the same model.
    for src in (DLC_TRAIN, DLC_TRAIN / "snapshot-7.index"):
        assert convert(src).meta["imported_from"] == origin


@pytest.mark.parametrize("source", ["posetf", "dlc"])
def test_configured_mean_pixel_and_locref_stdev_are_used(
    tmp_path: Path, expected, source: str
) -> None:
    """Non-default ``mean_pixel`` and ``locref_stdev`` in pose_cfg.yaml reach the network (the
    fixture's own values are the defaults, so ignoring them would go unnoticed there)."""
    root = _copy(POSETF if source == "posetf" else DLC, tmp_path)
    train = root if source == "posetf" else root / DLC_TRAIN.relative_to(DLC)
    shift = np.array([12.0, -20.0, 7.5])
    _edit_cfg(
        train / "pose_cfg.yaml",
        mean_pixel=[float(m) for m in np.array(MEAN_PIXEL) + shift],
        locref_stdev=3.5,
    )
    model = convert(root)
    # RGB·255 − (mean + shift) on the image brightened by shift is TF's RGB·255 − mean.
    image = _image_batch(expected["image"]) + torch.tensor(shift).float().view(1, 3, 1, 1) / 255
    with torch.no_grad():
        out = model.net(image)
        maps = model.net.decode(out)
    np.testing.assert_allclose(_hwc(out.scmap), expected["part_pred"], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(_hwc(out.locref), expected["locref"], rtol=0, atol=TOLERANCE)
    h, w, _ = expected["locref"].shape
    locref = expected["locref"].reshape(h, w, 3, 2) * 3.5
    np.testing.assert_allclose(maps.locref[0].permute(2, 3, 0, 1).numpy(), locref, atol=1e-3)


@pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("tf_slim") is None,
    reason="needs tensorflow and tf-slim to rebuild the fixture (the committed TF outputs are "
    "checked by the other tests)",
)
def test_rebuilt_fixture_equals_fresh_tensorflow_run(tmp_path: Path, expected) -> None:
    spec = importlib.util.spec_from_file_location("make_fixture", FIXTURES / "make_fixture.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build(tmp_path)
    with np.load(tmp_path / "expected.npz") as fresh:
        fresh = dict(fresh)
    _check_equal(convert(tmp_path / "posetf"), fresh, tuple(k for k in fresh if k != "image"))
    _check_equal(convert(tmp_path / "dlc"), fresh, ("part_pred", "locref"))
    for key in expected:  # the committed fixture is what make_fixture.py writes
        np.testing.assert_allclose(fresh[key], expected[key], atol=TOLERANCE)


# ---------------------------------------------------------------------- errors


class _Names:
    """A checkpoint stand-in with only names and shapes (what the architecture check reads)."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]) -> None:
        self._shapes = shapes

    def __contains__(self, name: object) -> bool:
        return name in self._shapes

    def names(self) -> list[str]:
        return sorted(self._shapes)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return self._shapes


def _resnet50_names(units: tuple[int, ...]) -> _Names:
    config = TFSlimPoseConfig(depth=50, units=units, num_parts=2)
    net = TFSlimPoseNet(config)
    state = net.state_dict()
    # Our layouts are transpose(3, 2, 0, 1) of TF's 4-d ones; this is its inverse.
    return _Names(
        {
            tf: tuple(np.empty(state[k].shape).transpose(2, 3, 1, 0).shape)
            if state[k].ndim == 4
            else tuple(state[k].shape)
            for k, (tf, _) in tf_variable_map(config).items()
        }
    )


def test_wrong_depth_lists_missing_units(tmp_path: Path) -> None:
    cfg = {"net_type": "resnet_50", "num_joints": 2, "location_refinement": True}
    config, naming, bn_scale = _tf_architecture(cfg, _resnet50_names((3, 4, 6, 3)), "ckpt")
    assert config.units == (3, 4, 6, 3) and naming == "slim" and bn_scale
    assert config.bottleneck_widths == (64, 128, 256, 512) and config.root_width == 64
    with pytest.raises(WeightsMismatch, match=r"missing \['resnet_v1_50/block3/unit_6/"):
        _tf_architecture(cfg, _resnet50_names((3, 4, 5, 3)), "ckpt")
    with pytest.raises(WeightsMismatch, match=r"unexpected \['resnet_v1_50/block2/unit_5'"):
        _tf_architecture(cfg, _resnet50_names((3, 5, 6, 3)), "ckpt")
    folder = _copy(POSETF, tmp_path)
    _edit_cfg(folder / "pose_cfg.yaml", net_type="resnet_50")
    with pytest.raises(WeightsMismatch, match=r"no resnet_v1_50/conv1/weights.*resnet_v1_20"):
        convert(folder)


def test_unexpected_and_missing_heads_are_listed(tmp_path: Path) -> None:
    folder = _copy(POSETF, tmp_path)
    _edit_cfg(folder / "pose_cfg.yaml", pairwise_predict=False, intermediate_supervision=False)
    # 2 heads × (weights, biases); the Momentum slot and global_step are ignored.
    unexpected = r"unexpected \['pose/intermediate_supervision.*\(4\)"
    with pytest.raises(WeightsMismatch, match=unexpected):
        convert(folder)
    dlc = _copy(DLC, tmp_path)
    train = dlc / DLC_TRAIN.relative_to(DLC)
    _edit_cfg(train / "pose_cfg.yaml", intermediate_supervision=True)
    with pytest.raises(WeightsMismatch, match=r"missing \['pose/intermediate_supervision/"):
        convert(dlc)


def test_wrong_shapes_are_listed(tmp_path: Path) -> None:
    dlc = _copy(DLC, tmp_path)
    train = dlc / DLC_TRAIN.relative_to(DLC)
    _edit_cfg(
        train / "pose_cfg.yaml",
        num_joints=4,
        all_joints=[[0], [1], [2], [3]],
        all_joints_names=["a", "b", "c", "d"],
    )
    with pytest.raises(WeightsMismatch, match=r"wrong shapes \['pose/part_pred/part_pred/kernel"):
        convert(dlc)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"net_type": "mobilenet_v2_1.0"}, "mobilenet_v2_1.0.*not supported"),
        ({"net_type": "efficientnet-b0"}, "not supported"),
        ({"dataset_type": "multi-animal-imgaug"}, "multi-animal"),
        ({"partaffinityfield_predict": True}, "part affinity fields"),
        ({"multi_stage": True}, "multi-stage"),
    ],
)
def test_unsupported_architectures(tmp_path: Path, changes: dict, match: str) -> None:
    dlc = _copy(DLC, tmp_path)
    _edit_cfg(dlc / DLC_TRAIN.relative_to(DLC) / "pose_cfg.yaml", **changes)
    with pytest.raises(UnsupportedArchitecture, match=match):
        convert(dlc)


def test_deeplabcut3_snapshot_is_read_safely_and_refused(tmp_path: Path) -> None:
    # Supported DeepLabCut 3 models are tested in test_import_dlc3.py; HRNet is not one.
    train = tmp_path / "train"
    train.mkdir()
    supported = yaml.safe_load(
        (Path(__file__).parent / "fixtures/dlc3/resnet50_gn/pytorch_config.yaml").read_text()
    )
    hrnet = {**supported["model"], "backbone": {"type": "HRNet", "model_name": "hrnet_w32"}}
    (train / "pytorch_config.yaml").write_text(yaml.safe_dump({**supported, "model": hrnet}))
    snapshot = train / "snapshot-200.pt"
    torch.save({"model": {"backbone.model.conv1.weight": torch.zeros(2)}, "metadata": {}}, snapshot)
    assert detect_source(snapshot) == "dlc3"
    with pytest.raises(UnsupportedArchitecture, match=r"HRNet hrnet_w32.*HeatmapHead"):
        load_model(snapshot)  # the deepercut loader hands it over
    with pytest.raises(UnsupportedArchitecture, match="snapshot-200"):
        convert(train)
    # A pickle that needs code to load is refused by weights_only, not executed.
    (train / "pytorch_config.yaml").write_text(yaml.safe_dump(supported))
    torch.save({"model": {"x": argparse.Namespace(a=1)}}, snapshot)
    with pytest.raises(CheckpointError, match="not a readable PyTorch snapshot"):
        convert(snapshot)


def test_missing_config_and_stats_are_clear(tmp_path: Path) -> None:
    folder = _copy(POSETF, tmp_path)
    (folder / "pairwise_stats.mat").unlink()
    with pytest.raises(CheckpointError, match="pairwise_stats_fn"):
        convert(folder)
    (folder / "pose_cfg.yaml").unlink()
    assert detect_source(folder) is None
    with pytest.raises(CheckpointError, match=r"pose_cfg\.yaml"):
        convert(folder / "snapshot-5")


# ---------------------------------------------------------------------- checkpoints, cache


def test_converted_model_saves_and_loads_with_weights_only(tmp_path: Path, expected) -> None:
    model = convert(POSETF, input_hw=(96, 128))
    path = tmp_path / "m.pt"
    save_model(path, model)
    raw = torch.load(path, weights_only=True)
    assert raw["network"] == "tfslim_resnet_v1" and raw["config"]["units"] == [2, 1, 2, 1]
    loaded = load_model(path)
    assert loaded.input_hw == (96, 128) and loaded.skeleton == model.skeleton
    assert loaded.meta["imported_from"] == model.meta["imported_from"]
    _check_equal(loaded, expected, ("part_pred", "locref", "pairwise_pred", "part_pred_interm"))
    assert torch.equal(loaded.net.pairwise_std, model.net.pairwise_std)


def test_load_model_converts_once_and_caches(tmp_path: Path, monkeypatch, expected) -> None:
    dlc = _copy(DLC, tmp_path)
    first = load_model(dlc)
    cached = list((tmp_path / "cache" / "imported").glob("*.pt"))
    assert len(cached) == 1 and cached[0].stem == source_key(dlc)

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr("deepercut.model.convert.convert", no_conversion)
    again = load_model(dlc)
    _check_equal(again, expected, ("part_pred", "locref"))
    assert again.skeleton == first.skeleton
    # A changed source is a new key: converted afresh.
    _edit_cfg(dlc / "config.yaml", skeleton=[["snout", "left_ear"]])
    with pytest.raises(AssertionError, match="converted again"):
        load_model(dlc)
    monkeypatch.undo()
    monkeypatch.setenv("DEEPERCUT_CACHE", str(tmp_path / "cache"))
    assert load_model(dlc).skeleton.edges == ((0, 1),)
    assert len(list((tmp_path / "cache" / "imported").glob("*.pt"))) == 2


def test_import_cache_only_uses_entries_it_signed(tmp_path: Path, caplog) -> None:
    """A planted checkpoint at an import's cache key (a different model) is not used: the
    project is converted again and the cache entry replaced; an open folder is not used."""
    dlc = _copy(DLC, tmp_path)
    first = load_model(dlc)
    entry = tmp_path / "cache" / "imported" / f"{source_key(dlc)}.pt"
    other = convert(POSETF, input_hw=(48, 64))  # a valid checkpoint of another model
    save_model(entry, other)
    with caplog.at_level(logging.WARNING):
        assert load_model(dlc).skeleton == first.skeleton
    assert "cached import refused" in caplog.text and "mode 0644" in caplog.text
    save_model(entry, other)
    entry.chmod(0o600)  # as if written by this user: only the MAC tells it apart
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = load_model(dlc)
    assert "cached import refused" in caplog.text and "MAC mismatch" in caplog.text
    assert again.skeleton == first.skeleton and again.skeleton != other.skeleton
    assert load_model(dlc).skeleton == first.skeleton  # the entry was re-signed
    save_model(entry, other)
    entry.chmod(0o600)
    entry.with_name(entry.name + ".mac").unlink()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert load_model(dlc).skeleton == first.skeleton
    assert "no .mac sidecar" in caplog.text
    (tmp_path / "cache" / "imported").chmod(0o775)
    save_model(entry, other)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert load_model(dlc).skeleton == first.skeleton
    assert "import cache not used" in caplog.text and "mode 0775" in caplog.text


def test_input_size_follows_the_deeplabcut_videos(tmp_path: Path) -> None:
    dlc = _copy(DLC, tmp_path)
    _edit_cfg(dlc / "config.yaml", video_sets={"/data/mouse.avi": {"crop": "0, 1280, 0, 1018"}})
    assert convert(dlc).input_hw == (1024, 1280)
    assert convert(dlc, input_hw=(96, 128)).input_hw == (96, 128)


def test_import_model_survives_an_unwritable_cache(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    model = import_model(POSETF, cache=blocked / "sub")
    assert model.net.config.pairwise


def test_cli_import_writes_a_loadable_checkpoint(tmp_path: Path, capsys) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    out = tmp_path / "out" / "model.pt"
    args = parser.parse_args(["import", str(DLC), "-o", str(out), "--input-size", "96x128"])
    assert args.func(args) == 0
    assert "3 parts (snout, left_ear, right_ear)" in capsys.readouterr().out
    model = load_model(out)
    assert model.input_hw == (96, 128) and model.meta["imported_from"]["family"] == "deeplabcut2"
    args = parser.parse_args(["import", str(DLC), "-o", str(out), "--input-size", "90x128"])
    with pytest.raises(ValueError, match="multiples of 16"):
        args.func(args)


# ---------------------------------------------------------------------- engine contract


def test_converted_model_runs_through_detector_and_solver(expected) -> None:
    model = convert(POSETF, input_hw=(48, 64))
    detector = NetworkDetector(
        model, params=CandidateParams(min_score=0.05), device="cpu", backend="eager"
    )
    [candidates] = detector.detect([expected["image"]])
    assert len(candidates.xy) > 0 and candidates.offsets.shape[1:] == (3, 2)
    # Each candidate sits at its cell centre plus the decoded locref (stride 8).
    probs = 1 / (1 + np.exp(-expected["part_pred"]))
    for xy, part, score in zip(candidates.xy, candidates.part, candidates.score, strict=True):
        i, j = np.argwhere(np.isclose(probs[:, :, part], score, atol=1e-5))[0]
        dx, dy = expected["locref"][i, j, 2 * part : 2 * part + 2] * 7.2801
        np.testing.assert_allclose(xy, [j * 8 + 4 + dx, i * 8 + 4 + dy], atol=1e-2)
    problem, _ = model.pairwise_model().build_problem(candidates)
    solution = solve(problem, "exact", skeleton=model.skeleton, time_limit=5.0)
    assert abs(problem.objective(solution.label, solution.cluster) - solution.objective) < 1e-6


def test_prior_pairwise_model_without_offsets_groups_everything() -> None:
    pairwise = prior_pairwise_model(3, offsets=False)
    far = Candidates(
        xy=np.array([[10, 10], [600, 400], [300, 50]], np.float32),
        part=np.array([0, 1, 2]),
        score=np.array([0.9, 0.8, 0.7], np.float32),
        offsets=np.zeros((3, 3, 2), np.float32),
    )
    problem, _ = pairwise.build_problem(far)
    solution = solve(problem, "exact", time_limit=5.0)
    assert (solution.label >= 0).all() and len(set(solution.cluster.tolist())) == 1
    # A weak second snout and ear do not make a second individual; a confident pair does.
    for score, individuals in ((0.3, 1), (0.95, 2)):
        extra = Candidates(
            xy=np.concatenate([far.xy, [[500, 300], [520, 310]]]).astype(np.float32),
            part=np.array([0, 1, 2, 0, 1]),
            score=np.array([0.9, 0.8, 0.7, score, score], np.float32),
            offsets=np.zeros((5, 3, 2), np.float32),
        )
        problem, _ = pairwise.build_problem(extra)
        solution = solve(problem, "exact", time_limit=5.0)
        assert len(set(solution.cluster[solution.label >= 0].tolist())) == individuals, score


def test_skeletons_of_known_and_generic_layouts() -> None:
    mpii = {
        "num_joints": 14,
        "all_joints": [[0, 5], [1, 4], [2, 3], [6, 11], [7, 10], [8, 9], [12], [13]],
        "all_joints_names": ["ankle", "knee", "hip", "wrist", "elbow", "shoulder", "chin", "top"],
    }
    assert skeleton_from_config(mpii) is MPII14
    coco = {
        "num_joints": 17,
        "all_joints": [[0], [1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16]],
        "all_joints_names": [
            "nose",
            "eye",
            "ear",
            "shoulder",
            "elbow",
            "wrist",
            "hip",
            "knee",
            "ankle",
        ],
    }
    assert skeleton_from_config(coco) is COCO17
    paired = {"num_joints": 3, "all_joints": [[0, 2], [1]], "all_joints_names": ["ear", "nose"]}
    skeleton = skeleton_from_config(paired)
    assert skeleton.parts == ("ear1", "nose", "ear2") and skeleton.flip_pairs == ((0, 2),)
    with pytest.raises(CheckpointError, match="do not name 3 joints"):
        skeleton_from_config({**paired, "all_joints_names": ["ear"]})


def test_engine_runs_a_deeplabcut_project_directly(tmp_path: Path) -> None:
    video = tmp_path / "walk.mp4"
    make_video(video, frames=3)
    with Engine(str(DLC), workers=0, input_hw=(48, 64), solver="3stage") as engine:
        poses = list(engine.run(video))
    assert [p.frame for p in poses] == [0, 1, 2]
    assert all(p.keypoints.shape[1:] == (3, 3) for p in poses)
    assert len(list((tmp_path / "cache" / "imported").glob("*.pt"))) == 1
