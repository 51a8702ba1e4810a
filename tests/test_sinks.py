"""Pose stream writer/reader, TCP publishing on loopback, JSON-lines and DLC-CSV converters."""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import socket
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

from deepercut.cli import main
from deepercut.skeleton import MPII14
from deepercut.streams import (
    CallbackSink,
    CorruptStreamError,
    PoseSink,
    PoseWriter,
    TcpSink,
    framing,
    make_header,
    read_poses,
    reader,
    to_dlc_csv,
    to_jsonl,
)
from deepercut.streams.framing import MAX_RECORD_BYTES
from deepercut.types import Poses

P = MPII14.num_parts


def sample_poses(n: int = 4, seed: int = 0) -> list[Poses]:
    """Frames with 0–3 people, NaN parts, tracked and untracked ids."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        m = i % 4
        kp = rng.uniform(0, 640, (m, P, 3)).astype(np.float32)
        kp[..., 2] = rng.uniform(0, 1, (m, P))
        if m:
            kp[0, 3] = np.nan  # an absent part
        ids = np.arange(m, dtype=np.int64) + 10 * i
        if m > 1:
            ids[-1] = -1
        solver = {"status": "optimal", "gap": 0.0, "ms": 1.5 + i}
        frames.append(Poses(frame=2 * i, pts=(2 * i) / 29.97, keypoints=kp, track_id=ids,
                            solver=solver))  # fmt: skip
    return frames


def header() -> dict:
    return make_header(MPII14, source={"spec": "clip.mp4", "fps": 29.97}, model={"name": "test"})


def assert_same(a: Poses, b: Poses) -> None:
    assert (a.frame, a.pts) == (b.frame, b.pts)  # pts is stored as a double: exact
    np.testing.assert_array_equal(a.keypoints, b.keypoints)  # NaN where NaN
    assert b.keypoints.dtype == np.float32 and b.keypoints.shape == a.keypoints.shape
    np.testing.assert_array_equal(a.track_id, b.track_id)
    assert b.track_id.dtype == np.int64
    assert a.solver["status"] == b.solver["status"]
    assert b.solver["ms"] == pytest.approx(a.solver["ms"], rel=1e-6)


def write_stream(frames: list[Poses], **footer: Any) -> tuple[bytes, list[int]]:
    """The stream's bytes (footer included) and the offset where the header and each frame
    record end."""
    buf = io.BytesIO()
    ends = []
    writer = PoseWriter(buf, header())
    ends.append(buf.tell())
    for poses in frames:
        writer.write(poses)
        ends.append(buf.tell())
    writer.close(**footer)
    return buf.getvalue(), ends


def decode_objects(data: bytes) -> list[Any]:
    """Every object of a version 3 stream with a plain msgpack reader, as the README says:
    the header map, then ext objects whose data is two CRCs (8 bytes) and a msgpack map."""

    def unframe(code: int, data: bytes) -> tuple[int, Any]:
        return code, msgpack.unpackb(data[8:], raw=False)

    return list(msgpack.Unpacker(io.BytesIO(data), raw=False, ext_hook=unframe))


def v1_stream(frames: list[Poses]) -> bytes:
    """A version 1 stream (plain msgpack maps, no footer), as deepercut 0.1 wrote them."""
    pack = msgpack.Packer(use_bin_type=True).pack
    out = [pack({**header(), "version": 1})]
    for p in frames:
        out.append(
            pack(
                {
                    "i": p.frame,
                    "t": p.pts,
                    "kp": p.keypoints.tolist(),
                    "id": p.track_id.tolist(),
                    "solver": p.solver,
                }
            )
        )
    return b"".join(out)


def test_round_trip(tmp_path: Path) -> None:
    frames = sample_poses(6)
    path = tmp_path / "poses.msgpack"
    with PoseWriter(path, header()) as writer:
        assert isinstance(writer, PoseSink)
        for poses in frames:
            writer.write(poses)
    with read_poses(path) as stream:
        assert stream.header["format"] == "deepercut.poses" and stream.header["version"] == 3
        assert stream.header["source"] == {"spec": "clip.mp4", "fps": 29.97}
        assert stream.skeleton == MPII14
        assert not stream.complete  # until the footer is read
        back = list(stream)
        assert stream.complete and stream.footer == {"records": 6, "end": "complete", "counts": {}}
    assert len(back) == len(frames)
    for a, b in zip(frames, back, strict=True):
        assert_same(a, b)
    assert back[0].keypoints.shape == (0, P, 3)


def test_records_follow_the_documented_layout() -> None:
    counts = {"frames": 2, "dropped_source": 0}
    data, ends = write_stream(sample_poses(2), end="interrupted", counts=counts)
    objects = decode_objects(data)
    assert objects[0]["skeleton"] == MPII14.to_dict() and objects[0]["version"] == 3
    # The header's check record, two frames, then the footer.
    assert [kind for kind, _ in objects[1:]] == [3, 1, 1, 2]
    header_bytes = msgpack.packb(objects[0])
    assert objects[1][1] == {"crc": zlib.crc32(header_bytes), "bytes": len(header_bytes)}
    assert objects[4][1] == {"records": 2, "end": "interrupted", "counts": counts}
    # Each record: 0xc9, size (uint32 BE), kind, CRC-32 of those 6 bytes, CRC-32 of the body.
    head = data[ends[1] : ends[1] + 6]
    size = int.from_bytes(head[1:5], "big")
    assert head[0] == 0xC9 and ends[1] + 6 + size == ends[2]
    assert int.from_bytes(data[ends[1] + 6 : ends[1] + 10], "big") == zlib.crc32(head)
    body = data[ends[1] + 14 : ends[2]]
    assert int.from_bytes(data[ends[1] + 10 : ends[1] + 14], "big") == zlib.crc32(body)
    _, record = objects[3]
    assert set(record) == {"i", "t", "kp", "id", "solver"}
    assert record["i"] == 2 and record["t"] == 2 / 29.97 and record["id"] == [10]
    assert np.isnan(record["kp"][0][3][0]) and len(record["kp"][0]) == P
    # Keypoints are float32 (0xca), pts a float64 (0xcb).
    assert data.count(b"\xcb") >= 2 and b"\xca" in data


def test_truncated_stream_stops_at_last_whole_record() -> None:
    frames = sample_poses(5)
    data, ends = write_stream(frames)
    ends.append(len(data))  # the footer's end
    for k in range(1, len(ends)):
        for cut in (ends[k - 1] + 1, (ends[k - 1] + ends[k]) // 2, ends[k] - 1, ends[k]):
            stream = read_poses(io.BytesIO(data[:cut]))
            back = list(stream)
            whole = min(k if cut == ends[k] else k - 1, len(frames))
            assert len(back) == whole, (k, cut)
            assert stream.complete == (cut == len(data))  # a cut stream is never complete
            for a, b in zip(frames, back, strict=False):
                assert_same(a, b)


def one_person_frames(n: int) -> list[Poses]:
    """``n`` frames of one person with every part at (1, 1), score 1."""
    return [Poses(i, i / 25, np.ones((1, P, 3), np.float32), np.zeros(1, np.int64), {})
            for i in range(n)]  # fmt: skip


def test_a_damaged_record_mid_stream_is_an_error_not_an_end() -> None:
    data, ends = write_stream(one_person_frames(40))
    # Every byte of record 10 (its marker, size, kind, both CRCs, its body), flipped alone.
    for pos in range(ends[10], ends[11]):
        bad = bytearray(data)
        bad[pos] ^= 0x10
        stream = read_poses(io.BytesIO(bytes(bad)))
        with pytest.raises(CorruptStreamError, match="after 10 records") as error:
            list(stream)
        assert error.value.records == 10 and stream.records == 10, pos
    # A damaged footer, or one whose count disagrees, is damage too.
    with pytest.raises(CorruptStreamError):
        list(read_poses(io.BytesIO(data[:-3] + bytes([data[-3] ^ 1]) + data[-2:])))
    with pytest.raises(CorruptStreamError, match="after the footer"):
        list(read_poses(io.BytesIO(data + data[ends[1] : ends[2]])))


def test_convert_refuses_a_damaged_stream(tmp_path: Path, capsys) -> None:
    # deepercut convert exits 2 instead of writing a short file that looks whole.
    data, ends = write_stream(one_person_frames(40))
    src = tmp_path / "damaged.msgpack"
    bad = bytearray(data)
    bad[(ends[10] + ends[11]) // 2] ^= 0xFF
    src.write_bytes(bytes(bad))
    assert main(["convert", str(src), "-o", str(tmp_path / "out.jsonl")]) == 2
    assert "corrupt pose stream after 10 records" in capsys.readouterr().err


def test_record_sizes_are_capped() -> None:
    # A version 1 stream whose record claims 4 GB: a clear error, never 4 GB of memory.
    huge = v1_stream(sample_poses(2)) + b"\xc6\xff\xff\xff\xff" + bytes(MAX_RECORD_BYTES + 1024)
    with pytest.raises(CorruptStreamError, match="larger than the 16777216-byte cap"):
        list(read_poses(io.BytesIO(huge)))
    # Version 2: the writer refuses such a record, and a reader never trusts a size whose
    # head fails its checksum.
    with pytest.raises(ValueError, match="exceeds"):
        framing.frame(framing.FRAME, bytes(MAX_RECORD_BYTES + 1))
    data, ends = write_stream(sample_poses(2), end="complete")
    big = bytearray(data[: ends[1]] + framing.frame(framing.FRAME, b"\x80"))
    big[1 + ends[1] : 5 + ends[1]] = (MAX_RECORD_BYTES * 4).to_bytes(4, "big")
    with pytest.raises(CorruptStreamError, match="checksum"):
        list(read_poses(io.BytesIO(bytes(big))))


def test_version_1_streams_are_still_read() -> None:
    frames = sample_poses(5)
    with read_poses(io.BytesIO(v1_stream(frames))) as stream:
        back = list(stream)
        assert stream.version == 1 and not stream.complete  # v1 has no footer
    for a, b in zip(frames, back, strict=True):
        assert_same(a, b)


def test_bad_headers_are_rejected(tmp_path: Path) -> None:
    def stream_of(obj: object) -> io.BytesIO:
        return io.BytesIO(msgpack.packb(obj))

    with pytest.raises(ValueError, match="not a deepercut pose stream"):
        read_poses(stream_of({"format": "something.else", "version": 1}))
    with pytest.raises(ValueError, match="not a deepercut pose stream"):
        read_poses(stream_of([1, 2, 3]))
    with pytest.raises(ValueError, match="version 4"):
        read_poses(stream_of({"format": "deepercut.poses", "version": 4}))
    with pytest.raises(ValueError, match="skeleton"):
        read_poses(stream_of({"format": "deepercut.poses", "version": 1}))
    with pytest.raises(ValueError, match="no complete header"):
        read_poses(io.BytesIO(b""))
    garbage = tmp_path / "garbage.msgpack"
    garbage.write_bytes(b"\xc1" * 64)
    with pytest.raises(ValueError, match=r"garbage\.msgpack"):
        read_poses(garbage)
    with pytest.raises(FileNotFoundError):
        read_poses(tmp_path / "missing.msgpack")
    with pytest.raises(ValueError, match="skeleton"):
        PoseWriter(io.BytesIO(), {"source": {}})


def test_corrupt_record_is_a_clear_error() -> None:
    data, ends = write_stream(sample_poses(2))
    record = msgpack.packb({"i": 5, "t": 0.1, "kp": [[1.0, 2.0]], "id": [1]})
    bad = data[: ends[-1]] + framing.frame(framing.FRAME, record)
    with pytest.raises(ValueError, match="record 2 is not a pose frame"):
        list(read_poses(io.BytesIO(bad)))


def test_follow_a_file_being_written(tmp_path: Path) -> None:
    frames = sample_poses(6)
    data, ends = write_stream(frames)
    path = tmp_path / "live.msgpack"
    path.write_bytes(b"")

    def writer() -> None:
        # Byte-wise worst case: header and records arrive in pieces that split them.
        with open(path, "ab") as f:
            pos = 0
            for cut in [7, *[e - 3 for e in ends[1:]], len(data)]:
                f.write(data[pos:cut])
                f.flush()
                pos = cut
                time.sleep(0.03)

    thread = threading.Thread(target=writer)
    thread.start()
    # It stops at the footer, without waiting for the timeout.
    with read_poses(path, follow=True, poll=0.01, timeout=60) as stream:
        back = list(stream)
        assert stream.complete
    thread.join()
    assert len(back) == len(frames)
    for a, b in zip(frames, back, strict=True):
        assert_same(a, b)


class FakeClock:
    """Stands in for the ``time`` module of :mod:`deepercut.streams.reader`: ``sleep`` advances
    ``monotonic`` at once, so a timeout is measured in polls, not in machine speed."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert self.now < 60.0, "still polling a minute after its timeout"
        self.sleeps.append(seconds)
        self.now += seconds


