"""GPU detector throughput: frames/s per architecture, batch and backend, and % of peak.

Needs only torch with CUDA (torch-tensorrt is used when importable; no PyAV, Ray or data
files). For each architecture at 480×640 (random weights: speed does not depend on them) and
each batch size it times the detector on every backend:

- ``eager-fp32``: the network as is (the baseline every speed-up is relative to);
- ``eager-fp16``: BatchNorm folded, FP16, channels-last;
- ``compile-fp16``: the same through ``torch.compile`` (``--compile-mode``, default
  ``reduce-overhead``: CUDA graphs), built per batch size;
- ``tensorrt-fp16``: torch-tensorrt, one engine per architecture with a dynamic batch
  (1 … largest batch, optimised for the largest), cached on disk (``$DEEPERCUT_CACHE``).

It also counts the model's FLOPs (``torch.utils.flop_counter`` on the meta device), reports
achieved TFLOP/s and the share of the card's dense FP16 tensor-core peak, and times candidate
extraction on the GPU (with and without the copy of the compact candidates to the host).
Results go to ``benchmarks/results/gpu-<card>.json`` and ``.md``; rows of an earlier run on the
same card are kept unless re-measured, so a session can run architectures one at a time:

    python benchmarks/gpu.py                                  # everything (~15-25 min on H100)
    python benchmarks/gpu.py --archs resnet101 --batches 32   # the goal row only
    python benchmarks/gpu.py --device cpu --quick --out-dir /tmp/gpu-smoke   # CPU smoke test
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import re
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

# Shared with the CPU benchmark (the same architectures, timing and device description).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from detector import ARCHS, device_description, time_call

from deepercut.model.candidates import CandidateParams, extract_candidate_tensors
from deepercut.model.net import STRIDE, DeeperCut, DetectorConfig
from deepercut.tensorrt.compile import compile_detector
from deepercut.tensorrt.network import BackendUnavailable
from deepercut.tensorrt.trt_module import require_tensorrt

#: Backend name → (compile_detector backend, precision).
BACKENDS = {
    "eager-fp32": ("eager", "fp32"),
    "eager-fp16": ("eager", "fp16"),
    "compile-fp16": ("compile", "fp16"),
    "tensorrt-fp16": ("tensorrt", "fp16"),
}
#: Dense (no sparsity) FP16 tensor-core peak TFLOP/s from NVIDIA's data sheets, matched against
#: ``torch.cuda.get_device_name`` in order (more specific names first).
PEAK_FP16_TFLOPS: list[tuple[str, str, float]] = [
    (r"H200 NVL", "H200 NVL", 835.0),
    (r"H200", "H200 SXM", 989.4),
    (r"H100 NVL", "H100 NVL", 835.0),
    (r"H100 PCIe", "H100 PCIe", 756.0),
    (r"H100", "H100 SXM", 989.4),
    (r"A100", "A100", 312.0),
    (r"L40S", "L40S", 362.1),
    (r"\bL4\b", "L4", 121.0),
    (r"\bA10\b", "A10", 125.0),
    (r"V100", "V100 SXM2", 125.0),
    (r"\bT4\b", "T4", 65.0),
]
GOAL_ARCH, GOAL_FPS = "resnet101", 1000.0


def peak_fp16_tflops(name: str) -> tuple[str, float] | None:
    """(card, dense FP16 tensor TFLOP/s) for a CUDA device name, or ``None`` if unknown."""
    for pattern, card, tflops in PEAK_FP16_TFLOPS:
        if re.search(pattern, name):
            return card, tflops
    return None


def flops_per_frame(config: DetectorConfig, hw: tuple[int, int]) -> float:
    """FLOPs (2 × multiply-adds of convolutions and matmuls) of one forward at ``hw``."""
    with torch.device("meta"):  # shapes only: instant, no memory
        net = DeeperCut(config).eval()
        images = torch.empty(1, 3, *hw)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(images)
    return float(counter.get_total_flops())


def card_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def library_version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def time_backend(
    net: DeeperCut,
    backend: str,
    batches: list[int],
    hw: tuple[int, int],
    device: torch.device,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    """Rows for one architecture on one backend (a skipped row when it cannot be built)."""
    kind, precision = BACKENDS[backend]
    largest = max(batches)
    plan: list[tuple[tuple[int, int, int], list[int]]]
    if kind == "compile":  # specialised per batch size
        plan = [((b, b, b), [b]) for b in batches]
    else:  # one build serves every batch (TensorRT: dynamic batch 1 … largest)
        plan = [((1, largest, largest), batches)]
    if kind == "tensorrt":
        try:  # checked first: a fallback would only time another backend under this name
            require_tensorrt(device)
        except BackendUnavailable as exc:
            print(f"  {backend}: skipped ({exc})")
            return [{"backend": backend, "batch": b, "skipped": str(exc)} for b in batches]
    rows = []
    for batch_range, sizes in plan:
        started = time.perf_counter()
        detector = compile_detector(
            net,
            hw,
            batch_range,
            precision,
            kind,
            device=device,
            compile_mode=args.compile_mode,
        )
        build_s = time.perf_counter() - started
        if detector.backend != kind:
            rows += [
                {"backend": backend, "batch": b, "skipped": detector.reason} for b in sizes
            ]
            print(f"  {backend}: skipped ({detector.reason})")
            continue
        for batch in sizes:
            with torch.inference_mode():
                images = torch.rand(batch, 3, *hw, device=device)
                times = time_call(partial(detector, images), device, args.seconds)
            per_batch = statistics.median(times)
            rows.append(
                {
                    "backend": backend,
                    "batch": batch,
                    "fps": round(batch / per_batch, 2),
                    "ms_per_batch": round(per_batch * 1e3, 3),
                    "runs": len(times),
                    "build_s": round(build_s, 1),
                    "batch_range": list(batch_range),
                }
            )
        del detector
        _release(device)
    return rows


def time_extraction(
    net: DeeperCut, batch: int, hw: tuple[int, int], device: torch.device, seconds: float
) -> dict[str, Any]:
    """Candidate extraction of one batch on ``device``: on-device and including the copy of
    the compact candidates to the host."""
    with torch.inference_mode():
        maps = net.decode(net(torch.rand(batch, 3, *hw, device=device)))
        # Random weights give flat maps; a trained model's peaks are sparse, so use sparse ones.
        probs = torch.rand_like(maps.probs).pow(8)
        run = partial(
            extract_candidate_tensors, probs, maps.locref, maps.pairwise, STRIDE, CandidateParams()
        )
        on_device = time_call(run, device, seconds)
        to_host = time_call(lambda: run().to_candidates(), device, seconds)
        assert run().xy.device.type == device.type  # extraction stays on the maps' device
    return {
        "batch": batch,
        "extract_ms": round(statistics.median(on_device) * 1e3, 3),
        "extract_to_host_ms": round(statistics.median(to_host) * 1e3, 3),
    }


def _release(device: torch.device) -> None:
    torch._dynamo.reset()  # drops compiled graphs and their CUDA-graph memory pools
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def add_derived(rows: list[dict[str, Any]], gflops: dict[str, float], peak: float | None) -> None:
    """Achieved TFLOP/s, % of peak and the speed-up over eager FP32 of the same arch and batch
    (both measured in this run)."""
    base = {(r["arch"], r["batch"]): r["fps"] for r in rows if r.get("backend") == "eager-fp32"}
    for row in rows:
        if "fps" not in row:
            continue
        tflops = row["fps"] * gflops[row["arch"]] / 1e3
        row["tflops"] = round(tflops, 2)
        row["pct_of_fp16_peak"] = round(100 * tflops / peak, 2) if peak else None
        ref = base.get((row["arch"], row["batch"]))
        row["speedup_vs_eager_fp32"] = round(row["fps"] / ref, 2) if ref else None


def goal_summary(rows: list[dict[str, Any]], peak: float | None) -> dict[str, Any] | None:
    """The best FP16 R101 row at the largest measured batch against the 1,000 frames/s goal."""
    fp16 = [r for r in rows if r["arch"] == GOAL_ARCH and "fps" in r and "fp16" in r["backend"]]
    if not fp16:
        return None
    best = max(fp16, key=lambda r: r["fps"])
    return {
        "arch": GOAL_ARCH,
        "backend": best["backend"],
        "batch": best["batch"],
        "fps": best["fps"],
        "goal_fps": GOAL_FPS,
        "met": best["fps"] >= GOAL_FPS,
        "speedup_vs_eager_fp32": best.get("speedup_vs_eager_fp32"),
        "tflops": best["tflops"],
        "pct_of_fp16_peak": best["pct_of_fp16_peak"] if peak else None,
    }


def merge(path: Path, report: dict[str, Any]) -> dict[str, Any]:
    """Keep rows of an earlier report on the same device that this run did not re-measure."""
    if not path.is_file():
        return report
    old = json.loads(path.read_text())
    if old.get("device") != report["device"] or old.get("input_hw") != report["input_hw"]:
        return report
    keys = {"results": ("arch", "backend", "batch"), "extraction": ("arch", "batch")}
    for table, key in keys.items():
        seen = {tuple(r[k] for k in key) for r in report[table]}
        kept = [r for r in old.get(table, []) if tuple(r[k] for k in key) not in seen]
        report[table] = kept + report[table]
    report["gflops_per_frame"] = {**old.get("gflops_per_frame", {}), **report["gflops_per_frame"]}
    report["goal"] = goal_summary(report["results"], report["peak_fp16_tflops"])
    return report


def markdown(report: dict[str, Any]) -> str:
    peak = report["peak_fp16_tflops"]
    lines = [
        f"# Detector on {report['device']}",
        "",
        f"Input {report['input_hw'][0]}×{report['input_hw'][1]}, random weights; torch "
        f"{report['torch']}, torch-tensorrt {report['torch_tensorrt'] or 'not installed'}; "
        f"compile mode {report['compile_mode']}; {report['date']}. Peak: "
        + (f"{peak:g} dense FP16 tensor TFLOP/s ({report['card']})." if peak else "unknown."),
        "",
        "| arch | GFLOP/frame | backend | batch | frames/s | ms/batch | × eager fp32 "
        "| TFLOP/s | % of FP16 peak |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        gflops = report["gflops_per_frame"][r["arch"]]
        if "fps" not in r:
            lines.append(
                f"| {r['arch']} | {gflops:.1f} | {r['backend']} | {r['batch']} "
                f"| skipped: {r['skipped']} | | | | |"
            )
            continue
        ratio = r.get("speedup_vs_eager_fp32")
        pct = r.get("pct_of_fp16_peak")
        lines.append(
            f"| {r['arch']} | {gflops:.1f} | {r['backend']} | {r['batch']} | {r['fps']:,.1f} "
            f"| {r['ms_per_batch']:.2f} | {f'{ratio:.2f}' if ratio else '–'} "
            f"| {r['tflops']:.1f} | {f'{pct:.1f}' if pct is not None else '–'} |"
        )
    lines += [
        "",
        "Candidate extraction of a batch on the device (sparse random score maps):",
        "",
        "| arch | batch | on device ms | incl. copy to host ms |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['arch']} | {r['batch']} | {r['extract_ms']:.2f} | {r['extract_to_host_ms']:.2f} |"
        for r in report["extraction"]
    ]
    goal = report.get("goal")
    if goal:
        lines += ["", goal_line(goal)]
    return "\n".join(lines) + "\n"


def goal_line(goal: dict[str, Any]) -> str:
    ratio = goal["speedup_vs_eager_fp32"]
    pct = goal["pct_of_fp16_peak"]
    return (
        f"Goal: ResNet-101 FP16 ≥ {goal['goal_fps']:,.0f} frames/s batched — "
        f"{'met' if goal['met'] else 'NOT met'}: {goal['fps']:,.1f} frames/s "
        f"({goal['backend']}, batch {goal['batch']}), "
        f"{f'{ratio:.2f}×' if ratio else 'no'} eager FP32 of the same run, "
        f"{goal['tflops']:.1f} TFLOP/s"
        + (f" = {pct:.1f} % of the card's dense FP16 peak." if pct is not None else ".")
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--archs", default=",".join(ARCHS))
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--hw", default="480x640", help="input HxW (multiples of 16)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per configuration")
    parser.add_argument("--compile-mode", default="reduce-overhead")
    parser.add_argument("--peak-tflops", type=float, default=None, help="override the peak")
    parser.add_argument("--out-dir", default=str(Path(__file__).parent / "results"))
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: small model, 64x96, batches 1,2, eager backends, 0.05 s each",
    )
    args = parser.parse_args(argv)
    if args.quick:  # smaller defaults; options given explicitly still win
        quick = {
            "archs": "small",
            "batches": "1,2",
            "hw": "64x96",
            "seconds": 0.05,
            "backends": "eager-fp32,eager-fp16",
        }
        for name, value in quick.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or --device cpu --quick")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels
    h, w = (int(v) for v in args.hw.split("x"))
    archs = args.archs.split(",")
    batches = [int(b) for b in args.batches.split(",")]
    backends = args.backends.split(",")
    unknown = [a for a in archs if a not in ARCHS] + [b for b in backends if b not in BACKENDS]
    if unknown:
        raise SystemExit(f"unknown arch/backend {unknown}; archs {list(ARCHS)}, {list(BACKENDS)}")
    name = device_description(device)
    known = peak_fp16_tflops(name) if device.type == "cuda" else None
    peak = args.peak_tflops or (known[1] if known else None)
    print(f"device: {name}; input {h}x{w}; torch {torch.__version__}; peak FP16 {peak} TFLOP/s")

    rows: list[dict[str, Any]] = []
    extraction: list[dict[str, Any]] = []
    gflops: dict[str, float] = {}
    for arch in archs:
        gflops[arch] = round(flops_per_frame(ARCHS[arch], (h, w)) / 1e9, 2)
        print(f"{arch}: {gflops[arch]:.1f} GFLOP/frame")
        net = DeeperCut(ARCHS[arch]).eval().to(device)
        for backend in backends:
            for row in time_backend(net, backend, batches, (h, w), device, args):
                rows.append({"arch": arch, **row})
                if "fps" in row:
                    print(
                        f"  {backend:<14} batch {row['batch']:>3}: {row['fps']:>9.1f} frames/s "
                        f"({row['ms_per_batch']:.2f} ms/batch)"
                    )
        for batch in batches:
            extraction.append(
                {"arch": arch, **time_extraction(net, batch, (h, w), device, args.seconds)}
            )
        del net
        _release(device)
    add_derived(rows, gflops, peak)
    report = {
        "device": name,
        "card": known[0] if known else None,
        "peak_fp16_tflops": peak,
        "input_hw": [h, w],
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "torch_tensorrt": library_version("torch_tensorrt"),
        "compile_mode": args.compile_mode,
        "date": time.strftime("%Y-%m-%d"),
        "gflops_per_frame": gflops,
        "results": rows,
        "extraction": extraction,
        "goal": goal_summary(rows, peak),
    }
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = "gpu-" + (card_slug(name) if device.type == "cuda" else "cpu")
    report = merge(out / f"{stem}.json", report)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"{stem}.md").write_text(markdown(report))
    if report["goal"]:
        print(goal_line(report["goal"]))
    print(f"wrote {out / stem}.json and .md")
    return report


if __name__ == "__main__":
    main()
