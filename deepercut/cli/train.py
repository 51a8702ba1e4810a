"""``deepercut train``: train a detector (and fit its pairwise model) from scratch.

``--data synthetic`` (default) renders MPII14 people on the fly; ``--data PATH`` trains on an
annotated dataset (a DeepLabCut project's ``config.yaml``, a COCO keypoints ``.json``, an MPII
or LSP ``.mat``) with that data's skeleton, on its training split: DLC's TrainingFraction
convention or the images named by ``--test-images`` (names, or a .txt file of names), optionally
mixed with synthetic crowds (``--mix-synthetic``). The pairwise model is then fit on the
detector's candidates on the training images (on synthetic multi-person images when mixing).

Long runs go in chunks: ``--save-every N`` writes a resumable checkpoint, ``--stop-at STEP``
ends a chunk early, and ``--resume CKPT`` continues exactly (the data arguments come from the
checkpoint). Every chunk's command, steps and wall time are appended to the checkpoint's
``meta["stages"]``.
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
        help="hold out exactly these images (file names, with or without extension, or .txt "
        "files listing them)",
    )
    p.add_argument(
        "--mix-synthetic",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of every batch drawn from the synthetic multi-person generator (--heights, "
        "--people) when training on a dataset",
    )
    p.add_argument(
        "--person-heights",
        type=float,
        nargs=2,
        default=None,
        metavar=("MIN", "MAX"),
        help="rescale each dataset person to a size drawn log-uniformly from this range "
        "(overrides --target-height)",
    )
    p.add_argument(
        "--mask-margin",
        type=float,
        default=None,
        help="scoremap loss only within the labelled people's joint boxes grown by this share "
        "of their size (default: 0.2 for LSP, whose bystanders are unlabelled; off otherwise; "
        "negative: off)",
    )
    p.add_argument(
        "--jitter",
        type=float,
        default=0.25,
        help="dataset crops: the person's centre lies within this share of the crop from its "
        "centre",
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
    p.add_argument("--steps", type=int, default=3000, help="length of the LR schedule")
    p.add_argument("--warmup", type=int, default=100, help="LR warm-up steps")
    p.add_argument(
        "--save-every",
        type=int,
        default=None,
        help="write a resumable checkpoint every N steps (default 500, or the resumed run's)",
    )
    p.add_argument(
        "--stop-at",
        type=int,
        default=None,
        metavar="STEP",
        help="end this chunk at this step of the schedule (resume later with --resume)",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="end this chunk (saved, resumable) after this much wall time",
    )
    p.add_argument(
        "--resume",
        metavar="CKPT",
        default=None,
        help="continue a checkpoint of `deepercut train` exactly (its data and training "
        "arguments are reused; --stop-at, --save-every, --threads, --out apply)",
    )
    p.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="also keep every saved checkpoint as OUT-stepN.pt",
    )
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
    p.add_argument("--rotation", type=float, default=15.0, help="rotation jitter in degrees (±)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log files, CI)")
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


#: Arguments a resumed run takes from the command line; all others come from the checkpoint.
RESUME_OWN_ARGS = frozenset(
    {"resume", "out", "log", "threads", "stop_at", "save_every", "keep_checkpoints",
     "no_progress", "pairwise_images", "max_minutes", "func", "argv"}
)  # fmt: skip


def run_train(args: argparse.Namespace) -> int:
    import torch  # heavy imports here, so `deepercut --help` and other commands start fast

    from deepercut.detection import NetworkDetector
    from deepercut.model.io import load_model, pairwise_state
    from deepercut.train.augment import AugmentParams
    from deepercut.train.checkpoint import load_resumable, update_checkpoint
    from deepercut.train.loop import TrainConfig, train
    from deepercut.train.pairwise_fit import fit_pairwise_on_detector

    if args.threads:
        torch.set_num_threads(args.threads)
    command = "deepercut " + shlex.join(getattr(args, "argv", sys.argv[1:]))
    resume = None
    if args.resume:
        resume = load_resumable(args.resume)
        stored = resume[0].meta.get("args")
        if not isinstance(stored, dict):
            raise ValueError(f"{args.resume}: the checkpoint does not record its arguments")
        given = vars(args)
        args = argparse.Namespace(
            **{**stored, **{k: v for k, v in given.items() if k in RESUME_OWN_ARGS}}
        )
        if given["save_every"] is None:
            args.save_every = stored.get("save_every")
        for key in ("crop_hw", "input_hw"):
            if getattr(args, key) is not None:
                setattr(args, key, tuple(getattr(args, key)))
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
        warmup_steps=args.warmup,
        seed=args.seed,
        min_radius=data.min_radius,
        augment=AugmentParams(rotation_deg=args.rotation),
        checkpoint_every=args.save_every or 500,
    )
    out = Path(args.out)
    log = Path(args.log) if args.log else out.with_suffix(".log.jsonl")
    stage = {
        "command": command,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "threads": torch.get_num_threads(),
        "torch": str(torch.__version__),
        **data.meta,
    }
    if args.pairwise_only:
        model = load_model(args.pairwise_only)
        if model.skeleton != data.skeleton:
            raise ValueError(f"{args.pairwise_only}: its skeleton differs from the data's")
        # In place: a training checkpoint keeps its training state.
        out_ckpt = out if out.resolve() == Path(args.pairwise_only).resolve() else None
    else:
        init = None
        meta: dict[str, Any] = {}
        if resume is None:
            meta = {
                **data.meta,
                "command": command,
                "started": stage["started"],
                "torch": stage["torch"],
                "args": {k: v for k, v in vars(args).items() if k not in ("func", "argv")},
            }
            if args.init:
                init = load_model(args.init)
                meta["init"] = {"path": str(args.init), **init.meta}
        model = train(
            config,
            data.source,
            data.skeleton,
            out,
            log_path=log,
            meta=meta,
            init=init,
            resume=resume,
            stop_at=args.stop_at,
            stage=stage,
            keep_checkpoints=args.keep_checkpoints,
            progress=not args.no_progress,
            max_seconds=None if args.max_minutes is None else 60 * args.max_minutes,
        )
        out_ckpt = out
        print(f"saved {out} at step {model.meta['steps']} (loss log {log})")
    if args.pairwise_images > 0:
        started = time.perf_counter()
        pairwise = fit_pairwise_on_detector(NetworkDetector(model), data.pairwise_samples())
        model.pairwise = pairwise_state(pairwise)
        model.meta["pairwise"] = {
            **data.pairwise_meta,
            "seconds": round(time.perf_counter() - started, 1),
        }
        if out_ckpt is not None:  # keep the training state beside the new pairwise model
            update_checkpoint(out_ckpt, pairwise=model.pairwise, meta=model.meta)
        else:
            from deepercut.model.io import save_model

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
    from deepercut.data.dataset import read_name_list
    from deepercut.data.dlc import read_config, training_fraction
    from deepercut.data.load import load_dataset
    from deepercut.evaluate.synthetic import synthetic_images
    from deepercut.model.letterbox import pad_to_multiple
    from deepercut.train.pairwise_fit import PAIRWISE_SEED
    from deepercut.train.sources import (
        DatasetSource,
        MixedSource,
        SyntheticSource,
        dataset_samples,
        mix_counts,
    )

    path = Path(args.data)
    dataset = load_dataset(path, args.images)
    is_dlc = dataset.name.startswith("dlc:")
    is_lsp = dataset.name.startswith("lsp:")
    missing: list[Path] = []
    if is_lsp:  # LSP extended withholds images but keeps their rows
        dataset, missing = dataset.with_existing_images()
        if missing:
            print(f"{path}: {len(missing)} images absent, skipped; {len(dataset)} remain")
    fraction = args.train_fraction
    if fraction is None:
        config_path = path / "config.yaml" if path.is_dir() else path
        fraction = training_fraction(read_config(config_path)) if is_dlc else 0.95
    test_names = read_name_list(args.test_images) if args.test_images else None
    train_set, test_set = dataset.split(fraction, args.split_seed, test_names)
    if len(train_set) == 0:
        raise ValueError(f"{dataset.name}: the split leaves no training images")
    target_height = args.target_height if args.target_height else (None if is_dlc else 200.0)
    margin = args.mask_margin if args.mask_margin is not None else (0.2 if is_lsp else None)
    margin = None if margin is not None and margin < 0 else margin
    crop_hw = (args.crop_hw[0] + 32, args.crop_hw[1] + 32)
    source: Any = DatasetSource(
        train_set,
        image_hw=crop_hw,
        target_height=target_height,
        background_prob=args.background_prob,
        height_range=tuple(args.person_heights) if args.person_heights else None,
        jitter=args.jitter,
        mask_margin=margin,
    )
    n_data, n_synth = mix_counts(args.batch_size, args.mix_synthetic)
    if n_synth:
        synthetic = SyntheticSource(
            image_hw=crop_hw, num_people=tuple(args.people), height_range=tuple(args.heights)
        )
        source = MixedSource((source, synthetic), (n_data, n_synth))
    input_hw = args.input_hw
    if input_hw is None:
        if is_dlc:
            input_hw = pad_to_multiple(*train_set.image(0).shape[:2])
        else:
            input_hw = (336, 448)
    if n_synth:  # one person labelled per image (LSP): fit the pairwise model on crowds
        count = args.pairwise_images

        def pairwise_samples() -> Iterable[Any]:
            return synthetic_images(count, PAIRWISE_SEED)

        pairwise_meta: dict[str, Any] = {
            "images": count,
            "data": "synthetic",
            "seed": PAIRWISE_SEED,
        }
    else:
        count = min(args.pairwise_images, len(train_set))

        def pairwise_samples() -> Iterable[Any]:
            return dataset_samples(train_set.subset(range(count)))

        pairwise_meta = {"images": count, "data": "training split"}
    return _TrainingData(
        source=source,
        skeleton=dataset.skeleton,
        input_hw=tuple(input_hw),
        min_radius=args.min_radius or (12.0 if is_dlc else 6.0),
        meta={
            "data": str(path),
            "dataset": dataset.name,
            "absent_images": len(missing),
            "split": {
                "train_fraction": fraction,
                "seed": args.split_seed,
                "train": len(train_set),
                # Long lists (LSPET's 500) are named by --test-images (a file) instead.
                "test": [r.image_path.name for r in test_set.records]
                if len(test_set) <= 50
                else len(test_set),
                "test_images": args.test_images,
            },
            "target_height": target_height,
            "person_heights": args.person_heights,
            "mask_margin": margin,
            "mix": {"dataset": n_data, "synthetic": n_synth},
        },
        pairwise_samples=pairwise_samples,
        pairwise_meta=pairwise_meta,
    )
