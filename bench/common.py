"""Helpers shared by the benchmarks: load frames once, time the best of several runs, run
a process whose JSON log lines are collected."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from mmdaemon.feed.recording import read_recording

Event = dict[str, Any]

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A subprocess whose stdout JSON lines are collected by a thread."""

    def __init__(self, args: list[str]) -> None:
        self.events: list[Event] = []
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue  # not a log line

    def wait(self, start: int, timeout: float, **fields: Any) -> tuple[int, Event]:
        """Index and event of the first event from ``start`` on with these ``fields``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events
            for i in range(start, len(events)):
                if all(events[i].get(k) == v for k, v in fields.items()):
                    return i, events[i]
            if self.proc.poll() is not None:
                raise RuntimeError(f"process exited with {self.proc.returncode}")
            time.sleep(0.01)
        raise TimeoutError(f"no event {fields} within {timeout} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
