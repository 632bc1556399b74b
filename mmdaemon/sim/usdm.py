"""The sim as a Binance USD-M futures venue: one port serves the market data of one or more
recordings (one symbol each) and the order entry of futures accounts on them.

Routes (one port, as the contract /work/briefs/usdm-wire.md lists them):

- ``/stream?streams=..`` and ``/ws/<stream>..``: the recordings' frames (``@depth@0ms``
  diffs with their ``pu`` chain, ``@trade``, ``@bookTicker``) for every symbol, with the
  stream-control requests of :mod:`mmdaemon.sim.market`; also under Binance's route
  prefixes ``/public``, ``/market`` and ``/private``. Every stream is served on every
  route unless ``binance_routes`` (``mmdaemon sim --binance-routes``): then, as Binance
  since 2026-04-23, depth and bookTicker only under /public, trades under /market, and
  no market data on the bare legacy routes (a stream asked for elsewhere stays silent;
  streams SUBSCRIBEd later are not checked);
- ``/ws/<listenKey>``: the user-data stream of the account the key belongs to
  (``ORDER_TRADE_UPDATE``, ``ACCOUNT_UPDATE``, ``listenKeyExpired``), bare JSON objects;
- ``GET /fapi/v1/depth?symbol=S&limit=N``, ``/fapi/v1/ping``, ``/fapi/v1/time``,
  ``/fapi/v1/exchangeInfo[?symbol=S]``;
- ``/ws-fapi/v1``: the WebSocket API (:mod:`mmdaemon.sim.futures_protocol`);
- the signed REST endpoints of :data:`FuturesProtocol.rest_routes`.

Every REST reply carries ``X-MBX-USED-WEIGHT-1M``, the request weight used this minute by
all requests (REST and WebSocket API share one budget, as for one IP).

The recordings' tapes are played by one loop, merged by receive time on one clock, so the
symbols keep the offsets in time they were recorded with; they share one set of stream
subscribers (stream names tell the symbols apart). Funding is settled every
``funding_interval_ms`` of the sim's clock at the boundaries of that interval since the
epoch (8 h: 00:00, 08:00, 16:00 UTC, as Binance), and listen keys not kept alive expire,
both checked by a ticker every :data:`TICK_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from fractions import Fraction
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection, broadcast
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from mmdaemon.book import OrderBook
from mmdaemon.clock import Clock
from mmdaemon.exchange.fill_model import PaperVenue
from mmdaemon.feed.replay import paced
from mmdaemon.model import Instrument, Trade
from mmdaemon.sim import futures_wire as fw
from mmdaemon.sim.clock import SimClock
from mmdaemon.sim.futures_accounts import FuturesLedger
from mmdaemon.sim.futures_matching import FuturesMatching
from mmdaemon.sim.futures_protocol import FuturesProtocol
from mmdaemon.sim.market import MarketTape, TapedFrame, merged
from mmdaemon.sim.server import MarketServer, raw_path_streams, stream_path

WS_API_PATH: Final = "/ws-fapi/v1"
TICK_S: Final = 0.1  # how often funding and listen-key expiry are checked (s)
DEPTH_WEIGHTS: Final = ((50, 2), (100, 5), (500, 10), (1000, 20))  # limit <= N: weight
DEFAULT_DEPTH_LIMIT: Final = 500


def _response(status: int, payload: Any, weight: int | None = None) -> Response:
    body = orjson.dumps(payload)
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                       ("Connection", "close")])
    if weight is not None:
        headers["X-MBX-USED-WEIGHT-1M"] = str(weight)
    return Response(status, HTTPStatus(status).phrase, headers, body)


class _Listener:
    """One symbol's market as its matching sees it, events flushed after each."""

    def __init__(self, entry: UsdmOrderEntry, matching: FuturesMatching) -> None:
        self._entry, self._matching = entry, matching

    def advance(self, now_ns: int) -> None:
        self._matching.advance(now_ns)
        self._entry.flush()

    def on_book(self, book: OrderBook, now_ns: int) -> None:
        self._matching.on_book(book, now_ns)
        self._entry.flush()

    def on_trade(self, trade: Trade, now_ns: int) -> None:
        self._matching.on_trade(trade, now_ns)
        self._entry.flush()


