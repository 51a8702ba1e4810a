"""Dynamic cropping: the crop box logic (first frame and loss fall back to the full frame,
widening, sizes and origins on the network's multiple of 16, exact mapping back), and the
engine on a synthetic single-person video, cropped against full-frame."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepercut.detection.dynamic_crop import (
    ALIGN,
    CropConfig,
    CropPolicy,
    DynamicCropDetector,
    Region,
)
from deepercut.types import Candidates, Frame

FRAME_HW = (480, 640)
VIDEO_HW = (240, 320)
VIDEO_FRAMES = 8
PARTS = 4


def candidates(xy: Sequence[Sequence[float]], score: float = 0.9) -> Candidates:
    """One candidate per part at ``xy`` (part i at xy[i])."""
    n = len(xy)
    return Candidates(
        xy=np.asarray(xy, np.float32).reshape(n, 2),
        part=np.arange(n, dtype=np.int64),
        score=np.full(n, score, np.float32),
        offsets=np.zeros((n, PARTS, 2), np.float32),
    )


def mouse_at(x: float, y: float) -> Candidates:
    """Four parts of an animal about 40 × 30 px at (x, y)."""
    return candidates([(x, y), (x - 10, y - 15), (x + 10, y - 15), (x + 30, y + 15)])


def test_first_frame_is_full_then_a_crop_holds_the_animal_with_its_margin() -> None:
    policy = CropPolicy(CropConfig(margin=32), PARTS)
    assert policy.region(FRAME_HW, 0) is None  # nothing seen yet
    policy.update(FRAME_HW, [(0, mouse_at(300, 200))], fell_back=False)
    region = policy.region(FRAME_HW, 1)
    assert region is not None
    assert region.side in CropConfig().sizes and region.side % ALIGN == 0
    assert (region.w, region.h) == (region.side, region.side)  # the network's scale
    assert region.x0 % ALIGN == 0 and region.y0 % ALIGN == 0
    # The animal's box (290..330 × 185..215) plus the margin lies inside the crop.
    assert region.x0 <= 290 - 32 and region.x0 + region.w >= 330 + 32
    assert region.y0 <= 185 - 32 and region.y0 + region.h >= 215 + 32
    # A frame of another size starts over on the full frame.
    assert policy.region((240, 320), 1) is None


def test_loss_falls_back_and_the_next_crop_widens() -> None:
    config = CropConfig(margin=32, sizes=(128, 192, 256, 320))
    policy = CropPolicy(config, PARTS)
    policy.update(FRAME_HW, [(0, mouse_at(300, 200))], fell_back=False)
    region = policy.region(FRAME_HW, 1)
    assert region is not None
    # Too few confident parts: lost. Two weak parts do not count.
    assert policy.lost(candidates([(300, 200)]), region, FRAME_HW)
    assert policy.lost(mouse_at(300, 200).select(np.array([0, 1])), region, FRAME_HW) is False
    weak = mouse_at(300, 200)
    weak.score[:] = 0.1
    assert policy.lost(weak, region, FRAME_HW)
    # A confident part at an inner crop edge: the animal may reach beyond the crop.
    edge = mouse_at(300, 200)
    edge.xy[3] = (region.x0 + region.w - 1, 200)
    assert policy.lost(edge, region, FRAME_HW)
    # After a fallback the margin doubles: a larger crop for the same animal.
    policy.update(FRAME_HW, [(1, mouse_at(300, 200))], fell_back=True)
    wider = policy.region(FRAME_HW, 2)
    assert wider is not None and wider.side > region.side
    # A call where no frame found the animal: the next frames are detected full.
    policy.update(FRAME_HW, [(2, Candidates.empty(PARTS))], fell_back=True)
    assert policy.region(FRAME_HW, 3) is None


def test_spurious_detections_elsewhere_do_not_stretch_the_crop() -> None:
    """Openfield's failure: a confident 3-part "animal" in an arena corner made the box span the
    frame, so no frame was ever cropped. Groups with too few parts, and beyond ``max_animals``
    the weaker groups, are not followed."""
    mouse = mouse_at(100, 100)
    corner = candidates([(600, 460), (590, 450), (620, 470)], score=0.5)  # parts 0-2, weaker
    both = Candidates(
        xy=np.concatenate([mouse.xy, corner.xy]),
        part=np.concatenate([mouse.part, corner.part]),
        score=np.concatenate([mouse.score, corner.score]),
        offsets=np.concatenate([mouse.offsets, corner.offsets]),
    )
    follow_one = CropPolicy(CropConfig(margin=32, max_animals=1), PARTS)
    assert follow_one.animals(both, FRAME_HW).tolist() == [True] * 4 + [False] * 3
    follow_one.update(FRAME_HW, [(0, both)], fell_back=False)
    region = follow_one.region(FRAME_HW, 1)
    assert region is not None and region.x0 + region.w < 400  # around the mouse only
    # Without a limit both groups are animals (each has >= half the parts): the box spans
    # the frame and the next frame is detected full.
    follow_all = CropPolicy(CropConfig(margin=32), PARTS)
    assert follow_all.animals(both, FRAME_HW).all()
    follow_all.update(FRAME_HW, [(0, both)], fell_back=False)
    assert follow_all.region(FRAME_HW, 1) is None
    # A lone confident part far away is no animal at all.
    stray = candidates([(600, 460)])
    lone = Candidates(
        xy=np.concatenate([mouse.xy, stray.xy]),
        part=np.concatenate([mouse.part, stray.part]),
        score=np.concatenate([mouse.score, stray.score]),
        offsets=np.concatenate([mouse.offsets, stray.offsets]),
    )
    assert follow_all.animals(lone, FRAME_HW).tolist() == [True] * 4 + [False]


def test_lost_means_no_animal_as_the_crop_follows_them() -> None:
    """``lost`` and the box agree: parts scattered over groups too small to be an animal are
    lost (though together they have enough parts), and a spurious detection at an inner crop
    edge beside a found animal is no fallback."""
    policy = CropPolicy(CropConfig(margin=32, link=0.1), PARTS)  # linked within 48 px
    policy.update(FRAME_HW, [(0, mouse_at(300, 200))], fell_back=False)
    region = policy.region(FRAME_HW, 1)
    assert region is not None and region.side == 128
    x0, y0 = region.x0, region.y0
    # Parts 0 and 1, 90 px apart, clear of the edges: two one-part groups.
    scattered = candidates([(x0 + 10, y0 + 10), (x0 + 10, y0 + 100)])
    assert not policy.animals(scattered, FRAME_HW).any()
    assert policy.lost(scattered, region, FRAME_HW)
    # The mouse (x0 + 30 .. x0 + 70) and a lone confident part at the inner right edge.
    mouse = mouse_at(x0 + 40, y0 + 64)
    stray = candidates([(x0 + region.w - 1, y0 + 64)])
    both = Candidates(
        xy=np.concatenate([mouse.xy, stray.xy]),
        part=np.concatenate([mouse.part, stray.part]),
        score=np.concatenate([mouse.score, stray.score]),
        offsets=np.concatenate([mouse.offsets, stray.offsets]),
    )
    assert policy.animals(both, FRAME_HW).tolist() == [True] * 4 + [False]
    assert not policy.lost(both, region, FRAME_HW)


def test_frame_edges_are_not_inner_edges() -> None:
    policy = CropPolicy(CropConfig(margin=8), PARTS)
    policy.update(FRAME_HW, [(0, mouse_at(15, 20))], fell_back=False)
    region = policy.region(FRAME_HW, 1)
    assert region is not None and (region.x0, region.y0) == (0, 0)
    assert not policy.lost(mouse_at(15, 20), region, FRAME_HW)


def test_motion_grows_the_crop_with_the_frames_elapsed() -> None:
    policy = CropPolicy(CropConfig(margin=8, sizes=tuple(range(64, 481, 16))), PARTS)
    moving = [(i, mouse_at(200 + 6 * i, 200)) for i in range(4)]  # 6 px per frame
    policy.update(FRAME_HW, moving, fell_back=False)
    assert policy.speed == pytest.approx(6.0)
    near, far = policy.region(FRAME_HW, 4), policy.region(FRAME_HW, 12)
    assert near is not None and far is not None
    # The box (40 px + 18 px of travel) + 2·(margin + speed·frames ahead) + alignment.
    assert near.side == 112  # 58 + 2·(8 + 6·1) + 16 = 102
    assert far.side == 208  # 58 + 2·(8 + 6·9) + 16 = 198
    # An animal that needs more than the largest size (or most of the frame): full frame.
    policy.update(FRAME_HW, [(20, candidates([(10, 10), (600, 400)]))], fell_back=False)
    assert policy.region(FRAME_HW, 21) is None


@settings(max_examples=200, deadline=None)
@given(
    x=st.floats(0, 639),
    y=st.floats(0, 479),
    w=st.floats(0, 200),
    h=st.floats(0, 200),
    margin=st.integers(0, 64),
    speed=st.floats(0, 10),
    ahead=st.integers(1, 8),
)
def test_region_is_aligned_inside_the_frame_and_holds_the_grown_box(
    x: float, y: float, w: float, h: float, margin: int, speed: float, ahead: int
) -> None:
    config = CropConfig(margin=margin, sizes=(128, 192, 256, 384), max_area=1.0)
    policy = CropPolicy(config, 2)
    x1, y1 = min(x + w, 639.0), min(y + h, 479.0)
    policy.update(FRAME_HW, [(0, candidates([(x, y), (x1, y1)]))], fell_back=False)
    policy.speed = speed
    region = policy.region(FRAME_HW, ahead)
    grow = margin + speed * ahead
    if region is None:  # only when the grown box needs more than the largest size
        assert max(x1 - x, y1 - y) + 2 * grow + ALIGN > 384
        return
    assert region.side in config.sizes and region.w == region.h == region.side
    assert 0 <= region.x0 and region.x0 + region.w <= 640
    assert 0 <= region.y0 and region.y0 + region.h <= 480
    # Aligned to 16 unless pushed against the far frame edge (640 - side, 480 - side).
    assert region.x0 % ALIGN == 0 or region.x0 == 640 - region.w
    assert region.y0 % ALIGN == 0 or region.y0 == 480 - region.h
    # The grown box lies in the crop as far as it lies in the frame.
    assert region.x0 <= max(0.0, x - grow) + 1e-6
    assert region.x0 + region.w >= min(640.0, x1 + grow) - 1e-6
    assert region.y0 <= max(0.0, y - grow) + 1e-6
    assert region.y0 + region.h >= min(480.0, y1 + grow) - 1e-6


class BlobDetector:
    """A real image detector for the tests: part ``p`` is the centroid of the pixels of colour
    ``COLOURS[p]``, to sub-pixel precision (so mapping errors show), with score 1."""

    COLOURS = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)], np.int16)

    def __init__(self) -> None:
        self.shapes: list[tuple[int, int]] = []

    def __call__(self, frames: Sequence[Frame]) -> list[Candidates]:
        out = []
        for frame in frames:
            self.shapes.append(frame.image.shape[:2])
            xy, parts = [], []
            for p, colour in enumerate(self.COLOURS):
                ys, xs = np.nonzero(np.abs(frame.image - colour).sum(-1) < 60)
                if len(xs):
                    xy.append((xs.mean(), ys.mean()))
                    parts.append(p)
            n = len(xy)
            out.append(
                Candidates(
                    np.asarray(xy, np.float32).reshape(n, 2),
                    np.asarray(parts, np.int64),
                    np.ones(n, np.float32),
                    np.zeros((n, PARTS, 2), np.float32),
                )
            )
        return out


def blob_frame(index: int, x: float, y: float, parts: int = PARTS) -> Frame:
    """A grey frame with the animal's coloured discs (radius 5) around (x, y)."""
    image = np.full((*FRAME_HW, 3), 90, np.uint8)
    yy, xx = np.mgrid[: FRAME_HW[0], : FRAME_HW[1]]
    for p, (dx, dy) in enumerate([(0, 0), (-10, -15), (10, -15), (30, 15)][:parts]):
        disc = (xx - (x + dx)) ** 2 + (yy - (y + dy)) ** 2 <= 25
        image[disc] = BlobDetector.COLOURS[p]
    return Frame(index, index / 25, image)


