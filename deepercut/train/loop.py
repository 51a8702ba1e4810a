"""Training the detector: losses of the paper, AdamW with warm-up and cosine decay, a loss log.

Losses (DeeperCut, section 3): sigmoid cross-entropy on the scoremaps (averaged over non-ignored
cells), smooth-L1 (Huber) on the location refinement and on the normalised pairwise vectors,
only at positive cells, and the same scoremap loss on the intermediate (conv4) head against the
targets max-pooled to stride 16. From scratch we train BatchNorm (the paper freezes ImageNet
statistics, which we do not have) and freeze it for deployment at the end.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from deepercut.model.codecs import offset_statistics
from deepercut.model.io import Model, save_model
from deepercut.model.net import STRIDE, DeeperCut, DetectorConfig, DetectorOutput
from deepercut.skeleton import Skeleton
from deepercut.train.augment import AugmentParams, PoseSample, augment
from deepercut.train.checkpoint import TRAIN_STATE, TrainState, numpy_generator
from deepercut.train.sources import MixedSource
from deepercut.train.targets import Targets, make_targets

#: A data source: draws one training sample with the given random generator.
SampleSource = Callable[[np.random.Generator], PoseSample]


@dataclass
class LoopConfig:
    """Hyper-parameters of :func:`train` (stored in the checkpoint's metadata)."""

    arch: str = "resnet18"
    width: int = 32
    head_channels: int = 128
    input_hw: tuple[int, int] = (256, 256)
    deploy_hw: tuple[int, int] = (336, 448)
    batch_size: int = 16
    steps: int = 3000
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    locref_weight: float = 0.1
    pairwise_weight: float = 0.05
    intermediate_weight: float = 1.0
    augment: AugmentParams = field(default_factory=AugmentParams)
    seed: int = 0
    stats_samples: int = 200
    checkpoint_every: int = 500
    #: smallest positive radius (input px) of the scoremap targets; see ``make_targets``.
    min_radius: float = 6.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_hw"] = list(self.input_hw)
        d["deploy_hw"] = list(self.deploy_hw)
        d["augment"] = {k: list(v) if isinstance(v, tuple) else v for k, v in d["augment"].items()}
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoopConfig:
        """The inverse of :meth:`to_dict` (lists back to tuples)."""
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        augment = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.get("augment", {}).items()
        }
        return cls(**{**values, "augment": AugmentParams(**augment)})


@dataclass
class Losses:
    """Per-term losses of one step (``total`` is what is minimised)."""

    total: Tensor
    scmap: Tensor
    locref: Tensor
    pairwise: Tensor
    intermediate: Tensor

    def as_floats(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name).detach()) for f in fields(self)}


def _weighted_mean(values: Tensor, weights: Tensor) -> Tensor:
    return (values * weights).sum() / weights.sum().clamp(min=1.0)


def compute_losses(out: DetectorOutput, targets: Targets, config: LoopConfig) -> Losses:
    """The DeeperCut losses for one batch."""
    b, p, h, w = out.scmap.shape
    scmap = _weighted_mean(
        F.binary_cross_entropy_with_logits(out.scmap, targets.scmap, reduction="none"),
        targets.scmap_weight,
    )
    locref = _weighted_mean(
        F.smooth_l1_loss(out.locref.view(b, p, 2, h, w), targets.locref, reduction="none").sum(2),
        targets.locref_weight,
    )
    if out.pairwise.shape[1]:
        pw = out.pairwise.view(b, p, p - 1, 2, h, w)
        pairwise = _weighted_mean(
            F.smooth_l1_loss(pw, targets.pairwise, reduction="none").sum(3),
            targets.pairwise_weight,
        )
    else:
        pairwise = out.scmap.new_zeros(())
    # Stride-16 targets: a coarse cell is positive if any of its fine cells is.
    coarse_target = F.max_pool2d(targets.scmap, 2)
    coarse_weight = -F.max_pool2d(-targets.scmap_weight, 2)
    intermediate = _weighted_mean(
        F.binary_cross_entropy_with_logits(out.intermediate, coarse_target, reduction="none"),
        coarse_weight,
    )
    total = (
        scmap
        + config.locref_weight * locref
        + config.pairwise_weight * pairwise
        + config.intermediate_weight * intermediate
    )
    return Losses(total, scmap, locref, pairwise, intermediate)


