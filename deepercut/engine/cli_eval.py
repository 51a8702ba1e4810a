"""``deepercut eval``: score a model and print a table (and a JSON report)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from deepercut.evaluate import HELD_OUT_SEED


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` subcommand."""
    p = subparsers.add_parser("eval", help="evaluate a model")
    p.add_argument("--data", default="synthetic", help="'synthetic' (held-out generated images)")
    p.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    p.add_argument("--images", type=int, default=200, help="synthetic images to score")
    p.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="first held-out seed")
    p.add_argument("--min-height", type=float, default=100.0, help="score people taller than this")
    p.add_argument("--threshold", type=float, default=0.2, help="PCK threshold (× person height)")
    p.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if available)"
    )
    p.add_argument("--json", default=None, help="write the report here")
    p.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    import torch

    from deepercut.evaluate.synthetic import synthetic_pck
    from deepercut.model.io import load_model
    from deepercut.model.predict import Predictor

    if args.data != "synthetic":
        raise ValueError(f"unsupported --data {args.data!r}: only 'synthetic' is available")
    model = load_model(args.model)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    predictor = Predictor(model, device=device)
    started = time.perf_counter()
    result = synthetic_pck(predictor, args.images, args.seed, args.min_height, args.threshold)
    seconds = time.perf_counter() - started
    print(
        f"PCK@{args.threshold:g} of best candidates, {args.images} held-out synthetic images, "
        f"people > {args.min_height:g} px ({args.model or 'bundled model'}, {seconds:.0f} s)"
    )
    print(result.table(model.skeleton.parts))
    if args.json:
        report = {
            "data": "synthetic",
            "model": args.model or "bundled",
            "images": args.images,
            "seed": args.seed,
            "min_height": args.min_height,
            "threshold": args.threshold,
            "per_part": dict(
                zip(model.skeleton.parts, result.per_part.round(4).tolist(), strict=True)
            ),
            "joints": int(result.counts.sum()),
            "mean_pck": round(result.mean, 4),
            "seconds": round(seconds, 1),
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0
