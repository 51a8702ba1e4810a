"""The Ray node under the solver pool dies mid-run: the run never hangs, every frame comes back.

A real local Ray is started in a subprocess (its own cluster); its ``ray::DashboardAgent`` is
SIGKILLed mid-run, and the raylet fate-shares with it (as after an OOM kill), so the node is
lost with the actors on it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepercut.streams import read_poses

pytest.importorskip("ray")

_DRIVER = """
import json, sys, time
sys.path[:0] = [sys.argv[1]]
import numpy as np
import ray
import psutil  # ships with ray (importable once ray is)
from deepercut.engine.pool import SolverPool
from deepercut.types import Candidates, Poses

N = 40


class Solver:  # defined here: shipped to the actors by value
    def __call__(self, index, pts, candidates):
        time.sleep(0.05)
        return Poses(index, pts, np.zeros((1, 14, 3), np.float32), np.zeros(1, np.int64), {})


def kill_agent():
    for p in psutil.Process().children(recursive=True):  # only this test's own Ray
        if "DashboardAgent" in " ".join(p.cmdline()):
            p.kill()
            return p.pid
    raise SystemExit("no DashboardAgent among this process's children")


empty = Candidates.empty(14)
out, killed = [], None
with SolverPool(Solver(), workers=1, max_in_flight=3, stall_timeout=60.0) as pool:
    for i in range(N):
        out += pool.submit(i, i / 25, empty)
        if killed is None and len(out) >= 5:
            killed = kill_agent()
    out += pool.drain()
    stats = pool.stats.to_dict()
print(json.dumps({"indices": [i for i, _ in out], "frames": [p.frame for _, p in out],
                  "stats": stats}), flush=True)
"""


@pytest.mark.timeout(180)
def test_killing_the_ray_node_mid_run_loses_no_frame_and_never_hangs(tmp_path: Path) -> None:
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER)
    done = subprocess.run(
        [sys.executable, str(script), str(Path(__file__).parents[1])],
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["indices"] == list(range(40)) and result["frames"] == list(range(40))
    # The lost actor's frames, and every later one, were solved in the driver; one line says so.
    assert result["stats"]["solved_in_process"] >= 1
    assert "solving every further frame in this process" in done.stderr


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine_support import make_video, save_tiny_model

    root = tmp_path_factory.mktemp("node_loss")
    make_video(root / "clip.mp4", frames=96, keyframe_interval=6)
    save_tiny_model(root / "tiny.pt")
    return root


def _kill_agent_of(pid: int) -> None:
    """SIGKILL the ``ray::DashboardAgent`` started under process ``pid`` (its own Ray)."""
    import psutil  # ships with ray

    for child in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "DashboardAgent" in " ".join(child.cmdline()):
                child.kill()
                return
    raise AssertionError("no DashboardAgent under the engine's process")


@pytest.mark.timeout(240)
def test_deepercut_run_finishes_every_frame_when_its_ray_node_dies(clip: Path) -> None:
    out = clip / "poses.msgpack"
    command = [sys.executable, "-m", "deepercut", "run", str(clip / "clip.mp4"), "-o", str(out)]
    command += ["--model", str(clip / "tiny.pt"), "--workers", "1", "--solver", "heuristic"]
    engine = subprocess.Popen(
        command, cwd=Path(__file__).parents[1], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        # Mid-run: a few records written, most of the 96 frames still to come.
        while engine.poll() is None and (not out.exists() or out.stat().st_size < 4000):
            time.sleep(0.05)
        assert engine.poll() is None, "the run ended before the node could be killed"
        _kill_agent_of(engine.pid)
        _, err = engine.communicate(timeout=200)
    finally:
        engine.kill()
    stderr = err.decode(errors="replace")
    assert engine.returncode == 0, stderr[-3000:]
    with read_poses(out) as stream:
        frames = [p.frame for p in stream]
        footer = stream.footer
    assert frames == list(range(96)) and footer["end"] == "complete"
    assert footer["counts"]["solved_in_process"] >= 1
    assert "solving every further frame in this process" in stderr


_SHARDED = """
import sys
sys.path[:0] = [sys.argv[1]]
import ray
import psutil  # ships with ray
from deepercut.engine.sharded import ShardedDetector
from deepercut.model.io import load_model

ray.init(address="local", num_cpus=2, include_dashboard=False)
detector = ShardedDetector(
    load_model(sys.argv[2]), actors=1, gpus_per_actor=0, options={"batch_size": 2}
)
frames = 0
try:
    for chunk in detector.run(sys.argv[3], 0, None, 1, idle_s=0.01):
        if chunk and not frames:  # the first chunk is in, the second being detected
            for p in psutil.Process().children(recursive=True):
                if "DashboardAgent" in " ".join(p.cmdline()):
                    p.kill()
        frames += len(chunk)
except RuntimeError as exc:
    print(f"{frames} frames, then: {exc}", flush=True)
    sys.exit(3)
"""


@pytest.mark.timeout(180)
def test_detector_actors_losing_their_node_end_with_our_error(clip: Path, tmp_path: Path) -> None:
    script = tmp_path / "sharded.py"
    script.write_text(_SHARDED)
    repo = Path(__file__).parents[1]
    done = subprocess.run(
        [sys.executable, str(script), str(repo), str(clip / "tiny.pt"), str(clip / "clip.mp4")],
        capture_output=True,
        text=True,
        timeout=170,
        cwd=repo,
    )
    assert done.returncode == 3, done.stderr[-3000:]
    assert "66 frames, then: the Ray node of detector actor 0 died mid-run" in done.stdout
