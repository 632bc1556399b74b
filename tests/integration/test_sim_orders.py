"""The sim venue's order entry over a real loopback websocket, with binance_api on the client.

A real ``websockets`` server on 127.0.0.1 (port 0) serves :meth:`OrderEntry.serve`; a real
``websockets`` client sends frames built with :mod:`mmdaemon.venues.binance_api` and reads
the answers with its parsers. Market data is either a one-level synthetic book or the real
BTCUSDT recording through the same codec and book the daemon uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from mmdaemon.book import OrderBook
from mmdaemon.exchange.fill_model import PaperVenue, fee_units
from mmdaemon.feed.recording import read_recording
from mmdaemon.market import MarketState
from mmdaemon.model import (
    BINANCE_SPOT_BTCUSDT,
    BookUpdate,
    Instrument,
    Malformed,
    OrderStatus,
    OrderUpdate,
    Side,
    Trade,
)
from mmdaemon.sim import wire
from mmdaemon.sim.orders import OrderEntry
from mmdaemon.venues import binance_api as api
from mmdaemon.venues import binance_parse as parse
from mmdaemon.venues.binance import BinanceCodec
from tests.helpers import until

INSTR = BINANCE_SPOT_BTCUSDT
KEY, SECRET = "simKey1", "simSecret1"
KEY2, SECRET2 = "simKey2", "simSecret2"
CREDS = api.Credentials(KEY, SECRET)
CREDS2 = api.Credentials(KEY2, SECRET2)
PREFIX = "mm"
T0_NS = 1_723_161_254_000_000_000
BID, ASK = 6_000_000, 6_000_100  # 60000.00 / 60001.00
LOTS = 100_000  # 0.001 BTC, about 60 USDT: above the 5 USDT minimum notional
RECORDING = (
    Path(__file__).resolve().parents[2] / "data" / "binance-spot-btcusdt" / "btcusdt_20240808.gz"
)


class Clock:
    """The server clock (ms) the clients sign against; tests move it."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def book_with(bid: int, ask: int, size: int = 50_000_000) -> OrderBook:
    book = OrderBook()
    book.apply(BookUpdate(True, [(bid, size)], [(ask, size)], 1, 1, 0, T0_NS))
    return book


class Client:
    """A websocket client speaking binance_api: requests, responses, user-data events."""

    def __init__(self, ws: ClientConnection, clock: Clock, creds: api.Credentials = CREDS):
        self.ws = ws
        self.clock = clock
        self.creds = creds
        self.events: list[dict[str, Any]] = []
        self._n = 0

    def rid(self) -> str:
        self._n += 1
        return f"r{self._n}"

    def kw(self) -> dict[str, Any]:
        return {"request_id": self.rid(), "creds": self.creds, "timestamp_ms": self.clock.ms}

    async def call(self, frame: bytes | str) -> api.Response:
        try:
            request_id = orjson.loads(frame)["id"]
        except (orjson.JSONDecodeError, TypeError, KeyError):
            request_id = None  # a malformed frame is answered with id null
        if not isinstance(request_id, str | int):
            request_id = None  # so is a frame whose id is not a string or an integer
        await self.ws.send(frame if isinstance(frame, str) else frame.decode())
        return await self.response(request_id)

    async def response(self, request_id: object) -> api.Response:
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), 5)
            obj = orjson.loads(raw)
            if "event" in obj:
                self.events.append(obj)
                continue
            assert obj["id"] == request_id, obj
            resp = parse.parse_response(raw)
            assert isinstance(resp, api.Response), resp
            return resp

    async def event(self, timeout: float = 5) -> dict[str, Any]:
        if self.events:
            return self.events.pop(0)
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        obj: dict[str, Any] = orjson.loads(raw)
        assert "event" in obj, obj
        return obj

    async def report(self, timeout: float = 5) -> api.ExecutionReport:
        """The next executionReport (account positions in between are skipped)."""
        while True:
            got = parse.parse_event(await self.event(timeout), INSTR, PREFIX)
            if isinstance(got, api.ExecutionReport):
                return got
            assert isinstance(got, api.AccountPosition), got

    async def no_event(self) -> None:
        assert not self.events
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(self.ws.recv(), 0.05)

    async def subscribe(self) -> int:
        resp = await self.call(api.user_data_subscribe(**self.kw()))
        assert resp.ok, resp
        sid: int = resp.result["subscriptionId"]
        return sid

    async def place(self, side: Side, price: int, size: int = LOTS, seq: int = 1,
                    **extra: Any) -> api.Response:
        cid = api.client_order_id(PREFIX, seq)
        return await self.call(api.order_place(INSTR, side, price, size, cid, **self.kw(),
                                               **extra))

    async def cancel(self, seq: int) -> api.Response:
        cid = api.client_order_id(PREFIX, seq)
        return await self.call(api.order_cancel(INSTR, cid, **self.kw()))

    async def signed(self, method: str, params: dict[str, Any]) -> api.Response:
        return await self.call(api.signed_request(method, params, self.rid(), self.creds,
                                                  self.clock.ms))


