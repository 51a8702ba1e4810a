"""Solvers against brute force on tiny random SPLPs, plus limits and pathological inputs."""

from __future__ import annotations

import time

import numpy as np
import pytest

from deepercut.skeleton import Skeleton
from deepercut.solvers import METHODS, Problem, Solution, cpsat, solve, tiny
from deepercut.solvers import exact as exact_solver
from deepercut.solvers.brute import brute_force
from deepercut.solvers.exact import solve_exact
from deepercut.solvers.heuristic import heuristic_assignment
from deepercut.solvers.instance import first_seen_ranks, instance_from_problem

TOL = 1e-4  # CP-SAT optimises costs rounded to 1e-6; a handful of terms per tiny instance

TINY3 = Skeleton(
    name="tiny3", parts=("a", "b", "c"), edges=((0, 1), (1, 2)), stages=((0,), (1,), (2,))
)


def random_problem(
    rng: np.random.Generator,
    n: int,
    p: int,
    *,
    free_labels: bool = False,
    density: float = 1.0,
    inf_rate: float = 0.1,
) -> Problem:
    """Random SPLP: single-label candidates (or random label subsets), Gaussian costs with
    some ``+inf`` joins, each pair listed with probability ``density``."""
    unary = rng.normal(-0.5, 1.5, (n, p))
    if free_labels:
        allowed = rng.random((n, p)) < 0.7
    else:
        allowed = np.zeros((n, p), bool)
        allowed[np.arange(n), rng.integers(p, size=n)] = True
    unary[~allowed] = np.inf
    i, j = np.triu_indices(n, 1)
    listed = rng.random(len(i)) < density
    edges = np.stack([i[listed], j[listed]], 1).astype(np.int64).reshape(-1, 2)
    pair_cost = rng.normal(0.0, 2.0, (len(edges), p, p))
    pair_cost[rng.random(pair_cost.shape) < inf_rate] = np.inf
    return Problem(unary=unary, edges=edges, pair_cost=pair_cost)


def assert_valid(problem: Problem, sol: Solution) -> None:
    """Shapes, label/cluster consistency, and the reported objective is the true one."""
    n = problem.num_candidates
    assert sol.label.shape == (n,) and sol.cluster.shape == (n,)
    kept = sol.label >= 0
    assert (sol.cluster[~kept] == -1).all()
    if kept.any():
        assert sorted(np.unique(sol.cluster[kept])) == list(range(sol.num_people))
        assert np.isfinite(problem.unary[np.flatnonzero(kept), sol.label[kept]]).all()
    assert np.isfinite(sol.objective)
    assert sol.objective == pytest.approx(problem.objective(sol.label, sol.cluster), abs=1e-9)


def assert_clusters_are_joined_components(problem: Problem, sol: Solution) -> None:
    """Every cluster is connected through listed pairs whose join changes the cost (what the
    lazy transitivity constraints guarantee for the exact solvers)."""
    kept = sol.label >= 0
    for c in range(sol.num_people):
        members = set(np.flatnonzero(sol.cluster == c).tolist())
        seen, stack = set(), [min(members)]
        while stack:
            d = stack.pop()
            if d in seen:
                continue
            seen.add(d)
            for e, (a, b) in enumerate(problem.edges.tolist()):
                other = b if a == d else a if b == d else None
                if other is None or other not in members or not kept[other]:
                    continue
                if problem.pair_cost[e, sol.label[a], sol.label[b]] != 0:
                    stack.append(other)
        assert seen == members


CASES = [
    # (n, p, free_labels, density)
    (7, 3, False, 1.0),
    (7, 2, False, 0.5),
    (6, 3, False, 0.3),
    (5, 3, True, 1.0),
    (5, 2, True, 0.6),
]


