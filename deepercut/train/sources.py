"""Training data sources: callables that draw one :class:`PoseSample` from a random generator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from deepercut.data.dataset import PoseDataset
from deepercut.data.synthetic import generate_image
from deepercut.train.augment import PoseSample


@dataclass(frozen=True)
class SyntheticSource:
    """Fresh synthetic multi-person images (MPII14), rendered on the fly.

    Every draw is a new image, so the detector never sees the same sample twice. Joints
    hidden by a person in front are annotated but not visible (ignored by the scoremap loss).
    The default heights (40–250 px) are those of 60–340-px people in a 480×640 frame after a
    0.7× letterbox to 336×448; for a 480×640 input, train with 60–340 px (``--heights 60 340``),
    as the bundled model's last fine-tuning did.
    """

    image_hw: tuple[int, int] = (288, 288)
    num_people: tuple[int, int] = (1, 6)
    height_range: tuple[float, float] = (40.0, 250.0)

    def __call__(self, rng: np.random.Generator) -> PoseSample:
        sample = generate_image(rng, self.image_hw, self.num_people, self.height_range)
        return PoseSample(
            image=sample.image,
            keypoints=sample.keypoints,
            visible=sample.visible,
            annotated=np.ones_like(sample.visible),
            heights=sample.heights,
        )


@dataclass(frozen=True)
class DatasetSource:
    """Crops of annotated images around a random person, scale-normalised.

    Each draw picks an image and one of its people, rescales the image so that person's size
    (:meth:`PoseRecord.person_heights`) becomes ``target_height`` (``None``: native scale, as
    for DeepLabCut's fixed-camera animals) or, with ``height_range``, a size drawn
    log-uniformly from that range, and cuts an ``image_hw`` window placed so the person's centre
    lands within ``jitter`` × the window size of its centre (0.25: anywhere in the middle half).
    With probability ``background_prob`` (and for images with nobody labelled) the window is
    placed uniformly at random instead, so the detector also sees the scene away from the
    subjects. Every labelled person inside the window is annotated; joints outside it stop being
    visible. With ``mask_margin`` the scoremap loss is restricted to the labelled people's
    joint boxes grown by ``mask_margin`` × their size on every side: for datasets that label one
    person per image (LSP), whose unlabelled bystanders must not be taught as background.
    Decoded images come from the dataset's cache.
    """

    dataset: PoseDataset
    image_hw: tuple[int, int] = (288, 288)
    target_height: float | None = None
    background_prob: float = 0.0
    scale_range: tuple[float, float] = (0.1, 10.0)
    height_range: tuple[float, float] | None = None
    jitter: float = 0.25
    mask_margin: float | None = None

    def __post_init__(self) -> None:
        if len(self.dataset) == 0:
            raise ValueError(f"dataset {self.dataset.name!r} has no images to train on")

    def _target_height(self, rng: np.random.Generator) -> float | None:
        if self.height_range is not None:
            lo, hi = np.log(self.height_range)
            return float(np.exp(rng.uniform(lo, hi)))
        return self.target_height

    def __call__(self, rng: np.random.Generator) -> PoseSample:
        i = int(rng.integers(len(self.dataset)))
        record = self.dataset[i]
        image = self.dataset.image(i)
        h, w = image.shape[:2]
        oh, ow = self.image_hw
        heights = record.person_heights()
        people = np.flatnonzero(record.labelled.any(1))
        target = self._target_height(rng)
        if len(people) and rng.random() >= self.background_prob:
            m = int(rng.choice(people))
            scale = 1.0
            if target is not None:
                scale = float(np.clip(target / heights[m], *self.scale_range))
            jitter = rng.uniform(-self.jitter, self.jitter, 2) * np.array([ow, oh]) / scale
            centre = record.center()[m] + jitter
        else:
            scale = 1.0
            if target is not None and len(heights):
                scale = float(np.clip(target / np.median(heights), *self.scale_range))
            centre = rng.uniform(0, 1, 2) * np.array([w - 1, h - 1])
        crop = crop_image(image, centre, scale, self.image_hw)
        out_centre = np.array([(ow - 1) / 2, (oh - 1) / 2])
        kp = (record.keypoints[..., :2] - centre) * scale + out_centre
        inside = (
            (kp[..., 0] >= 0) & (kp[..., 0] <= ow - 1) & (kp[..., 1] >= 0) & (kp[..., 1] <= oh - 1)
        )
        mask = None
        if self.mask_margin is not None:
            mask = people_mask(kp, record.labelled, heights * scale, self.mask_margin, (oh, ow))
        return PoseSample(
            image=crop,
            keypoints=kp.astype(np.float32),
            visible=record.visible & inside,
            annotated=record.labelled.copy(),
            heights=(heights * scale).astype(np.float32),
            loss_mask=mask,
        )


def people_mask(
    keypoints: np.ndarray,
    labelled: np.ndarray,
    heights: np.ndarray,
    margin: float,
    out_hw: tuple[int, int],
) -> np.ndarray:
    """bool [H, W]: the union of the people's labelled-joint boxes, each grown by
    ``margin`` × its height on every side (people without labelled joints add nothing)."""
    oh, ow = out_hw
    mask = np.zeros((oh, ow), bool)
    for xy, known, height in zip(keypoints[..., :2], labelled, heights, strict=True):
        if not known.any():
            continue
        pad = margin * float(height)
        x0, y0 = np.floor(xy[known].min(0) - pad).astype(int)
        x1, y1 = np.ceil(xy[known].max(0) + pad).astype(int)
        mask[max(y0, 0) : max(y1 + 1, 0), max(x0, 0) : max(x1 + 1, 0)] = True
    return mask


@dataclass(frozen=True)
class MixedSource:
    """Batches drawn from several sources in fixed shares: ``counts[k]`` samples of every batch
    come from ``sources[k]`` (e.g. half LSPET crops, half synthetic crowds)."""

    sources: tuple[Callable[[np.random.Generator], PoseSample], ...]
    counts: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.sources) != len(self.counts) or not self.sources:
            raise ValueError("MixedSource needs one count per source")
        if min(self.counts) < 0 or sum(self.counts) == 0:
            raise ValueError(f"MixedSource counts must be >= 0 and not all 0, got {self.counts}")

    @property
    def batch_size(self) -> int:
        return sum(self.counts)

    def draw_batch(self, rng: np.random.Generator) -> list[PoseSample]:
        """One batch: each source's share, in source order."""
        return [s(rng) for s, n in zip(self.sources, self.counts, strict=True) for _ in range(n)]

    def __call__(self, rng: np.random.Generator) -> PoseSample:
        """A single sample from a source chosen in proportion to its share."""
        k = int(rng.choice(len(self.sources), p=np.array(self.counts) / self.batch_size))
        return self.sources[k](rng)


def mix_counts(batch_size: int, share: float) -> tuple[int, int]:
    """(dataset, synthetic) samples per batch for a synthetic ``share`` in [0, 1]."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"the synthetic share must be in [0, 1], got {share}")
    synthetic = round(share * batch_size)
    return batch_size - synthetic, synthetic


def crop_image(
    image: np.ndarray, centre: np.ndarray, scale: float, out_hw: tuple[int, int]
) -> np.ndarray:
    """The ``out_hw`` window of ``image`` rescaled by ``scale`` around ``centre`` (input px),
    which lands on the output's centre; outside the image is black. Bilinear."""
    h, w = image.shape[:2]
    oh, ow = out_hw
    # Only the part of the image under the window is converted and resampled.
    half = np.array([ow, oh]) / (2 * scale) + 2
    x0, y0 = np.floor(np.maximum(centre - half, 0)).astype(int)
    x1, y1 = np.ceil(np.minimum(centre + half, [w - 1, h - 1])).astype(int)
    if x1 < x0 or y1 < y0:  # the window misses the image entirely
        return np.zeros((oh, ow, 3), np.uint8)
    patch = torch.from_numpy(np.ascontiguousarray(image[y0 : y1 + 1, x0 : x1 + 1]))
    patch = patch.permute(2, 0, 1).float()[None]
    ph, pw = patch.shape[2:]
    # Output pixel (u, v) ↔ input (cx + (u − (ow−1)/2)/scale, ...), in the patch's normalised
    # coordinates (align_corners=True: ±1 are the border pixel centres).
    u = (torch.arange(ow, dtype=torch.float64) - (ow - 1) / 2) / scale + centre[0] - x0
    v = (torch.arange(oh, dtype=torch.float64) - (oh - 1) / 2) / scale + centre[1] - y0
    gx = (2 * u / max(pw - 1, 1) - 1).float()
    gy = (2 * v / max(ph - 1, 1) - 1).float()
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1)[None]
    out = F.grid_sample(patch, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out[0].round_().clamp_(0, 255).byte().permute(1, 2, 0).numpy()


def dataset_samples(dataset: PoseDataset) -> Iterator[PoseSample]:
    """Every image of ``dataset`` whole, at native scale (for fitting and evaluation)."""
    for i, record in enumerate(dataset.records):
        yield PoseSample(
            image=dataset.image(i),
            keypoints=record.keypoints[..., :2].astype(np.float32),
            visible=record.visible,
            annotated=record.labelled,
            heights=record.person_heights(),
        )
