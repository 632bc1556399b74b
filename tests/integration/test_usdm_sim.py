"""The sim as a Binance USD-M futures venue, through real sockets on 127.0.0.1.

The sim (:class:`~mmdaemon.sim.usdm.UsdmSim`) replays the real USD-M BTCUSDT recording in
this test's loop; clients are plain ``websockets`` connections and HTTP requests that sign
their requests as Binance's documentation says (HMAC-SHA256 over the sorted parameters on
the WebSocket API, over the query string on REST). Every method and error code of the
contract (/work/briefs/usdm-wire.md), the user-data stream's events, fills, positions and
funding, and two symbols at once (the recording rewritten as ETHUSDT, as
tests/process/test_verify_any_symbol.py does).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from mmdaemon.clock import SystemClock
from mmdaemon.exchange.fill_model import fee_units
from mmdaemon.model import BINANCE_USDM_BTCUSDT, Instrument
from mmdaemon.sim.clock import SimClock
from mmdaemon.sim.usdm import UsdmOrderEntry, UsdmSim
from mmdaemon.venues import binance_api as api
from tests.helpers import gz_lines, rewrite, until, write_gz

KEY, SECRET = "usdmKey1", "usdmSecret1"
KEY2, SECRET2 = "usdmKey2", "usdmSecret2"
BTC = BINANCE_USDM_BTCUSDT
SPEED = 10.0  # the 345 s recording in 35 s: fills come within seconds
WALLET = 10_000  # USDT per account
SMALL = "0.005"  # BTC: about 300 USDT notional, above the 100 USDT minimum


class ShiftedClock:
    """The sim's one clock (ms): the wall clock plus an offset the test may move."""

    def __init__(self) -> None:
        self.clock = SystemClock()
        self.offset_ms = 0

    def __call__(self) -> int:
        return self.clock.wall_ns() // 1_000_000 + self.offset_ms


