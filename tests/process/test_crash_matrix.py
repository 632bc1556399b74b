"""Crash-restart matrix (issue #8, item 3): ``mmdaemon run`` SIGKILLed again and again.

One ``mmdaemon sim`` process (the bundled recording) runs for the whole test. A daemon
(``mmdaemon run`` on the sim config, a state directory in ``tmp_path``) is started, killed
with SIGKILL at a point chosen by a seeded RNG, restarted on the same state directory and
config, and so on. The kill points are spread over the daemon's phases:

- ``boot``: a random instant after the process started (often before the journal is open);
- ``reconcile``: right after ``journal_restored``, while the gateway connects and reconciles
  (the killed run's orders still rest at the venue, its missed fills are being recovered);
- ``ready``: right after the ``ready`` event (the first quotes are being placed);
- ``resting``: a while after the first order was sent (quotes rest at the venue);
- ``fill``: right after a ``fill`` event;
- ``reconnect``: the sim process is frozen (SIGSTOP, 1.6-2.6 s) long enough for the
  daemon's feed to go stale (``feed.stale_after_ms`` is 1000 here, 5000 in
  ``config/sim.toml``) and reconnect, and for the staleness halt to send its cancels; the
  daemon is killed while the sim is frozen or soon after it resumes (SIGCONT);
- ``venue_reconnect``: the same with a longer freeze (4-5.5 s): the halt's cancels time out
  (``exchange.request_timeout_ms`` is 1000 here, 5000 in ``config/sim.toml``), the gateway
  suspects its connection, reconciles, drops it and reconnects; killed anywhere in that.

After every restart that reaches READY (``ready``) and is reconciled (``venue_status``
ready=True), the venue itself is asked (over its WebSocket API, as a client of the account):

- no orphan: every open order of the account is one of the current run's orders (its client
  order id is ``client_order_id(prefix, order_id)`` with ``order_id >> 32 == run_id``) that
  this daemon sent;
- the journal's fills (the SQLite file, opened read-only; after a kill, a copy) are the
  account's trades (``myTrades``): the same trade ids, none lost, none doubled (one row per
  trade id), the same side, price, size and fee (the sim charges a maker fee of
  :data:`SIM_MAKER_FEE_BPS`, so fees are not all zero);
- the venue's balances (``account.status``) less what the account started with
  (:data:`~tests.helpers.SIM_BALANCES`) are the journal's position and its cash after
  fees, whenever the account did not trade while they were read;
- the position: ``journal_restored`` holds exactly what the journal held at the kill, and
  every later ``fill`` event's position continues from it, fill by fill, in journal order;
  its cash and fees (PnL's inputs) are the journal's too;
- no daemon failed on its own (``service_failed``) or failed to handle an execution
  (``gateway_listener_failed``, ``journal_write_failed``, ...), killed ones included.

At the end the last daemon stops with SIGTERM (exit 0, nothing open at the sim), its
``stopped`` position equals the signed sum of the sim's trades, the journal equals the
trade history exactly, and the account's balances at the sim, less its starting ones, are
the journal's position and cash after fees.

The RNG fixes the plan (phases and delays), not the outcome: where a kill lands depends on
timing, so each kill point's report line (printed; ``pytest -s`` shows it) says what it
hit, from the killed daemon's log. ``test_crash_restart_matrix`` runs 8 kill points (about
10 s). The long variant (marked ``slow``) runs ``MMDAEMON_CRASH_RUNS`` kill points
(``MMDAEMON_CRASH_SEED`` and ``MMDAEMON_CRASH_SPEED`` change the seed and the sim's speed)
and is skipped unless that variable is set::

    MMDAEMON_CRASH_RUNS=50 .venv/bin/pytest -m slow tests/process/test_crash_matrix.py -s
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pytest
from websockets.asyncio.client import connect

from mmdaemon.model import BINANCE_SPOT_BTCUSDT
from mmdaemon.venues import binance_api as api
from mmdaemon.venues import binance_parse as parse
from tests.conftest import REPO, SPOT_FILES
from tests.daemon_process import Daemon, Event
from tests.helpers import SIM_BALANCES
from tests.process.test_record_sim_cli import free_port, mmdaemon, wait_for_line

KEY, SECRET = "crash-key", "crash-secret-never-in-logs"
PREFIX = "mmsim"  # exchange.client_id_prefix of config/sim.toml
DEFAULT_RUNS = 8
DEFAULT_SEED = 1234
DEFAULT_SPEED = 10.0  # the bundled recording (~11 min of market) lasts ~66 s at speed 10
PHASES = ("boot", "reconcile", "ready", "resting", "fill", "reconnect", "venue_reconnect")
FROZEN = frozenset({"reconnect", "venue_reconnect"})  # the sim is frozen for these
EARLY = frozenset({"boot", "reconcile", "ready"})  # killed before the restart is checked
START_TIMEOUT_S = 30.0
LEDGER_TIMEOUT_S = 8.0
TRADE_PAGE = api.MAX_MY_TRADES_LIMIT
# the sim's maker fee: not zero, so that fees are journaled, restored and checked against the
# venue's commissions and balances (a fraction of a bps: the PnL breakers stay quiet)
SIM_MAKER_FEE_BPS = "0.15"
START_BTC, START_USDT = Decimal(1), Decimal(100_000)  # the account's: SIM_BALANCES


# ---- the venue, asked as a client of the account ---------------------------------------------


class SimAccount:
    """Our account at the sim over ``/ws-api/v3``: a new connection per question.

    Mind the sim's request weight (6,000 per minute, shared with the daemon as for one
    IP): ``openOrders.status`` costs 6, ``myTrades`` 20; the test asks a few times per run.
    """

    def __init__(self, port: int) -> None:
        self.url = f"ws://127.0.0.1:{port}/ws-api/v3"
        self.creds = api.Credentials(KEY, SECRET)
        self.requests = 0

    def _ask(self, frame: Callable[[int], bytes], more: Callable[[object], bool]
             ) -> list[object]:
        """Send ``frame(i)`` for i = 0, 1, ... on one connection while ``more(result)``;
        every result."""

        async def ask() -> list[object]:
            results: list[object] = []
            async with connect(self.url, proxy=None, max_size=64 * 1024 * 1024) as ws:
                while not results or more(results[-1]):
                    self.requests += 1
                    await ws.send(frame(len(results)).decode())
                    response = parse.parse_response(await ws.recv())
                    assert isinstance(response, api.Response), response
                    assert response.error is None, response
                    results.append(response.result)
            return results

        return asyncio.run(ask())

    def open_orders(self) -> list[dict[str, Any]]:
        """``openOrders.status``: the account's open orders in the symbol."""
        (result,) = self._ask(lambda i: api.open_orders_status(
            BINANCE_SPOT_BTCUSDT, request_id=i, creds=self.creds, timestamp_ms=_now_ms()),
            lambda _: False)
        assert isinstance(result, list) and all(isinstance(o, dict) for o in result)
        return result

    def balances(self) -> dict[str, Decimal]:
        """``account.status``: free + locked per asset."""
        (result,) = self._ask(lambda i: api.account_status(
            request_id=i, creds=self.creds, timestamp_ms=_now_ms()), lambda _: False)
        assert isinstance(result, dict), result
        return {b["asset"]: Decimal(b["free"]) + Decimal(b["locked"])
                for b in result["balances"]}

    def trades(self) -> list[api.AccountTrade]:
        """``myTrades``: every trade of the account (paged by ``fromId``), by trade id."""
        trades: list[api.AccountTrade] = []

        def page(i: int) -> bytes:
            from_id = trades[-1].trade_id + 1 if trades else 1
            return api.my_trades(BINANCE_SPOT_BTCUSDT, from_id=from_id, limit=TRADE_PAGE,
                                 request_id=i, creds=self.creds, timestamp_ms=_now_ms())

        def more(result: object) -> bool:
            parsed = parse.parse_my_trades(result, BINANCE_SPOT_BTCUSDT)
            assert not isinstance(parsed, api.ProtocolError), parsed
            trades.extend(parsed)
            return len(parsed) == TRADE_PAGE

        self._ask(page, more)
        ids = [t.trade_id for t in trades]
        assert ids == sorted(set(ids)), "myTrades pages overlap or are out of order"
        return trades


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def commission(trade: api.AccountTrade) -> int:
    """The trade's commission in notional units (the sim charges the quote asset)."""
    units = parse.commission_units(BINANCE_SPOT_BTCUSDT, trade.commission,
                                 trade.commission_asset, trade.price, api.Assets("BTC", "USDT"))
    assert units is not None, trade
    return units


