"""Evaluating a model over a dataset: images → candidates → problem → solution → poses →
metrics.

Detection runs once per image; each solver then works on the same candidates through
:class:`deepercut.solvers.frame_solver.FrameSolver` (the engine's own unit of work), so the
solvers are compared on identical input and their per-frame time is the engine's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepercut.detection import NetworkDetector
from deepercut.evaluate import HELD_OUT_SEED
from deepercut.evaluate.coco import CocoResult, coco_keypoint_eval, to_coco_results
from deepercut.evaluate.mpii_ap import APResult, multi_person_ap
from deepercut.evaluate.pck import PCKResult, accumulate_pck, person_pck, torso_size
from deepercut.evaluate.pckh import PCKhResult, pckh
from deepercut.evaluate.pcp import PCPResult, pcp, torso_pcp
from deepercut.evaluate.synthetic import candidate_hits, synthetic_detections, synthetic_truth
from deepercut.model.io import Model
from deepercut.solvers.frame_solver import FrameSolver
from deepercut.types import Candidates


@dataclass
class SolvedPoses:
    """One solver's poses over a set of images.

    Attributes:
        method: the solver method.
        keypoints: per image, [M, P, 3] (x, y, score; NaN where absent).
        ms: [N] per-frame time of the frame solver (problem, solve, assembly) in ms.
        statuses: per image, the solve status.
        fallbacks: frames where the fallback solver ran.
    """

    method: str
    keypoints: list[np.ndarray]
    ms: np.ndarray
    statuses: list[str]
    fallbacks: int

    def timing(self) -> dict[str, float]:
        """Median, mean, 90th percentile and maximum ms per frame."""
        if len(self.ms) == 0:
            return {}
        return {
            "median_ms": round(float(np.median(self.ms)), 2),
            "mean_ms": round(float(self.ms.mean()), 2),
            "p90_ms": round(float(np.percentile(self.ms, 90)), 2),
            "max_ms": round(float(self.ms.max()), 2),
        }


def detect(
    detector: NetworkDetector, images: Iterable[np.ndarray], batch_size: int = 8
) -> Iterator[Candidates]:
    """Candidates of each image, detected in batches."""
    batch: list[np.ndarray] = []
    for image in images:
        batch.append(image)
        if len(batch) == batch_size:
            yield from detector.detect(batch)
            batch = []
    if batch:
        yield from detector.detect(batch)


def solve_candidates(
    model: Model, candidates: Sequence[Candidates], method: str, time_limit: float = 1.0
) -> SolvedPoses:
    """Poses of every image's candidates with one solver method (heuristic fallback on a time
    limit, as the engine does)."""
    solver = FrameSolver(
        model.pairwise_model(), model.skeleton, method=method, time_limit=time_limit
    )
    keypoints, ms, statuses, fallbacks = [], [], [], 0
    for i, cands in enumerate(candidates):
        poses = solver(i, float("nan"), cands)
        keypoints.append(poses.keypoints)
        ms.append(poses.solver["ms"])
        statuses.append(str(poses.solver.get("status")))
        fallbacks += bool(poses.solver.get("fallback"))
    return SolvedPoses(method, keypoints, np.asarray(ms, np.float64), statuses, fallbacks)


@dataclass
class PoseMetrics:
    """Multi-person AP, PCKh (with AUC) and PCP/AOP of one set of predictions."""

    ap: APResult
    pckh: PCKhResult
    pcp: PCPResult | None

    def summary(self) -> dict[str, float]:
        out = {
            "mAP": round(self.ap.mean, 4),
            "PCKh@0.5": round(self.pckh.pckh.mean, 4),
            "AUC": round(self.pckh.auc, 4),
        }
        if self.pcp is not None:
            out.update(mPCP=round(self.pcp.mean, 4), AOP=round(self.pcp.aop, 4))
        return out

    def to_dict(self, parts: tuple[str, ...]) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.summary())
        out["ap_per_part"] = _per_part(parts, self.ap.per_part)
        out["pckh_per_part"] = _per_part(parts, self.pckh.pckh.per_part)
        out["gt_joints"] = int(self.ap.counts.sum())
        if self.pcp is not None:
            out["pcp_per_limb"] = _per_part(self.pcp.limb_types, self.pcp.per_limb)
        return out


def _per_part(names: Sequence[str], values: np.ndarray) -> dict[str, float | None]:
    return {
        n: (round(float(v), 4) if np.isfinite(v) else None)
        for n, v in zip(names, values, strict=True)
    }


def pose_metrics(
    preds: list[np.ndarray],
    gts: list[np.ndarray],
    head_sizes: list[np.ndarray],
    parts: tuple[str, ...],
    ignore: list[np.ndarray] | None = None,
) -> PoseMetrics:
    """AP (DeepCut protocol), PCKh@0.5/AUC and upper-body PCP/AOP; ``ignore`` [M] per image
    marks gt people left out of every metric (AP drops the predictions assigned to them)."""
    ignore = ignore if ignore is not None else [np.zeros(len(g), bool) for g in gts]
    kept_gt = [g[~skip] for g, skip in zip(gts, ignore, strict=True)]
    kept_heads = [h[~skip] for h, skip in zip(head_sizes, ignore, strict=True)]
    ap = multi_person_ap(preds, gts, head_sizes, ignore=ignore)
    pckh_result = pckh(preds, kept_gt, kept_heads)
    try:
        pcp_result: PCPResult | None = pcp(preds, kept_gt, kept_heads, parts)
    except ValueError:  # a skeleton without upper-body limbs
        pcp_result = None
    return PoseMetrics(ap, pckh_result, pcp_result)


# ----------------------------------------------------------------------------- synthetic


@dataclass
class SyntheticEvaluation:
    """Held-out synthetic images: candidate PCK and, per solver, the pose metrics."""

    count: int
    seed: int
    min_height: float
    pck: PCKResult
    detect_seconds: float
    solved: dict[str, SolvedPoses] = field(default_factory=dict)
    metrics: dict[str, PoseMetrics] = field(default_factory=dict)


def evaluate_synthetic(
    model: Model,
    detector: NetworkDetector,
    count: int = 100,
    seed: int = HELD_OUT_SEED,
    methods: Sequence[str] = (),
    min_height: float = 100.0,
    pck_threshold: float = 0.2,
    time_limit: float = 1.0,
    batch_size: int = 8,
) -> SyntheticEvaluation:
    """Detect ``count`` held-out synthetic images once; score the candidates (PCK, as
    :func:`deepercut.evaluate.synthetic.synthetic_pck`) and each solver's poses (people no
    taller than ``min_height`` are ignored)."""
    started = time.perf_counter()
    hits, visible, candidates, truths = [], [], [], []
    for sample, cands in synthetic_detections(detector, count, seed, batch_size):
        hit, vis = candidate_hits(sample, cands, min_height, pck_threshold)
        hits.append(hit)
        visible.append(vis)
        candidates.append(cands)
        truths.append(synthetic_truth(sample, sample.image.shape[:2], min_height))
    detect_seconds = time.perf_counter() - started
    result = SyntheticEvaluation(
        count, seed, min_height, accumulate_pck(hits, visible, pck_threshold), detect_seconds
    )
    gts = [t.keypoints for t in truths]
    heads = [t.head_size for t in truths]
    ignore = [t.ignore for t in truths]
    for method in methods:
        solved = solve_candidates(model, candidates, method, time_limit)
        result.solved[method] = solved
        result.metrics[method] = pose_metrics(
            solved.keypoints, gts, heads, model.skeleton.parts, ignore
        )
    return result


# ----------------------------------------------------------------------------- COCO


@dataclass
class CocoSolverResult:
    """One solver's poses on a COCO keypoint set and their OKS AP (standard and body-only)."""

    solved: SolvedPoses
    results: list[dict[str, Any]]
    standard: CocoResult
    body_only: CocoResult


