"""Pose streams: the msgpack format poses are written in, its writer, reader, TCP server and
converters. One module per idea:

================  ============================================================================
``format``        the header and footer, format name and versions
``framing``       checksummed records on the wire (:class:`CorruptStreamError`)
``records``       one frame's poses as a record, encoded and decoded
``writer``        :class:`PoseWriter`: a stream to a file
``reader``        :func:`read_poses`, :class:`PoseStream`: a stream from a file
``tcp``           :class:`TcpSink`: a stream served to TCP clients
``sink``          the :class:`PoseSink` protocol, :class:`CallbackSink`
``convert``       :func:`to_jsonl`, :func:`to_dlc_csv`
``binary_file``   a path or an open file, and who closes it
================  ============================================================================

Nothing here imports torch or the model: streams are I/O.
"""

from __future__ import annotations

from deepercut.streams.convert import to_dlc_csv, to_jsonl
from deepercut.streams.format import (
    ENDS,
    FORMAT,
    READABLE_VERSIONS,
    VERSION,
    check_header,
    make_footer,
    make_header,
)
from deepercut.streams.framing import MAX_RECORD_BYTES, CorruptStreamError
from deepercut.streams.reader import PoseStream, read_poses
from deepercut.streams.sink import CallbackSink, PoseSink
from deepercut.streams.tcp import TcpSink
from deepercut.streams.writer import PoseWriter

__all__ = [
    "ENDS",
    "FORMAT",
    "MAX_RECORD_BYTES",
    "READABLE_VERSIONS",
    "VERSION",
    "CallbackSink",
    "CorruptStreamError",
    "PoseSink",
    "PoseStream",
    "PoseWriter",
    "TcpSink",
    "check_header",
    "make_footer",
    "make_header",
    "read_poses",
    "to_dlc_csv",
    "to_jsonl",
]
