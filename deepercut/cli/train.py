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
import contextlib
import shlex
import signal
import sys
import threading
from collections.abc import Iterator

from deepercut.cli.args import parse_hw


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    p = subparsers.add_parser("train", help="train a detector from scratch")
    for add in (
        _add_data_args,
        _add_crop_args,
        _add_network_args,
        _add_schedule_args,
        _add_batch_args,
        _add_process_args,
        _add_pairwise_args,
    ):
        add(p)
    p.add_argument("--out", "-o", required=True, help="checkpoint path (.pt)")
    p.set_defaults(func=run_train)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    """Options of the training data and its split."""
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        default="synthetic",
        help="'synthetic', or a dataset: DLC config.yaml (or project folder), COCO .json, "
        "MPII/LSP .mat",
    )
    g.add_argument("--images", default=None, help="image folder of a COCO/MPII/LSP dataset")
    g.add_argument(
        "--train-fraction",
        type=float,
        default=None,
        help="share of images trained on (default: the DLC config's TrainingFraction, else 0.95)",
    )
    g.add_argument("--split-seed", type=int, default=1, help="seed of the random split")
    g.add_argument(
        "--test-images",
        nargs="+",
        default=None,
        metavar="NAME",
        help="hold out exactly these images (file names, with or without extension, or .txt "
        "files listing them)",
    )
    g.add_argument(
        "--mix-synthetic",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of every batch drawn from the synthetic multi-person generator (--heights, "
        "--people) when training on a dataset",
    )


def _add_crop_args(p: argparse.ArgumentParser) -> None:
    """Options of the crops drawn from a dataset's people."""
    g = p.add_argument_group("dataset crops")
    g.add_argument(
        "--person-heights",
        type=float,
        nargs=2,
        default=None,
        metavar=("MIN", "MAX"),
        help="rescale each dataset person to a size drawn log-uniformly from this range "
        "(overrides --target-height)",
    )
    g.add_argument(
        "--mask-margin",
        type=float,
        default=None,
        help="scoremap loss only within the labelled people's joint boxes grown by this share "
        "of their size (default: 0.2 for LSP, whose bystanders are unlabelled; off otherwise; "
        "negative: off)",
    )
    g.add_argument(
        "--jitter",
        type=float,
        default=0.25,
        help="dataset crops: the person's centre lies within this share of the crop from its "
        "centre",
    )
    g.add_argument(
        "--target-height",
        type=float,
        default=None,
        help="rescale each training person to this size in px (default: native scale for DLC, "
        "200 for people datasets)",
    )
    g.add_argument(
        "--background-prob",
        type=float,
        default=0.1,
        help="share of dataset crops placed at random rather than on a person",
    )
    g.add_argument(
        "--min-radius",
        type=float,
        default=None,
        help="smallest positive radius of the scoremap targets in px (default: 6; 12 for DLC)",
    )


def _add_network_args(p: argparse.ArgumentParser) -> None:
    """Options of the detector network."""
    g = p.add_argument_group("network")
    g.add_argument(
        "--arch", default="resnet18", help="resnet18|resnet34|resnet50|resnet101|resnet152"
    )
    g.add_argument("--width", type=int, default=32, help="stem width (64 = standard ResNet)")
    g.add_argument("--head-channels", type=int, default=128)


def _add_schedule_args(p: argparse.ArgumentParser) -> None:
    """Options of the LR schedule and its chunks (checkpoints, --resume)."""
    g = p.add_argument_group("schedule")
    g.add_argument("--steps", type=int, default=3000, help="length of the LR schedule")
    g.add_argument("--warmup", type=int, default=100, help="LR warm-up steps")
    g.add_argument(
        "--save-every",
        type=int,
        default=None,
        help="write a resumable checkpoint every N steps (default 500, or the resumed run's)",
    )
    g.add_argument(
        "--stop-at",
        type=int,
        default=None,
        metavar="STEP",
        help="end this chunk at this step of the schedule (resume later with --resume)",
    )
    g.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="end this chunk (saved, resumable) after this much wall time",
    )
    g.add_argument(
        "--resume",
        metavar="CKPT",
        default=None,
        help="continue a checkpoint of `deepercut train` exactly (its data and training "
        "arguments are reused; --stop-at, --save-every, --threads, --out apply)",
    )
    g.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="also keep every saved checkpoint as OUT-stepN.pt",
    )