def test_cropped_candidates_map_back_exactly_and_batches_fall_back_per_frame() -> None:
    blobs = BlobDetector()
    detector = DynamicCropDetector(blobs, lambda hw: blobs, CropConfig(margin=24), PARTS)
    path = [(100 + 3.3 * i, 150 + 2.1 * i) for i in range(12)]
    frames = [blob_frame(i, x, y) for i, (x, y) in enumerate(path)]
    full = blobs(frames)
    got = detector(frames[:4]) + detector(frames[4:8])
    assert detector.stats.full == 4 and detector.stats.cropped == 4  # batch 1: nothing known
    assert blobs.shapes[-1] != FRAME_HW and blobs.shapes[-1][0] % ALIGN == 0
    for a, b in zip(got, full[:8], strict=True):
        np.testing.assert_array_equal(a.part, b.part)
        np.testing.assert_allclose(a.xy, b.xy, atol=1e-4)  # integer shift: exact
    # One frame of the next batch loses two parts (occluded): it alone goes full-frame.
    frames[9] = blob_frame(9, *path[9], parts=1)
    got = detector(frames[8:12])
    stats = detector.stats
    assert (stats.cropped, stats.full, stats.fallbacks) == (7, 5, 1)
    assert blobs.shapes[-1] == FRAME_HW  # the fallback ran on the whole frame
    assert len(got[1]) == 1 and len(got[2]) == PARTS
    # The animal jumps away: every frame of the batch falls back, and the margin widens.
    jump = [blob_frame(12 + i, 500, 400) for i in range(2)]
    got = detector(jump)
    assert detector.stats.fallbacks == 3 and detector.policy.widen == 4  # 2 after batch 3
    np.testing.assert_allclose(got[0].xy, blobs(jump[:1])[0].xy, atol=1e-4)
    assert detector.reset().cropped == 0 and detector.policy.box is None


