"""Per-class logistic regressions fit jointly by L-BFGS (the pairwise and temporal models)."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.optimize import minimize
from scipy.special import expit


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
