"""Checkpoints: a state dict plus plain metadata, loaded with ``torch.load(weights_only=True)``.

Layout (a dict): ``format`` = ``"deepercut.model"``, ``version``, ``network`` (optional:
``"deepercut"``, the default, ``"tfslim_resnet_v1"`` for networks imported from
pose-tensorflow / DeepLabCut 2.x, or ``"dlc3_resnet"`` for DeepLabCut 3 ones), ``config`` (the
network's config as a dict: a :class:`DetectorConfig`, a
:class:`~deepercut.model.external.tfslim_resnet.TFSlimPoseConfig` or a
:class:`~deepercut.model.external.dlc3.DLC3PoseConfig`), ``skeleton``
(:meth:`Skeleton.to_dict`), ``input_hw`` (the H×W the model was trained for), ``state_dict``,
``pairwise`` (optional: the pairwise model's arrays and metadata), ``meta`` (training data,
command, time...), ``train_state`` (optional: what ``deepercut train --resume`` continues from,
see :mod:`deepercut.train.checkpoint`; ignored when loading). No pickled objects, so
loading an untrusted file cannot execute code.

Loading a path (ours, the bundled model, or a foreign model to convert) is
:func:`deepercut.model.io.load_model`.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepercut.model.config_limits import check_parameter_budget
from deepercut.model.net import DeeperCut, DetectorConfig
from deepercut.model.pairwise import FEATURE_NAMES, PairwiseModel
from deepercut.skeleton import Skeleton

FORMAT = "deepercut.model"
VERSION = 1
DEFAULT_MODEL = "default.pt"
#: Largest input side a checkpoint may ask for (8K video is 7680 wide).
MAX_INPUT_SIDE = 8192
#: ``network`` of checkpoints of our own detector (also assumed when the key is absent).
OWN_NETWORK = "deepercut"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, not ours, or not fitting its network."""


