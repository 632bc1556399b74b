"""What the venue says of the account, through the engine: funding payments journaled and in
the PnL (once, and again after a restart), and the reduce-only flag of places sent while
REDUCING. The journal and latch are real files (as in tests/integration/test_engine.py)."""

from __future__ import annotations

import sqlite3
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from mmdaemon.engine import Engine
from mmdaemon.journal import CHECKPOINT_ROWS
from mmdaemon.latch import read_latch
from mmdaemon.metrics import ServiceCollector
from mmdaemon.model import Balances, Fill, Funding, Side
from mmdaemon.records import LatchState
from mmdaemon.risk.rules import INSUFFICIENT_BALANCE
from mmdaemon.risk.state import TradingState
from mmdaemon.snapshot import FeedView, Snapshot
from tests.integration.test_engine import FullDisk, answer, drive, engine
from tests.recorder import Recorder

PAID = -12_345  # notional units (ticks x lots): a long's payment at a positive rate
FUNDING_ID = 1_700_000_000_000  # Binance USD-M: the payment's transaction time, ms


class FullDiskFunding(FullDisk):
    """The journal on a full disk, funding payments included."""

    def __getattr__(self, name: str) -> Any:
        if name == "record_funding":
            def refuse(*_: Any) -> None:
                raise OSError(28, "No space left on device")
            return refuse
        return super().__getattr__(name)


def money(e: Engine) -> Fraction:
    """Quote currency per notional unit."""
    return Fraction(e.instrument.tick_size) * Fraction(e.instrument.lot_size)


def test_a_funding_payment_is_journaled_and_counted_once_in_the_pnl(tmp_path: Path) -> None:
    e, _, state = engine(tmp_path)
    try:
        drive(e, 5_000)
        before = e.total_pnl_units()
        assert before is not None
        payment = Funding(PAID, e.now_ns, FUNDING_ID)
        e.on_execution(payment)
        e.on_execution(payment)  # delivered again: a reconcile after a reconnect
        assert e.total_pnl_units() == before + PAID
        figures = e.summary()
        assert figures["funding"] == float(PAID * money(e))
        assert figures["total_pnl"] == float((before + PAID) * money(e))
        trading = e.snapshot(None).trading  # type: ignore[arg-type]
        assert trading is not None and trading.funding_units == PAID
        assert trading.total_units == before + PAID
        db = sqlite3.connect(state.journal.path)
        rows = db.execute("SELECT funding_id, amount, ts_ns FROM funding").fetchall()
        db.close()
        assert rows == [(FUNDING_ID, PAID, payment.ts_ns)]
        log: Recorder = e.log
        assert [x["funding_id"] for x in log.named("funding_duplicate_ignored")] == [FUNDING_ID]
    finally:
        state.journal.close()
        state.latch.close()


def test_a_restart_restores_the_funding_from_the_journal(tmp_path: Path) -> None:
    first, _, state = engine(tmp_path)
    try:
        first.on_execution(Funding(PAID, 5, FUNDING_ID))
        first.on_execution(Funding(700, 6, FUNDING_ID + 1))
    finally:
        state.journal.close()
        state.latch.close()
    again, _, state = engine(tmp_path)
    try:
        assert again.position.funding == PAID + 700
        assert again.total_pnl_units() == PAID + 700  # flat, no fills: funding is the PnL
        assert again.summary()["funding"] == float((PAID + 700) * money(again))
        again.on_execution(Funding(PAID, 5, FUNDING_ID))  # the venue delivers it again
        assert again.position.funding == PAID + 700
    finally:
        state.journal.close()
        state.latch.close()


def test_a_funding_the_journal_cannot_take_is_not_counted_and_kills(tmp_path: Path) -> None:
    e, shell, state = engine(tmp_path)
    try:
        drive(e, 2_000)
        e.journal = FullDiskFunding(state.journal)
        with pytest.raises(OSError, match="No space"):
            e.on_execution(Funding(PAID, e.now_ns, FUNDING_ID))
        assert e.position.funding == 0
        assert e.risk.state is TradingState.KILLED and shell.failed[0] == "journal_write_failed"
        assert read_latch(tmp_path) == LatchState(True, "journal_write_failed")
    finally:
        state.journal.close()
        state.latch.close()


