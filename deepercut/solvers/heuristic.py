"""Primal heuristic: greedy additive edge contraction with labels, then local search.

The search runs on dense tables, compiled with numba (a frame's instance has ~100 nodes, so
per-call numpy overhead, not arithmetic, would dominate otherwise):

- ``W[s, t]`` finite join cost between states ``s`` and ``t`` (0 for free pairs and for two
  states of one node), ``F[s, t] = 1`` where the join is forbidden;
- ``G[C, s] = Σ_{d ∈ C} W[state(d), s]`` and ``H[C, s]`` (the same with ``F``): what state ``s``
  would pay, and how many forbidden joins it would make, in cluster ``C``.

*Contraction* (GAEC) starts from singletons, each node in its cheapest state, and repeatedly
merges the cluster pair with the most negative total join cost that is not forbidden. *Local
search* then alternates passes of node moves (each node, in turn, to whichever is cheapest:
another cluster, a new singleton, suppression, back from suppression, or a relabel in place)
with a contraction of the clusters, until neither improves. Every accepted step lowers the
objective, so the search ends.
"""

from __future__ import annotations

import numpy as np
from numba import boolean, float64, int64, njit, types

from deepercut.solvers.instance import Instance, first_seen_ranks

#: Improvements below this are treated as ties (float noise of incremental sums).
_EPS = 1e-9

_MATRIX, _COSTS, _INDEX, _MASK = float64[:, ::1], float64[::1], int64[::1], boolean[::1]
#: Explicit signatures compile (or load from numba's on-disk cache) at import, so the first
#: solve of a process does not spend its time limit compiling.
_SIGNATURES = {
    "_row_best": types.Tuple((float64, int64))(_MATRIX, _MASK, int64),
    "_gaec": _INDEX(_MATRIX),
    "_join_clusters": boolean(_MATRIX, _MATRIX, _INDEX, _INDEX, _MATRIX, _MATRIX, _INDEX),
    "_move_nodes": boolean(
        _MATRIX, _MATRIX, _COSTS, _INDEX, _MASK, _INDEX, _INDEX, _MATRIX, _MATRIX, _INDEX
    ),
    "_search": types.void(
        _MATRIX, _MATRIX, _COSTS, _INDEX, _MASK, _INDEX, _INDEX, boolean, int64
    ),
}


@njit(_SIGNATURES["_row_best"], cache=True)
def _row_best(join: np.ndarray, active: np.ndarray, row: int) -> tuple[float, int]:
    """The cheapest active column of ``join[row]`` (first one on ties) and its value."""
    best, col = np.inf, -1
    for t in range(join.shape[0]):
        if active[t] and t != row and join[row, t] < best:
            best, col = join[row, t], t
    return best, col


@njit(_SIGNATURES["_gaec"], cache=True)
def _gaec(join: np.ndarray) -> np.ndarray:
    """Greedy additive edge contraction of a symmetric cost matrix (``+inf`` = never join;
    modified in place). Returns the root each row was merged into."""
    n = join.shape[0]
    active = np.ones(n, np.bool_)
    parent = np.arange(n)
    best_val = np.empty(n)
    best_col = np.empty(n, np.int64)
    for r in range(n):
        best_val[r], best_col[r] = _row_best(join, active, r)
    while True:
        keep, value = -1, -_EPS
        for r in range(n):
            if active[r] and best_val[r] < value:
                keep, value = r, best_val[r]
        if keep < 0:
            break
        gone = best_col[keep]
        active[gone] = False
        parent[gone] = keep
        for t in range(n):
            if active[t] and t != keep:
                merged = join[keep, t] + join[gone, t]
                join[keep, t] = merged
                join[t, keep] = merged
        for t in range(n):
            if not active[t] or t == keep:
                continue
            if best_col[t] == keep or best_col[t] == gone:  # its best changed or vanished
                best_val[t], best_col[t] = _row_best(join, active, t)
            elif join[t, keep] < best_val[t]:
                best_val[t], best_col[t] = join[t, keep], keep
        best_val[keep], best_col[keep] = _row_best(join, active, keep)
    for r in range(n):  # resolve merge chains to their roots
        root = r
        while parent[root] != root:
            root = parent[root]
        parent[r] = root
    return parent


@njit(_SIGNATURES["_join_clusters"], cache=True)
def _join_clusters(
    w: np.ndarray,
    f: np.ndarray,
    state: np.ndarray,
    cluster: np.ndarray,
    g: np.ndarray,
    h: np.ndarray,
    size: np.ndarray,
) -> bool:
    """Contract the current clusters (GAEC on their join costs); False if nothing merged."""
    slots = np.flatnonzero(size > 0)
    m = len(slots)
    if m < 2:
        return False
    index = np.full(len(size), -1)
    index[slots] = np.arange(m)
    # join[A, B] = Σ_{d ∈ B} G[A, state(d)], +inf where any join inside would be forbidden.
    join = np.zeros((m, m))
    forbidden = np.zeros((m, m))
    for d in range(len(state)):
        if state[d] < 0:
            continue
        b = index[cluster[d]]
        for a in range(m):
            join[a, b] += g[slots[a], state[d]]
            forbidden[a, b] += h[slots[a], state[d]]
    for a in range(m):
        join[a, a] = np.inf
        for b in range(m):
            if forbidden[a, b] > 0.5:
                join[a, b] = np.inf
    root = _gaec(join)
    merged = False
    for a in range(m):
        if root[a] != a:
            merged = True
            src, dst = slots[a], slots[root[a]]
            g[dst] += g[src]
            h[dst] += h[src]
            g[src] = 0.0
            h[src] = 0.0
            size[dst] += size[src]
            size[src] = 0
    if merged:
        for d in range(len(state)):
            if state[d] >= 0:
                cluster[d] = slots[root[index[cluster[d]]]]
    return merged