def test_follow_gives_up_after_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data, ends = write_stream(sample_poses(3))
    path = tmp_path / "stalled.msgpack"
    path.write_bytes(data[: ends[2] + 5])  # two records and a partial third
    clock = FakeClock()
    monkeypatch.setattr(reader, "time", clock)
    stream = read_poses(path, follow=True, poll=0.02, timeout=0.2)
    back = list(stream)
    assert len(back) == 2 and not stream.complete
    # It polled every 0.02 s and gave up on the first poll at or past 0.2 s without data.
    assert clock.sleeps and set(clock.sleeps) == {0.02}
    assert 0.2 <= clock.now < 0.2 + 0.02 + 1e-9


def test_jsonl(tmp_path: Path) -> None:
    frames = sample_poses(4)
    src = tmp_path / "poses.msgpack"
    src.write_bytes(write_stream(frames)[0])
    out = tmp_path / "poses.jsonl"
    assert to_jsonl(src, out) == 4
    lines = out.read_text().splitlines()
    assert len(lines) == 5
    parse = lambda s: json.loads(s, parse_constant=pytest.fail)  # noqa: E731 - no NaN tokens
    head = parse(lines[0])
    assert head["format"] == "deepercut.poses" and head["skeleton"]["parts"] == list(MPII14.parts)
    rec = parse(lines[2])
    assert rec["i"] == 2 and rec["id"] == [10] and rec["solver"]["status"] == "optimal"
    assert rec["kp"][0][3] == [None, None, None]
    assert rec["kp"][0][0] == pytest.approx(frames[1].keypoints[0, 0].tolist(), abs=1e-4)
    assert parse(lines[1])["kp"] == []


