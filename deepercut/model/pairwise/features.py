"""Geometric features of a candidate pair (see :mod:`deepercut.model.pairwise`): displacement,
offset residuals and cosines, skeleton consensus, size ratio, all divided by the pair's scale."""

from __future__ import annotations

import numpy as np

from deepercut.types import Candidates

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
    return complex_scale(as_complex(offsets), min_scale)


def complex_scale(offsets: np.ndarray, min_scale: float) -> np.ndarray:
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


def prepare_candidates(
    candidates: Candidates, min_scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Complex locations [N], complex offsets [N, P] and scales [N] of candidates."""
    offsets = as_complex(candidates.offsets)
    return as_complex(candidates.xy), offsets, complex_scale(offsets, min_scale)


def as_complex(vectors: np.ndarray) -> np.ndarray:
    """[..., 2] float (x, y) → complex64 [...] ``x + iy`` (a view of float32 input).

    Single precision matches the detector's float32 output and halves the memory traffic.
    """
    return np.ascontiguousarray(vectors, np.float32).view(np.complex64)[..., 0]


def near_pairs(
    xy: np.ndarray, sigma: np.ndarray, factor: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs i < j and whether ``|x_j − x_i| ≤ factor · (σ_i + σ_j)/2`` (complex ``xy``)."""
    near = np.abs(xy[None, :] - xy[:, None]) <= factor * 0.5 * (sigma[:, None] + sigma[None, :])
    i, j = np.triu_indices(len(xy), 1)
    return i, j, near[i, j]


def pair_geometry(
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


def fixed_label_features(
    xy: np.ndarray,
    offsets: np.ndarray,
    part: np.ndarray,
    sigma: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
) -> np.ndarray:
    """Features [E, F] of pairs (i, j) under their detected parts (complex ``xy``/``offsets``)."""
    u, scale, consensus, size = pair_geometry(xy, offsets, sigma, i, j)
    ci, cj = part[i], part[j]
    return pair_features(u, scale, offsets[i, cj], offsets[j, ci], consensus, size, ci, cj)
