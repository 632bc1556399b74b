"""The Binance gateway against the sim venue, over real loopback websockets.

A real :class:`~mmdaemon.sim.server.SimVenue` replays the first ~53 s of the bundled BTCUSDT
recording at speed 10 and serves ``/ws-api/v3`` through an
:class:`~mmdaemon.sim.orders.OrderEntry` (PaperVenue latency 0: the loopback is the real
latency). The gateway under test is the one the daemon would run live; the only things the
tests add are faults the sim offers (dropped connections, refused connections, a return path
that loses everything) and, where a test needs a fill at a known moment, a public trade fed
to the sim's matching next to the tape's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from mmdaemon.book import OrderBook
from mmdaemon.clock import SystemClock
from mmdaemon.exchange.base import VenueRefused, VenueStatus
from mmdaemon.exchange.binance_gateway import BinanceGateway, GatewaySettings
from mmdaemon.exchange.fill_model import PaperVenue
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
from mmdaemon.sim.orders import OrderEntry
from mmdaemon.sim.server import SimVenue
from mmdaemon.venues import binance_api as api
from mmdaemon.venues import binance_parse as parse
from tests.helpers import first_lines, until
from tests.process.test_record_sim_cli import free_port

INSTR = BINANCE_SPOT_BTCUSDT
KEY, SECRET = "gwTestKey1", "gw-secret-Zq81-never-in-a-log"
LOTS = 100_000  # 0.001 BTC: about 57 USDT, above the 5 USDT minimum notional
FAR = 50_000  # ticks: 500 USDT away from the touch, where the tape does not reach
RUN = 7 << 32  # our order ids: run 7
QUOTE = 2_000_000  # 0.02 BTC at the touch: trades in several fills on the tape


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture(scope="module")
def short_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first ~53 s of the real recording (snapshot at line 8): ~5 s at speed 10."""
    return first_lines(tmp_path_factory.mktemp("gateway") / "short.gz", 6000)


class CaptureLog:
    """A structlog-style logger that keeps every call."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    def _add(self, level: str, event: str, values: dict[str, Any]) -> None:
        self.records.append((level, event, values))

    def debug(self, event: str, **values: Any) -> None:
        self._add("debug", event, values)

    def info(self, event: str, **values: Any) -> None:
        self._add("info", event, values)

    def warning(self, event: str, **values: Any) -> None:
        self._add("warning", event, values)

    def error(self, event: str, **values: Any) -> None:
        self._add("error", event, values)

    def text(self) -> str:
        return "\n".join(f"{level} {event} {values!r}" for level, event, values in self.records)

    def events(self) -> list[str]:
        return [event for _, event, _ in self.records]


class Recorder:
    """The daemon's side: every execution event and status, in order."""

    def __init__(self) -> None:
        self.events: list[ExecutionEvent] = []
        self.statuses: list[VenueStatus] = []

    def on_event(self, event: ExecutionEvent) -> None:
        self.events.append(event)

    def on_status(self, status: VenueStatus) -> None:
        self.statuses.append(status)

    def updates(self, order_id: int | None = None) -> list[OrderUpdate]:
        return [e for e in self.events if isinstance(e, OrderUpdate)
                and (order_id is None or e.order_id == order_id)]

    def fills(self, order_id: int | None = None) -> list[Fill]:
        return [e for e in self.events if isinstance(e, Fill)
                and (order_id is None or e.order_id == order_id)]

    def last(self, order_id: int) -> OrderUpdate:
        return self.updates(order_id)[-1]




