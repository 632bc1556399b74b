"""Order manager and position keeping."""

from __future__ import annotations

import random
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from mmdaemon.model import Fill, Ladder, OrderStatus, OrderUpdate, Side
from mmdaemon.orders.manager import OrderAction, OrderManager
from mmdaemon.orders.position import COST_SCALE, Position, cost_share


def q(bid: int, bid_size: int, ask: int, ask_size: int) -> Ladder:
    """One level a side (a side of size 0 quotes nothing)."""
    return Ladder(((bid, bid_size),) if bid_size else (), ((ask, ask_size),) if ask_size else (),
                  (bid + ask) / 2, 0)


def ack(a: OrderAction, status: OrderStatus = OrderStatus.NEW, filled: int = 0) -> OrderUpdate:
    return OrderUpdate(a.order_id, status, a.side, a.price, a.size, filled, "", 0)


def send_all(m: OrderManager, actions: list[OrderAction]) -> list[OrderAction]:
    for a in actions:
        m.sent(a)
    return actions


def test_places_one_order_per_side_and_waits_for_acks() -> None:
    m = OrderManager(run_id=3, price_tolerance_ticks=5, size_tolerance_lots=10)
    bid, ask = send_all(m, m.decide(q(100, 50, 110, 60)))
    assert (bid.kind, bid.side, bid.price, bid.size) == ("place", Side.BUY, 100, 50)
    assert (ask.kind, ask.side, ask.price, ask.size) == ("place", Side.SELL, 110, 60)
    assert bid.order_id == (3 << 32) + 1 and ask.order_id == (3 << 32) + 2
    # unacknowledged: nothing more, however far the quote moves
    assert m.decide(q(90, 5, 130, 5)) == []
    m.on_update(ack(bid))
    m.on_update(ack(ask))
    assert m.open_orders() == 2


def test_tolerance_keeps_queue_priority_and_amends_beyond_it() -> None:
    m = OrderManager(run_id=1, price_tolerance_ticks=5, size_tolerance_lots=10)
    for a in send_all(m, m.decide(q(100, 50, 110, 60))):
        m.on_update(ack(a))
    assert m.decide(q(104, 59, 106, 51)) == []  # within 5 ticks and 10 lots on both sides
    (amend,) = m.decide(q(95, 50, 110, 60))
    assert (amend.kind, amend.price, amend.size) == ("amend", 95, 50)
    (amend_size,) = m.decide(q(100, 50, 110, 75))
    assert (amend_size.kind, amend_size.side, amend_size.size) == ("amend", Side.SELL, 75)


def test_amend_size_is_total_including_what_filled() -> None:
    m = OrderManager(run_id=1, price_tolerance_ticks=1, size_tolerance_lots=1)
    (bid,) = send_all(m, m.decide(q(100, 50, 0, 0)))
    m.on_update(ack(bid, OrderStatus.PARTIALLY_FILLED, filled=20))
    (amend,) = m.decide(q(101, 50, 0, 0))
    assert amend.size == 70  # 20 filled + 50 open wanted


def test_zero_size_cancels_and_fill_or_cancel_frees_the_side() -> None:
    m = OrderManager(run_id=1)
    bid, ask = send_all(m, m.decide(q(100, 50, 110, 60)))
    m.on_update(ack(bid))
    m.on_update(ack(ask))
    (cancel,) = send_all(m, m.decide(q(100, 0, 110, 60)))
    assert cancel.kind == "cancel" and cancel.side is Side.BUY
    assert m.decide(q(100, 50, 110, 60)) == []  # cancel not confirmed: no second bid
    m.on_update(ack(cancel, OrderStatus.CANCELED))
    m.on_update(ack(ask, OrderStatus.FILLED, filled=60))
    assert m.open_orders() == 0
    assert [a.kind for a in m.decide(q(100, 50, 110, 60))] == ["place", "place"]


def test_unsent_actions_change_nothing_and_none_cancels_all() -> None:
    m = OrderManager(run_id=1)
    m.decide(q(100, 50, 110, 60))  # decided but blocked: never sent
    assert m.open_orders() == 0
    bid, ask = send_all(m, m.decide(q(100, 50, 110, 60)))
    m.on_update(ack(bid))
    m.on_update(ack(ask))
    assert sorted(a.kind for a in m.decide(None)) == ["cancel", "cancel"]
    assert m.on_update(OrderUpdate(999, OrderStatus.NEW, Side.BUY, 1, 1, 0, "", 0)) is None


