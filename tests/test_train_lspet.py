"""Training on LSP-extended-style data: flag-0 joints unlabelled, absent images skipped, the
bystander mask, mixing with synthetic crowds, the validation split, and exact resumption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import deepercut
from deepercut.cli import main
from deepercut.data.dataset import NOT_LABELLED, VISIBLE, read_name_list
from deepercut.data.load import load_dataset
from deepercut.data.lsp import validation_split
from deepercut.data.synthetic import generate_image, write_png
from deepercut.model.net import STRIDE
from deepercut.skeleton import MPII14
from deepercut.train.augment import AugmentParams, augment
from deepercut.train.sources import DatasetSource, MixedSource, SyntheticSource, mix_counts
from deepercut.train.targets import make_targets

pytest.importorskip("scipy.io")
pytest.importorskip("PIL")

#: Images of the fixture; row ABSENT has no image file (as LSPET withholds 1,000).
IMAGES, ABSENT = 4, 3
#: Part whose flag is 0 (cut off by the frame) in the first image.
CUT_OFF = MPII14.parts.index("right_ankle")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


#: Seeds of images with two people over 150 px apart, every joint of the first one visible.
SEEDS = (527, 504, 515, 526)


def _people(i: int):
    """Two synthetic people, far apart: person 0 is labelled, person 1 a bystander."""
    return generate_image(SEEDS[i], (160, 240), 2, (60.0, 80.0))


def _write_lspet(root: Path) -> Path:
    """An LSP-extended joints.mat (14×3×N, flag 1 = visible) over person 0 of each image."""
    from scipy.io import savemat

    (root / "images").mkdir()
    joints = np.zeros((14, 3, IMAGES))
    for i in range(IMAGES):
        sample = _people(i)
        if i != ABSENT:
            # PNG bytes under LSP's .jpg name: the reader goes by content.
            write_png(root / "images" / f"im{i + 1:05d}.jpg", sample.image)
        joints[:, :2, i] = sample.keypoints[0] + 1  # MATLAB's 1-based pixels
        joints[:, 2, i] = 1
    joints[CUT_OFF, :, 0] = (-1, -1, 0)  # LSPET's placeholder for a joint outside the image
    path = root / "joints.mat"
    savemat(path, {"joints": joints})
    return path


def test_flag_zero_is_unlabelled_and_absent_images_are_counted(tmp_path: Path) -> None:
    dataset = load_dataset(_write_lspet(tmp_path))
    assert len(dataset) == IMAGES
    assert dataset[0].keypoints[0, CUT_OFF, 2] == NOT_LABELLED
    assert not dataset[0].labelled[0, CUT_OFF] and dataset[0].labelled[0].sum() == 13
    assert (dataset[1].keypoints[0, :, 2] == VISIBLE).all()
    present, missing = dataset.with_existing_images()
    assert len(present) == IMAGES - 1
    assert missing == [tmp_path / "images" / f"im{ABSENT + 1:05d}.jpg"]


def test_validation_split_is_fixed_and_disjoint(tmp_path: Path) -> None:
    dataset = load_dataset(_write_lspet(tmp_path))
    train, val = validation_split(dataset, count=1, seed=3)
    names = [r.image_path.name for r in val.records]
    train_names = {r.image_path.name for r in train.records}
    assert len(names) == 1 and not train_names & set(names)
    assert len(train_names) == IMAGES - 2  # the absent image is in neither
    assert [r.image_path.name for r in validation_split(dataset, 1, 3)[1].records] == names
    listing = tmp_path / "val.txt"
    listing.write_text("# the split\n" + "\n".join(names) + "\n\n")
    assert read_name_list([str(listing), "im00009"]) == [*names, "im00009"]
    with pytest.raises(ValueError, match="validation count"):
        validation_split(dataset, count=IMAGES)


def _targets(sample):
    return make_targets(
        [torch.from_numpy(sample.keypoints)],
        [torch.from_numpy(sample.visible)],
        [torch.from_numpy(sample.annotated)],
        [torch.from_numpy(sample.heights)],
        (sample.image.shape[0] // STRIDE, sample.image.shape[1] // STRIDE),
        STRIDE,
        7.2801,
        torch.zeros(14, 13, 2),
        torch.ones(14, 13, 2),
        loss_masks=None
        if sample.loss_mask is None
        else [torch.from_numpy(sample.loss_mask[STRIDE // 2 :: STRIDE, STRIDE // 2 :: STRIDE])],
    )


def _native_crop(dataset, mask_margin):
    """Image 0 at native scale in a crop centred on person 0, wide enough for both people."""
    source = DatasetSource(
        dataset.subset([0]), image_hw=(160, 512), jitter=0.0, mask_margin=mask_margin
    )
    return source(np.random.default_rng(0))


def test_flag_zero_joints_get_no_target(tmp_path: Path) -> None:
    dataset = load_dataset(_write_lspet(tmp_path))
    sample = _native_crop(dataset, None)
    assert not sample.annotated[0, CUT_OFF] and not sample.visible[0, CUT_OFF]
    t = _targets(sample)
    other = MPII14.parts.index("left_ankle")
    assert t.scmap[0, other].sum() > 0  # a labelled joint has positives...
    assert t.scmap[0, CUT_OFF].sum() == 0  # ...the unlabelled one none,
    assert t.locref_weight[0, CUT_OFF].sum() == 0  # no offsets to it or from it
    assert (t.scmap_weight[0, CUT_OFF] == 1).all()  # and no ignored cells at its placeholder
    column = [q for q in range(14) if q != other].index(CUT_OFF)
    assert t.pairwise_weight[0, other, column].sum() == 0
    assert t.pairwise_weight[0, other].sum() > 0


def test_the_mask_excludes_bystanders_but_keeps_the_person(tmp_path: Path) -> None:
    dataset = load_dataset(_write_lspet(tmp_path))
    people = _people(0)
    crop = _native_crop(dataset, 0.2)
    # Native scale: the crop only shifts the image (centred on the labelled person).
    known = crop.annotated[0]  # all but the cut-off joint
    shift = crop.keypoints[0, known][0] - people.keypoints[0, known][0]
    bystander = people.keypoints[1][people.visible[1]] + shift
    labelled = people.keypoints[0][known] + shift
    h, w = crop.image.shape[0] // STRIDE, crop.image.shape[1] // STRIDE
    cell = lambda xy: (int(xy[1]) // STRIDE, int(xy[0]) // STRIDE)  # noqa: E731
    unmasked, masked = _targets(_native_crop(dataset, None)), _targets(crop)
    # Without the mask the bystander's joints are taught as background (weight 1, target 0).
    by_cells = {cell(xy) for xy in bystander if 0 <= xy[0] < w * STRIDE and 0 <= xy[1] < h * STRIDE}
    assert len(by_cells) >= 5
    for part in range(14):
        for i, j in by_cells:
            if unmasked.scmap[0, part, i, j] == 0:
                assert unmasked.scmap_weight[0, part, i, j] == 1
                assert masked.scmap_weight[0, part, i, j] == 0
    # The labelled person's cells all still count: positives and the negatives around them.
    for i, j in {cell(xy) for xy in labelled}:
        assert (masked.scmap_weight[0, :, i, j] == 1).all()
    assert masked.scmap.sum() == unmasked.scmap.sum() > 0
    assert 0 < masked.scmap_weight.mean() < unmasked.scmap_weight.mean() == 1


def test_the_mask_follows_augmentation() -> None:
    rng = np.random.default_rng(2)
    sample = SyntheticSource((96, 96), (1, 1), (40.0, 50.0))(rng)
    mask = np.zeros((96, 96), bool)
    mask[:, :48] = True  # the left half
    sample.loss_mask = mask
    params = AugmentParams(scale=(1.0, 1.0), rotation_deg=0.0, flip_prob=1.0)
    out = augment(sample, rng, params, MPII14.flip_permutation(), (96, 96))
    assert (
        out.loss_mask is not None
        and out.loss_mask[:, 48:].all()
        and not out.loss_mask[:, :48].any()
    )


def test_mixed_batches_draw_fixed_shares(tmp_path: Path) -> None:
    dataset = load_dataset(_write_lspet(tmp_path)).with_existing_images()[0]
    lsp = DatasetSource(dataset, image_hw=(96, 96), height_range=(30.0, 60.0), mask_margin=0.2)
    synthetic = SyntheticSource((96, 96), (2, 3), (30.0, 40.0))
    assert mix_counts(16, 0.25) == (12, 4)
    with pytest.raises(ValueError, match="share"):
        mix_counts(16, 1.5)
    batch = MixedSource((lsp, synthetic), (3, 1)).draw_batch(np.random.default_rng(0))
    assert [s.loss_mask is not None for s in batch] == [True, True, True, False]
    assert all(len(s.keypoints) == 1 for s in batch[:3]) and len(batch[3].keypoints) >= 2
    for s in batch[:3]:  # scaled into the asked range (LSP's size: its joints' diagonal)
        assert 30.0 * 0.99 <= s.heights[0] <= 60.0 * 1.01


def _train(tmp_path: Path, mat: Path, out: Path, *extra: str) -> None:
    assert main(_train_argv(mat, out, *extra)) == 0


def _train_argv(mat: Path, out: Path, *extra: str) -> list[str]:
    """A tiny ``deepercut train`` of 4 steps on the fixture (``extra`` overrides)."""
    argv = [
        "train", "--data", str(mat), "--test-images", "im00002", "--mix-synthetic", "0.5",
        "--person-heights", "40", "60", "--heights", "30", "50", "--people", "1", "2",
        "--arch", "resnet18", "--width", "8", "--head-channels", "16", "--crop-hw", "64x64",
        "--input-hw", "64x64", "--batch-size", "2", "--steps", "4", "--warmup", "1",
        "--save-every", "2", "--pairwise-images", "0", "--no-progress", "-o", str(out),
    ]  # fmt: skip
    return [*argv, *extra]


def test_resume_continues_exactly(tmp_path: Path) -> None:
    mat = _write_lspet(tmp_path)
    whole, chunked = tmp_path / "whole.pt", tmp_path / "chunked.pt"
    _train(tmp_path, mat, whole)
    _train(tmp_path, mat, chunked, "--stop-at", "2")
    first = torch.load(chunked, weights_only=True)
    assert first["train_state"]["step"] == 2
    # The data and training arguments come from the checkpoint.
    assert main(["train", "--resume", str(chunked), "-o", str(chunked), "--no-progress",
                 "--pairwise-images", "0"]) == 0  # fmt: skip
    a, b = (torch.load(p, weights_only=True) for p in (whole, chunked))
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    # From scratch, BatchNorm trains: the training-mode network is stored beside the frozen copy.
    for key, value in a["train_state"]["net_state"].items():
        assert torch.equal(value, b["train_state"]["net_state"][key]), key
    logs = [
        [json.loads(line) for line in p.with_suffix(".log.jsonl").read_text().splitlines()]
        for p in (whole, chunked)
    ]
    assert [r["total"] for r in logs[0]] == [r["total"] for r in logs[1]]
    assert [r["step"] for r in logs[1]] == [0, 1, 2, 3]
    stages = b["meta"]["stages"]
    assert [s["steps"] for s in stages] == [[0, 2], [2, 4]]
    assert "--resume" in stages[1]["command"] and stages[1]["absent_images"] == 1
    assert b["meta"]["mix"] == {"dataset": 1, "synthetic": 1}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_the_chunk_with_a_resumable_checkpoint(tmp_path: Path, signum: int) -> None:
    mat = _write_lspet(tmp_path)
    out = tmp_path / "run.pt"
    log = out.with_suffix(".log.jsonl")
    # A schedule far too long to finish, and no periodic checkpoint: only the stop saves.
    argv = _train_argv(mat, out, "--steps", "1000000", "--save-every", "1000000")
    root = Path(deepercut.__file__).parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "deepercut", *argv], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 600  # a guard against a hang, not a speed bound
        while not (log.exists() and len(log.read_text().splitlines()) >= 2):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signum, stderr
    assert "stopping after this step" in stderr and f"--resume {out}" in stdout
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    saved = torch.load(out, weights_only=True)
    # Every logged step is in the checkpoint: nothing done before the signal is lost.
    assert steps == list(range(len(steps))) and saved["train_state"]["step"] == len(steps)
    assert saved["meta"]["stages"][0]["steps"] == [0, len(steps)]
    # It resumes where it stopped.
    assert main(["train", "--resume", str(out), "-o", str(out), "--no-progress",
                 "--pairwise-images", "0", "--stop-at", str(len(steps) + 1)]) == 0  # fmt: skip
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps == list(range(len(steps))) and torch.load(out)["train_state"]["step"] == len(steps)


def test_resume_refuses_a_deployed_model(tmp_path: Path, capsys) -> None:
    mat = _write_lspet(tmp_path)
    bundled = Path(deepercut.__file__).parent / "assets" / "default.pt"
    assert main(["train", "--data", str(mat), "--resume", str(bundled),
                 "-o", str(tmp_path / "x.pt")]) == 2  # fmt: skip
    assert "no training state" in capsys.readouterr().err
