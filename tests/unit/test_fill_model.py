"""Paper venue fill model: queue position, latency, post-only, amends, fees, real data.

Expected values are computed by hand in the comments. The synthetic tests use an instrument
with tick 0.01 and lot 1 (no order-entry filter bites) and a latency of 1,000 ns, so an order
sent at t arrives at the first market event at or after t + 1,000.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmdaemon.book import OrderBook
from mmdaemon.exchange.fill_model import (
    AMEND_CROSS,
    DUPLICATE_ID,
    NO_BOOK,
    ORDER_CLOSED,
    POST_ONLY_CROSS,
    REDUCE_ONLY,
    UNKNOWN_ORDER,
    PaperVenue,
    fee_units,
    parse_bps,
)
from mmdaemon.exchange.queue import CONSERVATIVE, QueueModel
from mmdaemon.feed.recording import read_recording
from mmdaemon.market import MarketState
from mmdaemon.model import (
    BINANCE_SPOT_BTCUSDT,
    BookUpdate,
    ExecutionEvent,
    Fill,
    Instrument,
    Level,
    Malformed,
    OrderStatus,
    OrderUpdate,
    Side,
    Trade,
)
from mmdaemon.venues.binance import BinanceCodec

INSTR = Instrument("TEST", "0.01", "1")
LAT = 1_000  # ns
BUY, SELL = Side.BUY, Side.SELL
NEW, PARTIAL, FILLED = OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED
CANCELED, REJECTED = OrderStatus.CANCELED, OrderStatus.REJECTED
RECORDING = (
    Path(__file__).resolve().parents[2] / "data" / "binance-spot-btcusdt" / "btcusdt_20240808.gz"
)


def make_book(bids: Sequence[Level], asks: Sequence[Level]) -> OrderBook:
    book = OrderBook()
    book.apply(BookUpdate(True, list(bids), list(asks), 1, 1, 0, 0))
    return book


def change(book: OrderBook, bids: Sequence[Level] = (), asks: Sequence[Level] = ()) -> OrderBook:
    book.apply(BookUpdate(False, list(bids), list(asks), 2, 2, 0, 0))
    return book


def trade(price: int, size: int, aggressor: Side, ns: int) -> Trade:
    return Trade(price, size, aggressor, 1, ns, ns)


def venue(maker: str = "0", taker: str = "0") -> PaperVenue:
    return PaperVenue(INSTR, LAT, maker, taker)


def book_at(v: PaperVenue, book: OrderBook, t: int) -> list[ExecutionEvent]:
    """Requests due by ``t``, then the book event at ``t`` (the caller's contract)."""
    return [*v.advance(t), *v.on_book(book, t)]


def trade_at(v: PaperVenue, tr: Trade, t: int) -> list[ExecutionEvent]:
    """Requests due by ``t``, then the trade at ``t``."""
    return [*v.advance(t), *v.on_trade(tr, t)]


def fills(events: Sequence[ExecutionEvent]) -> list[Fill]:
    """The fills, with their execution ids checked (> 0, increasing) and then cleared, and
    their mid before the event cleared (tests of their own check it)."""
    out = [e for e in events if isinstance(e, Fill)]
    ids = [f.exec_id for f in out]
    assert all(i > 0 for i in ids) and ids == sorted(set(ids))
    return [f._replace(exec_id=0, mid_x2=0) for f in out]


def updates(events: Sequence[ExecutionEvent]) -> list[OrderUpdate]:
    return [e for e in events if isinstance(e, OrderUpdate)]


def state(v: PaperVenue, oid: int) -> OrderUpdate:
    update = v.order(oid)
    assert update is not None
    return update


def statuses(events: Sequence[ExecutionEvent]) -> list[tuple[int, OrderStatus, int]]:
    """(order id, status, cumulative filled) of each update, in order."""
    return [(e.order_id, e.status, e.filled) for e in events if isinstance(e, OrderUpdate)]


def rest(
    v: PaperVenue, book: OrderBook, oid: int, side: Side, price: int, size: int, t: int
) -> int:
    """Send an order at ``t`` and let it arrive with a book event at ``t + LAT``."""
    if v._book is None:
        assert book_at(v, book, t) == []  # the venue must have seen the market first
    [sent] = v.place(oid, side, price, size, t)
    assert sent.status is OrderStatus.PENDING_NEW
    assert statuses(book_at(v, book, t + LAT)) == [(oid, NEW, 0)]
    return t + LAT


# ---- queue position ------------------------------------------------------------------------


def test_order_joins_back_of_level_with_displayed_size_ahead() -> None:
    book = make_book([(100, 50), (99, 7)], [(101, 40)])
    v = venue()
    v.place(1, BUY, 100, 10, 0)
    assert v.queue_ahead(1) is None  # not at the venue yet
    assert book_at(v, book, LAT - 1) == []  # one ns early: still travelling
    assert statuses(book_at(v, book, LAT)) == [(1, NEW, 0)]
    assert v.queue_ahead(1) == 50  # the whole displayed level at 100 is ahead of us
    # an empty level: nothing ahead
    v.place(2, BUY, 98, 10, LAT)
    book_at(v, book, 2 * LAT)
    assert v.queue_ahead(2) == 0


def test_trades_at_our_price_eat_queue_then_fill_partially_then_fully() -> None:
    book = make_book([(100, 50)], [(101, 40)])
    v = venue()
    t = rest(v, book, 1, BUY, 100, 10, 0)
    # a sell of 30 at 100: 30 <= 50 ahead -> queue 50 - 30 = 20, no fill
    assert trade_at(v, trade(100, 30, SELL, t + 1), t + 1) == []
    assert v.queue_ahead(1) == 20
    # a buy aggressor hits asks, not our bid; a sell above our bid does not reach it
    assert trade_at(v, trade(100, 99, BUY, t + 2), t + 2) == []
    assert trade_at(v, trade(101, 99, SELL, t + 3), t + 3) == []
    assert v.queue_ahead(1) == 20
    # a sell of 25: 20 go to the queue ahead, the excess 5 fill us -> filled 5 of 10, queue 0
    events = trade_at(v, trade(100, 25, SELL, t + 4), t + 4)
    assert fills(events) == [Fill(1, BUY, 100, 5, 0, True, t + 4)]
    assert statuses(events) == [(1, PARTIAL, 5)]
    assert isinstance(events[0], Fill)  # the fill first, then the order's update
    assert v.queue_ahead(1) == 0
    # a sell of 8: min(remaining 5, 8) = 5 -> FILLED 10
    events = trade_at(v, trade(100, 8, SELL, t + 5), t + 5)
    assert [f.size for f in fills(events)] == [5]
    assert statuses(events) == [(1, FILLED, 10)]
    assert v.open_orders() == []
    closed = v.order(1)
    assert closed is not None and closed.status is FILLED and closed.ts_ns == t + 5


def test_sell_order_queue_and_fill_symmetric() -> None:
    book = make_book([(100, 50)], [(101, 40)])
    v = venue()
    t = rest(v, book, 1, SELL, 101, 10, 0)
    assert v.queue_ahead(1) == 40
    # a buy of 45 at 101: 40 ahead, excess 5 fills us at 101
    events = trade_at(v, trade(101, 45, BUY, t + 1), t + 1)
    assert fills(events) == [Fill(1, SELL, 101, 5, 0, True, t + 1)]


def test_trade_through_fills_at_our_price() -> None:
    book = make_book([(100, 50)], [(101, 40)])
    v = venue()
    t = rest(v, book, 1, BUY, 100, 10, 0)
    # a sell at 99 went through our bid at 100: fill min(10, 4) = 4 at OUR price 100
    events = trade_at(v, trade(99, 4, SELL, t + 1), t + 1)
    assert fills(events) == [Fill(1, BUY, 100, 4, 0, True, t + 1)]
    # another at 98 for 10: the remaining 6 fill, still at 100
    events = trade_at(v, trade(98, 10, SELL, t + 2), t + 2)
    assert fills(events) == [Fill(1, BUY, 100, 6, 0, True, t + 2)]
    assert statuses(events) == [(1, FILLED, 10)]


def test_trade_through_whole_fills_the_rest_on_the_first_print_through() -> None:
    """hftbacktest's rule, for comparing with it: any print through our price fills the
    rest of the order, whatever its size; an order at the print's price still queues."""
    book = make_book([(99, 50)], [(101, 40)])
    v = PaperVenue(INSTR, LAT, "0", "0", trade_through="whole")
    t = rest(v, book, 1, BUY, 100, 10, 0)
    t = rest(v, book, 2, BUY, 99, 10, t)  # behind the 50 lots displayed at 99
    events = trade_at(v, trade(99, 4, SELL, t + 1), t + 1)
    assert fills(events) == [Fill(1, BUY, 100, 10, 0, True, t + 1)]
    assert statuses(events) == [(1, FILLED, 10)]
    assert state(v, 2).filled == 0  # the 4 lots went to us at 100; none reach 99's queue
    with pytest.raises(ValueError, match="trade_through: expected one of 'print', 'whole'"):
        PaperVenue(INSTR, LAT, "0", "0", trade_through="all")


def test_book_through_our_price_fills_the_rest() -> None:
    book = make_book([(100, 50)], [(102, 40)])
    v = venue()
    t = rest(v, book, 1, BUY, 101, 10, 0)  # improves the bid: queue 0
    # the best ask comes down to our bid (101): whoever offers there would have hit us
    change(book, asks=[(101, 3)])
    events = book_at(v, book, t + 1)
    assert fills(events) == [Fill(1, BUY, 101, 10, 0, True, t + 1)]
    assert statuses(events) == [(1, FILLED, 10)]


def test_unsynced_book_is_not_acted_on() -> None:
    book = make_book([(100, 50)], [(102, 40)])
    v = venue()
    t = rest(v, book, 1, BUY, 100, 10, 0)
    book.invalidate()  # a gap: the levels may be wrong
    change(book, bids=[(100, 1)], asks=[(100, 3)])
    assert book_at(v, book, t + 1) == []
    assert v.queue_ahead(1) == 50


def test_level_decrease_shrinks_queue_increase_does_not() -> None:
    book = make_book([(100, 50)], [(101, 40)])
    v = venue()
    t = rest(v, book, 1, BUY, 100, 10, 0)
    book_at(v, change(book, bids=[(100, 35)]), t + 1)
    assert v.queue_ahead(1) == 35  # 15 left the level: assumed ahead of us (capped at 35)
    book_at(v, change(book, bids=[(100, 60)]), t + 2)
    assert v.queue_ahead(1) == 35  # new size joins behind us
    book_at(v, change(book, bids=[(100, 20)]), t + 3)
    assert v.queue_ahead(1) == 20
    book_at(v, change(book, bids=[(100, 0)]), t + 4)
    assert v.queue_ahead(1) == 0  # the level emptied: we are at the front
    # next sell of 3 at 100 fills 3 at once
    assert [f.size for f in fills(trade_at(v, trade(100, 3, SELL, t + 5), t + 5))] == [3]


def test_two_orders_at_one_price_do_not_double_use_a_trade() -> None:
    book = make_book([(100, 5)], [(103, 40)])
    v = venue()
    rest(v, book, 1, BUY, 100, 10, 0)  # A: queue 5
    t = rest(v, book, 2, BUY, 100, 10, 10)  # B: queue 5 (A is invisible to the public book)
    # sell 12 at 100. A: 12 > 5 -> fills min(10, 12 - 5) = 7; 12 - 7 = 5 lots left for B.
    # B: 5 <= queue 5 -> queue 0, no fill. Total 7 <= 12: no lot used twice.
    events = trade_at(v, trade(100, 12, SELL, t + 1), t + 1)
    assert [(f.order_id, f.size) for f in fills(events)] == [(1, 7)]
    assert (v.queue_ahead(1), v.queue_ahead(2)) == (0, 0)
    # sell 6 at 100: A takes its remaining 3 first (arrival priority), B the other 3
    events = trade_at(v, trade(100, 6, SELL, t + 2), t + 2)
    assert [(f.order_id, f.size) for f in fills(events)] == [(1, 3), (2, 3)]
    assert statuses(events) == [(1, FILLED, 10), (2, PARTIAL, 3)]


def test_better_priced_order_takes_trade_volume_first() -> None:
    book = make_book([(100, 5)], [(103, 40)])
    v = venue()
    rest(v, book, 1, BUY, 100, 10, 0)  # A at 100: queue 5
    t = rest(v, book, 2, BUY, 101, 10, 10)  # B at 101: empty level, queue 0
    # sell 4 at 100: B (best price) is traded through and takes all 4 -> none left for A,
    # whose queue stays 5
    events = trade_at(v, trade(100, 4, SELL, t + 1), t + 1)
    assert [(f.order_id, f.price, f.size) for f in fills(events)] == [(2, 101, 4)]
    assert v.queue_ahead(1) == 5
    # sell 15 at 100: B takes its remaining 6 (through); 9 left; A: 9 > 5 -> fills 4
    events = trade_at(v, trade(100, 15, SELL, t + 2), t + 2)
    assert [(f.order_id, f.price, f.size) for f in fills(events)] == [(2, 101, 6), (1, 100, 4)]


# ---- latency -------------------------------------------------------------------------------


def test_trade_before_arrival_does_not_fill() -> None:
    book = make_book([(99, 5)], [(101, 5)])
    v = venue()
    book_at(v, book, 0)
    v.place(1, BUY, 100, 10, 0)  # would be alone at 100 (queue 0) once it arrives
    # a sell at our price one ns before arrival: not ours to take
    assert trade_at(v, trade(100, 10, SELL, LAT - 1), LAT - 1) == []
    assert state(v, 1).status is OrderStatus.PENDING_NEW
    assert v.queue_ahead(1) is None
    # a trade at exactly the arrival time: the order arrives first, then the trade fills it
    events = trade_at(v, trade(100, 4, SELL, LAT), LAT)
    assert statuses(events) == [(1, NEW, 0), (1, PARTIAL, 4)]
    assert fills(events) == [Fill(1, BUY, 100, 4, 0, True, LAT)]


def test_arrival_uses_last_book_seen_by_on_trade() -> None:
    book = make_book([(100, 8)], [(101, 5)])
    v = venue()
    book_at(v, book, 0)  # seen, no orders yet: early return
    v.place(1, BUY, 100, 10, 0)
    trade_at(v, trade(101, 1, BUY, LAT), LAT)
    assert v.queue_ahead(1) == 8


def test_no_book_seen_rejects_on_arrival() -> None:
    v = venue()
    v.place(1, BUY, 100, 10, 0)
    assert [(u.status, u.reason) for u in updates(v.advance(LAT))] == [(REJECTED, NO_BOOK)]


def test_fill_before_cancel_arrival_stands_then_cancel_reports_final_state() -> None:
    book = make_book([(99, 5)], [(101, 5)])
    v = venue()
    t = rest(v, book, 1, BUY, 100, 10, 0)  # queue 0
    [pending] = v.cancel(1, t + 10)
    assert (pending.status, pending.filled, pending.ts_ns) == (
        OrderStatus.PENDING_CANCEL,
        0,
        t + 10,
    )
    # the cancel arrives at t + 10 + LAT; a sell of 3 just before it still fills us
    events = trade_at(v, trade(100, 3, SELL, t + 9 + LAT), t + 9 + LAT)
    assert statuses(events) == [(1, PARTIAL, 3)]
    # the cancel arrives: CANCELED with the 3 filled so far
    events = book_at(v, book, t + 10 + LAT)
    assert statuses(events) == [(1, CANCELED, 3)]
    assert v.open_orders() == []
    # after the cancel arrived nothing fills
    assert trade_at(v, trade(100, 50, SELL, t + 11 + LAT), t + 11 + LAT) == []
    assert trade_at(v, trade(90, 50, SELL, t + 12 + LAT), t + 12 + LAT) == []
    # cancelling it again: REJECTED on arrival, reporting what we know of it
    assert v.cancel(1, t + 20 + LAT) == []
    [rej] = v.advance(t + 20 + 2 * LAT)
    assert isinstance(rej, OrderUpdate)
    assert (rej.status, rej.reason, rej.side, rej.price, rej.size, rej.filled) == (
        REJECTED,
        ORDER_CLOSED,
        BUY,
        100,
        10,
        3,
    )
    assert state(v, 1).status is CANCELED


def test_full_fill_before_cancel_arrival_then_nothing_more() -> None:
    book = make_book([(99, 5)], [(101, 5)])
    v = venue()
    t = rest(v, book, 1, BUY, 100, 10, 0)
    v.cancel(1, t)
    events = trade_at(v, trade(100, 10, SELL, t + 1), t + 1)
    assert statuses(events) == [(1, FILLED, 10)]
    assert book_at(v, book, t + LAT) == []  # the cancel arrives: the FILLED update stands


def test_cancel_unknown_order_rejected_on_arrival() -> None:
    book = make_book([(99, 5)], [(101, 5)])
    v = venue()
    assert v.cancel(42, 0) == []
    assert v.next_due_ns() == LAT
    [rej] = book_at(v, book, LAT)
    assert rej == OrderUpdate(42, REJECTED, BUY, 0, 0, 0, UNKNOWN_ORDER, LAT)


def test_cancel_all_cancels_resting_and_in_flight_orders() -> None:
    book = make_book([(99, 5)], [(101, 5)])
    v = venue()
    rest(v, book, 1, BUY, 99, 10, 0)
    v.place(2, SELL, 102, 10, LAT + 5)  # still travelling when cancel_all is sent
    sent = v.cancel_all(LAT + 10)
    assert [(u.order_id, u.status) for u in sent] == [
        (1, OrderStatus.PENDING_CANCEL),
        (2, OrderStatus.PENDING_CANCEL),
    ]
    assert v.cancel_all(LAT + 11) == []  # cancels already in flight
    # requests arrive in sending order: 2's place, then the two cancels
    events = book_at(v, book, 2 * LAT + 10)
    assert statuses(events) == [(2, NEW, 0), (1, CANCELED, 0), (2, CANCELED, 0)]
    assert v.open_orders() == []


# ---- post-only, validation -----------------------------------------------------------------


def test_post_only_rejects_crossing_orders() -> None:
    book = make_book([(100, 5)], [(101, 5)])
    v = venue()
    book_at(v, book, 0)
    v.place(1, BUY, 101, 10, 0)  # buy at the best ask
    v.place(2, SELL, 100, 10, 0)  # sell at the best bid
    v.place(3, BUY, 102, 10, 0)  # buy through the best ask
    events = v.advance(LAT)
    assert [(u.order_id, u.status, u.reason) for u in updates(events)] == [
        (1, REJECTED, POST_ONLY_CROSS),
        (2, REJECTED, POST_ONLY_CROSS),
        (3, REJECTED, POST_ONLY_CROSS),
    ]
    assert fills(events) == [] and v.open_orders() == []


def test_post_only_is_checked_at_arrival_not_when_sent() -> None:
    book = make_book([(100, 5)], [(102, 5)])
    v = venue()
    book_at(v, book, 0)
    v.place(1, BUY, 101, 10, 0)  # inside the spread when sent ...
    v.place(2, SELL, 100, 10, 0)  # at the best bid when sent ...
    # ... then the ask comes down to 101 and the bid leaves 100 for 99
    change(book, bids=[(100, 0), (99, 5)], asks=[(102, 0), (101, 2)])
    events = book_at(v, book, LAT)
    assert [(u.order_id, u.status, u.reason) for u in updates(events)] == [
        (1, REJECTED, POST_ONLY_CROSS),  # 101 >= best ask 101
        (2, NEW, ""),  # 100 > best bid 99: rests at the ask side's level 100, alone
    ]
    assert v.queue_ahead(2) == 0


def test_post_only_also_against_our_own_resting_orders() -> None:
    book = make_book([(100, 5)], [(104, 5)])
    v = venue()
    rest(v, book, 1, SELL, 102, 10, 0)
    v.place(2, BUY, 102, 10, LAT)  # would trade with our own ask at 102
    assert [(u.status, u.reason) for u in updates(v.advance(2 * LAT))] == [
        (REJECTED, POST_ONLY_CROSS)
    ]


def test_invalid_and_duplicate_orders_rejected_at_once() -> None:
    book = make_book([(100, 5)], [(104, 5)])
    v = venue()
    assert v.place(1, BUY, 0, 10, 0)[0].status is REJECTED
    assert v.place(2, BUY, 100, 0, 0)[0].status is REJECTED
    assert v.place(3, BUY, 100, -5, 0)[0].status is REJECTED
    rest(v, book, 4, BUY, 100, 10, 0)
    [dup] = v.place(4, SELL, 104, 3, LAT)
    assert (dup.status, dup.reason) == (REJECTED, DUPLICATE_ID)
    assert v.order(4) == v.open_orders()[0]  # the live order is untouched
    assert v.open_orders()[0].status is NEW and v.open_orders()[0].side is BUY
    assert v.next_due_ns() is None  # nothing was sent for the rejects


def test_exchange_filters_of_the_instrument() -> None:
    v = PaperVenue(BINANCE_SPOT_BTCUSDT, LAT, "1", "7.5")
    # step 1,000 lots; 1,000 lots x 61,837.63 = 0.618 USDT < 5 USDT minimum notional
    assert "multiple" in v.place(1, BUY, 6183763, 1500, 0)[0].reason
    assert "notional" in v.place(2, BUY, 6183763, 1000, 0)[0].reason
    # 10,000 lots (0.0001 BTC) = 6.18 USDT: accepted
    assert v.place(3, BUY, 6183763, 10_000, 0)[0].status is OrderStatus.PENDING_NEW
    off = PaperVenue(BINANCE_SPOT_BTCUSDT, LAT, "1", "7.5", exchange_filters=False)
    assert off.place(2, BUY, 6183763, 1000, 0)[0].status is OrderStatus.PENDING_NEW


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"latency_ns": -1}, "latency_ns"),
        ({"latency_ns": 1.5}, "latency_ns"),
        ({"latency_ns": True}, "latency_ns"),
        ({"maker_fee_bps": "abc"}, "maker_fee_bps"),
        ({"maker_fee_bps": float("nan")}, "maker_fee_bps"),
        ({"maker_fee_bps": "inf"}, "maker_fee_bps"),
        ({"maker_fee_bps": True}, "maker_fee_bps"),
        ({"maker_fee_bps": "1/3"}, "maker_fee_bps"),
        ({"taker_fee_bps": 20_000}, "taker_fee_bps"),
        ({"taker_fee_bps": None}, "taker_fee_bps"),
        ({"instrument": "BTCUSDT"}, "instrument"),
        ({"max_closed": -1}, "max_closed"),
    ],
)
def test_parameters_validated(kwargs: dict[str, object], name: str) -> None:
    params: dict[str, object] = {
        "instrument": INSTR,
        "latency_ns": LAT,
        "maker_fee_bps": "1",
        "taker_fee_bps": "7.5",
    }
    params.update(kwargs)
    with pytest.raises(ValueError, match=f"PaperVenue.{name}"):
        PaperVenue(**params)  # type: ignore[arg-type]


