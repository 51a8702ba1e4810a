"""Cameras as sources: live, reopened when they fail."""

from __future__ import annotations

import av

from deepercut.sources.container import ContainerReader

__all__ = ["CameraReader"]


class CameraReader(ContainerReader):
    """A capture device: ``/dev/video0`` (v4l2), an avfoundation index, a dshow name."""

    def _input_defaults(self, timeout: float) -> tuple[dict[str, str], float | None]:
        return {}, timeout

    def _is_finite(self, container: av.container.InputContainer) -> bool:
        return False
