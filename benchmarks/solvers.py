"""Solver speed and quality on synthetic MPII-like frames.

Each frame: 1–10 people (``sample_people``), simulated detector candidates with jitter,
misses, near-duplicates, part confusions and false positives (``candidates_from_truth``),
costs from a :class:`PairwiseModel` fitted on separate training frames (``build_problem``,
≤ 150 candidates). Every method solves the same frames, one after another, single-threaded
(CP-SAT ``num_workers=1``, as in the engine's Ray workers).

    python benchmarks/solvers.py [--frames 100] [--seed 0] [--json PATH]
        [--methods deepcut,exact,3stage,2stage,heuristic] [--time-limit 10]

Reports per method the median / p99 wall time, the share of frames proven optimal (for the
staged methods: every stage proven optimal), timeouts, and the objective gap to the best proven
optimum of the frame (``(objective − optimum) / max(1, |optimum|)``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numba
import numpy as np
import ortools
from machine_info import cpu_name

from deepercut.data.synthetic import sample_people
from deepercut.data.synthetic_candidates import candidates_from_truth
from deepercut.model.pairwise import PairwiseModel
from deepercut.skeleton import MPII14
from deepercut.solvers import solve
from deepercut.types import Problem

IMAGE_HW = (720, 1280)
PEOPLE = (1, 10)
#: Expected false positives per person (Poisson): clutter for ~100 candidates per frame.
FALSE_POSITIVES_PER_PERSON = 8.0
#: DeeperCut's reported incremental-solver time per frame (seconds), the speed-up reference.
PAPER_SECONDS = (230.0, 270.0)
METHODS = ("deepcut", "exact", "3stage", "2stage", "heuristic")


def synthetic_frame(rng: np.random.Generator):
    """Candidates and owners of one random frame."""
    num_people = int(rng.integers(PEOPLE[0], PEOPLE[1] + 1))
    keypoints, heights = sample_people(rng, IMAGE_HW, num_people)
    h, w = IMAGE_HW
    inside = (
        (keypoints[..., 0] >= 0)
        & (keypoints[..., 0] < w)
        & (keypoints[..., 1] >= 0)
        & (keypoints[..., 1] < h)
    )
    visible = inside & (rng.random(inside.shape) > 0.1)  # some self-occlusion
    return candidates_from_truth(
        rng,
        keypoints,
        visible,
        heights,
        IMAGE_HW,
        false_positives=FALSE_POSITIVES_PER_PERSON,
    )


def make_problems(num_frames: int, seed: int, train_frames: int = 100) -> list[Problem]:
    """Benchmark problems; the pairwise model is fitted on ``train_frames`` other frames."""
    train_rng = np.random.default_rng([seed, 1])
    model = PairwiseModel.fit(
        [synthetic_frame(train_rng) for _ in range(train_frames)], MPII14.num_parts, seed=seed
    )
    rng = np.random.default_rng([seed, 2])
    return [model.build_problem(synthetic_frame(rng)[0])[0] for _ in range(num_frames)]


def machine() -> dict:
    """Where the numbers come from (load average: the machine is shared)."""
    return {
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "ortools": ortools.__version__,
        "numpy": np.__version__,
        "numba": numba.__version__,
        "load_average": list(os.getloadavg()),
    }


def run(problems: list[Problem], methods: list[str], time_limit: float) -> dict:
    """Solve every problem with every method; per-frame records per method."""
    records: dict[str, list[dict]] = {m: [] for m in methods}
    for i, problem in enumerate(problems):
        for method in methods:
            wall, cpu = time.perf_counter(), time.process_time()
            sol = solve(problem, method, time_limit=time_limit, skeleton=MPII14)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            staged = "stages_optimal" in sol.stats
            records[method].append(
                {
                    "wall_ms": wall * 1e3,
                    "cpu_ms": cpu * 1e3,
                    "objective": sol.objective,
                    "status": sol.status,
                    "optimal": sol.stats["stages_optimal"] if staged else sol.status == "optimal",
                    "people": sol.num_people,
                }
            )
        line = " ".join(f"{m}={records[m][-1]['wall_ms']:.0f}ms" for m in methods)
        print(f"frame {i + 1}/{len(problems)} n={problem.num_candidates} {line}", flush=True)
    return records


def summarise(problems: list[Problem], records: dict, time_limit: float) -> dict:
    """Per-method statistics, gaps to each frame's best proven optimum."""
    methods = list(records)
    # Reference: the best objective among proven-optimal global solves of the frame.
    reference = []
    for i in range(len(problems)):
        proven = [
            records[m][i]["objective"]
            for m in ("exact", "deepcut")
            if m in records and records[m][i]["status"] == "optimal"
        ]
        reference.append(min(proven) if proven else np.nan)
    reference = np.array(reference)
    has_ref = np.isfinite(reference)
    out = {}
    for m in methods:
        wall = np.array([r["wall_ms"] for r in records[m]])
        cpu = np.array([r["cpu_ms"] for r in records[m]])
        obj = np.array([r["objective"] for r in records[m]])
        gap = (obj[has_ref] - reference[has_ref]) / np.maximum(1.0, np.abs(reference[has_ref]))
        out[m] = {
            "frames": len(wall),
            "median_ms": float(np.median(wall)),
            "p99_ms": float(np.percentile(wall, 99)),
            "mean_ms": float(wall.mean()),
            "max_ms": float(wall.max()),
            "median_cpu_ms": float(np.median(cpu)),
            "optimal": float(np.mean([r["optimal"] for r in records[m]])),
            "timeouts": int(sum(r["status"] == "time_limit" for r in records[m])),
            "gap_median": float(np.median(gap)) if len(gap) else None,
            "gap_mean": float(gap.mean()) if len(gap) else None,
            "gap_max": float(gap.max()) if len(gap) else None,
            "frames_with_reference": int(has_ref.sum()),
        }
    if "3stage" in out:
        median_s = out["3stage"]["median_ms"] / 1e3
        out["3stage"]["speedup_vs_paper"] = [p / median_s for p in PAPER_SECONDS]
    sizes = np.array([p.num_candidates for p in problems])
    return {
        "machine": machine(),
        "settings": {
            "image_hw": IMAGE_HW,
            "people": PEOPLE,
            "false_positives_per_person": FALSE_POSITIVES_PER_PERSON,
            "time_limit_s": time_limit,
            "num_workers": 1,
            "candidates_median": float(np.median(sizes)),
            "candidates_max": int(sizes.max()),
        },
        "methods": out,
    }


