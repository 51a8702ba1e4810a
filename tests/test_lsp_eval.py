"""LSP's single-person evaluation: PCK@0.2 of the torso with its AUC, unlabelled joints not
counted, one pose per image, images at a fixed scale of their own size; and through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deepercut.cli import main
from deepercut.data.synthetic import generate_image, write_png
from deepercut.evaluate import HELD_OUT_SEED
from deepercut.evaluate.lsp import lsp_pck, scaled_input_hw
from deepercut.skeleton import MPII14

torch = pytest.importorskip("torch")
PARTS = MPII14.parts
L_SHOULDER, R_HIP = PARTS.index("left_shoulder"), PARTS.index("right_hip")


def _person(torso: float = 50.0) -> np.ndarray:
    """[1, 14, 3] a labelled person whose torso (left shoulder to right hip) is ``torso`` px."""
    gt = np.zeros((1, 14, 3))
    gt[0, :, 0] = np.arange(14) * 5.0
    gt[0, :, 1] = 100.0
    gt[0, :, 2] = 2
    gt[0, L_SHOULDER, :2] = (0.0, 0.0)
    gt[0, R_HIP, :2] = (0.0, torso)
    return gt


def test_pck_auc_and_unlabelled_joints() -> None:
    gt = _person()
    exact = gt.copy()
    exact[..., 2] = 1.0  # predictions carry a score, not a visibility
    result = lsp_pck([exact], [gt], PARTS)
    assert result.pck.mean == 1.0 and result.auc == pytest.approx(1.0)
    # Every joint 0.1 torso (5 px) off: correct at 0.2, and the curve rises at 0.1.
    off = exact.copy()
    off[..., 0] += 5.0
    result = lsp_pck([off], [gt], PARTS)
    assert result.pck.mean == 1.0
    assert result.auc == pytest.approx((0.005 + 0.1) / 0.2, abs=0.03)  # trapezoids to 0.2
    # An unlabelled joint (LSPET flag 0) is not counted, whatever is predicted for it.
    cut = gt.copy()
    cut[0, 0, 2] = 0
    far = exact.copy()
    far[0, 0, :2] = (1e4, 1e4)
    result = lsp_pck([far], [cut], PARTS)
    assert result.pck.counts[0] == 0 and result.pck.mean == 1.0 and result.people == 1
    # Without a torso size the person is skipped.
    no_torso = gt.copy()
    no_torso[0, R_HIP, 2] = 0
    assert lsp_pck([exact], [no_torso], PARTS).people == 0


def test_scaled_inputs_round_up_to_16() -> None:
    assert scaled_input_hw((236, 247), 1.0) == (240, 256)
    assert scaled_input_hw((100, 80), 2.0) == (208, 160)
    assert scaled_input_hw((5, 5), 0.5) == (16, 16)


def test_lspet_through_the_cli(tmp_path: Path) -> None:
    """LSP extended (14×3×N, flag 1 = visible): absent images skipped, flag-0 joints not
    counted, a listed subset scored, the single-person read-out near the truth."""
    scipy_io = pytest.importorskip("scipy.io")
    pytest.importorskip("PIL")
    torch.set_num_threads(1)
    (tmp_path / "images").mkdir()
    n = 4
    joints = np.zeros((14, 3, n))
    for i in range(n):
        # One ~150 px person in a small image, as in LSP.
        sample = generate_image(HELD_OUT_SEED + 900 + i, (200, 160), 1, (150.0, 160.0))
        if i != 3:  # the last row's image is withheld
            write_png(tmp_path / "images" / f"im{i + 1:05d}.jpg", sample.image)
        joints[:, :2, i] = sample.keypoints[0] + 1
        joints[:, 2, i] = 1
    joints[0, :, 0] = (-1, -1, 0)  # image 1's right ankle: outside the image, flag 0
    scipy_io.savemat(tmp_path / "joints.mat", {"joints": joints})
    listing = tmp_path / "val.txt"
    listing.write_text("im00001.jpg\nim00002.jpg\n")
    out = tmp_path / "lsp.json"
    argv = ["eval", "--data", str(tmp_path / "joints.mat"), "--test-images", str(listing)]
    assert main([*argv, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["images"] == 2 and report["absent_images"] == 1 and report["scale"] == 1.0
    single = report["single_person"]
    assert single["people"] == 2 and single["joints"] == 2 * 14 - 1  # the flag-0 joint
    assert single["PCK@0.2_torso"] > 0.6 and "solvers" not in report
