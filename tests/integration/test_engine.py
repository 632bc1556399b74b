"""The trading engine on its own: events in, order actions out, with no event loop, no
clock and no network; its journal and kill latch are real files."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mmdaemon.book import OrderBook
from mmdaemon.config import Config
from mmdaemon.config_file import load_config
from mmdaemon.engine import Engine
from mmdaemon.feed.recording import read_recording
from mmdaemon.latch import read_latch
from mmdaemon.model import Fill, OrderStatus, OrderUpdate, Side, Trade
from mmdaemon.orders.manager import OrderAction
from mmdaemon.records import LatchState
from mmdaemon.risk.state import TradingState
from mmdaemon.startup import OpenState, open_state
from mmdaemon.wiring import limits, make_market
from tests.conftest import REPO, SPOT_FILES
from tests.recorder import Recorder

FRAMES = 20_000  # about a minute of the bundled recording


class LiveVenue:
    """A venue that does not simulate fills (as the Binance gateway: it ignores the market)."""

    def on_book(self, book: OrderBook, now_ns: int) -> None:
        pass

    def on_trade(self, trade: Trade, now_ns: int) -> None:
        pass


class Shell:
    """What the engine asks of its shell, noted."""

    def __init__(self) -> None:
        self.states: list[tuple[TradingState, TradingState]] = []
        self.failed: list[str] = []

    def state_changed(self, old: TradingState, new: TradingState) -> None:
        self.states.append((old, new))

    def fail(self, why: str) -> None:
        self.failed.append(why)

    def supervised(self) -> None:
        pass

    def exposure_changed(self) -> None:
        pass

    def wall_ns(self) -> int:
        return 1_700_000_000_000_000_000


def config() -> Config:
    return load_config(REPO / "config" / "dryrun.toml")


def engine(state_dir: Path, cfg: Config | None = None) -> tuple[Engine, Shell, OpenState]:
    cfg = cfg or config()
    inst = cfg.instrument.build()
    shell = Shell()
    built = Engine(cfg, inst, make_market(cfg, inst, Recorder().warning), LiveVenue(), shell,
                   Recorder(), limits(cfg, inst), currency="USDT")
    identity = {"venue": cfg.instrument.venue, "symbol": inst.symbol}
    state = open_state(state_dir, False, identity, shell.wall_ns(), lambda s: built.restore(
        s.journal, s.latch, s.restored, shell.wall_ns()))
    built.on_venue_status(True, None)
    return built, shell, state


def drive(e: Engine, frames: int = FRAMES) -> list[OrderAction]:
    """The first ``frames`` frames of the bundled recording through ``e``; every action it
    decides is vetted and, once sent, answered at once as a venue would (never filled)."""
    out: list[OrderAction] = []
    for item in itertools.islice(read_recording(SPOT_FILES[:1]), frames):
        if isinstance(item, tuple):
            for action in e.on_frame(*item):
                sent = e.vet(action)
                if sent is not None:
                    out.append(sent)
                    e.on_execution(answer(sent, e.now_ns))
    return out


def answer(action: OrderAction, now_ns: int) -> OrderUpdate:
    status = OrderStatus.CANCELED if action.kind == "cancel" else OrderStatus.NEW
    return OrderUpdate(action.order_id, status, action.side, action.price, action.size, 0, "",
                       now_ns)


def test_the_same_frames_give_the_same_actions_without_an_event_loop(tmp_path: Path) -> None:
    first, _, s1 = engine(tmp_path / "a")
    second, _, s2 = engine(tmp_path / "b")
    try:
        actions = drive(first)
        assert actions == drive(second)
        assert {a.kind for a in actions} >= {"place", "amend"}
        assert first.now_ns == second.now_ns > 0
    finally:
        for s in (s1, s2):
            s.journal.close()
            s.latch.close()


def test_another_strategy_parameter_gives_other_actions(tmp_path: Path) -> None:
    cfg = config()
    wider = replace(cfg, strategy=replace(cfg.strategy, spread=replace(
        cfg.strategy.spread, base_bps=cfg.strategy.spread.base_bps * 5)))
    base, _, s1 = engine(tmp_path / "a", cfg)
    wide, _, s2 = engine(tmp_path / "b", wider)
    try:
        placed = [a for a in drive(base, 5_000) if a.kind == "place"]
        placed_wide = [a for a in drive(wide, 5_000) if a.kind == "place"]
        assert placed and placed_wide
        bid = next(a.price for a in placed if a.side is Side.BUY)
        assert next(a.price for a in placed_wide if a.side is Side.BUY) < bid
    finally:
        for s in (s1, s2):
            s.journal.close()
            s.latch.close()


def test_a_kill_between_decision_and_send_lets_only_cancels_out(tmp_path: Path) -> None:
    e, shell, state = engine(tmp_path)
    try:
        drive(e, 5_000)
        assert e.manager.open_orders() > 0
        decided = e.decide(e.now_ns + 1)  # decided while ACTIVE ...
        e.requote = True
        decided = decided or e.decide(e.now_ns + 1)
        e.kill("operator_kill_switch")  # ... a kill lands before they leave
        assert read_latch(tmp_path) == LatchState(True, "operator_kill_switch")
        assert e.risk.state is TradingState.KILLED and e.cancel_due
        assert (TradingState.ACTIVE, TradingState.KILLED) in shell.states
        assert all(e.vet(a) is None for a in decided if a.kind != "cancel")
        cancels = [e.vet(a, "killed") for a in e.cancel_all()]
        assert cancels and all(a is not None and a.kind == "cancel" for a in cancels)
        assert e.decide(e.now_ns + 2) == []  # nothing new while KILLED
    finally:
        state.journal.close()
        state.latch.close()


class FullDisk:
    """The journal with a disk that has just filled up: every write fails."""

    def __init__(self, journal: Any) -> None:
        self.journal = journal

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.journal, name)
        if name in ("record_fill", "set_killed", "set_trading_state", "add_order_log"):
            def refuse(*_: Any) -> None:
                raise OSError(28, "No space left on device")
            return refuse
        return attr


def test_a_fill_the_journal_cannot_take_is_not_counted_and_kills(tmp_path: Path) -> None:
    e, shell, state = engine(tmp_path)
    try:
        drive(e, 5_000)
        e.journal = FullDisk(state.journal)
        fill = Fill(1, Side.BUY, 6_000_000, 1_000_000, 0, True, 7, e.now_ns)
        with pytest.raises(OSError, match="No space"):
            e.on_execution(fill)
        assert e.position.position == 0 and e.position.fills == 0
        assert e.risk.state is TradingState.KILLED and e.records.broken
        assert shell.failed[0] == "journal_write_failed"
        assert read_latch(tmp_path) == LatchState(True, "journal_write_failed")
    finally:
        state.journal.close()
        state.latch.close()


def test_reducing_quotes_only_the_side_that_shrinks_the_position(tmp_path: Path) -> None:
    e, _, state = engine(tmp_path)
    try:
        drive(e, 5_000)
        quote = e.quoter.on_book(e.book, e.now_ns)
        assert quote.bid_size > 0 and quote.ask_size > 0
        e.position.apply(Fill(1, Side.BUY, quote.bid, 1_000_000, 0, True, 1, e.now_ns))
        e.risk.set_condition(TradingState.REDUCING, "inventory_soft_limit", True)
        ladder = e.shaper.build(quote, e.book.best_bid(), e.book.best_ask())
        gated = e.gate(ladder)
        assert gated is not None and gated.bids == () and gated.asks == ladder.asks
        e.risk.set_condition(TradingState.HALTED, "feed_stale", True)
        assert e.gate(ladder) is None
    finally:
        state.journal.close()
        state.latch.close()
