"""A ``deepercut train`` run: resume merging, detector training, the pairwise fit, checkpoints.

The run is a :class:`~deepercut.train.config.TrainConfig`; a checkpoint stores it as its
``meta["args"]`` and ``--resume`` continues from that.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from deepercut.detection import NetworkDetector
from deepercut.model.io import Model, load_model, pairwise_state, save_model
from deepercut.train.augment import AugmentParams
from deepercut.train.checkpoint import TrainState, load_resumable, update_checkpoint
from deepercut.train.config import TrainConfig
from deepercut.train.data import TrainingData, training_data
from deepercut.train.loop import LoopConfig, train
from deepercut.train.pairwise_fit import fit_pairwise_on_detector


def run_training(config: TrainConfig, command: str, stop: Callable[[], bool] | None = None) -> None:
    """Train (or resume, or only refit the pairwise model) as ``config`` says; ``command`` is
    the command line recorded in the checkpoint. Once ``stop()`` is true (checked after each
    step) the chunk ends there, saved and resumable, and the pairwise fit is left for the
    chunk that finishes the run."""
    if config.threads:
        torch.set_num_threads(config.threads)
    resume = None
    if config.resume:
        resume = load_resumable(config.resume)
        config = config.resumed(resume[0].meta.get("args"))
    data = training_data(config)
    out = Path(config.out)
    stage = {
        "command": command,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "threads": torch.get_num_threads(),
        "torch": str(torch.__version__),
        **data.meta,
    }
    if config.pairwise_only:
        model = load_model(config.pairwise_only)
        if model.skeleton != data.skeleton:
            raise ValueError(f"{config.pairwise_only}: its skeleton differs from the data's")
        # In place: a training checkpoint keeps its training state.
        out_ckpt = out if out.resolve() == Path(config.pairwise_only).resolve() else None
    else:
        model = _train_detector(config, data, resume, stage, stop)
        out_ckpt = out
        if stop is not None and stop():
            print(f"stopped on request: continue with `deepercut train --resume {out} -o {out}`")
            return
    if config.pairwise_images > 0:
        _fit_pairwise(model, data, out, out_ckpt)


def loop_config(config: TrainConfig, data: TrainingData) -> LoopConfig:
    """The optimisation loop's settings for ``config`` on ``data`` (stored in the training
    state, which a resumed run must match)."""
    return LoopConfig(
        arch=config.arch,
        width=config.width,
        head_channels=config.head_channels,
        input_hw=config.crop_hw,
        deploy_hw=data.input_hw,
        batch_size=config.batch_size,
        steps=config.steps,
        lr=config.lr,
        warmup_steps=config.warmup,
        seed=config.seed,
        min_radius=data.min_radius,
        augment=AugmentParams(rotation_deg=config.rotation),
        checkpoint_every=config.save_every or 500,
    )


def _train_detector(
    config: TrainConfig,
    data: TrainingData,
    resume: tuple[Model, TrainState] | None,
    stage: dict[str, Any],
    stop: Callable[[], bool] | None,
) -> Model:
    out = Path(config.out)
    log = Path(config.log) if config.log else out.with_suffix(".log.jsonl")
    init = load_model(config.init) if config.init and resume is None else None
    model = train(
        loop_config(config, data),
        data.source,
        data.skeleton,
        out,
        log_path=log,
        meta={} if resume is not None else _first_meta(config, data, stage, init),
        init=init,
        resume=resume,
        stop_at=config.stop_at,
        stage=stage,
        keep_checkpoints=config.keep_checkpoints,
        progress=not config.no_progress,
        max_seconds=None if config.max_minutes is None else 60 * config.max_minutes,
        stop=stop,
    )
    print(f"saved {out} at step {model.meta['steps']} (loss log {log})")
    return model


def _first_meta(
    config: TrainConfig, data: TrainingData, stage: dict[str, Any], init: Model | None
) -> dict[str, Any]:
    """The metadata a run starts its checkpoint with (a resumed run keeps the checkpoint's):
    the data, the first command and the options (``args``, which ``--resume`` reads back)."""
    meta = {
        **data.meta,
        "command": stage["command"],
        "started": stage["started"],
        "torch": stage["torch"],
        "args": config.to_args(),
    }
    if init is not None:
        meta["init"] = {"path": str(config.init), **init.meta}
    return meta


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
