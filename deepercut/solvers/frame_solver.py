"""One frame's candidates to its poses: build the problem, solve it, assemble people.

A :class:`FrameSolver` is the unit of work of the solver pool: it holds only plain data (the
pairwise model's arrays, the skeleton and settings), so it pickles small and is built once per
Ray actor; each call then receives a compact :class:`~deepercut.types.Candidates`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepercut.model.pairwise import PairwiseModel
from deepercut.skeleton import Skeleton
from deepercut.solvers import METHODS, solve
from deepercut.solvers.assemble import DEFAULT_MIN_PARTS, assemble_poses
from deepercut.types import Candidates, Poses, Problem, Solution


@dataclass
class FrameSolver:
    """Candidates → :class:`~deepercut.types.Poses` for one frame.

    Args:
        pairwise: the fitted pairwise model (costs of the SPLP).
        skeleton: part names and the part groups of the staged solvers.
        method: a :func:`deepercut.solvers.solve` method (``3stage``, ``2stage``, ``exact``,
            ``heuristic``, ``deepcut``).
        time_limit: wall-clock seconds for one frame's solve.
        fallback: method run when the solve hits its time limit or raises (``None``: none; a
            raise then propagates). On a time limit the fallback's answer replaces the
            time-limited one only when its objective is lower, since the latter is feasible.
        max_candidates: candidates kept per frame (highest scores), bounding the problem size.
        min_parts, min_score: people with fewer parts or a lower score sum are dropped (see
            :mod:`deepercut.solvers.assemble`).
        max_people: at most this many people per frame, the highest-scoring (``None``: all).

    ``Poses.solver`` reports ``status`` (the primary solve's, or ``error``), ``gap`` (``None``
    when no bound is known), ``ms`` (everything: problem, solve(s), assembly), ``method``,
    ``candidates`` (problem size), ``fallback`` (whether the fallback ran) and, on a fallback,
    ``used`` (the method whose answer was kept) and ``error`` (the exception, if any).

    Candidates with a non-finite position, score or offset (a custom detector's bug, a broken
    model) are dropped before the problem is built, as
    :func:`~deepercut.model.candidates.extract_candidates` drops such cells, and counted in
    ``Poses.solver["nonfinite"]`` (present only when non-zero): NaN costs would otherwise
    reach the solvers and corrupt every person of the frame.
    """

    pairwise: PairwiseModel
    skeleton: Skeleton
    method: str = "3stage"
    time_limit: float = 1.0
    fallback: str | None = "heuristic"
    max_candidates: int = 150
    min_parts: int = DEFAULT_MIN_PARTS
    min_score: float = 0.0
    max_people: int | None = None

    def __post_init__(self) -> None:
        for name in (self.method, self.fallback):
            if name is not None and name not in METHODS:
                raise ValueError(f"unknown solver method {name!r}; choose one of {METHODS}")
        if self.max_people is not None and self.max_people < 1:
            raise ValueError(f"max_people must be >= 1 or None, got {self.max_people}")
        if not 1 <= self.min_parts <= self.skeleton.num_parts:
            raise ValueError(
                f"min_parts must be between 1 and {self.skeleton.num_parts} (the skeleton's "
                f"parts), got {self.min_parts}"
            )
        if not self.time_limit > 0:
            raise ValueError(f"time_limit must be positive, got {self.time_limit}")
        if self.pairwise.num_parts != self.skeleton.num_parts:
            raise ValueError(
                f"pairwise model has {self.pairwise.num_parts} parts, skeleton "
                f"{self.skeleton.num_parts}"
            )

    @property
    def num_parts(self) -> int:
        return self.skeleton.num_parts

    def __call__(self, index: int, pts: float, candidates: Candidates) -> Poses:
        """Solve one frame."""
        started = time.perf_counter()
        report: dict[str, Any] = {"method": self.method, "fallback": False}
        candidates = _finite_only(candidates, report)
        if len(candidates) == 0:
            keypoints = np.full((0, self.num_parts, 3), np.nan, np.float32)
            report.update(status="optimal", gap=0.0, candidates=0)
        else:
            problem, kept = self.pairwise.build_problem(
                candidates, max_candidates=self.max_candidates
            )
            report["candidates"] = len(kept)
            solution = self._solve(problem, report)
            keypoints = assemble_poses(
                candidates,
                kept,
                solution,
                self.num_parts,
                min_parts=self.min_parts,
                min_score=self.min_score,
                max_people=self.max_people,
            )
        report["ms"] = round((time.perf_counter() - started) * 1e3, 3)
        return Poses(
            frame=int(index),
            pts=float(pts),
            keypoints=keypoints,
            track_id=np.full(len(keypoints), -1, np.int64),
            solver=report,
        )

    def _solve(self, problem: Problem, report: dict[str, Any]) -> Solution:
        primary: Solution | None = None
        try:
            primary = self._run(problem, self.method)
            report.update(status=primary.status, gap=_finite_or_none(primary.gap))
            if primary.status != "time_limit" or self.fallback is None:
                return primary
        except Exception as exc:  # any solver failure: the frame still gets poses
            if self.fallback is None:
                raise
            report.update(status="error", gap=None, error=f"{type(exc).__name__}: {exc}")
        report["fallback"] = True
        backup = self._run(problem, self.fallback)
        if primary is not None and primary.objective <= backup.objective:
            report["used"] = self.method
            return primary
        report["used"] = self.fallback
        return backup

    def _run(self, problem: Problem, method: str) -> Solution:
        return solve(problem, method, time_limit=self.time_limit, skeleton=self.skeleton)


def _finite_only(candidates: Candidates, report: dict[str, Any]) -> Candidates:
    """The candidates whose every number is finite; the count dropped goes into ``report``."""
    finite = (
        np.isfinite(candidates.xy).all(axis=1)
        & np.isfinite(candidates.score)
        & np.isfinite(candidates.offsets).all(axis=(1, 2))
    )
    if finite.all():
        return candidates
    report["nonfinite"] = int((~finite).sum())
    return candidates.select(np.flatnonzero(finite))


def _finite_or_none(value: float) -> float | None:
    """Gaps are ``inf`` when no bound exists; ``None`` keeps the stream JSON-friendly."""
    return float(value) if math.isfinite(value) else None
