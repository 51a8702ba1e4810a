"""LSP's single-person protocol (:mod:`deepercut.evaluate.lsp`): each part's best cell per image,
letterboxed or at ``--scale`` × the image's own size (on a backend of any input size, see
:meth:`~deepercut.detection.NetworkDetector.resized`); the solvers' poses on request."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from deepercut.data.dataset import PoseDataset, read_name_list
from deepercut.detection import NetworkDetector
from deepercut.evaluate.dlc import predict_best_per_part
from deepercut.evaluate.drivers.config import EvalConfig
from deepercut.evaluate.drivers.result import EvalResult
from deepercut.evaluate.lsp import lsp_pck, predict_single_person, scaled_input_hw
from deepercut.evaluate.pcp import torso_pcp
from deepercut.evaluate.report import detect, solve_candidates, to_model_parts
from deepercut.model.io import Model
from deepercut.types import Candidates


def run(
    config: EvalConfig,
    model: Model,
    detector: NetworkDetector,
    methods: tuple[str, ...],
    dataset: PoseDataset,
) -> EvalResult:
    """LSP's single-person protocol (:mod:`deepercut.evaluate.lsp`); solvers on request."""
    dataset, missing = dataset.with_existing_images()
    dataset = _selected(config, dataset)
    scale = config.scale if config.scale is not None else (None if config.input_hw else 1.0)
    parts = model.skeleton.parts
    gts = [to_model_parts(r.keypoints, dataset.skeleton.parts, parts) for r in dataset.records]
    images = [dataset.image(i).copy() for i in range(len(dataset))]
    started = time.perf_counter()
    if scale is None:  # letterboxed into the network input, as the engine runs
        preds = predict_best_per_part(detector, images, config.batch_size)
    else:
        preds = predict_single_person(detector, images, scale)
    single = lsp_pck(preds, gts, parts)
    seconds = time.perf_counter() - started
    where = f"{scale:g} x image size" if scale else f"letterboxed {detector.input_hw}"
    tables = [
        f"{dataset.name}: {len(dataset)} images ({len(missing)} absent skipped), "
        f"{config.model or 'bundled model'} at {where}, {seconds:.0f} s\n"
        "single-person read-out (each part's best cell): person-centric PCK@0.2 of the torso",
        single.table(parts),
    ]
    report: dict[str, Any] = {
        "data": str(config.data),
        "dataset": dataset.name,
        "images": len(dataset),
        "absent_images": len(missing),
        "test_images": config.test_images,
        "model": config.model_name,
        "scale": scale,
        "protocol": "LSP single person: each part's best-scoring cell (refined) per image; "
        "PCK@0.2 of the torso size (left shoulder to right hip), person-centric; AUC over "
        "thresholds 0..0.2; unlabelled joints (LSPET flag 0) not counted",
        "seconds": round(seconds, 1),
        "single_person": single.to_dict(parts),
    }
    if config.solver:  # the multi-person engine's poses, each gt person given its best match
        cands = _candidates(config, detector, images, scale)
        report["solvers"] = _solver_poses(config, model, cands, gts, methods, tables)
    return EvalResult(report, tuple(tables))


def _selected(config: EvalConfig, dataset: PoseDataset) -> PoseDataset:
    """The images to score: ``--test-images``, then the first ``--limit``."""
    if config.test_images:
        names = read_name_list([n.strip() for n in config.test_images.split(",") if n.strip()])
        dataset = dataset.split(test_names=names)[1]
    if config.limit is not None:
        dataset = dataset.subset(range(min(config.limit, len(dataset))))
    if len(dataset) == 0:
        raise ValueError(f"{config.data}: no images to evaluate")
    return dataset


def _candidates(
    config: EvalConfig, detector: NetworkDetector, images: list[np.ndarray], scale: float | None
) -> list[Candidates]:
    """Every image's candidates, letterboxed (``scale`` None) or at ``scale`` × its size."""
    if scale is None:
        return list(detect(detector, images, config.batch_size))
    return [detector.resized(scaled_input_hw(im.shape[:2], scale)).detect([im])[0] for im in images]


def _solver_poses(
    config: EvalConfig,
    model: Model,
    cands: list[Candidates],
    gts: list[np.ndarray],
    methods: tuple[str, ...],
    tables: list[str],
) -> dict[str, Any]:
    """Each solver's poses scored (PCK, and PCP where the skeleton has a torso); their tables
    appended to ``tables``."""
    parts = model.skeleton.parts
    solvers = {}
    for method in methods:
        solved = solve_candidates(model, cands, method, config.time_limit)
        result = lsp_pck(solved.keypoints, gts, parts)
        tables.append(f"\n[{method}] poses, each gt person scored against its best-matching pose")
        tables.append(result.table(parts))
        solvers[method] = {**result.to_dict(parts), **solved.timing()}
        limbs = torso_pcp(solved.keypoints, gts, parts)
        if limbs is not None:
            tables.append(limbs.table())
            solvers[method].update(mPCP=round(limbs.mean, 4), AOP=round(limbs.aop, 4))
    return solvers
