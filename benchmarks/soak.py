"""Soak: live mode on a looping source fed faster than the engine can go, for a long time.

First the engine's sustainable rate is measured in the same process: a file-mode run of
``--calibrate-frames`` frames of the video (nothing dropped) gives its throughput. Then the video
is played as a virtual camera that loops forever (``realtime=RATE`` and a reconnection policy
that reopens the file at its end) at ``--overload`` × that throughput (1.5 by default), for
``--minutes`` (30 by default). A sampler thread records every ``--interval`` seconds:

* resident memory (RSS) of the driver and of each Ray solver actor;
* frames in flight: received by the engine and not yet handed back, plus the source's queue;
* latency percentiles (frame received → poses handed back) of the frames of the interval;
* frames offered by the source, handed back, and dropped (by the source and by the pool).

It writes the samples and a summary to ``--json`` and a four-panel plot to ``--png``
(matplotlib, a benchmark-only dependency). Memory comes from psutil when installed, else from
``/proc/<pid>/status``.

    python benchmarks/soak.py [--minutes 30] [--overload 1.5] [--workers 1]
        [--input-size 240x320] [--batch-size 4] [--interval 10]
        [--json benchmarks/results/soak.json] [--png benchmarks/results/soak.png]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import machine  # benchmarks/engine.py: what it ran on

from deepercut.cli.args import parse_hw
from deepercut.engine.pipeline import Engine
from deepercut.sources import Reconnect, Source, open_source

ROOT = Path(__file__).resolve().parent.parent
VIDEO = ROOT / "examples" / "data" / "sample.mp4"
RESULTS = ROOT / "benchmarks" / "results"


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (nan when it is gone)."""
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except ImportError:
        pass
    except Exception:  # psutil.NoSuchProcess and friends
        return math.nan
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


@dataclass
class Probe:
    """What the consumer loop shares with the sampler thread."""

    handed_back: int = 0
    solved: int = 0
    latencies: list[float] = field(default_factory=list)  # swapped out by each sample


class Sampler:
    """Samples memory, in-flight frames, latency and drops every ``interval`` seconds."""

    def __init__(
        self, engine: Engine, source: Source, probe: Probe, actor_pids: list[int], interval: float
    ) -> None:
        self.engine, self.source, self.probe = engine, source, probe
        self.actor_pids = actor_pids
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)

    def start(self) -> None:
        self.sample()  # t = 0
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        latencies, self.probe.latencies = self.probe.latencies, []
        src = self.source.stats
        pool = self.engine.pool
        lat = np.array(latencies) * 1e3
        self.samples.append(
            {
                "t_s": round(time.monotonic() - self._t0, 2),
                "rss_driver_mb": round(rss_mb(os.getpid()), 1),
                "rss_actors_mb": [round(rss_mb(p), 1) for p in self.actor_pids],
                "offered": src.decoded,  # frames the virtual camera produced
                "delivered": src.delivered,  # frames the engine received
                "handed_back": self.probe.handed_back,
                "solved": self.probe.solved,
                "dropped_source": src.dropped,
                "dropped_solver": self.probe.handed_back - self.probe.solved,
                "lost_outage": src.lost_outage,
                "reconnects": src.reconnects,
                "in_flight": src.delivered - self.probe.handed_back,
                "source_queue": len(self.source._background.queue),
                "pool_window": pool.window,
                "pool_pending": pool.pending,
                "load_1min": round(os.getloadavg()[0], 2),  # other work on the machine
                "latency_ms": {
                    "n": int(lat.size),
                    "p50": _q(lat, 0.5),
                    "p90": _q(lat, 0.9),
                    "p99": _q(lat, 0.99),
                    "max": _q(lat, 1.0),
                },
            }
        )


def _shown(path: Path) -> str:
    """A path relative to the repository when inside it."""
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def _q(values: np.ndarray, q: float) -> float | None:
    return round(float(np.quantile(values, q)), 1) if values.size else None


def calibrate(engine: Engine, video: Path, frames: int) -> dict[str, Any]:
    """The sustainable rate: file-mode throughput (nothing dropped) over ``frames`` frames."""
    handed = sum(1 for _ in engine.run_frames(str(video), max_frames=frames))
    stats = engine.stats
    return {
        "frames": handed,
        "fps": round(stats.fps, 3),
        "wall_s": round(stats.wall_s, 2),
        "latency_ms": {q: round(stats.latency_ms(v), 1) for q, v in (("p50", 0.5), ("p99", 0.99))},
    }


