"""Paced replay of recordings: the dry-run feed source.

``speed`` 1 replays in real time, N replays N times faster, ``None`` (``--speed max``) as
fast as the consumer takes frames. Pacing follows the recorded receive times against an
injected :class:`~mmdaemon.clock.Clock`, so tests can run it without waiting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from mmdaemon.clock import Clock
from mmdaemon.feed.recording import RecordedFrame, read_recording
from mmdaemon.model import Malformed

# At --speed max, hand the loop back this often so other tasks (supervisor, signals) run.
YIELD_EVERY = 256


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


class ReplaySource:
    """Async iterator of recorded frames, paced by their receive times."""

    def __init__(self, paths: Iterable[str | Path], speed: float | None, clock: Clock) -> None:
        self.paths = [Path(p) for p in paths]
        self.speed = speed
        self.clock = clock

    async def batches(self) -> AsyncIterator[list[RecordedFrame | Malformed]]:
        """Frames in lists: the frames due now (paced) or ``YIELD_EVERY`` at a time (max).

        One await per batch rather than per frame: at ``--speed max`` the loop's own cost
        per frame is a visible share of the whole replay.
        """
        clock, speed = self.clock, self.speed
        batch: list[RecordedFrame | Malformed] = []
        first_ns = start_ns = -1
        for item in read_recording(self.paths):
            if speed is not None and not isinstance(item, Malformed):
                recv_ns = item[0]
                if first_ns < 0:
                    first_ns, start_ns = recv_ns, clock.monotonic_ns()
                wait_ns = start_ns + (recv_ns - first_ns) / speed - clock.monotonic_ns()
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

    async def frames(self) -> AsyncIterator[RecordedFrame | Malformed]:
        """The same frames one at a time."""
        async for batch in self.batches():
            for item in batch:
                yield item
