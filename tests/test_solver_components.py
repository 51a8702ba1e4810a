"""The solvers' shared result step (deepercut.solvers.components): gap, bound and cluster
numbering of a :class:`Solution`, checked on hand-made assignments."""

from __future__ import annotations

import time

import numpy as np
import pytest

from deepercut.solvers import solve
from deepercut.solvers.brute import brute_force
from deepercut.solvers.components import make_solution
from deepercut.solvers.instance import instance_from_problem
from deepercut.types import Problem, Solution


def solution(objective: float, bound: float, status: str, start: float = 0.0) -> Solution:
    label = np.array([0, -1, 1, 0, 2], np.int64)
    cluster = np.array([9, 5, 4, 9, 7], np.int64)  # the suppressed node's 5 is ignored
    return make_solution(label, cluster, objective, bound, status, start, {"k": 1})


def test_gap_is_relative_to_the_objective_but_never_to_less_than_1() -> None:
    sol = solution(-10.0, -12.0, "time_limit")
    assert (sol.objective, sol.bound, sol.status) == (-10.0, -12.0, "time_limit")
    assert sol.gap == pytest.approx(0.2)  # 2 / |−10|
    assert solution(0.5, 0.25, "time_limit").gap == pytest.approx(0.25)  # 0.25 / 1, not / 0.5
    assert solution(3.0, 4.0, "feasible").gap == 0.0  # a bound above (rounding): no gap
    sol = solution(-1.0, -np.inf, "heuristic")
    assert sol.gap == np.inf and sol.bound == -np.inf


def test_an_optimum_is_its_own_bound() -> None:
    sol = solution(-3.0, -3.5, "optimal")
    assert sol.bound == sol.objective == -3.0 and sol.gap == 0.0


def test_clusters_are_numbered_in_order_of_first_kept_candidate() -> None:
    start = time.perf_counter()
    sol = solution(-1.0, -1.0, "optimal", start)
    elapsed = time.perf_counter() - start
    np.testing.assert_array_equal(sol.label, [0, -1, 1, 0, 2])
    np.testing.assert_array_equal(sol.cluster, [0, -1, 1, 0, 2])
    assert sol.cluster.dtype == np.int64
    assert sol.stats == {"k": 1} and 0.0 <= sol.seconds <= elapsed


def three_components() -> Problem:
    """Two frustrated triangles (two joins attract, the third repels: no bound from the
    heuristic alone) and a lone candidate: candidates 0-2 take part 0 only (a tiny component),
    3-5 either part (CP-SAT's), 6 part 0 (solved by the heuristic)."""
    unary = np.full((7, 2), np.inf)
    unary[:3, 0] = unary[6, 0] = -1.0
    unary[3:6] = [[-1.0, -0.5], [-0.5, -1.0], [-1.0, -1.0]]
    edges = np.array([[0, 1], [1, 2], [0, 2], [3, 4], [4, 5], [3, 5]])
    pair_cost = np.zeros((6, 2, 2))
    pair_cost[[0, 1, 3, 4]] = -2.0
    pair_cost[[2, 5]] = 3.0
    return Problem(unary, edges, pair_cost)


def test_the_stats_describe_the_instance_and_how_it_was_split() -> None:
    problem = three_components()
    inst = instance_from_problem(problem)
    reduced = inst.reduce()
    num_comp, _ = reduced.components()
    assert (inst.num_nodes, num_comp) == (7, 3)
    sol = solve(problem, "exact")
    assert sol.status == "optimal" and sol.objective == pytest.approx(brute_force(problem)[2])
    stats = sol.stats
    assert set(stats) == {"nodes", "nodes_reduced", "components", "largest_component",
                          "tiny_components", "cpsat_components", "rounds", "cuts",
                          "convert_s", "reduce_s", "heuristic_s", "exact_s"}  # fmt: skip
    assert (stats["nodes"], stats["nodes_reduced"]) == (7, reduced.num_nodes)
    assert (stats["components"], stats["largest_component"]) == (3, 3)
    assert (stats["tiny_components"], stats["cpsat_components"]) == (1, 1)
    assert stats["rounds"] >= 1 and stats["cuts"] >= 0  # CP-SAT ran on one component
    assert all(stats[k] >= 0.0 for k in ("convert_s", "reduce_s", "heuristic_s", "exact_s"))
    heur = solve(problem, "heuristic")
    assert set(heur.stats) == {"nodes", "nodes_reduced", "reduce_s", "heuristic_s", "convert_s"}
    assert heur.status == "heuristic" and heur.bound == -np.inf
    assert heur.objective == pytest.approx(problem.objective(heur.label, heur.cluster))


def test_nothing_to_keep_is_zero_components() -> None:
    # Every label forbidden: no node survives the conversion, so no component either.
    problem = Problem(np.full((2, 2), np.inf), np.zeros((0, 2), np.int64), np.zeros((0, 2, 2)))
    sol = solve(problem, "exact")
    np.testing.assert_array_equal(sol.label, [-1, -1])
    assert (sol.stats["components"], sol.stats["largest_component"]) == (0, 0)
    assert (sol.stats["rounds"], sol.stats["cuts"], sol.objective) == (0, 0, 0.0)
