"""The solvers' internal form of an SPLP: (candidate, label) *states* and sparse pair costs.

A :class:`~deepercut.types.Problem` stores dense ``[N, P]`` unaries and ``[E, P, P]`` join
costs, nearly all of them ``+inf`` when a candidate admits one part. The solvers work on the
finite part only:

- a *node* is a candidate that can be kept (or, in incremental solving, a fixed cluster of an
  earlier stage: a *super-node*, which must stay kept);
- a *state* is a (node, label) pair with a finite unary; states are stored grouped by node;
- a *pair* is a node pair ``u < v`` whose join cost is not identically zero, with one *entry*
  per state pair (``a`` of ``u``, ``b`` of ``v``) holding the join cost (``+inf`` = forbidden).

A pair whose entries are all zero behaves exactly like an unlisted pair (joining it is free),
so it is dropped. A pair whose entries are all ``+inf`` is *forbidden*: its ends may never share
a cluster. The clustering is a partition of the kept nodes; only pairs carry cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from deepercut.types import Problem


@dataclass
class Instance:
    """An SPLP over states (see the module docstring). Treated as immutable: derived arrays
    are cached.

    Attributes:
        node_ref: int64 [n] original candidate index of each node; super-nodes of incremental
            solving use ``−1 − k`` for earlier cluster ``k``.
        fixed: bool [n] nodes that must be kept (super-nodes).
        state_start: int64 [n + 1] states of node ``d`` are ``state_start[d]:state_start[d+1]``.
        state_label: int64 [S] label (part index) of each state; −1 for super-nodes.
        state_cost: float64 [S] unary cost (finite).
        pair_u, pair_v: int64 [Q] node pairs, ``u < v``, unique (in no particular order).
        entry_pair: int64 [R] pair of each entry, sorted.
        entry_a, entry_b: int64 [R] state of ``pair_u`` and of ``pair_v``.
        entry_cost: float64 [R] join cost, finite or ``+inf``.
    """

    node_ref: np.ndarray
    fixed: np.ndarray
    state_start: np.ndarray
    state_label: np.ndarray
    state_cost: np.ndarray
    pair_u: np.ndarray
    pair_v: np.ndarray
    entry_pair: np.ndarray
    entry_a: np.ndarray
    entry_b: np.ndarray
    entry_cost: np.ndarray

    @property
    def num_nodes(self) -> int:
        return len(self.node_ref)

    @property
    def num_states(self) -> int:
        return len(self.state_label)

    @property
    def num_pairs(self) -> int:
        return len(self.pair_u)

    @cached_property
    def state_node(self) -> np.ndarray:
        """int64 [S] node of each state."""
        return np.repeat(np.arange(self.num_nodes), np.diff(self.state_start))

    @cached_property
    def entry_start(self) -> np.ndarray:
        """int64 [Q + 1] entries of pair ``q`` are ``entry_start[q]:entry_start[q+1]``."""
        counts = np.bincount(self.entry_pair, minlength=self.num_pairs)
        return np.concatenate([[0], np.cumsum(counts)])

    @cached_property
    def dense_costs(self) -> tuple[np.ndarray, np.ndarray]:
        """Symmetric float64 [S, S] matrices: finite join cost between two states (0 for free
        pairs, forbidden ones and states of one node), and 1 where the join is forbidden."""
        s = self.num_states
        w = np.zeros((s, s))
        f = np.zeros((s, s))
        finite = np.isfinite(self.entry_cost)
        a, b, c = self.entry_a, self.entry_b, self.entry_cost
        w[a[finite], b[finite]] = c[finite]
        w[b[finite], a[finite]] = c[finite]
        f[a[~finite], b[~finite]] = 1.0
        f[b[~finite], a[~finite]] = 1.0
        return w, f

    @cached_property
    def pair_min(self) -> np.ndarray:
        """float64 [Q] cheapest entry of each pair (``+inf`` for forbidden pairs)."""
        out = np.full(self.num_pairs, np.inf)
        np.minimum.at(out, self.entry_pair, self.entry_cost)
        return out

    def state_pair_min(self) -> np.ndarray:
        """float64 [S] per state, the sum over pairs of ``min(0, cheapest entry with that state)``.

        ``state_cost + state_pair_min()`` is a lower bound on what keeping a node in that state
        can contribute to any solution (its unary plus its share of joins).
        """
        out = np.zeros(self.num_states)
        neg = self.entry_cost < 0
        if not neg.any():
            return out
        pair, cost = self.entry_pair[neg], self.entry_cost[neg]
        if len(self.entry_pair) == self.num_pairs:  # one entry per pair: no grouping needed
            np.add.at(out, self.entry_a[neg], cost)
            np.add.at(out, self.entry_b[neg], cost)
            return out
        # Cheapest negative entry per (pair, state), counted once per pair and state.
        for state in (self.entry_a[neg], self.entry_b[neg]):
            key = pair * self.num_states + state
            uniq, inverse = np.unique(key, return_inverse=True)
            best = np.zeros(len(uniq))
            np.minimum.at(best, inverse, cost)
            np.add.at(out, uniq % self.num_states, best)
        return out

    def trivial_bound(self) -> float:
        """Lower bound: every node at its cheapest (or suppressed unless fixed), every pair at
        its cheapest negative entry."""
        return float(self.trivial_bound_groups(np.zeros(self.num_nodes, np.int64), 1)[0])

    def subset(self, keep_state: np.ndarray, keep_pair: np.ndarray | None = None) -> Instance:
        """The instance restricted to some states (nodes without a state left disappear) and,
        optionally, some pairs (``keep_pair`` [Q]; a dropped pair costs nothing to join).

        Pairs lose the entries of dropped states; pairs left with only zero entries are dropped.
        """
        keep_state = np.asarray(keep_state, bool)
        state_node = self.state_node
        new_state = np.cumsum(keep_state) - 1
        counts = np.bincount(state_node[keep_state], minlength=self.num_nodes)
        keep_node = counts > 0
        new_node = np.cumsum(keep_node) - 1

        entry = keep_state[self.entry_a] & keep_state[self.entry_b]
        entry &= self.entry_cost != 0
        if keep_pair is not None:
            entry &= keep_pair[self.entry_pair]
        pair_alive = np.zeros(self.num_pairs, bool)
        pair_alive[self.entry_pair[entry]] = True
        # A pair keeps all its surviving entries (zeros included) once any is non-zero.
        entry = keep_state[self.entry_a] & keep_state[self.entry_b] & pair_alive[self.entry_pair]
        new_pair = np.cumsum(pair_alive) - 1
        return Instance(
            node_ref=self.node_ref[keep_node],
            fixed=self.fixed[keep_node],
            state_start=np.concatenate([[0], np.cumsum(counts[keep_node])]),
            state_label=self.state_label[keep_state],
            state_cost=self.state_cost[keep_state],
            pair_u=new_node[self.pair_u[pair_alive]],
            pair_v=new_node[self.pair_v[pair_alive]],
            entry_pair=new_pair[self.entry_pair[entry]],
            entry_a=new_state[self.entry_a[entry]],
            entry_b=new_state[self.entry_b[entry]],
            entry_cost=self.entry_cost[entry],
        )

    def reduce(self) -> Instance:
        """Drop states that provably never beat suppression (exact preprocessing).

        A state whose unary plus all its possible negative joins is ``≥ 0`` contributes ``≥ 0``
        to any solution that uses it; suppressing the node instead changes nothing else (a
        partition minus one node is still a partition, and no join becomes forbidden), so some
        optimal solution avoids that state. Dropping states lowers others' bounds, so repeat
        to a fixed point. States of fixed nodes are never dropped.
        """
        inst = self
        while inst.num_states:
            useless = inst.state_cost + inst.state_pair_min() >= 0
            useless &= ~inst.fixed[inst.state_node]
            if not useless.any():
                break
            inst = inst.subset(~useless)
        return inst

    def components(self) -> tuple[int, np.ndarray]:
        """Connected components of the graph of *attractive* pairs (some entry < 0).

        Splitting any cluster along these components only removes joins of non-negative cost,
        so some optimal solution has every cluster inside one component: components are
        independent subproblems.
        """
        attractive = self.pair_min < 0
        n = self.num_nodes
        adj = np.zeros((n, n), bool)
        adj[self.pair_u[attractive], self.pair_v[attractive]] = True
        adj[self.pair_v[attractive], self.pair_u[attractive]] = True
        return first_seen_ranks(dense_components(adj))

    def evaluate(self, state: np.ndarray, cluster: np.ndarray) -> float:
        """Objective of an assignment: ``state`` [n] chosen state per node (−1 = suppressed),
        ``cluster`` [n] cluster id per node. ``inf`` if it joins a forbidden entry."""
        return float(self.evaluate_groups(state, cluster, np.zeros(self.num_nodes, np.int64), 1)[0])

    def evaluate_groups(
        self, state: np.ndarray, cluster: np.ndarray, group: np.ndarray, num_groups: int
    ) -> np.ndarray:
        """:meth:`evaluate` split by node group (pairs counted in their first node's group)."""
        kept = np.flatnonzero(state >= 0)
        total = np.zeros(num_groups)
        total += np.bincount(group[kept], self.state_cost[state[kept]], minlength=num_groups)
        chosen = np.zeros(self.num_states, bool)
        chosen[state[kept]] = True
        u, v = self.pair_u[self.entry_pair], self.pair_v[self.entry_pair]
        active = chosen[self.entry_a] & chosen[self.entry_b] & (cluster[u] == cluster[v])
        cost = self.entry_cost[active]
        # bincount can't add inf: count forbidden joins separately.
        finite = np.isfinite(cost)
        g = group[u[active]]
        total += np.bincount(g[finite], cost[finite], minlength=num_groups)
        total[np.bincount(g[~finite], minlength=num_groups) > 0] = np.inf
        return total

    def trivial_bound_groups(self, group: np.ndarray, num_groups: int) -> np.ndarray:
        """:meth:`trivial_bound` split by node group (pairs counted in their first node's
        group)."""
        if self.num_nodes == 0:
            return np.zeros(num_groups)
        best = np.minimum.reduceat(self.state_cost, self.state_start[:-1])
        best = np.where(self.fixed, best, np.minimum(best, 0.0))
        pair = np.minimum(self.pair_min, 0.0)
        return np.bincount(group, best, minlength=num_groups) + np.bincount(
            group[self.pair_u], pair, minlength=num_groups
        )


def first_seen_ranks(ids: np.ndarray) -> tuple[int, np.ndarray]:
    """Renumber non-negative integer ids 0..M−1 in order of first appearance.

    Returns ``(M, ranks)``. Array lookups instead of ``np.unique`` (which sorts): these are
    short arrays of small ids, where the sort's overhead dominates.
    """
    if len(ids) == 0:
        return 0, np.zeros(0, np.int64)
    if ids.max() > 8 * len(ids):  # sparse ids: sorting is cheaper than a lookup table
        _, first_index, inverse = np.unique(ids, return_index=True, return_inverse=True)
        return len(first_index), np.argsort(np.argsort(first_index))[inverse]
    first = np.full(int(ids.max()) + 1, len(ids))
    np.minimum.at(first, ids, np.arange(len(ids)))
    present = np.flatnonzero(first < len(ids))
    rank = np.empty(len(first), np.int64)
    rank[present[np.argsort(first[present])]] = np.arange(len(present))
    return len(present), rank[ids]


def dense_components(adj: np.ndarray) -> np.ndarray:
    """Connected components of a small graph given as a dense symmetric boolean matrix: each
    node gets the smallest node index of its component.

    Min-label propagation with pointer jumping: a few matrix passes for cluster-like graphs,
    much cheaper than building a sparse matrix for scipy at these sizes.
    """
    n = len(adj)
    label = np.arange(n)
    while True:
        reach = np.where(adj, label[None, :], n).min(1, initial=n)
        new = np.minimum(label, reach)
        new = new[new]
        if (new == label).all():
            return label
        label = new


def instance_from_problem(problem: Problem) -> Instance:
    """Validate a problem and convert it to an :class:`Instance` (no reduction).

    Raises:
        ValueError: NaN or ``−inf`` costs, or a self-loop edge.
    """
    unary = np.asarray(problem.unary, np.float64)
    if np.isnan(unary).any() or np.isneginf(unary).any():
        raise ValueError("unary costs must be finite or +inf (found NaN or -inf)")
    edges = np.asarray(problem.edges, np.int64).reshape(-1, 2)
    if (edges[:, 0] == edges[:, 1]).any():
        raise ValueError("edges must join two different candidates (found a self-loop)")
    node_ref, state_start, state_label, state_cost = _states(unary)
    n = len(node_ref)
    new_node = np.full(len(unary), -1)
    new_node[node_ref] = np.arange(n)
    e_idx, swap, u, v = _oriented_edges(edges, new_node)
    rep, a, b = _entry_states(u, v, state_start, n)
    la, lb = state_label[a], state_label[b]
    # pair_cost is indexed (label of edges[:, 0], label of edges[:, 1]): undo the swap.
    sw = swap[rep]
    cost = problem.pair_cost[e_idx[rep], np.where(sw, lb, la), np.where(sw, la, lb)]
    cost = np.asarray(cost, np.float64)
    if np.isnan(cost).any() or np.isneginf(cost).any():
        raise ValueError("pair costs must be finite or +inf (found NaN or -inf)")
    pair_key, entry_pair, a, b, cost = _merge_pairs(u * n + v, rep, a, b, cost, len(state_label))
    inst = Instance(
        node_ref=node_ref.astype(np.int64),
        fixed=np.zeros(n, bool),
        state_start=state_start,
        state_label=state_label.astype(np.int64),
        state_cost=state_cost,
        pair_u=(pair_key // max(n, 1)).astype(np.int64),
        pair_v=(pair_key % max(n, 1)).astype(np.int64),
        entry_pair=entry_pair.astype(np.int64),
        entry_a=a.astype(np.int64),
        entry_b=b.astype(np.int64),
        entry_cost=cost,
    )
    # Drop all-zero pairs (equivalent to unlisted ones).
    nonzero = np.zeros(len(pair_key), bool)
    nonzero[entry_pair[cost != 0]] = True
    return inst if nonzero.all() else inst.subset(np.ones(inst.num_states, bool))


def _states(unary: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nodes (candidates with a finite unary) and their states: ``(node_ref, state_start,
    state_label, state_cost)``."""
    allowed = np.isfinite(unary)
    node_has = allowed.any(1)
    node_ref = np.flatnonzero(node_has)
    state_node, state_label = np.nonzero(allowed[node_has])
    state_cost = unary[node_ref[state_node], state_label]
    per_node = allowed[node_has].sum(1)
    state_start = np.concatenate([[0], np.cumsum(per_node)]).astype(np.int64)
    return node_ref, state_start, state_label, state_cost


def _oriented_edges(
    edges: np.ndarray, new_node: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Edges between nodes (those touching a candidate that can't be kept dropped), oriented
    ``u < v``: ``(edge index, swapped, u, v)``."""
    eu, ev = new_node[edges[:, 0]], new_node[edges[:, 1]]
    e_idx = np.flatnonzero((eu >= 0) & (ev >= 0))
    swap = eu[e_idx] > ev[e_idx]
    u = np.where(swap, ev[e_idx], eu[e_idx])
    v = np.where(swap, eu[e_idx], ev[e_idx])
    return e_idx, swap, u, v


def _entry_states(
    u: np.ndarray, v: np.ndarray, state_start: np.ndarray, num_nodes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One entry per (edge, state of u, state of v): ``(edge, state a, state b)``."""
    if state_start[-1] == num_nodes:  # one label per candidate: states are nodes
        return np.arange(len(u)), u, v
    per_node = np.diff(state_start)
    nu, nv = per_node[u], per_node[v]
    count = nu * nv
    rep = np.repeat(np.arange(len(u)), count)
    within = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    a = state_start[u][rep] + within // nv[rep]
    b = state_start[v][rep] + within % nv[rep]
    return rep, a, b


def _merge_pairs(
    key: np.ndarray,
    rep: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    cost: np.ndarray,
    num_states: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pairs from edge keys ``u·n + v``: duplicate edges merged (their costs add up, as in
    ``Problem.objective``), entries sorted by pair. Returns ``(pair_key, entry_pair, a, b,
    cost)``."""
    if (key[1:] > key[:-1]).all():  # unique and sorted (e.g. upper-triangle order): no work
        return key, rep, a, b, cost
    pair_key, pair_of_edge = np.unique(key, return_inverse=True)
    entry_pair = pair_of_edge[rep]
    if len(pair_key) < len(key):
        ekey = (entry_pair * num_states + a) * num_states + b
        uniq, inverse = np.unique(ekey, return_inverse=True)
        summed = np.zeros(len(uniq))
        np.add.at(summed, inverse, cost)
        first = np.zeros(len(uniq), np.int64)
        first[inverse[::-1]] = np.arange(len(ekey))[::-1]
        entry_pair, a, b, cost = entry_pair[first], a[first], b[first], summed
    order = np.argsort(entry_pair, kind="stable")
    return pair_key, entry_pair[order], a[order], b[order], cost[order]
