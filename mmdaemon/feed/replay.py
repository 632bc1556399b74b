"""Paced replay of recordings: the dry-run feed source.

``speed`` 1 replays in real time, N replays N times faster, ``None`` (``--speed max``) as
fast as the consumer takes frames. Pacing follows the recorded receive times against an
injected :class:`~mmdaemon.clock.Clock`, so tests can run it without waiting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import TypeVar

from mmdaemon.clock import Clock
from mmdaemon.feed.recording import RecordedFrame, read_recording
from mmdaemon.model import Malformed

# At --speed max, hand the loop back this often so other tasks (supervisor, signals) run.
YIELD_EVERY = 256
T = TypeVar("T")


def parse_speed(text: str) -> float | None:
    """``"max"`` -> None; a positive number -> that factor. Raises ValueError otherwise."""
    if text == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        raise ValueError(f"speed must be a positive number or 'max', got {text!r}") from None
    if not speed > 0 or speed == float("inf"):
        raise ValueError(f"speed must be a positive number or 'max', got {text!r}")
    return speed


async def paced(items: Iterable[T], time_of: Callable[[T], int | None], speed: float | None,
                clock: Clock) -> AsyncIterator[list[T]]:
    """``items`` in lists: the ones due now by ``time_of`` (ns; None: not timed), paced at
    ``speed`` against ``clock``, or ``YIELD_EVERY`` at a time at ``speed`` None (max).

    One await per batch rather than per item: at ``--speed max`` the loop's own cost per
    item is a visible share of the whole replay.
    """
    batch: list[T] = []
    first_ns = start_ns = -1
    for item in items:
        if speed is not None:
            ts = time_of(item)
            if ts is not None:
                if first_ns < 0:
                    first_ns, start_ns = ts, clock.monotonic_ns()
                wait_ns = start_ns + (ts - first_ns) / speed - clock.monotonic_ns()
                if wait_ns > 0:
                    if batch:
                        yield batch
                        batch = []
                    await clock.sleep(wait_ns / 1e9)
        batch.append(item)
        if len(batch) >= YIELD_EVERY:
            yield batch
            batch = []
            if speed is None:  # let other tasks (supervisor, signals) run
                await clock.sleep(0)
    if batch:
        yield batch


def _recv_ns(item: RecordedFrame | Malformed) -> int | None:
    return None if isinstance(item, Malformed) else item[0]


class ReplaySource:
    """Async iterator of recorded frames, paced by their receive times."""

    def __init__(self, paths: Iterable[str | Path], speed: float | None, clock: Clock) -> None:
        self.paths = [Path(p) for p in paths]
        self.speed = speed
        self.clock = clock

    def batches(self) -> AsyncIterator[list[RecordedFrame | Malformed]]:
        """Frames in lists (see :func:`paced`)."""
        return paced(read_recording(self.paths), _recv_ns, self.speed, self.clock)

    async def frames(self) -> AsyncIterator[RecordedFrame | Malformed]:
        """The same frames one at a time."""
        async for batch in self.batches():
            for item in batch:
                yield item