def test_exports_keep_times_track_id_0_untracked_people_and_non_finite_values(
    tmp_path: Path,
) -> None:
    """What sample_poses lacks: track id 0, two untracked people in one frame, an infinite
    gap, the default scorer, and JSON lines from an open stream."""
    kp = np.arange(3 * P * 3, dtype=np.float32).reshape(3, P, 3)
    frames = [
        Poses(0, 0.5, kp, np.array([0, -1, -1]), {"status": "time_limit", "gap": np.inf}),
        Poses(1, 0.75, kp[:1], np.array([0]), {"status": "optimal", "gap": 0.0}),
    ]
    src = tmp_path / "poses.msgpack"
    src.write_bytes(write_stream(frames)[0])
    out, again = tmp_path / "poses.jsonl", tmp_path / "again.jsonl"
    assert to_jsonl(src, out) == 2 and to_jsonl(read_poses(src), again) == 2
    assert again.read_text() == out.read_text()
    parse = lambda s: json.loads(s, parse_constant=pytest.fail)  # noqa: E731 - no NaN tokens
    _, first, second = map(parse, out.read_text().splitlines())
    assert (first["t"], second["t"]) == (0.5, 0.75)
    assert first["id"] == [0, -1, -1] and first["solver"]["gap"] is None  # inf → null
    assert first["kp"][2][1] == kp[2, 1].tolist()
    csv_path = tmp_path / "poses.csv"
    assert to_dlc_csv(src, csv_path) == 2
    rows = list(csv.reader(csv_path.open()))
    assert set(rows[0][1:]) == {"deepercut"}
    assert rows[1][1 :: P * 3] == ["id0", "ind1", "ind2"]
    person = lambda row, k: [float(v) for v in row[1 + k * P * 3 : 1 + (k + 1) * P * 3]]  # noqa: E731
    for k in range(3):  # each person in its own column block
        assert person(rows[4], k) == kp[k].ravel().tolist()
    assert person(rows[5], 0) == kp[0].ravel().tolist() and rows[5][1 + P * 3 :] == [""] * (
        2 * P * 3
    )


