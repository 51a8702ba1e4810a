"""Drawing poses onto frames (pure numpy) and encoding the result as a video (PyAV).

:func:`draw_poses` paints each person's skeleton edges in a colour picked by track id (by
person index when untracked) from :data:`PALETTE`, then the keypoints as outlined dots whose
brightness follows their score. Lines are discs stamped along each segment (no
anti-aliasing), all people at once. :class:`VideoRenderer` encodes frames with libx264 (frames
of other sizes letterboxed onto its canvas when asked); :class:`ImageFolderRenderer` writes one
overlay image per input image, under the input's file name.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from deepercut.model.letterbox import letterbox_params
from deepercut.skeleton import Skeleton
from deepercut.types import Poses

__all__ = [
    "PALETTE",
    "VIDEO_SUFFIXES",
    "ImageFolderRenderer",
    "VideoRenderer",
    "draw_poses",
    "fit_canvas",
    "is_video_path",
    "person_colors",
]

#: Output suffixes written as a video (anything else, for an image folder, is a folder).
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".ts")

#: Person colours (RGB), distinct on screen and for common colour blindness first.
PALETTE = np.array(
    [
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
        (210, 245, 60),
        (250, 190, 212),
        (0, 128, 128),
        (220, 190, 255),
        (170, 110, 40),
        (255, 250, 200),
        (128, 0, 0),
        (170, 255, 195),
        (128, 128, 0),
        (255, 215, 180),
        (0, 0, 128),
        (128, 128, 128),
    ],
    np.uint8,
)


def person_colors(track_id: np.ndarray) -> np.ndarray:
    """uint8 [M, 3] colour per person: by track id, or by position when the id is −1."""
    track_id = np.asarray(track_id, np.int64)
    key = np.where(track_id >= 0, track_id, np.arange(len(track_id)))
    return PALETTE[key % len(PALETTE)]


def _disc(radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Integer (dy, dx) offsets of the pixels within ``radius`` of a pixel centre."""
    r = max(0.5, radius)
    span = np.arange(-math.floor(r), math.floor(r) + 1)
    dy, dx = np.meshgrid(span, span, indexing="ij")
    inside = dy**2 + dx**2 <= r * r + 0.25
    return dy[inside], dx[inside]


def _stamp(image: np.ndarray, xy: np.ndarray, radius: float, colors: np.ndarray) -> None:
    """Paint a disc of ``radius`` at each point ``xy`` [K, 2] with ``colors`` [K, 3]."""
    if not len(xy):
        return
    dy, dx = _disc(radius)
    cx = np.rint(xy[:, 0]).astype(np.intp)[:, None] + dx
    cy = np.rint(xy[:, 1]).astype(np.intp)[:, None] + dy
    h, w = image.shape[:2]
    keep = ((cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)).ravel()
    which = np.repeat(np.arange(len(xy)), len(dx))[keep]
    image.reshape(-1, 3)[(cy * w + cx).ravel()[keep]] = colors[which]


def _clip(a: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, ...]:
    """Liang–Barsky: segments a→b [S, 2] cut to the box [lo, hi]; returns (a', b', inside)."""
    d = b - a
    t0 = np.zeros(len(a))
    t1 = np.ones(len(a))
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in range(2):
            ta = (lo[k] - a[:, k]) / d[:, k]
            tb = (hi[k] - a[:, k]) / d[:, k]
            t0 = np.maximum(t0, np.where(d[:, k] != 0, np.minimum(ta, tb), 0.0))
            t1 = np.minimum(t1, np.where(d[:, k] != 0, np.maximum(ta, tb), 1.0))
            outside = (d[:, k] == 0) & ((a[:, k] < lo[k]) | (a[:, k] > hi[k]))
            t1 = np.where(outside, -1.0, t1)
    inside = t0 <= t1
    return a + d * t0[:, None], a + d * t1[:, None], inside


