"""The ONNX Runtime CPU backend: outputs against eager FP32 (every map, relative to its own
scale), the verified cache (reuse, a tampered entry rebuilt, a missing sidecar), threads,
``auto`` on CPU choosing it, and the engine's detector on it."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from test_tensorrt import tiny_net as tensorrt_tiny_net

from deepercut.detection import NetworkDetector
from deepercut.model.io import Model
from deepercut.model.net import DeeperCut
from deepercut.private_cache import MAC_SUFFIX, UntrustedCache
from deepercut.skeleton import MPII14
from deepercut.tensorrt import cache as cache_mod
from deepercut.tensorrt import compile_detector
from deepercut.tensorrt.cache import EngineCache
from deepercut.types import Frame

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

HW = (64, 96)
#: Largest |ORT − eager| allowed, as a fraction of the map's largest |value|: float32 rounding
#: of a folded network is ~1e-6 of it; a zeroed or wrong map is off by its whole scale.
RELATIVE = 1e-4


@pytest.fixture(autouse=True)
def private_cache(monkeypatch, tmp_path):
    monkeypatch.setenv(cache_mod.CACHE_ENV, str(tmp_path))  # the cache root
    return tmp_path / "engines"


def read_verified(path):
    """The entry at ``path`` as the engine cache verifies it."""
    return EngineCache(path.parent).read(path.name)


def tiny_net(seed: int = 0) -> DeeperCut:
    """test_tensorrt's tiny network for the 14 parts, every head's outputs non-zero (so a
    dropped or zeroed map shows)."""
    net = tensorrt_tiny_net(seed=seed, num_parts=MPII14.num_parts)
    with torch.no_grad():
        net.scmap_head.bias.fill_(-0.5)
    return net


def images(batch: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, *HW, generator=torch.Generator().manual_seed(seed))


def assert_maps_close(got, expected) -> None:
    for name in ("scmap", "locref", "pairwise", "intermediate"):
        g, e = getattr(got, name), getattr(expected, name)
        assert g.shape == e.shape, name
        scale = float(e.abs().max())
        assert scale > 0, f"{name} is all zeros: the comparison would prove nothing"
        worst = float((g - e).abs().max())
        assert worst <= RELATIVE * scale, f"{name}: max |diff| {worst:.3g} of scale {scale:.3g}"


def test_outputs_match_eager_fp32_for_every_batch_size() -> None:
    net = tiny_net()
    detector = compile_detector(net, HW, (1, 4, 4), "fp32", "onnxruntime", threads=1)
    assert detector.backend == "onnxruntime" and detector.reason == "requested"
    assert detector.forward.threads == 1
    with torch.no_grad():
        for batch in (1, 3, 6):  # 6 > the largest batch: split in two runs
            x = images(batch, seed=batch)
            assert_maps_close(detector(x), net(x))


def test_a_zeroed_map_is_caught() -> None:
    """The tolerance is tight enough to see a small-magnitude map (locref) zeroed."""
    net = tiny_net()
    with torch.no_grad():
        expected = net(images(2))
    broken = expected._replace(locref=torch.zeros_like(expected.locref))
    with pytest.raises(AssertionError, match="locref"):
        assert_maps_close(broken, expected)


def test_cached_model_is_reused_and_verified(private_cache, caplog) -> None:
    net = tiny_net()
    first = compile_detector(net, HW, (1, 2, 2), "fp32", "onnxruntime")
    path = first.cache_path
    assert path is not None and path.parent == private_cache and path.suffix == ".onnx"
    assert path.with_name(path.name + MAC_SUFFIX).is_file()
    stamp = path.stat().st_mtime_ns
    again = compile_detector(net, HW, (1, 2, 2), "fp32", "onnxruntime")
    assert again.cache_path == path and path.stat().st_mtime_ns == stamp  # loaded, not rebuilt
    # Other weights: another entry.
    other = compile_detector(tiny_net(seed=1), HW, (1, 2, 2), "fp32", "onnxruntime")
    assert other.cache_path != path

    # A tampered entry is refused and rebuilt; the rebuilt model is right again.
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(UntrustedCache, match="MAC mismatch"):
        read_verified(path)
    with caplog.at_level(logging.WARNING, logger="deepercut.tensorrt.ort"):
        rebuilt = compile_detector(net, HW, (1, 2, 2), "fp32", "onnxruntime")
    assert "MAC mismatch" in caplog.text
    read_verified(rebuilt.cache_path)
    with torch.no_grad():
        assert_maps_close(rebuilt(images(2)), net(images(2)))


def test_entry_without_sidecar_is_not_trusted(private_cache) -> None:
    net = tiny_net()
    path = compile_detector(net, HW, (1, 2, 2), "fp32", "onnxruntime").cache_path
    path.with_name(path.name + MAC_SUFFIX).unlink()
    with pytest.raises(UntrustedCache, match="sidecar"):
        read_verified(path)
    compile_detector(net, HW, (1, 2, 2), "fp32", "onnxruntime")
    assert read_verified(path)  # rebuilt with its sidecar


def test_auto_on_cpu_chooses_onnxruntime() -> None:
    detector = compile_detector(tiny_net(), HW, (1, 2, 2), "fp32", "auto")
    assert detector.backend == "onnxruntime"
    assert detector.reason == "auto on CPU: ONNX Runtime installed"
    # Without an input size there is nothing to export: eager.
    assert compile_detector(tiny_net(), None, 1, "fp32", "auto").backend == "eager"


def test_fp16_on_onnxruntime_falls_back_to_eager() -> None:
    detector = compile_detector(tiny_net(), HW, (1, 2, 2), "fp16", "onnxruntime")
    assert detector.backend == "eager"
    assert "onnxruntime unavailable" in detector.reason and "fp32" in detector.reason


def test_network_detector_candidates_match_eager() -> None:
    model = Model(tiny_net(), MPII14, HW)
    fast = NetworkDetector(model, device="cpu", backend="onnxruntime", batch_size=4)
    eager = NetworkDetector(model, device="cpu", backend="eager", batch_size=4)
    assert fast.backend == "onnxruntime"
    rng = np.random.default_rng(0)
    frames = [Frame(i, i / 25, rng.integers(0, 256, (48, 80, 3), np.uint8)) for i in range(3)]
    # torch only post-processes for ONNX Runtime: one thread for the call, then restored.
    torch.set_num_threads(2)
    seen: list[int] = []
    run = fast.runner

    def spy(images: torch.Tensor) -> object:
        seen.append(torch.get_num_threads())
        return run(images)

    fast.runner = spy  # type: ignore[assignment]
    got, expected = fast(frames), eager(frames)
    assert seen == [1] and eager.torch_threads is None
    assert torch.get_num_threads() == 2
    assert sum(len(c.xy) for c in expected) > 0
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a.part, b.part)
        np.testing.assert_allclose(a.xy, b.xy, atol=1e-3)
        np.testing.assert_allclose(a.score, b.score, atol=1e-4)
