"""The journal on a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mmdaemon.journal import Journal
from mmdaemon.model import Fill, Side


def test_fills_restore_dedupe_and_kill_latch(tmp_path: Path) -> None:
    path = tmp_path / "state" / "journal.sqlite"
    j = Journal(path)
    first = j.restore(1)
    assert first.fills == 0 and first.run_id == 1 and not first.killed
    assert j.record_fill(Fill(7, Side.BUY, 100, 5, 2, True, 10), cumulative_filled=5)
    assert j.record_fill(Fill(7, Side.BUY, 101, 5, 2, True, 11), cumulative_filled=10)
    assert not j.record_fill(Fill(7, Side.BUY, 101, 5, 2, True, 11), cumulative_filled=10)
    assert j.record_fill(Fill(8, Side.SELL, 110, 4, -1, True, 12), cumulative_filled=4)
    j.set_killed(True, "operator_kill_switch", 13)
    j.close()  # everything above is committed without any explicit flush

    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    j2 = Journal(path)
    r = j2.restore(20)
    assert r.fills == 3 and r.run_id == 2
    assert r.position == 5 + 5 - 4
    assert r.cash == -(100 * 5) - (101 * 5) + 110 * 4
    assert r.fees == 3 and r.volume == 14
    assert r.killed and r.kill_reason == "operator_kill_switch"
    assert [f.order_id for f in j2.fills()] == [7, 7, 8]
    j2.set_killed(False, "", 21)
    j2.close()
    assert not Journal(path).restore(30).killed
