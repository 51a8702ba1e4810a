"""Training: targets on hand-made keypoints, augmentation geometry, the loss going down."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deepercut.model.candidates import cell_centers
from deepercut.model.codecs import offset_statistics
from deepercut.model.io import load_model
from deepercut.skeleton import MPII14, Skeleton
from deepercut.train.augment import AugmentParams, PoseSample, augment
from deepercut.train.loop import LoopConfig, train
from deepercut.train.targets import make_targets

TINY = Skeleton(
    name="tiny",
    parts=("a", "b", "c"),
    edges=((0, 1), (1, 2)),
    stages=((0,), (1, 2)),
    flip_pairs=((0, 2),),
)


def test_targets_mark_cells_near_visible_joints_and_ignore_occluded() -> None:
    kp = torch.tensor([[[20.0, 12.0], [44.0, 36.0], [60.0, 60.0]]])  # one person, 3 parts
    visible = torch.tensor([[True, True, False]])
    annotated = torch.ones(1, 3, dtype=torch.bool)
    heights = torch.tensor([100.0])  # radius max(17·100/340, 6) = 6 px
    mean = torch.zeros(3, 2, 2)
    std = torch.ones(3, 2, 2) * 10
    t = make_targets([kp], [visible], [annotated], [heights], (10, 10), 8, 7.2801, mean, std)
    centers = cell_centers(10, 10, 8)
    dist_a = (centers - kp[0, 0]).norm(dim=-1)
    assert torch.equal(t.scmap[0, 0].bool(), dist_a <= 6)
    assert t.scmap[0, 0].sum() >= 1
    # Occluded part c: no positives, and its neighbourhood is ignored rather than negative.
    assert t.scmap[0, 2].sum() == 0
    near_c = (centers - kp[0, 2]).norm(dim=-1) <= 6
    assert torch.all(t.scmap_weight[0, 2][near_c] == 0)
    assert torch.all(t.scmap_weight[0, 2][~near_c] == 1)
    # Locref at a positive cell points from the cell centre to the joint (normalised).
    i, j = torch.nonzero(t.scmap[0, 0])[0].tolist()
    expected = (kp[0, 0] - centers[i, j]) / 7.2801
    torch.testing.assert_close(t.locref[0, 0, :, i, j], expected)
    # Pairwise from part a to b (the first "other" part of a) at that cell.
    torch.testing.assert_close(t.pairwise[0, 0, 0, :, i, j], (kp[0, 1] - kp[0, 0]) / 10)
    assert t.pairwise_weight[0, 0, :, i, j].tolist() == [1.0, 1.0]


def test_targets_assign_overlapping_cells_to_the_nearest_person() -> None:
    kp = torch.tensor([[[20.0, 20.0]] * 3, [[30.0, 20.0]] * 3])
    ones = torch.ones(2, 3, dtype=torch.bool)
    heights = torch.tensor([340.0, 340.0])  # radius 17 px: the two joints' disks overlap
    t = make_targets(
        [kp], [ones], [ones], [heights], (6, 6), 8, 1.0, torch.zeros(3, 2, 2), torch.ones(3, 2, 2)
    )
    centers = cell_centers(6, 6, 8)
    for i, j in torch.nonzero(t.scmap[0, 0]).tolist():
        nearest = kp[:, 0][(kp[:, 0] - centers[i, j]).norm(dim=-1).argmin()]
        torch.testing.assert_close(t.locref[0, 0, :, i, j], nearest - centers[i, j])


def test_offset_statistics_mean_and_std() -> None:
    kp = torch.tensor(
        [[[0.0, 0.0], [10.0, 0.0], [0.0, 20.0]], [[0.0, 0.0], [30.0, 0.0], [0.0, 40.0]]]
    )
    mean, std = offset_statistics([kp], [torch.ones(2, 3, dtype=torch.bool)], 3)
    torch.testing.assert_close(mean[0, 0], torch.tensor([20.0, 0.0]))  # a → b
    torch.testing.assert_close(std[0, 0], torch.tensor([10.0, 1.0]))  # std clamped at 1 px


def test_augment_moves_keypoints_with_the_image_and_swaps_sides_on_flip() -> None:
    rng = np.random.default_rng(0)
    image = np.zeros((80, 100, 3), np.uint8)
    kp = np.array([[[20.0, 30.0], [50.0, 40.0], [70.0, 60.0]]], np.float32)
    image[30, 20] = (255, 0, 0)  # part a: red
    image[60, 70] = (0, 0, 255)  # part c: blue
    sample = PoseSample(
        image, kp, np.ones((1, 3), bool), np.ones((1, 3), bool), np.array([50.0], np.float32)
    )
    flips = 0
    for _ in range(12):
        out = augment(
            sample,
            rng,
            AugmentParams(scale=(0.9, 1.1), rotation_deg=20.0),
            TINY.flip_permutation(),
            (96, 96),
        )
        # Wherever part a went, the red dot went too (after a flip, "a" is the old blue dot).
        xa, ya = np.round(out.keypoints[0, 0]).astype(int)
        red, blue = out.image[ya - 1 : ya + 2, xa - 1 : xa + 2, [0, 2]].max(axis=(0, 1))
        flipped = blue > red
        flips += flipped
        assert max(red, blue) > 40
        # Heights scale like distances between joints (rotation and flip keep distances).
        scale = np.linalg.norm(out.keypoints[0, 0] - out.keypoints[0, 2]) / np.linalg.norm(
            kp[0, 0] - kp[0, 2]
        )
        assert out.heights[0] == pytest.approx(50.0 * scale, rel=1e-4)
    assert 0 < flips < 12


def test_short_training_run_lowers_the_loss(tmp_path) -> None:
    torch.set_num_threads(1)
    rng_image = np.random.default_rng(1)

    def source(rng: np.random.Generator) -> PoseSample:
        # Bright squares at the joints of one to two "people" on noise: learnable in a few steps.
        img = (rng_image.random((64, 64, 3)) * 60).astype(np.uint8)
        m = int(rng.integers(1, 3))
        kp = rng.uniform(8, 56, (m, 3, 2)).astype(np.float32)
        for person in kp:
            for part, (x, y) in enumerate(person.astype(int)):
                img[y - 2 : y + 3, x - 2 : x + 3, part] = 255
        ones = np.ones((m, 3), bool)
        return PoseSample(img, kp, ones, ones, np.full(m, 60.0, np.float32))

    config = LoopConfig(
        arch="resnet18",
        width=8,
        head_channels=16,
        input_hw=(64, 64),
        deploy_hw=(64, 64),
        batch_size=8,
        steps=40,
        lr=3e-3,
        warmup_steps=5,
        stats_samples=20,
        augment=AugmentParams(flip_prob=0.0),
    )
    log = tmp_path / "loss.jsonl"
    model = train(config, source, TINY, tmp_path / "m.pt", log_path=log, progress=False)
    losses = [json.loads(line)["total"] for line in log.read_text().splitlines()]
    assert len(losses) == 40
    assert np.mean(losses[-8:]) < 0.7 * np.mean(losses[:8])
    reloaded = load_model(tmp_path / "m.pt")
    assert reloaded.skeleton == TINY and reloaded.meta["steps"] == 40
    assert reloaded.input_hw == (64, 64)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.net(x).scmap, reloaded.net(x).scmap)


def test_mpii_flip_permutation_swaps_left_and_right() -> None:
    perm = MPII14.flip_permutation()
    for a, b in MPII14.flip_pairs:
        assert MPII14.parts[a].replace("right", "left") == MPII14.parts[b]
        assert perm[a] == b and perm[b] == a
    assert perm[12] == 12 and perm[13] == 13


def test_pairwise_fit_on_detector_output_separates_people() -> None:

    from deepercut.data.synthetic import generate_image
    from deepercut.data.synthetic_candidates import candidates_from_truth
    from deepercut.train.pairwise_fit import fit_pairwise_on_detector

    samples = [generate_image(seed, (192, 256), (2, 4), (60.0, 180.0)) for seed in range(24)]
    truth = {s.image.tobytes(): s for s in samples}
    rng = np.random.default_rng(0)

    def detector(images):  # a detector whose candidates are simulated from the ground truth
        out = []
        for image in images:
            s = truth[image.tobytes()]
            cands, _ = candidates_from_truth(rng, s.keypoints, s.visible, s.heights, (192, 256))
            out.append(cands)
        return out

    class FakeDetector:
        skeleton = MPII14
        detect = staticmethod(detector)

    model = fit_pairwise_on_detector(FakeDetector(), samples, progress=False)
    test = generate_image(999, (192, 256), 3, (80.0, 160.0))
    cands, owner = candidates_from_truth(
        rng, test.keypoints, test.visible, test.heights, (192, 256), false_positives=0
    )
    i, j = np.triu_indices(len(cands), 1)
    differ = cands.part[i] != cands.part[j]
    i, j = i[differ], j[differ]
    prob = model.pair_probability(cands, i, j)
    same = (owner[i] == owner[j]) & (owner[i] >= 0)
    assert same.any() and (~same).any()
    assert prob[same].mean() > 0.7 > 0.3 > prob[~same].mean()
