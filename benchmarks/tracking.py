"""Tracking quality: the online tracker vs the temporal multicut on synthetic videos.

Videos: ``walking_tracks`` (people walking at different depths, paths crossing, occluding
each other, turning at the borders; visibility from the rendered person map), 2–10 people,
480×640, 25 fps. Each frame's candidates are simulated from the truth (``candidates_from_truth``
with its default noise: jitter, 5 % misses, duplicates, confusions, 1–8 false positives), so
no detector runs (``--noise hard``: more jitter, misses, duplicates and clutter, see
:data:`NOISE`). The pairwise model is fitted on separate videos (seeds 900+), and so is the
temporal model (seeds 800+, same noise; ``--save-temporal`` writes it: the bundled
``deepercut/assets/temporal.npz`` is the default-noise one), unless ``--temporal-model``
names one.

With ``--detector``, the videos are rendered and the candidates come from the bundled model
(``deepercut/assets/default.pt``, eager on the CPU) with its own pairwise model; the temporal
model stays the one fitted on simulated candidates.

Modes, on the same candidates: ``online`` = the per-frame ``3stage`` solve +
:class:`~deepercut.tracking.PoseTracker`; ``temporal`` = the joint temporal multicut
(:class:`~deepercut.solvers.temporal.TemporalFrameSolver`, ``K`` earlier frames, exact).
Metrics (:mod:`deepercut.evaluate.mot`): MOTA, IDF1, ID switches per 100 frames, and the
median time per frame (solve + tracking).

    python benchmarks/tracking.py [--people 2,4,6,8,10] [--frames 100] [--seeds 1]
        [--temporal 3] [--json benchmarks/results/tracking.json]
        [--markdown benchmarks/results/tracking.md] [--save-temporal PATH]
        [--noise default|hard] [--detector]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from deepercut.data.synthetic import generate_video
from deepercut.data.synthetic_tracks import (
    TrackFrame,
    simulated_sequence,
    temporal_training_data,
    walking_tracks,
)
from deepercut.detection import NetworkDetector
from deepercut.evaluate.mot import MotAccumulator, MotSummary, combine
from deepercut.model.io import load_model
from deepercut.model.pairwise import PairwiseModel
from deepercut.model.temporal_costs import TemporalModel
from deepercut.skeleton import MPII14
from deepercut.solvers.frame_solver import FrameSolver
from deepercut.solvers.temporal import TemporalFrameSolver
from deepercut.tracking import PoseTracker
from deepercut.types import Candidates, Frame

IMAGE_HW = (480, 640)
#: ``candidates_from_truth`` settings: its defaults, and a harder detector (more jitter,
#: misses, duplicates and clutter).
NOISE = {
    "default": {},
    "hard": {
        "jitter": 0.05,
        "miss_rate": 0.2,
        "duplicate_rate": 0.1,
        "confusion_rate": 0.06,
        "false_positives": 3.0,
    },
}


def fit_pairwise(noise: dict) -> PairwiseModel:
    """A pairwise model on simulated candidates of separate walking videos."""
    samples = []
    for seed in (900, 901, 902):
        frames = list(walking_tracks(seed, 5, 12, IMAGE_HW))
        samples += list(simulated_sequence(frames, IMAGE_HW, seed, **noise))
    return PairwiseModel.fit(samples, MPII14.num_parts, pairs_per_image=1500)


def detected_video(
    seed: int, people: int, num_frames: int, detector: NetworkDetector
) -> tuple[list[TrackFrame], list[Candidates]]:
    """A rendered walking video's truth and the bundled detector's candidates."""
    frames, cands = [], []
    video = generate_video(seed, IMAGE_HW, people, num_frames, 25.0, (100.0, 260.0))
    for f in video:
        frames.append(TrackFrame(f.index, f.t, f.keypoints, f.visible, f.ids, f.heights))
        cands += detector([Frame(f.index, f.t, f.image)])
    return frames, cands


def evaluate(
    mode: str,
    frames: list[TrackFrame],
    candidates: list[Candidates],
    solver: FrameSolver,
    temporal: TemporalModel,
    k: int,
) -> tuple[MotSummary, list[float]]:
    acc = MotAccumulator()
    tracker = PoseTracker()
    joint = TemporalFrameSolver(solver, k, temporal)
    times = []
    for f, cands in zip(frames, candidates, strict=True):
        started = time.perf_counter()
        if mode == "online":
            poses = tracker.update(solver(f.index, f.t, cands))
        else:
            poses = joint(f.index, f.t, cands)
        times.append(time.perf_counter() - started)
        acc.update(f.ids, f.keypoints, f.visible, f.heights, poses.track_id, poses.keypoints)
    return acc.summary(), times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--people", default="2,4,6,8,10")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=1, help="videos per people count")
    ap.add_argument("--temporal", type=int, default=3, help="K of the temporal multicut")
    ap.add_argument("--temporal-model", default=None, help="use this model instead of fitting")
    ap.add_argument("--save-temporal", default=None, help="write the fitted temporal model")
    ap.add_argument("--noise", choices=sorted(NOISE), default="default", help="of candidates")
    ap.add_argument(
        "--detector",
        action="store_true",
        help="candidates from the bundled model on rendered frames instead of simulated ones",
    )
    ap.add_argument("--json", default=None)
    ap.add_argument("--markdown", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    pairwise = fit_pairwise(NOISE[args.noise])
    if args.temporal_model:
        temporal = TemporalModel.load(args.temporal_model)
    else:
        data = temporal_training_data(
            range(800, 806), num_people=5, num_frames=40, **NOISE[args.noise]
        )
        temporal = TemporalModel.fit(data, MPII14.num_parts, args.temporal)
    if args.save_temporal:
        temporal.save(args.save_temporal)
    detector = None
    if args.detector:
        model = load_model()
        detector = NetworkDetector(model, device="cpu", backend="eager", batch_size=1)
        pairwise = model.pairwise_model()
    solver = FrameSolver(pairwise, MPII14, method="3stage", time_limit=1.0)
    print(f"models ready in {time.perf_counter() - started:.0f} s", file=sys.stderr)

    rows: list[dict] = []
    pooled: dict[str, list[MotSummary]] = {"online": [], "temporal": []}
    times: dict[str, list[float]] = {"online": [], "temporal": []}
    for people in [int(x) for x in args.people.split(",")]:
        for s in range(args.seeds):
            seed = 100 * people + s
            if detector is None:
                frames = list(walking_tracks(seed, people, args.frames, IMAGE_HW))
                sequence = simulated_sequence(frames, IMAGE_HW, seed, **NOISE[args.noise])
                cands = [c for c, _ in sequence]
            else:
                frames, cands = detected_video(seed, people, args.frames, detector)
            for mode in ("online", "temporal"):
                summary, t = evaluate(mode, frames, cands, solver, temporal, args.temporal)
                pooled[mode].append(summary)
                times[mode] += t
                rows.append(
                    {
                        "people": people,
                        "seed": seed,
                        "mode": mode,
                        "ms_median": round(1e3 * float(np.median(t)), 2),
                        **summary.to_dict(),
                    }
                )
                print(
                    f"{people:2d} people seed {seed} {mode:8s} MOTA {summary.mota:.3f} "
                    f"IDF1 {summary.idf1:.3f} IDSW/100 {summary.switches_per_100:.1f} "
                    f"{1e3 * np.median(t):.1f} ms",
                    file=sys.stderr,
                )
    overall = {
        mode: {
            **combine(pooled[mode]).to_dict(),
            "ms_median": round(1e3 * float(np.median(times[mode])), 2),
        }
        for mode in pooled
    }
    result = {
        "settings": {
            "people": args.people,
            "frames": args.frames,
            "seeds": args.seeds,
            "temporal_k": args.temporal,
            "image_hw": list(IMAGE_HW),
            "candidates": "bundled detector" if args.detector else f"simulated ({args.noise})",
            "noise": args.noise,
            "solver": "3stage (online) / exact joint (temporal)",
        },
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
        },
        "wall_s": round(time.perf_counter() - started, 1),
        "overall": overall,
        "rows": rows,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    table = _markdown(result)
    if args.markdown:
        Path(args.markdown).write_text(table)
    print(table)
    return 0


def _markdown(result: dict) -> str:
    lines = [
        "| people | mode | MOTA | IDF1 | ID switches / 100 frames | FP | FN | ms / frame |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['people']} | {r['mode']} | {r['mota']:.3f} | {r['idf1']:.3f} | "
            f"{r['switches_per_100']:.1f} | {r['fp']} | {r['fn']} | {r['ms_median']:.1f} |"
        )
    for mode, o in result["overall"].items():
        lines.append(
            f"| all | **{mode}** | **{o['mota']:.3f}** | **{o['idf1']:.3f}** | "
            f"**{o['switches_per_100']:.1f}** | {o['fp']} | {o['fn']} | {o['ms_median']:.1f} |"
        )
    s = result["settings"]
    head = (
        f"# Tracking benchmark\n\n`python benchmarks/tracking.py --people {s['people']} "
        f"--frames {s['frames']} --seeds {s['seeds']} --temporal {s['temporal_k']}"
        f"{' --detector' if s['candidates'] == 'bundled detector' else ''}"
        f"{' --noise hard' if s['noise'] == 'hard' else ''}`: "
        f"synthetic walking videos {s['image_hw'][1]}×{s['image_hw'][0]}, {s['candidates']} "
        f"candidates; online = 3stage + PoseTracker, temporal = joint temporal multicut "
        f"(K = {s['temporal_k']}). Wall time {result['wall_s']} s on "
        f"{result['machine']['platform']} ({result['machine']['cpus']} CPUs, shared).\n\n"
    )
    return head + "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
