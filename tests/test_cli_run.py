"""``deepercut run`` on a real H.264 video: the stream, the overlay, workers 0 vs 2, the time
limit fallback, live rendering with drops, errors, and (once bundled) the default model."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import av
import numpy as np
import pytest
from engine_support import (
    VIDEO_FRAMES,
    VIDEO_HEIGHTS,
    assert_same_poses,
    local_ray,
    make_video,
    match_error,
    save_tiny_model,
    slow_network_detector,
)

from deepercut.cli import main
from deepercut.skeleton import MPII14
from deepercut.streams import read_poses

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    with local_ray():
        yield


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    truth = make_video(root / "people.mp4")
    save_tiny_model(root / "tiny.pt")
    return root, truth


def run(files, *args: str) -> int:
    root, _ = files
    return main(["run", str(root / "people.mp4"), "--model", str(root / "tiny.pt"), *args])


def read(path: Path) -> tuple[dict, list]:
    with read_poses(path) as stream:
        return stream.header, list(stream)


def decoded_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_stream_has_one_record_per_decoded_frame_and_overlay_matches(files) -> None:
    root, _ = files
    out, render = root / "w0.msgpack", root / "overlay.mp4"
    flags = "--workers 0 --solver heuristic --quiet".split()
    assert run(files, "-o", str(out), "--render", str(render), *flags) == 0
    header, poses = read(out)
    assert header["skeleton"] == MPII14.to_dict()
    assert header["source"]["fps"] == 25.0 and header["source"]["frame_size"] == [320, 240]
    assert header["model"]["backend"] == "onnxruntime" and header["model"]["solver"] == "heuristic"
    assert [p.frame for p in poses] == list(range(decoded_frames(root / "people.mp4")))
    assert [p.pts for p in poses] == pytest.approx([i / 25.0 for i in range(VIDEO_FRAMES)])
    assert decoded_frames(render) == VIDEO_FRAMES
    with av.open(str(render)) as container:
        assert container.streams.video[0].average_rate == 25
    with read_poses(out) as stream:  # the footer: the run finished, with its counts
        list(stream)
        footer = stream.footer
    assert footer["end"] == "complete" and footer["records"] == VIDEO_FRAMES
    counts = footer["counts"]
    assert counts["frames"] == counts["solved"] == counts["source"]["decoded"] == VIDEO_FRAMES
    assert counts["dropped_source"] == counts["dropped_solver"] == 0


def test_two_ray_workers_write_the_same_poses(files) -> None:
    root, _ = files
    flags = "--workers 2 --solver heuristic --quiet".split()
    assert run(files, "-o", str(root / "w2.msgpack"), *flags) == 0
    if not (root / "w0.msgpack").exists():  # this test run alone
        run(files, "-o", str(root / "w0.msgpack"), *flags[2:], "--workers", "0")
    assert_same_poses(read(root / "w2.msgpack")[1], read(root / "w0.msgpack")[1])


def test_solver_settings_reach_the_stream(files, capsys) -> None:
    root, _ = files
    out = root / "limited.msgpack"
    flags = "--workers 0 --solver exact --time-limit 0.0001 --max-frames 4".split()
    assert run(files, "-o", str(out), *flags) == 0
    header, poses = read(out)
    assert header["model"]["solver"] == "exact" and header["model"]["time_limit"] == 0.0001
    assert len(poses) == 4
    # The tiny model's frames are solved by the exact solver's reductions and enumeration: no
    # CP-SAT round, where the 0.1 ms limit is checked, so none times out or falls back (the
    # fallback itself: test_pipeline).
    reports = [p.solver for p in poses]
    assert [(r["method"], r["status"], r["fallback"]) for r in reports] == [
        ("exact", "optimal", False)
    ] * 4, reports
    assert "heuristic fallbacks 0" in capsys.readouterr().err


def test_min_parts_drops_smaller_people(files, capsys) -> None:
    root, _ = files
    counts = {}
    for min_parts in (1, 3):
        out = root / f"min{min_parts}.msgpack"
        flags = f"--workers 0 --max-frames 4 --min-parts {min_parts}".split()
        assert run(files, "-o", str(out), *flags) == 0
        counts[min_parts] = [(p.keypoints[:, :, 2] > 0).sum(axis=1) for p in read(out)[1]]
    # The tiny model leaves many 1- and 2-part fragments: 3 keeps only the larger people.
    assert any((parts < 3).any() for parts in counts[1])
    assert all(len(parts) and (parts >= 3).all() for parts in counts[3])
    assert [sorted(p[p >= 3]) for p in counts[1]] == [sorted(p) for p in counts[3]]
    assert run(files, "--workers", "0", "--min-parts", "15") == 2
    assert "min_parts must be between 1 and 14" in capsys.readouterr().err


def test_live_render_has_one_frame_per_source_frame_despite_drops(files, monkeypatch) -> None:
    root, _ = files
    out, render = root / "live.msgpack", root / "live.mp4"
    # A 200 fps source and a detector held 20 ms per frame: the source drops frames, the
    # overlay repeats frames.
    slow_network_detector(monkeypatch, 0.02)
    flags = "--realtime 200 --workers 0 --solver heuristic --batch-size 2".split()
    assert run(files, "-o", str(out), "--render", str(render), *flags) == 0
    header, poses = read(out)
    assert header["source"]["live"] is True
    frames = [p.frame for p in poses]
    assert frames == sorted(set(frames)) and len(frames) < VIDEO_FRAMES
    assert frames[-1] == VIDEO_FRAMES - 1  # live sources drop the oldest frames, never the last
    assert decoded_frames(render) == VIDEO_FRAMES


def test_errors_are_one_line_and_exit_code_2(files, capsys, tmp_path) -> None:
    root, _ = files
    assert main(["run", str(tmp_path / "missing.mp4"), "--workers", "0"]) == 2
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    assert main(["run", str(root / "people.mp4"), "--model", str(corrupt), "--workers", "0"]) == 2
    assert main(["run", str(root / "people.mp4"), "--ray-address", "auto", "--workers", "0"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(e.startswith("deepercut run: error:") for e in errors)
    assert "missing.mp4" in errors[0] and "corrupt.pt" in errors[1]


def bundled_model_exists() -> bool:
    return (resources.files("deepercut") / "assets" / "default.pt").is_file()


@pytest.mark.skipif(not bundled_model_exists(), reason="the bundled model is not built yet")
def test_bundled_model_finds_the_people_near_the_truth(files) -> None:
    root, truth = files
    out = root / "bundled.msgpack"
    assert main(["run", str(root / "people.mp4"), "-o", str(out), "--workers", "0"]) == 0
    _, poses = read(out)
    assert [p.frame for p in poses] == list(range(VIDEO_FRAMES))
    errors = [match_error(p, truth["frames"][p.frame]) for p in poses]
    assert np.median(errors) < 0.1 * VIDEO_HEIGHTS[0]  # ~4 px with the first trained model


def test_serve_binds_loopback_unless_serve_public(files, capsys) -> None:
    flags = "--workers 0 --solver heuristic --max-frames 2".split()
    assert run(files, "--serve", "tcp://0.0.0.0:0", *flags) == 2
    assert "--serve-public" in capsys.readouterr().err
    assert run(files, "--serve", "tcp://127.0.0.1:0", *flags) == 0
    err = capsys.readouterr().err
    assert "serving poses at tcp://127.0.0.1:" in err
    assert "served 2 records to 0 clients (0 refused" in err  # the server's summary line
