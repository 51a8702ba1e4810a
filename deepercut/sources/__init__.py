"""Frame sources: video files, image folders, cameras and network streams, decoded by PyAV.

:func:`open_source` turns a spec into a :class:`Source`, a context-managed iterator of
:class:`~deepercut.types.Frame` fed by a decoding thread through a bounded queue. One module
per idea:

==================  ==========================================================================
``opener``          :func:`open_source`: spec → reader of its kind → :class:`Source`
``spec``            what a spec names (file, folder, camera, stream)
``container``       what FFmpeg inputs share: demuxing, decoding, indices, pts, reconnection
``files``           video files (seeking, display rotation)
``cameras``         capture devices (live, reopened)
``network``         URLs (live streams, or files on HTTP servers)
``folder``          image folders (natural order, EXIF orientation)
``reader``          the reader protocol and the outlet a reader delivers frames to
``source``          :class:`Source`: the consumer's side (iteration, counts, closing)
``background``      the bounded-queue thread (also the engine's prefetch and detection)
``frame_queue``     a queue bounded in items and bytes
``timestamps``      presentation timestamps put back in order
``pacing``          the clock of a virtual camera (``realtime``)
``stats``           :class:`SourceStats`
``reconnect``       :class:`Reconnect`
``errors``          :class:`SourceError`
``frame_rate``      the frame rate assumed when a source has none
==================  ==========================================================================

Nothing here imports torch or the model: sources are I/O.
"""

from __future__ import annotations

from deepercut.sources.container import main_video
from deepercut.sources.errors import SourceError
from deepercut.sources.folder import IMAGE_SUFFIXES, list_images
from deepercut.sources.frame_rate import DEFAULT_FPS, known_fps
from deepercut.sources.opener import open_source
from deepercut.sources.reconnect import Reconnect
from deepercut.sources.source import Source
from deepercut.sources.spec import NETWORK_SCHEMES
from deepercut.sources.stats import SourceStats

__all__ = [
    "DEFAULT_FPS",
    "IMAGE_SUFFIXES",
    "NETWORK_SCHEMES",
    "Reconnect",
    "Source",
    "SourceError",
    "SourceStats",
    "known_fps",
    "list_images",
    "main_video",
    "open_source",
]
