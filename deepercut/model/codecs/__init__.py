"""Codecs: each map the network regresses, encoded into its training target and decoded back
into pixels in one module, with its one normalisation (as MMPose's ``codecs/``).

- :mod:`.locref`: location refinement, offsets from a cell centre to its joint ÷
  :data:`~.locref.LOCREF_STD`.
- :mod:`.offsets`: pairwise offsets, joint-to-joint vectors standardised per (part, other
  part) with their mean and std.
"""

from deepercut.model.codecs.locref import LOCREF_STD, decode_locref, encode_locref
from deepercut.model.codecs.offsets import (
    decode_offsets,
    encode_offsets,
    expand_pairwise,
    offset_statistics,
    other_parts,
)

__all__ = [
    "LOCREF_STD",
    "decode_locref",
    "decode_offsets",
    "encode_locref",
    "encode_offsets",
    "expand_pairwise",
    "offset_statistics",
    "other_parts",
]
