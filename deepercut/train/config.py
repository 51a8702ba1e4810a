"""What ``deepercut train`` is asked to do: :class:`TrainConfig`, checked once when it is made.

Its fields are the command's options under their argparse names, because a checkpoint stores
them (``meta["args"]``, :meth:`TrainConfig.to_args`) and ``--resume`` rebuilds the run from
them (:meth:`TrainConfig.resumed`): the stored form is the flat dict of the options that
checkpoints have always held, so every resumable checkpoint stays resumable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

#: Options a resumed run takes from its command line; all others come from the checkpoint.
RESUME_OWN = frozenset(
    {"resume", "out", "log", "threads", "stop_at", "save_every", "keep_checkpoints",
     "no_progress", "pairwise_images", "max_minutes"}
)  # fmt: skip

#: Keys of a stored argument dict that are no options: the subcommand's name and the parser's
#: own entries (older checkpoints store ``command``).
_NOT_OPTIONS = frozenset({"command", "func", "argv"})

#: Options holding pairs or lists: tuples here, lists once stored through JSON.
_SEQUENCES = frozenset(
    {"test_images", "person_heights", "crop_hw", "input_hw", "heights", "people"}
)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """One ``deepercut train`` run (the options of ``deepercut train --help``, same names).

    Data: ``data`` (``synthetic`` or a dataset path), ``images``, ``train_fraction``,
    ``split_seed``, ``test_images``, ``mix_synthetic``, ``person_heights``, ``mask_margin``,
    ``jitter``, ``target_height``, ``background_prob``, ``min_radius``. Network: ``arch``,
    ``width``, ``head_channels``. Schedule and chunks: ``steps``, ``warmup``, ``save_every``,
    ``stop_at``, ``max_minutes``, ``resume``, ``keep_checkpoints``. Batches: ``batch_size``,
    ``lr``, ``crop_hw``, ``input_hw``, ``heights`` and ``people`` (synthetic crowds),
    ``rotation``, ``seed``. The process: ``threads``, ``no_progress``, ``log``, ``init``.
    Pairwise: ``pairwise_images``, ``pairwise_only``. Output: ``out``.
    ``None`` means "the data's default" where the option's help says so.
    """

    data: str = "synthetic"
    images: str | None = None
    train_fraction: float | None = None
    split_seed: int = 1
    test_images: tuple[str, ...] | None = None
    mix_synthetic: float = 0.0
    person_heights: tuple[float, float] | None = None
    mask_margin: float | None = None
    jitter: float = 0.25
    target_height: float | None = None
    background_prob: float = 0.1
    min_radius: float | None = None
    arch: str = "resnet18"
    width: int = 32
    head_channels: int = 128
    steps: int = 3000
    warmup: int = 100
    save_every: int | None = None
    stop_at: int | None = None
    max_minutes: float | None = None
    resume: str | None = None
    keep_checkpoints: bool = False
    batch_size: int = 16
    lr: float = 2e-3
    crop_hw: tuple[int, int] = (256, 256)
    input_hw: tuple[int, int] | None = None
    heights: tuple[float, float] = (40.0, 250.0)
    people: tuple[int, int] = (1, 6)
    rotation: float = 15.0
    seed: int = 0
    threads: int | None = None
    no_progress: bool = False
    log: str | None = None
    init: str | None = None
    pairwise_images: int = 300
    pairwise_only: str | None = None
    out: str

    def __post_init__(self) -> None:
        for name in _SEQUENCES:  # argparse and JSON give lists
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        problems = _problems(self)
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_args(cls, values: Mapping[str, Any]) -> TrainConfig:
        """The config of an argument dict: ``vars()`` of the parsed command line, or a
        checkpoint's stored ``meta["args"]``. Options it lacks (older than the checkpoint)
        take their defaults.

        Raises:
            ValueError: a key that is no option of ``deepercut train``, or a bad value.
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names - _NOT_OPTIONS)
        if unknown:
            raise ValueError(f"unknown training options: {', '.join(unknown)}")
        return cls(**{k: v for k, v in values.items() if k in names})

    def to_args(self) -> dict[str, Any]:
        """The stored form (a checkpoint's ``meta["args"]``): every option by its argparse
        name, as the parsed command line of ``deepercut train`` held it."""
        return {"command": "train", **{f.name: getattr(self, f.name) for f in fields(self)}}

    def resumed(self, stored: Any) -> TrainConfig:
        """The run ``--resume`` continues: the checkpoint's ``stored`` options, except those
        in :data:`RESUME_OWN`, which come from this (the command line's) config; an unset
        ``save_every`` keeps the stored one.

        Raises:
            ValueError: ``stored`` is not an argument dict of ``deepercut train``.
        """
        if not isinstance(stored, dict):
            raise ValueError(f"{self.resume}: the checkpoint does not record its arguments")
        own = {name: getattr(self, name) for name in RESUME_OWN}
        if self.save_every is None:
            own["save_every"] = stored.get("save_every")
        return TrainConfig.from_args({**stored, **own})

    @property
    def training_crop_hw(self) -> tuple[int, int]:
        """The size samples are drawn at: the crop plus a 16-pixel margin on each side, which
        augmentation (rotation, scale) crops away."""
        return self.crop_hw[0] + 32, self.crop_hw[1] + 32


