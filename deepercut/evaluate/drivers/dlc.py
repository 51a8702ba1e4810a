"""A DeepLabCut project: mean and median pixel error per keypoint on its test and train images,
without and with the p-cutoff."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from deepercut.data.dlc import read_config, training_fraction
from deepercut.data.load import load_dataset
from deepercut.detection import NetworkDetector
from deepercut.evaluate.dlc import DEFAULT_PCUTOFF, pixel_errors, predict_best_per_part
from deepercut.evaluate.drivers.config import EvalConfig
from deepercut.evaluate.drivers.result import EvalResult
from deepercut.evaluate.report import detect, solve_candidates, to_model_parts
from deepercut.model.io import Model


def run(
    config: EvalConfig, model: Model, detector: NetworkDetector, methods: tuple[str, ...]
) -> EvalResult:
    """Pixel error per keypoint on the project's test and train images."""
    dataset = load_dataset(config.data)
    config_path = Path(config.data)
    project = read_config(config_path / "config.yaml" if config_path.is_dir() else config_path)
    pcutoff = (
        config.pcutoff
        if config.pcutoff is not None
        else float(project.get("pcutoff", DEFAULT_PCUTOFF))
    )
    parts = model.skeleton.parts
    if not set(parts) & set(dataset.skeleton.parts):
        raise ValueError(
            f"the model's parts {parts} share none with the project's {dataset.skeleton.parts}"
        )
    if config.test_images:
        train, test = dataset.split(test_names=config.test_images.split(","))
    else:
        train, test = dataset.split(training_fraction(project), seed=1)
    # Single animal: DeepLabCut's read-out (each part's best cell); with --solver: the poses.
    readout = methods[0] if config.solver else "best-per-part"
    started = time.perf_counter()
    splits: dict[str, Any] = {}
    tables: list[str] = []
    for name, subset in (("test", test), ("train", train)):
        if len(subset) == 0:
            continue
        images = [subset.image(i).copy() for i in range(len(subset))]
        if config.solver:
            cands = list(detect(detector, images, config.batch_size))
            preds = solve_candidates(model, cands, methods[0], config.time_limit).keypoints
        else:
            preds = predict_best_per_part(detector, images, config.batch_size)
        truths = [to_model_parts(r.keypoints, dataset.skeleton.parts, parts) for r in subset]
        errors = pixel_errors(preds, truths, parts)
        tables.append(f"\n{dataset.name} [{name}], {len(subset)} images, {readout}: pixel error")
        tables.append(errors.table(pcutoff))
        splits[name] = {"images": len(subset), **errors.to_dict(pcutoff)}
    report = {
        "data": str(config.data),
        "model": config.model_name,
        "readout": readout,
        "test_images": [r.image_path.name for r in test],
        "seconds": round(time.perf_counter() - started, 1),
        **splits,
    }
    return EvalResult(report, tuple(tables))
