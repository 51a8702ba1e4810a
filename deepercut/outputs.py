"""Writing output files safely: never over an input, never a partial file under the final name.

:func:`refuse_overwriting_inputs` is called before anything is opened: an output that is one
of the inputs (the same file through any path: same device and inode; or, for files not there
yet, the same resolved path) or another output is refused with a clear error.
:func:`atomic_output` writes to a temporary file in the destination's folder and renames it
into place only when the writer finished, so a crash leaves the old file (or none), never a
truncated one that looks complete.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

PathLike = str | os.PathLike[str]


class OutputOverwritesInput(ValueError):
    """An output path names an input (or another output) of the same command."""


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` are the same file: the same inode when both exist, else the
    same path once symlinks and ``..`` are resolved."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one is missing (or not a path at all): compare where they would be
        return Path(a).resolve() == Path(b).resolve()


def refuse_overwriting_inputs(
    outputs: dict[str, PathLike | None], inputs: dict[str, PathLike | None]
) -> None:
    """Raise :class:`OutputOverwritesInput` when an output (by option name, e.g. ``-o``) is
    the same file as an input or as another output. ``None`` entries are skipped; inputs
    that are not local files (camera URLs, device numbers) never match a missing output."""
    given = [(name, path) for name, path in outputs.items() if path is not None]
    for i, (name, path) in enumerate(given):
        for input_name, source in inputs.items():
            if source is not None and os.path.exists(source) and same_file(path, source):
                raise OutputOverwritesInput(
                    f"{name} {path} is the input {input_name} {source}: refusing to overwrite it"
                )
        for other_name, other in given[:i]:
            if same_file(path, other):
                raise OutputOverwritesInput(f"{name} and {other_name} are the same file {path}")


@contextlib.contextmanager
def atomic_output(path: PathLike) -> Iterator[Path]:
    """A temporary path next to ``path``; renamed to ``path`` when the block ends without
    an exception, removed otherwise. The file gets mode 0644 (mkstemp's 0600 would hide
    outputs from the group for no reason)."""
    target = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    staged = Path(name)
    try:
        os.chmod(staged, 0o644)
        yield staged
        os.replace(staged, target)
    finally:
        staged.unlink(missing_ok=True)
