"""DeeperCut's image-conditioned pairwise model: one logistic regression per part pair.

Given two candidates ``d`` (part ``c``, at ``x_d``) and ``d'`` (part ``c'``), the model predicts
the probability that they belong to the same person from geometric features, DeeperCut-style:

- the displacement between them (distance and angle, ``Δf``/``θf``),
- how well each candidate's regressed offset to the other's part lands on the other (the
  residuals ``|x_d + o(d→c') − x_d'|`` and ``|x_d' + o(d'→c) − x_d|``, their ``exp(−·)``, and
  the cosine of the angle between the regressed and the actual vector, both directions),
- whether the two candidates agree on where *every* part of their person is (the mean over
  parts ``q`` of ``|x_d + o(d→q) − x_d' − o(d'→q)|``): same person ⇒ the same predicted skeleton.
  This is the feature that separates same-part pairs (duplicates of one joint vs. the same joint
  of two people), whose own-part offsets are zero,
- the size mismatch ``|log(σ_d / σ_d')|`` of the two predicted skeletons.

**Scale.** Pixel distances mean nothing across people 60–340 px tall, so every distance is
divided by a per-pair scale ``s = (σ_d + σ_d') / 2``, where ``σ_d`` is the spread (RMS distance
to their centroid) of the skeleton candidate ``d`` predicts, ``{x_d + o(d→q)}_q`` — its estimate
of its person's size from all ``P`` regressed offsets (≈ 0.32 × height for upright MPII-like
poses). This is more robust than the two regressed vectors of the pair alone, which are short
and noisy for adjacent parts and zero for same-part pairs. ``σ`` is floored at ``min_scale``
pixels so detectors without offset regression don't divide by zero.

Features of a pair are computed oriented from the candidate of the lower part index to the
higher; for same-label pairs, where no orientation exists, direction-dependent features are
symmetrised (``|cos θ|``, ``|sin θ|``, min/max of the two residuals, mean of the two cosines).

**Fit.** Plain maximum likelihood with an L2 prior (no class re-weighting, so probabilities stay
calibrated: the costs are log-odds and are added across pairs), all ``K = P(P+1)/2`` part-pair
models jointly by L-BFGS on standardised features. Training pairs are sampled per image among
the pairs :meth:`PairwiseModel.build_problem` would create an edge for; positives are pairs with
the same ``owner`` ≥ 0.

**Costs.** ``pair_cost = −logit(p)`` (negative = attractive) and ``unary = −logit(score)``,
both clipped to ``[−cmax, cmax]`` so one confident term can't overrule everything else.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse
from scipy.optimize import minimize
from scipy.special import expit

from deepercut.bounded_files import check_npz_size
from deepercut.types import Candidates, Problem

FORMAT = "deepercut.pairwise"
VERSION = 1

#: Columns of the pair feature matrix, in order (saved with a model and checked on load).
FEATURE_NAMES: tuple[str, ...] = (
    "bias",
    "dist",
    "dist_sq",
    "exp_dist",
    "cos_theta",
    "sin_theta",
    "fwd_residual",
    "bwd_residual",
    "exp_fwd_residual",
    "exp_bwd_residual",
    "fwd_cos_angle",
    "bwd_cos_angle",
    "consensus",
    "exp_consensus",
    "log_size_ratio",
)
NUM_FEATURES = len(FEATURE_NAMES)

_EPS = 1e-9
_FREE_LABEL_CHUNK = 256


def num_pair_classes(num_parts: int) -> int:
    """Number of unordered part pairs, same-part pairs included: ``P(P+1)/2``."""
    return num_parts * (num_parts + 1) // 2


def pair_class(c: np.ndarray, c2: np.ndarray, num_parts: int) -> np.ndarray:
    """Index in ``[0, P(P+1)/2)`` of the unordered part pair ``{c, c2}`` (row-major, ``c ≤ c2``)."""
    a, b = np.minimum(c, c2), np.maximum(c, c2)
    return a * (2 * num_parts - a + 1) // 2 + (b - a)


def candidate_scale(offsets: np.ndarray, min_scale: float = 4.0) -> np.ndarray:
    """Per-candidate person-size estimate ``σ`` [N]: RMS spread of the predicted skeleton.

    The predicted skeleton is ``{x_d + o(d→q)}_q`` (the own part at ``x_d``, offset zero).
    """
    return _scale(_as_complex(offsets), min_scale)


def _scale(offsets: np.ndarray, min_scale: float) -> np.ndarray:
    """:func:`candidate_scale` of complex offsets [N, P]."""
    centred = offsets - offsets.mean(1, keepdims=True)
    sigma = np.sqrt((centred.real**2 + centred.imag**2).mean(1))
    return np.maximum(sigma, min_scale)


def pair_features(
    u: np.ndarray,
    scale: np.ndarray,
    reg_i: np.ndarray,
    reg_j: np.ndarray,
    consensus: np.ndarray,
    log_size_ratio: np.ndarray,
    label_i: np.ndarray,
    label_j: np.ndarray,
) -> np.ndarray:
    """Feature matrix [..., F] (columns :data:`FEATURE_NAMES`) of candidate pairs (i, j).

    2-D vectors are complex numbers ``x + iy`` (fast norms and angles). All arguments
    broadcast against each other (leading dims ``...``):

    Args:
        u: complex [...] displacement ``x_j − x_i`` in pixels.
        scale: [...] pair scale in pixels.
        reg_i: complex [...] i's regressed vector to j's label, ``o(i→label_j)``.
        reg_j: complex [...] j's regressed vector to i's label, ``o(j→label_i)``.
        consensus: [...] mean over parts of the disagreement of the two predicted skeletons,
            already divided by ``scale``.
        log_size_ratio: [...] ``log(σ_i / σ_j)``.
        label_i, label_j: [...] the labels the pair is scored under.
    """
    swap = label_i > label_j
    # Orient from the lower label to the higher: v = x_b − x_a, fwd = o(a→b), bwd = o(b→a).
    v = np.where(swap, -u, u) / scale
    fwd = np.where(swap, reg_j, reg_i) / scale
    bwd = np.where(swap, reg_i, reg_j) / scale
    same = label_i == label_j

    dist = np.abs(v)
    direction = v / np.maximum(dist, _EPS)  # cos θ + i sin θ (0 for coincident candidates)
    r_fwd, r_bwd = np.abs(fwd - v), np.abs(bwd + v)
    c_fwd, c_bwd = _cos_angle(fwd, direction), _cos_angle(bwd, -direction)
    # Same labels have no orientation: make the features symmetric in (i, j).
    cos_t = np.where(same, np.abs(direction.real), direction.real)
    sin_t = np.where(same, np.abs(direction.imag), direction.imag)
    r_fwd, r_bwd = (
        np.where(same, np.minimum(r_fwd, r_bwd), r_fwd),
        np.where(same, np.maximum(r_fwd, r_bwd), r_bwd),
    )
    c_mean = 0.5 * (c_fwd + c_bwd)
    c_fwd, c_bwd = np.where(same, c_mean, c_fwd), np.where(same, c_mean, c_bwd)

    columns = (
        1.0,
        dist,
        dist**2,
        np.exp(-dist),
        cos_t,
        sin_t,
        r_fwd,
        r_bwd,
        np.exp(-r_fwd),
        np.exp(-r_bwd),
        c_fwd,
        c_bwd,
        consensus,
        np.exp(-consensus),
        np.abs(log_size_ratio),
    )
    shape = np.broadcast_shapes(*(np.shape(col) for col in columns))
    out = np.empty((*shape, NUM_FEATURES))
    for k, col in enumerate(columns):
        out[..., k] = col
    return out


def _cos_angle(a: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Cosine of the angle between complex vector ``a`` and unit vector ``unit`` (0 when
    either is ~zero)."""
    return (a * unit.conj()).real / np.maximum(np.abs(a), _EPS)


