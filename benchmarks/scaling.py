"""Scaling: solver throughput against Ray workers and nodes, the engine's serial share, and
what that extrapolates to on 16 and 64 cores.

Three measurements:

1. **Workers** (one machine): the solver pool alone, fed precomputed candidates (simulated from
   the truth of ``examples/data/sample.mp4``: 4 people, clutter, MPII-like), in file mode, for
   ``--workers`` (default 0,1,2,4: 0 = in-process). Frames per second, and parallel efficiency
   ``fps(N) / (N · fps(1))`` against one Ray worker.
2. **Nodes**: the same on a local two-node Ray cluster on loopback, ``ray start --head
   --num-cpus=1 --resources='{"head": 1}'`` plus ``ray start --address=... --num-cpus=1
   --resources='{"node2": 1}'``, with 1 and 2 workers (one per node: each node has one CPU).
   Each node runs in the foreground under its own ``ray start --block`` process and is stopped by
   terminating exactly that process (a ``ray stop`` would also stop other Ray instances on the
   machine), also on failure.
3. **Serial share**: the whole engine (the bundled model at ``--input-size``) with one solver
   worker: the time per frame in the driver's detection thread (decode + detect, serial) and in
   the solvers (parallel), for Amdahl's law.

Writes ``--json``, ``--md`` (tables and the extrapolation) and ``--png`` (throughput and
efficiency plots; matplotlib, a benchmark-only dependency).

    python benchmarks/scaling.py [--frames 60] [--workers 0,1,2,4] [--solver 3stage]
        [--engine-frames 60] [--input-size 240x320] [--no-nodes]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

# A throwaway cluster needs a token; set before Ray is imported (the local Rays use it too).
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))

import ray
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import machine  # benchmarks/engine.py: what it ran on

from deepercut.cli.args import parse_hw
from deepercut.data.synthetic import load_truth
from deepercut.data.synthetic_candidates import candidates_from_truth
from deepercut.engine.pipeline import Engine
from deepercut.engine.pool import SolverPool
from deepercut.model.io import load_model
from deepercut.solvers.frame_solver import FrameSolver
from deepercut.types import Candidates

ROOT = Path(__file__).resolve().parent.parent
VIDEO = ROOT / "examples" / "data" / "sample.mp4"
TRUTH = ROOT / "examples" / "data" / "sample_truth.json"
RESULTS = ROOT / "benchmarks" / "results"


def workload(frames: int) -> list[tuple[int, float, Candidates]]:
    """Simulated detector output for the sample video's frames (seeded: the same every run)."""
    truth = load_truth(TRUTH)
    width, height = truth["image_size"]
    out = []
    for t in truth["frames"][:frames]:
        rng = np.random.default_rng([0, t["i"]])
        cands, _ = candidates_from_truth(
            rng, t["keypoints"], t["visible"], t["heights"], (height, width)
        )
        out.append((t["i"], t["i"] / truth["fps"], cands))
    return out


