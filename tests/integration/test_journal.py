"""The journal on a real SQLite file."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from mmdaemon.journal import CHECKPOINT_ROWS, Journal, keyed_by_execution
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


FILLS_PAST_AUTOCHECKPOINT = 1500
"""Fills enough that their commits put more than SQLite's default 1,000 pages in the WAL
(each commit writes at least the fills table's page)."""

_WRITER = """
import os, signal, sys
from pathlib import Path
from mmdaemon.journal import CHECKPOINT_ROWS, Journal, keyed_by_execution
from mmdaemon.model import Fill, Side
path = Path(sys.argv[1])
j = Journal(path)
j.restore(1)
before = path.stat().st_size
for i in range(1, {n} + 1):
    assert j.record_fill(Fill(7, Side.BUY, 100 + i, 5, 2, True, i, exec_id=i))
print(before, path.stat().st_size, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_fill_commits_never_checkpoint_and_survive_a_crash_in_the_wal(tmp_path: Path) -> None:
    """A fill's commit appends to the WAL and nothing more: the checkpoint (fsyncs of the
    WAL and the database, milliseconds) is not on its way to the next quote; a process
    killed with every fill still only in the WAL restores them all."""
    path = tmp_path / "state" / "journal.sqlite"
    done = subprocess.run([sys.executable, "-c", _WRITER.format(n=FILLS_PAST_AUTOCHECKPOINT),
                           str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    before, after = map(int, done.stdout.split())
    assert after == before  # no commit copied a page into the database file
    j = Journal(path)
    fills = j.restore(2).fills
    assert [f.exec_id for f in fills] == list(range(1, FILLS_PAST_AUTOCHECKPOINT + 1))
    j.close()


def test_checkpoint_copies_the_wal_into_the_database_once_enough_was_written(
        tmp_path: Path) -> None:
    path = tmp_path / "state" / "journal.sqlite"
    j = Journal(path)
    j.restore(1)
    fills = [Fill(7, Side.BUY, 100 + i, 5, 2, True, i, exec_id=i)
             for i in range(1, CHECKPOINT_ROWS + 1)]
    for fill in fills[:-10]:
        j.record_fill(fill)
    before = path.stat().st_size
    assert not j.checkpoint()  # too little yet to be worth two fsyncs
    assert path.stat().st_size == before
    for fill in fills[-10:]:
        j.record_fill(fill)
    assert j.checkpoint()
    assert path.stat().st_size > before
    # what the WAL held is now in the file itself: readable without the WAL
    copy = tmp_path / "copy.sqlite"
    copy.write_bytes(path.read_bytes())
    count = sqlite3.connect(copy).execute("SELECT COUNT(*) FROM fills").fetchone()[0]
    assert count == CHECKPOINT_ROWS
    assert not j.checkpoint()  # nothing new since
    j.close()


WAL_FRAME = 24 + 4096
"""One page in the WAL: the frame's header and the page (the journal's page size)."""


def test_a_fill_commit_writes_one_page_to_the_wal(tmp_path: Path) -> None:
    """The fills table is its own execution-key index: a fill's commit appends one frame
    to the WAL, not a table page and an index page."""
    path = tmp_path / "state" / "journal.sqlite"
    wal = path.with_name(path.name + "-wal")
    j = Journal(path)
    j.restore(1)
    assert j.record_fill(Fill(7, Side.BUY, 100, 5, 2, True, 1, exec_id=1))
    for i in range(2, 50):
        before = wal.stat().st_size
        assert j.record_fill(Fill(7 + i // 3, Side.BUY, 100 + i, 5, 2, True, i, exec_id=i))
        assert wal.stat().st_size - before == WAL_FRAME
    j.close()


OLDER_FILLS = """
CREATE TABLE fills (seq INTEGER PRIMARY KEY, exec_key TEXT NOT NULL UNIQUE,
    order_id INTEGER NOT NULL, side INTEGER NOT NULL, price INTEGER NOT NULL,
    size INTEGER NOT NULL, fee INTEGER NOT NULL, maker INTEGER NOT NULL,
    ts_ns INTEGER NOT NULL{mid});
CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL, ts_ns INTEGER NOT NULL);
"""


@pytest.mark.parametrize("mid", [", mid_x2 INTEGER", ""], ids=["with_mid", "before_mid"])
def test_an_older_versions_fills_move_into_the_execution_keyed_table_in_order(
        tmp_path: Path, mid: str) -> None:
    """A journal whose fills are a rowid table with a unique index on exec_key (every
    version before this one) opens with its fills moved, in their order, keyed by
    execution: a repeat of one of them is still refused, a new one comes after them, and
    readers of either shape read the same rows."""
    path = tmp_path / "state" / "journal.sqlite"
    path.parent.mkdir()
    db = sqlite3.connect(path)
    db.executescript(OLDER_FILLS.format(mid=mid))
    # exec_key order differs from seq order: the move must keep seq's
    rows = [("9:5", 9, 1, 100, 2, 1, 1, 10), ("10:6", 10, -1, 103, 1, -1, 1, 11),
            ("10:7", 10, -1, 104, 3, 0, 0, 12)]
    db.executemany("INSERT INTO fills (exec_key, order_id, side, price, size, fee, maker,"
                   " ts_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()

    j = Journal(path)
    assert [(f.order_id, f.exec_id, f.price, f.size, f.fee, f.maker, f.ts_ns, f.mid_x2)
            for f in j.restore(1).fills] == [
        (9, 5, 100, 2, 1, True, 10, 0), (10, 6, 103, 1, -1, True, 11, 0),
        (10, 7, 104, 3, 0, False, 12, 0)]
    assert not j.record_fill(Fill(10, Side.SELL, 103, 1, -1, True, 11, exec_id=6))
    assert j.record_fill(Fill(8, Side.BUY, 99, 1, 0, True, 13, exec_id=8, mid_x2=201))
    j.close()

    db = sqlite3.connect(path)
    assert keyed_by_execution(db)
    assert db.execute("SELECT name FROM sqlite_master WHERE name LIKE 'fills%'"
                      " AND type = 'table'").fetchall() == [("fills",)]
    assert db.execute("SELECT exec_key, seq, mid_x2 FROM fills ORDER BY seq").fetchall() == [
        ("9:5", 1, None), ("10:6", 2, None), ("10:7", 3, None), ("8:8", 4, 201)]
    db.close()
    j = Journal(path)  # moved once: opening again changes nothing
    assert [f.exec_id for f in j.restore(2).fills] == [5, 6, 7, 8]
    j.close()


def test_an_older_version_rolled_back_to_keeps_recording_fills_in_order(tmp_path: Path) -> None:
    """A rollback (deploy/README.md) runs an older version on a journal this one keyed by
    execution: its insert, which gives no seq, takes the next one, and a repeat of an
    execution is still refused, so no fill is lost or taken for a repeat."""
    path = tmp_path / "state" / "journal.sqlite"
    j = Journal(path)
    j.restore(1)
    assert j.record_fill(Fill(7, Side.BUY, 100, 5, 2, True, 1, exec_id=1))
    assert j.record_fill(Fill(7, Side.BUY, 101, 5, 2, True, 2, exec_id=2))
    j.close()
    older = sqlite3.connect(path, isolation_level=None)
    insert = ("INSERT INTO fills (exec_key, order_id, side, price, size, fee, maker, ts_ns,"
              " mid_x2) VALUES (?, 8, -1, 99, 1, 0, 1, ?, NULL)")  # as every earlier version
    older.execute(insert, ("8:3", 3))
    older.execute(insert, ("8:4", 4))
    with pytest.raises(sqlite3.IntegrityError):
        older.execute(insert, ("8:3", 5))
    older.close()
    j = Journal(path)
    assert [f.exec_id for f in j.restore(2).fills] == [1, 2, 3, 4]
    assert j.record_fill(Fill(9, Side.BUY, 98, 1, 0, True, 6, exec_id=5))
    j.close()
    seqs = sqlite3.connect(path).execute("SELECT exec_key, seq FROM fills ORDER BY seq")
    assert seqs.fetchall() == [("7:1", 1), ("7:2", 2), ("8:3", 3), ("8:4", 4), ("9:5", 5)]


def _steps(db: sqlite3.Connection, sql: str, args: tuple[object, ...]) -> int:
    """SQLite virtual-machine instructions ``sql`` runs on ``db``: the work a statement
    does, counted, not timed."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    db.set_progress_handler(count, 1)
    try:
        db.execute(sql, args)
    finally:
        db.set_progress_handler(None, 1)
    return steps


@pytest.mark.parametrize("fills", [10, 3_000])
def test_a_rolled_back_versions_fill_commit_does_not_read_every_fill(
        tmp_path: Path, fills: int) -> None:
    """After a rollback, the older version's insert (no seq) takes its seq without reading
    the whole table for the largest one: one fill's commit costs the same with thousands
    of fills journaled as with ten, as it did in that version, and as it does in this one.
    This version's start forgets the count the older one kept, so the fills it records
    in between are counted too."""
    path = tmp_path / "state" / "journal.sqlite"
    j = Journal(path)
    j.restore(1)
    for i in range(1, fills + 1):
        assert j.record_fill(Fill(7 + i // 5, Side.BUY, 100, 1, 0, True, i, exec_id=i))
    j.close()
    older = sqlite3.connect(path, isolation_level=None)
    insert = ("INSERT INTO fills (exec_key, order_id, side, price, size, fee, maker, ts_ns,"
              " mid_x2) VALUES (?, 1, -1, 99, 1, 0, 1, ?, NULL)")  # as every earlier version
    older.execute(insert, ("1:1", 1))  # the first after the rollback may look
    steps = [_steps(older, insert, (f"1:{n}", n)) for n in range(2, 5)]
    older.close()
    assert max(steps) < 400, steps  # the whole table read is ~4 instructions a fill
    j = Journal(path)  # forward again: this version's fills, then the older one's
    assert j.record_fill(Fill(2, Side.BUY, 98, 1, 0, True, 6, exec_id=1))
    j.close()
    older = sqlite3.connect(path, isolation_level=None)
    older.execute(insert, ("1:9", 9))
    older.close()
    seqs = sqlite3.connect(path).execute("SELECT exec_key, seq FROM fills ORDER BY seq")
    assert seqs.fetchall()[fills:] == [("1:1", fills + 1), ("1:2", fills + 2),
                                       ("1:3", fills + 3), ("1:4", fills + 4),
                                       ("2:1", fills + 5), ("1:9", fills + 6)]
