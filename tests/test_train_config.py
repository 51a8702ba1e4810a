"""``deepercut train``'s options as a :class:`TrainConfig`: the stored form checkpoints hold
(``meta["args"]``), what ``--resume`` reads back from it, and the checks made once."""

from __future__ import annotations

import json

import pytest

from deepercut.cli import build_parser
from deepercut.train.config import TrainConfig

#: ``meta["args"]`` of a checkpoint written before this config existed (an LSPET stage of the
#: bundled model's training, trimmed of nothing): the argparse Namespace as a JSON dict.
OLD_STYLE_ARGS = json.loads("""{"command": "train", "data": "/data/lspet/joints.mat",
"images": null, "train_fraction": null, "split_seed": 1,
"test_images": ["training/lspet/val_images.txt"], "mix_synthetic": 0.5,
"person_heights": [80.0, 350.0], "mask_margin": null, "jitter": 0.1, "target_height": null,
"background_prob": 0.1, "min_radius": null, "arch": "resnet18", "width": 32,
"head_channels": 128, "steps": 3000, "warmup": 20, "save_every": 100, "stop_at": null,
"max_minutes": 38.0, "resume": null, "keep_checkpoints": true, "batch_size": 16, "lr": 0.0007,
"crop_hw": [256, 256], "input_hw": [480, 640], "heights": [60.0, 340.0], "people": [1, 6],
"rotation": 15.0, "seed": 19, "threads": 1, "no_progress": false, "log": null,
"init": "/runs/lspet/lspet-step250.pt", "pairwise_images": 300, "pairwise_only": null,
"out": "/runs/lspet/stage2/lspet.pt"}""")


def _parsed(*argv: str) -> dict:
    return vars(build_parser().parse_args(["train", *argv]))


def test_the_stored_form_is_the_parsed_command_line() -> None:
    argv = ("--data", "x.mat", "--people", "2", "3", "--crop-hw", "64x96", "-o", "out.pt")
    parsed = _parsed(*argv)
    config = TrainConfig.from_args(parsed)
    stored = config.to_args()
    # Exactly the keys and values the Namespace held (less argparse's `func`), so checkpoints
    # keep their format and older code reads them.
    expected = {k: v for k, v in parsed.items() if k != "func"}
    assert stored.keys() == expected.keys()
    assert json.loads(json.dumps(stored)) == json.loads(json.dumps(expected))
    assert config.people == (2, 3) and config.crop_hw == (64, 96)
    assert TrainConfig.from_args(json.loads(json.dumps(stored))) == config


def test_defaults_are_the_parsers() -> None:
    parsed = _parsed("-o", "out.pt")
    assert TrainConfig(out="out.pt") == TrainConfig.from_args(parsed)


def test_resume_reads_an_old_style_checkpoint() -> None:
    given = TrainConfig.from_args(
        _parsed("--resume", "ck.pt", "-o", "ck.pt", "--stop-at", "2000", "--data", "ignored")
    )
    resumed = given.resumed(OLD_STYLE_ARGS)
    # The data and training options come from the checkpoint ...
    assert resumed.data == "/data/lspet/joints.mat" and resumed.seed == 19
    assert resumed.person_heights == (80.0, 350.0) and resumed.input_hw == (480, 640)
    assert resumed.test_images == ("training/lspet/val_images.txt",)
    # ... the chunk's own from the command line; an unset --save-every keeps the stored one.
    assert (resumed.resume, resumed.out, resumed.stop_at) == ("ck.pt", "ck.pt", 2000)
    assert resumed.save_every == 100 and resumed.max_minutes is None
    assert not resumed.keep_checkpoints and resumed.pairwise_images == 300
    # A checkpoint older than an option lacks it: the option's default applies.
    older = {k: v for k, v in OLD_STYLE_ARGS.items() if k not in ("jitter", "mask_margin")}
    assert given.resumed(older).jitter == 0.25


def test_resume_refuses_what_is_not_an_argument_dict() -> None:
    given = TrainConfig(resume="ck.pt", out="ck.pt")
    with pytest.raises(ValueError, match="does not record its arguments"):
        given.resumed(None)
    with pytest.raises(ValueError, match="unknown training options: colour"):
        given.resumed({**OLD_STYLE_ARGS, "colour": "red"})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"steps": 0}, "--steps"),
        ({"batch_size": 0}, "--batch-size"),
        ({"mix_synthetic": 1.5}, "--mix-synthetic"),
        ({"people": (3, 2)}, "--people"),
        ({"heights": (0.0, 10.0)}, "--heights"),
        ({"train_fraction": 0.0}, "--train-fraction"),
        ({"stop_at": 0}, "--stop-at"),
    ],
)
def test_bad_options_are_refused_once_when_made(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(out="x.pt", **change)
