"""Ground truth of people moving through a video, with identities, for tracking tests and
benchmarks (no images: trackers are evaluated on simulated detector candidates).

- :func:`walking_tracks`: :func:`~deepercut.data.synthetic.generate_video`'s walkers (gait,
  paths that cross, turning at the borders), its visibility from the rendered person map.
- :func:`scripted_tracks`: people that follow given waypoints, e.g. :func:`crossing` (two
  people walk past each other, the one behind hidden for a while) and
  :func:`leave_and_return` (a person walks out of the image and comes back). Poses are a
  :func:`~deepercut.data.synthetic.sample_people` pose with swinging wrists and ankles;
  visibility comes from :func:`~deepercut.data.synthetic.render_people`'s person map (nearer
  people, lower feet, are drawn last and hide those behind).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepercut.data.synthetic import generate_video, render_people, sample_people, visibility
from deepercut.data.synthetic_candidates import candidates_from_truth
from deepercut.model.temporal_costs import HistoryFrame, truth_people
from deepercut.types import Candidates

# MPII14 indices of the swinging joints and the ankles.
_R_ANK, _L_ANK, _R_WRI, _L_WRI = 0, 5, 6, 11


@dataclass
class TrackFrame:
    """Ground truth of one frame.

    Attributes:
        index: frame number from 0; ``t``: seconds.
        keypoints: float32 [M, 14, 2] (x, y) px, row m is identity ``ids[m]`` (may lie outside
            the image).
        visible: bool [M, 14] inside the image and not hidden by a person in front.
        ids: int64 [M] identities; ``heights``: float32 [M] standing heights in px.
    """

    index: int
    t: float
    keypoints: np.ndarray
    visible: np.ndarray
    ids: np.ndarray
    heights: np.ndarray


@dataclass
class Waypoints:
    """A scripted person: where their feet are (x, ground line y) at some frames, linearly
    interpolated in between and held before the first and after the last."""

    frames: Sequence[float]
    x: Sequence[float]
    ground: Sequence[float]
    height: float

    def at(self, index: int) -> tuple[float, float]:
        return (
            float(np.interp(index, self.frames, self.x)),
            float(np.interp(index, self.frames, self.ground)),
        )


def walking_tracks(
    seed: int,
    num_people: int,
    num_frames: int,
    image_hw: tuple[int, int] = (480, 640),
    fps: float = 25.0,
    height_range: tuple[float, float] = (100.0, 260.0),
) -> Iterator[TrackFrame]:
    """Frames of :func:`~deepercut.data.synthetic.generate_video` without their images."""
    for f in generate_video(seed, image_hw, num_people, num_frames, fps, height_range):
        yield TrackFrame(f.index, f.t, f.keypoints, f.visible, f.ids, f.heights)


def scripted_tracks(
    seed: int,
    people: Sequence[Waypoints],
    num_frames: int,
    image_hw: tuple[int, int] = (240, 320),
    fps: float = 25.0,
) -> Iterator[TrackFrame]:
    """Frames of people following waypoints (identity = position in ``people``)."""
    rng = np.random.default_rng(seed)
    templates = []
    for person in people:
        kp, height = sample_people(rng, image_hw, 1, (person.height, person.height))
        # Feet-anchored template: x relative to the ankles' mean, y relative to the lower ankle.
        kp = kp[0].astype(np.float64)
        anchor = np.array([kp[[_R_ANK, _L_ANK], 0].mean(), kp[[_R_ANK, _L_ANK], 1].max()])
        templates.append((kp - anchor, float(height[0])))
    phases = rng.uniform(0, 2 * math.pi, len(people))
    ids = np.arange(len(people), dtype=np.int64)
    heights = np.array([h for _, h in templates], np.float32)
    background = np.zeros((*image_hw, 3), np.uint8)
    for i in range(num_frames):
        kps = np.empty((len(people), 14, 2))
        grounds = np.empty(len(people))
        for m, (person, (template, h)) in enumerate(zip(people, templates, strict=True)):
            x, ground = person.at(i)
            swing = 0.06 * h * math.sin(2 * math.pi * i / 20 + phases[m])
            kp = template + np.array([x, ground])
            kp[[_R_WRI, _L_ANK], 0] += swing
            kp[[_L_WRI, _R_ANK], 0] -= swing
            kps[m], grounds[m] = kp, ground
        kps = kps.astype(np.float32)
        order = np.argsort(grounds, kind="stable")
        _, pmap = render_people(rng, image_hw, kps, heights, background, order=order)
        yield TrackFrame(i, i / fps, kps, visibility(kps, pmap), ids, heights)


def crossing(
    seed: int = 0, num_frames: int = 60, image_hw: tuple[int, int] = (240, 320)
) -> list[TrackFrame]:
    """Two people of similar size walk past each other in opposite directions, one slightly
    behind the other (hidden by them while they cross, mid-video)."""
    h, w = image_hw
    end = num_frames - 1
    people = [
        Waypoints([0, end], [0.12 * w, 0.88 * w], [0.92 * h, 0.92 * h], 0.6 * h),
        Waypoints([0, end], [0.88 * w, 0.12 * w], [0.9 * h, 0.9 * h], 0.6 * h),
    ]
    return list(scripted_tracks(seed, people, num_frames, image_hw))


def leave_and_return(
    seed: int = 0,
    away_frames: int = 12,
    image_hw: tuple[int, int] = (240, 320),
) -> list[TrackFrame]:
    """A person walks out of the right border, is entirely outside for ``away_frames`` frames
    and walks back in; a second person stands on the left throughout. 24 frames in, the gap,
    24 frames back."""
    h, w = image_hw
    height = 0.55 * h
    out_x = w + 0.6 * height  # every joint beyond the border
    leave = 24
    back = leave + away_frames
    people = [
        Waypoints([0, leave, back, back + leave], [0.5 * w, out_x, out_x, 0.55 * w],
                  [0.9 * h] * 4, height),
        Waypoints([0], [0.15 * w], [0.9 * h], 0.5 * h),
    ]
    return list(scripted_tracks(seed, people, back + leave, image_hw))


def simulated_sequence(
    frames: Sequence[TrackFrame],
    image_hw: tuple[int, int],
    seed: int = 0,
    **noise: Any,
) -> Iterator[tuple[Candidates, np.ndarray]]:
    """Per frame, simulated detector candidates
    (:func:`~deepercut.data.synthetic_candidates.candidates_from_truth`, ``noise`` its keyword
    settings; seeded by ``[seed, frame index]``) and the identity each lies on (−1 = none)."""
    for f in frames:
        rng = np.random.default_rng([seed, f.index])
        cands, owner = candidates_from_truth(
            rng, f.keypoints, f.visible, f.heights, image_hw, **noise
        )
        yield cands, np.where(owner >= 0, f.ids[np.maximum(owner, 0)], -1)


def temporal_training_data(
    seeds: Sequence[int],
    num_people: int = 4,
    num_frames: int = 40,
    image_hw: tuple[int, int] = (480, 640),
    **noise: Any,
) -> list[list[tuple[Candidates, np.ndarray, HistoryFrame]]]:
    """Videos for :meth:`~deepercut.model.temporal_costs.TemporalModel.fit`: per frame, simulated
    candidates (``noise``: :func:`candidates_from_truth` settings), their identities, and the
    people a tracker would have reported (:func:`~deepercut.model.temporal_costs.truth_people`)."""
    out = []
    for seed in seeds:
        frames = list(walking_tracks(seed, num_people, num_frames, image_hw))
        out.append(
            [
                (cands, owner, truth_people(f.index, cands, owner, cands.num_parts))
                for f, (cands, owner) in zip(
                    frames, simulated_sequence(frames, image_hw, seed, **noise), strict=True
                )
            ]
        )
    return out