# ---- amend ---------------------------------------------------------------------------------


def test_amend_size_decrease_keeps_priority() -> None:
    book = make_book([(100, 50)], [(103, 40)])
    v = venue()
    rest(v, book, 1, BUY, 100, 10, 0)  # A: queue 50
    t = rest(v, book, 2, BUY, 100, 10, 10)  # B: queue 50, behind A
    trade_at(v, trade(100, 20, SELL, t + 1), t + 1)  # both queues 50 - 20 = 30
    assert v.amend(1, 100, 6, t + 2) == []
    events = book_at(v, book, t + 2 + LAT)
    assert [(u.status, u.price, u.size) for u in events if isinstance(u, OrderUpdate)] == [
        (NEW, 100, 6)
    ]
    assert v.queue_ahead(1) == 30  # kept its place
    # sell 33: A (still first) has 30 ahead -> fills min(6, 3) = 3; 30 left for B -> queue 0
    t2 = t + 3 + LAT
    events = trade_at(v, trade(100, 33, SELL, t2), t2)
    assert [(f.order_id, f.size) for f in fills(events)] == [(1, 3)]
    assert v.queue_ahead(2) == 0


def test_amend_price_change_or_size_increase_loses_priority() -> None:
    book = make_book([(100, 50), (99, 40)], [(103, 40)])
    v = venue()
    t = rest(v, book, 1, BUY, 100, 10, 0)
    trade_at(v, trade(100, 20, SELL, t + 1), t + 1)  # queue 50 - 20 = 30
    # size increase at the same price: back of the level, whose displayed size is 50 (this
    # test does not apply the trade to the book), so queue 50 > the 30 it had
    v.amend(1, 100, 12, t + 2)
    book_at(v, book, t + 2 + LAT)
    assert v.queue_ahead(1) == 50
    # price change to 99: back of that level, 40 ahead
    v.amend(1, 99, 12, t + 3 + LAT)
    events = book_at(v, book, t + 3 + 2 * LAT)
    assert [(u.status, u.price, u.size) for u in events if isinstance(u, OrderUpdate)] == [
        (NEW, 99, 12)
    ]
    assert v.queue_ahead(1) == 40