class _Out:
    """One connection's outgoing frames: a bounded queue and the task that sends them."""

    def __init__(self, ws: ServerConnection, max_queue: int) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(max_queue)
        self.dead = False
        self._closing: asyncio.Task[None] | None = None  # kept: a task must not be collected

    def offer(self, frame: bytes) -> None:
        """Queue ``frame``; when the queue is full the connection is closed (1008): a
        client that does not read must not silently miss an event."""
        if self.dead:
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self._close(1008, "queue overflow")

    def finish(self) -> None:
        """Close the connection once the frames queued so far have been sent."""
        if not self.dead:
            self.dead = True
            try:
                self.queue.put_nowait(None)
            except asyncio.QueueFull:  # never read: nothing more to wait for
                self._close(1000, "listenKeyExpired")

    def _close(self, code: int, reason: str) -> None:
        self.dead = True
        self._closing = asyncio.get_running_loop().create_task(self.ws.close(code, reason))

    async def send_loop(self) -> None:
        try:
            while (frame := await self.queue.get()) is not None:
                await self.ws.send(frame, text=True)
            await self.ws.close(1000)  # finished (the listen key expired)
        except ConnectionClosed:
            pass
        finally:
            self.dead = True


class UsdmOrderEntry:
    """Futures order entry on ``instruments``: accounts (``api_keys``: key -> secret, each
    starting with ``wallet`` USDT), one PaperVenue per symbol (maker fee
    ``maker_fee_bps``, latency 0: loopback is the latency), the WebSocket API, user-data
    streams and funding (``funding_rate`` every ``funding_interval_ms``). ``now_ms`` is the
    sim's one clock, in ms since the epoch: every time it stamps or schedules; a signed
    request's ``timestamp`` is checked against ``signing_ms`` (default: ``now_ms``), which
    ``/fapi/v1/time`` tells (:mod:`mmdaemon.sim.futures_protocol`)."""

    def __init__(self, instruments: Sequence[Instrument], api_keys: Mapping[str, str],
                 wallet: Fraction, now_ms: Callable[[], int], *,
                 signing_ms: Callable[[], int] | None = None, maker_fee_bps: str = "0",
                 funding_interval_ms: int = 8 * 3_600_000,
                 funding_rate: Fraction = Fraction(1, 10_000), max_queue: int = 1024) -> None:
        if not api_keys:
            raise ValueError("UsdmOrderEntry.api_keys: expected at least one API key")
        if funding_interval_ms <= 0:
            raise ValueError("UsdmOrderEntry.funding_interval_ms: expected > 0")
        self.now_ms = now_ms
        self.ledger = FuturesLedger({i.symbol: i for i in instruments}, api_keys, wallet)
        self._order_ids = 0
        self.matchings = {i.symbol: FuturesMatching(
            i, PaperVenue(i, 0, maker_fee_bps, "0"), self.ledger, self._next_order_id, now_ms)
            for i in instruments}
        self.protocol = FuturesProtocol(self.matchings, self.ledger, api_keys, now_ms,
                                        signing_ms=signing_ms)
        self.signing_ms = self.protocol.signing_ms
        self.funding_interval_ms = funding_interval_ms
        self.funding_rate = funding_rate
        self.fundings = 0  # funding times settled
        self._next_funding_ms = (now_ms() // funding_interval_ms + 1) * funding_interval_ms
        self._max_queue = max_queue
        self._streams: dict[str, set[_Out]] = {}  # listen key -> user-data connections
        # the market-data stream connections (a listen key may be SUBSCRIBEd there too)
        self.stream_subscribers: dict[ServerConnection, frozenset[str]] = {}
        self.raw_subscribers: set[ServerConnection] = set()

    def _next_order_id(self) -> int:
        self._order_ids += 1
        return self._order_ids

    def listener(self, symbol: str) -> _Listener:
        """What the tape of ``symbol`` tells about its market."""
        return _Listener(self, self.matchings[symbol])

    # ---- time -------------------------------------------------------------------------------

    def tick(self) -> None:
        """Settle funding when a funding time has passed; end stale listen keys."""
        now = self.now_ms()
        if now >= self._next_funding_ms:
            # stamped with the funding time (the latest one passed: a clock that jumped
            # over several pays once), as Binance books a funding fee at its funding time
            at_ms = now // self.funding_interval_ms * self.funding_interval_ms
            for matching in self.matchings.values():
                matching.settle_funding(self.funding_rate, at_ms)
            self.fundings += 1
            self._next_funding_ms = at_ms + self.funding_interval_ms
        for listen_key in self.protocol.expire_listen_keys():
            event = fw.listen_key_expired(listen_key, now)
            self._to_subscribers(listen_key, event)
            frame = orjson.dumps(event)
            for out in self._streams.pop(listen_key, set()):
                out.offer(frame)
                out.finish()
        self.flush()

    # ---- events -----------------------------------------------------------------------------

    def flush(self) -> None:
        """Send the events queued since the last flush to their accounts' streams."""
        events = self.protocol.take_events()
        if not events:
            return
        key_of = self.protocol.listen_keys
        by_api_key: dict[str, list[str]] = {}
        for listen_key, api_key in key_of.items():
            by_api_key.setdefault(api_key, []).append(listen_key)
        for api_key, event in events:
            frame = orjson.dumps(event)
            for listen_key in by_api_key.get(api_key, ()):
                for out in self._streams.get(listen_key, ()):
                    out.offer(frame)
                self._to_subscribers(listen_key, event)

    def _to_subscribers(self, listen_key: str, event: dict[str, Any]) -> None:
        """``event`` to the stream connections that SUBSCRIBEd ``listen_key`` (how
        Binance's SDK listens): combined or raw, as the connection's market frames. Sent
        as market frames are, without waiting: a subscriber too slow sees a gap."""
        targets = [ws for ws, streams in self.stream_subscribers.items()
                   if listen_key in streams]
        if not targets:
            return
        raw = [ws for ws in targets if ws in self.raw_subscribers]
        combined = [ws for ws in targets if ws not in self.raw_subscribers]
        if raw:
            broadcast(raw, orjson.dumps(event).decode())
        if combined:
            broadcast(combined, orjson.dumps({"stream": listen_key, "data": event}).decode())

    # ---- connections ------------------------------------------------------------------------

    async def serve_ws_api(self, ws: ServerConnection) -> None:
        """One ``/ws-fapi/v1`` connection until it closes."""
        out = _Out(ws, self._max_queue)
        sender = asyncio.create_task(out.send_loop(), name="usdm-ws-api-send")
        try:
            async for message in ws:
                frame = self.protocol.handle(message)
                if not out.dead:
                    try:
                        out.queue.put_nowait(frame)
                    except asyncio.QueueFull:
                        await out.queue.put(frame)  # backpressure: stop reading requests
                self.flush()  # a request's events go out after its response
        except ConnectionClosed:
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    def has_listen_key(self, listen_key: str) -> bool:
        """Whether ``listen_key`` is a live key of an account."""
        return listen_key in self.protocol.listen_keys

    async def serve_user_stream(self, ws: ServerConnection, listen_key: str) -> None:
        """One user-data stream connection of ``listen_key`` until it closes."""
        out = _Out(ws, self._max_queue)
        self._streams.setdefault(listen_key, set()).add(out)
        sender = asyncio.create_task(out.send_loop(), name="usdm-user-stream-send")
        try:
            async for _ in ws:
                pass  # a user-data stream takes no requests
        except ConnectionClosed:
            pass
        finally:
            self._streams.get(listen_key, set()).discard(out)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    @property
    def internal_errors(self) -> int:
        """Requests answered -1000 (a bug: should stay 0)."""
        return self.protocol.internal_errors


class UsdmSim(MarketServer):
    """Serve ``recordings`` (instrument -> its recording's files) as one Binance USD-M
    venue on ``host``:``port`` (0: any free port), with ``order_entry`` when given. Use as
    ``async with UsdmSim(...) as sim:``; :attr:`ws_url` and :attr:`rest_url` are the base
    URLs to give a client."""

    def __init__(self, recordings: Iterable[tuple[Instrument, Sequence[Path]]], *,
                 speed: float | None, clock: Clock, host: str = "127.0.0.1", port: int = 0,
                 order_entry: UsdmOrderEntry | None = None,
                 wait_for_subscriber: bool = False, sim_clock: SimClock | None = None,
                 binance_routes: bool = False) -> None:
        # one time line for every symbol (and the order entry given the same clock): the
        # recordings' venue times mapped onto the wall clock by one offset
        self.sim_clock = sim_clock if sim_clock is not None else SimClock(clock, speed)
        tapes = [MarketTape(paths, inst, speed, clock,
                            None if order_entry is None else order_entry.listener(inst.symbol),
                            market="usdm", sim_clock=self.sim_clock)
                 for inst, paths in recordings]
        if not tapes:
            raise ValueError("UsdmSim: expected at least one recording")
        symbols = [t.instrument.symbol for t in tapes]
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"UsdmSim: a symbol served twice ({', '.join(symbols)}): give "
                             "each symbol's files as one recording")
        super().__init__(tapes[0], host, port)
        for tape in tapes[1:]:  # one set of subscribers: a connection may mix symbols
            tape.subscribers, tape.raw = tapes[0].subscribers, tapes[0].raw
        self.tapes = {t.instrument.symbol: t for t in tapes}
        self.order_entry = order_entry
        if order_entry is not None:
            order_entry.stream_subscribers = tapes[0].subscribers
            order_entry.raw_subscribers = tapes[0].raw
        self.speed = speed
        self.clock = clock
        self._wait = wait_for_subscriber
        self.binance_routes = binance_routes  # market data only on Binance's split routes
        self.finished = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._paused_until_ns = 0  # monotonic ns: the market stands still until then
        self._weight_minute, self._weight_used = -1, 0  # without order entry (see _charge)

    async def __aenter__(self) -> UsdmSim:
        await self.start()
        self._tasks.append(asyncio.create_task(self._play(), name="usdm-tape"))
        if self.order_entry is not None:
            self._tasks.append(asyncio.create_task(self._tick(), name="usdm-tick"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.stop()

    async def wait_finished(self) -> None:
        """Until every recording has been played to the end."""
        await self.finished.wait()

    def now_ms(self) -> int:
        """The server time clients sign with, in ms (the order entry's when there is one)."""
        if self.order_entry is not None:
            return self.order_entry.signing_ms()
        return self.clock.wall_ns() // 1_000_000

    async def _play(self) -> None:
        if self._wait:
            await self.tape.subscribed.wait()
        tapes = list(self.tapes.values())
        frames = merged([tape.paths for tape in tapes])
        speed = self.speed

        def recv_ns(item: TapedFrame) -> int:
            return item[0]

        clock = self.clock
        async for batch in paced(frames, recv_ns, speed, clock):
            for ns, index, frame in batch:
                while clock.monotonic_ns() < self._paused_until_ns:
                    await clock.sleep((self._paused_until_ns - clock.monotonic_ns()) / 1e9)
                tapes[index].play(ns, frame)
                if speed is not None:
                    await asyncio.sleep(0)  # let requests in between frames of a burst
        self.finished.set()

    def pause(self, seconds: float) -> None:
        """Hold every market still (no frame played, sent or matched) for ``seconds`` of
        the clock while order entry goes on: a test's quiet market."""
        self._paused_until_ns = self.clock.monotonic_ns() + round(seconds * 1e9)

    def resume(self) -> None:
        """End a :meth:`pause` now (the tape catches up at its speed)."""
        self._paused_until_ns = 0

    async def _tick(self) -> None:
        assert self.order_entry is not None
        while True:
            try:
                self.order_entry.tick()
            except Exception:  # a bug must not end funding and expiry for good
                self.order_entry.protocol.internal_errors += 1
            await asyncio.sleep(TICK_S)

    # ---- routing ----------------------------------------------------------------------------

    def _upgrade_paths(self, path: str) -> bool:
        return path == WS_API_PATH or super()._upgrade_paths(path)

    async def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if request.method == "GET" and self._upgrade_paths(url.path) and (
                "upgrade" in request.headers.get("Connection", "").lower()):
            return await super()._http(connection, request)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = url.path
        entry = self.order_entry
        if entry is not None:
            answer = entry.protocol.rest(request.method, path, url.query,
                                         request.headers.get("X-MBX-APIKEY"))
            if answer.body is not None:
                entry.flush()
                return _response(answer.status, answer.body, answer.used_weight)
        if request.method != "GET":
            return _response(405, {"code": -1000, "msg": f"{request.method} not allowed"},
                             self._charge(1))
        weight = 1
        if path == "/fapi/v1/depth":
            limit_text = query.get("limit", str(DEFAULT_DEPTH_LIMIT))
            limit = int(limit_text) if limit_text.isdigit() else DEFAULT_DEPTH_LIMIT
            weight = next((w for most, w in DEPTH_WEIGHTS if limit <= most), 20)
        used = self._charge(weight)
        if used > fw.WEIGHT_LIMIT:
            response = _response(429, {"code": fw.TOO_MANY_REQUESTS,
                                       "msg": fw.MESSAGES[fw.TOO_MANY_REQUESTS]}, used)
            response.headers["Retry-After"] = "60"
            return response
        if path == "/fapi/v1/depth":
            self.depth_requests += 1
            if self._depth_faults:
                response = await self._depth_fault(self._depth_faults.popleft(), query)
            else:
                response = self._depth(query)
        elif path == "/fapi/v1/ping":
            response = _response(200, {})
        elif path == "/fapi/v1/time":
            response = _response(200, {"serverTime": self.now_ms()})
        elif path == "/fapi/v1/exchangeInfo":
            symbol = query.get("symbol")
            if symbol is not None and symbol.upper() not in self.tapes:
                response = _response(400, {"code": fw.BAD_SYMBOL,
                                           "msg": fw.MESSAGES[fw.BAD_SYMBOL]})
            else:
                chosen = [t.instrument for s, t in self.tapes.items()
                          if symbol is None or s == symbol.upper()]
                response = _response(200, fw.exchange_info(chosen, self.now_ms()))
        else:
            response = _response(404, {"code": -1000, "msg": f"unknown path {path}"})
        response.headers["X-MBX-USED-WEIGHT-1M"] = str(used)
        return response

    def _charge(self, weight: int) -> int:
        """Charge a market-data request; the weight used this minute (the order entry's
        budget, shared with its requests; without one, the market data's own)."""
        if self.order_entry is not None:
            return self.order_entry.protocol.market_weight(weight)
        minute = self.now_ms() // 60_000
        if minute != self._weight_minute:
            self._weight_minute, self._weight_used = minute, 0
        self._weight_used += weight
        return self._weight_used

    def _depth(self, query: dict[str, str]) -> Response:
        tape = self.tapes.get(query.get("symbol", "").upper())
        if tape is None:
            return _response(400, {"code": fw.BAD_SYMBOL, "msg": fw.MESSAGES[fw.BAD_SYMBOL]})
        text = query.get("limit", str(DEFAULT_DEPTH_LIMIT))
        if not text.isdigit():
            return _response(400, {"code": fw.ILLEGAL_CHARS, "msg": fw.illegal_msg("limit")})
        limit = int(text)
        if limit not in tape.depth_limits:
            return _response(400, {"code": fw.ILLEGAL_CHARS,
                                   "msg": f"Illegal value for parameter 'limit': {limit}."})
        body = tape.depth_snapshot(limit)
        if body is None:
            return _response(503, {"code": -1003, "msg": "the book is not ready yet"})
        headers = Headers([("Content-Type", "application/json"),
                           ("Content-Length", str(len(body))), ("Connection", "close")])
        return Response(200, "OK", headers, body)

    async def _handler(self, ws: ServerConnection) -> None:
        url = urlsplit(ws.request.path if ws.request else "")
        path = stream_path(url.path)
        entry = self.order_entry
        if entry is not None:
            if path == WS_API_PATH:
                await entry.serve_ws_api(ws)
                return
            key = path[len("/ws/"):] if path.startswith("/ws/") else ""
            key = key or parse_qs(url.query).get("listenKey", [""])[-1]
            if key and not raw_path_streams(path) and entry.has_listen_key(key):
                await entry.serve_user_stream(ws, key)
                return
        route = url.path[:len(url.path) - len(path)]  # "/public", "/market".. or ""
        if path == "/stream":
            names = parse_qs(url.query).get("streams", [""])[-1]
            streams = frozenset(s for s in names.split("/") if s)
            await self.tape.serve_streams(ws, self._on_route(route, streams))
        elif path == "/ws" or path.startswith("/ws/"):
            await self.tape.serve_streams(ws, self._on_route(route, raw_path_streams(path)),
                                          combined=False)
        else:
            await ws.close(1008, "unknown path")

    def _on_route(self, route: str, streams: frozenset[str]) -> frozenset[str]:
        """The ``streams`` a connection on ``route`` is served: all of them, or with
        ``binance_routes`` those Binance serves there since 2026-04-23 (depth and
        bookTicker on /public, the rest on /market, none on the legacy bare routes)."""
        if not self.binance_routes:
            return streams
        return frozenset(s for s in streams if usdm_route(s) == route)


def usdm_route(stream: str) -> str:
    """Binance's USD-M route of a market-data ``stream`` (``btcusdt@depth@0ms``): the
    high-frequency book streams under /public, the other market data under /market."""
    kind = stream.partition("@")[2]
    return "/public" if kind.startswith("depth") or kind == "bookTicker" else "/market"