@pytest.mark.parametrize("enumerate_tiny", [True, False])
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("n", "p", "free_labels", "density"), CASES)
def test_exact_equals_brute_force(seed, n, p, free_labels, density, enumerate_tiny, monkeypatch):
    if not enumerate_tiny:  # force the CP-SAT path on components small enough to enumerate
        monkeypatch.setattr(tiny, "MAX_NODES", 0)
    rng = np.random.default_rng(1000 * seed + n * 10 + p)
    problem = random_problem(rng, n, p, free_labels=free_labels, density=density)
    _, _, optimum = brute_force(problem)
    sol = solve(problem, "exact")
    assert_valid(problem, sol)
    assert sol.status == "optimal" and sol.gap == 0 and sol.bound == sol.objective
    assert sol.objective == pytest.approx(optimum, abs=TOL)
    assert_clusters_are_joined_components(problem, sol)

    heur = solve(problem, "heuristic")
    assert_valid(problem, heur)
    assert heur.status == "heuristic" and heur.bound == -np.inf
    assert heur.objective >= optimum - 1e-9


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("n", "p", "free_labels", "density"), CASES[::2])
def test_deepcut_equals_brute_force(seed, n, p, free_labels, density):
    rng = np.random.default_rng(7 + 1000 * seed + n * 10 + p)
    problem = random_problem(rng, n, p, free_labels=free_labels, density=density)
    _, _, optimum = brute_force(problem)
    sol = solve(problem, "deepcut")
    assert_valid(problem, sol)
    assert sol.status == "optimal"
    assert sol.objective == pytest.approx(optimum, abs=TOL)


def test_independent_blocks_decompose():
    # Random blocks, repulsive or forbidden between blocks: the optimum is the sum of the
    # blocks' optima (exercises decomposition, bundling and cluster bookkeeping).
    rng = np.random.default_rng(21)
    blocks = [random_problem(rng, 5, 3, density=0.9, inf_rate=0.2) for _ in range(12)]
    offset = np.cumsum([0] + [b.num_candidates for b in blocks])
    block = np.repeat(np.arange(len(blocks)), [b.num_candidates for b in blocks])
    i, j = np.triu_indices(offset[-1], 1)
    across = block[i] != block[j]
    cross_cost = rng.uniform(0.0, 3.0, (int(across.sum()), 3, 3))
    cross_cost[rng.random(len(cross_cost)) < 0.5] = np.inf
    problem = Problem(
        unary=np.concatenate([b.unary for b in blocks]),
        edges=np.concatenate(
            [b.edges + offset[k] for k, b in enumerate(blocks)]
            + [np.stack([i[across], j[across]], 1)]
        ),
        pair_cost=np.concatenate([b.pair_cost for b in blocks] + [cross_cost]),
    )
    optimum = sum(brute_force(b)[2] for b in blocks)
    for method in ("exact", "deepcut"):
        sol = solve(problem, method)
        assert_valid(problem, sol)
        assert sol.objective == pytest.approx(optimum, abs=TOL), method
    for method in ("heuristic", "3stage"):
        sol = solve(problem, method, skeleton=TINY3)
        assert_valid(problem, sol)
        assert sol.objective >= optimum - TOL


def test_unlisted_pairs_join_for_free_and_forbidden_pairs_stay_apart():
    # a–b and b–c attract; a–c is unlisted: one cluster of three, at no cost for a–c.
    unary = np.array([[-1.0], [-1.0], [-1.0]])
    edges = np.array([[0, 1], [1, 2]])
    problem = Problem(unary, edges, np.array([[[-2.0]], [[-2.0]]]))
    sol = solve(problem, "exact")
    assert sol.num_people == 1 and sol.objective == pytest.approx(-7.0)
    # Now a–c is forbidden: b joins only one of them, even though the path a–b–c attracts.
    problem = Problem(
        unary, np.array([[0, 1], [1, 2], [0, 2]]), np.array([[[-2.0]], [[-3.0]], [[np.inf]]])
    )
    for method in ("exact", "deepcut", "heuristic"):
        sol = solve(problem, method)
        assert sol.num_people == 2 and sol.objective == pytest.approx(-6.0), method