def test_amend_loses_time_priority_to_our_other_order() -> None:
    book = make_book([(100, 0), (99, 1)], [(103, 40)])
    v = venue()
    rest(v, book, 1, BUY, 100, 10, 0)  # A first, queue 0
    t = rest(v, book, 2, BUY, 100, 10, 10)  # B second, queue 0
    v.amend(1, 100, 20, t)  # A grows: rejoins behind B
    book_at(v, book, t + LAT)
    events = trade_at(v, trade(100, 15, SELL, t + LAT + 1), t + LAT + 1)
    # B first now: 10 (FILLED), then A gets the 5 left
    assert [(f.order_id, f.size) for f in fills(events)] == [(2, 10), (1, 5)]


def test_amend_to_size_at_or_below_filled_ends_the_order() -> None:
    book = make_book([(99, 5)], [(103, 40)])
    v = venue()
    t = rest(v, book, 1, BUY, 100, 10, 0)
    trade_at(v, trade(100, 4, SELL, t + 1), t + 1)  # filled 4
    v.amend(1, 100, 4, t + 2)
    assert statuses(book_at(v, book, t + 2 + LAT)) == [(1, CANCELED, 4)]


def test_amend_that_would_cross_ends_the_order() -> None:
    book = make_book([(99, 5)], [(103, 40)])
    v = venue()
    t = rest(v, book, 1, BUY, 100, 10, 0)
    v.amend(1, 103, 10, t)
    events = book_at(v, book, t + LAT)
    assert [(u.status, u.reason) for u in events if isinstance(u, OrderUpdate)] == [
        (CANCELED, AMEND_CROSS)
    ]
    assert v.open_orders() == []


