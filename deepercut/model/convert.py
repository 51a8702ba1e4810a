"""Converters: pose-tensorflow and DeepLabCut models → our :class:`~deepercut.model.io.Model`.

Supported sources (see :func:`detect_source`):

- **pose-tensorflow** (DeeperCut's TensorFlow release): a folder, or its ``pose_cfg.yaml``, or
  a checkpoint prefix/``.index`` with ``pose_cfg.yaml`` beside it. ``net_type`` ``resnet_50``,
  ``resnet_101`` or ``resnet_152`` with the part, locref, pairwise and intermediate heads the
  config enables; the pairwise statistics come from ``pairwise_stats_fn`` (×
  ``global_scale``, as pose-tensorflow applies them).
- **DeepLabCut 2.x** (TensorFlow): a project folder (``config.yaml`` + ``dlc-models/...``),
  one of its ``train`` folders, or a snapshot. Single-animal ResNet-50/101/152 models (both
  TF-slim head names, ``pose/part_pred/block4/weights``, and DeepLabCut ≥ 2.2's keras ones,
  ``pose/part_pred/part_pred/kernel``). Multi-animal models (part affinity fields, identity
  channels, the multi-stage and DLCRNet decoders), MobileNet and EfficientNet raise
  :class:`UnsupportedArchitecture`.
- **DeepLabCut 3** (PyTorch ``.pt`` snapshots, read with ``weights_only=True``): a project
  folder (``config.yaml`` + ``dlc-models-pytorch/...``), a ``train`` folder with
  ``pytorch_config.yaml``, or a snapshot beside one. Single-animal bottom-up models with a
  ``ResNet`` backbone (timm ``resnet50_gn``, DeepLabCut's ``resnet_50``; ``resnet50``,
  ``resnet101`` = ``resnet_101``, ``resnet152``) and one ``HeatmapHead`` (heatmap and locref
  deconvolutions, ``HeatmapPredictor``) whose maps have stride 8, see
  :mod:`~deepercut.model.external.dlc3`. Top-down and conditional top-down models
  (detectors, BUCTD), DEKR, part-affinity-field and identity heads, unique body parts,
  DLCRNet, HRNet, CSPNeXt / RTMPose and necks raise :class:`UnsupportedArchitecture`
  naming what the config holds.

The converted model is a :class:`~deepercut.model.external.tfslim_resnet.TFSlimPoseNet` (a
:class:`~deepercut.model.external.dlc3.DLC3PoseNet` for DeepLabCut 3) with its skeleton (part
names from the config; MPII-14 and COCO-17 layouts get their full skeletons) and a *prior*
pairwise model (:func:`prior_pairwise_model`), since neither project ships one in
our feature set.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepercut.bounded_files import check_mat_size
from deepercut.model.checkpoint import (
    CheckpointError,
    Model,
    load_model_bytes,
    pairwise_state,
    save_model,
)
from deepercut.model.codecs import LOCREF_STD
from deepercut.model.external.dlc3 import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TIMM_RESNETS,
    TRUNK_CHANNELS,
    DLC3PoseConfig,
    DLC3PoseNet,
)
from deepercut.model.external.dlc3 import LOCREF_STD as DLC3_LOCREF_STD
from deepercut.model.external.formats import detect_source
from deepercut.model.external.tf_checkpoint import CheckpointFormatError, TFCheckpoint
from deepercut.model.external.tfslim_resnet import (
    MEAN_PIXEL,
    STANDARD_UNITS,
    TFSlimPoseConfig,
    TFSlimPoseNet,
    tf_variable_map,
)
from deepercut.model.pairwise import FEATURE_NAMES, PairwiseModel, num_pair_classes
from deepercut.private_cache import PrivateCache, UntrustedCache, folder
from deepercut.skeleton import COCO17, MPII14, Skeleton

log = logging.getLogger(__name__)

#: Bumped whenever a conversion would produce a different model: old cache entries are unused.
CONVERTER_VERSION = 1
#: Network input size of converted models unless the caller or a DeepLabCut project's video
#: size gives one (a 480×640 frame).
DEFAULT_INPUT_HW = (480, 640)
#: Name suffixes of optimizer slots and bookkeeping a training run leaves in a checkpoint.
_SLOT_SUFFIXES = ("Momentum", "Adam", "Adam_1", "RMSProp", "RMSProp_1", "ExponentialMovingAverage")


class UnsupportedArchitecture(CheckpointError):
    """A model whose architecture we cannot reproduce exactly."""


class WeightsMismatch(CheckpointError):
    """A checkpoint whose variables do not match the network its config describes."""


# pose-tensorflow's configs name symmetric joints once (``all_joints: [[0, 5], [1, 4], ...]``).
_MPII_GROUPS = [[0, 5], [1, 4], [2, 3], [6, 11], [7, 10], [8, 9], [12], [13]]
_COCO_GROUPS = [[0], [1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16]]


# ---------------------------------------------------------------------- configs and sources


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping (pose-tensorflow / DeepLabCut config).

    Raises:
        CheckpointError: unreadable, or not a mapping.
    """
    try:
        import yaml
    except ImportError as exc:
        raise CheckpointError(f"reading {path} needs PyYAML: pip install pyyaml") from exc
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a YAML mapping")
    return data


