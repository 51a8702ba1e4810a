"""Property tests of the solvers on random small SPLPs (Hypothesis).

Costs come from a small set of halves (exact in float, so ties and zero joins are common),
with ``+inf`` both in the unaries (labels a candidate can't take: free label subsets) and in
the join costs (forbidden pairs). Checked against :func:`~deepercut.solvers.brute.brute_force`:
``exact`` finds the optimum, every method returns a valid solution whose reported objective is
what :meth:`Problem.objective` gives, nothing beats the optimum, and the heuristic's answer
can't be improved by any single move (the bound its local search guarantees).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from test_solvers import TINY3, TOL, assert_valid, single_moves

from deepercut.solvers import METHODS, Problem, solve, tiny
from deepercut.solvers import exact as exact_solver
from deepercut.solvers.brute import brute_force
from deepercut.solvers.components import solve_instance
from deepercut.solvers.instance import instance_from_problem

#: Costs drawn: halves for ties and exact sums, 0 for free joins, +inf.
UNARY_COSTS = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, np.inf)
PAIR_COSTS = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, np.inf)

#: Generous for these tiny instances (milliseconds each); a wrong solver may hit it instead.
TIME_LIMIT = 5.0

SETTINGS = settings(
    max_examples=60,
    deadline=None,  # no wall-clock limits: the machine may be loaded
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def problems(draw: st.DrawFn, max_candidates: int = 6, num_parts: int | None = None) -> Problem:
    """A random SPLP: any subset of listed pairs (either orientation, some twice), any label
    subsets."""
    n = draw(st.integers(0, max_candidates))
    p = num_parts if num_parts is not None else draw(st.integers(1, 3))
    unary = np.array(draw(st.lists(st.sampled_from(UNARY_COSTS), min_size=n * p, max_size=n * p)))
    i, j = np.triu_indices(n, 1)
    listed = np.array(draw(st.lists(st.booleans(), min_size=len(i), max_size=len(i))), bool)
    flip = np.array(draw(st.lists(st.booleans(), min_size=len(i), max_size=len(i))), bool)
    edges = np.stack([np.where(flip, j, i), np.where(flip, i, j)], 1)[listed]
    # Some pairs listed twice, the second time reversed: their costs add up.
    again = np.array(draw(st.lists(st.booleans(), min_size=len(edges), max_size=len(edges))))
    edges = np.concatenate([edges, edges[again.astype(bool)][:, ::-1]])
    count = len(edges) * p * p
    pair_cost = draw(st.lists(st.sampled_from(PAIR_COSTS), min_size=count, max_size=count))
    return Problem(
        unary=unary.reshape(n, p),
        edges=edges.reshape(-1, 2).astype(np.int64),
        pair_cost=np.array(pair_cost, np.float64).reshape(len(edges), p, p),
    )


@SETTINGS
@given(problems())
def test_exact_equals_brute_force(problem):
    _, _, optimum = brute_force(problem)
    # Tiny components enumerated; all through CP-SAT; all through CP-SAT with presolve and the
    # lazy LP pool (its settings after many lazy cuts).
    for max_tiny, pool_cuts in ((tiny.MAX_NODES, None), (0, None), (0, 0)):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(tiny, "MAX_NODES", max_tiny)
            if pool_cuts is not None:
                patch.setattr(exact_solver, "LAZY_POOL_MIN_CUTS", pool_cuts)
            sol = solve(problem, "exact", time_limit=TIME_LIMIT)
        assert_valid(problem, sol)
        assert_people_within_components(problem, sol)
        assert sol.status == "optimal" and sol.gap == 0
        assert sol.objective == pytest.approx(optimum, abs=TOL)


def assert_people_within_components(problem: Problem, sol) -> None:
    """No person spans candidates that no allowed join connects: such a merger costs nothing
    (the objective cannot tell), but it puts two people's parts in one pose."""
    n = problem.num_candidates
    allowed = np.isfinite(problem.pair_cost).any(axis=(1, 2))
    u, v = problem.edges[allowed].T
    graph = coo_matrix((np.ones(len(u)), (u, v)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    for person in np.unique(sol.cluster[sol.cluster >= 0]):
        assert len(np.unique(component[sol.cluster == person])) == 1, (person, sol.cluster)


@SETTINGS
@given(problems(num_parts=3))
def test_every_method_is_valid_and_never_beats_the_optimum(problem):
    _, _, optimum = brute_force(problem)
    for method in METHODS:
        sol = solve(problem, method, skeleton=TINY3, time_limit=TIME_LIMIT)
        assert_valid(problem, sol)  # the reported objective re-scores exactly
        assert sol.objective >= optimum - TOL, method
        assert sol.bound <= optimum + TOL, method


@SETTINGS
@given(problems())
def test_heuristic_is_locally_optimal(problem):
    sol = solve(problem, "heuristic")
    assert_valid(problem, sol)
    for label, cluster in single_moves(problem, sol.label, sol.cluster):
        assert problem.objective(label, cluster) >= sol.objective - 1e-9


@SETTINGS
@given(problems(max_candidates=5), st.data())
def test_fixed_nodes_are_kept_and_the_optimum_is_exact(problem, data):
    # Fixed nodes (the super-nodes of incremental solving) must be kept. Reference: brute force
    # with a bonus large enough that every optimum keeps them, taken off again.
    inst = instance_from_problem(problem)
    fixed = np.array(
        data.draw(st.lists(st.booleans(), min_size=inst.num_nodes, max_size=inst.num_nodes)),
        bool,
    )
    inst.fixed = fixed
    finite = np.isfinite(problem.unary).sum() + np.isfinite(problem.pair_cost).sum()
    bonus = 10.0 * (finite + 1) * max(abs(c) for c in PAIR_COSTS if np.isfinite(c))
    boosted = problem.unary.copy()
    boosted[inst.node_ref[fixed]] -= bonus
    _, _, optimum = brute_force(Problem(boosted, problem.edges, problem.pair_cost))
    optimum += bonus * fixed.sum()
    for method in ("exact", "heuristic"):
        result = solve_instance(inst, method, time.perf_counter() + TIME_LIMIT)
        kept = result.instance.node_ref[result.state >= 0]
        assert set(inst.node_ref[fixed].tolist()) <= set(kept.tolist()), method
        assert np.isfinite(result.objective), method
        if method == "exact":
            assert result.status == "optimal"
            assert result.objective == pytest.approx(optimum, abs=TOL)
        else:
            assert result.objective >= optimum - TOL


def extensions(problem: Problem, label: np.ndarray, cluster: np.ndarray, new: np.ndarray):
    """Every assignment that keeps ``label``/``cluster`` on the other candidates and gives each
    candidate of ``new`` suppression or any of its labels in an existing or a new cluster
    (yielded arrays are reused: evaluate before the next)."""
    label, cluster = label.copy(), cluster.copy()
    kept = label >= 0
    cluster[kept] = np.unique(cluster[kept], return_inverse=True)[1]
    new = new.tolist()

    def place(i: int, num_clusters: int):
        if i == len(new):
            yield label, cluster
            return
        d = new[i]
        label[d] = cluster[d] = -1
        yield from place(i + 1, num_clusters)
        for lab in np.flatnonzero(np.isfinite(problem.unary[d])).tolist():
            for c in range(num_clusters + 1):
                label[d], cluster[d] = lab, c
                yield from place(i + 1, max(num_clusters, c + 1))
        label[d] = cluster[d] = -1

    yield from place(0, int(cluster.max(initial=-1)) + 1)


@settings(SETTINGS, max_examples=40)
@given(problems(max_candidates=5, num_parts=3), st.sampled_from(["3stage", "2stage"]))
def test_each_stage_is_optimal_given_the_earlier_ones(problem, method):
    # DeeperCut's incremental optimisation: a candidate enters at the stage of its first
    # allowed part; each stage keeps everything decided before (kept candidates, labels,
    # clusters, and earlier clusters never merge) and solves its new candidates optimally.
    sol = solve(problem, method, skeleton=TINY3, time_limit=TIME_LIMIT)
    assert_valid(problem, sol)
    assert sol.status == "feasible" and sol.stats["stages_optimal"]
    groups = TINY3.stage_groups(int(method[0]))
    stage_of_part = np.array([k for p in range(3) for k, g in enumerate(groups) if p in g])
    allowed = np.isfinite(problem.unary)
    stage = np.array([stage_of_part[a].min(initial=len(groups)) for a in allowed], np.int64)
    assert [s["stage"] for s in sol.stats["stages"]] == list(range(len(groups)))
    before = 0.0
    for k in range(len(groups)):
        label = np.where(stage <= k, sol.label, -1)
        cluster = np.where(label >= 0, sol.cluster, -1)
        value = problem.objective(label, cluster)
        earlier = np.where(stage < k, sol.label, -1)
        earlier_cluster = np.where(earlier >= 0, sol.cluster, -1)
        new = np.flatnonzero(stage == k)
        best = min(
            problem.objective(lab, clu)
            for lab, clu in extensions(problem, earlier, earlier_cluster, new)
        )
        assert value == pytest.approx(best, abs=TOL), k
        entry = sol.stats["stages"][k]
        assert entry["candidates"] == len(new) and entry["parts"] == list(groups[k])
        assert entry["seconds"] >= 0
        assert entry["super_nodes"] == len(np.unique(earlier_cluster[earlier >= 0]))
        assert entry["objective"] == pytest.approx(value - before, abs=TOL), k
        before = value
