"""The sim as faithful as a client can tell (#21 item 5, spot): one clock, balances, the
venue's formats and headers. A real SimVenue on 127.0.0.1 plays the real recording; real
websocket and HTTP clients talk to it.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

from mmdaemon.clock import SystemClock
from mmdaemon.exchange.fill_model import PaperVenue
from mmdaemon.model import BINANCE_SPOT_BTCUSDT, Side
from mmdaemon.sim.accounts import Account, Ledger
from mmdaemon.sim.orders import OrderEntry
from mmdaemon.sim.server import SimVenue
from mmdaemon.venues import binance_api as api
from tests.helpers import first_lines, until

INSTR = BINANCE_SPOT_BTCUSDT
KEY, SECRET = "fidelityKey", "fidelitySecret"
CREDS = api.Credentials(KEY, SECRET)
PREFIX = "fid"
LOTS = 100_000  # 0.001 BTC


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@asynccontextmanager
async def sim_venue(tmp_path: Path, speed: float | None = 1.0, lines: int = 30000,
                    wait_for_subscriber: bool = True, **entry_kw: Any) -> AsyncIterator[SimVenue]:
    """The sim on the first ``lines`` of the real recording, its order entry on the sim's
    own clock (no ``now_ms`` given, as ``mmdaemon sim`` runs it)."""
    recording = first_lines(tmp_path / "short.gz", lines)
    entry_kw.setdefault("base_balance", "1")
    entry_kw.setdefault("quote_balance", "100000")
    entry = OrderEntry(INSTR, PaperVenue(INSTR, 0, "1", "0"), {KEY: SECRET}, **entry_kw)
    async with SimVenue([recording], INSTR, speed=speed, clock=SystemClock(),
                        order_entry=entry, wait_for_subscriber=wait_for_subscriber) as sim:
        yield sim


class WsApi:
    """A ``/ws-api/v3`` client: requests signed with the wall clock, events collected."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self._n = 0
        self._reader = asyncio.create_task(self._read())
        self._answers: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def _read(self) -> None:
        async for raw in self.ws:
            obj = orjson.loads(raw)
            if "event" in obj:
                self.events.append(obj["event"])
            else:
                self._answers.pop(obj["id"]).set_result(obj)

    async def call(self, frame: bytes) -> dict[str, Any]:
        rid = orjson.loads(frame)["id"]
        future = self._answers[rid] = asyncio.get_running_loop().create_future()
        await self.ws.send(frame.decode())
        return await asyncio.wait_for(future, 10)

    def kw(self) -> dict[str, Any]:
        self._n += 1
        return {"request_id": f"r{self._n}", "creds": CREDS, "timestamp_ms": wall_ms()}

    async def signed(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        kw = self.kw()
        return await self.call(api.signed_request(method, params, kw["request_id"], CREDS,
                                                  kw["timestamp_ms"]))

    async def close(self) -> None:
        self._reader.cancel()
        await self.ws.close()


@asynccontextmanager
async def ws_api(sim: SimVenue) -> AsyncIterator[WsApi]:
    client = WsApi(await connect(f"{sim.ws_url}/ws-api/v3", compression=None))
    try:
        yield client
    finally:
        await client.close()


async def test_a_fill_is_stamped_on_the_time_line_of_the_market_event_that_filled_it(
        tmp_path: Path) -> None:
    frames: list[dict[str, Any]] = []  # every trade and depth update the venue sent
    async with sim_venue(tmp_path, speed=1.0) as sim, ws_api(sim) as client:
        market = await connect(f"{sim.ws_url}/ws/btcusdt@trade/btcusdt@depth@100ms",
                               compression=None)

        async def read_frames() -> None:
            async for raw in market:
                frames.append(orjson.loads(raw))

        reader = asyncio.create_task(read_frames())
        assert (await client.call(api.user_data_subscribe(**client.kw())))["status"] == 200
        book = sim.tape.market.book
        await until(lambda: book.synced and bool(frames), 20)
        seq = 0
        # a buy at the best bid, replaced as the market moves, until it fills
        deadline = time.monotonic() + 60
        while not any(e.get("x") == "TRADE" for e in client.events):
            assert time.monotonic() < deadline, "no fill in 60 s"
            bid = book.bids.best()
            assert bid is not None
            seq += 1
            answer = await client.call(api.order_place(
                INSTR, Side.BUY, bid, LOTS, api.client_order_id(PREFIX, seq), **client.kw()))
            if answer["status"] != 200:
                continue
            placed_wall = wall_ms()
            # one clock: the answer's transactTime is today, not the recording's 2024
            assert abs(answer["result"]["transactTime"] - placed_wall) < 1_000
            await until(lambda placed=bid: any(e.get("x") == "TRADE" for e in client.events)
                        or book.bids.best() != placed, 30)
            if not any(e.get("x") == "TRADE" for e in client.events):
                await client.call(api.order_cancel(INSTR, api.client_order_id(PREFIX, seq),
                                                   **client.kw()))
        fill = next(e for e in client.events if e.get("x") == "TRADE")
        price = Decimal(fill["L"])
        await until(lambda: any(f["E"] > fill["E"] for f in frames), 10)
        reader.cancel()
        await market.close()
    assert abs(fill["E"] - wall_ms()) < 5_000
    # the fill's T is the venue time of the market event that filled it (a trade, or the
    # book moving through our price), exactly as the venue sent that event; its E (when
    # the report went out) is not before it
    assert fill["T"] in {f["E"] for f in frames}
    assert 0 <= fill["E"] - fill["T"] < 1_000
    # never before the public trade that filled it: the last one at or through our price
    trades = [f for f in frames if f["e"] == "trade" and Decimal(f["p"]) <= price
              and f["E"] <= fill["T"]]
    assert trades, fill
    assert fill["T"] >= trades[-1]["T"]
    if trades[-1]["E"] == fill["T"]:  # a trade filled it: the same instant, to the ms
        assert fill["T"] - trades[-1]["T"] < 50


async def test_time_and_the_market_frames_share_the_sim_clock(tmp_path: Path) -> None:
    async with sim_venue(tmp_path, speed=1.0) as sim, ws_api(sim) as client:
        market = await connect(f"{sim.ws_url}/ws/btcusdt@depth@100ms", compression=None)
        frame = orjson.loads(await asyncio.wait_for(market.recv(), 10))
        received = wall_ms()
        answer = await client.call(api.server_time(request_id="t1"))
        rest = await asyncio.to_thread(
            lambda: orjson.loads(urllib.request.urlopen(f"{sim.rest_url}/api/v3/time").read()))
        await market.close()
    assert abs(frame["E"] - received) < 1_000
    assert abs(answer["result"]["serverTime"] - frame["E"]) < 1_000
    assert abs(rest["serverTime"] - wall_ms()) < 1_000


async def synced(sim: SimVenue) -> tuple[int, int]:
    """(best bid, best ask) in ticks once the sim's book is synced."""
    book = sim.tape.market.book
    await until(lambda: book.synced and book.bids.best() is not None
                and book.asks.best() is not None, 20)
    bid, ask = book.bids.best(), book.asks.best()
    assert bid is not None and ask is not None
    return bid, ask


async def balances_of(client: WsApi) -> dict[str, tuple[str, str]]:
    answer = await client.signed(api.ACCOUNT_STATUS, {})
    assert answer["status"] == 200, answer
    return {b["asset"]: (b["free"], b["locked"]) for b in answer["result"]["balances"]}


async def test_orders_beyond_the_free_balance_are_refused_and_open_orders_lock_it(
        tmp_path: Path) -> None:
    # 0.002 BTC to sell; 130 USDT to buy with: about 0.0021 BTC at 61,800
    async with sim_venue(tmp_path, speed=1.0, wait_for_subscriber=False,
                         base_balance="0.002", quote_balance="130") as sim, \
            ws_api(sim) as client:
        bid, ask = await synced(sim)
        far_ask, far_bid = ask + 100_000, bid - 100_000  # +-1,000 USDT: resting, not filled

        async def place(seq: int, side: Side, price: int, lots: int) -> dict[str, Any]:
            return await client.call(api.order_place(
                INSTR, side, price, lots, api.client_order_id(PREFIX, seq), **client.kw()))

        refused = await place(1, Side.SELL, far_ask, 300_000)  # 0.003 BTC > 0.002
        assert refused["status"] == 400
        assert refused["error"] == {"code": -2010, "msg": "Account has insufficient balance "
                                                          "for requested action."}
        assert (await place(2, Side.SELL, far_ask, 200_000))["status"] == 200
        # the open sell locks the 0.002 BTC: the next one has nothing left to sell
        assert (await place(3, Side.SELL, far_ask, 100_000))["error"]["code"] == -2010
        assert await balances_of(client) == {
            "BTC": ("0.00000000", "0.00200000"), "USDT": ("130.00000000", "0.00000000")}
        # a buy needs its notional of the quote asset: one step more than 130 USDT pay for
        step = INSTR.size_step_lots
        lots = int(Decimal(130) / INSTR.notional(far_bid, step)) * step
        assert (await place(4, Side.BUY, far_bid, lots + step))["error"]["code"] == -2010
        assert (await place(5, Side.BUY, far_bid, lots - step))["status"] == 200
        _, locked = (await balances_of(client))["USDT"]
        assert Decimal(locked) == INSTR.notional(far_bid, lots - step)
        # a cancel unlocks
        cancel = await client.call(api.order_cancel(INSTR, api.client_order_id(PREFIX, 2),
                                                    **client.kw()))
        assert cancel["status"] == 200
        assert (await balances_of(client))["BTC"] == ("0.00200000", "0.00000000")
        assert (await place(6, Side.SELL, far_ask, 200_000))["status"] == 200


def test_a_buy_must_pay_its_notional_and_its_fee_from_the_free_quote() -> None:
    assets = api.Assets("BTC", "USDT")
    price, lots = 6_000_000, 100_000  # 0.001 BTC at 60,000: 60 USDT, 60 x 10^10 units
    notional = price * lots

    def ledger(fee_bps: str) -> Ledger:
        return Ledger(INSTR, assets, {KEY: Account(0, notional)}, Fraction(fee_bps))

    assert ledger("0").affordable(KEY, Side.BUY, price, lots)
    assert not ledger("1").affordable(KEY, Side.BUY, price, lots)  # 0.006 USDT short
    assert ledger("-1").affordable(KEY, Side.BUY, price, lots)  # a rebate is no charge
    assert ledger("1").affordable(KEY, Side.BUY, price, lots - INSTR.size_step_lots)


def http_get(url: str) -> tuple[int, dict[str, str], Any]:
    """(status, headers lower-cased, JSON body) of one GET, 4xx/5xx included."""
    try:
        with urllib.request.urlopen(url) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, \
                orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, \
            orjson.loads(exc.read())


async def test_rest_replies_carry_the_weight_used_and_depth_takes_any_limit_to_5000(
        tmp_path: Path) -> None:
    async with sim_venue(tmp_path, speed=1.0, wait_for_subscriber=False) as sim:
        await synced(sim)
        base = f"{sim.rest_url}/api/v3"

        async def get(path: str) -> tuple[int, dict[str, str], Any]:
            return await asyncio.to_thread(http_get, base + path)

        used = []
        for path, weight in (("/ping", 1), ("/time", 1), ("/exchangeInfo", 20),
                             ("/depth?symbol=BTCUSDT&limit=7", 5),
                             ("/depth?symbol=BTCUSDT&limit=101", 25),
                             ("/depth?symbol=BTCUSDT&limit=1000", 50),
                             ("/depth?symbol=BTCUSDT&limit=4999", 250),
                             ("/depth?symbol=BTCUSDT&limit=0", 5),  # refused, still charged
                             ("/nowhere", 1)):
            status, headers, _ = await get(path)
            assert headers["x-mbx-used-weight-1m"] == headers["x-mbx-used-weight"], path
            used.append((path, int(headers["x-mbx-used-weight-1m"])))
            if len(used) > 1:
                assert used[-1][1] - used[-2][1] == weight, used  # one minute, one IP
        status, _, body = await get("/depth?symbol=BTCUSDT&limit=7")
        assert status == 200 and len(body["bids"]) == len(body["asks"]) == 7
        # the book's levels: 8 decimals as Binance prints them
        assert all(len(p.partition(".")[2]) == 8 == len(q.partition(".")[2])
                   for p, q in body["bids"] + body["asks"])
        status, _, body = await get("/depth?symbol=BTCUSDT&limit=0")
        assert status == 400 and body["code"] == -1100 and "1 to 5000" in body["msg"]
        # the WebSocket API's weight is the same IP's
        async with ws_api(sim) as client:
            answer = await client.call(api.server_time(request_id="w"))
        status, headers, _ = await get("/ping")
        assert answer["rateLimits"][0]["count"] + 1 == int(headers["x-mbx-used-weight-1m"])


async def test_exchange_info_describes_what_the_sim_accepts(tmp_path: Path) -> None:
    async with sim_venue(tmp_path, speed=1.0, wait_for_subscriber=False) as sim, \
            ws_api(sim) as client:
        bid, _ = await synced(sim)
        _, _, info = await asyncio.to_thread(http_get, f"{sim.rest_url}/api/v3/exchangeInfo")
        assert info["rateLimits"] == [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                                       "intervalNum": 1, "limit": 6000}]
        (symbol,) = info["symbols"]
        assert symbol["cancelReplaceAllowed"] is True
        filters = {f["filterType"]: f for f in symbol["filters"]}

        async def code(order_type: str, price: str, qty: str) -> int:
            params = {"symbol": "BTCUSDT", "side": "BUY", "type": order_type,
                      "price": price, "quantity": qty}
            answer = await client.signed(api.ORDER_PLACE, params)
            return int(answer["status"] == 200 or answer["error"]["code"])

        far = INSTR.price_str(bid - 100_000)
        # the order types listed are accepted, the others refused
        assert symbol["orderTypes"] == ["LIMIT_MAKER"]
        assert await code("LIMIT_MAKER", far, "0.001") == 1
        assert await code("LIMIT", far, "0.001") == api.UNSUPPORTED_OPERATION
        # every filter's bounds, as listed, enforced: just inside passes, just outside fails
        price, lot, notional = (filters["PRICE_FILTER"], filters["LOT_SIZE"],
                                filters["NOTIONAL"])
        tick, step = Decimal(price["tickSize"]), Decimal(lot["stepSize"])
        assert await code("LIMIT_MAKER", str(Decimal(far) + tick / 2), "0.001") == -1013
        assert await code("LIMIT_MAKER", price["maxPrice"], "0.00001") == -2010  # it checked
        assert await code("LIMIT_MAKER", str(Decimal(price["maxPrice"]) + tick),
                          "0.00001") == -1013
        assert await code("LIMIT_MAKER", far, str(Decimal("0.001") + step / 2)) == -1013
        assert await code("LIMIT_MAKER", "20.00", lot["maxQty"]) == -2010  # 180,000 USDT
        assert await code("LIMIT_MAKER", "20.00", str(Decimal(lot["maxQty"]) + step)) == -1013
        min_qty = Decimal(notional["minNotional"]) / Decimal(far)
        under = (min_qty // step) * step
        assert await code("LIMIT_MAKER", far, str(under)) == -1013
        assert await code("LIMIT_MAKER", far, str(under + step)) == 1
        assert Decimal(lot["minQty"]) == INSTR.lots.to_decimal(INSTR.min_size_lots)
