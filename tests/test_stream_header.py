"""The pose-stream header check (format version 3): the header map is followed by a check record
with the CRC-32 and length of its bytes, so any changed byte in the header is an error, a stream
cut inside the header is truncated (and followed until it is whole), and version 1 and 2
streams, which have no check, are still read."""

from __future__ import annotations

import io
import socket
import threading
import zlib
from pathlib import Path

import msgpack
import numpy as np
import pytest

from deepercut.cli import main
from deepercut.skeleton import MPII14
from deepercut.streams import (
    CorruptStreamError,
    PoseWriter,
    TcpSink,
    framing,
    make_header,
    read_poses,
    reader,
)
from deepercut.streams.records import Encoder
from deepercut.types import Poses

P = MPII14.num_parts


def frames(n: int = 3) -> list[Poses]:
    rng = np.random.default_rng(1)
    return [
        Poses(i, i / 25, rng.random((i % 3, P, 3), np.float32), np.arange(i % 3), {"ms": 1.0})
        for i in range(n)
    ]


def model_info(layers: int) -> dict:
    """Model info like a real run's header carries: names, shapes, numbers, nested maps."""
    rng = np.random.default_rng(layers)
    return {
        "name": "resnet18-half",
        "layers": [
            {"name": f"block{i}.conv", "shape": rng.integers(1, 70000, 4).tolist(),
             "mean": float(rng.normal()), "frozen": bool(i % 2)}
            for i in range(layers)
        ],
    }  # fmt: skip


def stream(layers: int = 3, count: int = 3) -> tuple[bytes, int]:
    """A whole version 3 stream and where its header (map and check record) ends."""
    buf = io.BytesIO()
    writer = PoseWriter(
        buf, make_header(MPII14, source={"spec": "a.mp4"}, model=model_info(layers))
    )
    header_end = buf.tell()
    for poses in frames(count):
        writer.write(poses)
    writer.close(counts={"frames": count})
    return buf.getvalue(), header_end


def read_all(data: bytes) -> tuple[list[Poses], bool]:
    with read_poses(io.BytesIO(data)) as s:
        return list(s), s.complete


def assert_header_damage(data: bytes, where: object) -> CorruptStreamError:
    with pytest.raises(CorruptStreamError, match="corrupt pose stream: header ") as error:
        read_all(data)
    assert error.value.offset == 0 and error.value.records == 0, where
    return error.value


def test_the_header_is_followed_by_its_check_record() -> None:
    data, header_end = stream()
    unpacker = msgpack.Unpacker(io.BytesIO(data), raw=False)
    header = unpacker.unpack()  # generic msgpack tools still read the header map
    size = unpacker.tell()
    assert header["version"] == 3 and header["model"] == model_info(3)
    check = unpacker.unpack()
    assert check.code == framing.HEADER and unpacker.tell() == header_end
    assert msgpack.unpackb(check.data[8:]) == {"crc": zlib.crc32(data[:size]), "bytes": size}
    back, complete = read_all(data)
    assert len(back) == 3 and complete


def test_every_flipped_bit_of_the_header_and_its_check_record_is_damage() -> None:
    data, header_end = stream(layers=3)
    assert 500 < header_end < 1000
    for pos in range(header_end):
        for bit in range(8):
            bad = bytearray(data)
            bad[pos] ^= 1 << bit
            assert_header_damage(bytes(bad), (pos, bit))


def test_every_changed_byte_of_a_bigger_header_is_damage() -> None:
    data, header_end = stream(layers=80)
    assert header_end > 5000
    rng = np.random.default_rng(0)
    masks = rng.integers(1, 256, header_end)
    for pos in range(header_end):
        bad = bytearray(data)
        bad[pos] ^= int(masks[pos])
        assert_header_damage(bytes(bad), pos)


