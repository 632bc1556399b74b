"""Impossible receive times cost what the recording costs: one line stamped int64-max (the
issue's: 55 s and 5.96 GB instead of 0.6 s), one stamped in the far past, one in the
far-but-possible future and one a decade back are malformed lines, counted and named in the
summary, and `mmdaemon replay --speed max` of the real recording with one of them takes
under twice the CPU time and the memory of the clean recording, measured on the real
process.

Each replay runs under a small interpreter that reads its peak RSS with
``getrusage(RUSAGE_CHILDREN)``: measured from the test process itself the figure would be the
test process's own (subprocess forks by vfork, and the kernel counts the parent's memory
until exec). The interpreter caps the replay's address space at 2 GiB, so a regression
fails at once instead of taking the machine's memory.
"""

from __future__ import annotations

import gzip
import itertools
import random
import re
import subprocess
import sys
import tracemalloc
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from mmdaemon.analytics import SampleRow, compute_metrics, pnl_series
from mmdaemon.config import ConfigError
from mmdaemon.config_file import load_config
from mmdaemon.feed import recording as recording_module
from mmdaemon.feed.recording import (
    CONFIRM_LINES,
    MAX_RECV_NS,
    MIN_RECV_NS,
    RecordedFrame,
    read_recording,
)
from mmdaemon.feed.replay import exchange_timed
from mmdaemon.model import Fill, Instrument, Malformed, Side
from mmdaemon.venues.binance import frame_event_ns
from tests.conftest import SPOT_FILES
from tests.helpers import write_config

MEASURE = """
import json, resource, subprocess, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
proc = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
json.dump({"rc": proc.returncode, "cpu_s": usage.ru_utime + usage.ru_stime,
           "peak_kb": usage.ru_maxrss, "stdout": proc.stdout.decode(errors="replace"),
           "stderr": proc.stderr[-3000:].decode(errors="replace")}, sys.stdout)
"""
INT64_MAX = 2**63 - 1
DAY_NS = 86_400 * 10**9


@dataclass(frozen=True)
class Run:
    cpu_s: float
    peak_kb: int
    summary: dict[str, object]


def write_plain(path: Path, lines: list[bytes]) -> Path:
    """A recording as plain text (the readers take it as well as gzip): quick to write."""
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def measured_replay(path: Path) -> Run:
    """``mmdaemon replay --speed max --json path`` in its own process, measured."""
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, sys.executable, "-m", "mmdaemon", "replay",
         "--speed", "max", "--json", str(path)],
        capture_output=True, timeout=120, check=True)
    result = orjson.loads(out.stdout)
    assert result["rc"] == 0, result["stderr"]
    return Run(result["cpu_s"], result["peak_kb"],
               orjson.loads(result["stdout"]))


@pytest.fixture(scope="module")
def recording() -> list[bytes]:
    """Both real spot files, ~99,600 lines (~1 s of CPU to replay: start-up is a small part)."""
    lines: list[bytes] = []
    for path in SPOT_FILES:
        with gzip.open(path, "rb") as f:
            lines += f.read().splitlines()
    return lines


