"""The order log: every order action we send and every answer of the venue, and its CSV export.

The daemon journals one ``order_log`` row (:mod:`mmdaemon.journal`) per action it hands to
the exchange adapter and per answer the adapter reports back, in the order it saw them; a
dry run and a live run leave the same log (the Binance gateway's reports come through the
same listener as the paper exchange's). ``mmdaemon export`` and the report write it as two
CSV files whose format other tools read (the hftbacktest cross-check among them):

``orders.csv``, one row per action or answer, in journal order:
``seq,ts_ns,venue_ns,wall_ns,event,order_id,side,price,size,price_ticks,size_lots,
filled_lots,reason``

- ``event``: our actions ``place``, ``amend``, ``cancel``; the venue's answers ``ack``
  (NEW, or an amend accepted), ``reject`` (REJECTED: a place refused, or an amend or
  cancel refused while the order stays), ``canceled``, ``partially_filled``, ``filled``,
  ``expired`` (the venue ended the order itself: Binance's EXPIRED, EXPIRED_IN_MATCH);
  ``fill`` for each execution (``size`` is that execution's size). PENDING_NEW and
  PENDING_CANCEL are our own state echoed back, not answers: they are not logged.
- ``ts_ns``: the daemon's event clock when it sent the action or received the answer (a
  replay's clock, the receive time of the latest market event live: the event clock
  moves with market events only). ``venue_ns``: the venue's time of an answer (paper: the
  simulated venue's event time; Binance: the transaction time), empty for our actions.
  ``wall_ns``: the wall clock when the row was made, informational.
- ``side``: ``buy`` or ``sell``. ``price``, ``size``: exact decimal text in the
  instrument's units (quote currency per base unit, base currency), at the tick's and the
  lot's number of decimals; ``price_ticks``, ``size_lots`` the same as integers. For an
  order ``size`` is its total size (filled part included), as an amend states it.
- ``filled_lots``: what the venue says has filled of the order so far (order updates);
  empty in our actions and in ``fill`` rows. ``reason``: the venue's reason of a reject
  or an end, and ours for a cancel we did not send to follow the quote (``killed``,
  ``halted``, ``shutdown``, a pre-trade check's code); else empty.

``fills.csv``, one row per journaled fill, in journal order:
``exec_id,ts_ns,venue_ns,order_id,side,price,size,price_ticks,size_lots,fee,maker,
mid_before``

- ``ts_ns`` when the daemon received it, ``venue_ns`` the venue's time of the execution;
- ``fee``: exact decimal in the quote currency, negative for a rebate; ``maker`` 1 or 0;
- ``mid_before``: exact decimal, the mid of the market before the event that filled us
  (paper) or the daemon's own book mid when the report arrived (live); empty if unknown.
  A fill journaled by a version without the order log, or whose order-log row a crash
  lost (rows are written in batches, the fill itself at once), has ``ts_ns`` and
  ``mid_before`` empty.

Exports read the journal with SQLite's read-only mode, in one read transaction: no lock on
the state directory, nothing written, so a running instance's journal can be exported.
"""

from __future__ import annotations

import contextlib
import csv
import os
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO

import orjson

from mmdaemon.journal import JOURNAL_FILE, damaged
from mmdaemon.model import Instrument
from mmdaemon.records import FILL

ORDERS_HEADER = ("seq", "ts_ns", "venue_ns", "wall_ns", "event", "order_id", "side", "price",
                 "size", "price_ticks", "size_lots", "filled_lots", "reason")
FILLS_HEADER = ("exec_id", "ts_ns", "venue_ns", "order_id", "side", "price", "size",
                "price_ticks", "size_lots", "fee", "maker", "mid_before")
ORDERS_FILE, FILLS_FILE = "orders.csv", "fills.csv"
"""The names the report writes them under, next to report.html."""


# -- export --------------------------------------------------------------------------------


