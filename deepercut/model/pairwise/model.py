"""The pairwise model: per-part-pair logistic models of "same person", fit on labelled candidates,
saved and loaded, and the SPLP :class:`~deepercut.types.Problem` of a frame's candidates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import expit

from deepercut.model.pairwise.features import (
    FEATURE_NAMES,
    NUM_FEATURES,
    fixed_label_features,
    near_pairs,
    num_pair_classes,
    pair_class,
    pair_features,
    pair_geometry,
    prepare_candidates,
)
from deepercut.model.pairwise.logistic import fit_logistic
from deepercut.model.pairwise.npz import LOGISTIC_ARRAYS, load_npz, save_npz
from deepercut.types import Candidates, Problem

FORMAT = "deepercut.pairwise"
VERSION = 1

_FREE_LABEL_CHUNK = 256


@dataclass(frozen=True)
class _Pairs:
    """The edges of a problem: kept candidates' geometry (``prepare_candidates``) and the
    candidate pairs ``(i, j)`` joined, ``near`` where they lie within the distance limit."""

    xy: np.ndarray
    offsets: np.ndarray
    sigma: np.ndarray
    i: np.ndarray
    j: np.ndarray
    near: np.ndarray


def _kept_candidates(score: np.ndarray, min_score: float, max_candidates: int) -> np.ndarray:
    """Indices (increasing) of the candidates scoring ``min_score`` or more, at most the
    ``max_candidates`` best of them."""
    kept = np.flatnonzero(score >= min_score)
    if len(kept) > max_candidates:
        kept = np.sort(kept[np.argsort(-score[kept], kind="stable")[:max_candidates]])
    return kept


@dataclass(eq=False)  # array fields: compare models field by field
class PairwiseModel:
    """Per-part-pair logistic models of "same person" and the SPLP problem built from them.

    Attributes:
        weights: float64 [K, F] weights on standardised features, ``K = P(P+1)/2`` part pairs
            indexed by :func:`pair_class`, ``F`` = :data:`FEATURE_NAMES`.
        feature_mean: float64 [F] standardisation offset (0 for the bias).
        feature_std: float64 [F] standardisation scale (1 for the bias).
        num_parts: ``P``.
        cmax: costs are clipped to ``[−cmax, cmax]``.
        max_distance_factor: pairs farther apart than this many pair scales get no edge (and no
            training samples). ``4`` ≈ 1.3 person heights: every pair within one person.
        min_scale: floor of the per-candidate scale, pixels.
    """

    weights: np.ndarray
    feature_mean: np.ndarray
    feature_std: np.ndarray
    num_parts: int
    cmax: float = 10.0
    max_distance_factor: float = 4.0
    min_scale: float = 4.0

    def __post_init__(self) -> None:
        k = num_pair_classes(self.num_parts)
        if self.weights.shape != (k, NUM_FEATURES):
            raise ValueError(
                f"weights must be [{k}, {NUM_FEATURES}] for {self.num_parts} parts, got "
                f"{self.weights.shape}"
            )
        if self.feature_mean.shape != (NUM_FEATURES,) or self.feature_std.shape != (NUM_FEATURES,):
            raise ValueError(
                f"feature_mean/feature_std must be [{NUM_FEATURES}], got "
                f"{self.feature_mean.shape} / {self.feature_std.shape}"
            )
        if not (np.isfinite(self.weights).all() and np.isfinite(self.feature_mean).all()):
            raise ValueError("model weights must be finite")
        if not (np.isfinite(self.feature_std).all() and (self.feature_std > 0).all()):
            raise ValueError("feature_std must be finite and positive")
        if not (self.cmax > 0 and self.max_distance_factor > 0 and self.min_scale > 0):
            raise ValueError("cmax, max_distance_factor and min_scale must be positive")

    # ------------------------------------------------------------------ fitting

    @classmethod
    def fit(
        cls,
        samples: Sequence[tuple[Candidates, np.ndarray]],
        num_parts: int,
        *,
        pairs_per_image: int = 2000,
        seed: int = 0,
        l2: float = 0.1,
        cmax: float = 10.0,
        max_distance_factor: float = 4.0,
        min_scale: float = 4.0,
    ) -> PairwiseModel:
        """Fit the model on images of candidates with known owners.

        Args:
            samples: per image, candidates and ``owner`` [N] (person index, −1 = none), e.g.
                from :func:`deepercut.data.synthetic_candidates.candidates_from_truth` or
                :func:`~deepercut.data.synthetic_candidates.assign_candidates_to_truth`.
            num_parts: ``P``.
            pairs_per_image: at most this many pairs sampled uniformly per image, among the
                pairs within ``max_distance_factor`` (those the model will be asked about).
            seed: sampling seed.
            l2: prior precision on the standardised weights. Synthetic pairs are nearly
                separable, so a strong prior (≥ 1) flattens the log-odds; 0.01–0.1 gave the
                best held-out log-loss.
            cmax, max_distance_factor, min_scale: stored settings, see the attributes.
        """
        rng = np.random.default_rng(seed)
        feats, labels, classes = [], [], []
        for candidates, owner in samples:
            if candidates.num_parts != num_parts:
                raise ValueError(
                    f"candidates have {candidates.num_parts} parts, expected {num_parts}"
                )
            owner = np.asarray(owner)
            xy, offsets, sigma = prepare_candidates(candidates, min_scale)
            i, j, near = near_pairs(xy, sigma, max_distance_factor)
            i, j = i[near], j[near]
            if len(i) > pairs_per_image:
                pick = rng.choice(len(i), pairs_per_image, replace=False)
                i, j = i[pick], j[pick]
            feats.append(fixed_label_features(xy, offsets, candidates.part, sigma, i, j))
            labels.append((owner[i] == owner[j]) & (owner[i] >= 0))
            classes.append(pair_class(candidates.part[i], candidates.part[j], num_parts))
        x = np.concatenate(feats) if feats else np.zeros((0, NUM_FEATURES))
        if len(x) == 0:
            raise ValueError("no candidate pairs to fit on")
        mean, std = x.mean(0), x.std(0)
        mean[0], std[0] = 0.0, 1.0
        std = np.where(std > 1e-8, std, 1.0)
        weights = fit_logistic(
            (x - mean) / std,
            np.concatenate(labels),
            np.concatenate(classes),
            num_pair_classes(num_parts),
            l2=l2,
        )
        return cls(weights, mean, std, num_parts, cmax, max_distance_factor, min_scale)

    # ------------------------------------------------------------------ inference

    def pair_probability(self, candidates: Candidates, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Probability [len(i)] that candidates ``i[k]`` and ``j[k]`` (with their detected
        parts) are the same person, from the fitted model (same-part pairs included)."""
        self._check(candidates)
        i, j = np.asarray(i, np.int64), np.asarray(j, np.int64)
        xy, offsets, sigma = prepare_candidates(candidates, self.min_scale)
        x = fixed_label_features(xy, offsets, candidates.part, sigma, i, j)
        k = pair_class(candidates.part[i], candidates.part[j], self.num_parts)
        return expit(self._logit(x, k))

    def build_problem(
        self,
        candidates: Candidates,
        *,
        max_candidates: int = 150,
        min_score: float = 0.0,
        max_distance_factor: float | None = None,
        forbid_same_part: bool = True,
        free_labels: bool = False,
        part_scores: np.ndarray | None = None,
    ) -> tuple[Problem, np.ndarray]:
        """The SPLP problem of one image.

        Pruning: candidates with ``score < min_score`` are dropped, then all but the
        ``max_candidates`` highest-scoring. An edge joins two kept candidates when their
        distance is at most ``max_distance_factor`` pair scales (default: the model's), since
        people are local; a pair without an edge costs nothing to join.

        Labels: by default each candidate keeps its detected part (``unary = −logit(score)``
        there, ``+inf`` elsewhere, and only ``pair_cost[e, part_i, part_j]`` is finite). With
        ``free_labels`` (DeepCut-style) every label is allowed: ``unary[d, c] =
        −logit(part_scores[d, c])`` and every ``pair_cost[e, c, c']`` is computed; without
        ``part_scores`` other labels than the detected one get probability 0 (cost ``cmax``).

        Same part: with ``forbid_same_part`` (DeeperCut: one candidate per part per person),
        ``pair_cost[e, c, c] = +inf``, and every pair that could share a label — same detected
        part, or any pair under free labels — gets an edge however far apart, so no cluster can
        hold a part twice (without it, two distant people could merge at zero cost). Otherwise
        same-label costs come from the fitted same-part model, and far pairs get no edge.
        Far edges carry ``+inf`` on the diagonal and, under free labels, 0 elsewhere.

        Returns:
            ``(problem, kept_index)``: node ``n`` of the problem is candidate ``kept_index[n]``
            (increasing order).
        """
        self._check(candidates)
        factor = self.max_distance_factor if max_distance_factor is None else max_distance_factor
        if part_scores is not None:
            part_scores = np.asarray(part_scores, np.float64)
            if part_scores.shape != (len(candidates), self.num_parts):
                raise ValueError(
                    f"part_scores must be [{len(candidates)}, {self.num_parts}], got "
                    f"{part_scores.shape}"
                )
        kept = _kept_candidates(candidates.score, min_score, max_candidates)
        cands = candidates.select(kept)
        xy, offsets, sigma = prepare_candidates(cands, self.min_scale)
        i, j, near = near_pairs(xy, sigma, factor)
        if forbid_same_part:  # every pair that could share a label needs its edge
            shares_label = np.ones_like(near) if free_labels else cands.part[i] == cands.part[j]
            edge = near | shares_label
        else:
            edge = near
        pairs = _Pairs(xy, offsets, sigma, i[edge], j[edge], near[edge])
        if free_labels:
            probs = None if part_scores is None else part_scores[kept]
            unary, pair_cost = self._free_label_problem(cands, pairs, probs, forbid_same_part)
        else:
            unary, pair_cost = self._fixed_label_problem(cands, pairs, forbid_same_part)
        edges = np.stack([pairs.i, pairs.j], 1).astype(np.int64)
        return Problem(unary=unary, edges=edges, pair_cost=pair_cost), kept

    def _free_label_problem(
        self,
        cands: Candidates,
        pairs: _Pairs,
        part_scores: np.ndarray | None,
        forbid_same_part: bool,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Unaries [N, P] and pair costs [E, P, P] when every label is allowed: unaries from
        ``part_scores`` (else the detected part's score, probability 0 elsewhere)."""
        n, p = len(cands), self.num_parts
        if part_scores is None:
            part_scores = np.zeros((n, p))
            part_scores[np.arange(n), cands.part] = cands.score
        near = pairs.near
        pair_cost = np.zeros((len(pairs.i), p, p))
        pair_cost[near] = self._free_label_costs(
            pairs.xy, pairs.offsets, pairs.sigma, pairs.i[near], pairs.j[near]
        )
        if forbid_same_part:
            diag = np.arange(p)
            pair_cost[:, diag, diag] = np.inf
        return self._cost_from_prob(part_scores), pair_cost

    def _fixed_label_problem(
        self, cands: Candidates, pairs: _Pairs, forbid_same_part: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Unaries [N, P] and pair costs [E, P, P] when each candidate keeps its detected part:
        everything but the detected labels' entries stays forbidden (``+inf``)."""
        n, p = len(cands), self.num_parts
        unary = np.full((n, p), np.inf)
        unary[np.arange(n), cands.part] = self._cost_from_prob(cands.score)
        i, j = pairs.i, pairs.j
        pair_cost = np.full((len(i), p, p), np.inf)
        ci, cj = cands.part[i], cands.part[j]
        scored = pairs.near & (ci != cj) if forbid_same_part else pairs.near
        e = np.flatnonzero(scored)
        x = fixed_label_features(pairs.xy, pairs.offsets, cands.part, pairs.sigma, i[e], j[e])
        pair_cost[e, ci[e], cj[e]] = self._cost(self._logit(x, pair_class(ci[e], cj[e], p)))
        return unary, pair_cost

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> None:
        """Write an ``.npz`` of plain arrays plus JSON metadata (no pickle)."""
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "num_parts": self.num_parts,
            "features": list(FEATURE_NAMES),
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
    def load(cls, path: str | Path) -> PairwiseModel:
        """Read a model written by :meth:`save`.

        Raises:
            ValueError: the file isn't a readable pairwise model of this format and version,
                or its arrays don't match its metadata.
        """
        arrays, meta = load_npz(
            path, "pairwise model", FORMAT, VERSION, FEATURE_NAMES, LOGISTIC_ARRAYS
        )
        try:
            return cls(
                weights=arrays["weights"].astype(np.float64),
                feature_mean=arrays["feature_mean"].astype(np.float64),
                feature_std=arrays["feature_std"].astype(np.float64),
                num_parts=int(meta["num_parts"]),
                cmax=float(meta["cmax"]),
                max_distance_factor=float(meta["max_distance_factor"]),
                min_scale=float(meta["min_scale"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: malformed pairwise model file ({err})") from err

    # ------------------------------------------------------------------ internals

    def _check(self, candidates: Candidates) -> None:
        if candidates.num_parts != self.num_parts:
            raise ValueError(
                f"candidates have {candidates.num_parts} parts, the model {self.num_parts}"
            )

    def _logit(self, features: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Linear score ``w_k · standardise(x)`` (the log-odds of "same person")."""
        # Standardisation folded into the weights: w·(x − m)/s = (w/s)·x − w·m/s.
        scaled = self.weights / self.feature_std
        intercept = -(scaled * self.feature_mean).sum(-1)
        return np.einsum("...f,...f->...", features, scaled[k]) + intercept[k]

    def _cost(self, logit: np.ndarray) -> np.ndarray:
        return np.clip(-logit, -self.cmax, self.cmax)

    def _cost_from_prob(self, prob: np.ndarray) -> np.ndarray:
        """``−logit(prob)`` clipped to ``[−cmax, cmax]`` (0 and 1 map to the clip)."""
        with np.errstate(divide="ignore"):
            logit = np.log(prob) - np.log1p(-prob)
        return self._cost(np.nan_to_num(logit, posinf=self.cmax, neginf=-self.cmax))

    def _free_label_costs(
        self,
        xy: np.ndarray,
        offsets: np.ndarray,
        sigma: np.ndarray,
        i: np.ndarray,
        j: np.ndarray,
    ) -> np.ndarray:
        """Costs [E, P, P] of pairs (i, j) under every label pair (c for i, c' for j)."""
        p = self.num_parts
        c = np.arange(p)
        k = pair_class(c[:, None], c[None, :], p)[None]
        out = np.empty((len(i), p, p))
        # Chunks bound the [chunk, P, P, F] feature temporaries (~6 MB each for P = 14).
        for start in range(0, len(i), _FREE_LABEL_CHUNK):
            ic, jc = i[start : start + _FREE_LABEL_CHUNK], j[start : start + _FREE_LABEL_CHUNK]
            u, scale, consensus, size = pair_geometry(xy, offsets, sigma, ic, jc)
            x = pair_features(
                u[:, None, None],
                scale[:, None, None],
                offsets[ic][:, None, :],  # o(i→c'), varies along c'
                offsets[jc][:, :, None],  # o(j→c), varies along c
                consensus[:, None, None],
                size[:, None, None],
                c[None, :, None],
                c[None, None, :],
            )
            out[start : start + len(ic)] = self._cost(self._logit(x, k))
        return out
