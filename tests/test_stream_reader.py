"""What the round-trip tests do not exercise: PoseStream's checks of what it reads (version 1
damage, malformed footers, undecodable records), the record encoding's types and defaults, and
the header's keys."""

from __future__ import annotations

import datetime
import io
from pathlib import Path

import msgpack
import numpy as np
import pytest

from deepercut import __version__
from deepercut.skeleton import MPII14
from deepercut.streams import (
    FORMAT,
    CorruptStreamError,
    PoseWriter,
    framing,
    make_footer,
    make_header,
    read_poses,
)
from deepercut.streams.records import Encoder
from deepercut.types import Poses

P = MPII14.num_parts


def poses(i: int) -> Poses:
    return Poses(i, i / 25, np.ones((1, P, 3), np.float32), np.array([i], np.int64), {})


def frames_then(record: bytes) -> bytes:
    """A version 2 stream of two frames followed by ``record`` (and no footer of its own)."""
    buf = io.BytesIO()
    writer = PoseWriter(buf, make_header(MPII14))
    writer.write(poses(0))
    writer.write(poses(1))
    return buf.getvalue() + record


def footer(obj: object) -> bytes:
    return framing.frame(framing.FOOTER, msgpack.packb(obj))


def test_a_footer_must_be_a_map_with_a_known_end_and_the_record_count() -> None:
    with pytest.raises(CorruptStreamError, match=r"after 2 records \(malformed footer \[1, 2\]\)"):
        list(read_poses(io.BytesIO(frames_then(footer([1, 2])))))
    bad_end = {"records": 2, "end": "finished", "counts": {}}
    with pytest.raises(CorruptStreamError, match=r"malformed footer \{'records': 2, 'end': 'fin"):
        list(read_poses(io.BytesIO(frames_then(footer(bad_end)))))
    miscount = {"records": 3, "end": "complete", "counts": {}}
    with pytest.raises(CorruptStreamError, match=r"\(the footer counts 3 records\)"):
        list(read_poses(io.BytesIO(frames_then(footer(miscount)))))
    good = {"records": 2, "end": "error", "error": "boom", "counts": {"frames": 2}}
    with read_poses(io.BytesIO(frames_then(footer(good)))) as stream:
        assert len(list(stream)) == 2 and stream.complete and stream.footer == good


def v1_stream(count: int, people: int = 1, ids: bool = True) -> bytes:
    """A version 1 stream of ``count`` frames of ``people`` people (with or without ``id``)."""
    pack = msgpack.Packer(use_bin_type=True).pack
    kp = [[[1.0, 2.0, 0.5]] * P] * people
    records = [{"i": i, "t": i / 25, "kp": kp} for i in range(count)]
    if ids:
        records = [{**record, "id": list(range(people))} for record in records]
    return b"".join([pack({**make_header(MPII14), "version": 1}), *map(pack, records)])


def test_records_without_ids_or_solver_report_are_untracked_with_an_empty_report() -> None:
    with read_poses(io.BytesIO(v1_stream(2, people=3, ids=False))) as stream:
        back = list(stream)
    assert len(back) == 2
    for poses in back:
        np.testing.assert_array_equal(poses.track_id, [-1, -1, -1])
        assert poses.track_id.dtype == np.int64 and poses.solver == {}


def test_version_1_damage_names_its_record_and_cause() -> None:
    with pytest.raises(
        CorruptStreamError, match=r"after 2 records \(undecodable record: FormatError"
    ) as error:
        list(read_poses(io.BytesIO(v1_stream(2) + b"\xc1")))
    assert error.value.records == 2
    huge = v1_stream(3) + b"\xc6\xff\xff\xff\xff" + bytes(framing.MAX_RECORD_BYTES + 1024)
    with pytest.raises(CorruptStreamError, match="a record after 3 records is larger than"):
        list(read_poses(io.BytesIO(huge)))


