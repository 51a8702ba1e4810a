"""The baseline: DeepCut's original SPLP integer program, solved in one piece.

As in Pishchulin et al. (CVPR 2016), with none of this package's reductions:

- ``x_{d,c}`` for every finite label, ``Σ_c x_{d,c} ≤ 1``;
- ``y_{d,d'}`` for *every* pair of candidates (the complete graph; unlisted pairs cost 0),
  ``y_{d,d'} ≤ Σ_c x_{d,c}`` and ``y_{d,d'} ≤ Σ_c x_{d',c}``;
- the cost ``β·x_{d,c}·x_{d',c'}·y_{d,d'}`` linearised by ``z ≤ x_{d,c}``, ``z ≤ x_{d',c'}``,
  ``z ≤ y`` (negative β) or ``z ≥ x_{d,c} + x_{d',c'} + y − 2`` (positive β), and a forbidden
  (``+inf``) label pair by ``x_{d,c} + x_{d',c'} + y ≤ 2``. When both candidates admit a
  single label, ``z = y`` exactly (``y`` forces both ``x``), so ``y`` carries the cost;
- transitivity ``y_{d,d'} + y_{d',d''} − 1 ≤ y_{d,d''}``, added lazily with the same
  separation as the exact solver, re-solving until the answer is transitive.

No decomposition, no preprocessing, no heuristic start. On a time limit, the last answer is
repaired (clusters = components of joined pairs) if that is feasible, else everything is
suppressed (objective 0, always feasible).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from ortools.sat.python import cp_model_helper as cmh

from deepercut.solvers import cpsat
from deepercut.solvers.components import labels_of, make_solution
from deepercut.solvers.exact import DEFAULT_SCALE, SplpModel
from deepercut.solvers.instance import Instance, instance_from_problem
from deepercut.types import Problem, Solution


def complete_instance(inst: Instance) -> Instance:
    """The same instance with every node pair present (unlisted pairs: zero-cost entries)."""
    n = inst.num_nodes
    iu, iv = np.triu_indices(n, 1)
    per_node = np.diff(inst.state_start)
    count = per_node[iu] * per_node[iv]
    rep = np.repeat(np.arange(len(iu)), count)
    within = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    a = inst.state_start[iu][rep] + within // per_node[iv][rep]
    b = inst.state_start[iv][rep] + within % per_node[iv][rep]
    cost = np.zeros(len(a))
    # Place the listed entries by their (a, b) state pair.
    key = a * inst.num_states + b
    order = np.argsort(key)
    listed = inst.entry_a * inst.num_states + inst.entry_b
    cost[order[np.searchsorted(key[order], listed)]] = inst.entry_cost
    return Instance(
        node_ref=inst.node_ref,
        fixed=inst.fixed,
        state_start=inst.state_start,
        state_label=inst.state_label,
        state_cost=inst.state_cost,
        pair_u=iu.astype(np.int64),
        pair_v=iv.astype(np.int64),
        entry_pair=rep.astype(np.int64),
        entry_a=a,
        entry_b=b,
        entry_cost=cost,
    )


class DeepCutModel(SplpModel):
    """DeepCut's formulation on a complete instance (see the module docstring)."""

    def __init__(self, inst: Instance, scale: float = DEFAULT_SCALE) -> None:
        self.inst = inst
        n, num_states, num_pairs = inst.num_nodes, inst.num_states, inst.num_pairs
        per_node = np.diff(inst.state_start)
        start = inst.state_start
        ep, ea, eb, ec = inst.entry_pair, inst.entry_a, inst.entry_b, inst.entry_cost
        single = (per_node[inst.pair_u] == 1) & (per_node[inst.pair_v] == 1)
        self.forbidden = np.zeros(num_pairs, bool)
        self.y_var = num_states + np.arange(num_pairs)
        zent = np.flatnonzero(~single[ep] & np.isfinite(ec) & (ec != 0))
        self.z_var = np.full(len(ep), -1, np.int64)
        self.z_var[zent] = num_states + num_pairs + np.arange(len(zent))
        self.num_vars = num_states + num_pairs + len(zent)
        self.num_states = num_states

        cost = np.zeros(self.num_vars)
        cost[:num_states] = inst.state_cost
        single_fin = single[ep] & np.isfinite(ec)
        cost[self.y_var[ep[single_fin]]] = ec[single_fin]
        cost[self.z_var[zent]] = ec[zent]
        self.coef = np.rint(cost * scale).astype(np.int64)
        self.scale = scale
        self.rounding = float(np.abs(self.coef / scale - cost).sum())
        self.yvar_mat = np.full((n, n), -1, np.int64)
        self.yvar_mat[inst.pair_u, inst.pair_v] = self.y_var
        self.yvar_mat[inst.pair_v, inst.pair_u] = self.y_var

        parts = [cpsat.variables_text(np.zeros(self.num_vars, np.int64))]
        for d in np.flatnonzero(per_node > 1).tolist():
            parts.append(cpsat.linear(range(start[d], start[d + 1]), [1] * per_node[d], 0, 1))
        for end in (inst.pair_u, inst.pair_v):  # y ≤ Σ_c x
            one = per_node[end] == 1
            parts.append(
                cpsat.linear_block(np.stack([self.y_var[one], start[end[one]]], 1), (1, -1), -1, 0)
            )
            for q in np.flatnonzero(~one).tolist():
                d = int(end[q])
                states = range(start[d], start[d + 1])
                parts.append(
                    cpsat.linear([self.y_var[q], *states], [1] + [-1] * per_node[d], -1, 0)
                )
        # Forbidden label pairs: x + x' + y ≤ 2.
        forb = np.flatnonzero(~np.isfinite(ec))
        rows = np.stack([ea[forb], eb[forb], self.y_var[ep[forb]]], 1)
        parts.append(cpsat.linear_block(rows, (1, 1, 1), 0, 2))
        # Linearised products.
        neg = zent[ec[zent] < 0]
        for other in (ea[neg], eb[neg], self.y_var[ep[neg]]):
            parts.append(cpsat.linear_block(np.stack([self.z_var[neg], other], 1), (1, -1), -1, 0))
        pos = zent[ec[zent] > 0]
        rows = np.stack([self.z_var[pos], ea[pos], eb[pos], self.y_var[ep[pos]]], 1)
        parts.append(cpsat.linear_block(rows, (1, -1, -1, -1), -2, 1))
        parts.append(cpsat.objective_text(np.arange(self.num_vars), self.coef))
        self.proto = cmh.CpModelProto()
        if not self.proto.parse_text_format("".join(parts)):
            raise RuntimeError("internal error: CP-SAT rejected the generated model")
        self.num_cuts = 0
        self.num_seeded = 0