def _add_batch_args(p: argparse.ArgumentParser) -> None:
    """Options of batches, crops and their augmentation."""
    g = p.add_argument_group("batches")
    g.add_argument("--batch-size", type=int, default=16)
    g.add_argument("--lr", type=float, default=2e-3)
    g.add_argument("--crop-hw", type=parse_hw, default=(256, 256), help="training crop HxW")
    g.add_argument(
        "--input-hw",
        type=parse_hw,
        default=None,
        help="inference HxW (default: 336x448; a DLC project's frame size, padded to 16)",
    )
    g.add_argument(
        "--heights",
        type=float,
        nargs=2,
        default=(40.0, 250.0),
        metavar=("MIN", "MAX"),
        help="synthetic person heights in crop pixels",
    )
    g.add_argument(
        "--people",
        type=int,
        nargs=2,
        default=(1, 6),
        metavar=("MIN", "MAX"),
        help="synthetic people per image",
    )
    g.add_argument("--rotation", type=float, default=15.0, help="rotation jitter in degrees (±)")
    g.add_argument("--seed", type=int, default=0)


def _add_process_args(p: argparse.ArgumentParser) -> None:
    """Options of the process: threads, progress, log, initial weights."""
    g = p.add_argument_group("process")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    g.add_argument("--no-progress", action="store_true", help="no progress bar (log files, CI)")
    g.add_argument("--log", default=None, help="loss log (JSON lines); default OUT.log.jsonl")
    g.add_argument(
        "--init",
        metavar="MODEL",
        default=None,
        help="fine-tune this checkpoint (BatchNorm stays frozen) instead of starting from scratch",
    )


def _add_pairwise_args(p: argparse.ArgumentParser) -> None:
    """Options of the pairwise model's fit."""
    g = p.add_argument_group("pairwise")
    g.add_argument(
        "--pairwise-images",
        type=int,
        default=300,
        help="images the pairwise model is fit on: synthetic 480x640 ones, or at most this many "
        "training images of --data (0: skip)",
    )
    g.add_argument(
        "--pairwise-only",
        metavar="MODEL",
        default=None,
        help="skip detector training: fit the pairwise model of this checkpoint",
    )


def run_train(args: argparse.Namespace) -> int:
    """Train as the arguments say (see :func:`deepercut.train.run.run_training`). Ctrl-C or
    SIGTERM ends the run after the step under way, with a resumable checkpoint (exit status
    128 + the signal's number); a second Ctrl-C aborts at once."""
    from deepercut.train.config import TrainConfig
    from deepercut.train.run import run_training

    config = TrainConfig.from_args(vars(args))
    command = "deepercut " + shlex.join(getattr(args, "argv", sys.argv[1:]))
    with _stop_on_signals() as received:
        run_training(config, command, stop=lambda: bool(received))
    return 128 + received[0] if received else 0


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[list[int]]:
    """While the block runs, SIGINT and SIGTERM are recorded in the yielded list instead of
    killing the process; after the first, they act as before (a second Ctrl-C raises
    KeyboardInterrupt). Outside the main thread (signals cannot be caught there) the list
    stays empty."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    signums = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.getsignal(signum) for signum in signums}

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        for s, h in previous.items():
            signal.signal(s, h)
        name = signal.Signals(signum).name
        print(
            f"deepercut train: {name}: stopping after this step with a resumable checkpoint "
            "(Ctrl-C again aborts without saving)",
            file=sys.stderr,
            flush=True,
        )

    for signum in signums:
        signal.signal(signum, handler)
    try:
        yield received
    finally:
        for signum, h in previous.items():
            signal.signal(signum, h)
