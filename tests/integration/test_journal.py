"""The journal on a real SQLite file."""

from __future__ import annotations

import sqlite3
from fractions import Fraction
from pathlib import Path

import pytest

from mmdaemon.journal import Journal
from mmdaemon.model import Fill, Side
from mmdaemon.statedir import StateDirLocked


def test_fills_restore_dedupe_and_kill_latch(tmp_path: Path) -> None:
    path = tmp_path / "state" / "journal.sqlite"
    j = Journal(path)
    first = j.restore(1)
    assert first.fills == [] and first.run_id == 1 and not first.killed
    assert j.record_fill(Fill(7, Side.BUY, 100, 5, 2, True, 10, exec_id=1))
    # two executions of the same size on one order are two fills
    assert j.record_fill(Fill(7, Side.BUY, 101, 5, 2, True, 11, exec_id=2))
    # the same execution reported again is one fill
    assert not j.record_fill(Fill(7, Side.BUY, 101, 5, 2, True, 11, exec_id=2))
    assert j.record_fill(Fill(8, Side.SELL, 110, 4, -1, True, 12, exec_id=3))
    with pytest.raises(ValueError, match="no execution id"):
        j.record_fill(Fill(9, Side.SELL, 110, 4, -1, True, 12))
    j.set_killed(True, "operator_kill_switch", 13)
    j.set_pnl_peak(Fraction(7, 2), 13)
    j.close()  # everything above is committed without any explicit flush

    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    j2 = Journal(path)
    r = j2.restore(20)
    assert r.run_id == 2 and r.pnl_peak_units == Fraction(7, 2)
    assert [(f.order_id, f.exec_id, f.price, f.size) for f in r.fills] == [
        (7, 1, 100, 5), (7, 2, 101, 5), (8, 3, 110, 4)]
    assert r.killed and r.kill_reason == "operator_kill_switch"
    j2.set_killed(False, "", 21)
    j2.close()
    assert not Journal(path).restore(30).killed


def test_one_process_per_state_directory(tmp_path: Path) -> None:
    first = Journal(tmp_path / "journal.sqlite")
    with pytest.raises(StateDirLocked, match="in use by this process already"):
        Journal(tmp_path / "journal.sqlite")
    first.close()
    Journal(tmp_path / "journal.sqlite").close()  # free again once closed
