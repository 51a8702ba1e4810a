"""Image folders as sources: one frame per image, in natural order, upright by EXIF."""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from deepercut.sources.errors import SourceError, ffmpeg_reason
from deepercut.sources.reader import Outlet

__all__ = ["IMAGE_SUFFIXES", "FolderReader", "list_images"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_EXIF_ORIENTATION = 0x0112


def _natural_key(path: Path) -> list[Any]:
    """Sort key that orders ``img2`` before ``img10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def list_images(folder: Path) -> list[Path]:
    """The images of ``folder`` (:data:`IMAGE_SUFFIXES`) in source order: frame ``i`` of the
    folder is ``list_images(folder)[i]``."""
    return sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
        key=_natural_key,
    )


def _exif_orientation(path: Path) -> int:
    """A photo's EXIF orientation tag (1: upright, also without EXIF)."""
    try:
        with Image.open(path) as image:  # reads the header only
            return int(image.getexif().get(_EXIF_ORIENTATION, 1))
    except Image.DecompressionBombError:
        # PIL refuses to open images over 179 M pixels (a 200 MP phone photo) even for their
        # header; FFmpeg decodes them, so read a JPEG's EXIF block directly.
        return _jpeg_exif_orientation(path)
    except (OSError, ValueError, SyntaxError):
        return 1


def _jpeg_exif_orientation(path: Path) -> int:
    """The EXIF orientation of a JPEG from its APP1 block near the file's start (1: none)."""
    with open(path, "rb") as file:
        head = file.read(1 << 17)
    at = head.find(b"Exif\x00\x00")
    if not head.startswith(b"\xff\xd8") or at < 0:
        return 1
    exif = Image.Exif()
    try:
        exif.load(head[at:])
        return int(exif.get(_EXIF_ORIENTATION, 1))
    except (OSError, ValueError, SyntaxError, struct.error):
        return 1


def _upright(image: np.ndarray, orientation: int) -> np.ndarray:
    """``image`` turned as EXIF ``orientation`` (1-8) says, contiguous."""
    if orientation in (5, 6, 7, 8):  # stored on its side
        image = np.rot90(image, 1 if orientation in (5, 8) else -1)
    if orientation in (2, 4, 5, 7):  # stored mirrored
        image = image[:, ::-1] if orientation == 2 else image[::-1]
    if orientation == 3:
        image = image[::-1, ::-1]
    return np.ascontiguousarray(image)


class FolderReader:
    """Decodes the images of a folder in natural order (``img2`` before ``img10``), each at its
    own size, upright by its EXIF orientation."""

    def __init__(self, path: Path, fps: float | None) -> None:
        self.path = path
        self.files = list_images(path)
        if not self.files:
            raise SourceError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)})")
        self.fps = math.nan if fps is None else float(fps)
        self.num_frames = len(self.files)
        self.frame_size: tuple[int, int] | None = None  # of the first image; others may differ
        for file in self.files:
            try:
                first = self._decode(file)
            except SourceError:
                continue
            self.frame_size = (first.shape[1], first.shape[0])
            break
        else:
            raise SourceError(f"{path}: none of its {len(self.files)} images can be decoded")

    def __str__(self) -> str:
        return str(self.path)

    @staticmethod
    def _decode(path: Path) -> np.ndarray:
        """An image as 8-bit RGB (FFmpeg converts any pixel format: 16-bit, gray, alpha),
        turned upright by its EXIF orientation, as viewers show it."""
        try:
            with av.open(str(path)) as container:
                for frame in container.decode(video=0):
                    # Pixels as stored: FFmpeg 8 also turns EXIF into a display rotation,
                    # older versions do not; the tag is applied here, once, for all.
                    return _upright(frame.to_ndarray(format="rgb24"), _exif_orientation(path))
        except (av.FFmpegError, OSError) as exc:
            raise SourceError(f"cannot decode {path}: {ffmpeg_reason(exc)}") from exc
        raise SourceError(f"cannot decode {path}: no image in it")

    def close(self) -> None:
        """Nothing to release: each image is opened and closed as it is decoded."""

    def run(self, out: Outlet) -> None:
        """Decode the images from ``out.start`` on, skipping the strides without decoding."""
        for index in range(out.start, len(self.files)):
            if (index - out.start) % out.stride:
                continue  # cheaper than decoding and discarding
            path = self.files[index]
            try:
                image = self._decode(path)
            except SourceError as exc:
                out.stats.decode_errors += 1
                out.stats.missing += 1  # its index stays empty: a frame lost, like a gap
                out.stats.error(str(exc))
                continue
            # The offer counts it as decoded; strides were skipped without decoding.
            if not out.offer(index, index / self.fps, lambda image=image: image, str(path)):
                return
