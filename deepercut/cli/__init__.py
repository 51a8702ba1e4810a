"""The ``deepercut`` command line: one entry point, one module per subcommand.

Each module of this package has ``register(subparsers)``, which adds its subcommand and sets
``func`` to the function that runs it. The modules turn arguments into library calls; the work
is done below (see docs/architecture.md).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from deepercut.io.redact import redact_text

_DESCRIPTION = "The deepercut command line: one entry point, one subcommand per job."


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    # Imported here: ``import deepercut.cli`` stays cheap, the commands import torch and more.
    from deepercut.cli import convert, eval, export, import_model, run, synth, train

    parser = argparse.ArgumentParser(prog="deepercut", description=_DESCRIPTION)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in (train, eval, synth, convert, run, export, import_model):
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the records of `train`
    try:
        return int(args.func(args) or 0)
    except (OSError, ValueError, RuntimeError) as exc:
        # OSError: a path the system refuses (a read-only folder, an output that is a
        # directory, a disk full), said in one line like bad input.
        # A message may quote a source URL (an FFmpeg error): never its credentials.
        print(f"deepercut {args.command}: error: {redact_text(str(exc))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