class ManualMs:
    """A wall clock in ms that the test moves (sim and gateway sign against the same)."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


@asynccontextmanager
async def venue(recording: Path, *, now_ms: Callable[[], int] = wall_ms,
                weight_limit: int = 6000, port: int = 0) -> AsyncIterator[SimVenue]:
    """The sim with order entry (on ``port``, 0: any free one), once its book is usable."""
    entry = OrderEntry(INSTR, PaperVenue(INSTR, 0, "1", "5"), {KEY: SECRET}, now_ms,
                       base_balance="10", quote_balance="1000000", weight_limit=weight_limit)
    async with SimVenue([recording], INSTR, speed=10.0, clock=SystemClock(),
                        order_entry=entry, port=port) as sim:
        book = sim.tape.market.book
        await until(lambda: book.synced and book.best_bid() is not None)
        yield sim


def entry_of(sim: SimVenue) -> OrderEntry:
    entry = sim.order_entry
    assert isinstance(entry, OrderEntry)
    return entry


def settings_for(sim: SimVenue, prefix: str = "mm", **kw: Any) -> GatewaySettings:
    values: dict[str, Any] = {"request_timeout_s": 1.0, "backoff_initial_s": 0.05,
                              "backoff_max_s": 0.2, "cancel_all_timeout_s": 3.0}
    values.update(kw)
    return GatewaySettings(f"{sim.ws_url}{api.WS_API_PATH}", prefix, **values)


def gateway_for(sim: SimVenue, log: CaptureLog, *, secret: str = SECRET, prefix: str = "mm",
                now_ms: Callable[[], int] = wall_ms,
                **kw: Any) -> tuple[BinanceGateway, Recorder]:
    gw = BinanceGateway(settings_for(sim, prefix, **kw), INSTR, api.Credentials(KEY, secret),
                        log, now_ms=now_ms)
    rec = Recorder()
    gw.set_listener(rec.on_event)
    gw.set_status_listener(rec.on_status)
    return gw, rec


@asynccontextmanager
async def running(sim: SimVenue, log: CaptureLog, **kw: Any,
                  ) -> AsyncIterator[tuple[BinanceGateway, Recorder]]:
    gw, rec = gateway_for(sim, log, **kw)
    await gw.start()
    try:
        yield gw, rec
    finally:
        await gw.close()
    assert SECRET not in log.text()


def best(sim: SimVenue) -> tuple[int, int]:
    book = sim.tape.market.book
    bid, ask = book.best_bid(), book.best_ask()
    assert bid is not None and ask is not None
    return bid, ask


def hit(sim: SimVenue, side: Side, price: int, size: int) -> None:
    """A public trade through ``price`` (one tick beyond it) for ``size`` lots: our resting
    order on ``side`` at ``price`` fills up to ``size`` (trade-through, no queue)."""
    through = price - 1 if side is Side.BUY else price + 1
    aggressor = Side.SELL if side is Side.BUY else Side.BUY
    entry_of(sim).on_trade(Trade(through, size, aggressor, 0, 0, 0), 0)


async def raw_place(sim: SimVenue, client_id: str, side: Side, price: int) -> None:
    """Another client of the same account places an order (not through the gateway)."""
    async with connect(f"{sim.ws_url}{api.WS_API_PATH}", compression=None) as ws:
        await ws.send(api.order_place(INSTR, side, price, LOTS, client_id, request_id="x",
                                      creds=api.Credentials(KEY, SECRET),
                                      timestamp_ms=wall_ms()).decode())
        response = parse.parse_response(await asyncio.wait_for(ws.recv(), 5))
        assert isinstance(response, api.Response) and response.ok, response


# ---- placing, fills and amends on the real tape ----------------------------------------------


def assert_leg_totals(gw: BinanceGateway) -> None:
    """The running total the gateway keeps per order (read on every amend) is the sum over
    the order's venue orders, whatever reports, trades and replaces came in."""
    orders = gw._orders.values()
    assert orders and any(len(order.legs) > 1 for order in orders)  # replaces happened
    for order in orders:
        assert order.filled() == sum(leg.filled for leg in order.legs.values())


async def test_quotes_at_the_touch_fill_on_the_real_tape(short_recording: Path) -> None:
    """Bid at the best bid and ask at the best ask, following the touch by amends (as the
    daemon would): NEW, then fills as Fill + PARTIALLY_FILLED/FILLED, and the fills add up
    to the sim account's position, across replaces."""
    log = CaptureLog()
    async with venue(short_recording) as sim, running(sim, log) as (gw, rec):
        entry = entry_of(sim)
        assert rec.statuses[-1] == VenueStatus(True, "ready")
        next_id = RUN + 1
        live: dict[Side, int] = {}
        wanted: dict[int, tuple[int, int]] = {}  # order id -> (price, total size) asked

        async def quote(side: Side) -> None:
            nonlocal next_id
            bid, ask = best(sim)
            price = bid if side is Side.BUY else ask
            order_id = live.get(side)
            if order_id is None:
                order_id, next_id = next_id, next_id + 1
                live[side] = order_id
                wanted[order_id] = (price, QUOTE)
                await gw.place(order_id, side, price, QUOTE)
                await gw.settled()
                return
            last = rec.last(order_id)
            if not last.status.is_open:
                if last.filled:
                    return  # this side traded: done with it
                del live[side]  # closed without a fill (a replace that would cross)
                return
            if price != last.price and last.filled < last.size:  # follow the touch
                wanted[order_id] = (price, last.size)
                await gw.amend(order_id, price, last.size)
                await gw.settled()

        first = True
        while not sim.tape.finished.is_set():
            for side in (Side.BUY, Side.SELL):
                await quote(side)
            if first:
                for order_id in live.values():
                    assert rec.updates(order_id)[0].status is OrderStatus.NEW
                first = False
            done = [rec.last(o) for o in live.values() if rec.updates(o)]
            if len(done) == 2 and all(u.status is OrderStatus.FILLED for u in done):
                break
            await asyncio.sleep(0.05)  # the client's quoting pace while the tape plays
        fills = rec.fills()
        assert fills, "no fill on the recording"
        assert any(u.status is OrderStatus.PARTIALLY_FILLED for u in rec.updates())
        assert any(len({u.price for u in rec.updates(o)}) > 1 for o in wanted)  # amended
        assert len({f.exec_id for f in fills}) == len(fills)
        assert {f.exec_id for f in fills} == {t.trade_id for t in entry.trades(KEY)}
        position = sum(f.size * f.side for f in fills)
        assert position == entry.account(KEY).position_lots == entry.position_lots
        for order_id in wanted:
            updates = rec.updates(order_id)
            assert updates[0].status is OrderStatus.NEW
            mine = sum(f.size for f in rec.fills(order_id))
            assert max(u.filled for u in updates) == mine
            for update in updates:
                if update.status.is_open and update.reason == "":
                    assert update.size >= QUOTE  # always our total size, never the remainder
            last = updates[-1]
            if last.status is OrderStatus.FILLED:
                assert last.filled == last.size == mine
        # whatever is still open at the sim is what the gateway believes open
        assert gw.open_order_count() == len(entry.open_orders())
        assert_leg_totals(gw)


