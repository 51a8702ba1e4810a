"""Record framing past the reader's buffer compaction (1 MiB): records stay whole, and damage
is reported at its exact byte offset."""

from __future__ import annotations

import io

import numpy as np
import pytest

from deepercut.skeleton import MPII14
from deepercut.streams import CorruptStreamError, PoseWriter, make_header, read_poses
from deepercut.streams.framing import _CHUNK_COMPACT, FRAME, MAX_RECORD_BYTES, Deframer, frame
from deepercut.types import Poses

P = MPII14.num_parts


def big_stream(count: int = 70) -> tuple[list[Poses], bytes, list[int]]:
    """Frames of 100 people (~21 kB each), the stream's bytes, and where each record starts
    (and the footer starts, last)."""
    rng = np.random.default_rng(0)
    frames = [
        Poses(i, i / 25, rng.random((100, P, 3), np.float32), np.arange(100), {"i": i})
        for i in range(count)
    ]
    buf = io.BytesIO()
    starts = []
    with PoseWriter(buf, make_header(MPII14)) as writer:
        for poses in frames:
            starts.append(buf.tell())
            writer.write(poses)
        starts.append(buf.tell())
    return frames, buf.getvalue(), starts


def test_a_stream_longer_than_the_compaction_threshold_reads_whole() -> None:
    frames, data, starts = big_stream()
    assert starts[-1] > 1.2 * _CHUNK_COMPACT
    with read_poses(io.BytesIO(data)) as stream:
        back = list(stream)
        assert stream.complete and stream.footer["records"] == len(frames)
    assert [p.frame for p in back] == list(range(len(frames)))
    for a, b in zip(frames, back, strict=True):
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
        assert b.solver == {"i": a.frame}


@pytest.mark.parametrize("record", [3, 62])  # before and after the first compaction
def test_damage_is_reported_at_its_record_and_byte(record: int) -> None:
    _, data, starts = big_stream()
    bad = bytearray(data)
    bad[starts[record] + 500] ^= 0x01  # inside the body
    with pytest.raises(CorruptStreamError) as error:
        list(read_poses(io.BytesIO(bytes(bad))))
    assert error.value.records == record and error.value.offset == starts[record]
    assert f"record body fails its checksum at byte {starts[record]}" in str(error.value)
    bad = bytearray(data)
    bad[starts[record] + 2] ^= 0x01  # the size, in the checked head
    with pytest.raises(
        CorruptStreamError, match=f"head fails its checksum at byte {starts[record]}"
    ):
        list(read_poses(io.BytesIO(bytes(bad))))


def test_a_record_of_exactly_the_cap_is_written_and_read() -> None:
    body = bytes(MAX_RECORD_BYTES)
    record = frame(FRAME, body)
    assert len(record) == MAX_RECORD_BYTES + 14  # marker, size, kind, two CRCs
    deframer = Deframer()
    deframer.feed(record)
    assert deframer.next() == (FRAME, body) and deframer.offset == len(record)
