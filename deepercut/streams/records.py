"""One frame's poses as a stream record, both ways: :class:`Encoder` packs, :func:`record_poses`
unpacks (float32 keypoints and solver numbers, float64 pts).
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

from deepercut.streams.framing import FOOTER, FRAME, frame, header_check
from deepercut.types import Poses

__all__ = ["Encoder", "record_poses"]


def _plain(obj: Any) -> Any:
    """msgpack fallback for numpy scalars and arrays in headers and solver reports."""
    if isinstance(obj, np.generic | np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__}")


class Encoder:
    """Packs headers and framed records; float32 for keypoints and solver numbers, float64
    for pts, headers and footers. Not thread-safe (msgpack packers keep a buffer)."""

    def __init__(self) -> None:
        self._single = msgpack.Packer(use_bin_type=True, use_single_float=True, default=_plain)
        self._double = msgpack.Packer(use_bin_type=True, default=_plain)

    def header(self, header: dict[str, Any]) -> bytes:
        """The header map and its check record (format version 3)."""
        packed = self._double.pack(header)
        return packed + header_check(packed)

    def poses(self, poses: Poses) -> bytes:
        single = self._single.pack
        body = b"".join(
            (
                self._single.pack_map_header(5),
                single("i"),
                single(int(poses.frame)),
                single("t"),
                self._double.pack(float(poses.pts)),  # float32 would lose ms after ~4.6 h
                single("kp"),
                single(np.asarray(poses.keypoints, np.float32).tolist()),
                single("id"),
                single(np.asarray(poses.track_id, np.int64).tolist()),
                single("solver"),
                single(dict(poses.solver)),
            )
        )
        return frame(FRAME, body)

    def footer(self, footer: dict[str, Any]) -> bytes:
        return frame(FOOTER, self._double.pack(footer))


def record_poses(record: Any, num_parts: int) -> Poses:
    """A frame record as :class:`Poses` (``id`` defaults to −1s, ``solver`` to ``{}``)."""
    kp = np.asarray(record["kp"], np.float32)  # None (from JSON) becomes NaN
    count = len(kp)
    ids = record.get("id")
    track_id = np.full(count, -1, np.int64) if ids is None else np.asarray(ids, np.int64)
    if kp.size == 0:
        kp = kp.reshape(count, num_parts, 3)
    if kp.shape != (count, num_parts, 3) or track_id.shape != (count,):
        raise ValueError(f"kp {kp.shape} and id {track_id.shape} for {num_parts} parts")
    return Poses(
        frame=int(record["i"]),
        pts=float(record["t"]),
        keypoints=kp,
        track_id=track_id,
        solver=dict(record.get("solver") or {}),
    )
