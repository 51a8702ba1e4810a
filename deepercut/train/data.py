"""The training data ``deepercut train`` asks for: a sample source, its skeleton and deploy size,
and the images the pairwise model is fit on.

``--data synthetic`` renders MPII14 people on the fly; a dataset path trains on its training
split (DeepLabCut's TrainingFraction convention or the images named by ``--test-images``),
optionally mixed with synthetic crowds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepercut.data.dataset import PoseDataset, read_name_list
from deepercut.data.dlc import read_config, training_fraction
from deepercut.data.load import load_dataset
from deepercut.evaluate.synthetic import synthetic_images
from deepercut.model.letterbox import pad_to_multiple
from deepercut.skeleton import MPII14, Skeleton
from deepercut.train.config import TrainConfig
from deepercut.train.pairwise_fit import PAIRWISE_SEED
from deepercut.train.sources import (
    DatasetSource,
    MixedSource,
    SyntheticSource,
    dataset_samples,
    mix_counts,
)


@dataclass
class TrainingData:
    """What a training run needs from the chosen data: a sample source and its skeleton."""

    source: Callable[[np.random.Generator], Any]
    skeleton: Skeleton
    input_hw: tuple[int, int]
    min_radius: float
    meta: dict[str, Any]
    pairwise_samples: Callable[[], Iterable[Any]]
    pairwise_meta: dict[str, Any]


#: The network input size (H, W) unless ``--input-hw`` or a DeepLabCut project's frames say.
DEFAULT_INPUT_HW = (336, 448)


def training_data(config: TrainConfig) -> TrainingData:
    """The data of a training run (``config.data`` and the data options)."""
    if config.data == "synthetic":
        count = config.pairwise_images
        return TrainingData(
            source=_synthetic_source(config),
            skeleton=MPII14,
            input_hw=config.input_hw or DEFAULT_INPUT_HW,
            min_radius=config.min_radius or 6.0,
            meta={"data": "synthetic"},
            pairwise_samples=lambda: synthetic_images(count, PAIRWISE_SEED),
            pairwise_meta={"images": count, "seed": PAIRWISE_SEED},
        )
    return _dataset_training_data(config)


@dataclass
class _Split:
    """A dataset read and split: its training and test images, and what it tells about them."""

    dataset: PoseDataset
    train: PoseDataset
    test: PoseDataset
    fraction: float
    missing: int
    is_dlc: bool
    is_lsp: bool


def _dataset_training_data(config: TrainConfig) -> TrainingData:
    split = _read_split(config)
    target_height = config.target_height or (None if split.is_dlc else 200.0)
    margin = (
        config.mask_margin if config.mask_margin is not None else (0.2 if split.is_lsp else None)
    )
    margin = None if margin is not None and margin < 0 else margin
    source: Any = DatasetSource(
        split.train,
        image_hw=config.training_crop_hw,
        target_height=target_height,
        background_prob=config.background_prob,
        height_range=config.person_heights,
        jitter=config.jitter,
        mask_margin=margin,
    )
    n_data, n_synth = mix_counts(config.batch_size, config.mix_synthetic)
    if n_synth:
        source = MixedSource((source, _synthetic_source(config)), (n_data, n_synth))
    input_hw = config.input_hw
    if input_hw is None:
        input_hw = pad_to_multiple(*split.train.image(0).shape[:2]) if split.is_dlc else None
    pairwise_samples, pairwise_meta = _pairwise_images(config, split.train, crowds=n_synth > 0)
    return TrainingData(
        source=source,
        skeleton=split.dataset.skeleton,
        input_hw=tuple(input_hw or DEFAULT_INPUT_HW),
        min_radius=config.min_radius or (12.0 if split.is_dlc else 6.0),
        meta={
            "data": str(Path(config.data)),
            "dataset": split.dataset.name,
            "absent_images": split.missing,
            "split": _split_meta(config, split),
            "target_height": target_height,
            "person_heights": config.person_heights,
            "mask_margin": margin,
            "mix": {"dataset": n_data, "synthetic": n_synth},
        },
        pairwise_samples=pairwise_samples,
        pairwise_meta=pairwise_meta,
    )


def _synthetic_source(config: TrainConfig) -> SyntheticSource:
    """Synthetic crowds (``--people``, ``--heights``) at the training crop size."""
    return SyntheticSource(
        image_hw=config.training_crop_hw,
        num_people=config.people,
        height_range=config.heights,
    )


def _read_split(config: TrainConfig) -> _Split:
    """The dataset of ``config.data``, split into training and test images (DLC's
    TrainingFraction, ``--train-fraction`` or ``--test-images``)."""
    path = Path(config.data)
    dataset = load_dataset(path, config.images)
    is_dlc = dataset.name.startswith("dlc:")
    is_lsp = dataset.name.startswith("lsp:")
    missing: list[Path] = []
    if is_lsp:  # LSP extended withholds images but keeps their rows
        dataset, missing = dataset.with_existing_images()
        if missing:
            print(f"{path}: {len(missing)} images absent, skipped; {len(dataset)} remain")
    fraction = config.train_fraction
    if fraction is None:
        config_path = path / "config.yaml" if path.is_dir() else path
        fraction = training_fraction(read_config(config_path)) if is_dlc else 0.95
    test_names = read_name_list(config.test_images) if config.test_images else None
    train_set, test_set = dataset.split(fraction, config.split_seed, test_names)
    if len(train_set) == 0:
        raise ValueError(f"{dataset.name}: the split leaves no training images")
    return _Split(dataset, train_set, test_set, fraction, len(missing), is_dlc, is_lsp)


def _split_meta(config: TrainConfig, split: _Split) -> dict[str, Any]:
    """The split as a checkpoint records it."""
    return {
        "train_fraction": split.fraction,
        "seed": config.split_seed,
        "train": len(split.train),
        # Long lists (LSPET's 500) are named by --test-images (a file) instead.
        "test": [r.image_path.name for r in split.test.records]
        if len(split.test) <= 50
        else len(split.test),
        "test_images": config.test_images,
    }


def _pairwise_images(
    config: TrainConfig, train_set: PoseDataset, *, crowds: bool
) -> tuple[Callable[[], Iterable[Any]], dict[str, Any]]:
    """The images the pairwise model is fit on, and their description: synthetic crowds when
    the batches mix them in (LSP labels one person per image), else the training split."""
    if crowds:
        count = config.pairwise_images

        def crowd_samples() -> Iterable[Any]:
            return synthetic_images(count, PAIRWISE_SEED)

        return crowd_samples, {"images": count, "data": "synthetic", "seed": PAIRWISE_SEED}
    count = min(config.pairwise_images, len(train_set))

    def dataset_pairwise_samples() -> Iterable[Any]:
        return dataset_samples(train_set.subset(range(count)))

    return dataset_pairwise_samples, {"images": count, "data": "training split"}
