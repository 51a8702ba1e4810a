"""``deepercut train``: train a detector (and fit its pairwise model) from scratch."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from deepercut.engine.cli_args import parse_hw


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    p = subparsers.add_parser("train", help="train a detector from scratch")
    p.add_argument("--data", default="synthetic", help="training data: 'synthetic'")
    p.add_argument(
        "--arch", default="resnet18", help="resnet18|resnet34|resnet50|resnet101|resnet152"
    )
    p.add_argument("--width", type=int, default=32, help="stem width (64 = standard ResNet)")
    p.add_argument("--head-channels", type=int, default=128)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--crop-hw", type=parse_hw, default=(256, 256), help="training crop HxW")
    p.add_argument("--input-hw", type=parse_hw, default=(336, 448), help="inference HxW")
    p.add_argument(
        "--heights",
        type=float,
        nargs=2,
        default=(40.0, 250.0),
        metavar=("MIN", "MAX"),
        help="synthetic person heights in crop pixels",
    )
    p.add_argument(
        "--people",
        type=int,
        nargs=2,
        default=(1, 6),
        metavar=("MIN", "MAX"),
        help="synthetic people per image",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--log", default=None, help="loss log (JSON lines); default OUT.log.jsonl")
    p.add_argument(
        "--init",
        metavar="MODEL",
        default=None,
        help="fine-tune this checkpoint (BatchNorm stays frozen) instead of starting from scratch",
    )
    p.add_argument(
        "--pairwise-images",
        type=int,
        default=300,
        help="synthetic 480x640 images the pairwise model is fit on (0: skip)",
    )
    p.add_argument(
        "--pairwise-only",
        metavar="MODEL",
        default=None,
        help="skip detector training: fit the pairwise model of this checkpoint",
    )
    p.add_argument("--out", "-o", required=True, help="checkpoint path (.pt)")
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    import torch  # heavy imports here, so `deepercut --help` and other commands start fast

    from deepercut.evaluate.synthetic import synthetic_images
    from deepercut.model.io import load_model, pairwise_state, save_model
    from deepercut.model.predict import Predictor
    from deepercut.skeleton import MPII14
    from deepercut.train.loop import TrainConfig, train
    from deepercut.train.pairwise_fit import PAIRWISE_SEED, fit_pairwise_on_detector
    from deepercut.train.sources import SyntheticSource

    if args.data != "synthetic":
        raise ValueError(f"unsupported --data {args.data!r}: only 'synthetic' is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(
        arch=args.arch,
        width=args.width,
        head_channels=args.head_channels,
        input_hw=args.crop_hw,
        deploy_hw=args.input_hw,
        batch_size=args.batch_size,
        steps=args.steps,
        lr=args.lr,
        seed=args.seed,
    )
    out = Path(args.out)
    log = Path(args.log) if args.log else out.with_suffix(".log.jsonl")
    meta = {
        "data": "synthetic",
        "command": "deepercut " + shlex.join(sys.argv[1:]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "torch": str(torch.__version__),
    }
    source = SyntheticSource(
        image_hw=(args.crop_hw[0] + 32, args.crop_hw[1] + 32),
        num_people=tuple(args.people),
        height_range=tuple(args.heights),
    )
    if args.pairwise_only:
        model = load_model(args.pairwise_only)
    else:
        init = load_model(args.init) if args.init else None
        if init is not None:
            meta["init"] = {"path": str(args.init), **init.meta}
        model = train(config, source, MPII14, out, log_path=log, meta=meta, init=init)
        print(f"saved {out} (loss log {log})")
    if args.pairwise_images > 0:
        started = time.perf_counter()
        pairwise = fit_pairwise_on_detector(
            Predictor(model), synthetic_images(args.pairwise_images, PAIRWISE_SEED)
        )
        model.pairwise = pairwise_state(pairwise)
        model.meta["pairwise"] = {
            "images": args.pairwise_images,
            "seed": PAIRWISE_SEED,
            "seconds": round(time.perf_counter() - started, 1),
        }
        save_model(out, model)
        print(f"saved {out} with a pairwise model fit on {args.pairwise_images} images")
    return 0
