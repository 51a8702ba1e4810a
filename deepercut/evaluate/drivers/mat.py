"""An MPII or LSP annotation file: MPII's multi-person AP, PCKh, AUC and PCP, or LSP's
single-person protocol (:mod:`deepercut.evaluate.lsp`) with the solvers' poses on request."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from deepercut.data.load import load_dataset
from deepercut.detection import NetworkDetector
from deepercut.evaluate.drivers import lsp
from deepercut.evaluate.drivers.config import EvalConfig
from deepercut.evaluate.drivers.result import EvalResult
from deepercut.evaluate.report import evaluate_dataset, plot_pckh_curves
from deepercut.model.io import Model


def run(
    config: EvalConfig, model: Model, detector: NetworkDetector, methods: tuple[str, ...]
) -> EvalResult:
    """MPII's multi-person protocol per solver (LSP files go to :mod:`.lsp`)."""
    dataset = load_dataset(config.data, config.images)
    if dataset.name.startswith("lsp:"):
        return lsp.run(config, model, detector, methods, dataset)
    if config.limit is not None:
        dataset = dataset.subset(range(min(config.limit, len(dataset))))
    started = time.perf_counter()
    results = evaluate_dataset(
        model, detector, dataset, methods, config.time_limit, config.batch_size
    )
    seconds = time.perf_counter() - started
    parts = model.skeleton.parts
    who = config.model or "bundled model"
    tables = [f"{dataset.name}: {len(dataset)} images ({who}, {seconds:.0f} s)"]
    solvers: dict[str, Any] = {}
    for method, ev in results.items():
        tables.append(f"\n[{method}]")
        entry: dict[str, Any] = dict(ev.solved.timing())
        if ev.metrics is not None:
            tables.append(ev.metrics.pckh.table(parts))
            tables.append(ev.metrics.ap.table(parts))
            entry.update(ev.metrics.to_dict(parts))
        if ev.pck is not None:
            tables.append(ev.pck.table(parts))
            entry["PCK@0.2_torso"] = round(ev.pck.mean, 4)
            entry["pck_per_part"] = dict(zip(parts, ev.pck.per_part.round(4).tolist(), strict=True))
        if ev.pcp is not None:
            tables.append(ev.pcp.table())
            entry.update(mPCP=round(ev.pcp.mean, 4), AOP=round(ev.pcp.aop, 4))
        solvers[method] = entry
    if config.plot:
        curves = {m: ev.metrics.pckh for m, ev in results.items() if ev.metrics is not None}
        if curves:
            plot_pckh_curves(curves, dataset.name, Path(config.plot) / "pckh.png")
            tables.append(f"plots in {config.plot}/")
    report = {
        "data": str(config.data),
        "dataset": dataset.name,
        "images": len(dataset),
        "model": config.model_name,
        "time_limit_s": config.time_limit,
        "seconds": round(seconds, 1),
        "solvers": solvers,
    }
    return EvalResult(report, tuple(tables))
