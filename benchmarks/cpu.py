"""The CPU path in one run: detector backends, end-to-end frames/s, live latency.

On the bundled model:

1. **Detector variants** at 480×640, batch 1, ``--threads`` threads: eager FP32 (baseline),
   torch channels-last with folded BatchNorm (oneDNN), ONNX Runtime FP32 and ONNX Runtime
   int8 (static QDQ quantization, per-channel weights, calibrated on synthetic training-seed
   frames): ms/frame (median of interleaved repetitions, so a busy machine slows all alike)
   and candidate PCK@0.2 on held-out synthetic images. A variant is worth keeping only when its
   PCK is within 0.01 of eager FP32.
2. **End to end** (the README demo's engine, file mode, ``examples/data/sample.mp4``): frames/s
   with each backend.
3. **Live** (``realtime`` at the video's 25 fps, the default live settings, ONNX Runtime):
   latency p50/p99 against the time one frame takes to detect and solve, at 480×640 (1 solver
   actor) and 240×320 (in-process), frames dropped.

    python benchmarks/cpu.py [--threads 2] [--pck-images 40] [--max-frames 250]
        [--json benchmarks/results/cpu.json] [--md benchmarks/results/cpu.md]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from engine import VIDEO, machine

from deepercut.detection import NetworkDetector
from deepercut.engine.pipeline import Engine
from deepercut.evaluate.synthetic import synthetic_images, synthetic_pck
from deepercut.model.io import Model, load_model
from deepercut.tensorrt import compile_detector, export_onnx, prepare
from deepercut.tensorrt.compile import CompiledDetector
from deepercut.tensorrt.network import as_detector_output
from deepercut.tensorrt.ort import OrtForward

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
HW = (480, 640)
CALIBRATION_SEED = 0  # training-range seeds; the held-out PCK images use HELD_OUT_SEED
PCK_TOLERANCE = 0.01


def int8_model(model: Model, threads: int, frames: int) -> CompiledDetector:
    """ONNX Runtime static int8 (QDQ, per-channel weights) calibrated on synthetic frames."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self.samples = synthetic_images(frames, CALIBRATION_SEED, HW)

        def get_next(self) -> dict[str, np.ndarray] | None:
            sample = next(self.samples, None)
            if sample is None:
                return None
            image = sample.image.astype(np.float32).transpose(2, 0, 1)[None] / 255.0
            return {"images": np.ascontiguousarray(image)}

    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        export_onnx(model, fp32, HW, max_batch=8, exporter="torchscript", check=False)
        quantize_static(
            str(fp32), str(int8), Frames(), quant_format=QuantFormat.QDQ, per_channel=True
        )
        forward = OrtForward(int8.read_bytes(), threads)
    return CompiledDetector(
        forward,
        "onnxruntime-int8",
        "int8",
        "",
        HW,
        (1, 8, 8),
        batch_sizes=range(1, 9),
        to_output=functools.partial(as_detector_output, has_pairwise=True),
    )


def variants(model: Model, threads: int, calibration: int) -> dict[str, Callable[..., Any]]:
    """Forward functions float32 [B, 3, H, W] → DetectorOutput, by name."""
    net = model.net.eval()
    channels_last = prepare(net, "fp32", channels_last=True, device="cpu")
    ort = compile_detector(net, HW, (1, 8, 8), "fp32", "onnxruntime", threads=threads)
    return {
        "eager fp32": net,
        "channels-last fp32 (oneDNN)": lambda x: channels_last.to_output(channels_last(x)),
        "onnxruntime fp32": ort,
        "onnxruntime int8": int8_model(model, threads, calibration),
    }


