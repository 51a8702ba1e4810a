"""DeepLabCut pixel error: matching, per-part mean/median, the likelihood cut-off, read-out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepercut.evaluate.dlc import match_animals, pixel_errors, predict_best_per_part

PARTS = ("snout", "leftear", "rightear", "tailbase")


def _truth(xy, vis=None):
    xy = np.asarray(xy, np.float32)
    vis = np.full(xy.shape[:2], 2, np.float32) if vis is None else np.asarray(vis, np.float32)
    return np.concatenate([xy, vis[..., None]], axis=-1)


def test_single_animal_errors_with_and_without_cutoff():
    truth = [_truth([[[0, 0], [10, 0], [0, 10], [50, 50]]]),
             _truth([[[0, 0], [10, 0], [0, 10], [50, 50]]], [[2, 0, 2, 2]])]  # fmt: skip
    pred = [
        np.array([[[3, 4, 0.9], [10, 1, 0.3], [0, 10, 0.5], [50, 56, 0.1]]], np.float32),
        np.array([[[0, 1, 0.9], [99, 99, 0.9], [0, 12, 0.9], [50, 50, 0.9]]], np.float32),
    ]
    errors = pixel_errors(pred, truth, PARTS)
    plain = errors.summary()
    assert plain["snout"] == {"mean": 3.0, "median": 3.0, "n": 2}
    # The unlabelled left ear of image 2 does not count, however wrong the prediction.
    assert plain["leftear"] == {"mean": 1.0, "median": 1.0, "n": 1}
    assert plain["tailbase"]["mean"] == 3.0
    assert plain["all"]["n"] == 7
    assert plain["all"]["mean"] == pytest.approx((5 + 1 + 0 + 6 + 1 + 2 + 0) / 7)
    cut = errors.summary(0.4)
    assert cut["leftear"]["n"] == 0 and np.isnan(cut["leftear"]["mean"])
    assert cut["tailbase"] == {"mean": 0.0, "median": 0.0, "n": 1}
    assert cut["all"]["n"] == 5
    assert errors.missed == 0
    d = errors.to_dict()
    assert d["pcutoff"] == 0.4 and d["with_cutoff"]["all"]["n"] == 5
    assert "rightear" in errors.table()


def test_multi_animal_matching_and_missed():
    a = [[0, 0], [1, 0], [0, 1], [5, 5]]
    b = [[100, 100], [101, 100], [100, 101], [105, 105]]
    truth = _truth([a, b])
    pred = np.array([np.c_[np.asarray(b) + 1, np.ones(4)], np.c_[a, np.ones(4)]], np.float32)
    assert sorted(match_animals(pred, truth)) == [(0, 1), (1, 0)]
    errors = pixel_errors([pred], [truth], PARTS)
    np.testing.assert_allclose(errors.distance, [[0] * 4, [np.sqrt(2)] * 4])
    # One predicted animal for two labelled: the other's 4 keypoints are missed; an absent
    # (NaN) part of the matched one is missed too.
    one = pred[1:].copy()
    one[0, 2] = np.nan
    errors = pixel_errors([one], [truth], PARTS)
    assert errors.missed == 4 + 1
    assert errors.summary()["all"]["n"] == 3


def test_pixel_errors_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="2 predictions for 1 images"):
        pixel_errors([np.zeros((1, 4, 3))] * 2, [np.zeros((1, 4, 3))], PARTS)


def test_predict_best_per_part_reads_out_peak_in_image_pixels():
    """The best cell's centre plus its locref, mapped back through the letterbox."""
    from deepercut.detection import NetworkDetector
    from deepercut.model.io import Model
    from deepercut.model.net import STRIDE, DeeperCut, DetectorConfig, DetectorOutput
    from deepercut.skeleton import Skeleton

    skeleton = Skeleton("four", PARTS, (), ((0, 1, 2, 3),))
    net = DeeperCut(DetectorConfig(arch="resnet18", num_parts=4, width=8, head_channels=8))
    model = Model(net.eval(), skeleton, (64, 96))
    h, w = 64 // STRIDE, 96 // STRIDE
    peaks = [(1, 2), (3, 4), (5, 6), (7, 11)]  # (row, col) per part

    def forward(images: torch.Tensor) -> DetectorOutput:
        b = images.shape[0]
        scmap = torch.full((b, 4, h, w), -5.0)
        locref = torch.zeros(b, 4, 2, h, w)
        for p, (r, c) in enumerate(peaks):
            scmap[:, p, r, c] = 2.0
            locref[:, p, 0, r, c] = 1.5 / net.config.locref_std  # +1.5 px in x
        return DetectorOutput(scmap, locref.view(b, 8, h, w), torch.zeros(b, 0, h, w),
                              torch.zeros(b, 4, h // 2, w // 2))  # fmt: skip

    # A 32×48 image is letterboxed ×2 into 64×96: image px = input px / 2.
    detector = NetworkDetector(model, device="cpu", forward=forward)
    out = predict_best_per_part(detector, [np.zeros((32, 48, 3), np.uint8)])
    assert len(out) == 1 and out[0].shape == (1, 4, 3)
    # The refined input position (cell centre + 1.5 px in x), through the letterbox's inverse.
    from deepercut.model.candidates import cell_centers
    from deepercut.model.letterbox import letterbox_params

    box = letterbox_params((32, 48), (64, 96))
    centres = cell_centers(h, w, STRIDE).numpy()
    for p, (r, c) in enumerate(peaks):
        expected = box.to_image(centres[r, c].astype(np.float64) + np.array([1.5, 0.0]))
        np.testing.assert_allclose(out[0][0, p, :2], expected, atol=1e-4)
        assert out[0][0, p, 2] == pytest.approx(float(torch.sigmoid(torch.tensor(2.0))))
