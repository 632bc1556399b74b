"""The replay progress line: on a terminal only, never in --json mode."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from mmdaemon.progress import progress_line, show_progress
from tests.conftest import SPOT_FILES
from tests.helpers import SteppedClock, run_with_terminal_stderr, until


def test_progress_line_by_hand() -> None:
    # 12.5 s of market in 0.5 s of wall time: 25x real time
    line = progress_line(1234, 1_723_161_254_000_000_000, 1_723_161_266_500_000_000, 0.5)
    assert "1,234 frames" in line and "2024-08-08 23:54:26 UTC" in line
    assert "12.5 s simulated" in line and "25.0x real time" in line
    assert line.startswith("\r")


def run_with_tty_stderr(*args: str) -> tuple[int, str, bytes]:
    """Run mmdaemon with stderr on a pseudo-terminal; returns (status, stdout, tty bytes)."""
    code, out, seen = run_with_terminal_stderr([sys.executable, "-m", "mmdaemon", *args])
    return code, out.decode(), seen


def test_progress_line_counts_the_reference_frames_when_there_is_a_reference() -> None:
    line = progress_line(1_500, 1_723_161_254_000_000_000, 1_723_161_264_000_000_000, 2.0,
                         reference_frames=3_250)
    assert line.endswith("5.0x real time  3,250 reference frames")
    assert "reference" not in progress_line(1_500, 1, 2, 2.0)


def test_shown_on_a_terminal_silent_with_json(tmp_path: Path) -> None:
    # a paced replay long enough for a few redraws: 2 s of market at 2x
    import gzip

    with gzip.open(SPOT_FILES[0], "rb") as f:
        lines = f.read().splitlines()[:400]
    short = tmp_path / "short.gz"
    with gzip.open(short, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    code, out, tty = run_with_tty_stderr("replay", str(short), "--speed", "2")
    assert code == 0 and "frames" in out
    assert b"x real time" in tty and b"simulated" in tty
    code, out, tty = run_with_tty_stderr("replay", str(short), "--speed", "2", "--json")
    assert code == 0 and out.startswith("{")
    assert b"x real time" not in tty
    # not a terminal (a pipe): silent too
    proc = subprocess.run([sys.executable, "-m", "mmdaemon", "replay", str(short), "--speed",
                           "2"], capture_output=True, timeout=60)
    assert proc.returncode == 0 and b"x real time" not in proc.stderr


async def test_redrawn_on_the_given_clock_and_the_speed_is_against_its_time() -> None:
    """Redrawn every ``interval_s`` of the injected clock (and not before), the speed
    divides simulated time by that clock's elapsed time."""
    clock = SteppedClock()
    market = SimpleNamespace(frames=0)
    # what a snapshot of the service says (no reference feed)
    state = SimpleNamespace(market=market, now_ns=0, feed=SimpleNamespace(reference=None))
    service = SimpleNamespace(snapshot=lambda: state)
    stream = io.StringIO()
    shower = asyncio.create_task(show_progress(service, stream, 0.5, clock=clock))
    t0 = 1_723_161_254_000_000_000
    for redraw in range(1, 4):
        await until(lambda: clock.deadlines == [redraw * 500_000_000])  # noqa: B023
        assert stream.getvalue().count("\r") == redraw - 1
        state.now_ns = t0 + 10 * redraw * 500_000_000  # the market runs 10x the clock
        market.frames = redraw
        clock.advance(0.5)
        await until(lambda: stream.getvalue().count("\r") == redraw)  # noqa: B023
    shower.cancel()
    await asyncio.gather(shower, return_exceptions=True)
    lines = stream.getvalue().split("\r")[1:]
    # the first redraw starts the simulated clock: 10 s of market in 1.5 s by the third
    assert "0.0 s simulated" in lines[0] and "0.0x real time" in lines[0]
    assert lines[2].split()[:2] == ["3", "frames"] and "10.0 s simulated" in lines[2]
    assert "6.7x real time" in lines[2]