def test_amend_invalid_or_unknown() -> None:
    book = make_book([(99, 5)], [(103, 40)])
    v = venue()
    t = rest(v, book, 1, BUY, 100, 10, 0)
    [rej] = v.amend(1, 0, 10, t)
    assert rej.status is REJECTED and "price" in rej.reason
    assert state(v, 1).status is NEW  # the order is untouched by a rejected request
    assert v.amend(7, 100, 10, t) == []
    assert [(u.order_id, u.reason) for u in updates(book_at(v, book, t + LAT))] == [
        (7, UNKNOWN_ORDER)
    ]


# ---- fees ----------------------------------------------------------------------------------


def test_fees_exact() -> None:
    # 1,000 lots at 6,183,763 ticks: notional 6,183,763,000 units (ticks x lots)
    notional = 6_183_763 * 1_000
    assert notional == 6_183_763_000
    # 1 bps: 6,183,763,000 / 10,000 = 618,376.3 -> 618,376
    assert fee_units(notional, parse_bps("m", "1")) == 618_376
    # -0.5 bps (rebate): -309,188.15 -> half up: floor(-309,187.65) = -309,188
    assert fee_units(notional, parse_bps("m", -0.5)) == -309_188
    # 7.5 bps: 6,183,763,000 x 7.5 / 10,000 = 4,637,822.25 -> 4,637,822
    assert fee_units(notional, parse_bps("m", "7.5")) == 4_637_822
    # exact halves round up (toward +inf): 0.5 -> 1, 1.5 -> 2, -0.5 -> 0, -1.5 -> -1
    one = parse_bps("m", 1)
    assert [fee_units(n, one) for n in (5_000, 15_000)] == [1, 2]
    assert [fee_units(n, parse_bps("m", -1)) for n in (5_000, 15_000)] == [0, -1]
    # a float rate is its decimal text, not the binary double
    assert parse_bps("m", 0.1) == Fraction(1, 10)
    assert parse_bps("m", "-0.5") == Fraction(-1, 2)


