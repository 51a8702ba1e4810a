"""Annotated pose datasets: records of (image, people × parts × (x, y, visibility)), a skeleton,
train/test splits and a cache of decoded images.

Every format reader (:mod:`~deepercut.data.coco`, :mod:`~deepercut.data.mpii`,
:mod:`~deepercut.data.lsp`, :mod:`~deepercut.data.dlc`) produces a :class:`PoseDataset`;
:func:`~deepercut.data.load.load_dataset` picks the reader from the path.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepercut.skeleton import Skeleton

#: Visibility codes of :attr:`PoseRecord.keypoints` (COCO's convention).
NOT_LABELLED, OCCLUDED, VISIBLE = 0, 1, 2


class DatasetError(ValueError):
    """An annotation file that cannot be read: wrong layout, missing fields, missing images."""


@dataclass(frozen=True)
class PoseRecord:
    """One annotated image.

    Attributes:
        image_path: the image file.
        image_id: COCO image id; a running index for the other formats.
        keypoints: float32 [M, P, 3]: x, y (pixels), visibility (0 not labelled, 1 labelled
            but occluded, 2 labelled and visible: COCO's convention).
        head_size: [M] MPII head segment length (0.6 × head-box diagonal) for PCKh, else None.
        area: [M] COCO segment area for OKS, else None.
        bbox: [M, 4] x, y, w, h when known.
        height: [M] person height in pixels when the format gives one (MPII: 200 × scale).
    """

    image_path: Path
    image_id: int
    keypoints: np.ndarray
    head_size: np.ndarray | None = None
    area: np.ndarray | None = None
    bbox: np.ndarray | None = None
    height: np.ndarray | None = None

    @property
    def num_people(self) -> int:
        return self.keypoints.shape[0]

    @property
    def labelled(self) -> np.ndarray:
        """bool [M, P]: the joint's position is annotated."""
        return self.keypoints[..., 2] > NOT_LABELLED

    @property
    def visible(self) -> np.ndarray:
        """bool [M, P]: the joint is annotated and visible."""
        return self.keypoints[..., 2] >= VISIBLE

    def person_heights(self) -> np.ndarray:
        """float32 [M] a size per person in pixels, the scale training and matching use.

        :attr:`height` when given, else the box height when a box is known, else the diagonal of
        the labelled joints' bounding box; floored at 1 px. For animals (DLC) this is the
        animal's extent, not a height.
        """
        m = self.num_people
        heights = np.ones(m, np.float32)
        for i in range(m):
            if self.height is not None and self.height[i] > 0:
                heights[i] = self.height[i]
                continue
            if self.bbox is not None and self.bbox[i, 3] > 0:
                heights[i] = self.bbox[i, 3]
                continue
            xy = self.keypoints[i, self.labelled[i], :2]
            if len(xy) >= 2:
                heights[i] = float(np.linalg.norm(xy.max(0) - xy.min(0)))
        return np.maximum(heights, 1.0)

    def center(self) -> np.ndarray:
        """float32 [M, 2] centre of each person's labelled joints (box centre when none)."""
        out = np.full((self.num_people, 2), np.nan, np.float32)
        for i in range(self.num_people):
            xy = self.keypoints[i, self.labelled[i], :2]
            if len(xy):
                out[i] = (xy.min(0) + xy.max(0)) / 2
            elif self.bbox is not None:
                x, y, w, h = self.bbox[i]
                out[i] = (x + w / 2, y + h / 2)
        return out


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to uint8 H×W×3 RGB (Pillow)."""
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("reading dataset images needs Pillow: pip install pillow") from exc
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


class ImageCache:
    """Decoded images by path, least recently used evicted beyond ``max_bytes``; thread-safe.

    Training draws the same few hundred images thousands of times, so decoding each once keeps
    CPU training compute-bound rather than PNG/JPEG-bound.
    """

    def __init__(self, max_bytes: int = 2 << 30) -> None:
        self.max_bytes = max_bytes
        self._images: OrderedDict[Path, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, path: Path) -> np.ndarray:
        """The decoded image (shared with every other caller: do not modify it)."""
        with self._lock:
            image = self._images.get(path)
            if image is not None:
                self._images.move_to_end(path)
                return image
        image = read_image(path)
        with self._lock:
            if path not in self._images:
                self._images[path] = image
                self._bytes += image.nbytes
                while self._bytes > self.max_bytes and len(self._images) > 1:
                    _, old = self._images.popitem(last=False)
                    self._bytes -= old.nbytes
        return image


class PoseDataset:
    """A list of :class:`PoseRecord` with its :class:`Skeleton` and a shared image cache.

    Args:
        skeleton: the parts the keypoints' second axis follows.
        records: the annotated images.
        name: a short description (format and file).
        cache: decoded-image cache (shared by splits of one dataset).
    """

    def __init__(
        self,
        skeleton: Skeleton,
        records: Sequence[PoseRecord],
        name: str = "",
        cache: ImageCache | None = None,
    ) -> None:
        self.skeleton = skeleton
        self.records = list(records)
        self.name = name
        self.cache = cache or ImageCache()
        p = skeleton.num_parts
        for r in self.records:
            if r.keypoints.ndim != 3 or r.keypoints.shape[1:] != (p, 3):
                raise DatasetError(
                    f"{name}: keypoints of {r.image_path} have shape {r.keypoints.shape}, "
                    f"expected [M, {p}, 3]"
                )

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> PoseRecord:
        return self.records[i]

    def __repr__(self) -> str:
        return (
            f"PoseDataset({self.name!r}, {len(self)} images, "
            f"{sum(r.num_people for r in self.records)} people, {self.skeleton.name})"
        )

    def image(self, i: int) -> np.ndarray:
        """uint8 H×W×3 RGB image of record ``i`` (decoded once, then cached and shared: copy it
        before modifying it)."""
        return self.cache.get(self.records[i].image_path)

    def subset(self, indices: Sequence[int], name: str | None = None) -> PoseDataset:
        """The records at ``indices`` (sharing this dataset's image cache)."""
        return PoseDataset(
            self.skeleton, [self.records[i] for i in indices], name or self.name, self.cache
        )

    def with_existing_images(self) -> tuple[PoseDataset, list[Path]]:
        """(the records whose image file exists, the missing image paths)."""
        keep, missing = [], []
        for i, r in enumerate(self.records):
            (keep if r.image_path.is_file() else missing).append(i)
        return self.subset(keep), [self.records[i].image_path for i in missing]

    def split(
        self,
        train_fraction: float = 0.95,
        seed: int = 1,
        test_names: Sequence[str] | None = None,
    ) -> tuple[PoseDataset, PoseDataset]:
        """(train, test) subsets.

        With ``test_names``, the test set is the images whose file name (with or without the
        extension) is listed, and every listed name must exist. Otherwise DeepLabCut's
        convention: ``round(train_fraction · N)`` images drawn at random (seeded) for training,
        the rest for testing, each kept in dataset order.
        """
        n = len(self.records)
        if test_names is not None:
            wanted = set(test_names)
            test = [
                i
                for i, r in enumerate(self.records)
                if r.image_path.name in wanted or r.image_path.stem in wanted
            ]
            found = {self.records[i].image_path.name for i in test} | {
                self.records[i].image_path.stem for i in test
            }
            missing = sorted(wanted - found)
            if missing:
                raise DatasetError(f"{self.name}: test images not in the dataset: {missing}")
            test_set = set(test)
            train = [i for i in range(n) if i not in test_set]
        else:
            if not 0.0 < train_fraction <= 1.0:
                raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
            order = np.random.default_rng(seed).permutation(n)
            k = round(train_fraction * n)
            train, test = sorted(order[:k].tolist()), sorted(order[k:].tolist())
        return (
            self.subset(train, f"{self.name} [train]"),
            self.subset(test, f"{self.name} [test]"),
        )


def read_name_list(values: Sequence[str]) -> list[str]:
    """Image names given on a command line: each value that is a ``.txt`` file stands for its
    lines (blank lines and ``#`` comments skipped), any other value for itself."""
    names: list[str] = []
    for value in values:
        path = Path(value)
        if path.suffix == ".txt" and path.is_file():
            lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
            names.extend(line for line in lines if line)
        else:
            names.append(value)
    return names
