"""A lean venue stand-in for the loopback benchmark (issue #23 item 3): Binance spot as
``mmdaemon run`` with bench/wire.py's config sees it, doing as little as possible per
message so that the loopback it measures is the daemon's, not the venue's.

Run: ``.venv/bin/python bench/lean_venue.py RECORDING.. [--lines N] [--port 0] [--speed 1]
[--stats FILE] [--nice N]``. JSON lines on stdout: ``lean_listening`` (``port``),
``lean_finished`` (the recording played to its end), ``lean_stopped`` (after SIGTERM or
SIGINT, the figures of :meth:`LeanVenue.stats` written to ``--stats``).

A benchmark stand-in, not a sim: it does NOT verify signatures, API keys, timestamps or
order parameters, never fills, keeps no balances (``account.status``: 1 base, 100,000
quote, what bench/wire.py's sim account holds).
It answers what the daemon sends at once and well-formed, so the daemon's order state stays
consistent (no rejects, nothing for a reconcile to find); ``mmdaemon sim`` judges a daemon.

The sim's routes on one port (:mod:`mmdaemon.sim.server`), over raw ``asyncio.Protocol`` s
on uvloop, HTTP and websocket written by hand:

- ``/stream?streams=a/b/c``: the recording's frames of those streams, each built at load
  into a ready-to-send websocket frame whose payload is the recorded frame byte for byte
  (its venue times too: unlike the sim this shifts nothing, and nothing on the daemon's live
  path reads them), sent at the recording's pace (``--speed``) by a ``loop.call_at`` timer
  on the loop's monotonic clock to every stream connection, from the first one's arrival on
  (the sim's ``wait_for_subscriber``); frames due together go out in one burst;
- ``GET /api/v3/depth``: the book at the tape's position as the sim makes it (its codec and
  book, :meth:`mmdaemon.sim.market.MarketTape.depth_snapshot`), brought up to date only when
  asked for, so the tape pays nothing per frame; 503 until the recording's own REST
  snapshot has played, as the sim; ``exchangeInfo`` (the sim's body), ``ping``, ``time``;
- ``/ws-api/v3``: ``order.place`` (NEW), ``order.cancel`` (CANCELED), ``order.cancelReplace``
  (STOP_ON_FAILURE: CANCELED + NEW), ``order.status``, ``openOrders.status``,
  ``openOrders.cancelAll``, ``account.status``, ``myTrades`` (empty), the user-data
  subscription, ``ping``, ``time``: one ``orjson.loads`` per request; answers and
  ``executionReport`` s shaped as the sim's, with the minute's REQUEST_WEIGHT count (REST
  and WebSocket API as one IP's); an order it does not hold refused as Binance refuses it.

Websocket framing (RFC 6455), what is needed: the handshake's accept key, no extension;
client frames must be masked (unmasked by websockets' C ``apply_mask``), fragments are
joined, ping answered pong, close answered with its code and the connection closed; a
protocol error closes with 1002, a message over 1 MiB with 1009; a stream client with 16 MiB
unread is cut off. Measured in one process, warm: a request's frame in and three frames out
take 1.8 us of CPU here, 4.7 us through websockets' sans-I/O ``ServerProtocol``; both are
small beside the system calls (a loopback ``send`` delivers into the daemon's socket in the
sender's own time), so writes are coalesced: one per request, one per frame and client.

Measured on this process's monotonic clock (``time.perf_counter_ns``): each depth frame as
it is sent (before its writes: the send wakes the daemon, which at a lower niceness preempts
this process, and a stamp after the write came p50 84 us, p90 557 us, max 1.2 ms later,
often after the daemon had decided) and each ``order.place`` / ``order.cancelReplace`` as
its bytes reach the protocol; bench/wire.py computes the loopback from them as for the sim.
Its own cost: the CPU time (``time.thread_time_ns``) of each request, from its bytes to
its answer and events written, and of the market frames' sending.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import os
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterable
from itertools import islice
from pathlib import Path
from typing import Any, Final, cast
from urllib.parse import parse_qs, urlsplit

import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import percentile_us
from mmdaemon.clock import SystemClock
from mmdaemon.feed.recording import read_recording
from mmdaemon.model import BINANCE_SPOT_BTCUSDT, Instrument, Malformed
from mmdaemon.sim.market import MarketTape
from mmdaemon.sim.server import SimVenue
from mmdaemon.sim.wire import MSG_UNKNOWN_ORDER, Reject
from mmdaemon.venues.binance_parse import assets_of

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C part
    from websockets.utils import apply_mask

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455's handshake constant
_ENVELOPE: Final = b'{"stream":"'
MAX_MESSAGE: Final = 1 << 20  # bytes: a longer client message is closed with 1009
MAX_HEAD: Final = 16 << 10  # bytes: an HTTP request head longer than this is refused
MAX_BACKLOG: Final = 16 << 20  # bytes unread by a stream client before it is cut off
TIMER_MS: Final = 0.001  # s: the event loop's timer granularity
WEIGHT_LIMIT: Final = 6000  # request weight per minute, as the sim's default and Binance's
TIMED: Final = frozenset({"order.place", "order.cancelReplace"})  # bench/latency.py's
_WEIGHTS: Final = {"order.place": 1, "order.cancel": 1, "order.cancelReplace": 1,
                   "openOrders.status": 6, "openOrders.cancelAll": 1, "account.status": 20,
                   "userDataStream.subscribe.signature": 2, "userDataStream.unsubscribe": 2,
                   "ping": 1, "time": 1, "order.status": 4, "myTrades": 20}
_DEPTH_WEIGHTS: Final = ((100, 5), (500, 25), (1000, 50), (5000, 250))  # spot's by limit
_ZERO: Final = "0.00000000"


def frame_header(length: int, opcode: int = 0x1) -> bytes:
    """The header of a final, unmasked server frame of ``length`` payload bytes."""
    if length < 126:
        return bytes((0x80 | opcode, length))
    if length < 1 << 16:
        return struct.pack("!BBH", 0x80 | opcode, 126, length)
    return struct.pack("!BBQ", 0x80 | opcode, 127, length)


def server_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A whole unmasked server frame (text by default)."""
    return frame_header(len(payload), opcode) + payload