def signed_trades(trades: Iterable[api.AccountTrade]) -> int:
    """Net base bought minus sold over ``trades``, lots."""
    return sum(t.qty if t.is_buyer else -t.qty for t in trades)


# ---- the journal, read-only ------------------------------------------------------------------


class Row(NamedTuple):
    """One row of the journal's ``fills`` table."""

    seq: int
    exec_key: str
    order_id: int
    side: int  # +1 buy, -1 sell
    price: int
    size: int
    fee: int
    maker: int
    ts_ns: int

    @property
    def exec_id(self) -> int:
        return int(self.exec_key.rpartition(":")[2])


def journal_rows(path: Path, *, crashed: bool = False) -> list[Row]:
    """The ``fills`` table in ``seq`` order (nothing before the journal exists).

    With a daemon running, the file is opened read-only. After a SIGKILL (``crashed``) a
    read-only connection may refuse the file, since a writer that died mid-transaction
    leaves a WAL index to rebuild (SQLITE_READONLY_RECOVERY), and a read-write connection
    would repair the daemon's file before the daemon does; so the database and its WAL are
    copied and the copy is read (its recovery sees exactly what was committed).
    """
    if not path.exists():
        return []
    with tempfile.TemporaryDirectory() as tmp:
        if crashed:
            for suffix in ("", "-wal"):
                source = Path(f"{path}{suffix}")
                if source.exists():
                    shutil.copyfile(source, Path(tmp) / f"{path.name}{suffix}")
            uri = f"file:{Path(tmp) / path.name}"
        else:
            uri = f"file:{path}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5.0)) as db:
            try:
                rows = db.execute("SELECT seq, exec_key, order_id, side, price, size, fee,"
                                  " maker, ts_ns FROM fills ORDER BY seq").fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return []  # killed between creating the file and its schema
                raise
    return [Row(*r) for r in rows]


