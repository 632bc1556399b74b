"""A Binance client written by someone else uses the sim (issue #5).

ccxt.pro's ``binance.watch_order_book`` loads markets from ``/api/v3/exchangeInfo``, opens a
raw stream connection ``/ws/0``, sends ``{"method": "SUBSCRIBE", "params":
["btcusdt@depth@100ms"], "id": 1}``, buffers the raw ``depthUpdate`` payloads, fetches
``/api/v3/depth?limit=1000`` and applies Binance's spot sync rules (drop ``u <= lastUpdateId``,
the first diff must straddle ``lastUpdateId + 1``, then each ``U`` must be the previous
``u + 1``). If the sim's raw streams, snapshots or exchange info were wrong anywhere, ccxt's
book would drift from the sim's own or ccxt would raise.

ccxt is not a dependency of the project: that test skips when it is not installed. The
stream-control tests below it use only ``websockets`` and always run.
"""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from mmdaemon.clock import SystemClock
from mmdaemon.model import BINANCE_SPOT_BTCUSDT, Level
from mmdaemon.sim.server import SimVenue
from tests.helpers import first_lines, until

DEPTH = "btcusdt@depth@100ms"
TRADE = "btcusdt@trade"
TOP = 20  # levels compared per side


@pytest.fixture(scope="module")
def short_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first ~53 s of the real recording (snapshot at line 8): ~5 s at speed 10."""
    return first_lines(tmp_path_factory.mktemp("sim_ccxt") / "short.gz", 6000)


def recorded_payloads(path: Path) -> dict[str, set[str]]:
    """Each stream's recorded ``data`` objects, as text exactly as recorded."""
    out: dict[str, set[str]] = {}
    with gzip.open(path, "rb") as f:
        for line in f:
            frame = orjson.loads(line.split(b" ", 1)[1])
            if "stream" in frame:
                # the envelope is {"stream":"<name>","data":<payload>}: strip it textually
                text = line.split(b" ", 1)[1].rstrip(b"\r\n")
                head = b'{"stream":"' + frame["stream"].encode() + b'","data":'
                assert text.startswith(head) and text.endswith(b"}")
                out.setdefault(frame["stream"], set()).add(text[len(head):-1].decode())
    return out




