"""The examples, run as a user would: a video file, a (virtual) live camera served over TCP, and
a folder of videos on a two-node Ray cluster started on loopback."""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import av
import msgpack
import pytest
from engine_support import VIDEO_FRAMES, make_video, save_tiny_model, slow_network_detector

from deepercut.streams import read_poses

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("examples")
    make_video(root / "people.mp4")
    save_tiny_model(root / "tiny.pt")
    return root


def test_video_file_writes_a_stream_and_an_overlay(workdir: Path, capsys) -> None:
    out, render = workdir / "poses.msgpack", workdir / "overlay.mp4"
    video_file = load_example("video_file")
    args = [str(workdir / "people.mp4"), "-o", str(out), "--render", str(render)]
    flags = ["--model", str(workdir / "tiny.pt"), *"--workers 0 --solver heuristic".split()]
    assert video_file.main([*args, *flags]) == 0
    with read_poses(out) as stream:
        assert stream.header["source"]["fps"] == 25.0
        assert [p.frame for p in stream] == list(range(VIDEO_FRAMES))
    with av.open(str(render)) as container:
        assert sum(1 for _ in container.decode(video=0)) == VIDEO_FRAMES
    assert f"frames {VIDEO_FRAMES}" in capsys.readouterr().out


def test_camera_example_serves_a_live_stream(workdir: Path, capsys, monkeypatch) -> None:
    port = free_port()
    received: list[object] = []

    def client() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        else:
            return

        def unframe(kind: int, data: bytes) -> tuple[int, object]:  # see the README
            return kind, msgpack.unpackb(data[8:], raw=False)

        unpacker = msgpack.Unpacker(raw=False, ext_hook=unframe)
        with sock:
            sock.settimeout(30)
            while chunk := sock.recv(65536):
                unpacker.feed(chunk)
                received.extend(unpacker)

    reader = threading.Thread(target=client)
    reader.start()
    camera = load_example("camera")
    # The file plays as a 100 fps camera; the detector is held 20 ms per frame: frames get
    # dropped on any machine.
    slow_network_detector(monkeypatch, 0.02)
    args = [str(workdir / "people.mp4"), "--realtime", "100", "--serve", f"tcp://127.0.0.1:{port}"]
    flags = ["--model", str(workdir / "tiny.pt"), *"--workers 0 --solver heuristic".split()]
    assert camera.main([*args, *flags]) == 0
    reader.join(30)
    printed = capsys.readouterr().out
    assert "serving poses at tcp://127.0.0.1" in printed and "dropped" in printed
    header, (check_kind, check), *records, (kind, footer) = received
    assert header["format"] == "deepercut.poses" and header["source"]["fps"] == 25.0
    assert check_kind == 3 and set(check) == {"crc", "bytes"}  # the header's check record
    assert kind == 2 and footer["end"] == "complete" and footer["records"] == len(records)
    indices = [r["i"] for _, r in records]
    assert indices == sorted(set(indices)) and len(indices) >= 1
    solved, dropped = map(int, re.search(r"solved (\d+), dropped (\d+)", printed).groups())
    assert solved + dropped == VIDEO_FRAMES and dropped > 0
    assert len(indices) <= solved  # the client may connect after the first frames


@pytest.mark.skipif(shutil.which("ray") is None, reason="the ray CLI is not installed")
def test_ray_cluster_example_on_two_local_nodes(workdir: Path, tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a.mp4", "b.mp4"):
        shutil.copy(workdir / "people.mp4", videos / name)
    port = free_port()
    # A token-authenticated throwaway cluster; --block keeps each node in the foreground, so
    # terminating the process stops exactly that node (no `ray stop` of unrelated clusters).
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    # The nodes' workers and the driver import this checkout, not whatever is installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(EXAMPLES.parent), env.get("PYTHONPATH")]))
    common = ["--num-cpus=1", "--block", "--disable-usage-stats"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    nodes = [
        subprocess.Popen(
            ["ray", "start", "--head", f"--port={port}", "--include-dashboard=false", *common],
            **quiet,
        )
    ]
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the Ray head did not start"
                time.sleep(0.2)
        nodes.append(
            subprocess.Popen(["ray", "start", f"--address=127.0.0.1:{port}", *common], **quiet)
        )
        out, tiny = tmp_path / "poses", str(workdir / "tiny.pt")
        # The driver is a separate process, as on a real cluster; it waits for both nodes
        # because the pool waits until both one-CPU actors have started.
        result = subprocess.run(
            [
                sys.executable,
                str(EXAMPLES / "ray_cluster.py"),
                str(videos),
                *("-o", str(out), "--address", f"127.0.0.1:{port}", "--model", tiny),
                *"--workers 2 --solver heuristic --max-frames 8".split(),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    finally:
        for node in reversed(nodes):
            node.terminate()
        for node in nodes:
            try:
                node.wait(30)
            except subprocess.TimeoutExpired:
                node.kill()
    for name in ("a", "b"):
        with read_poses(out / f"{name}.msgpack") as stream:
            assert [p.frame for p in stream] == list(range(8))
    assert "a.mp4: 8 frames" in result.stdout and "b.mp4: 8 frames" in result.stdout
