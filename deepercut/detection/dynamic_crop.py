"""Dynamic cropping (DeepLabCut-Live's idea): detect in a crop around the animals found in the
previous frames instead of the whole frame, for single- and few-animal video.

A :class:`DynamicCropDetector` wraps a full-frame detector and a factory of crop detectors, one
per crop size. It keeps a box around the confident candidates of the frames it detected last
and, for the next frames, cuts a square crop around it:

- the box grows by ``margin`` and by how far the animals can move until the new frames (their
  measured speed in pixels per frame times the frames elapsed), and the crop side is the
  smallest of a few fixed ``sizes`` (network-input pixels, multiples of 16) that holds it, so a
  compiled / ONNX Runtime backend is built once per size, never per frame; the crop's origin is
  aligned to 16 pixels so its network grid falls on the full frame's;
- a frame whose crop lost the animals (no group of confident candidates with ``min_parts``
  parts: the same test the box follows) or whose animals touch an inner crop edge is
  detected again on the full frame (a *fallback*), and the next crop's margin doubles
  (*widening*, up to ``max_widen``) until a batch passes without fallbacks;
- the first frame, a frame after the animals were lost, a frame size change and every
  ``refresh``-th frame (to catch animals that entered elsewhere) are detected full-frame.

Batches: the frames of one detector call are cropped in groups of ``group`` frames (default:
the whole call), one after the other; the frames of a group share one crop, chosen from what
the group before found (the union of its frames' boxes, grown by the motion allowance for the
frames ahead), so the network runs one batched call per group; each frame is then checked on
its own and only lost frames are detected again. Groups of one follow the animal frame by
frame with the smallest crops (the motion allowance covers one frame, not a batch): the
engine's choice on the CPU, where a batch costs about as much as its frames one by one. In
file mode batches are fixed, so runs are reproducible; in live mode a call holds the newest
frames (usually one) and dropped frames count in the elapsed frames of the motion allowance.

Candidates are mapped back to frame pixels exactly: the crop detector maps them to crop pixels
and the crop's integer origin is added.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from deepercut.model.letterbox import letterbox_params
from deepercut.types import Candidates, Frame

#: A frames → candidates callable (the engine's detector).
Detect = Callable[[Sequence[Frame]], list[Candidates]]

#: Network inputs are multiples of this; crop sides and origins are aligned to it.
ALIGN = 16


@dataclass(frozen=True)
class CropConfig:
    """Settings of dynamic cropping.

    Attributes:
        margin: pixels (frame) added around the animals' box on every side.
        sizes: square crop sides in network-input pixels (multiples of 16), smallest first; a
            box that needs more than the largest is detected full-frame.
        min_score: a candidate at least this probable is confident.
        min_parts: confident parts a crop must keep for its frame to count as found; default
            half the skeleton's parts (at least 1).
        edge: confident candidates closer than this to an inner crop edge (one that is not a
            frame edge) mean the animal may reach beyond the crop: the frame falls back.
        max_widen: the largest factor the margin grows to after fallbacks.
        max_area: a crop covering more than this fraction of the frame is not worth it: the
            frame is detected full.
        refresh: detect every ``refresh``-th frame (by index) full-frame; 0 = never.
        link: confident candidates closer than this fraction of the frame's shorter side are
            one animal (single linkage); a group with fewer than ``min_parts`` parts is not
            an animal (a spurious detection elsewhere must not stretch the crop).
        max_animals: follow at most this many animals, the highest-scoring groups (``None``:
            all; the engine passes its ``max_people``).
        group: frames cropped together (one network call, one crop); ``None``: a detector
            call's frames all at once (the engine: 1 on the CPU, its batch size elsewhere).
    """

    margin: int = 32
    sizes: tuple[int, ...] = (128, 192, 256, 320, 384)
    min_score: float = 0.4
    min_parts: int | None = None
    edge: float = 4.0
    max_widen: int = 4
    max_area: float = 0.6
    refresh: int = 0
    link: float = 0.35
    max_animals: int | None = None
    group: int | None = None

    def __post_init__(self) -> None:
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")
        if not self.sizes or any(s <= 0 or s % ALIGN for s in self.sizes):
            raise ValueError(f"crop sizes must be positive multiples of {ALIGN}, got {self.sizes}")
        if list(self.sizes) != sorted(set(self.sizes)):
            raise ValueError(f"crop sizes must be increasing, got {self.sizes}")
        if self.min_parts is not None and self.min_parts < 1:
            raise ValueError(f"min_parts must be >= 1, got {self.min_parts}")
        if self.max_widen < 1 or not 0 < self.max_area <= 1 or self.refresh < 0:
            raise ValueError("need max_widen >= 1, 0 < max_area <= 1 and refresh >= 0")
        if not 0 < self.link <= 1 or (self.max_animals is not None and self.max_animals < 1):
            raise ValueError("need 0 < link <= 1 and max_animals >= 1 (or None)")
        if self.group is not None and self.group < 1:
            raise ValueError(f"group must be >= 1 (or None), got {self.group}")

    def parts_needed(self, num_parts: int) -> int:
        """Confident parts a frame needs to count as found."""
        return self.min_parts or max(1, num_parts // 2)


@dataclass
class CropStats:
    """What dynamic cropping did in a run.

    Attributes:
        cropped: frames whose candidates came from a crop.
        full: frames detected on the full frame (first frames, lost animals, refreshes and
            fallbacks).
        fallbacks: frames detected in a crop first, then again full-frame (animal lost in the
            crop or touching its edge); included in ``full``.
        sizes: cropped frames per crop side.
    """

    cropped: int = 0
    full: int = 0
    fallbacks: int = 0
    sizes: Counter[int] = field(default_factory=Counter)

    def summary(self) -> str:
        sizes = ", ".join(f"{s}px {n}" for s, n in sorted(self.sizes.items())) or "none"
        return (
            f"dynamic crop: {self.cropped} frames cropped ({sizes}), {self.full} full "
            f"({self.fallbacks} fallbacks)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "cropped": self.cropped,
            "full": self.full,
            "fallbacks": self.fallbacks,
            "sizes": {str(s): n for s, n in sorted(self.sizes.items())},
        }


@dataclass(frozen=True)
class Region:
    """A crop: frame pixels ``[x0, x0 + w) × [y0, y0 + h)`` detected at network size ``side``."""

    x0: int
    y0: int
    w: int
    h: int
    side: int

    def cut(self, image: np.ndarray) -> np.ndarray:
        return image[self.y0 : self.y0 + self.h, self.x0 : self.x0 + self.w]

    def to_frame(self, candidates: Candidates) -> Candidates:
        """Candidates in crop pixels → frame pixels (a translation: offsets are unchanged)."""
        shift = np.array([self.x0, self.y0], np.float32)
        return Candidates(
            candidates.xy + shift, candidates.part, candidates.score, candidates.offsets
        )

    def touches_inner_edge(self, xy: np.ndarray, frame_hw: tuple[int, int], edge: float) -> bool:
        """Whether a point lies within ``edge`` pixels of a crop edge inside the frame."""
        if not len(xy):
            return False
        fh, fw = frame_hw
        x, y = xy[:, 0], xy[:, 1]
        # Pixel centres are at integers: the crop spans [x0 - 0.5, x0 + w - 0.5].
        near = np.zeros(len(xy), bool)
        if self.x0 > 0:
            near |= x - (self.x0 - 0.5) < edge
        if self.y0 > 0:
            near |= y - (self.y0 - 0.5) < edge
        if self.x0 + self.w < fw:
            near |= (self.x0 + self.w - 0.5) - x < edge
        if self.y0 + self.h < fh:
            near |= (self.y0 + self.h - 0.5) - y < edge
        return bool(near.any())


class CropPolicy:
    """The box logic of dynamic cropping, without any network: where to crop the next frames,
    whether a frame's crop lost the animals, and what the found candidates teach for the next
    crop. See the module docstring.

    Args:
        config: the settings.
        num_parts: the skeleton's parts.
        input_hw: the full-frame detector's network input, which frames are letterboxed into;
            crops are detected at the same scale. ``None``: at the frame's own scale.
    """

    def __init__(
        self, config: CropConfig, num_parts: int, input_hw: tuple[int, int] | None = None
    ) -> None:
        self.config = config
        self.parts_needed = config.parts_needed(num_parts)
        self.input_hw = input_hw
        self.reset()

    def reset(self) -> None:
        """Forget the animals (a new stream): the next frame is detected full-frame."""
        self.box: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1 (frame px)
        self.last_index = 0
        self.speed = 0.0  # px per frame
        self.widen = 1
        # The last frame that found the animals: (index, confident xy, their parts).
        self._last: tuple[int, np.ndarray, np.ndarray] | None = None
        self.frame_hw: tuple[int, int] | None = None

    def region(self, frame_hw: tuple[int, int], next_index: int) -> Region | None:
        """The crop for frames up to ``next_index`` of size ``frame_hw``, or ``None`` for the
        full frame (nothing found yet, a new frame size, or a box too large)."""
        if self.box is None or frame_hw != self.frame_hw:
            return None
        fh, fw = frame_hw
        x0, y0, x1, y1 = self.box
        grow = self.config.margin * self.widen + self.speed * max(1, next_index - self.last_index)
        # Frame px; ALIGN: the aligned origin may sit up to ALIGN / 2 off the centre.
        need = max(x1 - x0, y1 - y0) + 2 * grow + ALIGN
        scale = 1.0 if self.input_hw is None else letterbox_params(frame_hw, self.input_hw).scale
        side = next((s for s in self.config.sizes if s >= need * scale), None)
        if side is None:
            return None
        extent = round(side / scale)  # frame px
        if extent > min(fh, fw) or extent * extent > self.config.max_area * fh * fw:
            return None
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        left = _aligned_origin(cx - extent / 2, extent, fw)
        top = _aligned_origin(cy - extent / 2, extent, fh)
        return Region(left, top, extent, extent, side)

    def lost(self, candidates: Candidates, region: Region, frame_hw: tuple[int, int]) -> bool:
        """Whether a crop's frame-pixel candidates miss the animals (no :meth:`animals` group:
        the same test the next crop follows) or an animal reaches an inner crop edge (a
        spurious detection there does not count)."""
        keep = self.animals(candidates, frame_hw)
        if not keep.any():
            return True
        return region.touches_inner_edge(candidates.xy[keep], frame_hw, self.config.edge)

    def animals(self, candidates: Candidates, frame_hw: tuple[int, int]) -> np.ndarray:
        """Which candidates belong to the animals to follow (a mask): confident ones, grouped
        by single linkage at ``link`` × the frame's shorter side, groups with at least
        :attr:`parts_needed` parts, the ``max_animals`` of highest summed score."""
        cfg = self.config
        confident = np.flatnonzero(candidates.score >= cfg.min_score)
        mask = np.zeros(len(candidates.score), bool)
        if not len(confident):
            return mask
        xy = candidates.xy[confident]
        near = np.linalg.norm(xy[:, None] - xy[None], axis=-1) <= cfg.link * min(frame_hw)
        _, group = connected_components(csr_matrix(near), directed=False)
        groups = []
        for g in np.unique(group):
            members = confident[group == g]
            if len(np.unique(candidates.part[members])) >= self.parts_needed:
                groups.append((float(candidates.score[members].sum()), members))
        groups.sort(key=lambda item: -item[0])
        for _, members in groups[: cfg.max_animals]:
            mask[members] = True
        return mask

    def update(
        self,
        frame_hw: tuple[int, int],
        found: Sequence[tuple[int, Candidates]],
        fell_back: bool,
    ) -> None:
        """Learn from a call's frames: ``(index, frame-pixel candidates)`` in frame order.

        The next box is the union of the frames' boxes around their :meth:`animals` (``None``
        when no frame found them); the speed is the largest median displacement per frame of
        those candidates from the nearest same-part ones of the frame found before (kept when
        no pair of frames measured one).
        """
        self.frame_hw = frame_hw
        self.widen = min(self.widen * 2, self.config.max_widen) if fell_back else 1
        boxes, previous = [], self._last
        speed: float | None = None
        for index, candidates in found:
            keep = self.animals(candidates, frame_hw)
            if not keep.any():
                continue
            xy, part = candidates.xy[keep], candidates.part[keep]
            boxes.append((*xy.min(0), *xy.max(0)))
            if previous is not None:
                moved = _median_step(previous[1], previous[2], xy, part)
                if moved is not None:
                    step = moved / max(1, index - previous[0])
                    speed = step if speed is None else max(speed, step)
            previous = (index, xy, part)
        if not boxes:
            self.box, self._last, self.speed = None, None, 0.0
            return
        b = np.array(boxes, np.float64)
        self.box = (b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max())
        self._last = previous
        self.last_index = previous[0]
        if speed is not None:
            self.speed = speed


def _aligned_origin(start: float, extent: int, size: int) -> int:
    """A crop origin near ``start``, a multiple of :data:`ALIGN` where the frame allows, with
    the crop inside ``[0, size)``."""
    origin = math.floor(start / ALIGN + 0.5) * ALIGN
    return max(0, min(origin, size - extent))


def _median_step(
    xy_a: np.ndarray, part_a: np.ndarray, xy_b: np.ndarray, part_b: np.ndarray
) -> float | None:
    """Median distance from each point of b to the nearest same-part point of a (``None``
    when no part is in both). Robust to parts that flicker in and out."""
    steps = []
    for p in np.unique(part_b):
        a = xy_a[part_a == p]
        if not len(a):
            continue
        d = np.linalg.norm(xy_b[part_b == p][:, None] - a[None], axis=-1)
        steps.extend(d.min(1))
    return float(np.median(steps)) if steps else None


class DynamicCropDetector:
    """The engine's detector with dynamic cropping (see the module docstring).

    Args:
        full: the full-frame detector.
        crop_detector: a detector for crops of network size ``(side, side)``; called once
            per size, the detectors are kept.
        config: the settings.
        num_parts: the skeleton's parts.
        input_hw: the full-frame detector's network input (``None``: a detector that runs at
            the image's own size).
    """

    def __init__(
        self,
        full: Detect,
        crop_detector: Callable[[tuple[int, int]], Detect],
        config: CropConfig,
        num_parts: int,
        input_hw: tuple[int, int] | None = None,
    ) -> None:
        self.full = full
        self._make = crop_detector
        self._detectors: dict[int, Detect] = {}
        self.policy = CropPolicy(config, num_parts, input_hw)
        self.stats = CropStats()

    def prepare(self) -> None:
        """Build the crop detector of every size now (compiled / ONNX Runtime backends build
        a model per size), so that a stream never waits for one mid-way."""
        for side in self.policy.config.sizes:
            self._detector(side)

    def _detector(self, side: int) -> Detect:
        detect = self._detectors.get(side)
        if detect is None:
            detect = self._detectors[side] = self._make((side, side))
        return detect

    def reset(self) -> CropStats:
        """Start a new stream: forget the animals and count afresh (returns the new counts)."""
        self.policy.reset()
        self.stats = CropStats()
        return self.stats

    def __call__(self, frames: Sequence[Frame]) -> list[Candidates]:
        if not frames:
            return []
        frame_hw = frames[0].image.shape[:2]
        if any(f.image.shape[:2] != frame_hw for f in frames):  # mixed sizes (image folder)
            self.policy.reset()
            self.stats.full += len(frames)
            return self.full(frames)
        group = self.policy.config.group or len(frames)
        found: list[Candidates] = []
        for start in range(0, len(frames), group):
            found += self._detect_group(frames[start : start + group], frame_hw)
        return found

    def _detect_group(self, frames: Sequence[Frame], frame_hw: tuple[int, int]) -> list[Candidates]:
        """Frames of one size in one crop (module docstring), lost ones again full-frame."""
        policy, stats = self.policy, self.stats
        region = policy.region(frame_hw, frames[-1].index)
        out: list[Candidates | None] = [None] * len(frames)
        refresh = self.policy.config.refresh
        cropped = [i for i, f in enumerate(frames) if not (refresh and f.index % refresh == 0)]
        fell_back = False
        if region is not None and cropped:
            detect = self._detector(region.side)
            crops = [
                Frame(frames[i].index, frames[i].pts, region.cut(frames[i].image), frames[i].source)
                for i in cropped
            ]
            for i, found in zip(cropped, detect(crops), strict=True):
                found = region.to_frame(found)
                if policy.lost(found, region, frame_hw):
                    stats.fallbacks += 1
                    fell_back = True
                else:
                    out[i] = found
                    stats.cropped += 1
                    stats.sizes[region.side] += 1
        redo = [i for i, c in enumerate(out) if c is None]
        if redo:
            for i, found in zip(redo, self.full([frames[i] for i in redo]), strict=True):
                out[i] = found
            stats.full += len(redo)
        result = [c for c in out if c is not None]
        policy.update(
            frame_hw, [(f.index, c) for f, c in zip(frames, result, strict=True)], fell_back
        )
        return result
