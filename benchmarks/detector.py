"""Detector throughput: frames/s of each architecture at 480×640, batch 1 and 8.

Needs only torch (and numpy): it runs on a GPU machine without PyAV or Ray. Weights are random
(speed does not depend on them); the bundled model's configuration is the ``small`` row.

    python benchmarks/detector.py [--device cpu|cuda] [--archs small,resnet50,...]
        [--batches 1,8] [--seconds 10] [--json benchmarks/results/detector-cpu.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from functools import partial
from pathlib import Path

import torch
from machine_info import cpu_name

from deepercut.model.candidates import CandidateParams, extract_candidate_tensors
from deepercut.model.net import STRIDE, DeeperCut, DetectorConfig

ARCHS = {
    "small": DetectorConfig(arch="resnet18", width=32, head_channels=128),
    "resnet50": DetectorConfig(arch="resnet50"),
    "resnet101": DetectorConfig(arch="resnet101"),
    "resnet152": DetectorConfig(arch="resnet152"),
}


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()}, {torch.get_num_threads()} torch threads"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn, device: torch.device, min_seconds: float, min_runs: int = 3) -> list[float]:
    """Seconds per call: one warm-up call, then calls until ``min_seconds`` have passed."""
    fn()
    _sync(device)
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - started < min_seconds:
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--archs", default=",".join(ARCHS))
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--hw", default="480x640", help="input HxW")
    parser.add_argument("--seconds", type=float, default=10.0, help="timing per configuration")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    device = torch.device(args.device)
    h, w = (int(v) for v in args.hw.split("x"))
    rows = []
    print(f"device: {device_description(device)}; input {h}x{w}; torch {torch.__version__}")
    print(f"{'arch':<10}{'batch':>6}{'frames/s':>10}{'ms/batch':>10}{'extract ms':>12}")
    for name in args.archs.split(","):
        net = DeeperCut(ARCHS[name]).eval().to(device)
        for batch in (int(b) for b in args.batches.split(",")):
            images = torch.rand(batch, 3, h, w, device=device)
            with torch.inference_mode():
                times = time_call(partial(net, images), device, args.seconds)
                maps = net.decode(net(images))
                # Peaks of a trained model are sparse; random weights give a flat map, so
                # extraction runs on a map with a realistic number of peaks instead.
                probs = torch.rand_like(maps.probs).pow(8)
                extract = time_call(
                    partial(
                        extract_candidate_tensors,
                        probs,
                        maps.locref,
                        maps.pairwise,
                        STRIDE,
                        CandidateParams(),
                    ),
                    device,
                    min(2.0, args.seconds),
                )
            per_batch = statistics.median(times)
            row = {
                "arch": name,
                "batch": batch,
                "fps": round(batch / per_batch, 2),
                "ms_per_batch": round(per_batch * 1e3, 1),
                "extract_ms_per_batch": round(statistics.median(extract) * 1e3, 2),
                "runs": len(times),
            }
            rows.append(row)
            print(
                f"{name:<10}{batch:>6}{row['fps']:>10.2f}{row['ms_per_batch']:>10.1f}"
                f"{row['extract_ms_per_batch']:>12.2f}"
            )
        del net
    if args.json:
        report = {
            "device": device_description(device),
            "input_hw": [h, w],
            "torch": torch.__version__,
            "precision": "fp32 eager",
            "date": time.strftime("%Y-%m-%d"),
            "results": rows,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
