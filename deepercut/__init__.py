"""deepercut: streaming multi-person pose estimation (DeeperCut detector + SPLP solvers)."""

from deepercut.skeleton import MPII14, Skeleton
from deepercut.types import Candidates, Frame, Poses, Problem, Solution

__version__ = "0.1.0"

__all__ = [
    "MPII14",
    "Candidates",
    "Frame",
    "Poses",
    "Problem",
    "Skeleton",
    "Solution",
    "__version__",
]
