"""``deepercut convert``: a msgpack pose stream to JSON lines or DeepLabCut CSV.

A damaged stream is an error (exit 2); a stream without its footer (a run that has not
finished, or was killed) is converted up to its last whole record, with a warning.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepercut.streams import read_poses, to_dlc_csv, to_jsonl

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
    stream = read_poses(args.input)
    if fmt == "jsonl":
        count = to_jsonl(stream, out)
    else:
        count = to_dlc_csv(stream, out, scorer=args.scorer)
    print(f"wrote {count} frames to {out}")
    if not stream.complete:
        why = "a version 1 stream" if stream.version == 1 else "the run did not finish"
        print(
            f"deepercut convert: warning: {args.input} has no footer ({why}): converted up to "
            "its last whole record",
            file=sys.stderr,
        )
    elif stream.footer is not None and stream.footer.get("end") != "complete":
        print(
            f"deepercut convert: warning: the run that wrote {args.input} ended with "
            f"{stream.footer.get('end')}: {stream.footer.get('error', '')}".rstrip(": "),
            file=sys.stderr,
        )
    return 0