def signed_rows(rows: Iterable[Row]) -> int:
    return sum(r.side * r.size for r in rows)


def cash_units(rows: Iterable[Row]) -> int:
    """Cash from the fills, notional units (ticks x lots): sells in, buys out."""
    return -sum(r.side * r.price * r.size for r in rows)


def inversions(rows: list[Row]) -> list[tuple[int, int]]:
    """(exec id, the higher exec id journaled before it): fills journaled out of trade id
    order, which a resume from the journal's highest trade id cannot survive."""
    out: list[tuple[int, int]] = []
    top = 0
    for r in rows:
        if r.exec_id < top:
            out.append((r.exec_id, top))
        top = max(top, r.exec_id)
    return out


# ---- processes -------------------------------------------------------------------------------


class Drain:
    """Read a process's stdout and stderr in threads so its pipes never fill up."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.lines: list[bytes] = []
        self._threads = [threading.Thread(target=self._read, args=(stream,), daemon=True)
                         for stream in (proc.stdout, proc.stderr) if stream is not None]
        for t in self._threads:
            t.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line)

    def seen(self, needle: bytes) -> bool:
        return any(needle in line for line in list(self.lines))


def until(pred: Callable[[], bool], timeout: float, poll: float = 0.005) -> bool:
    """Poll ``pred`` until it holds or ``timeout`` seconds passed; its last value."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)  # the poll interval
    return True


def named(events: list[Event], name: str, **fields: Any) -> list[Event]:
    return [e for e in list(events)
            if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())]


def alive(d: Daemon) -> None:
    """Fail with the daemon's last words if it exited by itself."""
    if d.proc.poll() is not None:
        d.kill()  # reaps it and joins the reader
        names = [e.get("event") for e in d.events[-30:-5]]
        last = "\n".join(repr(e) for e in d.events[-5:])
        stderr = d.proc.stderr.read().decode(errors="replace")[-3000:] if d.proc.stderr else ""
        raise AssertionError(f"the daemon exited with {d.proc.returncode}; events {names} then"
                             f"\n{last}\nstderr: {stderr}")


FAILURES = frozenset({
    # the daemon failed on its own (it was about to exit 1) or an execution was not handled
    "service_failed", "background_task_failed", "journal_write_failed",
    "gateway_listener_failed", "gateway_handler_failed", "gateway_status_listener_failed",
})


def no_failure(d: Daemon) -> None:
    """``d`` logged none of :data:`FAILURES` (with its stderr if it exited)."""
    failed = [e for e in list(d.events) if e.get("event") in FAILURES]
    if failed:
        stderr = ""
        if d.proc.poll() is not None and d.proc.stderr is not None:
            stderr = d.proc.stderr.read().decode(errors="replace")[-3000:]
        raise AssertionError(f"the daemon failed by itself: {failed}\nstderr: {stderr}")