def test_exports_of_an_empty_stream_are_headers_only(tmp_path: Path) -> None:
    src = tmp_path / "empty.msgpack"
    src.write_bytes(write_stream([])[0])
    assert to_dlc_csv(src, tmp_path / "empty.csv") == 0
    assert (tmp_path / "empty.csv").read_text().split() == [
        "scorer",
        "individuals",
        "bodyparts",
        "coords",
    ]
    assert to_jsonl(src, tmp_path / "empty.jsonl") == 0
    assert len((tmp_path / "empty.jsonl").read_text().splitlines()) == 1


def test_dlc_csv(tmp_path: Path) -> None:
    frames = sample_poses(4)
    src = tmp_path / "poses.msgpack"
    src.write_bytes(write_stream(frames)[0])
    out = tmp_path / "poses.csv"
    assert to_dlc_csv(src, out, scorer="me") == 4
    rows = list(csv.reader(out.open()))
    # Tracked ids 10, 20, 30, 31 and at most one untracked person per frame.
    names = ["id10", "id20", "id30", "id31", "ind1"]
    width = len(names) * P * 3
    assert rows[0] == ["scorer"] + ["me"] * width
    assert rows[1][1 :: P * 3] == names
    assert rows[2][1:4] == [MPII14.parts[0]] * 3 and rows[2][4] == MPII14.parts[1]
    assert rows[3][1:7] == ["x", "y", "likelihood", "x", "y", "likelihood"]
    data = rows[4:]
    assert [r[0] for r in data] == ["0", "2", "4", "6"]
    assert all(len(r) == width + 1 for r in data)
    assert data[0][1:] == [""] * width  # nobody in frame 0
    # Frame 6: id30 (part 3 absent), id31, and an untracked person in ind1.
    kp = frames[3].keypoints
    col = lambda name, part: 1 + (names.index(name) * P + part) * 3  # noqa: E731
    assert data[3][col("id30", 3) : col("id30", 3) + 3] == ["", "", ""]
    x, y, s = (float(v) for v in data[3][col("id31", 0) : col("id31", 0) + 3])
    assert (x, y, s) == pytest.approx(kp[1, 0].tolist(), rel=1e-5)
    assert float(data[3][col("ind1", 5)]) == pytest.approx(float(kp[2, 5, 0]), rel=1e-5)
    assert data[3][col("id10", 0)] == ""  # id10 only appears in frame 2
    # An open stream gives the same file.
    out2 = tmp_path / "again.csv"
    to_dlc_csv(read_poses(src), out2, scorer="me")
    assert out2.read_text() == out.read_text()


