"""How a live source that fails or ends is reopened."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Reconnect"]

_DEFAULT_RECONNECT_ATTEMPTS = 5


@dataclass(frozen=True)
class Reconnect:
    """Reconnection policy: up to ``attempts`` reopenings, waiting ``delay·2^k`` (at most
    ``max_delay``) seconds before attempt ``k``."""

    attempts: int = _DEFAULT_RECONNECT_ATTEMPTS
    delay: float = 0.5
    max_delay: float = 8.0

    def wait(self, attempt: int) -> float:
        """Seconds to wait before the 0-based ``attempt``."""
        return min(self.max_delay, self.delay * 2.0**attempt)
