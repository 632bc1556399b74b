"""The journal of a run read for its metrics: fills, funding payments, samples and markouts,
read-only.

The shell around :mod:`mmdaemon.analytics` on the reading side: SQLite's ``mode=ro`` takes
no lock on the state directory and writes nothing, so a report can be made while a daemon
runs on it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from mmdaemon.analytics import SampleLevels, SampleRow
from mmdaemon.journal import MarkoutRow, has_column, read_fills, read_funding, read_markouts
from mmdaemon.model import Fill, Funding


def _read_only(path: Path | str) -> sqlite3.Connection:
    """The journal at ``path`` opened with SQLite's ``mode=ro``: no lock on the state
    directory, nothing written, so a report can be made while a daemon runs on it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no journal at {path}")
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def load_journal(path: Path | str) -> tuple[list[Fill], list[SampleRow]]:
    """Read every fill (with its mid before, 0 where unknown) and sample of the journal at
    ``path``, read-only. Fills come in the order they were recorded, samples in the order
    they were written; never a sample at event time 0 (a live run of an earlier build
    wrote one before its first event: it would start the report in 1970 and weigh as
    many years)."""
    db = _read_only(path)
    try:
        fills = read_fills(db)
        sample_rows = db.execute(
            "SELECT run_id, ts_ns, best_bid, best_ask, fair, bid, bid_size, ask, ask_size,"
            " position, state, orders, amends, cancels FROM samples WHERE ts_ns > 0"
            " ORDER BY rowid").fetchall()
    finally:
        db.close()
    return fills, [SampleRow._make(r) for r in sample_rows]


def load_fills(path: Path | str) -> list[Fill]:
    """Every fill of the journal at ``path`` (with its mid before, 0 where unknown),
    read-only, in the order recorded."""
    db = _read_only(path)
    try:
        return read_fills(db)
    finally:
        db.close()


def stream_samples(path: Path | str) -> Iterator[SampleRow]:
    """Every sample of the journal at ``path`` (read-only) as :func:`load_journal` reads
    them, sorted by time as :func:`mmdaemon.analytics.compute_metrics` sorts them (event
    time, then the order written), one row at a time: the ``samples_ts`` index gives that
    order without a sort, so memory does not grow with the run (a day at 250 ms is
    345,600 rows, about 200 MiB as a list). The journal stays open until the iterator is
    exhausted or closed."""
    db = _read_only(path)
    try:
        for row in db.execute(
                "SELECT run_id, ts_ns, best_bid, best_ask, fair, bid, bid_size, ask, ask_size,"
                " position, state, orders, amends, cancels FROM samples WHERE ts_ns > 0"
                " ORDER BY ts_ns, rowid"):
            yield SampleRow._make(row)
    finally:
        db.close()


def load_funding(path: Path | str) -> list[Funding]:
    """Every funding payment of the journal at ``path`` (read-only), in the order recorded;
    none from a spot or paper run, or a journal written before funding was journaled. Pass
    them to :func:`mmdaemon.analytics.compute_metrics`."""
    db = _read_only(path)
    try:
        return read_funding(db)
    finally:
        db.close()


def load_markouts(path: Path | str) -> list[MarkoutRow]:
    """Every resolved markout of the journal at ``path`` (read-only), in the order
    recorded: ``(exec_key, horizon_ns, mid_x2, resolved_ns)``; none from a journal
    written before markouts were journaled. Pass them to
    :func:`mmdaemon.analytics.compute_metrics`."""
    db = _read_only(path)
    try:
        return read_markouts(db)
    finally:
        db.close()


def load_sample_levels(path: Path | str) -> list[SampleLevels]:
    """Every ladder sample of the journal at ``path`` (read-only), in the order written;
    none from a run of one level a side or a journal older than ladders."""
    db = _read_only(path)
    try:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND"
                          " name = 'sample_levels'").fetchone():
            return []  # written before ladders
        rows = db.execute("SELECT run_id, ts_ns, bids, asks FROM sample_levels"
                          " ORDER BY rowid").fetchall()
    finally:
        db.close()
    return [SampleLevels(run_id, ts_ns, tuple((p, q) for p, q in orjson.loads(bids)),
                         tuple((p, q) for p, q in orjson.loads(asks)))
            for run_id, ts_ns, bids, asks in rows]


def load_state(path: Path | str, key: str) -> str | None:
    """The journal's state value under ``key`` (read-only): the ``instrument`` or the
    ``provenance`` the service wrote at start; None when the journal has none (written by
    a version that did not record it)."""
    db = _read_only(path)
    try:
        row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    finally:
        db.close()
    return None if row is None else str(row[0])


@dataclass(frozen=True, slots=True)
class JournalStatus:
    """What ``mmdaemon status`` reads of a stopped instance's journal."""

    fills: list[Fill]
    funding: list[int]  # payments' amounts, notional units (received > 0)
    last_mid_x2: int | None  # best bid + best ask of the last sample with a book, ticks
    state: dict[str, str]  # the state table: trading_state, killed, kill_reason, ...
    last_record_ns: int | None  # the newest row's time (see load_status)


def load_status(path: Path | str) -> JournalStatus:
    """The journal at ``path`` read for ``status`` (read-only). ``last_record_ns`` is the
    latest of the state rows' times, the last sample's and the order log's wall clock:
    the daemon's event time, which on a live feed is wall time (a replay's is its
    recording's). Raises FileNotFoundError without a journal, sqlite3.Error when it
    cannot be read."""
    db = _read_only(path)
    try:
        fills = read_fills(db)
        funding = [f.amount for f in read_funding(db)]
        state = {str(k): str(v) for k, v in db.execute("SELECT key, value FROM state")}
        mid = db.execute("SELECT best_bid + best_ask FROM samples WHERE best_bid IS NOT NULL"
                         " AND best_ask IS NOT NULL ORDER BY rowid DESC LIMIT 1").fetchone()
        times = [db.execute("SELECT max(ts_ns) FROM state").fetchone()[0],
                 db.execute("SELECT ts_ns FROM samples ORDER BY rowid DESC LIMIT 1")
                 .fetchone()]
        if has_column(db, "order_log", "wall_ns"):
            times.append(db.execute("SELECT max(wall_ns) FROM order_log").fetchone()[0])
    finally:
        db.close()
    known = [int(t[0] if isinstance(t, tuple) else t) for t in times
             if t is not None and (t[0] if isinstance(t, tuple) else t) is not None]
    return JournalStatus(fills, funding, None if mid is None else int(mid[0]), state,
                         max(known) if known else None)