def _is_loopback(host: object) -> bool:
    if host in (None, "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Refuse (and list) every name lookup and connection that is not to loopback.

    A guard against a URL we forgot to point at the sim: ccxt would otherwise reach the
    real Binance. Failures are also recorded, because ccxt may swallow and retry errors.
    """
    attempts: list[str] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(address: Any) -> None:
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            attempts.append(f"connect {address!r}")
            raise ConnectionRefusedError(f"test: no network beyond loopback ({address!r})")

    def guarded_connect(self: socket.socket, address: Any) -> None:
        check(address)
        real_connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_loopback(host.decode() if isinstance(host, bytes) else host):
            attempts.append(f"getaddrinfo {host!r}")
            raise socket.gaierror(f"test: no name lookups beyond loopback ({host!r})")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    yield attempts


def point_at_sim(exchange: Any, sim: SimVenue) -> None:
    """Every URL in ``exchange.urls['api']`` to the sim: spot REST and streams where ccxt
    expects them, anything else to a path the sim answers 404 (never a real host)."""

    def redirect(node: dict[str, Any], base: str, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                redirect(value, base, f"{prefix}/{key}")
            elif isinstance(value, str):
                node[key] = f"{base}/unsupported{prefix}/{key}"

    api = exchange.urls["api"]
    ws = api.pop("ws")
    redirect(api, sim.rest_url, "")
    redirect(ws, sim.ws_url, "")
    api["ws"] = ws
    api["public"] = api["private"] = f"{sim.rest_url}/api/v3"
    api["v1"] = f"{sim.rest_url}/api/v1"
    ws["spot"] = ws["margin"] = f"{sim.ws_url}/ws"
    ws["ws-api"]["spot"] = f"{sim.ws_url}/ws-api/v3"


def all_urls(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from all_urls(value)
    elif isinstance(node, str):
        yield node


def ccxt_levels(side: list[list[float]], n: int) -> list[Level]:
    """ccxt's float ``[price, amount]`` levels as integer (ticks, lots)."""
    tick = float(BINANCE_SPOT_BTCUSDT.tick_size)
    lot = float(BINANCE_SPOT_BTCUSDT.lot_size)
    return [(round(price / tick), round(amount / lot)) for price, amount, *_ in side[:n]]


async def test_ccxt_pro_maintains_the_sims_order_book(
    short_recording: Path, loopback_only: list[str]
) -> None:
    ccxtpro = pytest.importorskip(
        "ccxt.pro", reason="ccxt is not installed: pip install ccxt to run the third-party "
        "client test")
    async with SimVenue([short_recording], BINANCE_SPOT_BTCUSDT, speed=10.0,
                        clock=SystemClock()) as sim:
        # the sim's top of book at every update id, to compare ccxt's at the same id
        book = sim.tape.market.book
        history: dict[int, tuple[list[Level], list[Level]]] = {}

        def remember(_recv_ns: int, _frame: bytes) -> None:
            if book.synced and book.last_id not in history:
                history[book.last_id] = (book.bids.top(TOP), book.asks.top(TOP))

        sim.tape.on_frame = remember
        await until(lambda: book.synced)  # a real venue's book is always ready

        exchange = ccxtpro.binance({"options": {
            "defaultType": "spot",
            "fetchMarkets": {"types": ["spot"]},  # only /api/v3/exchangeInfo
            "fetchCurrencies": False,  # /sapi: private, not in the sim
            "fetchMargins": False,  # /sapi margin pairs
        }})
        point_at_sim(exchange, sim)
        stray = [u for u in all_urls(exchange.urls["api"])
                 if not u.startswith((sim.rest_url + "/", sim.ws_url + "/"))]
        assert not stray, f"URLs not pointed at the sim: {stray}"
        nonces: list[int] = []
        compared = 0

        async def watch() -> int:
            """One update from ccxt, checked against the sim's book at the same id."""
            nonlocal compared
            ob = await asyncio.wait_for(exchange.watch_order_book("BTC/USDT"), 5.0)
            nonce: int = ob["nonce"]
            if nonce in history:
                bids, asks = history[nonce]
                assert ccxt_levels(ob["bids"], TOP) == bids, f"bids differ at {nonce}"
                assert ccxt_levels(ob["asks"], TOP) == asks, f"asks differ at {nonce}"
                compared += 1
            return nonce

        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 2.0  # ~20 s of market; the tape lasts ~5 s
            while loop.time() < deadline:
                nonces.append(await watch())
            assert exchange.markets["BTC/USDT"]["precision"]["price"] == 0.01
            # ccxt subscribed on a raw connection, and only to the diff stream
            (subscribed,) = [s for ws, s in sim.tape.subscribers.items() if ws in sim.tape.raw]
            assert subscribed == {DEPTH}

            # a gap (the sim withholds one diff): ccxt notices the broken U/u chain...
            sim.tape.skip_depth_updates(1)
            with pytest.raises(ccxtpro.ChecksumError):
                for _ in range(50):
                    await watch()
            # ...and the next watch subscribes again and resyncs from a fresh snapshot
            resynced = [await watch() for _ in range(10)]
            assert resynced == sorted(set(resynced)) and resynced[0] > nonces[-1] + 1
        finally:
            await exchange.close()
    assert not loopback_only, f"ccxt tried to leave loopback: {loopback_only}"
    # one update per watch, every one in order; compared with the sim at most of them
    assert len(nonces) >= 15 and nonces == sorted(set(nonces))
    assert compared >= 0.8 * (len(nonces) + len(resynced)), (compared, len(nonces))


# -- the stream-control protocol, with a plain websockets client ----------------------------


async def request(ws: ClientConnection, payload: Any, seen: list[Any] | None = None) -> Any:
    """Send one request (a dict, or text as is); the reply, keeping stream events in seen."""
    await ws.send(payload if isinstance(payload, str) else orjson.dumps(payload).decode())
    while True:
        message = orjson.loads(await asyncio.wait_for(ws.recv(), 5.0))
        if isinstance(message, dict) and "id" in message and (
            "result" in message or "error" in message
        ):
            return message
        if seen is not None:
            seen.append(message)


async def test_raw_streams_subscribe_list_unsubscribe_and_switch_to_combined(
    short_recording: Path,
) -> None:
    payloads = recorded_payloads(short_recording)
    async with SimVenue([short_recording], BINANCE_SPOT_BTCUSDT, speed=10.0,
                        clock=SystemClock()) as sim, connect(f"{sim.ws_url}/ws/0") as ws:
        assert await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1}) == {
            "result": [], "id": 1}
        assert await request(ws, {"method": "SUBSCRIBE", "params": [DEPTH, TRADE],
                                  "id": 2}) == {"result": None, "id": 2}
        assert await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": "abc-3"}) == {
            "result": sorted([DEPTH, TRADE]), "id": "abc-3"}
        assert await request(ws, {"method": "GET_PROPERTY", "params": ["combined"],
                                  "id": 4}) == {"result": False, "id": 4}

        # raw payloads: the recorded data objects byte for byte, no envelope, but for the
        # venue times E and T, on the sim's clock (shifted by a whole number of ms)
        texts = [await asyncio.wait_for(ws.recv(), 5.0) for _ in range(30)]
        events = [orjson.loads(t) for t in texts]
        assert {e["e"] for e in events} == {"depthUpdate", "trade"}
        offset_ms = sim.sim_clock.offset_ns // 1_000_000
        assert offset_ms > 0
        for text, event in zip(texts, events, strict=True):
            stream = DEPTH if event["e"] == "depthUpdate" else TRADE
            recorded = re.sub(r'"([ET])":([0-9]+)',
                              lambda m: f'"{m[1]}":{int(m[2]) - offset_ms}', text)
            assert recorded in payloads[stream]
            assert recorded != text

        assert await request(ws, {"method": "UNSUBSCRIBE", "params": [TRADE], "id": 5}) == {
            "result": None, "id": 5}
        assert await request(ws, {"method": "SET_PROPERTY", "params": ["combined", True],
                                  "id": 6}) == {"result": None, "id": 6}
        wrapped = [orjson.loads(await asyncio.wait_for(ws.recv(), 5.0)) for _ in range(5)]
        assert all(w["stream"] == DEPTH and w["data"]["e"] == "depthUpdate" for w in wrapped)
        assert sim.tape.subscribers[next(iter(sim.tape.subscribers))] == {DEPTH}


