"""The flow shared by the methods: reduce, heuristic, decompose, solve components, and
assemble a :class:`~deepercut.types.Solution`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepercut.solvers import tiny
from deepercut.solvers.exact import ExactResult, solve_exact
from deepercut.solvers.heuristic import heuristic_assignment
from deepercut.solvers.instance import Instance, first_seen_ranks
from deepercut.types import Solution


@dataclass
class InstanceResult:
    """Solution of an instance, expressed on its reduced form ``instance``: chosen ``state``
    [n] (−1 = suppressed) and ``cluster`` [n] (−1 when suppressed)."""

    instance: Instance
    state: np.ndarray
    cluster: np.ndarray
    objective: float
    bound: float
    status: str  # optimal | time_limit | heuristic
    stats: dict[str, Any] = field(default_factory=dict)


def solve_instance(
    inst: Instance, method: str, deadline: float, num_workers: int = 1
) -> InstanceResult:
    """Reduce, decompose and solve an instance (``method`` ``exact`` or ``heuristic``).

    The heuristic runs on the whole reduced instance (its moves never profit from mixing
    attractive components). For ``exact``, a component is already solved when the heuristic
    meets the trivial lower bound there (singletons, conflict-free groups); tiny single-label
    ones are enumerated (:mod:`~deepercut.solvers.tiny`); the rest go to CP-SAT together, as
    one model without the pairs between components (clusters never need to span them),
    warm-started from the heuristic. If the deadline passes, the best feasible assignment is
    kept and the result is flagged ``time_limit``.
    """
    t0 = time.perf_counter()
    red = inst.reduce()
    t1 = time.perf_counter()
    state, cluster = heuristic_assignment(red)
    t2 = time.perf_counter()
    stats: dict[str, Any] = {
        "nodes": inst.num_nodes,
        "nodes_reduced": red.num_nodes,
        "reduce_s": t1 - t0,
        "heuristic_s": t2 - t1,
    }
    if method == "heuristic":
        value = red.evaluate(state, cluster)
        return InstanceResult(red, state, cluster, value, -np.inf, "heuristic", stats)

    num_comp, comp = red.components()
    sizes = np.bincount(comp, minlength=num_comp)
    value = red.evaluate_groups(state, cluster, comp, num_comp)
    open_comp = value > red.trivial_bound_groups(comp, num_comp) + 1e-9
    multi_label = np.zeros(num_comp, bool)
    multi_label[comp[np.diff(red.state_start) > 1]] = True
    tiny_comp = open_comp & (sizes <= tiny.MAX_NODES) & ~multi_label
    cpsat_comp = open_comp & ~tiny_comp
    # Cluster ids comp·n + local id: distinct across components.
    cluster = np.where(state >= 0, comp * red.num_nodes + cluster, -1)
    for c in np.flatnonzero(tiny_comp).tolist():
        value[c] = _solve_tiny_component(red, comp, c, state, cluster)
    objective = bound = float(value[~cpsat_comp].sum())
    status = "optimal"
    stats.update(
        components=int(num_comp),
        largest_component=int(sizes.max(initial=0)),
        tiny_components=int(tiny_comp.sum()),
        cpsat_components=int(cpsat_comp.sum()),
        rounds=0,
        cuts=0,
    )
    if cpsat_comp.any():
        result = _solve_cpsat_components(
            red, comp, cpsat_comp, state, cluster, deadline, num_workers
        )
        objective += result.objective
        bound += result.bound
        status = result.status
        stats["rounds"] = result.stats["rounds"]
        stats["cuts"] = result.stats["cuts"]
    stats["exact_s"] = time.perf_counter() - t2
    return InstanceResult(red, state, cluster, objective, bound, status, stats)


def _solve_tiny_component(
    red: Instance, comp: np.ndarray, c: int, state: np.ndarray, cluster: np.ndarray
) -> float:
    """Enumerate component ``c`` (single-label nodes); writes ``state``/``cluster`` in place
    and returns its optimal value."""
    nodes = np.flatnonzero(comp == c)
    local = np.zeros(red.num_nodes, np.int64)
    local[nodes] = np.arange(len(nodes))
    pairs = np.flatnonzero((comp[red.pair_u] == c) & (comp[red.pair_v] == c))
    kept, local_cluster, value = tiny.solve_tiny(
        red.state_cost[red.state_start[nodes]],
        red.fixed[nodes],
        local[red.pair_u[pairs]],
        local[red.pair_v[pairs]],
        red.entry_cost[red.entry_start[pairs]],  # one entry per single-label pair
    )
    state[nodes] = np.where(kept, red.state_start[nodes], -1)
    cluster[nodes] = np.where(kept, c * red.num_nodes + local_cluster, -1)
    return value


def _solve_cpsat_components(
    red: Instance,
    comp: np.ndarray,
    chosen: np.ndarray,
    state: np.ndarray,
    cluster: np.ndarray,
    deadline: float,
    num_workers: int,
) -> ExactResult:
    """Solve the ``chosen`` components in one CP-SAT model, starting from the current
    assignment; writes ``state``/``cluster`` in place."""
    keep_state = chosen[comp[red.state_node]]
    sub = red.subset(keep_state, comp[red.pair_u] == comp[red.pair_v])
    nodes = np.flatnonzero(chosen[comp])
    local_state = np.cumsum(keep_state) - 1
    hint_state = np.where(state[nodes] >= 0, local_state[state[nodes]], -1)
    result = solve_exact(sub, deadline, hint=(hint_state, cluster[nodes]), num_workers=num_workers)
    state_ids = np.flatnonzero(keep_state)
    kept = result.state >= 0
    state[nodes] = np.where(kept, state_ids[np.maximum(result.state, 0)], -1)
    # The result's ids are distinct across its components; shift them past all comp·n ids.
    cluster[nodes] = np.where(kept, len(chosen) * red.num_nodes + result.cluster, -1)
    return result


def labels_of(
    inst: Instance, num_candidates: int, state: np.ndarray, cluster: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-candidate ``label`` and ``cluster`` arrays of an assignment of ``inst`` (super-nodes
    are skipped)."""
    label = np.full(num_candidates, -1, np.int64)
    out_cluster = np.full(num_candidates, -1, np.int64)
    kept = (state >= 0) & (inst.node_ref >= 0)
    label[inst.node_ref[kept]] = inst.state_label[state[kept]]
    out_cluster[inst.node_ref[kept]] = cluster[kept]
    return label, out_cluster


def make_solution(
    label: np.ndarray,
    cluster: np.ndarray,
    objective: float,
    bound: float,
    status: str,
    start: float,
    stats: dict[str, Any],
) -> Solution:
    """A :class:`Solution` with renumbered clusters, the gap, and the time since ``start``.

    A proven optimum gets ``bound = objective`` exactly (optimality is up to the integer
    rounding of costs, see :mod:`~deepercut.solvers.exact`).
    """
    if status == "optimal":
        bound = objective
    gap = (objective - bound) / max(1.0, abs(objective)) if np.isfinite(bound) else np.inf
    return Solution(
        label=label,
        cluster=_renumber(label, cluster),
        objective=objective,
        bound=bound,
        gap=max(gap, 0.0),
        status=status,
        seconds=time.perf_counter() - start,
        stats=stats,
    )


def _renumber(label: np.ndarray, cluster: np.ndarray) -> np.ndarray:
    """Cluster ids 0..M−1 in order of first kept candidate; −1 for suppressed ones."""
    out = np.full(len(label), -1, np.int64)
    kept = label >= 0
    out[kept] = first_seen_ranks(cluster[kept])[1]
    return out
