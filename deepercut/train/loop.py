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
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from deepercut.model.io import Model, save_model
from deepercut.model.net import STRIDE, DeeperCut, DetectorConfig, DetectorOutput
from deepercut.skeleton import Skeleton
from deepercut.train.augment import AugmentParams, PoseSample, augment
from deepercut.train.targets import Targets, make_targets, pairwise_statistics

#: A data source: draws one training sample with the given random generator.
SampleSource = Callable[[np.random.Generator], PoseSample]


@dataclass
class TrainConfig:
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
        return d


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


def compute_losses(out: DetectorOutput, targets: Targets, config: TrainConfig) -> Losses:
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
    source: SampleSource, config: TrainConfig, skeleton: Skeleton, rng: np.random.Generator
) -> Iterator[tuple[Tensor, list[PoseSample]]]:
    perm = skeleton.flip_permutation()
    while True:
        samples = [
            augment(source(rng), rng, config.augment, perm, config.input_hw)
            for _ in range(config.batch_size)
        ]
        images = torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2)
        yield images.float().div_(255), samples


def batch_targets(
    net: DeeperCut,
    samples: list[PoseSample],
    map_hw: tuple[int, int],
    min_radius: float = 6.0,
) -> Targets:
    """Targets for ``samples`` with the network's normalisation."""
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
    )


def _lr_factor(step: int, config: TrainConfig) -> float:
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train(
    config: TrainConfig,
    source: SampleSource,
    skeleton: Skeleton,
    out_path: str | Path,
    *,
    log_path: str | Path | None = None,
    meta: dict[str, Any] | None = None,
    progress: bool = True,
    init: Model | None = None,
) -> Model:
    """Train a detector on ``source`` and save it (BatchNorm frozen) to ``out_path``.

    From scratch (BatchNorm trained, then frozen), or fine-tuning ``init`` (a saved model,
    whose BatchNorm statistics stay frozen as in the paper).

    The loss log (one JSON object per logged step) goes to ``log_path``; intermediate
    checkpoints overwrite ``out_path`` every ``config.checkpoint_every`` steps.
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    if init is not None:
        if init.skeleton != skeleton:
            raise ValueError("the initial model's skeleton differs from the training data's")
        net = init.net
    else:
        net = DeeperCut(_initial_config(config, source, skeleton))
    net.train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, config))
    map_hw = (config.input_hw[0] // STRIDE, config.input_hw[1] // STRIDE)
    log = open(log_path, "a") if log_path else None
    meta = {**(meta or {}), "train_config": config.to_dict()}
    started = time.time()
    batches = _batches(source, config, skeleton, rng)
    bar = tqdm(range(config.steps), disable=not progress, desc="train", unit="step")
    try:
        for step in bar:
            images, samples = next(batches)
            targets = batch_targets(net, samples, map_hw, config.min_radius)
            losses = compute_losses(net(images), targets, config)
            optimizer.zero_grad(set_to_none=True)
            losses.total.backward()
            optimizer.step()
            scheduler.step()
            values = losses.as_floats()
            bar.set_postfix(loss=f"{values['total']:.4f}", scmap=f"{values['scmap']:.4f}")
            if log is not None:
                record = {"step": step, "lr": scheduler.get_last_lr()[0], **values}
                log.write(json.dumps({**record, "seconds": round(time.time() - started, 1)}))
                log.write("\n")
                log.flush()
            if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
                _save(net, skeleton, config, out_path, meta, started, step + 1)
    finally:
        if log is not None:
            log.close()
    return _save(net, skeleton, config, out_path, meta, started, config.steps)


def _initial_config(
    config: TrainConfig, source: SampleSource, skeleton: Skeleton
) -> DetectorConfig:
    """A from-scratch network configuration, with pairwise statistics drawn from ``source``."""
    stats_rng = np.random.default_rng(config.seed + 1)
    stat_samples = [source(stats_rng) for _ in range(config.stats_samples)]
    mean, std = pairwise_statistics(
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
    config: TrainConfig,
    out_path: str | Path,
    meta: dict[str, Any],
    started: float,
    steps: int,
) -> Model:
    """Save a frozen-BatchNorm copy; training continues on ``net`` itself."""
    deploy = DeeperCut(DetectorConfig.from_dict(net.config.to_dict()))
    deploy.load_state_dict(net.state_dict())
    deploy.eval().freeze_batchnorm()
    model = Model(
        deploy,
        skeleton,
        config.deploy_hw,
        meta={**meta, "steps": steps, "train_seconds": round(time.time() - started, 1)},
    )
    save_model(out_path, model)
    return model
