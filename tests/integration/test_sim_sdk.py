"""Binance's official spot SDK (``binance-sdk-spot``) pointed at the sim, as a third-party
client: REST depth, exchangeInfo and time; the WebSocket API's order entry, queries and
user-data events. Everything must parse into the SDK's own models (they are pydantic: a
missing or mistyped field fails), and the errors carry Binance's codes and messages.

The sim is real (SimVenue on 127.0.0.1 playing the bundled recording at speed 1, its order
entry on the sim's own clock); the SDK signs with its own HMAC code and its own clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import binance_common.utils
import pytest
from binance_common.configuration import ConfigurationRestAPI, ConfigurationWebSocketAPI
from binance_sdk_spot.rest_api.models import DepthResponse, ExchangeInfoResponse, TimeResponse
from binance_sdk_spot.spot import Spot
from binance_sdk_spot.websocket_api.models import (
    AccountStatusResponse,
    ExecutionReport,
    MyTradesResponse,
    OpenOrdersStatusResponse,
    OrderCancelReplaceResponse,
    OrderCancelResponse,
    OrderPlaceResponse,
    OrderStatusResponse,
    OutboundAccountPosition,
)

from mmdaemon.clock import SystemClock
from mmdaemon.exchange.fill_model import PaperVenue
from mmdaemon.model import BINANCE_SPOT_BTCUSDT
from mmdaemon.sim.orders import OrderEntry
from mmdaemon.sim.server import SimVenue
from tests.helpers import first_lines, until

INSTR = BINANCE_SPOT_BTCUSDT
KEY, SECRET = "sdkKey", "sdkSecret"
QTY = Decimal("0.001")


@asynccontextmanager
async def sdk_and_sim(tmp_path: Path, secret: str = SECRET) -> AsyncIterator[tuple[Any, Any]]:
    """(the SDK, its WebSocket API connection) against a sim whose one account holds 1 BTC
    and 100,000 USDT; the SDK signs with ``secret``."""
    recording = first_lines(tmp_path / "short.gz", 60000)
    entry = OrderEntry(INSTR, PaperVenue(INSTR, 0, "1", "0"), {KEY: SECRET},
                       base_balance="1", quote_balance="100000")
    async with SimVenue([recording], INSTR, speed=1.0, clock=SystemClock(),
                        order_entry=entry) as sim:
        book = sim.tape.market.book
        await until(lambda: book.synced and book.bids.best() is not None, 20)
        spot = Spot(
            config_rest_api=ConfigurationRestAPI(api_key=KEY, api_secret=secret,
                                                 base_path=sim.rest_url),
            config_ws_api=ConfigurationWebSocketAPI(api_key=KEY, api_secret=secret,
                                                    stream_url=f"{sim.ws_url}/ws-api/v3"))
        conn = await spot.websocket_api.create_connection()
        try:
            yield sim, spot, conn
        finally:
            await conn.close_connection()


def best_bid(sim: SimVenue) -> Decimal:
    bid = sim.tape.market.book.bids.best()
    assert bid is not None
    return INSTR.ticks.to_decimal(bid)


def error_of(response: Any) -> tuple[int, str]:
    """(code, msg) of a WebSocket API error answer (the SDK gives it as a dict)."""
    data = response.data()
    assert isinstance(data, dict) and "error" in data, data
    return data["error"]["code"], data["error"]["msg"]


async def test_rest_market_data_parses_into_the_sdks_models(tmp_path: Path) -> None:
    async with sdk_and_sim(tmp_path) as (_, spot, _conn):
        depth = await asyncio.to_thread(spot.rest_api.depth, "BTCUSDT", 7)
        assert isinstance(depth.data(), DepthResponse)
        assert len(depth.data().bids) == 7
        # the SDK reads the weight used from the reply's headers
        assert depth.rate_limits and depth.rate_limits[0].count >= 5
        info = await asyncio.to_thread(spot.rest_api.exchange_info, "BTCUSDT")
        assert isinstance(info.data(), ExchangeInfoResponse)
        (symbol,) = info.data().symbols
        assert symbol.order_types == ["LIMIT_MAKER"] and symbol.cancel_replace_allowed
        server = await asyncio.to_thread(spot.rest_api.time)
        assert isinstance(server.data(), TimeResponse)
        assert abs(server.data().server_time - time.time_ns() // 1_000_000) < 1_000


async def test_order_entry_queries_and_user_data_parse_into_the_sdks_models(
        tmp_path: Path) -> None:
    events: list[Any] = []
    async with sdk_and_sim(tmp_path) as (sim, _, conn):
        subscription = await conn.user_data_stream_subscribe_signature()
        subscription.stream.on("message", events.append)

        far = best_bid(sim) - 1000
        placed = await conn.order_place(symbol="BTCUSDT", side="BUY", type="LIMIT_MAKER",
                                        price=far, quantity=QTY, new_client_order_id="sdk1",
                                        new_order_resp_type="FULL")
        assert isinstance(placed.data(), OrderPlaceResponse), placed.data()
        assert placed.data().result.price == f"{far:.8f}"
        status = await conn.order_status(symbol="BTCUSDT", orig_client_order_id="sdk1")
        assert isinstance(status.data(), OrderStatusResponse)
        assert status.data().result.status == "NEW"
        replaced = await conn.order_cancel_replace(
            symbol="BTCUSDT", cancel_replace_mode="STOP_ON_FAILURE", side="BUY",
            type="LIMIT_MAKER", price=far - 1, quantity=QTY,
            cancel_orig_client_order_id="sdk1", new_client_order_id="sdk2")
        assert isinstance(replaced.data(), OrderCancelReplaceResponse), replaced.data()
        open_orders = await conn.open_orders_status(symbol="BTCUSDT")
        assert isinstance(open_orders.data(), OpenOrdersStatusResponse)
        assert [o.client_order_id for o in open_orders.data().result] == ["sdk2"]
        cancelled = await conn.order_cancel(symbol="BTCUSDT", orig_client_order_id="sdk2")
        assert isinstance(cancelled.data(), OrderCancelResponse), cancelled.data()

        # a fill: a buy at the best bid, moved with the bid until a seller reaches it
        seq = 2
        deadline = time.monotonic() + 60

        def traded() -> bool:
            return any(isinstance(e.actual_instance, OutboundAccountPosition)
                       for e in events)

        while not traded():
            assert time.monotonic() < deadline, "no fill in 60 s"
            seq += 1
            bid = best_bid(sim)
            answer = await conn.order_place(symbol="BTCUSDT", side="BUY", type="LIMIT_MAKER",
                                            price=bid, quantity=QTY,
                                            new_client_order_id=f"sdk{seq}")
            if not isinstance(answer.data(), OrderPlaceResponse):
                continue  # the bid moved up to the ask meanwhile: would take
            await until(lambda placed_at=bid: traded() or best_bid(sim) != placed_at, 30)
            if not traded():
                await conn.order_cancel(symbol="BTCUSDT", orig_client_order_id=f"sdk{seq}")
        await until(traded, 5)
        reports = [e.actual_instance for e in events
                   if isinstance(e.actual_instance, ExecutionReport)]
        assert {r.x for r in reports} >= {"NEW", "CANCELED", "TRADE"}
        fill = next(r for r in reports if r.x == "TRADE")
        assert f"{Decimal(fill.L):.8f}" == fill.L and fill.n is not None

        account = await conn.account_status()
        assert isinstance(account.data(), AccountStatusResponse)
        balances = {b.asset: Decimal(b.free) + Decimal(b.locked)
                    for b in account.data().result.balances}
        assert Decimal(fill.l) + 1 == balances["BTC"]
        trades = await conn.my_trades(symbol="BTCUSDT")
        assert isinstance(trades.data(), MyTradesResponse)
        (trade,) = trades.data().result
        assert trade.time == fill.T and trade.price == fill.L and trade.qty == fill.l


async def test_the_sdk_gets_binances_error_codes(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    async with sdk_and_sim(tmp_path) as (sim, _, conn):
        bid = best_bid(sim)
        insufficient = await conn.order_place(symbol="BTCUSDT", side="SELL",
                                              type="LIMIT_MAKER", price=bid + 1000,
                                              quantity=Decimal(2))  # holds 1 BTC
        assert error_of(insufficient) == (
            -2010, "Account has insufficient balance for requested action.")
        would_take = await conn.order_place(symbol="BTCUSDT", side="SELL",
                                            type="LIMIT_MAKER", price=bid, quantity=QTY)
        assert error_of(would_take) == (-2010, "Order would immediately match and take.")
        unknown = await conn.order_cancel(symbol="BTCUSDT", orig_client_order_id="nope")
        assert error_of(unknown) == (-2011, "Unknown order sent.")
        # a client whose clock is a minute slow: outside the 5 s recvWindow
        now = binance_common.utils.get_timestamp
        monkeypatch.setattr(binance_common.utils, "get_timestamp", lambda: now() - 60_000)
        late = await conn.open_orders_status(symbol="BTCUSDT")
        assert error_of(late) == (-1021, "Timestamp for this request is outside of the "
                                         "recvWindow.")
    async with sdk_and_sim(tmp_path, secret="not-the-secret") as (_, _spot, conn):
        forged = await conn.open_orders_status(symbol="BTCUSDT")
        assert error_of(forged) == (-1022, "Signature for this request is not valid.")
