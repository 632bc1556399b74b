"""The journal: an SQLite file (WAL mode) in the state directory.

It holds every fill (with the mid before the market event that filled it), every funding
payment of a perpetual-futures position (``funding``), the trading state and the
kill-switch latch, and is what the daemon restores from at start; for reports it also keeps
``samples``: the market's top of book, our quote, position, state and order counters every
``report.sample_ms`` of event time; ``markouts``: the exact mid at each fill's markout
horizons (:mod:`mmdaemon.markouts`); and ``order_log``: every order action we sent and
every answer of the venue (:mod:`mmdaemon.orderlog` names them and exports them as CSV). A
journal written before those (no ``fills.mid_x2``, no ``markouts``, no ``order_log``, no
``funding``) opens as it is and gains them; its fills count as unresolved markouts rather
than being measured on samples. One whose fills are a rowid table with a separate index on
the execution key has them moved, once, into one B-tree keyed by it (:data:`FILLS_TABLE`).
The promise is *no reported fill lost, none doubled*:

- a fill is committed before anything acts on it (position, quoter, breakers, logs), so a
  crash at any instant either has the fill on disk or never reported it to anyone;
- each fill carries an execution key, the order id and the venue's execution id, which the
  table enforces as unique, so an execution report the exchange repeats (or that arrives
  again after a restart) cannot double it;
- a funding payment likewise: committed before it enters the PnL, unique on the venue's
  funding id, so a payment delivered again (a reconcile after a reconnect or a restart)
  cannot be booked twice;
- the kill switch is committed *before* orders are cancelled, so a crash in the middle of
  a kill restarts KILLED.

``synchronous=NORMAL`` in WAL mode survives any crash of this process (the case we can
test); set ``durable=True`` for ``FULL`` to also survive power loss, at an fsync per fill.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import orjson

from mmdaemon.markouts import Markout
from mmdaemon.model import Fill, Funding, Side
from mmdaemon.records import LevelsRow, OrderLogRow, Restored, Sample
from mmdaemon.statedir import StateDirLock, lock_state_dir

JOURNAL_FILE = "journal.sqlite"  # its name in an instance's state directory
CHECKPOINT_ROWS = 4000
"""Rows written between two checkpoints (:meth:`Journal.checkpoint`). In a dry run's mix
(samples and order-log rows committed a supervisor tick at a time, fills one by one) a row
costs about a quarter of a WAL page, so this is about SQLite's own default, a checkpoint
per 1,000 pages; were every row a fill (a page each) the WAL would reach 4,000 pages
(16 MiB) before one."""

FILLS_TABLE = """
CREATE TABLE IF NOT EXISTS fills (  -- one B-tree, keyed by the execution: a fill's commit
    exec_key TEXT PRIMARY KEY,      -- writes one page, and a repeated execution is refused
    seq      INTEGER,               -- the order recorded: 1, 2, ... (never NULL: FILLS_SEQ)
    order_id INTEGER NOT NULL,
    side     INTEGER NOT NULL,      -- +1 buy, -1 sell
    price    INTEGER NOT NULL,      -- ticks
    size     INTEGER NOT NULL,      -- lots
    fee      INTEGER NOT NULL,      -- notional units (ticks x lots), negative = rebate
    maker    INTEGER NOT NULL,
    ts_ns    INTEGER NOT NULL,
    mid_x2   INTEGER                -- best bid + best ask (ticks) before the market event that
                                    -- filled us (live: our book when the report came);
                                    -- NULL: unknown (an older version, no book)
) WITHOUT ROWID
"""
"""The fills table. Earlier versions kept fills in a rowid table (``seq INTEGER PRIMARY
KEY``) with a separate unique index on ``exec_key``: two B-trees, so every fill's commit
wrote two pages to the WAL. :meth:`Journal.__init__` moves such a journal's fills into
this table once, keeping each fill's ``seq``."""

FILLS_SEQ = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS next_fill_seq (  -- the trigger's count, one row or none
    one INTEGER PRIMARY KEY CHECK (one = 1),
    seq INTEGER NOT NULL                     -- the seq it gives next
);
DROP TRIGGER IF EXISTS fills_seq;
CREATE TRIGGER fills_seq AFTER INSERT ON fills WHEN NEW.seq IS NULL BEGIN
    UPDATE fills SET seq = COALESCE((SELECT seq FROM next_fill_seq),
                                    (SELECT COALESCE(MAX(seq), 0) + 1 FROM fills))
    WHERE exec_key = NEW.exec_key;
    INSERT OR REPLACE INTO next_fill_seq (one, seq)
        SELECT 1, seq + 1 FROM fills WHERE exec_key = NEW.exec_key;
