"""Log volume of a long replay: steady-state quoting keeps journald's budget (issue #7).

``mmdaemon replay`` of the bundled recording (two files, 650.6 s of market, 99,574
frames) runs in a subprocess; its log (stderr, one JSON object per line) is counted per
simulated minute. A line is placed in its minute by the event time it carries (``ts_ns``
on fills, ``recv_ns`` on feed reports); lines without one (start-up, shutdown) are added
to every minute, as if they had all landed in the busiest one.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import SPOT_FILES

MINUTE_NS = 60 * 10**9
MAX_AVG_PER_MINUTE = 30
MAX_IN_ANY_MINUTE = 120
GARBAGE_LINES = 5000


@dataclass
class Volume:
    """A replay's summary and log, and the log's lines per simulated minute."""

    summary: dict[str, Any]
    events: list[dict[str, Any]]
    minutes: float  # simulated span
    per_minute: Counter[int]  # minute index -> lines carrying an event time in it
    untimed: int  # lines with no event time

    @property
    def average(self) -> float:
        return len(self.events) / self.minutes

    @property
    def worst_minute(self) -> int:
        return max(self.per_minute.values(), default=0) + self.untimed

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]


def _span_ns(files: list[Path]) -> tuple[int, int]:
    """First and last receive time in the recordings (garbage lines carry none)."""
    stamps = [int(line.split(b" ", 1)[0]) for path in files
              for line in gzip.decompress(path.read_bytes()).splitlines()
              if line[:1].isdigit()]
    return stamps[0], stamps[-1]


# `python -m mmdaemon` with the rate limiter switched off: what the log was before it
UNLIMITED = (
    "import sys, functools, mmdaemon.log as log\n"
    "log.configure = functools.partial(log.configure, rate_limit=None)\n"
    "from mmdaemon.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def replay_volume(files: list[Path], limited: bool = True) -> Volume:
    """Run the replay with the shipped config at its log level; measure its log."""
    entry = ["-m", "mmdaemon"] if limited else ["-c", UNLIMITED]
    proc = subprocess.run(
        [sys.executable, *entry, "replay", *map(str, files), "--json"],
        capture_output=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    events = [orjson.loads(line) for line in lines]  # every line is one JSON object
    assert all(type(e) is dict for e in events)
    start, end = _span_ns(files)
    per_minute: Counter[int] = Counter()
    untimed = 0
    for e in events:
        t = e.get("ts_ns", e.get("recv_ns"))
        if type(t) is int and start <= t <= end:
            per_minute[(t - start) // MINUTE_NS] += 1
        else:
            untimed += 1
    return Volume(orjson.loads(proc.stdout), events, (end - start) / MINUTE_NS,
                  per_minute, untimed)


def test_steady_state_quoting_log_volume_is_bounded() -> None:
    """The plain replay: at most 30 lines per simulated minute on average, 120 in any.

    Measured: 68 lines over 10.84 simulated minutes, 6.3 per minute on average, at most
    30 in one minute (21 fills plus all 9 untimed lines); 59 of the 68 are fills. There
    is no per-frame line at info, so the limiter has nothing to do here (the count is
    the same without it) and must not drop a fill.
    """
    v = replay_volume(SPOT_FILES)
    assert v.summary["frames"] == 99574 and v.summary["fills"] > 10
    assert v.average <= MAX_AVG_PER_MINUTE, (v.average, v.per_minute)
    assert v.worst_minute <= MAX_IN_ANY_MINUTE, (v.worst_minute, v.per_minute)
    # the important lines are all there: one per fill, and the shutdown line
    assert len(v.named("fill")) == v.summary["fills"]
    assert len(v.named("stopped")) == 1
    assert not v.named("log_suppressed")


def _with_garbage(files: list[Path], out_dir: Path, garbage: int) -> list[Path]:
    """Copies of ``files`` with ``garbage`` unparseable lines spread evenly through them."""
    contents = [gzip.decompress(path.read_bytes()).splitlines(keepends=True) for path in files]
    total = sum(map(len, contents))
    copies, seen, placed = [], 0, 0
    for path, lines in zip(files, contents, strict=True):
        out: list[bytes] = []
        for line in lines:
            out.append(line)
            seen += 1
            while placed < garbage * seen // total:  # garbage after every total/garbage
                out.append(b"garbage line %d\n" % placed)  # not '<recv_ns> <frame>'
                placed += 1
        copy = out_dir / path.name
        with gzip.open(copy, "wb") as f:
            f.writelines(out)
        copies.append(copy)
    assert placed == garbage
    return copies


def test_malformed_storm_is_rate_limited_but_counted(tmp_path: Path) -> None:
    """5,000 malformed lines: the log stays bounded, the counters stay exact.

    Measured: 79 lines in all (10 ``frame_malformed``, one ``log_suppressed`` for 4,990,
    and the 68 of the plain replay), 7.3 per simulated minute on average and at most 31
    in one; for the same storm without the limiter see the next test. The limiter lets
    10 lines per 10 s of wall time through and the replay runs for ~2 s: fewer than 200
    holds as long as it takes under 190 s.
    """
    v = replay_volume(_with_garbage(SPOT_FILES, tmp_path, GARBAGE_LINES))
    # the counter is not limited, only the log
    assert v.summary["malformed"] == GARBAGE_LINES
    malformed = v.named("frame_malformed")
    assert 1 <= len(malformed) < 200
    # every malformed frame is accounted for: logged, or counted on a later line of its
    # kind, or in the summary written when the process ends
    later = sum(e.get("suppressed", 0) for e in malformed)
    summaries = [e for e in v.named("log_suppressed")
                 if e["suppressed_event"] == "frame_malformed"]
    assert len(malformed) + later + sum(e["suppressed"] for e in summaries) == GARBAGE_LINES
    assert all(e["level"] == "warning" for e in summaries)
    # bounded as the plain replay, and the important lines were not touched
    assert v.average <= MAX_AVG_PER_MINUTE, (v.average, v.per_minute)
    assert v.worst_minute <= MAX_IN_ANY_MINUTE, (v.worst_minute, v.per_minute)
    assert len(v.named("fill")) == v.summary["fills"] > 10
    assert len(v.named("stopped")) == 1


def test_without_the_limiter_the_storm_breaks_the_bound(tmp_path: Path) -> None:
    """The same storm with the limiter off: the bounds above are what the limiter buys.

    Measured: 5,068 lines, 467 per simulated minute on average, 667 in the worst one.
    """
    v = replay_volume(_with_garbage(SPOT_FILES, tmp_path, GARBAGE_LINES), limited=False)
    assert len(v.named("frame_malformed")) == v.summary["malformed"] == GARBAGE_LINES
    assert v.average > MAX_AVG_PER_MINUTE and v.worst_minute > MAX_IN_ANY_MINUTE
