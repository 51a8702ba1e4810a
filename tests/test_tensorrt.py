"""GPU backends: BatchNorm folding, the tensorrt → compile → eager fallback chain with its
reasons, the engine cache (key, save, reload), ONNX export checked with onnxruntime, the
export CLI, the GPU benchmark's CPU smoke mode; CUDA-only checks skip without a GPU.

torch-tensorrt cannot run here (CPU torch), so its presence and failure are simulated with a
stand-in module whose ``dynamo.compile`` returns the ``torch.export`` program it is given:
everything around it (export with a dynamic batch, saving, the cache, reloading) is real.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import io
import json
import logging
import os
import pickle
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from deepercut.cli import export as cli_export
from deepercut.detection import NetworkDetector, custom_runner
from deepercut.detection.upload import PinnedUploader
from deepercut.model.candidates import CandidateParams, extract_candidate_tensors
from deepercut.model.io import Model, save_model
from deepercut.model.net import DeeperCut, DetectorConfig
from deepercut.skeleton import MPII14
from deepercut.tensorrt import (
    EngineCache,
    EngineKey,
    compile_detector,
    default_cache_dir,
    export_onnx,
    fold_batchnorm,
    prepare,
    safe_load,
)
from deepercut.tensorrt import cache as cache_mod
from deepercut.tensorrt import compile as compile_mod
from deepercut.types import Frame

HW = (64, 96)
REPO = Path(__file__).resolve().parent.parent
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def tiny_net(norm: str = "frozen", seed: int = 0, num_parts: int = 4) -> DeeperCut:
    """A width-8 ResNet-18 DeeperCut with non-trivial normalisation statistics (folding them
    must matter)."""
    torch.manual_seed(seed)
    config = DetectorConfig(
        arch="resnet18", num_parts=num_parts, width=8, head_channels=16, norm=norm
    )
    net = DeeperCut(config).eval()
    with torch.no_grad():
        for module in net.modules():
            if "Norm" in type(module).__name__:
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(module, name).uniform_(0.5, 1.5)
    return net


def images(batch: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, *HW, generator=torch.Generator().manual_seed(seed))


def assert_outputs_close(got, expected, atol: float, rtol: float = 0.0) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape
        torch.testing.assert_close(g.float(), e.float(), atol=atol, rtol=rtol)


# FP16 errs by ~0.15 % of each map's largest value; a per-map bound keeps the small locref and
# pairwise maps (|x| < 0.04) checked, where one absolute tolerance would accept all zeros.
FP16_REL = 0.01


def assert_maps_close(got, expected, rel: float = FP16_REL) -> None:
    """Each output map within ``rel`` × that map's largest magnitude of the reference."""
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape
        if e.numel() == 0:
            continue
        scale = e.float().abs().max().item()
        assert scale > 0, "a reference map of zeros checks nothing"
        error = (g.float() - e.float()).abs().max().item()
        assert error <= rel * scale, f"max error {error:.3g} > {rel} × map scale {scale:.3g}"


@pytest.fixture
def no_tensorrt(monkeypatch):
    """torch-tensorrt absent, whatever is installed."""
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "torch_tensorrt" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


@pytest.fixture
def fake_compile(monkeypatch):
    """``torch.compile`` recording its calls and the batch sizes the result is run with."""
    calls: list[dict] = []

    def compile_(module, **kwargs):
        record = {"kwargs": kwargs, "batches": []}
        calls.append(record)

        def run(x):
            record["batches"].append(x.shape[0])
            return module(x)

        return run

    monkeypatch.setattr(torch, "compile", compile_)
    return calls


