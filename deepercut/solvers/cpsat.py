"""Bulk CP-SAT model text and a thin solve wrapper.

Building a model constraint by constraint through the ``cp_model`` API costs ~10 µs per
constraint in Python; writing the model as protobuf *text* from numpy arrays (a compiled
kernel prints each block of same-shaped constraints) and parsing it in C++ is several times
faster, and lazy rounds append constraints with ``merge_text_format``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import int64, njit, uint8
from ortools.sat.python import cp_model_helper as cmh


@njit(uint8[::1](int64[:, ::1], uint8[::1], uint8[::1]), cache=True)
def _print_rows(rows: np.ndarray, prefix: np.ndarray, suffix: np.ndarray) -> np.ndarray:
    """ASCII text ``prefix r0,r1,... suffix`` per row of integers (decimal, no spaces)."""
    count, arity = rows.shape
    out = np.empty(count * (len(prefix) + len(suffix) + arity * 21), np.uint8)
    digits = np.empty(20, np.uint8)
    k = 0
    for i in range(count):
        out[k : k + len(prefix)] = prefix
        k += len(prefix)
        for j in range(arity):
            if j:
                out[k] = 44  # ','
                k += 1
            value = rows[i, j]
            if value < 0:
                out[k] = 45  # '-'
                k += 1
                value = -value
            n = 0
            while True:
                digits[n] = 48 + value % 10
                n += 1
                value //= 10
                if value == 0:
                    break
            for m in range(n):
                out[k + m] = digits[n - 1 - m]
            k += n
        out[k : k + len(suffix)] = suffix
        k += len(suffix)
    return out[:k]


def print_rows(rows: np.ndarray, prefix: str, suffix: str) -> str:
    """``prefix`` + comma-separated integers + ``suffix`` per row of ``rows`` (2-D)."""
    rows = np.ascontiguousarray(rows, np.int64)
    if rows.size == 0:
        return ""
    text = _print_rows(
        rows, np.array(bytearray(prefix.encode())), np.array(bytearray(suffix.encode()))
    )
    return text.tobytes().decode()


def variables_text(lower: np.ndarray) -> str:
    """Boolean variables, one per entry; ``lower`` 1 fixes the variable to true."""
    parts = np.where(np.asarray(lower) > 0, "variables{domain:[1,1]}", "variables{domain:[0,1]}")
    return "".join(parts.tolist())


def boolean_model(num_vars: int, lower: np.ndarray) -> cmh.CpModelProto:
    """A model of ``num_vars`` Boolean variables; ``lower`` 1 fixes one to true.

    Built by doubling a one-variable model with ``merge_from`` (C++ copies, ~5x cheaper than
    parsing the text of thousands of variables); the fixed ones then get domain ``[1, 1]``.
    """
    out = cmh.CpModelProto()
    block = cmh.CpModelProto()
    block.parse_text_format("variables{domain:[0,1]}")
    n = num_vars
    while n:
        if n & 1:
            out.merge_from(block)
        n >>= 1
        if n:
            doubled = cmh.CpModelProto()
            doubled.copy_from(block)
            doubled.merge_from(block)
            block = doubled
    for v in np.flatnonzero(np.asarray(lower) > 0).tolist():
        domain = out.variables[v].domain
        domain.clear()
        domain.extend([1, 1])
    return out


def _is_clause(coeffs: Sequence[int], lo: int, hi: int) -> bool:
    """``Σ_{+} y − Σ_{−} y ≤ #(+) − 1`` over booleans, i.e. the clause ``∨ ¬y₊ ∨ y₋``."""
    pos = sum(1 for c in coeffs if c == 1)
    neg = sum(1 for c in coeffs if c == -1)
    return pos + neg == len(coeffs) and lo <= -neg and hi == pos - 1


def linear_block(rows: np.ndarray, coeffs: Sequence[int], lo: int, hi: int) -> str:
    """Constraints ``lo ≤ Σ_k coeffs[k]·rows[i, k] ≤ hi``, one per row of variable indices.

    Written as clauses when they are ones (shorter text, and CP-SAT's presolve would convert
    them anyway).
    """
    rows = np.asarray(rows, np.int64)
    if rows.size == 0:
        return ""
    if _is_clause(coeffs, lo, hi):
        literals = np.where(np.asarray(coeffs) > 0, -rows - 1, rows)
        return print_rows(literals, "constraints{bool_or{literals:[", "]}}")
    suffix = f"] coeffs:[{','.join(str(int(c)) for c in coeffs)}] domain:[{lo},{hi}]}}}}"
    return print_rows(rows, "constraints{linear{vars:[", suffix)