def detector_speed(forwards: dict[str, Callable[..., Any]], repeats: int) -> dict[str, float]:
    """Median ms per 480×640 frame (batch 1) of each forward, repetitions interleaved."""
    x = torch.rand(1, 3, *HW, generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {name: [] for name in forwards}
    with torch.inference_mode():
        for forward in forwards.values():
            forward(x)  # warm-up
        for _ in range(repeats):
            for name, forward in forwards.items():
                started = time.perf_counter()
                forward(x)
                times[name].append(1e3 * (time.perf_counter() - started))
    return {name: round(statistics.median(t), 1) for name, t in times.items()}


def detector_accuracy(
    model: Model, forwards: dict[str, Callable[..., Any]], images: int
) -> dict[str, float]:
    """Candidate PCK@0.2 on ``images`` held-out synthetic frames per forward."""
    out = {}
    for name, forward in forwards.items():
        detector = NetworkDetector(model, input_hw=HW, device="cpu", forward=forward)
        with torch.inference_mode():
            out[name] = round(synthetic_pck(detector, count=images).mean, 4)
        print(f"  PCK {name}: {out[name]:.4f}", flush=True)
    return out


def end_to_end(backend: str, max_frames: int | None, threads: int) -> dict[str, Any]:
    """The demo's engine in file mode (1 solver actor, as `deepercut run` on 2 cores)."""
    with Engine(None, workers=1, backend=backend, threads=threads) as engine:
        frames = sum(1 for _ in engine.run(str(VIDEO), max_frames=max_frames))
        stats = engine.stats
    return {
        "backend": engine.backend,
        "frames": frames,
        "fps": round(stats.fps, 2),
        "stage_s": {k: round(v, 2) for k, v in stats.stage_s.items()},
    }


def live(input_hw: tuple[int, int], workers: int, seconds: float, threads: int) -> dict[str, Any]:
    """Live latency on the video played at its frame rate, against one frame's detect+solve."""
    with Engine(None, workers=workers, input_hw=input_hw, threads=threads) as engine:
        solve_ms = []
        for poses in engine.run(str(VIDEO), realtime=True, max_frames=int(25 * seconds)):
            solve_ms.append(float(poses.solver.get("ms", 0.0)))
        stats = engine.stats
    # One frame's detection: the detect stage over the frames detected, in the same run and
    # load (live batches on the CPU are single frames).
    detected = stats.frames - stats.dropped_stale
    detect_ms = 1e3 * stats.stage_s["detect"] / max(1, detected)
    one = detect_ms + statistics.median(solve_ms)
    return {
        "input_hw": list(engine.input_hw),
        "workers": workers,
        "backend": engine.backend,
        "live_batch_size": engine.live_batch_size,
        "frames": stats.frames + stats.dropped_source,
        "solved": stats.solved,
        "dropped": stats.dropped,
        "fps": round(stats.fps, 2),
        "latency_ms": {"p50": round(stats.latency_ms(0.5)), "p99": round(stats.latency_ms(0.99))},
        "detect_ms": round(detect_ms, 1),
        "solve_ms": round(statistics.median(solve_ms), 1),
        "one_frame_ms": round(one, 1),
        "p99_over_one_frame": round(stats.latency_ms(0.99) / one, 2),
    }


def markdown(summary: dict[str, Any]) -> str:
    m, s = summary["machine"], summary["settings"]
    eager = summary["detector"]["eager fp32"]
    lines = [
        "# CPU benchmark",
        "",
        f"`python benchmarks/cpu.py` ({s['threads']} threads; PCK on {s['pck_images']} "
        f"held-out synthetic images; end to end on {s['e2e_frames']} frames of "
        f"`examples/data/sample.mp4`). Machine: {m['cpu']}, {m['cores']} cores; torch "
        f"{m['torch']}, onnxruntime {s['onnxruntime']}; load average at start "
        f"{m['load_average']}, at end {s['load_average_end']} (a shared machine: other jobs "
        "ran meanwhile, so absolute numbers are pessimistic; ratios come from one run).",
        "",
        "Detector, 480×640, batch 1:",
        "",
        f"| variant | ms/frame | vs eager | candidate PCK@0.2 | Δ PCK | within {PCK_TOLERANCE} |",
        "|---|---:|---:|---:|---:|---|",
    ]
    base_pck = summary["pck"]["eager fp32"]
    for name, ms in summary["detector"].items():
        pck = summary["pck"][name]
        keep = abs(pck - base_pck) <= PCK_TOLERANCE
        lines.append(
            f"| {name} | {ms:.1f} | {eager / ms:.2f}× | {pck:.4f} | {pck - base_pck:+.4f} | "
            f"{'yes' if keep else 'no'} |"
        )
    lines += [
        "",
        "End to end (file mode, 1 solver actor, 3-stage solver):",
        "",
        "| backend | frames/s | detect s | solve s |",
        "|---|---:|---:|---:|",
    ]
    for run in summary["end_to_end"]:
        st = run["stage_s"]
        lines.append(f"| {run['backend']} | {run['fps']:.2f} | {st['detect']} | {st['solve']} |")
    lines += [
        "",
        "Live (`realtime` at 25 fps, default live settings):",
        "",
        "| input | workers | backend | live batch | fps | dropped | p50 ms | p99 ms | "
        "detect+solve ms | p99 / one frame |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in summary["live"]:
        h, w = run["input_hw"]
        lines.append(
            f"| {h}×{w} | {run['workers']} | {run['backend']} | {run['live_batch_size']} | "
            f"{run['fps']:.1f} | {run['dropped']}/{run['frames']} | "
            f"{run['latency_ms']['p50']} | {run['latency_ms']['p99']} | "
            f"{run['one_frame_ms']:.0f} | {run['p99_over_one_frame']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--pck-images", type=int, default=40)
    parser.add_argument("--calibration", type=int, default=16, help="int8 calibration frames")
    parser.add_argument("--max-frames", type=int, default=250, help="end-to-end frames")
    parser.add_argument("--live-seconds", type=float, default=8.0)
    parser.add_argument("--json", type=Path, default=RESULTS / "cpu.json")
    parser.add_argument("--md", type=Path, default=RESULTS / "cpu.md")
    args = parser.parse_args(argv)
    import onnxruntime

    torch.set_num_threads(args.threads)
    info = machine()
    model = load_model(None)
    forwards = variants(model, args.threads, args.calibration)
    print("detector ms/frame:", flush=True)
    speed = detector_speed(forwards, args.repeats)
    for name, ms in speed.items():
        print(f"  {name}: {ms:.1f} ms", flush=True)
    pck = detector_accuracy(model, forwards, args.pck_images)
    e2e = []
    for backend in ("eager", "onnxruntime"):
        e2e.append(end_to_end(backend, args.max_frames, args.threads))
        print(f"end to end {backend}: {e2e[-1]['fps']:.2f} frames/s", flush=True)
    live_runs = []
    for hw, workers in (((480, 640), 1), ((240, 320), 0)):
        live_runs.append(live(hw, workers, args.live_seconds, args.threads))
        r = live_runs[-1]
        print(
            f"live {hw}: p50 {r['latency_ms']['p50']} p99 {r['latency_ms']['p99']} ms, "
            f"one frame {r['one_frame_ms']} ms, dropped {r['dropped']}/{r['frames']}",
            flush=True,
        )
    summary = {
        "machine": info,
        "settings": {
            "threads": args.threads,
            "pck_images": args.pck_images,
            "calibration_frames": args.calibration,
            "e2e_frames": e2e[0]["frames"],
            "onnxruntime": onnxruntime.__version__,
            "load_average_end": [round(v, 2) for v in os.getloadavg()],
        },
        "detector": speed,
        "pck": pck,
        "end_to_end": e2e,
        "live": live_runs,
    }
    text = markdown(summary)
    print(text)
    for path, content in ((args.json, json.dumps(summary, indent=1) + "\n"), (args.md, text)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    print(f"wrote {args.json} and {args.md}")


if __name__ == "__main__":
    main()
