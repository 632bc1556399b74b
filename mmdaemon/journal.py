"""The journal: an SQLite file (WAL mode) in the state directory.

It holds every fill, the trading state and the kill-switch latch, and is what the daemon
restores from at start. The promise is *no reported fill lost, none doubled*:

- a fill is committed before anything acts on it (position, quoter, breakers, logs), so a
  crash at any instant either has the fill on disk or never reported it to anyone;
- each fill carries an execution key unique per (order id, cumulative filled) and the table
  enforces it, so an exchange that repeats an execution report cannot double it;
- the kill switch is committed *before* orders are cancelled, so a crash in the middle of
  a kill restarts KILLED.

``synchronous=NORMAL`` in WAL mode survives any crash of this process (the case we can
test); set ``durable=True`` for ``FULL`` to also survive power loss, at an fsync per fill.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from mmdaemon.model import Fill, Side

SCHEMA = """
CREATE TABLE IF NOT EXISTS fills (
    seq      INTEGER PRIMARY KEY,
    exec_key TEXT NOT NULL UNIQUE,
    order_id INTEGER NOT NULL,
    side     INTEGER NOT NULL,      -- +1 buy, -1 sell
    price    INTEGER NOT NULL,      -- ticks
    size     INTEGER NOT NULL,      -- lots
    fee      INTEGER NOT NULL,      -- notional units (ticks x lots), negative = rebate
    maker    INTEGER NOT NULL,
    ts_ns    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    ts_ns INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class Restored:
    """What the journal held at start."""

    fills: int
    position: int  # lots
    cash: int  # notional units (ticks x lots): sells add, buys subtract
    fees: int  # notional units
    volume: int  # lots traded
    killed: bool
    kill_reason: str
    run_id: int  # this start's number, 1 for a fresh journal


class Journal:
    """Append-only record of fills plus a small key/value state table."""

    def __init__(self, path: Path, durable: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)  # explicit transactions
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def restore(self, now_ns: int) -> Restored:
        """Read position, cash, fees and the kill latch; count this start as a new run."""
        db = self._db
        fills, position, cash, fees, volume = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(side*size),0), COALESCE(SUM(-side*price*size),0),"
            " COALESCE(SUM(fee),0), COALESCE(SUM(size),0) FROM fills"
        ).fetchone()
        run_id = int(self.get("run_id", "0")) + 1
        self.put("run_id", str(run_id), now_ns)
        return Restored(
            fills=fills,
            position=position,
            cash=cash,
            fees=fees,
            volume=volume,
            killed=self.get("killed", "0") == "1",
            kill_reason=self.get("kill_reason", ""),
            run_id=run_id,
        )

    def record_fill(self, fill: Fill, cumulative_filled: int) -> bool:
        """Commit ``fill``; False (and nothing written) if this execution is already in."""
        key = f"{fill.order_id}:{cumulative_filled}"
        try:
            self._db.execute(
                "INSERT INTO fills (exec_key, order_id, side, price, size, fee, maker, ts_ns)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key, fill.order_id, int(fill.side), fill.price, fill.size, fill.fee,
                 int(fill.maker), fill.ts_ns),
            )
        except sqlite3.IntegrityError:
            return False
        return True

    def fills(self) -> list[Fill]:
        """Every journaled fill, in the order it was recorded."""
        rows = self._db.execute(
            "SELECT order_id, side, price, size, fee, maker, ts_ns FROM fills ORDER BY seq"
        ).fetchall()
        return [Fill(o, Side(s), p, q, f, bool(m), t) for o, s, p, q, f, m, t in rows]

    def set_killed(self, killed: bool, reason: str, now_ns: int) -> None:
        """Latch or clear the kill switch, committed before the caller does anything else."""
        with self._transaction():
            self.put("killed", "1" if killed else "0", now_ns)
            self.put("kill_reason", reason, now_ns)

    def set_trading_state(self, state: str, now_ns: int) -> None:
        self.put("trading_state", state, now_ns)

    def put(self, key: str, value: str, now_ns: int) -> None:
        self._db.execute(
            "INSERT INTO state (key, value, ts_ns) VALUES (?, ?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value, ts_ns = excluded.ts_ns",
            (key, value, now_ns),
        )

    def get(self, key: str, default: str) -> str:
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def _transaction(self) -> sqlite3.Connection:
        # sqlite3's connection context manager commits on success, rolls back on error;
        # with isolation_level=None we must open the transaction ourselves.
        self._db.execute("BEGIN")
        return self._db