class Venue:
    """A running futures sim and what a test needs to talk to it."""

    def __init__(self, sim: UsdmSim, entry: Any, clock: ShiftedClock) -> None:
        # entry: the sim's UsdmOrderEntry (None for market data alone)
        self.sim, self.entry, self.clock = sim, entry, clock

    def book(self, symbol: str = "BTCUSDT") -> tuple[int, int]:
        book = self.sim.tapes[symbol].market.book
        bid, ask = book.bids.best(), book.asks.best()
        assert bid is not None and ask is not None
        return bid, ask

    def rest(self, method: str, path: str, params: dict[str, Any] | None = None, *,
             key: str | None = None, secret: str | None = None,
             bad_signature: bool = False) -> tuple[int, Any, dict[str, str]]:
        """An HTTP request; signed (timestamp + signature over the query) with ``secret``."""
        query = dict(params or {})
        headers = {}
        if key is not None:
            headers["X-MBX-APIKEY"] = key
        text = urlencode(query)
        if secret is not None:
            query["timestamp"] = self.clock()
            text = urlencode(query)
            signature = hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()
            text += "&signature=" + ("0" * 64 if bad_signature else signature)
        request = urllib.request.Request(f"{self.sim.rest_url}{path}?{text}", method=method,
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, orjson.loads(response.read()), dict(response.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, orjson.loads(exc.read()), dict(exc.headers)

    async def arest(self, *args: Any, **kwargs: Any) -> tuple[int, Any, dict[str, str]]:
        return await asyncio.to_thread(self.rest, *args, **kwargs)


class WsApi:
    """A ``/ws-fapi/v1`` client signing as Binance documents (sorted params, HMAC)."""

    def __init__(self, ws: ClientConnection, clock: Callable[[], int], key: str = KEY,
                 secret: str = SECRET) -> None:
        self.ws, self.clock, self.key, self.secret = ws, clock, key, secret
        self._n = 0

    async def raw(self, frame: dict[str, Any]) -> dict[str, Any]:
        await self.ws.send(orjson.dumps(frame).decode())
        answer: dict[str, Any] = orjson.loads(await asyncio.wait_for(self.ws.recv(), 5))
        return answer

    async def call(self, method: str, *, signed: bool = True, **params: Any) -> dict[str, Any]:
        self._n += 1
        params = {"apiKey": self.key, **params}
        if signed:
            params.setdefault("timestamp", self.clock())
            if "signature" not in params:  # a test may send a wrong one
                params["signature"] = api.sign(self.secret, params)
        answer = await self.raw({"id": f"r{self._n}", "method": method, "params": params})
        assert answer["id"] == f"r{self._n}"
        return answer

    async def ok(self, method: str, **params: Any) -> Any:
        answer = await self.call(method, **params)
        assert answer["status"] == 200, answer
        return answer["result"]

    async def error(self, method: str, **params: Any) -> tuple[int, str]:
        answer = await self.call(method, **params)
        assert answer["status"] != 200, answer
        return answer["error"]["code"], answer["error"]["msg"]


class UserStream:
    """A ``/ws/<listenKey>`` connection collecting the events it receives."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            self.events.append(orjson.loads(message))

    def of(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        """Events of type ``kind`` whose ``o`` (or ``a``) fields match ``match``."""
        out = []
        for event in self.events:
            if event["e"] != kind:
                continue
            body = event.get("o") or event.get("a") or {}
            if all(body.get(k) == v for k, v in match.items()):
                out.append(event)
        return out


async def start_venue(recordings: list[tuple[Instrument, list[Path]]], *,
                      funding_interval_ms: int = 8 * 3_600_000,
                      funding_rate: Fraction = Fraction(1, 10_000),
                      maker_fee_bps: str = "0") -> tuple[UsdmSim, UsdmOrderEntry, ShiftedClock]:
    clock = ShiftedClock()
    entry = UsdmOrderEntry([inst for inst, _ in recordings], {KEY: SECRET, KEY2: SECRET2},
                           Fraction(WALLET), clock, maker_fee_bps=maker_fee_bps,
                           funding_interval_ms=funding_interval_ms, funding_rate=funding_rate)
    sim = UsdmSim(recordings, speed=SPEED, clock=SystemClock(), order_entry=entry)
    return sim, entry, clock


@pytest.fixture
async def venue(usdm_file: Path) -> AsyncIterator[Venue]:
    sim, entry, clock = await start_venue([(BTC, [usdm_file])], maker_fee_bps="2")
    async with sim:
        await until(lambda: sim.tapes["BTCUSDT"].market.book.synced, timeout=20)
        yield Venue(sim, entry, clock)
    assert entry.internal_errors == 0


async def ws_api(venue: Venue, key: str = KEY, secret: str = SECRET) -> WsApi:
    ws = await connect(f"{venue.sim.ws_url}/ws-fapi/v1")
    return WsApi(ws, venue.clock, key, secret)


async def user_stream(venue: Venue, client: WsApi) -> UserStream:
    listen_key = (await client.call("userDataStream.start", signed=False))["result"][
        "listenKey"]
    ws = await connect(f"{venue.sim.ws_url}/ws/{listen_key}")
    return UserStream(ws)


def place_params(side: str, price: int, qty: str = SMALL, inst: Instrument = BTC,
                 **extra: Any) -> dict[str, Any]:
    return {"symbol": inst.symbol, "side": side, "type": "LIMIT", "timeInForce": "GTX",
            "price": inst.price_str(price), "quantity": qty, **extra}


async def open_position(venue: Venue, client: WsApi) -> int:
    """Quote both sides at the touch until one side fills, then cancel the rest: the
    position (lots), not zero (both sides filling leaves none: then again)."""
    ledger = venue.entry.ledger
    for _ in range(5):
        fills = len(ledger.trades[KEY])
        bid, ask = venue.book()
        await client.call("order.place", **place_params("BUY", bid))
        await client.call("order.place", **place_params("SELL", ask))
        await until(lambda before=fills: len(ledger.trades[KEY]) > before,
                    timeout=30)
        status, _, _ = await venue.arest("DELETE", "/fapi/v1/allOpenOrders",
                                         {"symbol": "BTCUSDT"}, key=KEY, secret=SECRET)
        assert status == 200
        amount = ledger.accounts[KEY].positions["BTCUSDT"].amount
        if amount:
            return amount
    raise AssertionError("no position after 5 tries")


# ---- market data --------------------------------------------------------------------------------


async def test_rest_market_data_is_binance_usdm_shaped_with_the_weight_on_every_reply(
        venue: Venue) -> None:
    for limit, levels in ((5, 5), (50, 50), (1000, 1000)):
        status, depth, headers = await venue.arest("GET", "/fapi/v1/depth",
                                                   {"symbol": "BTCUSDT", "limit": limit})
        assert status == 200 and len(depth["bids"]) == levels == len(depth["asks"])
        assert {"lastUpdateId", "E", "T"} <= depth.keys()
        price, qty = depth["bids"][0]
        assert len(price.split(".")[1]) == 2 and len(qty.split(".")[1]) == 3, (price, qty)
        assert int(headers["X-MBX-USED-WEIGHT-1M"]) > 0
    status, body, _ = await venue.arest("GET", "/fapi/v1/depth",
                                        {"symbol": "BTCUSDT", "limit": 7})
    assert status == 400 and body["code"] == -1100
    status, body, _ = await venue.arest("GET", "/fapi/v1/depth", {"symbol": "ETHUSDT"})
    assert status == 400 and body["code"] == -1121
    status, info, headers = await venue.arest("GET", "/fapi/v1/exchangeInfo")
    assert status == 200 and "X-MBX-USED-WEIGHT-1M" in headers
    assert [r["rateLimitType"] for r in info["rateLimits"]] == ["REQUEST_WEIGHT", "ORDERS",
                                                                "ORDERS"]
    (symbol,) = info["symbols"]
    filters = {f["filterType"]: f for f in symbol["filters"]}
    assert (filters["PRICE_FILTER"]["tickSize"], filters["LOT_SIZE"]["stepSize"],
            filters["MIN_NOTIONAL"]["notional"]) == ("0.1", "0.001", "100")
    assert {"MARKET_LOT_SIZE", "PERCENT_PRICE", "MAX_NUM_ORDERS"} <= filters.keys()
    assert (symbol["pricePrecision"], symbol["quantityPrecision"]) == (1, 3)
    assert symbol["orderTypes"] == ["LIMIT"] and symbol["timeInForce"] == ["GTX"]
    before = int(headers["X-MBX-USED-WEIGHT-1M"])
    _, pong, headers = await venue.arest("GET", "/fapi/v1/ping")
    assert pong == {} and int(headers["X-MBX-USED-WEIGHT-1M"]) == before + 1
    _, now, _ = await venue.arest("GET", "/fapi/v1/time")
    assert abs(now["serverTime"] - venue.clock()) < 5_000


async def test_market_data_alone_still_counts_the_request_weight(usdm_file: Path) -> None:
    async with UsdmSim([(BTC, [usdm_file])], speed=SPEED, clock=SystemClock()) as sim:
        await until(lambda: sim.tapes["BTCUSDT"].market.book.synced, timeout=20)
        venue = Venue(sim, None, ShiftedClock())  # no order entry: REST market data only
        used = []
        for path, params in (("/fapi/v1/depth", {"symbol": "BTCUSDT", "limit": 1000}),
                             ("/fapi/v1/ping", {}), ("/fapi/v1/nothing", {})):
            _, _, headers = await venue.arest("GET", path, params)
            used.append(int(headers["X-MBX-USED-WEIGHT-1M"]))
        assert used == [20, 21, 22]  # depth 1000 weighs 20
        status, _, headers = await venue.arest("DELETE", "/fapi/v1/allOpenOrders")
        assert status == 405 and headers["X-MBX-USED-WEIGHT-1M"] == "23"


async def test_depth_streams_carry_the_pu_chain(venue: Venue) -> None:
    async with connect(f"{venue.sim.ws_url}/stream?streams=btcusdt@depth@0ms") as ws:
        diffs = []
        while len(diffs) < 30:
            frame = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            assert frame["stream"] == "btcusdt@depth@0ms"
            diffs.append(frame["data"])
    assert all(b["pu"] == a["u"] for a, b in itertools.pairwise(diffs))


# ---- order entry --------------------------------------------------------------------------------


async def test_place_modify_cancel_and_status_with_their_user_data_events(venue: Venue) -> None:
    client = await ws_api(venue)
    stream = await user_stream(venue, client)
    bid, _ = venue.book()
    price = bid - 50  # 5 USDT under the bid: it rests
    placed = await client.ok("order.place", **place_params(
        "BUY", price, newClientOrderId="mm-1", newOrderRespType="RESULT"))
    order_id = placed["orderId"]
    assert (placed["status"], placed["clientOrderId"], placed["price"], placed["origQty"],
            placed["timeInForce"], placed["reduceOnly"]) == (
        "NEW", "mm-1", BTC.price_str(price), "0.005", "GTX", False)
    await until(lambda: stream.of("ORDER_TRADE_UPDATE", i=order_id, x="NEW") != [])
    # modify in place: same orderId, new price and quantity
    modified = await client.ok("order.modify", symbol="BTCUSDT", orderId=order_id,
                               side="BUY", price=BTC.price_str(price - 10), quantity="0.007")
    assert (modified["orderId"], modified["price"], modified["origQty"]) == (
        order_id, BTC.price_str(price - 10), "0.007")
    await until(lambda: stream.of("ORDER_TRADE_UPDATE", i=order_id, x="AMENDMENT") != [])
    assert await client.error("order.modify", symbol="BTCUSDT", orderId=order_id, side="BUY",
                              price=BTC.price_str(price - 10), quantity="0.007") == (
        -5027, "No need to modify the order.")
    status = await client.ok("order.status", symbol="BTCUSDT", origClientOrderId="mm-1")
    assert (status["orderId"], status["status"], status["origQty"]) == (order_id, "NEW",
                                                                        "0.007")
    _, open_orders, _ = await venue.arest("GET", "/fapi/v1/openOrders", {"symbol": "BTCUSDT"},
                                          key=KEY, secret=SECRET)
    assert [o["orderId"] for o in open_orders] == [order_id]
    cancelled = await client.ok("order.cancel", symbol="BTCUSDT", orderId=order_id)
    assert cancelled["status"] == "CANCELED"
    await until(lambda: stream.of("ORDER_TRADE_UPDATE", i=order_id, x="CANCELED") != [])
    assert await client.error("order.cancel", symbol="BTCUSDT", orderId=order_id) == (
        -2011, "Unknown order sent.")
    assert (await client.ok("order.status", symbol="BTCUSDT", orderId=order_id))[
        "status"] == "CANCELED"
    event = stream.of("ORDER_TRADE_UPDATE", i=order_id, x="CANCELED")[0]["o"]
    assert (event["X"], event["c"], event["f"], event["o"], event["ps"]) == (
        "CANCELED", "mm-1", "GTX", "LIMIT", "BOTH")
    await client.ws.close()
    await stream.ws.close()


async def test_modify_keeps_the_queue_place_on_a_smaller_size_and_loses_it_on_a_new_price(
        venue: Venue) -> None:
    client = await ws_api(venue)
    paper = venue.entry.matchings["BTCUSDT"].venue
    book = venue.sim.tapes["BTCUSDT"].market.book
    venue.sim.pause(30)  # a still market: queue places move only by the modifies
    bid, _ = venue.book()
    placed = await client.ok("order.place", **place_params("BUY", bid, qty="0.010"))
    order_id = placed["orderId"]
    ahead = paper.queue_ahead(order_id)
    assert ahead == book.bids.size_at(bid) > 0  # the back of the displayed level
    smaller = await client.ok("order.modify", symbol="BTCUSDT", orderId=order_id,
                              side="BUY", price=BTC.price_str(bid), quantity="0.006")
    assert smaller["origQty"] == "0.006" and paper.queue_ahead(order_id) == ahead
    lower = bid - 1
    await client.ok("order.modify", symbol="BTCUSDT", orderId=order_id, side="BUY",
                    price=BTC.price_str(lower), quantity="0.006")
    assert paper.queue_ahead(order_id) == book.bids.size_at(lower)
    back = await client.ok("order.modify", symbol="BTCUSDT", orderId=order_id, side="BUY",
                           price=BTC.price_str(bid), quantity="0.006")
    assert back["orderId"] == order_id and paper.queue_ahead(order_id) == ahead
    venue.sim.resume()
    await client.ws.close()


async def test_a_modify_whose_new_price_would_take_ends_the_gtx_order(venue: Venue) -> None:
    """Binance (Modify Order: "the order will be cancelled ... if the original order is GTX
    and the new price would make it execute at once"): not a refused modify that leaves the
    order resting, as for the filters, but the order gone."""
    client = await ws_api(venue)
    stream = await user_stream(venue, client)
    venue.sim.pause(30)  # the book stays where the modify is aimed
    bid, ask = venue.book()
    placed = await client.ok("order.place", **place_params("BUY", bid - 50))
    order_id = placed["orderId"]
    got, _ = await client.error("order.modify", symbol="BTCUSDT", orderId=order_id,
                                side="BUY", price=BTC.price_str(ask), quantity=SMALL)
    assert got == -5022
    await until(lambda: stream.of("ORDER_TRADE_UPDATE", i=order_id, x="EXPIRED") != [])
    assert (await client.ok("order.status", symbol="BTCUSDT", orderId=order_id))[
        "status"] == "EXPIRED"
    _, open_orders, _ = await venue.arest("GET", "/fapi/v1/openOrders", {"symbol": "BTCUSDT"},
                                          key=KEY, secret=SECRET)
    assert open_orders == []
    venue.sim.resume()
    await client.ws.close()
    await stream.ws.close()


async def test_every_refusal_answers_binance_code(venue: Venue) -> None:
    client = await ws_api(venue)
    bid, ask = venue.book()
    cases: list[tuple[str, dict[str, Any], int]] = [
        ("order.place", place_params("BUY", ask), -5022),  # would take: GTX refuses it
        ("order.place", place_params("SELL", bid), -5022),
        ("order.place", place_params("SELL", ask + 10, reduceOnly="true"), -2022),
        ("order.place", place_params("BUY", bid - 10, qty="4"), -2019),  # 12,000 USDT margin
        ("order.place", place_params("BUY", bid - 10, qty="0.001"), -4164),  # 60 USDT
        ("order.place", place_params("BUY", bid - 10, qty="0.0005"), -1111),
        ("order.place", {**place_params("BUY", bid - 10), "symbol": "DOGEUSDT"}, -1121),
        ("order.place", {**place_params("BUY", bid - 10), "side": "UP"}, -1117),
        ("order.place", {**place_params("BUY", bid - 10), "type": "MARKET"}, -1116),
        ("order.place", {**place_params("BUY", bid - 10), "timeInForce": "GTC"}, -1115),
        ("order.place", {k: v for k, v in place_params("BUY", bid).items()
                         if k != "quantity"}, -1102),
        ("order.place", place_params("BUY", bid * 2), -4016),
        ("order.cancel", {"symbol": "BTCUSDT", "orderId": 999_999}, -2011),
        ("order.status", {"symbol": "BTCUSDT", "orderId": 999_999}, -2013),
        ("order.modify", {"symbol": "BTCUSDT", "orderId": 999_999, "side": "BUY",
                          "price": "1", "quantity": "1"}, -2013),
        ("order.status", {"symbol": "BTCUSDT"}, -1102),
    ]
    for method, params, code in cases:
        got, msg = await client.error(method, **params)
        assert got == code, (method, params, got, msg)
    got, msg = await client.error("order.place", **place_params("BUY", ask))
    assert msg == ("Due to the order could not be executed as maker, the Post Only order "
                   "will be rejected.")
    assert await client.error("order.status", symbol="BTCUSDT", orderId=1,
                              timestamp=venue.clock() - 60_000) == (
        -1021, "Timestamp for this request is outside of the recvWindow.")
    answer = await client.call("order.status", symbol="BTCUSDT", orderId=1,
                               timestamp=venue.clock(), signature="0" * 64)
    assert answer["error"]["code"] == -1022
    stranger = WsApi(client.ws, venue.clock, "nobodysKey", "x")
    assert (await stranger.error("order.status", symbol="BTCUSDT", orderId=1))[0] == -2015
    bad = WsApi(client.ws, venue.clock, "bad key!", "x")
    assert (await bad.error("order.status", symbol="BTCUSDT", orderId=1))[0] == -2014
    assert (await client.raw({"id": "x", "method": "order.nothing", "params": {}}))[
        "error"]["code"] == -1100
    assert (await client.raw({"id": "y", "method": "order.place", "params": "x"}))[
        "error"]["code"] == -1102
    await client.ws.send("not json")
    garbage = orjson.loads(await client.ws.recv())
    assert garbage["id"] is None and garbage["status"] == 400
    status, body, headers = await venue.arest("GET", "/fapi/v1/openOrders",
                                              {"symbol": "BTCUSDT"}, key=KEY, secret=SECRET,
                                              bad_signature=True)
    assert (status, body["code"]) == (400, -1022) and "X-MBX-USED-WEIGHT-1M" in headers
    status, body, _ = await venue.arest("GET", "/fapi/v1/openOrders", {"symbol": "BTCUSDT"},
                                        key="nobodysKey", secret="x")
    assert (status, body["code"]) == (401, -2015)
    await client.ws.close()


async def test_the_request_weight_runs_out_with_1003(venue: Venue) -> None:
    venue.entry.protocol.weight_limit = 10
    client = await ws_api(venue)
    codes = [(await client.call("account.status"))["status"] for _ in range(3)]
    assert codes == [200, 200, 429]
    status, body, headers = await venue.arest("GET", "/fapi/v1/positionSide/dual",
                                              key=KEY, secret=SECRET)
    assert (status, body["code"]) == (429, -1003) and int(headers["X-MBX-USED-WEIGHT-1M"]) > 10
    await client.ws.close()


async def test_fills_move_the_position_wallet_trades_and_income(venue: Venue) -> None:
    client = await ws_api(venue)
    stream = await user_stream(venue, client)
    bid, ask = venue.book()
    # both sides at the touch: whichever the market comes to first fills
    await client.ok("order.place", **place_params("BUY", bid, newClientOrderId="b"))
    await client.ok("order.place", **place_params("SELL", ask, newClientOrderId="s"))
    await until(lambda: stream.of("ORDER_TRADE_UPDATE", x="TRADE") != [], timeout=30)
    trade = stream.of("ORDER_TRADE_UPDATE", x="TRADE")[0]["o"]
    await until(lambda: stream.of("ACCOUNT_UPDATE", m="ORDER") != [])
    update = stream.of("ACCOUNT_UPDATE", m="ORDER")[0]["a"]
    signed_qty = Decimal(trade["l"]) * (1 if trade["S"] == "BUY" else -1)
    (position,) = update["P"]
    assert Decimal(position["pa"]) == signed_qty and position["ep"] == trade["L"]
    # 2 bps maker, in the PaperVenue's notional units (0.0001 USDT), as paper trading books it
    units = BTC.ticks.to_units(trade["L"]) * BTC.lots.to_units(trade["l"])
    commission = Decimal(fee_units(units, Fraction(2))) * BTC.tick_size * BTC.lot_size
    assert Decimal(trade["n"]) == commission and trade["m"] is True and trade["N"] == "USDT"
    (balance,) = update["B"]
    # the wallet less the commission; bc, the change other than PnL and commission, is 0
    assert Decimal(balance["wb"]) == WALLET - commission and Decimal(balance["bc"]) == 0
    _, trades, _ = await venue.arest("GET", "/fapi/v1/userTrades", {"symbol": "BTCUSDT"},
                                     key=KEY, secret=SECRET)
    assert trades[0]["id"] == trade["t"] and trades[0]["commission"] == trade["n"]
    assert trades[0]["realizedPnl"] == "0.00000000" and trades[0]["maker"] is True
    (risk,) = (await venue.arest("GET", "/fapi/v2/positionRisk", {"symbol": "BTCUSDT"},
                                 key=KEY, secret=SECRET))[1]
    assert Decimal(risk["positionAmt"]) == Decimal(position["pa"]) and risk["leverage"] == "20"
    _, income, _ = await venue.arest("GET", "/fapi/v1/income", {"incomeType": "COMMISSION"},
                                     key=KEY, secret=SECRET)
    assert Decimal(income[0]["income"]) == -commission
    _, dual, _ = await venue.arest("GET", "/fapi/v1/positionSide/dual", key=KEY, secret=SECRET)
    assert dual == {"dualSidePosition": False}
    # a reduce-only order on the other side is taken now; one that would grow is not
    other = "SELL" if trade["S"] == "BUY" else "BUY"
    far = ask + 100 if other == "SELL" else bid - 100
    assert (await client.call("order.place", **place_params(
        other, far, reduceOnly="true", newClientOrderId="r")))["status"] == 200
    status, body, _ = await venue.arest("DELETE", "/fapi/v1/allOpenOrders",
                                        {"symbol": "BTCUSDT"}, key=KEY, secret=SECRET)
    assert status == 200 and body["code"] == 200
    assert venue.entry.ledger.open_orders(KEY) == []
    account = await client.ok("v2/account.status")
    assert Decimal(account["totalWalletBalance"]) == WALLET - commission
    assert [p["symbol"] for p in account["positions"]] == ["BTCUSDT"]
    await client.ws.close()
    await stream.ws.close()


async def test_funding_is_paid_on_positions_with_an_account_update_and_income(
        usdm_file: Path) -> None:
    sim, entry, clock = await start_venue([(BTC, [usdm_file])], funding_interval_ms=500,
                                          funding_rate=Fraction(1, 1000))
    async with sim:
        await until(lambda: sim.tapes["BTCUSDT"].market.book.synced, timeout=20)
        venue = Venue(sim, entry, clock)
        client = await ws_api(venue)
        stream = await user_stream(venue, client)
        await open_position(venue, client)
        await until(lambda: stream.of("ACCOUNT_UPDATE", m="FUNDING_FEE") != [], timeout=5)
        funding = stream.of("ACCOUNT_UPDATE", m="FUNDING_FEE")[0]["a"]
        # a cross position's funding: the balance alone, as Binance sends it (no "P")
        assert funding["P"] == []
        amount = entry.ledger.accounts[KEY].positions["BTCUSDT"].amount
        paid = Decimal(funding["B"][0]["bc"])
        assert amount != 0 and paid != 0 and (paid < 0) == (amount > 0)  # longs pay
        # |bc| = |amount| x mark x 0.001 with the mark within the recording's prices
        assert Decimal("50") < abs(paid) / abs(amount) / Decimal("0.001") < Decimal("70000")
        _, income, _ = await venue.arest("GET", "/fapi/v1/income",
                                         {"symbol": "BTCUSDT", "incomeType": "FUNDING_FEE"},
                                         key=KEY, secret=SECRET)
        assert Decimal(income[0]["income"]) == paid and income[0]["asset"] == "USDT"
        # booked at a funding time: a multiple of the interval, the event's time too
        event = stream.of("ACCOUNT_UPDATE", m="FUNDING_FEE")[0]
        assert income[0]["time"] % 500 == 0 and income[0]["time"] == event["T"]
        assert len({i["tranId"] for i in income}) == len(income)
        nobody = [e for e in entry.ledger.income[KEY2] if e.income_type == "FUNDING_FEE"]
        assert nobody == []  # no position, no funding
        await client.ws.close()
        await stream.ws.close()


async def test_a_listen_key_not_kept_alive_expires_with_its_event(venue: Venue) -> None:
    client = await ws_api(venue)
    stream = await user_stream(venue, client)
    kept = (await client.call("userDataStream.ping", signed=False))["result"]["listenKey"]
    venue.clock.offset_ms += 61 * 60_000
    await until(lambda: stream.of("listenKeyExpired") != [])
    assert stream.of("listenKeyExpired")[0]["listenKey"] == kept
    await until(lambda: stream.task.done())
    assert (await client.call("userDataStream.ping", signed=False))["error"]["code"] == -1125
    await client.ws.close()


async def test_listen_keys_over_rest_and_the_ws_api_start_keep_alive_and_stop(
        venue: Venue) -> None:
    status, body, headers = await venue.arest("POST", "/fapi/v1/listenKey", key=KEY)
    assert status == 200 and "X-MBX-USED-WEIGHT-1M" in headers
    listen_key = body["listenKey"]
    assert len(listen_key) == 64 and listen_key.isalnum()
    client = await ws_api(venue)
    # one key per account: starting again on the WebSocket API gives the same one
    again = await client.call("userDataStream.start", signed=False)
    assert again["result"]["listenKey"] == listen_key
    assert (await venue.arest("PUT", "/fapi/v1/listenKey", key=KEY))[1] == {
        "listenKey": listen_key}
    stream = UserStream(await connect(f"{venue.sim.ws_url}/ws/{listen_key}"))
    # Binance's newer route for the same stream
    private = UserStream(await connect(f"{venue.sim.ws_url}/private/ws?listenKey={listen_key}"))
    bid, _ = venue.book()
    await client.ok("order.place", **place_params("BUY", bid - 100))
    await until(lambda: stream.of("ORDER_TRADE_UPDATE", x="NEW") != [])
    await until(lambda: private.of("ORDER_TRADE_UPDATE", x="NEW") != [])
    await private.ws.close()
    status, body, _ = await venue.arest("DELETE", "/fapi/v1/listenKey", key=KEY)
    assert (status, body) == (200, {})
    assert (await client.call("userDataStream.ping", signed=False))["error"]["code"] == -1125
    status, body, _ = await venue.arest("POST", "/fapi/v1/listenKey")
    assert (status, body["code"]) == (401, -2014)  # no API key header
    await stream.ws.close()
    await client.ws.close()


async def test_rest_queries_and_cancels_one_order(venue: Venue) -> None:
    client = await ws_api(venue)
    bid, _ = venue.book()
    order_id = (await client.ok("order.place", **place_params(
        "BUY", bid - 100, newClientOrderId="rest-1")))["orderId"]
    status, body, _ = await venue.arest("GET", "/fapi/v1/order",
                                        {"symbol": "BTCUSDT", "origClientOrderId": "rest-1"},
                                        key=KEY, secret=SECRET)
    assert (status, body["orderId"], body["status"], body["avgPrice"]) == (
        200, order_id, "NEW", "0.0")
    status, body, _ = await venue.arest("DELETE", "/fapi/v1/order",
                                        {"symbol": "BTCUSDT", "orderId": order_id},
                                        key=KEY, secret=SECRET)
    assert (status, body["status"]) == (200, "CANCELED")
    status, body, _ = await venue.arest("DELETE", "/fapi/v1/order",
                                        {"symbol": "BTCUSDT", "orderId": order_id},
                                        key=KEY, secret=SECRET)
    assert (status, body["code"]) == (400, -2011)
    # the other account sees none of it
    status, body, _ = await venue.arest("GET", "/fapi/v1/order",
                                        {"symbol": "BTCUSDT", "orderId": order_id},
                                        key=KEY2, secret=SECRET2)
    assert (status, body["code"]) == (400, -2013)
    status, body, _ = await venue.arest("GET", "/fapi/v1/order",
                                        {"symbol": "BTCUSDT", "orderId": "x1"},
                                        key=KEY, secret=SECRET)
    assert (status, body["code"]) == (400, -1100)
    status, body, _ = await venue.arest("PUT", "/fapi/v1/openOrders", key=KEY, secret=SECRET)
    assert status == 405
    await client.ws.close()


async def test_events_on_the_sim_clock_signatures_on_the_signing_clock(
        usdm_file: Path) -> None:
    """A replay running faster than 1x: the venue stamps on its replay clock, a client
    signs with the wall clock; each check reads its own one (as the spot sim's SimClock)."""
    wall = SystemClock()
    ahead_ms = 3_600_000  # the replay clock an hour ahead of the wall clock

    def replay_ms() -> int:
        return wall.wall_ns() // 1_000_000 + ahead_ms

    def wall_ms() -> int:
        return wall.wall_ns() // 1_000_000

    entry = UsdmOrderEntry([BTC], {KEY: SECRET}, Fraction(WALLET), replay_ms,
                           signing_ms=wall_ms)
    async with UsdmSim([(BTC, [usdm_file])], speed=SPEED, clock=wall,
                       order_entry=entry) as sim:
        await until(lambda: sim.tapes["BTCUSDT"].market.book.synced, timeout=20)
        venue = Venue(sim, entry, ShiftedClock())
        _, now, _ = await venue.arest("GET", "/fapi/v1/time")
        assert abs(now["serverTime"] - wall_ms()) < 5_000
        client = await ws_api(venue)  # signs with the wall clock
        stream = await user_stream(venue, client)
        bid, _ = venue.book()
        placed = await client.ok("order.place", **place_params("BUY", bid - 100))
        assert placed["updateTime"] - wall_ms() > ahead_ms - 5_000
        await until(lambda: stream.of("ORDER_TRADE_UPDATE", x="NEW") != [])
        assert stream.of("ORDER_TRADE_UPDATE", x="NEW")[0]["E"] - wall_ms() > ahead_ms - 5_000
        await client.ws.close()
        await stream.ws.close()


# ---- several symbols ----------------------------------------------------------------------------


async def test_two_symbols_from_two_recordings_at_once(usdm_file: Path, tmp_path: Path) -> None:
    eth_path = write_gz(tmp_path / "ethusdt.gz", rewrite(gz_lines(usdm_file), "ETHUSDT"))
    eth = Instrument("ETHUSDT", "0.001", "1", min_notional="5")
    sim, entry, clock = await start_venue([(BTC, [usdm_file]), (eth, [eth_path])])
    async with sim:
        await until(lambda: all(t.market.book.synced for t in sim.tapes.values()), timeout=20)
        venue = Venue(sim, entry, clock)
        _, info, _ = await venue.arest("GET", "/fapi/v1/exchangeInfo")
        assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "ETHUSDT"]
        _, depth, _ = await venue.arest("GET", "/fapi/v1/depth", {"symbol": "ETHUSDT",
                                                                  "limit": 5})
        assert depth["bids"][0][0].count(".") == 1 and len(depth["bids"]) == 5
        async with connect(f"{sim.ws_url}/stream?streams=btcusdt@trade/ethusdt@trade") as ws:
            seen: set[str] = set()
            while seen != {"btcusdt@trade", "ethusdt@trade"}:
                seen.add(orjson.loads(await asyncio.wait_for(ws.recv(), 10))["stream"])
        client = await ws_api(venue)
        stream = await user_stream(venue, client)
        bid, _ = venue.book("ETHUSDT")
        placed = await client.ok("order.place", **place_params("BUY", bid - 100, qty="1",
                                                               inst=eth))
        btc_bid, _ = venue.book()
        other = await client.ok("order.place", **place_params("BUY", btc_bid - 50))
        assert other["orderId"] != placed["orderId"]
        await until(lambda: len(stream.of("ORDER_TRADE_UPDATE", x="NEW")) == 2)
        assert {e["o"]["s"] for e in stream.of("ORDER_TRADE_UPDATE")} == {"BTCUSDT",
                                                                           "ETHUSDT"}
        _, open_orders, _ = await venue.arest("GET", "/fapi/v1/openOrders", key=KEY,
                                              secret=SECRET)
        assert sorted(o["symbol"] for o in open_orders) == ["BTCUSDT", "ETHUSDT"]
        assert (await client.error("order.cancel", symbol="BTCUSDT",
                                   orderId=placed["orderId"]))[0] == -2011
        await client.ws.close()
        await stream.ws.close()
    assert entry.internal_errors == 0


async def test_every_symbol_and_the_order_entry_share_the_sims_one_clock(
        usdm_file: Path, tmp_path: Path) -> None:
    """The recordings' venue times are mapped onto the wall clock by ONE offset: two
    symbols' frames and the order entry's stamps are on the same time line (not 2024's)."""
    eth_path = write_gz(tmp_path / "ethusdt.gz", rewrite(gz_lines(usdm_file), "ETHUSDT"))
    eth = Instrument("ETHUSDT", "0.001", "1", min_notional="5")
    wall = SystemClock()
    sim_clock = SimClock(wall, 1.0)
    entry = UsdmOrderEntry([BTC, eth], {KEY: SECRET}, Fraction(WALLET), sim_clock.now_ms,
                           signing_ms=sim_clock.signing_ms)
    # the tape waits for the subscriber: started before it, the subscription could land
    # between a BTC trade and its ETH copy, and the first trade seen would differ
    async with UsdmSim([(BTC, [usdm_file]), (eth, [eth_path])], speed=1.0, clock=wall,
                       order_entry=entry, sim_clock=sim_clock,
                       wait_for_subscriber=True) as sim:
        async with connect(f"{sim.ws_url}/stream?streams=btcusdt@trade/ethusdt@trade") as ws:
            times: dict[str, int] = {}
            while len(times) < 2:
                frame = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
                times.setdefault(frame["stream"], frame["data"]["T"])
        now_ms = wall.wall_ns() // 1_000_000
        assert all(abs(t - now_ms) < 5_000 for t in times.values()), (times, now_ms)
        # the same trades, rewritten: one offset, so the two symbols' times agree exactly
        assert times["btcusdt@trade"] == times["ethusdt@trade"]
        assert abs(entry.now_ms() - now_ms) < 5_000
