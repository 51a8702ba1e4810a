"""Property-based tests of the pose stream format (Hypothesis): random records round-trip;
a cut stream reads to its last whole record and is never complete; a changed byte anywhere,
header included, is a CorruptStreamError, never a stream that reads as good."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from deepercut.skeleton import MPII14
from deepercut.streams import CorruptStreamError, PoseWriter, make_header, read_poses
from deepercut.types import Poses

P = MPII14.num_parts
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def pose_records(draw: st.DrawFn) -> list[Poses]:
    """1–6 frames with increasing indices, 0–3 people, any float32 (NaN, ±inf included)."""
    count = draw(st.integers(1, 6))
    starts = draw(st.lists(st.integers(1, 1000), min_size=count, max_size=count))
    frames = []
    index = draw(st.integers(0, 2**40))
    for step in starts:
        index += step
        people = draw(st.integers(0, 3))
        kp = draw(hnp.arrays(np.float32, (people, P, 3), elements=st.floats(width=32)))
        ids = draw(hnp.arrays(np.int64, (people,), elements=st.integers(-1, 2**31)))
        pts = draw(st.floats(-1e9, 1e9, allow_nan=False))
        solver = draw(
            st.fixed_dictionaries(
                {"status": st.sampled_from(["optimal", "time_limit", "error"])},
                optional={"gap": st.floats(0, 1e6), "fallback": st.booleans()},
            )
        )
        frames.append(Poses(index, pts, kp, ids, solver))
    return frames


def encode(frames: list[Poses]) -> tuple[bytes, int]:
    """The stream's bytes and where the header ends."""
    buf = io.BytesIO()
    writer = PoseWriter(buf, make_header(MPII14, source={"spec": "x"}))
    header_end = buf.tell()
    for poses in frames:
        writer.write(poses)
    writer.close(counts={"frames": len(frames)})
    return buf.getvalue(), header_end


def assert_prefix(back: list[Poses], frames: list[Poses]) -> None:
    assert len(back) <= len(frames)
    for a, b in zip(frames, back, strict=False):
        assert (a.frame, a.pts) == (b.frame, b.pts)
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
        np.testing.assert_array_equal(a.track_id, b.track_id)
        assert a.solver == pytest.approx(b.solver)


@SETTINGS
@given(pose_records())
def test_random_records_round_trip(frames: list[Poses]) -> None:
    data, _ = encode(frames)
    with read_poses(io.BytesIO(data)) as stream:
        back = list(stream)
        assert stream.complete and stream.footer["records"] == len(frames)
    assert len(back) == len(frames)
    assert_prefix(back, frames)


@SETTINGS
@given(pose_records(), st.data())
def test_a_cut_stream_reads_to_its_last_whole_record_and_is_never_complete(
    frames: list[Poses], data: st.DataObject
) -> None:
    raw, header_end = encode(frames)
    cut = data.draw(st.integers(0, len(raw) - 1), label="cut")
    try:
        stream = read_poses(io.BytesIO(raw[:cut]))
    except ValueError as exc:  # cut inside the header: a clear error
        assert cut < header_end and "no complete header" in str(exc)
        return
    back = list(stream)
    assert not stream.complete
    assert_prefix(back, frames)


@SETTINGS
@given(pose_records(), st.data())
def test_a_changed_byte_anywhere_is_damage(frames: list[Poses], data: st.DataObject) -> None:
    raw, header_end = encode(frames)
    pos = data.draw(st.integers(0, len(raw) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="mask")
    bad = bytearray(raw)
    bad[pos] ^= mask
    with pytest.raises(CorruptStreamError) as error:
        with read_poses(io.BytesIO(bytes(bad))) as stream:
            list(stream)
    if pos < header_end:  # the header map or its check record
        assert error.value.offset == 0 and "header" in str(error.value)