def _problems(c: TrainConfig) -> list[str]:
    """What is wrong with ``c``, as messages naming the option (empty when it is sound)."""
    checks = [
        (c.steps >= 1, f"--steps must be >= 1, got {c.steps}"),
        (c.warmup >= 0, f"--warmup must be >= 0, got {c.warmup}"),
        (c.batch_size >= 1, f"--batch-size must be >= 1, got {c.batch_size}"),
        (c.lr > 0, f"--lr must be > 0, got {c.lr}"),
        (c.width >= 1 and c.head_channels >= 1, "--width and --head-channels must be >= 1"),
        (c.save_every is None or c.save_every >= 0, f"--save-every must be >= 0: {c.save_every}"),
        (c.stop_at is None or c.stop_at >= 1, f"--stop-at must be >= 1, got {c.stop_at}"),
        (c.max_minutes is None or c.max_minutes > 0, "--max-minutes must be > 0"),
        (0.0 <= c.mix_synthetic <= 1.0, f"--mix-synthetic must be in [0, 1]: {c.mix_synthetic}"),
        (0.0 <= c.background_prob <= 1.0, "--background-prob must be in [0, 1]"),
        (c.jitter >= 0, f"--jitter must be >= 0, got {c.jitter}"),
        (c.pairwise_images >= 0, f"--pairwise-images must be >= 0, got {c.pairwise_images}"),
        (c.threads is None or c.threads >= 0, f"--threads must be >= 0, got {c.threads}"),
        (
            c.train_fraction is None or 0.0 < c.train_fraction <= 1.0,
            f"--train-fraction must be in (0, 1], got {c.train_fraction}",
        ),
        (_is_range(c.people, 0), f"--people MIN MAX must be 0 <= MIN <= MAX, got {c.people}"),
        (_is_range(c.heights, 0, open_low=True), f"--heights must be 0 < MIN <= MAX: {c.heights}"),
        (
            c.person_heights is None or _is_range(c.person_heights, 0, open_low=True),
            f"--person-heights must be 0 < MIN <= MAX, got {c.person_heights}",
        ),
        (_is_size(c.crop_hw), f"--crop-hw must be two positive sizes, got {c.crop_hw}"),
        (
            c.input_hw is None or _is_size(c.input_hw),
            f"--input-hw must be two positive sizes, got {c.input_hw}",
        ),
    ]
    return [message for ok, message in checks if not ok]


def _is_range(pair: tuple[float, ...], low: float, *, open_low: bool = False) -> bool:
    if len(pair) != 2:
        return False
    lo, hi = pair
    return (lo > low if open_low else lo >= low) and lo <= hi


def _is_size(hw: tuple[int, ...]) -> bool:
    return len(hw) == 2 and all(isinstance(v, int) and v > 0 for v in hw)