END;
DELETE FROM next_fill_seq;
COMMIT;
"""
"""The next ``seq`` for a fill inserted without one, which is how every earlier version
inserts (``seq`` was its rowid): a rollback to one of them (deploy/README.md) keeps
recording fills in order, rather than failing every insert on a NULL ``seq`` and taking
each fill for one already in. This version always gives ``seq``: the trigger never runs
for it (its condition is checked, nothing more).

``seq`` has no index (it would be a second B-tree written by every fill), so the largest
is found by reading the whole table: the trigger does that once, for an older version's
first fill, then keeps the count in ``next_fill_seq``, and an older version's fill costs
what it did in that version rather than a read of every fill (7 ms at 200,000). This
version forgets the count when it opens the journal (run at every open, in one
transaction): the fills it records are not counted in it."""

FILL_COLUMNS = "exec_key, seq, order_id, side, price, size, fee, maker, ts_ns, mid_x2"
INSERT_FILL = f"INSERT INTO fills ({FILL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

SCHEMA = FILLS_TABLE + """;
CREATE TABLE IF NOT EXISTS funding (   -- older journals gain it empty
    funding_id INTEGER PRIMARY KEY,     -- the venue's id of the payment (never 0)
    amount     INTEGER NOT NULL,        -- notional units (ticks x lots), received > 0, paid < 0
    ts_ns      INTEGER NOT NULL         -- the venue's time of the payment
);
CREATE TABLE IF NOT EXISTS samples (
    run_id    INTEGER NOT NULL,
    ts_ns     INTEGER NOT NULL,     -- event time
    best_bid  INTEGER,              -- ticks; NULL without a usable book
    best_ask  INTEGER,
    fair      REAL,                 -- ticks, the quoter's fair value (0: no quote)
    bid       INTEGER NOT NULL,     -- our desired quote after the risk gate, ticks
    bid_size  INTEGER NOT NULL,     -- lots; 0 = not quoting that side
    ask       INTEGER NOT NULL,
    ask_size  INTEGER NOT NULL,
    position  INTEGER NOT NULL,     -- lots
    state     TEXT NOT NULL,        -- ACTIVE / REDUCING / HALTED / KILLED
    orders    INTEGER NOT NULL,     -- cumulative order requests sent this run: places
    amends    INTEGER NOT NULL,     -- ... amends
    cancels   INTEGER NOT NULL      -- ... cancels
);
CREATE INDEX IF NOT EXISTS samples_ts ON samples (ts_ns);
CREATE TABLE IF NOT EXISTS sample_levels (  -- a ladder's every level, for samples with more
    run_id    INTEGER NOT NULL,     -- than one level on a side (the samples row holds the
    ts_ns     INTEGER NOT NULL,     -- innermost); older journals have none
    bids      TEXT NOT NULL,        -- JSON [[price ticks, size lots], ...], best first
    asks      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS markouts (
    exec_key    TEXT NOT NULL,      -- the fill's (fills.exec_key)
    horizon_ns  INTEGER NOT NULL,
    mid_x2      INTEGER NOT NULL,   -- best bid + best ask (ticks) in force at fill ts + horizon
    resolved_ns INTEGER NOT NULL,   -- event time of the first market event after that
    PRIMARY KEY (exec_key, horizon_ns)
);
CREATE TABLE IF NOT EXISTS order_log (
    seq      INTEGER PRIMARY KEY,   -- the order the daemon saw them in
    ts_ns    INTEGER NOT NULL,      -- the daemon's event time: sent, or answer received
    venue_ns INTEGER,               -- the venue's time of an answer; NULL for our actions
    wall_ns  INTEGER NOT NULL,      -- wall clock, informational
    event    TEXT NOT NULL,         -- place amend cancel | ack reject canceled
                                    -- partially_filled filled expired | fill
    order_id INTEGER NOT NULL,
    side     INTEGER NOT NULL,      -- +1 buy, -1 sell
    price    INTEGER NOT NULL,      -- ticks
    size     INTEGER NOT NULL,      -- lots: the order's total size; a fill's own size
    filled   INTEGER,               -- lots the venue says filled so far (order updates)
    reason   TEXT NOT NULL,
    exec_id  INTEGER,               -- a fill's execution id (its row in fills)
    mid_x2   INTEGER                -- a fill: bid + ask (ticks) before it; NULL unknown
);
CREATE TABLE IF NOT EXISTS state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    ts_ns INTEGER NOT NULL
);
"""


RUNBOOK_SECTION = "deploy/README.md, 'Restoring or retiring a journal'"


class JournalRefused(Exception):
    """The journal cannot be used: the daemon must not start (exit 2)."""


class JournalCorrupt(JournalRefused):
    """The journal fails SQLite's integrity check, or is not an SQLite database at all."""


