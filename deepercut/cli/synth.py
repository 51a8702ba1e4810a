"""``deepercut synth``: synthetic multi-person test data (a video or an image set + truth JSON)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from deepercut.data.synthetic import (
    generate_image,
    generate_video,
    truth_document,
    truth_frame,
    write_png,
    write_video,
)


def parse_size(text: str) -> tuple[int, int]:
    """``"640x480"`` (W×H, as video sizes are written) → ``(H, W)`` = ``(480, 640)``."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, e.g. 640x480, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return h, w


def parse_range(text: str) -> tuple[int, int]:
    """``"1-10"`` → ``(1, 10)``; ``"3"`` → ``(3, 3)``."""
    try:
        lo, _, hi = text.partition("-")
        bounds = (int(lo), int(hi or lo))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or LO-HI, got {text!r}") from None
    if not 0 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"invalid range {text!r}")
    return bounds


def parse_heights(text: str) -> tuple[float, float]:
    """``"150-320"`` → ``(150.0, 320.0)`` (person heights in px)."""
    try:
        lo, _, hi = text.partition("-")
        bounds = (float(lo), float(hi or lo))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO-HI pixels, got {text!r}") from None
    if not 0 < bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"invalid height range {text!r}")
    return bounds


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``synth video`` and ``synth images``."""
    synth = subparsers.add_parser("synth", help="write synthetic people with ground truth")
    kinds = synth.add_subparsers(dest="synth_kind", required=True)

    video = kinds.add_parser("video", help="an H.264 MP4 of people walking + truth JSON")
    video.add_argument("--people", type=int, default=3, help="people in the video")
    video.add_argument("--frames", type=int, default=250)
    video.add_argument("--fps", type=float, default=25.0)
    video.add_argument("--crf", type=int, default=23, help="x264 quality (lower = better)")
    video.add_argument("--noise", type=float, default=0.0, help="per-frame pixel noise sigma")
    _common(video)
    video.add_argument("-o", "--out", required=True, help="output .mp4")
    video.add_argument("--truth", default=None, help="truth JSON (default: OUT with .json)")
    video.set_defaults(func=run_video)

    images = kinds.add_parser("images", help="PNG images img00000.png... + truth.json")
    images.add_argument("--count", type=int, default=100)
    images.add_argument("--people", type=parse_range, default=(1, 10), help="N or LO-HI")
    _common(images)
    images.add_argument("-o", "--out", required=True, help="output directory")
    images.set_defaults(func=run_images)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=parse_size, default=(480, 640), help="WxH, e.g. 640x480")
    p.add_argument("--heights", type=parse_heights, default=(60.0, 340.0), help="px, LO-HI")
    p.add_argument("--seed", type=int, default=0)


def run_video(args: argparse.Namespace) -> int:
    out = Path(args.out)
    truth = Path(args.truth) if args.truth else out.with_suffix(".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    frames = generate_video(
        args.seed, args.size, args.people, args.frames, args.fps, args.heights, args.noise
    )
    write_video(out, frames, args.fps, truth_path=truth, crf=args.crf)
    print(f"wrote {out} ({args.frames} frames, {out.stat().st_size / 1e6:.2f} MB) and {truth}")
    return 0


def run_images(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frames = []
    for i in range(args.count):
        # One seed per image, so any image can be regenerated on its own.
        sample = generate_image([args.seed, i], args.size, args.people, args.heights)
        name = f"img{i:05d}.png"
        write_png(out / name, sample.image)
        ids = np.arange(len(sample.keypoints))
        frames.append(
            truth_frame(i, 0.0, sample.keypoints, sample.visible, ids, sample.heights, name)
        )
    (out / "truth.json").write_text(
        json.dumps(truth_document(args.size, None, frames), separators=(",", ":"))
    )
    print(f"wrote {args.count} images and truth.json to {out}")
    return 0
