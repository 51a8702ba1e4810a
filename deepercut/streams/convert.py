"""Pose streams converted to JSON lines and DeepLabCut CSV."""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from deepercut.outputs import atomic_output, refuse_overwriting_inputs
from deepercut.streams.reader import PoseStream, read_poses
from deepercut.types import Poses

__all__ = ["to_dlc_csv", "to_jsonl"]


def _stream(stream: PoseStream | str | os.PathLike[str]) -> PoseStream:
    return stream if isinstance(stream, PoseStream) else read_poses(stream)


def _refuse_same(stream: PoseStream | str | os.PathLike[str], out_path: Any) -> None:
    """Converting a stream onto itself would destroy it: refuse before reading."""
    source = stream.name if isinstance(stream, PoseStream) else stream
    refuse_overwriting_inputs({"output": out_path}, {"input": source})


def _json_safe(obj: Any) -> Any:
    """JSON-ready data: non-finite floats become null, tuples lists, numpy plain Python."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic | np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, bytes):
        return obj.hex()
    return obj


def _json_record(poses: Poses) -> dict[str, Any]:
    # Four decimals: 0.0001 px / score units, well below float32 noise at image scale.
    kp = np.round(poses.keypoints.astype(np.float64), 4).tolist()
    return {
        "i": int(poses.frame),
        "t": _json_safe(float(poses.pts)),
        "kp": [[[v if v == v else None for v in part] for part in person] for person in kp],
        "id": poses.track_id.tolist(),
        "solver": _json_safe(poses.solver),
    }


def to_jsonl(stream: PoseStream | str | os.PathLike[str], out_path: str | os.PathLike[str]) -> int:
    """Convert a pose stream to JSON lines: the header, then one frame object per line, with
    the stream's keys; NaN (and ±inf) become ``null``, numbers are rounded to 4 decimals.
    Written atomically (temporary file, then rename); an output that is the input is refused
    (:class:`~deepercut.outputs.OutputOverwritesInput`).

    Returns:
        The number of frames written.
    """
    _refuse_same(stream, out_path)
    source = _stream(stream)
    count = 0
    with source, atomic_output(out_path) as staged, open(staged, "w", encoding="utf-8") as out:
        out.write(json.dumps(_json_safe(source.header), allow_nan=False, default=str) + "\n")
        for poses in source:
            out.write(json.dumps(_json_record(poses), allow_nan=False, separators=(",", ":")))
            out.write("\n")
            count += 1
    return count


def _dlc_slots(track_ids: list[np.ndarray]) -> tuple[list[str], list[list[int]]]:
    """Individual names, and per frame the individual column of each person."""
    tracked = sorted({int(t) for ids in track_ids for t in ids if t >= 0})
    untracked = max((int(np.sum(ids < 0)) for ids in track_ids), default=0)
    column = {tid: k for k, tid in enumerate(tracked)}
    names = [f"id{tid}" for tid in tracked] + [f"ind{j + 1}" for j in range(untracked)]
    slots = []
    for ids in track_ids:
        slot, j = [], len(tracked)
        for tid in ids.tolist():
            if tid >= 0:
                slot.append(column[tid])
            else:
                slot.append(j)
                j += 1
        slots.append(slot)
    return names, slots


def to_dlc_csv(
    stream: PoseStream | str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    scorer: str = "deepercut",
) -> int:
    """Convert a pose stream to DeepLabCut's multi-animal CSV layout.

    Four header rows (``scorer``, ``individuals``, ``bodyparts``, ``coords``) and one row per
    frame, indexed by frame index, with columns x, y, likelihood per individual and part.
    Tracked people are named ``id<track id>``; untracked ones (id −1) ``ind1..indM`` by their
    order in the frame, M the most untracked people in any frame. Absent parts are empty cells.
    The columns need a first pass over the frames: a path is read twice, an open
    :class:`PoseStream` is held in memory. Written atomically; an output that is the input is
    refused.

    Returns:
        The number of frames (data rows) written.
    """
    _refuse_same(stream, out_path)
    if isinstance(stream, PoseStream):
        with stream:
            frames = list(stream)
        skeleton, track_ids = stream.skeleton, [p.track_id for p in frames]

        def again() -> Iterator[Poses]:
            yield from frames
    else:
        with read_poses(stream) as first:
            skeleton, track_ids = first.skeleton, [p.track_id for p in first]

        def again() -> Iterator[Poses]:
            with read_poses(stream) as second:  # a growing file may have more frames now
                yield from itertools.islice(second, len(track_ids))

    parts = list(skeleton.parts)
    names, slots = _dlc_slots(track_ids)
    width = len(names) * len(parts) * 3
    with atomic_output(out_path) as staged, open(staged, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["scorer"] + [scorer] * width)
        writer.writerow(["individuals"] + [n for n in names for _ in range(len(parts) * 3)])
        writer.writerow(["bodyparts"] + [p for _ in names for p in parts for _ in range(3)])
        writer.writerow(["coords"] + ["x", "y", "likelihood"] * (len(names) * len(parts)))
        for poses, slot in zip(again(), slots, strict=True):
            row = [""] * width
            for m, k in enumerate(slot):
                for p, (x, y, s) in enumerate(poses.keypoints[m].tolist()):
                    if math.isnan(x) or math.isnan(y):
                        continue
                    base = (k * len(parts) + p) * 3
                    row[base : base + 3] = [f"{x:.6g}", f"{y:.6g}", f"{s:.6g}"]
            writer.writerow([poses.frame, *row])
    return len(slots)