def test_staged_is_feasible_fixes_earlier_stages_and_never_beats_exact():
    rng = np.random.default_rng(3)
    for _ in range(8):
        problem = random_problem(rng, 9, 3, density=0.8)
        exact = solve(problem, "exact")
        for method in ("3stage", "2stage"):
            sol = solve(problem, method, skeleton=TINY3)
            assert_valid(problem, sol)
            assert sol.status == "feasible" and sol.stats["stages_optimal"]
            assert sol.objective >= exact.objective - TOL
            assert len(sol.stats["stages"]) == int(method[0])
        # Stage 0 alone is the sub-problem of part-0 candidates: its decisions are final.
        sol = solve(problem, "3stage", skeleton=TINY3)
        first = np.isfinite(problem.unary[:, 0])
        keep_edges = first[problem.edges].all(1)
        sub = Problem(
            np.where(first[:, None], problem.unary, np.inf),
            problem.edges[keep_edges],
            problem.pair_cost[keep_edges],
        )
        alone = solve(sub, "exact")
        label0 = np.where(first, sol.label, -1)
        cluster0 = np.where(first & (sol.label >= 0), sol.cluster, -1)
        assert sub.objective(label0, cluster0) == pytest.approx(alone.objective, abs=TOL)


def test_staged_heuristic_stages_and_free_labels():
    rng = np.random.default_rng(5)
    problem = random_problem(rng, 8, 3, free_labels=True, density=0.7)
    sol = solve(problem, "3stage", skeleton=TINY3, stage_method="heuristic")
    assert_valid(problem, sol)
    assert sol.status == "heuristic"
    assert [s["status"] for s in sol.stats["stages"]] == ["heuristic"] * 3
    assert all(s["bound"] == -np.inf for s in sol.stats["stages"])
    assert sol.stats["rounds"] == sol.stats["cuts"] == 0  # no CP-SAT round in any stage
    with pytest.raises(ValueError, match=r"stage groups .* don't match the problem's 2 parts"):
        solve(random_problem(np.random.default_rng(5), 4, 2), "3stage", skeleton=TINY3)


def test_stages_need_a_skeleton():
    problem = random_problem(np.random.default_rng(0), 4, 3)
    with pytest.raises(ValueError, match="skeleton"):
        solve(problem, "3stage")
    with pytest.raises(ValueError, match="method"):
        solve(problem, "simplex")


def test_time_limit_is_honoured_with_a_feasible_answer():
    # Dense, frustrated random costs on 70 candidates of one part: hard for any solver.
    rng = np.random.default_rng(11)
    n = 70
    i, j = np.triu_indices(n, 1)
    problem = Problem(
        unary=rng.normal(-1.0, 1.0, (n, 1)),
        edges=np.stack([i, j], 1),
        pair_cost=rng.normal(-0.2, 2.0, (len(i), 1, 1)),
    )
    # No wall-clock bound (the machine may be loaded): a solver ignoring its limit would not
    # report ``time_limit`` here, and would hang the test until pytest-timeout stops it.
    for method in ("exact", "deepcut"):
        sol = solve(problem, method, time_limit=0.3)
        assert sol.status == "time_limit", method
        assert_valid(problem, sol)
        assert sol.bound <= sol.objective and sol.gap > 0


