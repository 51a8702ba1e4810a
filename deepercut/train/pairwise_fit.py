"""Fitting the pairwise model on a trained detector's own candidates.

The paper fits its pairwise logistic models on detections from training images, with "same
person" labels from the ground truth; fitting on the detector's real output (rather than
simulated candidates) calibrates the costs to its actual localisation and offset errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np
from tqdm import tqdm

from deepercut.data.synthetic_candidates import assign_candidates_to_truth
from deepercut.model.pairwise import PairwiseModel
from deepercut.skeleton import Skeleton
from deepercut.types import Candidates

#: Seeds of the images the pairwise model is fit on (disjoint from the held-out evaluation
#: seeds, which start at deepercut.evaluate.HELD_OUT_SEED = 1,000,000).
PAIRWISE_SEED = 2_000_000


class ImageDetector(Protocol):
    """What the fit needs of a detector (a :class:`~deepercut.detection.NetworkDetector`)."""

    @property
    def skeleton(self) -> Skeleton: ...

    def detect(self, images: Sequence[np.ndarray]) -> list[Candidates]: ...


class AnnotatedImage(Protocol):
    """An image with its people: a ``SyntheticSample`` or a dataset's ``PoseSample``."""

    image: np.ndarray  # uint8 [H, W, 3]
    keypoints: np.ndarray  # [M, P, 2]
    visible: np.ndarray  # bool [M, P]
    heights: np.ndarray  # [M] person sizes (px): candidates match within 0.1 of them


def fit_pairwise_on_detector(
    detector: ImageDetector,
    samples: Iterable[AnnotatedImage],
    *,
    batch_size: int = 8,
    progress: bool = True,
    **fit_kwargs: float,
) -> PairwiseModel:
    """Run the detector on ``samples``, label candidate pairs from the truth, fit the model.

    Works for any skeleton: the model is fit for the detector's own ``num_parts``.
    """
    fit_data = []
    batch: list[AnnotatedImage] = []

    def flush() -> None:
        for sample, cands in zip(batch, detector.detect([s.image for s in batch]), strict=True):
            owner = assign_candidates_to_truth(
                cands, sample.keypoints, sample.visible, sample.heights
            )
            fit_data.append((cands, owner))
        batch.clear()

    for sample in tqdm(samples, desc="pairwise", unit="img", disable=not progress):
        batch.append(sample)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return PairwiseModel.fit(fit_data, detector.skeleton.num_parts, **fit_kwargs)