def test_records_hold_float_keypoints_and_integer_ids_whatever_the_input_dtypes() -> None:
    # Integer pixel coordinates and float track ids (from user code) are stored as the format
    # says: float32 keypoints (0xca), integer ids.
    given = Poses(3, 0.5, np.full((2, P, 3), 7, np.int64), np.array([4.0, -1.0]), {})
    body = Encoder().poses(given)[framing._PREFIX :]
    record = msgpack.unpackb(body, raw=False)
    values = np.ravel(record["kp"]).tolist()
    assert all(type(v) is float for v in values) and body.count(b"\xca") == len(values)
    assert record["id"] == [4, -1] and all(type(v) is int for v in record["id"])


def test_numpy_values_and_bytes_in_headers_and_solver_reports_are_stored_as_such() -> None:
    buf = io.BytesIO()
    # Binary stays msgpack bin (not str), as the format says.
    source = {"fps": np.float64(29.97), "size": np.array([480, 640]), "key": b"\xff\x00"}
    with PoseWriter(buf, make_header(MPII14, source=source)) as writer:
        writer.write(Poses(0, 0.0, np.zeros((0, P, 3), np.float32), np.zeros(0, np.int64),
                           {"gap": np.float32(0.5), "nodes": np.int64(12)}))  # fmt: skip
    with read_poses(io.BytesIO(buf.getvalue())) as stream:
        assert stream.header["source"] == {"fps": 29.97, "size": [480, 640], "key": b"\xff\x00"}
        (back,) = list(stream)
    assert back.solver == {"gap": 0.5, "nodes": 12}
    with pytest.raises(TypeError, match="cannot serialise object"):
        PoseWriter(io.BytesIO(), make_header(MPII14, source={"x": object()}))


def test_undecodable_records_and_data_after_the_footer_are_damage_at_their_offset() -> None:
    data = frames_then(b"")
    # A record whose checksums hold but whose body is not msgpack (only a writer bug makes one).
    with pytest.raises(
        CorruptStreamError, match=r"after 2 records \(undecodable record: FormatError"
    ) as error:
        list(read_poses(io.BytesIO(data + framing.frame(framing.FRAME, b"\xc1"))))
    assert error.value.offset == len(data)  # where the record starts
    whole = data + footer({"records": 2, "end": "complete", "counts": {}})
    with pytest.raises(
        CorruptStreamError, match=r"after 2 records \(data after the footer\)"
    ) as error:
        list(read_poses(io.BytesIO(whole + b"\x00")))
    assert error.value.offset == len(whole)


def test_a_header_has_the_documented_keys() -> None:
    made = make_header(MPII14, source={"spec": "a.mp4"}, model={"name": "m"}, run="r1")
    assert set(made) == {"format", "version", "skeleton", "source", "model", "created",
                         "deepercut", "run"}  # fmt: skip
    assert (made["format"], made["version"], made["deepercut"]) == (FORMAT, 3, __version__)
    assert made["source"] == {"spec": "a.mp4"} and made["model"] == {"name": "m"}
    assert made["skeleton"] == MPII14.to_dict() and made["run"] == "r1"
    created = datetime.datetime.fromisoformat(made["created"])
    assert created.utcoffset() == datetime.timedelta(0) and created.microsecond == 0
    assert make_header(MPII14)["source"] == make_header(MPII14)["model"] == {}


def test_a_footer_says_complete_unless_told_otherwise() -> None:
    assert make_footer(3) == {"records": 3, "end": "complete", "counts": {}}
    failed = make_footer(2, "error", error=RuntimeError("boom"), counts={"frames": 2})
    assert failed == {"records": 2, "end": "error", "error": "boom", "counts": {"frames": 2}}
    with pytest.raises(ValueError, match="end must be one of"):
        make_footer(1, "done")


def test_an_oversized_header_and_an_open_file_are_named_in_the_error(tmp_path: Path) -> None:
    # A header claiming a string past the cap: refused before it is buffered whole.
    huge = b"\x81\xa1a\xdb" + (framing.MAX_RECORD_BYTES + 10).to_bytes(4, "big")
    with pytest.raises(CorruptStreamError, match="header after 0 records is larger than"):
        read_poses(io.BytesIO(huge + bytes(framing.MAX_RECORD_BYTES + 10)))
    garbage = tmp_path / "garbage.msgpack"
    garbage.write_bytes(b"\xc1" * 64)
    with open(garbage, "rb") as file, pytest.raises(ValueError, match=r"garbage\.msgpack: not"):
        read_poses(file)