@pytest.fixture
def fake_tensorrt(monkeypatch, tmp_path):
    """A stand-in torch_tensorrt importable on this CPU machine, and a private engine cache."""
    calls = {"compile": 0, "save": 0}
    programs: dict[int, torch.export.ExportedProgram] = {}
    module = types.ModuleType("torch_tensorrt")

    def Input(min_shape, opt_shape, max_shape, dtype):
        return {"min": min_shape, "opt": opt_shape, "max": max_shape, "dtype": dtype}

    def dynamo_compile(program, inputs):
        calls["compile"] += 1
        calls["inputs"] = inputs
        compiled = program.module()
        programs[id(compiled)] = program
        return compiled

    def save(compiled, path, output_format, arg_inputs, dynamic_shapes):
        calls["save"] += 1
        assert output_format == "exported_program"
        torch.export.save(programs[id(compiled)], path)

    module.Input = Input
    module.dynamo = types.SimpleNamespace(compile=dynamo_compile)
    module.save = save
    monkeypatch.setitem(sys.modules, "torch_tensorrt", module)
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name == "torch_tensorrt":
            return importlib.machinery.ModuleSpec("torch_tensorrt", None)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    # This machine has no GPU: accept the CPU as if it were one.
    monkeypatch.setattr(compile_mod, "require_tensorrt", lambda device: None)
    monkeypatch.setenv(cache_mod.CACHE_ENV, str(tmp_path / "cache"))
    return calls


# ---------------------------------------------------------------- folding, deployment copies


@pytest.mark.parametrize("norm", ["frozen", "batch"])
def test_folding_batchnorm_keeps_the_function(norm) -> None:
    net = tiny_net(norm)
    x = images(2)
    with torch.no_grad():
        expected = net(x)
        folded = fold_batchnorm(copy.deepcopy(net))
        got = folded(x)
    norms = sum("Norm" in type(m).__name__ for m in net.modules())
    assert norms == 20  # stem, 8 blocks × 2, 3 downsample branches
    assert sum(isinstance(m, torch.nn.Identity) for m in folded.modules()) == norms
    assert not any("Norm" in type(m).__name__ for m in folded.modules())
    assert_outputs_close(got, expected, atol=1e-4, rtol=1e-4)


def test_prepare_leaves_the_callers_network_alone() -> None:
    net = tiny_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    prepared = prepare(net, "fp16", channels_last=True)
    assert all(p.dtype == torch.float16 for p in prepared.parameters())
    assert not prepared.training and not any(p.requires_grad for p in prepared.parameters())
    after = net.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any("Norm" in type(m).__name__ for m in net.modules())


def test_eager_fp16_is_close_to_fp32() -> None:
    net = tiny_net()
    detector = compile_detector(net, HW, (1, 2, 4), "fp16", "eager")
    assert (detector.backend, detector.precision, detector.reason) == ("eager", "fp16", "requested")
    x = images(3)
    with torch.no_grad():
        got, expected = detector(x), net(x)
    assert got.scmap.dtype == torch.float16
    assert_maps_close(got, expected)
    assert detector.batch_sizes is None  # eager runs any batch as is