def test_cli_convert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "poses.msgpack"
    src.write_bytes(write_stream(sample_poses(3))[0])
    assert main(["convert", str(src), "-o", str(tmp_path / "a.jsonl")]) == 0
    assert "wrote 3 frames" in capsys.readouterr().out
    assert main(["convert", str(src), "-o", str(tmp_path / "a.csv")]) == 0
    assert (tmp_path / "a.csv").read_text().startswith("scorer,")
    assert main(["convert", str(src), "-o", str(tmp_path / "a.txt"), "--format", "jsonl"]) == 0
    assert main(["convert", str(src), "-o", str(tmp_path / "a.txt")]) == 2
    assert "--format" in capsys.readouterr().err


def test_callback_sink() -> None:
    seen = []
    with CallbackSink(seen.append) as sink:
        assert isinstance(sink, PoseSink)
        for poses in sample_poses(3):
            sink.write(poses)
    assert [p.frame for p in seen] == [0, 2, 4]


def _connect(sink: TcpSink) -> socket.socket:
    client = socket.create_connection(sink.address, timeout=5)
    deadline = time.monotonic() + 5
    while sink.num_clients < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    return client


def _receive_all(client: socket.socket) -> list[Any]:
    """The header and the record maps (footer included) a client received."""
    data = b""
    while chunk := client.recv(65536):
        data += chunk
    objects = decode_objects(data)
    assert objects[1][0] == framing.HEADER  # every client gets the header's check record
    return objects[:1] + [record for _, record in objects[2:]]