def _batches(
    source: SampleSource, config: LoopConfig, skeleton: Skeleton, rng: np.random.Generator
) -> Iterator[tuple[Tensor, list[PoseSample]]]:
    perm = skeleton.flip_permutation()
    if isinstance(source, MixedSource) and source.batch_size != config.batch_size:
        raise ValueError(
            f"the mixed source draws {source.batch_size} samples a batch, the batch size is "
            f"{config.batch_size}"
        )
    while True:
        drawn = (
            source.draw_batch(rng)
            if isinstance(source, MixedSource)
            else [source(rng) for _ in range(config.batch_size)]
        )
        samples = [augment(s, rng, config.augment, perm, config.input_hw) for s in drawn]
        images = torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2)
        yield images.float().div_(255), samples


def batch_targets(
    net: DeeperCut,
    samples: list[PoseSample],
    map_hw: tuple[int, int],
    min_radius: float = 6.0,
) -> Targets:
    """Targets for ``samples`` with the network's normalisation."""
    h, w = map_hw
    # A cell's loss applies when the sample's loss mask covers the cell's centre pixel.
    c = STRIDE // 2
    masks = [
        None if s.loss_mask is None else torch.from_numpy(s.loss_mask[c::STRIDE, c::STRIDE][:h, :w])
        for s in samples
    ]
    return make_targets(
        [torch.from_numpy(s.keypoints) for s in samples],
        [torch.from_numpy(s.visible) for s in samples],
        [torch.from_numpy(s.annotated) for s in samples],
        [torch.from_numpy(s.heights) for s in samples],
        map_hw,
        STRIDE,
        net.config.locref_std,
        net.pairwise_mean,
        net.pairwise_std,
        min_radius=min_radius,
        loss_masks=masks,
    )


def _lr_factor(step: int, config: LoopConfig) -> float:
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train(
    config: LoopConfig,
    source: SampleSource,
    skeleton: Skeleton,
    out_path: str | Path,
    *,
    log_path: str | Path | None = None,
    meta: dict[str, Any] | None = None,
    progress: bool = True,
    init: Model | None = None,
    resume: tuple[Model, TrainState] | None = None,
    stop_at: int | None = None,
    stage: dict[str, Any] | None = None,
    keep_checkpoints: bool = False,
    max_seconds: float | None = None,
    stop: Callable[[], bool] | None = None,
) -> Model:
    """Train a detector on ``source`` and save it (BatchNorm frozen) to ``out_path``.

    From scratch (BatchNorm trained, then frozen), fine-tuning ``init`` (a saved model, whose
    BatchNorm statistics stay frozen as in the paper), or continuing ``resume`` (a checkpoint
    of this function, :func:`~deepercut.train.checkpoint.load_resumable`) exactly where it
    stopped: same weights, optimizer, LR schedule, step, data order and RNG states, so a run
    interrupted and resumed equals one that was not.

    ``source`` may be a :class:`MixedSource` (fixed shares of each batch). Training stops after
    ``config.steps`` steps (the LR schedule's length) or earlier at step ``stop_at`` (a chunk of
    a longer schedule). Every ``config.checkpoint_every`` steps and at the end, ``out_path`` is
    overwritten by a resumable checkpoint (and, with ``keep_checkpoints``, copied to
    ``OUT-stepN.pt``). With ``max_seconds`` the chunk also ends (saved, resumable) after the
    first step that finishes past that much wall time, and as soon as ``stop()`` is true after a
    step (a user's Ctrl-C: the step under way finishes, nothing is lost). The loss log (one
    JSON object per step) is appended to ``log_path``.
    ``meta["stages"]`` lists every invocation's ``stage`` record (command, data...) with the
    steps it ran and its wall time.
    """
    net, pairwise, meta, rng, start = _starting_point(config, source, skeleton, meta, init, resume)
    end = config.steps if stop_at is None else min(stop_at, config.steps)
    if end <= start:
        raise ValueError(f"nothing to train: the run is at step {start}, asked to stop at {end}")
    net.train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, config))
    if resume is not None:
        optimizer.load_state_dict(resume[1].optimizer)
        scheduler.load_state_dict(resume[1].scheduler)
    this_stage = {**(stage or {}), "steps": [start, start]}
    stages = [*meta.get("stages", []), this_stage]
    run = _Run(
        config, net, skeleton, Path(out_path), optimizer, scheduler, rng,
        {**meta, "train_config": config.to_dict(), "stages": stages},
        pairwise, this_stage, start, keep_checkpoints,
    )  # fmt: skip
    log = open(log_path, "a") if log_path else None
    try:
        end = _steps(run, source, end, log, progress, _chunk_over(max_seconds, stop, run.started))
    finally:
        if log is not None:
            log.close()
    return run.save(end)


