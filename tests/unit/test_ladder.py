"""Quoting ladders: shaping (mmdaemon.quoting.ladder), the order manager's diff of a ladder
(mmdaemon.orders.manager), risk per level and in total (mmdaemon.risk.ladder, rules)."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest

from mmdaemon.book import OrderBook
from mmdaemon.config import ConfigError
from mmdaemon.config_file import load_config
from mmdaemon.model import (
    BINANCE_SPOT_BTCUSDT,
    Instrument,
    Ladder,
    OrderStatus,
    OrderUpdate,
    Quote,
    Side,
)
from mmdaemon.orders.manager import OrderAction, OrderManager
from mmdaemon.orders.position import Position
from mmdaemon.quoting.ladder import LadderParams, LadderShaper
from mmdaemon.quoting.quoter import QuoterParams
from mmdaemon.quoting.sizing import MIN_NOTIONAL, MIN_SIZE
from mmdaemon.risk.ladder import LadderGate
from mmdaemon.risk.rules import MAX_ORDER_SIZE, PreTradeChecks, PreTradeLimits
from mmdaemon.risk.state import RiskState, TradingState
from mmdaemon.strategy.api import LimitsView, QueueEstimates, StrategyView
from mmdaemon.strategy.builtin import QuoterStrategy
from mmdaemon.strategy.guard import StrategyGuard
from tests.helpers import write_config

# a plain grid: sizes in steps of 10 lots, at least 20 lots, notional at least 2,000
INST = Instrument("TEST", "1", "1", size_step_lots=10, min_size_lots=20, min_notional="2000")
QUOTE = Quote(1000, 100, 1010, 100, 1005.0, 7)


def shaper(**params: object) -> LadderShaper:
    return LadderShaper(LadderParams(**params))  # type: ignore[arg-type]


def sendable(ladder: Ladder, cuts: list[tuple[object, ...]]) -> Ladder:
    """``ladder`` as the strategy guard lets it leave on INST's grid (an empty book: no
    side to take); each level dropped appended to ``cuts``."""
    risk = RiskState(lambda *a: None)
    guard = StrategyGuard(QuoterStrategy(INST, QuoterParams()), "composition", INST, 0,
                          None, lambda *a: None, lambda *cut: cuts.append(cut))
    view = StrategyView(INST, OrderBook(), deque(), QueueEstimates(), Position(),
                        OrderManager(1).orders, risk, LimitsView(0, 0, 0.0, 0, 0))
    return guard.sendable(ladder, view)


# -- shaping ---------------------------------------------------------------------------------

def test_one_level_passes_the_quote_through_unchanged() -> None:
    ladder = shaper().build(QUOTE, 1004, 1006)
    assert ladder == Ladder(((1000, 100),), ((1010, 100),), 1005.0, 7)
    assert shaper().build(QUOTE._replace(ask_size=0), 1004, 1006).asks == ()


def test_levels_step_back_by_spacing_ticks_with_the_size_profile_rounded_down() -> None:
    ladder = shaper(levels=3, spacing_ticks=4, size_profile=(1.0, 1.55, 2.0)).build(
        QUOTE, 1004, 1006)
    assert ladder.bids == ((1000, 100), (996, 155), (992, 200))
    cuts: list[tuple[object, ...]] = []
    ladder = sendable(ladder, cuts)  # after the gate, on the instrument's grid
    assert ladder.bids == ((1000, 100), (996, 150), (992, 200))  # 155 -> 150: step 10
    assert ladder.asks == ((1010, 100), (1014, 150), (1018, 200)) and cuts == []


def test_spacing_bps_is_whole_ticks_of_fair_value_and_at_least_one() -> None:
    fair = Quote(1_000_000, 100, 1_000_010, 100, 1_000_005.0, 0)
    assert shaper(levels=2, spacing_bps=2.5).spacing_ticks(fair.fair) == 250
    assert shaper(levels=2, spacing_bps=2.5).build(fair, None, None).bids[1][0] == 999_750
    assert shaper(levels=2, spacing_bps=0.001).spacing_ticks(1005.0) == 1  # 0.1 tick -> 1


def test_a_level_below_the_minimum_size_or_notional_is_dropped_and_reported() -> None:
    s = shaper(levels=3, spacing_ticks=1, size_profile=(1.0, 0.15, 0.5))
    small = Quote(100, 100, 110, 100, 105.0, 0)  # notional 100 x 50 = 5,000; 100 x 15 < min
    cuts: list[tuple[object, ...]] = []
    ladder = sendable(s.build(small, None, None), cuts)
    assert ladder.bids == ((100, 100), (98, 50))  # level 1: 15 lots -> 10 < 20: dropped
    assert [(c[1], c[0], c[3], c[4]) for c in cuts] == [
        (Side.BUY, MIN_SIZE, 15, 10), (Side.SELL, MIN_SIZE, 15, 10)]
    s = shaper(levels=2, spacing_ticks=90, size_profile=(1.0, 1.0))
    low = Quote(100, 30, 110, 30, 105.0, 0)  # level 1 bid at 10 ticks x 30 < 2,000
    cuts.clear()
    assert sendable(s.build(low, None, None), cuts).bids == ((100, 30),)
    assert [c[0] for c in cuts] == [MIN_NOTIONAL]


def test_join_touch_moves_only_the_innermost_level_to_the_touch() -> None:
    s = shaper(levels=3, spacing_ticks=5, join_touch=True)
    ladder = s.build(QUOTE, 1003, 1007)  # the model is 3 ticks behind either touch
    assert ladder.bids == ((1003, 100), (995, 100), (990, 100))
    assert ladder.asks == ((1007, 100), (1015, 100), (1020, 100))
    # a model price already at or inside the touch is left where it is
    assert s.build(QUOTE, 999, 1012).bids[0] == (1000, 100)


def test_min_distance_keeps_every_level_that_far_behind_the_touch() -> None:
    s = shaper(levels=2, spacing_ticks=5, min_distance_ticks=4)
    ladder = s.build(QUOTE, 1002, 1011)  # touch 1002 / 1011: at most 998, at least 1015
    assert ladder.bids == ((998, 100), (993, 100))
    assert ladder.asks == ((1015, 100), (1020, 100))
    assert shaper(levels=1, min_distance_ticks=4).build(QUOTE, 1020, 1030).bids[0][0] == 1000


def test_levels_stay_passive_and_ordered_for_every_touch() -> None:
    s = shaper(levels=4, spacing_ticks=3, join_touch=True)
    for best_bid in range(990, 1009):
        # the quoter's quote is passive against the book: the ladder keeps it so
        quote = QUOTE._replace(bid=min(1000, best_bid + 1), ask=max(1010, best_bid + 1))
        ladder = s.build(quote, best_bid, best_bid + 2)
        bids, asks = [p for p, _ in ladder.bids], [p for p, _ in ladder.asks]
        assert bids == sorted(bids, reverse=True) and len(set(bids)) == len(bids)
        assert asks == sorted(asks) and len(set(asks)) == len(asks)
        assert bids[0] < best_bid + 2 and asks[0] > best_bid and bids[0] < asks[0]


@pytest.mark.parametrize(("params", "words"), [
    ({"levels": 3}, "exactly one of spacing_ticks"),
    ({"levels": 3, "spacing_ticks": 2, "spacing_bps": 1.0}, "exactly one of spacing_ticks"),
    ({"levels": 2, "spacing_ticks": 2, "size_profile": (1.0,)}, "a list of 2 multipliers"),
    ({"levels": 2, "spacing_ticks": 2, "size_profile": (2.0, 1.0)}, "size_profile[0]"),
    ({"levels": 2, "spacing_ticks": 2, "size_profile": (1.0, 0.0)}, "size_profile[1]"),
    ({"join_touch": True, "min_distance_ticks": 2}, "cannot both join the touch"),
    ({"levels": 0}, "levels"),
    ({"levels": 51, "spacing_ticks": 1}, "from 1 to 50"),
])
def test_bad_ladder_parameters_are_refused_by_name(params: dict[str, object],
                                                   words: str) -> None:
    with pytest.raises(ValueError, match="LadderParams") as info:
        LadderParams(**params)  # type: ignore[arg-type]
    assert words in str(info.value)


def test_a_ladder_needing_more_open_orders_than_allowed_is_a_config_error(
        tmp_path: Path) -> None:
    path = write_config(tmp_path, {"strategy.ladder": {"levels": 3, "spacing_ticks": 10}})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "strategy.ladder.levels" in text and "risk.max_open_orders 2" in text
    assert "at least 6" in text
    path = write_config(tmp_path, {"strategy.ladder": {"levels": 3, "spacing_ticks": 10},
                                   "risk": {"max_open_orders": 6}})
    assert load_config(path).strategy.ladder.levels == 3


def test_the_shipped_ladder_config_loads_with_three_levels() -> None:
    config = load_config(Path(__file__).resolve().parents[2] / "config" / "ladder.toml")
    assert config.strategy.ladder.levels == 3
    assert config.risk.max_open_orders >= 6


# -- the order manager's diff ----------------------------------------------------------------

def ladder(bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> Ladder:
    return Ladder(tuple(bids), tuple(asks), 0.0, 0)


def ack_all(m: OrderManager, actions: list[OrderAction]) -> list[OrderAction]:
    """Send every action and let the venue confirm it."""
    for a in actions:
        m.sent(a)
    for a in actions:
        status = OrderStatus.CANCELED if a.kind == "cancel" else OrderStatus.NEW
        m.on_update(OrderUpdate(a.order_id, status, a.side, a.price, a.size, 0, "", 0))
    return actions


BIDS = [(100, 10), (95, 10), (90, 10)]
ASKS = [(110, 10), (115, 10), (120, 10)]


def three_a_side() -> tuple[OrderManager, dict[int, int]]:
    """A manager with the 3 x 3 ladder live; order id by price."""
    m = OrderManager(run_id=1, price_tolerance_ticks=2, size_tolerance_lots=3)
    placed = ack_all(m, m.decide(ladder(BIDS, ASKS)))
    assert [a.kind for a in placed] == ["place"] * 6
    assert [(a.side, a.price) for a in placed] == [  # the sides take turns
        (Side.BUY, 100), (Side.SELL, 110), (Side.BUY, 95),
        (Side.SELL, 115), (Side.BUY, 90), (Side.SELL, 120)]
    return m, {a.price: a.order_id for a in placed}


def test_levels_that_did_not_move_keep_their_orders() -> None:
    m, _ = three_a_side()
    assert m.decide(ladder(BIDS, ASKS)) == []
    # within the tolerances (1 tick < 2, 2 lots < 3): nothing is touched
    assert m.decide(ladder([(101, 12), (94, 8), (90, 10)], ASKS)) == []


def test_a_ladder_moving_one_step_amends_only_the_order_left_behind() -> None:
    m, ids = three_a_side()
    up = [(105, 10), (100, 10), (95, 10)]
    (amend,) = m.decide(ladder(up, ASKS))
    # the levels at 100 and 95 keep their orders (and queue places); the one at 90 moves
    assert amend == OrderAction("amend", ids[90], Side.BUY, 105, 10)


def test_a_size_change_amends_in_place_and_keeps_what_filled() -> None:
    m, ids = three_a_side()
    m.on_update(OrderUpdate(ids[95], OrderStatus.PARTIALLY_FILLED, Side.BUY, 95, 10, 4, "", 0))
    (amend,) = m.decide(ladder([(100, 10), (95, 10), (90, 10)], ASKS))
    assert amend == OrderAction("amend", ids[95], Side.BUY, 95, 14)  # 4 filled + 10 open


def test_a_shorter_ladder_cancels_the_outermost_orders() -> None:
    m, ids = three_a_side()
    actions = m.decide(ladder(BIDS[:1], ASKS))
    assert sorted((a.kind, a.order_id) for a in actions) == sorted([
        ("cancel", ids[90]), ("cancel", ids[95])])


def test_orders_in_flight_hold_their_places_so_no_extra_order_is_placed() -> None:
    m, ids = three_a_side()
    (amend,) = m.decide(ladder([(105, 10), (100, 10), (95, 10)], ASKS))
    m.sent(amend)  # not answered yet
    # the ladder moves again: the order in flight is left alone, and holds a level
    again = [(107, 10), (102, 10), (97, 10)]
    actions = m.decide(ladder(again, ASKS))
    assert all(a.order_id != ids[90] for a in actions)
    assert not [a for a in actions if a.kind == "place"]
    assert len(m.side_orders(Side.BUY)) == 3
    cancel = m.cancel(ids[100])
    m.sent(cancel)  # a cancel in flight still counts: no place until it is confirmed
    assert not [a for a in m.decide(ladder(again, ASKS)) if a.kind == "place"]


def test_a_stale_place_beyond_the_ladder_does_not_apply() -> None:
    m = OrderManager(run_id=1)
    first = m.decide(ladder([(100, 10)], []))
    second = m.decide(ladder([(100, 10)], []))  # decided again before the first was sent
    (a,), (b,) = first, second
    assert m.applies(a)
    m.sent(a)
    assert not m.applies(b)  # the one level has its order: a second would exceed it
    m.decide(ladder([(100, 10), (95, 10)], []))
    assert m.applies(b)  # the ladder grew: a place for its new level applies


def test_an_ask_moving_down_waits_for_our_bid_moving_out_of_its_way() -> None:
    m, _ = three_a_side()
    # the market fell: the whole ladder moves down through our old bids
    bids = [(80, 10), (75, 10), (70, 10)]
    asks = [(90, 10), (95, 10), (100, 10)]
    actions = m.decide(ladder(bids, asks))
    prices: dict[int, tuple[Side, int]] = {
        oid: (o.side, o.price) for oid, o in m.orders.items()}
    for a in actions:  # applied in order, no ask ever meets or crosses one of our bids
        prices[a.order_id] = (a.side, a.price)
        bid = max(p for s, p in prices.values() if s is Side.BUY)
        ask = min(p for s, p in prices.values() if s is Side.SELL)
        assert bid < ask, (a, prices)
    assert len(actions) == 6
    # a bid in flight to 105 does not move now: an ask at or below it is held back
    m2, _ = three_a_side()
    (amend,) = m2.decide(ladder([(105, 10), (100, 10), (95, 10)], ASKS))
    m2.sent(amend)  # bid 90 -> 105, unanswered
    low = m2.decide(ladder([(105, 10), (100, 10), (95, 10)], [(103, 10), (108, 10),
                                                              (113, 10)]))
    assert all(a.price > 105 for a in low if a.side is Side.SELL)
    assert [a.price for a in low if a.side is Side.SELL] == [108, 113]  # 103 waits


def test_lots_besides_is_the_side_total_without_the_action_and_with_its_fills() -> None:
    m, ids = three_a_side()
    m.on_update(OrderUpdate(ids[95], OrderStatus.PARTIALLY_FILLED, Side.BUY, 95, 10, 4, "", 0))
    amend = OrderAction("amend", ids[95], Side.BUY, 95, 14)
    assert m.lots_besides(amend) + amend.size == 10 + 10 + 10  # 6 open + 4 filled -> 10
    place = OrderAction("place", 99, Side.BUY, 85, 10)
    assert m.lots_besides(place) + place.size == 10 + 6 + 10 + 10


# -- risk per level and in total -------------------------------------------------------------

def side_limits(inventory_hard_lots: int, max_side_open_lots: int = 0) -> PreTradeLimits:
    """Pre-trade limits that hold the gate to these two totals only."""
    return PreTradeLimits(max_order_lots=10**9, price_band_bps=1e6, max_open_orders=100,
                          max_orders_per_s=1e6, burst=100,
                          max_side_open_lots=max_side_open_lots,
                          inventory_hard_lots=inventory_hard_lots)


LIMITS = side_limits(inventory_hard_lots=1000)
SPOT = BINANCE_SPOT_BTCUSDT


def test_reducing_keeps_the_reducing_side_and_never_flips_the_position() -> None:
    gate = LadderGate(INST, LIMITS)
    full = ladder([(100, 50), (95, 50), (90, 50)], [(110, 50), (115, 50), (120, 50)])
    long = gate.gate(full, TradingState.REDUCING, 80)
    assert long is not None and long.bids == ()
    # 80 lots long: a complete fill of the asks sells 80 at most; 30 lots at 115 is kept
    assert long.asks == ((110, 50), (115, 30))
    short = gate.gate(full, TradingState.REDUCING, -60)
    assert short is not None and short.asks == () and short.bids == ((100, 50),)
    flat = gate.gate(full, TradingState.REDUCING, 0)
    assert flat is not None and flat.bids == flat.asks == ()
    assert gate.gate(full, TradingState.HALTED, 0) is None
    assert gate.gate(full, TradingState.KILLED, 0) is None


def test_a_ladder_whose_fill_would_breach_the_hard_limit_is_trimmed_outside_in() -> None:
    gate = LadderGate(INST, LIMITS)
    full = ladder([(100, 300), (95, 300), (90, 300)], [(110, 300), (115, 300), (120, 300)])
    assert gate.gate(full, TradingState.ACTIVE, 0) is full  # 900 < 1000 a side
    trimmed = gate.gate(full, TradingState.ACTIVE, 300)
    assert trimmed is not None
    # 300 long: buying 700 more at most (|position| must not pass 1000)
    assert trimmed.bids == ((100, 300), (95, 300), (90, 100))
    assert trimmed.asks == full.asks
    capped = LadderGate(INST, side_limits(1000, max_side_open_lots=610))
    side = capped.gate(full, TradingState.ACTIVE, 0)
    assert side is not None and side.bids == ((100, 300), (95, 300))  # 10 left < min 20


def test_the_pre_trade_check_refuses_a_side_total_over_its_limits() -> None:
    limits = PreTradeLimits(max_order_lots=500, price_band_bps=1e6, max_open_orders=10,
                            max_orders_per_s=1e6, burst=100, max_side_open_lots=600,
                            inventory_hard_lots=1000)
    checks = PreTradeChecks(limits)
    place = OrderAction("place", 1, Side.BUY, 100, 200)
    assert checks.check(place, 100.0, 2, 0, side_lots=400) is None
    blocked = checks.check(place, 100.0, 2, 0, side_lots=401)
    assert blocked is not None and blocked.code == MAX_ORDER_SIZE
    assert "risk.max_side_open_lots 600" in blocked.reason
    near = checks.check(place, 100.0, 2, 0, side_lots=101, position=700)  # 700 + 301
    assert near is not None and "risk.inventory_hard_lots 1000" in near.reason
    assert checks.check(place, 100.0, 2, 0, side_lots=100, position=700) is None  # to 1000
    sell = OrderAction("place", 2, Side.SELL, 100, 200)
    assert checks.check(sell, 100.0, 2, 0, side_lots=100, position=700) is None


@pytest.mark.xfail(strict=True, reason="not met yet: the manager leaves an order "
                   "whose open size is within size_tolerance_lots of its trimmed level, so "
                   "the reducing side can exceed |position| by up to the tolerance a level")
def test_reducing_never_leaves_more_open_on_the_reducing_side_than_the_position() -> None:
    gate = LadderGate(SPOT, side_limits(inventory_hard_lots=1_500_000))
    m = OrderManager(run_id=1, price_tolerance_ticks=20, size_tolerance_lots=50_000)
    full = Ladder(((6_199_900, 100_000), (6_199_600, 150_000)),
                  ((6_200_100, 100_000), (6_200_400, 150_000)), 6_200_000.0, 0)
    ack_all(m, m.decide(gate.gate(full, TradingState.ACTIVE, 0)))
    position = 240_000  # long beyond the soft limit: the asks are capped at 240,000
    gated = gate.gate(full, TradingState.REDUCING, position)
    assert gated is not None and sum(s for _, s in gated.asks) == position
    ack_all(m, m.decide(gated))
    ask_open = sum(o.open_size for o in m.side_orders(Side.SELL))
    assert position - ask_open >= 0, f"a complete fill of the asks ({ask_open} lots) " \
                                     f"flips the position {position} to {position - ask_open}"
