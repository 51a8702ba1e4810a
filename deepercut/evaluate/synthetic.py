"""Accuracy of a model on a held-out synthetic multi-person set (known ground truth)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from deepercut.data.synthetic import SyntheticSample, generate_image
from deepercut.detection import NetworkDetector
from deepercut.evaluate import HELD_OUT_SEED
from deepercut.evaluate.pck import PCKResult, accumulate_pck, best_candidate_hits
from deepercut.skeleton import MPII14
from deepercut.types import Candidates

__all__ = [
    "HELD_OUT_SEED",
    "SyntheticTruth",
    "candidate_hits",
    "synthetic_detections",
    "synthetic_images",
    "synthetic_pck",
    "synthetic_truth",
]

#: A synthetic head size is MPII's rule (0.6 × head-box diagonal) applied to a square head box
#: whose side is the neck-to-head-top segment.
_HEAD_FROM_SEGMENT = 0.6 * float(np.sqrt(2.0))


def synthetic_images(
    count: int,
    seed: int = HELD_OUT_SEED,
    image_hw: tuple[int, int] = (480, 640),
    num_people: tuple[int, int] = (1, 10),
    height_range: tuple[float, float] = (60.0, 340.0),
) -> Iterator[SyntheticSample]:
    """``count`` deterministic synthetic images (image ``i`` uses seed ``seed + i``)."""
    for i in range(count):
        yield generate_image(seed + i, image_hw, num_people, height_range)


@dataclass
class SyntheticTruth:
    """One image's ground truth in the pose metrics' convention.

    Attributes:
        keypoints: float32 [M, 14, 3] (x, y, visibility): 2 visible, 1 inside the image but
            hidden behind a person in front (its position is known, so it is labelled, as MPII
            labels occluded joints), 0 outside the image.
        head_size: [M] :data:`_HEAD_FROM_SEGMENT` × the neck-to-head-top distance.
        heights: [M] standing heights in px.
        ignore: [M] people not scored (shorter than the minimum height).
    """

    keypoints: np.ndarray
    head_size: np.ndarray
    heights: np.ndarray
    ignore: np.ndarray


def synthetic_truth(
    sample: SyntheticSample, image_hw: tuple[int, int], min_height: float = 0.0
) -> SyntheticTruth:
    """The ground truth of a synthetic sample for PCKh, multi-person AP and PCP."""
    h, w = image_hw
    xy = sample.keypoints.astype(np.float32)
    inside = (xy[..., 0] >= 0) & (xy[..., 0] <= w - 1) & (xy[..., 1] >= 0) & (xy[..., 1] <= h - 1)
    vis = np.where(sample.visible, 2, np.where(inside, 1, 0)).astype(np.float32)
    neck, top = MPII14.index("neck"), MPII14.index("head_top")
    head = _HEAD_FROM_SEGMENT * np.linalg.norm(xy[:, top] - xy[:, neck], axis=-1)
    return SyntheticTruth(
        np.concatenate([xy, vis[..., None]], axis=-1),
        head.astype(np.float64),
        sample.heights.astype(np.float64),
        sample.heights <= min_height,
    )


def synthetic_detections(
    detector: NetworkDetector,
    count: int,
    seed: int = HELD_OUT_SEED,
    batch_size: int = 8,
    image_hw: tuple[int, int] = (480, 640),
) -> Iterator[tuple[SyntheticSample, Candidates]]:
    """Held-out samples with their candidates, detected in batches of ``batch_size``."""
    batch: list[SyntheticSample] = []
    for sample in synthetic_images(count, seed, image_hw):
        batch.append(sample)
        if len(batch) == batch_size:
            yield from zip(batch, detector.detect([s.image for s in batch]), strict=True)
            batch = []
    if batch:
        yield from zip(batch, detector.detect([s.image for s in batch]), strict=True)


def synthetic_pck(
    detector: NetworkDetector,
    count: int = 200,
    seed: int = HELD_OUT_SEED,
    min_height: float = 100.0,
    threshold: float = 0.2,
    batch_size: int = 8,
) -> PCKResult:
    """PCK@``threshold`` (of person height) of the best candidates, people taller than
    ``min_height`` px, on ``count`` held-out 480×640 images with 1–10 people of 60–340 px."""
    hits, visible = [], []
    for sample, cands in synthetic_detections(detector, count, seed, batch_size):
        hit, vis = candidate_hits(sample, cands, min_height, threshold)
        hits.append(hit)
        visible.append(vis)
    return accumulate_pck(hits, visible, threshold)


def candidate_hits(
    sample: SyntheticSample, candidates: Candidates, min_height: float, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """(hits, visible), both [M_tall, P], of the people taller than ``min_height`` (see
    :func:`deepercut.evaluate.pck.best_candidate_hits`)."""
    tall = sample.heights > min_height
    hit = best_candidate_hits(
        candidates, sample.keypoints, sample.visible, sample.heights, threshold
    )
    return hit[tall], sample.visible[tall]