def fit_logistic(
    features: np.ndarray,
    labels: np.ndarray,
    classes: np.ndarray,
    num_classes: int,
    *,
    l2: float = 1.0,
    max_iter: int = 500,
) -> np.ndarray:
    """Maximum-likelihood logistic regressions, one per class, with an L2 prior.

    Minimises ``Σ_n log(1 + exp(−y±_n · w_{k_n}·x_n)) + l2/2 · |W|²`` by L-BFGS; the classes
    share nothing, but are solved as one block-sparse problem so the whole fit is vectorised.
    Classes without samples get zero weights (probability ½).

    Args:
        features: [n, F] rows (include a constant column for a bias).
        labels: [n] bool/0-1 targets.
        classes: [n] int class of each row in ``[0, num_classes)``.
        num_classes: ``K``.
        l2: prior precision on every weight.

    Returns:
        weights [K, F].
    """
    features = np.asarray(features, np.float64)
    y = np.asarray(labels, np.float64)
    n, f = features.shape
    cols = (np.asarray(classes, np.int64)[:, None] * f + np.arange(f)).ravel()
    rows = np.repeat(np.arange(n), f)
    design = sparse.csr_matrix((features.ravel(), (rows, cols)), shape=(n, num_classes * f))
    design_t = design.T.tocsr()

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = design @ w
        nll = float(np.sum(np.logaddexp(0.0, z) - y * z))
        grad = design_t @ (expit(z) - y) + l2 * w
        return nll + 0.5 * l2 * float(w @ w), grad

    result = minimize(
        loss,
        np.zeros(num_classes * f),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter},
    )
    return result.x.reshape(num_classes, f)


