"""``python -m deepercut``: the ``deepercut`` command line."""

from deepercut.engine.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