@pytest.mark.parametrize(
    ("maker", "expected"),
    [("1", 618_376), (-0.5, -309_188), ("7.5", 4_637_822), (0, 0)],
)
def test_fill_carries_exact_maker_fee(maker: str | float, expected: int) -> None:
    v = PaperVenue(BINANCE_SPOT_BTCUSDT, LAT, maker, "7.5", exchange_filters=False)
    book = make_book([(6_183_762, 10**8)], [(6_183_764, 10**8)])
    t = rest(v, book, 1, BUY, 6_183_763, 1_000, 0)  # alone at its price
    [fill] = fills(trade_at(v, trade(6_183_763, 5_000, SELL, t + 1), t + 1))
    assert (fill.size, fill.fee, fill.maker) == (1_000, expected, True)
    assert v.fee(6_183_763, 1_000, maker=False) == 4_637_822  # taker rate 7.5 bps


# ---- properties on random streams ----------------------------------------------------------

_prices = st.integers(min_value=96, max_value=103)
_book_op = st.tuples(st.just("book"), st.integers(97, 102), st.integers(0, 20), st.integers(0, 20))
_trade_op = st.tuples(st.just("trade"), _prices, st.integers(1, 30), st.sampled_from([BUY, SELL]))
_place_op = st.tuples(st.just("place"), st.sampled_from([BUY, SELL]), _prices, st.integers(1, 20))
_ops = st.lists(
    st.one_of(
        _book_op,
        _trade_op,
        _trade_op,  # listed twice: trades and places are the interesting events
        _place_op,
        _place_op,
        st.tuples(st.just("cancel"), st.integers(0, 9), st.just(0), st.just(0)),
        st.tuples(st.just("amend"), st.integers(0, 9), _prices, st.integers(0, 20)),
        st.tuples(st.just("wait"), st.integers(1, 3 * LAT), st.just(0), st.just(0)),
    ),
    min_size=20,
    max_size=80,
)