def wait_event(d: Daemon, name: str, timeout: float, **fields: Any) -> Event | None:
    """The first ``name`` event (with ``fields``), polled tightly; None on timeout."""
    found: list[Event] = []

    def seen() -> bool:
        alive(d)
        hits = named(d.events, name, **fields)
        if hits:
            found.append(hits[0])
        return bool(hits)

    return found[0] if until(seen, timeout, poll=0.002) else None


RECONNECTING = ("feed_stale", "feed_disconnected", "feed_reconnecting", "feed_connect_failed",
                "gateway_disconnected", "gateway_suspect", "gateway_reconnecting")


def reached(events: list[Event]) -> str:
    """What the killed daemon had got to, from its log."""
    names = [str(e.get("event")) for e in events]
    last = names[-1] if names else "-"
    fills = names.count("fill")
    sent = names.count("order_sent")
    if "journal_restored" not in names:
        return "before the journal was opened" + (f" (last: {last})" if names else "")
    if not named(events, "venue_status", ready=True):
        return f"reconciling with the venue (last: {last})"
    if "ready" not in names:
        return f"venue reconciled, book not synced yet (last: {last})"
    back = max((i for i, e in enumerate(events) if e.get("event") == "state_changed"
                and e.get("new") in ("ACTIVE", "REDUCING")), default=-1)
    trouble = [i for i, n in enumerate(names) if n in RECONNECTING and i > back]
    if trouble:
        return (f"during a reconnect ({', '.join(dict.fromkeys(names[i] for i in trouble))};"
                f" {fills} fills, {sent} orders sent; last: {last})")
    return f"trading ({fills} fills, {sent} orders sent; last: {last})"


def write_config(tmp_path: Path, port: int) -> Path:
    """config/sim.toml on ``port`` with its state in ``tmp_path``, debug logs, a feed that
    calls itself stale after 1 s and requests that time out after 1 s (so that a freeze of
    the sim of a few seconds provokes reconnects)."""
    text = (REPO / "config" / "sim.toml").read_text()
    for old, new in (("9443", str(port)),
                     ('dir = "../state/sim"', f'dir = "{tmp_path / "state"}"'),
                     ("stale_after_ms = 5000", "stale_after_ms = 1000"),
                     ("request_timeout_ms = 5000", "request_timeout_ms = 1000")):
        assert old in text, f"config/sim.toml changed: {old!r} not found"
        text = text.replace(old, new)
    config = tmp_path / "sim.toml"
    config.write_text(text + '\n[logging]\nlevel = "debug"\n')
    return config


# ---- the matrix ------------------------------------------------------------------------------


@dataclass
class KillPoint:
    """One planned kill and what it hit."""

    index: int
    phase: str
    delay_s: float  # the random delay drawn for the phase
    pause_s: float = 0.0  # (venue_)reconnect: how long the sim was frozen
    run_id: int | None = None  # the killed run (None: killed before journal_restored)
    reached: str = ""
    fills: int = 0  # fill events of the killed run
    left_open: int = 0  # our orders open at the sim right after the kill
    journal_fills: int = 0  # journal rows after the kill
    # the restart after this kill (the next run):
    recovered: int = 0  # gateway_fill_recovered
    strays: int = 0  # gateway_unwanted_order (orders of killed runs found open, cancelled)
    duplicates: int = 0  # fill_duplicate_ignored
    checked: bool = False  # the restart reached READY and the checks ran on it


def schedule(rng: random.Random, runs: int) -> list[KillPoint]:
    """``runs`` kill points: every phase once per block of seven, shuffled, random
    delays."""
    phases: list[str] = []
    while len(phases) < runs:
        block = list(PHASES)
        rng.shuffle(block)
        phases += block
    points: list[KillPoint] = []
    for i, phase in enumerate(phases[:runs]):
        if phase == "boot":
            delay = rng.uniform(0.05, 0.6)
        elif phase in ("reconcile", "ready", "fill"):
            delay = rng.uniform(0.0, 0.02)
        elif phase == "resting":
            delay = rng.uniform(0.1, 1.5)
        elif phase == "reconnect":  # kill this long after the sim was frozen
            delay = rng.uniform(1.2, 3.2)
        else:
            delay = rng.uniform(2.5, 6.5)
        kp = KillPoint(i, phase, round(delay, 4))
        if phase == "reconnect":
            kp.pause_s = round(rng.uniform(1.6, 2.6), 4)
        elif phase == "venue_reconnect":
            kp.pause_s = round(rng.uniform(4.0, 5.5), 4)
        points.append(kp)
    return points