def fill(side: int, price: int, size: int, fee: int = 0) -> Fill:
    return Fill(1, Side(side), price, size, fee, True, 0)


def test_position_pnl_by_hand() -> None:
    p = Position()
    for f in (fill(1, 100, 10, 2), fill(1, 110, 10, 2), fill(-1, 120, 5, 1)):
        p.apply(f)
    # long 20 @ avg 105; sold 5 @ 120 -> realised 5 x 15 = 75; 15 left, cost 1575
    assert p.position == 15 and p.realized == 75 and p.cost == 1575
    assert p.cash == -1000 - 1100 + 600 and p.fees == 5
    # mark 101: unrealised 15 x 101 - 1575 = -60; total = -1500 + 1515 - 5 = 10
    assert p.unrealized(Fraction(101)) == -60
    assert p.total(Fraction(101)) == 10 == p.realized + p.unrealized(Fraction(101)) - p.fees
    p.apply(fill(-1, 90, 30))  # close 15 at 90 (-225), open 15 short at 90
    assert p.position == -15 and p.realized == 75 - 225 and p.cost == -1350
    assert p.max_abs == 20 and p.volume == 55 and p.fills == 4


@given(st.lists(st.tuples(st.sampled_from([1, -1]), st.integers(1, 1000), st.integers(1, 50)),
                max_size=30),
       st.integers(1, 2000))
def test_position_invariant(fills: list[tuple[int, int, int]], mark_x2: int) -> None:
    p = Position()
    for side, price, size in fills:
        p.apply(fill(side, price, size, fee=1))
        mark = Fraction(mark_x2, 2)
        assert p.realized + p.unrealized(mark) - p.fees == p.total(mark)
        assert p.position == sum(s * z for s, _, z in fills[: p.fills])


def _average_cost_by_hand(fills: list[tuple[int, int, int]]) -> tuple[Fraction, Fraction, int]:
    """(realised, cost basis, reducing fills that kept a position) of ``fills`` (side, price,
    size), exactly: each close realised at its price against the exact average cost."""
    pos, cost, realized, kept = 0, Fraction(0), Fraction(0), 0
    for side, price, size in fills:
        signed = side * size
        if pos == 0 or (pos > 0) == (signed > 0):
            cost += signed * price
        else:
            closed, avg = min(size, abs(pos)), cost / pos
            realized += closed * (price - avg) * (1 if pos > 0 else -1)
            remaining = pos + signed
            flipped = remaining != 0 and (remaining > 0) != (pos > 0)
            cost = Fraction(price * remaining) if flipped else avg * remaining
            kept += remaining != 0 and not flipped
        pos += signed
    return realized, cost, kept


@given(st.lists(st.tuples(st.sampled_from([1, -1]), st.integers(1, 1000), st.integers(1, 50)),
                max_size=60))
def test_position_realises_the_average_cost_pnl_to_half_a_sub_unit_a_reduction(
        fills: list[tuple[int, int, int]]) -> None:
    """Realised PnL is the exact average-cost figure but for the rounding of the cost basis
    left after a reducing fill: within half a sub-unit per such fill, over a denominator
    that never grows past COST_SCALE, and the total untouched by it."""
    p = Position()
    for i, (side, price, size) in enumerate(fills):
        p.apply(fill(side, price, size))
        realized, cost, kept = _average_cost_by_hand(fills[: i + 1])
        assert type(p.cost_scaled) is int and COST_SCALE % p.realized.denominator == 0
        assert abs(p.cost - cost) <= Fraction(kept, 2 * COST_SCALE)
        assert p.realized - realized == p.cost - cost  # the rounding only moves the split
        mark = Fraction(7, 2)
        assert p.realized + p.unrealized(mark) == p.cash + p.position * mark == p.total(mark)


def test_partial_closes_round_the_rest_to_the_nearest_sub_unit() -> None:
    p = Position()
    p.apply(fill(1, 3, 2))
    p.apply(fill(1, 4, 1))  # long 3, cost 10 (avg 10/3)
    p.apply(fill(-1, 5, 1))  # 2 left at 10/3: 6.666666666|67 rounds up at the 9th decimal
    assert (p.position, p.cost) == (2, Fraction(6_666_666_667, COST_SCALE))
    assert p.realized == -10 + 5 + p.cost  # 5 - 10/3 = 5/3, to the sub-unit
    p.apply(fill(-1, 5, 1))  # 1 left: half of 6.666666667 is a tie, to even: 3.333333334
    assert (p.position, p.cost) == (1, Fraction(3_333_333_334, COST_SCALE))
    q = Position()
    q.apply(fill(-1, 101, 7))  # short 7: cost -707
    q.apply(fill(1, 90, 2))  # 5 left: -707 x 5 / 7 = -505 exactly, no rounding
    assert (q.position, q.cost, q.realized) == (-5, -505, 2 * 101 - 2 * 90)
    q.apply(fill(1, 90, 2))
    q.apply(fill(1, 90, 3))  # flat: the basis is gone, everything realised is cash
    assert (q.position, q.cost_scaled, q.realized) == (0, 0, q.cash)
    assert [cost_share(5, 1, 2), cost_share(7, 1, 2), cost_share(-5, 1, 2),
            cost_share(-7, -1, -2), cost_share(10, 1, -4)] == [2, 4, -2, -4, -2]


