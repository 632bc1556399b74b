"""A progress line for long replays: frames, simulated time, speed.

Shown only on a terminal, rewritten in place on stderr about twice a second; silent in
``--json`` mode and when stderr is not a terminal (CI logs, pipes).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TextIO

from mmdaemon.clock import Clock, SystemClock
from mmdaemon.snapshot import Observed


def progress_line(frames: int, first_ns: int, now_ns: int, wall_s: float,
                  reference_frames: int | None = None) -> str:
    """``frames``, the simulated clock and how much faster than real time it runs; with a
    reference feed, its frames too."""
    simulated_s = max(0, now_ns - first_ns) / 1e9
    speed = simulated_s / wall_s if wall_s > 0 else 0.0
    clock = (datetime.fromtimestamp(now_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")
             if now_ns else "-")
    reference = "" if reference_frames is None else f"  {reference_frames:,} reference frames"
    return (f"\r{frames:>12,} frames  {clock} UTC  {simulated_s:>9,.1f} s simulated  "
            f"{speed:>8,.1f}x real time{reference}")


async def show_progress(service: Observed, stream: TextIO, interval_s: float = 0.5,
                        clock: Clock | None = None) -> None:
    """Redraw the progress line every ``interval_s`` until cancelled (then end it with a
    newline). The real time it divides by, and waits, is ``clock``'s (the system's by
    default)."""
    clock = clock or SystemClock()
    start_ns = clock.monotonic_ns()
    first_ns = 0
    try:
        while True:
            await clock.sleep(interval_s)
            snap = service.snapshot()
            now_ns = snap.now_ns
            if now_ns and not first_ns:
                first_ns = now_ns
            reference = snap.feed.reference
            stream.write(progress_line(snap.market.frames, first_ns, now_ns,
                                       (clock.monotonic_ns() - start_ns) / 1e9,
                                       None if reference is None else reference.frames))
            stream.flush()
    finally:
        stream.write("\n")
        stream.flush()