class Matrix:
    """The sim, the current daemon and the checks between them."""

    def __init__(self, tmp_path: Path, sim: subprocess.Popen[bytes], port: int) -> None:
        self.sim = sim
        self.sim_out = Drain(sim)
        self.account = SimAccount(port)
        self.config = write_config(tmp_path, port)
        self.journal = tmp_path / "state" / "journal.sqlite"
        self.rows_at_kill: list[Row] = []  # the journal when the last daemon died
        self.balance_checks = 0  # restarts whose venue balances were compared
        self.daemons: list[Daemon] = []

    def dump(self, out: Path) -> Path:
        """Every daemon's events (``NN.jsonl``, one per start) and the sim's side
        (``sim.json``: the account's trades and open orders now), for a post-mortem."""
        out.mkdir(parents=True, exist_ok=True)
        for i, d in enumerate(self.daemons):
            (out / f"{i:02d}.jsonl").write_bytes(b"".join(
                orjson.dumps(e, default=repr) + b"\n" for e in list(d.events)))
        with contextlib.suppress(Exception):  # the sim may be what failed
            trades = [t._asdict() for t in self.account.trades()]
            (out / "sim.json").write_bytes(orjson.dumps(
                {"trades": trades, "open_orders": self.account.open_orders()}, default=str))
        return out

    def tally(self, points: list[KillPoint]) -> None:
        """What each restart did about the kill before it (from its log)."""
        for kp, restart in zip(points, self.daemons[1:], strict=False):
            kp.recovered = len(named(restart.events, "gateway_fill_recovered"))
            kp.strays = len(named(restart.events, "gateway_unwanted_order"))
            kp.duplicates = len(named(restart.events, "fill_duplicate_ignored"))

    def tape_finished(self) -> bool:
        return self.sim_out.seen(b"sim_tape_finished")

    def start(self) -> Daemon:
        d = Daemon(self.config)
        self.daemons.append(d)
        return d

    # -- checks ---------------------------------------------------------------------------

    def check_restored(self, d: Daemon) -> Event | None:
        """``journal_restored`` (if it came) is what the journal held at the last kill."""
        hits = named(d.events, "journal_restored")
        if not hits:
            return None
        restored = hits[0]
        rows = self.rows_at_kill
        assert restored["fills"] == len(rows), (restored, len(rows))
        assert restored["position_lots"] == signed_rows(rows), (
            f"restored position {restored['position_lots']} != the journal's "
            f"{signed_rows(rows)} at the kill")
        assert (restored["cash_units"], restored["fees_units"]) == (
            cash_units(rows), sum(r.fee for r in rows)), restored  # the PnL's inputs
        return restored

    @staticmethod
    def check_fill_events(restored: Event, fills: list[Event], rows: list[Row]) -> None:
        """A run's ``fill`` events (all logged before ``rows`` were read) are the journal's
        rows after the restored ones, in order, each with the position so far: a fill is
        journaled before anything acts on it, its log line included."""
        base = int(restored["fills"])
        position = int(restored["position_lots"])
        for k, e in enumerate(fills):
            position += e["size"] if e["side"] == "BUY" else -e["size"]
            assert e["position_lots"] == position, (
                f"fill {e['exec_id']}: position {e['position_lots']}, expected {position} "
                f"(restored {restored['position_lots']} + the run's fills)")
            assert base + k < len(rows), (
                f"fill event {e['exec_id']} was logged but is not in the journal")
            row = rows[base + k]
            assert (row.exec_id, row.order_id, row.side, row.price, row.size) == (
                e["exec_id"], e["order_id"], 1 if e["side"] == "BUY" else -1, e["price"],
                e["size"]), (row, e)
            assert signed_rows(rows[:base + k + 1]) == position

    @staticmethod
    def sent(d: Daemon, order_id: int) -> bool:
        """``d`` logged the placing of ``order_id``."""
        return any(e.get("order_id") == order_id and e.get("kind") == "place"
                   for e in named(d.events, "order_sent"))

    def check_no_orphans(self, d: Daemon, run_id: int) -> int:
        """Every open order of ours at the sim belongs to this run and was sent by it."""
        orders = self.account.open_orders()
        for o in orders:
            cid = o["clientOrderId"]
            order_id = api.order_id_of(PREFIX, cid)
            assert order_id is not None, f"open order {cid!r} is not the daemon's: {o}"
            assert order_id >> 32 == run_id, (
                f"orphan: open order {cid!r} (order id {order_id:#x}) is from run "
                f"{order_id >> 32}, not the current run {run_id}: {o}")
            assert until(partial(self.sent, d, order_id), 2.0), (
                f"open order {cid!r} of run {run_id} was never sent by this daemon")
        return len(orders)

    def check_ledger(self, exact: bool = False) -> tuple[list[Row], list[api.AccountTrade]]:
        """The journal's fills are the account's trades at the sim: none lost, none doubled.

        The daemon keeps trading, so the two are compared at a moment when the journal has
        caught up with the venue (the trades listed) and nothing newer came in between;
        ``exact``: no daemon runs, the two must be equal at once.
        """
        deadline = time.monotonic() + (0.0 if exact else LEDGER_TIMEOUT_S)
        while True:
            trades = self.account.trades()
            want = {t.trade_id for t in trades}
            while True:  # the journal catches up with fills the venue already reported
                rows = journal_rows(self.journal)
                have = {r.exec_id for r in rows}
                if want <= have or time.monotonic() >= deadline:
                    break
                time.sleep(0.05)  # the poll interval
            if have == want or time.monotonic() >= deadline:
                break
            # newer fills in the journal than in our look at the venue: look again
        later = self.account.trades() if have != want else trades
        lost = sorted(want - have)
        phantom = sorted(have - {t.trade_id for t in later})
        assert not lost and not phantom, (
            f"fills lost: trades {lost} at the sim are not in the journal; journal fills "
            f"{phantom} are not trades of the account")
        assert len(rows) == len(have), (
            "fills doubled: " + repr(sorted(r.exec_key for r in rows
                                            if sum(x.exec_id == r.exec_id for x in rows) > 1)))
        if exact:
            assert have == want
        by_id = {t.trade_id: t for t in later}
        for r in rows:
            t = by_id[r.exec_id]
            assert (r.side, r.price, r.size, r.fee) == (
                1 if t.is_buyer else -1, t.price, t.qty, commission(t)), (r, t)
            assert int(r.exec_key.partition(":")[0]) == r.order_id, r
        return rows, later

    def check_balances(self, rows: list[Row], trades: list[api.AccountTrade]) -> bool:
        """The account's balances at the sim less its starting ones (1 BTC, 100,000 USDT:
        :data:`~tests.helpers.SIM_BALANCES`) are the journal's position and cash after fees,
        read while the account did not trade (``trades`` are its
        trades, ``rows`` the journal equal to them). False when it traded meanwhile: the
        balances cannot be compared then (the next check or the end compares them)."""
        balances = self.account.balances()
        if len(self.account.trades()) != len(trades):
            return False
        inst = BINANCE_SPOT_BTCUSDT
        assert balances["BTC"] - START_BTC == signed_rows(rows) * inst.lots.unit, (
            f"BTC balance {balances['BTC']} != the journal's position {signed_rows(rows)} lots")
        fees = sum(r.fee for r in rows)
        assert balances["USDT"] - START_USDT == (cash_units(rows) - fees) * (
            inst.ticks.unit * inst.lots.unit), (
            f"USDT balance {balances['USDT']} != the journal's cash {cash_units(rows)} - fees "
            f"{fees} (notional units)")
        return True

    def check_restart(self, d: Daemon) -> tuple[int, int]:
        """A restarted daemon at READY and reconciled: restored state, orphans, ledger,
        position. Returns (run id, open orders at the sim)."""
        restored = wait_event(d, "journal_restored", START_TIMEOUT_S)
        assert restored is not None, "no journal_restored"
        self.check_restored(d)
        assert wait_event(d, "venue_status", START_TIMEOUT_S, ready=True) is not None, \
            "the venue never became ready"
        assert wait_event(d, "ready", START_TIMEOUT_S) is not None, (
            "never READY" + (" (the sim's recording has ended: lower MMDAEMON_CRASH_SPEED)"
                             if self.tape_finished() else ""))
        run_id = int(restored["run_id"])
        open_now = self.check_no_orphans(d, run_id)
        try:
            rows, trades = self.check_ledger()
            if self.check_balances(rows, trades):
                self.balance_checks += 1
        except AssertionError:
            no_failure(d)  # a daemon that failed on its own explains it better
            alive(d)
            raise
        # the fill events lag the journal by a log line: wait for the rows read to be logged
        covered = int(restored["fills"])
        assert until(lambda: covered + len(named(d.events, "fill")) >= len(rows), 2.0), (
            f"{len(rows) - covered} journaled fills of run {run_id} were never logged")
        fills = named(d.events, "fill")  # first the log, then the journal
        self.check_fill_events(restored, fills, journal_rows(self.journal))
        no_failure(d)
        return run_id, open_now

    # -- a kill -----------------------------------------------------------------------------

    def kill(self, d: Daemon, kp: KillPoint, done: bool = False) -> None:
        """SIGKILL ``d`` (``done``: it was killed already), then note what it left."""
        if not done:
            alive(d)
            d.kill()
        assert d.proc.returncode == -signal.SIGKILL, d.proc.returncode
        no_failure(d)
        kp.reached = reached(d.events)
        restored = named(d.events, "journal_restored")
        kp.run_id = int(restored[0]["run_id"]) if restored else None
        kp.fills = len(named(d.events, "fill"))
        rows = journal_rows(self.journal, crashed=True)
        if restored:
            self.check_fill_events(restored[0], named(d.events, "fill"), rows)
        self.rows_at_kill = rows
        kp.journal_fills = len(rows)
        kp.left_open = len(self.account.open_orders())

    def run_phase(self, d: Daemon, kp: KillPoint) -> None:
        """Wait for ``kp``'s phase in ``d`` and SIGKILL it there."""
        if kp.phase == "boot":
            until(lambda: d.proc.poll() is not None, kp.delay_s)
        elif kp.phase == "reconcile":
            assert wait_event(d, "journal_restored", START_TIMEOUT_S) is not None
            time.sleep(kp.delay_s)  # the kill point under test: a moment, not a wait
        elif kp.phase == "ready":
            assert wait_event(d, "ready", START_TIMEOUT_S) is not None
            time.sleep(kp.delay_s)  # the kill point under test: a moment, not a wait
        elif kp.phase == "resting":
            if wait_event(d, "order_sent", 10.0, kind="place") is None:
                kp.reached = "no order was sent within 10 s; "
            time.sleep(kp.delay_s)  # the kill point under test: a moment, not a wait
        elif kp.phase == "fill":
            seen = len(named(d.events, "fill"))
            if not until(lambda: len(named(d.events, "fill")) > seen, 15.0, poll=0.001):
                kp.reached = "no fill within 15 s; "
            time.sleep(kp.delay_s)  # the kill point under test: a moment, not a wait
        else:
            self.freeze_sim_and_kill(d, kp)
            return
        note = kp.reached
        self.kill(d, kp)
        kp.reached = note + kp.reached

    def freeze_sim_and_kill(self, d: Daemon, kp: KillPoint) -> None:
        """SIGSTOP the sim for ``pause_s``; kill the daemon ``delay_s`` after the freeze:
        while the sim is frozen (the daemon's feed is stale and reconnecting, its halt's
        cancels wait in the sim's socket) or after it resumed (resync, cancels answered)."""
        t0 = time.monotonic()
        os.kill(self.sim.pid, signal.SIGSTOP)
        killed = False
        try:
            if kp.delay_s < kp.pause_s:
                # the kill point and the freeze under test: moments, not waits
                time.sleep(max(0.0, t0 + kp.delay_s - time.monotonic()))
                alive(d)
                d.kill()  # the rest of kill() asks the sim: after it resumes
                killed = True
            time.sleep(max(0.0, t0 + kp.pause_s - time.monotonic()))  # the freeze's length
        finally:
            os.kill(self.sim.pid, signal.SIGCONT)
        if not killed:
            time.sleep(max(0.0, t0 + kp.delay_s - time.monotonic()))  # the kill point
        where = "sim frozen" if killed else "after the sim resumed"
        self.kill(d, kp, done=killed)
        kp.reached = f"{where}: {kp.reached}"