@dataclass
class CocoEvaluation:
    """OKS AP of each solver's poses on a COCO keypoint set."""

    annotations: Path
    images_dir: Path
    image_ids: list[int]
    detect_seconds: float
    solvers: dict[str, CocoSolverResult] = field(default_factory=dict)


def coco_images(annotations: Path, images_dir: Path) -> list[tuple[int, Path]]:
    """(image id, file) of every image of a COCO annotation file, all checked to exist."""
    data = json.loads(Path(annotations).read_text())
    if "images" not in data:
        raise ValueError(f"{annotations} is not a COCO annotation file (no 'images')")
    out = [(int(im["id"]), Path(images_dir) / im["file_name"]) for im in data["images"]]
    missing = [str(p) for _, p in out if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} images of {annotations} are not in {images_dir}: {missing[:3]}"
        )
    return out


def evaluate_coco(
    model: Model,
    detector: NetworkDetector,
    annotations: str | Path,
    images_dir: str | Path,
    methods: Sequence[str] = ("3stage",),
    time_limit: float = 1.0,
    batch_size: int = 4,
    limit: int | None = None,
) -> CocoEvaluation:
    """Run the model on every image of a COCO keypoint file (``limit``: the first N only) and
    score each solver's poses with COCOeval."""
    from deepercut.data.dataset import read_image

    annotations, images_dir = Path(annotations), Path(images_dir)
    images = coco_images(annotations, images_dir)[:limit]
    started = time.perf_counter()
    candidates = list(detect(detector, (read_image(p) for _, p in images), batch_size))
    ids = [i for i, _ in images]
    result = CocoEvaluation(annotations, images_dir, ids, time.perf_counter() - started)
    for method in methods:
        solved = solve_candidates(model, candidates, method, time_limit)
        entries = [
            entry
            for image_id, kp in zip(ids, solved.keypoints, strict=True)
            for entry in to_coco_results(image_id, kp, model.skeleton.parts)
        ]
        result.solvers[method] = CocoSolverResult(
            solved,
            entries,
            coco_keypoint_eval(annotations, entries, ids),
            coco_keypoint_eval(annotations, entries, ids, body_only=True),
        )
    return result