class ExportRefused(Exception):
    """The journal cannot be exported (missing, unreadable, no instrument): exit 2."""


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote, and what the reader should be told about it."""

    instrument: Instrument  # whose grids priced the rows
    from_journal: bool  # the instrument is the one the journal recorded (else the caller's)
    orders: int  # rows written to orders.csv (0 when not asked for)
    fills: int
    warnings: list[str]


def _side(value: int) -> str:
    return "buy" if value > 0 else "sell"


class _Text:
    """Exact decimal text of the instrument's integers."""

    def __init__(self, instrument: Instrument) -> None:
        self.inst = instrument
        self.notional_unit = instrument.tick_size * instrument.lot_size
        self.notional_places = instrument.price_precision + instrument.size_precision

    def money(self, units: int) -> str:
        """Notional units (ticks x lots) in the quote currency, exactly."""
        return f"{Decimal(units) * self.notional_unit:.{self.notional_places}f}"

    def mid(self, mid_x2: int | None) -> str:
        """Half of ``mid_x2`` ticks: one decimal more than a price when it is a half tick."""
        if not mid_x2:
            return ""
        places = self.inst.price_precision + (mid_x2 & 1)
        return f"{Decimal(mid_x2) * self.inst.tick_size / 2:.{places}f}"


def journal_instrument(db: sqlite3.Connection) -> Instrument | None:
    """The instrument the journal recorded (``instrument``, else the older ``identity``),
    with just its grids: what is needed to print its prices and sizes; None if neither."""
    for key in ("instrument", "identity"):
        row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        if row is None:
            continue
        spec = orjson.loads(row[0])
        if all(k in spec for k in ("symbol", "tick_size", "lot_size")):
            return Instrument(spec["symbol"], spec["tick_size"], spec["lot_size"])
    return None


def open_read_only(journal: Path) -> sqlite3.Connection:
    """The journal at ``journal`` opened read-only, its tables checked: :class:`ExportRefused`
    if it is missing, not a journal or unreadable."""
    if not journal.is_file():
        raise ExportRefused(f"no journal at {journal}: give the state directory of an "
                            f"instance (its [state] dir, or replay's --state-dir)")
    db: sqlite3.Connection | None = None
    try:
        db = sqlite3.connect(f"{journal.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        if db is not None:
            db.close()
        if damaged(exc):
            raise ExportRefused(f"journal {journal} cannot be read as an SQLite database "
                                f"({exc}): restore it from a backup") from None
        # a WAL journal's reader needs journal.sqlite-shm, which it creates if missing
        raise ExportRefused(f"journal {journal} cannot be opened ({exc}): run the export as "
                            f"a user who may read {journal.parent} and create files in it"
                            ) from None
    missing = {"fills", "state"} - tables
    if missing:
        db.close()
        raise ExportRefused(f"{journal} is not an mmdaemon journal (no table "
                            f"{', '.join(sorted(missing))})")
    return db


def export(journal: Path, instrument: Instrument | None, orders_out: IO[str] | None,
           fills_out: IO[str] | None) -> ExportResult:
    """Write ``orders.csv`` to ``orders_out`` and ``fills.csv`` to ``fills_out`` (either may
    be None: not written) from the journal at ``journal``, read in one snapshot.

    ``instrument`` None: the one the journal recorded (:class:`ExportRefused` if it has
    none). Given, it must have the journal's tick and lot, when the journal names them.
    """
    db = open_read_only(journal)
    try:
        recorded = journal_instrument(db)
        from_journal = instrument is None
        if instrument is None:
            if recorded is None:
                raise ExportRefused(
                    f"journal {journal} names no instrument (written by an older version): "
                    f"give --config FILE with the [instrument] it was written for")
            instrument = recorded
        elif recorded is not None and (recorded.tick_size, recorded.lot_size) != (
                instrument.tick_size, instrument.lot_size):
            raise ExportRefused(
                f"journal {journal} was written for {recorded.symbol} with tick "
                f"{recorded.tick_size:f} and lot {recorded.lot_size:f}, the config says "
                f"{instrument.symbol} with tick {instrument.tick_size:f} and lot "
                f"{instrument.lot_size:f}: leave out --config, or give the one it was "
                f"written with")
        text = _Text(instrument)
        warnings: list[str] = []
        db.execute("BEGIN")  # one snapshot of both tables, whatever a writer does meanwhile
        try:  # a page found damaged midway: refused, as at the start
            has_log = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name="
                                 "'order_log'").fetchone() is not None
            if not has_log:
                warnings.append(f"journal {journal} has no order log (written by a version "
                                f"before it): orders has the header only, and fills no "
                                f"ts_ns or mid_before")
            orders = _write_orders(db, text, orders_out) if orders_out and has_log else 0
            if orders_out and not has_log:
                csv.writer(orders_out, lineterminator="\n").writerow(ORDERS_HEADER)
            fills, unlogged = (_write_fills(db, text, fills_out, has_log) if fills_out
                               else (0, 0))
        except sqlite3.DatabaseError as exc:
            raise ExportRefused(f"journal {journal} cannot be read ({exc}): restore it from a "
                                f"backup") from None
        finally:
            db.rollback()
        if unlogged and has_log:
            warnings.append(f"{unlogged} of {fills} fills without an order-log row (a crash "
                            f"lost the rows before they were written): ts_ns and mid_before "
                            f"empty")
        return ExportResult(instrument, from_journal, orders, fills, warnings)
    finally:
        db.close()