class _Run(NamedTuple):
    events: list[ExecutionEvent]
    trade_fills: list[tuple[Trade, list[Fill]]]


def _run_ops(
    ops: list[tuple[object, ...]], queue: QueueModel = CONSERVATIVE, fill_through: str = "whole"
) -> _Run:
    """Drive a venue with random events; checks the queue cap after every book event.

    A book op (bid, bid size, ask size) replaces the book with bid/bid-1 and bid+1/bid+2.
    Cancels and amends pick one of the open orders; waits advance the time further.
    """
    v = PaperVenue(INSTR, LAT, "-0.5", "7.5", queue=queue, fill_through=fill_through)
    run = _Run([], [])
    book_at(v, make_book([(99, 10)], [(100, 10)]), 0)
    t = 0
    for op in ops:
        t += LAT // 2  # each step moves time on: two steps per latency
        kind, a, b, c = op
        if kind == "book":
            assert isinstance(a, int) and isinstance(b, int) and isinstance(c, int)
            book = make_book([(a, b), (a - 1, 5)], [(a + 1, c), (a + 2, 5)])
            run.events.extend(book_at(v, book, t))
            for u in v.open_orders():
                ahead = v.queue_ahead(u.order_id)
                side = book.bids if u.side is BUY else book.asks
                assert ahead is None or ahead <= side.levels.get(u.price, 0)
        elif kind == "trade":
            assert isinstance(a, int) and isinstance(b, int) and isinstance(c, Side)
            tr = trade(a, b, c, t)
            out = trade_at(v, tr, t)
            run.trade_fills.append((tr, fills(out)))
            run.events.extend(out)
        elif kind == "place":
            assert isinstance(a, Side) and isinstance(b, int) and isinstance(c, int)
            run.events.extend(v.place(t, a, b, c, t))  # t is unique: a fresh order id
        elif kind in ("cancel", "amend"):
            assert isinstance(a, int) and isinstance(b, int) and isinstance(c, int)
            open_ids = [u.order_id for u in v.open_orders()]
            if open_ids:
                oid = open_ids[a % len(open_ids)]
                sent = v.cancel(oid, t) if kind == "cancel" else v.amend(oid, b, c, t)
                run.events.extend(sent)
        else:
            assert isinstance(a, int)
            t += a
            run.events.extend(v.advance(t))
    return run


