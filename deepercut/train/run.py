"""A ``deepercut train`` run: resume merging, detector training, the pairwise fit, checkpoints.

The arguments are ``deepercut train``'s (an :class:`argparse.Namespace`): a checkpoint stores
them as its ``meta["args"]``, and ``--resume`` continues from those, so they stay one flat
namespace rather than a config of another shape.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from deepercut.detection import NetworkDetector
from deepercut.model.io import Model, load_model, pairwise_state, save_model
from deepercut.train.augment import AugmentParams
from deepercut.train.checkpoint import load_resumable, update_checkpoint
from deepercut.train.data import TrainingData, training_data
from deepercut.train.loop import TrainConfig, train
from deepercut.train.pairwise_fit import fit_pairwise_on_detector

#: Arguments a resumed run takes from the command line; all others come from the checkpoint.
RESUME_OWN_ARGS = frozenset(
    {"resume", "out", "log", "threads", "stop_at", "save_every", "keep_checkpoints",
     "no_progress", "pairwise_images", "max_minutes", "func", "argv"}
)  # fmt: skip


def run_training(args: argparse.Namespace, command: str) -> None:
    """Train (or resume, or only refit the pairwise model) as ``args`` say; ``command`` is the
    command line recorded in the checkpoint."""
    if args.threads:
        torch.set_num_threads(args.threads)
    resume = None
    if args.resume:
        resume = load_resumable(args.resume)
        args = resumed_args(args, resume[0].meta.get("args"))
    data = training_data(args)
    out = Path(args.out)
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
        model = _train_detector(args, data, resume, stage)
        out_ckpt = out
    if args.pairwise_images > 0:
        _fit_pairwise(model, data, out, out_ckpt)


def resumed_args(given: argparse.Namespace, stored: Any) -> argparse.Namespace:
    """The arguments of a resumed run: the checkpoint's ``stored`` ones, except those in
    :data:`RESUME_OWN_ARGS`, which the command line ``given`` sets."""
    if not isinstance(stored, dict):
        raise ValueError(f"{given.resume}: the checkpoint does not record its arguments")
    own = vars(given)
    args = argparse.Namespace(
        **{**stored, **{k: v for k, v in own.items() if k in RESUME_OWN_ARGS}}
    )
    if own["save_every"] is None:
        args.save_every = stored.get("save_every")
    for key in ("crop_hw", "input_hw"):
        if getattr(args, key) is not None:
            setattr(args, key, tuple(getattr(args, key)))
    return args


def _train_detector(
    args: argparse.Namespace, data: TrainingData, resume: Any, stage: dict[str, Any]
) -> Model:
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
    init = None
    meta: dict[str, Any] = {}
    if resume is None:
        meta = {
            **data.meta,
            "command": stage["command"],
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
    print(f"saved {out} at step {model.meta['steps']} (loss log {log})")
    return model


def _fit_pairwise(model: Model, data: TrainingData, out: Path, out_ckpt: Path | None) -> None:
    """Fit the pairwise model on the detector's own candidates (the detector ``deepercut run``
    builds) and store it: in the checkpoint ``out_ckpt`` (keeping its training state) or as a
    new model file ``out``."""
    started = time.perf_counter()
    pairwise = fit_pairwise_on_detector(NetworkDetector(model), data.pairwise_samples())
    model.pairwise = pairwise_state(pairwise)
    model.meta["pairwise"] = {
        **data.pairwise_meta,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if out_ckpt is not None:
        update_checkpoint(out_ckpt, pairwise=model.pairwise, meta=model.meta)
    else:
        save_model(out, model)
    print(f"saved {out} with a pairwise model fit on {data.pairwise_meta['images']} images")
