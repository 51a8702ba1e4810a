"""Exact solver for tiny single-label components: dynamic programming over node subsets.

Incremental stages split into many components of 3–10 candidates, where one CP-SAT call
(model, presolve, LP) costs ~10× more than enumerating. For ``k`` nodes with one label each:

- ``cost[B]`` for every subset ``B`` as one cluster: unaries plus the joins inside it (``+inf``
  if it holds a forbidden pair), all subsets at once from a bit matrix;
- ``f[S]`` = the best way to split ``S`` into suppressed nodes and clusters:
  ``f[S] = min(f[S∖{low}], min_{B ∋ low, B ⊆ S} cost[B] + f[S∖B])`` with ``low`` the lowest
  node of ``S`` (suppression not allowed for fixed nodes), evaluated layer by layer (by
  ``|S|``) over precomputed (S, B) index pairs, vectorised: ``(3^k + 1)/2`` pairs in all.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: Largest component solved by enumeration (3^10/2 ≈ 30k subset pairs).
MAX_NODES = 10


@lru_cache(maxsize=MAX_NODES + 1)
def _tables(k: int) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, ...]]]:
    """Subset bits [2^k, k], lowest bit per subset, and per layer |S| = p: the subsets S, the
    (S, B) pairs (B ∋ low(S), B ⊆ S) grouped by S, and each group's start."""
    masks = np.arange(1 << k)
    bits = (masks[:, None] >> np.arange(k)) & 1
    low = masks & -masks
    popcount = bits.sum(1)
    layers = []
    for p in range(1, k + 1):
        layer = masks[popcount == p]
        pair_s, pair_b = [], []
        for s in layer.tolist():
            rest = s ^ (s & -s)
            sub = rest
            while True:  # every subset of ``rest``, plus the lowest node
                pair_s.append(s)
                pair_b.append(sub | (s & -s))
                if sub == 0:
                    break
                sub = (sub - 1) & rest
        pair_s = np.array(pair_s)
        starts = np.flatnonzero(np.r_[True, pair_s[1:] != pair_s[:-1]])
        layers.append((layer, pair_s, np.array(pair_b), starts))
    return bits.astype(bool), low, layers


def solve_tiny(
    unary: np.ndarray, fixed: np.ndarray, pair_u: np.ndarray, pair_v: np.ndarray, cost: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Optimal assignment of ``k ≤ MAX_NODES`` single-label nodes.

    Args:
        unary: [k] cost of keeping each node.
        fixed: [k] nodes that must be kept.
        pair_u, pair_v: [Q] node pairs; ``cost`` [Q] their join costs (``+inf`` = forbidden).

    Returns:
        ``(kept [k] bool, cluster [k] (−1 when suppressed), objective)``.
    """
    k = len(unary)
    bits, low, layers = _tables(k)
    both = bits[:, pair_u] & bits[:, pair_v]
    finite = np.isfinite(cost)
    # einsum, not matmul: no BLAS threads for these small products.
    cluster_cost = np.einsum("sk,k->s", bits, unary) + np.einsum(
        "sq,q->s", both[:, finite], cost[finite]
    )
    cluster_cost[both[:, ~finite].any(1)] = np.inf
    low_fixed = np.zeros(1 << k, bool)
    low_fixed[1:] = fixed[np.log2(low[1:]).astype(np.int64)]

    best = np.zeros(1 << k)
    choice = np.zeros(1 << k, np.int64)  # cluster holding low(S); 0 = low suppressed
    for layer, pair_s, pair_b, starts in layers:
        value = cluster_cost[pair_b] + best[pair_s ^ pair_b]
        group_min = np.minimum.reduceat(value, starts)
        hit = value <= np.repeat(group_min, np.diff(np.r_[starts, len(value)]))
        first = np.minimum.reduceat(np.where(hit, np.arange(len(value)), len(value)), starts)
        suppress = np.where(low_fixed[layer], np.inf, best[layer ^ low[layer]])
        take_cluster = group_min < suppress
        best[layer] = np.where(take_cluster, group_min, suppress)
        choice[layer] = np.where(take_cluster, pair_b[np.minimum(first, len(value) - 1)], 0)

    kept = np.zeros(k, bool)
    cluster = np.full(k, -1, np.int64)
    s, next_cluster = (1 << k) - 1, 0
    while s:
        block = int(choice[s])
        if block == 0:
            s ^= int(low[s])
            continue
        members = bits[block]
        kept |= members
        cluster[members] = next_cluster
        next_cluster += 1
        s ^= block
    return kept, cluster, float(best[-1])
