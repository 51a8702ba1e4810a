"""The COCO evaluation path judged with a perfect detector: a network forward that emits exactly
the maps training asks for (scoremaps, location refinement, pairwise offsets) at the ground
truth's own joints, run through everything ``deepercut eval --data x.json`` runs (letterbox in
and back, candidate extraction, a solver, COCO's 17 keypoints from the model's 14 parts,
COCOeval). It must score an OKS AP of 1 on the body; the same detector with its left and right
channels swapped, or its joints shifted, must not.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from deepercut.data.synthetic import write_png
from deepercut.detection import NetworkDetector
from deepercut.evaluate.report import evaluate_coco
from deepercut.model.io import Model, load_model
from deepercut.model.letterbox import letterbox_params
from deepercut.model.net import STRIDE, DetectorOutput
from deepercut.skeleton import COCO_PARTS, MPII14
from deepercut.train.targets import make_targets

pytest.importorskip("pycocotools", reason="COCO evaluation needs pycocotools (the eval extra)")

INPUT_HW = (240, 320)
#: A person facing the camera, (x, y) in units of their height from the top of the head: their
#: right side (COCO's and LSP's "right") on the image's left.
STANDING = {
    "head_top": (0.0, 0.0),
    "nose": (0.0, 0.1),
    "left_eye": (0.03, 0.08),
    "right_eye": (-0.03, 0.08),
    "left_ear": (0.06, 0.09),
    "right_ear": (-0.06, 0.09),
    "neck": (0.0, 0.17),
    "left_shoulder": (0.12, 0.2),
    "right_shoulder": (-0.12, 0.2),
    "left_elbow": (0.17, 0.37),
    "right_elbow": (-0.16, 0.36),
    "left_wrist": (0.2, 0.52),
    "right_wrist": (-0.15, 0.5),
    "left_hip": (0.08, 0.53),
    "right_hip": (-0.08, 0.53),
    "left_knee": (0.09, 0.74),
    "right_knee": (-0.1, 0.75),
    "left_ankle": (0.1, 0.96),
    "right_ankle": (-0.11, 0.95),
}
#: Per image: its size (H, W) and its people as (x of the head top, y of the head top, height):
#: three letterboxes (a 2× enlargement, a portrait image padded left and right, a wide one padded
#: above and below; every image shape but the first is scaled by a non-integer factor).
IMAGES = [
    ((120, 160), [(45.0, 10.0, 100.0), (115.0, 20.0, 90.0)]),
    ((200, 130), [(65.0, 30.0, 150.0)]),
    ((150, 330), [(60.0, 15.0, 120.0), (170.0, 30.0, 110.0), (260.0, 20.0, 125.0)]),
]


def _joints(x: float, y: float, height: float) -> dict[str, np.ndarray]:
    return {n: np.array([x + u * height, y + v * height]) for n, (u, v) in STANDING.items()}


def _write_set(root: Path) -> tuple[Path, Path]:
    """The images (each a flat grey whose level encodes its index) and their COCO keypoints."""
    (root / "images").mkdir(parents=True)
    images, anns = [], []
    for i, ((h, w), people) in enumerate(IMAGES):
        write_png(root / "images" / f"{i}.png", np.full((h, w, 3), 40 * (i + 1), np.uint8))
        images.append({"id": 100 + i, "file_name": f"{i}.png", "height": h, "width": w})
        for x, y, height in people:
            joints = _joints(x, y, height)
            kp = [(*joints[n], 2) for n in COCO_PARTS]
            xy = np.array([k[:2] for k in kp])
            (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": 100 + i,
                    "category_id": 1,
                    "iscrowd": 0,
                    "keypoints": np.ravel(kp).tolist(),
                    "num_keypoints": len(COCO_PARTS),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": 0.5 * (x1 - x0) * (y1 - y0),  # about a person's segment
                }
            )
    category = {"id": 1, "name": "person", "keypoints": list(COCO_PARTS)}
    path = root / "person_keypoints.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [category]}))
    return path, root / "images"


def _perfect_forward(model: Model, swap_sides: bool = False, shift: float = 0.0):
    """A network that outputs the training targets of each image's people (scoremap logits ±6),
    in input pixels; ``swap_sides`` puts each left part in its right part's channel and vice
    versa, ``shift`` moves every joint right by that fraction of the person's height."""
    net = model.net
    perm = MPII14.flip_permutation() if swap_sides else list(range(MPII14.num_parts))

    def forward(images: torch.Tensor) -> DetectorOutput:
        h, w = images.shape[2] // STRIDE, images.shape[3] // STRIDE
        kps, heights = [], []
        for image in images:
            # Each image's grey level says which one it is (the centre is never padding).
            i = round(float(image[0, images.shape[2] // 2, images.shape[3] // 2]) * 255 / 40) - 1
            (ih, iw), people = IMAGES[i]
            box = letterbox_params((ih, iw), tuple(images.shape[2:]))
            people_kp = []
            for x, y, height in people:
                joints = _joints(x + shift * height, y, height)
                xy = np.array([joints[MPII14.parts[perm[j]]] for j in range(MPII14.num_parts)])
                people_kp.append(box.to_input(xy))
            kps.append(torch.tensor(np.array(people_kp), dtype=torch.float32))
            heights.append(torch.tensor([p[2] * box.scale for p in people], dtype=torch.float32))
        known = [torch.ones(k.shape[:2], dtype=torch.bool) for k in kps]
        targets = make_targets(
            kps,
            known,
            known,
            heights,
            (h, w),
            STRIDE,
            net.config.locref_std,
            net.pairwise_mean,
            net.pairwise_std,
        )
        b, p = images.shape[0], MPII14.num_parts
        return DetectorOutput(
            targets.scmap * 12 - 6,
            targets.locref.reshape(b, 2 * p, h, w),
            targets.pairwise.reshape(b, -1, h, w),
            torch.zeros(b, p, h // 2, w // 2),
        )

    return forward


@pytest.fixture(scope="module")
def model() -> Model:
    return load_model()


@pytest.mark.parametrize("method", ["3stage", "heuristic"])
def test_a_perfect_detector_scores_ap_1_on_the_body(
    tmp_path: Path, model: Model, method: str
) -> None:
    ann, images = _write_set(tmp_path)
    detector = NetworkDetector(
        model, input_hw=INPUT_HW, device="cpu", forward=_perfect_forward(model)
    )
    ev = evaluate_coco(model, detector, ann, images, (method,), batch_size=2)
    res = ev.solvers[method]
    people = sum(len(p) for _, p in IMAGES)
    assert len(res.results) == people
    # Every body keypoint where it belongs: OKS 1 on the body, AP 1.
    np.testing.assert_allclose(res.body_only.best_oks, 1.0, atol=1e-3)
    assert res.body_only.stats["AP"] == pytest.approx(1.0)
    assert res.body_only.stats["AR"] == pytest.approx(1.0)
    # With the face labelled, 5 of 17 keypoints are misses for a 14-part model: OKS 12/17.
    np.testing.assert_allclose(res.standard.best_oks, 12 / 17, atol=1e-3)
    assert res.standard.stats["AP50"] == pytest.approx(1.0)
    assert res.standard.stats["AP75"] == 0.0


def test_swapped_sides_and_shifted_joints_score_low(tmp_path: Path, model: Model) -> None:
    ann, images = _write_set(tmp_path)
    for forward, most in (
        (_perfect_forward(model, swap_sides=True), 0.0),
        (_perfect_forward(model, shift=0.1), 0.2),
    ):
        detector = NetworkDetector(model, input_hw=INPUT_HW, device="cpu", forward=forward)
        res = evaluate_coco(model, detector, ann, images, ("3stage",), batch_size=2)
        body = res.solvers["3stage"].body_only
        assert len(res.solvers["3stage"].results) == sum(len(p) for _, p in IMAGES)
        assert body.stats["AP"] <= most and (body.best_oks < 0.6).all()
