"""The one detector object: frames and images give the same candidates, any backend through the
Runner interface, other input sizes through ``resized``, the single-animal read-out."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_tensorrt import tiny_net

from deepercut.detection import NetworkDetector
from deepercut.model.io import Model
from deepercut.model.net import STRIDE, DetectorOutput
from deepercut.skeleton import MPII14
from deepercut.types import Frame

HW = (64, 96)


@pytest.fixture(scope="module")
def model() -> Model:
    net = tiny_net(num_parts=MPII14.num_parts)
    with torch.no_grad():
        net.scmap_head.bias.fill_(-0.5)  # an untrained net: raise scores so candidates exist
    return Model(net, MPII14, HW)


def _images(n: int, hw: tuple[int, int] = (48, 80)) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (*hw, 3), np.uint8) for _ in range(n)]


def test_frames_and_images_give_the_same_candidates(model: Model) -> None:
    detector = NetworkDetector(model, device="cpu", backend="eager")
    assert (detector.backend, detector.precision, detector.skeleton) == ("eager", "fp32", MPII14)
    images = _images(3)
    by_image = detector.detect(images)
    by_frame = detector([Frame(i, i / 25, im) for i, im in enumerate(images)])
    assert sum(len(c.xy) for c in by_image) > 0
    for a, b in zip(by_image, by_frame, strict=True):
        np.testing.assert_array_equal(a.xy, b.xy)
        np.testing.assert_array_equal(a.part, b.part)
    assert detector.detect([]) == [] and detector([]) == []
    with pytest.raises(ValueError, match="uint8"):
        detector.detect([np.zeros((48, 80, 3), np.float32)])


def test_resized_shares_an_any_size_backend_and_replaces_a_fixed_one(model: Model) -> None:
    eager = NetworkDetector(model, device="cpu", backend="eager")
    big = eager.resized((128, 192))
    assert big.runner is eager.runner and big.input_hw == (128, 192) and eager.input_hw == HW
    assert eager.resized(HW) is eager
    with pytest.raises(ValueError, match="multiple of 16"):
        eager.resized((100, 192))
    pytest.importorskip("onnxruntime")
    fixed = NetworkDetector(model, device="cpu", backend="onnxruntime", batch_size=2)
    assert fixed.backend == "onnxruntime"
    a, b = fixed.resized((128, 192)), fixed.resized((32, 48))
    assert (a.backend, b.backend) == ("eager", "eager") and a.runner is b.runner  # built once
    image = _images(1)
    for x, y in zip(a.detect(image), big.detect(image), strict=True):
        np.testing.assert_array_equal(x.part, y.part)
        np.testing.assert_allclose(x.xy, y.xy, atol=1e-4)


def test_best_per_part_reads_the_peak_of_a_given_forward(model: Model) -> None:
    h, w = HW[0] // STRIDE, HW[1] // STRIDE
    p = MPII14.num_parts

    def forward(images: torch.Tensor) -> DetectorOutput:
        b = images.shape[0]
        scmap = torch.full((b, p, h, w), -5.0)
        scmap[:, :, 3, 4] = 2.0  # every part peaks at cell (row 3, col 4)
        empty = torch.zeros(b, 0, h, w)
        return DetectorOutput(scmap, torch.zeros(b, 2 * p, h, w), empty, empty)

    detector = NetworkDetector(model, device="cpu", forward=forward)
    assert (detector.backend, detector.reason) == ("custom", "forward given")
    [best] = detector.best_per_part([np.zeros((*HW, 3), np.uint8)])  # no letterbox scaling
    assert best.shape == (1, p, 3)
    centre = [4 * STRIDE + STRIDE / 2, 3 * STRIDE + STRIDE / 2]  # cell (3, 4): x, y
    np.testing.assert_allclose(best[0, :, :2], [centre] * p)
    np.testing.assert_allclose(best[0, :, 2], 1 / (1 + np.exp(-2.0)), rtol=1e-6)