async def test_stream_names_in_the_path_and_requests_on_combined_streams(
    short_recording: Path,
) -> None:
    async with SimVenue([short_recording], BINANCE_SPOT_BTCUSDT, speed=10.0,
                        clock=SystemClock()) as sim:
        async with connect(f"{sim.ws_url}/ws/{TRADE}") as raw:
            first = orjson.loads(await asyncio.wait_for(raw.recv(), 5.0))
            assert first["e"] == "trade" and "stream" not in first
        async with connect(f"{sim.ws_url}/stream?streams={TRADE}") as combined:
            seen: list[Any] = []
            assert await request(combined, {"method": "SUBSCRIBE", "params": [DEPTH],
                                            "id": 1}, seen) == {"result": None, "id": 1}
            assert await request(combined, {"method": "GET_PROPERTY", "params": ["combined"],
                                            "id": 2}, seen) == {"result": True, "id": 2}
            while len({s["stream"] for s in seen}) < 2:
                seen.append(orjson.loads(await asyncio.wait_for(combined.recv(), 5.0)))
            assert {s["stream"] for s in seen} == {DEPTH, TRADE}


@pytest.mark.parametrize(("payload", "code", "rid"), [
    ("{not json", 3, None),
    ("[1, 2]", 2, None),
    ({"method": "SUBSCRIBE", "params": [DEPTH]}, 2, None),  # no id
    ({"method": "SUBSCRIBE", "params": [DEPTH], "id": 1.5}, 2, None),
    ({"method": "SUBSCRIBE", "params": [DEPTH], "id": "x" * 37}, 2, None),
    ({"params": [DEPTH], "id": 7}, 2, 7),
    ({"method": "subscribe", "params": [DEPTH], "id": 7}, 2, 7),
    ({"method": "SUBSCRIBE", "params": DEPTH, "id": 7}, 2, 7),
    ({"method": "SUBSCRIBE", "params": [DEPTH, 3], "id": 7}, 2, 7),
    ({"method": "SUBSCRIBE", "params": [DEPTH], "id": 7, "extra": 1}, 2, 7),
    ({"method": "LIST_SUBSCRIPTIONS", "params": [DEPTH], "id": 7}, 2, 7),
    ({"method": "SET_PROPERTY", "params": [1, True], "id": 7}, 2, 7),
    ({"method": "SET_PROPERTY", "params": ["colour", True], "id": 7}, 0, 7),
    ({"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 7}, 1, 7),
    ({"method": "GET_PROPERTY", "params": ["colour"], "id": 7}, 0, 7),
])
async def test_bad_requests_get_binance_errors_and_change_nothing(
    short_recording: Path, payload: Any, code: int, rid: int | None
) -> None:
    async with SimVenue([short_recording], BINANCE_SPOT_BTCUSDT, speed=10.0,
                        clock=SystemClock()) as sim, connect(f"{sim.ws_url}/ws") as ws:
        reply = await request(ws, payload)
        assert reply["id"] == rid and reply["error"]["code"] == code
        assert isinstance(reply["error"]["msg"], str) and reply["error"]["msg"]
        assert await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 8}) == {
            "result": [], "id": 8}
        assert await request(ws, {"method": "GET_PROPERTY", "params": ["combined"],
                                  "id": 9}) == {"result": False, "id": 9}
