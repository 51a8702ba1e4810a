"""DeepLabCut's pixel error of the openfield model through the video path, with and without
dynamic cropping.

The labelled images of ``labeled-data/m4s1`` are not frames of the project's video
(``m3v1mp4.mp4``, another session: no video frame matches any of them), so the video path is
measured on a video made of them: each image is held for ``--hold`` frames (a still clip), the
clips are encoded one after the other as H.264 and run through ``deepercut.Engine`` (file mode,
one animal, batches of ``--batch-size``, default 1). With dynamic cropping the first frame of a
clip (the animal jumped) falls back to the full frame, the second is detected full (the jump
reads as fast motion) and the later ones in a crop around the animal; the error is read on each
clip's last frame. Poses are the engine's assembled
keypoints (the video path), compared with the labels by :func:`deepercut.evaluate.dlc.pixel_errors`.

    python examples/openfield/video_error.py --model runs/openfield.pt \
        --project ../shared/data/openfield --json benchmarks/results/openfield-video.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch

from deepercut.data.load import load_dataset
from deepercut.detection.dynamic_crop import CropConfig
from deepercut.engine.pipeline import Engine
from deepercut.evaluate.dlc import DEFAULT_PCUTOFF, pixel_errors


def write_clips(images: list[np.ndarray], hold: int, path: Path, crf: int) -> None:
    """Each image ``hold`` times, as one H.264 video."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.height, stream.width = images[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf)}
        pts = 0
        for image in images:
            for _ in range(hold):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = pts
                pts += 1
                container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--project", default="../shared/data/openfield")
    parser.add_argument("--subset", choices=("test", "train", "all"), default="all")
    parser.add_argument("--hold", type=int, default=4, help="frames per labelled image")
    # Batches of 1: a batch shares one crop, so a batch spanning two clips (the animal jumps)
    # could not crop at all.
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--margin", type=int, default=CropConfig.margin)
    parser.add_argument("--crf", type=int, default=18, help="H.264 quality (lower: better)")
    parser.add_argument("--pcutoff", type=float, default=DEFAULT_PCUTOFF)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backend", default="auto", help="detector backend")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    dataset = load_dataset(args.project)
    options: dict[str, Any] = {
        "backend": args.backend,
        "device": "cpu",
        "threads": args.threads,
        "workers": 0,
        "batch_size": args.batch_size,
        "max_people": 1,
    }
    results: dict[str, Any] = {}
    with (
        Engine(args.model, **options) as full,
        Engine(args.model, dynamic_crop=CropConfig(margin=args.margin), **options) as crop,
    ):
        split = full.model.meta.get("split") or {}
        if not split.get("test"):
            raise SystemExit(f"{args.model} records no test split (not trained with --data)")
        train, test = dataset.split(test_names=split["test"])
        subsets = {"test": [test], "train": [train], "all": [test, train]}[args.subset]
        for subset in subsets:
            name = "test" if subset is test else "train"
            images = [subset.image(i) for i in range(len(subset))]
            truths = [r.keypoints for r in subset.records]
            with tempfile.TemporaryDirectory() as scratch:
                video = Path(scratch) / "clips.mp4"
                write_clips(images, args.hold, video, args.crf)
                for mode, engine in (("full", full), ("crop", crop)):
                    poses = {p.frame: p for p in engine.run(str(video))}
                    last = [poses.get((i + 1) * args.hold - 1) for i in range(len(images))]
                    predictions = [
                        p.keypoints if p is not None else np.zeros((0, len(truths[0][0]), 3))
                        for p in last
                    ]
                    errors = pixel_errors(predictions, truths, dataset.skeleton.parts)
                    entry = {"images": len(images), **errors.to_dict(args.pcutoff)}
                    if engine.stats.crop is not None:
                        entry["crop"] = engine.stats.crop.to_dict()
                    results.setdefault(name, {})[mode] = entry
                    print(f"{name} ({len(images)} images), video path, {mode} frame")
                    print(errors.table(args.pcutoff))
                    if engine.stats.crop is not None:
                        print(engine.stats.crop.summary())
    out = {
        "model": str(args.model),
        "project": str(args.project),
        "hold": args.hold,
        "crf": args.crf,
        "margin": args.margin,
        "backend": full.backend,
        **results,
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
