"""`replay --report`, `mmdaemon report`, and the LOBSTER equity day through the same path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.conftest import SHARED_DATA, SPOT_FILES

LOBSTER = SHARED_DATA / "lobster-amzn-l1"
MESSAGE = LOBSTER / "AMZN_2012-06-21_34200000_57600000_message_1.csv"
ORDERBOOK = LOBSTER / "AMZN_2012-06-21_34200000_57600000_orderbook_1.csv"


def mmdaemon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmdaemon", *args], capture_output=True,
                          text=True, timeout=300)


def test_replay_report_and_report_command(tmp_path: Path) -> None:
    state, first, second = tmp_path / "state", tmp_path / "r1", tmp_path / "r2"
    proc = mmdaemon("replay", *map(str, SPOT_FILES), "--state-dir", str(state), "--report",
                    str(first), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = orjson.loads(proc.stdout)
    metrics = summary["metrics"]
    assert metrics["fills"] == summary["fills"]
    assert (first / "report.html").is_file()
    # the same journal, reported again by the report command alone
    proc = mmdaemon("report", str(state), "--out", str(second))
    assert proc.returncode == 0, proc.stderr[-2000:]
    html_a = (first / "report.html").read_text()
    html_b = (second / "report.html").read_text()
    assert html_a == html_b  # deterministic: same journal, same report
    assert mmdaemon("report", str(tmp_path / "nowhere"), "--out", str(second)).returncode == 2


def test_lobster_equity_day_replays_with_a_time_of_day_table(tmp_path: Path) -> None:
    if not MESSAGE.exists():
        pytest.skip(f"{LOBSTER} not present: the LOBSTER sample lives in ../shared only")
    out = tmp_path / "report"
    proc = mmdaemon("replay", "--venue", "lobster", str(MESSAGE), str(ORDERBOOK), "--report",
                    str(out), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = orjson.loads(proc.stdout)
    assert s["malformed"] == 63  # the half-cent hidden executions (see the LOBSTER reader)
    assert s["frames"] == 57_515 + 11_356 + 63 and s["fills"] > 0 and s["gaps"] == 0
    hours = [row["hour"] for row in s["metrics"]["by_hour"]]
    assert hours == list(range(9, 16))  # 09:30-16:00 New York, the whole session
    assert sum(row["fills"] for row in s["metrics"]["by_hour"]) == s["fills"]
    html = (out / "report.html").read_text()
    assert "15:00" in html or ">15<" in html
