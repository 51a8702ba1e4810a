"""Training data sources: callables that draw one :class:`PoseSample` from a random generator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepercut.data.synthetic import generate_image
from deepercut.train.augment import PoseSample


@dataclass(frozen=True)
class SyntheticSource:
    """Fresh synthetic multi-person images (MPII14), rendered on the fly.

    Every draw is a new image, so the detector never sees the same sample twice. Joints
    hidden by a person in front are annotated but not visible (ignored by the scoremap loss).
    The default heights (40–250 px) are those of 60–340-px people in a 480×640 frame after the
    bundled model's 0.7× letterbox to its 336×448 input.
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