def test_pathological_inputs():
    empty = Problem(np.zeros((0, 3)), np.zeros((0, 2), np.int64), np.zeros((0, 3, 3)))
    for method in METHODS:
        sol = solve(empty, method, skeleton=TINY3)
        assert sol.label.shape == (0,) and sol.objective == 0.0

    for cost, kept in ((-1.0, True), (2.0, False)):
        one = Problem(
            np.array([[np.inf, cost, np.inf]]), np.zeros((0, 2), np.int64), np.zeros((0, 3, 3))
        )
        for method in METHODS:
            sol = solve(one, method, skeleton=TINY3)
            assert (sol.label[0] == 1) == kept and sol.objective == min(cost, 0.0)

    rng = np.random.default_rng(0)
    problem = random_problem(rng, 5, 3)
    problem.unary[:] = np.inf
    for method in METHODS:
        sol = solve(problem, method, skeleton=TINY3)
        assert (sol.label == -1).all() and sol.objective == 0.0

    bad = random_problem(rng, 5, 3, free_labels=True)
    bad.unary[2, np.flatnonzero(np.isfinite(bad.unary[2]))[0]] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        solve(bad, "exact")
    bad = random_problem(rng, 5, 3, free_labels=True)
    bad.pair_cost[:] = np.nan
    for method in ("heuristic", "deepcut", "3stage"):
        with pytest.raises(ValueError, match="NaN"):
            solve(bad, method, skeleton=TINY3)
    with pytest.raises(ValueError, match="time_limit"):
        solve(problem, "exact", time_limit=0)


def heuristic_corpus() -> list[Problem]:
    """A fixed corpus of 56 small random problems (the brute-force cases and two larger ones,
    eight seeds each) on which the heuristic's gap to the optimum is measured."""
    problems = []
    for seed in range(8):
        for n, p, free_labels, density in [*CASES, (8, 3, False, 0.7), (8, 2, True, 0.8)]:
            rng = np.random.default_rng(5000 + 1000 * seed + n * 10 + p)
            problems.append(random_problem(rng, n, p, free_labels=free_labels, density=density))
    return problems


def test_heuristic_gap_is_bounded_on_a_fixed_corpus():
    # Measured: the heuristic reaches the optimum on 48 of 56 instances, total gap 6.67 (max
    # 2.39). GAEC contraction alone (no local search) misses 27, total gap 54.2 (max 7.0).
    gaps = []
    for problem in heuristic_corpus():
        _, _, optimum = brute_force(problem)
        sol = solve(problem, "heuristic")
        assert_valid(problem, sol)
        gaps.append(sol.objective - optimum)
    gaps = np.array(gaps)
    assert (gaps >= -1e-9).all()
    assert (gaps > 1e-9).sum() <= 8
    assert gaps.sum() <= 7.0


def single_moves(problem: Problem, label: np.ndarray, cluster: np.ndarray):
    """Every assignment one step away: one candidate suppressed, relabelled, moved to another
    cluster or a new one (with any of its labels), or two clusters merged."""
    num_clusters = int(cluster.max(initial=-1)) + 1
    for d in range(problem.num_candidates):
        options = [(-1, -1)] + [
            (lab, c)
            for lab in np.flatnonzero(np.isfinite(problem.unary[d])).tolist()
            for c in range(num_clusters + 1)
        ]
        for lab, c in options:
            new_label, new_cluster = label.copy(), cluster.copy()
            new_label[d], new_cluster[d] = lab, c
            yield new_label, new_cluster
    for a in range(num_clusters):
        for b in range(a + 1, num_clusters):
            yield label, np.where(cluster == b, a, cluster)


@pytest.mark.parametrize("index", range(0, 56, 4))
def test_heuristic_is_locally_optimal(index):
    # No single-candidate move and no merge of two clusters improves the heuristic's answer
    # (what its local search guarantees; contraction alone leaves improving moves).
    problem = heuristic_corpus()[index]
    sol = solve(problem, "heuristic")
    for label, cluster in single_moves(problem, sol.label, sol.cluster):
        assert problem.objective(label, cluster) >= sol.objective - 1e-9


def ring(k: int, closing: float, labels: int = 1) -> tuple[Problem, float]:
    """``k`` candidates in a ring of attractive pairs (−1) closed by one repulsive or
    forbidden pair (``closing``), no chords: every cluster of all ``k`` pays the closing pair,
    so the optimum cuts one ring pair. With ``labels`` > 1 each candidate admits every label
    at the same cost (the general-pair model). Returns the problem and its optimum."""
    unary = np.full((k, labels), -1.0)
    edges = np.array([[i, i + 1] for i in range(k - 1)] + [[0, k - 1]])
    pair_cost = np.full((k, labels, labels), -1.0)
    if labels > 1:  # joins are attractive only between equal labels
        pair_cost[: k - 1] = np.where(np.eye(labels, dtype=bool), -1.0, 0.5)
    pair_cost[k - 1] = closing
    return Problem(unary, edges, pair_cost), -k - (k - 2)