def accept_key(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for the client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key.strip() + _GUID).digest())


def decimal8(text: str) -> str:
    """Decimal ``text`` with at least 8 decimals, as Binance spot prints prices and sizes
    (``"61829.03"`` -> ``"61829.03000000"``); the digits themselves are kept."""
    whole, dot, frac = text.partition(".")
    return f"{whole}.{frac.ljust(8, '0')}" if len(frac) < 8 or not dot else text


class Tape:
    """A recording's lines in memory: each stream frame pre-built into the websocket frame
    that carries it (``wire``), with its stream and its time of sending (``due_s``: seconds
    after the first line, at ``speed``); REST snapshot lines are kept (``lines``) for the
    book, never sent."""

    def __init__(self, items: Iterable[tuple[int, bytes]], speed: float) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.lines: list[tuple[int, bytes]] = []
        self.wire: list[bytes | None] = []
        self.stream: list[str] = []
        self.due_s: list[float] = []
        first = -1
        for recv_ns, frame in items:
            first = recv_ns if first < 0 else first
            self.lines.append((recv_ns, frame))
            self.due_s.append((recv_ns - first) / 1e9 / speed)
            if frame.startswith(_ENVELOPE):
                end = frame.index(b'"', len(_ENVELOPE))
                self.stream.append(frame[len(_ENVELOPE):end].decode())
                self.wire.append(server_frame(frame))
            else:
                self.stream.append("")
                self.wire.append(None)
        if not self.lines:
            raise ValueError("the recording holds no frame")

    @classmethod
    def read(cls, paths: list[Path], lines: int | None, speed: float) -> Tape:
        """The first ``lines`` lines (None: all) of the recordings ``paths``; malformed
        lines are left out, as the sim leaves them."""
        items = islice(read_recording(paths), lines)
        return cls((item for item in items if not isinstance(item, Malformed)), speed)


class _Order:
    """One order the venue holds: its text fields as Binance prints them, times in ms."""

    __slots__ = ("cancel_id", "client_id", "created_ms", "order_id", "price", "qty", "side",
                 "status", "update_ms")

    def __init__(self, order_id: int, client_id: str, side: str, price: str, qty: str,
                 ms: int) -> None:
        self.order_id, self.client_id, self.side, self.price, self.qty = (
            order_id, client_id, side, price, qty)
        self.created_ms = self.update_ms = ms
        self.status, self.cancel_id = "NEW", ""