def _snapshot_number(prefix: Path) -> int:
    match = re.search(r"-(\d+)$", prefix.name)
    return int(match.group(1)) if match else -1


def latest_snapshot(folder: Path) -> Path:
    """The checkpoint prefix with the highest step in ``folder`` (``snapshot-103000``).

    Raises:
        CheckpointError: the folder holds no ``*.index`` checkpoint.
    """
    prefixes = [p.with_suffix("") for p in folder.glob("*.index")]
    if not prefixes:
        raise CheckpointError(f"no TensorFlow checkpoint (*.index) in {folder}")
    return max(prefixes, key=lambda p: (_snapshot_number(p), p.name))


def source_files(path: str | os.PathLike[str]) -> list[Path]:
    """The files a conversion of ``path`` reads (what a cache key must hash)."""
    kind = detect_source(path)
    if kind is None:
        raise CheckpointError(f"{path} is not a pose-tensorflow or DeepLabCut model")
    if kind == "dlc3":
        snapshot, config = _dlc3_files(Path(path))
        project = _dlc_project_of(config.parent, "dlc-models-pytorch")
        return [config, snapshot] + ([project / "config.yaml"] if project is not None else [])
    cfg_path, prefix, project = _tf_files(Path(path), kind)
    files = [cfg_path, prefix.with_name(prefix.name + ".index")]
    files += sorted(prefix.parent.glob(prefix.name + ".data-*"))
    cfg = read_yaml(cfg_path)
    stats = cfg.get("pairwise_stats_fn")
    if cfg.get("pairwise_predict") and stats and (cfg_path.parent / stats).is_file():
        files.append(cfg_path.parent / stats)
    if project is not None:
        files.append(project / "config.yaml")
    return files


def _tf_files(path: Path, kind: str) -> tuple[Path, Path, Path | None]:
    """``(pose_cfg.yaml, checkpoint prefix, DLC project folder or None)`` of a TF source."""
    if kind == "dlc2":
        train = _dlc2_train_folder(path)
        return train / "pose_cfg.yaml", latest_snapshot(train), path
    if path.is_dir():
        folder, prefix = path, None
    elif path.name.endswith(".yaml"):
        folder, prefix = path.parent, None
    else:
        from deepercut.model.external.tf_checkpoint import checkpoint_prefix

        prefix = checkpoint_prefix(path)
        folder = prefix.parent
    cfg = folder / "pose_cfg.yaml" if not path.name.endswith(".yaml") else path
    if not cfg.is_file():
        raise CheckpointError(f"no pose_cfg.yaml beside {path}: it names the network's heads")
    if prefix is None:
        prefix = latest_snapshot(folder)
    project = _dlc_project_of(folder)
    return cfg, prefix, project


def _dlc_project_of(train: Path, models_folder: str = "dlc-models") -> Path | None:
    """The DeepLabCut project holding a ``<models_folder>/.../train`` folder, if it is one
    (``dlc-models`` for DeepLabCut 2.x, ``dlc-models-pytorch`` for DeepLabCut 3)."""
    parts = train.resolve().parts
    if models_folder in parts:
        root = Path(*parts[: parts.index(models_folder)])
        if (root / "config.yaml").is_file():
            return root
    return None


def _dlc2_train_folder(project: Path, shuffle: int = 1) -> Path:
    """The ``train`` folder of a DeepLabCut 2.x project's current iteration and shuffle."""
    config = read_yaml(project / "config.yaml")
    iteration = config.get("iteration", 0)
    folders = sorted(project.glob(f"dlc-models/iteration-{iteration}/*shuffle{shuffle}/train"))
    fractions = config.get("TrainingFraction") or []
    if len(folders) > 1 and fractions:
        wanted = f"trainset{round(100 * float(fractions[0]))}shuffle"
        folders = [f for f in folders if wanted in f.parent.name] or folders
    if not folders:
        raise CheckpointError(
            f"{project}: no dlc-models/iteration-{iteration}/*shuffle{shuffle}/train folder "
            "(train the network in DeepLabCut first)"
        )
    if len(folders) > 1:
        raise CheckpointError(
            f"{project}: several trained models match, pass one train folder: "
            f"{[str(f) for f in folders]}"
        )
    return folders[0]


# ---------------------------------------------------------------------- architecture


