"""Injected time. The core never reads a clock; shells get one of these."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic time in ns (for intervals and deadlines), wall time in ns since the epoch
    (for stamps a person or another machine reads: the journal, the order log, the venue's
    request ``timestamp``) and a way to wait on monotonic time."""

    def monotonic_ns(self) -> int: ...

    def wall_ns(self) -> int: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real monotonic and wall clocks and asyncio's sleep."""

    # the C functions themselves: no Python frame per reading (some are read per frame)
    monotonic_ns = staticmethod(time.monotonic_ns)
    wall_ns = staticmethod(time.time_ns)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ManualClock:
    """A clock that only moves when slept on or advanced: deterministic pacing in tests.
    Wall time is ``wall_offset_ns`` ahead of the monotonic reading, so the two move together
    (a test can still step the wall clock alone by changing the offset)."""

    def __init__(self, start_ns: int = 0, wall_offset_ns: int = 1_700_000_000 * 10**9) -> None:
        self.now_ns = start_ns
        self.wall_offset_ns = wall_offset_ns
        self.slept_s: list[float] = []

    def monotonic_ns(self) -> int:
        return self.now_ns

    def wall_ns(self) -> int:
        return self.now_ns + self.wall_offset_ns

    async def sleep(self, seconds: float) -> None:
        self.slept_s.append(seconds)
        self.now_ns += round(seconds * 1e9)
        await asyncio.sleep(0)