#: Arrays of a file of per-class logistic models (pairwise and temporal).
LOGISTIC_ARRAYS = ("weights", "feature_mean", "feature_std")
#: Most bytes a pairwise/temporal model file's arrays may take (real ones: a few KB).
MAX_NPZ_BYTES = 64 << 20


def save_npz(path: str | Path, meta: dict, **arrays: np.ndarray) -> None:
    """Write ``arrays`` and a JSON ``meta`` to one ``.npz`` that loads without pickle."""
    with open(path, "wb") as fh:
        np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)


def load_npz(
    path: str | Path,
    kind: str,
    file_format: str,
    version: int,
    features: Sequence[str],
    required: Sequence[str],
) -> tuple[dict[str, np.ndarray], dict]:
    """Arrays and metadata of a file written by :func:`save_npz`, checked against the
    ``file_format``, ``version`` and ``features`` this code writes; arrays larger than
    :data:`MAX_NPZ_BYTES` in all are refused from their headers, before loading.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable ``kind`` file (e.g. "pairwise model"), another version or
            feature list, or missing ``required`` arrays.
    """
    try:
        check_npz_size(path, MAX_NPZ_BYTES)  # from the headers, before anything inflates
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with data:
            arrays = {key: data[key] for key in data.files}
        meta = json.loads(str(arrays["meta"]))
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a deepercut {kind} file ({err})") from err
    if not isinstance(meta, dict) or meta.get("format") != file_format:
        raise ValueError(f"{path}: not a deepercut {kind} file (format mismatch)")
    if meta.get("version") != version:
        raise ValueError(f"{path}: {kind} version {meta.get('version')!r}, expected {version}")
    if meta.get("features") != list(features):
        raise ValueError(
            f"{path}: {kind} features {meta.get('features')} differ from this code's "
            f"{list(features)}"
        )
    missing = set(required) - arrays.keys()
    if missing:
        raise ValueError(f"{path}: {kind} file lacks arrays {sorted(missing)}")
    return arrays, meta


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
            xy, offsets, sigma = _prepare(candidates, min_scale)
            i, j, near = _near_pairs(xy, sigma, max_distance_factor)
            i, j = i[near], j[near]
            if len(i) > pairs_per_image:
                pick = rng.choice(len(i), pairs_per_image, replace=False)
                i, j = i[pick], j[pick]
            feats.append(_fixed_label_features(xy, offsets, candidates.part, sigma, i, j))
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
        xy, offsets, sigma = _prepare(candidates, self.min_scale)
        x = _fixed_label_features(xy, offsets, candidates.part, sigma, i, j)
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
        p = self.num_parts
        factor = self.max_distance_factor if max_distance_factor is None else max_distance_factor
        if part_scores is not None:
            part_scores = np.asarray(part_scores, np.float64)
            if part_scores.shape != (len(candidates), p):
                raise ValueError(
                    f"part_scores must be [{len(candidates)}, {p}], got {part_scores.shape}"
                )

        kept = np.flatnonzero(candidates.score >= min_score)
        if len(kept) > max_candidates:
            kept = np.sort(
                kept[np.argsort(-candidates.score[kept], kind="stable")[:max_candidates]]
            )
        cands = candidates.select(kept)
        n = len(cands)
        xy, offsets, sigma = _prepare(cands, self.min_scale)

        i, j, near = _near_pairs(xy, sigma, factor)
        if forbid_same_part:
            shares_label = np.ones_like(near) if free_labels else cands.part[i] == cands.part[j]
            edge = near | shares_label
        else:
            edge = near
        i, j, near = i[edge], j[edge], near[edge]
        edges = np.stack([i, j], 1).astype(np.int64)

        if free_labels:
            if part_scores is None:
                probs = np.zeros((n, p))
                probs[np.arange(n), cands.part] = cands.score
            else:
                probs = part_scores[kept]
            unary = self._cost_from_prob(probs)
            pair_cost = np.zeros((len(edges), p, p))
            pair_cost[near] = self._free_label_costs(xy, offsets, sigma, i[near], j[near])
            if forbid_same_part:
                diag = np.arange(p)
                pair_cost[:, diag, diag] = np.inf
        else:
            unary = np.full((n, p), np.inf)
            unary[np.arange(n), cands.part] = self._cost_from_prob(cands.score)
            # Everything but the detected labels' entry stays forbidden.
            pair_cost = np.full((len(edges), p, p), np.inf)
            ci, cj = cands.part[i], cands.part[j]
            scored = near & (ci != cj) if forbid_same_part else near
            e = np.flatnonzero(scored)
            x = _fixed_label_features(xy, offsets, cands.part, sigma, i[e], j[e])
            pair_cost[e, ci[e], cj[e]] = self._cost(self._logit(x, pair_class(ci[e], cj[e], p)))
        return Problem(unary=unary, edges=edges, pair_cost=pair_cost), kept

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
            u, scale, consensus, size = _pair_geometry(xy, offsets, sigma, ic, jc)
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


