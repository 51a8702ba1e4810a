"""Held-out synthetic images: PCK of the candidates and, with solvers, each solver's poses
(multi-person AP, PCKh@0.5 and AUC, upper-body PCP and AOP, time per frame)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from deepercut.detection import NetworkDetector
from deepercut.evaluate.drivers.config import EvalConfig
from deepercut.evaluate.drivers.result import EvalResult
from deepercut.evaluate.report import (
    SyntheticEvaluation,
    evaluate_synthetic,
    plot_ap_curves,
    plot_pckh_curves,
)
from deepercut.model.io import Model


def run(
    config: EvalConfig, model: Model, detector: NetworkDetector, methods: tuple[str, ...]
) -> EvalResult:
    """Candidate PCK (and each solver's poses) on held-out synthetic images."""
    count = 200 if config.images is None else _count(config.images)
    started = time.perf_counter()
    ev = evaluate_synthetic(
        model,
        detector,
        count,
        config.seed,
        methods,
        config.min_height,
        config.threshold,
        config.time_limit,
        config.batch_size,
    )
    seconds = time.perf_counter() - started
    parts = model.skeleton.parts
    tables = [
        f"PCK@{config.threshold:g} of best candidates, {count} held-out synthetic images, "
        f"people > {config.min_height:g} px ({config.model or 'bundled model'} at "
        f"{detector.input_hw[0]}x{detector.input_hw[1]}, {seconds:.0f} s)",
        ev.pck.table(parts),
    ]
    report: dict[str, Any] = {
        "data": "synthetic",
        "model": config.model_name,
        "images": count,
        "seed": config.seed,
        "min_height": config.min_height,
        "threshold": config.threshold,
        "per_part": dict(zip(parts, ev.pck.per_part.round(4).tolist(), strict=True)),
        "joints": int(ev.pck.counts.sum()),
        "mean_pck": round(ev.pck.mean, 4),
        "seconds": round(seconds, 1),
    }
    if methods:
        report["pose_metrics"] = _pose_metrics(config, ev, parts, methods, tables)
    return EvalResult(report, tuple(tables))


def _pose_metrics(
    config: EvalConfig,
    ev: SyntheticEvaluation,
    parts: tuple[str, ...],
    methods: tuple[str, ...],
    tables: list[str],
) -> dict[str, Any]:
    """Each solver's poses: their report, their tables appended to ``tables`` (and plots)."""
    tables.append(
        f"\nPoses per solver (people > {config.min_height:g} px scored, smaller ones ignored; "
        "AP and PCKh at 0.5 of the head size; ms per frame: problem + solve + assembly)"
    )
    header = f"{'solver':<10}{'mAP':>7}{'PCKh':>7}{'AUC':>7}{'mPCP':>7}{'AOP':>7}"
    tables.append(header + f"{'median ms':>11}{'mean ms':>9}{'fallbacks':>11}")
    solvers: dict[str, Any] = {}
    for method in methods:
        metrics, solved = ev.metrics[method], ev.solved[method]
        s, t = metrics.summary(), solved.timing()
        tables.append(
            f"{method:<10}{s['mAP']:>7.3f}{s['PCKh@0.5']:>7.3f}{s['AUC']:>7.3f}"
            f"{s.get('mPCP', float('nan')):>7.3f}{s.get('AOP', float('nan')):>7.3f}"
            f"{t['median_ms']:>11.1f}{t['mean_ms']:>9.1f}{solved.fallbacks:>11d}"
        )
        solvers[method] = {**metrics.to_dict(parts), **t, "fallbacks": solved.fallbacks}
    best = methods[0]
    tables.append(f"\nAP per part ({best}):")
    tables.append(ev.metrics[best].ap.table(parts))
    if config.plot:
        tables.append(_plot(Path(config.plot), ev, parts, methods))
    return {
        "protocol": "multi-person AP (DeepCut evaluateAP: people matched by PCKh 0.5, per-part "
        "AP over score-ranked joints), PCKh@0.5 and AUC over 0..0.5, upper-body PCP (0.5 of "
        "the limb) and AOP; head size = 0.6*sqrt(2)*|head_top - neck|; joints hidden by "
        "people in front are labelled (v=1), joints outside the image are not; people "
        f"<= {config.min_height:g} px are ignored",
        "time_limit_s": config.time_limit,
        "detect_seconds": round(ev.detect_seconds, 1),
        "solvers": solvers,
    }


def _plot(
    out: Path, ev: SyntheticEvaluation, parts: tuple[str, ...], methods: tuple[str, ...]
) -> str:
    """AP curves per solver and the PCKh curves in ``out``; says where."""
    for method in methods:
        plot_ap_curves(
            ev.metrics[method].ap, parts, f"synthetic, {method}", out / f"ap_{method}.png"
        )
    plot_pckh_curves({m: ev.metrics[m].pckh for m in methods}, "synthetic: PCKh", out / "pckh.png")
    return f"plots in {out}/"


def _count(images: str) -> int:
    try:
        count = int(images)
    except ValueError:
        raise ValueError(f"--images for synthetic data is a count, got {images!r}") from None
    if count < 1:
        raise ValueError(f"--images must be >= 1, got {count}")
    return count