class JournalUnavailable(OSError):
    """The journal cannot be opened for a reason outside it (a full disk, an I/O error):
    not refused for good, the start fails with exit 1 and systemd tries again."""


def damaged(exc: sqlite3.DatabaseError) -> bool:
    """SQLite says the file itself is bad (not a database, a malformed page), rather than
    the disk under it (full, I/O error, read-only, cannot open)."""
    name = getattr(exc, "sqlite_errorname", "")
    return name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB" or (
        not name and "malformed" in str(exc))


class JournalForeign(JournalRefused):
    """The journal was written for another venue, instrument, adapter or instance."""


IDENTITY_KEYS = ("venue", "symbol", "tick_size", "lot_size", "adapter", "account",
                 "instance")
"""What a journal belongs to. Fills are stored in ticks and lots of one instrument, and a
position restored from a paper run into a live account, from another account (a state
directory copied to another instance) or from another firm instance would be wrong from
the first order: any difference refuses the start. A key a journal has not recorded yet
(written by an older version) is not compared, and is recorded from then on."""


MarkoutRow = tuple[str, int, int, int]
"""One ``markouts`` row: exec_key, horizon_ns, mid_x2, resolved_ns (see :data:`SCHEMA`)."""


def exec_key(fill: Fill) -> str:
    """The journal's key of one execution: order id and the venue's execution id."""
    return f"{fill.order_id}:{fill.exec_id}"


def has_column(db: sqlite3.Connection, table: str, column: str) -> bool:
    """``table`` exists and has ``column`` (a journal of an older version may lack it)."""
    return any(row[1] == column for row in db.execute(f"PRAGMA table_info({table})"))


def read_fills(db: sqlite3.Connection) -> list[Fill]:
    """Every fill of the journal ``db``, in the order recorded; ``mid_x2`` 0 where the
    journal does not know it (NULL, or a journal from before the column)."""
    mid = "mid_x2" if has_column(db, "fills", "mid_x2") else "NULL"
    rows = db.execute(
        f"SELECT order_id, side, price, size, fee, maker, ts_ns, exec_key, {mid} FROM fills"
        " ORDER BY seq"
    ).fetchall()
    return [
        Fill(o, Side(s), p, q, f, bool(m), t, int(k.rpartition(":")[2]), x or 0)
        for o, s, p, q, f, m, t, k, x in rows
    ]


def read_funding(db: sqlite3.Connection) -> list[Funding]:
    """Every funding payment of the journal ``db``, in the order recorded; none in a
    journal from before the table."""
    if not has_column(db, "funding", "funding_id"):
        return []
    return [Funding(int(a), int(t), int(i)) for i, a, t in db.execute(
        "SELECT funding_id, amount, ts_ns FROM funding ORDER BY rowid")]


def read_markouts(db: sqlite3.Connection) -> list[MarkoutRow]:
    """Every markout row of the journal ``db`` in the order recorded; none in a journal
    from before the table (its fills count as unresolved)."""
    if not has_column(db, "markouts", "exec_key"):
        return []
    return [(str(k), int(h), int(m), int(r)) for k, h, m, r in db.execute(
        "SELECT exec_key, horizon_ns, mid_x2, resolved_ns FROM markouts ORDER BY rowid")]


def keyed_by_execution(db: sqlite3.Connection) -> bool:
    """The journal ``db``'s fills are one B-tree keyed by ``exec_key`` (:data:`FILLS_TABLE`),
    not an older version's rowid table with a separate index."""
    return any(row[1] == "exec_key" and row[5] == 1
               for row in db.execute("PRAGMA table_info(fills)"))