def pool_run(
    solver: FrameSolver, frames: list, workers: int, address: str | None = None
) -> dict[str, Any]:
    """Frames per second of a solver pool (actors started before the clock)."""
    with SolverPool(solver, workers=workers, ray_address=address) as pool:
        if workers:  # warm up every actor (imports, first solve) outside the timing
            ray.get([a.solve.remote(*frames[0]) for a in pool.actors])
        began = time.perf_counter()
        done = 0
        for index, pts, candidates in frames:
            done += len(pool.submit(index, pts, candidates))
        done += sum(1 for _ in pool.drain())
        wall = time.perf_counter() - began
        stats = pool.stats
    assert done == len(frames)
    return {
        "workers": workers,
        "frames": done,
        "wall_s": round(wall, 3),
        "fps": round(done / wall, 3),
        "solve_ms_per_frame": round(1e3 * stats.solve_s / done, 2),
        "driver_wait_s": round(stats.wait_s, 3),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def two_nodes() -> Iterator[str]:
    """A head and a second node, one CPU each, on loopback; yields the address. Each node is
    its own ``ray start --block`` process, terminated at the end (exactly these nodes)."""
    if shutil.which("ray") is None:
        raise RuntimeError("the ray CLI is not installed")
    port = free_port()
    common = ["--num-cpus=1", "--block", "--disable-usage-stats"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    nodes = [
        subprocess.Popen(
            ["ray", "start", "--head", f"--port={port}", "--include-dashboard=false",
             "--resources={\"head\": 1}", *common],
            **quiet,
        )
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the Ray head did not start") from None
                time.sleep(0.2)
        nodes.append(
            subprocess.Popen(
                ["ray", "start", f"--address=127.0.0.1:{port}",
                 "--resources={\"node2\": 1}", *common],
                **quiet,
            )
        )  # fmt: skip
        address = f"127.0.0.1:{port}"
        ray.init(address=address, logging_level="WARNING", log_to_driver=False)
        try:
            while len([n for n in ray.nodes() if n["Alive"]]) < 2:
                if time.monotonic() > deadline:
                    raise RuntimeError("the second Ray node did not join")
                time.sleep(0.5)
            yield address
        finally:
            ray.shutdown()
    finally:
        for node in reversed(nodes):
            node.terminate()
        for node in nodes:
            try:
                node.wait(30)
            except subprocess.TimeoutExpired:
                node.kill()


def node_runs(solver: FrameSolver, frames: list) -> dict[str, Any]:
    """1 and 2 workers on the two-node cluster; where the actors ran."""
    with two_nodes() as address:
        nodes = [
            {"node": n["NodeManagerAddress"], "resources": n["Resources"]}
            for n in ray.nodes()
            if n["Alive"]
        ]
        runs = []
        for workers in (1, 2):
            run = pool_run(solver, frames, workers, address)
            run["nodes"] = 2
            runs.append(run)
            print(f"2 nodes, {workers} worker(s): {run['fps']:.2f} fps", flush=True)
    return {"nodes": nodes, "runs": runs}


def engine_split(args: argparse.Namespace) -> dict[str, Any]:
    """Per-frame time of the serial part (decode + detect in the driver) and of solving."""
    with Engine(
        load_model(args.model),
        solver=args.solver,
        workers=1,
        batch_size=args.batch_size,
        input_hw=args.input_size,
    ) as engine:
        frames = sum(1 for _ in engine.run(str(VIDEO), max_frames=args.engine_frames))
        stats = engine.stats
    serial = (stats.stage_s["decode"] + stats.stage_s["detect"]) / frames
    parallel = stats.solver_cpu_s / frames
    return {
        "frames": frames,
        "input_hw": list(args.input_size),
        "fps": round(stats.fps, 3),
        "serial_ms_per_frame": round(1e3 * serial, 2),
        "solve_ms_per_frame": round(1e3 * parallel, 2),
        "serial_fraction": round(serial / (serial + parallel), 4),
    }


def amdahl(serial_fraction: float, n: int) -> float:
    return 1.0 / (serial_fraction + (1.0 - serial_fraction) / n)


def extrapolate(split: dict[str, Any], pool: list[dict[str, Any]]) -> dict[str, Any]:
    """Amdahl's speed-up and the pipeline's throughput bound at 16 and 64 cores.

    The engine is a pipeline: throughput is capped by its slowest stage, the serial driver
    (decode + detect at ``serial`` s/frame) or the solvers (``solve`` s/frame spread over
    ``N − 1`` cores, one core kept for the driver), whichever is slower. Amdahl's law with the
    measured serial fraction gives the speed-up over one core when stages do not overlap.
    """
    serial = split["serial_ms_per_frame"] / 1e3
    solve = split["solve_ms_per_frame"] / 1e3
    s = split["serial_fraction"]
    one = next((r for r in pool if r["workers"] == 1), None)
    # The driver's cost per frame in the pool (submit, collect, pickling): 1/fps with one
    # worker minus that worker's solve time, an upper bound on the dispatch overhead.
    overhead = max(0.0, 1 / one["fps"] - one["solve_ms_per_frame"] / 1e3) if one else 0.0
    table = {}
    for cores in (2, 4, 16, 64):
        workers = cores - 1
        bound = 1 / max(serial, solve / workers, overhead or 1e-9)
        table[cores] = {
            "amdahl_speedup": round(amdahl(s, cores), 2),
            "pipeline_fps_bound": round(bound, 2),
            "solver_only_fps_bound": round(min(workers / solve, 1 / (overhead or 1e-9)), 1),
        }
    return {"dispatch_overhead_ms": round(1e3 * overhead, 2), "cores": table}


def markdown(result: dict[str, Any]) -> str:
    m, s = result["machine"], result["settings"]
    lines = [
        "# Scaling benchmark",
        "",
        f"`python benchmarks/scaling.py {s['argv']}`. Machine: {m['cpu']}, {m['cores']} cores, "
        f"{m['memory_gb']} GB; Python {m['python']}, torch {m['torch']}, Ray {m['ray']}; load "
        f"average at start {m['load_average']}." + (f" {s['note']}" if s["note"] else ""),
        "",
        f"## Solver pool against workers ({s['frames']} frames, `{s['solver']}`, simulated "
        "candidates of the sample video)",
        "",
        "| nodes | workers | frames/s | solve ms/frame | parallel efficiency vs 1 worker |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in result["workers"] + result.get("nodes", {}).get("runs", []):
        eff = r.get("efficiency")
        lines.append(
            f"| {r.get('nodes', 1)} | {r['workers']} | {r['fps']:.2f} | "
            f"{r['solve_ms_per_frame']:.1f} | {'–' if eff is None else f'{eff:.2f}'} |"
        )
    sp = result["engine"]
    ex = result["extrapolation"]
    lines += [
        "",
        f"## Serial share of the engine (bundled model at {sp['input_hw'][0]}×"
        f"{sp['input_hw'][1]}, 1 solver worker, {sp['frames']} frames)",
        "",
        f"Driver (decode + detect, serial): {sp['serial_ms_per_frame']:.1f} ms/frame; solving "
        f"(parallel): {sp['solve_ms_per_frame']:.1f} ms/frame; serial fraction "
        f"s = {sp['serial_fraction']:.3f}; end-to-end {sp['fps']:.2f} frames/s. Dispatch "
        f"overhead per frame in the driver ≤ {ex['dispatch_overhead_ms']:.1f} ms.",
        "",
        "| cores | Amdahl speed-up 1/(s+(1−s)/N) | pipeline bound, frames/s | solver-only bound |",
        "|---:|---:|---:|---:|",
    ]
    for cores, row in ex["cores"].items():
        lines.append(
            f"| {cores} | {row['amdahl_speedup']:.2f} | {row['pipeline_fps_bound']:.2f} | "
            f"{row['solver_only_fps_bound']:.1f} |"
        )
    lines += [
        "",
        "Pipeline bound: 1 / max(serial, solve/(N−1), dispatch overhead): the driver's "
        "detection thread and the solvers overlap, so the slowest stage sets the pace. "
        "Solver-only bound: the same with detection elsewhere (GPU or detector actors).",
        "",
    ]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    ray_runs = [r for r in result["workers"] if r["workers"] > 0]
    w = [r["workers"] for r in ray_runs]
    a.plot(w, [r["fps"] for r in ray_runs], "o-", label="1 node")
    local = next((r for r in result["workers"] if r["workers"] == 0), None)
    if local:
        a.axhline(local["fps"], color="grey", ls=":", label="in-process")
    nodes = result.get("nodes", {}).get("runs", [])
    if nodes:
        a.plot([r["workers"] for r in nodes], [r["fps"] for r in nodes], "s-", label="2 nodes")
    base = ray_runs[0]["fps"] / ray_runs[0]["workers"]
    a.plot(w, [base * x for x in w], "k--", lw=0.8, label="linear")
    ticks = sorted({*w, *(r["workers"] for r in nodes)})
    a.set_xticks(ticks)
    b.set_xticks(ticks)
    a.set_xlabel("solver workers")
    a.set_ylabel("frames / s")
    a.set_title("solver pool throughput")
    a.legend()
    b.plot(w, [r["efficiency"] for r in ray_runs], "o-", label="1 node")
    if nodes:
        b.plot([r["workers"] for r in nodes], [r["efficiency"] for r in nodes], "s-",
               label="2 nodes")  # fmt: skip
    b.axhline(1.0, color="k", ls="--", lw=0.8)
    b.set_ylim(0, 1.2)
    b.set_xlabel("solver workers")
    b.set_ylabel("parallel efficiency")
    b.set_title(f"{result['machine']['cores']} cores")
    b.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=60, help="frames per pool run")
    parser.add_argument("--workers", default="0,1,2,4", help="comma-separated worker counts")
    parser.add_argument("--solver", default="3stage")
    parser.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    parser.add_argument("--engine-frames", type=int, default=60)
    parser.add_argument("--input-size", type=parse_hw, default=(240, 320), help="network HxW")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--no-nodes", action="store_true", help="skip the two-node cluster")
    parser.add_argument("--json", type=Path, default=RESULTS / "scaling.json")
    parser.add_argument("--md", type=Path, default=RESULTS / "scaling.md")
    parser.add_argument("--png", type=Path, default=RESULTS / "scaling.png")
    parser.add_argument("--note", default="", help="conditions worth recording (other load)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    info = machine()
    frames = workload(args.frames)
    model = load_model(args.model)
    solver = FrameSolver(model.pairwise_model(), model.skeleton, method=args.solver)
    worker_runs = []
    for workers in (int(w) for w in args.workers.split(",")):
        # A local Ray per count, sized to it (oversubscribed beyond the machine's cores).
        if workers:
            ray.init(address="local", num_cpus=workers, include_dashboard=False,
                     logging_level="WARNING", log_to_driver=False)  # fmt: skip
        try:
            run = pool_run(solver, frames, workers)
        finally:
            if workers:
                ray.shutdown()
        worker_runs.append(run)
        print(f"1 node, {workers} worker(s): {run['fps']:.2f} fps", flush=True)
    one = next((r["fps"] for r in worker_runs if r["workers"] == 1), None)
    nodes: dict[str, Any] = {}
    if not args.no_nodes:
        nodes = node_runs(solver, frames)
    for r in worker_runs + nodes.get("runs", []):
        # Against one Ray worker on one node: fps(N) / (N · fps(1)).
        ratio = r["fps"] / (r["workers"] * one) if one and r["workers"] else None
        r["efficiency"] = None if ratio is None else round(ratio, 3)
    split = engine_split(args)
    print(f"engine: serial fraction {split['serial_fraction']:.3f}", flush=True)
    result = {
        "machine": info,
        "settings": {
            "argv": " ".join(sys.argv[1:] if argv is None else argv),
            "frames": len(frames),
            "solver": args.solver,
            "note": args.note,
        },
        "workers": worker_runs,
        "nodes": nodes,
        "engine": split,
        "extrapolation": extrapolate(split, worker_runs),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    args.md.write_text(markdown(result))
    plot(result, args.png)
    print(markdown(result))
    print(f"wrote {args.json}, {args.md} and {args.png}")


if __name__ == "__main__":
    main()