class LeanVenue:
    """The stand-in: the ``tape`` of ``instrument``, its stream and order-entry connections,
    the orders it holds, and what it measured (see the module docstring)."""

    def __init__(self, tape: Tape, instrument: Instrument = BINANCE_SPOT_BTCUSDT) -> None:
        self.tape = tape
        self.instrument = instrument
        assets = assets_of(instrument.symbol)
        self._balances = [{"asset": assets.base, "free": "1.00000000", "locked": _ZERO},
                          {"asset": assets.quote, "free": "100000.00000000", "locked": _ZERO}]
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self.port = 0
        self.streams: set[Connection] = set()  # stream connections being sent to
        self.subscribers: dict[Connection, int] = {}  # user-data subscriptions: id
        self.pos = 0  # the next line of the tape to play
        self.started = asyncio.Event()
        self.finished = asyncio.Event()
        self._t0 = 0.0  # loop time of the first line
        # the book for REST snapshots: the sim's, brought up to the tape position on demand
        self._book = MarketTape([], instrument, 1.0, SystemClock())
        self._booked = 0  # lines of the tape applied to it
        self._info = SimVenue([], instrument, speed=1.0, clock=SystemClock())
        self.orders: dict[int, _Order] = {}  # every order ever placed, by orderId
        self.open: dict[str, _Order] = {}  # open orders by client order id
        self._next_order = self._exec_id = self._weight = 0
        self._minute = -1
        self._events: list[dict[str, Any]] = []  # the request's executionReports, in order
        self._methods: dict[str, Callable[[Connection, dict[str, Any]], Any]] = {
            "order.place": self._place, "order.cancel": self._cancel,
            "order.cancelReplace": self._cancel_replace, "order.status": self._order_status,
            "openOrders.status": self._open_orders, "openOrders.cancelAll": self._cancel_all,
            "account.status": self._account, "myTrades": lambda c, p: [],
            "userDataStream.subscribe.signature": self._subscribe,
            "userDataStream.unsubscribe": self._unsubscribe,
            "ping": lambda c, p: {}, "time": lambda c, p: {"serverTime": _wall_ms()}}
        # what it measured
        self.depth_sent_ns: list[int] = []  # each depth frame's sending, perf_counter ns
        self.requests_ns: list[int] = []  # each order.place/cancelReplace read
        self.request_cpu_ns: list[int] = []  # CPU of each order.place/cancelReplace
        # frame writes (one per frame and connection), frames played, bursts of them; CPU
        # of every other request and of the bursts
        self.frames_sent = self.frames_played = self.ticks = 0
        self.other_cpu_ns = self.tick_cpu_ns = 0
        self.by_method: dict[str, int] = {}
        self.refused: dict[str, int] = {}  # "method code" -> count
        self.places = {"BUY": 0, "SELL": 0}  # places and replacements by side
        self.depth_requests = {"ok": 0, "not_ready": 0}
        self.cut_off = 0  # stream clients cut off for not reading
        self.protocol_errors = 0
        self._cpu0 = 0.0

    # -- serving --------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host``:``port`` (0: any free port; :attr:`port` is the one taken)."""
        self.loop = asyncio.get_running_loop()
        self._server = await self.loop.create_server(lambda: Connection(self), host, port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for conn in [*self.streams, *self.subscribers]:
            conn.close(1001)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # -- the tape -------------------------------------------------------------------------

    def subscribed(self, conn: Connection) -> None:
        """A stream connection is open: it gets frames from now on; the first starts the
        tape."""
        self.streams.add(conn)
        if not self.started.is_set():
            self.started.set()
            assert self.loop is not None
            self._cpu0 = time.process_time()
            self._t0 = self.loop.time()
            self._tick()

    def _tick(self) -> None:
        """Send every frame due now, then wait for the next one."""
        cpu = time.thread_time_ns()
        loop, tape = self.loop, self.tape
        assert loop is not None
        # what is due within the timer's granularity (uvloop's timers count whole ms, and
        # one set less than 1 ms ahead fires at once: a spin, without this)
        now = loop.time() - self._t0 + TIMER_MS
        due, wire, stream, n = tape.due_s, tape.wire, tape.stream, len(tape.due_s)
        i, clock, sent = self.pos, time.perf_counter_ns, self.depth_sent_ns
        conns = self.streams
        while i < n and due[i] <= now:
            frame = wire[i]
            if frame is not None:
                name = stream[i]
                if "@depth" in name:  # before the write: see the module docstring
                    sent.append(clock())
                for conn in conns:
                    if name in conn.stream_names:
                        conn.transport.write(frame)
                        self.frames_sent += 1
                self.frames_played += 1
            i += 1
        self.pos = i
        for conn in [c for c in conns if c.transport.get_write_buffer_size() > MAX_BACKLOG]:
            self.cut_off += 1
            conn.abort()
        self.tick_cpu_ns += time.thread_time_ns() - cpu
        self.ticks += 1
        if i < n:
            loop.call_at(self._t0 + due[i], self._tick)
        else:
            self.finished.set()

    def depth(self, query: dict[str, str]) -> tuple[int, bytes]:
        """``GET /api/v3/depth``: the status and body."""
        if query.get("symbol", "").upper() != self.instrument.symbol:
            return 400, _error(-1121, "Invalid symbol.")
        limit = _int(query.get("limit", "100"))
        if limit < 1:
            return 400, _error(-1100, "Illegal value for parameter 'limit'.")
        market, lines = self._book.market, self.tape.lines
        for recv_ns, frame in lines[self._booked:self.pos]:
            market.on_frame(recv_ns, frame)
        self._booked = max(self._booked, self.pos)
        body = self._book.depth_snapshot(min(limit, 5000))
        if body is None:
            self.depth_requests["not_ready"] += 1
            return 503, _error(-1003, "Service unavailable: the book is not ready yet.")
        self.depth_requests["ok"] += 1
        return 200, body

    def exchange_info(self, query: dict[str, str]) -> tuple[int, bytes]:
        symbol = query.get("symbol")
        if symbol is not None and symbol.upper() != self.instrument.symbol:
            return 400, _error(-1121, "Invalid symbol.")
        return 200, orjson.dumps(self._info._exchange_info())

    def charge(self, weight: int) -> int:
        """Charge ``weight`` to this minute (wall clock); the weight used in it."""
        minute = _wall_ms() // 60_000
        if minute != self._minute:
            self._minute, self._weight = minute, 0
        self._weight += weight
        return self._weight

    def rest_weight(self, path: str, query: dict[str, str]) -> int:
        if path == "/api/v3/depth":
            limit = _int(query.get("limit", "100"))
            return next((w for most, w in _DEPTH_WEIGHTS if limit <= most), 250)
        return 20 if path == "/api/v3/exchangeInfo" else 1

    # -- order entry ----------------------------------------------------------------------

    def request(self, conn: Connection, message: bytes, read_ns: int) -> None:
        """One ``/ws-api/v3`` request read at ``read_ns``: answer it, then its events."""
        cpu = time.thread_time_ns()
        rid: Any = None
        method = ""
        limits: list[dict[str, Any]] | None = None
        events: list[dict[str, Any]] = []
        self._events = events
        try:
            msg = orjson.loads(message)
            if type(msg) is not dict:
                raise Reject(-1135, "Invalid JSON Request")
            rid = msg.get("id")
            method = str(msg.get("method") or "").removeprefix("v3/")
            if method in TIMED:
                self.requests_ns.append(read_ns)
            handler = self._methods.get(method)
            if handler is None:
                raise Reject(-1100, f"Illegal characters found in parameter 'method'; "
                                      f"legal range is '{', '.join(self._methods)}'.")
            used = self.charge(_WEIGHTS[method])
            limits = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                       "intervalNum": 1, "limit": WEIGHT_LIMIT, "count": used}]
            if used > WEIGHT_LIMIT:
                raise Reject(-1003, f"Too much request weight used; current limit is "
                                      f"{WEIGHT_LIMIT} request weight per 1 MINUTE.", 429)
            result = handler(conn, msg.get("params") or {})
            answer: dict[str, Any] = {"id": rid, "status": 200, "result": result,
                                      "rateLimits": limits}
        except Reject as r:
            error: dict[str, Any] = {"code": r.code, "msg": r.msg}
            if r.data is not None:
                error["data"] = r.data
            answer = {"id": rid, "status": r.status, "error": error}
            if limits is not None:
                answer["rateLimits"] = limits
            key = f"{method} {r.code}"
            self.refused[key] = self.refused.get(key, 0) + 1
        except orjson.JSONDecodeError:
            answer = {"id": None, "status": 400,
                      "error": {"code": -1135, "msg": "Invalid JSON Request"}}
        self.by_method[method] = self.by_method.get(method, 0) + 1
        # the answer, then its events (as the venue orders them): one write, one system
        # call, for the requester's own subscription, the common case
        out = [orjson.dumps(answer)]
        for event in events:
            for sub, sid in self.subscribers.items():
                frame = orjson.dumps({"subscriptionId": sid, "event": event})
                if sub is conn:
                    out.append(frame)
                else:
                    sub.send(frame)
        conn.send(*out)
        spent = time.thread_time_ns() - cpu
        if method in TIMED:
            self.request_cpu_ns.append(spent)
        else:
            self.other_cpu_ns += spent

    def _side(self, params: dict[str, Any]) -> str:
        side = params.get("side")
        if side not in ("BUY", "SELL"):
            raise Reject(-1117, "Invalid side.")
        return str(side)

    def _new_order(self, params: dict[str, Any]) -> _Order:
        side = self._side(params)
        client_id = str(params.get("newClientOrderId") or f"lean-{self._next_order + 1}")
        if client_id in self.open:
            raise Reject(-2010, "Duplicate order sent.")
        self._next_order += 1
        order = _Order(self._next_order, client_id, side, decimal8(str(params.get("price"))),
                       decimal8(str(params.get("quantity"))), _wall_ms())
        self.orders[order.order_id] = self.open[client_id] = order
        self.places[side] += 1
        self._report(order, "NEW")
        return order

    def _close(self, order: _Order, cancel_id: str | None) -> None:
        order.status, order.update_ms = "CANCELED", _wall_ms()
        order.cancel_id = cancel_id or f"lean-cxl-{order.order_id}"
        del self.open[order.client_id]
        self._report(order, "CANCELED")

    def _find(self, params: dict[str, Any], id_key: str, client_key: str) -> _Order | None:
        client_id = params.get(client_key)
        if client_id:
            return self.open.get(client_id)
        order = self.orders.get(_int(params.get(id_key)))
        return order if order is not None and order.status == "NEW" else None

    def _place(self, conn: Connection, params: dict[str, Any]) -> Any:
        return self._placed(self._new_order(params), params.get("newOrderRespType"))

    def _cancel(self, conn: Connection, params: dict[str, Any]) -> Any:
        order = self._find(params, "orderId", "origClientOrderId")
        if order is None:
            raise Reject(-2011, MSG_UNKNOWN_ORDER)
        self._close(order, params.get("newClientOrderId"))
        return self._cancelled(order)

    def _cancel_replace(self, conn: Connection, params: dict[str, Any]) -> Any:
        self._side(params)  # checked before anything is cancelled, as at the venue
        order = self._find(params, "cancelOrderId", "cancelOrigClientOrderId")
        if order is None:  # STOP_ON_FAILURE: nothing placed (the daemon's only mode)
            raise Reject(-2022, "Order cancel-replace failed.", 400, {
                "cancelResult": "FAILURE", "newOrderResult": "NOT_ATTEMPTED",
                "cancelResponse": {"code": -2011, "msg": MSG_UNKNOWN_ORDER},
                "newOrderResponse": None})
        self._close(order, params.get("cancelNewClientOrderId"))
        new = self._new_order(params)
        return {"cancelResult": "SUCCESS", "newOrderResult": "SUCCESS",
                "cancelResponse": self._cancelled(order),
                "newOrderResponse": self._placed(new, params.get("newOrderRespType"))}

    def _order_status(self, conn: Connection, params: dict[str, Any]) -> Any:
        order = self.orders.get(_int(params.get("orderId")))
        if order is None:
            client_id = params.get("origClientOrderId")
            order = next((o for o in reversed(self.orders.values())
                          if o.client_id == client_id), None)
        if order is None:
            raise Reject(-2013, "Order does not exist.")
        return self._status(order)

    def _open_orders(self, conn: Connection, params: dict[str, Any]) -> Any:
        return [self._status(order) for order in self.open.values()]

    def _cancel_all(self, conn: Connection, params: dict[str, Any]) -> Any:
        orders = list(self.open.values())
        if not orders:
            raise Reject(-2011, MSG_UNKNOWN_ORDER)
        for order in orders:
            self._close(order, None)
        return [self._cancelled(order) for order in orders]

    def _account(self, conn: Connection, params: dict[str, Any]) -> Any:
        rates = {"maker": _ZERO, "taker": _ZERO, "buyer": _ZERO, "seller": _ZERO}
        return {"makerCommission": 0, "takerCommission": 0, "buyerCommission": 0,
                "sellerCommission": 0, "canTrade": True, "canWithdraw": False,
                "canDeposit": False, "commissionRates": rates, "brokered": False,
                "requireSelfTradePrevention": False, "preventSor": False, "updateTime": 0,
                "accountType": "SPOT", "balances": self._balances, "permissions": ["SPOT"],
                "uid": 1}

    def _subscribe(self, conn: Connection, params: dict[str, Any]) -> Any:
        sid = self.subscribers.setdefault(conn, len(self.subscribers))
        return {"subscriptionId": sid}

    def _unsubscribe(self, conn: Connection, params: dict[str, Any]) -> Any:
        self.subscribers.pop(conn, None)
        return {}

    # -- answers and events, shaped as mmdaemon.sim.protocol's ---------------------------

    def _common(self, order: _Order) -> dict[str, Any]:
        return {"price": order.price, "origQty": order.qty, "executedQty": _ZERO,
                "origQuoteOrderQty": _ZERO, "cummulativeQuoteQty": _ZERO,
                "status": order.status, "timeInForce": "GTC", "type": "LIMIT_MAKER",
                "side": order.side}

    def _placed(self, order: _Order, resp_type: object) -> dict[str, Any]:
        out: dict[str, Any] = {"symbol": self.instrument.symbol, "orderId": order.order_id,
                               "orderListId": -1, "clientOrderId": order.client_id,
                               "transactTime": order.created_ms}
        if resp_type in (None, "ACK"):
            return out
        out.update(self._common(order))
        out["workingTime"] = order.created_ms
        if resp_type == "FULL":
            out["fills"] = []
        out["selfTradePreventionMode"] = "NONE"
        return out

    def _cancelled(self, order: _Order) -> dict[str, Any]:
        out = {"symbol": self.instrument.symbol, "origClientOrderId": order.client_id,
               "orderId": order.order_id, "orderListId": -1, "clientOrderId": order.cancel_id,
               "transactTime": order.update_ms, **self._common(order)}
        out["selfTradePreventionMode"] = "NONE"
        return out

    def _status(self, order: _Order) -> dict[str, Any]:
        return {"symbol": self.instrument.symbol, "orderId": order.order_id, "orderListId": -1,
                "clientOrderId": order.client_id, **self._common(order),
                "stopPrice": _ZERO, "icebergQty": _ZERO, "time": order.created_ms,
                "updateTime": order.update_ms, "isWorking": order.status == "NEW",
                "workingTime": order.created_ms, "selfTradePreventionMode": "NONE"}

    def _report(self, order: _Order, kind: str) -> None:
        """Queue the ``executionReport`` of ``order`` (``kind`` NEW or CANCELED)."""
        if not self.subscribers:
            return
        self._exec_id += 1
        cancel = kind == "CANCELED"
        event = {"e": "executionReport", "E": order.update_ms, "s": self.instrument.symbol,
                 "c": order.cancel_id if cancel else order.client_id, "S": order.side,
                 "o": "LIMIT_MAKER", "f": "GTC", "q": order.qty, "p": order.price,
                 "P": _ZERO, "F": _ZERO, "g": -1, "C": order.client_id if cancel else "",
                 "x": kind, "X": order.status, "r": "NONE", "i": order.order_id, "l": _ZERO,
                 "z": _ZERO, "L": _ZERO, "n": "0", "N": None, "T": order.update_ms, "t": -1,
                 "I": self._exec_id, "w": not cancel, "m": False, "M": False,
                 "O": order.created_ms, "Z": _ZERO, "Y": _ZERO, "Q": _ZERO, "V": "NONE"}
        if not cancel:
            event["W"] = order.created_ms
        self._events.append(event)

    def stats(self) -> dict[str, Any]:
        """What it measured: the loopback's raw stamps (``depth_sent_ns``, ``requests_ns``,
        perf_counter ns) and its own cost (CPU us: per timed request, per frame played,
        the whole process's while the tape played)."""
        cpu = sorted(self.request_cpu_ns)
        return {
            "lines": len(self.tape.lines), "lines_played": self.pos,
            "finished": self.finished.is_set(), "frames_sent": self.frames_sent,
            "depth_sent_ns": self.depth_sent_ns, "requests_ns": self.requests_ns,
            "requests_by_method": self.by_method, "refused": self.refused,
            "places_by_side": self.places, "open_orders": len(self.open),
            "depth_requests": self.depth_requests, "cut_off": self.cut_off,
            "protocol_errors": self.protocol_errors,
            "cpu_us_per_order_request": {
                "mean": round(sum(cpu) / max(1, len(cpu)) / 1000, 1),
                "p50": percentile_us(cpu, 0.5), "p99": percentile_us(cpu, 0.99),
                "max": percentile_us(cpu, 1.0)},
            "cpu_us_other_requests": round(self.other_cpu_ns / 1000, 1),
            "cpu_us_per_frame": round(self.tick_cpu_ns / max(1, self.frames_played) / 1000, 2),
            "bursts": self.ticks,
            "process_cpu_s_since_start": round(time.process_time() - self._cpu0, 3)
            if self.started.is_set() else 0.0,
        }