class OneByteAtATime(io.RawIOBase):
    """A file (or socket) that hands out one byte per read: every split of the header."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.pos += 1
        return self.data[self.pos - 1 : self.pos]

    read1 = read


def test_a_header_read_byte_by_byte_is_checked_the_same() -> None:
    data, header_end = stream()
    with read_poses(OneByteAtATime(data)) as s:
        assert len(list(s)) == 3 and s.complete
    for pos in range(header_end):
        bad = bytearray(data)
        bad[pos] ^= 0x04
        with pytest.raises(CorruptStreamError, match="header") as error:
            list(read_poses(OneByteAtATime(bytes(bad))))
        assert error.value.offset == 0, pos


def test_a_wrong_version_is_never_a_silent_read() -> None:
    data, header_end = stream()
    at = data.index(b"\xa7version\x03") + 8
    for version in (1, 2, 4, 0x23):  # 0x23: a one-bit flip to another int
        bad = data[:at] + bytes([version]) + data[at + 1 :]
        error = assert_header_damage(bad, version)
        assert "fails its checksum" in str(error)
    # An intact version 2 or 1 header (its CRC matches) followed by a check record is refused:
    # only version 3 has one.
    for version in (1, 2):
        header = msgpack.packb({**make_header(MPII14), "version": version})
        error = assert_header_damage(header + framing.header_check(header), version)
        assert f"of version {version} is followed by a check record" in str(error)
    # A reader of version 2 refuses the check record: a record of an unknown kind.
    deframer = framing.Deframer()
    deframer.feed(framing.header_check(b"\x80"))
    with pytest.raises(CorruptStreamError, match="record of kind 3"):
        deframer.next()
    # ... as does this one anywhere after the header.
    extra = data[:header_end] + framing.header_check(data[:100]) + data[header_end:]
    with pytest.raises(CorruptStreamError, match=r"record of kind 3 .* at byte") as error:
        read_all(extra)
    assert error.value.offset == header_end


def test_a_version_3_header_without_its_check_record_is_damage() -> None:
    data, header_end = stream()
    size = map_size(data)
    error = assert_header_damage(data[:size] + data[header_end:], "no check")
    assert "has no check record" in str(error)


def map_size(data: bytes) -> int:
    """The size of the header map at the start of ``data``, as a generic msgpack reader sees."""
    unpacker = msgpack.Unpacker(io.BytesIO(data), raw=False)
    unpacker.unpack()
    return unpacker.tell()


def test_a_stream_cut_inside_its_header_is_truncated_not_damaged() -> None:
    data, header_end = stream()
    for cut in range(header_end):
        with pytest.raises(ValueError, match="no complete header") as error:
            read_poses(io.BytesIO(data[:cut]))
        assert not isinstance(error.value, CorruptStreamError), cut
    back, complete = read_all(data[:header_end])  # the header, nothing else yet
    assert back == [] and not complete


class WriterCatchesUp:
    """Stands in for the reader's ``time`` module: its first poll (``sleep``) appends the rest
    of the stream to the file, as a writer would; later polls never come (the footer ends it)."""

    def __init__(self, path: Path, rest: bytes) -> None:
        self.path, self.rest = path, rest
        self.polls = 0

    def monotonic(self) -> float:
        return 0.0

    def sleep(self, seconds: float) -> None:
        self.polls += 1
        assert self.polls == 1, "polled again after the rest was written"
        with open(self.path, "ab") as f:
            f.write(self.rest)


def test_following_a_stream_cut_inside_its_header_reads_it_whole_once_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, header_end = stream()
    size = map_size(data)
    path = tmp_path / "live.msgpack"
    for cut in [*range(0, 40), *range(size - 3, header_end + 1)]:
        path.write_bytes(data[:cut])
        clock = WriterCatchesUp(path, data[cut:])
        monkeypatch.setattr(reader, "time", clock)
        with read_poses(path, follow=True, poll=0.01) as s:
            back = list(s)
            assert s.complete and len(back) == 3, cut
        assert clock.polls == 1, cut  # it waited for the rest, once


def test_a_damaged_length_in_a_header_is_not_taken_for_a_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A map count made larger makes the map run past its check record and past the end of
    the stream: without the check record that is a header cut short (a follower would wait for
    more, a reader would call it truncated)."""
    data, header_end = stream()
    assert data[0] == 0x87  # a map of 7 entries
    bad = bytearray(data[:header_end])  # only the header so far: the run is starting
    bad[0] = 0x8F  # 15 entries
    path = tmp_path / "live.msgpack"
    path.write_bytes(bytes(bad))
    clock = WriterCatchesUp(path, data[header_end:])
    monkeypatch.setattr(reader, "time", clock)
    with pytest.raises(CorruptStreamError, match="header does not end at byte") as error:
        read_poses(path, follow=True, poll=0.01)
    assert clock.polls == 0 and error.value.offset == 0