@pytest.mark.parametrize("lazy_pool", [False, True])
@pytest.mark.parametrize("closing", [5.0, np.inf])
@pytest.mark.parametrize(("k", "labels"), [(4, 1), (6, 1), (9, 1), (12, 1), (16, 1), (5, 2)])
def test_exact_cuts_long_frustrated_cycles(k, labels, closing, lazy_pool, monkeypatch):
    # The triangles seeded up front can't see a cycle of four or more pairs: only the lazy
    # cycle cuts make these clusters transitive. ``lazy_pool``: CP-SAT's settings after many cuts.
    monkeypatch.setattr(tiny, "MAX_NODES", 0)
    if lazy_pool:
        monkeypatch.setattr(exact_solver, "LAZY_POOL_MIN_CUTS", 0)
    problem, optimum = ring(k, closing, labels)
    sol = solve(problem, "exact")
    assert_valid(problem, sol)
    assert sol.status == "optimal"
    assert sol.objective == pytest.approx(optimum, abs=TOL)
    assert sol.num_people == 2 or (sol.num_people == 1 and (sol.label >= 0).sum() == k - 1)


def test_model_text_prints_integers_as_python_does():
    rng = np.random.default_rng(0)
    rows = rng.integers(-(10**12), 10**12, (50, 3))
    rows[0] = [0, -1, 9]
    expected = "".join(f"<{','.join(map(str, row))}>" for row in rows.tolist())
    assert cpsat.print_rows(rows, "<", ">") == expected
    assert cpsat.print_rows(np.zeros((0, 3), np.int64), "<", ">") == ""


def test_a_node_with_a_negative_label_is_kept_but_may_take_its_positive_one():
    # Node 0 is always kept (label 0 costs -0.1), yet its optimum is label 1 (+0.5), joined
    # with node 1 (-3); label 0 can't join node 1. Node 2 (+1.0, alone) stays suppressed.
    unary = np.array([[-0.1, 0.5], [np.inf, 0.2], [1.0, np.inf]])
    edges = np.array([[0, 1], [0, 2], [1, 2]])
    pair_cost = np.array(
        [[[np.inf, np.inf], [np.inf, -3.0]], [[0.5, 0.5], [0.5, 0.5]], [[1.0, 1.0], [1.0, 1.0]]]
    )
    problem = Problem(unary=unary, edges=edges, pair_cost=pair_cost)
    _, _, optimum = brute_force(problem)
    sol = solve(problem, "exact")
    assert sol.status == "optimal" and sol.objective == pytest.approx(optimum, abs=TOL)
    assert sol.label.tolist() == [1, 1, -1] and sol.objective == pytest.approx(0.5 + 0.2 - 3.0)


def test_fixed_variables_keep_their_values_in_later_solves():
    # solve_exact fixes the variables of components it has settled; a fix must bind both ways
    # (1 and 0, each literal its own variable), here against the optimum (0 and 1 joined, 2
    # suppressed).
    unary = np.array([[0.5], [2.0], [3.0]])
    problem = Problem(unary=unary, edges=np.array([[0, 1]]), pair_cost=np.array([[[-3.0]]]))
    model = exact_solver.SplpModel(instance_from_problem(problem))
    free = cpsat.solve_proto(model.proto, 10.0, 1).solution
    y01 = int(model.y_var[0])
    assert free[[0, 1, 2, y01]].tolist() == [1, 1, 0, 1]
    model.fix(np.array([0, 2, y01]), np.array([0, 1, 0]))
    fixed = cpsat.solve_proto(model.proto, 10.0, 1).solution
    # 1 stays suppressed: alone it costs more kept than suppressed.
    assert fixed[[0, 1, 2, y01]].tolist() == [0, 0, 1, 0]


