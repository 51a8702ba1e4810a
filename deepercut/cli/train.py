"""``deepercut train``: train a detector (and fit its pairwise model) from scratch.

``--data synthetic`` (default) renders MPII14 people on the fly; ``--data PATH`` trains on an
annotated dataset (a DeepLabCut project's ``config.yaml``, a COCO keypoints ``.json``, an MPII
or LSP ``.mat``) with that data's skeleton, on its training split: DLC's TrainingFraction
convention or the images named by ``--test-images``. The pairwise model is then fit on the
detector's candidates on the training images.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepercut.cli.args import parse_hw

if TYPE_CHECKING:
    import numpy as np

    from deepercut.skeleton import Skeleton


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    p = subparsers.add_parser("train", help="train a detector from scratch")
    p.add_argument(
        "--data",
        default="synthetic",
        help="'synthetic', or a dataset: DLC config.yaml (or project folder), COCO .json, "
        "MPII/LSP .mat",
    )
    p.add_argument("--images", default=None, help="image folder of a COCO/MPII/LSP dataset")
    p.add_argument(
        "--train-fraction",
        type=float,
        default=None,
        help="share of images trained on (default: the DLC config's TrainingFraction, else 0.95)",
    )
    p.add_argument("--split-seed", type=int, default=1, help="seed of the random split")
    p.add_argument(
        "--test-images",
        nargs="+",
        default=None,
        metavar="NAME",
        help="hold out exactly these images (file names, with or without extension)",
    )
    p.add_argument(
        "--target-height",
        type=float,
        default=None,
        help="rescale each training person to this size in px (default: native scale for DLC, "
        "200 for people datasets)",
    )
    p.add_argument(
        "--background-prob",
        type=float,
        default=0.1,
        help="share of dataset crops placed at random rather than on a person",
    )
    p.add_argument(
        "--min-radius",
        type=float,
        default=None,
        help="smallest positive radius of the scoremap targets in px (default: 6; 12 for DLC)",
    )
    p.add_argument(
        "--arch", default="resnet18", help="resnet18|resnet34|resnet50|resnet101|resnet152"
    )
    p.add_argument("--width", type=int, default=32, help="stem width (64 = standard ResNet)")
    p.add_argument("--head-channels", type=int, default=128)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--crop-hw", type=parse_hw, default=(256, 256), help="training crop HxW")
    p.add_argument(
        "--input-hw",
        type=parse_hw,
        default=None,
        help="inference HxW (default: 336x448; a DLC project's frame size, padded to 16)",
    )
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
    p.add_argument(
        "--rotation", type=float, default=15.0, help="rotation jitter in degrees (±)"
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
        help="images the pairwise model is fit on: synthetic 480x640 ones, or at most this many "
        "training images of --data (0: skip)",
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

    from deepercut.model.io import load_model, pairwise_state, save_model
    from deepercut.model.predict import Predictor
    from deepercut.train.augment import AugmentParams
    from deepercut.train.loop import TrainConfig, train
    from deepercut.train.pairwise_fit import fit_pairwise_on_detector

    if args.threads:
        torch.set_num_threads(args.threads)
    data = _training_data(args)
    config = TrainConfig(
        arch=args.arch,
        width=args.width,
        head_channels=args.head_channels,
        input_hw=args.crop_hw,
        deploy_hw=data.input_hw,
        batch_size=args.batch_size,
        steps=args.steps,
        lr=args.lr,
        seed=args.seed,
        min_radius=data.min_radius,
        augment=AugmentParams(rotation_deg=args.rotation),
    )
    out = Path(args.out)
    log = Path(args.log) if args.log else out.with_suffix(".log.jsonl")
    meta = {
        **data.meta,
        "command": "deepercut " + shlex.join(sys.argv[1:]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "torch": str(torch.__version__),
    }
    if args.pairwise_only:
        model = load_model(args.pairwise_only)
        if model.skeleton != data.skeleton:
            raise ValueError(f"{args.pairwise_only}: its skeleton differs from the data's")
    else:
        init = load_model(args.init) if args.init else None
        if init is not None:
            meta["init"] = {"path": str(args.init), **init.meta}
        model = train(config, data.source, data.skeleton, out, log_path=log, meta=meta, init=init)
        print(f"saved {out} (loss log {log})")
    if args.pairwise_images > 0:
        started = time.perf_counter()
        pairwise = fit_pairwise_on_detector(Predictor(model), data.pairwise_samples())
        model.pairwise = pairwise_state(pairwise)
        model.meta["pairwise"] = {
            **data.pairwise_meta,
            "seconds": round(time.perf_counter() - started, 1),
        }
        save_model(out, model)
        print(f"saved {out} with a pairwise model fit on {data.pairwise_meta['images']} images")
    return 0


@dataclass
class _TrainingData:
    """What ``run_train`` needs from the chosen data: a sample source and its skeleton."""

    source: Callable[[np.random.Generator], Any]
    skeleton: Skeleton
    input_hw: tuple[int, int]
    min_radius: float
    meta: dict[str, Any]
    pairwise_samples: Callable[[], Iterable[Any]]
    pairwise_meta: dict[str, Any]


def _training_data(args: argparse.Namespace) -> _TrainingData:
    from deepercut.evaluate.synthetic import synthetic_images
    from deepercut.skeleton import MPII14
    from deepercut.train.pairwise_fit import PAIRWISE_SEED
    from deepercut.train.sources import SyntheticSource

    if args.data == "synthetic":
        source = SyntheticSource(
            image_hw=(args.crop_hw[0] + 32, args.crop_hw[1] + 32),
            num_people=tuple(args.people),
            height_range=tuple(args.heights),
        )
        return _TrainingData(
            source=source,
            skeleton=MPII14,
            input_hw=args.input_hw or (336, 448),
            min_radius=args.min_radius or 6.0,
            meta={"data": "synthetic"},
            pairwise_samples=lambda: synthetic_images(args.pairwise_images, PAIRWISE_SEED),
            pairwise_meta={"images": args.pairwise_images, "seed": PAIRWISE_SEED},
        )
    return _dataset_training_data(args)


def _dataset_training_data(args: argparse.Namespace) -> _TrainingData:
    from deepercut.data.dlc import read_config, training_fraction
    from deepercut.data.load import load_dataset
    from deepercut.model.letterbox import pad_to_multiple
    from deepercut.train.sources import DatasetSource, dataset_samples

    path = Path(args.data)
    dataset = load_dataset(path, args.images)
    is_dlc = dataset.name.startswith("dlc:")
    fraction = args.train_fraction
    if fraction is None:
        config_path = path / "config.yaml" if path.is_dir() else path
        fraction = training_fraction(read_config(config_path)) if is_dlc else 0.95
    train_set, test_set = dataset.split(fraction, args.split_seed, args.test_images)
    if len(train_set) == 0:
        raise ValueError(f"{dataset.name}: the split leaves no training images")
    target_height = args.target_height if args.target_height else (None if is_dlc else 200.0)
    source = DatasetSource(
        train_set,
        image_hw=(args.crop_hw[0] + 32, args.crop_hw[1] + 32),
        target_height=target_height,
        background_prob=args.background_prob,
    )
    input_hw = args.input_hw
    if input_hw is None:
        if is_dlc:
            input_hw = pad_to_multiple(*train_set.image(0).shape[:2])
        else:
            input_hw = (336, 448)
    count = min(args.pairwise_images, len(train_set))
    return _TrainingData(
        source=source,
        skeleton=dataset.skeleton,
        input_hw=tuple(input_hw),
        min_radius=args.min_radius or (12.0 if is_dlc else 6.0),
        meta={
            "data": str(path),
            "dataset": dataset.name,
            "split": {
                "train_fraction": fraction,
                "seed": args.split_seed,
                "train": len(train_set),
                "test": [r.image_path.name for r in test_set.records],
            },
            "target_height": target_height,
        },
        pairwise_samples=lambda: dataset_samples(train_set.subset(range(count))),
        pairwise_meta={"images": count, "data": "training split"},
    )