def test_groups_of_one_follow_the_animal_frame_by_frame_with_smaller_crops() -> None:
    """``group=1`` crops each frame of a call around the frame before: the first call is
    cropped after its first frame, and the motion allowance covers one frame, not the call's
    frames ahead, so the crops are smaller; the candidates are the same."""
    path = [(100 + 3.3 * i, 150 + 2.1 * i) for i in range(8)]
    frames = [blob_frame(i, x, y) for i, (x, y) in enumerate(path)]
    sides = {}
    for group in (None, 1):
        blobs = BlobDetector()
        config = CropConfig(margin=24, group=group)
        detector = DynamicCropDetector(blobs, lambda hw, b=blobs: b, config, PARTS)
        got = detector(frames[:4]) + detector(frames[4:])
        for a, b in zip(got, BlobDetector()(frames), strict=True):
            np.testing.assert_allclose(a.xy, b.xy, atol=1e-4)
        stats = detector.stats
        if group == 1:
            assert (stats.full, stats.cropped) == (1, 7)
            assert len(blobs.shapes) == 8  # one frame per network call
        else:
            assert (stats.full, stats.cropped) == (4, 4)
        sides[group] = max(h for h, _ in blobs.shapes if h != FRAME_HW[0])
    assert sides[1] < sides[None]
    with pytest.raises(ValueError, match="group"):
        CropConfig(group=0)


