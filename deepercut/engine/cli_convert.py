"""``deepercut convert``: a msgpack pose stream to JSON lines or DeepLabCut CSV."""

from __future__ import annotations

import argparse
from pathlib import Path

from deepercut.engine.sinks import to_dlc_csv, to_jsonl

_SUFFIX_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "dlc-csv"}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``convert``."""
    p = subparsers.add_parser(
        "convert",
        help="convert a pose stream (.msgpack) to JSON lines or DeepLabCut CSV",
        description=__doc__,
    )
    p.add_argument("input", help="pose stream written by `deepercut run -o`")
    p.add_argument("-o", "--out", required=True, help="output .jsonl or .csv")
    p.add_argument(
        "--format",
        choices=("jsonl", "dlc-csv"),
        default=None,
        help="output format (default: from the output suffix)",
    )
    p.add_argument("--scorer", default="deepercut", help="scorer name in DeepLabCut CSV")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert ``args.input`` to ``args.out``; returns the exit code."""
    out = Path(args.out)
    fmt = args.format or _SUFFIX_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the format from {out.name!r}: use --format jsonl|dlc-csv")
    if fmt == "jsonl":
        count = to_jsonl(args.input, out)
    else:
        count = to_dlc_csv(args.input, out, scorer=args.scorer)
    print(f"wrote {count} frames to {out}")
    return 0
