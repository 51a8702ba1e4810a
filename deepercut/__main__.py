"""``python -m deepercut``: the ``deepercut`` command line."""

from deepercut.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