def _write_orders(db: sqlite3.Connection, text: _Text, out: IO[str]) -> int:
    inst = text.inst
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(ORDERS_HEADER)
    count = 0
    for seq, ts, venue, wall, event, oid, side, price, size, filled, reason in db.execute(
            "SELECT seq, ts_ns, venue_ns, wall_ns, event, order_id, side, price, size, filled,"
            " reason FROM order_log ORDER BY seq"):
        writer.writerow((seq, ts, "" if venue is None else venue, wall, event, oid,
                         _side(side), inst.price_str(price), inst.size_str(size), price, size,
                         "" if filled is None else filled, reason))
        count += 1
    return count


def _write_fills(db: sqlite3.Connection, text: _Text, out: IO[str],
                 has_log: bool) -> tuple[int, int]:
    """fills.csv; returns (rows, rows without an order-log row)."""
    inst = text.inst
    logged: dict[tuple[int, int], tuple[int, int | None]] = {}
    if has_log:
        logged = {(oid, eid): (ts, mid) for oid, eid, ts, mid in db.execute(
            "SELECT order_id, exec_id, ts_ns, mid_x2 FROM order_log WHERE event = ?", (FILL,))}
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FILLS_HEADER)
    count = unlogged = 0
    for key, oid, side, price, size, fee, maker, venue_ns in db.execute(
            "SELECT exec_key, order_id, side, price, size, fee, maker, ts_ns FROM fills"
            " ORDER BY seq"):
        exec_id = int(key.rpartition(":")[2])
        row = logged.get((oid, exec_id))
        if row is None:
            unlogged += 1
        ts, mid = row if row is not None else ("", None)
        writer.writerow((exec_id, ts, venue_ns, oid, _side(side), inst.price_str(price),
                         inst.size_str(size), price, size, text.money(fee), int(maker),
                         text.mid(mid)))
        count += 1
    return count, unlogged


# -- the command ---------------------------------------------------------------------------


@contextlib.contextmanager
def _output(name: str | None) -> Iterator[IO[str] | None]:
    """``name`` opened for the CSV: ``-`` is stdout; a file is written whole or not at all
    (a temporary file beside it, renamed into place once complete)."""
    if name is None:
        yield None
        return
    if name == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    target = Path(name)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as out:
            yield out
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def export_command(state_dir: Path, orders: str | None, fills: str | None,
                   instrument: Instrument | None, config_path: str | None) -> int:
    """``mmdaemon export``: 0 written; 2 nothing asked for, an unusable journal, or an
    output that cannot be written. ``instrument`` is the one of ``--config`` (None: the
    journal's). Notes (which instrument, warnings) go to stderr."""

    def refuse(message: str) -> int:
        print(f"mmdaemon export: {message}", file=sys.stderr)
        return 2

    if orders is None and fills is None:
        return refuse("nothing to write: give --orders FILE and/or --fills FILE ('-': stdout)")
    files = [Path(name).resolve() for name in (orders, fills) if name not in (None, "-")]
    if orders == fills or len(set(files)) < len(files):
        return refuse("--orders and --fills name the same output: give each its own file "
                      "(at most one '-' for stdout)")
    if not state_dir.is_dir():
        return refuse(f"no state directory {state_dir}: give the state directory of an "
                      f"instance (its [state] dir, or replay's --state-dir)")
    journal = state_dir / JOURNAL_FILE
    try:
        with _output(orders) as orders_out, _output(fills) as fills_out:
            result = export(journal, instrument, orders_out, fills_out)
    except ExportRefused as exc:
        return refuse(str(exc))
    except OSError as exc:
        return refuse(f"cannot write the output: {exc}")
    used = result.instrument
    source = "recorded in the journal" if result.from_journal else f"of --config {config_path}"
    print(f"mmdaemon export: {result.orders} order-log rows, {result.fills} fills from "
          f"{journal}; prices and sizes by the instrument {source} ({used.symbol}, tick "
          f"{used.tick_size:f}, lot {used.lot_size:f})", file=sys.stderr)
    for warning in result.warnings:
        print(f"mmdaemon export: warning: {warning}", file=sys.stderr)
    return 0
