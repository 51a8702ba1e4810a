"""``deepercut eval``: score a model on held-out synthetic images, a COCO keypoint file, an
MPII/LSP annotation file or a DeepLabCut project; print tables, write a JSON report and
optionally PNG curves.

- ``--data synthetic`` (default): PCK of the candidates on ``--images N`` held-out images; with
  ``--solver`` also each solver's poses: multi-person AP (DeepCut protocol), PCKh@0.5 and AUC,
  upper-body PCP and AOP, and time per frame.
- ``--data annotations.json --images DIR``: COCO OKS AP/AR with pycocotools (the model's parts
  mapped to COCO's by name; parts it lacks count as misses), plus the same over the body
  keypoints only.
- ``--data file.mat``: MPII (multi-person AP, PCKh, AUC, PCP) or LSP (single-person protocol:
  person-centric PCK@0.2 of the torso per part and its AUC, images at ``--scale`` × their size,
  ``--test-images`` selecting e.g. a validation split; with ``--solver`` also the solvers' poses,
  PCK and PCP).
- ``--data config.yaml``: a DeepLabCut project: mean and median pixel error per keypoint on its
  test and train images, without and with the p-cutoff (each part's best cell; with
  ``--solver``, the solver's poses).
"""

from __future__ import annotations

import argparse

from deepercut.cli.args import parse_hw
from deepercut.detection import BACKENDS
from deepercut.evaluate import HELD_OUT_SEED
from deepercut.evaluate.drivers.config import ALL_SOLVERS, EvalConfig
from deepercut.solvers import METHODS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` subcommand."""
    p = subparsers.add_parser(
        "eval",
        help="evaluate a model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for add in (
        _add_data_args,
        _add_detector_args,
        _add_scoring_args,
        _add_output_args,
    ):
        add(p)
    p.set_defaults(func=run_eval)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    """Options of what is scored: the data, its images, the model."""
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        default="synthetic",
        help="'synthetic', a COCO keypoint .json, an MPII/LSP .mat or a DLC config.yaml",
    )
    g.add_argument(
        "--images",
        default=None,
        help="synthetic: how many images (default 200); COCO/MPII/LSP: the image folder",
    )
    g.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    g.add_argument("--limit", type=int, default=None, help="only the first N dataset images")
    g.add_argument(
        "--test-images",
        default=None,
        help="DLC: comma-separated test image names (default: "
        "the project's TrainingFraction split, seed 1); LSP: the images to score (names, "
        "comma-separated, or a .txt file of names)",
    )


def _add_detector_args(p: argparse.ArgumentParser) -> None:
    """Options of the detector, as ``deepercut run`` takes them."""
    g = p.add_argument_group("detector")
    g.add_argument(
        "--input-size",
        type=parse_hw,
        default=None,
        help="network input HxW, multiples of 16 (default: the model's)",
    )
    g.add_argument("--batch-size", type=int, default=8, help="images per detector batch")
    g.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if available)"
    )
    g.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="detector backend, as `deepercut run` chooses it (default: auto)",
    )
    g.add_argument(
        "--precision",
        choices=("fp16", "fp32"),
        default=None,
        help="detector precision (default: fp16 on CUDA, fp32 on the CPU, as `deepercut run`)",
    )
    g.add_argument(
        "--scale",
        type=float,
        default=None,
        help="LSP: run each image at this factor of its own size (default 1; LSP people are "
        "~150 px) instead of letterboxing it into --input-size",
    )


def _add_scoring_args(p: argparse.ArgumentParser) -> None:
    """Options of the solvers and the metrics."""
    g = p.add_argument_group("scoring")
    g.add_argument(
        "--solver",
        default=None,
        help=f"solver(s), comma-separated, of {', '.join(METHODS)}, or 'all' "
        f"({','.join(ALL_SOLVERS)}); synthetic default: none (candidate PCK only); "
        "otherwise 3stage",
    )
    g.add_argument("--time-limit", type=float, default=1.0, help="seconds per frame's solve")
    g.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="first held-out seed")
    g.add_argument("--min-height", type=float, default=100.0, help="score people taller than this")
    g.add_argument("--threshold", type=float, default=0.2, help="PCK threshold (× person height)")
    g.add_argument(
        "--pcutoff", type=float, default=None, help="DLC: likelihood cut-off (default: config's)"
    )


def _add_output_args(p: argparse.ArgumentParser) -> None:
    """Options of what is written besides the printed tables."""
    g = p.add_argument_group("output")
    g.add_argument("--json", default=None, help="write the report here")
    g.add_argument("--coco-results", default=None, help="COCO: write the detections here")
    g.add_argument("--plot", default=None, help="save PR / PCK-threshold curves (PNG) here")


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate as the arguments say; returns the exit code."""
    from deepercut.evaluate.drivers import evaluate

    result = evaluate(
        EvalConfig(
            data=args.data,
            images=args.images,
            model=args.model,
            input_hw=args.input_size,
            solver=args.solver,
            time_limit=args.time_limit,
            seed=args.seed,
            min_height=args.min_height,
            threshold=args.threshold,
            limit=args.limit,
            batch_size=args.batch_size,
            device=args.device,
            backend=args.backend,
            precision=args.precision,
            json=args.json,
            coco_results=args.coco_results,
            pcutoff=args.pcutoff,
            test_images=args.test_images,
            scale=args.scale,
            plot=args.plot,
        )
    )
    print(result.text())
    return 0