def test_network_without_pairwise_head_keeps_its_output_form() -> None:
    torch.manual_seed(0)
    config = DetectorConfig(arch="resnet18", num_parts=3, width=8, head_channels=16, pairwise=False)
    net = DeeperCut(config).eval()
    detector = compile_detector(net, HW, 2, "fp16", "eager")
    with torch.no_grad():
        got = detector(images(2))
    assert got.pairwise.shape == (2, 0, HW[0] // 8, HW[1] // 8)
    assert got.scmap.shape == (2, 3, HW[0] // 8, HW[1] // 8)


# ---------------------------------------------------------------- the fallback chain


def test_auto_on_cpu_is_the_plain_network(caplog, monkeypatch) -> None:
    # Without ONNX Runtime (with it, auto picks it: tests/test_onnxruntime.py).
    monkeypatch.setattr(compile_mod, "onnxruntime_available", lambda: False)
    net = tiny_net()
    with caplog.at_level(logging.INFO, logger="deepercut.tensorrt.compile"):
        detector = compile_detector(net, HW, (1, 2, 4), "fp32", "auto")
    assert detector.forward is net and detector.backend == "eager"
    assert "CPU" in detector.reason
    assert [r.getMessage() for r in caplog.records] == [
        f"detector backend: eager fp32 ({detector.reason})"
    ]


def test_tensorrt_absent_falls_back_to_compile(no_tensorrt, fake_compile, caplog) -> None:
    net = tiny_net()
    with caplog.at_level(logging.INFO, logger="deepercut.tensorrt.compile"):
        detector = compile_detector(
            net, HW, (1, 4, 8), "fp16", "tensorrt", compile_mode="max-autotune"
        )
    assert detector.backend == "compile"
    assert detector.reason.startswith("tensorrt unavailable: BackendUnavailable: torch_tensorrt")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and messages[0].startswith("detector backend: compile fp16")
    assert "torch_tensorrt is not installed" in messages[0]
    (call,) = fake_compile
    assert call["kwargs"] == {"mode": "max-autotune", "dynamic": False}
    assert call["batches"] == [4, 4, 4]  # built and warmed up on the opt batch
    # A batch of 3 is padded to the compiled 4; 9 runs as 4 + 4 + (1 padded to 4).
    with torch.no_grad():
        three, nine = detector(images(3)), detector(images(9))
        eager = net(images(9))
    assert call["batches"][3:] == [4, 4, 4, 4]
    assert three.scmap.shape[0] == 3 and nine.scmap.shape[0] == 9
    assert_maps_close(nine, eager)


def test_compile_failure_falls_back_to_eager(no_tensorrt, monkeypatch) -> None:
    def broken(module, **kwargs):
        raise RuntimeError("inductor exploded\nlong traceback text")

    monkeypatch.setattr(torch, "compile", broken)
    detector = compile_detector(tiny_net(), HW, 2, "fp32", "tensorrt")
    assert detector.backend == "eager"
    assert detector.reason == (
        "tensorrt unavailable: BackendUnavailable: torch_tensorrt is not installed "
        "(pip install -e '.[gpu]'); compile unavailable: RuntimeError: inductor exploded"
    )


def test_tensorrt_build_failure_falls_back(fake_tensorrt, fake_compile, monkeypatch) -> None:
    def failing(program, inputs):
        raise RuntimeError("[TRT] no implementation for ConvTranspose with dynamic H")

    monkeypatch.setattr(sys.modules["torch_tensorrt"].dynamo, "compile", failing)
    # The failure is in TensorRT's compile; skip the (slow, CPU) torch.export before it.
    monkeypatch.setattr(torch.export, "export", lambda *args, **kwargs: None)
    detector = compile_detector(tiny_net(), HW, (1, 2, 4), "fp16", "tensorrt")
    assert detector.backend == "compile"
    assert detector.reason == (
        "tensorrt unavailable: RuntimeError: [TRT] no implementation for ConvTranspose with "
        "dynamic H"
    )


def test_bad_arguments_fail_clearly() -> None:
    net = tiny_net()
    with pytest.raises(ValueError, match="unknown backend"):
        compile_detector(net, HW, 1, "fp16", "onnx")
    with pytest.raises(ValueError, match="unknown precision"):
        compile_detector(net, HW, 1, "int8", "eager")
    with pytest.raises(ValueError, match="multiples of 16"):
        compile_detector(net, (60, 96), 1, "fp16", "eager")
    with pytest.raises(ValueError, match="batch_range"):
        compile_detector(net, HW, (4, 2, 8), "fp16", "eager")


def test_runners_say_what_runs(no_tensorrt) -> None:
    net = tiny_net()
    model = Model(net, MPII14, HW)
    eager = NetworkDetector(model, device="cpu", backend="eager")
    assert (eager.runner.forward, eager.backend, eager.reason) == (net, "eager", "requested")
    half = NetworkDetector(model, device="cpu", backend="eager", precision="fp16")
    assert (half.backend, half.precision) == ("eager", "fp16") and half.runner.forward is not net
    # Without an input size nothing can be compiled; the reason says so.
    built = compile_detector(net, None, 1, "fp32", "compile", device="cpu")
    assert (built.forward, built.backend) == (net, "eager")
    assert built.reason == (
        "compile unavailable: BackendUnavailable: compiled backends need a static input H×W"
    )
    given = custom_runner(net)
    assert (given.backend, given.input_hw) == ("custom", None)


def test_network_detector_on_a_compiled_backend(no_tensorrt, fake_compile) -> None:
    net = tiny_net(num_parts=MPII14.num_parts)
    with torch.no_grad():
        net.scmap_head.bias.fill_(-0.5)  # an untrained net: raise scores so candidates exist
    model = Model(net, MPII14, HW)
    compiled = NetworkDetector(model, device="cpu", backend="compile", batch_size=4)
    eager = NetworkDetector(model, device="cpu", backend="eager", batch_size=4)
    assert (compiled.backend, compiled.precision, eager.backend) == ("compile", "fp32", "eager")
    # Thread-safe mode: the engine calls the detector from its detection thread.
    assert fake_compile[0]["kwargs"]["mode"] == "default"
    rng = np.random.default_rng(0)
    frames = [Frame(i, i / 25, rng.integers(0, 256, (48, 80, 3), np.uint8)) for i in range(3)]
    got, expected = compiled(frames), eager(frames)
    assert fake_compile[0]["batches"][-1] == 4  # three frames padded to the built batch
    assert len(got) == 3 and sum(len(c.xy) for c in expected) > 0
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a.part, b.part)
        np.testing.assert_allclose(a.xy, b.xy, atol=1e-3)


# ---------------------------------------------------------------- engine cache


def test_engine_key_changes_with_what_the_engine_depends_on() -> None:
    net, device = tiny_net(), torch.device("cpu")
    versions = {"torch": "2.13.0", "torch_tensorrt": "2.13.0"}
    base = EngineKey.of(net, HW, (1, 8, 32), "fp16", device, versions)
    assert base == EngineKey.of(tiny_net(), HW, (1, 8, 32), "fp16", device, versions)
    assert len(base.digest) == 64 and base.device == "cpu"
    changed = copy.deepcopy(net)
    with torch.no_grad():
        changed.scmap_head.bias[0] += 1e-3
    variants = [
        EngineKey.of(changed, HW, (1, 8, 32), "fp16", device, versions),
        EngineKey.of(tiny_net(seed=1), HW, (1, 8, 32), "fp16", device, versions),
        EngineKey.of(net, (64, 112), (1, 8, 32), "fp16", device, versions),
        EngineKey.of(net, HW, (1, 8, 16), "fp16", device, versions),
        EngineKey.of(net, HW, (1, 8, 32), "fp32", device, versions),
        EngineKey.of(net, HW, (1, 8, 32), "fp16", device, {**versions, "torch_tensorrt": "2.14"}),
    ]
    digests = {base.digest} | {v.digest for v in variants}
    assert len(digests) == 1 + len(variants)
    gpu = EngineKey(**{**base.__dict__, "device": "NVIDIA H100 80GB HBM3"})
    assert gpu.digest != base.digest


def test_cache_directory_follows_the_environment(monkeypatch, tmp_path) -> None:
    # $DEEPERCUT_CACHE is the cache root; engines live in its ``engines`` folder.
    monkeypatch.setenv(cache_mod.CACHE_ENV, str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x" / "engines"
    assert EngineCache().directory == tmp_path / "x" / "engines"
    monkeypatch.delenv(cache_mod.CACHE_ENV)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert default_cache_dir() == Path.home() / ".cache" / "deepercut" / "engines"


def test_tensorrt_engine_is_cached_and_reloaded(fake_tensorrt, tmp_path) -> None:
    net = tiny_net()
    first = compile_detector(net, HW, (1, 2, 4), "fp16", "tensorrt")
    assert (first.backend, first.reason) == ("tensorrt", "requested")
    assert fake_tensorrt["compile"] == 1 and fake_tensorrt["save"] == 1
    spec = fake_tensorrt["inputs"][0]
    assert (spec["min"], spec["opt"], spec["max"]) == ((1, 3, *HW), (2, 3, *HW), (4, 3, *HW))
    assert first.cache_path is not None
    assert first.cache_path.parent == tmp_path / "cache" / "engines"
    assert (tmp_path / "cache" / "engines").stat().st_mode & 0o777 == 0o700
    note = json.loads(first.cache_path.with_suffix(".json").read_text())
    assert note["input_hw"] == list(HW) and note["precision"] == "fp16"

    second = compile_detector(net, HW, (1, 2, 4), "fp16", "tensorrt")
    assert fake_tensorrt["compile"] == 1  # loaded, not rebuilt
    assert second.cache_path == first.cache_path
    # The reloaded program has a dynamic batch (1 … 4); larger batches are split.
    with torch.no_grad():
        expected = net(images(6))
        for batch in (1, 3, 6):
            got = second(images(6)[:batch])
            assert_maps_close(got, [t[:batch] for t in expected])
    third = compile_detector(net, HW, (1, 2, 4), "fp32", "tensorrt")  # precision: a new key
    assert fake_tensorrt["compile"] == 2 and third.cache_path != first.cache_path


class _Touch:
    """Unpickles as ``open(path, "w")``: a pickle that runs code, leaving a marker file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def craft_engine(saved: bytes, marker: Path, how: str) -> bytes:
    """A copy of a saved engine archive that runs code (creates ``marker``) when
    ``torch.export.load`` reads it, by each of torch's pickle paths."""
    evil = pickle.dumps(_Touch(marker))
    source = zipfile.ZipFile(io.BytesIO(saved))
    root = source.namelist()[0].split("/")[0]
    members = {name: source.read(name) for name in source.namelist()}
    weights_config = f"{root}/data/weights/model_weights_config.json"
    if how == "use_pickle":  # a weight flagged use_pickle: torch.load(weights_only=False)
        config = json.loads(members[weights_config])
        first = next(iter(config["config"].values()))
        first["use_pickle"] = True
        members[weights_config] = json.dumps(config).encode()
        members[f"{root}/data/weights/{first['path_name']}"] = evil
    elif how == "sample_inputs":  # a failed weights_only load is retried with pickle
        members[f"{root}/data/sample_inputs/model.pt"] = evil
    elif how == "opaque":  # an opaque_obj_ constant goes through pickle.loads
        name = f"{root}/data/constants/model_constants_config.json"
        meta = next(iter(json.loads(members[weights_config])["config"].values()))["tensor_meta"]
        entry = {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": False}
        members[name] = json.dumps({"config": {"x": {**entry, "tensor_meta": meta}}}).encode()
        # Padded to whole float32 elements: torch maps every payload as a tensor first.
        members[f"{root}/data/constants/opaque_obj_0"] = evil + b"\0" * (-len(evil) % 8)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize("how", ["use_pickle", "sample_inputs", "opaque"])
def test_cached_engine_that_would_run_code_is_refused(fake_tensorrt, tmp_path, how) -> None:
    net = tiny_net()
    first = compile_detector(net, HW, (1, 2, 2), "fp32", "tensorrt")
    entry = first.cache_path
    crafted = craft_engine(entry.read_bytes(), tmp_path / "proof", how)
    # The crafted archive really runs code through torch.export.load...
    with contextlib.suppress(Exception):
        torch.export.load(io.BytesIO(crafted))
    assert (tmp_path / "proof").exists()
    marker = tmp_path / "pwned"
    crafted = craft_engine(entry.read_bytes(), marker, how)
    cache = EngineCache()

    # Planted without a valid MAC (also where earlier versions looked: <key>.ep).
    entry.write_bytes(crafted)
    entry.with_suffix(".ep").write_bytes(crafted)
    second = compile_detector(net, HW, (1, 2, 2), "fp32", "tensorrt")
    assert not marker.exists()
    assert second.backend == "tensorrt" and fake_tensorrt["compile"] == 2
    assert "cached engine refused" in second.reason and "MAC mismatch" in second.reason
    # ... and the rebuilt engine replaced it, signed.
    assert cache.read(entry.name) is not None

    # Signed with this user's key (so only the content check stands in the way).
    cache.write(entry.name, crafted)
    third = compile_detector(net, HW, (1, 2, 2), "fp32", "tensorrt")
    assert not marker.exists()
    assert third.backend == "tensorrt" and fake_tensorrt["compile"] == 3
    assert "cached engine refused" in third.reason and "UnsafeArchive" not in third.reason
    with torch.no_grad():
        assert_outputs_close(third(images(2)), net(images(2)), atol=1e-4)


def test_engine_cache_others_can_write_is_not_used(fake_tensorrt, tmp_path) -> None:
    net = tiny_net()
    first = compile_detector(net, HW, (1, 2, 2), "fp32", "tensorrt")
    folder = first.cache_path.parent
    marker = tmp_path / "pwned"
    EngineCache().write(
        first.cache_path.name, craft_engine(first.cache_path.read_bytes(), marker, "use_pickle")
    )
    folder.chmod(0o777)  # anyone may plant entries here now
    second = compile_detector(net, HW, (1, 2, 2), "fp32", "tensorrt")
    assert not marker.exists() and second.backend == "tensorrt"
    assert second.cache_path is None and fake_tensorrt["compile"] == 2
    assert "engine cache not used" in second.reason and "mode 0777" in second.reason
    if os.getuid() == 0:  # root can hand the folder to someone else
        folder.chmod(0o700)
        os.chown(folder, 4242, 4242)
        third = compile_detector(net, HW, (1, 2, 2), "fp32", "tensorrt")
        assert "owned by uid 4242" in third.reason and third.cache_path is None
    assert not marker.exists()


# ---------------------------------------------------------------- ONNX export


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_onnx_round_trip_matches_torch(exporter, tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")
    net = tiny_net()
    report = export_onnx(net, tmp_path / "detector.onnx", HW, max_batch=8, exporter=exporter)
    assert report.max_abs_diff is not None and report.max_abs_diff < 1e-3
    assert report.checked.startswith("onnxruntime")
    assert report.outputs == ("scmap", "locref", "pairwise", "intermediate")
    # Dynamic batch: a batch size other than the export's runs and matches.
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    x = images(5, seed=7)
    got = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        expected = net(x)
    assert_outputs_close([torch.from_numpy(g) for g in got], expected, atol=1e-3, rtol=1e-3)


def test_onnx_export_rejects_bad_arguments(tmp_path) -> None:
    with pytest.raises(ValueError, match="multiples of 16"):
        export_onnx(tiny_net(), tmp_path / "x.onnx", (60, 96))
    with pytest.raises(ValueError, match="exporter"):
        export_onnx(tiny_net(), tmp_path / "x.onnx", HW, exporter="tf")


def test_export_cli(tmp_path, capsys) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    config = DetectorConfig(arch="resnet18", num_parts=MPII14.num_parts, width=8, head_channels=16)
    checkpoint = tmp_path / "tiny.pt"
    save_model(checkpoint, Model(DeeperCut(config).eval(), MPII14, (240, 320)))
    parser = argparse.ArgumentParser()
    cli_export.register(parser.add_subparsers(dest="command"))
    out = tmp_path / "out" / "tiny.onnx"
    args = parser.parse_args(
        [
            *("export", "onnx", str(out), "--model", str(checkpoint), "--hw", "64x96"),
            *("--exporter", "torchscript", "--max-batch", "4"),
        ]
    )
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and "opset 18" in printed and "images [1..4, 3, 64, 96]" in printed
    assert "onnxruntime" in printed
    args = parser.parse_args(
        [
            *("export", "tensorrt", str(tmp_path / "t.ep"), "--model", str(checkpoint)),
            *("--batch", "1,4,8", "--device", "cpu"),
        ]
    )
    assert args.batch == (1, 4, 8)
    with pytest.raises(RuntimeError, match=r"torch_tensorrt is not installed|CUDA"):
        args.func(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["export", "tensorrt", "x.ep", "--batch", "8,4,1"])


# ---------------------------------------------------------------- benchmark, imports


def test_gpu_benchmark_runs_on_cpu(tmp_path) -> None:
    command = [sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--device", "cpu"]
    command += ["--quick", "--batches", "1", "--out-dir", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "gpu-cpu.json").read_text())
    rows = report["results"]
    assert [(r["arch"], r["backend"], r["batch"]) for r in rows] == [
        ("small", "eager-fp32", 1),
        ("small", "eager-fp16", 1),
    ]
    assert all(r["fps"] > 0 and r["ms_per_batch"] > 0 for r in rows)
    assert rows[0]["speedup_vs_eager_fp32"] == 1.0
    # FLOPs = 2 × the multiply-adds of every (transposed) convolution, counted here by hooks.
    assert report["gflops_per_frame"]["small"] == pytest.approx(conv_flops(HW) / 1e9, abs=0.01)
    assert report["extraction"][0]["extract_ms"] > 0
    assert (tmp_path / "gpu-cpu.md").read_text().startswith("# Detector on")


def conv_flops(hw: tuple[int, int]) -> float:
    """2 × multiply-adds of the benchmark's ``small`` model at ``hw``, from forward hooks."""
    config = DetectorConfig(arch="resnet18", width=32, head_channels=128)  # benchmarks ARCHS
    net = DeeperCut(config).eval()
    total = []

    def hook(module, inputs, output) -> None:
        k = module.kernel_size[0] * module.kernel_size[1]
        if isinstance(module, torch.nn.ConvTranspose2d):  # every input element × its kernel
            total.append(inputs[0].numel() * module.out_channels // module.groups * k)
        else:  # every output element × its receptive field
            total.append(output.numel() * module.in_channels // module.groups * k)

    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
            module.register_forward_hook(hook)
    with torch.no_grad():
        net(torch.zeros(1, 3, *hw))
    return 2.0 * sum(total)


def test_gpu_benchmark_peak_table() -> None:
    spec = importlib.util.spec_from_file_location("gpu_bench", REPO / "benchmarks" / "gpu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.peak_fp16_tflops("NVIDIA H100 80GB HBM3") == ("H100 SXM", 989.4)
    assert bench.peak_fp16_tflops("NVIDIA H100 PCIe") == ("H100 PCIe", 756.0)
    assert bench.peak_fp16_tflops("NVIDIA H200") == ("H200 SXM", 989.4)
    assert bench.peak_fp16_tflops("NVIDIA A100-SXM4-80GB") == ("A100", 312.0)
    assert bench.peak_fp16_tflops("NVIDIA L4") == ("L4", 121.0)
    assert bench.peak_fp16_tflops("NVIDIA L40S") == ("L40S", 362.1)
    assert bench.peak_fp16_tflops("Some Future GPU") is None
    assert bench.card_slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"


def test_gpu_modules_import_without_av_ray_ortools_msgpack() -> None:
    code = (
        "import sys, deepercut.tensorrt, deepercut.model.net, deepercut.model.candidates, "
        "deepercut.detection; "
        "print([m for m in ('av', 'ray', 'ortools', 'msgpack', 'onnx', 'onnxruntime') "
        "if m in sys.modules])"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    out = run.stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------- CUDA only


@cuda
def test_cuda_backends_match_eager() -> None:
    net = tiny_net().cuda()
    x = images(3).cuda()
    with torch.inference_mode():
        expected = net(x)
        for backend in ("eager", "compile", "auto"):
            detector = compile_detector(net, HW, (1, 3, 4), "fp16", backend)
            assert_maps_close(detector(x), expected)


@cuda
def test_pinned_upload_and_extraction_stay_on_the_gpu() -> None:
    uploader = PinnedUploader(torch.device("cuda"))
    rng = np.random.default_rng(0)
    for batch in (4, 2, 4):  # buffers are reused and resized
        frames = [rng.integers(0, 256, (48, 80, 3), np.uint8) for _ in range(batch)]
        on_gpu = uploader.upload(frames)
        assert on_gpu.device.type == "cuda"
        assert np.array_equal(on_gpu.cpu().numpy(), np.stack(frames))
    net = tiny_net().cuda()
    with torch.inference_mode():
        maps = net.decode(net(images(2).cuda()))
        params = CandidateParams(min_score=0.0)
        found = extract_candidate_tensors(maps.probs, maps.locref, maps.pairwise, 8, params)
    assert {t.device.type for t in (found.xy, found.score, found.offsets, found.valid)} == {"cuda"}


def test_gpu_benchmark_report_math(tmp_path) -> None:
    spec = importlib.util.spec_from_file_location("gpu_bench", REPO / "benchmarks" / "gpu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = [
        {
            "arch": "resnet101",
            "backend": "eager-fp32",
            "batch": 32,
            "fps": 250.0,
            "ms_per_batch": 128.0,
        },
        {
            "arch": "resnet101",
            "backend": "tensorrt-fp16",
            "batch": 32,
            "fps": 1250.0,
            "ms_per_batch": 25.6,
        },
        {"arch": "resnet101", "backend": "compile-fp16", "batch": 32, "skipped": "no GPU"},
    ]
    bench.add_derived(rows, {"resnet101": 143.9}, 989.4)
    assert rows[1]["speedup_vs_eager_fp32"] == 5.0
    assert rows[1]["tflops"] == pytest.approx(1250 * 143.9 / 1e3, abs=0.01)
    assert rows[1]["pct_of_fp16_peak"] == pytest.approx(100 * 179.875 / 989.4, abs=0.01)
    goal = bench.goal_summary(rows, 989.4)
    assert goal["met"] and goal["backend"] == "tensorrt-fp16" and goal["fps"] == 1250.0
    report = {
        "device": "NVIDIA H100 80GB HBM3",
        "card": "H100 SXM",
        "peak_fp16_tflops": 989.4,
        "input_hw": [480, 640],
        "torch": "2.13.0",
        "torch_tensorrt": "2.13.0",
        "compile_mode": "reduce-overhead",
        "date": "2026-01-01",
        "gflops_per_frame": {"resnet101": 143.9},
        "results": rows,
        "extraction": [],
        "goal": goal,
    }
    text = bench.markdown(report)
    assert "| resnet101 | 143.9 | tensorrt-fp16 | 32 | 1,250.0 | 25.60 | 5.00 |" in text
    assert "skipped: no GPU" in text and "— met: 1,250.0 frames/s" in text
    # A later run on the same card re-measuring one row keeps the others.
    (tmp_path / "r.json").write_text(json.dumps(report))
    again = dict(report, results=[dict(rows[0], fps=260.0)], gflops_per_frame={})
    merged = bench.merge(tmp_path / "r.json", again)
    assert [(r["backend"], r.get("fps")) for r in merged["results"]] == [
        ("tensorrt-fp16", 1250.0),
        ("compile-fp16", None),
        ("eager-fp32", 260.0),
    ]


def test_engine_archive_check_admits_torchbind_engines_only(fake_tensorrt) -> None:
    """A saved TensorRT engine is a TorchBind ``custom_obj_`` constant flagged use_pickle
    (restored by TorchScript's unpickler): admitted. The same flag on a tensor is not."""
    saved = compile_detector(tiny_net(), HW, (1, 2, 2), "fp32", "tensorrt").cache_path
    source = zipfile.ZipFile(io.BytesIO(saved.read_bytes()))
    root = source.namelist()[0].split("/")[0]
    members = {name: source.read(name) for name in source.namelist()}
    config_name = f"{root}/data/constants/model_constants_config.json"

    def with_constant(path_name: str) -> bytes:
        entry = {"path_name": path_name, "is_param": False, "use_pickle": True}
        changed = {**members, config_name: json.dumps({"config": {"engine": entry}}).encode()}
        changed[f"{root}/data/constants/{path_name}"] = b"PK"
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            for name, data in changed.items():
                archive.writestr(name, data)
        return out.getvalue()

    safe_load.check_pt2(with_constant("custom_obj_0"))
    with pytest.raises(safe_load.UnsafeArchive, match="stored as a pickle"):
        safe_load.check_pt2(with_constant("tensor_0"))
    with pytest.raises(safe_load.UnsafeArchive, match="not allowed"):
        safe_load.check_pt2(with_constant("opaque_obj_0"))
