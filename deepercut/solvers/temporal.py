"""Temporal multicut: a frame's clustering and its people's identities decided together.

The frame's SPLP (candidates, unaries, pairwise join costs) is extended by the people of the
previous ``K`` frames: every track seen there becomes one **super-node**, a fixed cluster that
must stay kept and never merges with another track — exactly the fixed earlier clusters of
DeeperCut's incremental optimisation, so the instance is built by the same
:func:`~deepercut.solvers.incremental.stage_instance`. The earlier poses enter the problem as
extra candidates of fixed part, decided and grouped by track; their join costs to the frame's
candidates are the learned temporal costs (:class:`~deepercut.model.temporal_costs.TemporalModel`;
per candidate and track, one edge: to the earlier pose, among the track's last ``K``, whose
prediction gives the lowest cost, so ``K`` does not scale the evidence). A super-node's cost to
a candidate is the sum over its members, as in incremental solving.

The instance is then solved like any other (reduce, decompose, heuristic, CP-SAT; ``exact``
unless the frame solver's method is ``heuristic``): a cluster holding a super-node continues
that track; any other cluster is a new person and gets a fresh id. Tracks not seen for ``K``
frames still link through their last ``K`` poses, moved on by their velocity, for up to
``memory`` frames (re-identification after short occlusions).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepercut.model.temporal_costs import (
    HistoryFrame,
    Observations,
    TemporalModel,
    history_frame,
    observations,
)
from deepercut.solvers.assemble import assemble_poses
from deepercut.solvers.components import solve_instance
from deepercut.solvers.frame_solver import FrameSolver
from deepercut.solvers.incremental import stage_instance
from deepercut.solvers.instance import instance_from_problem
from deepercut.types import Candidates, Poses, Problem, Solution


@dataclass
class TemporalSolution:
    """A frame solved jointly with the earlier tracks.

    Attributes:
        label, cluster: per frame candidate (problem node), as in
            :class:`~deepercut.types.Solution`; ``cluster`` ids are ≥ 0.
        cluster_track: track id of each cluster id (−1: a new person).
        status: ``optimal``, ``time_limit`` or ``heuristic``; ``objective``: of the joint
            instance; ``stats``: the solve's statistics.
    """

    label: np.ndarray
    cluster: np.ndarray
    cluster_track: dict[int, int]
    status: str
    objective: float
    stats: dict[str, Any] = field(default_factory=dict)


def temporal_problem(
    problem: Problem,
    candidates: Candidates,
    obs: Observations,
    model: TemporalModel,
) -> tuple[Problem, np.ndarray, np.ndarray]:
    """The frame's problem extended by the earlier poses' parts that have temporal edges.

    Args:
        problem: the frame's SPLP over ``candidates`` (the problem's nodes, in order).
        candidates: the problem's candidates.
        obs: the earlier poses.

    Returns:
        ``(problem, past_track, past_obs)``: nodes ``n..`` of the extended problem are earlier
        parts, of track ``past_track[k]`` and observation ``past_obs[k]``.
    """
    n, p = problem.num_candidates, problem.num_parts
    d, o, cost = model.link_costs(candidates, obs)
    # One link per candidate and track, the cheapest: the earlier pose (and prediction) that
    # explains the candidate best, one pose's worth of evidence whatever K is.
    key = d * (int(obs.track.max(initial=0)) + 1) + obs.track[o]
    order = np.lexsort((cost, key))
    first = np.ones(len(order), bool)
    first[1:] = key[order][1:] != key[order][:-1]
    best = np.sort(order[first])
    d, o, cost = d[best], o[best], cost[best]
    # One extra node per (observation, part) that has an edge.
    node_key = o * p + candidates.part[d]
    past_keys, past_of_edge = np.unique(node_key, return_inverse=True)
    past_obs, past_part = past_keys // p, past_keys % p
    m = len(past_keys)
    unary = np.full((n + m, p), np.inf)
    unary[:n] = problem.unary
    unary[n + np.arange(m), past_part] = 0.0
    link_cost = np.full((len(d), p, p), np.inf)
    link_cost[np.arange(len(d)), candidates.part[d], candidates.part[d]] = cost
    extended = Problem(
        unary=unary,
        edges=np.concatenate([problem.edges, np.stack([d, n + past_of_edge], 1)]).astype(np.int64),
        pair_cost=np.concatenate([problem.pair_cost, link_cost]),
    )
    return extended, obs.track[past_obs], past_obs


def solve_temporal(
    problem: Problem,
    candidates: Candidates,
    obs: Observations,
    model: TemporalModel,
    *,
    method: str = "exact",
    time_limit: float = 1.0,
) -> TemporalSolution:
    """Solve a frame's problem jointly with the earlier tracks (module docstring).

    Args:
        problem: the frame's SPLP over ``candidates``.
        obs: the earlier poses (:func:`~deepercut.model.temporal_costs.observations`).
        method: ``exact`` or ``heuristic``.
    """
    if method not in ("exact", "heuristic"):
        raise ValueError(f"temporal solving needs method 'exact' or 'heuristic', got {method!r}")
    deadline = time.perf_counter() + time_limit
    n = problem.num_candidates
    extended, past_track, _ = temporal_problem(problem, candidates, obs, model)
    full = instance_from_problem(extended)
    tracks = np.unique(past_track)
    # Decided: every earlier part node, in the cluster of its track (0..T−1).
    node_of = np.full(extended.num_candidates, -1, np.int64)
    node_of[full.node_ref] = np.arange(full.num_nodes)
    past_nodes = node_of[n + np.arange(len(past_track))]
    state = np.full(full.num_nodes, -1, np.int64)
    cluster = np.full(full.num_nodes, -1, np.int64)
    state[past_nodes] = full.state_start[past_nodes]  # their one state
    cluster[past_nodes] = np.searchsorted(tracks, past_track)
    new_nodes = np.flatnonzero(full.node_ref < n)
    inst = stage_instance(full, new_nodes, state, cluster, len(tracks))
    result = solve_instance(inst, method, deadline)
    red = result.instance
    label = np.full(n, -1, np.int64)
    out_cluster = np.full(n, -1, np.int64)
    kept = np.flatnonzero(result.state >= 0)
    is_super = red.node_ref[kept] < 0
    cluster_track = {
        int(c): int(tracks[-1 - ref])
        for c, ref in zip(result.cluster[kept[is_super]], red.node_ref[kept[is_super]], strict=True)
    }
    cand = kept[~is_super]
    label[red.node_ref[cand]] = red.state_label[result.state[cand]]
    out_cluster[red.node_ref[cand]] = result.cluster[cand]
    return TemporalSolution(
        label=label,
        cluster=out_cluster,
        cluster_track=cluster_track,
        status=result.status,
        objective=result.objective,
        stats={**result.stats, "tracks": len(tracks), "links": len(past_track)},
    )


class TemporalFrameSolver:
    """A stateful frame solver for ``deepercut run --temporal K``: candidates → poses with
    track ids, each frame solved jointly with the people of the previous ``K`` frames.

    Frames must come in increasing index order (the engine runs it in the driver; it cannot be
    spread over Ray actors, which would each see only some frames). :meth:`reset` starts a new
    stream.

    Args:
        frame_solver: supplies the pairwise model, skeleton and settings (``method``
            ``heuristic`` solves heuristically, anything else exactly; ``time_limit``,
            ``max_candidates``, ``min_parts``, ``min_score``).
        frames: ``K``, earlier frames linked to.
        model: the temporal cost model or its ``.npz`` path; default: the bundled one.
        memory: frames a track stays linkable (re-identification window): a track unseen for
            more than ``K`` frames links through its last ``K`` poses, moved on by its
            velocity, at the cost model's largest lag.
        min_hits: birth hysteresis, as in the online tracker: a new person is linked
            internally at once but reported with id −1 until seen in ``min_hits`` consecutive
            frames (at once on a stream's first frame, given ``birth_parts`` parts), so
            one-frame false people get no id;
            a tentative person missed for a frame is forgotten.
        birth_parts, birth_score: fewest parts and lowest mean keypoint score of a tentative
            person to be linked on and confirmed (a clutter filter).
    """

    def __init__(
        self,
        frame_solver: FrameSolver,
        frames: int,
        model: TemporalModel | str | Path | None = None,
        min_hits: int = 2,
        memory: int = 30,
        birth_parts: int = 4,
        birth_score: float = 0.5,
    ) -> None:
        if frames < 1:
            raise ValueError(f"temporal linking needs K >= 1 earlier frames, got {frames}")
        self.frame_solver = frame_solver
        self.frames = frames
        self.model = model if isinstance(model, TemporalModel) else TemporalModel.load(model)
        if self.model.num_parts != frame_solver.num_parts:
            raise ValueError(
                f"temporal model has {self.model.num_parts} parts, the skeleton "
                f"{frame_solver.num_parts}"
            )
        if min_hits < 1:
            raise ValueError(f"min_hits must be >= 1, got {min_hits}")
        self.min_hits = min_hits
        self.birth_parts = birth_parts
        self.birth_score = birth_score
        self.method = "heuristic" if frame_solver.method == "heuristic" else "exact"
        self.history: deque[HistoryFrame] = deque(maxlen=max(frames, memory))  # internal ids
        self.reset()

    def reset(self) -> None:
        """Forget the history (a new stream); ids start again from 0."""
        self.history.clear()
        self.last_index: int | None = None
        self._next_internal = 0
        self._next_public = 0
        self._hits: dict[int, int] = {}
        self._public: dict[int, int] = {}

    def __call__(self, index: int, pts: float, candidates: Candidates) -> Poses:
        """Solve one frame; returns its poses with track ids."""
        if self.last_index is not None and index <= self.last_index:
            raise ValueError(f"temporal solver: frame {index} after frame {self.last_index}")
        first = self.last_index is None
        self.last_index = index
        started = time.perf_counter()
        fs = self.frame_solver
        p = fs.num_parts
        report: dict[str, Any] = {"method": f"temporal-{self.method}", "fallback": False}
        keypoints = np.full((0, p, 3), np.nan, np.float32)
        ids = np.zeros(0, np.int64)
        if len(candidates):
            problem, kept = fs.pairwise.build_problem(candidates, max_candidates=fs.max_candidates)
            sub = candidates.select(kept)
            obs = observations(
                list(self.history), index, p, self.model.min_scale, per_track=self.frames
            )
            sol = solve_temporal(
                problem, sub, obs, self.model, method=self.method, time_limit=fs.time_limit
            )
            report.update(
                status=sol.status,
                gap=0.0 if sol.status == "optimal" else None,
                candidates=len(kept),
                tracks=sol.stats["tracks"],
            )
            keypoints, ids = self._people(candidates, kept, sol)
        else:
            report.update(status="optimal", gap=0.0, candidates=0)
        previous = set(self.history[-1].ids.tolist()) if self.history else set()
        public = np.full(len(ids), -1, np.int64)
        found = np.isfinite(keypoints[..., 0])
        parts = found.sum(1)
        score = np.where(found, keypoints[..., 2], 0.0).sum(1) / np.maximum(parts, 1)
        # Only a solid person may become a track: enough parts, detected confidently.
        solid = (parts >= self.birth_parts) & (score >= self.birth_score)
        for m, track in enumerate(ids.tolist()):
            self._hits[track] = self._hits.get(track, 0) + 1 if track in previous else 1
            if track not in self._public and not solid[m]:
                self._hits[track] = 0
            confirm = first and solid[m]
            if track not in self._public and (confirm or self._hits[track] >= self.min_hits):
                self._public[track], self._next_public = self._next_public, self._next_public + 1
            public[m] = self._public.get(track, -1)
        self.history.append(history_frame(index, ids, keypoints))
        # Confirmed people stay linkable while in the history. A tentative one is forgotten
        # when missed for a frame, and is only remembered when solid: clusters of clutter
        # would otherwise attract the next frame's clutter and persist.
        current = set(ids[solid].tolist())
        for k, past in enumerate(self.history):
            keep = [t in self._public or t in current for t in past.ids.tolist()]
            self.history[k] = past.select(np.array(keep, bool))
        live = {t for h in self.history for t in h.ids.tolist()}
        self._hits = {t: h for t, h in self._hits.items() if t in live}
        self._public = {t: i for t, i in self._public.items() if t in live}
        report["ms"] = round((time.perf_counter() - started) * 1e3, 3)
        return Poses(
            frame=int(index), pts=float(pts), keypoints=keypoints, track_id=public, solver=report
        )

    def _people(
        self, candidates: Candidates, kept: np.ndarray, sol: TemporalSolution
    ) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints [M, P, 3] and internal track ids [M] of the clusters, ordered like
        :func:`~deepercut.solvers.assemble.assemble_poses` (descending total score)."""
        fs = self.frame_solver
        rows, ids, totals = [], [], []
        for c in np.unique(sol.cluster[sol.label >= 0]).tolist():
            mine = sol.cluster == c
            one = Solution(
                np.where(mine, sol.label, -1), np.where(mine, 0, -1), math.nan, -math.inf,
                math.inf, "heuristic", 0.0,
            )
            kp = assemble_poses(
                candidates, kept, one, fs.num_parts, min_parts=fs.min_parts,
                min_score=fs.min_score,
            )
            if len(kp) == 0:
                continue
            rows.append(kp[0])
            totals.append(float(np.nansum(kp[0, :, 2])))
            track = sol.cluster_track.get(c, -1)
            if track < 0:
                track, self._next_internal = self._next_internal, self._next_internal + 1
            ids.append(track)
        if not rows:
            return np.full((0, fs.num_parts, 3), np.nan, np.float32), np.zeros(0, np.int64)
        order = np.argsort(-np.array(totals), kind="stable")[: fs.max_people]
        return np.stack(rows)[order], np.array(ids, np.int64)[order]