def test_refresh_detects_every_nth_frame_full() -> None:
    blobs = BlobDetector()
    detector = DynamicCropDetector(blobs, lambda hw: blobs, CropConfig(refresh=4), PARTS)
    frames = [blob_frame(i, 300, 200) for i in range(9)]
    for frame in frames:
        detector([frame])
    # Frames 0, 4, 8 are full; the rest cropped.
    assert (detector.stats.full, detector.stats.cropped) == (3, 6)


def test_region_cut_and_mapping_are_inverse() -> None:
    region = Region(32, 48, 128, 128, 128)
    image = np.arange(480 * 640 * 3, dtype=np.int64).reshape(480, 640, 3)
    crop = region.cut(image)
    assert crop.shape == (128, 128, 3) and crop[0, 0, 0] == image[48, 32, 0]
    inside = candidates([(5.25, 7.5)])
    assert region.to_frame(inside).xy.tolist() == [[37.25, 55.5]]


def test_config_rejects_sizes_off_the_network_multiple() -> None:
    with pytest.raises(ValueError, match="multiples of 16"):
        CropConfig(sizes=(120,))
    with pytest.raises(ValueError, match="increasing"):
        CropConfig(sizes=(256, 128))
    with pytest.raises(ValueError, match="margin"):
        CropConfig(margin=-1)


