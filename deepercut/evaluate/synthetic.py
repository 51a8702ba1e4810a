"""Accuracy of a model on a held-out synthetic multi-person set (known ground truth)."""

from __future__ import annotations

from collections.abc import Iterator

from deepercut.data.synthetic import SyntheticSample, generate_image
from deepercut.evaluate import HELD_OUT_SEED
from deepercut.evaluate.pck import PCKResult, accumulate_pck, best_candidate_hits
from deepercut.model.predict import Predictor

__all__ = ["HELD_OUT_SEED", "synthetic_images", "synthetic_pck"]


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


def synthetic_pck(
    predictor: Predictor,
    count: int = 200,
    seed: int = HELD_OUT_SEED,
    min_height: float = 100.0,
    threshold: float = 0.2,
    batch_size: int = 8,
) -> PCKResult:
    """PCK@``threshold`` (of person height) of the best candidates, people taller than
    ``min_height`` px, on ``count`` held-out 480×640 images with 1–10 people of 60–340 px."""
    hits, visible = [], []
    batch: list[SyntheticSample] = []

    def flush() -> None:
        for sample, cands in zip(batch, predictor([s.image for s in batch]), strict=True):
            tall = sample.heights > min_height
            hit = best_candidate_hits(
                cands, sample.keypoints, sample.visible, sample.heights, threshold
            )
            hits.append(hit[tall])
            visible.append(sample.visible[tall])
        batch.clear()

    for sample in synthetic_images(count, seed):
        batch.append(sample)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return accumulate_pck(hits, visible, threshold)
