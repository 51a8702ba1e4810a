"""``deepercut import``: a pose-tensorflow model or a DeepLabCut project as a deepercut model.

SRC is a pose-tensorflow model folder (``pose_cfg.yaml`` + ``snapshot-N.index/.data-*``), its
``pose_cfg.yaml`` or a checkpoint prefix; a DeepLabCut 2.x project folder (``config.yaml`` +
``dlc-models/``), one of its ``train`` folders or a snapshot. The result loads like any
deepercut checkpoint (``deepercut run --model model.pt``); ``deepercut run --model SRC`` also
works directly, converting once into the cache.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deepercut.cli.args import parse_hw


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``import``."""
    p = subparsers.add_parser(
        "import",
        help="convert a pose-tensorflow / DeepLabCut 2 or 3 model to a deepercut checkpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "source", help="pose-tensorflow model, or DeepLabCut 2/3 project, train folder or snapshot"
    )
    p.add_argument("-o", "--out", required=True, help="deepercut checkpoint to write (.pt)")
    p.add_argument(
        "--input-size",
        type=parse_hw,
        default=None,
        help="network input HxW stored with the model (multiples of 16; default 480x640)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert ``args.source`` to ``args.out``; returns the exit code."""
    from deepercut.model.convert import convert
    from deepercut.model.io import save_model

    model = convert(args.source, input_hw=args.input_size)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_model(out, model)
    config = model.net.config
    origin = model.meta["imported_from"]
    print(
        f"wrote {out}: {origin['family']} {config.scope} step {origin['step']}, "
        f"{model.skeleton.num_parts} parts ({', '.join(model.skeleton.parts)}), "
        f"heads: part{', locref' if config.locref else ''}"
        f"{', pairwise' if config.pairwise else ''}, input {model.input_hw[0]}x{model.input_hw[1]}"
    )
    return 0
