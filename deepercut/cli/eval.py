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
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from deepercut.cli.args import parse_hw
from deepercut.evaluate import HELD_OUT_SEED
from deepercut.solvers import METHODS

#: What ``--solver all`` evaluates (the engine's solvers; ``deepcut`` must be named).
ALL_SOLVERS = ("3stage", "2stage", "exact", "heuristic")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` subcommand."""
    p = subparsers.add_parser(
        "eval",
        help="evaluate a model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data",
        default="synthetic",
        help="'synthetic', a COCO keypoint .json, an MPII/LSP .mat or a DLC config.yaml",
    )
    p.add_argument(
        "--images",
        default=None,
        help="synthetic: how many images (default 200); COCO/MPII/LSP: the image folder",
    )
    p.add_argument("--model", default=None, help="checkpoint (default: the bundled model)")
    p.add_argument(
        "--input-size",
        type=parse_hw,
        default=None,
        help="network input HxW, multiples of 16 (default: the model's)",
    )
    p.add_argument(
        "--solver",
        default=None,
        help=f"solver(s), comma-separated, of {', '.join(METHODS)}, or 'all' "
        f"({','.join(ALL_SOLVERS)}); synthetic default: none (candidate PCK only); "
        "otherwise 3stage",
    )
    p.add_argument("--time-limit", type=float, default=1.0, help="seconds per frame's solve")
    p.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="first held-out seed")
    p.add_argument("--min-height", type=float, default=100.0, help="score people taller than this")
    p.add_argument("--threshold", type=float, default=0.2, help="PCK threshold (× person height)")
    p.add_argument("--limit", type=int, default=None, help="only the first N dataset images")
    p.add_argument("--batch-size", type=int, default=8, help="images per detector batch")
    p.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if available)"
    )
    p.add_argument("--json", default=None, help="write the report here")
    p.add_argument("--coco-results", default=None, help="COCO: write the detections here")
    p.add_argument(
        "--pcutoff", type=float, default=None, help="DLC: likelihood cut-off (default: config's)"
    )
    p.add_argument(
        "--test-images",
        default=None,
        help="DLC: comma-separated test image names (default: "
        "the project's TrainingFraction split, seed 1); LSP: the images to score (names, "
        "comma-separated, or a .txt file of names)",
    )
    p.add_argument(
        "--scale",
        type=float,
        default=None,
        help="LSP: run each image at this factor of its own size (default 1; LSP people are "
        "~150 px) instead of letterboxing it into --input-size",
    )
    p.add_argument("--plot", default=None, help="save PR / PCK-threshold curves (PNG) here")
    p.set_defaults(func=run_eval)


def parse_solvers(spec: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    """``--solver`` as a tuple of methods (``all`` expands; duplicates dropped)."""
    if spec is None:
        return default
    names: list[str] = []
    for name in spec.split(","):
        name = name.strip()
        for method in ALL_SOLVERS if name == "all" else (name,):
            if method not in METHODS:
                raise ValueError(f"unknown --solver {method!r}; choose from {METHODS} or 'all'")
            if method not in names:
                names.append(method)
    return tuple(names)


def data_kind(data: str) -> str:
    """``synthetic``, ``coco``, ``mat`` or ``dlc`` for a ``--data`` value."""
    if data == "synthetic":
        return "synthetic"
    path = Path(data)
    if not path.exists():
        raise FileNotFoundError(f"--data {data!r}: no such file (or use 'synthetic')")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "coco"
    if suffix == ".mat":
        return "mat"
    if suffix in (".yaml", ".yml") or (path.is_dir() and (path / "config.yaml").is_file()):
        return "dlc"
    raise ValueError(
        f"--data {data!r}: expected 'synthetic', a COCO .json, an MPII/LSP .mat or a "
        "DeepLabCut config.yaml"
    )


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate as the arguments say; returns the exit code."""
    kind = data_kind(args.data)
    methods = parse_solvers(args.solver, () if kind == "synthetic" else ("3stage",))
    # Optional extras: fail before the long run, through the CLI's error message.
    try:
        if args.plot:
            from deepercut.evaluate.report import pyplot

            pyplot()
        if kind == "coco":
            from deepercut.evaluate.coco import require_pycocotools

            require_pycocotools()
    except ImportError as exc:
        raise RuntimeError(str(exc)) from exc
    import torch

    from deepercut.model.io import load_model
    from deepercut.model.predict import Predictor

    model = load_model(args.model)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    predictor = Predictor(model, device=device, input_hw=args.input_size)
    run = {"synthetic": _eval_synthetic, "coco": _eval_coco, "mat": _eval_mat, "dlc": _eval_dlc}
    report = {"input_hw": list(predictor.input_hw), **run[kind](args, model, predictor, methods)}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _model_name(args: argparse.Namespace) -> str:
    return args.model or "bundled"


def _eval_synthetic(
    args: argparse.Namespace, model: Any, predictor: Any, methods: tuple[str, ...]
) -> dict[str, Any]:
    from deepercut.evaluate.report import evaluate_synthetic, plot_ap_curves, plot_pckh_curves

    count = 200 if args.images is None else _count(args.images)
    started = time.perf_counter()
    ev = evaluate_synthetic(
        model,
        predictor,
        count,
        args.seed,
        methods,
        args.min_height,
        args.threshold,
        args.time_limit,
        args.batch_size,
    )
    seconds = time.perf_counter() - started
    parts = model.skeleton.parts
    print(
        f"PCK@{args.threshold:g} of best candidates, {count} held-out synthetic images, "
        f"people > {args.min_height:g} px ({args.model or 'bundled model'} at "
        f"{predictor.input_hw[0]}x{predictor.input_hw[1]}, {seconds:.0f} s)"
    )
    print(ev.pck.table(parts))
    report: dict[str, Any] = {
        "data": "synthetic",
        "model": _model_name(args),
        "images": count,
        "seed": args.seed,
        "min_height": args.min_height,
        "threshold": args.threshold,
        "per_part": dict(zip(parts, ev.pck.per_part.round(4).tolist(), strict=True)),
        "joints": int(ev.pck.counts.sum()),
        "mean_pck": round(ev.pck.mean, 4),
        "seconds": round(seconds, 1),
    }
    if not methods:
        return report
    print(
        f"\nPoses per solver (people > {args.min_height:g} px scored, smaller ones ignored; "
        "AP and PCKh at 0.5 of the head size; ms per frame: problem + solve + assembly)"
    )
    header = f"{'solver':<10}{'mAP':>7}{'PCKh':>7}{'AUC':>7}{'mPCP':>7}{'AOP':>7}"
    print(header + f"{'median ms':>11}{'mean ms':>9}{'fallbacks':>11}")
    solvers: dict[str, Any] = {}
    for method in methods:
        metrics, solved = ev.metrics[method], ev.solved[method]
        s, t = metrics.summary(), solved.timing()
        print(
            f"{method:<10}{s['mAP']:>7.3f}{s['PCKh@0.5']:>7.3f}{s['AUC']:>7.3f}"
            f"{s.get('mPCP', float('nan')):>7.3f}{s.get('AOP', float('nan')):>7.3f}"
            f"{t['median_ms']:>11.1f}{t['mean_ms']:>9.1f}{solved.fallbacks:>11d}"
        )
        solvers[method] = {**metrics.to_dict(parts), **t, "fallbacks": solved.fallbacks}
    best = methods[0]
    print(f"\nAP per part ({best}):")
    print(ev.metrics[best].ap.table(parts))
    report["pose_metrics"] = {
        "protocol": "multi-person AP (DeepCut evaluateAP: people matched by PCKh 0.5, per-part "
        "AP over score-ranked joints), PCKh@0.5 and AUC over 0..0.5, upper-body PCP (0.5 of "
        "the limb) and AOP; head size = 0.6*sqrt(2)*|head_top - neck|; joints hidden by "
        "people in front are labelled (v=1), joints outside the image are not; people "
        f"<= {args.min_height:g} px are ignored",
        "time_limit_s": args.time_limit,
        "detect_seconds": round(ev.detect_seconds, 1),
        "solvers": solvers,
    }
    if args.plot:
        out = Path(args.plot)
        for method in methods:
            plot_ap_curves(
                ev.metrics[method].ap, parts, f"synthetic, {method}", out / f"ap_{method}.png"
            )
        plot_pckh_curves(
            {m: ev.metrics[m].pckh for m in methods}, "synthetic: PCKh", out / "pckh.png"
        )
        print(f"plots in {out}/")
    return report


def _count(images: str) -> int:
    try:
        count = int(images)
    except ValueError:
        raise ValueError(f"--images for synthetic data is a count, got {images!r}") from None
    if count < 1:
        raise ValueError(f"--images must be >= 1, got {count}")
    return count


def _images_dir(args: argparse.Namespace) -> Path:
    """``--images`` or, for COCO, the ``val2017``/``train2017`` folder beside the annotations."""
    if args.images is not None:
        path = Path(args.images)
        if not path.is_dir():
            raise NotADirectoryError(f"--images {args.images!r} is not a folder")
        return path
    ann = Path(args.data).resolve()
    for base in (ann.parent, ann.parent.parent):
        for name in ("val2017", "train2017", "images"):
            if (base / name).is_dir():
                return base / name
    raise ValueError(f"--data {args.data}: give the image folder with --images DIR")


def _eval_coco(
    args: argparse.Namespace, model: Any, predictor: Any, methods: tuple[str, ...]
) -> dict[str, Any]:
    from deepercut.data.coco import COCO_PARTS
    from deepercut.evaluate.coco import coco_part_map, write_results
    from deepercut.evaluate.report import evaluate_coco, plot_coco_pr

    images = _images_dir(args)
    started = time.perf_counter()
    ev = evaluate_coco(
        model,
        predictor,
        args.data,
        images,
        methods,
        args.time_limit,
        args.batch_size,
        args.limit,
    )
    seconds = time.perf_counter() - started
    mapped = int((coco_part_map(model.skeleton.parts) >= 0).sum())
    print(
        f"COCO keypoint OKS AP (pycocotools), {len(ev.image_ids)} images of {args.data} "
        f"({args.model or 'bundled model'}, {seconds:.0f} s); the model predicts {mapped} of "
        "COCO's 17 keypoints, the rest count as misses"
    )
    print(f"{'solver':<10}{'AP':>7}{'AP50':>7}{'AP75':>7}{'AR':>7}{'AP body':>9}{'people':>8}")
    solvers: dict[str, Any] = {}
    for method, res in ev.solvers.items():
        st, body = res.standard.stats, res.body_only.stats
        print(
            f"{method:<10}{st['AP']:>7.3f}{st['AP50']:>7.3f}{st['AP75']:>7.3f}{st['AR']:>7.3f}"
            f"{body['AP']:>9.3f}{len(res.results):>8d}"
        )
        solvers[method] = {
            "oks": {k: round(v, 4) for k, v in st.items()},
            "oks_body_only": {k: round(v, 4) for k, v in body.items()},
            "best_oks_per_person": _oks_summary(res.standard.best_oks),
            "best_oks_per_person_body_only": _oks_summary(res.body_only.best_oks),
            "detections": len(res.results),
            **res.solved.timing(),
        }
    if args.coco_results:
        write_results(ev.solvers[methods[0]].results, args.coco_results)
        print(f"detections ({methods[0]}) written to {args.coco_results}")
    if args.plot:
        for method, res in ev.solvers.items():
            plot_coco_pr(res.standard, f"COCO, {method}", Path(args.plot) / f"coco_pr_{method}.png")
        print(f"plots in {args.plot}/")
    return {
        "data": str(args.data),
        "images_dir": str(images),
        "images": len(ev.image_ids),
        "model": _model_name(args),
        "metric": "COCO keypoint OKS AP/AR via pycocotools COCOeval (standard 17 keypoints; "
        "'oks_body_only': the same with the ground truth's nose, eyes and ears unlabelled)",
        "keypoints_predicted": [
            n
            for n, i in zip(COCO_PARTS, coco_part_map(model.skeleton.parts), strict=True)
            if i >= 0
        ],
        "time_limit_s": args.time_limit,
        "detect_seconds": round(ev.detect_seconds, 1),
        "seconds": round(seconds, 1),
        "solvers": solvers,
    }


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


def _eval_mat(
    args: argparse.Namespace, model: Any, predictor: Any, methods: tuple[str, ...]
) -> dict[str, Any]:
    from deepercut.data.load import load_dataset
    from deepercut.evaluate.report import evaluate_dataset, plot_pckh_curves

    dataset = load_dataset(args.data, args.images)
    if dataset.name.startswith("lsp:"):
        return _eval_lsp(args, model, predictor, dataset)
    if args.limit is not None:
        dataset = dataset.subset(range(min(args.limit, len(dataset))))
    started = time.perf_counter()
    results = evaluate_dataset(model, predictor, dataset, methods, args.time_limit, args.batch_size)
    seconds = time.perf_counter() - started
    parts = model.skeleton.parts
    print(
        f"{dataset.name}: {len(dataset)} images ({args.model or 'bundled model'}, {seconds:.0f} s)"
    )
    solvers: dict[str, Any] = {}
    for method, ev in results.items():
        print(f"\n[{method}]")
        entry: dict[str, Any] = dict(ev.solved.timing())
        if ev.metrics is not None:
            print(ev.metrics.pckh.table(parts))
            print(ev.metrics.ap.table(parts))
            entry.update(ev.metrics.to_dict(parts))
        if ev.pck is not None:
            print(ev.pck.table(parts))
            entry["PCK@0.2_torso"] = round(ev.pck.mean, 4)
            entry["pck_per_part"] = dict(zip(parts, ev.pck.per_part.round(4).tolist(), strict=True))
        if ev.pcp is not None:
            print(ev.pcp.table())
            entry.update(mPCP=round(ev.pcp.mean, 4), AOP=round(ev.pcp.aop, 4))
        solvers[method] = entry
    if args.plot:
        curves = {m: ev.metrics.pckh for m, ev in results.items() if ev.metrics is not None}
        if curves:
            plot_pckh_curves(curves, dataset.name, Path(args.plot) / "pckh.png")
            print(f"plots in {args.plot}/")
    return {
        "data": str(args.data),
        "dataset": dataset.name,
        "images": len(dataset),
        "model": _model_name(args),
        "time_limit_s": args.time_limit,
        "seconds": round(seconds, 1),
        "solvers": solvers,
    }


def _eval_lsp(args: argparse.Namespace, model: Any, predictor: Any, dataset: Any) -> dict[str, Any]:
    """LSP's single-person protocol (:mod:`deepercut.evaluate.lsp`); solvers on request."""
    from deepercut.data.dataset import read_name_list
    from deepercut.evaluate.lsp import lsp_pck, predict_single_person
    from deepercut.evaluate.pcp import torso_pcp
    from deepercut.evaluate.report import detect, solve_candidates, to_model_parts

    dataset, missing = dataset.with_existing_images()
    names = None
    if args.test_images:
        names = read_name_list([n.strip() for n in args.test_images.split(",") if n.strip()])
        dataset = dataset.split(test_names=names)[1]
    if args.limit is not None:
        dataset = dataset.subset(range(min(args.limit, len(dataset))))
    if len(dataset) == 0:
        raise ValueError(f"{args.data}: no images to evaluate")
    scale = args.scale if args.scale is not None else (None if args.input_size else 1.0)
    parts = model.skeleton.parts
    gts = [to_model_parts(r.keypoints, dataset.skeleton.parts, parts) for r in dataset.records]
    images = [dataset.image(i).copy() for i in range(len(dataset))]
    started = time.perf_counter()
    if scale is None:  # letterboxed into the network input, as the engine runs
        from deepercut.evaluate.dlc import predict_best_per_part

        preds = predict_best_per_part(predictor, images, args.batch_size)
    else:
        preds = predict_single_person(model, images, scale, str(predictor.device))
    single = lsp_pck(preds, gts, parts)
    seconds = time.perf_counter() - started
    where = f"{scale:g} x image size" if scale else f"letterboxed {predictor.input_hw}"
    print(
        f"{dataset.name}: {len(dataset)} images ({len(missing)} absent skipped), "
        f"{args.model or 'bundled model'} at {where}, {seconds:.0f} s\n"
        "single-person read-out (each part's best cell): person-centric PCK@0.2 of the torso"
    )
    print(single.table(parts))
    report: dict[str, Any] = {
        "data": str(args.data),
        "dataset": dataset.name,
        "images": len(dataset),
        "absent_images": len(missing),
        "test_images": args.test_images,
        "model": _model_name(args),
        "scale": scale,
        "protocol": "LSP single person: each part's best-scoring cell (refined) per image; "
        "PCK@0.2 of the torso size (left shoulder to right hip), person-centric; AUC over "
        "thresholds 0..0.2; unlabelled joints (LSPET flag 0) not counted",
        "seconds": round(seconds, 1),
        "single_person": single.to_dict(parts),
    }
    if args.solver:  # the multi-person engine's poses, each gt person given its best match
        methods = parse_solvers(args.solver, ("3stage",))
        if scale is None:
            cands = list(detect(predictor, images, args.batch_size))
        else:
            from deepercut.evaluate.lsp import scaled_input_hw
            from deepercut.model.predict import Predictor

            cands = [
                Predictor(model, scaled_input_hw(im.shape[:2], scale), device=predictor.device)(
                    [im]
                )[0]
                for im in images
            ]
        solvers = {}
        for method in methods:
            solved = solve_candidates(model, cands, method, args.time_limit)
            result = lsp_pck(solved.keypoints, gts, parts)
            print(f"\n[{method}] poses, each gt person scored against its best-matching pose")
            print(result.table(parts))
            solvers[method] = {**result.to_dict(parts), **solved.timing()}
            limbs = torso_pcp(solved.keypoints, gts, parts)
            if limbs is not None:
                print(limbs.table())
                solvers[method].update(mPCP=round(limbs.mean, 4), AOP=round(limbs.aop, 4))
        report["solvers"] = solvers
    return report


def _eval_dlc(
    args: argparse.Namespace, model: Any, predictor: Any, methods: tuple[str, ...]
) -> dict[str, Any]:
    from deepercut.data.dlc import read_config, training_fraction
    from deepercut.data.load import load_dataset
    from deepercut.evaluate.dlc import DEFAULT_PCUTOFF, pixel_errors, predict_best_per_part
    from deepercut.evaluate.report import detect, solve_candidates, to_model_parts

    dataset = load_dataset(args.data)
    config_path = Path(args.data)
    config = read_config(config_path / "config.yaml" if config_path.is_dir() else config_path)
    pcutoff = (
        args.pcutoff if args.pcutoff is not None else float(config.get("pcutoff", DEFAULT_PCUTOFF))
    )
    parts = model.skeleton.parts
    if not set(parts) & set(dataset.skeleton.parts):
        raise ValueError(
            f"the model's parts {parts} share none with the project's {dataset.skeleton.parts}"
        )
    if args.test_images:
        train, test = dataset.split(test_names=args.test_images.split(","))
    else:
        train, test = dataset.split(training_fraction(config), seed=1)
    # Single animal: DeepLabCut's read-out (each part's best cell); with --solver: the poses.
    readout = methods[0] if args.solver else "best-per-part"
    started = time.perf_counter()
    splits: dict[str, Any] = {}
    for name, subset in (("test", test), ("train", train)):
        if len(subset) == 0:
            continue
        images = [subset.image(i).copy() for i in range(len(subset))]
        if args.solver:
            cands = list(detect(predictor, images, args.batch_size))
            preds = solve_candidates(model, cands, methods[0], args.time_limit).keypoints
        else:
            preds = predict_best_per_part(predictor, images, args.batch_size)
        truths = [to_model_parts(r.keypoints, dataset.skeleton.parts, parts) for r in subset]
        errors = pixel_errors(preds, truths, parts)
        print(f"\n{dataset.name} [{name}], {len(subset)} images, {readout}: pixel error")
        print(errors.table(pcutoff))
        splits[name] = {"images": len(subset), **errors.to_dict(pcutoff)}
    return {
        "data": str(args.data),
        "model": _model_name(args),
        "readout": readout,
        "test_images": [r.image_path.name for r in test],
        "seconds": round(time.perf_counter() - started, 1),
        **splits,
    }
