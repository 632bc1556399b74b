"""Hostile cases of the quoting ladder at the engine's last check (issue #19's attack).

The order manager orders one ladder's actions so that none meets one of our orders on the
other side *if every action before it goes out*. The engine vets each action as it leaves
(:meth:`mmdaemon.engine.Engine.vet`), and a vet can hold one back (the order rate) while
event time moves on between two sends of a live venue: the action after it must not then
cross the order that stayed where it was."""

from __future__ import annotations

from pathlib import Path

from mmdaemon.clock import SystemClock
from mmdaemon.config_file import load_config
from mmdaemon.daemon import Service
from mmdaemon.model import Ladder, OrderStatus, OrderUpdate, Side
from mmdaemon.risk.state import TradingState
from tests.helpers import write_config
from tests.recorder import Recorder

FAIR = 6_200_000  # ticks (62,000 USDT): the price band's centre


def active_service(tmp_path: Path, overrides: dict[str, dict[str, object]]) -> Service:
    """A real service (journal, order manager, paper exchange), opened and ACTIVE."""
    service = Service(load_config(write_config(tmp_path, overrides)), SystemClock(),
                      Recorder(), speed=None)
    service._open()
    for halt in ("book_out_of_sync", "venue_not_ready"):
        service.engine.risk.set_condition(TradingState.HALTED, halt, False)
    assert service.engine.risk.state is TradingState.ACTIVE
    service.engine.venue_ready = True
    service.engine._fair = float(FAIR)
    return service


def test_an_amend_held_back_by_the_rate_limit_keeps_the_next_action_off_our_other_side(
    tmp_path: Path,
) -> None:
    # two orders of burst, one more a second: the two places use the burst up
    service = active_service(tmp_path, {"risk": {"max_orders_per_s": 1.0, "order_burst": 2}})
    engine, manager = service.engine, service.engine.manager
    try:
        engine.now_ns = 1_000_000_000
        bid, ask = (FAIR - 10, 1000), (FAIR + 10, 1000)
        for action in manager.decide(Ladder((bid,), (ask,), float(FAIR), 0)):
            sent = engine.vet(action)
            assert sent is not None
            engine.on_execution(OrderUpdate(sent.order_id, OrderStatus.NEW, sent.side,
                                            sent.price, sent.size, 0, "", 0))
        # the market jumps up 30 ticks: our ask must move up out of the way before our bid
        # moves up through its old price
        actions = manager.decide(Ladder(((FAIR + 20, 1000),), ((FAIR + 40, 1000),),
                                        float(FAIR + 30), 0))
        assert [(a.kind, a.side) for a in actions] == [("amend", Side.SELL),
                                                        ("amend", Side.BUY)]
        engine._fair = float(FAIR + 30)
        assert engine.vet(actions[0]) is None  # the ask's amend: no token left
        engine.now_ns += 1_000_000_000  # a live send awaits; the feed moves time on
        engine.vet(actions[1])
        bids = [o.price for o in manager.side_orders(Side.BUY)]
        asks = [o.price for o in manager.side_orders(Side.SELL)]
        assert max(bids) < min(asks), f"our bid {bids} meets our own ask {asks}"
    finally:
        service.journal.close()


def quote_through_vet(service: Service, ladder: Ladder) -> list[tuple[Side, int]]:
    """Decide ``ladder``, vet every action as the sender does and acknowledge what left;
    returns (side, price) of every order then open."""
    engine = service.engine
    for action in engine.manager.decide(ladder):
        sent = engine.vet(action)
        if sent is not None and sent.kind != "cancel":
            engine.on_execution(OrderUpdate(sent.order_id, OrderStatus.NEW, sent.side,
                                            sent.price, sent.size, 0, "", 0))
    return sorted((o.side, o.price) for o in engine.manager.orders.values())


def test_too_few_open_orders_for_the_ladder_still_quote_both_sides(tmp_path: Path) -> None:
    """A plug-in's ladder is not known when the config loads, so max_open_orders cannot be
    checked against it: with fewer open orders than its levels, the bids took every one
    and the daemon quoted one side only (a replay ran long to the soft limit)."""
    service = active_service(tmp_path, {"risk": {"max_open_orders": 2}})
    try:
        three = tuple((FAIR - 10 - 5 * i, 1000) for i in range(3))
        ladder = Ladder(three, tuple((FAIR + 10 + 5 * i, 1000) for i in range(3)),
                        float(FAIR), 0)
        assert sorted(quote_through_vet(service, ladder)) == sorted(
            [(Side.BUY, FAIR - 10), (Side.SELL, FAIR + 10)])
    finally:
        service.journal.close()


def test_an_order_burst_smaller_than_the_ladder_is_shared_by_both_sides(
        tmp_path: Path) -> None:
    """50 levels a side and a burst of 10: the first quote's ten orders went to the bids."""
    service = active_service(tmp_path, {"risk": {"max_open_orders": 100, "order_burst": 10}})
    try:
        bids = tuple((FAIR - 10 - i, 1000) for i in range(50))
        asks = tuple((FAIR + 10 + i, 1000) for i in range(50))
        service.engine.now_ns = 1_000_000_000
        open_now = quote_through_vet(service, Ladder(bids, asks, float(FAIR), 0))
        assert [side for side, _ in open_now].count(Side.SELL) == 5
        assert [side for side, _ in open_now].count(Side.BUY) == 5
        # the innermost of each side, as the levels go
        assert max(p for s, p in open_now if s is Side.BUY) == FAIR - 10
        assert min(p for s, p in open_now if s is Side.SELL) == FAIR + 10
    finally:
        service.journal.close()
