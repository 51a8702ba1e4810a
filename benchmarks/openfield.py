"""Openfield video, full frame against dynamic cropping, in one run.

A single-animal DeepLabCut project (one mouse, 480×640, ``m3v1mp4.mp4``) through the engine in
file mode (in-process solver, ``--max-people 1``), once on full frames and once with
``dynamic_crop`` (:mod:`deepercut.detection.dynamic_crop`), alternating ``--rounds`` times so a
busy machine slows both alike. Prints frames/s of both and their ratio, the detector backend,
the crop counts, and how far the cropped run's keypoints are from the full-frame run's (per
part present in both). DeepLabCut 3 analyses this video at 2.31 frames/s on the same machine
(issue 20).

    python benchmarks/openfield.py --model runs/openfield.pt [--max-frames 600] [--margin 32]
        [--threads 2] [--json benchmarks/results/openfield-crop.json]
        [--md benchmarks/results/openfield-crop.md]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from engine import machine

from deepercut.detection.dynamic_crop import CropConfig
from deepercut.engine.pipeline import Engine
from deepercut.types import Poses

# The data folder beside the repository (../shared/data), as the README's commands use it.
VIDEO = Path(__file__).resolve().parents[2] / "shared/data/openfield/videos/m3v1mp4.mp4"
DLC3_FPS = 2.31  # DeepLabCut 3 on this video, this machine (issue 20)


def run_once(engine: Engine, video: Path, max_frames: int | None) -> tuple[dict, list[Poses]]:
    started = time.perf_counter()
    poses = list(engine.run(str(video), max_frames=max_frames))
    wall = time.perf_counter() - started
    stats = engine.stats
    detect = stats.stage_s["detect"]
    out = {
        "frames": stats.frames,
        "fps": round(len(poses) / wall, 2),
        "wall_s": round(wall, 2),
        "detect_s": round(detect, 2),
        "detect_share": round(detect / wall, 3),
        "solve_s": round(stats.stage_s["solve"], 2),
    }
    if stats.crop is not None:
        out["crop"] = stats.crop.to_dict()
    return out, poses


def agreement(full: list[Poses], crop: list[Poses]) -> dict[str, Any]:
    """Keypoint distances (px) of the cropped run to the full-frame run, frame by frame."""
    distances, missing = [], 0
    for a, b in zip(full, crop, strict=True):
        if a.num_people == 0 or b.num_people == 0:
            missing += a.num_people != b.num_people
            continue
        d = np.linalg.norm(a.keypoints[0, :, :2] - b.keypoints[0, :, :2], axis=-1)
        distances.extend(d[np.isfinite(d)])
    d = np.asarray(distances)
    return {
        "keypoints": len(d),
        "median_px": round(float(np.median(d)), 3) if len(d) else None,
        "p95_px": round(float(np.quantile(d, 0.95)), 3) if len(d) else None,
        "over_5px": round(float((d > 5).mean()), 4) if len(d) else None,
        "frames_animal_found_in_one_run_only": int(missing),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="openfield checkpoint")
    parser.add_argument("--video", type=Path, default=VIDEO)
    parser.add_argument("--max-frames", type=int, default=None, help="default: all")
    parser.add_argument("--rounds", type=int, default=1, help="full/crop alternations")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--margin", type=int, default=CropConfig.margin)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--md", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    options: dict[str, Any] = {
        "backend": args.backend,
        "device": "cpu",
        "threads": args.threads,
        "workers": 0,
        "batch_size": args.batch_size,
        "max_people": 1,
    }
    load_start = os.getloadavg()
    config = CropConfig(margin=args.margin)
    rounds: list[dict[str, Any]] = []
    with (
        Engine(args.model, **options) as full,
        Engine(args.model, dynamic_crop=config, **options) as crop,
    ):
        backend = {"full": full.backend, "crop": crop.backend, "reason": full.backend_reason}
        used = crop.detector.policy.config  # type: ignore[union-attr]  # as the engine set it
        for r in range(args.rounds):
            full_stats, full_poses = run_once(full, args.video, args.max_frames)
            crop_stats, crop_poses = run_once(crop, args.video, args.max_frames)
            rounds.append(
                {
                    "full": full_stats,
                    "crop": crop_stats,
                    "speedup": round(crop_stats["fps"] / full_stats["fps"], 2),
                    "agreement": agreement(full_poses, crop_poses),
                }
            )
            print(f"round {r}: {json.dumps(rounds[-1])}", flush=True)
    best = max(rounds, key=lambda x: x["crop"]["fps"])
    result = {
        "video": str(args.video),
        "model": str(args.model),
        "backend": backend,
        "settings": {
            **options,
            "margin": used.margin,
            "sizes": list(used.sizes),
            "crop_group": used.group,  # frames per crop (1: frame by frame)
        },
        "machine": machine(),
        "load_average_start": [round(v, 2) for v in load_start],
        "rounds": rounds,
        "dlc3_fps": DLC3_FPS,
    }
    lines = [
        "# Openfield video: full frame vs dynamic cropping",
        "",
        f"`python benchmarks/openfield.py --model {args.model} --threads {args.threads}"
        + (f" --max-frames {args.max_frames}" if args.max_frames else "")
        + f"` ({result['machine']['cpu']}, {result['machine']['cores']} cores, load average "
        f"at start {result['load_average_start']}, at end {result['machine']['load_average']}; "
        "a shared machine, so absolute numbers are pessimistic, ratios come from one run). "
        f"Backend: {backend['full']} ({backend['reason']}); batch {args.batch_size}, crops of "
        f"{used.group or args.batch_size} frame(s), in-process solver, one animal.",
        "",
        "| round | full fps | crop fps | crop / full | vs DLC 3 (2.31) | detect share full → crop "
        "| cropped / full / fallbacks | keypoint Δ median / p95 px | Δ > 5 px |",
        "|---:|---:|---:|---:|---:|---|---|---|---:|",
    ]
    for i, r in enumerate(rounds):
        c, a = r["crop"]["crop"], r["agreement"]
        lines.append(
            f"| {i} | {r['full']['fps']:.2f} | {r['crop']['fps']:.2f} | {r['speedup']:.2f}× "
            f"| {r['crop']['fps'] / DLC3_FPS:.1f}× "
            f"| {r['full']['detect_share']:.0%} → {r['crop']['detect_share']:.0%} "
            f"| {c['cropped']} / {c['full']} / {c['fallbacks']} "
            f"| {a['median_px']} / {a['p95_px']} | {a['over_5px']:.2%} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    print(f"best round: crop {best['crop']['fps']} fps")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.md:
        args.md.write_text(text)


if __name__ == "__main__":
    main()