def key_fills_by_execution(db: sqlite3.Connection) -> None:
    """Move an older version's fills (``seq`` the rowid, ``exec_key`` a unique index) into
    :data:`FILLS_TABLE`, every fill with its ``seq``, in one transaction: a crash leaves
    the old table whole, and the next start moves it again. ``db`` is in autocommit mode
    (``isolation_level=None``) and has the ``mid_x2`` column already."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(FILLS_TABLE.replace("EXISTS fills", "EXISTS fills_keyed"))
        db.execute(f"INSERT INTO fills_keyed ({FILL_COLUMNS}) SELECT {FILL_COLUMNS} FROM fills")
        db.execute("DROP TABLE fills")
        db.execute("ALTER TABLE fills_keyed RENAME TO fills")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:  # a failed COMMIT may have rolled back already
            db.execute("ROLLBACK")
        raise


class Journal:
    """Append-only record of fills plus a small key/value state table.

    The journal's directory must be locked (:mod:`mmdaemon.statedir`): two instances on
    one journal would issue the same order ids and interleave their fills. Given ``lock``
    (taken on ``path``'s directory earlier), the caller keeps and releases it; without one,
    opening takes the lock (or raises :class:`~mmdaemon.statedir.StateDirLocked`), waiting
    up to ``lock_wait_s`` seconds for another process to let go of it, and :meth:`close`
    releases it.
    """

    def __init__(self, path: Path, durable: bool = False,
                 lock: StateDirLock | None = None, lock_wait_s: float = 0.0) -> None:
        self.path = path
        if lock is not None and lock.state_dir.resolve() != path.parent.resolve():
            raise ValueError(f"the lock given is on {lock.state_dir}, the journal is in "
                             f"{path.parent}")
        self._own_lock = lock is None
        self._lock = (lock_state_dir(path.parent, wait_s=lock_wait_s) if lock is None
                      else lock)
        self._db = sqlite3.connect(path, isolation_level=None)  # explicit transactions
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._check_integrity()
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            # no automatic checkpoint: the commit that filled the WAL past its limit would
            # run one, with an fsync of the WAL and the database (milliseconds), and that
            # commit is usually a fill's, on its way to the next quote; the engine
            # checkpoints off the hot path instead (checkpoint(), from Engine.persist)
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointed_at = 0  # the connection's total_changes at the last one
            self._db.executescript(SCHEMA)
            if not has_column(self._db, "fills", "mid_x2"):  # written by an older version
                self._db.execute("ALTER TABLE fills ADD COLUMN mid_x2 INTEGER")
            if not keyed_by_execution(self._db):  # an older version's two B-trees
                key_fills_by_execution(self._db)
            self._db.executescript(FILLS_SEQ)
            self._next_seq = 1 + int(self._db.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM fills").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            self._db.close()
            self._release()
            if not damaged(exc):  # a full disk, an I/O error: the file may be fine
                raise JournalUnavailable(
                    f"journal {path} cannot be opened ({exc}): free space or fix the state "
                    f"directory's file system; nothing was sent") from exc
            raise JournalCorrupt(
                f"journal {path} cannot be read as an SQLite database ({exc}): restore it "
                f"from a backup or retire it ({RUNBOOK_SECTION})") from None
        except JournalCorrupt:
            self._db.close()
            self._release()
            raise

    def _check_integrity(self) -> None:
        """``PRAGMA quick_check``: every page, record and index entry well-formed (it
        skips only the index-vs-table content comparison of ``integrity_check``); about
        0.1 s for 100,000 samples. A journal that fails it would have passed start-up and
        failed at its first write, with orders already out."""
        rows = [str(r[0]) for r in self._db.execute("PRAGMA quick_check(5)").fetchall()]
        if rows != ["ok"]:
            raise JournalCorrupt(
                f"journal {self.path} fails its integrity check ({'; '.join(rows)}): "
                f"restore it from a backup or retire it ({RUNBOOK_SECTION})")

    def check_identity(self, identity: dict[str, str], now_ns: int) -> None:
        """Refuse a journal written for something else (:data:`IDENTITY_KEYS`); record
        ``identity`` in a journal that has none yet. A journal of an older version, which
        kept only its ``instrument``, is judged on the fields that holds."""
        stored = self.get("identity", "")
        if stored:
            theirs: dict[str, str] = orjson.loads(stored)
        else:
            legacy = self.get("instrument", "")
            spec = orjson.loads(legacy) if legacy else {}
            theirs = {k: str(spec[k]) for k in ("venue", "symbol", "tick_size", "lot_size")
                      if k in spec}
        differ = {k: (theirs[k], identity[k]) for k in IDENTITY_KEYS
                  if k in theirs and theirs[k] != identity[k]}
        if differ:
            what = ", ".join(f"{k} {a!r} (this config: {b!r})" for k, (a, b) in differ.items())
            raise JournalForeign(
                f"journal {self.path} belongs to another instance: {what}. Point [state] dir "
                f"at this instance's own directory, or retire the journal ({RUNBOOK_SECTION})")
        if set(identity) - set(theirs) or not stored:  # new, or an older version's
            self.put("identity", orjson.dumps({**identity, **theirs}).decode(), now_ns)

    def close(self) -> None:
        self._db.close()
        self._release()

    def _release(self) -> None:
        if self._own_lock:  # a lock the caller gave stays the caller's to release
            self._lock.close()

    def restore(self, now_ns: int) -> Restored:
        """Read the fills, the funding payments, the kill latch and the PnL peak; count this
        start as a new run."""
        run_id = int(self.get("run_id", "0")) + 1
        self.put("run_id", str(run_id), now_ns)
        peak = self.get("pnl_peak_units", "")
        return Restored(
            fills=self.fills(),
            funding=read_funding(self._db),
            killed=self.get("killed", "0") == "1",
            kill_reason=self.get("kill_reason", ""),
            pnl_peak_units=Fraction(peak) if peak else None,
            run_id=run_id,
        )

    def record_fill(self, fill: Fill) -> bool:
        """Commit ``fill`` with its mid before (``mid_x2``, 0: unknown); False (and nothing
        written) if this execution is already in."""
        if fill.exec_id <= 0:
            raise ValueError(f"fill of order {fill.order_id} has no execution id")
        try:
            self._db.execute(
                INSERT_FILL,
                (exec_key(fill), self._next_seq, fill.order_id,
                 int(fill.side), fill.price, fill.size, fill.fee, int(fill.maker), fill.ts_ns,
                 fill.mid_x2 or None),
            )
        except sqlite3.IntegrityError:
            return False
        self._next_seq += 1
        return True

    def record_funding(self, funding: Funding) -> bool:
        """Commit the funding payment; False (and nothing written) if this ``funding_id``
        is already in."""
        if funding.funding_id == 0:
            raise ValueError(f"funding payment at {funding.ts_ns} ns has no funding id")
        try:
            self._db.execute("INSERT INTO funding (funding_id, amount, ts_ns) VALUES (?, ?, ?)",
                             (funding.funding_id, funding.amount, funding.ts_ns))
        except sqlite3.IntegrityError:
            return False
        return True

    def checkpoint(self) -> bool:
        """Once :data:`CHECKPOINT_ROWS` rows were written since the last one: copy the WAL's
        committed pages into the database file, so that the WAL starts over and stays
        small; True if it ran. PASSIVE: it never waits for a reader (pages a reader still
        needs wait for the next one). Only where SQLite keeps the committed pages changes:
        a commit is as durable before it as after. Rarely, because each one fsyncs the WAL
        and the database (milliseconds, on the event loop)."""
        changes = self._db.total_changes
        if changes - self._checkpointed_at < CHECKPOINT_ROWS:
            return False
        self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self._checkpointed_at = changes
        return True

    def fills(self) -> list[Fill]:
        """Every journaled fill, in the order it was recorded."""
        return read_fills(self._db)

    def add_markouts(self, markouts: list[Markout]) -> None:
        """Append resolved markouts (for reports, like samples; one already in is kept)."""
        with self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO markouts VALUES (?, ?, ?, ?)",
                [(exec_key(m.fill), m.horizon_ns, m.mid_x2, m.resolved_ns) for m in markouts])

    def markouts(self) -> list[MarkoutRow]:
        """Every journaled markout, in the order it was recorded."""
        return read_markouts(self._db)

    def add_samples(self, rows: list[Sample]) -> None:
        """Append market/quote samples (for reports; not part of the no-loss promise)."""
        with self._transaction():
            self._db.executemany(
                "INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )

    def add_sample_levels(self, rows: list[LevelsRow]) -> None:
        """Append the levels of samples that quoted more than one level on a side."""
        with self._transaction():
            self._db.executemany("INSERT INTO sample_levels VALUES (?, ?, ?, ?)", rows)

    def add_order_log(self, rows: Sequence[OrderLogRow]) -> None:
        """Append order-log rows (for export and reports; like samples, written in batches
        behind the hot path: a crash loses at most the rows since the last write)."""
        with self._transaction():
            self._db.executemany(
                "INSERT INTO order_log (ts_ns, venue_ns, wall_ns, event, order_id, side, price,"
                " size, filled, reason, exec_id, mid_x2) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                " ?, ?)", rows)

    def set_killed(self, killed: bool, reason: str, now_ns: int) -> None:
        """Latch or clear the kill switch, committed before the caller does anything else."""
        with self._transaction():
            self.put("killed", "1" if killed else "0", now_ns)
            self.put("kill_reason", reason, now_ns)

    def set_trading_state(self, state: str, now_ns: int) -> None:
        self.put("trading_state", state, now_ns)

    def set_pnl_peak(self, peak_units: Fraction, now_ns: int) -> None:
        """Keep the drawdown breaker's reference across restarts."""
        self.put("pnl_peak_units", str(peak_units), now_ns)

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
