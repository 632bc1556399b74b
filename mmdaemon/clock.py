"""Injected time. The core never reads a clock; shells get one of these."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic time in ns and a way to wait on it."""

    def monotonic_ns(self) -> int: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real monotonic clock and asyncio's sleep."""

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ManualClock:
    """A clock that only moves when slept on or advanced: deterministic pacing in tests."""

    def __init__(self, start_ns: int = 0) -> None:
        self.now_ns = start_ns
        self.slept_s: list[float] = []

    def monotonic_ns(self) -> int:
        return self.now_ns

    async def sleep(self, seconds: float) -> None:
        self.slept_s.append(seconds)
        self.now_ns += round(seconds * 1e9)
        await asyncio.sleep(0)