def test_a_standing_inventory_keeps_a_cost_basis_the_size_of_its_notional() -> None:
    """Thousands of reducing fills that never reach zero: the basis stays a whole number of
    sub-units about the position's notional (kept exact, its denominator multiplied by the
    position at each one, past 100,000 bits in 20,000 fills)."""
    rng = random.Random(7)
    p = Position()
    p.apply(fill(1, 6_000_000, 10_000_000))
    for i in range(5_000):
        p.apply(fill(-1 if i % 2 == 0 else 1, 6_000_000 + rng.randint(-500, 500),
                     rng.randint(1, 90_000)))
        assert p.position > 0 and COST_SCALE % p.cost.denominator == 0
        assert 5_999_500 * p.position <= p.cost <= 6_000_500 * p.position


def test_rejected_amend_keeps_the_order_and_its_confirmed_state() -> None:
    m = OrderManager(run_id=1, price_tolerance_ticks=1, size_tolerance_lots=1)
    (bid,) = send_all(m, m.decide(q(100, 50, 0, 0)))
    m.on_update(ack(bid))
    (amend,) = send_all(m, m.decide(q(101, 55, 0, 0)))
    assert (amend.kind, amend.price) == ("amend", 101)
    # the venue refuses the request, not the order: it still rests at 100 x 50
    m.on_update(OrderUpdate(bid.order_id, OrderStatus.REJECTED, Side.BUY, 0, 0, 0, "bad", 0))
    order = m.orders[bid.order_id]
    assert (order.price, order.size, order.pending) == (100, 50, None)
    # so no second bid is placed: the side retries the amend instead
    assert [a.kind for a in m.decide(q(101, 55, 0, 0))] == ["amend"]


def test_rejected_place_frees_the_side() -> None:
    m = OrderManager(run_id=1)
    (bid,) = send_all(m, m.decide(q(100, 50, 0, 0)))
    m.on_update(ack(bid, OrderStatus.REJECTED))
    assert m.open_orders() == 0
    assert [a.kind for a in m.decide(q(100, 50, 0, 0))] == ["place"]


def test_a_fill_during_a_pending_request_does_not_release_the_side() -> None:
    m = OrderManager(run_id=1, price_tolerance_ticks=1, size_tolerance_lots=1)
    (bid,) = send_all(m, m.decide(q(100, 50, 0, 0)))
    m.on_update(ack(bid))
    (cancel,) = send_all(m, m.decide(q(100, 0, 0, 0)))
    assert cancel.kind == "cancel"
    m.on_update(ack(bid, OrderStatus.PARTIALLY_FILLED, filled=10))  # fill races the cancel
    assert m.orders[bid.order_id].status is OrderStatus.PENDING_CANCEL
    assert m.decide(q(100, 0, 0, 0)) == []  # no second cancel
    m.on_update(ack(bid, OrderStatus.CANCELED, filled=10))
    assert m.open_orders() == 0


def test_amend_waits_for_its_own_acknowledgement() -> None:
    m = OrderManager(run_id=1, price_tolerance_ticks=1, size_tolerance_lots=1)
    (bid,) = send_all(m, m.decide(q(100, 50, 0, 0)))
    m.on_update(ack(bid))
    (amend,) = send_all(m, m.decide(q(105, 50, 0, 0)))
    # a fill at the old price arrives before the amend's answer
    m.on_update(ack(bid, OrderStatus.PARTIALLY_FILLED, filled=5))
    assert m.orders[bid.order_id].pending == "amend"
    assert m.decide(q(110, 50, 0, 0)) == []
    m.on_update(ack(amend, OrderStatus.PARTIALLY_FILLED, filled=5))
    assert m.orders[bid.order_id].pending is None
    assert [a.kind for a in m.decide(q(110, 50, 0, 0))] == ["amend"]