async def test_amend_keeps_our_order_id_and_reports_the_total_size(
        short_recording: Path) -> None:
    log = CaptureLog()
    async with venue(short_recording) as sim, running(sim, log) as (gw, rec):
        entry = entry_of(sim)
        bid, _ = best(sim)
        price = bid - FAR
        oid = RUN + 1
        await gw.place(oid, Side.BUY, price, LOTS)
        await gw.settled()
        assert rec.last(oid)[:6] == (oid, OrderStatus.NEW, Side.BUY, price, LOTS, 0)
        hit(sim, Side.BUY, price, 40_000)  # 40% of it trades
        await until(lambda: rec.last(oid).filled == 40_000)
        assert rec.last(oid).status is OrderStatus.PARTIALLY_FILLED
        [fill] = rec.fills(oid)
        assert (fill.size, fill.price, fill.side, fill.maker) == (40_000, price, Side.BUY, True)
        # new price and a total of 150,000: the venue's new order is for 110,000
        await gw.amend(oid, price + 100, 150_000)
        await gw.settled()
        update = rec.last(oid)
        assert update[:6] == (oid, OrderStatus.PARTIALLY_FILLED, Side.BUY, price + 100,
                              150_000, 40_000)
        [order] = entry.open_orders()
        assert order.client_order_id == api.client_order_id("mm", oid)
        assert (order.price, order.size, order.executed) == (price + 100, 110_000, 0)
        assert not [u for u in rec.updates(oid) if u.status is OrderStatus.CANCELED]
        # the rest trades on the replacement: FILLED at our total
        hit(sim, Side.BUY, price + 100, 500_000)
        await until(lambda: rec.last(oid).status is OrderStatus.FILLED)
        assert rec.last(oid)[4:6] == (150_000, 150_000)
        assert sum(f.size for f in rec.fills(oid)) == 150_000 == entry.position_lots
        assert gw.open_order_count() == 0 and entry.open_orders() == []
        # an amend whose new order would cross: the request fails (-2010) and the order,
        # cancelled by the first half of the replace, ends
        oid2 = RUN + 2
        await gw.place(oid2, Side.BUY, price, LOTS)
        await gw.settled()
        _, ask = best(sim)
        await gw.amend(oid2, ask + 1_000, LOTS)
        await gw.settled()
        rejected, cancelled = rec.updates(oid2)[-2:]
        assert rejected.status is OrderStatus.REJECTED
        assert rejected.reason == "-2010 Order would immediately match and take."
        assert cancelled.status is OrderStatus.CANCELED
        assert entry.open_orders() == [] and gw.open_order_count() == 0
        assert_leg_totals(gw)


async def test_place_and_amend_frames_go_out_before_the_loop_runs_anything_else(
        short_recording: Path) -> None:
    """A place or an amend writes its frame in the caller's step: a callback queued on the
    event loop just before (as the feed's socket reader would be) finds it already sent.
    Only the wait for the answer is left to a task."""
    log = CaptureLog()
    async with venue(short_recording) as sim, running(sim, log) as (gw, rec):
        loop = asyncio.get_running_loop()
        bid, _ = best(sim)
        oid = RUN + 1
        in_flight: list[int] = []
        loop.call_soon(lambda: in_flight.append(len(gw._pending)))
        await gw.place(oid, Side.BUY, bid - FAR, LOTS)
        await asyncio.sleep(0)  # one loop step: the queued callback runs, nothing else
        assert in_flight == [1]  # the place was on the wire when the queued callback ran
        await gw.settled()
        assert rec.last(oid).status is OrderStatus.NEW
        loop.call_soon(lambda: in_flight.append(len(gw._pending)))
        await gw.amend(oid, bid - FAR - 100, LOTS)
        await asyncio.sleep(0)  # one loop step, as above
        assert in_flight == [1, 1]
        await gw.settled()
        assert rec.last(oid).price == bid - FAR - 100
        [order] = entry_of(sim).open_orders()
        assert order.price == bid - FAR - 100


async def test_a_backed_up_order_socket_never_holds_up_the_caller(
        short_recording: Path) -> None:
    """With bytes still queued on the order socket (the venue is not reading), a request
    runs as a task of its own: the caller (the daemon's feed loop) never waits on the
    socket. The request still goes out and is answered."""
    log = CaptureLog()
    async with venue(short_recording) as sim, running(sim, log) as (gw, rec):
        ws = gw._ws
        assert ws is not None
        transport = ws.transport
        _, high = transport.get_write_buffer_limits()
        transport.get_write_buffer_size = lambda: high  # type: ignore[method-assign]
        assert not gw._writes_now()
        loop = asyncio.get_running_loop()
        in_flight: list[int] = []
        loop.call_soon(lambda: in_flight.append(len(gw._pending)))
        bid, _ = best(sim)
        oid = RUN + 1
        await gw.place(oid, Side.BUY, bid - FAR, LOTS)
        assert in_flight == [0]  # the loop ran first: the request was left to its task
        del transport.get_write_buffer_size  # the real method again
        await gw.settled()
        assert rec.last(oid).status is OrderStatus.NEW and len(entry_of(sim).open_orders()) == 1


