"""``solve(problem, method=...)``: the one entry point of the solvers."""

from __future__ import annotations

import time

import numpy as np

from deepercut.skeleton import Skeleton
from deepercut.solvers.components import labels_of, make_solution, solve_instance
from deepercut.solvers.deepcut import solve_deepcut
from deepercut.solvers.incremental import solve_staged
from deepercut.solvers.instance import instance_from_problem
from deepercut.types import Problem, Solution

#: Methods accepted by :func:`solve`.
METHODS = ("exact", "heuristic", "3stage", "2stage", "deepcut")


def solve(
    problem: Problem,
    method: str = "exact",
    *,
    time_limit: float = 10.0,
    skeleton: Skeleton | None = None,
    stage_method: str = "exact",
    num_workers: int = 1,
) -> Solution:
    """Solve a subset partition and labelling problem.

    Args:
        problem: the SPLP (see :class:`~deepercut.types.Problem`).
        method: ``exact`` (all parts at once, proven optimal unless the time limit hits),
            ``heuristic`` (contraction + local search, no bound), ``3stage`` / ``2stage``
            (DeeperCut's incremental optimisation over ``skeleton.stage_groups``),
            ``deepcut`` (the original DeepCut ILP in one piece: the baseline).
        time_limit: wall-clock seconds for the whole solve (all rounds and stages); on expiry
            the best feasible solution is returned with status ``time_limit``.
        skeleton: required by the staged methods.
        stage_method: ``exact`` or ``heuristic``, how each stage is solved.
        num_workers: CP-SAT threads per solve (1: the engine runs many solvers in parallel).

    Returns:
        A :class:`~deepercut.types.Solution`; ``objective`` equals
        ``problem.objective(label, cluster)`` up to float rounding. ``bound``/``gap`` are a
        proven lower bound and the relative gap for ``exact``/``deepcut``; ``-inf``/``inf``
        for the heuristic and the staged methods (a stage's optimum is not the problem's).
        ``status``: ``optimal`` / ``time_limit`` for ``exact``/``deepcut``; ``heuristic``; for
        the staged methods ``feasible`` when every stage was proven optimal
        (``stats["stages_optimal"]``), else ``time_limit`` (or ``heuristic`` with heuristic
        stages). ``stats`` has timings, components, lazy rounds and cuts, and per-stage results.

    Raises:
        ValueError: unknown method, missing or mismatched skeleton, non-positive time limit,
            a self-loop edge, or invalid costs: NaN or ``-inf`` in the unaries or in a join
            cost a solution could use (entries for labels a candidate can't take are ignored).
    """
    start = time.perf_counter()
    _check_arguments(method, stage_method, time_limit)
    deadline = start + time_limit
    if method == "deepcut":
        return solve_deepcut(problem, deadline=deadline, num_workers=num_workers, start=start)
    if method in ("3stage", "2stage"):
        if skeleton is None:
            raise ValueError(f"method {method!r} needs a skeleton (its stage part groups)")
        groups = skeleton.stage_groups(int(method[0]))
        label, cluster, stats, status = solve_staged(
            problem, groups, stage_method, deadline, num_workers
        )
        objective = problem.objective(label, cluster)
        return make_solution(label, cluster, objective, -np.inf, status, start, stats)
    inst = instance_from_problem(problem)
    convert_s = time.perf_counter() - start
    result = solve_instance(inst, method, deadline, num_workers)
    result.stats["convert_s"] = convert_s
    label, cluster = labels_of(
        result.instance, problem.num_candidates, result.state, result.cluster
    )
    # The instance's value of the assignment is Problem.objective of the labelling (reductions
    # only drop suppressed states and zero-cost pairs), summed in another order.
    return make_solution(
        label, cluster, result.objective, result.bound, result.status, start, result.stats
    )


def _check_arguments(method: str, stage_method: str, time_limit: float) -> None:
    """Raise ``ValueError`` for an unknown method or stage method, or a non-positive limit."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    if stage_method not in ("exact", "heuristic"):
        raise ValueError(f"stage_method must be 'exact' or 'heuristic', got {stage_method!r}")
    if not time_limit > 0:
        raise ValueError(f"time_limit must be positive, got {time_limit}")