@pytest.fixture(scope="module")
def clean(recording: list[bytes], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_plain(tmp_path_factory.mktemp("clean") / "clean.txt", recording)


@pytest.fixture(scope="module")
def baseline(clean: Path) -> Run:
    return measured_replay(clean)


def restamped(lines: list[bytes], at: int, recv_ns: int) -> list[bytes]:
    """``lines`` with one more line before line ``at``: a copy of it stamped ``recv_ns``."""
    frame = lines[at].partition(b" ")[2]
    return [*lines[:at], b"%d %s" % (recv_ns, frame), *lines[at:]]


def first_ns(lines: list[bytes]) -> int:
    return int(lines[0].partition(b" ")[0])


T0 = 1723161253937085768  # the bundled recording's first receive time
S = 10**9

CASES = {
    # where the hostile line goes (a fraction of the file), and its time from the first
    # line's (t0) or from the time of the line it goes before (here)
    "int64_max": (0.5, lambda t0, here: INT64_MAX),
    "far_past_first": (0.0, lambda t0, here: 1),  # the very first line, 1 ns after 1970
    "far_future": (0.5, lambda t0, here: t0 + 75 * 365 * DAY_NS),  # 2099: before 2100
    "decade_back": (0.5, lambda t0, here: t0 - 10 * 365 * DAY_NS),  # 2014: a huge step back
    # the review's: just under the hour bound there was, which froze the replay's clock
    "plus_59_min": (0.5, lambda t0, here: here + 3599 * S),
    "minus_59_min": (0.5, lambda t0, here: here - 3599 * S),
}


@pytest.mark.parametrize("case", CASES)
def test_an_impossible_receive_time_is_malformed_and_costs_under_twice_the_clean_replay(
    tmp_path: Path, recording: list[bytes], baseline: Run, case: str,
) -> None:
    where, stamp = CASES[case]
    at = int(len(recording) * where)
    hostile_ns = stamp(first_ns(recording), first_ns(recording[at:]))
    path = write_plain(tmp_path / f"{case}.txt", restamped(recording, at, hostile_ns))
    run = measured_replay(path)
    summary, expected = run.summary, baseline.summary
    # one malformed line, named, and nothing else changed: the same frames, the same run
    assert summary["malformed"] == 1 and expected["malformed"] == 0, summary
    assert f"{case}.txt:{at + 1}: receive time {hostile_ns}" in str(summary["first_malformed"])
    assert summary["time_backsteps"] == expected["time_backsteps"] == 0
    for key in ("frames", "fills", "orders", "total_pnl"):
        assert summary[key] == expected[key], key
    assert run.peak_kb < 2 * baseline.peak_kb, (run.peak_kb, baseline.peak_kb)
    # CPU, not wall time: a replay at --speed max is one thread, so its wall time measures
    # the machine's load (the other test worker's processes); the cost bug this guards
    # against took 90 times the CPU, every time
    assert run.cpu_s < 2 * baseline.cpu_s, (run.cpu_s, baseline.cpu_s)


# -- the rules, line by line ------------------------------------------------------------------

def read_times(tmp_path: Path, times: list[int]) -> list[tuple[int, int] | str]:
    """``read_recording`` of one line per time (line n's frame is ``{"n":n}``): ``(time,
    n)`` for a frame, the reason for a malformed line."""
    path = write_plain(tmp_path / "r.txt", [b'%d {"n":%d}' % (t, n) for n, t in
                                            enumerate(times, 1)])
    return [item.reason if isinstance(item, Malformed) else (item[0], orjson.loads(item[1])["n"])
            for item in read_recording([path])]


def test_one_line_that_jumps_is_malformed_whichever_way_and_the_rest_is_untouched(
    tmp_path: Path,
) -> None:
    for odd in (T0 + 2 * 3600 * S, T0 - 2 * 3600 * S, T0 + 3599 * S, T0 - 3599 * S,
                T0 + 62 * S, T0 - 5 * S, MIN_RECV_NS - 1, MAX_RECV_NS, 0, INT64_MAX):
        times = [T0, T0 + S, odd, T0 + 2 * S, T0 + 3 * S]
        out = read_times(tmp_path, times)
        assert out[:2] == [(T0, 1), (T0 + S, 2)] and out[3:] == [(T0 + 2 * S, 4),
                                                                 (T0 + 3 * S, 5)], out
        assert isinstance(out[2], str) and out[2].startswith(f"r.txt:3: receive time {odd} ")
    # within 60 s ahead or 5 s back is time (a quiet stream, a stepped clock): it is no lie
    near = [T0, T0 + 60 * S, T0 + 55 * S]
    assert read_times(tmp_path, near) == [(t, n) for n, t in enumerate(near, 1)]


def test_a_recording_that_really_jumps_is_believed_after_eight_lines_and_loses_none(
    tmp_path: Path,
) -> None:
    day = 86_400 * S
    for jump in (day, -day, 365 * day):
        times = [T0, T0 + S] + [T0 + jump + k * S for k in range(CONFIRM_LINES + 2)]
        assert read_times(tmp_path, times) == [(t, n) for n, t in enumerate(times, 1)]
    # one line short of that, then back: those lines were the odd ones, reported one by one
    short = [T0, T0 + S] + [T0 + day + k * S for k in range(CONFIRM_LINES - 1)] + [T0 + 2 * S]
    out = read_times(tmp_path, short)
    assert out[:2] == [(T0, 1), (T0 + S, 2)] and out[-1] == (T0 + 2 * S, len(short))
    assert [r.split(":")[1] for r in out[2:-1] if isinstance(r, str)] == [
        str(n) for n in range(3, CONFIRM_LINES + 2)]


def test_the_first_line_is_time_once_the_next_agrees_with_it(tmp_path: Path) -> None:
    future = T0 + 75 * 365 * 86_400 * S  # 2099: inside the absolute bounds
    out = read_times(tmp_path, [future, T0, T0 + S])
    assert isinstance(out[0], str) and out[0].startswith(f"r.txt:1: receive time {future}")
    assert out[1:] == [(T0, 2), (T0 + S, 3)]
    assert read_times(tmp_path, [T0]) == [(T0, 1)]  # nothing to contradict a single line
    # files go on from one another: a next file a week later is believed the same way
    week = [T0, T0 + S] + [T0 + 7 * 86_400 * S + k for k in range(CONFIRM_LINES)]
    first = write_plain(tmp_path / "a.txt", [b"%d {}" % t for t in week[:2]])
    second = write_plain(tmp_path / "b.txt", [b"%d {}" % t for t in week[2:]])
    assert [item[0] for item in read_recording([first, second])] == week
    # ... but what jumped at the very end, with nothing to confirm it, is not time
    out = [item for item in read_recording([first, write_plain(tmp_path / "c.txt", [
        b"%d {}" % (T0 + 7 * 86_400 * S)])])]
    assert out[:2] == [(T0, b"{}"), (T0 + S, b"{}")] and isinstance(out[2], Malformed)


def test_an_overlong_line_is_skipped_in_pieces_never_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(recording_module, "_MAX_LINE", 4096)  # 64 MiB in the real reader
    path = tmp_path / "long.txt"
    path.write_bytes(b'%d {"n":1}\n%d {"p":"%s"}\n%d {"n":3}\n' % (
        T0, T0 + 1, b"9" * (8 << 20), T0 + 2))
    tracemalloc.start()
    try:
        items = list(read_recording([path]))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert items[0] == (T0, b'{"n":1}') and items[2] == (T0 + 2, b'{"n":3}')
    assert isinstance(items[1], Malformed) and items[1].reason.startswith("long.txt:2: longer")
    assert peak < 1 << 20, peak  # the 8 MiB line never was in memory


# -- the exchange clock ---------------------------------------------------------------------

E0 = 1723161255208  # ms, an event time of the bundled recording


def trade_at(e_ms: int) -> bytes:
    return b'{"stream":"btcusdt@trade","data":{"e":"trade","E":%d,"s":"BTCUSDT"}}' % e_ms


def clock_of(events_ms: list[int]) -> list[int]:
    frames: list[RecordedFrame | Malformed] = [(T0 + n, trade_at(e)) for n, e in
                                               enumerate(events_ms)]
    return [item[0] // 1_000_000 for item in exchange_timed(frames, frame_event_ns)
            if not isinstance(item, Malformed)]


def test_an_impossible_event_time_does_not_move_the_exchange_clock() -> None:
    later = E0 + 75 * 365 * 86_400_000  # 2099
    assert clock_of([E0, E0 + 1, later, E0 + 2]) == [E0, E0 + 1, E0 + 1, E0 + 2]
    assert clock_of([E0, 9_999_999_999_999, E0 + 2]) == [E0, E0, E0 + 2]  # 2286
    assert clock_of([later, E0, E0 + 1]) == [E0, E0, E0 + 1]  # a first time not agreed with
    assert clock_of([5, E0, E0 + 1]) == [E0, E0, E0 + 1]  # 1970: never a time
    # a real jump (a recording with a break) is taken on the frame that confirms it
    day = 86_400_000
    jumped = [E0, E0 + 1] + [E0 + day + k for k in range(CONFIRM_LINES + 1)]
    expected = [E0, E0 + 1] + [E0 + 1] * (CONFIRM_LINES - 1) + [
        E0 + day + CONFIRM_LINES - 1, E0 + day + CONFIRM_LINES]
    assert clock_of(jumped) == expected


# -- the metrics ----------------------------------------------------------------------------


def grid_sharpe(vt: list[int], pnl: list[float], total: float, interval_s: float,
                ) -> tuple[int, float | None, float | None]:
    """The Sharpe grid laid out point by point, as the definition reads: (intervals, mean,
    std). Boundaries every interval from the first sample; the last, partial interval on its
    own when at least half an interval long, else merged into the one before; the path
    starts at 0 and ends at the total; each change weighted by its interval's length."""
    step = round(interval_s * 10**9)
    span = vt[-1] - vt[0]
    full, rest = divmod(span, step)
    count = full + 1 if rest and (2 * rest >= step or full == 0) else full
    if count == 0:
        return 0, None, None
    bounds = [vt[0] + n * step for n in range(count)] + [vt[-1]]
    points = [0.0] + [pnl[bisect_right(vt, b) - 1] for b in bounds[1:-1]] + [total]
    changes = [b - a for a, b in itertools.pairwise(points)]
    weights = [(b - a) / step for a, b in itertools.pairwise(bounds)]
    mean = sum(changes) / sum(weights)
    if count < 2:
        return count, mean, None
    var = sum((d - mean * w) ** 2 / w for d, w in zip(changes, weights, strict=True))
    return count, mean, (var / (count - 1)) ** 0.5


def book_sample(t: int, mid: int, position: int) -> SampleRow:
    return SampleRow(1, t, mid - 1, mid + 1, float(mid), mid - 1, 1, mid + 1, 1, position,
                     "ACTIVE", 0, 0, 0)


def test_metrics_cost_follows_the_samples_not_the_time_they_span() -> None:
    inst = Instrument("TEST", "0.01", "1")
    fills = [Fill(1, Side.BUY, 9_999, 5, 0, True, T0 + S // 2, 1)]
    mids = [10_000, 10_002, 9_998, 10_004, 10_001]
    for span in (365 * 86_400 * S, INT64_MAX - T0):  # a year; then to the end of int64
        samples = [book_sample(T0 + k * S, m, 5) for k, m in enumerate(mids)]
        samples.append(book_sample(T0 + span, 10_003, 5))
        tracemalloc.start()
        try:
            metrics = compute_metrics(fills, samples, inst, sharpe_interval_s=60)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 256 * 1024, (span, peak)
        full, rest = divmod(span, 60 * S)
        assert metrics["sharpe_intervals"] == full + (2 * rest >= 60 * S)
        assert metrics["total_pnl"] == pytest.approx(5 * (10_003 - 9_999) * 0.01)


def test_the_sharpe_grid_walked_by_samples_is_the_grid_laid_out() -> None:
    inst = Instrument("TEST", "0.01", "1")
    rng = random.Random(16)
    for _ in range(200):
        n = rng.randint(2, 40)
        times = sorted(T0 + rng.randint(0, 30 * S) for _ in range(n))
        mids = [10_000 + rng.randint(-20, 20) for _ in range(n)]
        fills = [Fill(k + 1, rng.choice((Side.BUY, Side.SELL)), m, rng.randint(1, 3), 0, True,
                      t, k + 1) for k, (t, m) in enumerate(zip(times, mids, strict=True))
                 if rng.random() < 0.4]
        samples = [book_sample(t, m, 0) for t, m in zip(times, mids, strict=True)]
        interval = rng.choice((0.5, 1.0, 2.0, 3.7))
        metrics = compute_metrics(fills, samples, inst, sharpe_interval_s=interval)
        series = pnl_series(fills, samples, inst)
        intervals, mean, std = grid_sharpe(series.ts_ns, series.total, metrics["total_pnl"],
                                           interval)
        assert metrics["sharpe_intervals"] == intervals
        for key, value in (("interval_pnl_mean", mean), ("interval_pnl_std", std)):
            if value is None:
                assert metrics[key] is None
            else:
                assert metrics[key] == pytest.approx(value, abs=1e-9)


# -- the limits in the config ---------------------------------------------------------------


@pytest.mark.parametrize("key", ["feed.max_message_bytes", "feed.max_snapshot_bytes",
                                 "exchange.max_message_bytes"])
def test_size_limits_are_checked_and_shown_with_their_unit(tmp_path: Path, key: str) -> None:
    section, name = key.split(".")
    for bad in (0, 1000, (64 << 20) + 1):
        with pytest.raises(ConfigError, match=rf"^{re.escape(key)}: expected a size in bytes "
                                              rf"from 65536 \(64 KiB\) to 67108864"):
            load_config(write_config(tmp_path, {section: {name: bad}}))
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)}: expected an integer"):
        load_config(write_config(tmp_path, {section: {name: "1MB"}}))
    config = load_config(write_config(tmp_path, {section: {name: 2 << 20}}))
    shown = subprocess.run([sys.executable, "-m", "mmdaemon", "check-config",
                            str(write_config(tmp_path, {section: {name: 2 << 20}}))],
                           capture_output=True, text=True, timeout=60)
    assert f"  {key} = {2 << 20}  # bytes\n" in shown.stdout, shown.stdout
    assert getattr(getattr(config, section), name) == 2 << 20
