"""Strict time order in the simulation: requests and reports at their own times, no look-ahead.

The paper venue must act on a request against the market as it stood when the request
arrived, never against a book that already holds the next event; and the daemon must learn
of what the venue did at the report's own time, not at the next market event.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mmdaemon.book import OrderBook
from mmdaemon.config import ConfigError
from mmdaemon.exchange.fill_model import LookAhead, PaperVenue
from mmdaemon.exchange.latency import LatencyModel
from mmdaemon.exchange.paper import PaperExchange
from mmdaemon.model import (
    BINANCE_SPOT_BTCUSDT,
    BookUpdate,
    ExecutionEvent,
    Fill,
    OrderStatus,
    OrderUpdate,
    Side,
    Trade,
)
from tests.helpers import write_config
from tests.process.test_daemon_replay import replay

MS = 1_000_000
LOTS = 10_000  # 0.0001 BTC: under the minimum notional, so the venue's filters are off here


def book(bid: int, ask: int) -> OrderBook:
    out = OrderBook()
    out.apply(BookUpdate(True, [(bid, 5 * LOTS)], [(ask, 5 * LOTS)], 1, 1, 0, 0))
    return out


class EventClock:
    """The daemon's event clock as the shell reads it: the time of the latest event."""

    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


def paper(
    entry_ms: int, feed_ms: int, response_ms: int
) -> tuple[PaperExchange, list[ExecutionEvent], EventClock]:
    latency = LatencyModel.constant(feed_ms * MS, entry_ms * MS, response_ms * MS)
    venue = PaperVenue(BINANCE_SPOT_BTCUSDT, entry_ms * MS, "0", "0", exchange_filters=False,
                       entry=PaperExchange.venue_entry(latency))
    clock = EventClock()
    shell = PaperExchange(venue, latency, clock)
    seen: list[ExecutionEvent] = []
    shell.set_listener(seen.append)
    return shell, seen, clock


def statuses(events: list[ExecutionEvent]) -> list[OrderStatus]:
    return [e.status for e in events if isinstance(e, OrderUpdate)]


async def test_an_order_that_arrived_before_a_seller_posted_at_its_price_rests_and_fills() -> None:
    """The issue's example: our bid at 101 reaches the venue at 5 ms; at 10 ms a seller posts
    at 101. The bid rested first, so the seller's order meets it: a fill at 101, not a
    post-only reject against a book that only existed 5 ms after the bid arrived."""
    shell, seen, _clock = paper(entry_ms=5, feed_ms=0, response_ms=0)
    market = book(100, 102)
    shell.advance(0)
    shell.on_book(market, 0)
    await shell.place(1, Side.BUY, 101, LOTS)
    assert statuses(seen) == [OrderStatus.PENDING_NEW]
    # the next market event, at 10 ms: the venue acts on what arrived before it first...
    shell.advance(10 * MS)
    assert statuses(seen)[-1] is OrderStatus.NEW
    assert seen[-1].ts_ns == 5 * MS  # ...at its own arrival time, not at the event's
    # ...and only then does the event change the book: a seller now offers at our bid
    market.apply(BookUpdate(False, [], [(101, 2 * LOTS)], 2, 2, 0, 10 * MS))
    shell.on_book(market, 10 * MS)
    [fill] = [e for e in seen if isinstance(e, Fill)]
    assert (fill.side, fill.price, fill.size, fill.ts_ns) == (Side.BUY, 101, LOTS, 10 * MS)
    assert fill.mid_x2 == 100 + 102  # the mid before the seller came, not after
    assert statuses(seen)[-1] is OrderStatus.FILLED


def test_applying_an_event_before_letting_due_requests_act_is_refused() -> None:
    """The venue cannot tell a look-ahead from a market move by itself: a caller that applies
    an event with a request still due before it gets an error, not a silent wrong answer."""
    venue = PaperVenue(BINANCE_SPOT_BTCUSDT, 5 * MS, "0", "0", exchange_filters=False)
    market = book(100, 102)
    venue.on_book(market, 0)
    venue.place(1, Side.BUY, 101, LOTS, 0)
    with pytest.raises(LookAhead):
        venue.on_book(market, 5 * MS)
    with pytest.raises(LookAhead):
        venue.on_trade(Trade(101, LOTS, Side.SELL, 1, 6 * MS, 6 * MS), 6 * MS)
    assert [e.status for e in venue.advance(5 * MS) if isinstance(e, OrderUpdate)] == [
        OrderStatus.NEW]
    assert venue.on_book(market, 5 * MS) == []


async def test_reports_reach_the_daemon_a_response_latency_after_the_venue_acted() -> None:
    """entry 3 ms, feed 2 ms, response 7 ms: the venue acts at 3 + 2 = 5 ms on the daemon's
    clock (its market is 2 ms ahead of ours) and the ack arrives 7 - 2 ms later, at 10 ms."""
    shell, seen, _clock = paper(entry_ms=3, feed_ms=2, response_ms=7)
    market = book(100, 102)
    shell.advance(0)
    shell.on_book(market, 0)
    await shell.place(1, Side.BUY, 100, LOTS)
    assert shell.next_due_ns() == 5 * MS
    shell.advance(5 * MS)
    assert statuses(seen) == [OrderStatus.PENDING_NEW]  # acted on, not reported yet
    assert shell.venue.queue_ahead(1) == 5 * LOTS  # resting behind the displayed size
    assert shell.next_due_ns() == 10 * MS
    shell.advance(10 * MS - 1)
    assert statuses(seen) == [OrderStatus.PENDING_NEW]
    shell.advance(10 * MS)
    assert statuses(seen) == [OrderStatus.PENDING_NEW, OrderStatus.NEW]
    assert seen[-1].ts_ns == 5 * MS  # stamped with the time the venue acted
    assert shell.next_due_ns() is None