# ------------------------------------------------------------------ the engine, real network


@pytest.fixture(scope="module")
def person_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic 240×320 H.264 video of one walking person (about 90 px tall)."""
    from deepercut.data.synthetic import generate_video, write_video

    path = tmp_path_factory.mktemp("crop") / "one_person.mp4"
    write_video(path, generate_video(3, VIDEO_HW, 1, VIDEO_FRAMES, 25.0, (85.0, 95.0)), 25.0)
    return path


def test_engine_cropped_poses_and_candidates_agree_with_full_frame(person_video: Path) -> None:
    """The bundled network on crops finds what it finds on the full frame: confident
    candidates within a few pixels, and the same person's keypoints."""
    from deepercut.detection import NetworkDetector
    from deepercut.engine.pipeline import Engine
    from deepercut.sources import open_source

    options = {"backend": "eager", "device": "cpu", "workers": 0, "batch_size": 4}
    options["input_hw"] = VIDEO_HW  # the network at the frames' own scale
    config = CropConfig(margin=24, sizes=(128, 160, 192))
    with Engine(None, **options) as full, Engine(None, dynamic_crop=config, **options) as crop:
        full_poses = list(full.run(str(person_video)))
        crop_poses = list(crop.run(str(person_video)))
        stats = crop.stats
        assert stats.crop is not None and crop.stats.to_dict()["crop"]["cropped"] > 0
        assert stats.crop.cropped + stats.crop.full == VIDEO_FRAMES and stats.crop.full >= 1
        assert "dynamic crop" in stats.summary()
        # The detector's own candidates, frame by frame, against the full-frame network.
        with open_source(str(person_video)) as source:
            frames = list(source)
        detector = crop.detector
        assert isinstance(detector, DynamicCropDetector)
        detector.reset()
        network = full.detector
        assert isinstance(network, NetworkDetector)
        for start in range(0, VIDEO_FRAMES, 4):
            batch = frames[start : start + 4]
            for a, b in zip(detector(batch), network(batch), strict=True):
                strong = b.score >= 0.6
                for xy, part in zip(b.xy[strong], b.part[strong], strict=True):
                    same = a.xy[a.part == part]
                    assert len(same), f"part {part} lost in the crop"
                    assert np.linalg.norm(same - xy, axis=1).min() < 3.0
    assert [p.frame for p in crop_poses] == [p.frame for p in full_poses]
    for a, b in zip(crop_poses, full_poses, strict=True):
        assert a.num_people == b.num_people == 1
        ka, kb = a.keypoints[0], b.keypoints[0]
        both = np.isfinite(ka[:, 0]) & np.isfinite(kb[:, 0]) & (kb[:, 2] >= 0.6)
        assert both.sum() >= 8
        assert np.median(np.linalg.norm(ka[both, :2] - kb[both, :2], axis=1)) < 2.0
