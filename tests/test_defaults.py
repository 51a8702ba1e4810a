"""Defaults need nothing that may be missing: with Ray and every optional package unimportable,
or with a local Ray that cannot start, ``deepercut run`` and :class:`deepercut.Engine` solve
in-process, say so in one line, and deliver every frame.

Each case runs in a fresh interpreter whose import system refuses the blocked packages, as on a
machine where they were never installed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import av
import numpy as np
import pytest
from engine_support import make_video, save_tiny_model
from PIL import Image

from deepercut.streams import read_poses

#: Ray and the extras (eval, onnx, h5, bench, gpu): none may be needed by ``run``'s default path.
OPTIONAL = (
    "ray",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "pycocotools",
    "pandas",
    "tables",
    "matplotlib",
    "torch_tensorrt",
    "tensorrt",
)

# ``None`` in sys.modules is how Python marks a module as absent: ``import`` raises ImportError
# and ``importlib.util.find_spec`` returns None, exactly as when it was never installed (torch
# probes optional packages with find_spec, which must not raise).
_BLOCKER = """
import sys

for _name in {blocked!r}:
    sys.modules[_name] = None
"""


def _python(code: str, blocked: tuple[str, ...], env: dict[str, str] | None = None) -> str:
    """Run ``code`` in a fresh interpreter with ``blocked`` unimportable; returns its stderr."""
    import os

    script = _BLOCKER.format(blocked=set(blocked)) + textwrap.dedent(code)
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("defaults")
    make_video(root / "people.mp4", frames=12)
    save_tiny_model(root / "tiny.pt")
    return root


def _frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def _run_cli(root: Path, *extra: str, env: dict[str, str] | None = None, blocked=OPTIONAL) -> str:
    args = ["run", str(root / "people.mp4"), "--model", str(root / "tiny.pt"), *extra]
    code = f"""
    from deepercut.cli import main
    sys.exit(main({args!r}))
    """
    return _python(code, blocked, env)


def test_blocker_really_blocks() -> None:
    code = """
    try:
        import ray
    except ImportError:
        sys.exit(0)
    sys.exit(1)
    """
    _python(code, ("ray",))


def test_run_without_ray_or_extras_solves_in_process(files: Path) -> None:
    out, render = files / "noray.msgpack", files / "noray.mp4"
    stderr = _run_cli(files, "-o", str(out), "--render", str(render), "--workers", "2")
    frames = _frames(files / "people.mp4")
    with read_poses(out) as stream:
        assert [p.frame for p in stream] == list(range(frames))
    assert _frames(render) == frames
    notes = [line for line in stderr.splitlines() if "solving in-process instead" in line]
    assert len(notes) == 1 and "Ray" in notes[0] and "cannot be imported" in notes[0]
    assert "in-process" in next(line for line in stderr.splitlines() if "solver:" in line)


def test_run_defaults_need_no_extras(files: Path) -> None:
    """The README's first command's flags, with the default --workers (cores − 1)."""
    out, render = files / "default.msgpack", files / "default.mp4"
    _run_cli(files, "-o", str(out), "--render", str(render))
    frames = _frames(files / "people.mp4")
    with read_poses(out) as stream:
        assert len(list(stream)) == frames
    assert _frames(render) == frames


def test_folder_defaults_need_no_extras(files: Path) -> None:
    photos, overlays = files / "photos", files / "overlays"
    photos.mkdir()
    for i, (w, h) in enumerate([(64, 48), (50, 90)]):
        Image.fromarray(np.full((h, w, 3), 60 * i, np.uint8)).save(photos / f"{i}.png")
    args = ["run", str(photos), "--model", str(files / "tiny.pt"), "--render", str(overlays)]
    _python(f"from deepercut.cli import main; sys.exit(main({args!r}))", OPTIONAL)
    assert sorted(p.name for p in overlays.iterdir()) == ["0.png", "1.png"]


def test_local_ray_that_cannot_start_falls_back(files: Path, tmp_path: Path) -> None:
    """A real Ray whose temp dir cannot be created (a path under a regular file)."""
    pytest.importorskip("ray")
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    out = files / "nostart.msgpack"
    env = {"RAY_TMPDIR": str(blocker / "ray"), "TMPDIR": str(blocker / "tmp")}
    stderr = _run_cli(files, "-o", str(out), "--workers", "1", env=env, blocked=OPTIONAL[1:])
    with read_poses(out) as stream:
        assert len(list(stream)) == _frames(files / "people.mp4")
    notes = [line for line in stderr.splitlines() if "solving in-process instead" in line]
    assert len(notes) == 1 and "cannot start a local Ray" in notes[0]


def test_engine_api_without_ray_solves_in_process(files: Path) -> None:
    code = f"""
    import deepercut
    with deepercut.Engine({str(files / "tiny.pt")!r}, workers=2) as engine:
        assert engine.workers == 0 and "cannot be imported" in engine.ray_fallback
        frames = [p.frame for p in engine.run({str(files / "people.mp4")!r})]
    assert frames == list(range({_frames(files / "people.mp4")})), frames
    with deepercut.Engine({str(files / "tiny.pt")!r}) as engine:  # the default: no Ray at all
        assert engine.workers == 0 and engine.ray_fallback is None
    """
    stderr = _python(code, OPTIONAL)
    assert stderr.count("solving in-process instead") == 1


def test_named_cluster_without_ray_is_an_error(files: Path) -> None:
    code = f"""
    import deepercut
    try:
        deepercut.Engine({str(files / "tiny.pt")!r}, workers=1, ray_address="auto").__enter__()
    except RuntimeError as exc:
        assert "cannot be imported" in str(exc), exc
        sys.exit(0)
    sys.exit(1)
    """
    _python(code, ("ray",))
