"""Detection: frames → candidates (letterbox, the network on its backend, candidate
extraction), one :class:`NetworkDetector` for every caller."""

from deepercut.detection.detector import NetworkDetector
from deepercut.detection.runner import BACKENDS, Runner, build_runner, custom_runner

__all__ = ["BACKENDS", "NetworkDetector", "Runner", "build_runner", "custom_runner"]