def _segment_points(a: np.ndarray, b: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Points every ``step`` px along each segment a→b (ends included) and their segment."""
    length = np.linalg.norm(b - a, axis=1)
    n = np.ceil(length / step).astype(np.int64) + 1
    seg = np.repeat(np.arange(len(a)), n)
    k = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    t = (k / np.maximum(n - 1, 1)[seg])[:, None]
    return a[seg] + (b[seg] - a[seg]) * t, seg


def draw_poses(
    image: np.ndarray,
    poses: Poses,
    skeleton: Skeleton,
    *,
    radius: float | None = None,
    thickness: float | None = None,
    min_score: float = 0.0,
    inplace: bool = False,
) -> np.ndarray:
    """Draw skeletons and keypoints on an RGB image.

    Args:
        image: uint8 [H, W, 3].
        poses: the people; NaN keypoints (and those scoring below ``min_score``) are skipped,
            with their edges.
        skeleton: edges to draw.
        radius: keypoint dot radius in px (default scales with the image: 3 px at 640 wide).
        thickness: edge width in px (default 2 px at 640 wide).
        min_score: hide keypoints with a lower score.
        inplace: draw into ``image`` instead of a copy.

    Returns:
        The image drawn on.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 H×W×3 image, got {image.dtype} {image.shape}")
    out = image if inplace else image.copy()
    kp = np.asarray(poses.keypoints, np.float64)
    if kp.size == 0:
        return out
    scale = max(image.shape[:2]) / 640.0
    radius = max(1.5, 3.0 * scale) if radius is None else float(radius)
    thickness = max(1.0, 2.0 * scale) if thickness is None else float(thickness)
    colors = person_colors(poses.track_id)
    score = np.nan_to_num(kp[..., 2], nan=1.0)  # a located part without a score is drawn
    shown = np.isfinite(kp[..., 0]) & np.isfinite(kp[..., 1]) & (score >= min_score)

    # Edges: every (person, edge) with both ends shown, clipped to the image (plus margin).
    edges = np.asarray(skeleton.edges, np.int64).reshape(-1, 2)
    m, e = np.nonzero(shown[:, edges[:, 0]] & shown[:, edges[:, 1]])
    if len(m):
        a, b = kp[m, edges[e, 0], :2], kp[m, edges[e, 1], :2]
        h, w = out.shape[:2]
        margin = thickness + 1.0
        a, b, inside = _clip(a, b, np.array([-margin, -margin]), np.array([w + margin, h + margin]))
        points, seg = _segment_points(a[inside], b[inside], step=max(0.7, 0.4 * thickness))
        _stamp(out, points, thickness / 2, colors[m[inside]][seg])

    # Keypoints: a dark rim, then a light core whose brightness grows with the score.
    m, p = np.nonzero(shown)
    xy = kp[m, p, :2]
    base = colors[m].astype(np.float64)
    light = (base + 255.0) / 2 * (0.45 + 0.55 * np.clip(score[m, p], 0.0, 1.0))[:, None]
    _stamp(out, xy, radius, (base * 0.35).astype(np.uint8))
    _stamp(out, xy, max(0.5, radius - 1.0), light.astype(np.uint8))
    return out


def is_video_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a video file by its suffix (see :data:`VIDEO_SUFFIXES`)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def fit_canvas(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` (uint8 [H, W, 3]) letterboxed into a black canvas of ``size`` = (width,
    height): the largest uniform resize that fits, centred; the image itself when it fits
    exactly."""
    width, height = size
    if image.shape[:2] == (height, width):
        return image
    box = letterbox_params(image.shape[:2], (height, width))
    rh, rw = box.resized_hw
    # Pillow's bilinear filter widens when shrinking (anti-aliased), as the detector's resize.
    resized = np.asarray(Image.fromarray(image).resize((rw, rh), Image.Resampling.BILINEAR))
    canvas = np.zeros((height, width, 3), np.uint8)
    canvas[box.pad_y : box.pad_y + rh, box.pad_x : box.pad_x + rw] = resized
    return canvas


class VideoRenderer:
    """Encodes RGB frames to a video file with PyAV (H.264, yuv420p, constant frame rate).

    The n-th :meth:`write` becomes output frame n at ``n / fps`` seconds: exactly one output
    frame per written image (images skipped upstream, e.g. dropped live frames, are not filled
    in). ``fps`` is kept exact for NTSC rates (29.97 → 30000/1001). yuv420p needs even sizes:
    an odd width or height is padded by one pixel (repeating the last column or row), see
    :attr:`encoded_size`. A context manager; :meth:`close` flushes the encoder.

    Args:
        path: output file; the container follows the suffix (.mp4, .mkv, .mov...).
        fps: frame rate.
        size: ``(width, height)`` of the images to write (of the canvas, with ``letterbox``).
        letterbox: accept images of any size and :func:`fit_canvas` them into ``size`` (an
            image folder of mixed sizes); otherwise every image must be of ``size``.
        crf: x264 constant rate factor (lower = better; 23 is x264's default).
        preset: x264 speed/size trade-off (``"veryfast"`` keeps up with live video).
        codec: encoder name.
        options: further encoder options (strings), merged over ``crf`` and ``preset``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: float,
        size: tuple[int, int],
        *,
        crf: int = 23,
        preset: str = "veryfast",
        codec: str = "libx264",
        options: dict[str, str] | None = None,
        letterbox: bool = False,
    ) -> None:
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"need a positive frame rate, got {fps}")
        width, height = (int(v) for v in size)
        if width <= 0 or height <= 0:
            raise ValueError(f"invalid frame size {size}")
        self.size = (width, height)
        self.letterbox = letterbox
        self.encoded_size = (width + width % 2, height + height % 2)
        self.rate = Fraction(fps).limit_denominator(1001)
        self.frames = 0
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._container: Any = av.open(os.fspath(path), "w")
        try:
            stream = self._container.add_stream(codec, rate=self.rate)
            stream.width, stream.height = self.encoded_size
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf), "preset": preset, **(options or {})}
        except BaseException:
            self._container.close()
            raise
        self._stream = stream
        self._time_base = 1 / self.rate

    def write(self, image: np.ndarray) -> None:
        """Append one uint8 [H, W, 3] RGB image of :attr:`size` (of any size with
        ``letterbox``)."""
        width, height = self.size
        if self.letterbox and image.ndim == 3 and image.dtype == np.uint8:
            image = fit_canvas(image, self.size)
        if image.shape != (height, width, 3) or image.dtype != np.uint8:
            raise ValueError(
                f"expected uint8 {(height, width, 3)} images, got {image.dtype} {image.shape}"
            )
        pad_w, pad_h = self.encoded_size[0] - width, self.encoded_size[1] - height
        if pad_w or pad_h:
            image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = self.frames
        frame.time_base = self._time_base
        self._container.mux(self._stream.encode(frame))
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file; idempotent."""
        if self._container is None:
            return
        try:
            self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ImageFolderRenderer:
    """Writes overlay images into a folder: image ``index`` under ``names[index]``, in the
    format its suffix names (the input's own format and file name, so the overlay of
    ``photos/a.jpg`` is ``out/a.jpg``).

    Args:
        folder: output folder (created); refused when it is the input folder, whose images
            would be overwritten.
        names: file name of each frame index (the input folder's images in source order).
        source_folder: the input folder, to refuse writing into it.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        names: Sequence[str],
        source_folder: str | os.PathLike[str] | None = None,
    ) -> None:
        self.folder = Path(folder)
        if source_folder is not None and self.folder.resolve() == Path(source_folder).resolve():
            raise ValueError(f"--render {folder}: that is the input folder; name another")
        if self.folder.exists() and not self.folder.is_dir():
            raise ValueError(f"--render {folder}: exists and is not a folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.names = list(names)
        self.frames = 0

    def write(self, index: int, image: np.ndarray) -> Path:
        """Save the overlay of frame ``index``; returns its path."""
        path = self.folder / self.names[index]
        Image.fromarray(np.ascontiguousarray(image)).save(path)
        self.frames += 1
        return path

    def close(self) -> None:
        """Nothing is held open (each image is written whole by :meth:`write`)."""

    def __enter__(self) -> ImageFolderRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