# ----------------------------------------------------------------------------- MPII / LSP


@dataclass
class DatasetEvaluation:
    """Pose metrics of one solver on an annotated dataset (MPII, LSP)."""

    name: str
    parts: tuple[str, ...]
    solved: SolvedPoses
    metrics: PoseMetrics | None
    pck: PCKResult | None
    pcp: PCPResult | None
    detect_seconds: float


def to_model_parts(
    keypoints: np.ndarray, data_parts: Sequence[str], model_parts: Sequence[str]
) -> np.ndarray:
    """Ground truth [M, P_data, 3] re-indexed to the model's parts by name (absent: v = 0)."""
    out = np.zeros((keypoints.shape[0], len(model_parts), 3), np.float32)
    for j, name in enumerate(model_parts):
        if name in data_parts:
            out[:, j] = keypoints[:, list(data_parts).index(name)]
    return out


def evaluate_dataset(
    model: Model,
    detector: NetworkDetector,
    dataset: Any,
    methods: Sequence[str] = ("3stage",),
    time_limit: float = 1.0,
    batch_size: int = 4,
) -> dict[str, DatasetEvaluation]:
    """Score each solver on a :class:`deepercut.data.dataset.PoseDataset` (parts matched by
    name; detection runs once).

    With head sizes (MPII): multi-person AP, PCKh@0.5/AUC and PCP/AOP. Without (LSP):
    person-centric PCK@0.2 of the torso size (left shoulder to right hip) and PCP of all
    limbs, people matched at 0.2 of the torso size.
    """
    parts = model.skeleton.parts
    if not any(p in dataset.skeleton.parts for p in parts):
        raise ValueError(
            f"{dataset.name}: none of its parts {dataset.skeleton.parts} is one of the "
            f"model's {parts}"
        )
    started = time.perf_counter()
    candidates = list(
        detect(detector, (dataset.image(i).copy() for i in range(len(dataset))), batch_size)
    )
    detect_seconds = time.perf_counter() - started
    gts = [to_model_parts(r.keypoints, dataset.skeleton.parts, parts) for r in dataset.records]
    out = {}
    for method in methods:
        solved = solve_candidates(model, candidates, method, time_limit)
        out[method] = _score_dataset(dataset, parts, solved, gts, detect_seconds)
    return out