def test_heuristic_returns_minus_one_for_suppressed_nodes_and_compact_cluster_ids():
    # Node 1 costs more kept than anything it can join; 0 and 2 attract. From singletons and
    # from a given start (with a stale cluster id on the suppressed node) alike, the result
    # numbers clusters 0..M-1 by first appearance and gives suppressed nodes -1.
    problem = Problem(
        unary=np.array([[-1.0], [5.0], [-1.0], [-1.0]]),
        edges=np.array([[0, 2], [0, 1]]),
        pair_cost=np.array([[[-2.0]], [[-1.0]]]),
    )
    inst = instance_from_problem(problem)
    state, cluster = heuristic_assignment(inst)
    assert state.tolist() == [0, -1, 2, 3] and cluster.tolist() == [0, -1, 0, 1]
    start_state, start_cluster = np.array([0, -1, 2, 3]), np.array([7, 3, 7, 5])
    state, cluster = heuristic_assignment(inst, start_state, start_cluster)
    assert state.tolist() == [0, -1, 2, 3] and cluster.tolist() == [0, -1, 0, 1]
    # No nodes: empty integer arrays (callers index with them).
    empty = instance_from_problem(
        Problem(unary=np.zeros((0, 2)), edges=np.zeros((0, 2)), pair_cost=np.zeros((0, 2, 2)))
    )
    for out in heuristic_assignment(empty):
        assert out.shape == (0,) and out.dtype == np.int64


def test_num_workers_reaches_cp_sat_in_every_method(monkeypatch):
    # The engine runs one CP-SAT thread per solve; a caller may ask for more: every method
    # that uses CP-SAT must pass the count on (no other effect is observable in the answer).
    seen = []
    real = cpsat.solve_proto

    def recording(proto, time_limit, num_workers, **kwargs):
        seen.append(num_workers)
        return real(proto, time_limit, num_workers, **kwargs)

    monkeypatch.setattr(cpsat, "solve_proto", recording)
    monkeypatch.setattr(tiny, "MAX_NODES", 0)
    problem = random_problem(np.random.default_rng(2), 9, 3, density=0.8)
    for method in ("exact", "deepcut", "3stage"):
        seen.clear()
        sol = solve(problem, method, skeleton=TINY3, num_workers=3)
        assert_valid(problem, sol)
        assert seen and set(seen) == {3}, method
    assert solve(problem, "exact").stats["convert_s"] >= 0


def test_a_stage_pays_the_summed_joins_to_an_earlier_cluster():
    # Stage 0 keeps a (part 0); stage 1 adds b and d (part 1). Joining b to a's cluster costs
    # -0.5, d to it +1, b to d -3: the best is {a}, {b, d} (-6); all three together cost -5.5.
    # A stage that lost the super-node pair of its second new node, or one whose member joins
    # sum to exactly 1, would join all three.
    unary = np.array([[-1.0, np.inf, np.inf], [np.inf, -1.0, np.inf], [np.inf, -1.0, np.inf]])
    edges = np.array([[0, 1], [0, 2], [1, 2]])
    pair_cost = np.zeros((3, 3, 3))
    pair_cost[:, 0, 1] = [-0.5, 1.0, 0.0]
    pair_cost[2, 1, 1] = -3.0
    problem = Problem(unary, edges, pair_cost)
    for method in ("3stage", "2stage"):
        sol = solve(problem, method, skeleton=TINY3)
        assert sol.objective == pytest.approx(-6.0)
        assert sol.cluster[1] == sol.cluster[2] != sol.cluster[0]


