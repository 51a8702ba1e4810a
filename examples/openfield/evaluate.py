"""DeepLabCut's pixel error of a model trained on the openfield project, on its test and train
images (the split stored in the checkpoint by ``deepercut train --data``).

    python examples/openfield/evaluate.py --model runs/openfield.pt \
        --project ../shared/data/openfield --json benchmarks/results/openfield.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from deepercut.data.load import load_dataset
from deepercut.detection import NetworkDetector
from deepercut.evaluate.dlc import DEFAULT_PCUTOFF, pixel_errors, predict_best_per_part
from deepercut.model.io import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--project", default="../shared/data/openfield")
    parser.add_argument("--pcutoff", type=float, default=DEFAULT_PCUTOFF)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--note", default=None, help="free text stored in the json (machine...)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = load_model(args.model)
    dataset = load_dataset(args.project)
    if model.skeleton.parts != dataset.skeleton.parts:
        raise SystemExit(f"the model's parts {model.skeleton.parts} are not the project's")
    split = model.meta.get("split") or {}
    if not split.get("test"):
        raise SystemExit(f"{args.model} records no test split (not trained with --data)")
    train, test = dataset.split(test_names=split["test"])
    detector = NetworkDetector(model)
    results = {}
    for name, subset in (("test", test), ("train", train)):
        started = time.perf_counter()
        images = [subset.image(i) for i in range(len(subset))]
        predictions = predict_best_per_part(detector, images)
        truths = [r.keypoints for r in subset.records]
        errors = pixel_errors(predictions, truths, dataset.skeleton.parts)
        results[name] = {
            "images": [r.image_path.name for r in subset.records],
            **errors.to_dict(args.pcutoff),
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(f"{name} ({len(subset)} images), pixel error; right: likelihood >= {args.pcutoff}")
        print(errors.table(args.pcutoff))
    out = {
        "note": args.note,
        "dataset": str(args.project),
        "model": str(args.model),
        "parts": list(dataset.skeleton.parts),
        "input_hw": list(model.input_hw),
        "train_seconds": model.meta.get("train_seconds"),
        "steps": model.meta.get("steps"),
        "train_config": model.meta.get("train_config"),
        "command": model.meta.get("command"),
        "pairwise": model.meta.get("pairwise"),
        **results,
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
