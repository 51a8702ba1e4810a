"""The DeeperCut network: shapes and stride, torchvision naming, frozen BN, checkpoints."""

from __future__ import annotations

import pytest
import torch

from deepercut.model.codecs import expand_pairwise, other_parts
from deepercut.model.io import CheckpointError, Model, load_model, save_model
from deepercut.model.net import STRIDE, DeeperCut, DetectorConfig
from deepercut.model.resnet import (
    FrozenBatchNorm2d,
    ResNet,
    freeze_batchnorm,
    load_torchvision_state_dict,
)
from deepercut.skeleton import MPII14

# Blocks per stage and block type, as torchvision.models.resnet defines them.
TORCHVISION_LAYOUT = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}


def torchvision_state_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    """Key → shape of ``torchvision.models.<arch>().state_dict()``, written from its definition."""
    kind, layers = TORCHVISION_LAYOUT[arch]
    expansion = 4 if kind == "bottleneck" else 1
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}

    def bn(prefix: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (c,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    bn("bn1", 64)
    inplanes = 64
    for stage, blocks in enumerate(layers):
        planes = 64 * 2**stage
        for i in range(blocks):
            p = f"layer{stage + 1}.{i}"
            if kind == "bottleneck":
                shapes[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
                bn(f"{p}.bn1", planes)
                shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{p}.bn2", planes)
                shapes[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
                bn(f"{p}.bn3", planes * 4)
            else:
                shapes[f"{p}.conv1.weight"] = (planes, inplanes, 3, 3)
                bn(f"{p}.bn1", planes)
                shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{p}.bn2", planes)
            if i == 0 and (stage > 0 or inplanes != planes * expansion):
                shapes[f"{p}.downsample.0.weight"] = (planes * expansion, inplanes, 1, 1)
                bn(f"{p}.downsample.1", planes * expansion)
            inplanes = planes * expansion
    shapes["fc.weight"] = (1000, 512 * expansion)
    shapes["fc.bias"] = (1000,)
    return shapes


def random_state(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.05
    return state


@pytest.mark.parametrize("arch", ["resnet18", "resnet50", "resnet101", "resnet152"])
def test_torchvision_state_dict_loads_with_same_names_and_shapes(arch: str) -> None:
    shapes = torchvision_state_shapes(arch)
    state = random_state(shapes)
    for norm in ("frozen", "batch"):
        model = ResNet(arch, norm=norm)
        load_torchvision_state_dict(model, state)
        own = model.state_dict()
        assert torch.equal(own["layer3.1.conv2.weight"], state["layer3.1.conv2.weight"])
        assert torch.equal(
            own["layer4.0.downsample.1.running_var"], state["layer4.0.downsample.1.running_var"]
        )
        expected = {k for k in shapes if not k.startswith("fc.")}
        if norm == "frozen":
            expected = {k for k in expected if not k.endswith("num_batches_tracked")}
        assert set(own) == expected


def test_torchvision_state_dict_mismatch_is_reported() -> None:
    state = random_state(torchvision_state_shapes("resnet50"))
    with pytest.raises(ValueError, match="does not fit resnet101"):
        load_torchvision_state_dict(ResNet("resnet101"), state)
    state["layer1.0.conv1.weight"] = torch.zeros(3, 3, 1, 1)
    with pytest.raises(ValueError, match="wrong shapes"):
        load_torchvision_state_dict(ResNet("resnet50"), state)


@pytest.mark.parametrize(
    ("arch", "width", "intermediate_block"),
    [("resnet18", 32, 1), ("resnet50", 64, 5), ("resnet101", 64, 22), ("resnet152", 64, 35)],
)
def test_output_shapes_and_stride(arch: str, width: int, intermediate_block: int) -> None:
    p = 5
    net = DeeperCut(DetectorConfig(arch=arch, num_parts=p, width=width, head_channels=32)).eval()
    # The default intermediate supervision sits on the last conv4 block (4b22 for ResNet-101).
    assert net.intermediate_block == intermediate_block
    for hw in [(64, 96), (112, 80)]:
        with torch.no_grad():
            out = net(torch.rand(2, 3, *hw))
        h, w = hw[0] // STRIDE, hw[1] // STRIDE
        assert out.scmap.shape == (2, p, h, w)
        assert out.locref.shape == (2, 2 * p, h, w)
        assert out.pairwise.shape == (2, 2 * p * (p - 1), h, w)
        assert out.intermediate.shape == (2, p, h // 2, w // 2)
        maps = net.decode(out)
        assert maps.probs.shape == (2, p, h, w)
        assert 0 <= maps.probs.min() <= maps.probs.max() <= 1
        assert maps.locref.shape == (2, p, 2, h, w)
        assert maps.pairwise is not None and maps.pairwise.shape == (2, p, p, 2, h, w)


def test_input_must_be_multiple_of_16() -> None:
    net = DeeperCut(DetectorConfig(arch="resnet18", num_parts=3, width=16, head_channels=16))
    with pytest.raises(ValueError, match="multiples of 16"):
        net(torch.rand(1, 3, 72, 64))


def test_conv5_is_dilated_not_strided() -> None:
    resnet = ResNet("resnet50")
    first = resnet.layer4[0]
    assert first.conv2.stride == (1, 1) and first.downsample[0].stride == (1, 1)
    assert all(block.conv2.dilation == (2, 2) for block in resnet.layer4[1:])


def test_expand_pairwise_places_other_parts_and_zero_diagonal() -> None:
    p = 4
    pw = torch.arange(p * (p - 1) * 2, dtype=torch.float32).view(1, p, p - 1, 2, 1, 1)
    full = expand_pairwise(pw)
    others = other_parts(p)
    for a in range(p):
        assert torch.all(full[0, a, a] == 0)
        for k, q in enumerate(others[a].tolist()):
            assert torch.equal(full[0, a, q], pw[0, a, k])


def test_freeze_batchnorm_keeps_eval_output() -> None:
    torch.manual_seed(0)
    net = DeeperCut(
        DetectorConfig(arch="resnet18", num_parts=3, width=16, head_channels=16, norm="batch")
    )
    net.train()
    for _ in range(3):  # move the running statistics away from their initial values
        net(torch.rand(2, 3, 64, 64) * 2)
    net.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = net(x)
        net.freeze_batchnorm()
        after = net(x)
    assert isinstance(net.backbone.bn1, FrozenBatchNorm2d)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_frozen_batchnorm_has_no_trainable_statistics() -> None:
    bn = torch.nn.BatchNorm2d(4)
    frozen = freeze_batchnorm(torch.nn.Sequential(bn))[0]
    assert isinstance(frozen, FrozenBatchNorm2d)
    assert list(frozen.parameters()) == []
    frozen.train()
    x = torch.randn(2, 4, 3, 3)
    frozen(x)
    assert torch.equal(frozen.running_mean, torch.zeros(4))


def _small_model() -> Model:
    config = DetectorConfig(arch="resnet18", num_parts=MPII14.num_parts, width=16, head_channels=16)
    return Model(DeeperCut(config).eval(), MPII14, (64, 96), meta={"data": "test"})


def test_checkpoint_round_trip(tmp_path) -> None:
    model = _small_model()
    path = tmp_path / "m.pt"
    save_model(path, model)
    loaded = load_model(path)
    assert loaded.skeleton == MPII14
    assert loaded.input_hw == (64, 96)
    assert loaded.meta == {"data": "test"}
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(model.net(x), loaded.net(x), strict=True):
            torch.testing.assert_close(a, b)


def test_corrupt_and_foreign_checkpoints_give_clear_errors(tmp_path) -> None:
    model = _small_model()
    good = tmp_path / "good.pt"
    save_model(good, model)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint" * 100)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_model(garbage)

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_model(truncated)

    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a deepercut model"):
        load_model(foreign)

    wrong_shapes = tmp_path / "wrong.pt"
    ckpt = torch.load(good, weights_only=True)
    ckpt["state_dict"]["scmap_head.weight"] = torch.zeros(3, 16, 1, 1)
    torch.save(ckpt, wrong_shapes)
    with pytest.raises(CheckpointError, match="wrong shapes"):
        load_model(wrong_shapes)

    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.pt")