def linear(variables: Sequence[int], coeffs: Sequence[int], lo: int, hi: int) -> str:
    """One linear constraint of any arity (a clause when it is one)."""
    if _is_clause(coeffs, lo, hi):
        literals = [-v - 1 if c > 0 else v for v, c in zip(variables, coeffs, strict=True)]
        return f"constraints{{bool_or{{literals:[{','.join(map(str, literals))}]}}}}"
    return (
        f"constraints{{linear{{vars:[{','.join(map(str, variables))}] "
        f"coeffs:[{','.join(map(str, coeffs))}] domain:[{lo},{hi}]}}}}"
    )


def implies_all_false(literal: int, variables: np.ndarray) -> str:
    """``literal`` false ⇒ every variable false (one enforced ``bool_and``)."""
    negated = (-np.asarray(variables) - 1).tolist()
    return (
        f"constraints{{enforcement_literal:[{-literal - 1}] "
        f"bool_and{{literals:[{','.join(map(str, negated))}]}}}}"
    )


def objective_text(variables: np.ndarray, coeffs: np.ndarray) -> str:
    """Minimise ``Σ coeffs·variables`` (integer coefficients; zeros are left out)."""
    nz = coeffs != 0
    return (
        f"objective{{vars:[{print_rows(variables[None, nz], '', '')}] "
        f"coeffs:[{print_rows(coeffs[None, nz], '', '')}]}}"
    )


def hint_text(values: np.ndarray) -> str:
    """A complete solution hint (value of every variable)."""
    return (
        f"solution_hint{{vars:[{print_rows(np.arange(len(values))[None], '', '')}] "
        f"values:[{print_rows(np.asarray(values)[None], '', '')}]}}"
    )


@dataclass
class Response:
    """What a solve returned: ``status`` is ``optimal``, ``feasible`` (stopped early with a
    solution), or ``unknown`` (stopped early without one); ``bound`` is a proven lower bound on
    the (integer) objective, ``-inf`` when there is none."""

    status: str
    solution: np.ndarray
    bound: float
    objective: float
    seconds: float


def solve_proto(
    proto: cmh.CpModelProto,
    time_limit: float,
    num_workers: int,
    linearization_level: int = 2,
    presolve: bool = True,
    lp_all_constraints: bool = False,
    prove_hint: bool = False,
) -> Response:
    """Solve a model proto.

    ``linearization_level=2`` puts every constraint (transitivity, x/y coupling) into the LP
    relaxation; CP-SAT's default level leaves them out and then needs far more search.
    ``presolve=False`` skips CP-SAT's presolve (worth it on large dense models, where it costs
    more than it removes). ``lp_all_constraints`` puts every constraint into the LP from the
    start instead of adding violated ones lazily: on dense models whose cuts are mostly tight,
    the lazy pool's repeated scans cost more than the larger LP. ``prove_hint`` tunes the search
    for a model whose hint is usually optimal and whose root LP proves it (the cycle models).

    Raises:
        RuntimeError: the model is invalid or infeasible (the solvers' models never are).
    """
    params = cmh.SatParameters()
    params.num_workers = num_workers
    params.linearization_level = linearization_level
    params.max_time_in_seconds = max(time_limit, 1e-3)
    # These models are small and easy: symmetry detection, probing and repeated presolve
    # cost more than they save (~35 % of the solve time on MPII-like components).
    params.symmetry_level = 0
    params.cp_model_probing_level = 0
    params.max_presolve_iterations = 1
    params.cp_model_presolve = presolve
    if prove_hint:
        # What is left is the bound: search up from it, no SAT inprocessing, and of CP-SAT's
        # own cuts only zero-half ones (the odd cycles that close the triangles' LP gap; the
        # other families find nothing on these models): ~12 % less CP-SAT time on hard frames.
        params.use_objective_lb_search = True
        params.use_sat_inprocessing = False
        params.add_mir_cuts = False
        params.add_cg_cuts = False
        params.add_clique_cuts = False
        params.add_lin_max_cuts = False
        params.add_rlt_cuts = False
    params.add_lp_constraints_lazily = not lp_all_constraints
    # A fresh wrapper per solve: reusing one across solves is not supported by OR-tools.
    wrapper = cmh.SolveWrapper()
    wrapper.set_parameters(params)
    response = wrapper.solve(proto)
    status = response.status
    if status == cmh.CpSolverStatus.OPTIMAL:
        name = "optimal"
    elif status == cmh.CpSolverStatus.FEASIBLE:
        name = "feasible"
    elif status == cmh.CpSolverStatus.UNKNOWN:
        name = "unknown"
    else:
        raise RuntimeError(f"CP-SAT returned {status} for an SPLP model")
    solution = np.array(list(response.solution), np.int64)  # 2x faster than np.fromiter
    return Response(
        status=name,
        solution=solution,
        # Stopped before the search (e.g. in presolve), the reported bound is meaningless.
        bound=response.best_objective_bound if name != "unknown" else -np.inf,
        objective=response.objective_value,
        seconds=response.wall_time,
    )