def _tf_architecture(
    cfg: dict[str, Any], ckpt: TFCheckpoint, where: str
) -> tuple[TFSlimPoseConfig, str, bool]:
    """The network a pose config + checkpoint describe: ``(config, head naming, bn_scale)``."""
    depth = _resnet_depth(cfg, where)
    _refuse_multi_animal(cfg, where)
    scope = f"resnet_v1_{depth}"
    if f"{scope}/conv1/weights" not in ckpt:
        scopes = sorted({n.split("/")[0] for n in ckpt.names()})
        net_type = str(cfg.get("net_type", "resnet_101"))
        raise WeightsMismatch(
            f"{where}: no {scope}/conv1/weights for net_type {net_type!r}; top-level scopes "
            f"in the checkpoint: {scopes[:8]}"
        )
    units = _block_units(ckpt, depth, scope, where)
    shapes = ckpt.shapes()
    widths = tuple(
        shapes[f"{scope}/block{b + 1}/unit_1/bottleneck_v1/conv1/weights"][3] for b in range(4)
    )
    naming = _head_naming(ckpt, where)
    num_parts = int(cfg.get("num_joints", 0))
    intermediate = None
    if cfg.get("intermediate_supervision"):
        intermediate = int(cfg.get("intermediate_supervision_layer", 12))
    try:
        config = TFSlimPoseConfig(
            depth=depth,
            units=units,
            root_width=shapes[f"{scope}/conv1/weights"][3],
            bottleneck_widths=widths,
            num_parts=num_parts,
            locref=bool(cfg.get("location_refinement", False)),
            pairwise=bool(cfg.get("pairwise_predict", False)),
            intermediate_unit=intermediate,
            mean_pixel=tuple(cfg.get("mean_pixel") or MEAN_PIXEL),  # type: ignore[arg-type]
            locref_std=float(cfg.get("locref_stdev", LOCREF_STD)),
        )
    except (TypeError, ValueError) as exc:
        raise UnsupportedArchitecture(f"{where}: {exc}") from exc
    return config, naming, f"{scope}/conv1/BatchNorm/gamma" in ckpt


def _resnet_depth(cfg: dict[str, Any], where: str) -> int:
    """The depth of the config's ``net_type`` (``resnet_N``), the only family supported."""
    net_type = str(cfg.get("net_type", "resnet_101"))
    match = re.fullmatch(r"resnet_(\d+)", net_type)
    if match is None:
        raise UnsupportedArchitecture(
            f"{where}: net_type {net_type!r} is not supported; supported are the TF-slim "
            "ResNets resnet_50, resnet_101 and resnet_152 (MobileNet, EfficientNet and "
            "DLCRNet are not)"
        )
    return int(match.group(1))


def _refuse_multi_animal(cfg: dict[str, Any], where: str) -> None:
    """Raise :class:`UnsupportedArchitecture` for a DeepLabCut multi-animal network."""
    dataset_type = str(cfg.get("dataset_type", ""))
    multi = [
        reason
        for reason, present in (
            ("a multi-animal dataset_type", "multi-animal" in dataset_type),
            ("part affinity fields", bool(cfg.get("partaffinityfield_predict"))),
            ("the multi-stage decoder", bool(cfg.get("multi_stage"))),
            ("identity channels", int(cfg.get("num_idchannel") or 0) > 0),
        )
        if present
    ]
    if multi:
        raise UnsupportedArchitecture(
            f"{where}: DeepLabCut multi-animal networks are not supported ({', '.join(multi)}); "
            "single-animal ResNet models and pose-tensorflow models are"
        )


def _block_units(ckpt: TFCheckpoint, depth: int, scope: str, where: str) -> tuple[int, ...]:
    """The units of each of the four blocks in the checkpoint, checked against the depth."""
    names = ckpt.names()
    units = []
    for block in range(1, 5):
        pattern = re.compile(rf"{scope}/block{block}/unit_(\d+)/")
        found = {int(m.group(1)) for n in names if (m := pattern.match(n))}
        units.append(max(found) if found else 0)
    expected = STANDARD_UNITS.get(depth)
    if expected is not None and tuple(units) != expected:
        missing = [
            f"{scope}/block{b + 1}/unit_{u + 1}/bottleneck_v1/conv1/weights"
            for b, n in enumerate(expected)
            for u in range(units[b], n)
        ]
        extra = [
            f"{scope}/block{b + 1}/unit_{u + 1}"
            for b, n in enumerate(units)
            for u in range(expected[b], n)
        ]
        raise WeightsMismatch(
            f"{where}: {scope} has units {expected}, the checkpoint {tuple(units)}: missing "
            f"{missing[:5]} ({len(missing)}), unexpected {extra[:5]} ({len(extra)})"
        )
    if expected is None and (min(units) < 1 or 3 * sum(units) + 2 != depth):
        raise WeightsMismatch(
            f"{where}: units {tuple(units)} do not make a {scope} (depth 3·units + 2)"
        )
    return tuple(units)


def _head_naming(ckpt: TFCheckpoint, where: str) -> str:
    """How the checkpoint names its part detection head: ``slim`` or ``keras``."""
    if "pose/part_pred/block4/weights" in ckpt:
        return "slim"
    if "pose/part_pred/part_pred/kernel" in ckpt:
        return "keras"
    raise WeightsMismatch(
        f"{where}: no part detection head (pose/part_pred/block4/weights or "
        "pose/part_pred/part_pred/kernel)"
    )


def _is_slot(name: str) -> bool:
    return name.rsplit("/", 1)[-1] in _SLOT_SUFFIXES


