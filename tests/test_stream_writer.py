"""PoseWriter's life cycle: fsync per record, one footer however often it is closed, the
footer a ``with`` block leaves on an error or Ctrl-C, no writes after closing."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest

from deepercut.skeleton import MPII14
from deepercut.streams import PoseWriter, make_header, read_poses
from deepercut.types import Poses

P = MPII14.num_parts


def poses(i: int) -> Poses:
    return Poses(i, i / 25, np.ones((1, P, 3), np.float32), np.array([i], np.int64), {})


def read_back(data: bytes) -> tuple[list[Poses], dict | None]:
    with read_poses(io.BytesIO(data)) as stream:
        return list(stream), stream.footer


@pytest.mark.parametrize("fsync", [True, False])
def test_fsync_after_every_record_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync: bool
) -> None:
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    with PoseWriter(tmp_path / "p.msgpack", make_header(MPII14), fsync=fsync) as writer:
        fileno = writer._file.fileno()
        writer.write(poses(0))
        writer.write(poses(1))
    assert writer._file.closed  # opened by path: closed by the writer
    # The header, each record and the footer, each synced once it is written.
    assert synced == ([fileno] * 4 if fsync else [])
    back, footer = read_back((tmp_path / "p.msgpack").read_bytes())
    assert [p.frame for p in back] == [0, 1] and footer["records"] == 2


def test_the_first_close_wins_and_nothing_is_written_after_it() -> None:
    buf = io.BytesIO()
    writer = PoseWriter(buf, make_header(MPII14))
    writer.write(poses(0))
    writer.close("interrupted", counts={"frames": 1})
    size = buf.tell()
    writer.close()  # idempotent: no second footer
    writer.close("error", error="late")
    assert buf.tell() == size and not buf.closed  # a file it did not open stays open
    with pytest.raises(ValueError, match="pose stream already closed"):
        writer.write(poses(1))
    back, footer = read_back(buf.getvalue())
    assert len(back) == 1
    assert footer == {"records": 1, "end": "interrupted", "counts": {"frames": 1}}
    assert writer.footer == footer


@pytest.mark.parametrize(
    ("exc", "end", "error"),
    [
        (RuntimeError("boom"), "error", "RuntimeError: boom"),
        (KeyboardInterrupt(), "interrupted", None),
    ],
)
def test_leaving_with_an_exception_says_how_the_run_ended(
    exc: BaseException, end: str, error: str | None
) -> None:
    buf = io.BytesIO()
    with pytest.raises(type(exc)), PoseWriter(buf, make_header(MPII14)) as writer:
        writer.write(poses(0))
        raise exc
    back, footer = read_back(buf.getvalue())
    assert len(back) == 1 and footer["end"] == end and footer.get("error") == error