async def test_cancel_and_a_cancel_the_venue_does_not_know(short_recording: Path) -> None:
    log = CaptureLog()
    async with venue(short_recording) as sim, running(sim, log) as (gw, rec):
        entry = entry_of(sim)
        bid, _ = best(sim)
        oid = RUN + 1
        await gw.place(oid, Side.BUY, bid - FAR, LOTS)
        await gw.settled()
        assert gw.open_order_count() == 1
        await gw.cancel(oid)
        await gw.settled()
        assert rec.last(oid).status is OrderStatus.CANCELED
        assert gw.open_order_count() == 0 and entry.open_orders() == []
        # the venue cancels an order while its reports are lost on the way: our cancel
        # then meets -2011, the gateway asks and reports the order CANCELED
        oid2 = RUN + 2
        await gw.place(oid2, Side.BUY, bid - FAR, LOTS)
        await gw.settled()
        entry.blackhole = True
        assert entry.cancel_all_for(KEY) == 1
        await until(lambda: all(c.queue.empty() for c in entry._conns))  # reports lost
        entry.blackhole = False
        assert rec.last(oid2).status is OrderStatus.NEW  # the report never arrived
        await gw.cancel(oid2)
        await gw.settled()
        last = rec.last(oid2)
        assert last.status is OrderStatus.CANCELED and "-2011" in last.reason
        assert gw.open_order_count() == 0
        # a cancel of an order that is not open is answered at once
        await gw.cancel(RUN + 99)
        await gw.settled()
        assert rec.last(RUN + 99).status is OrderStatus.CANCELED


async def test_post_only_cross_is_rejected_with_the_venues_reason(
        short_recording: Path) -> None:
    log = CaptureLog()
    async with venue(short_recording) as sim, running(sim, log) as (gw, rec):
        _, ask = best(sim)
        oid = RUN + 1
        await gw.place(oid, Side.BUY, ask + 500, LOTS)
        await gw.settled()
        [update] = rec.updates(oid)
        assert update.status is OrderStatus.REJECTED and update.filled == 0
        assert update.reason == "-2010 Order would immediately match and take."
        assert gw.open_order_count() == 0 and entry_of(sim).open_orders() == []


