"""Where the milliseconds of a frame go on the CPU, stage by stage, in one process.

Frames are decoded first (timed: PyAV decode + RGB conversion), then detected one call at a
time with timers around the detector's parts (letterbox/upload, the ONNX Runtime / torch
network, map decoding, candidate extraction, mapping back; with dynamic cropping also the crop
policy), then solved by the engine's frame solver and written as msgpack records. Two setups:

- the README demo: bundled model, ``examples/data/sample.mp4`` at 480×640, batch 1 (the
  ``deepercut run`` default on the CPU);
- ``--openfield MODEL``: the openfield video, one animal, dynamic cropping (as
  ``benchmarks/openfield.py``), batch ``--batch-size``.

    python benchmarks/stages.py [--frames 60] [--openfield runs/openfield.pt]
        [--full] [--video PATH] [--json benchmarks/results/stages.json]
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from engine import VIDEO, machine
from openfield import VIDEO as OPENFIELD_VIDEO

from deepercut.detection import NetworkDetector
from deepercut.detection import detector as detector_module
from deepercut.detection.dynamic_crop import CropConfig, DynamicCropDetector
from deepercut.engine.pipeline import Engine
from deepercut.streams import PoseWriter, make_header
from deepercut.types import Frame


def decode(path: Path, count: int) -> tuple[list[Frame], float]:
    """The first ``count`` frames as RGB and the seconds per frame it took."""
    frames: list[Frame] = []
    started = time.perf_counter()
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            frames.append(Frame(index, float(frame.time or 0.0), frame.to_ndarray(format="rgb24")))
            if len(frames) == count:
                break
    return frames, (time.perf_counter() - started) / max(1, len(frames))


class Timers:
    """Seconds per named stage, accumulated by wrapped callables."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started

        return timed


def instrument(engine: Engine, timers: Timers) -> None:
    """Timers around the engine's detector parts (instance attributes; the module's
    extraction and mapping functions for this process)."""
    detector = engine.detector
    networks: list[NetworkDetector] = []
    if isinstance(detector, DynamicCropDetector):
        detector.prepare()
        networks = [detector.full, *detector._detectors.values()]  # type: ignore[list-item]
        policy = detector.policy
        for name in ("region", "lost", "update"):
            setattr(policy, name, timers.wrap("crop policy", getattr(policy, name)))
    elif isinstance(detector, NetworkDetector):
        networks = [detector]
    for network in networks:
        network.preprocess = timers.wrap("letterbox + upload", network.preprocess)
        network.runner = timers.wrap("network", network.runner)
    for net in {id(n.net): n.net for n in networks}.values():  # crop detectors share one
        net.decode = timers.wrap("decode maps", net.decode)
    for name, label in (("extract_candidate_tensors", "extract"), ("map_candidates", "map back")):
        setattr(detector_module, name, timers.wrap(label, getattr(detector_module, name)))


def profile(engine: Engine, frames: list[Frame], batch: int, decode_s: float) -> dict[str, Any]:
    timers = Timers()
    instrument(engine, timers)
    engine.detector(frames[:batch])  # sessions warm
    if isinstance(engine.detector, DynamicCropDetector):
        engine.detector.reset()
    timers.seconds.clear()
    started = time.perf_counter()
    candidates = []
    for i in range(0, len(frames), batch):
        candidates += engine.detector(frames[i : i + batch])
    detect_s = time.perf_counter() - started
    solver = engine.frame_solver
    started = time.perf_counter()
    poses = [solver(f.index, f.pts, c) for f, c in zip(frames, candidates, strict=True)]
    solve_s = time.perf_counter() - started
    buffer = io.BytesIO()
    started = time.perf_counter()
    header = make_header(engine.skeleton, model=engine.info())
    with PoseWriter(buffer, header) as writer:
        for p in poses:
            writer.write(p)
    write_s = time.perf_counter() - started
    n = len(frames)
    ms = {"decode (PyAV + RGB)": 1e3 * decode_s}
    ms.update({k: 1e3 * v / n for k, v in timers.seconds.items()})
    ms["detect, other (python)"] = 1e3 * (detect_s - sum(timers.seconds.values())) / n
    ms["solve"] = 1e3 * solve_s / n
    ms["write msgpack"] = 1e3 * write_s / n
    total = sum(ms.values())
    out: dict[str, Any] = {
        "frames": n,
        "backend": engine.backend,
        "input_hw": list(engine.input_hw),
        "candidates_per_frame": round(float(np.mean([len(c.score) for c in candidates])), 1),
        "ms_per_frame": {k: round(v, 2) for k, v in ms.items()},
        "total_ms": round(total, 2),
        "serial_fps": round(1e3 / total, 2),
    }
    if isinstance(engine.detector, DynamicCropDetector):
        out["crop"] = engine.detector.stats.to_dict()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--openfield", default=None, help="openfield checkpoint")
    parser.add_argument("--video", type=Path, default=None, help="default: the setup's")
    parser.add_argument("--full", action="store_true", help="openfield without cropping")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    options: dict[str, Any] = {"device": "cpu", "threads": args.threads, "workers": 0}
    if args.openfield:
        video, model, batch = args.video or OPENFIELD_VIDEO, args.openfield, args.batch_size or 8
        options.update(max_people=1, dynamic_crop=False if args.full else CropConfig())
    else:
        video, model, batch = args.video or VIDEO, None, args.batch_size or 1
    load_start = os.getloadavg()
    frames, decode_s = decode(video, args.frames)
    with Engine(model, batch_size=batch, **options) as engine:
        result = profile(engine, frames, batch, decode_s)
    result.update(video=str(video), model=model or "bundled", batch_size=batch)
    result.update(machine=machine(), load_average_start=[round(v, 2) for v in load_start])
    width = max(map(len, result["ms_per_frame"]))
    for stage, value in result["ms_per_frame"].items():
        print(f"{stage:<{width}} {value:8.2f} ms  {value / result['total_ms']:6.1%}")
    print(f"{'total':<{width}} {result['total_ms']:8.2f} ms  ({result['serial_fps']} frames/s)")
    if "crop" in result:
        print("crop:", result["crop"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
