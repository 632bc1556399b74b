"""The USD-M futures gateway over real loopback connections, against a venue speaking the
contract's subset of Binance USD-M (``/work/briefs/usdm-wire.md``).

Until the sim serves USD-M (issue #21 item 2, built in parallel), the venue here is a small
aiohttp server on 127.0.0.1 that keeps the venue's state the way Binance does: orders by
``orderId``, in-place modify, the account's trades and FUNDING_FEE income, listen keys and
their streams, HMAC signatures checked on every signed request (WebSocket API and REST).
Nothing is mocked on the client side: the gateway the daemon runs, its connections, REST
session and timers are real.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from aiohttp import WSMsgType, web

from mmdaemon.exchange.base import VenueRefused
from mmdaemon.exchange.usdm_gateway import UsdmGateway, UsdmSettings
from mmdaemon.model import (
    BINANCE_USDM_BTCUSDT,
    Balances,
    Fill,
    Funding,
    OrderStatus,
    OrderUpdate,
    Side,
    VenueEvent,
)
from mmdaemon.sim import wire
from mmdaemon.venues import binance_api as api
from tests.helpers import until
from tests.integration.test_gateway import CaptureLog
from tests.process.test_record_sim_cli import free_port

INSTR = BINANCE_USDM_BTCUSDT
KEY, SECRET = "usdmTestKey1", "usdm-secret-Qx7-never-in-a-log"
PRICE = 600_000  # 60,000.0 USDT
T0_MS = 1_723_075_200_000


class Venue:
    """The venue's side of the contract, with its state open to the tests."""

    def __init__(self) -> None:
        self.orders: dict[int, dict[str, Any]] = {}  # orderId -> order object
        self.trades: list[dict[str, Any]] = []
        self.income: list[dict[str, Any]] = []
        self.keys: list[str] = []  # listen keys handed out, oldest first
        self.streams: dict[str, list[web.WebSocketResponse]] = {}
        self.api_sockets: list[web.WebSocketResponse] = []
        self.methods: list[str] = []  # WebSocket API methods, in arrival order
        self.params: list[dict[str, Any]] = []
        self.rest: list[tuple[str, str]] = []  # HTTP method, path
        self.dual = False
        self.income_failures = 0  # income requests still to answer with a server error
        self.silent = False  # events are not pushed (a stream that is down)
        self._ids = itertools.count(8_000_001)
        self._trade_ids = itertools.count(11)
        self.now_ms = T0_MS

    # ---- what the tests do to the venue -------------------------------------------------------

    def add_order(self, client_id: str, side: str, price: int, qty: int) -> dict[str, Any]:
        vid = next(self._ids)
        order = {"orderId": vid, "symbol": "BTCUSDT", "status": "NEW",
                 "clientOrderId": client_id, "price": INSTR.price_str(price),
                 "avgPrice": "0", "origQty": INSTR.size_str(qty), "executedQty": "0.000",
                 "cumQty": "0.000", "cumQuote": "0", "timeInForce": "GTX", "type": "LIMIT",
                 "reduceOnly": False, "closePosition": False, "side": side,
                 "positionSide": "BOTH", "stopPrice": "0", "workingType": "CONTRACT_PRICE",
                 "priceProtect": False, "origType": "LIMIT", "priceMatch": "NONE",
                 "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0,
                 "time": self.tick(), "updateTime": self.now_ms}
        self.orders[vid] = order
        return order

    def tick(self) -> int:
        self.now_ms += 1
        return self.now_ms

    async def fill(self, vid: int, qty: int) -> int:
        """Our order ``vid`` makes ``qty`` lots; the trade id."""
        order = self.orders[vid]
        executed = INSTR.lots.to_units(order["executedQty"]) + qty
        total = INSTR.lots.to_units(order["origQty"])
        order["executedQty"] = INSTR.size_str(executed)
        order["status"] = "FILLED" if executed >= total else "PARTIALLY_FILLED"
        order["updateTime"] = self.tick()
        trade_id = next(self._trade_ids)
        self.trades.append({
            "buyer": order["side"] == "BUY", "commission": "0.12000000",
            "commissionAsset": "USDT", "id": trade_id, "maker": True, "orderId": vid,
            "price": order["price"], "qty": INSTR.size_str(qty), "quoteQty": "600.0",
            "realizedPnl": "0", "side": order["side"], "positionSide": "BOTH",
            "symbol": "BTCUSDT", "time": self.now_ms})
        await self.push_order(order, "TRADE", last=qty, trade_id=trade_id)
        return trade_id

    async def funding(self, bc: str) -> int:
        """A funding payment of ``bc`` USDT; its time (the funding id)."""
        ms = self.tick()
        self.income.append({"symbol": "BTCUSDT", "incomeType": "FUNDING_FEE", "income": bc,
                            "asset": "USDT", "info": "", "time": ms,
                            "tranId": len(self.income) + 1, "tradeId": ""})
        await self.push({"e": "ACCOUNT_UPDATE", "E": ms, "T": ms, "a": {
            "m": "FUNDING_FEE", "B": [{"a": "USDT", "wb": "1", "cw": "1", "bc": bc}],
            "P": []}})
        return ms

    async def drop_streams(self) -> None:
        for sockets in self.streams.values():
            for ws in list(sockets):
                await ws.close()

    def open_orders(self) -> list[dict[str, Any]]:
        return [o for o in self.orders.values() if o["status"] in ("NEW", "PARTIALLY_FILLED")]

    # ---- events -------------------------------------------------------------------------------

    async def push(self, event: dict[str, Any]) -> None:
        if self.silent or not self.keys:
            return
        for ws in list(self.streams.get(self.keys[-1], [])):
            if not ws.closed:
                await ws.send_bytes(orjson.dumps(event))

    async def push_order(self, order: dict[str, Any], execution: str, *, last: int = 0,
                         trade_id: int = 0) -> None:
        await self.push({"e": "ORDER_TRADE_UPDATE", "E": self.now_ms, "T": self.now_ms, "o": {
            "s": "BTCUSDT", "c": order["clientOrderId"], "S": order["side"], "o": "LIMIT",
            "f": "GTX", "q": order["origQty"], "p": order["price"], "ap": "0", "sp": "0",
            "x": execution, "X": order["status"], "i": order["orderId"],
            "l": INSTR.size_str(last), "z": order["executedQty"],
            "L": order["price"] if last else "0", "N": "USDT",
            "n": "0.12000000" if last else "0", "T": self.now_ms, "t": trade_id, "b": "0",
            "a": "0", "m": True, "R": order["reduceOnly"], "wt": "CONTRACT_PRICE",
            "ot": "LIMIT", "ps": "BOTH", "cp": False, "rp": "0", "pP": False, "si": 0,
            "ss": 0, "V": "EXPIRE_MAKER", "pm": "NONE", "gtd": 0}})

    # ---- the WebSocket API --------------------------------------------------------------------

    async def ws_api(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.api_sockets.append(ws)
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            frame = orjson.loads(msg.data)
            params = frame.get("params", {})
            self.methods.append(frame["method"])
            self.params.append(params)
            if "signature" in params and not wire.verify_signature(SECRET, params):
                answer = {"status": 400, "error": {"code": -1022, "msg": "Signature for this "
                                                   "request is not valid."}}
            else:
                answer = await self.answer(frame["method"], params)
            await ws.send_bytes(orjson.dumps({"id": frame["id"], **answer, "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": 2400, "count": 5}]}))
        return ws

    def find(self, params: dict[str, Any]) -> dict[str, Any] | None:
        if "orderId" in params:
            return self.orders.get(int(params["orderId"]))
        for order in self.orders.values():
            if order["clientOrderId"] == params.get("origClientOrderId"):
                return order
        return None

    async def answer(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "userDataStream.start":
            self.keys.append(f"listenKey{len(self.keys) + 1:04d}")
            return {"status": 200, "result": {"listenKey": self.keys[-1]}}
        if method == "userDataStream.ping":
            return {"status": 200, "result": {"listenKey": self.keys[-1]}}
        if method == "order.place":
            assert (params["type"], params["timeInForce"]) == ("LIMIT", "GTX")
            order = self.add_order(params["newClientOrderId"], params["side"],
                                   INSTR.ticks.to_units(params["price"]),
                                   INSTR.lots.to_units(params["quantity"]))
            order["reduceOnly"] = params["reduceOnly"] == "true"
            await self.push_order(order, "NEW")
            return {"status": 200, "result": dict(order)}
        order = self.find(params)
        if method == "order.modify":
            if order is None or order not in self.open_orders():
                return {"status": 400, "error": {"code": -2013, "msg": "Order does not exist."}}
            order.update(price=params["price"], origQty=params["quantity"],
                         updateTime=self.tick())
            await self.push_order(order, "AMENDMENT")
            return {"status": 200, "result": dict(order)}
        if method == "order.cancel":
            if order is None or order not in self.open_orders():
                return {"status": 400, "error": {"code": -2011, "msg": "Unknown order sent."}}
            order.update(status="CANCELED", updateTime=self.tick())
            await self.push_order(order, "CANCELED")
            return {"status": 200, "result": dict(order)}
        if method == "order.status":
            if order is None:
                return {"status": 400, "error": {"code": -2013, "msg": "Order does not exist."}}
            return {"status": 200, "result": dict(order)}
        if method == "v2/account.status":
            return {"status": 200, "result": {"assets": [
                {"asset": "USDT", "walletBalance": "10000.0", "availableBalance": "9000.5"}],
                "positions": []}}
        if method == "account.position":
            return {"status": 200, "result": [{"symbol": "BTCUSDT", "positionAmt": "0.000",
                                               "leverage": "20", "positionSide": "BOTH"}]}
        return {"status": 400, "error": {"code": -1102, "msg": f"unknown method {method}"}}

    # ---- REST and the user-data stream --------------------------------------------------------

    async def http(self, request: web.Request) -> web.StreamResponse:
        self.rest.append((request.method, request.path))
        params = dict(request.query)
        if request.headers.get("X-MBX-APIKEY") != KEY or not wire.verify_signature(SECRET,
                                                                                  params):
            return web.json_response({"code": -1022, "msg": "Signature for this request is "
                                                            "not valid."}, status=400)
        path = request.path
        if path == "/fapi/v1/positionSide/dual":
            body: Any = {"dualSidePosition": self.dual}
        elif path == "/fapi/v1/openOrders":
            body = [dict(o) for o in self.open_orders()]
        elif path == "/fapi/v1/allOpenOrders":
            for order in self.open_orders():
                order.update(status="CANCELED", updateTime=self.tick())
                await self.push_order(order, "CANCELED")
            body = {"code": 200, "msg": "The operation of cancel all open order is done."}
        elif path == "/fapi/v1/userTrades":
            trades = [t for t in self.trades if t["id"] >= int(params.get("fromId", 0))
                      and ("orderId" not in params or t["orderId"] == int(params["orderId"]))]
            body = trades[-int(params["limit"]):] if "fromId" not in params else trades
        elif path == "/fapi/v1/income" and self.income_failures > 0:
            self.income_failures -= 1
            return web.json_response({"code": -1001, "msg": "Internal error; unable to "
                                                            "process your request."}, status=500)
        elif path == "/fapi/v1/income":
            body = [i for i in self.income if i["time"] >= int(params.get("startTime", 0))]
        else:
            return web.json_response({"code": -1102, "msg": "unknown path"}, status=404)
        return web.json_response(body, headers={"X-MBX-USED-WEIGHT-1M": "7"})

    async def user_stream(self, request: web.Request) -> web.WebSocketResponse:
        key = request.match_info["key"]
        ws = web.WebSocketResponse()
        if key not in self.keys:
            raise web.HTTPBadRequest()
        await ws.prepare(request)
        self.streams.setdefault(key, []).append(ws)
        async for _ in ws:
            pass
        return ws


@asynccontextmanager
async def serving(venue: Venue) -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_get("/ws-fapi/v1", venue.ws_api)
    app.router.add_get("/ws/{key}", venue.user_stream)
    app.router.add_route("*", "/fapi/{tail:.*}", venue.http)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield port
    finally:
        await runner.cleanup()


@asynccontextmanager
async def running(venue: Venue, *, start: bool = True, **kw: Any
                  ) -> AsyncIterator[tuple[UsdmGateway, list[VenueEvent]]]:
    async with serving(venue) as port:
        settings = UsdmSettings(ws_api_url=f"ws://127.0.0.1:{port}/ws-fapi/v1",
                                client_prefix="mm", rest_url=f"http://127.0.0.1:{port}",
                                user_stream_url=f"ws://127.0.0.1:{port}/ws",
                                backoff_initial_s=0.05, backoff_max_s=0.2,
                                request_timeout_s=2.0, **kw)
        gw = UsdmGateway(settings, INSTR, api.Credentials(KEY, SECRET),
                         CaptureLog())
        events: list[VenueEvent] = []
        gw.set_listener(events.append)
        try:
            if start:
                await asyncio.wait_for(gw.start(), 10)
            yield gw, events
        finally:
            await gw.close(2.0)


def of(events: list[VenueEvent], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


async def test_places_amends_fills_funds_and_cancels_all_against_the_venue() -> None:
    venue = Venue()
    async with running(venue) as (gw, events):
        # start read the account: available margin in 1e-4 USDT units, the leverage
        assert of(events, Balances) == [Balances(None, 90_005_000, 20, of(events, Balances)[0]
                                                 .ts_ns)]
        assert venue.rest[0] == ("GET", "/fapi/v1/positionSide/dual")
        await gw.place(1, Side.BUY, PRICE, 10)
        await gw.place(2, Side.SELL, PRICE + 50, 5, reduce_only=True)
        await until(lambda: len(venue.open_orders()) == 2 and len(of(events, OrderUpdate)) >= 2)
        assert [p.get("reduceOnly") for p in venue.params if "newClientOrderId" in p] == [
            "false", "true"]
        vid = venue.open_orders()[0]["orderId"]
        await gw.amend(1, PRICE - 2, 12)
        await until(lambda: venue.orders[vid]["origQty"] == "0.012" and of(
            events, OrderUpdate)[-1].size == 12)
        assert of(events, OrderUpdate)[-1] == OrderUpdate(
            1, OrderStatus.NEW, Side.BUY, PRICE - 2, 12, 0, "",
            of(events, OrderUpdate)[-1].ts_ns)
        assert venue.orders[vid]["price"] == "59999.8"  # in place: the same orderId
        trade_id = await venue.fill(vid, 4)
        fid = await venue.funding("-0.01234567")
        await until(lambda: of(events, Fill) and of(events, Funding))
        assert of(events, Fill) == [Fill(1, Side.BUY, PRICE - 2, 4, 1_200, True,
                                         of(events, Fill)[0].ts_ns, trade_id)]
        assert of(events, Funding) == [Funding(-124, fid * 1_000_000, fid)]
        # the ACCOUNT_UPDATE makes the gateway re-read the balances
        await until(lambda: len(of(events, Balances)) == 2)
        count = await gw.cancel_all()
        assert count == 2 and venue.open_orders() == [] and gw.open_order_count() == 0
        # cancelled all, then confirmed by listing none (and the fills up to then read)
        assert venue.rest[-4:] == [("GET", "/fapi/v1/openOrders"),
                                   ("DELETE", "/fapi/v1/allOpenOrders"),
                                   ("GET", "/fapi/v1/openOrders"),
                                   ("GET", "/fapi/v1/userTrades")]


async def test_start_cancels_strays_and_recovers_missed_fills_and_funding_once() -> None:
    venue = Venue()
    stray = venue.add_order(api.client_order_id("mm", 77), "BUY", PRICE, 10)
    other = venue.add_order("web_manual_1", "BUY", PRICE - 100, 10)
    await venue.fill(stray["orderId"], 3)  # while the daemon was down
    missed = await venue.funding("0.5")
    async with running(venue, start=False) as (gw, events):
        gw.resume_fills_after(10)
        gw.resume_funding_after(missed - 1)
        await asyncio.wait_for(gw.start(), 10)
        assert of(events, Fill) == [Fill(77, Side.BUY, PRICE, 3, 1_200, True,
                                         of(events, Fill)[0].ts_ns, 11)]
        assert of(events, Funding) == [Funding(5_000, missed * 1_000_000, missed)]
        await until(lambda: stray["status"] == "CANCELED")
        assert other["status"] == "NEW"  # another client's order is not ours to cancel
        assert gw.fills_recovered == 1 and gw.funding_recovered == 1


async def test_a_dropped_user_stream_reconnects_with_a_new_key_and_recovers_the_gap() -> None:
    venue = Venue()
    async with running(venue) as (gw, events):
        await gw.place(1, Side.BUY, PRICE, 10)
        await until(lambda: len(venue.open_orders()) == 1 and of(events, OrderUpdate))
        vid = venue.open_orders()[0]["orderId"]
        venue.silent = True  # what happens now reaches nobody
        await venue.drop_streams()
        trade_id = await venue.fill(vid, 10)
        venue.silent = False
        await until(lambda: gw.connects == 2 and bool(gw.status and gw.status.ready))
        assert len(venue.keys) == 2  # a new listen key for the new connection
        await until(lambda: bool(of(events, Fill)))
        assert [f.exec_id for f in of(events, Fill)] == [trade_id]
        assert of(events, OrderUpdate)[-1].status is OrderStatus.FILLED


async def test_a_listen_key_expiry_reconnects_and_the_key_is_pinged() -> None:
    venue = Venue()
    async with running(venue, listen_key_keepalive_s=0.05) as (gw, _):
        await until(lambda: "userDataStream.ping" in venue.methods)
        await venue.push({"e": "listenKeyExpired", "E": venue.tick(),
                          "listenKey": venue.keys[-1]})
        await until(lambda: gw.connects == 2 and len(venue.keys) == 2)


async def test_hedge_mode_refuses_start_naming_the_fix() -> None:
    venue = Venue()
    venue.dual = True
    async with running(venue, start=False) as (gw, _):
        with pytest.raises(VenueRefused, match="one-way position mode"):
            await asyncio.wait_for(gw.start(), 10)
        assert gw.status is not None and gw.status.reason.startswith("refused: ")


async def test_a_dropped_api_connection_moves_the_user_stream_to_the_new_listen_key() -> None:
    venue = Venue()  # it sends events on the newest key's streams only
    async with running(venue) as (gw, events):
        await gw.place(1, Side.BUY, PRICE, 10)
        await until(lambda: len(venue.open_orders()) == 1 and bool(of(events, OrderUpdate)))
        vid = venue.open_orders()[0]["orderId"]
        for ws in list(venue.api_sockets):
            await ws.close()
        await until(lambda: gw.connects == 2 and bool(gw.status and gw.status.ready))
        assert len(venue.keys) == 2 and len(venue.streams.get(venue.keys[-1], [])) == 1
        trade_id = await venue.fill(vid, 10)  # reported on the new key's stream only
        await until(lambda: bool(of(events, Fill)))
        assert [f.exec_id for f in of(events, Fill)] == [trade_id]


async def test_a_funding_payment_whose_income_read_failed_is_booked_without_another_event(
        ) -> None:
    """The FUNDING_FEE event is the only word of a payment while connected: a failed read
    of the income it asks for is tried again, not left for the next fill or reconnect."""
    venue = Venue()
    async with running(venue) as (_gw, events):
        venue.income_failures = 2
        fid = await venue.funding("-0.5")
        await until(lambda: bool(of(events, Funding)), timeout=5)
        assert of(events, Funding) == [Funding(-5_000, fid * 1_000_000, fid)]
        assert venue.income_failures == 0