@njit(_SIGNATURES["_move_nodes"], cache=True)
def _move_nodes(
    w: np.ndarray,
    f: np.ndarray,
    unary: np.ndarray,
    state_start: np.ndarray,
    fixed: np.ndarray,
    state: np.ndarray,
    cluster: np.ndarray,
    g: np.ndarray,
    h: np.ndarray,
    size: np.ndarray,
) -> bool:
    """One pass of best-improvement moves, node by node; False if no node moved."""
    moved = False
    num_slots = len(size)
    for d in range(len(state)):
        old, src = state[d], cluster[d]
        if old < 0:
            current = 0.0
        elif h[src, old] > 0.5:  # in a forbidden join (a start being repaired): must move
            current = np.inf
        else:
            current = unary[old] + g[src, old]
        best = np.inf if fixed[d] else 0.0  # 0: suppress
        best_state, best_slot = -1, -1
        empty_seen = False
        for c in range(num_slots):
            if size[c] == 0:
                if empty_seen:  # one empty slot stands for "a new singleton"
                    continue
                empty_seen = True
            for s in range(state_start[d], state_start[d + 1]):
                if h[c, s] < 0.5:
                    value = unary[s] + g[c, s]
                    if value < best:
                        best, best_state, best_slot = value, s, c
        if not best < current - _EPS:
            continue
        if old >= 0:
            g[src] -= w[old]
            h[src] -= f[old]
            size[src] -= 1
        if best_state >= 0:
            g[best_slot] += w[best_state]
            h[best_slot] += f[best_state]
            size[best_slot] += 1
        state[d], cluster[d] = best_state, best_slot
        moved = True
    return moved


@njit(_SIGNATURES["_search"], cache=True)
def _search(
    w: np.ndarray,
    f: np.ndarray,
    unary: np.ndarray,
    state_start: np.ndarray,
    fixed: np.ndarray,
    state: np.ndarray,
    cluster: np.ndarray,
    contract_first: bool,
    max_rounds: int,
) -> None:
    """Contraction (optional) and local search on ``state``/``cluster`` (slots 0..n, −1 when
    suppressed), in place."""
    n = len(state)
    g = np.zeros((n + 1, len(unary)))  # n + 1 slots: an empty one always exists
    h = np.zeros((n + 1, len(unary)))
    size = np.zeros(n + 1, np.int64)
    for d in range(n):
        if state[d] >= 0:
            g[cluster[d]] += w[state[d]]
            h[cluster[d]] += f[state[d]]
            size[cluster[d]] += 1
    if contract_first:
        _join_clusters(w, f, state, cluster, g, h, size)
    for _ in range(max_rounds):
        moved = _move_nodes(w, f, unary, state_start, fixed, state, cluster, g, h, size)
        joined = _join_clusters(w, f, state, cluster, g, h, size)
        if not (moved or joined):
            break


def _compact(state: np.ndarray, cluster: np.ndarray) -> np.ndarray:
    """Cluster ids renumbered 0..M−1 by first appearance; −1 for suppressed nodes."""
    out = np.full(len(state), -1, np.int64)
    kept = state >= 0
    out[kept] = first_seen_ranks(cluster[kept])[1]
    return out


def heuristic_assignment(
    inst: Instance,
    state: np.ndarray | None = None,
    cluster: np.ndarray | None = None,
    *,
    max_rounds: int = 1000,
) -> tuple[np.ndarray, np.ndarray]:
    """A good feasible assignment of ``inst``.

    Without a start, contracts from singletons (each node in its cheapest state) first; with
    one (``state`` [n] state index or −1, ``cluster`` [n]), only improves it by local search.

    Returns:
        ``(state, cluster)``: chosen state per node (−1 = suppressed) and cluster 0..M−1
        (−1 when suppressed). Feasible: no forbidden join inside a cluster.
    """
    n = inst.num_nodes
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if state is None:
        if inst.num_states == n:  # one label per node
            state = np.arange(n)
        else:
            cheapest = np.minimum.reduceat(inst.state_cost, inst.state_start[:-1])
            hit = inst.state_cost <= np.repeat(cheapest, np.diff(inst.state_start))
            idx = np.where(hit, np.arange(inst.num_states), inst.num_states)
            state = np.minimum.reduceat(idx, inst.state_start[:-1])
        cluster = np.arange(n)
        contract_first = True
    else:
        cluster = np.where(state >= 0, _compact(state, cluster), -1)
        contract_first = False
    # Own int64 copies: the search works on them in place.
    state = np.array(state, np.int64)
    cluster = np.array(cluster, np.int64)
    w, f = (np.ascontiguousarray(a, np.float64) for a in inst.dense_costs)
    _search(
        w,
        f,
        np.ascontiguousarray(inst.state_cost, np.float64),
        np.ascontiguousarray(inst.state_start, np.int64),
        np.ascontiguousarray(inst.fixed, np.bool_),
        state,
        cluster,
        contract_first,
        max_rounds,
    )
    return state, _compact(state, cluster)
