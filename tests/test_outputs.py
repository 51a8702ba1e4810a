"""Outputs never overwrite inputs and never appear half-written: ``deepercut run`` and
``deepercut convert`` through the real CLI entry point on real files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import msgpack
import pytest
from engine_support import make_video
from test_sinks import sample_poses, write_stream

from deepercut.cli import main
from deepercut.outputs import OutputOverwritesInput, refuse_overwriting_inputs


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    make_video(path, frames=4)
    return path


def test_run_refuses_to_write_over_its_source(video: Path, tmp_path: Path, capsys) -> None:
    before = digest(video)
    link = tmp_path / "link.mp4"
    link.symlink_to(video)
    hard = tmp_path / "hard.mp4"
    os.link(video, hard)
    for option, target in (("-o", video), ("--render", video), ("-o", link), ("-o", hard)):
        assert main(["run", str(video), option, str(target), "--quiet"]) == 2
        assert "refusing to overwrite it" in capsys.readouterr().err
    # Two outputs on one file would interleave a pose stream and a video.
    out = tmp_path / "out.mp4"
    assert main(["run", str(video), "-o", str(out), "--render", str(out), "--quiet"]) == 2
    assert "-o are the same file" in capsys.readouterr().err
    assert digest(video) == before and not out.exists()


def test_convert_refuses_to_write_over_its_input(tmp_path: Path, capsys) -> None:
    stream = tmp_path / "a.msgpack"
    stream.write_bytes(write_stream(sample_poses(5))[0])
    before = digest(stream)
    for fmt in ("jsonl", "dlc-csv"):
        assert main(["convert", str(stream), "-o", str(stream), "--format", fmt]) == 2
        assert "refusing to overwrite it" in capsys.readouterr().err
    assert digest(stream) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.msgpack"]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_failed_convert_leaves_no_partial_output(tmp_path: Path, capsys, suffix) -> None:
    good, _ = write_stream(sample_poses(4))
    stream = tmp_path / "a.msgpack"
    # A damaged record after four good ones: the conversion fails part-way through.
    stream.write_bytes(good + msgpack.packb({"i": 9, "t": 0.1, "kp": [[1.0]], "id": [1]}))
    out = tmp_path / f"out{suffix}"
    out.write_text("the previous, complete conversion\n")
    assert main(["convert", str(stream), "-o", str(out)]) == 2
    assert "corrupt pose stream" in capsys.readouterr().err
    assert out.read_text() == "the previous, complete conversion\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.msgpack", out.name]
    # And a good conversion replaces it whole.
    stream.write_bytes(good)
    assert main(["convert", str(stream), "-o", str(out)]) == 0
    assert "previous" not in out.read_text() and oct(out.stat().st_mode & 0o777) == "0o644"


def test_outputs_that_are_not_inputs_pass(tmp_path: Path) -> None:
    refuse_overwriting_inputs(
        {"-o": tmp_path / "new.msgpack", "--render": None},
        {"source": "rtsp://cam/stream", "--model": None},
    )
    (tmp_path / "in").write_bytes(b"")
    with pytest.raises(OutputOverwritesInput):
        refuse_overwriting_inputs({"-o": tmp_path / "x" / ".." / "in"}, {"source": tmp_path / "in"})
