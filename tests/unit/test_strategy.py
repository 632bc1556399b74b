"""The strategy guard: an exception or a malformed ladder halts and pulls, never crashes;
repeats are counted, not logged each time; recovery after the hold; what leaves is passive
and on the instrument's grid. The view's queue estimates. A real book, position, order
manager and risk state."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import pytest

from mmdaemon.book import OrderBook
from mmdaemon.model import BookUpdate, Instrument, Ladder, Side
from mmdaemon.orders.manager import OrderAction, OrderManager
from mmdaemon.orders.position import Position
from mmdaemon.quoting.quoter import QuoterParams
from mmdaemon.risk.state import RiskState, TradingState
from mmdaemon.strategy.api import LimitsView, QueueEstimates, StrategyView, engine_book
from mmdaemon.strategy.builtin import QuoterStrategy
from mmdaemon.strategy.guard import REPEAT_LOG_NS, STRATEGY_ERROR, StrategyGuard, ladder_problem
from tests.recorder import Recorder

ETH = Instrument("ETHUSDT", "0.01", "0.0001", size_step_lots=10, min_size_lots=20,
                 min_notional="5")
HOLD_NS = 1_000_000_000


class Scripted:
    """Returns what ``script`` says next: a Ladder, None, or an exception to raise."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)

    def quote(self, view: StrategyView) -> Any:
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, BaseException):
            raise step
        return step


def setup(strategy: Any) -> tuple[StrategyGuard, StrategyView, RiskState, Recorder,
                                  list[tuple[Any, ...]]]:
    book = OrderBook()
    # best bid 300000 (3000.00), best ask 300001
    book.apply(BookUpdate(True, [(300_000, 50_000), (299_990, 10)], [(300_001, 40_000)],
                          1, 1, 0, 0))
    risk = RiskState(lambda *a: None)
    log, cuts = Recorder(), []
    guard = StrategyGuard(strategy, "scripted", ETH, HOLD_NS, log,
                          lambda failing, values: risk.set_condition(
                              TradingState.HALTED, STRATEGY_ERROR, failing, **values),
                          lambda *cut: cuts.append(cut))
    view = StrategyView(ETH, book, deque(), QueueEstimates(), Position(),
                        OrderManager(1).orders, risk, LimitsView(100, 4, 50.0, 10, 20))
    return guard, view, risk, log, cuts


def ladder(bids: tuple[tuple[int, int], ...], asks: tuple[tuple[int, int], ...]) -> Ladder:
    return Ladder(bids, asks, 300_000.5, 0)


GOOD = ladder(((299_990, 100),), ((300_010, 100),))


def test_an_exception_halts_pulls_and_logs_its_traceback_once() -> None:
    guard, view, risk, log, _ = setup(Scripted(ZeroDivisionError("boom")))
    for i in range(5):
        view.now_ns = i * 1_000_000
        assert guard.quote(view) == Ladder((), (), 0.0, view.now_ns)  # nothing quoted
    assert risk.state is TradingState.HALTED and STRATEGY_ERROR in risk.halts
    first = log.named("strategy_error")
    assert len(first) == 1 and "boom" in first[0]["error"]
    assert isinstance(first[0]["exc_info"], ZeroDivisionError)  # the renderer prints it
    assert log.named("strategy_error_repeated") == []  # within the minute: counted only
    assert guard.errors == 5
    view.now_ns = REPEAT_LOG_NS + 1
    guard.quote(view)
    repeated = log.named("strategy_error_repeated")
    assert len(repeated) == 1 and repeated[0]["since_last"] == 5


def test_a_new_kind_of_failure_gets_its_own_traceback() -> None:
    guard, view, _, log, _ = setup(Scripted(ValueError("a"), KeyError("b"), ValueError("a")))
    for _ in range(3):
        guard.quote(view)
    assert [e["error"] for e in log.named("strategy_error")] == ["ValueError: a",
                                                                 "KeyError: 'b'"]