def load_tf_weights(
    net: TFSlimPoseNet, ckpt: TFCheckpoint, head_naming: str, bn_scale: bool, where: str
) -> None:
    """Copy a checkpoint's variables into ``net``, checking names and shapes both ways.

    Variables of the trunk scope and of ``pose/`` must all be used (optimizer slots such as
    ``.../Momentum`` aside); any other top-level variable (``global_step``) is ignored.

    Raises:
        WeightsMismatch: listing the first few missing, unexpected and wrongly shaped ones.
    """
    mapping = tf_variable_map(net.config, head_naming, bn_scale)
    used = {tf_name for tf_name, _ in mapping.values()}
    scope = net.config.scope
    missing = sorted(n for n in used if n not in ckpt)
    unexpected = sorted(
        n
        for n in ckpt.names()
        if n.startswith((f"{scope}/", "pose/")) and n not in used and not _is_slot(n)
    )
    state = net.state_dict()
    wrong, loaded = [], {}
    for key, (tf_name, layout) in mapping.items():
        if tf_name in missing:
            continue
        try:
            array = layout(ckpt.read(tf_name))
        except CheckpointFormatError as exc:
            raise WeightsMismatch(f"{where}: {exc}") from exc
        if tuple(array.shape) != tuple(state[key].shape):
            wrong.append(f"{tf_name} {ckpt.entries[tf_name].shape}")
            continue
        loaded[key] = torch.from_numpy(np.ascontiguousarray(array, np.float32))
    if missing or unexpected or wrong:
        raise WeightsMismatch(
            f"{where}: variables do not fit {scope} with {net.num_parts} parts: missing "
            f"{missing[:5]} ({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)}), "
            f"wrong shapes {wrong[:5]} ({len(wrong)})"
        )
    state.update(loaded)
    net.load_state_dict(state)


# ---------------------------------------------------------------------- skeleton, pairwise


def skeleton_from_config(cfg: dict[str, Any], project: dict[str, Any] | None = None) -> Skeleton:
    """Part names, edges and stages of a pose config (and its DeepLabCut project config).

    pose-tensorflow's MPII-14 and COCO-17 layouts become :data:`MPII14` / :data:`COCO17`;
    otherwise parts are named from ``all_joints_names`` (a symmetric pair ``[a, b]`` of name
    ``x`` becomes ``x1``, ``x2``, and a flip pair), edges come from the project's
    ``skeleton``, and one stage holds every part.
    """
    num = int(cfg.get("num_joints", 0))
    groups = [list(map(int, g)) for g in cfg.get("all_joints") or [[i] for i in range(num)]]
    names = [str(n) for n in cfg.get("all_joints_names") or []]
    if num == 14 and groups == _MPII_GROUPS:
        return MPII14
    if num == 17 and groups == _COCO_GROUPS:
        return COCO17
    if len(names) != len(groups) or sorted(i for g in groups for i in g) != list(range(num)):
        raise CheckpointError(
            f"all_joints {groups} and all_joints_names {names} do not name {num} joints"
        )
    parts = [""] * num
    flips = []
    for group, name in zip(groups, names, strict=True):
        for k, joint in enumerate(group):
            parts[joint] = name if len(group) == 1 else f"{name}{k + 1}"
        if len(group) == 2:
            flips.append((group[0], group[1]))
    edges = []
    for pair in (project or {}).get("skeleton") or []:
        if len(pair) == 2 and pair[0] in parts and pair[1] in parts:
            edges.append((parts.index(pair[0]), parts.index(pair[1])))
    name = str((project or {}).get("Task") or cfg.get("dataset_type") or "imported")
    return Skeleton(
        name=name,
        parts=tuple(parts),
        edges=tuple(edges),
        stages=(tuple(range(num)),),
        flip_pairs=tuple(flips),
    )


def prior_pairwise_model(num_parts: int, offsets: bool) -> PairwiseModel:
    """A hand-set pairwise model for networks that come without one in our feature set.

    With pairwise regression (``offsets``), two candidates are the same person when each one's
    regressed vector lands on the other and their predicted skeletons agree: log-odds
    ``3 − 2.5·(fwd + bwd residual) − 2.5·consensus`` in units of the pair's predicted person
    size. Without it (single-animal DeepLabCut, pose-tensorflow's single-person MPII model)
    every pair is mildly attractive (log-odds 1) and within reach, so the best candidate of
    each part forms one individual, as ``deeplabcut.analyze_videos``'s argmax does; a second
    *confident* detection of a part (two parts of one individual are never the same part) can
    still make a second individual, weak ones are dropped. Fit a real model with
    ``deepercut train --pairwise-only`` where labelled images exist.
    """
    features = {name: i for i, name in enumerate(FEATURE_NAMES)}
    weights = np.zeros((num_pair_classes(num_parts), len(FEATURE_NAMES)))
    weights[:, features["bias"]] = 3.0 if offsets else 1.0
    if offsets:
        for name in ("fwd_residual", "bwd_residual", "consensus"):
            weights[:, features[name]] = -2.5
    mean, std = np.zeros(len(FEATURE_NAMES)), np.ones(len(FEATURE_NAMES))
    # Without offsets every candidate's size floor is its scale: a huge floor puts every pair
    # of the frame within max_distance_factor of each other.
    min_scale = 4.0 if offsets else 1e5
    return PairwiseModel(weights, mean, std, num_parts, min_scale=min_scale)


