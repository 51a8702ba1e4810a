"""Argument types shared by the subcommands."""

from __future__ import annotations

import argparse


def parse_hw(text: str) -> tuple[int, int]:
    """``"480x640"`` (H×W) → ``(480, 640)``."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 480x640, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return h, w


def parse_wh(text: str) -> tuple[int, int]:
    """``"1280x720"`` (W×H, as video sizes are written) → ``(1280, 720)``."""
    try:
        width, height = parse_hw(text)  # the same grammar, read the other way round
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected WxH, e.g. 1280x720, got {text!r}") from None
    return width, height