def _prepare(candidates: Candidates, min_scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Complex locations [N], complex offsets [N, P] and scales [N] of candidates."""
    offsets = _as_complex(candidates.offsets)
    return _as_complex(candidates.xy), offsets, _scale(offsets, min_scale)


def _as_complex(vectors: np.ndarray) -> np.ndarray:
    """[..., 2] float (x, y) → complex64 [...] ``x + iy`` (a view of float32 input).

    Single precision matches the detector's float32 output and halves the memory traffic.
    """
    return np.ascontiguousarray(vectors, np.float32).view(np.complex64)[..., 0]


def _near_pairs(
    xy: np.ndarray, sigma: np.ndarray, factor: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs i < j and whether ``|x_j − x_i| ≤ factor · (σ_i + σ_j)/2`` (complex ``xy``)."""
    near = np.abs(xy[None, :] - xy[:, None]) <= factor * 0.5 * (sigma[:, None] + sigma[None, :])
    i, j = np.triu_indices(len(xy), 1)
    return i, j, near[i, j]


def _pair_geometry(
    xy: np.ndarray, offsets: np.ndarray, sigma: np.ndarray, i: np.ndarray, j: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Label-independent pair quantities: displacement, scale, consensus, log size ratio.

    ``xy`` complex [N], ``offsets`` complex [N, P].
    """
    u = xy[j] - xy[i]
    scale = 0.5 * (sigma[i] + sigma[j])
    # Where i and j put each part: x_i + o(i→q) vs x_j + o(j→q).
    consensus = np.abs(offsets[i] - offsets[j] - u[:, None]).mean(-1) / scale
    return u, scale, consensus, np.log(sigma[i] / sigma[j])


def _fixed_label_features(
    xy: np.ndarray,
    offsets: np.ndarray,
    part: np.ndarray,
    sigma: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
) -> np.ndarray:
    """Features [E, F] of pairs (i, j) under their detected parts (complex ``xy``/``offsets``)."""
    u, scale, consensus, size = _pair_geometry(xy, offsets, sigma, i, j)
    ci, cj = part[i], part[j]
    return pair_features(u, scale, offsets[i, cj], offsets[j, ci], consensus, size, ci, cj)