def test_quoting_resumes_only_after_the_hold_since_the_last_failure() -> None:
    guard, view, risk, _, _ = setup(Scripted(RuntimeError("x"), GOOD))
    view.now_ns = 10
    guard.quote(view)
    view.now_ns = 10 + HOLD_NS - 1
    assert guard.quote(view) == GOOD  # answered, but the hold is not over
    assert risk.state is TradingState.HALTED
    view.now_ns = 10 + HOLD_NS
    assert guard.quote(view) == GOOD
    assert risk.state is TradingState.ACTIVE and not guard.failing


@pytest.mark.parametrize("bad, problem", [
    ("not a ladder", "expected a Ladder or None, got str"),
    (Ladder([(1, 1)], (), 0.0, 0), "bids: expected a tuple"),  # type: ignore[arg-type]
    (ladder(((299_990, 1.5),), ()), "bids[0]: expected (int price ticks, int size lots)"),
    (ladder(((299_990, 0),), ()), "bids[0]: price and size must be > 0"),
    (ladder(((299_990, 100), (299_995, 100)), ()), "bids[1]: price 299995 does not move away"),
    (ladder((), ((300_010, 100), (300_010, 100))), "asks[1]: price 300010 does not move away"),
    (ladder(((300_010, 100),), ((300_010, 100),)), "best bid 300010 is not below best ask"),
    (Ladder((), (), float("nan"), 0), "fair: expected a finite number"),
    (ladder(((True, 100),), ()), "bids[0]: expected (int price ticks"),
    # beyond 64 bits: the journal's write of the quote failed and stopped the daemon
    (ladder(((299_990, 2**63),), ()), "bids[0]: price and size must be at most"),
    (ladder((), ((2**63, 100),)), "asks[0]: price and size must be at most"),
    # the price band is centred on fair: around 0 it let any price through
    (Ladder(((299_990, 100),), (), 0.0, 0), "fair: expected > 0 ticks with levels"),
    (Ladder((), ((300_010, 100),), -1.0, 0), "fair: expected > 0 ticks with levels"),
])
def test_a_malformed_ladder_is_a_failure_naming_the_problem(bad: Any, problem: str) -> None:
    guard, view, risk, log, _ = setup(Scripted(bad))
    assert guard.quote(view) == view.empty()
    assert risk.state is TradingState.HALTED
    assert problem in log.named("strategy_error")[0]["error"]


def test_none_quotes_nothing_without_a_failure() -> None:
    guard, view, risk, log, _ = setup(Scripted(None))
    assert guard.quote(view) == view.empty()
    assert risk.state is TradingState.ACTIVE and log.events == []


def test_sendable_rounds_to_the_step_and_drops_what_cannot_leave() -> None:
    guard, view, _, _, cuts = setup(Scripted(GOOD))
    wanted = ladder(
        ((300_001, 100), (299_999, 105), (299_998, 15), (10, 30)),  # takes; step; min; notional
        ((300_002, 100),),
    )
    assert ladder_problem(wanted) == ""
    out = guard.sendable(wanted, view)
    assert out.bids == ((299_999, 100),) and out.asks == ((300_002, 100),)
    assert [c[0] for c in cuts] == ["would_take", "min_size", "min_notional"]
    assert cuts[1] == ("min_size", Side.BUY, 299_998, 15, 10)
    asks = guard.sendable(ladder((), ((300_000, 100), (300_002, 100))), view).asks
    assert asks == ((300_002, 100),) and cuts[-1][:2] == ("would_take", Side.SELL)


def test_a_sendable_ladder_passes_as_the_same_object() -> None:
    guard, view, _, _, cuts = setup(Scripted(GOOD))
    assert guard.sendable(GOOD, view) is GOOD and cuts == []


def test_hooks_are_guarded_like_quote() -> None:
    class Hooked:
        def quote(self, view: StrategyView) -> Ladder:
            return GOOD

        def on_fill(self, fill: Any, view: StrategyView) -> None:
            raise IndexError("in on_fill")

    guard, view, risk, log, _ = setup(Hooked())
    guard.on_fill(None, view)  # type: ignore[arg-type]
    assert risk.state is TradingState.HALTED
    assert log.named("strategy_error")[0]["during"] == "on_fill"