@settings(max_examples=300, deadline=None)
@given(_ops)
def test_invariants_on_random_streams(ops: list[tuple[object, ...]]) -> None:
    run = _run_ops(ops)
    assert run == _run_ops(ops)  # deterministic
    check_stream(run)


def check_stream(run: _Run) -> None:
    """The invariants of a random stream's run (see the test above)."""
    sent: dict[int, int] = {}  # order id -> time it was sent
    arrived: set[int] = set()
    closed: set[int] = set()
    price: dict[int, int] = {}
    size: dict[int, int] = {}
    filled: dict[int, int] = defaultdict(int)
    for e in run.events:
        oid = e.order_id
        if isinstance(e, Fill):
            assert oid in arrived and oid not in closed, "fill before arrival or after close"
            assert e.ts_ns >= sent[oid] + LAT
            assert e.price == price[oid] and e.size > 0 and e.maker
            filled[oid] += e.size
            assert filled[oid] <= size[oid]
            continue
        if e.status is OrderStatus.PENDING_NEW:
            sent[oid] = e.ts_ns
        elif e.status is NEW and oid not in arrived:
            assert e.ts_ns >= sent[oid] + LAT
            arrived.add(oid)
        elif e.status is REJECTED:
            # only on arrival here (the driver never cancels or amends a closed order)
            assert e.reason in (POST_ONLY_CROSS, NO_BOOK) and oid not in arrived
        assert oid not in closed  # nothing is reported for an order after its end
        price[oid], size[oid] = e.price, e.size
        assert e.filled == filled[oid] <= e.size
        if not e.status.is_open:
            closed.add(oid)
    # one trade's volume is used at most once, on the side it hit, at or through our price
    for tr, trade_fills in run.trade_fills:
        assert sum(f.size for f in trade_fills) <= tr.size
        for f in trade_fills:
            assert f.side == -tr.aggressor
            assert tr.price <= f.price if f.side is BUY else tr.price >= f.price


# ---- the real recording --------------------------------------------------------------------

REAL_LATENCY = 5_000_000  # 5 ms
QUOTE_EVERY = 2_000_000_000  # re-quote every 2 s of event time
QUOTE_LOTS = 1_000  # one order step of BTCUSDT (0.00001 BTC)


class Replay(NamedTuple):
    """What one replay of the real recording did."""

    sent: list[tuple[int, int, Side, int]]  # (order id, send time, side, price)
    events: list[ExecutionEvent]  # every venue output, in order
    trades: list[Trade]  # the public trades, independently of the venue
    trade_fills: list[tuple[Trade, list[Fill]]]  # fills each on_trade call produced
    book_fills: list[tuple[Fill, int | None]]  # on_book fills, with the opposite best then


def real_venue(queue: QueueModel = CONSERVATIVE, fill_through: str = "whole") -> PaperVenue:
    """The venue of the real-recording replay, with a queue model and fill-through rule."""
    # 1,000 lots is under Binance's 5 USDT minimum notional: filters off to study the queue
    return PaperVenue(BINANCE_SPOT_BTCUSDT, REAL_LATENCY, "1", "7.5", exchange_filters=False,
                      queue=queue, fill_through=fill_through)


def _replay(v: PaperVenue | None = None) -> Replay:
    """Quote best bid and best ask every ~2 s of event time, cancelling the previous pair.

    The orders depend on the market only, never on fills: any venue gets the same orders."""
    market = MarketState(BinanceCodec(BINANCE_SPOT_BTCUSDT, "spot"))
    v = real_venue() if v is None else v
    run = Replay([], [], [], [], [])
    live: list[int] = []
    next_quote = 0
    for item in read_recording([RECORDING]):
        if isinstance(item, Malformed):
            continue
        recv_ns, frame = item
        for ev in market.on_frame(recv_ns, frame):
            if isinstance(ev, BookUpdate):
                out = book_at(v, market.book, recv_ns)
                for f in fills(out):
                    opposite = market.book.best_ask() if f.side is BUY else market.book.best_bid()
                    run.book_fills.append((f, opposite))
                run.events.extend(out)
            elif isinstance(ev, Trade):
                run.trades.append(ev)
                out = trade_at(v, ev, recv_ns)
                run.trade_fills.append((ev, fills(out)))
                run.events.extend(out)
        book = market.book
        bid, ask = book.best_bid(), book.best_ask()
        if book.synced and bid is not None and ask is not None and recv_ns >= next_quote:
            for oid in live:
                run.events.extend(v.cancel(oid, recv_ns))
            live = []
            for side, px in ((BUY, bid), (SELL, ask)):
                oid = len(run.sent) + 1
                run.events.extend(v.place(oid, side, px, QUOTE_LOTS, recv_ns))
                run.sent.append((oid, recv_ns, side, px))
                live.append(oid)
            next_quote = recv_ns + QUOTE_EVERY
    return run


