"""Video files as sources: read to their end, every frame, turned as their display matrix says."""

from __future__ import annotations

import av

from deepercut.sources.container import ContainerReader, main_video

__all__ = ["FileReader"]


class FileReader(ContainerReader):
    """A local video file (any container and codec FFmpeg reads)."""

    def _input_defaults(self, timeout: float) -> tuple[dict[str, str], float | None]:
        return {}, None  # a local file does not stall

    def _is_finite(self, container: av.container.InputContainer) -> bool:
        return True

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