def run_matrix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runs: int, seed: int,
               speed: float) -> None:
    monkeypatch.setenv("MMDAEMON_API_KEY", KEY)  # both processes inherit them
    monkeypatch.setenv("MMDAEMON_API_SECRET", SECRET)
    started = time.monotonic()
    port = free_port()
    sim = mmdaemon("sim", *SIM_BALANCES, *map(str, SPOT_FILES), "--port", str(port),
                   "--speed", f"{speed:g}", "--maker-fee-bps", SIM_MAKER_FEE_BPS)
    points = schedule(random.Random(seed), runs)
    m: Matrix | None = None
    try:
        wait_for_line(sim, b"sim_listening")
        m = Matrix(tmp_path, sim, port)
        d = m.start()
        try:
            for i, kp in enumerate(points):
                if kp.phase not in EARLY:
                    m.check_restart(d)  # after the previous kill (or the first start)
                    if i:
                        points[i - 1].checked = True
                m.run_phase(d, kp)
                d = m.start()
                m.check_restored(d)  # as soon as it says what it restored
            run_id, _ = m.check_restart(d)
            points[-1].checked = True
        except BaseException:
            m.tally(points)
            print(report(f"crash matrix FAILED (seed {seed}, speed {speed:g}); every "
                         f"daemon's log is in {m.dump(tmp_path / 'logs')}; so far:",
                         points[:len(m.daemons)]))
            raise
        m.tally(points)
        # the end: a graceful stop leaves nothing at the venue and the books agree exactly
        code = d.stop()
        no_failure(d)
        assert code == 0, d.proc.stderr.read().decode()[-2000:] if d.proc.stderr else ""
        stopped = named(d.events, "stopped")
        assert len(stopped) == 1 and stopped[0]["open_orders"] == 0, stopped
        assert m.account.open_orders() == []
        rows, trades = m.check_ledger(exact=True)
        assert stopped[0]["position_lots"] == signed_trades(trades) == signed_rows(rows)
        # the venue's balances, less the account's starting ones, are the journal's
        # position and cash after fees
        assert m.check_balances(rows, trades)
        fees = sum(r.fee for r in rows)
        assert fees > 0 or not rows, "the sim charged no fee: the fee checks checked nothing"
        restored = named(d.events, "journal_restored")[0]
        fills = named(d.events, "fill")
        m.check_fill_events(restored, fills, rows)
        assert len(fills) == len(rows) - restored["fills"], "a journaled fill was not logged"
        for daemon in m.daemons:
            assert not [e for e in daemon.events if SECRET in repr(e)]
        print(report(
            f"crash matrix: {runs} kills, seed {seed}, sim speed {speed:g}, "
            f"{time.monotonic() - started:.1f} s, last run {run_id}; {len(trades)} trades at "
            f"the sim = {len(rows)} journal fills, final position {signed_trades(trades)} "
            f"lots, fees {sum(r.fee for r in rows)} units = the sim's commissions; venue "
            f"balances = journal position and cash - fees at {m.balance_checks} restarts and "
            f"the end; {m.account.requests} test requests to the sim; journaled out of trade "
            f"id order: {inversions(rows) or 'none'}"
            + ("; the sim's recording ended during the test" if m.tape_finished() else ""),
            points))
    finally:
        if m is not None:
            for daemon in m.daemons:
                if daemon.proc.poll() is None:
                    daemon.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(sim.pid, signal.SIGCONT)
        sim.send_signal(signal.SIGTERM)
        assert sim.wait(20) == 0


