"""DeeperCut's incremental optimisation: solve part groups in stages, earlier clusters fixed.

Stage ``k`` adds the candidates whose first allowed label lies in group ``k`` (a candidate
admitting labels of several groups enters at its earliest and may take any of its labels
there). Everything decided before — which candidates are kept, their labels and their
grouping — is fixed: each earlier cluster becomes one *super-node* that must stay kept, whose
join cost to a new candidate state is the sum of the members' pair costs (``+inf`` if any member
forbids it), and two super-nodes may never merge. Each stage is an ordinary instance, solved
exactly or heuristically, its heuristic start (the hint of the exact solve) containing the
previous stage's solution.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from deepercut.solvers.components import InstanceResult, labels_of, solve_instance
from deepercut.solvers.instance import Instance, instance_from_problem
from deepercut.types import Problem


def solve_staged(
    problem: Problem,
    groups: tuple[tuple[int, ...], ...],
    stage_method: str,
    deadline: float,
    num_workers: int = 1,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any], str]:
    """Solve ``problem`` stage by stage over part ``groups``.

    Returns:
        ``(label, cluster, stats, status)`` per candidate; ``status`` is ``feasible`` when every
        exact stage was proven optimal, ``time_limit`` if one was not, ``heuristic`` for
        heuristic stages.
    """
    num_parts = problem.num_parts
    if sorted(p for g in groups for p in g) != list(range(num_parts)):
        raise ValueError(
            f"the skeleton's stage groups {groups} don't match the problem's {num_parts} parts"
        )
    stage_of_part = np.empty(num_parts, np.int64)
    for k, group in enumerate(groups):
        stage_of_part[list(group)] = k
    full = instance_from_problem(problem)
    node_stage = np.minimum.reduceat(stage_of_part[full.state_label], full.state_start[:-1])
    state_of = np.full((full.num_nodes, num_parts), -1, np.int64)  # (node, label) → state
    state_of[full.state_node, full.state_label] = np.arange(full.num_states)
    state = np.full(full.num_nodes, -1, np.int64)  # decided state per node of ``full``
    cluster = np.full(full.num_nodes, -1, np.int64)
    num_clusters = 0
    stages = []
    status = "heuristic" if stage_method == "heuristic" else "feasible"
    for k in range(len(groups)):
        start = time.perf_counter()
        new_nodes = np.flatnonzero(node_stage == k)
        inst = stage_instance(full, new_nodes, state, cluster, num_clusters)
        result = solve_instance(inst, stage_method, deadline, num_workers)
        num_clusters = _take_stage(full, state_of, result, state, cluster, num_clusters)
        if result.status == "time_limit":
            status = "time_limit"
        stages.append(
            {
                "stage": k,
                "parts": list(groups[k]),
                "candidates": len(new_nodes),
                "super_nodes": int(inst.fixed.sum()),
                "status": result.status,
                "objective": result.objective,
                "bound": result.bound,
                "seconds": time.perf_counter() - start,
                **{key: v for key, v in result.stats.items() if key in ("rounds", "cuts")},
            }
        )
    label, out_cluster = labels_of(full, problem.num_candidates, state, cluster)
    stats = {
        "stages": stages,
        "stages_optimal": all(s["status"] == "optimal" for s in stages),
        "rounds": sum(s.get("rounds", 0) for s in stages),
        "cuts": sum(s.get("cuts", 0) for s in stages),
    }
    return label, out_cluster, stats, status


def _take_stage(
    full: Instance,
    state_of: np.ndarray,
    result: InstanceResult,
    state: np.ndarray,
    cluster: np.ndarray,
    num_clusters: int,
) -> int:
    """Write a stage's decisions on its new nodes into ``state``/``cluster`` (per node of
    ``full``; ``state_of`` maps (node, label) to a state), in place; returns the new number
    of clusters.

    A stage cluster holding super-node j continues earlier cluster j; others are new.
    """
    red = result.instance
    kept = np.flatnonzero(result.state >= 0)
    is_super = red.node_ref[kept] < 0
    ids, which = np.unique(result.cluster[kept], return_inverse=True)
    global_id = np.full(len(ids), -1, np.int64)
    global_id[which[is_super]] = -1 - red.node_ref[kept[is_super]]
    fresh = global_id < 0
    global_id[fresh] = num_clusters + np.arange(int(fresh.sum()))
    new_kept = kept[~is_super]
    nodes = np.searchsorted(full.node_ref, red.node_ref[new_kept])
    state[nodes] = state_of[nodes, red.state_label[result.state[new_kept]]]
    cluster[nodes] = global_id[which[~is_super]]
    return num_clusters + int(fresh.sum())


def stage_instance(
    full: Instance,
    new_nodes: np.ndarray,
    state: np.ndarray,
    cluster: np.ndarray,
    num_clusters: int,
) -> Instance:
    """The instance of one stage: earlier clusters as fixed super-nodes, then new nodes.

    Args:
        full: the whole problem's instance.
        new_nodes: nodes of ``full`` entering at this stage (increasing).
        state: decided state per node of ``full`` (−1 = suppressed or undecided).
        cluster: decided cluster per node (0..num_clusters−1, −1 = none).
        num_clusters: number of earlier clusters.
    """
    c = num_clusters
    per_node = np.diff(full.state_start)[new_nodes]
    is_new_state = np.zeros(full.num_nodes, bool)
    is_new_state[new_nodes] = True
    is_new_state = is_new_state[full.state_node]
    new_states = np.flatnonzero(is_new_state)
    local_state = np.full(full.num_states, -1, np.int64)  # 0-based among new states
    local_state[new_states] = np.arange(len(new_states))
    local_node = np.full(full.num_nodes, -1, np.int64)
    local_node[new_nodes] = c + np.arange(len(new_nodes))
    # Earlier cluster of each decided (chosen) state.
    chosen_cluster = np.full(full.num_states, -1, np.int64)
    decided = np.flatnonzero(state >= 0)
    chosen_cluster[state[decided]] = cluster[decided]
    sup, new, rep, s_new, sn_cost = _super_new_entries(
        full, is_new_state, local_state, chosen_cluster, c, per_node
    )
    nn, nn_local, nn_pairs = _new_new_entries(full, is_new_state)
    ea, eb = full.entry_a, full.entry_b
    # Super ↔ super: forbidden (earlier clusters never merge). Pair order: these, then
    # super–new, then new–new; entries grouped by pair in the same order.
    su, sv = np.triu_indices(c, 1)
    num_ss, num_sn = len(su), len(sup)
    return Instance(
        node_ref=np.concatenate([-1 - np.arange(c), full.node_ref[new_nodes]]),
        fixed=np.concatenate([np.ones(c, bool), np.zeros(len(new_nodes), bool)]),
        state_start=np.concatenate([np.arange(c), c + np.r_[0, np.cumsum(per_node)]]),
        state_label=np.concatenate([np.full(c, -1), full.state_label[new_states]]),
        state_cost=np.concatenate([np.zeros(c), full.state_cost[new_states]]),
        pair_u=np.concatenate([su, sup, local_node[full.pair_u[nn_pairs]]]).astype(np.int64),
        pair_v=np.concatenate([sv, c + new, local_node[full.pair_v[nn_pairs]]]).astype(np.int64),
        entry_pair=np.concatenate(
            [np.arange(num_ss), num_ss + rep, num_ss + num_sn + nn_local]
        ).astype(np.int64),
        entry_a=np.concatenate([su, sup[rep], c + local_state[ea[nn]]]).astype(np.int64),
        entry_b=np.concatenate([sv, c + s_new, c + local_state[eb[nn]]]).astype(np.int64),
        entry_cost=np.concatenate([np.full(num_ss, np.inf), sn_cost, full.entry_cost[nn]]),
    )


def _super_new_entries(
    full: Instance,
    is_new_state: np.ndarray,
    local_state: np.ndarray,
    chosen_cluster: np.ndarray,
    c: int,
    per_node: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """Super-node ↔ new-node pairs: member join costs summed per new state (a forbidden
    member join stays inf), a pair per (super-node, new node) with a non-zero sum.

    Returns ``(super-node, new node (local), entry's pair, entry's new state, entry cost)``.
    """
    ea, eb, ec = full.entry_a, full.entry_b, full.entry_cost
    old_new = np.concatenate(
        [
            np.flatnonzero(is_new_state[ea] & (chosen_cluster[eb] >= 0)),
            np.flatnonzero(is_new_state[eb] & (chosen_cluster[ea] >= 0)),
        ]
    )
    new_end = np.where(is_new_state[ea[old_new]], ea[old_new], eb[old_new])
    old_end = np.where(is_new_state[ea[old_new]], eb[old_new], ea[old_new])
    summed = np.zeros((c, int(per_node.sum())))
    np.add.at(summed, (chosen_cluster[old_end], local_state[new_end]), ec[old_new])
    state_starts = np.concatenate([[0], np.cumsum(per_node)])
    if len(per_node):
        touched = np.add.reduceat(summed != 0, state_starts[:-1], axis=1) > 0
    else:
        touched = np.zeros((c, 0), bool)
    sup, new = np.nonzero(touched)
    count = per_node[new]
    rep = np.repeat(np.arange(len(sup)), count)  # one entry per state of the new node
    within = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    s_new = state_starts[new][rep] + within
    return sup, new, rep, s_new, summed[sup[rep], s_new]


def _new_new_entries(full: Instance, is_new_state: np.ndarray) -> tuple[np.ndarray, ...]:
    """New ↔ new: the full instance's entries between new states, their pairs renumbered in
    order. Returns ``(entries of full, local pair of each entry, full pair of each local
    pair)``."""
    nn = np.flatnonzero(is_new_state[full.entry_a] & is_new_state[full.entry_b])
    nn_pair = full.entry_pair[nn]
    first = np.r_[True, nn_pair[1:] != nn_pair[:-1]] if len(nn) else np.zeros(0, bool)
    return nn, np.cumsum(first) - 1, nn_pair[first]
