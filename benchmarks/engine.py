"""End-to-end engine speed: fps, latency and the share of time per stage, per input and workers.

Runs :class:`deepercut.engine.pipeline.Engine` on ``examples/data/sample.mp4`` (640×480,
25 fps, four people) in file mode, once per network input size and worker count, and reports
frames per second, p50/p99 latency (frame decoded → poses handed back), the driver's time per
stage (decode wait, detect, solve or wait for the solvers, write), the solvers' summed CPU
time, the solver statuses and people per frame. Ray start-up is excluded (the pool starts
before timing).

    python benchmarks/engine.py [--model PATH] [--input-sizes model,336x448]
        [--workers 0,1,2] [--max-frames N] [--solver 3stage] [--batch-size 8]
        [--json benchmarks/results/engine.json] [--md benchmarks/results/engine.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import ray
import torch
from machine_info import cpu_name

from deepercut.cli.args import parse_hw
from deepercut.engine.pipeline import Engine

ROOT = Path(__file__).resolve().parent.parent
VIDEO = ROOT / "examples" / "data" / "sample.mp4"
RESULTS = ROOT / "benchmarks" / "results"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    memory_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory_gb = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": memory_gb,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "ray": ray.__version__,
        "load_average": [round(v, 2) for v in os.getloadavg()]
        if hasattr(os, "getloadavg")
        else None,
    }


def bench(
    args: argparse.Namespace, input_hw: tuple[int, int] | None, workers: int
) -> dict[str, Any]:
    """One run of the video; the pool (and Ray) start before the clock does."""
    setup = time.perf_counter()
    with Engine(
        args.model,
        solver=args.solver,
        workers=workers,
        batch_size=args.batch_size,
        time_limit=args.time_limit,
        input_hw=input_hw,
    ) as engine:
        hw = engine.input_hw
        setup = time.perf_counter() - setup
        frames = sum(1 for _ in engine.run(str(args.video), max_frames=args.max_frames))
        stats = engine.stats
        result = stats.to_dict()
    total = sum(stats.stage_s.values()) or 1.0
    result.update(
        input_hw=list(hw),
        workers=workers,
        frames=frames,
        setup_s=round(setup, 2),
        backend=engine.backend,
        stage_share={k: round(v / total, 3) for k, v in stats.stage_s.items()},
    )
    print(
        f"input {hw[0]}x{hw[1]}, workers {workers}: {stats.fps:.2f} fps, "
        f"latency p50 {stats.latency_ms(0.5):.0f} ms "
        f"p99 {stats.latency_ms(0.99):.0f} ms, {stats.people_per_frame:.2f} people/frame",
        flush=True,
    )
    return result


def table(runs: list[dict[str, Any]]) -> str:
    stages = list(runs[0]["stage_share"])
    lines = [
        "| input | workers | fps | p50 latency ms | p99 latency ms | "
        + " | ".join(f"{s} %" for s in stages)
        + " | solver CPU s | people/frame | solver statuses |",
        "|---|---:|---:|---:|---:|" + "---:|" * len(stages) + "---:|---:|---|",
    ]
    for r in runs:
        shares = " | ".join(f"{100 * r['stage_share'][s]:.0f}" for s in stages)
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(r["statuses"].items()))
        lines.append(
            f"| {r['input_hw'][0]}×{r['input_hw'][1]} | {r['workers']} | {r['fps']:.2f} | "
            f"{r['latency_ms']['p50']:.0f} | "
            f"{r['latency_ms']['p99']:.0f} | {shares} | {r['solver_cpu_s']:.1f} | "
            f"{r['people_per_frame']:.2f} | {statuses} |"
        )
    return "\n".join(lines)


def markdown(summary: dict[str, Any]) -> str:
    m, s = summary["machine"], summary["settings"]
    return "\n".join(
        [
            "# Engine benchmark",
            "",
            f"`python benchmarks/engine.py` on `{s['video']}` ({s['frames']} frames), model "
            f"`{s['model']}`, solver `{s['solver']}` (time limit {s['time_limit']} s), batch "
            f"size {s['batch_size']}, detector backend `{summary['runs'][0]['backend']}`.",
            "",
            f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, GPU "
            f"{m['gpu'] or 'none'}; {m['platform']}; Python {m['python']}, torch {m['torch']} "
            f"({m['torch_threads']} threads), Ray {m['ray']}; load average at start "
            f"{m['load_average']}." + (f" Note: {s['note']}" if s["note"] else ""),
            "",
            table(summary["runs"]),
            "",
            "Stage shares are of the stages' summed time. The driver's detection thread: "
            "*decode* = waiting for decoded frames, *detect* = the network and candidate "
            "extraction; its main thread (overlapping): *solve* = solving in-process (0 "
            "workers) or waiting for the Ray actors, *write* = the consumer. Latency: frame "
            "received from the decoder → poses handed back (file mode: includes filling a "
            "batch). Solver CPU: per-frame solve time summed over frames and workers.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=VIDEO)
    parser.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    parser.add_argument(
        "--input-sizes",
        default="model",
        help="comma-separated network inputs HxW; 'model' = the model's own (default)",
    )
    parser.add_argument("--workers", default="0,1,2", help="comma-separated worker counts")
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--solver", default="3stage")
    parser.add_argument("--time-limit", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", type=Path, default=RESULTS / "engine.json")
    parser.add_argument("--md", type=Path, default=RESULTS / "engine.md")
    parser.add_argument("--note", default="", help="conditions worth recording (other load)")
    args = parser.parse_args(argv)
    info = machine()
    sizes = [None if s == "model" else parse_hw(s) for s in args.input_sizes.split(",")]
    runs = [bench(args, hw, int(w)) for hw in sizes for w in args.workers.split(",")]
    summary = {
        "machine": info,
        "settings": {
            "video": str(
                args.video.relative_to(ROOT) if args.video.is_relative_to(ROOT) else args.video
            ),
            "frames": runs[0]["frames"],
            "model": args.model or "bundled",
            "solver": args.solver,
            "time_limit": args.time_limit,
            "batch_size": args.batch_size,
            "note": args.note,
        },
        "runs": runs,
    }
    print(table(runs))
    for path, text in ((args.json, json.dumps(summary, indent=1)), (args.md, markdown(summary))):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    print(f"wrote {args.json} and {args.md}")


if __name__ == "__main__":
    main()
