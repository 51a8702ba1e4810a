"""Video files as sources: read to their end, every frame, turned as their display matrix says."""

from __future__ import annotations

import itertools

import av
import numpy as np

from deepercut.sources.container import ContainerReader, main_video
from deepercut.sources.timestamps import REORDER_WINDOW

__all__ = ["FileReader"]

_SCANNED_PACKETS = 64  # enough steps to tell a variable frame rate, read in milliseconds


class FileReader(ContainerReader):
    """A local video file (any container and codec FFmpeg reads)."""

    def _input_defaults(self, timeout: float) -> tuple[dict[str, str], float | None]:
        return {}, None  # a local file does not stall

    def _is_finite(self, container: av.container.InputContainer) -> bool:
        return True

    def _regular_timestamps(self) -> bool:
        """Whether the first packets' timestamps, sorted, step by whole frames of 1/fps
        (gaps of several frames allowed: lost frames, which the timeline counts); a variable
        frame rate steps by fractions. Demuxes without decoding."""
        try:
            with av.open(self.spec.url) as container:
                stream = main_video(container)
                if stream is None or stream.time_base is None:
                    return True
                packets = itertools.islice(container.demux(stream), _SCANNED_PACKETS)
                pts = sorted(p.pts for p in packets if p.pts is not None)
                step = 1 / (self.fps * float(stream.time_base))
        except (av.FFmpegError, OSError):
            return True  # the read itself reports the damage
        # The last few sorted timestamps may miss frames reordered past the scanned packets.
        steps = np.diff(pts[: max(0, len(pts) - REORDER_WINDOW)]) / step
        return bool(np.all((np.abs(steps - np.round(steps)) < 0.1) & (np.round(steps) >= 1)))

    def _rotation(self) -> int:
        """From the display matrix of the first frame (phones record portrait video so); 0
        when it has none or cannot be read."""
        try:
            with av.open(self.spec.url) as container:
                stream = main_video(container)
                for frame in container.decode(stream) if stream is not None else ():
                    return int(frame.rotation)
        except (av.FFmpegError, OSError):
            pass
        return 0
