"""Solver speed and quality on synthetic MPII-like frames.

Each frame: 1–10 people (``sample_people``), simulated detector candidates with jitter,
misses, near-duplicates, part confusions and false positives (``candidates_from_truth``),
costs from a :class:`PairwiseModel` fitted on separate training frames (``build_problem``,
≤ 150 candidates). Every method solves the same frames, one after another, single-threaded
(CP-SAT ``num_workers=1``, as in the engine's Ray workers).

    python benchmarks/solvers.py [--frames 100] [--seed 0] [--json PATH]
        [--methods deepcut,exact,3stage,2stage,heuristic] [--time-limit 10]
    python benchmarks/solvers.py --hard [--frames 30] [--seed 0] [--json PATH] [--md PATH]
    python benchmarks/solvers.py --hard --baseline OLD_CHECKOUT [--repeats 3] [--json PATH]

``--baseline``: old against new code in ONE run, so that both see the same load: two worker
processes (``deepercut`` imported from ``OLD_CHECKOUT`` and from this checkout) solve every
frame alternately, each solve repeated ``--repeats`` times and its lowest CPU time kept.

``--hard``: dense frames from an independent generator (:func:`hard_frame`: a stated noise
model, no fitted pairwise model), solved by ``exact``, ``3stage`` and ``heuristic``.

Reports per method the median / p90 / p99 wall time, the share of frames proven optimal (for the
staged methods: every stage proven optimal), timeouts, and the objective gap to the best proven
optimum of the frame (``(objective − optimum) / max(1, |optimum|)``).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import subprocess
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
HARD_METHODS = ("exact", "3stage", "heuristic")


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


#: Hard frames (``--hard``): an independent generator, no fitted model (see ``hard_frame``).
HARD_HW = (480, 640)
HARD_HEIGHT = (100.0, 300.0)
HARD_RADIUS = 400.0
HARD_FALSE_POSITIVE_SHARE = 0.20
HARD_DUPLICATE_RATE = 0.12
HARD_MAX_CANDIDATES = 150
#: Noise model: a candidate's detection log-odds and a pair's same-person log-odds are Gaussian
#: around a mean set by the truth (costs are minus the log-odds).
HARD_UNARY_MEAN = {"true": 2.0, "duplicate": 1.0, "false": -1.0}
HARD_PAIR_MEAN = {"same": 2.0, "other": -2.0}
HARD_SIGMA = 1.5
#: MPII14 parts of an upright person of height 1 (x right, y down, origin at the hips).
HARD_TEMPLATE = np.array(
    [
        [-0.08, 0.5], [-0.08, 0.25], [-0.08, 0.0], [0.08, 0.0], [0.08, 0.25], [0.08, 0.5],
        [-0.2, 0.0], [-0.2, -0.15], [-0.12, -0.3], [0.12, -0.3], [0.2, -0.15], [0.2, 0.0],
        [0.0, -0.35], [0.0, -0.5],
    ]
)  # fmt: skip


def hard_frame(rng: np.random.Generator) -> Problem:
    """One dense frame, independent of the repo's data generators and pairwise model.

    1–10 people of 100–300 px in 640×480 (an upright template, each part jittered by 6 % of
    the height, 10 % of parts missed), each detection duplicated with probability 12 % (2 %
    of the height away, same person and part), false positives at uniform positions with
    random parts making 20 % of the candidates; at most 150 candidates (highest detection
    log-odds first). Every pair of candidates within 400 px is an edge. Costs are minus
    log-odds drawn from N(mean, 1.5²): detection means +2 (true), +1 (duplicate), −1 (false
    positive); pair means +2 for two candidates of one person, −2 otherwise (so the pair
    evidence points the wrong way for 9 % of pairs). One label per candidate.
    """
    h, w = HARD_HW
    num_people = int(rng.integers(PEOPLE[0], PEOPLE[1] + 1))
    xy, part, owner, kind = [], [], [], []

    def add(point: np.ndarray, p: int, who: int, what: str) -> None:
        xy.append(point)
        part.append(p)
        owner.append(who)
        kind.append(what)

    for person in range(num_people):
        height = rng.uniform(*HARD_HEIGHT)
        centre = rng.uniform([0, 0], [w, h])
        pts = centre + height * (HARD_TEMPLATE + rng.normal(0, 0.06, HARD_TEMPLATE.shape))
        for p in np.flatnonzero(rng.random(len(pts)) > 0.1).tolist():
            add(pts[p], p, person, "true")
            if rng.random() < HARD_DUPLICATE_RATE:
                add(pts[p] + rng.normal(0, 0.02 * height, 2), p, person, "duplicate")
    num_false = round(len(xy) * HARD_FALSE_POSITIVE_SHARE / (1 - HARD_FALSE_POSITIVE_SHARE))
    for k in range(num_false):  # a false positive belongs to nobody: owner −1 − k
        add(rng.uniform([0, 0], [w, h]), int(rng.integers(len(HARD_TEMPLATE))), -1 - k, "false")
    xy, part, owner = np.array(xy), np.array(part), np.array(owner)
    logit = np.array([HARD_UNARY_MEAN[k] for k in kind]) + rng.normal(0, HARD_SIGMA, len(kind))
    keep = np.argsort(-logit, kind="stable")[:HARD_MAX_CANDIDATES]
    xy, part, owner, logit = xy[keep], part[keep], owner[keep], logit[keep]
    n, num_parts = len(xy), len(HARD_TEMPLATE)
    i, j = np.triu_indices(n, 1)
    near = np.linalg.norm(xy[i] - xy[j], axis=1) <= HARD_RADIUS
    i, j = i[near], j[near]
    same = owner[i] == owner[j]
    pair_logit = np.where(same, HARD_PAIR_MEAN["same"], HARD_PAIR_MEAN["other"])
    pair_logit = pair_logit + rng.normal(0, HARD_SIGMA, len(i))
    unary = np.full((n, num_parts), np.inf)
    unary[np.arange(n), part] = -logit
    pair_cost = np.broadcast_to(-pair_logit[:, None, None], (len(i), num_parts, num_parts))
    return Problem(unary=unary, edges=np.stack([i, j], 1), pair_cost=pair_cost.copy())


def hard_settings() -> dict:
    """The generator's parameters, for the results file."""
    return {
        "generator": "hard_frame",
        "image_hw": HARD_HW,
        "people": PEOPLE,
        "height_px": HARD_HEIGHT,
        "edge_radius_px": HARD_RADIUS,
        "false_positive_share": HARD_FALSE_POSITIVE_SHARE,
        "duplicate_rate": HARD_DUPLICATE_RATE,
        "max_candidates": HARD_MAX_CANDIDATES,
        "unary_logit_mean": HARD_UNARY_MEAN,
        "pair_logit_mean": HARD_PAIR_MEAN,
        "logit_sigma": HARD_SIGMA,
    }


