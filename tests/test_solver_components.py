"""The solvers' shared result step (deepercut.solvers.components): gap, bound and cluster
numbering of a :class:`Solution`, checked on hand-made assignments."""

from __future__ import annotations

import time

import numpy as np
import pytest

from deepercut.solvers.components import make_solution
from deepercut.types import Solution


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