@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt(), asyncio.CancelledError(),
                                 GeneratorExit()])
def test_a_base_exception_from_the_strategy_halts_and_pulls_like_any_other(
        exc: BaseException) -> None:
    """Not the process's controls: the daemon takes its signals through the event loop, and
    let through they stopped it with its orders resting (or ended a replay early)."""
    guard, view, risk, log, _ = setup(Scripted(exc))
    assert guard.quote(view) == view.empty()
    assert risk.state is TradingState.HALTED and STRATEGY_ERROR in risk.halts
    assert log.named("strategy_error")[0]["error"].startswith(type(exc).__name__)


def test_invalid_ladders_differing_only_in_their_figures_log_one_traceback() -> None:
    guard, view, _, log, _ = setup(Scripted(*(ladder(((299_990 - i, 1.5),), ())
                                              for i in range(5))))
    for _ in range(5):
        guard.quote(view)
    assert len(log.named("strategy_error")) == 1 and guard.errors == 5


def test_the_queue_estimate_only_shrinks_until_the_order_moves() -> None:
    book = OrderBook()
    book.apply(BookUpdate(True, [(300_000, 5_000), (299_990, 700)], [(300_010, 40)],
                          1, 1, 0, 0))
    manager, queues = OrderManager(1), QueueEstimates()
    action = OrderAction("place", 7, Side.BUY, 300_000, 100)
    manager.sent(action)
    queues.sent(action, book)
    view = StrategyView(ETH, book, deque(), queues, Position(), manager.orders,
                        RiskState(lambda *a: None), LimitsView(100, 4, 50.0, 10, 20))
    assert view.orders[0].queue_ahead_lots == 5_000
    for shown, ahead in ((3_000, 3_000), (9_000, 3_000), (1_000, 1_000)):
        book.apply(BookUpdate(False, [(300_000, shown)], [], 2, 2, 0, 0))
        queues.on_book(book, manager.orders)
        assert view.orders[0].queue_ahead_lots == ahead
    queues.sent(OrderAction("amend", 7, Side.BUY, 300_000, 200), book)  # size only
    assert view.orders[0].queue_ahead_lots == 1_000
    queues.sent(OrderAction("amend", 7, Side.BUY, 299_990, 200), book)  # moved: at the back
    assert queues.ahead(7) == 700
    del manager.orders[7]
    queues.on_book(book, manager.orders)
    assert queues.ahead(7) == 0  # gone with its order


def test_the_view_book_reads_the_engines_book_but_cannot_change_it() -> None:
    _, view, _, _, _ = setup(Scripted(GOOD))
    book = view.book
    assert (book.best_bid(), book.best_ask(), book.synced) == (300_000, 300_001, True)
    assert book.bids.top(2) == [(300_000, 50_000), (299_990, 10)]
    for name in ("apply", "clear", "invalidate"):
        assert not hasattr(book, name)
    for name in ("set", "update", "load", "clear", "levels"):
        assert not hasattr(book.bids, name)
    with pytest.raises(AttributeError):
        book.synced = False  # type: ignore[misc]
    with pytest.raises(AttributeError):
        book.extra = 1  # type: ignore[attr-defined]
    engine = engine_book(view)  # what the built-ins read: the same book, current
    engine.apply(BookUpdate(False, [(300_000, 0)], [], 2, 2, 0, 0))
    assert book.best_bid() == 299_990 and book.last_id == 2


def test_the_builtin_quotes_nothing_from_an_unsynced_book_without_a_failure() -> None:
    guard, view, risk, log, _ = setup(QuoterStrategy(ETH, QuoterParams()))
    engine_book(view).invalidate()  # a gap: the quoter's empty quote
    assert guard.quote(view) == Ladder((), (), 0.0, 0)
    assert risk.state is TradingState.ACTIVE and log.named("strategy_error") == []
