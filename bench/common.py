"""Helpers shared by the benchmarks: load frames once, time the best of several runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from mmdaemon.feed.recording import read_recording

REPO = Path(__file__).resolve().parents[1]
SPOT_FILES = [
    REPO / "data" / "binance-spot-btcusdt" / "btcusdt_20240808.gz",
    REPO / "data" / "binance-spot-btcusdt" / "btcusdt_20240809.gz",
]


def load_frames(paths: list[Path] = SPOT_FILES) -> list[tuple[int, bytes]]:
    """All frames of the recordings in memory, so I/O and gunzip are outside the timing."""
    return [item for item in read_recording(paths) if type(item) is tuple]  # type: ignore[misc]


def best_of(runs: int, fn: Callable[[], object]) -> float:
    """Shortest wall time in seconds of ``runs`` calls of ``fn``."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def percentile_us(sorted_ns: list[int], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ascending ns values, in us to 0.1 us."""
    if not sorted_ns:
        return 0.0
    return round(sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000, 1)