def _error(code: int, msg: str) -> bytes:
    """A REST error body, as Binance's."""
    return orjson.dumps({"code": code, "msg": msg})


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _int(value: object) -> int:
    """An integer parameter (int or digits); -1 (no such order, no legal limit) else."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(value) if isinstance(value, str) and value.isdigit() else -1


_REASONS: Final = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests",
                   431: "Request Header Fields Too Large", 503: "Service Unavailable"}


class Connection(asyncio.Protocol):
    """One TCP connection: an HTTP request (answered, then closed) or a websocket upgrade
    to a stream or order-entry connection (see the module docstring)."""

    def __init__(self, venue: LeanVenue) -> None:
        self.venue = venue
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.buf = bytearray()
        self.kind = ""  # "" (HTTP), "stream" or "orders"
        self.stream_names: frozenset[str] = frozenset()
        self.parts: list[bytes] | None = None  # a fragmented message's frames so far
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.venue.streams.discard(self)
        self.venue.subscribers.pop(self, None)

    def data_received(self, data: bytes) -> None:
        read_ns = time.perf_counter_ns()
        self.buf += data
        if not self.kind:
            self._http()
        if self.kind and self.buf:
            self._frames(read_ns)

    # -- HTTP -----------------------------------------------------------------------------

    def _http(self) -> None:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                self._respond(431, b'{"code":-1000,"msg":"request head too large"}')
            return
        head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        del self.buf[:end + 4]
        parts = head[0].split(" ")
        headers = {k.strip().lower(): v.strip()
                   for k, _, v in (line.partition(":") for line in head[1:])}
        url = urlsplit(parts[1] if len(parts) == 3 else "/")
        if "websocket" in headers.get("upgrade", "").lower():
            self._upgrade(url.path, url.query, headers)
            return
        venue = self.venue
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        used = venue.charge(venue.rest_weight(url.path, query))
        if url.path == "/api/v3/depth":
            status, body = venue.depth(query)
        elif url.path == "/api/v3/exchangeInfo":
            status, body = venue.exchange_info(query)
        elif url.path == "/api/v3/ping":
            status, body = 200, b"{}"
        elif url.path == "/api/v3/time":
            status, body = 200, orjson.dumps({"serverTime": _wall_ms()})
        else:
            status, body = 404, _error(-1000, f"unknown path {url.path}")
        self._respond(status, body, used)

    def _respond(self, status: int, body: bytes, used: int = 0) -> None:
        """An HTTP answer, then the connection closed (``Connection: close``, as the sim)."""
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"x-mbx-used-weight: %d\r\nx-mbx-used-weight-1m: %d\r\nConnection: close\r\n\r\n"
            % (status, _REASONS.get(status, "Error").encode(), len(body), used, used) + body)
        self.transport.close()

    def _upgrade(self, path: str, query: str, headers: dict[str, str]) -> None:
        key = headers.get("sec-websocket-key", "")
        if not key or headers.get("sec-websocket-version") != "13":
            self._respond(400, b'{"code":-1000,"msg":"not a websocket handshake"}')
            return
        if path == "/stream":
            names = parse_qs(query).get("streams", [""])[-1]
            self.kind, self.stream_names = "stream", frozenset(s for s in names.split("/") if s)
        elif path == "/ws-api/v3":
            self.kind = "orders"
        else:
            self._respond(404, _error(-1000, f"unknown path {path}"))
            return
        self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                             + accept_key(key.encode()) + b"\r\n\r\n")
        if self.kind == "stream":
            self.venue.subscribed(self)

    # -- websocket ------------------------------------------------------------------------

    def _frames(self, read_ns: int) -> None:
        """Every whole client frame in the buffer."""
        buf, pos, n = self.buf, 0, len(self.buf)
        while n - pos >= 2 and not self.closing:
            b0, b1 = buf[pos], buf[pos + 1]
            opcode, length, head = b0 & 0x0F, b1 & 0x7F, 2
            if b0 & 0x70 or not b1 & 0x80:  # no extension was agreed; clients must mask
                self._fail(1002)
                return
            if length == 126:
                if n - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            if length > MAX_MESSAGE:
                self._fail(1009)
                return
            start = pos + head + 4
            if n < start + length:
                break
            payload = apply_mask(bytes(buf[start:start + length]),
                                 bytes(buf[pos + head:start]))
            pos = start + length
            if opcode >= 0x8:
                if not b0 & 0x80 or length > 125:
                    self._fail(1002)
                    return
                self._control(opcode, payload)
            elif opcode == 0x0:  # a continuation
                if self.parts is None:
                    self._fail(1002)
                    return
                self.parts.append(payload)
                if b0 & 0x80:
                    message, self.parts = b"".join(self.parts), None
                    self._message(message, read_ns)
            elif opcode in (0x1, 0x2):
                if self.parts is not None:
                    self._fail(1002)
                    return
                if b0 & 0x80:
                    self._message(payload, read_ns)
                else:
                    self.parts = [payload]
            else:
                self._fail(1002)
                return
        del buf[:pos]

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x9:  # ping: pong with its payload
            self.transport.write(server_frame(payload, 0xA))
        elif opcode == 0x8:  # close: the same code back, then the TCP connection
            self.closing = True
            self.transport.write(server_frame(payload[:2], 0x8))
            self.transport.close()
        # 0xA pong: nothing to do (we send no pings)

    def _message(self, message: bytes, read_ns: int) -> None:
        if self.kind == "orders":
            self.venue.request(self, message, read_ns)
        else:  # streams are chosen in the URL here; control requests are not served
            self.send(orjson.dumps({"error": {"code": 2, "msg": "Invalid request: this "
                                              "venue takes streams in the URL only"},
                                    "id": None}))

    def send(self, *payloads: bytes) -> None:
        """Text messages to the client, in one write."""
        if not self.closing:
            self.transport.write(b"".join(
                [part for p in payloads for part in (frame_header(len(p)), p)]))

    def close(self, code: int) -> None:
        """Close from the venue's side with ``code`` (1001: going away)."""
        self.connection_lost(None)  # nothing more is sent to it
        if not self.closing:
            self.closing = True
            self.transport.write(server_frame(struct.pack("!H", code), 0x8))
            self.transport.close()

    def abort(self) -> None:
        self.connection_lost(None)
        self.closing = True
        self.transport.abort()

    def _fail(self, code: int) -> None:
        self.venue.protocol_errors += 1
        self.close(code)