def make_hard_problems(num_frames: int, seed: int) -> list[Problem]:
    """``num_frames`` frames of :func:`hard_frame`."""
    rng = np.random.default_rng([seed, 3])
    return [hard_frame(rng) for _ in range(num_frames)]


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


def serve() -> None:
    """Worker of ``--baseline``: solve pickled ``(problem, method, time_limit, repeats)``
    requests from stdin with the ``deepercut`` on ``PYTHONPATH``; answer each with the record
    of the solve of least CPU time."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            problem, method, time_limit, repeats = pickle.load(stdin)
        except EOFError:
            return
        best = None
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            sol = solve(problem, method, time_limit=time_limit, skeleton=MPII14)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if best is None or cpu * 1e3 < best["cpu_ms"]:
                staged = "stages_optimal" in sol.stats
                best = {
                    "wall_ms": wall * 1e3,
                    "cpu_ms": cpu * 1e3,
                    "objective": sol.objective,
                    "status": sol.status,
                    "optimal": sol.stats["stages_optimal"] if staged else sol.status == "optimal",
                }
        pickle.dump(best, stdout)
        stdout.flush()


def compare(
    problems: list[Problem], methods: list[str], time_limit: float, old_root: Path, repeats: int
) -> dict:
    """Old (``old_root``) against this checkout's solvers, frame by frame alternately."""
    here = Path(__file__).resolve().parent
    roots = {"old": old_root.resolve(), "new": here.parent}
    workers = {
        name: subprocess.Popen(
            [sys.executable, str(here / "solvers.py"), "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
        for name, root in roots.items()
    }
    records = {name: {m: [] for m in methods} for name in roots}
    for i, problem in enumerate(problems):
        order = ("old", "new") if i % 2 == 0 else ("new", "old")
        for method in methods:
            for name in order:
                worker = workers[name]
                pickle.dump((problem, method, time_limit, repeats), worker.stdin)
                worker.stdin.flush()
                records[name][method].append(pickle.load(worker.stdout))
        line = " ".join(
            f"{m}={records['old'][m][-1]['cpu_ms']:.0f}->{records['new'][m][-1]['cpu_ms']:.0f}ms"
            for m in methods
        )
        print(f"frame {i + 1}/{len(problems)} n={problem.num_candidates} {line}", flush=True)
    for worker in workers.values():
        worker.stdin.close()
        worker.wait()
    return records


def compare_table(records: dict) -> str:
    """Markdown table: CPU ms old → new (median, p90, p99), per-frame ratio, same objective."""
    lines = [
        "| method | CPU ms median old → new | p90 | p99 | per-frame new/old (median) "
        "| proven optimal | same objective |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in records["new"]:
        old, new = (np.array([r["cpu_ms"] for r in records[k][m]]) for k in ("old", "new"))
        same = sum(
            abs(a["objective"] - b["objective"]) <= 1e-6 * max(1.0, abs(a["objective"]))
            for a, b in zip(records["old"][m], records["new"][m], strict=True)
        )
        opt = [100 * np.mean([r["optimal"] for r in records[k][m]]) for k in ("old", "new")]
        proven = "–" if m == "heuristic" else f"{opt[0]:.0f} % → {opt[1]:.0f} %"
        cells = [f"{np.percentile(old, q):.1f} → {np.percentile(new, q):.1f}" for q in (50, 90, 99)]
        lines.append(
            f"| {m} | {' | '.join(cells)} | {np.median(new / old):.2f} | {proven} | "
            f"{same}/{len(new)} |"
        )
    return "\n".join(lines)


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
            "p90_ms": float(np.percentile(wall, 90)),
            "p99_ms": float(np.percentile(wall, 99)),
            "mean_ms": float(wall.mean()),
            "max_ms": float(wall.max()),
            "median_cpu_ms": float(np.median(cpu)),
            "p90_cpu_ms": float(np.percentile(cpu, 90)),
            "p99_cpu_ms": float(np.percentile(cpu, 99)),
            "optimal": float(np.mean([r["optimal"] for r in records[m]])),
            "timeouts": int(sum(r["status"] == "time_limit" for r in records[m])),
            "gap_median": float(np.median(gap)) if len(gap) else None,
            "gap_mean": float(gap.mean()) if len(gap) else None,
            "gap_p90": float(np.percentile(gap, 90)) if len(gap) else None,
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
        "| method | median ms | p90 ms | p99 ms | CPU ms: median | p90 | p99 | proven optimal "
        "| timeouts | gap median | gap p90 | gap max |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m, s in summary["methods"].items():
        gm = "–" if s["gap_median"] is None else f"{100 * s['gap_median']:.3f} %"
        g9 = "–" if s["gap_p90"] is None else f"{100 * s['gap_p90']:.3f} %"
        gx = "–" if s["gap_max"] is None else f"{100 * s['gap_max']:.3f} %"
        lines.append(
            f"| {m} | {s['median_ms']:.1f} | {s['p90_ms']:.1f} | {s['p99_ms']:.1f} | "
            f"{s['median_cpu_ms']:.1f} | {s['p90_cpu_ms']:.1f} | {s['p99_cpu_ms']:.1f} | "
            f"{100 * s['optimal']:.0f} % | {s['timeouts']} | "
            f"{gm} | {g9} | {gx} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hard", action="store_true", help="dense frames (see hard_frame)")
    parser.add_argument("--frames", type=int, default=None, help="default 100, --hard 30")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default=None, help="default: all (--hard: 3)")
    parser.add_argument("--time-limit", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--md", type=Path, default=None, help="also write the table here")
    parser.add_argument("--baseline", type=Path, default=None, help="old checkout to compare")
    parser.add_argument("--repeats", type=int, default=3, help="--baseline: solves per frame")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return
    default_methods = HARD_METHODS if args.hard else METHODS
    methods = [m.strip() for m in (args.methods or ",".join(default_methods)).split(",")]
    methods = [m for m in methods if m]
    frames = args.frames or (30 if args.hard else 100)
    load_before = list(os.getloadavg())
    if args.hard:
        problems = make_hard_problems(frames, args.seed)
    else:
        problems = make_problems(frames, args.seed)
    if args.baseline:
        records = compare(problems, methods, args.time_limit, args.baseline, args.repeats)
        print(compare_table(records))
        out = {"machine": machine(), "seed": args.seed, "repeats": args.repeats}
        out["machine"]["load_average_before"] = load_before
        if args.md:
            args.md.write_text(compare_table(records) + "\n")
        if args.json:
            args.json.write_text(json.dumps({**out, "records": records}, indent=1))
        return
    records = run(problems, methods, args.time_limit)
    summary = summarise(problems, records, args.time_limit)
    summary["settings"]["seed"] = args.seed
    if args.hard:
        del summary["settings"]["false_positives_per_person"]
        summary["settings"].update(hard_settings())
    summary["machine"]["load_average_before"] = load_before
    print(table(summary))
    if "3stage" in summary["methods"]:
        lo, hi = summary["methods"]["3stage"]["speedup_vs_paper"]
        print(f"3stage speed-up over the paper's 230–270 s/frame: {lo:,.0f}–{hi:,.0f}×")
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(table(summary) + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**summary, "records": records}, indent=1))


if __name__ == "__main__":
    main()
