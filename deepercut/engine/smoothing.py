"""Keypoint smoothing for live display: the One-Euro filter (Casiez, Roussel & Vogel, CHI 2012).

A low-pass filter whose cut-off rises with speed: at rest it removes jitter (cut-off
``min_cutoff`` Hz), in fast motion it follows with little lag (cut-off ``min_cutoff + beta ·
|speed|``, speed in px/s, itself low-passed at ``d_cutoff`` Hz). One filter per tracked
person, part and coordinate, keyed by ``track_id``: untracked people (id −1) pass unchanged.
A part that goes missing restarts its filter when it comes back; a person unseen for
``forget_s`` seconds is forgotten. Time comes from ``Poses.pts`` (or ``frame / fps`` when the
pts is unknown), so dropped frames are handled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from deepercut.engine.frame_rate import DEFAULT_FPS
from deepercut.types import Poses


@dataclass
class OneEuroConfig:
    """Settings of :class:`OneEuroSmoother`.

    Attributes:
        min_cutoff: cut-off frequency at rest, Hz (lower = smoother, more lag).
        beta: cut-off increase per px/s of speed (higher = less lag in fast motion).
        d_cutoff: cut-off of the speed estimate, Hz.
        fps: frame rate used when a frame has no pts.
        forget_s: seconds after which an unseen track's filter state is dropped.
    """

    min_cutoff: float = 1.0
    beta: float = 0.01
    d_cutoff: float = 1.0
    fps: float = DEFAULT_FPS
    forget_s: float = 2.0

    def __post_init__(self) -> None:
        if not (self.min_cutoff > 0 and self.d_cutoff > 0 and self.fps > 0):
            raise ValueError("min_cutoff, d_cutoff and fps must be positive")
        if self.beta < 0 or self.forget_s <= 0:
            raise ValueError("beta must be >= 0 and forget_s > 0")


@dataclass
class _State:
    value: np.ndarray  # [P, 2] filtered positions (NaN = part not being filtered)
    speed: np.ndarray  # [P, 2] filtered derivative, px/s
    time: float


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Smoothing factor of an exponential filter with this cut-off (Hz) and step (s)."""
    tau = 1.0 / (2 * math.pi * np.asarray(cutoff))
    return 1.0 / (1.0 + tau / dt)


@dataclass
class OneEuroSmoother:
    """Smooths the keypoints of tracked people, frame after frame (module docstring)."""

    config: OneEuroConfig = field(default_factory=OneEuroConfig)
    _states: dict[int, _State] = field(default_factory=dict)

    def reset(self) -> None:
        """Forget every filter (a new stream)."""
        self._states.clear()

    def update(self, poses: Poses) -> Poses:
        """The poses with the keypoints of tracked people smoothed (scores unchanged)."""
        cfg = self.config
        now = poses.pts if math.isfinite(poses.pts) else poses.frame / cfg.fps
        self._states = {k: s for k, s in self._states.items() if now - s.time <= cfg.forget_s}
        keypoints = np.array(poses.keypoints, np.float32, copy=True)
        for m, track in enumerate(np.asarray(poses.track_id).tolist()):
            if track < 0:
                continue
            xy = keypoints[m, :, :2].astype(np.float64)
            state = self._states.get(track)
            if state is None or not now > state.time:
                self._states[track] = _State(xy.copy(), np.zeros_like(xy), now)
                continue
            dt = now - state.time
            fresh = np.isnan(state.value) & np.isfinite(xy)  # (re)appearing parts restart
            speed = (xy - state.value) / dt
            speed = np.where(fresh, 0.0, speed)
            speed = state.speed + _alpha(cfg.d_cutoff, dt) * (np.nan_to_num(speed) - state.speed)
            cutoff = cfg.min_cutoff + cfg.beta * np.linalg.norm(speed, axis=-1, keepdims=True)
            smoothed = state.value + _alpha(cutoff, dt) * (xy - state.value)
            smoothed = np.where(fresh, xy, smoothed)  # NaN where the part is absent now
            state.value, state.speed, state.time = smoothed, speed, now
            keypoints[m, :, :2] = smoothed
        return replace(poses, keypoints=keypoints)