class Sim:
    """An OrderEntry served on loopback, its clock, and a way to open clients."""

    def __init__(self, entry: OrderEntry, clock: Clock, url: str) -> None:
        self.entry = entry
        self.clock = clock
        self.url = url

    async def client(self, creds: api.Credentials = CREDS) -> Client:
        return Client(await connect(self.url, compression=None), self.clock, creds)


def make_entry(clock: Clock, latency_ns: int = 0, **kw: Any) -> OrderEntry:
    venue = PaperVenue(INSTR, latency_ns, "1", "5")  # maker 1 bps, taker 5 bps
    return OrderEntry(INSTR, venue, {KEY: SECRET, KEY2: SECRET2}, clock,
                      base_balance="1", quote_balance="100000", **kw)


async def start(entry: OrderEntry, clock: Clock) -> AsyncIterator[Sim]:
    async with serve(entry.serve, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        yield Sim(entry, clock, f"ws://127.0.0.1:{port}{api.WS_API_PATH}")


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    clock = Clock(T0_NS // 1_000_000)
    entry = make_entry(clock)
    entry.on_book(book_with(BID, ASK), T0_NS)
    async for running in start(entry, clock):
        yield running


@pytest.fixture
async def client(sim: Sim) -> AsyncIterator[Client]:
    c = await sim.client()
    try:
        yield c
    finally:
        await c.ws.close()


# ---- placing -----------------------------------------------------------------------------------


async def test_place_is_acknowledged_and_reported(sim: Sim, client: Client) -> None:
    assert await client.subscribe() == 0
    resp = await client.place(Side.BUY, BID - 100)
    assert resp.ok and resp.status == 200
    result = resp.result
    assert result["status"] == "NEW" and result["type"] == "LIMIT_MAKER"
    assert result["clientOrderId"] == "mm-1" and result["orderId"] == 1
    assert (result["price"], result["origQty"]) == ("59999.00000000", "0.00100000")
    assert resp.rate_limits[0].rate_limit_type == "REQUEST_WEIGHT"
    update = parse.order_update_from_result(result, INSTR, PREFIX)
    assert isinstance(update, OrderUpdate) and update.status is OrderStatus.NEW
    report = await client.report()
    assert report.execution_type == "NEW" and report.fill is None
    assert report.update.order_id == 1 and report.update.price == BID - 100
    assert report.exchange_order_id == 1 and report.subscription_id == 0
    [order] = sim.entry.open_orders()
    assert (order.api_key, order.client_order_id, order.side, order.size) == (
        KEY, "mm-1", Side.BUY, LOTS)
    ack = await client.place(Side.SELL, ASK + 100, seq=2, resp_type="ACK")
    assert ack.ok and set(ack.result) == {
        "symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}


async def test_post_only_cross_is_refused(sim: Sim, client: Client) -> None:
    for side, price in ((Side.BUY, ASK), (Side.BUY, ASK + 500), (Side.SELL, BID)):
        resp = await client.place(side, price)
        assert resp.status == 400 and resp.error == api.ApiError(
            api.NEW_ORDER_REJECTED, "Order would immediately match and take.")
    # our own resting ask inside the spread is crossed too
    assert (await client.place(Side.SELL, BID + 50, seq=1)).ok
    crossed = await client.place(Side.BUY, BID + 50, seq=2)
    assert crossed.error is not None and crossed.error.code == api.NEW_ORDER_REJECTED
    assert [o.client_order_id for o in sim.entry.open_orders()] == ["mm-1"]
    duplicate = await client.place(Side.BUY, BID, seq=1)
    assert duplicate.error == api.ApiError(api.NEW_ORDER_REJECTED, "Duplicate order sent.")


async def test_bad_signature_stale_timestamp_and_keys(sim: Sim, client: Client) -> None:
    wrong = Client(client.ws, sim.clock, api.Credentials(KEY, "not-the-secret"))
    resp = await wrong.place(Side.BUY, BID)
    assert resp.error == api.ApiError(api.INVALID_SIGNATURE,
                                      "Signature for this request is not valid.")
    frame = orjson.loads(api.order_place(INSTR, Side.BUY, BID, LOTS, "mm-1", **client.kw()))
    frame["params"]["price"] = "59000.00"  # tampered after signing
    tampered = await client.call(orjson.dumps(frame))
    assert tampered.error is not None and tampered.error.code == api.INVALID_SIGNATURE
    # stale: 5,001 ms behind with the default 5,000 ms window; ahead: 1,000 ms
    for offset, msg in ((-5001, wire.ERROR_MESSAGES[api.INVALID_TIMESTAMP]),
                        (1000, wire.MSG_TIMESTAMP_AHEAD)):
        late = await client.call(api.order_place(
            INSTR, Side.BUY, BID, LOTS, "mm-1", request_id="late", creds=CREDS,
            timestamp_ms=sim.clock.ms + offset))
        assert late.error == api.ApiError(api.INVALID_TIMESTAMP, msg)
    # a wider recvWindow lets the old request through; one above the maximum is refused
    wide = api.Credentials(KEY, SECRET, recv_window_ms=10_000)
    ok = await client.call(api.order_place(INSTR, Side.BUY, BID, LOTS, "mm-1", request_id="w",
                                           creds=wide, timestamp_ms=sim.clock.ms - 5001))
    assert ok.ok
    huge = api.Credentials(KEY, SECRET, recv_window_ms=60_001)
    refused = await client.call(api.account_status(request_id="h", creds=huge,
                                                   timestamp_ms=sim.clock.ms))
    assert refused.error is not None
    assert refused.error.code == api.MANDATORY_PARAM_EMPTY_OR_MALFORMED
    unknown = await client.call(api.account_status(
        request_id="u", creds=api.Credentials("nobody", "x"), timestamp_ms=sim.clock.ms))
    assert unknown.error == api.ApiError(api.REJECTED_MBX_KEY,
                                         "Invalid API-key, IP, or permissions for action.")
    malformed_key = await client.call(api.account_status(
        request_id="m", creds=api.Credentials("bad key!", "x"), timestamp_ms=sim.clock.ms))
    assert malformed_key.error is not None and malformed_key.error.code == api.BAD_API_KEY_FMT
    missing = await client.call(api.request(api.ACCOUNT_STATUS, {}, "n"))
    assert missing.error == api.ApiError(api.MANDATORY_PARAM_EMPTY_OR_MALFORMED,
                                         wire.mandatory_param_msg("apiKey"))
    no_signature = await client.call(api.request(api.ACCOUNT_STATUS, {"timestamp": 1}, "s",
                                                 api_key=KEY))
    assert no_signature.error == api.ApiError(api.MANDATORY_PARAM_EMPTY_OR_MALFORMED,
                                              wire.mandatory_param_msg("signature"))


async def test_parameter_errors(sim: Sim, client: Client) -> None:
    base = api.limit_maker_params(INSTR, Side.BUY, BID, LOTS)

    async def code_of(**change: Any) -> tuple[int, str]:
        params = {k: v for k, v in {**base, **change}.items() if v is not None}
        resp = await client.signed(api.ORDER_PLACE, params)
        assert resp.error is not None, resp
        return resp.error.code, resp.error.msg

    assert await code_of(quantity=None) == (api.MANDATORY_PARAM_EMPTY_OR_MALFORMED,
                                            wire.mandatory_param_msg("quantity"))
    assert await code_of(symbol="ETHUSDT") == (api.BAD_SYMBOL, "Invalid symbol.")
    assert await code_of(side="HOLD") == (api.INVALID_SIDE, "Invalid side.")
    assert (await code_of(type="LIMIT"))[0] == api.UNSUPPORTED_OPERATION
    assert (await code_of(type="FOO"))[0] == api.INVALID_ORDER_TYPE
    assert (await code_of(timeInForce="GTC"))[0] == api.TIF_NOT_REQUIRED
    assert (await code_of(price="6e4"))[0] == api.ILLEGAL_CHARS
    assert await code_of(price="60000.001") == (api.INVALID_MESSAGE,
                                                "Filter failure: PRICE_FILTER")
    assert await code_of(quantity="0.00000500") == (api.INVALID_MESSAGE,
                                                    "Filter failure: LOT_SIZE")
    assert await code_of(quantity="0.00001500") == (api.INVALID_MESSAGE,
                                                    "Filter failure: LOT_SIZE")
    # 0.00001 BTC at 60000 is 0.6 USDT, under the 5 USDT minimum
    assert await code_of(quantity="0.00001000") == (api.INVALID_MESSAGE,
                                                    "Filter failure: NOTIONAL")
    assert (await code_of(newClientOrderId="no spaces allowed"))[0] == api.ILLEGAL_CHARS
    assert (await code_of(newOrderRespType="ALL"))[0] == api.ILLEGAL_CHARS
    assert not sim.entry.open_orders()


# ---- cancelling --------------------------------------------------------------------------------


async def test_cancel(sim: Sim, client: Client) -> None:
    await client.subscribe()
    unknown = await client.cancel(9)
    assert unknown.status == 400
    assert unknown.error == api.ApiError(api.CANCEL_REJECTED, "Unknown order sent.")
    assert (await client.place(Side.BUY, BID)).ok
    assert (await client.report()).execution_type == "NEW"
    resp = await client.cancel(1)
    assert resp.ok
    assert resp.result["status"] == "CANCELED" and resp.result["origClientOrderId"] == "mm-1"
    report = await client.report()
    assert report.execution_type == "CANCELED" and report.orig_client_order_id == "mm-1"
    assert report.update.order_id == 1 and report.update.status is OrderStatus.CANCELED
    assert sim.entry.open_orders() == []
    again = await client.cancel(1)
    assert again.error == api.ApiError(api.CANCEL_REJECTED, "Unknown order sent.")
    by_id = await client.signed(api.ORDER_CANCEL, {"symbol": "BTCUSDT", "orderId": 1})
    assert by_id.error is not None and by_id.error.code == api.CANCEL_REJECTED
    neither = await client.signed(api.ORDER_CANCEL, {"symbol": "BTCUSDT"})
    assert neither.error is not None
    assert neither.error.code == api.MANDATORY_PARAM_EMPTY_OR_MALFORMED
    # by orderId, and another account cannot cancel it
    assert (await client.place(Side.BUY, BID, seq=2)).ok
    other = await sim.client(CREDS2)
    theirs = await other.signed(api.ORDER_CANCEL, {"symbol": "BTCUSDT", "orderId": 2})
    assert theirs.error is not None and theirs.error.code == api.CANCEL_REJECTED
    mine = await client.signed(api.ORDER_CANCEL, {"symbol": "BTCUSDT", "orderId": 2})
    assert mine.ok and mine.result["clientOrderId"] == "sim-cxl-2"
    await other.ws.close()


async def test_cancel_replace(sim: Sim, client: Client) -> None:
    await client.subscribe()
    assert (await client.place(Side.BUY, BID - 100)).ok
    resp = await client.call(api.order_cancel_replace(INSTR, "mm-1", Side.BUY, BID, 2 * LOTS,
                                                      **client.kw()))
    assert resp.ok and resp.status == 200
    assert (resp.result["cancelResult"], resp.result["newOrderResult"]) == ("SUCCESS", "SUCCESS")
    assert resp.result["cancelResponse"]["status"] == "CANCELED"
    new = resp.result["newOrderResponse"]
    assert new["clientOrderId"] == "mm-1" and new["orderId"] == 2 and new["status"] == "NEW"
    assert new["price"] == "60000.00000000" and new["origQty"] == "0.00200000"
    kinds = [(await client.report()).execution_type for _ in range(3)]
    assert kinds == ["NEW", "CANCELED", "NEW"]
    [order] = sim.entry.open_orders()
    assert (order.order_id, order.client_order_id, order.price, order.size) == (
        2, "mm-1", BID, 2 * LOTS)
    # STOP_ON_FAILURE with an unknown order: nothing happens, -2022
    failed = await client.call(api.order_cancel_replace(INSTR, "mm-9", Side.BUY, BID, LOTS,
                                                        **client.kw()))
    assert failed.status == 400 and failed.error is not None
    assert failed.error.code == api.CANCEL_REPLACE_FAILED
    assert failed.error.data == {
        "cancelResult": "FAILURE", "newOrderResult": "NOT_ATTEMPTED",
        "cancelResponse": {"code": -2011, "msg": "Unknown order sent."},
        "newOrderResponse": None}
    # the cancel succeeds, the new order would take: -2021, the old order is gone
    half = await client.call(api.order_cancel_replace(INSTR, "mm-1", Side.BUY, ASK, LOTS,
                                                      **client.kw()))
    assert half.status == 409 and half.error is not None
    assert half.error.code == api.CANCEL_REPLACE_PARTIALLY_FAILED
    data = half.error.data
    assert (data["cancelResult"], data["newOrderResult"]) == ("SUCCESS", "FAILURE")
    assert data["cancelResponse"]["status"] == "CANCELED"
    assert data["newOrderResponse"] == {"code": -2010,
                                        "msg": "Order would immediately match and take."}
    assert sim.entry.open_orders() == []


async def test_open_orders_and_cancel_all(sim: Sim, client: Client) -> None:
    for seq, (side, price) in enumerate([(Side.BUY, BID), (Side.SELL, ASK)], start=1):
        assert (await client.place(side, price, seq=seq)).ok
    status = await client.call(api.open_orders_status(INSTR, **client.kw()))
    assert status.ok and [o["clientOrderId"] for o in status.result] == ["mm-1", "mm-2"]
    assert status.rate_limits[0].used >= 6
    assert all(o["isWorking"] and o["status"] == "NEW" for o in status.result)
    updates = [parse.order_update_from_result(o, INSTR, PREFIX) for o in status.result]
    assert [(u.order_id, u.side) for u in updates if isinstance(u, OrderUpdate)] == [
        (1, Side.BUY), (2, Side.SELL)]
    other = await sim.client(CREDS2)
    theirs = await other.call(api.open_orders_status(INSTR, **other.kw()))
    assert theirs.ok and theirs.result == []
    await other.ws.close()
    cancelled = await client.call(api.open_orders_cancel_all(INSTR, **client.kw()))
    assert cancelled.ok and [o["status"] for o in cancelled.result] == ["CANCELED"] * 2
    assert sim.entry.open_orders() == []
    none_left = await client.call(api.open_orders_cancel_all(INSTR, **client.kw()))
    assert none_left.error == api.ApiError(api.CANCEL_REJECTED, "Unknown order sent.")
    assert (await client.place(Side.BUY, BID, seq=3)).ok
    assert sim.entry.cancel_all_for(KEY) == 1 and sim.entry.open_orders() == []


async def test_account_status(sim: Sim, client: Client) -> None:
    assert (await client.place(Side.BUY, BID)).ok  # locks 0.001 x 60000 = 60 USDT
    assert (await client.place(Side.SELL, ASK, seq=2)).ok  # locks 0.001 BTC
    resp = await client.call(api.account_status(**client.kw()))
    assert resp.ok
    result = resp.result
    assert result["accountType"] == "SPOT" and result["canTrade"] is True
    assert result["commissionRates"]["maker"] == "0.00010000"
    assert result["commissionRates"]["taker"] == "0.00050000"
    balances = {b["asset"]: (b["free"], b["locked"]) for b in result["balances"]}
    assert balances == {
        "BTC": ("0.99900000", "0.00100000"),
        "USDT": ("99940.00000000", "60.00000000"),
    }


# ---- user data from the market -----------------------------------------------------------------


def replay(path: Path) -> Iterator[tuple[int, bytes]]:
    for item in read_recording([path]):
        if not isinstance(item, Malformed):
            yield item


def feed(entry: OrderEntry, market: MarketState, recv_ns: int, frame: bytes) -> None:
    entry.advance(recv_ns)
    for event in market.on_frame(recv_ns, frame):
        if type(event) is BookUpdate:
            entry.on_book(market.book, recv_ns)
        elif type(event) is Trade:
            entry.on_trade(event, recv_ns)


async def test_fill_on_real_data_reaches_the_subscriber() -> None:
    clock = Clock(T0_NS // 1_000_000)
    entry = make_entry(clock)
    market = MarketState(BinanceCodec(INSTR, "spot"))
    async for sim in start(entry, clock):
        client = await sim.client()
        await client.subscribe()
        frames = replay(RECORDING)
        for recv_ns, frame in frames:  # until the book is usable
            clock.ms = recv_ns // 1_000_000
            feed(entry, market, recv_ns, frame)
            if market.book.synced and market.book.best_bid() is not None:
                break
        bid = market.book.best_bid()
        assert bid is not None
        resp = await client.place(Side.BUY, bid, LOTS)
        assert resp.ok and resp.result["status"] == "NEW"
        assert (await client.report()).execution_type == "NEW"
        for count, (recv_ns, frame) in enumerate(frames):
            clock.ms = recv_ns // 1_000_000
            feed(entry, market, recv_ns, frame)
            if entry.position_lots:
                break
            assert count < 20_000, "no fill on the recording"
        trades: list[api.ExecutionReport] = []
        while sum(t.fill.size for t in trades if t.fill) < entry.position_lots:
            report = await client.report()
            assert report.execution_type == "TRADE", report
            trades.append(report)
        assert trades
        filled = 0
        for report in trades:
            fill = report.fill
            assert fill is not None and fill.exec_id > 0 and fill.maker
            assert fill.order_id == 1 and fill.side is Side.BUY and fill.price == bid
            # the commission text round-trips to the PaperVenue's exact maker fee (1 bps)
            assert fill.fee == fee_units(fill.price * fill.size, entry.venue.maker_fee_bps)
            filled += fill.size
            assert report.update.filled == filled
        assert [t.fill.exec_id for t in trades if t.fill] == list(range(1, len(trades) + 1))
        assert entry.position_lots == filled == entry.account(KEY).position_lots
        assert entry.account(KEY).base_lots == 100_000_000 + filled  # 1 BTC + the fill
        if filled == LOTS:
            assert trades[-1].update.status is OrderStatus.FILLED
            assert entry.open_orders() == []
        position = parse.parse_event(await client.event(), INSTR, PREFIX)
        assert isinstance(position, api.AccountPosition)
        assert position.balances["BTC"][0] == INSTR.lots.to_decimal(100_000_000 + filled)
        await client.ws.close()


async def test_reject_after_acceptance_with_latency() -> None:
    clock = Clock(T0_NS // 1_000_000)
    entry = make_entry(clock, latency_ns=5_000_000)  # 5 ms to the matching engine
    entry.on_book(book_with(BID, ASK), T0_NS)
    async for sim in start(entry, clock):
        client = await sim.client()
        await client.subscribe()
        resp = await client.place(Side.BUY, BID + 50)
        assert resp.ok and resp.result["status"] == "NEW"  # checked against the book now
        assert (await client.report()).execution_type == "NEW"
        # before the order arrives the ask comes down to our price: the venue refuses it
        entry.advance(T0_NS + 4_000_000)
        entry.on_book(book_with(BID, BID + 50), T0_NS + 4_000_000)
        entry.advance(T0_NS + 5_000_000)
        report = await client.report()
        assert report.execution_type == "REJECTED"
        assert report.update.status is OrderStatus.REJECTED
        assert report.update.reason == api.REJECT_WOULD_MATCH
        assert entry.open_orders() == []
        await client.ws.close()


async def test_fills_only_reach_their_account(sim: Sim, client: Client) -> None:
    other = await sim.client(CREDS2)
    await other.subscribe()
    await client.subscribe()
    assert (await client.place(Side.BUY, BID)).ok
    assert (await client.report()).execution_type == "NEW"
    # a seller takes the whole bid level and then some: our bid fills
    sim.entry.on_trade(Trade(BID, 60_000_000, Side.SELL, 1, T0_NS, T0_NS + 1), T0_NS + 1)
    report = await client.report()
    assert report.execution_type == "TRADE" and report.update.status is OrderStatus.FILLED
    assert sim.entry.account(KEY).position_lots == LOTS
    assert sim.entry.account(KEY2).position_lots == 0
    position = parse.parse_event(await client.event(), INSTR, PREFIX)
    # 1 BTC + 0.001 BTC; 100000 USDT - 60 USDT - 0.006 USDT fee (1 bps)
    assert isinstance(position, api.AccountPosition)
    assert position.balances["BTC"] == (Decimal("1.001"), Decimal(0))
    assert position.balances["USDT"] == (Decimal("99939.994"), Decimal(0))
    await other.no_event()
    # unsubscribed: nothing more arrives
    assert (await client.call(api.user_data_unsubscribe(None, request_id="u"))).ok
    assert (await client.place(Side.BUY, BID - 1, seq=2)).ok
    await client.no_event()
    await other.ws.close()


# ---- the connection ----------------------------------------------------------------------------


async def test_malformed_frames_then_the_connection_still_works(sim: Sim,
                                                                client: Client) -> None:
    for frame in ("{not json", "[1, 2]", '"text"', "42", "null"):
        resp = await client.call(frame)
        assert resp.id is None and resp.status == 400
        assert resp.error == api.ApiError(api.INVALID_JSON, "Invalid JSON Request")
    await client.ws.send(b'{"id": "bin", "method": "ping"}')  # a binary frame is read too
    assert (await client.response("bin")).ok
    no_method = await client.call('{"id": "m"}')
    assert no_method.id == "m" and no_method.error is not None
    assert no_method.error.code == api.MANDATORY_PARAM_EMPTY_OR_MALFORMED
    unknown = await client.call('{"id": "u", "method": "order.teleport"}')
    assert unknown.error is not None and unknown.error.code == wire.UNKNOWN_METHOD
    bad_params = await client.call('{"id": "p", "method": "ping", "params": [1]}')
    assert bad_params.error is not None and bad_params.error.code == api.INVALID_PARAMETER
    bad_id = await client.call('{"id": {"x": 1}, "method": "ping"}')
    assert bad_id.id is None and bad_id.error is not None
    assert (await client.call(api.ping("p2"))).result == {}
    assert (await client.call('{"id": 3, "method": "v3/ping"}')).ok
    server_time = await client.call(api.server_time("t"))
    assert server_time.result == {"serverTime": sim.clock.ms}
    assert (await client.place(Side.BUY, BID)).ok
    assert sim.entry.internal_errors == 0


async def test_subscription_ids_and_closed_connection(sim: Sim, client: Client) -> None:
    assert await client.subscribe() == 0
    assert await client.subscribe() == 0  # one subscription per account and connection
    client.creds = CREDS2
    assert await client.subscribe() == 1
    assert sim.entry.connection_count == 1
    await client.ws.close()
    await until(lambda: sim.entry.connection_count == 0, timeout=5)
    # the venue keeps working for new connections
    again = await sim.client()
    assert (await again.call(api.ping("p"))).ok
    await again.ws.close()


async def test_weight_limit() -> None:
    clock = Clock(T0_NS // 1_000_000)
    entry = make_entry(clock, weight_limit=3)
    async for sim in start(entry, clock):
        client = await sim.client()
        for n in range(3):
            resp = await client.call(api.ping(f"p{n}"))
            assert resp.ok and resp.rate_limits[0].used == n + 1
        limited = await client.call(api.ping("over"))
        assert limited.status == 429 and limited.error is not None
        assert limited.error.code == api.TOO_MANY_REQUESTS
        # the venue says when to come back: the next minute
        next_minute = (clock.ms // 60_000 + 1) * 60_000
        assert limited.error.data == {"serverTime": clock.ms, "retryAfter": next_minute}
        assert parse.retry_after_ms(limited) == next_minute
        clock.ms += 60_000  # a new minute
        assert (await client.call(api.ping("later"))).ok
        await client.ws.close()


async def test_a_subscriber_that_does_not_read_is_disconnected() -> None:
    clock = Clock(T0_NS // 1_000_000)
    entry = make_entry(clock, max_queue=2)
    entry.on_book(book_with(BID, ASK), T0_NS)
    async for sim in start(entry, clock):
        reader = await sim.client()
        await reader.subscribe()
        placer = await sim.client()
        for seq in range(1, 4):
            assert (await placer.place(Side.BUY, BID - seq, seq=seq)).ok
        # the NEW reports went out one by one: the reader's outgoing queue is empty again
        await until(lambda: all(c.queue.empty() for c in entry._conns), timeout=5)
        # three cancels in one go, more than the queue holds: the subscriber is dropped
        assert entry.cancel_all_for(KEY) == 3
        assert entry.overflows == 1
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(reader.ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert (await placer.call(api.ping("still-up"))).ok
        await placer.ws.close()


def test_order_entry_validates_its_configuration() -> None:
    clock = Clock(0)
    venue = PaperVenue(INSTR, 0, "1", "5")
    with pytest.raises(ValueError):
        OrderEntry(INSTR, venue, {}, clock)
    with pytest.raises(ValueError):
        OrderEntry(INSTR, venue, {KEY: SECRET}, clock, quote_balance="0.00000000001")
    now_ms: Callable[[], int] = clock
    eth = Instrument("ETHUSDT", "0.01", "0.0001")
    with pytest.raises(ValueError):
        OrderEntry(INSTR, PaperVenue(eth, 0, "1", "5"), {KEY: SECRET}, now_ms)


# ---- trade history, order status, faults -------------------------------------------------------


async def test_my_trades_and_order_status(sim: Sim, client: Client) -> None:
    assert (await client.place(Side.BUY, BID, seq=1)).ok  # venue order 1
    assert (await client.place(Side.BUY, BID - 1, seq=2)).ok  # venue order 2
    # sells through both bids: order 1 takes 60,000 then its last 40,000, order 2 60,000
    sim.entry.on_trade(Trade(BID - 2, 60_000, Side.SELL, 1, T0_NS, T0_NS), T0_NS + 1_000_000)
    sim.entry.on_trade(Trade(BID - 2, 100_000, Side.SELL, 2, T0_NS, T0_NS), T0_NS + 2_000_000)

    async def trades(**params: Any) -> api.Response:
        return await client.signed(api.MY_TRADES, {"symbol": "BTCUSDT", **params})

    every = await trades()
    assert every.ok and every.rate_limits[0].used > 0
    assert [(t["id"], t["orderId"], t["qty"]) for t in every.result] == [
        (1, 1, "0.00060000"), (2, 1, "0.00040000"), (3, 2, "0.00060000")]
    assert every.result[0] == {
        "symbol": "BTCUSDT", "id": 1, "orderId": 1, "orderListId": -1, "price": "60000.00000000",
        "qty": "0.00060000", "quoteQty": "36.00000000",
        "commission": "0.00360000", "commissionAsset": "USDT",  # maker 1 bps of 36 USDT
        "time": (T0_NS + 1_000_000) // 1_000_000, "isBuyer": True, "isMaker": True,
        "isBestMatch": True}
    parsed = parse.parse_my_trades(every.result, INSTR)
    assert isinstance(parsed, list) and [t.trade_id for t in parsed] == [1, 2, 3]
    assert [t["id"] for t in (await trades(fromId=2)).result] == [2, 3]
    assert [t["id"] for t in (await trades(fromId=2, limit=1)).result] == [2]
    assert [t["id"] for t in (await trades(limit=2)).result] == [2, 3]  # the most recent
    assert [t["id"] for t in (await trades(orderId=2)).result] == [3]
    ms = (T0_NS + 1_000_000) // 1_000_000
    assert [t["id"] for t in (await trades(startTime=ms, endTime=ms)).result] == [1]
    for params, code in (({"fromId": 1, "startTime": 1}, api.OPTIONAL_PARAMS_BAD_COMBO),
                         ({"limit": 1001}, api.INVALID_PARAMETER),
                         ({"startTime": 1, "endTime": 86_400_002}, api.INVALID_INTERVAL)):
        refused = await trades(**params)
        assert refused.error is not None and refused.error.code == code, params
    # order.status answers for closed orders too, by venue id or client id
    done = await client.signed(api.ORDER_STATUS, {"symbol": "BTCUSDT", "orderId": 1})
    assert done.ok and (done.result["status"], done.result["executedQty"]) == (
        "FILLED", "0.00100000")
    assert done.result["clientOrderId"] == "mm-1"
    part = await client.signed(api.ORDER_STATUS, {"symbol": "BTCUSDT",
                                                  "origClientOrderId": "mm-2"})
    assert part.ok and part.result["status"] == "PARTIALLY_FILLED"
    for params in ({"orderId": 99}, {"orderId": 1, "origClientOrderId": "mm-2"}):
        missing = await client.signed(api.ORDER_STATUS, {"symbol": "BTCUSDT", **params})
        assert missing.error == api.ApiError(api.NO_SUCH_ORDER, "Order does not exist.")
    neither = await client.signed(api.ORDER_STATUS, {"symbol": "BTCUSDT"})
    assert neither.error is not None
    assert neither.error.code == api.MANDATORY_PARAM_EMPTY_OR_MALFORMED
    # another account sees none of it
    other = await sim.client(CREDS2)
    assert (await other.signed(api.MY_TRADES, {"symbol": "BTCUSDT"})).result == []
    theirs = await other.signed(api.ORDER_STATUS, {"symbol": "BTCUSDT", "orderId": 1})
    assert theirs.error is not None and theirs.error.code == api.NO_SUCH_ORDER
    await other.ws.close()
    assert [t.trade_id for t in sim.entry.trades(KEY)] == [1, 2, 3]
    assert sim.entry.trades(KEY2) == []


async def test_fault_hooks(sim: Sim) -> None:
    entry = sim.entry
    first = await sim.client()
    assert (await first.call(api.ping("p"))).ok
    assert await entry.drop_connections() == 1
    with pytest.raises(ConnectionClosed) as dropped:
        await asyncio.wait_for(first.ws.recv(), 5)
    assert dropped.value.rcvd is not None and dropped.value.rcvd.code == 1001
    entry.accepting = False
    refused = await sim.client()
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(refused.ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    entry.accepting = True
    client = await sim.client()
    await client.subscribe()
    entry.blackhole = True  # the request runs, nothing comes back
    await client.ws.send(api.order_place(INSTR, Side.BUY, BID, LOTS, "mm-1",
                                         **client.kw()).decode())
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.ws.recv(), 0.1)
    assert [o.client_order_id for o in entry.open_orders()] == ["mm-1"]
    entry.blackhole = False
    assert (await client.call(api.ping("after"))).ok
    assert client.events == []  # what was lost stays lost
    assert await entry.drop_connections(abrupt=True) == 1
    with pytest.raises(ConnectionClosed) as cut:
        await asyncio.wait_for(client.ws.recv(), 5)
    assert cut.value.rcvd is None  # no closing handshake: 1006
    await until(lambda: entry.connection_count == 0, timeout=5)
    assert len(entry.open_orders()) == 1  # orders survive their connection


async def test_late_request_and_held_response_hooks(sim: Sim) -> None:
    entry = sim.entry
    held, late_id = api.client_order_id(PREFIX, 1), api.client_order_id(PREFIX, 2)
    client = await sim.client()
    await client.subscribe()
    # a held response: the order is acknowledged on the user-data stream first
    entry.hold_responses(api.ORDER_PLACE, 0.2)
    place = api.order_place(INSTR, Side.BUY, BID, LOTS, held, **client.kw())
    await client.ws.send(place.decode())
    report = await client.report()
    assert report.update.order_id == 1 and report.execution_type == "NEW"
    resp = await client.response(orjson.loads(place)["id"])
    assert resp.ok and resp.result["clientOrderId"] == held
    # a delayed request: the cancel sent after it overtakes it and finds nothing
    entry.delay_requests(api.ORDER_PLACE, 0.2)
    late = api.order_place(INSTR, Side.BUY, BID - 10, LOTS, late_id, **client.kw())
    await client.ws.send(late.decode())
    cancel = await client.call(api.order_cancel(INSTR, late_id, **client.kw()))
    assert cancel.error is not None and cancel.error.code == api.CANCEL_REJECTED
    resp = await client.response(orjson.loads(late)["id"])  # later, and the order rests
    assert resp.ok and {o.client_order_id for o in entry.open_orders()} == {
        held, late_id}
    placed = entry.order(resp.result["orderId"])
    assert placed is not None and placed.client_order_id == late_id
    assert entry.order(10**9) is None
