"""The subcommands of ``deepercut``, each a module with a ``register(subparsers)`` function."""

from deepercut.engine import (
    cli_convert,
    cli_eval,
    cli_export,
    cli_import,
    cli_run,
    cli_synth,
    cli_train,
)

REGISTRY = [
    cli_train.register,
    cli_eval.register,
    cli_synth.register,
    cli_convert.register,
    cli_run.register,
    cli_export.register,
    cli_import.register,
]