def test_tcp_sink_publishes_header_and_records() -> None:
    frames = sample_poses(5)
    sink = TcpSink("tcp://127.0.0.1:0", header())
    host, port = sink.address
    assert host == "127.0.0.1" and port > 0
    sink.write(frames[0])  # nobody listens yet: not queued for later clients
    a, b = _connect(sink), _connect(sink)
    while sink.num_clients < 2:
        time.sleep(0.01)
    for poses in frames[1:]:
        sink.write(poses)
    sink.close()
    for client in (a, b):
        objects = _receive_all(client)
        client.close()
        assert objects[0]["format"] == "deepercut.poses"
        assert [o["i"] for o in objects[1:-1]] == [p.frame for p in frames[1:]]
        assert objects[-1]["end"] == "complete"
    # The same bytes read back as a pose stream.
    c = _connect(s := TcpSink("tcp://127.0.0.1:0", header()))
    s.write(frames[3])
    s.close()
    back = list(read_poses(c.makefile("rb")))
    c.close()
    assert len(back) == 1
    assert_same(frames[3], back[0])


def test_tcp_sink_drops_for_a_slow_client_without_blocking() -> None:
    total = 1000
    big = Poses(0, 0.0, np.ones((100, P, 3), np.float32), np.arange(100), {})  # ~17 kB
    sink = TcpSink("tcp://127.0.0.1:0", header(), max_pending=4)
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting
    client.connect(sink.address)
    client.settimeout(5)
    while sink.num_clients < 1:
        time.sleep(0.01)
    # ~17 MB, more than the kernel buffers, while the client reads nothing: a write that
    # waited for the client would never return (pytest-timeout fails it).
    for i in range(total):
        big.frame = i
        sink.write(big)
    assert sink.dropped > 0
    received: list[object] = []
    reader = threading.Thread(target=lambda: received.extend(_receive_all(client)))
    reader.start()  # now the client catches up, and close() can flush what is queued
    sink.close()
    reader.join(10)
    client.close()
    indices = [o["i"] for o in received[1:-1]]
    assert received[0]["format"] == "deepercut.poses"  # whole records only, in order
    assert indices == sorted(indices) and indices[-1] == total - 1
    assert len(indices) + sink.dropped == total


def test_tcp_sink_survives_a_client_that_leaves() -> None:
    with TcpSink("tcp://127.0.0.1:0", header()) as sink:
        gone = _connect(sink)
        gone.close()
        stays = _connect(sink)
        deadline = time.monotonic() + 5
        while sink.num_clients != 1 and time.monotonic() < deadline:
            for poses in sample_poses(2):
                sink.write(poses)
            time.sleep(0.01)
        assert sink.num_clients == 1
    stays.settimeout(5)
    assert _receive_all(stays)[0]["format"] == "deepercut.poses"
    stays.close()
    with pytest.raises(ValueError, match="tcp://HOST:PORT"):
        TcpSink("udp://127.0.0.1:0", header())


def test_writers_create_missing_output_folders(tmp_path) -> None:
    from deepercut.engine.render import VideoRenderer
    from deepercut.skeleton import MPII14
    from deepercut.streams import PoseWriter, read_poses

    stream_path = tmp_path / "new" / "dir" / "poses.msgpack"
    with PoseWriter(
        stream_path, {"format": "deepercut.poses", "version": 1, "skeleton": MPII14.to_dict()}
    ):
        pass
    assert read_poses(stream_path).header["version"] == 3  # the writer writes its own version
    video_path = tmp_path / "other" / "overlay.mp4"
    with VideoRenderer(video_path, 25.0, (64, 48)) as renderer:
        renderer.write(np.zeros((48, 64, 3), np.uint8))
    assert video_path.stat().st_size > 0


