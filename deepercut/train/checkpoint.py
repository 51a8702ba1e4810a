"""Resumable training checkpoints: a model file plus the state that continues its training.

The file is an ordinary model checkpoint (:func:`deepercut.model.io.load_model` reads it and
ignores the rest) with one more entry, ``train_state``: the step reached, the optimizer's and
LR schedule's state dicts, the data sampler's NumPy generator state and torch's RNG state, the
training configuration, and (only when BatchNorm is being trained, i.e. from scratch) the
training-mode network, whose BatchNorm layers the saved deployment copy has frozen. Everything
is tensors or plain types, so ``torch.load(weights_only=True)`` accepts it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepercut.model.io import CheckpointError, Model, load_model
from deepercut.model.net import DeeperCut, DetectorConfig

#: Key of the training state in a checkpoint.
TRAIN_STATE = "train_state"


@dataclass
class TrainState:
    """Where a training run stands after ``step`` optimisation steps.

    Attributes:
        step: optimisation steps done.
        config: the run's ``LoopConfig`` as a dict (``LoopConfig.to_dict``).
        optimizer: the optimizer's state dict.
        scheduler: the LR scheduler's state dict.
        numpy_rng: the data sampler's ``bit_generator.state``.
        torch_rng: ``torch.get_rng_state()``.
        net_config, net_state: the training-mode network when its BatchNorm trains (else None:
            the checkpoint's own weights are the training network).
    """

    step: int
    config: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    numpy_rng: dict[str, Any]
    torch_rng: torch.Tensor
    net_config: dict[str, Any] | None = None
    net_state: dict[str, torch.Tensor] | None = None

    def to_checkpoint(self) -> dict[str, Any]:
        """The ``train_state`` entry (JSON strings for the nested plain-Python parts)."""
        return {
            "step": self.step,
            "config": json.dumps(self.config),
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            # PCG64's state holds 128-bit integers: through JSON they stay exact.
            "numpy_rng": json.dumps(self.numpy_rng),
            "torch_rng": self.torch_rng,
            "net_config": None if self.net_config is None else json.dumps(self.net_config),
            "net_state": self.net_state,
        }

    @classmethod
    def from_checkpoint(cls, entry: dict[str, Any]) -> TrainState:
        return cls(
            step=int(entry["step"]),
            config=json.loads(entry["config"]),
            optimizer=entry["optimizer"],
            scheduler=entry["scheduler"],
            numpy_rng=json.loads(entry["numpy_rng"]),
            torch_rng=entry["torch_rng"],
            net_config=None if entry["net_config"] is None else json.loads(entry["net_config"]),
            net_state=entry["net_state"],
        )

    def training_net(self, model: Model) -> DeeperCut:
        """The network training continues on: the stored training-mode one, or the model's."""
        if self.net_state is None or self.net_config is None:
            return model.net
        net = DeeperCut(DetectorConfig.from_dict(self.net_config))
        net.load_state_dict(self.net_state)
        return net


def load_resumable(path: str | os.PathLike[str]) -> tuple[Model, TrainState]:
    """The model and training state of a checkpoint written during training.

    Raises:
        CheckpointError: the checkpoint has no training state (a deployed model: fine-tune it
            with ``--init`` instead).
    """
    model = load_model(path)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    entry = raw.get(TRAIN_STATE)
    if not isinstance(entry, dict):
        raise CheckpointError(
            f"{path}: no training state to resume from (a deployed model? use --init)"
        )
    try:
        return model, TrainState.from_checkpoint(entry)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: malformed training state: {exc}") from exc


def update_checkpoint(
    path: str | os.PathLike[str],
    *,
    pairwise: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
) -> None:
    """Replace a checkpoint's pairwise model and/or metadata, keeping everything else
    (the training state included); atomically."""
    path = Path(path)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    if pairwise is not None:
        raw["pairwise"] = pairwise
    if meta is not None:
        raw["meta"] = json.loads(json.dumps(meta))
    tmp = path.with_name(path.name + ".tmp")
    torch.save(raw, tmp)
    os.replace(tmp, path)


def numpy_generator(state: dict[str, Any]) -> np.random.Generator:
    """A NumPy generator in the given ``bit_generator.state``."""
    bit = getattr(np.random, state["bit_generator"])()
    bit.state = state
    return np.random.Generator(bit)
