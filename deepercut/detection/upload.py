"""Host → GPU copies of uint8 frame batches through reused pinned buffers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


class PinnedUploader:
    """Host → GPU copies of uint8 frame batches through reused pinned buffers on a side stream.

    Frames are stacked straight into a page-locked buffer (one host copy, no allocation per
    batch), copied asynchronously on a dedicated CUDA stream, and the compute stream waits
    for that copy only where it uses the result. Two buffers alternate, so filling the next
    batch never waits for a copy still reading the previous one unless both are in flight.

    Args:
        device: the CUDA device.
        slots: pinned buffers in rotation.
    """

    def __init__(self, device: torch.device, slots: int = 2) -> None:
        if device.type != "cuda":
            raise ValueError(f"pinned uploads are for CUDA devices, got {device}")
        self.device = device
        self.stream = torch.cuda.Stream(device)
        self._buffers: list[Tensor | None] = [None] * slots
        self._copied: list[torch.cuda.Event | None] = [None] * slots
        self._next = 0

    def upload(self, images: Sequence[np.ndarray]) -> Tensor:
        """The images as one uint8 [B, H, W, 3] tensor on the device (usable on the current
        stream)."""
        slot, self._next = self._next, (self._next + 1) % len(self._buffers)
        shape = (len(images), *images[0].shape)
        if self._copied[slot] is not None:
            self._copied[slot].synchronize()  # the buffer's last copy has read it
        buffer = self._buffers[slot]
        if buffer is None or buffer.shape[1:] != shape[1:] or buffer.shape[0] < shape[0]:
            buffer = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
            self._buffers[slot] = buffer
        host = buffer[: shape[0]]
        np.stack(images, out=host.numpy())
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self.stream):
            batch = host.to(self.device, non_blocking=True)
            done = torch.cuda.Event()
            done.record(self.stream)
        self._copied[slot] = done
        compute.wait_event(done)
        batch.record_stream(compute)  # allocated on the copy stream, used on compute
        return batch