def test_tcp_sink_binds_loopback_unless_public(caplog: pytest.LogCaptureFixture) -> None:
    for address in ("tcp://0:0", "tcp://0.0.0.0:0", "tcp://[::]:0"):
        with pytest.raises(ValueError, match="--serve-public"):
            TcpSink(address, header())
    with caplog.at_level("WARNING", logger="deepercut.streams.tcp"):
        with TcpSink("tcp://0.0.0.0:0", header(), public=True) as sink:
            assert sink.address[0] == "0.0.0.0"
    assert "anyone who can reach this port" in caplog.text
    with TcpSink("tcp://localhost:0", header()) as sink:
        assert ipaddress.ip_address(sink.address[0]).is_loopback


def test_tcp_sink_refuses_clients_over_its_cap() -> None:
    sink = TcpSink("tcp://127.0.0.1:0", header(), max_clients=2)
    kept = [_connect(sink), _connect(sink)]
    while sink.num_clients < 2:
        time.sleep(0.01)
    extra = socket.create_connection(sink.address, timeout=5)
    assert extra.recv(1) == b""  # closed at once, without a header
    assert sink.refused == 1 and sink.num_clients == 2
    sink.write(sample_poses(1)[0])
    sink.close()
    for client in kept:
        objects = _receive_all(client)
        assert [o["i"] for o in objects[1:-1]] == [0] and objects[-1]["records"] == 1
        client.close()
    extra.close()
    assert sink.stats() == {
        "records": 1, "clients": 2, "refused": 1, "dropped": 0, "accept_errors": 0
    }  # fmt: skip


_EMFILE_SERVER = """
import json, os, resource, sys, time
sys.path[:0] = sys.argv[1:3]  # this checkout, its tests
from test_sinks import header, sample_poses
from deepercut.streams import TcpSink

poses = sample_poses(2)[1]  # before the limit: its lazy imports (numpy.random) open files
sink = TcpSink("tcp://127.0.0.1:0", header())
# Room for two clients: a third connection makes accept() fail with EMFILE.
in_use = len(os.listdir("/proc/self/fd")) - 1  # less the listing's own descriptor
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 2, hard))
print(sink.address[1], flush=True)
sys.stdin.readline()  # the parent filled the fd table and freed it again
# Until the late client is accepted (the first two may not have been dropped yet: counting
# clients would let the records go to them and leave the late one in the backlog).
while sink.accept_errors == 0 or sink.served < 3:
    time.sleep(0.01)
for i in range(5):
    poses.frame = i
    sink.write(poses)
sink.close()
print(json.dumps({**sink.stats(), "alive": sink.error is None}), flush=True)
"""


def test_tcp_sink_survives_running_out_of_file_descriptors(tmp_path: Path) -> None:
    script = tmp_path / "server.py"
    script.write_text(_EMFILE_SERVER)
    tests = Path(__file__).parent
    server = subprocess.Popen(
        [sys.executable, str(script), str(tests.parent), str(tests)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    try:
        port = int(server.stdout.readline())
        first = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        for c in first:
            assert c.recv(1)  # accepted: the header comes
        # The third cannot be accepted (EMFILE): it waits in the backlog while the server backs
        # off; once the first two leave, it is accepted and served.
        late = socket.create_connection(("127.0.0.1", port), timeout=10)
        for c in first:
            c.close()
        server.stdin.write("go\n")
        server.stdin.flush()
        objects = _receive_all(late)
        late.close()
        stats = json.loads(server.stdout.readline())
        assert server.wait(timeout=30) == 0
    finally:
        server.kill()
    assert stats["accept_errors"] >= 1 and stats["alive"]
    assert [o["i"] for o in objects[1:-1]] == list(range(5))
    assert objects[-1] == {"records": 5, "end": "complete", "counts": {"dropped_for_client": 0}}


def test_a_dead_tcp_server_is_reported_not_ignored() -> None:
    sink = TcpSink("tcp://127.0.0.1:0", header())
    sink._selector.close()  # injected: the server thread's next select() fails
    sink._wake()
    sink._thread.join(5)
    assert isinstance(sink.error, (OSError, ValueError, RuntimeError))
    with pytest.raises(RuntimeError, match="pose server died"):
        sink.write(sample_poses(1)[0])
    with pytest.raises(RuntimeError, match="pose server died"):
        sink.check()
    sink.close()
