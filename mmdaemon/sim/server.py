"""The sim venue: one ``websockets`` server on loopback that speaks Binance spot, and
optionally a second one for a reference venue's market data (:class:`MarketServer`).

Routes (one port):

- ``/stream?streams=a/b/c``: combined market-data streams from the replayed recording;
- ``/ws`` and ``/ws/<stream>[/<stream>..]``: raw streams (event payloads without the
  ``{"stream","data"}`` envelope). Path segments that are not stream names are ignored, so
  ccxt's ``/ws/0``, ``/ws/1``.. (how it spreads subscriptions over connections) open a raw
  connection with no streams, which it then fills with ``SUBSCRIBE`` requests; both stream
  endpoints take ``SUBSCRIBE``/``UNSUBSCRIBE``/``LIST_SUBSCRIPTIONS``/``SET_PROPERTY``/
  ``GET_PROPERTY`` (see :mod:`mmdaemon.sim.market`);
- ``GET /api/v3/depth?symbol=S&limit=N``: the book at the replay position, with its
  ``lastUpdateId`` (any limit from 1, at most 5000 levels); ``GET /api/v3/ping``,
  ``/api/v3/time``, ``/api/v3/exchangeInfo`` (what the sim accepts; enough for ccxt's and
  Binance's SDK's parsers). Every REST reply carries the request weight used this minute
  (``x-mbx-used-weight-1m``), counted with the WebSocket API's, as one IP's;
- ``/ws-api/v3``: order entry (the WebSocket API subset of :mod:`mmdaemon.sim.protocol`),
  when an order-entry engine is attached.

Plain HTTP requests are answered from ``process_request`` before any websocket upgrade, so
REST and websockets share the port as they share a host at the real venue.

The reference (``SimVenue(.., reference=ReferenceSpec(..))``): another recording served as
another venue's market data, read-only, on its own port, as the real USD-M futures market
data comes from other hosts than spot's (``fstream``/``fapi.binance.com``): the same stream
routes, and the venue's REST depth, ping and time (``/fapi/v1/..`` for USD-M, ``/api/v3/..``
for a spot reference). Its own port also keeps its stream names apart from the traded
venue's: spot and the perpetual both have a ``btcusdt@trade``. Its tape is played by the
traded tape's loop (:attr:`mmdaemon.sim.market.MarketTape.reference`), so the two markets
stay aligned in time as they were recorded.

Faults for tests: :meth:`MarketServer.fail_depth` makes the next depth requests fail, one
fault each (see :data:`DEPTH_FAULTS`); :meth:`MarketServer.refuse_connections` hangs up on
every stream connection and refuses new ones for a while; the stream faults are the tape's
(:mod:`mmdaemon.sim.market`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from mmdaemon.clock import Clock
from mmdaemon.model import NS_PER_S, Instrument
from mmdaemon.sim import wire
from mmdaemon.sim.clock import SimClock
from mmdaemon.sim.market import MarketListener, MarketTape
from mmdaemon.venues.binance import Market
from mmdaemon.venues.binance_parse import assets_of

DEPTH_FAULTS: Final = ("500", "503", "429", "418", "truncated", "html", "bad_levels", "hang")
"""What :meth:`MarketServer.fail_depth` can do to one depth request: answer HTTP 500 (-1000) or
503 (-1008, the venue's "server busy"); refuse it for the request weight (429, -1003) or as
an IP ban (418), with Binance's error body and a ``Retry-After`` header; answer 200 with a
body cut in the middle (``truncated``), with an HTML page (a proxy's error page), or with a
well-formed snapshot whose first bid price is not a number (``bad_levels``); or hold the
request ``hang_s`` seconds before answering it (past the client's timeout)."""


class OrderEntryHandler(MarketListener, Protocol):
    async def serve(self, websocket: ServerConnection) -> None: ...

    def use_clock(self, clock: SimClock) -> None: ...

    def charge(self, weight: int) -> int: ...

    @property
    def weight_limit(self) -> int: ...


def _json(status: int, payload: Any) -> Response:
    body = orjson.dumps(payload)
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                       ("Connection", "close")])
    return Response(status, HTTPStatus(status).phrase, headers, body)


def _error(status: int, code: int, msg: str) -> Response:
    return _json(status, {"code": code, "msg": msg})


DEPTH_WEIGHTS: Final = ((100, 5), (500, 25), (1000, 50), (5000, 250))
"""Binance spot's ``GET /api/v3/depth`` weight by ``limit``: (up to this limit, weight)."""
USDM_DEPTH_WEIGHTS: Final = ((50, 2), (100, 5), (500, 10), (1000, 20))
"""The same for USD-M's ``GET /fapi/v1/depth``."""
MAX_DEPTH_LIMIT: Final = 5000  # spot: a larger limit is answered with this many levels
EXCHANGE_INFO_WEIGHT: Final = 20

REST_PREFIX: dict[Market, str] = {"spot": "/api/v3", "usdm": "/fapi/v1"}
"""Where each venue's REST market-data endpoints live."""


# Binance USD-M's WebSocket route prefixes (since 2026-04-23)
USDM_STREAM_PREFIXES: Final = ("/public", "/market", "/private")


def stream_path(path: str) -> str:
    """A stream path without Binance's newer USD-M route prefix: ``/public``, ``/market``
    and ``/private`` + ``/stream`` or ``/ws..`` are served as the plain routes (the
    official SDK connects there)."""
    for prefix in USDM_STREAM_PREFIXES:
        if path.startswith(prefix + "/"):
            return path[len(prefix):]
    return path


def _is_raw_stream_path(path: str) -> bool:
    return path == "/ws" or path.startswith("/ws/")


def raw_path_streams(path: str) -> frozenset[str]:
    """Streams named in a ``/ws/<stream>/<stream>..`` path.

    Every Binance stream name has an ``@`` (``btcusdt@trade``, ``!ticker@arr``): other
    segments, such as the connection numbers ccxt puts there, name nothing.
    """
    names = unquote(path[len("/ws/"):]) if path.startswith("/ws/") else ""
    return frozenset(s for s in names.split("/") if "@" in s)


@dataclass(frozen=True)
class ReferenceSpec:
    """A reference venue for the sim to serve beside the traded one: ``paths`` replayed as
    ``instrument`` of a ``market`` venue, on ``port`` (0: any free port)."""

    paths: tuple[Path, ...]
    instrument: Instrument
    market: Market = "usdm"
    port: int = 0


class MarketServer:
    """One venue's market data on ``host``:``port`` (0: any free port): the stream routes
    of ``tape`` and its REST depth snapshot, ping and time, between :meth:`start` and
    :meth:`stop`; :attr:`ws_url` and :attr:`rest_url` are the base URLs to give a client.
    It does not play the tape (:class:`SimVenue` does)."""

    def __init__(self, tape: MarketTape, host: str = "127.0.0.1", port: int = 0) -> None:
        self.tape = tape
        self.instrument = tape.instrument
        self.rest_prefix = REST_PREFIX[tape.kind]
        self.host, self.port = host, port
        self._server: Server | None = None
        self._depth_faults: deque[str] = deque()
        self.depth_hang_s = 30.0  # how long a "hang" fault holds its request
        self.depth_requests = 0  # depth requests received
        self._refuse_until_ns = 0  # monotonic ns until which stream connections are refused
        self.refused = 0  # stream connections refused
        self.weight_limit = 6000  # REST request weight per minute, as Binance's per IP
        self._weight_minute = -1
        self._weight_used = 0

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen; :attr:`port` is the port taken."""
        self._server = await serve(self._handler, self.host, self.port,
                                   process_request=self._http, compression=None)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def fail_depth(self, *faults: str) -> None:
        """The next ``len(faults)`` depth requests fail, in order, one fault each (see
        :data:`DEPTH_FAULTS`); requests after them are answered normally."""
        unknown = set(faults) - set(DEPTH_FAULTS)
        if unknown:
            raise ValueError(f"unknown depth faults {sorted(unknown)}; known: {DEPTH_FAULTS}")
        self._depth_faults.extend(faults)

    async def refuse_connections(self, seconds: float) -> None:
        """Hang up on every stream connection and refuse new ones (HTTP 503 to the
        upgrade) for ``seconds`` of the tape's clock: the venue is away, its market is not."""
        clock = self.tape.clock
        self._refuse_until_ns = clock.monotonic_ns() + round(seconds * NS_PER_S)
        await self.tape.drop_connections()

    # -- routing --------------------------------------------------------------------------

    def _stream_path(self, path: str) -> str:
        """``path`` without a USD-M venue's route prefix (/public, /market, /private):
        a USD-M tape serves its streams under each, as under the bare routes."""
        return stream_path(path) if self.tape.kind == "usdm" else path

    def _upgrade_paths(self, path: str) -> bool:
        """Paths where a websocket upgrade is let through."""
        path = self._stream_path(path)
        return path == "/stream" or _is_raw_stream_path(path)

    async def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if self._upgrade_paths(url.path) and (
            "upgrade" in request.headers.get("Connection", "").lower()
        ):
            if self._refuse_until_ns and (
                    self.tape.clock.monotonic_ns() < self._refuse_until_ns):
                self.refused += 1
                return _error(503, -1008, "Server is currently overloaded with other "
                                          "requests. Please try again in a few minutes.")
            return None  # a websocket: let the handshake go on
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        used = self._charge(self._weight(url.path, query))
        if used > self.weight_limit:
            response = _error(429, -1003, wire.weight_limit_msg(self.weight_limit))
            response.headers["Retry-After"] = str(60 - self.tape.sim_clock.signing_ms()
                                                  // 1000 % 60)  # s: the next minute
        else:
            response = await self._rest(url.path, query)
        # what the venue sends with every REST reply: the IP's request weight this minute
        response.headers["x-mbx-uuid"] = str(uuid.uuid4())
        response.headers["x-mbx-used-weight"] = str(used)
        response.headers["x-mbx-used-weight-1m"] = str(used)
        return response

    def _weight(self, path: str, query: dict[str, str]) -> int:
        """The request weight of a REST request, as the venue charges it."""
        if path == self.rest_prefix + "/depth":
            try:
                limit = int(query.get("limit", "100"))
            except ValueError:
                return 1
            table = USDM_DEPTH_WEIGHTS if self.tape.kind == "usdm" else DEPTH_WEIGHTS
            return next((w for most, w in table if limit <= most), table[-1][1])
        if path == self.rest_prefix + "/exchangeInfo":
            return EXCHANGE_INFO_WEIGHT
        return 1

    def _charge(self, weight: int) -> int:
        """Charge ``weight`` to this minute of the sim's clock; the weight used in it."""
        minute = self.tape.sim_clock.signing_ms() // 60_000
        if minute != self._weight_minute:
            self._weight_minute, self._weight_used = minute, 0
        self._weight_used += weight
        return self._weight_used

    async def _rest(self, path: str, query: dict[str, str]) -> Response:
        """The answer to one REST request within the weight limit."""
        url_path, prefix = path, self.rest_prefix
        if url_path == prefix + "/depth":
            self.depth_requests += 1
            if self._depth_faults:
                return await self._depth_fault(self._depth_faults.popleft(), query)
            return self._depth(query)
        if url_path == prefix + "/ping":
            return _json(200, {})
        if url_path == prefix + "/time":
            return _json(200, {"serverTime": self.tape.sim_clock.signing_ms()})
        return self._other(url_path, query)

    def _other(self, path: str, query: dict[str, str]) -> Response:
        """A request for none of the market-data routes."""
        return _error(404, -1000, f"unknown path {path}")

    def _depth(self, query: dict[str, str]) -> Response:
        symbol = query.get("symbol", "")
        if symbol.upper() != self.instrument.symbol:
            return _error(400, -1121, "Invalid symbol.")
        try:
            limit = int(query.get("limit", "100"))
        except ValueError:
            return _error(400, -1100, "Illegal characters found in parameter 'limit'.")
        if self.tape.kind == "spot":
            # Binance spot: any limit from 1; over 5000 the answer is cut to 5000
            if limit < 1:
                return _error(400, -1100, f"Illegal value for parameter 'limit': {limit}; "
                                          f"legal range is 1 to {MAX_DEPTH_LIMIT}.")
            limit = min(limit, MAX_DEPTH_LIMIT)
        elif limit not in self.tape.depth_limits:
            return _error(400, -1100, f"Illegal value for parameter 'limit': {limit}.")
        body = self.tape.depth_snapshot(limit)
        if body is None:
            return _error(503, -1003, "Service unavailable: the book is not ready yet.")
        headers = Headers([("Content-Type", "application/json"),
                           ("Content-Length", str(len(body))), ("Connection", "close")])
        return Response(200, "OK", headers, body)

    async def _depth_fault(self, fault: str, query: dict[str, str]) -> Response:
        """One depth request answered with ``fault`` (see :data:`DEPTH_FAULTS`)."""
        if fault == "500":
            return _error(500, -1000, "An unknown error occurred while processing the request.")
        if fault == "503":
            return _error(503, -1008, "Server is currently overloaded with other requests. "
                                      "Please try again in a few minutes.")
        if fault in ("429", "418"):
            response = _error(int(fault), -1003, "Too much request weight used; current limit "
                                                 "is 6000 request weight per 1 MINUTE.")
            response.headers["Retry-After"] = "1"  # seconds, as the venue sends it
            return response
        if fault == "hang":
            await asyncio.sleep(self.depth_hang_s)
            return self._depth(query)  # the answer comes, too late for the client
        if fault == "html":
            body = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            headers = Headers([("Content-Type", "text/html"),
                               ("Content-Length", str(len(body))), ("Connection", "close")])
            return Response(200, "OK", headers, body)
        good = self._depth(query)
        if good.status_code != 200:
            return good
        if fault == "truncated":
            body = bytes(good.body[:len(good.body) // 2])
        else:  # bad_levels: well-formed JSON, a price that is not a number
            snapshot = orjson.loads(good.body)
            snapshot["bids"][0][0] = "not-a-price"
            body = orjson.dumps(snapshot)
        headers = Headers([("Content-Type", "application/json"),
                           ("Content-Length", str(len(body))), ("Connection", "close")])
        return Response(200, "OK", headers, body)

    async def _handler(self, ws: ServerConnection) -> None:
        url = urlsplit(ws.request.path if ws.request else "")
        path = self._stream_path(url.path)
        if path == "/stream":
            names = parse_qs(url.query).get("streams", [""])[-1]
            await self.tape.serve_streams(ws, frozenset(s for s in names.split("/") if s))
        elif _is_raw_stream_path(path):
            await self.tape.serve_streams(ws, raw_path_streams(path), combined=False)
        else:
            await self._other_ws(url.path, ws)

    async def _other_ws(self, path: str, ws: ServerConnection) -> None:
        """A websocket on none of the stream routes."""
        await ws.close(1008, "unknown path")


class SimVenue(MarketServer):
    """Serve ``paths`` as a Binance-compatible venue on ``host``:``port`` (0: any free port),
    and the ``reference`` venue's market data, if any, on its own port
    (:attr:`reference`). Use as ``async with SimVenue(...) as sim:``; :attr:`ws_url` and
    :attr:`rest_url` are the base URLs to give a client.
    """

    def __init__(self, paths: Iterable[str | Path], instrument: Instrument, *,
                 speed: float | None, clock: Clock, host: str = "127.0.0.1", port: int = 0,
                 order_entry: OrderEntryHandler | None = None,
                 wait_for_subscriber: bool = False,
                 reference: ReferenceSpec | None = None) -> None:
        super().__init__(MarketTape(paths, instrument, speed, clock, order_entry,
                                    wait_for_subscriber=wait_for_subscriber), host, port)
        self.order_entry = order_entry
        self.sim_clock = self.tape.sim_clock  # the one time line of market and order entry
        if order_entry is not None:
            order_entry.use_clock(self.sim_clock)
            self.weight_limit = order_entry.weight_limit
        self.reference: MarketServer | None = None
        if reference is not None:
            tape = MarketTape(reference.paths, reference.instrument, speed, clock,
                              market=reference.market, sim_clock=self.sim_clock)
            self.tape.reference = tape
            self.reference = MarketServer(tape, host, reference.port)
        self._tape_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SimVenue:
        await self.start()
        try:
            if self.reference is not None:
                await self.reference.start()
        except BaseException:
            await self.stop()
            raise
        self._tape_task = asyncio.create_task(self.tape.run(), name="sim-tape")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._tape_task is not None:
            self._tape_task.cancel()
            await asyncio.gather(self._tape_task, return_exceptions=True)
        if self.reference is not None:
            await self.reference.stop()
        await self.stop()

    async def wait_finished(self) -> None:
        """Until the recording has been played to the end."""
        await self.tape.finished.wait()

    def _upgrade_paths(self, path: str) -> bool:
        return path == "/ws-api/v3" or super()._upgrade_paths(path)

    def _charge(self, weight: int) -> int:
        """REST and the WebSocket API share one request weight per minute, as one IP's."""
        if self.order_entry is None:
            return super()._charge(weight)
        return self.order_entry.charge(weight)

    def _other(self, path: str, query: dict[str, str]) -> Response:
        if path == "/api/v3/exchangeInfo":
            symbol = query.get("symbol")
            if symbol is not None and symbol.upper() != self.instrument.symbol:
                return _error(400, -1121, "Invalid symbol.")
            return _json(200, self._exchange_info())
        return super()._other(path, query)

    async def _other_ws(self, path: str, ws: ServerConnection) -> None:
        if path == "/ws-api/v3" and self.order_entry is not None:
            await self.order_entry.serve(ws)
        else:
            await super()._other_ws(path, ws)

    def _exchange_info(self) -> dict[str, Any]:
        """The venue's one symbol, with the fields clients parse markets from.

        What the sim does, as the venue describes it: the one order type it accepts
        (LIMIT_MAKER), cancel-replace allowed, the request-weight limit it enforces (REST
        and WebSocket API together; orders per 10 s and per day are not limited, so not
        listed) and the filters its order entry checks: PRICE_FILTER (the tick grid, a
        positive price up to the maximum), LOT_SIZE (the step, minimum and maximum) and
        NOTIONAL (minimum and maximum), with Binance's BTCUSDT maxima
        (:data:`~mmdaemon.sim.wire.MAX_PRICE`, ...). ccxt reads ``symbol``, ``status``,
        ``baseAsset``/``quoteAsset``, the precisions, ``permissions``,
        ``isMarginTradingAllowed`` and the filters.
        """
        inst = self.instrument
        assets = assets_of(inst.symbol)
        step = inst.lots.to_decimal(inst.size_step_lots)
        min_size = inst.lots.to_decimal(inst.min_size_lots)
        places = max(8, inst.price_precision)
        rate_limits = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                        "intervalNum": 1, "limit": self.weight_limit}]
        return {"timezone": "UTC", "serverTime": self.sim_clock.signing_ms(),
                "rateLimits": rate_limits, "exchangeFilters": [],
                "symbols": [{
                    "symbol": inst.symbol, "status": "TRADING", "baseAsset": assets.base,
                    "quoteAsset": assets.quote, "baseAssetPrecision": 8,
                    "quotePrecision": 8, "quoteAssetPrecision": 8,
                    "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
                    "orderTypes": ["LIMIT_MAKER"], "icebergAllowed": False,
                    "ocoAllowed": False, "otoAllowed": False,
                    "quoteOrderQtyMarketAllowed": False, "allowTrailingStop": False,
                    "cancelReplaceAllowed": True, "isSpotTradingAllowed": True,
                    "isMarginTradingAllowed": False, "permissions": ["SPOT"],
                    "permissionSets": [["SPOT"]],
                    "defaultSelfTradePreventionMode": "NONE",
                    "allowedSelfTradePreventionModes": ["NONE"],
                    "filters": [
                        {"filterType": "PRICE_FILTER",
                         "minPrice": f"{inst.tick_size:.{places}f}",
                         "maxPrice": f"{wire.MAX_PRICE:.{places}f}",
                         "tickSize": f"{inst.tick_size:.{places}f}"},
                        {"filterType": "LOT_SIZE", "minQty": f"{min_size:.8f}",
                         "maxQty": f"{wire.MAX_QTY:.8f}", "stepSize": f"{step:.8f}"},
                        {"filterType": "NOTIONAL", "minNotional": f"{inst.min_notional:.8f}",
                         "applyMinToMarket": True,
                         "maxNotional": f"{wire.MAX_NOTIONAL:.8f}",
                         "applyMaxToMarket": False, "avgPriceMins": 5},
                    ],
                }]}

