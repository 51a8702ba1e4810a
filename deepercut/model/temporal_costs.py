"""Learned temporal costs: is this candidate the same person as that earlier pose?

The temporal multicut (:mod:`deepercut.solvers.temporal`) links a frame's candidates to the
people of the previous ``K`` frames. For a candidate ``d`` (part ``c`` at ``x_d``, regressed
offsets ``o(d→q)``) and an earlier pose of track ``j`` seen ``τ`` frames back, the model predicts
the probability that ``d`` belongs to ``j`` with one logistic regression per (lag ``τ``, part
``c``), fitted exactly like :class:`~deepercut.model.pairwise.PairwiseModel` (maximum
likelihood with an L2 prior, :func:`~deepercut.model.pairwise.fit_logistic`) on synthetic videos
with identities. The earlier pose is first moved by the track's velocity (constant-velocity
prediction, ``velocity × frames since``). Features, distances divided by the pair scale ``s =
(σ_d + σ_j) / 2`` (``σ_d`` from the candidate's regressed skeleton as in the pairwise model,
``σ_j`` the spread of the earlier pose):

- ``dist``: ``|x_d − p_j(c)|/s`` to the predicted position of the same part (and its square
  and ``exp(−·)``),
- ``consensus``: the mean over the parts ``q`` the earlier pose has of ``|x_d + o(d→q) −
  p_j(q)|/s``: does the candidate's regressed skeleton lie on the predicted pose? (and
  ``exp(−·)``),
- ``log_size_ratio`` ``|log(σ_d/σ_j)|`` and ``known``, the fraction of parts the pose has,
- ``score``, the candidate's, and ``pose_score``, the earlier pose's mean keypoint score:
  clutter scores low, and a track made of clutter must not keep attracting new clutter.

A pair gets a temporal edge when the earlier pose has part ``c`` and ``dist ≤
max_distance_factor``. Cost ``−logit(p)`` clipped to ``[−cmax, cmax]``, as for the pairwise
model. Saved as ``.npz`` (plain arrays and JSON metadata, no pickle).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepercut.model.pairwise import (
    LOGISTIC_ARRAYS,
    candidate_scale,
    fit_logistic,
    load_npz,
    save_npz,
)
from deepercut.types import Candidates

FORMAT = "deepercut.temporal"
VERSION = 1

#: Columns of the temporal feature matrix.
FEATURE_NAMES: tuple[str, ...] = (
    "bias",
    "dist",
    "dist_sq",
    "exp_dist",
    "consensus",
    "exp_consensus",
    "log_size_ratio",
    "known",
    "score",
    "pose_score",
)
NUM_FEATURES = len(FEATURE_NAMES)

#: Frames over which a track's velocity is extrapolated (people stop and turn).
MAX_VELOCITY_FRAMES = 10

#: Where the model bundled with the package lives.
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "assets" / "temporal.npz"


@dataclass
class HistoryFrame:
    """The people of one earlier frame: ``index`` (frame), ``ids`` int64 [M] track ids,
    ``keypoints`` float [M, P, 2] (NaN = absent), ``scores`` [M] their mean keypoint score."""

    index: int
    ids: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray

    def select(self, keep: np.ndarray) -> HistoryFrame:
        """The people where ``keep`` (bool [M]) is true."""
        return HistoryFrame(self.index, self.ids[keep], self.keypoints[keep], self.scores[keep])


@dataclass
class Observations:
    """Earlier poses to link to, one row each.

    Attributes:
        track: int64 [O] track id; ``lag``: int64 [O] 1 = the previous frame in the history.
        predicted: float64 [O, P, 2] the pose moved on by its track's velocity to now.
        scale: float64 [O] spread of the pose (px).
        known: float64 [O] fraction of parts the pose has.
        score: float64 [O] the pose's mean keypoint score.
    """

    track: np.ndarray
    lag: np.ndarray
    predicted: np.ndarray
    scale: np.ndarray
    known: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return len(self.track)


def observations(
    history: Sequence[HistoryFrame],
    frame: int,
    num_parts: int,
    min_scale: float = 4.0,
    per_track: int | None = None,
) -> Observations:
    """Rows for the people of ``history`` (oldest first), predicted to ``frame``: each
    track's ``per_track`` most recent poses (default: all), their lag counted in history
    frames back, at most ``per_track``.

    A track's velocity (px per frame of its keypoints' mean over shared parts) comes from its
    two most recent poses in the history (extrapolated over at most
    :data:`MAX_VELOCITY_FRAMES`); a track seen once is assumed still. Poses older than the
    previous frame get a second, stationary row (people stop, and come back the way they
    left).
    """
    latest: dict[int, tuple[int, np.ndarray]] = {}
    velocity: dict[int, np.ndarray] = {}
    for past in history:  # oldest first: the last write per track is its latest pose
        for tid, kp in zip(past.ids.tolist(), past.keypoints, strict=True):
            if tid in latest:
                before_index, before = latest[tid]
                both = np.isfinite(kp[:, 0]) & np.isfinite(before[:, 0])
                if both.any():
                    shift = (kp[both] - before[both]).mean(0)
                    velocity[tid] = shift / (past.index - before_index)
            latest[tid] = (past.index, kp)
    rows: list[tuple[int, int, np.ndarray, float]] = []
    taken: dict[int, int] = {}
    cap = len(history) if per_track is None else per_track
    for lag, past in enumerate(reversed(history), start=1):
        for tid, kp, score in zip(past.ids.tolist(), past.keypoints, past.scores, strict=True):
            if taken.get(tid, 0) >= cap:
                continue
            taken[tid] = taken.get(tid, 0) + 1
            steps = min(frame - past.index, MAX_VELOCITY_FRAMES)
            moved = kp + steps * velocity.get(tid, np.zeros(2))
            rows.append((tid, min(lag, cap), moved, float(score)))
            if lag > 1 and tid in velocity:  # it may also have stopped, or turned back
                rows.append((tid, min(lag, cap), kp, float(score)))
    if not rows:
        return Observations(
            np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, num_parts, 2)),
            np.zeros(0), np.zeros(0), np.zeros(0),
        )
    predicted = np.stack([r[2] for r in rows]).astype(np.float64)
    known = np.isfinite(predicted[..., 0])
    centre = np.nanmean(np.where(known[..., None], predicted, np.nan), axis=1, keepdims=True)
    spread = np.sqrt(np.nanmean(((predicted - centre) ** 2).sum(-1), axis=1))
    return Observations(
        track=np.array([r[0] for r in rows], np.int64),
        lag=np.array([r[1] for r in rows], np.int64),
        predicted=predicted,
        scale=np.maximum(np.nan_to_num(spread, nan=min_scale), min_scale),
        known=known.mean(1),
        score=np.array([r[3] for r in rows]),
    )


def link_features(
    candidates: Candidates, obs: Observations, min_scale: float, max_distance_factor: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate–observation pairs within reach and their features.

    Returns:
        ``(d, o, features)``: candidate index [E], observation index [E], features [E, F].
    """
    n, p = len(candidates), candidates.num_parts
    if n == 0 or len(obs) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, NUM_FEATURES))
    xy = candidates.xy.astype(np.float64)
    sigma = candidate_scale(candidates.offsets, min_scale).astype(np.float64)
    part = candidates.part
    target = obs.predicted[:, part]  # [O, N, 2]: each observation's position of d's part
    scale = 0.5 * (sigma[None, :] + obs.scale[:, None])
    dist = np.linalg.norm(xy[None] - target, axis=-1) / scale  # [O, N], NaN: part absent
    o, d = np.nonzero(np.nan_to_num(dist, nan=np.inf) <= max_distance_factor)
    skeleton = xy[d, None, :] + candidates.offsets[d].astype(np.float64)  # [E, P, 2]
    miss = np.linalg.norm(skeleton - obs.predicted[o], axis=-1)  # [E, P], NaN: absent
    s = scale[o, d]
    consensus = np.nanmean(miss, axis=1) / s
    u = dist[o, d]
    size = np.abs(np.log(sigma[d] / obs.scale[o]))
    columns = (
        np.ones_like(u), u, u**2, np.exp(-u), consensus, np.exp(-consensus), size, obs.known[o],
        candidates.score[d].astype(np.float64), obs.score[o],
    )
    features = np.stack(columns, axis=1)
    assert p == obs.predicted.shape[1]
    return d.astype(np.int64), o.astype(np.int64), features