@dataclass
class Model:
    """A loaded detector with what is needed to use it.

    Attributes:
        net: the detector network (eval mode): our :class:`DeeperCut`, or an imported network
            with the same interface (``config``, ``num_parts``, ``forward`` →
            :class:`~deepercut.model.net.DetectorOutput`, ``decode``).
        skeleton: part names, edges and solver stages.
        input_hw: the network input size it was trained/tuned for.
        pairwise: the pairwise model's stored arrays (``None`` when the checkpoint has none).
        meta: free-form provenance (training data, command, time).
    """

    net: DeeperCut
    skeleton: Skeleton
    input_hw: tuple[int, int]
    pairwise: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def pairwise_model(self) -> PairwiseModel:
        """The pairwise model stored with the detector.

        Raises:
            CheckpointError: the checkpoint has none (fit one with ``deepercut train``).
        """
        if self.pairwise is None:
            raise CheckpointError("this model has no pairwise model (fit one with train)")
        state = self.pairwise
        try:
            meta = json.loads(state["meta"])
            if meta.get("features") != list(FEATURE_NAMES):
                raise ValueError(f"features {meta.get('features')} differ from {FEATURE_NAMES}")
            return PairwiseModel(
                weights=state["weights"].double().numpy(),
                feature_mean=state["feature_mean"].double().numpy(),
                feature_std=state["feature_std"].double().numpy(),
                num_parts=int(meta["num_parts"]),
                cmax=float(meta["cmax"]),
                max_distance_factor=float(meta["max_distance_factor"]),
                min_scale=float(meta["min_scale"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"malformed pairwise model in checkpoint: {exc}") from exc


def pairwise_state(model: PairwiseModel) -> dict[str, Any]:
    """A pairwise model as checkpoint content (tensors and a JSON string, no pickled objects)."""
    meta = {
        "features": list(FEATURE_NAMES),
        "num_parts": model.num_parts,
        "cmax": model.cmax,
        "max_distance_factor": model.max_distance_factor,
        "min_scale": model.min_scale,
    }
    return {
        "weights": torch.from_numpy(model.weights),
        "feature_mean": torch.from_numpy(model.feature_mean),
        "feature_std": torch.from_numpy(model.feature_std),
        "meta": json.dumps(meta),
    }


def save_model(
    path: str | os.PathLike[str], model: Model, extra: dict[str, Any] | None = None
) -> None:
    """Write a checkpoint (atomically: a reader never sees a half-written file).

    ``extra``: further top-level entries (tensors and plain types only), e.g. ``train_state``.
    """
    path = Path(path)
    checkpoint = {
        "format": FORMAT,
        "version": VERSION,
        "network": _network_name(model.net),
        "config": model.net.config.to_dict(),
        "skeleton": model.skeleton.to_dict(),
        "input_hw": list(model.input_hw),
        "state_dict": {k: v.detach().cpu() for k, v in model.net.state_dict().items()},
        "pairwise": model.pairwise,
        # Through JSON: only plain types reach the file, so weights_only loading accepts it.
        "meta": json.loads(json.dumps(model.meta)),
        **(extra or {}),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)


def load_model_bytes(data: bytes, where: str, map_location: str | torch.device = "cpu") -> Model:
    """A checkpoint held in memory (e.g. a verified cache entry); ``where`` names it in errors.

    Raises:
        CheckpointError: unreadable, not a deepercut model, or not fitting its network.
    """
    ckpt = read_checkpoint_file(io.BytesIO(data), where, map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{where} is not a deepercut model (missing format {FORMAT!r})")
    return model_from_checkpoint(ckpt, where)


def read_checkpoint_file(
    source: Path | io.BytesIO, where: str, map_location: str | torch.device
) -> Any:
    """The raw checkpoint (``torch.load`` with ``weights_only``); ``where`` names it in errors.

    Raises:
        CheckpointError: the bytes are not a readable torch file.
    """
    try:
        return torch.load(source, map_location=map_location, weights_only=True)
    except Exception as exc:
        # Damaged bytes reach the unpickler's internals, which fail with whatever they hit
        # (KeyError, IndexError, struct.error, AssertionError...), not only UnpicklingError.
        raise CheckpointError(
            f"{where} is not a readable checkpoint (corrupt, truncated or not a torch file): "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from exc


def model_from_checkpoint(ckpt: dict[str, Any], path: str) -> Model:
    """The model a loaded checkpoint dict describes (``path`` names it in errors)."""
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"{path}: unsupported checkpoint version {ckpt.get('version')!r}")
    missing = [k for k in ("config", "skeleton", "input_hw", "state_dict") if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing}")
    for key in ("state_dict", "config", "skeleton"):
        if not isinstance(ckpt[key], dict):
            raise CheckpointError(f"{path}: {key} is a {type(ckpt[key]).__name__}, not a dict")
    for key in ("meta", "pairwise"):
        if ckpt.get(key) is not None and not isinstance(ckpt[key], dict):
            raise CheckpointError(f"{path}: {key} is a {type(ckpt[key]).__name__}, not a dict")
    input_hw = ckpt["input_hw"]
    if not (
        isinstance(input_hw, list | tuple)
        and len(input_hw) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in input_hw)
        and all(16 <= v <= MAX_INPUT_SIDE and v % 16 == 0 for v in input_hw)
    ):
        raise CheckpointError(
            f"{path}: input_hw must be two multiples of 16 in [16, {MAX_INPUT_SIDE}], got "
            f"{input_hw!r:.60}"
        )
    try:
        skeleton = Skeleton.from_dict(ckpt["skeleton"])
        net = _build_network(ckpt.get("network", OWN_NETWORK), ckpt["config"])
        config = net.config
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: invalid model configuration: {exc}") from exc
    if skeleton.num_parts != config.num_parts:
        raise CheckpointError(
            f"{path}: skeleton has {skeleton.num_parts} parts, network {config.num_parts}"
        )
    _load_state(net, ckpt["state_dict"], path)
    net.eval()
    h, w = input_hw
    return Model(net, skeleton, (h, w), ckpt.get("pairwise"), dict(ckpt.get("meta") or {}))


def _network_name(net: nn.Module) -> str:
    if isinstance(net, DeeperCut):
        return OWN_NETWORK
    from deepercut.model.external.dlc3 import FAMILY as DLC3_FAMILY
    from deepercut.model.external.dlc3 import DLC3PoseNet
    from deepercut.model.external.tfslim_resnet import FAMILY, TFSlimPoseNet

    if isinstance(net, TFSlimPoseNet):
        return FAMILY
    if isinstance(net, DLC3PoseNet):
        return DLC3_FAMILY
    raise TypeError(f"cannot save a {type(net).__name__}: not a network deepercut can rebuild")


def _build_network(network: str, config: dict[str, Any]) -> nn.Module:
    """The (randomly initialised) network a checkpoint's ``network`` and ``config`` describe,
    after its values and size were checked (nothing is allocated for a refused config)."""
    from deepercut.model.external.dlc3 import FAMILY as DLC3_FAMILY
    from deepercut.model.external.dlc3 import DLC3PoseConfig, DLC3PoseNet
    from deepercut.model.external.tfslim_resnet import (
        FAMILY,
        TFSlimPoseConfig,
        TFSlimPoseNet,
    )

    builders: dict[str, Callable[[], nn.Module]] = {
        OWN_NETWORK: lambda: DeeperCut(DetectorConfig.from_dict(config)),
        FAMILY: lambda: TFSlimPoseNet(TFSlimPoseConfig.from_dict(config)),
        DLC3_FAMILY: lambda: DLC3PoseNet(DLC3PoseConfig.from_dict(config)),
    }
    if network not in builders:
        raise ValueError(
            f"unknown network {network!r} (expected {OWN_NETWORK!r}, {FAMILY!r} or {DLC3_FAMILY!r})"
        )
    check_parameter_budget(builders[network], f"the {network} network")
    return builders[network]()


def _load_state(net: nn.Module, state: dict[str, torch.Tensor], path: str) -> None:
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{k} {_shape_of(state[k])} (expected {tuple(own[k].shape)})"
        for k in sorted(set(own) & set(state))
        if not isinstance(state[k], torch.Tensor) or state[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{path}: weights do not fit the network: missing {missing[:3]} ({len(missing)}), "
            f"unexpected {unexpected[:3]} ({len(unexpected)}), wrong shapes {wrong[:3]} "
            f"({len(wrong)})"
        )
    # torch keeps no checksums: damaged weight bytes often decode to NaN/inf, which would
    # silently give frames without people.
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise CheckpointError(
            f"{path}: non-finite values in {broken[:3]} ({len(broken)} tensors): damaged weights"
        )
    net.load_state_dict(state)


def _shape_of(value: object) -> str:
    """A state-dict entry's shape, or its type when it is not a tensor (a corrupt file)."""
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__