def _score_dataset(
    dataset: Any,
    parts: tuple[str, ...],
    solved: SolvedPoses,
    gts: list[np.ndarray],
    detect_seconds: float,
) -> DatasetEvaluation:
    if all(r.head_size is not None for r in dataset.records):
        heads = [np.asarray(r.head_size, np.float64) for r in dataset.records]
        metrics = pose_metrics(solved.keypoints, gts, heads, parts)
        return DatasetEvaluation(
            dataset.name, parts, solved, metrics, None, metrics.pcp, detect_seconds
        )
    torsos = [torso_size(g, parts) for g in gts]
    pck_result = person_pck(solved.keypoints, gts, torsos, threshold=0.2)
    pcp_result = torso_pcp(solved.keypoints, gts, parts)
    return DatasetEvaluation(
        dataset.name, parts, solved, None, pck_result, pcp_result, detect_seconds
    )


# ----------------------------------------------------------------------------- plots


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, or an ImportError saying how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "--plot needs matplotlib: pip install matplotlib (or deepercut[eval])"
        ) from exc
    return plt


def plot_ap_curves(result: APResult, parts: Sequence[str], title: str, path: Path) -> Path:
    """Per-part precision/recall curves of a multi-person AP evaluation as a PNG."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    colours = plt.get_cmap("tab20")
    curves = zip(parts, result.precision, result.recall, result.per_part, strict=True)
    for k, (name, p, r, ap) in enumerate(curves):
        if len(p) and np.isfinite(ap):
            ax.plot(r, p, label=f"{name} ({ap:.2f})", linewidth=1, color=colours(k % 20))
    ax.set(
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title=f"{title}: mAP {result.mean:.3f}",
    )
    ax.legend(fontsize=6, ncol=2, loc="lower left")
    return _save(fig, plt, path)


def plot_pckh_curves(curves: dict[str, PCKhResult], title: str, path: Path) -> Path:
    """Mean PCKh against the threshold (one line per label) as a PNG."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for label, res in curves.items():
        present = res.pckh.counts > 0
        ax.plot(res.thresholds, res.curve[:, present].mean(1), label=f"{label} (AUC {res.auc:.3f})")
    ax.set(
        xlabel="threshold (× head size)",
        ylabel="PCKh",
        xlim=(0, res.thresholds[-1]),
        ylim=(0, 1.02),
        title=title,
    )
    ax.legend(fontsize=8)
    return _save(fig, plt, path)


def plot_coco_pr(result: CocoResult, title: str, path: Path) -> Path:
    """COCOeval precision/recall curves at OKS 0.5, 0.75 and averaged over 0.5:0.95."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    if result.precision is not None:
        # [T, R, K, A, M]: category 0, area "all", the largest maxDets.
        prec = np.where(result.precision[:, :, 0, 0, -1] < 0, 0, result.precision[:, :, 0, 0, -1])
        for t in (0.5, 0.75):
            k = int(np.argmin(np.abs(result.iou_thresholds - t)))
            ax.plot(result.recall_thresholds, prec[k], label=f"OKS {t}")
        ax.plot(result.recall_thresholds, prec.mean(0), label="mean over OKS 0.5:0.95")
    ax.set(
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title=f"{title}: AP {result.stats['AP']:.3f}",
    )
    ax.legend(fontsize=8)
    return _save(fig, plt, path)


def _save(fig: Any, plt: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
