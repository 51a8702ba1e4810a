"""The bundled model's poses on ``examples/data/sample.mp4`` are pinned: a refactoring that
changes them by more than rounding fails here.

The pin is ``tests/fixtures/sample_poses.npz``: the first :data:`FRAMES` frames, solved in the
driver with the eager backend on the CPU and the default 3-stage solver, keypoints rounded to
1e-3 px (scores to 1e-3). When the bundled model (``deepercut/assets/default.pt``) or the
assembly changes ON PURPOSE, regenerate the pin with one command from the repository root::

    python tests/test_sample_poses.py

and commit the new ``.npz`` together with the change that explains it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "data" / "sample.mp4"
PIN = Path(__file__).resolve().parent / "fixtures" / "sample_poses.npz"
FRAMES = 20
DECIMALS = 3


def sample_poses() -> dict[str, np.ndarray]:
    """The poses of the first :data:`FRAMES` frames, flattened into arrays for the pin."""
    from deepercut.engine.pipeline import Engine

    # A generous time limit: a loaded machine must not swap the exact solve for the fallback.
    with Engine(None, backend="eager", device="cpu", workers=0, time_limit=600.0) as engine:
        poses = list(engine.run(str(SAMPLE), max_frames=FRAMES))
    return {
        "frame": np.array([p.frame for p in poses], dtype=np.int64),
        "people": np.array([p.num_people for p in poses], dtype=np.int64),
        "keypoints": np.round(np.concatenate([p.keypoints for p in poses]), DECIMALS),
        "track_id": np.concatenate([p.track_id for p in poses]).astype(np.int64),
    }


def test_bundled_model_poses_on_the_sample_match_the_pin() -> None:
    assert PIN.exists(), f"no pin: run `python tests/{Path(__file__).name}` to write {PIN}"
    actual = sample_poses()
    with np.load(PIN) as pinned:
        expected = {name: pinned[name] for name in pinned.files}
    assert actual["frame"].tolist() == list(range(FRAMES))
    np.testing.assert_array_equal(actual["frame"], expected["frame"])
    np.testing.assert_array_equal(actual["people"], expected["people"])
    np.testing.assert_array_equal(actual["track_id"], expected["track_id"])
    assert int(actual["people"].sum()) > 0, "the pin must hold people to mean anything"
    # Both sides are rounded to 1e-3: allow one rounding step of float noise between them.
    np.testing.assert_allclose(
        actual["keypoints"], expected["keypoints"], rtol=0, atol=1.5 * 10**-DECIMALS
    )
    np.testing.assert_array_equal(np.isnan(actual["keypoints"]), np.isnan(expected["keypoints"]))


def regenerate() -> None:
    """Write the pin from the current code and bundled model."""
    poses = sample_poses()
    PIN.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(PIN, **poses)
    print(f"wrote {PIN}: {len(poses['frame'])} frames, {int(poses['people'].sum())} people")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # this checkout's deepercut, not an installed one
    regenerate()
