"""``feed.busy_poll``: the daemon's event loop never sleeps (a whole core spent so that each
frame is read and handled warm), and nothing it decides changes. Real ``mmdaemon replay``
processes pacing a slice of the bundled recording at its recorded rate, one with the key
and one without; how often each slept is the kernel's account of each child (``wait4``:
its voluntary context switches, which, unlike CPU time, no load on the machine takes
away)."""

from __future__ import annotations

import gzip
import os
import resource
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.conftest import SPOT_FILES

REPO = Path(__file__).resolve().parents[2]
LINES = 500  # of the bundled recording: about 4.5 s of market at its recorded pace


def slice_of_recording(tmp: Path) -> tuple[Path, float]:
    """The first :data:`LINES` lines as a recording of their own, and the market time they
    span (s)."""
    if not SPOT_FILES[0].exists():
        pytest.skip(f"{SPOT_FILES[0]} not present: the bundled recording is needed")
    with gzip.open(SPOT_FILES[0], "rb") as f:
        lines = [next(f) for _ in range(LINES)]
    path = tmp / "slice.gz"
    path.write_bytes(gzip.compress(b"".join(lines)))
    first, last = (int(line.split(b" ", 1)[0]) for line in (lines[0], lines[-1]))
    return path, (last - first) / 1e9


def replay(tmp: Path, recording: Path, busy_poll: bool
           ) -> tuple[dict[str, object], resource.struct_rusage]:
    """The replay's JSON summary and its process's resource usage."""
    text = (REPO / "config" / "dryrun.toml").read_text()
    text = text.replace('speed = "max"', f'speed = "max"\nbusy_poll = {str(busy_poll).lower()}')
    config = tmp / f"busy-{busy_poll}.toml"
    config.write_text(text)
    with (tmp / f"busy-{busy_poll}.err").open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mmdaemon", "replay", "--config", str(config), "--json",
             "--speed", "1", "--cache", "off", str(recording)],
            stdout=subprocess.PIPE, stderr=err, cwd=tmp)
        assert proc.stdout is not None
        out = proc.stdout.read()
        # this child's own account (wait4), whatever else the test process reaps meanwhile
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, (tmp / f"busy-{busy_poll}.err").read_text()
    summary: dict[str, object] = orjson.loads(out)
    return summary, usage


def test_busy_polling_spends_the_idle_time_and_decides_the_same(tmp_path: Path) -> None:
    recording, market_s = slice_of_recording(tmp_path)
    assert market_s > 2  # paced: most of the run is idle between frames
    idle, idle_usage = replay(tmp_path, recording, busy_poll=False)
    busy, busy_usage = replay(tmp_path, recording, busy_poll=True)
    # the paced replay sleeps in epoll between frames (346-436 times on this slice); the
    # spinning loop never does, and what is left is start-up and exit (42-86)
    assert busy_usage.ru_nvcsw * 2 < idle_usage.ru_nvcsw, (busy_usage, idle_usage)
    for key in ("frames", "quotes", "orders", "fills", "position_lots", "total_pnl"):
        assert busy[key] == idle[key], key
    assert idle["orders"]  # it quoted: the comparison is not of two empty runs
