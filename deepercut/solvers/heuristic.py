"""Primal heuristic: greedy additive edge contraction with labels, then local search.

Everything runs on dense state×cluster arrays so that each step is a handful of numpy calls
whatever the number of candidates:

- ``W[s, t]`` finite join cost between states ``s`` and ``t`` (0 for free pairs and for two
  states of one node), ``F[s, t] = 1`` where the join is forbidden;
- ``G[C, s] = Σ_{d ∈ C} W[state(d), s]`` and ``H[C, s]`` (the same with ``F``): what state ``s``
  would pay, and how many forbidden joins it would make, in cluster ``C``.

*Contraction* (GAEC) starts from singletons, each node in its cheapest state, and repeatedly
merges the cluster pairs whose total join cost is negative and not forbidden — all mutually
best pairs at once, so a round is a few matrix operations instead of one merge. *Local search*
then alternates rounds of node moves (to another cluster, to a new singleton, to suppression,
back from suppression, or a relabel in place — whichever is cheapest for the node) with
cluster joins, until neither improves. Moves of one round touch disjoint clusters, so their
gains add up exactly.
"""

from __future__ import annotations

import numpy as np

from deepercut.solvers.instance import Instance, first_seen_ranks

#: Improvements below this are treated as ties (float noise of incremental sums).
_EPS = 1e-9


class _State:
    """Dense cost tables and the current assignment of one instance."""

    def __init__(self, inst: Instance, state: np.ndarray, cluster: np.ndarray) -> None:
        n, s = inst.num_nodes, inst.num_states
        self.inst = inst
        self.unary = inst.state_cost
        self.single = s == n  # one state per node: node and state indices coincide
        self.state_node = inst.state_node
        self.state_start = inst.state_start
        self.fixed = inst.fixed
        self.w, self.f = inst.dense_costs
        self.num_states = s
        self.state = state.copy()
        # Cluster slots: n + 1 so that an empty slot (a new singleton) always exists.
        self.num_slots = n + 1
        self.cluster = cluster.copy()
        self.rebuild()

    def rebuild(self) -> None:
        """Recompute ``G``/``H`` from the assignment."""
        kept = np.flatnonzero(self.state >= 0)
        kept = kept[np.argsort(self.cluster[kept], kind="stable")]
        slots = self.cluster[kept]
        self.g = np.zeros((self.num_slots, self.num_states))
        self.h = np.zeros((self.num_slots, self.num_states))
        if len(kept):
            starts = np.flatnonzero(np.r_[True, slots[1:] != slots[:-1]])
            st = self.state[kept]
            self.g[slots[starts]] = np.add.reduceat(self.w[st], starts)
            self.h[slots[starts]] = np.add.reduceat(self.f[st], starts)

    def node_moves(self) -> bool:
        """One round of improving node moves on disjoint clusters; False if none improves."""
        kept = self.state >= 0
        num_nodes = len(self.state)
        occupied = np.zeros(self.num_slots, bool)
        occupied[self.cluster[kept]] = True
        # Occupied slots plus one empty one (the "new singleton" option).
        rows = np.flatnonzero(occupied)
        empty = int(np.argmin(occupied))
        rows = np.append(rows, empty)
        current = np.zeros(num_nodes)
        st, cl = self.state[kept], self.cluster[kept]
        # A node in a forbidden join (only in a start being repaired) must move.
        conflict = np.where(self.h[cl, st] > 0.5, np.inf, 0.0)
        current[kept] = self.unary[st] + self.g[cl, st] + conflict
        value = self.unary[None, :] + self.g[rows]
        value[self.h[rows] > 0.5] = np.inf
        best_row = value.argmin(0)
        best_value = value[best_row, np.arange(value.shape[1])]
        best_slot = rows[best_row]
        if self.single:
            node_state = np.arange(num_nodes)
            node_value = best_value
        else:
            starts = self.state_start[:-1]
            node_value = np.minimum.reduceat(best_value, starts)
            hit = best_value <= np.repeat(node_value, np.diff(self.state_start))
            node_state = np.minimum.reduceat(
                np.where(hit, np.arange(len(best_value)), len(best_value)), starts
            )
        suppress = ~self.fixed & (node_value > 0)
        delta = np.where(suppress, 0.0, node_value) - current
        improving = np.flatnonzero(delta < -_EPS)
        if len(improving) == 0:
            return False
        improving = improving[np.argsort(delta[improving], kind="stable")]

        free_slots = np.flatnonzero(~occupied).tolist()
        touched: set[int] = set()
        moves = []
        for d in improving.tolist():
            src = int(self.cluster[d]) if kept[d] else -1
            if suppress[d]:
                dst, new_state = -1, -1
            else:
                new_state = int(node_state[d])
                dst = int(best_slot[new_state])
                if dst == empty:
                    dst = free_slots.pop()
            if src in touched or dst in touched:
                continue
            if src >= 0:
                touched.add(src)
            if dst >= 0:
                touched.add(dst)
            moves.append((d, src, dst, new_state))
        for d, src, dst, new_state in moves:
            if src >= 0:
                old = self.state[d]
                self.g[src] -= self.w[old]
                self.h[src] -= self.f[old]
            if dst >= 0:
                self.g[dst] += self.w[new_state]
                self.h[dst] += self.f[new_state]
            self.state[d] = new_state
            self.cluster[d] = dst
        return True

    def joins(self) -> bool:
        """Merge every mutually best cluster pair with negative, non-forbidden join cost."""
        kept = np.flatnonzero(self.state >= 0)
        if len(kept) < 2:
            return False
        occupied = np.zeros(self.num_slots, bool)
        occupied[self.cluster[kept]] = True
        slots = np.flatnonzero(occupied)
        if len(slots) < 2:
            return False
        # join[C, C'] = Σ_{d ∈ C'} G[C, state(d)]: columns of G summed per cluster (sorted
        # reduceat, not a one-hot matmul: a multi-threaded BLAS is slow at these sizes).
        kept = kept[np.argsort(self.cluster[kept], kind="stable")]
        starts = np.flatnonzero(np.r_[True, np.diff(self.cluster[kept]) != 0])
        st = self.state[kept]
        join = np.add.reduceat(self.g[slots][:, st], starts, axis=1)
        join[np.add.reduceat(self.h[slots][:, st], starts, axis=1) > 0.5] = np.inf
        np.fill_diagonal(join, np.inf)
        keep, gone = _mutual_best(join)
        if len(keep) == 0:
            return False
        keep, gone = slots[keep], slots[gone]
        self.g[keep] += self.g[gone]
        self.h[keep] += self.h[gone]
        self.g[gone] = 0.0
        self.h[gone] = 0.0
        remap = np.arange(self.num_slots)
        remap[gone] = keep
        self.cluster[kept] = remap[self.cluster[kept]]
        return True


