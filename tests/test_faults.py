"""Fault injection on real Ray and real PyAV: the engine keeps every frame, once, in order.

What is broken on purpose here (the cases the other engine tests do not already cover):

* solver actors killed at random times during a file run, by ``ray.kill`` and by ``SIGKILL``
  of the actor's process, several in one run and all at once;
* a network source (MPEG-TS over loopback TCP) that stalls briefly, stalls past its timeout,
  disconnects mid-stream and comes back;
* packets of a real H.264 file replaced by garbage or cut short, and files truncated at random
  points, run through the engine;
* checkpoints with garbage in their pickled index or malformed pairwise arrays;
* the solver's time limit on dense, clutter-heavy frames;
* a pose stream followed while the engine writes it, and cut mid-record.

Every run is compared with a clean one: the same frame indices in the same order, each once,
and identical poses for every frame that reached the engine.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from engine_support import (
    UNHURRIED,
    TruthDetector,
    assert_same_poses,
    fitted_pairwise,
    local_ray,
    make_video,
    save_tiny_model,
    tiny_model,
)
from test_sources import N as TS_FRAMES
from test_sources import encode, level_index

from deepercut.data.synthetic import generate_video
from deepercut.data.synthetic_candidates import candidates_from_truth
from deepercut.engine.pipeline import Engine
from deepercut.model.io import CheckpointError, load_model
from deepercut.skeleton import MPII14
from deepercut.solvers.frame_solver import FrameSolver
from deepercut.sources import Reconnect, SourceError, open_source
from deepercut.streams import PoseWriter, make_header, read_poses
from deepercut.types import Candidates

try:
    import ray
except ImportError:  # only the tests that kill solver actors need Ray
    ray = None
needs_ray = pytest.mark.skipif(
    ray is None, reason="kills Ray solver actors: needs Ray (pip install 'deepercut[ray]')"
)

FRAMES = 48
KEYFRAMES = 8  # a keyframe every 8 frames: damage heals within a few frames


@pytest.fixture(scope="module")
def ray_engine(video, model):
    """An engine with two solver actors on one local Ray, shared by the tests that kill them
    (the others solve in-process)."""
    with local_ray():
        detector = TruthDetector(video[1])
        with Engine(
            model, solver="3stage", workers=2, batch_size=2, **UNHURRIED, detector=detector
        ) as engine:
            yield engine


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> tuple[Path, dict]:
    """48 frames of walking people, H.264 in Matroska (cuttable anywhere), and their truth."""
    path = tmp_path_factory.mktemp("faults") / "people.mkv"
    return path, make_video(path, frames=FRAMES, keyframe_interval=KEYFRAMES)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def clean(video, model):
    """The clean run: every frame's poses and image, in-process."""
    path, truth = video
    with Engine(model, solver="3stage", **UNHURRIED, detector=TruthDetector(truth)) as engine:
        results = list(engine.run_frames(str(path), keep_images=True))
    assert [r.index for r in results] == list(range(FRAMES))
    return {r.index: r for r in results}


def assert_matches_clean(results, clean) -> None:
    """Each frame once, in increasing order, with the clean run's poses."""
    indices = [r.index for r in results]
    assert indices == sorted(set(indices)), "a frame was duplicated or reordered"
    assert all(r.poses is not None for r in results), "a frame was dropped in file mode"
    assert_same_poses([r.poses for r in results], [clean[i].poses for i in indices])


# ----------------------------------------------------------------------------- solver actors


def _kill(actor, how: str) -> None:
    if how == "ray.kill":
        ray.kill(actor)
    else:  # the process dies under Ray's feet, as on a segfault or the OOM killer
        os.kill(ray.get(actor.ready.remote()), signal.SIGKILL)


