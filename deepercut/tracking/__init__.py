"""The tracking stage: post-processing of the ordered poses of a stream, one interface.

Every step is a :class:`~deepercut.tracking.processor.Processor` (``update(poses) -> poses``,
``reset()``), run in frame order after the solver pool re-ordered the frames:
:class:`PoseTracker` (online track ids, :mod:`~deepercut.tracking.tracker`) and
:class:`OneEuroSmoother` (keypoint smoothing, :mod:`~deepercut.tracking.smoothing`); the
engine composes them in a :class:`Chain`.
"""

from deepercut.tracking.processor import Chain, Processor
from deepercut.tracking.smoothing import OneEuroConfig, OneEuroSmoother
from deepercut.tracking.tracker import PoseTracker, TrackerConfig

__all__ = [
    "Chain",
    "OneEuroConfig",
    "OneEuroSmoother",
    "PoseTracker",
    "Processor",
    "TrackerConfig",
]
