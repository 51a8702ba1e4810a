"""A COCO keypoint file: OKS AP/AR with pycocotools (the model's parts mapped to COCO's by name;
parts it lacks count as misses), and the same over the body keypoints only."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from deepercut.data.coco import COCO_PARTS
from deepercut.detection import NetworkDetector
from deepercut.evaluate.coco import coco_part_map, write_results
from deepercut.evaluate.drivers.config import EvalConfig
from deepercut.evaluate.drivers.result import EvalResult
from deepercut.evaluate.report import (
    CocoEvaluation,
    CocoSolverResult,
    evaluate_coco,
    plot_coco_pr,
)
from deepercut.model.io import Model


def _images_dir(config: EvalConfig) -> Path:
    """``--images`` or, for COCO, the ``val2017``/``train2017`` folder beside the annotations."""
    if config.images is not None:
        path = Path(config.images)
        if not path.is_dir():
            raise NotADirectoryError(f"--images {config.images!r} is not a folder")
        return path
    ann = Path(config.data).resolve()
    for base in (ann.parent, ann.parent.parent):
        for name in ("val2017", "train2017", "images"):
            if (base / name).is_dir():
                return base / name
    raise ValueError(f"--data {config.data}: give the image folder with --images DIR")


def run(
    config: EvalConfig, model: Model, detector: NetworkDetector, methods: tuple[str, ...]
) -> EvalResult:
    """COCO OKS AP/AR of each solver's poses; writes detections on request."""
    images = _images_dir(config)
    started = time.perf_counter()
    ev = evaluate_coco(
        model,
        detector,
        config.data,
        images,
        methods,
        config.time_limit,
        config.batch_size,
        config.limit,
    )
    seconds = time.perf_counter() - started
    part_map = coco_part_map(model.skeleton.parts)
    tables = [
        f"COCO keypoint OKS AP (pycocotools), {len(ev.image_ids)} images of {config.data} "
        f"({config.model or 'bundled model'}, {seconds:.0f} s); the model predicts "
        f"{int((part_map >= 0).sum())} of COCO's 17 keypoints, the rest count as misses",
        f"{'solver':<10}{'AP':>7}{'AP50':>7}{'AP75':>7}{'AR':>7}{'AP body':>9}{'people':>8}",
    ]
    solvers = {method: _solver_entry(method, res, tables) for method, res in ev.solvers.items()}
    tables.extend(_write_outputs(config, ev, methods))
    report = {
        "data": str(config.data),
        "images_dir": str(images),
        "images": len(ev.image_ids),
        "model": config.model_name,
        "metric": "COCO keypoint OKS AP/AR via pycocotools COCOeval (standard 17 keypoints; "
        "'oks_body_only': the same with the ground truth's nose, eyes and ears unlabelled)",
        "keypoints_predicted": [n for n, i in zip(COCO_PARTS, part_map, strict=True) if i >= 0],
        "time_limit_s": config.time_limit,
        "detect_seconds": round(ev.detect_seconds, 1),
        "seconds": round(seconds, 1),
        "solvers": solvers,
    }
    return EvalResult(report, tuple(tables))


def _solver_entry(method: str, res: CocoSolverResult, tables: list[str]) -> dict[str, Any]:
    """One solver's report entry; its table row appended to ``tables``."""
    st, body = res.standard.stats, res.body_only.stats
    tables.append(
        f"{method:<10}{st['AP']:>7.3f}{st['AP50']:>7.3f}{st['AP75']:>7.3f}{st['AR']:>7.3f}"
        f"{body['AP']:>9.3f}{len(res.results):>8d}"
    )
    return {
        "oks": {k: round(v, 4) for k, v in st.items()},
        "oks_body_only": {k: round(v, 4) for k, v in body.items()},
        "best_oks_per_person": _oks_summary(res.standard.best_oks),
        "best_oks_per_person_body_only": _oks_summary(res.body_only.best_oks),
        "detections": len(res.results),
        **res.solved.timing(),
    }


def _write_outputs(config: EvalConfig, ev: CocoEvaluation, methods: tuple[str, ...]) -> list[str]:
    """The detections file and PR plots, when asked for; says where they went."""
    said = []
    if config.coco_results:
        write_results(ev.solvers[methods[0]].results, config.coco_results)
        said.append(f"detections ({methods[0]}) written to {config.coco_results}")
    if config.plot:
        for method, res in ev.solvers.items():
            plot_coco_pr(
                res.standard, f"COCO, {method}", Path(config.plot) / f"coco_pr_{method}.png"
            )
        said.append(f"plots in {config.plot}/")
    return said


def _oks_summary(best: Any) -> dict[str, float]:
    """How close the detections came to each scored person (the best OKS per person)."""
    if len(best) == 0:
        return {"people": 0}
    return {
        "people": len(best),
        "median": round(float(np.median(best)), 4),
        "max": round(float(best.max()), 4),
        "at_least_0.5": int((best >= 0.5).sum()),
    }