def _pairwise_stats(
    cfg: dict[str, Any], cfg_path: Path, num_parts: int
) -> tuple[list[Any], list[Any]]:
    """pose-tensorflow's ``pairwise_stats.mat`` as [P, P−1, 2] means and stds, × global_scale.

    Raises:
        CheckpointError: the file is missing or does not cover every ordered part pair.
    """
    import scipy.io

    name = cfg.get("pairwise_stats_fn")
    path = cfg_path.parent / str(name) if name else None
    if path is None or not path.is_file():
        raise CheckpointError(
            f"{cfg_path}: pairwise_predict needs pairwise_stats_fn (not found: {path})"
        )
    try:
        check_mat_size(path, 16 << 20)  # P·(P−1) pairs of 2-vectors: KB for real models
        stats = scipy.io.loadmat(path, variable_names=["graph", "means", "std_devs"])
    except (ValueError, OSError, NotImplementedError) as exc:  # FileTooLarge is a ValueError
        raise CheckpointError(f"{path}: unreadable pairwise statistics: {exc}") from exc
    scale = float(cfg.get("global_scale", 1.0))
    mean = np.zeros((num_parts, num_parts - 1, 2))
    std = np.ones((num_parts, num_parts - 1, 2))
    seen = set()
    try:
        for (a, b), m, s in zip(stats["graph"], stats["means"], stats["std_devs"], strict=True):
            a, b = int(a), int(b)
            q = b - int(a < b)  # the "own part skipped" index pose-tensorflow uses
            mean[a, q], std[a, q] = np.asarray(m) * scale, np.asarray(s) * scale
            seen.add((a, b))
    except (KeyError, ValueError, IndexError) as exc:
        raise CheckpointError(f"{path}: not pose-tensorflow pairwise statistics: {exc}") from exc
    wanted = {(a, b) for a in range(num_parts) for b in range(num_parts) if a != b}
    if seen != wanted:
        raise CheckpointError(f"{path}: statistics miss part pairs {sorted(wanted - seen)[:5]}")
    return mean.tolist(), std.tolist()


# ---------------------------------------------------------------------- converters


def convert_tf_model(
    path: str | os.PathLike[str], input_hw: tuple[int, int] | None = None
) -> Model:
    """A pose-tensorflow model or a DeepLabCut 2.x project/train folder/snapshot as our Model.

    Raises:
        UnsupportedArchitecture: a network we do not reproduce.
        WeightsMismatch: the checkpoint does not fit the network its config describes.
        CheckpointError: missing or malformed configs.
    """
    _check_input_hw(input_hw)
    path = Path(path)
    kind = detect_source(path)
    if kind not in ("pose-tensorflow", "dlc2"):
        raise CheckpointError(f"{path} is not a pose-tensorflow or DeepLabCut 2.x model")
    cfg_path, prefix, project_dir = _tf_files(path, kind)
    cfg = read_yaml(cfg_path)
    project = read_yaml(project_dir / "config.yaml") if project_dir is not None else None
    where = str(prefix)
    try:
        ckpt = TFCheckpoint(prefix)
    except CheckpointFormatError as exc:
        raise CheckpointError(str(exc)) from exc
    config, naming, bn_scale = _tf_architecture(cfg, ckpt, where)
    if config.pairwise:
        config.pairwise_mean, config.pairwise_std = _pairwise_stats(cfg, cfg_path, config.num_parts)
    net = TFSlimPoseNet(config)
    load_tf_weights(net, ckpt, naming, bn_scale, where)
    net.eval()
    skeleton = skeleton_from_config(cfg, project)
    family = "deeplabcut2" if project is not None or "dataset_type" in cfg else "pose-tensorflow"
    meta = {
        "imported_from": {
            "family": family,
            "checkpoint": str(prefix.resolve()),
            "config": str(cfg_path.resolve()),
            "step": _snapshot_number(prefix),
            "head_naming": naming,
        },
        "pairwise_model": "prior (deepercut.model.convert.prior_pairwise_model)",
    }
    pairwise = prior_pairwise_model(config.num_parts, offsets=config.pairwise)
    return Model(
        net,  # type: ignore[arg-type]  (same interface as DeeperCut)
        skeleton,
        input_hw or _project_input_hw(project) or DEFAULT_INPUT_HW,
        pairwise_state(pairwise),
        meta,
    )


def _check_input_hw(input_hw: tuple[int, int] | None) -> None:
    """Refuse an input size the networks cannot take (None: the project's or the default)."""
    if input_hw is not None and (input_hw[0] % 16 or input_hw[1] % 16 or min(input_hw) <= 0):
        raise ValueError(f"input size must be positive multiples of 16, got {input_hw}")


