"""Risk: trading state, pre-trade checks and breakers (pure parts)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from mmdaemon.model import Side
from mmdaemon.orders.manager import OrderAction
from mmdaemon.risk.breakers import BreakerLimits, Breakers
from mmdaemon.risk.rules import PreTradeChecks, PreTradeLimits
from mmdaemon.risk.state import RiskState, TradingState


def recorder() -> tuple[RiskState, list[tuple[str, str, str]]]:
    log: list[tuple[str, str, str]] = []
    state = RiskState(lambda old, new, why, values: log.append((old.value, new.value, why)))
    return state, log


def test_state_is_the_most_severe_condition_and_each_clears_on_its_own() -> None:
    risk, log = recorder()
    risk.set_condition(TradingState.REDUCING, "inventory_soft_limit", True)
    risk.set_condition(TradingState.HALTED, "feed_stale", True)
    risk.set_condition(TradingState.HALTED, "book_out_of_sync", True)
    risk.set_condition(TradingState.HALTED, "feed_stale", False)
    assert risk.state is TradingState.HALTED  # still out of sync
    risk.set_condition(TradingState.HALTED, "book_out_of_sync", False)
    assert risk.state is TradingState.REDUCING
    assert risk.kill("operator") and not risk.kill("again")
    risk.set_condition(TradingState.REDUCING, "inventory_soft_limit", False)
    assert risk.state is TradingState.KILLED  # latched
    risk.rearm()
    assert risk.state is TradingState.ACTIVE
    assert log == [
        ("ACTIVE", "REDUCING", "inventory_soft_limit"),
        ("REDUCING", "HALTED", "feed_stale"),
        ("HALTED", "REDUCING", "book_out_of_sync_cleared"),
        ("REDUCING", "KILLED", "operator"),
        ("KILLED", "ACTIVE", "rearmed"),
    ]


def act(kind: str = "place", price: int = 10000, size: int = 10) -> OrderAction:
    return OrderAction(kind, 1, Side.BUY, price, size)  # type: ignore[arg-type]


def test_pre_trade_checks() -> None:
    checks = PreTradeChecks(PreTradeLimits(max_order_lots=100, price_band_bps=50,
                                           max_open_orders=2, max_orders_per_s=10, burst=2))
    assert checks.check(act(size=101), 10000, 0, 0).reason.startswith("size 101")  # type: ignore[union-attr]
    # 10051 is 51 bps from 10000
    band = checks.check(act(price=10051), 10000, 0, 0)
    assert band is not None and "51.0 bps" in band.reason and not band.retry
    assert checks.check(act(price=10050), 10000, 0, 0) is None
    assert checks.check(act(), 10000, 2, 0).reason.startswith("2 open orders")  # type: ignore[union-attr]
    assert checks.check(act("cancel", size=10**9), 10000, 99, 0) is None
    # burst 2: one token went to the 10050 order, this takes the second
    assert checks.check(act(), 10000, 0, 0) is None
    # refill 10/s -> one token per 100 ms
    limited = checks.check(act(), 10000, 0, 0)
    assert limited is not None and limited.retry
    assert checks.check(act(), 10000, 0, 50_000_000) is not None  # 0.5 token
    assert checks.check(act(), 10000, 0, 100_000_000) is None


def limits(**kw: Any) -> BreakerLimits:
    base: dict[str, Any] = dict(inventory_soft_lots=50, inventory_hard_lots=100,
                                max_loss_units=Fraction(1000), max_drawdown_units=Fraction(500),
                                stale_feed_ns=1_000_000_000, reject_burst=3,
                                reject_window_ns=10_000_000_000)
    base.update(kw)
    return BreakerLimits(**base)


def breakers() -> tuple[Breakers, RiskState, list[str]]:
    risk, _ = recorder()
    kills: list[str] = []

    def kill(reason: str, **values: Any) -> None:
        kills.append(reason)
        risk.kill(reason)

    return Breakers(limits(), risk, kill), risk, kills


def test_inventory_soft_then_hard() -> None:
    b, risk, kills = breakers()
    b.check_inventory(49)
    assert risk.state is TradingState.ACTIVE
    b.check_inventory(-50)
    assert risk.state is TradingState.REDUCING
    b.check_inventory(10)
    assert risk.state is TradingState.ACTIVE
    b.check_inventory(100)
    assert kills == ["inventory_hard_limit"] and risk.state is TradingState.KILLED
    assert b.holding(100, Fraction(0)) and not b.holding(99, Fraction(0))


def test_loss_and_drawdown() -> None:
    b, _, kills = breakers()
    b.check_pnl(Fraction(800))
    b.check_pnl(Fraction(301))  # drawdown 499 < 500
    assert kills == []
    b.check_pnl(Fraction(300))  # drawdown 500
    assert kills == ["drawdown_limit"]
    b2, _, kills2 = breakers()
    b2.check_pnl(Fraction(-1000))
    assert kills2 == ["loss_limit"] and b2.holding(0, Fraction(-1000))


def test_stale_feed_and_sync_halt_and_clear() -> None:
    b, risk, _ = breakers()
    b.check_feed(now_ns=2_000_000_000, last_book_ns=1_000_000_000, book_synced=True)
    assert risk.state is TradingState.ACTIVE  # exactly 1 s silent: not yet stale
    b.check_feed(now_ns=2_000_000_001, last_book_ns=1_000_000_000, book_synced=True)
    assert risk.halts.keys() == {"feed_stale"}
    # 1 ns over the limit is reported over it, never as "silent_ms 1000, limit_ms 1000"
    assert risk.halts["feed_stale"]["silent_ms"] == 1001
    assert risk.halts["feed_stale"]["limit_ms"] == 1000
    b.check_feed(now_ns=2_100_000_000, last_book_ns=2_050_000_000, book_synced=False)
    assert risk.halts.keys() == {"book_out_of_sync"}
    b.check_feed(now_ns=2_200_000_000, last_book_ns=2_150_000_000, book_synced=True)
    assert risk.state is TradingState.ACTIVE


def test_reject_burst_halts_until_the_window_passes() -> None:
    b, risk, _ = breakers()
    for t in (0, 1, 2):
        b.on_reject(t * 1_000_000_000, "post-only order would cross")
    assert risk.halts.keys() == {"reject_burst"} and b.trips == 1
    b.check_rejects(5_000_000_000)
    assert risk.state is TradingState.HALTED
    b.check_rejects(11_000_000_001)  # the first reject left the 10 s window
    assert risk.state is TradingState.ACTIVE