def table(summary: dict) -> str:
    """Markdown table of the per-method summary."""
    lines = [
        "| method | median ms | p99 ms | median CPU ms | proven optimal | timeouts "
        "| gap median | gap max |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m, s in summary["methods"].items():
        gm = "–" if s["gap_median"] is None else f"{100 * s['gap_median']:.3f} %"
        gx = "–" if s["gap_max"] is None else f"{100 * s['gap_max']:.3f} %"
        lines.append(
            f"| {m} | {s['median_ms']:.1f} | {s['p99_ms']:.1f} | {s['median_cpu_ms']:.1f} | "
            f"{100 * s['optimal']:.0f} % | {s['timeouts']} | {gm} | {gx} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--time-limit", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    problems = make_problems(args.frames, args.seed)
    load_before = list(os.getloadavg())
    records = run(problems, methods, args.time_limit)
    summary = summarise(problems, records, args.time_limit)
    summary["settings"]["seed"] = args.seed
    summary["machine"]["load_average_before"] = load_before
    print(table(summary))
    if "3stage" in summary["methods"]:
        lo, hi = summary["methods"]["3stage"]["speedup_vs_paper"]
        print(f"3stage speed-up over the paper's 230–270 s/frame: {lo:,.0f}–{hi:,.0f}×")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**summary, "records": records}, indent=1))


if __name__ == "__main__":
    main()