@dataclass(eq=False)
class TemporalModel:
    """Per (lag, part) logistic models of "this candidate is that earlier person" (module
    docstring).

    Attributes:
        weights: float64 [max_lag · P, F] on standardised features, class ``(lag − 1)·P + part``.
        feature_mean, feature_std: float64 [F] standardisation.
        num_parts: ``P``; ``max_lag``: ``K``, the farthest lag fitted (larger lags use it).
        cmax: costs clipped to ``[−cmax, cmax]``; ``max_distance_factor``: edge reach in pair
        scales; ``min_scale``: scale floor, px.
    """

    weights: np.ndarray
    feature_mean: np.ndarray
    feature_std: np.ndarray
    num_parts: int
    max_lag: int
    cmax: float = 10.0
    max_distance_factor: float = 2.0
    min_scale: float = 4.0

    def __post_init__(self) -> None:
        if self.weights.shape != (self.max_lag * self.num_parts, NUM_FEATURES):
            raise ValueError(
                f"weights must be [{self.max_lag * self.num_parts}, {NUM_FEATURES}], got "
                f"{self.weights.shape}"
            )
        if not (np.isfinite(self.weights).all() and (self.feature_std > 0).all()):
            raise ValueError("weights must be finite and feature_std positive")

    @classmethod
    def fit(
        cls,
        sequences: Sequence[Sequence[tuple[Candidates, np.ndarray, HistoryFrame]]],
        num_parts: int,
        max_lag: int,
        *,
        l2: float = 0.1,
        cmax: float = 10.0,
        max_distance_factor: float = 2.0,
        min_scale: float = 4.0,
    ) -> TemporalModel:
        """Fit on videos: per frame, candidates, their ``owner`` identities [N] (−1 = none)
        and the frame's people as they would be tracked (a :class:`HistoryFrame`, e.g. the
        best candidate per part and identity)."""
        feats, labels, classes = [], [], []
        for frames in sequences:
            history: list[HistoryFrame] = []
            for candidates, owner, people in frames:
                obs = observations(history, people.index, num_parts, min_scale)
                d, o, x = link_features(candidates, obs, min_scale, max_distance_factor)
                feats.append(x)
                labels.append((np.asarray(owner)[d] == obs.track[o]) & (np.asarray(owner)[d] >= 0))
                classes.append((np.minimum(obs.lag[o], max_lag) - 1) * num_parts
                               + candidates.part[d])
                history = [*history, people][-max_lag:]
        x = np.concatenate(feats)
        if len(x) == 0:
            raise ValueError("no candidate–person pairs to fit on")
        mean, std = x.mean(0), x.std(0)
        mean[0], std[0] = 0.0, 1.0
        std = np.where(std > 1e-8, std, 1.0)
        weights = fit_logistic(
            (x - mean) / std, np.concatenate(labels), np.concatenate(classes),
            max_lag * num_parts, l2=l2,
        )
        return cls(weights, mean, std, num_parts, max_lag, cmax, max_distance_factor, min_scale)

    def link_costs(
        self, candidates: Candidates, obs: Observations
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(d, o, cost)``: join costs of candidate ``d`` with observation ``o`` (pairs within
        reach only)."""
        d, o, x = link_features(candidates, obs, self.min_scale, self.max_distance_factor)
        k = (np.minimum(obs.lag[o], self.max_lag) - 1) * self.num_parts + candidates.part[d]
        scaled = self.weights / self.feature_std
        intercept = -(scaled * self.feature_mean).sum(-1)
        logit = np.einsum("ef,ef->e", x, scaled[k]) + intercept[k]
        return d, o, np.clip(-logit, -self.cmax, self.cmax)

    def save(self, path: str | Path) -> None:
        """Write an ``.npz`` of plain arrays plus JSON metadata."""
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "features": list(FEATURE_NAMES),
            "num_parts": self.num_parts,
            "max_lag": self.max_lag,
            "cmax": self.cmax,
            "max_distance_factor": self.max_distance_factor,
            "min_scale": self.min_scale,
        }
        save_npz(
            path,
            meta,
            weights=self.weights,
            feature_mean=self.feature_mean,
            feature_std=self.feature_std,
        )

    @classmethod
    def load(cls, path: str | Path | None = None) -> TemporalModel:
        """Read a model written by :meth:`save` (default: the bundled one).

        Raises:
            ValueError: not a temporal model file of this format, version and features.
        """
        path = DEFAULT_PATH if path is None else Path(path)
        arrays, meta = load_npz(
            path, "temporal model", FORMAT, VERSION, FEATURE_NAMES, LOGISTIC_ARRAYS
        )
        try:
            return cls(
                weights=arrays["weights"].astype(np.float64),
                feature_mean=arrays["feature_mean"].astype(np.float64),
                feature_std=arrays["feature_std"].astype(np.float64),
                num_parts=int(meta["num_parts"]),
                max_lag=int(meta["max_lag"]),
                cmax=float(meta["cmax"]),
                max_distance_factor=float(meta["max_distance_factor"]),
                min_scale=float(meta["min_scale"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: malformed temporal model file ({err})") from err


def truth_people(
    index: int, candidates: Candidates, owner: np.ndarray, num_parts: int
) -> HistoryFrame:
    """The people a tracker would report from simulated candidates: per identity, its
    highest-scoring candidate of each part (identities with fewer than 2 parts left out)."""
    owner = np.asarray(owner)
    ids = [int(t) for t in np.unique(owner[owner >= 0])]
    keypoints = np.full((len(ids), num_parts, 3), np.nan)
    for m, tid in enumerate(ids):
        mine = np.flatnonzero(owner == tid)
        for k in mine[np.argsort(-candidates.score[mine], kind="stable")][::-1]:
            keypoints[m, candidates.part[k], :2] = candidates.xy[k]  # best written last
            keypoints[m, candidates.part[k], 2] = candidates.score[k]
    return history_frame(index, np.array(ids, np.int64), keypoints, min_parts=2)


def history_frame(
    index: int, ids: np.ndarray, keypoints: np.ndarray, min_parts: int = 1
) -> HistoryFrame:
    """A :class:`HistoryFrame` of poses [M, P, 3] (x, y, score) with at least ``min_parts``
    parts."""
    found = np.isfinite(keypoints[..., 0])
    keep = found.sum(1) >= min_parts
    scores = np.where(found, keypoints[..., 2], 0.0).sum(1) / np.maximum(found.sum(1), 1)
    return HistoryFrame(
        index, np.asarray(ids, np.int64)[keep], keypoints[keep, :, :2].astype(np.float64),
        scores[keep],
    )