class NoWaiting:
    """Stands in for the reader's ``time`` module and fails the test if the reader polls."""

    def monotonic(self) -> float:
        return 0.0

    def sleep(self, seconds: float) -> None:
        raise AssertionError("waited for more of a damaged header")


def test_a_follower_never_waits_on_a_damaged_header(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that has written only its header so far: every changed byte is reported at once,
    however the damage changes where the map seems to end."""
    data, header_end = stream()
    monkeypatch.setattr(reader, "time", NoWaiting())
    for pos in range(header_end):
        for mask in (0x01, 0x10, 0x80):
            bad = bytearray(data[:header_end])
            bad[pos] ^= mask
            with pytest.raises(CorruptStreamError, match="header") as error:
                read_poses(io.BytesIO(bytes(bad)), follow=True, poll=0.01)
            assert error.value.offset == 0, (pos, mask)


def v2_stream(poses: list[Poses]) -> bytes:
    """A version 2 stream as deepercut wrote them before the header check: the header map,
    then framed records and the footer."""
    encoder = Encoder()
    body = b"".join(encoder.poses(p) for p in poses)
    footer = encoder.footer({"records": len(poses), "end": "complete", "counts": {}})
    return msgpack.packb({**make_header(MPII14), "version": 2}) + body + footer


def v1_stream(poses: list[Poses]) -> bytes:
    """A version 1 stream: plain msgpack maps, no checksums, no footer."""
    records = [
        {"i": p.frame, "t": p.pts, "kp": p.keypoints.tolist(), "id": p.track_id.tolist()}
        for p in poses
    ]
    head = msgpack.packb({**make_header(MPII14), "version": 1})
    return head + b"".join(msgpack.packb(r) for r in records)


@pytest.mark.parametrize("version", [1, 2])
def test_version_1_and_2_streams_are_still_read(version: int) -> None:
    sent = frames(4)
    data = (v1_stream if version == 1 else v2_stream)(sent)
    with read_poses(io.BytesIO(data)) as s:
        back = list(s)
        assert s.version == version and s.complete == (version == 2)
    assert [p.frame for p in back] == [p.frame for p in sent]
    for a, b in zip(sent, back, strict=True):
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
    # A header only (a run that has just started) reads as no records yet, and is followed.
    header_only = data[: map_size(data)]
    back, complete = read_all(header_only)
    assert back == [] and not complete


def test_tcp_clients_get_the_checked_header() -> None:
    sink = TcpSink("tcp://127.0.0.1:0", make_header(MPII14, model=model_info(3)))
    client = socket.create_connection(sink.address, timeout=5)
    for _ in range(500):  # until the server has accepted it (or pytest-timeout)
        if sink.num_clients:
            break
        threading.Event().wait(0.01)
    sink.write(frames(1)[0])
    sink.close()
    data = b""
    while chunk := client.recv(65536):
        data += chunk
    client.close()
    size = map_size(data)
    assert data[size:].startswith(framing.header_check(data[:size]))
    back, complete = read_all(data)
    assert len(back) == 1 and complete
    bad = bytearray(data)
    bad[data.index(b"resnet18-half")] ^= 0x20
    assert_header_damage(bytes(bad), "tcp")


def test_cli_convert_refuses_a_damaged_header_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, _ = stream()
    src = tmp_path / "damaged.msgpack"
    at = data.index(b"resnet18-half")
    src.write_bytes(data[:at] + b"R" + data[at + 1 :])  # a letter of the model's name
    out = tmp_path / "out.jsonl"
    assert main(["convert", str(src), "-o", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not out.exists()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("deepercut convert: error: ")
    assert "corrupt pose stream: header fails its checksum" in lines[0]
