"""``deepercut eval``'s drivers: one module per kind of data, each running the detector and the
solvers over it and returning an :class:`EvalResult` (its JSON report and its tables, which the
command prints).

:func:`evaluate` builds the detector exactly as ``deepercut run`` does (same backend choice,
precision and batch size), so the scores are those of the code a run executes.
"""

from __future__ import annotations

import json
from pathlib import Path

from deepercut.evaluate.drivers.config import ALL_SOLVERS, EvalConfig, data_kind, parse_solvers
from deepercut.evaluate.drivers.result import EvalResult

__all__ = ["ALL_SOLVERS", "EvalConfig", "EvalResult", "data_kind", "evaluate", "parse_solvers"]


def evaluate(config: EvalConfig) -> EvalResult:
    """Run the evaluation ``config`` asks for; returns its result (the report also written to
    ``config.json``)."""
    kind = data_kind(config.data)
    methods = parse_solvers(config.solver, () if kind == "synthetic" else ("3stage",))
    _require_extras(kind, config)
    # On use: the drivers pull in every dataset reader and metric; `config` needs none.
    from deepercut.detection import NetworkDetector
    from deepercut.evaluate.drivers import coco, dlc, mat, synthetic
    from deepercut.model.io import load_model

    model = load_model(config.model)
    detector = NetworkDetector(
        model,
        input_hw=config.input_hw,
        device=config.device,
        backend=config.backend,
        batch_size=config.batch_size,
        precision=config.precision,
    )
    run = {"synthetic": synthetic.run, "coco": coco.run, "mat": mat.run, "dlc": dlc.run}[kind]
    result = run(config, model, detector, methods)
    report = {
        "input_hw": list(detector.input_hw),
        "backend": detector.backend,
        "precision": detector.precision,
        **result.report,
    }
    if config.json:
        Path(config.json).parent.mkdir(parents=True, exist_ok=True)
        Path(config.json).write_text(json.dumps(report, indent=2) + "\n")
    said = f"detector: {detector.backend} {detector.precision} ({detector.reason})"
    return EvalResult(report, (said, *result.tables))


def _require_extras(kind: str, config: EvalConfig) -> None:
    """Optional extras fail before the long run, as a :class:`RuntimeError`."""
    try:
        if config.plot:
            from deepercut.evaluate.report import pyplot

            pyplot()
        if kind == "coco":
            from deepercut.evaluate.coco import require_pycocotools

            require_pycocotools()
    except ImportError as exc:
        raise RuntimeError(str(exc)) from exc