def _mutual_best(join: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint cluster pairs (rows ``keep`` < ``gone``) that are each other's cheapest
    negative join; the globally cheapest pair is always among them. (Accepting more pairs
    per round, e.g. a greedy matching of all proposals, costs more quality than it saves.)"""
    rows = np.arange(len(join))
    best = join.argmin(1)
    mutual = (join[rows, best] < -_EPS) & (best[best] == rows) & (rows < best)
    return rows[mutual], best[mutual]


def _contract(inst: Instance, state: np.ndarray) -> np.ndarray:
    """Greedy additive edge contraction of all nodes in fixed states; returns cluster ids.

    Keeps the cluster×cluster join matrix (``+inf`` where a join is forbidden) and merges all
    mutually best negative pairs per round by adding rows and columns.
    """
    n = inst.num_nodes
    join = np.zeros((n, n))
    finite = np.isfinite(inst.entry_cost)
    chosen = np.zeros(inst.num_states, bool)
    chosen[state] = True
    use = chosen[inst.entry_a] & chosen[inst.entry_b]
    u, v = inst.pair_u[inst.entry_pair[use]], inst.pair_v[inst.entry_pair[use]]
    cost = np.where(finite[use], inst.entry_cost[use], np.inf)
    join[u, v] = cost
    join[v, u] = cost
    np.fill_diagonal(join, np.inf)
    parent = np.arange(n)
    while True:
        keep, gone = _mutual_best(join)
        if len(keep) == 0:
            break
        join[keep] += join[gone]
        join[:, keep] += join[:, gone]
        join[gone] = np.inf
        join[:, gone] = np.inf
        join[keep, keep] = np.inf
        parent[gone] = keep
    while True:  # resolve merge chains to their roots
        grand = parent[parent]
        if (grand == parent).all():
            return parent
        parent = grand


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
        search = _State(inst, state, _contract(inst, state))
    else:
        cluster = np.where(state >= 0, _compact(state, cluster), -1)
        search = _State(inst, state, cluster)
    for _ in range(max_rounds):
        moved = search.node_moves()
        joined = search.joins()
        if not (moved or joined):
            break
    return search.state, _compact(search.state, search.cluster)