@needs_ray
@pytest.mark.parametrize("scenario", ["three at random times", "all at once"])
def test_killed_solver_actors_lose_and_duplicate_no_frame(
    ray_engine, video, clean, scenario
) -> None:
    path, _ = video
    rng = np.random.default_rng(len(scenario))
    if scenario == "all at once":
        kills = {int(rng.integers(3, FRAMES // 2)): [(0, "SIGKILL"), (1, "ray.kill")]}
    else:
        # Spaced out, alternating slots, early enough that every dead actor gets more work
        # (a dead actor that holds no frame and gets none is never noticed, nor needed).
        at = sorted(rng.choice(np.arange(2, FRAMES - 12, 3), size=3, replace=False).tolist())
        kills = {r: [(k % 2, ("ray.kill", "SIGKILL")[k % 2])] for k, r in enumerate(at)}
    killed = sum(len(v) for v in kills.values())
    engine = ray_engine
    results = []
    for result in engine.run_frames(str(path)):
        results.append(result)
        for slot, how in kills.get(len(results), []):
            _kill(engine.pool.actors[slot], how)
    pool = engine.stats.pool
    # The replacements are alive and answer.
    assert len(ray.get([a.ready.remote() for a in engine.pool.actors])) == 2
    assert [r.index for r in results] == list(range(FRAMES))
    assert_matches_clean(results, clean)
    assert pool.actor_restarts == killed
    assert pool.completed == FRAMES
    assert pool.submitted == FRAMES  # first dispatches; resubmissions are counted apart


# ----------------------------------------------------------------------------- network source


class FlakyServer:
    """Serves an MPEG-TS file over loopback TCP, one connection per entry of ``plan``.

    An entry is a list of steps: ``("send", fraction_from, fraction_to)`` sends that slice of
    the file, ``("stall", seconds)`` keeps the connection open and silent. The connection is
    then closed (a disconnect); after the last entry the server goes away. Each connection is
    served in its own thread, so a stalled one never delays accepting the next.
    """

    def __init__(self, data: bytes, plan: list[list[tuple]]) -> None:
        self.data = data
        self.plan = plan
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"tcp://127.0.0.1:{self.server.getsockname()[1]}"
        self.threads: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        with self.server:
            for steps in self.plan:
                conn, _ = self.server.accept()
                thread = threading.Thread(target=self._serve, args=(conn, steps), daemon=True)
                thread.start()
                self.threads.append(thread)

    def _serve(self, conn: socket.socket, steps: list[tuple]) -> None:
        n = len(self.data)
        with conn:
            for step in steps:
                if step[0] == "send":
                    conn.sendall(self.data[int(step[1] * n) : int(step[2] * n)])
                else:
                    time.sleep(step[1])


class CyclingDetector(TruthDetector):
    """The truth detector for endless indices (the video's frames over and over): the
    frames' flow is under test here, not the poses."""

    def candidates(self, index: int) -> Candidates:
        return super().candidates(index % len(self.frames))


def test_stream_that_stalls_disconnects_and_returns(tmp_path: Path, video, model) -> None:
    data = encode(tmp_path / "live.ts").read_bytes()
    server = FlakyServer(
        data,
        [
            # A short stall (under the timeout) costs nothing; a long one is an outage.
            # The margins (0.3 s against a 1.5 s timeout, 4 s) hold on a loaded machine.
            [("send", 0, 0.3), ("stall", 0.3), ("send", 0.3, 0.6), ("stall", 4.0)],
            [("send", 0, 1)],  # back: the whole stream, then a disconnect
            [("send", 0, 1), ("stall", 5.0)],  # back again; the consumer stops in it
        ],
    )
    policy = Reconnect(attempts=2, delay=0.05)
    # Small batches keep the engine's frames in flight (about 12) well under a session.
    with Engine(
        model, solver="heuristic", batch_size=2, detector=CyclingDetector(video[1])
    ) as engine:
        # Backpressure instead of live drops: the source reads only as fast as the engine
        # goes, so however slow the machine, the stream is still there when the consumer
        # stops. Opened once the engine is up, so the stalls happen while it reads.
        # A short probe, so the stalls fall in the streaming and not in the opening.
        probe = {"analyzeduration": "100000", "probesize": "32768"}
        with open_source(
            server.url, timeout=1.5, reconnect=policy, live=False, queue_size=4, options=probe
        ) as src:
            results, levels = [], []
            for result in engine.run_frames(src, keep_images=True):
                results.append(result)
                levels.append(level_index(result.image))
                if levels[-4:] == [TS_FRAMES - 1, 0, 1, 2]:
                    break  # the second full session is in, and a few frames of the third
    server.thread.join(10)
    stats = src.stats
    # After a reconnection indices count the frames the source delivered: consecutive
    # indices mean no frame was lost or duplicated between the source and the consumer.
    assert [r.index for r in results] == list(range(len(results)))
    assert all(r.poses is not None and r.poses.frame == r.index for r in results)
    assert np.all(np.diff([r.pts for r in results]) > 0)
    # Before the outage a prefix of the stream (what 60 % of it held), then the whole stream,
    # a disconnect, and the start of the third session.
    first = levels.index(0, 1)
    assert 5 <= first < TS_FRAMES
    assert levels == [*range(first), *range(TS_FRAMES), *range(3)]
    # The outages are counted: two reconnections (after the long stall, after the
    # disconnect; the short stall is none) and the frames they cost.
    assert stats.reconnects == 2
    assert sum(e.startswith("stream lost") for e in stats.errors) == 2
    assert stats.lost_outage >= 2
    assert results[first].pts - results[first - 1].pts > 1 / 25  # the outage is in the timeline


def test_frames_received_before_a_source_gives_up_are_handed_back(
    video, model, tmp_path: Path
) -> None:
    path, truth = video
    gone = tmp_path / "gone.mkv"
    gone.write_bytes(path.read_bytes())
    policy = Reconnect(attempts=1, delay=0.05)
    with open_source(gone, reconnect=policy, queue_size=64) as src:
        gone.unlink()  # the open file stays readable; reopening it at its end fails
        # 48 frames in batches of 5: the last 3 are still being batched when the source fails.
        with Engine(
            model, solver="3stage", batch_size=5, **UNHURRIED, detector=TruthDetector(truth)
        ) as engine:
            results = []
            with pytest.raises(SourceError, match="gave up after 1 reconnect attempts"):
                for result in engine.run_frames(src):
                    results.append(result)
    assert src.stats.delivered == FRAMES
    assert [r.index for r in results] == list(range(FRAMES))


# ----------------------------------------------------------------------------- damaged files


def _remux(src: Path, dst: Path, damage: dict[int, str], seed: int = 0) -> None:
    """Copy the packets of ``src`` into ``dst``, replacing packet k's payload by random bytes
    (``"garbage"``) or its first half (``"cut"``), timestamps kept."""
    rng = np.random.default_rng(seed)
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for k, packet in enumerate(p for p in inp.demux(video=0) if p.size):
            what = damage.get(k)
            if what is not None:
                payload = bytes(packet)
                new = av.Packet(
                    rng.bytes(len(payload)) if what == "garbage" else payload[: len(payload) // 2]
                )
                new.pts, new.dts, new.time_base = packet.pts, packet.dts, packet.time_base
                new.is_keyframe = packet.is_keyframe
                packet = new
            packet.stream = stream
            out.mux(packet)


def test_corrupt_packets_are_skipped_and_counted(video, model, clean, tmp_path: Path) -> None:
    path, truth = video
    damaged = tmp_path / "damaged.mkv"
    # A P-frame and a keyframe replaced by garbage, one P-frame cut short.
    _remux(path, damaged, {11: "garbage", 2 * KEYFRAMES: "garbage", 29: "cut"})
    with open_source(damaged) as src:
        with Engine(model, solver="3stage", **UNHURRIED, detector=TruthDetector(truth)) as engine:
            results = list(engine.run_frames(src, keep_images=True))
    stats = src.stats
    indices = [r.index for r in results]
    assert_matches_clean(results, clean)
    # The decoder rejects each damaged packet (real decode errors), and each is counted.
    assert stats.decode_errors == 3 and stats.skipped_corrupt == 3 + stats.corrupt
    assert sum(e.startswith("decode: ") for e in stats.errors) == 3
    assert stats.decoded == stats.delivered == len(results)
    assert engine.stats.skipped_source == stats.missing + stats.corrupt > 0
    # Frames are lost only where the data was damaged, and each loss is counted.
    assert indices[-1] == FRAMES - 1
    assert len(results) + stats.missing == FRAMES
    # From the keyframe after the last damage on, decoding is bit-exact: each frame's image
    # is the clean run's frame of that index (no shift in the timeline).
    healed = [r for r in results if r.index >= 4 * KEYFRAMES]
    assert len(healed) == FRAMES - 4 * KEYFRAMES
    for r in healed:
        np.testing.assert_array_equal(r.image, clean[r.index].image)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_file_truncated_anywhere_ends_cleanly_with_a_prefix(
    video, model, clean, tmp_path: Path, seed: int
) -> None:
    path, truth = video
    data = path.read_bytes()
    cut = int(np.random.default_rng(seed).integers(len(data) // 10, len(data) - 100))
    truncated = tmp_path / "truncated.mkv"
    truncated.write_bytes(data[:cut])
    with Engine(model, solver="3stage", **UNHURRIED, detector=TruthDetector(truth)) as engine:
        results = list(engine.run_frames(str(truncated)))
    assert results, f"nothing decoded from {cut} of {len(data)} bytes"
    assert_matches_clean(results, clean)
    assert results[0].index == 0 and len(results) < FRAMES


def test_truncated_mp4_without_its_index_is_a_clear_error(tmp_path: Path) -> None:
    # A plain MP4 keeps its index (moov) at the end: cut short, it cannot be opened at all.
    path = tmp_path / "plain.mp4"
    make_video(path, frames=8)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with Engine(tiny_model(), solver="heuristic") as engine:
        with pytest.raises(SourceError, match=r"cannot open .*cut\.mp4"):
            list(engine.run(str(cut)))


# ----------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def test_garbage_in_the_pickled_index_is_a_checkpoint_error(checkpoint, tmp_path: Path) -> None:
    data = bytearray(checkpoint.read_bytes())
    at = data.find(b"scmap_head.weight")  # a key of the state dict, in the pickled index
    data[at] = 0x89  # no longer UTF-8
    bad = tmp_path / "bad.pt"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"bad\.pt"):
        load_model(bad)


def _edited(checkpoint: Path, tmp_path: Path, edit) -> Path:
    ckpt = torch.load(checkpoint, weights_only=True)
    edit(ckpt)
    path = tmp_path / "edited.pt"
    torch.save(ckpt, path)
    return path


def test_malformed_checkpoints_fail_before_the_first_frame(checkpoint, tmp_path: Path) -> None:
    def wrong_pairwise(ckpt):
        ckpt["pairwise"]["weights"] = ckpt["pairwise"]["weights"][:-3]

    def nan_pairwise(ckpt):
        ckpt["pairwise"]["weights"][0] = float("nan")

    def text_for_a_tensor(ckpt):
        ckpt["state_dict"]["scmap_head.bias"] = "garbage"

    def no_pairwise(ckpt):
        ckpt["pairwise"] = None

    cases = [
        (wrong_pairwise, "malformed pairwise model"),
        (nan_pairwise, "malformed pairwise model.*finite"),
        (text_for_a_tensor, r"wrong shapes \['scmap_head.bias"),
        (no_pairwise, "no pairwise model"),
    ]
    for edit, message in cases:
        path = _edited(checkpoint, tmp_path, edit)
        with pytest.raises(CheckpointError, match=message):
            Engine(str(path), solver="heuristic")


# ----------------------------------------------------------------------------- solver limits


@pytest.mark.timeout(120)
def test_time_limit_on_a_dense_cluttered_frame_falls_back_and_is_flagged() -> None:
    # Ten overlapping people in a small image, 60 false positives, duplicates and confused
    # parts: far more than a 20 ms budget proves optimal.
    rng = np.random.default_rng(0)
    f = next(iter(generate_video(3, (160, 200), 10, 1, 25.0, (120.0, 150.0))))
    candidates, _ = candidates_from_truth(
        rng, f.keypoints, f.visible, f.heights, (160, 200),
        false_positives=(60, 60), duplicate_rate=0.3, confusion_rate=0.2, jitter=0.06,
    )  # fmt: skip
    assert len(candidates) >= 150
    for method in ("exact", "3stage", "deepcut"):
        solver = FrameSolver(fitted_pairwise(), MPII14, method=method, time_limit=0.02)
        poses = solver(0, 0.0, candidates)  # a hang is stopped by the test's timeout
        report = poses.solver
        assert report["status"] == "time_limit", method
        assert report["fallback"] is True and report["used"] in (method, "heuristic")
        assert report["candidates"] == 150  # capped: the problem size stays bounded
        assert poses.num_people >= 5


# ----------------------------------------------------------------------------- pose streams


def test_following_a_stream_the_engine_is_writing(video, model, clean, tmp_path: Path) -> None:
    path, truth = video
    out = tmp_path / "live.msgpack"
    with Engine(
        model, solver="3stage", **UNHURRIED, detector=TruthDetector(truth, delay=0.01)
    ) as engine:
        header = make_header(engine.skeleton, model=engine.info())
        writer = PoseWriter(out, header)  # the header exists before the reader opens

        def write() -> None:
            with writer:
                for poses in engine.run(str(path)):
                    writer.write(poses)

        thread = threading.Thread(target=write)
        thread.start()
        with read_poses(out, follow=True, poll=0.01, timeout=60) as stream:
            followed = list(stream)  # ends at the footer, not at the timeout
            assert stream.complete and stream.footer["records"] == FRAMES
        thread.join()
    assert_same_poses(followed, [clean[i].poses for i in range(FRAMES)])
    # The finished file cut anywhere inside its last frame record: all the whole records, no
    # error, and not complete.
    data = out.read_bytes()
    begin, end = _last_frame_record(data)
    for cut in (begin + 1, (begin + end) // 2, end - 1):
        with read_poses(io.BytesIO(data[:cut])) as stream:
            back = list(stream)
            assert not stream.complete
        assert_same_poses(back, followed[:-1])


def _last_frame_record(data: bytes) -> tuple[int, int]:
    """Where the last frame record (the one before the footer) begins and ends."""
    import msgpack

    unpacker = msgpack.Unpacker(raw=False)  # records come out as ExtType objects
    unpacker.feed(data)
    offsets = [0]
    for _ in unpacker:
        offsets.append(unpacker.tell())
    return offsets[-3], offsets[-2]