def _project_input_hw(project: dict[str, Any] | None) -> tuple[int, int] | None:
    """A DeepLabCut project's video size (its first ``video_sets`` crop ``x1, x2, y1, y2``)
    rounded up to multiples of 16: DeepLabCut runs its network on whole frames, so letterboxing
    into this keeps the scale it was trained at."""
    for entry in ((project or {}).get("video_sets") or {}).values():
        try:
            x1, x2, y1, y2 = (int(float(v)) for v in str(entry["crop"]).split(","))
        except (KeyError, TypeError, ValueError):
            continue
        if x2 > x1 and y2 > y1:
            return -(-(y2 - y1) // 16) * 16, -(-(x2 - x1) // 16) * 16
    return None


def _dlc3_files(path: Path) -> tuple[Path, Path]:
    """``(snapshot .pt, pytorch_config.yaml)`` of a DeepLabCut 3 source."""
    if path.is_dir() and (path / "config.yaml").is_file():
        found = sorted(path.glob("dlc-models-pytorch/iteration-*/*/train/pytorch_config.yaml"))
        if not found:
            raise CheckpointError(f"{path}: no trained PyTorch model under dlc-models-pytorch")
        path = found[-1].parent
    folder = path if path.is_dir() else path.parent
    config = folder / "pytorch_config.yaml"
    if path.is_dir():
        snapshots = sorted(folder.glob("snapshot-*.pt"))
        if not snapshots:
            raise CheckpointError(f"{folder}: no snapshot-*.pt")
        path = max(snapshots, key=lambda p: (int(re.sub(r"\D", "", p.stem) or -1), p.name))
    if not config.is_file():
        raise CheckpointError(f"no pytorch_config.yaml beside {path}")
    return path, config


def describe_dlc3_config(cfg: dict[str, Any]) -> str:
    """``method, backbone, heads`` of a ``pytorch_config.yaml`` (what an error names)."""
    model = cfg.get("model") or {}
    backbone = model.get("backbone") or {}
    heads = model.get("heads") or {}
    head_types = {name: (h or {}).get("type") for name, h in heads.items()}
    text = f"method {cfg.get('method', 'bu')}, backbone {backbone.get('type')}"
    if backbone.get("model_name"):
        text += f" {backbone['model_name']}"
    if model.get("neck"):
        text += f", neck {(model['neck'] or {}).get('type')}"
    return text + f", heads {head_types}"


#: What :func:`convert_dlc3_snapshot` reproduces, for error messages.
DLC3_SUPPORTED = (
    "supported are single-animal bottom-up models with a ResNet backbone (timm "
    f"{', '.join(TIMM_RESNETS)}) and one HeatmapHead with a HeatmapPredictor at stride 8"
)


def _deconv_layers(spec: Any, where: str, what: str) -> tuple[tuple[int, int, int], ...]:
    """A DeconvModule config (``channels``, ``kernel_size``, ``strides``) as layer triples."""
    if not isinstance(spec, dict):
        raise UnsupportedArchitecture(f"{where}: HeatmapHead without a {what}")
    if spec.get("final_conv"):
        raise UnsupportedArchitecture(
            f"{where}: the {what} ends in a final_conv, which is not supported; {DLC3_SUPPORTED}"
        )
    try:
        channels = [int(c) for c in spec["channels"]]
        kernels = [int(k) for k in spec["kernel_size"]]
        strides = [int(v) for v in spec["strides"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: malformed {what} {spec}: {exc}") from exc
    if not kernels or not len(channels) == len(kernels) + 1 == len(strides) + 1:
        raise UnsupportedArchitecture(
            f"{where}: {what} {spec} is not a chain of transposed convolutions"
        )
    if channels[0] != TRUNK_CHANNELS:
        raise UnsupportedArchitecture(
            f"{where}: {what} reads {channels[0]} channels, a bottleneck ResNet gives "
            f"{TRUNK_CHANNELS}"
        )
    return tuple(zip(channels[1:], kernels, strides, strict=True))


def _dlc3_architecture(cfg: dict[str, Any], where: str) -> tuple[DLC3PoseConfig, list[str]]:
    """The network a ``pytorch_config.yaml`` describes, and its body-part names.

    Raises:
        UnsupportedArchitecture: anything but a single-animal ResNet + HeatmapHead model.
    """
    model = cfg.get("model") or {}
    backbone = model.get("backbone") or {}
    head = (model.get("heads") or {}).get("bodypart") or {}
    predictor = head.get("predictor") or {}
    name = str(backbone.get("model_name", "resnet50")).split(".")[0]
    problems = _dlc3_unsupported(cfg, name)
    if problems:
        raise UnsupportedArchitecture(
            f"{where}: DeepLabCut 3 model ({describe_dlc3_config(cfg)}) is not supported "
            f"({'; '.join(problems)}); {DLC3_SUPPORTED}"
        )
    bodyparts = [str(b) for b in (cfg.get("metadata") or {}).get("bodyparts") or []]
    if not bodyparts:
        raise CheckpointError(f"{where}: pytorch_config.yaml names no metadata.bodyparts")
    mean, std, colormode = _dlc3_input(cfg.get("data") or {}, where)
    locref_spec = head.get("locref_config")
    try:
        config = DLC3PoseConfig(
            model_name=name,
            output_stride=int(backbone.get("output_stride", 32)),
            num_parts=len(bodyparts),
            heatmap_layers=_deconv_layers(head.get("heatmap_config"), where, "heatmap_config"),
            locref_layers=(
                _deconv_layers(locref_spec, where, "locref_config") if locref_spec else ()
            ),
            locref=bool(predictor.get("location_refinement", True)) and bool(locref_spec),
            apply_sigmoid=bool(predictor.get("apply_sigmoid", True)),
            locref_std=float(predictor.get("locref_std", DLC3_LOCREF_STD)),
            pixel_mean=mean,
            pixel_std=std,
            bgr=colormode == "BGR",
        )
    except (TypeError, ValueError) as exc:
        raise UnsupportedArchitecture(f"{where}: {exc}; {DLC3_SUPPORTED}") from exc
    return config, bodyparts


def _dlc3_unsupported(cfg: dict[str, Any], name: str) -> list[str]:
    """Why a DeepLabCut 3 config is no single-animal ResNet + HeatmapHead model (empty: it
    is one); ``name`` is its timm model name."""
    model = cfg.get("model") or {}
    backbone = model.get("backbone") or {}
    heads = model.get("heads") or {}
    metadata = cfg.get("metadata") or {}
    head = heads.get("bodypart") or {}
    predictor = head.get("predictor") or {}
    return [
        reason
        for reason, present in (
            (
                f"method {cfg.get('method')!r} (top-down: needs a detector)",
                str(cfg.get("method", "bu")).lower() != "bu",
            ),
            (f"backbone {backbone.get('type')!r}", backbone.get("type") != "ResNet"),
            (f"timm model {name!r}", backbone.get("type") == "ResNet" and name not in TIMM_RESNETS),
            (f"a {(model.get('neck') or {}).get('type')} neck", bool(model.get("neck"))),
            (f"heads {sorted(heads)}", sorted(heads) != ["bodypart"]),
            (f"a {head.get('type')} bodypart head", head.get("type") != "HeatmapHead"),
            (f"a {predictor.get('type')}", predictor.get("type") != "HeatmapPredictor"),
            ("unique body parts", bool(metadata.get("unique_bodyparts"))),
            ("identity prediction", bool(metadata.get("with_identity"))),
        )
        if present
    ]


def _dlc3_input(
    data: dict[str, Any], where: str
) -> tuple[tuple[float, float, float], tuple[float, float, float], str]:
    """The pixel normalisation ``(mean, std)`` and colour mode of a DeepLabCut 3 config's
    ``data`` section; warns about the inference resizing deepercut replaces by letterboxing."""
    inference = data.get("inference") or {}
    colormode = str(data.get("colormode", "RGB")).upper()
    if colormode not in ("RGB", "BGR"):
        raise UnsupportedArchitecture(f"{where}: colormode {colormode!r} (RGB or BGR are)")
    if inference.get("normalize_images", True):
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    elif inference.get("scale_to_unit_range"):
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    else:  # the network reads 0..255
        mean, std = (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255)
    for key in ("resize", "longest_max_size", "auto_padding"):
        if inference.get(key):
            log.warning(
                "%s: DeepLabCut resizes/pads inference images (%s: %s); deepercut letterboxes "
                "them into the model's input size instead",
                where,
                key,
                inference[key],
            )
    return mean, std, colormode


def load_dlc3_weights(net: DLC3PoseNet, state: dict[str, Any], where: str) -> None:
    """Load a DeepLabCut 3 ``model`` state dict into ``net``, checking names and shapes.

    BatchNorm's ``num_batches_tracked`` counters are accepted and ignored.

    Raises:
        WeightsMismatch: listing the first few missing, unexpected and wrongly shaped entries.
    """
    own = net.state_dict()
    ignored = {
        k
        for k in state
        if k.endswith(".num_batches_tracked")
        and k.removesuffix("num_batches_tracked") + "running_mean" in own
    }
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own and k not in ignored]
    wrong = [
        f"{k} {tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__} "
        f"(expected {tuple(own[k].shape)})"
        for k, v in state.items()
        if k in own and (not isinstance(v, torch.Tensor) or v.shape != own[k].shape)
    ]
    if missing or unexpected or wrong:
        raise WeightsMismatch(
            f"{where}: weights do not fit {net.config.model_name} (output stride "
            f"{net.config.output_stride}) with {net.num_parts} parts: missing {missing[:5]} "
            f"({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)}), wrong shapes "
            f"{wrong[:5]} ({len(wrong)})"
        )
    net.load_state_dict({k: state[k].float() for k in own})


def convert_dlc3_snapshot(
    path: str | os.PathLike[str], input_hw: tuple[int, int] | None = None
) -> Model:
    """A DeepLabCut 3 PyTorch snapshot (or its train folder / project) as our Model.

    The snapshot is read with ``torch.load(weights_only=True)`` (no code runs), the
    architecture and body parts from ``pytorch_config.yaml``; the project's ``config.yaml``
    (when the snapshot sits in one) gives skeleton edges and the input size, as for
    DeepLabCut 2.x.

    Raises:
        UnsupportedArchitecture: a model :mod:`~deepercut.model.external.dlc3` does not
            reproduce (see :data:`DLC3_SUPPORTED`), naming what was found.
        WeightsMismatch: the snapshot's weights do not fit that network.
        CheckpointError: unreadable snapshot or config.
    """
    _check_input_hw(input_hw)
    snapshot, config_path = _dlc3_files(Path(path))
    cfg = read_yaml(config_path)
    where = str(snapshot)
    config, bodyparts = _dlc3_architecture(cfg, where)
    try:
        content = torch.load(snapshot, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure: report it as a bad checkpoint
        raise CheckpointError(f"{snapshot} is not a readable PyTorch snapshot: {exc}") from exc
    if not isinstance(content, dict) or not isinstance(content.get("model"), dict):
        raise CheckpointError(f"{snapshot} is not a DeepLabCut 3 snapshot (no 'model' state)")
    net = DLC3PoseNet(config)
    load_dlc3_weights(net, content["model"], where)
    net.eval()
    project_dir = _dlc_project_of(config_path.parent, "dlc-models-pytorch")
    project = read_yaml(project_dir / "config.yaml") if project_dir is not None else None
    pose_cfg = {
        "num_joints": len(bodyparts),
        "all_joints": [[i] for i in range(len(bodyparts))],
        "all_joints_names": bodyparts,
        "dataset_type": "deeplabcut3",
    }
    step = (content.get("metadata") or {}).get("epoch")  # DeepLabCut 3 counts epochs
    if not isinstance(step, int):
        step = _snapshot_number(snapshot.with_suffix(""))
    meta = {
        "imported_from": {
            "family": "deeplabcut3",
            "checkpoint": str(snapshot.resolve()),
            "config": str(config_path.resolve()),
            "step": step,
            "architecture": describe_dlc3_config(cfg),
        },
        "pairwise_model": "prior (deepercut.model.convert.prior_pairwise_model)",
    }
    return Model(
        net,  # type: ignore[arg-type]  (same interface as DeeperCut)
        skeleton_from_config(pose_cfg, project),
        input_hw or _project_input_hw(project) or DEFAULT_INPUT_HW,
        pairwise_state(prior_pairwise_model(config.num_parts, offsets=False)),
        meta,
    )


def convert(path: str | os.PathLike[str], input_hw: tuple[int, int] | None = None) -> Model:
    """Convert any supported source (see the module docstring) to our Model."""
    kind = detect_source(path)
    if kind == "dlc3":
        return convert_dlc3_snapshot(path, input_hw)
    if kind is None:
        raise CheckpointError(
            f"{path} is not a pose-tensorflow model, a DeepLabCut project or snapshot"
        )
    return convert_tf_model(path, input_hw)


# ---------------------------------------------------------------------- cache


def cache_dir() -> Path:
    """Where converted models are cached: ``imported`` under the cache root
    (``$DEEPERCUT_CACHE``, else ``$XDG_CACHE_HOME/deepercut`` or ``~/.cache/deepercut``)."""
    return folder("imported")


def source_key(path: str | os.PathLike[str]) -> str:
    """A hex digest of everything a conversion of ``path`` reads: each file's name and SHA-256
    (and the converter version), so an edited config or a new snapshot converts afresh."""
    digest = hashlib.sha256(f"deepercut-import-v{CONVERTER_VERSION}".encode())
    for file in source_files(path):
        h = hashlib.sha256()
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digest.update(f"{file.name}\0{h.hexdigest()}\0".encode())
    return digest.hexdigest()[:32]


def import_model(
    path: str | os.PathLike[str],
    *,
    map_location: str | torch.device = "cpu",
    cache: Path | None = None,
    refresh: bool = False,
) -> Model:
    """A pose-tensorflow / DeepLabCut model as our Model, converted once and cached.

    Args:
        path: any source :func:`detect_source` recognises.
        map_location: where the loaded tensors go.
        cache: cache folder (default :func:`cache_dir`); private and MAC-verified
            (:mod:`deepercut.private_cache`): an unwritable or non-private one, or a refused
            entry, only costs the cache (logged), never the conversion.
        refresh: convert again even when cached.
    """
    store = PrivateCache(cache or cache_dir())
    entry = f"{source_key(path)}.pt"
    try:
        store.prepare()
    except (UntrustedCache, OSError) as exc:  # convert anyway; cache nothing there
        log.warning("import cache not used: %s", exc)
        store = None
    if store is not None and not refresh:
        try:
            data = store.read(entry)
            if data is not None:
                return load_model_bytes(data, str(store.path(entry)), map_location)
        except (UntrustedCache, CheckpointError) as exc:  # converted again, replacing it
            log.warning("cached import refused, converting again: %s", exc)
    model = convert(path)
    if store is not None:
        try:
            staged = store.staging_path(entry)
            save_model(staged, model)
            log.info("converted %s, cached as %s", path, store.commit(entry, staged))
        except OSError as exc:
            log.warning("converted %s but could not cache it in %s: %s", path, store.directory, exc)
    model.net.to(map_location)
    return model
