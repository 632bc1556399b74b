"""Reconnect backoff shared by every connection shell (market-data feed, order entry)."""

from __future__ import annotations

from collections.abc import Callable


def backoff_delay(attempt: int, initial_s: float, max_s: float, rng: Callable[[], float]) -> float:
    """Seconds to wait before reconnect ``attempt`` (1-based): exponential, capped, with
    "equal jitter" (half fixed, half random) so many instances do not reconnect in step."""
    ceiling: float = min(max_s, initial_s * 2.0 ** (attempt - 1))
    return ceiling / 2 + rng() * ceiling / 2
