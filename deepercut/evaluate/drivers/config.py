"""What ``deepercut eval`` is asked to do: :class:`EvalConfig`, and the reading of its data and
solver specs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deepercut.evaluate import HELD_OUT_SEED
from deepercut.solvers import METHODS

#: What ``--solver all`` evaluates (the engine's solvers; ``deepcut`` must be named).
ALL_SOLVERS = ("3stage", "2stage", "exact", "heuristic")


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation (the ``deepercut eval`` options; see its ``--help``).

    Attributes:
        data: ``synthetic``, a COCO keypoint .json, an MPII/LSP .mat or a DLC config.yaml.
        images: synthetic: how many (default 200); COCO/MPII/LSP: the image folder.
        model: checkpoint; ``None``: the bundled model.
        input_hw: network input H×W; ``None``: the model's.
        solver: solver spec (see :func:`parse_solvers`); ``None``: the data's default.
        backend, precision, device, batch_size: the detector's, as ``deepercut run`` takes them.
        json: write the report here.
        coco_results: COCO: write the detections here.
        pcutoff: DLC likelihood cut-off; ``None``: the project's.
        test_images: DLC: test image names; LSP: names or a .txt file of names.
        scale: LSP: run each image at this factor of its own size.
        plot: save curves (PNG) in this folder.
    """

    data: str = "synthetic"
    images: str | None = None
    model: str | None = None
    input_hw: tuple[int, int] | None = None
    solver: str | None = None
    time_limit: float = 1.0
    seed: int = HELD_OUT_SEED
    min_height: float = 100.0
    threshold: float = 0.2
    limit: int | None = None
    batch_size: int = 8
    device: str | None = None
    backend: str = "auto"
    precision: str | None = None
    json: str | None = None
    coco_results: str | None = None
    pcutoff: float | None = None
    test_images: str | None = None
    scale: float | None = None
    plot: str | None = None

    @property
    def model_name(self) -> str:
        return self.model or "bundled"


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
