"""The engine's Ray actors (solver and detector actors): connecting to Ray, the health of
their nodes, and the replacement of an actor that died.

Used by :mod:`deepercut.engine.pool` (solver actors) and :mod:`deepercut.engine.sharded`
(detector actors); the ``ray`` module is imported only when actors are asked for.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: How often a driver waiting for actors checks their health (seconds).
HEALTH_INTERVAL_S = 1.0


def replace_actor(
    ray: Any,
    actors: list[Any],
    nodes: list[str | None],
    slot: int,
    cause: BaseException,
    *,
    kind: str,
    restarts: int,
    max_restarts: int,
    make: Callable[[], Any],
    detail: str = "",
) -> bool:
    """Put a new actor (``make()``) in ``slot`` of ``actors`` in place of one that died of
    ``cause``; its node in ``nodes`` becomes unknown until it runs.

    Args:
        kind: ``solver`` or ``detector``, for messages.
        restarts: replacements so far; ``max_restarts``: how many are allowed.
        detail: appended to the warning (e.g. what is resubmitted).

    Returns:
        ``False``, replacing nothing, when the slot's Ray node died (or no node is left): a
        replacement would never start there, and what is sent to it would go to the object
        store of a dead node (Ray kills a driver whose object is lost). The caller retires
        the slot or gives up.

    Raises:
        RuntimeError: ``max_restarts`` replacements were made already.
    """
    if restarts >= max_restarts:
        raise RuntimeError(
            f"{kind} actors died {restarts + 1} times; giving up. Last error: {cause}"
        )
    if node_died(ray, nodes[slot], nodes):
        return False
    log.warning("%s actor %d died (%s); replacing it%s", kind, slot, type(cause).__name__, detail)
    ray.kill(actors[slot], no_restart=True)
    actors[slot] = make()
    nodes[slot] = None
    return True


class RayUnavailable(RuntimeError):
    """Ray cannot be imported, or a local Ray cannot be started (a caller that asked for no
    particular cluster may then solve in-process)."""


def dead_ray_nodes(ray: Any, known: list[str | None]) -> set[str | None]:
    """Ids of the cluster's nodes that Ray reports dead; with ``None`` (an actor whose node is
    not known yet) when no node is alive, and all of ``known`` when Ray cannot tell (its GCS
    is gone)."""
    try:
        nodes = ray.nodes()
    except Exception as exc:
        log.debug("ray.nodes() failed: %s", exc)
        return {None, *known}
    dead: set[str | None] = {n["NodeID"] for n in nodes if not n.get("Alive", False)}
    if not any(n.get("Alive", False) for n in nodes):
        dead.add(None)
    return dead


#: How long an actor's death is given to show up as its node's death in Ray's node table.
NODE_DEATH_GRACE_S = 2.0


def node_died(ray: Any, node: str | None, known: list[str | None]) -> bool:
    """Whether ``node`` (where an actor just died) is dead, or no node is left, waiting up to
    :data:`NODE_DEATH_GRACE_S` for Ray to notice (the actor's death can come first)."""
    deadline = time.monotonic() + NODE_DEATH_GRACE_S
    while True:
        dead = dead_ray_nodes(ray, known)
        if node in dead or None in dead:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def node_id() -> str:
    """The id of the Ray node this (actor) process runs on."""
    import ray

    return ray.get_runtime_context().get_node_id()


def import_ray(needed_for: str) -> Any:
    """The ``ray`` module, or a :class:`RayUnavailable` saying what needs it."""
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailable(
            f"{needed_for} needs Ray, which cannot be imported ({exc}); pip install ray, or "
            "solve in-process"
        ) from exc
    return ray


def connect_ray(
    address: str | None,
    *,
    num_cpus: float,
    log_to_driver: bool = False,
    ray_init_kwargs: dict[str, Any] | None = None,
) -> bool:
    """Make sure Ray is initialised: an already initialised Ray is used as it is; otherwise
    connect to ``address``, or start a local Ray with ``num_cpus`` CPUs (and its GPUs).

    Returns:
        Whether this call started or connected Ray (the caller then shuts it down).
    """
    ray = import_ray("a Ray cluster")
    if ray.is_initialized():
        return False
    init: dict[str, Any] = {
        "log_to_driver": log_to_driver,
        "logging_level": logging.WARNING,
        **(ray_init_kwargs or {}),
    }
    if address:
        _check_reachable(address)
        init["address"] = address
    else:
        # "local": a new Ray of our own, never a stale or foreign one found on disk.
        init.setdefault("address", "local")
        init.setdefault("num_cpus", num_cpus)
        init.setdefault("include_dashboard", False)
        # Ray starts its workers 15 nicer than the driver (RayConfig worker_niceness): on a
        # busy machine the solver actors, half of the pipeline, then get a few % of a core and
        # miss their start-up and stall timeouts. Our own Ray keeps them at the driver's.
        init["_system_config"] = {"worker_niceness": 0, **(init.get("_system_config") or {})}
    try:
        ray.init(**init)
    except ConnectionError as exc:
        # Ray's message hides the reason (often token authentication) in the cause.
        cause = f" ({exc.__cause__})" if exc.__cause__ else ""
        raise RuntimeError(f"cannot connect to Ray at {address!r}: {exc}{cause}") from exc
    except Exception as exc:
        if address:
            raise
        # A local Ray fails in many ways (no writable temp dir, ports, a broken install);
        # stop whatever part of it did start.
        with contextlib.suppress(Exception):
            ray.shutdown()
        raise RayUnavailable(f"cannot start a local Ray: {type(exc).__name__}: {exc}") from exc
    return True


def _check_reachable(address: str) -> None:
    """Fail fast on a ``HOST:PORT`` nobody listens on (``ray.init`` would retry for minutes)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", or a form Ray resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5.0).close()
    except OSError as exc:
        raise RuntimeError(f"cannot reach the Ray cluster at {address!r}: {exc}") from exc
