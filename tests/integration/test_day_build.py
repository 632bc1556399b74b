"""bench/day.py's day: the bundled window repeated, shifted in time and ids, is one
consistent recording: verify-book accepts it across the joins, ids and times run on, and
the build is the same bytes every time."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson

from bench.day import analyse, write_day
from mmdaemon.model import NS_PER_S
from mmdaemon.verify import verify_recordings
from tests.conftest import SPOT_FILES

SPAN_NS = 25 * 60 * NS_PER_S  # the window is 10 m 50 s: two joins


def test_day_repeats_the_window_as_one_consistent_recording(tmp_path: Path) -> None:
    window = analyse(list(SPOT_FILES))
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    assert write_day(window, first, SPAN_NS) == write_day(window, second, SPAN_NS)
    day = first / "day-00.gz"
    assert day.read_bytes() == (second / "day-00.gz").read_bytes()  # deterministic
    summary = verify_recordings([day], "spot")
    assert summary["ok"], summary["reasons"]
    assert summary["gaps"] == 0 and summary["crossed"] == 0 and summary["snapshots"] == 1
    # the tickers of later repetitions are compared too: well over one window's 1,072
    assert summary["compared"] > 2 * 1072 and summary["mismatches"] == 0
    recv, trades, depth_e = [], [], []
    with gzip.open(day, "rb") as lines:
        for line in lines:
            ns, frame = line.split(b" ", 1)
            recv.append(int(ns))
            data = orjson.loads(frame).get("data", {})
            if data.get("e") == "trade":
                trades.append(data["t"])
            elif data.get("e") == "depthUpdate":
                depth_e.append(data["E"])
    assert recv == sorted(recv) and recv[-1] - recv[0] > SPAN_NS - 2 * NS_PER_S
    assert depth_e == sorted(depth_e)
    assert trades == list(range(trades[0], trades[0] + len(trades)))  # no gap, no repeat
