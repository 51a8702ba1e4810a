"""Exact SPLP: an integer program solved by CP-SAT with lazy cycle cuts.

**Formulation** (a multicut with node suppression and labels on the graph of pairs):

- ``x_s ∈ {0,1}`` per state (candidate d takes label c); ``Σ_{s ∈ d} x_s ≤ 1`` (``= 1`` for
  fixed super-nodes).
- ``y_q ∈ {0,1}`` per non-forbidden pair ``q = (u, v)``: u and v are kept in the same cluster.
  Unlisted pairs get no variable: joining them is free, so a clustering is the set of
  connected components of joined pairs among kept nodes.
- Join costs: a *uniform* pair (every label combination costs ``w``; always so when both ends
  admit one label) pays ``w·y_q``. Otherwise ``z_{q,a,b}`` per finite state pair with
  ``y_q = Σ z``, ``Σ_b z_{q,a,b} ≤ x_a`` and ``Σ_a z_{q,a,b} ≤ x_b``, paying ``Σ cost·z``;
  ``+inf`` entries get no ``z`` — joined, the ends can't take those labels.
- Coupling ``y_q ≤ Σ_{s ∈ u} x_s`` (and for v) only where ``w < 0``: a non-negative ``y`` set on
  a suppressed node only costs more, and clusters are read off kept nodes only. Nodes with a
  state of negative unary are kept in every optimal solution (a singleton in that state beats
  suppression): their ``x`` are fixed (or exactly one) and need no coupling.
- Transitivity as cycle inequalities: for a pair ``(u, v)`` and a path ``P`` of pairs from u to
  v, ``Σ_{e ∈ P} y_e − y_uv ≤ |P| − 1``; for a *forbidden* pair the ``y_uv`` term is absent.
  Up front only the triangles closing two attractive pairs over a non-attractive or
  forbidden pair (the violations the optimiser is drawn to); the rest lazily: solve, take the
  components of joined pairs, and for every non-joined or forbidden pair inside one component
  add its triangles through that component (or a shortest joined path's cycle), re-solve with
  the best feasible solution as a hint.

The model is written as protobuf text in bulk (see :mod:`~deepercut.solvers.cpsat`); 0/1
inequalities that are clauses are written as clauses, and a node's couplings as one
implication. An instance may hold several independent components: each keeps its own best
solution, and one solved without violations is fixed so later rounds skip it.

CP-SAT skips its presolve and puts every constraint into its LP from the start, until
:data:`LAZY_POOL_MIN_CUTS` cuts were added lazily (then presolve and the lazy LP pool pay), and
is tuned to prove the hint (``prove_hint`` of :func:`~deepercut.solvers.cpsat.solve_proto`).

Costs are scaled to integers (``scale``, default 1e6 per cost unit); "optimal" means optimal
for the rounded costs, within ``Σ |rounding|`` of the true optimum (reported bounds subtract
it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepercut.solvers import cpsat
from deepercut.solvers.heuristic import heuristic_assignment
from deepercut.solvers.instance import Instance, dense_components, first_seen_ranks

#: Integer units per cost unit in the CP-SAT objective.
DEFAULT_SCALE = 1e6
#: From this many lazily added cuts on, CP-SAT presolves and keeps LP constraints in a lazy
#: pool; before, it skips presolve and puts every constraint in the LP.
LAZY_POOL_MIN_CUTS = 500


@dataclass
class ExactResult:
    """Assignment of an instance: ``state`` [n] (−1 = suppressed), ``cluster`` [n] (ids < n
    within each attractive component, distinct across components)."""

    state: np.ndarray
    cluster: np.ndarray
    objective: float
    bound: float
    status: str  # optimal | time_limit
    stats: dict[str, Any] = field(default_factory=dict)


class SplpModel:
    """CP-SAT model of an :class:`Instance` (see the module docstring), built in bulk."""

    def __init__(
        self,
        inst: Instance,
        scale: float = DEFAULT_SCALE,
        hint: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Build the model; ``hint`` is a feasible ``(state, cluster)`` to start from."""
        self.inst = inst
        self.num_states = inst.num_states
        uniform, general, cmin = self._classify_pairs()
        self._layout_variables(general)
        self._set_objective(uniform, cmin, scale)
        # y variable by node pair, −1 for none (dense: instances are small).
        n = inst.num_nodes
        self.yvar_mat = np.full((n, n), -1, np.int64)
        self.yvar_mat[inst.pair_u, inst.pair_v] = self.y_var
        self.yvar_mat[inst.pair_v, inst.pair_u] = self.y_var
        # A node with a state of negative unary is kept in every optimal solution (were it
        # suppressed, adding it as a singleton in that state would lower the objective), as
        # super-nodes are: x is fixed (one label) or exactly one (several), and its y need no
        # coupling to x.
        start = inst.state_start
        self.kept = inst.fixed | (np.minimum.reduceat(inst.state_cost, start[:-1]) < 0)
        self.proto = cpsat.boolean_model(self.num_vars, self._fixed_vars())
        self.num_seeded = 0
        parts = [
            *self._label_constraints(),
            *self._coupling_constraints(uniform & self.attractive),
            *self._general_pair_constraints(general),
            self._seed_triangles(),
            cpsat.objective_text(np.arange(self.num_vars), self.coef),
        ]
        if hint is not None:
            parts.append(cpsat.hint_text(self.values(*hint)))
        if not self.proto.merge_text_format("".join(parts)):
            raise RuntimeError("internal error: CP-SAT rejected the generated model")
        self.num_cuts = 0

    def _classify_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sets ``forbidden`` and ``attractive`` per pair; returns ``(uniform, general, cmin)``:
        pairs whose finite entries all cost the same (one y), the others (y = Σ z), and each
        pair's cheapest finite entry."""
        inst = self.inst
        ep, ec = inst.entry_pair, inst.entry_cost
        finite = np.isfinite(ec)
        num_entries = np.bincount(ep, minlength=inst.num_pairs)
        num_finite = np.bincount(ep[finite], minlength=inst.num_pairs)
        cmin = np.full(inst.num_pairs, np.inf)
        cmax = np.full(inst.num_pairs, -np.inf)
        np.minimum.at(cmin, ep[finite], ec[finite])
        np.maximum.at(cmax, ep[finite], ec[finite])
        self.forbidden = num_finite == 0
        self.attractive = cmin < 0
        uniform = (num_finite == num_entries) & (cmin == cmax)
        return uniform, ~self.forbidden & ~uniform, cmin

    def _layout_variables(self, general: np.ndarray) -> None:
        """Variable layout: x (states) | y (non-forbidden pairs) | z (finite entries of
        general pairs); ``y_var`` [Q] and ``z_var`` [R] are −1 where there is none."""
        inst = self.inst
        ypairs = np.flatnonzero(~self.forbidden)
        self.y_var = np.full(inst.num_pairs, -1, np.int64)
        self.y_var[ypairs] = self.num_states + np.arange(len(ypairs))
        zent = np.flatnonzero(np.isfinite(inst.entry_cost) & general[inst.entry_pair])
        self.z_var = np.full(len(inst.entry_pair), -1, np.int64)
        self.z_var[zent] = self.num_states + len(ypairs) + np.arange(len(zent))
        self.num_vars = self.num_states + len(ypairs) + len(zent)

    def _set_objective(self, uniform: np.ndarray, cmin: np.ndarray, scale: float) -> None:
        """Integer-scaled objective ``coef`` and the rounding it costs (``Σ |error|``)."""
        cost = np.zeros(self.num_vars)
        cost[: self.num_states] = self.inst.state_cost
        uni = np.flatnonzero(uniform)
        cost[self.y_var[uni]] = cmin[uni]
        zent = np.flatnonzero(self.z_var >= 0)
        cost[self.z_var[zent]] = self.inst.entry_cost[zent]
        self.coef = np.rint(cost * scale).astype(np.int64)
        self.rounding = float(np.abs(self.coef / scale - cost).sum())

    def _label_constraints(self) -> list[str]:
        """At most one label per node (exactly one for nodes always kept)."""
        start = self.inst.state_start
        per_node = np.diff(start)
        return [
            cpsat.linear(range(start[d], start[d + 1]), [1] * per_node[d], int(self.kept[d]), 1)
            for d in np.flatnonzero(per_node > 1).tolist()
        ]

    def _coupling_constraints(self, coupled: np.ndarray) -> list[str]:
        """y ≤ kept on the ``coupled`` pairs (attractive uniform ones) at ends not always kept:
        one "x_d false ⇒ all its y false" per single-label node (fewer, shorter constraints
        than one clause per pair), a linear y ≤ Σ_s x_s per pair end that admits several
        labels."""
        inst = self.inst
        start = inst.state_start
        per_node = np.diff(start)
        coupled = np.flatnonzero(coupled)
        pairs = np.tile(coupled, 2)
        ends = np.concatenate([inst.pair_u[coupled], inst.pair_v[coupled]])
        loose = ~self.kept[ends]
        pairs, ends = pairs[loose], ends[loose]
        single = per_node[ends] == 1
        order = np.argsort(ends[single], kind="stable")
        node_of, y_of = ends[single][order], self.y_var[pairs[single][order]]
        cut = np.flatnonzero(np.diff(node_of)) + 1
        lows, highs = np.r_[0, cut].tolist(), np.r_[cut, len(node_of)].tolist()
        parts = [
            cpsat.implies_all_false(start[node_of[lo]], y_of[lo:hi])
            for lo, hi in zip(lows, highs, strict=True)
            if hi > lo
        ]
        for q, d in zip(pairs[~single].tolist(), ends[~single].tolist(), strict=True):
            states = range(start[d], start[d + 1])
            parts.append(cpsat.linear([self.y_var[q], *states], [1] + [-1] * per_node[d], -1, 0))
        return parts

    def _general_pair_constraints(self, general: np.ndarray) -> list[str]:
        """General pairs: y = Σ z, and z consistent with the labels of both ends."""
        inst = self.inst
        estart = inst.entry_start
        parts = []
        for q in np.flatnonzero(general).tolist():
            ents = np.arange(estart[q], estart[q + 1])
            ents = ents[self.z_var[ents] >= 0]
            zs = self.z_var[ents].tolist()
            parts.append(cpsat.linear([self.y_var[q], *zs], [1] + [-1] * len(zs), 0, 0))
            for side in (inst.entry_a, inst.entry_b):
                for s in np.unique(side[ents]).tolist():
                    mine = self.z_var[ents[side[ents] == s]].tolist()
                    parts.append(cpsat.linear([*mine, s], [1] * len(mine) + [-1], -1, 0))
        return parts

    def _fixed_vars(self) -> np.ndarray:
        """Lower bound of every variable: 1 for the state of a single-label node always kept."""
        lower = np.zeros(self.num_vars, np.int64)
        single_fixed = self.kept & (np.diff(self.inst.state_start) == 1)
        lower[self.inst.state_start[:-1][single_fixed]] = 1
        return lower

    def _seed_triangles(self) -> str:
        """Triangles ``y_uw + y_wv − y_uv ≤ 1`` for attractive (u,w), (w,v) over a
        non-attractive or forbidden (u,v): the violations the optimiser is drawn to."""
        inst = self.inst
        n = inst.num_nodes
        adj = np.zeros((n, n), bool)
        att = self.attractive
        adj[inst.pair_u[att], inst.pair_v[att]] = True
        adj[inst.pair_v[att], inst.pair_u[att]] = True
        closing = np.flatnonzero(~att)
        if len(closing) == 0:
            return ""
        u, v = inst.pair_u[closing], inst.pair_v[closing]
        k, w = np.nonzero(adj[u] & adj[v])
        self.num_seeded += len(k)
        if len(k) == 0:
            return ""
        yu, yv, yc = self.yvar_mat[u[k], w], self.yvar_mat[w, v[k]], self.y_var[closing[k]]
        forb = yc < 0
        text = cpsat.linear_block(np.stack([yu[forb], yv[forb]], 1), (1, 1), 0, 1)
        rows = np.stack([yu[~forb], yv[~forb], yc[~forb]], 1)
        return text + cpsat.linear_block(rows, (1, 1, -1), -1, 1)

    def values(self, state: np.ndarray, cluster: np.ndarray) -> np.ndarray:
        """Variable values of a feasible assignment (a complete hint)."""
        inst = self.inst
        out = np.zeros(self.num_vars, np.int64)
        kept = state >= 0
        out[state[kept]] = 1
        pu, pv = inst.pair_u, inst.pair_v
        joined = kept[pu] & kept[pv] & (cluster[pu] == cluster[pv])
        has_y = self.y_var >= 0
        out[self.y_var[has_y]] = joined[has_y]
        ents = np.flatnonzero(self.z_var >= 0)
        chosen = np.zeros(inst.num_states, bool)
        chosen[state[kept]] = True
        active = chosen[inst.entry_a[ents]] & chosen[inst.entry_b[ents]]
        out[self.z_var[ents]] = active & joined[inst.entry_pair[ents]]
        return out

    def decode(self, solution: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(state per node or −1, joined mask per pair among kept nodes)``."""
        inst = self.inst
        x = solution[: self.num_states] > 0
        node_has = np.add.reduceat(x.astype(np.int64), inst.state_start[:-1]) > 0
        first = np.minimum.reduceat(
            np.where(x, np.arange(self.num_states), self.num_states), inst.state_start[:-1]
        )
        state = np.where(node_has, first, -1)
        kept = state >= 0
        y = np.zeros(inst.num_pairs, bool)
        has_y = self.y_var >= 0
        y[has_y] = solution[self.y_var[has_y]] > 0
        joined = y & kept[inst.pair_u] & kept[inst.pair_v]
        return state, joined

    def separate(
        self, state: np.ndarray, joined: np.ndarray
    ) -> tuple[np.ndarray, list[str], np.ndarray]:
        """Clusters (components of joined pairs), the cycle cuts this assignment violates and
        the violated pairs (not joined, or forbidden, inside one component).

        For each pair inside one component that is not joined (or is forbidden), adds the
        triangles through every other node of that component (so the next round can't simply
        re-route), and where no joined triangle exists, the cycle of a shortest joined path.
        """
        inst = self.inst
        n = inst.num_nodes
        pu, pv = inst.pair_u, inst.pair_v
        adj = np.zeros((n, n), bool)
        adj[pu[joined], pv[joined]] = True
        adj[pv[joined], pu[joined]] = True
        comp = dense_components(adj)
        kept = state >= 0
        cluster = np.where(kept, comp, -1)
        violated = np.flatnonzero(kept[pu] & kept[pv] & (comp[pu] == comp[pv]) & ~joined)
        if len(violated) == 0:
            return cluster, [], violated
        yvar, u, v = self.yvar_mat, pu[violated], pv[violated]
        k, w = np.nonzero((comp[None, :] == comp[u][:, None]) & (yvar[u] >= 0) & (yvar[v] >= 0))
        y1, y2, yc = yvar[u[k], w], yvar[w, v[k]], self.y_var[violated[k]]
        forb = yc < 0
        cuts = [
            cpsat.linear_block(np.stack([y1[forb], y2[forb]], 1), (1, 1), 0, 1),
            cpsat.linear_block(np.stack([y1[~forb], y2[~forb], yc[~forb]], 1), (1, 1, -1), -1, 1),
        ]
        long = violated[~(adj[u] & adj[v]).any(1)]
        if len(long):
            cuts.extend(self._path_cuts(adj, long))
        return cluster, cuts, violated

    def _path_cuts(self, adj: np.ndarray, pairs: np.ndarray) -> list[str]:
        """Cycle inequality of a shortest joined path for each pair (breadth-first search)."""
        cuts = []
        neighbours = [np.flatnonzero(row).tolist() for row in adj]
        for q in pairs.tolist():
            u, v = int(self.inst.pair_u[q]), int(self.inst.pair_v[q])
            pred = {u: u}
            frontier = [u]
            while v not in pred:  # u and v are in one component: this terminates
                reached = []
                for a in frontier:
                    for b in neighbours[a]:
                        if b not in pred:
                            pred[b] = a
                            reached.append(b)
                frontier = reached
            path_vars = []
            node = v
            while node != u:
                prev = pred[node]
                path_vars.append(int(self.yvar_mat[prev, node]))
                node = prev
            k = len(path_vars)
            yq = int(self.y_var[q])
            if yq >= 0:
                cuts.append(cpsat.linear([*path_vars, yq], [1] * k + [-1], -1, k - 1))
            else:
                cuts.append(cpsat.linear(path_vars, [1] * k, 0, k - 1))
        return cuts

    def add_cuts(self, cuts: list[str]) -> None:
        """Append constraints (text from :meth:`separate`)."""
        before = len(self.proto.constraints)
        self.proto.merge_text_format("".join(cuts))
        self.num_cuts += len(self.proto.constraints) - before

    def set_hint(self, values: np.ndarray) -> None:
        """Replace the solution hint (values of all variables)."""
        self.proto.clear_solution_hint()
        self.proto.merge_text_format(cpsat.hint_text(values))

    def variable_groups(self, node_group: np.ndarray) -> np.ndarray:
        """Group of every variable, given a group per node (pairs: their first node's)."""
        inst = self.inst
        out = np.empty(self.num_vars, np.int64)
        out[: self.num_states] = node_group[inst.state_node]
        pair_group = node_group[inst.pair_u]
        has_y = self.y_var >= 0
        out[self.y_var[has_y]] = pair_group[has_y]
        has_z = self.z_var >= 0
        out[self.z_var[has_z]] = pair_group[inst.entry_pair[has_z]]
        return out

    def fix(self, variables: np.ndarray, values: np.ndarray) -> None:
        """Fix variables to values (one ``bool_and``; presolve removes them)."""
        literals = np.where(values > 0, variables, -variables - 1)
        self.proto.merge_text_format(
            f"constraints{{bool_and{{literals:[{','.join(map(str, literals.tolist()))}]}}}}"
        )


class _Incumbent:
    """The best assignment found, per independent component of an instance (attractive
    components: see :meth:`Instance.components`); cluster ids ``comp·n + local id``."""

    def __init__(self, inst: Instance, hint: tuple[np.ndarray, np.ndarray]) -> None:
        self.inst = inst
        self.num_comp, self.comp = inst.components()
        self.n = max(inst.num_nodes, 1)
        self.state = hint[0].copy()
        kept = self.state >= 0
        self.cluster = np.full(len(self.state), -1, np.int64)
        self.cluster[kept] = self.comp[kept] * self.n + first_seen_ranks(hint[1][kept])[1]
        self.value = inst.evaluate_groups(self.state, self.cluster, self.comp, self.num_comp)
        #: Components solved optimally without violations (fixed in the model).
        self.settled = np.zeros(self.num_comp, bool)

    def update(self, state: np.ndarray, cluster: np.ndarray, solved: np.ndarray) -> None:
        """Take each component of a feasible assignment where it is better, or ``solved``."""
        value = self.inst.evaluate_groups(state, cluster, self.comp, self.num_comp)
        take = (value < self.value) | solved
        if take.any():
            nodes = take[self.comp]
            self.state = np.where(nodes, state, self.state)
            local = np.where(state >= 0, self.comp * self.n + cluster, -1)
            self.cluster = np.where(nodes, local, self.cluster)
            self.value = np.where(take, value, self.value)


def _solve_round(model: SplpModel, remaining: float, num_workers: int) -> cpsat.Response:
    """One CP-SAT solve of the model as it stands."""
    # Until many cycle cuts were added lazily (most of them loose), CP-SAT's presolve and
    # its lazy LP constraint pool cost more than they save: ~3x the rest on dense frames
    # (benchmarks/solvers.py --hard), ~25 % on incremental stages.
    lazy_pool = model.num_cuts >= LAZY_POOL_MIN_CUTS
    return cpsat.solve_proto(
        model.proto,
        remaining,
        num_workers,
        presolve=lazy_pool,
        lp_all_constraints=not lazy_pool,
        prove_hint=True,
    )


def solve_exact(
    inst: Instance,
    deadline: float,
    *,
    hint: tuple[np.ndarray, np.ndarray] | None = None,
    num_workers: int = 1,
    scale: float = DEFAULT_SCALE,
) -> ExactResult:
    """Solve an instance to optimality (or until ``deadline``, a ``perf_counter`` time).

    Args:
        inst: the instance (one or several attractive components).
        deadline: stop by then and return the best feasible assignment, ``time_limit``.
        hint: a feasible ``(state, cluster)`` to start from; default: the heuristic's.
        num_workers: CP-SAT threads.
        scale: integer units per cost unit.
    """
    if hint is None:
        hint = heuristic_assignment(inst)
    model = SplpModel(inst, scale, hint=hint)
    stats: dict[str, Any] = {"rounds": 0, "cuts": 0, "seeded": model.num_seeded}
    # Components of the instance are independent: keep the best solution of each, and once a
    # round solves one optimally without violations, fix it so later rounds skip it.
    best = _Incumbent(inst, hint)
    var_comp = model.variable_groups(best.comp)
    pair_comp = best.comp[inst.pair_u]
    status = "time_limit"
    bound = inst.trivial_bound()
    while (remaining := deadline - time.perf_counter()) > 0:
        response = _solve_round(model, remaining, num_workers)
        stats["rounds"] += 1
        bound = max(bound, response.bound / scale - model.rounding)
        if len(response.solution) == 0:
            break
        state, joined = model.decode(response.solution)
        cluster, cuts, violated = model.separate(state, joined)
        optimal = response.status == "optimal"
        # Not transitive: its joined components are a feasible solution unless they join a
        # forbidden pair. Polishing that by local search only pays when this is the last
        # round (time limit); otherwise the next round will do better.
        if cuts and not optimal:
            state, cluster = heuristic_assignment(inst, state, cluster)
        # Solved optimally, components without violations are solved: take (and fix) them.
        clean = np.full(best.num_comp, optimal)
        clean[pair_comp[violated]] = False
        best.update(state, cluster, clean & ~best.settled)
        if not optimal:
            break
        best_values = model.values(best.state, best.cluster)
        if not cuts or int(model.coef @ best_values) <= response.bound:
            status = "optimal"
            break
        newly = clean & ~best.settled
        if newly.any():
            fix = newly[var_comp]
            model.fix(np.flatnonzero(fix), response.solution[fix])
            best.settled |= newly
        model.add_cuts(cuts)
        model.set_hint(best_values)
    objective = float(best.value.sum())
    stats["cuts"] = model.num_cuts
    return ExactResult(
        best.state,
        best.cluster,
        objective,
        objective if status == "optimal" else bound,
        status,
        stats,
    )