def test_staged_stats_add_up_the_stages_rounds_and_cuts(monkeypatch):
    # A frustrated ring needs lazy cycle cuts; with one part it is one stage.
    monkeypatch.setattr(tiny, "MAX_NODES", 0)
    one = Skeleton(name="one", parts=("a",), edges=(), stages=((0,),))
    problem, optimum = ring(9, 5.0)
    sol = solve(problem, "3stage", skeleton=one)
    assert sol.objective == pytest.approx(optimum, abs=TOL)
    (stage,) = sol.stats["stages"]
    assert stage["cuts"] > 0 and stage["rounds"] > 1
    assert (sol.stats["cuts"], sol.stats["rounds"]) == (stage["cuts"], stage["rounds"])
    assert stage["bound"] == pytest.approx(stage["objective"], abs=TOL)


def test_first_seen_ranks_of_dense_sparse_and_no_ids():
    # Ids renumbered in order of first appearance; sparse ids take the sorting branch.
    num, ranks = first_seen_ranks(np.array([7, 2, 7, 0, 2]))
    assert num == 3 and ranks.tolist() == [0, 1, 0, 2, 1]
    num, ranks = first_seen_ranks(np.array([900, 5, 900]))
    assert num == 2 and ranks.tolist() == [0, 1, 0]
    num, ranks = first_seen_ranks(np.zeros(0, np.int64))
    assert num == 0 and ranks.shape == (0,) and ranks.dtype == np.int64


def test_evaluate_groups_marks_only_the_group_of_a_forbidden_join():
    # Three single-label candidates in one cluster; the forbidden pair (0, 1) is counted in
    # candidate 0's group, the free pair (1, 2) in group 0 too; group 1 only pays a unary.
    unary = np.array([[-1.0], [-2.0], [-4.0]])
    problem = Problem(unary, np.array([[0, 1], [1, 2]]), np.array([[[np.inf]], [[0.5]]]))
    inst = instance_from_problem(problem)
    state, cluster = np.arange(3), np.zeros(3, np.int64)
    total = inst.evaluate_groups(state, cluster, np.array([0, 0, 1]), 2)
    assert total.tolist() == [np.inf, -4.0]
    assert inst.evaluate_groups(state, cluster, np.array([1, 1, 0]), 2).tolist() == [-4.0, np.inf]


def test_trivial_bound_of_one_node_and_of_empty_groups():
    # Each node at its cheapest state or suppressed (a fixed one can't be), each pair at its
    # cheapest negative entry; groups without a node get 0.
    problem = Problem(np.array([[-2.0, 3.0]]), np.zeros((0, 2), np.int64), np.zeros((0, 2, 2)))
    inst = instance_from_problem(problem)
    assert inst.trivial_bound() == -2.0
    problem = Problem(np.array([[1.0], [-1.0]]), np.array([[0, 1]]), np.array([[[-0.5]]]))
    inst = instance_from_problem(problem)
    assert inst.trivial_bound_groups(np.array([0, 2]), 4).tolist() == [-0.5, 0.0, -1.0, 0.0]


def test_a_loose_node_with_several_labels_joins_only_when_kept(monkeypatch):
    # b and c are always kept (negative unaries); a (two labels at 0.3) gains -0.4 per join
    # whatever its label, so keeping it with both is optimal (-2.5). A model whose coupling
    # y <= x_a also counted other nodes' states would let a's joins pay without a kept, then
    # read a as suppressed (-2).
    unary = np.array([[-1.0, np.inf], [-1.0, np.inf], [0.3, 0.3]])
    pair_cost = np.full((2, 2, 2), -0.4)
    problem = Problem(unary, np.array([[0, 2], [1, 2]]), pair_cost)
    sol = solve(problem, "exact")
    assert_valid(problem, sol)
    assert sol.objective == pytest.approx(-2.5) and (sol.label >= 0).all()


def test_solve_exact_starts_from_the_heuristic_without_a_hint():
    rng = np.random.default_rng(4)
    for _ in range(3):
        problem = random_problem(rng, 7, 3, free_labels=True)
        _, _, optimum = brute_force(problem)
        inst = instance_from_problem(problem)
        result = solve_exact(inst, time.perf_counter() + 10.0)
        assert result.status == "optimal"
        assert result.objective == pytest.approx(optimum, abs=TOL)
