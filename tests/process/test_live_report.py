"""The report of a live run's state directory: a daemon against the sim, then `mmdaemon
report`, as a desk reads a run it has stopped."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.process.test_record_sim_cli import free_port, mmdaemon
from tests.process.test_sim_processes import sim_config
from tests.process.test_strategy_plugins import daemon_quoting_at_the_sim


def _start_row(report: Path) -> str:
    """The report's "Start" of the period, as shown."""
    html = (report / "report.html").read_text()
    found = re.search(r"<td class=\"name\">Start</td><td>([^<]*)</td>", html)
    assert found, "no Start row in the report"
    return found.group(1)


def test_a_live_run_report_starts_at_its_first_event_not_in_1970(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live supervisor ticks before the first frame, at event time 0: no sample there
    (the report would start in 1970, weigh the HALTED wait as 56 years and show 0 %
    uptime), and a journal of an earlier build holding one is reported without it."""
    port, state = free_port(), tmp_path / "state"
    config = sim_config(tmp_path, port, state, monkeypatch)
    # speed 1: the sim's fills on the daemon's time line (at speed N they run N x ahead of
    # its samples, which the report cannot weigh)
    with daemon_quoting_at_the_sim(config, port, speed="1") as d:
        d.wait_event("fill", timeout=240)
        assert d.stop() == 0
    db = sqlite3.connect(state / "journal.sqlite")
    assert db.execute("SELECT count(*) FROM samples WHERE ts_ns <= 0").fetchone() == (0,)
    db.close()
    out = tmp_path / "report"
    proc = mmdaemon("report", str(state), "--out", str(out))
    assert proc.wait(120) == 0
    start = _start_row(out)
    assert not start.startswith("1970"), start

    # what an earlier build left: a HALTED sample at event time 0 before the first frame
    old = tmp_path / "old"
    shutil.copytree(state, old)
    db = sqlite3.connect(old / "journal.sqlite")
    with db:
        db.execute("INSERT INTO samples VALUES (1, 0, NULL, NULL, 0.0, 0, 0, 0, 0, 0,"
                   " 'HALTED', 0, 0, 0)")
    db.close()
    proc = mmdaemon("report", str(old), "--out", str(tmp_path / "old-report"))
    assert proc.wait(120) == 0
    assert _start_row(tmp_path / "old-report") == start
