"""SPLP solvers: ``from deepercut.solvers import Problem, Solution, solve``.

:func:`solve` methods: ``exact`` (CP-SAT with lazy cycle cuts, all parts at once),
``heuristic`` (contraction + local search), ``3stage`` / ``2stage`` (DeeperCut's incremental
optimisation), ``deepcut`` (the original DeepCut ILP, the baseline).

Modules: :mod:`.instance` (the internal sparse form, exact preprocessing, decomposition),
:mod:`.heuristic`, :mod:`.exact` and :mod:`.cpsat` (model and lazy loop), :mod:`.tiny`
(enumeration of tiny components), :mod:`.incremental`, :mod:`.deepcut`, :mod:`.components`
(shared flow), :mod:`.brute` (reference solver for tests).
"""

from deepercut.solvers.api import METHODS, solve
from deepercut.types import Problem, Solution

__all__ = ["METHODS", "Problem", "Solution", "solve"]
