"""Online pose tracking: a stable ``track_id`` per person across frames.

:class:`PoseTracker` runs in the driver on the engine's **ordered** output (after the solver
pool re-orders frames), so its ids depend only on the poses and their order, never on which
worker finished first. Per frame:

1. **Predict.** Each track holds its last keypoints (a part not seen in the last frame keeps
   its older position for up to ``part_memory`` frames) and a velocity (px per frame of the
   keypoints' mean, an alpha-beta filter: the steady-state Kalman filter of a constant-velocity
   model). The prediction ``frame`` frames later is the keypoints shifted by velocity × gap.
2. **Similarity.** An OKS-like score of a detected pose and a prediction: ``Σ exp(−d² /
   (2 σ²))`` over the parts both have, divided by the larger of their part counts (a few
   parts that fit must not outbid a whole pose), with ``σ = (κ + κ_gap · (gap − 1)) · size``,
   scale-aware (``size`` ≈ the person's height, from the keypoints' spread) and widening with
   the time since the track was last seen, as its position becomes less certain. Fewer than
   ``min_common_parts`` shared parts score 0.
3. **Assign** (``scipy.optimize.linear_sum_assignment``, maximising similarity; pairs below
   ``min_similarity`` never match), in two rounds: tracks seen in the previous frame first,
   then the unmatched detections against *lost* tracks (not seen for up to ``max_age``
   frames): **re-identification** after a short occlusion or a walk out of the image. A lost
   track is compared both where it would be had it kept its velocity and where it was last
   seen (people stop, and come back the way they left).
4. **Birth and death with hysteresis.** An unmatched detection with at least ``birth_parts``
   parts starts a *tentative* track, reported with id −1, which gets an id once matched in
   ``min_hits`` consecutive frames (on a stream's first frame, at once) and dies at its first
   miss; a confirmed track survives ``max_age`` frames unseen before its id retires. Ids are
   0, 1, 2, ... in order of confirmation and never reused.

Gaps are counted in source frame indices, so frames dropped in live mode widen the prediction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from deepercut.types import Poses

#: RMS spread of an upright MPII-like person's keypoints, as a fraction of their height.
_SPREAD_PER_HEIGHT = 0.32


@dataclass
class TrackerConfig:
    """Settings of :class:`PoseTracker` (see the module docstring).

    Attributes:
        kappa: OKS fall-off as a fraction of the person's size, one frame after last seen.
        kappa_gap: added to ``kappa`` per further frame unseen.
        kappa_max: largest fall-off (long occlusions).
        min_similarity: smallest similarity of a match.
        min_common_parts: fewest parts a detection and a prediction share to be compared.
        birth_parts: fewest parts of a detection that starts a track (smaller unmatched
            poses, mostly clutter the solver grouped, stay untracked).
        min_hits: consecutive frames before a new track gets an id.
        max_age: frames a confirmed track is kept unseen for re-identification.
        part_memory: frames a part's last position is kept after it stops being detected.
        velocity_gain: weight of a new velocity measurement (alpha-beta filter gain).
        max_velocity_gap: frames over which a lost track's velocity is extrapolated (its
            prediction then stays put: people stop and turn).
    """

    kappa: float = 0.1
    kappa_gap: float = 0.02
    kappa_max: float = 0.4
    min_similarity: float = 0.15
    min_common_parts: int = 2
    birth_parts: int = 4
    min_hits: int = 2
    max_age: int = 30
    part_memory: int = 5
    velocity_gain: float = 0.5
    max_velocity_gap: int = 10

    def __post_init__(self) -> None:
        if not (0 < self.kappa <= self.kappa_max and self.kappa_gap >= 0):
            raise ValueError("need 0 < kappa <= kappa_max and kappa_gap >= 0")
        if not 0 < self.min_similarity < 1:
            raise ValueError(f"min_similarity must be in (0, 1), got {self.min_similarity}")
        if min(self.min_common_parts, self.birth_parts, self.min_hits, self.max_age) < 1:
            raise ValueError("min_common_parts, birth_parts, min_hits and max_age must be >= 1")
        if not 0 < self.velocity_gain <= 1:
            raise ValueError(f"velocity_gain must be in (0, 1], got {self.velocity_gain}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Track:
    """One tracked person.

    Attributes:
        id: the track id, −1 while tentative.
        keypoints: float64 [P, 2] last known position per part (NaN = unknown).
        seen: int64 [P] frame each part was last detected (very negative = never).
        velocity: float64 [2] px per frame.
        size: person size estimate (≈ height) in px.
        last_frame: frame of the last match; ``hits``: consecutive matched frames.
    """

    id: int
    keypoints: np.ndarray
    seen: np.ndarray
    velocity: np.ndarray
    size: float
    last_frame: int
    hits: int = 1

    def predict(self, frame: int, config: TrackerConfig, moving: bool = True) -> np.ndarray:
        """Keypoints [P, 2] expected at ``frame`` (NaN for parts unseen too long); with
        ``moving=False``, where they were last seen (a person who stopped or turned back)."""
        gap = min(frame - self.last_frame, config.max_velocity_gap) if moving else 0
        fresh = self.seen >= self.last_frame - config.part_memory
        return np.where(fresh[:, None], self.keypoints + gap * self.velocity, np.nan)


@dataclass
class PoseTracker:
    """Assigns ``track_id`` to the poses of consecutive frames (module docstring).

    Feed frames in increasing index order with :meth:`update`; :meth:`reset` starts a new
    stream.
    """

    config: TrackerConfig = field(default_factory=TrackerConfig)
    tracks: list[Track] = field(default_factory=list)
    next_id: int = 0
    last_frame: int | None = None

    def reset(self) -> None:
        """Forget every track (a new stream); ids start again from 0."""
        self.tracks, self.next_id, self.last_frame = [], 0, None

    def update(self, poses: Poses) -> Poses:
        """The same poses with ``track_id`` set (−1 for tentative people).

        Raises:
            ValueError: frame indices do not increase.
        """
        frame = int(poses.frame)
        if self.last_frame is not None and frame <= self.last_frame:
            raise ValueError(f"tracker: frame {frame} after frame {self.last_frame}")
        previous, self.last_frame = self.last_frame, frame
        cfg = self.config
        det = np.asarray(poses.keypoints, np.float64)[..., :2]
        ids = np.full(len(det), -1, np.int64)
        # Tentative tracks die at their first miss, confirmed ones after max_age frames.
        self.tracks = [
            t
            for t in self.tracks
            if (t.last_frame == previous if t.id < 0 else frame - t.last_frame <= cfg.max_age)
        ]
        recent = [k for k, t in enumerate(self.tracks) if t.last_frame == previous]
        lost = [k for k, t in enumerate(self.tracks) if t.last_frame != previous]
        matched = self._assign(det, recent, list(range(len(det))), frame)
        taken = {d for _, d in matched}
        matched += self._assign(det, lost, [d for d in range(len(det)) if d not in taken], frame)
        taken = {d for _, d in matched}
        for k, d in matched:
            track = self.tracks[k]
            self._observe(track, det[d], frame)
            track.hits = track.hits + 1 if track.last_frame == previous else 1
            track.last_frame = frame
            if track.id < 0 and track.hits >= cfg.min_hits:
                track.id = self._new_id()
            ids[d] = track.id
        for d in range(len(det)):
            if d in taken or np.isfinite(det[d, :, 0]).sum() < cfg.birth_parts:
                continue
            track = self._birth(det[d], frame)
            if previous is None or cfg.min_hits <= 1:
                track.id = self._new_id()
            ids[d] = track.id
            self.tracks.append(track)
        return replace(poses, track_id=ids)

    def similarity(self, track: Track, keypoints: np.ndarray, frame: int) -> float:
        """OKS-like similarity of a detected pose [P, 2] to ``track``'s prediction."""
        cfg = self.config
        gap = frame - track.last_frame
        kappa = min(cfg.kappa + cfg.kappa_gap * (gap - 1), cfg.kappa_max)
        have_det = np.isfinite(keypoints[:, 0])
        best = 0.0
        # A lost track may also have stopped or turned back: try where it was last seen.
        for moving in (True, False) if gap > 1 else (True,):
            pred = track.predict(frame, cfg, moving)
            have_pred = np.isfinite(pred[:, 0])
            both = have_pred & have_det
            if both.sum() < cfg.min_common_parts:
                continue
            d2 = ((pred[both] - keypoints[both]) ** 2).sum(-1)
            # Divided by the larger part count: a few parts that fit don't outbid a whole pose.
            total = float(np.exp(-d2 / (2 * (kappa * track.size) ** 2)).sum())
            best = max(best, total / max(have_pred.sum(), have_det.sum()))
        return best

    def _assign(
        self, det: np.ndarray, tracks: list[int], dets: list[int], frame: int
    ) -> list[tuple[int, int]]:
        """Hungarian matching of track indices × detection indices above the gate."""
        if not tracks or not dets:
            return []
        sim = np.array(
            [[self.similarity(self.tracks[k], det[d], frame) for d in dets] for k in tracks]
        )
        ok = sim >= self.config.min_similarity
        rows, cols = linear_sum_assignment(np.where(ok, -sim, 1.0))
        return [(tracks[r], dets[c]) for r, c in zip(rows, cols, strict=True) if ok[r, c]]

    def _observe(self, track: Track, keypoints: np.ndarray, frame: int) -> None:
        """Update a matched track with its new pose: velocity, positions, size."""
        cfg = self.config
        gap = frame - track.last_frame
        found = np.isfinite(keypoints[:, 0])
        # The prediction's residual per frame corrects the velocity (alpha-beta filter); after
        # a gap, that of the better of the moving and the stationary prediction.
        options = []
        for moving in (True, False) if gap > 1 else (True,):
            pred = track.predict(frame, cfg, moving)
            both = np.isfinite(pred[:, 0]) & found
            if both.any():
                residual = (keypoints[both] - pred[both]).mean(0)
                options.append((float(np.abs(residual).sum()), moving, residual / gap))
        if options:
            _, moving, residual = min(options, key=lambda o: o[0])
            base = track.velocity if moving else np.zeros(2)
            track.velocity = base + cfg.velocity_gain * residual
        # Parts not detected now move on with the person.
        moved = track.keypoints + gap * track.velocity
        track.keypoints = np.where(found[:, None], keypoints, moved)
        track.seen = np.where(found, frame, track.seen)
        size = _size(keypoints)
        if size is not None:
            track.size = 0.7 * track.size + 0.3 * size

    def _birth(self, keypoints: np.ndarray, frame: int) -> Track:
        found = np.isfinite(keypoints[:, 0])
        size = _size(keypoints, min_parts=4)
        if size is None:  # few parts: the extent of what there is, at least 20 px
            spread = np.ptp(keypoints[found], axis=0).max() if found.sum() > 1 else 0.0
            size = max(20.0, 2.0 * float(spread))
        return Track(
            id=-1,
            keypoints=keypoints.copy(),
            seen=np.where(found, frame, np.iinfo(np.int64).min // 2),
            velocity=np.zeros(2),
            size=size,
            last_frame=frame,
        )

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def _size(keypoints: np.ndarray, min_parts: int = 8) -> float | None:
    """Height estimate from the keypoints' spread (None with fewer than ``min_parts`` parts:
    the spread of a partial pose, e.g. at the image border, underestimates the person)."""
    found = keypoints[np.isfinite(keypoints[:, 0])]
    if len(found) < min_parts:
        return None
    spread = float(np.sqrt(((found - found.mean(0)) ** 2).sum(-1).mean()))
    return max(spread / _SPREAD_PER_HEIGHT, 10.0)