async def test_an_order_the_venue_accepts_then_refuses_is_reported_closed() -> None:
    """With latency the sim acknowledges a post-only order at once and refuses it when it
    arrives if the book moved onto it: NEW, then CANCELED (not REJECTED, which the order
    manager would read as a failed request about an order that stays)."""
    clock_ns = 1_723_161_254_000_000_000
    bid, ask = 6_000_000, 6_000_100
    entry = OrderEntry(INSTR, PaperVenue(INSTR, 5_000_000, "1", "5"), {KEY: SECRET}, wall_ms,
                       base_balance="10", quote_balance="1000000")
    book = OrderBook()
    book.apply(BookUpdate(True, [(bid, 10**9)], [(ask, 10**9)], 1, 1, 0, clock_ns))
    entry.on_book(book, clock_ns)
    log = CaptureLog()
    async with serve(entry.serve, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        settings = GatewaySettings(f"ws://127.0.0.1:{port}{api.WS_API_PATH}", "mm")
        gw = BinanceGateway(settings, INSTR, api.Credentials(KEY, SECRET), log)
        rec = Recorder()
        gw.set_listener(rec.on_event)
        await gw.start()
        try:
            oid = RUN + 1
            await gw.place(oid, Side.BUY, bid + 50, LOTS)
            await gw.settled()
            assert rec.last(oid).status is OrderStatus.NEW
            moved = OrderBook()
            moved.apply(BookUpdate(True, [(bid, 10**9)], [(bid + 50, 10**9)], 2, 2, 0,
                                   clock_ns + 4_000_000))
            entry.advance(clock_ns + 4_000_000)
            entry.on_book(moved, clock_ns + 4_000_000)  # the ask comes down to our bid
            entry.advance(clock_ns + 5_000_000)  # then the order arrives: it would take
            await until(lambda: not rec.last(oid).status.is_open)
            last = rec.last(oid)
            assert last.status is OrderStatus.CANCELED
            assert last.reason == "rejected: WOULD_MATCH_IMMEDIATELY"
            assert gw.open_order_count() == 0 and entry.open_orders() == []
        finally:
            await gw.close()


# ---- credentials ---------------------------------------------------------------------------------


async def test_bad_secret_fails_start_and_never_shows_the_secret(
        short_recording: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-secret-Xy7-must-not-leak"
    log = CaptureLog()
    async with venue(short_recording) as sim:
        gw, rec = gateway_for(sim, log, secret=wrong)
        with pytest.raises(VenueRefused) as failed:
            await gw.start()
        message = str(failed.value)
        assert "-1022" in message and "Signature for this request is not valid." in message
        assert "exchange.credentials" in message  # what to fix
        assert rec.statuses[-1].ready is False
        assert rec.statuses[-1].reason.startswith("refused: ")
        assert log.events().count("gateway_start_refused") == 1  # not retried
        assert rec.events == []
        await gw.close()
        creds = api.Credentials(KEY, wrong)
        for text in (message, repr(failed.value), log.text(), caplog.text, repr(gw),
                     str(gw), repr(creds), str(creds), f"{creds}", repr(gw.settings),
                     repr(rec.statuses)):
            assert wrong not in text
        # a proxy password is redacted in the settings' repr too
        proxied = GatewaySettings("ws://127.0.0.1:1/ws-api/v3", "mm",
                                  proxy="http://user:pa55word@proxy:3128")
        assert "pa55word" not in repr(proxied) and "proxy:3128" in repr(proxied)


async def test_start_waits_out_a_venue_that_is_not_there_yet(short_recording: Path) -> None:
    """Nothing listens at first: start() keeps trying with the reconnect backoff, each
    failure reported as a status with the reason and the time to the next attempt; the
    venue comes up on that port and start() returns with order entry ready."""
    log = CaptureLog()
    port = free_port()
    settings = GatewaySettings(f"ws://127.0.0.1:{port}{api.WS_API_PATH}", "mm",
                               request_timeout_s=1.0, backoff_initial_s=0.05,
                               backoff_max_s=0.2)
    gw = BinanceGateway(settings, INSTR, api.Credentials(KEY, SECRET), log)
    rec = Recorder()
    gw.set_status_listener(rec.on_status)
    starting = asyncio.create_task(gw.start())
    try:
        await until(lambda: log.events().count("gateway_start_failed") >= 4)
        assert not starting.done()
        down = [s for s in rec.statuses if s.retry_in_s is not None]
        assert len(down) >= 4
        for status in down:
            assert not status.ready and status.retry_in_s is not None
            assert status.reason.startswith(
                f"unreachable: cannot connect to ws://127.0.0.1:{port}/ws-api/v3: ")
            assert 0 < status.retry_in_s <= 0.2
        async with venue(short_recording, port=port):
            await asyncio.wait_for(starting, 10)
            assert rec.statuses[-1] == VenueStatus(True, "ready")
            await gw.close()
    finally:
        starting.cancel()
        await gw.close()


async def test_start_refuses_an_unusable_proxy_at_once() -> None:
    """A malformed proxy cannot work however often it is tried: refused clearly, and its
    password is not in the message."""
    log = CaptureLog()
    bad_proxy = GatewaySettings("ws://127.0.0.1:9/ws-api/v3", "mm",
                                proxy="gopher://user:pa55word@proxy:1")
    gw = BinanceGateway(bad_proxy, INSTR, api.Credentials(KEY, SECRET), log)
    with pytest.raises(VenueRefused) as failed:
        await asyncio.wait_for(gw.start(), 10)
    assert "feed.proxy" in str(failed.value)
    assert "pa55word" not in str(failed.value) and "pa55word" not in log.text()
    assert "gateway_start_failed" not in log.events()
    await gw.close()


# ---- cancel-all and orphans ----------------------------------------------------------------------


async def test_cancel_all_leaves_nothing_open_at_the_venue(short_recording: Path) -> None:
    log = CaptureLog()
    async with venue(short_recording) as sim, running(sim, log) as (gw, rec):
        entry = entry_of(sim)
        bid, ask = best(sim)
        await gw.place(RUN + 1, Side.BUY, bid - FAR, LOTS)
        await gw.settled()
        await gw.place(RUN + 2, Side.SELL, ask + FAR, LOTS)
        await gw.settled()
        await raw_place(sim, "manual-1", Side.BUY, bid - FAR - 1)  # not ours, same account
        assert len(entry.open_orders()) == 3 and gw.open_order_count() == 2
        assert await gw.cancel_all() == 3
        assert entry.open_orders() == []
        assert gw.open_order_count() == 0
        assert rec.last(RUN + 1).status is OrderStatus.CANCELED
        assert rec.last(RUN + 2).status is OrderStatus.CANCELED
        assert await gw.cancel_all() == 0  # nothing left: the venue says so (-2011)
        assert entry.open_orders() == []


async def test_start_cancels_orders_a_previous_run_left(short_recording: Path) -> None:
    log = CaptureLog()
    async with venue(short_recording) as sim:
        entry = entry_of(sim)
        bid, ask = best(sim)
        previous, _ = gateway_for(sim, log)
        await previous.start()
        await previous.place(RUN + 1, Side.BUY, bid - FAR, LOTS)
        await previous.settled()
        await previous.place(RUN + 2, Side.SELL, ask + FAR, LOTS)
        await previous.settled()
        hit(sim, Side.BUY, bid - FAR, 30_000)  # the first one partly trades
        await previous.close()  # a crash: no cancel-all
        await raw_place(sim, "manual-1", Side.BUY, bid - FAR - 1)
        assert len(entry.open_orders()) == 3
        [trade] = entry.trades(KEY)
        gw, rec = gateway_for(sim, log)
        await gw.start()
        try:
            # ours are gone; the other client's order is not ours to touch
            assert [o.client_order_id for o in entry.open_orders()] == ["manual-1"]
            assert gw.open_order_count() == 0
            assert rec.updates() == []  # not the daemon's orders: no updates for them
            # the crashed run's fill is delivered (once) so the journal can check it has it
            [fill] = rec.fills()
            assert (fill.order_id, fill.exec_id, fill.size) == (RUN + 1, trade.trade_id,
                                                                30_000)
            assert rec.statuses[-1] == VenueStatus(True, "ready")
        finally:
            await gw.close()
    assert SECRET not in log.text()


async def test_start_recovers_fills_after_the_journals_last_trade(
        short_recording: Path) -> None:
    """A crashed run's order that filled completely is no longer open: only the trade
    history finds its fills, from the trade id the daemon's journal last recorded."""
    log = CaptureLog()
    async with venue(short_recording) as sim:
        entry = entry_of(sim)
        bid, ask = best(sim)
        previous, _ = gateway_for(sim, log)
        await previous.start()
        await previous.place(RUN + 1, Side.BUY, bid - FAR, LOTS)
        await previous.settled()
        await previous.place(RUN + 2, Side.SELL, ask + FAR, LOTS)
        await previous.settled()
        hit(sim, Side.BUY, bid - FAR, LOTS)  # journaled by the previous run (say)
        hit(sim, Side.SELL, ask + FAR, LOTS)  # lost in the crash
        await previous.close()
        await raw_place(sim, "manual-1", Side.BUY, bid - FAR - 1)  # another client's order
        first, second = entry.trades(KEY)
        gw, rec = gateway_for(sim, log)
        gw.resume_fills_after(first.trade_id)
        await gw.start()
        try:
            [fill] = rec.fills()
            assert (fill.order_id, fill.exec_id, fill.side, fill.size) == (
                RUN + 2, second.trade_id, Side.SELL, LOTS)
            assert rec.updates() == [] and gw.max_trade_id == second.trade_id
        finally:
            await gw.close()
        with pytest.raises(RuntimeError):
            gw.resume_fills_after(0)


# ---- lost connections, lost answers, rate limits ---------------------------------------------


async def test_requests_in_flight_fail_when_the_connection_drops(
        short_recording: Path) -> None:
    log = CaptureLog()
    async with venue(short_recording) as sim, running(sim, log) as (gw, rec):
        entry = entry_of(sim)
        bid, _ = best(sim)
        oid = RUN + 1
        entry.blackhole = True  # the place arrives, its answer does not
        placing = asyncio.create_task(gw.place(oid, Side.BUY, bid - FAR, LOTS))
        await until(lambda: len(entry.open_orders()) == 1)
        await entry.drop_connections(abrupt=True)
        await placing
        await gw.settled()
        assert rec.updates(oid) == [OrderUpdate(oid, OrderStatus.REJECTED, Side.BUY,
                                                bid - FAR, LOTS, 0, "disconnected",
                                                rec.last(oid).ts_ns)]
        assert VenueStatus(False, "disconnected") in rec.statuses
        entry.blackhole = False
        # back: the order that did land is not the daemon's any more, so it is cancelled
        await until(lambda: rec.statuses[-1].ready and entry.open_orders() == [])
        assert gw.open_order_count() == 0
        assert [u.status for u in rec.updates(oid)] == [OrderStatus.REJECTED]


async def test_dropped_connection_reconnects_and_recovers_fills_once(
        short_recording: Path) -> None:
    log = CaptureLog()
    async with venue(short_recording) as sim, running(sim, log) as (gw, rec):
        entry = entry_of(sim)
        bid, ask = best(sim)
        buy, sell = RUN + 1, RUN + 2
        await gw.place(buy, Side.BUY, bid - FAR, LOTS)
        await gw.settled()
        await gw.place(sell, Side.SELL, ask + FAR, LOTS)
        await gw.settled()
        entry.accepting = False
        assert await entry.drop_connections() == 1
        await until(lambda: VenueStatus(False, "disconnected") in rec.statuses)
        # orders placed meanwhile fail at once
        await gw.place(RUN + 3, Side.BUY, bid - FAR, LOTS)
        await gw.settled()
        assert rec.last(RUN + 3).status is OrderStatus.REJECTED
        # the market trades our orders while nobody listens
        hit(sim, Side.BUY, bid - FAR, LOTS)
        hit(sim, Side.SELL, ask + FAR, 30_000)
        trades = {t.order_id: t.trade_id for t in entry.trades(KEY)}
        assert len(trades) == 2
        # reconnect attempts are refused meanwhile
        await until(lambda: "gateway_reconnect_failed" in log.events())
        entry.accepting = True
        await until(lambda: rec.statuses[-1] == VenueStatus(True, "ready"))
        # each fill exactly once, and the orders' states follow
        fills = rec.fills()
        assert sorted((f.order_id, f.size) for f in fills) == [(buy, LOTS), (sell, 30_000)]
        assert sorted(f.exec_id for f in fills) == sorted(trades.values())
        assert rec.last(buy)[1:6] == (OrderStatus.FILLED, Side.BUY, bid - FAR, LOTS, LOTS)
        assert rec.last(sell)[1:6] == (OrderStatus.PARTIALLY_FILLED, Side.SELL, ask + FAR,
                                       LOTS, 30_000)
        assert gw.fills_recovered == 2
        # no orphan, no duplicate: the venue holds exactly what the gateway believes
        [still] = entry.open_orders()
        assert still.client_order_id == api.client_order_id("mm", sell)
        assert gw.open_order_count() == 1
        statuses = [s.reason for s in rec.statuses]
        assert statuses.index("disconnected") < len(statuses) - 1
        # and it trades on: the rest of the ask, then a cancel-all
        hit(sim, Side.SELL, ask + FAR, 10_000)
        await until(lambda: rec.last(sell).filled == 40_000)
        assert len(rec.fills()) == 3
        assert await gw.cancel_all() == 1
        assert entry.open_orders() == []
        assert sum(f.size * f.side for f in rec.fills()) == entry.position_lots


async def test_a_fill_while_disconnected_is_recovered_after_a_fill_on_the_new_stream(
        short_recording: Path) -> None:
    """One order trades while nobody listens; the other trades on the new connection before
    the reconcile asks ``myTrades``: the stream's fill (a higher trade id) must not move the
    recovery's start past the one missed during the gap."""
    log = CaptureLog()
    async with venue(short_recording) as sim, running(sim, log) as (gw, rec):
        entry = entry_of(sim)
        bid, ask = best(sim)
        buy, sell = RUN + 1, RUN + 2
        await gw.place(buy, Side.BUY, bid - FAR, 4 * LOTS)
        await gw.settled()
        await gw.place(sell, Side.SELL, ask + FAR, 4 * LOTS)
        await gw.settled()
        entry.accepting = False
        await entry.drop_connections()
        await until(lambda: VenueStatus(False, "disconnected") in rec.statuses)
        hit(sim, Side.BUY, bid - FAR, LOTS)  # trade 1: nobody listens
        # the reconnect's openOrders.status runs at once, its answer comes 0.5 s late
        entry.hold_responses(api.OPEN_ORDERS_STATUS, 0.5)
        entry.accepting = True
        await until(lambda: entry.faults.due == 0)  # the reconcile has asked
        hit(sim, Side.SELL, ask + FAR, LOTS)  # trade 2: reported on the new stream at once
        await until(lambda: rec.statuses[-1] == VenueStatus(True, "ready"), timeout=5)
        trades = entry.trades(KEY)
        assert len(trades) == 2
        assert sorted(f.exec_id for f in rec.fills()) == sorted(t.trade_id for t in trades)
        assert sorted((f.order_id, f.size) for f in rec.fills()) == [(buy, LOTS), (sell, LOTS)]
        assert gw.fills_recovered == 1
        assert sum(f.size * f.side for f in rec.fills()) == entry.position_lots == 0


async def test_a_place_without_answer_is_rejected_then_cancelled_at_the_venue(
        short_recording: Path) -> None:
    log = CaptureLog()
    async with venue(short_recording) as sim, running(sim, log, request_timeout_s=0.3) as (
            gw, rec):
        entry = entry_of(sim)
        bid, _ = best(sim)
        oid = RUN + 1
        entry.blackhole = True  # the order arrives; nothing comes back
        await gw.place(oid, Side.BUY, bid - FAR, LOTS)
        await gw.settled()
        assert rec.updates(oid) == [OrderUpdate(oid, OrderStatus.REJECTED, Side.BUY,
                                                bid - FAR, LOTS, 0, "timeout",
                                                rec.last(oid).ts_ns)]
        assert len(entry.open_orders()) == 1  # it did reach the venue
        assert gw.open_order_count() == 1  # and the gateway counts it as maybe open
        assert rec.statuses[-1].ready is False  # suspect: reconciling
        entry.blackhole = False
        await until(lambda: entry.open_orders() == [] and gw.open_order_count() == 0
                    and bool(rec.statuses) and rec.statuses[-1].ready, timeout=5)
        assert rec.updates(oid)[-1].status is OrderStatus.REJECTED  # nothing else for it
        # order entry works on
        await gw.place(RUN + 2, Side.BUY, bid - FAR, LOTS)
        await gw.settled()
        assert rec.last(RUN + 2).status is OrderStatus.NEW


async def test_a_place_without_answer_that_filled_is_still_accounted(
        short_recording: Path) -> None:
    """The daemon was told the place failed; the order rested and traded all the same: the
    trade (found by trade id, its order by ``order.status``) is still delivered, once."""
    log = CaptureLog()
    async with venue(short_recording) as sim, running(sim, log, request_timeout_s=0.3) as (
            gw, rec):
        entry = entry_of(sim)
        bid, _ = best(sim)
        oid = RUN + 1
        entry.blackhole = True
        await gw.place(oid, Side.BUY, bid - FAR, LOTS)
        await gw.settled()
        assert rec.last(oid).reason == "timeout"
        hit(sim, Side.BUY, bid - FAR, LOTS)
        [trade] = entry.trades(KEY)
        entry.blackhole = False
        await until(lambda: bool(rec.fills()) and rec.statuses[-1].ready)
        [fill] = rec.fills()
        assert (fill.order_id, fill.exec_id, fill.size, fill.side) == (
            oid, trade.trade_id, LOTS, Side.BUY)
        assert [u.status for u in rec.updates(oid)] == [OrderStatus.REJECTED]
        assert gw.open_order_count() == 0 and entry.open_orders() == []


async def test_an_amend_without_answer_is_settled_by_reconciliation(
        short_recording: Path) -> None:
    log = CaptureLog()
    async with venue(short_recording) as sim, running(sim, log, request_timeout_s=0.3) as (
            gw, rec):
        entry = entry_of(sim)
        bid, _ = best(sim)
        oid = RUN + 1
        await gw.place(oid, Side.BUY, bid - FAR, LOTS)
        await gw.settled()
        entry.blackhole = True  # the replace happens at the venue; we hear nothing
        await gw.amend(oid, bid - FAR + 100, 2 * LOTS)
        await gw.settled()
        assert rec.last(oid).status is OrderStatus.REJECTED
        assert rec.last(oid).reason == "timeout"
        entry.blackhole = False
        # reconciliation finds the replacement under our client id and adopts it
        await until(lambda: rec.last(oid).price == bid - FAR + 100 and rec.statuses[-1].ready)
        assert rec.last(oid)[1:6] == (OrderStatus.NEW, Side.BUY, bid - FAR + 100, 2 * LOTS, 0)
        [order] = entry.open_orders()
        assert (order.client_order_id, order.price, order.size) == (
            api.client_order_id("mm", oid), bid - FAR + 100, 2 * LOTS)
        assert gw.open_order_count() == 1
        await gw.cancel(oid)
        await gw.settled()
        assert rec.last(oid).status is OrderStatus.CANCELED and entry.open_orders() == []


async def test_orders_the_venue_ended_unheard_are_settled_on_request(
        short_recording: Path) -> None:
    """The venue cancels our orders and the reports are lost: an amend (-2022) and a
    cancel-all (-2011, then the one-by-one check) still end with the orders CANCELED."""
    log = CaptureLog()
    async with venue(short_recording) as sim, running(sim, log) as (gw, rec):
        entry = entry_of(sim)
        bid, ask = best(sim)
        first, second = RUN + 1, RUN + 2
        await gw.place(first, Side.BUY, bid - FAR, LOTS)
        await gw.settled()
        await gw.place(second, Side.SELL, ask + FAR, LOTS)
        await gw.settled()
        entry.blackhole = True
        assert entry.cancel_all_for(KEY) == 2
        await until(lambda: all(c.queue.empty() for c in entry._conns))  # reports lost
        entry.blackhole = False
        assert gw.open_order_count() == 2  # it cannot know yet
        await gw.amend(first, bid - FAR + 10, LOTS)
        await gw.settled()
        last = rec.last(first)
        assert last.status is OrderStatus.CANCELED and "-2022" in last.reason
        assert await gw.cancel_all() == 0
        assert rec.last(second).status is OrderStatus.CANCELED
        assert gw.open_order_count() == 0 and entry.open_orders() == []


async def test_rate_limit_rejects_and_holds_order_entry_until_the_retry_time(
        short_recording: Path) -> None:
    minute = wall_ms() // 60_000 + 2
    clock = ManualMs(minute * 60_000 + 1_000)  # early in a minute of its own
    log = CaptureLog()
    # start weighs 2 (subscribe) + 20 (account.status) + 6 (openOrders.status) + 20
    # (myTrades) = 48
    async with venue(short_recording, now_ms=clock, weight_limit=50) as sim, running(
            sim, log, now_ms=clock) as (gw, rec):
        bid, _ = best(sim)
        clock.ms = (minute + 1) * 60_000 - 300  # the limit lifts in 300 ms
        await gw.place(RUN + 1, Side.BUY, bid - FAR, LOTS)
        await gw.settled()
        await gw.place(RUN + 2, Side.BUY, bid - FAR - 1, LOTS)
        await gw.settled()
        assert [rec.last(RUN + n).status for n in (1, 2)] == [OrderStatus.NEW] * 2
        await gw.place(RUN + 3, Side.BUY, bid - FAR - 2, LOTS)  # weight 51 > 50
        await gw.settled()
        limited = rec.last(RUN + 3)
        assert limited.status is OrderStatus.REJECTED and limited.reason.startswith("-1003 ")
        assert rec.statuses[-1] == VenueStatus(False, "rate_limited")
        await gw.place(RUN + 4, Side.BUY, bid - FAR - 3, LOTS)  # held back, not sent
        await gw.settled()
        assert rec.last(RUN + 4).reason == "rate_limited"
        clock.ms += 1_000  # the venue's next minute
        await until(lambda: rec.statuses[-1] == VenueStatus(True, "ready"), timeout=3)
        await gw.place(RUN + 5, Side.BUY, bid - FAR - 4, LOTS)
        await gw.settled()
        assert rec.last(RUN + 5).status is OrderStatus.NEW
        assert gw.open_order_count() == len(entry_of(sim).open_orders()) == 3


async def test_a_lost_connection_is_not_retried_before_the_rate_limit_lifts(
        short_recording: Path) -> None:
    """Every attempt sends a signed subscription: one the venue refuses with a 429 while
    its limit holds would only extend the limit into a ban."""
    minute = wall_ms() // 60_000 + 2
    clock = ManualMs(minute * 60_000 + 1_000)
    log = CaptureLog()
    # start weighs 48 of the 50: the third place is refused until the minute ends
    async with venue(short_recording, now_ms=clock, weight_limit=50) as sim, running(
            sim, log, now_ms=clock) as (gw, rec):
        bid, _ = best(sim)
        clock.ms = (minute + 1) * 60_000 - 3_000  # the limit lifts in 3 s
        started = time.monotonic()  # the hold runs on the real clock from the 429 on
        for n in (1, 2, 3):
            await gw.place(RUN + n, Side.BUY, bid - FAR - n, LOTS)
            await gw.settled()
        assert rec.last(RUN + 3).reason.startswith("-1003 ")
        await entry_of(sim).drop_connections()
        await until(lambda: "gateway_reconnecting" in log.events())
        [first] = [v for _, e, v in log.records if e == "gateway_reconnecting"]
        # the rest of the hold (less what passed since the 429), not the 0.05..0.2 s backoff
        assert first["delay_s"] >= 3.0 - (time.monotonic() - started), first
        clock.ms += 3_000  # the venue's next minute
        await until(lambda: rec.statuses[-1] == VenueStatus(True, "ready"), timeout=6)
        assert "gateway_reconnect_failed" not in log.events()
        assert gw.connects == 2


def test_settings_validate() -> None:
    with pytest.raises(ValueError):
        GatewaySettings("ws://x", "a" * 30)  # prefix too long for a 64-bit id
    with pytest.raises(ValueError):
        GatewaySettings("ws://x", "mm", recv_window_ms=70_000)
    with pytest.raises(ValueError):
        GatewaySettings("ws://x", "mm", request_timeout_s=0)
    assert orjson.loads(orjson.dumps({"ok": True}))["ok"]