@pytest.fixture(scope="module")
def replay() -> Replay:
    return _replay()


def test_real_recording_fills_are_plausible(replay: Replay) -> None:
    check_plausible(replay)


def check_plausible(replay: Replay) -> None:
    """The invariants of a replay of the real recording (see the test above)."""
    step = BINANCE_SPOT_BTCUSDT.size_step_lots  # the venue trades whole steps only
    assert all(e.size % step == 0 for e in replay.events if isinstance(e, Fill))
    orders = {oid: (t, side, px) for oid, t, side, px in replay.sent}
    assert len(orders) > 300  # ~346 s of data, a pair every 2 s
    arrival: dict[int, int] = {}
    end: dict[int, int] = {}  # time the order closed (canceled, filled, rejected)
    filled: dict[int, int] = defaultdict(int)
    all_fills: list[Fill] = []
    for e in replay.events:
        if isinstance(e, Fill):
            all_fills.append(e)
            t_sent, side, px = orders[e.order_id]
            # never worse than the order's price (and in this model: exactly at it)
            assert e.price <= px if side is BUY else e.price >= px
            assert e.side is side and e.maker
            # at or after arrival, never after the order closed
            assert e.order_id in arrival and e.ts_ns >= arrival[e.order_id]
            assert e.ts_ns >= t_sent + REAL_LATENCY
            assert e.order_id not in end
            filled[e.order_id] += e.size
            assert filled[e.order_id] <= QUOTE_LOTS
        elif e.status is NEW:
            arrival[e.order_id] = e.ts_ns
            assert e.ts_ns >= orders[e.order_id][0] + REAL_LATENCY
        elif e.status is REJECTED and e.reason == ORDER_CLOSED:
            continue  # a cancel of an order that had filled already: a request reject
        elif not e.status.is_open:
            assert e.filled == filled[e.order_id] <= e.size == QUOTE_LOTS
            end[e.order_id] = e.ts_ns
    assert len(all_fills) >= 20  # the price moves through the touch often in 6 minutes

    # Fills driven by a trade: one public trade's volume is never used twice, and only a
    # trade hitting our side at or through our price fills us.
    for tr, trade_fills in replay.trade_fills:
        assert sum(f.size for f in trade_fills) <= tr.size
        for f in trade_fills:
            assert f.side == -tr.aggressor  # a SELL aggressor hits our BUYs and vice versa
            assert tr.price <= f.price if f.side is BUY else tr.price >= f.price
    # Fills driven by the book: the opposite best was at or through our price right then.
    for f, opposite in replay.book_fills:
        assert opposite is not None
        assert opposite <= f.price if f.side is BUY else opposite >= f.price
    assert len(replay.book_fills) < len(all_fills) // 4  # most fills come from trades

    # Total filled per price never exceeds the public volume traded at or through that
    # price (a sell at or below our bid, a buy at or above our ask) after our first arrival
    # there. "Through" must count: an order the price went through fills from trades at
    # worse prices, and the depth stream can show the price through us a few ms before the
    # trade stream delivers those trades (seen in this recording at 23:54:58.05).
    first_arrival: dict[tuple[Side, int], int] = {}
    for oid, (_, side, px) in orders.items():
        if oid in arrival:
            key = (side, px)
            first_arrival[key] = min(first_arrival.get(key, arrival[oid]), arrival[oid])
    filled_at: dict[tuple[Side, int], int] = defaultdict(int)
    for f in all_fills:
        filled_at[f.side, f.price] += f.size
    for (side, px), lots in filled_at.items():
        public = sum(
            tr.size
            for tr in replay.trades
            if tr.aggressor == -side
            and (tr.price <= px if side is BUY else tr.price >= px)
            and tr.recv_ns >= first_arrival[side, px]
        )
        assert lots <= public, (side, px, lots, public)


def test_real_recording_is_deterministic(replay: Replay) -> None:
    again = _replay()
    assert fills(again.events) == fills(replay.events)
    assert again.events == replay.events


# ---- reduce-only (Binance USD-M's -2022) ----------------------------------------------------


def test_a_reduce_only_order_that_would_increase_the_position_is_rejected() -> None:
    book = make_book([(100, 50)], [(102, 40)])
    v = venue()
    book_at(v, book, 0)
    v.place(1, BUY, 100, 10, 0, reduce_only=True)  # flat: any order would increase it
    assert updates(book_at(v, book, LAT)) == [
        OrderUpdate(1, REJECTED, BUY, 100, 10, 0, REDUCE_ONLY, LAT)]
    t = rest(v, book, 2, BUY, 100, 10, LAT)
    trade_at(v, trade(99, 10, SELL, t + 1), t + 1)  # through our bid: long 10
    assert v.position == 10
    v.place(3, BUY, 100, 5, t + 2, reduce_only=True)  # long: a buy increases it
    v.place(4, SELL, 102, 5, t + 2, reduce_only=True)  # a sell reduces it: it rests
    assert statuses(book_at(v, book, t + 2 + LAT)) == [(3, REJECTED, 0), (4, NEW, 0)]
    v.place(5, BUY, 100, 5, t + 3)  # without the flag the same buy is taken
    assert statuses(book_at(v, book, t + 3 + LAT)) == [(5, NEW, 0)]