def soak(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    info = machine()
    with Engine(
        args.model,
        solver=args.solver,
        workers=args.workers,
        batch_size=args.batch_size,
        input_hw=args.input_size,
        time_limit=args.time_limit,
    ) as engine:
        import ray

        actor_pids = ray.get([a.ready.remote() for a in engine.pool.actors]) if args.workers else []
        print(f"calibrating on {args.calibrate_frames} frames (file mode)...", flush=True)
        calibration = calibrate(engine, args.video, args.calibrate_frames)
        rate = args.rate or args.overload * calibration["fps"]
        print(
            f"sustainable {calibration['fps']:.2f} fps -> feeding {rate:.2f} fps for "
            f"{args.minutes:g} min",
            flush=True,
        )
        # Reopened at its end: an endless virtual camera. Index and pts carry on across loops.
        looping = Reconnect(attempts=5, delay=0.01, max_delay=0.1)
        probe = Probe()
        with open_source(
            args.video, realtime=rate, reconnect=looping, queue_size=args.batch_size
        ) as source:
            sampler = Sampler(engine, source, probe, actor_pids, args.interval)
            deadline = time.monotonic() + 60 * args.minutes
            last_print = time.monotonic()
            sampler.start()
            results = engine.run_frames(source)
            try:
                for result in results:
                    probe.handed_back += 1
                    if result.poses is not None:
                        probe.solved += 1
                        probe.latencies.append(result.latency_s)
                    now = time.monotonic()
                    if now - last_print >= 60:
                        last_print = now
                        s = sampler.samples[-1]
                        print(
                            f"{s['t_s'] / 60:5.1f} min: {engine.stats.status_line()}, "
                            f"in flight {s['in_flight']}, RSS {s['rss_driver_mb']:.0f} MB",
                            flush=True,
                        )
                    if now >= deadline:
                        break
            finally:
                sampler.stop()  # the last sample before the abandoned run is discarded
                results.close()
            final_stats = engine.stats.to_dict()
    return {
        "machine": info,
        "settings": {
            "video": _shown(args.video),
            "model": args.model or "bundled",
            "input_hw": list(engine.input_hw),
            "solver": args.solver,
            "time_limit": args.time_limit,
            "workers": args.workers,
            "batch_size": args.batch_size,
            "torch_threads": args.threads,
            "minutes": args.minutes,
            "overload": args.overload,
            "rate_fps": round(rate, 3),
            "interval_s": args.interval,
            "note": args.note,
        },
        "calibration": calibration,
        "engine": final_stats,
        "samples": sampler.samples,
        "summary": summarise(sampler.samples, engine, args),
    }


def summarise(samples: list[dict[str, Any]], engine: Engine, args: argparse.Namespace) -> dict:
    """Totals and the boundedness checks: memory slope, in-flight and latency maxima."""
    t = np.array([s["t_s"] for s in samples]) / 60
    rss = np.array([s["rss_driver_mb"] for s in samples])
    actors = np.array([sum(s["rss_actors_mb"]) for s in samples])
    half = t >= t[-1] / 2
    slope = float(np.polyfit(t[half], rss[half], 1)[0]) if half.sum() >= 3 else math.nan
    actor_slope = float(np.polyfit(t[half], actors[half], 1)[0]) if half.sum() >= 3 else math.nan
    last = samples[-1]
    in_flight = [s["in_flight"] for s in samples]
    p99 = [s["latency_ms"]["p99"] for s in samples if s["latency_ms"]["p99"] is not None]
    # Frames the engine can hold by construction: the prefetch hand-off (1 queued + 1 in hand),
    # a batch being filled, one detected batch queued and one being detected, the pool's
    # window and pending queue, and the batch being submitted.
    batch = args.batch_size
    pool = engine.pool
    bound = 2 + 4 * batch + pool.max_in_flight + pool.max_pending
    offered = last["offered"]
    dropped = last["dropped_source"] + last["dropped_solver"]
    return {
        "minutes": round(float(t[-1]), 2),
        "offered": offered,
        "handed_back": last["handed_back"],
        "solved": last["solved"],
        "dropped_source": last["dropped_source"],
        "dropped_solver": last["dropped_solver"],
        "drop_share": round(dropped / offered, 4) if offered else None,
        "lost_outage": last["lost_outage"],
        "loops": last["reconnects"],
        "solved_fps": round(last["solved"] / (60 * float(t[-1])), 3) if t[-1] > 0 else None,
        # delivered + dropped by the source + still queued there = offered (each frame counted
        # once): the drop counters account for every frame.
        "accounting_gap": offered
        - last["delivered"]
        - last["dropped_source"]
        - last["source_queue"],
        "rss_driver_mb": {"first": float(rss[0]), "max": float(rss.max()), "last": float(rss[-1])},
        "rss_driver_slope_mb_per_min_second_half": round(slope, 3),
        "rss_actors_mb": {
            "first": float(actors[0]),
            "max": float(actors.max()),
            "last": float(actors[-1]),
        },
        "rss_actors_slope_mb_per_min_second_half": round(actor_slope, 3),
        "in_flight_max": max(in_flight),
        "in_flight_bound": bound,
        "latency_p99_ms_max_interval": max(p99) if p99 else None,
        "latency_p99_ms_median_interval": float(np.median(p99)) if p99 else None,
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["samples"]
    t = np.array([s["t_s"] for s in samples]) / 60
    fig, axes = plt.subplots(4, 1, figsize=(9, 11), sharex=True)
    ax = axes[0]
    ax.plot(t, [s["rss_driver_mb"] for s in samples], label="driver")
    for k in range(len(samples[0]["rss_actors_mb"])):
        ax.plot(t, [s["rss_actors_mb"][k] for s in samples], label=f"solver actor {k}")
    ax.set_ylabel("RSS (MB)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right")
    ax = axes[1]
    ax.plot(t, [s["in_flight"] for s in samples], label="received, not handed back")
    ax.plot(t, [s["source_queue"] for s in samples], label="source queue")
    ax.plot(t, [s["pool_window"] + s["pool_pending"] for s in samples], label="solver pool")
    ax.axhline(result["summary"]["in_flight_bound"], color="grey", ls="--", label="bound")
    ax.set_ylabel("frames in flight")
    ax.legend(loc="upper right")
    ax = axes[2]
    for q in ("p50", "p90", "p99"):
        ax.plot(t, [s["latency_ms"][q] or np.nan for s in samples], label=q)
    ax.set_ylabel("latency (ms)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper right")
    ax = axes[3]
    dt = np.diff(t * 60)
    for key, label in (("offered", "offered"), ("solved", "solved")):
        counts = np.diff([s[key] for s in samples])
        ax.plot(t[1:], counts / dt, label=f"{label} fps")
    drops = np.diff([s["dropped_source"] + s["dropped_solver"] for s in samples])
    ax.plot(t[1:], drops / dt, label="dropped fps")
    ax.set_ylabel("frames / s")
    ax.set_xlabel("minutes")
    ax.legend(loc="lower right")
    s = result["settings"]
    fig.suptitle(
        f"Soak: live mode at {s['overload']}× the sustainable rate ({s['rate_fps']:.1f} fps), "
        f"{s['workers']} solver actor(s), {s['input_hw'][0]}×{s['input_hw'][1]} input"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=VIDEO)
    parser.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    parser.add_argument("--minutes", type=float, default=30.0, help="live-mode duration")
    parser.add_argument("--overload", type=float, default=1.5, help="× the sustainable rate")
    parser.add_argument("--rate", type=float, default=None, help="feed rate (fps), overrides")
    parser.add_argument("--calibrate-frames", type=int, default=120)
    parser.add_argument("--workers", type=int, default=1, help="solver actors (0: in-process)")
    parser.add_argument("--solver", default="3stage")
    parser.add_argument("--time-limit", type=float, default=1.0)
    parser.add_argument("--input-size", type=parse_hw, default=(240, 320), help="network HxW")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--json", type=Path, default=RESULTS / "soak.json")
    parser.add_argument("--png", type=Path, default=RESULTS / "soak.png")
    parser.add_argument("--note", default="", help="conditions worth recording (other load)")
    args = parser.parse_args(argv)
    result = soak(args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, args.png)
    print(json.dumps(result["summary"], indent=1))
    print(f"wrote {args.json} and {args.png}")


if __name__ == "__main__":
    main()