def test_places_sent_while_reducing_are_reduce_only(tmp_path: Path) -> None:
    e, _, state = engine(tmp_path)
    try:
        placed = [a for a in drive(e, 5_000) if a.kind == "place"]
        assert placed and not any(a.reduce_only for a in placed)  # ACTIVE: plain orders
        for cancel in e.cancel_all():  # a clean slate: the next quote places afresh
            pulled = e.vet(cancel)
            assert pulled is not None
            e.on_execution(answer(pulled, e.now_ns))
        e.on_execution(Fill(1, Side.BUY, placed[0].price, 1_000_000, 0, True, e.now_ns, 7))
        e.risk.set_condition(TradingState.REDUCING, "inventory_soft_limit", True)
        sent = [s for a in e.decide(e.now_ns) if (s := e.vet(a)) is not None]
        assert sent and all(a.kind == "place" and a.side is Side.SELL for a in sent)
        assert all(a.reduce_only for a in sent)
    finally:
        state.journal.close()
        state.latch.close()


def test_the_last_balances_reported_bound_what_the_engine_sends(tmp_path: Path) -> None:
    e, _, state = engine(tmp_path)
    try:
        placed = [a for a in drive(e, 5_000) if a.kind == "place"]
        sell = next(a for a in placed if a.side is Side.SELL)
        for cancel in e.cancel_all():  # room for a new order under max_open_orders
            pulled = e.vet(cancel)
            assert pulled is not None
            e.on_execution(answer(pulled, e.now_ns))
        fresh = sell._replace(order_id=10**9)  # a new sell of the same size
        # a spot account holding no base asset: no sell may leave
        e.on_execution(Balances(base_lots=0, quote_units=10**15, leverage=0, ts_ns=e.now_ns))
        blocked = e.counters.blocked
        assert e.vet(fresh) is None
        assert e.counters.blocked == blocked + 1
        assert e.unsendable.counts[INSUFFICIENT_BALANCE] == 1
        [line] = e.log.named("order_blocked")
        assert line["code"] == INSUFFICIENT_BALANCE and line["reason"] == (
            f"SELL side open {sell.size} lots > the base balance 0 lots")
        # the venue reports the base asset bought since: the same order leaves
        e.on_execution(Balances(base_lots=sell.size, quote_units=0, leverage=0,
                                ts_ns=e.now_ns))
        assert e.vet(fresh) == fresh
    finally:
        state.journal.close()
        state.latch.close()


class Instance:
    """The engine as the metrics collector reads a service (snapshot.Observed)."""

    def __init__(self, e: Engine) -> None:
        self.engine, self.log = e, e.log

    def snapshot(self) -> Snapshot:
        return self.engine.snapshot(FeedView(False))

    def two_sided(self) -> bool | None:
        return None


def test_the_metrics_show_funding_as_a_component_of_the_total(tmp_path: Path) -> None:
    e, _, state = engine(tmp_path)
    try:
        drive(e, 5_000)
        e.on_execution(Funding(PAID, e.now_ns, FUNDING_ID))
        registry = CollectorRegistry()
        registry.register(ServiceCollector(Instance(e)))
        scraped = {s.name: s.value for family in text_string_to_metric_families(
            generate_latest(registry).decode()) for s in family.samples}
        figures = e.summary()
        assert scraped["mmdaemon_funding_quote"] == figures["funding"] < 0
        assert scraped["mmdaemon_pnl_total_quote"] == figures["total_pnl"]
        assert scraped["mmdaemon_pnl_total_quote"] == pytest.approx(
            scraped["mmdaemon_pnl_realized_quote"] + scraped["mmdaemon_pnl_unrealized_quote"]
            - scraped["mmdaemon_fees_quote"] + scraped["mmdaemon_funding_quote"], abs=1e-12)
    finally:
        state.journal.close()
        state.latch.close()