def report(header: str, points: list[KillPoint]) -> str:
    """``header`` and a line per kill point: its phase, what it hit, what the restart did."""
    lines = [header]
    for kp in points:
        extra = f" pause {kp.pause_s}s" if kp.phase in FROZEN else ""
        lines.append(
            f"  #{kp.index} {kp.phase:<9} delay {kp.delay_s:.3f}s{extra} run {kp.run_id}: "
            f"{kp.reached or '(not reached)'}; journal {kp.journal_fills} fills, "
            f"{kp.left_open} orders left at the sim -> restart cancelled {kp.strays} strays, "
            f"recovered {kp.recovered} fills, ignored {kp.duplicates} duplicates"
            + ("" if kp.checked else " (restart killed early, checked by the next)"))
    return "\n".join(lines)


def test_crash_restart_matrix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_matrix(tmp_path, monkeypatch, DEFAULT_RUNS, DEFAULT_SEED, DEFAULT_SPEED)


@pytest.mark.slow
@pytest.mark.skipif("MMDAEMON_CRASH_RUNS" not in os.environ,
                    reason="long crash matrix: set MMDAEMON_CRASH_RUNS (e.g. 50)")
def test_crash_restart_matrix_long(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = int(os.environ["MMDAEMON_CRASH_RUNS"])
    seed = int(os.environ.get("MMDAEMON_CRASH_SEED", str(DEFAULT_SEED)))
    # slower for more runs, so that the recording (660 s of market) outlasts them: a kill
    # takes 3 s of wall time on average, 5 s are budgeted
    default_speed = max(1.0, min(DEFAULT_SPEED, 660 / (5 * runs)))
    speed = float(os.environ.get("MMDAEMON_CRASH_SPEED", str(default_speed)))
    run_matrix(tmp_path, monkeypatch, runs, seed, speed)
