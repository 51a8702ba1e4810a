"""Checks of network configs read from untrusted checkpoints, before anything is built.

A checkpoint's ``config`` decides how large the network is (a 7 KB file asking for 400 parts
with a pairwise head would allocate hundreds of MB, growing with the square of the part
count). :func:`check_config_values` checks every value's type against the config dataclass's
annotations and every integer against :data:`LIMITS`; :func:`check_parameter_budget` builds the
network on the ``meta`` device (no storage) and refuses more than :data:`MAX_PARAMETERS`.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

#: Most body parts a network may have (DeepLabCut projects reach a few dozen).
MAX_PARTS = 256
#: Most parts with a pairwise head: it has 2·P·(P−1) channels.
MAX_PAIRWISE_PARTS = 64
#: Most entries of a tuple-valued field (blocks, layers).
MAX_ITEMS = 16
#: Most parameters a checkpoint's network may have (ResNet-152 DeeperCut: ~60 M).
MAX_PARAMETERS = 250_000_000
#: (min, max) of integer config values by field name (every integer of a tuple field).
LIMITS: dict[str, tuple[int, int]] = {
    "num_parts": (1, MAX_PARTS),
    "width": (1, 256),
    "root_width": (1, 256),
    "head_channels": (1, 2048),
    "bottleneck_widths": (1, 2048),
    "units": (1, 64),
    "block_strides": (1, 4),
    "depth": (1, 1024),
    "output_stride": (1, 64),
    "deconv_stride": (1, 8),
    "intermediate_block": (0, 63),
    "intermediate_unit": (1, 64),
    "groups": (1, 2048),
}
#: Bounds of a deconvolution layer triple (out_channels, kernel, stride).
DECONV_LIMITS = ((1, 2048), (1, 16), (1, 8))


def check_config_values(cls: type, data: dict[str, Any], what: str) -> None:
    """Raise ``ValueError`` unless every value of ``data`` has its field's type and bounds
    (and a pairwise head has at most :data:`MAX_PAIRWISE_PARTS` parts)."""
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        _check_type(value, hints[name], f"{what} config {name!r}")
        if name in LIMITS:
            for number in _integers(value):
                low, high = LIMITS[name]
                if not low <= number <= high:
                    raise ValueError(f"{what} config {name!r} = {number} is not in [{low}, {high}]")
        if name.endswith("_layers"):
            for layer in value:
                for number, (low, high), label in zip(
                    layer, DECONV_LIMITS, ("channels", "kernel", "stride"), strict=False
                ):
                    if not low <= number <= high:
                        raise ValueError(
                            f"{what} config {name!r}: {label} {number} is not in [{low}, {high}]"
                        )
    if data.get("pairwise") is True and data.get("num_parts", 0) > MAX_PAIRWISE_PARTS:
        raise ValueError(
            f"{what} config: a pairwise head for {data['num_parts']} parts (at most "
            f"{MAX_PAIRWISE_PARTS}: it grows with the square of the part count)"
        )


def check_parameter_budget(build: Callable[[], nn.Module], what: str) -> None:
    """Raise ``ValueError`` when the network ``build`` makes has more than
    :data:`MAX_PARAMETERS` parameters; counted on the meta device, allocating nothing."""
    with torch.device("meta"):
        count = sum(p.numel() for p in build().parameters())
    if count > MAX_PARAMETERS:
        raise ValueError(f"{what} has {count:,} parameters (at most {MAX_PARAMETERS:,})")


def _check_type(value: Any, hint: Any, name: str) -> None:
    if not _matches(value, hint):
        shown = repr(value) if len(repr(value)) <= 60 else f"a {type(value).__name__}"
        raise ValueError(f"{name} must be {_describe(hint)}, got {shown}")


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, option) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )
    if hint is str:
        return isinstance(value, str)
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            return False
        args = typing.get_args(hint)
        if not args or args == (Any,):  # free-form lists (pairwise statistics): shape-checked
            return True
        if len(value) > MAX_ITEMS:
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(value) == len(args) and all(
            _matches(v, a) for v, a in zip(value, args, strict=True)
        )
    return isinstance(value, hint) if isinstance(hint, type) else False


def _describe(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _integers(value: Any) -> list[int]:
    if isinstance(value, list | tuple):
        return [n for v in value for n in _integers(v)]
    return [value] if isinstance(value, int) and not isinstance(value, bool) else []
