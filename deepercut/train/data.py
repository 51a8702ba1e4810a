"""The training data ``deepercut train`` asks for: a sample source, its skeleton and deploy size,
and the images the pairwise model is fit on.

``--data synthetic`` renders MPII14 people on the fly; a dataset path trains on its training
split (DeepLabCut's TrainingFraction convention or the images named by ``--test-images``),
optionally mixed with synthetic crowds.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepercut.data.dataset import read_name_list
from deepercut.data.dlc import read_config, training_fraction
from deepercut.data.load import load_dataset
from deepercut.evaluate.synthetic import synthetic_images
from deepercut.model.letterbox import pad_to_multiple
from deepercut.skeleton import MPII14, Skeleton
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


def training_data(args: argparse.Namespace) -> TrainingData:
    """The data of ``deepercut train``'s arguments (``args.data`` and the data options)."""
    if args.data == "synthetic":
        source = SyntheticSource(
            image_hw=(args.crop_hw[0] + 32, args.crop_hw[1] + 32),
            num_people=tuple(args.people),
            height_range=tuple(args.heights),
        )
        return TrainingData(
            source=source,
            skeleton=MPII14,
            input_hw=args.input_hw or (336, 448),
            min_radius=args.min_radius or 6.0,
            meta={"data": "synthetic"},
            pairwise_samples=lambda: synthetic_images(args.pairwise_images, PAIRWISE_SEED),
            pairwise_meta={"images": args.pairwise_images, "seed": PAIRWISE_SEED},
        )
    return _dataset_training_data(args)


def _dataset_training_data(args: argparse.Namespace) -> TrainingData:

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
    return TrainingData(
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