def _print(event: str, **fields: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps({"event": event, **fields}) + b"\n")
    sys.stdout.flush()


async def serve(tape: Tape, port: int, stats: Path | None) -> None:
    """Serve ``tape`` on 127.0.0.1:``port`` until SIGTERM/SIGINT; the figures to ``stats``."""
    venue = LeanVenue(tape)
    await venue.start(port=port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    _print("lean_listening", port=venue.port, lines=len(tape.lines))
    finished = asyncio.ensure_future(venue.finished.wait())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([finished, stopping], return_when=asyncio.FIRST_COMPLETED)
    if finished.done():
        _print("lean_finished", lines=venue.pos, frames_sent=venue.frames_sent)
        await stopping
    finished.cancel()
    figures = venue.stats()
    await venue.stop()
    if stats is not None:
        stats.write_bytes(orjson.dumps(figures))
    _print("lean_stopped", finished=figures["finished"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recordings", nargs="+", type=Path)
    parser.add_argument("--lines", type=int, default=None, help="play only the first N lines")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--stats", type=Path, default=None, help="write the figures here")
    parser.add_argument("--nice", type=int, default=0, help="this process's niceness")
    args = parser.parse_args()
    tape = Tape.read(args.recordings, args.lines, args.speed)
    if args.nice:
        with contextlib.suppress(PermissionError):
            os.nice(args.nice)
    uvloop.run(serve(tape, args.port, args.stats))


if __name__ == "__main__":
    main()