def _steps(
    run: _Run,
    source: SampleSource,
    end: int,
    log: IO[str] | None,
    progress: bool,
    chunk_over: Callable[[], bool],
) -> int:
    """Optimise from ``run.start`` to ``end``, checkpointing on the way; returns the step
    reached (earlier than ``end`` when ``chunk_over()`` turned true after a step)."""
    config, net = run.config, run.net
    map_hw = (config.input_hw[0] // STRIDE, config.input_hw[1] // STRIDE)
    batches = _batches(source, config, run.skeleton, run.rng)
    bar = tqdm(
        range(run.start, end), initial=run.start, total=end, disable=not progress, desc="train",
        unit="step",
    )  # fmt: skip
    for step in bar:
        images, samples = next(batches)
        targets = batch_targets(net, samples, map_hw, config.min_radius)
        losses = compute_losses(net(images), targets, config)
        run.optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        run.optimizer.step()
        run.scheduler.step()
        values = losses.as_floats()
        bar.set_postfix(loss=f"{values['total']:.4f}", scmap=f"{values['scmap']:.4f}")
        if log is not None:
            _log_step(log, step, run.scheduler.get_last_lr()[0], values, run.started)
        if chunk_over():
            bar.close()
            return step + 1
        if (step + 1) % config.checkpoint_every == 0 and step + 1 < end:
            run.save(step + 1)
    return end


def _chunk_over(
    max_seconds: float | None, stop: Callable[[], bool] | None, started: float
) -> Callable[[], bool]:
    """Whether the chunk ends after the step just done: its wall time is up, or ``stop()``."""

    def over() -> bool:
        timed_out = max_seconds is not None and time.time() - started >= max_seconds
        return timed_out or (stop is not None and stop())

    return over


def _starting_point(
    config: LoopConfig,
    source: SampleSource,
    skeleton: Skeleton,
    meta: dict[str, Any] | None,
    init: Model | None,
    resume: tuple[Model, TrainState] | None,
) -> tuple[DeeperCut, dict[str, Any] | None, dict[str, Any], np.random.Generator, int]:
    """Where training starts: the network, the pairwise model it carries, the metadata, the
    data sampler's generator (torch's RNG set too) and the step reached."""
    if resume is not None:
        model0, state = resume
        # Only how often checkpoints are written may change between chunks.
        ours = {**config.to_dict(), "checkpoint_every": None}
        if {**state.config, "checkpoint_every": None} != ours:
            raise ValueError("resume: the training configuration differs from the checkpoint's")
        rng = numpy_generator(state.numpy_rng)
        torch.set_rng_state(state.torch_rng)
        meta = {**model0.meta, **(meta or {})}
        return state.training_net(model0), model0.pairwise, meta, rng, state.step
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    if init is not None:
        if init.skeleton != skeleton:
            raise ValueError("the initial model's skeleton differs from the training data's")
        return init.net, init.pairwise, meta or {}, rng, 0
    return DeeperCut(_initial_config(config, source, skeleton)), None, meta or {}, rng, 0


def _log_step(log: IO[str], step: int, lr: float, values: dict[str, float], started: float) -> None:
    """One line of the loss log (JSON)."""
    record = {"step": step, "lr": lr, **values}
    log.write(json.dumps({**record, "seconds": round(time.time() - started, 1)}))
    log.write("\n")
    log.flush()


@dataclass
class _Run:
    """A training run under way: what its steps change and its checkpoints store."""

    config: LoopConfig
    net: DeeperCut
    skeleton: Skeleton
    out: Path
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    rng: np.random.Generator
    meta: dict[str, Any]
    pairwise: dict[str, Any] | None
    #: this invocation's record in ``meta["stages"]``, updated at each save.
    stage: dict[str, Any]
    start: int
    keep_checkpoints: bool
    started: float = field(default_factory=time.time)

    def save(self, step: int) -> Model:
        """Write the resumable checkpoint of ``step`` (and its copy with keep_checkpoints)."""
        net, wall = self.net, round(time.time() - self.started, 1)
        self.stage.update(steps=[self.start, step], wall_seconds=wall)
        self.stage["saved"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        trains_bn = net.config.norm != "frozen"
        state = TrainState(
            step=step,
            config=self.config.to_dict(),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            numpy_rng=self.rng.bit_generator.state,
            torch_rng=torch.get_rng_state(),
            net_config=net.config.to_dict() if trains_bn else None,
            net_state=net.state_dict() if trains_bn else None,
        )
        model = _save(
            net, self.skeleton, self.config, self.out, self.meta, self.pairwise, step, state
        )
        if self.keep_checkpoints:
            copy = self.out.with_name(f"{self.out.stem}-step{step}{self.out.suffix}")
            shutil.copyfile(self.out, copy)
        return model


def _initial_config(config: LoopConfig, source: SampleSource, skeleton: Skeleton) -> DetectorConfig:
    """A from-scratch network configuration, with pairwise statistics drawn from ``source``."""
    stats_rng = np.random.default_rng(config.seed + 1)
    stat_samples = [source(stats_rng) for _ in range(config.stats_samples)]
    mean, std = offset_statistics(
        [torch.from_numpy(s.keypoints) for s in stat_samples],
        [torch.from_numpy(s.annotated) for s in stat_samples],
        skeleton.num_parts,
    )
    return DetectorConfig(
        arch=config.arch,
        num_parts=skeleton.num_parts,
        width=config.width,
        head_channels=config.head_channels,
        norm="batch",
        pairwise_mean=mean.tolist(),
        pairwise_std=std.tolist(),
    )


def _save(
    net: DeeperCut,
    skeleton: Skeleton,
    config: LoopConfig,
    out_path: str | Path,
    meta: dict[str, Any],
    pairwise: dict[str, Any] | None,
    steps: int,
    state: TrainState,
) -> Model:
    """Save a frozen-BatchNorm copy with the training state; training continues on ``net``."""
    deploy = DeeperCut(DetectorConfig.from_dict(net.config.to_dict()))
    deploy.load_state_dict(net.state_dict())
    deploy.eval().freeze_batchnorm()
    train_seconds = sum(s.get("wall_seconds", 0.0) for s in meta["stages"])
    model = Model(
        deploy,
        skeleton,
        config.deploy_hw,
        pairwise=pairwise,
        meta={**meta, "steps": steps, "train_seconds": round(train_seconds, 1)},
    )
    save_model(out_path, model, extra={TRAIN_STATE: state.to_checkpoint()})
    return model
