"""Binance's official USD-M futures SDK (``binance-sdk-derivatives-trading-usds-futures``)
pointed at the sim, as a third-party client (#21 item 5).

The SDK parses every answer and event into its pydantic models, whose fields are strictly
typed (``StrictStr``, ``StrictInt``, ``StrictBool``): a field the sim sent with the wrong
type fails the parse, and the values read back through the models are checked here. REST
market data and exchangeInfo through ``rest_api`` (``requests``, in a thread); order entry
through ``websocket_api`` (aiohttp, signing its own requests); the user-data stream through
``websocket_streams.user_data(listenKey)``, which SUBSCRIBEs the key on a stream connection
of the newer ``/private/stream`` route; the same events on the ``/ws/<listenKey>`` route
parsed with the SDK's event models.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect

from mmdaemon.clock import SystemClock
from mmdaemon.model import BINANCE_USDM_BTCUSDT
from mmdaemon.sim.usdm import UsdmOrderEntry, UsdmSim
from tests.helpers import until

sdk = pytest.importorskip("binance_sdk_derivatives_trading_usds_futures")

from binance_common.configuration import (  # noqa: E402
    ConfigurationRestAPI,
    ConfigurationWebSocketAPI,
    ConfigurationWebSocketStreams,
)
from binance_common.errors import BadRequestError  # noqa: E402
from binance_sdk_derivatives_trading_usds_futures.derivatives_trading_usds_futures import (  # noqa: E402
    DerivativesTradingUsdsFutures,
)
from binance_sdk_derivatives_trading_usds_futures.websocket_streams.models import (  # noqa: E402
    AccountUpdate,
    OrderTradeUpdate,
)

KEY, SECRET = "sdkKey1", "sdkSecret1"
BTC = BINANCE_USDM_BTCUSDT


@pytest.fixture
async def sim(usdm_file: Path) -> AsyncIterator[UsdmSim]:
    clock = SystemClock()
    entry = UsdmOrderEntry([BTC], {KEY: SECRET}, Fraction(10_000),
                           lambda: clock.wall_ns() // 1_000_000, maker_fee_bps="2")
    async with UsdmSim([(BTC, [usdm_file])], speed=10.0, clock=clock,
                       order_entry=entry) as venue:
        await until(lambda: venue.tapes["BTCUSDT"].market.book.synced, timeout=20)
        yield venue
    assert entry.internal_errors == 0


def client_for(venue: UsdmSim) -> Any:
    return DerivativesTradingUsdsFutures(
        config_rest_api=ConfigurationRestAPI(api_key=KEY, api_secret=SECRET,
                                             base_path=venue.rest_url, retries=0),
        config_ws_api=ConfigurationWebSocketAPI(api_key=KEY, api_secret=SECRET,
                                                stream_url=f"{venue.ws_url}/ws-fapi/v1"),
        config_ws_streams=ConfigurationWebSocketStreams(stream_url=venue.ws_url))


def best(venue: UsdmSim) -> tuple[int, int]:
    book = venue.tapes["BTCUSDT"].market.book
    bid, ask = book.bids.best(), book.asks.best()
    assert bid is not None and ask is not None
    return bid, ask


async def test_the_sdk_reads_rest_market_data_and_exchange_info(sim: UsdmSim) -> None:
    rest = client_for(sim).rest_api
    info = (await asyncio.to_thread(rest.exchange_information)).data()
    (symbol,) = info.symbols
    assert (symbol.symbol, symbol.price_precision, symbol.quantity_precision) == (
        "BTCUSDT", 1, 3)
    filters = {f.filter_type: f for f in symbol.filters}
    assert (filters["PRICE_FILTER"].tick_size, filters["LOT_SIZE"].step_size,
            filters["MIN_NOTIONAL"].notional) == ("0.1", "0.001", "100")
    assert [r.rate_limit_type for r in info.rate_limits] == ["REQUEST_WEIGHT", "ORDERS",
                                                             "ORDERS"]
    response = await asyncio.to_thread(rest.order_book, symbol="BTCUSDT", limit=20)
    book = response.data()
    assert len(book.bids) == 20 and len(book.asks) == 20
    assert Decimal(book.bids[0][0]) < Decimal(book.asks[0][0])
    assert int(response.headers["X-MBX-USED-WEIGHT-1M"]) > 0
    server = (await asyncio.to_thread(rest.check_server_time)).data()
    assert server.server_time > 1_700_000_000_000
    with pytest.raises(BadRequestError):  # -1121, as Binance answers
        await asyncio.to_thread(rest.order_book, symbol="NOPEUSDT")


async def test_the_sdk_places_modifies_queries_and_cancels_over_the_ws_api(
        sim: UsdmSim) -> None:
    client = client_for(sim)
    api = await client.websocket_api.create_connection()
    streams = await client.websocket_streams.create_connection()
    try:
        listen_key = (await api.start_user_data_stream()).data().result.listen_key
        received: list[Any] = []
        stream = await streams.user_data(listen_key)
        stream.on("message", received.append)
        raw: list[dict[str, Any]] = []
        async with connect(f"{sim.ws_url}/ws/{listen_key}") as ws:
            reader = asyncio.create_task(_collect(ws, raw))
            # the SDK's SUBSCRIBE of the key on its /private/stream connection has arrived
            await until(lambda: any(listen_key in s for s in sim.tape.subscribers.values()))
            bid, _ = best(sim)
            price, lower = (float(BTC.price_str(p)) for p in (bid - 50, bid - 60))
            placed = (await api.new_order(
                symbol="BTCUSDT", side="BUY", type="LIMIT", time_in_force="GTX",
                quantity=0.005, price=price, new_client_order_id="sdk-1",
                new_order_resp_type="RESULT")).data().result
            assert (placed.status, placed.client_order_id, placed.orig_qty,
                    placed.time_in_force, placed.reduce_only) == ("NEW", "sdk-1", "0.005",
                                                                  "GTX", False)
            modified = (await api.modify_order(
                symbol="BTCUSDT", side="BUY", quantity=0.006, price=lower,
                order_id=placed.order_id)).data().result
            assert (modified.order_id, modified.orig_qty, modified.price) == (
                placed.order_id, "0.006", BTC.price_str(bid - 60))
            status = (await api.query_order(symbol="BTCUSDT",
                                            orig_client_order_id="sdk-1")).data().result
            assert (status.order_id, status.status, status.time_in_force) == (
                placed.order_id, "NEW", "GTX")
            account = (await api.account_information_v2()).data().result
            assert Decimal(account.total_wallet_balance) == 10_000
            assert Decimal(account.assets[0].available_balance) < 10_000  # the order's margin
            (position,) = (await api.position_information_v2(symbol="BTCUSDT")).data().result
            assert (position.symbol, position.position_amt) == ("BTCUSDT", "0.000")
            (balance,) = (await api.futures_account_balance_v2()).data().result
            assert (balance.asset, Decimal(balance.balance)) == ("USDT", 10_000)
            cancelled = (await api.cancel_order(symbol="BTCUSDT",
                                                order_id=placed.order_id)).data().result
            assert cancelled.status == "CANCELED"
            await until(lambda: len(raw) >= 3)
            await until(lambda: len(received) >= 3)
            reader.cancel()
        updates = [OrderTradeUpdate.from_dict(e) for e in raw if e["e"] == "ORDER_TRADE_UPDATE"]
        assert [(u.o.x, u.o.X, u.o.i, u.o.f) for u in updates] == [
            ("NEW", "NEW", placed.order_id, "GTX"),
            ("AMENDMENT", "NEW", placed.order_id, "GTX"),
            ("CANCELED", "CANCELED", placed.order_id, "GTX")]
        sdk_events = [m.actual_instance for m in received]
        assert all(isinstance(e, OrderTradeUpdate) for e in sdk_events[:3])
        assert [e.o.x for e in sdk_events[:3]] == ["NEW", "AMENDMENT", "CANCELED"]
    finally:
        await streams.close_connection(close_session=True)
        await api.close_connection(close_session=True)


async def test_the_sdk_parses_fills_and_account_updates(sim: UsdmSim) -> None:
    client = client_for(sim)
    api = await client.websocket_api.create_connection()
    try:
        listen_key = (await api.start_user_data_stream()).data().result.listen_key
        raw: list[dict[str, Any]] = []
        async with connect(f"{sim.ws_url}/ws/{listen_key}") as ws:
            reader = asyncio.create_task(_collect(ws, raw))
            bid, ask = best(sim)
            for side, price in (("BUY", bid), ("SELL", ask)):  # one of them fills
                await api.new_order(symbol="BTCUSDT", side=side, type="LIMIT",
                                    time_in_force="GTX", quantity=0.005,
                                    price=float(BTC.price_str(price)))
            await until(lambda: any(e["e"] == "ACCOUNT_UPDATE" for e in raw), timeout=30)
            reader.cancel()
        trade = next(OrderTradeUpdate.from_dict(e) for e in raw
                     if e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["x"] == "TRADE")
        assert trade.o.m is True and trade.o.N == "USDT" and Decimal(trade.o.n) > 0
        update = next(AccountUpdate.from_dict(e) for e in raw if e["e"] == "ACCOUNT_UPDATE")
        assert update.a.m == "ORDER" and update.a.B[0].a == "USDT"
        assert Decimal(update.a.B[0].wb) == 10_000 - Decimal(trade.o.n)
        assert Decimal(update.a.B[0].bc) == 0  # no change but the fill's commission
        assert Decimal(update.a.P[0].pa) == Decimal(trade.o.l) * (
            1 if trade.o.S == "BUY" else -1)
    finally:
        await api.close_connection(close_session=True)


async def _collect(ws: Any, out: list[dict[str, Any]]) -> None:
    async for message in ws:
        out.append(orjson.loads(message))