def solve_deepcut(
    problem: Problem, *, deadline: float, num_workers: int = 1, start: float | None = None
) -> Solution:
    """Solve ``problem`` with the DeepCut baseline until optimal or ``deadline``."""
    start = time.perf_counter() if start is None else start
    inst = instance_from_problem(problem)
    n = inst.num_nodes
    best_state = np.full(n, -1, np.int64)
    best_cluster = np.full(n, -1, np.int64)
    best_value = 0.0
    status, bound = "time_limit", inst.trivial_bound()
    stats: dict[str, Any] = {"rounds": 0, "nodes": n}
    if n:
        model = DeepCutModel(complete_instance(inst))
        stats["build_s"] = time.perf_counter() - start
        while (remaining := deadline - time.perf_counter()) > 0:
            response = cpsat.solve_proto(model.proto, remaining, num_workers)
            stats["rounds"] += 1
            bound = max(bound, response.bound / model.scale - model.rounding)
            cuts: list[str] = []
            if len(response.solution):
                state, joined = model.decode(response.solution)
                cluster, cuts, _ = model.separate(state, joined)
                value = inst.evaluate(state, cluster)
                if value < best_value:
                    best_state, best_cluster, best_value = state, cluster, value
            if response.status != "optimal":
                break
            if not cuts:
                status = "optimal"
                break
            model.add_cuts(cuts)
        stats["cuts"] = model.num_cuts
    else:
        status, bound = "optimal", 0.0
    label, cluster = labels_of(inst, problem.num_candidates, best_state, best_cluster)
    objective = problem.objective(label, cluster)
    return make_solution(label, cluster, objective, bound, status, start, stats)
