"""Reference solver: exact by exhaustive enumeration, for tiny problems and tests.

Independent of the other solvers' code paths: it evaluates candidate solutions with
:meth:`Problem.objective` itself. For every subset ``B`` of keepable candidates it finds the
cheapest labelling of ``B`` as *one* cluster (all label combinations); the optimum is then the
cheapest way to split the candidates into suppressed ones and such clusters, by dynamic
programming over subsets (``f(S) = min(f(S∖{low}), min_{B ∋ low} best(B) + f(S∖B))``, with
``low`` the lowest candidate in ``S``). The cost is ``Σ_B Π_{d∈B} |labels(d)|`` objective
evaluations plus ``3^n`` DP steps: fine up to ~8 candidates.
"""

from __future__ import annotations

import itertools

import numpy as np

from deepercut.types import Problem

#: Refuse problems with more keepable candidates than this (the cost is exponential).
MAX_CANDIDATES = 10


def brute_force(problem: Problem) -> tuple[np.ndarray, np.ndarray, float]:
    """Optimal ``(label, cluster, objective)`` of a tiny problem.

    Raises:
        ValueError: more than :data:`MAX_CANDIDATES` candidates with a finite unary.
    """
    n_all = problem.num_candidates
    nodes = [d for d in range(n_all) if np.isfinite(problem.unary[d]).any()]
    if len(nodes) > MAX_CANDIDATES:
        raise ValueError(f"brute force is limited to {MAX_CANDIDATES} keepable candidates")
    labels = [np.flatnonzero(np.isfinite(problem.unary[d])).tolist() for d in nodes]
    n = len(nodes)

    best_cost = {0: 0.0}
    best_labels: dict[int, tuple[int, ...]] = {0: ()}
    for mask in range(1, 1 << n):
        members = [i for i in range(n) if mask >> i & 1]
        cost, choice = np.inf, ()
        for combo in itertools.product(*(labels[i] for i in members)):
            label = np.full(n_all, -1)
            label[[nodes[i] for i in members]] = combo
            value = problem.objective(label, np.zeros(n_all, np.int64))
            if value < cost:
                cost, choice = value, combo
        best_cost[mask], best_labels[mask] = cost, choice

    # f[mask]: cheapest split of ``mask`` into suppressed candidates and clusters.
    f = np.full(1 << n, np.inf)
    f[0] = 0.0
    pick = [0] * (1 << n)  # chosen cluster containing the lowest member (0 = suppressed)
    for mask in range(1, 1 << n):
        low = mask & -mask
        f[mask], pick[mask] = f[mask ^ low], 0
        rest = mask ^ low
        sub = rest
        while True:
            block = sub | low
            value = best_cost[block] + f[mask ^ block]
            if value < f[mask]:
                f[mask], pick[mask] = value, block
            if sub == 0:
                break
            sub = (sub - 1) & rest

    label = np.full(n_all, -1, np.int64)
    cluster = np.full(n_all, -1, np.int64)
    mask, next_cluster = (1 << n) - 1, 0
    while mask:
        low = mask & -mask
        block = pick[mask]
        if block == 0:
            mask ^= low
            continue
        members = [i for i in range(n) if block >> i & 1]
        for i, lab in zip(members, best_labels[block], strict=True):
            label[nodes[i]] = lab
            cluster[nodes[i]] = next_cluster
        next_cluster += 1
        mask ^= block
    return label, cluster, float(f[-1])