async def test_a_fill_is_not_reported_before_the_replay_reaches_its_event() -> None:
    """response 1 ms < feed 4 ms: live, the fill report could beat the market data; here it
    cannot precede the event that caused it, so it arrives with that event."""
    shell, seen, _clock = paper(entry_ms=1, feed_ms=4, response_ms=1)
    market = book(100, 102)
    shell.advance(0)
    shell.on_book(market, 0)
    await shell.place(1, Side.BUY, 100, LOTS)
    shell.advance(5 * MS)  # arrives at 1 + 4 ms; its ack is due at max(5 + 1 - 4, 5) = 5 ms
    assert statuses(seen)[-1] is OrderStatus.NEW
    shell.advance(20 * MS)
    shell.on_trade(Trade(100, 6 * LOTS, Side.SELL, 7, 20 * MS, 20 * MS), 20 * MS)
    fills = [e for e in seen if isinstance(e, Fill)]
    assert [(f.size, f.ts_ns) for f in fills] == [(LOTS, 20 * MS)]
    assert shell.next_due_ns() is None


async def test_orders_still_fill_while_a_cancel_all_travels() -> None:
    """A kill's cancel-all takes entry + feed to reach the venue: a seller who trades
    through our bid before then fills it, as live. The cancel-all does not move the clock
    past the market (that hid exactly the fills a kill tends to meet)."""
    shell, seen, clock = paper(entry_ms=5, feed_ms=5, response_ms=5)
    market = book(100, 102)
    shell.advance(0)
    shell.on_book(market, 0)
    await shell.place(1, Side.BUY, 100, LOTS)
    await shell.place(2, Side.SELL, 102, LOTS)
    clock.ns = 100 * MS
    shell.advance(clock.ns)
    assert await shell.cancel_all() == 2  # sent at 100 ms: at the venue at 110 ms
    assert shell.open_order_count() == 2 and shell.next_due_ns() == 110 * MS
    clock.ns = 102 * MS  # the market goes on: a sell through our bid
    shell.advance(clock.ns)
    shell.on_trade(Trade(99, 3 * LOTS, Side.SELL, 9, clock.ns, clock.ns), clock.ns)
    [fill] = [e for e in seen if isinstance(e, Fill)]
    assert (fill.order_id, fill.size, fill.ts_ns) == (1, LOTS, 102 * MS)
    clock.ns = 120 * MS
    shell.advance(clock.ns)  # the cancel of the ask arrives; the bid's finds it filled
    assert shell.open_order_count() == 0 and shell.next_due_ns() is None
    canceled = [e for e in seen if isinstance(e, OrderUpdate)
                and e.status is OrderStatus.CANCELED]
    assert [(e.order_id, e.ts_ns) for e in canceled] == [(2, 110 * MS)]


async def test_requests_carry_the_daemons_event_time_not_the_last_book_event() -> None:
    """A request sent on a frame that moved no book (a ticker) leaves at that frame's time:
    the venue must not act on it before it was sent."""
    shell, _seen, clock = paper(entry_ms=5, feed_ms=5, response_ms=5)
    market = book(100, 102)
    shell.advance(0)
    shell.on_book(market, 0)
    clock.ns = 40 * MS  # a later event the shell itself never saw
    await shell.place(1, Side.BUY, 100, LOTS)
    assert shell.next_due_ns() == 50 * MS


def test_the_dry_run_sends_no_order_against_a_book_it_has_not_seen(tmp_path: Path) -> None:
    """The whole daemon on the bundled recording with entry, feed and response latency:
    it runs to the end without a look-ahead (the venue would raise) and the pinned
    invariants of the dry run hold: every order confirmed cancelled at the end."""
    s, logs, _ = replay(tmp_path, {"exchange": {"latency_ms": 3.0, "feed_latency_ms": 2.0,
                                                "response_latency_ms": 7.0}})
    assert s["fills"] > 0 and s["state"] == "ACTIVE"
    stopped = [e for e in logs if e["event"] == "stopped"][-1]
    assert stopped["open_orders"] == 0


@pytest.mark.parametrize(("key", "value"), [
    ("latency_ms", -1.0), ("feed_latency_ms", -0.5), ("response_latency_ms", 60_001.0),
    ("feed_latency_ms", float("nan")),
])
def test_a_latency_out_of_range_is_a_config_error_naming_the_key(
    tmp_path: Path, key: str, value: float
) -> None:
    from mmdaemon.config_file import load_config

    config = write_config(tmp_path, {"exchange": {key: value}})
    with pytest.raises(ConfigError, match=rf"exchange\.{key}: expected (0\.\.60000 ms|a finite)"):
        load_config(config)