def test_funding_resumes_from_the_journaled_starting_point_before_the_first_payment(
        tmp_path: Path) -> None:
    """A restart before this instance's first funding payment still recovers the payments
    booked while it was down: the starting point journaled at the first start is handed
    back, and after payments the highest journaled one (whichever is higher)."""
    from mmdaemon.startup import FUNDING_FROM_KEY, open_state

    identity = {"venue": "binance-usdm", "symbol": "BTCUSDT"}

    def funding_after() -> int | None:
        state = open_state(tmp_path, False, identity, 1, lambda s: None)
        try:
            return state.funding_after
        finally:
            state.journal.close()
            state.latch.close()

    assert funding_after() is None  # a new journal: the venue's newest payment is the start
    state = open_state(tmp_path, False, identity, 1, lambda s: None)
    state.journal.put(FUNDING_FROM_KEY, "1723161600000", 2)
    state.journal.close()
    state.latch.close()
    assert funding_after() == 1723161600000
    state = open_state(tmp_path, False, identity, 1, lambda s: None)
    assert state.journal.record_funding(Funding(-124, 3, 1723190400000))
    state.journal.close()
    state.latch.close()
    assert funding_after() == 1723190400000


def test_the_pnl_the_breakers_judge_is_the_positions_total_at_the_mark(tmp_path: Path) -> None:
    """After each fill (opening, adding, closing part, flipping) the PnL the loss breakers
    judge is exactly cash + position x mid - fees + funding; none before the book."""
    e, _, state = engine(tmp_path)
    try:
        assert e.marked_pnl_units() is None and e.total_pnl_units() == 0  # flat, no book
        drive(e, 5_000)
        mid = e.mark()
        assert mid is not None and mid.denominator in (1, 2)
        price = int(mid)
        for exec_id, (side, size, fee) in enumerate(
                [(Side.BUY, 3_000, 7), (Side.BUY, 2_000, -3), (Side.SELL, 4_000, 5),
                 (Side.SELL, 6_000, -1), (Side.BUY, 1_000, 0)], start=1):
            e.on_execution(Fill(1, side, price + exec_id, size, fee, True, e.now_ns,
                                exec_id=exec_id, mid_x2=price * 2))
            e.on_execution(Funding(-exec_id, e.now_ns, FUNDING_ID + exec_id))
            marked = e.marked_pnl_units()
            assert marked == e.position.total(mid) == e.total_pnl_units()
            assert e.breakers.peak is not None and e.breakers.peak >= marked
    finally:
        state.journal.close()
        state.latch.close()


def wal_restarts(journal: Path) -> int:
    """The WAL's checkpoint sequence number (its header, bytes 12-15, big-endian): SQLite
    adds one each time it starts the WAL over, with an fsync, at the first commit after a
    checkpoint."""
    header = (journal.parent / f"{journal.name}-wal").read_bytes()[:16]
    return int.from_bytes(header[12:16], "big")


def test_the_journal_is_checkpointed_by_persist_not_by_a_commit(tmp_path: Path) -> None:
    """Commits (a fill's among them) leave the database file alone; the engine's persist,
    which the shell runs off the hot path, copies the WAL into it once enough was
    written, and its own rows start the WAL over (an fsync), not the next fill."""
    e, _, state = engine(tmp_path)
    try:
        drive(e, 2_000)
        e.persist()
        path = state.journal.path
        before = path.stat().st_size
        for exec_id in range(1, CHECKPOINT_ROWS + 1):
            assert state.journal.record_fill(Fill(1, Side.BUY, 100, 1_000, 0, True, e.now_ns,
                                                  exec_id=exec_id))
        assert path.stat().st_size == before
        restarts = wal_restarts(path)
        e.sample()  # a report row to write, as every supervisor tick has
        e.persist()
        assert path.stat().st_size > before
        assert wal_restarts(path) == restarts + 1  # started over by persist's own rows
        assert state.journal.record_fill(Fill(1, Side.BUY, 100, 1_000, 0, True, e.now_ns,
                                              exec_id=CHECKPOINT_ROWS + 1))
        assert wal_restarts(path) == restarts + 1  # the fill's commit only appended
    finally:
        state.journal.close()
        state.latch.close()
