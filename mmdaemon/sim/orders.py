"""The sim venue's order entry: a subset of Binance's spot WebSocket API over a PaperVenue.

:class:`OrderEntry` serves ``/ws-api/v3`` for ONE symbol. It is a thin shell: the matching
is :class:`~mmdaemon.exchange.fill_model.PaperVenue`'s (latency, post-only, queue position,
fees), the same model the daemon's paper mode uses, so paper and sim agree by construction.
The protocol's server side (error messages, response and event shapes, the signature and
timing checks) is :mod:`mmdaemon.sim.wire`'s, the other end of
:mod:`mmdaemon.venues.binance_api`, the client side the daemon's gateway uses.

Methods: ``order.place`` (LIMIT_MAKER only), ``order.cancel``, ``order.cancelReplace``,
``order.status``, ``openOrders.status``, ``openOrders.cancelAll``, ``account.status``,
``myTrades``, ``userDataStream.subscribe.signature``, ``userDataStream.unsubscribe``,
``ping``, ``time``. A ``v3/`` prefix on the method name is accepted, as at the venue.
``myTrades`` answers from each account's trade history (every fill, kept for the life of
the sim), ``order.status`` from every order ever accepted, open or closed.

Checks, in the venue's order: request shape (bad JSON or a non-object: -1135 with id null),
method (-1100), request weight per minute (-1003, status 429, with ``data.retryAfter`` =
the start of the next minute in ms, as the venue sends it), then for SIGNED methods the
API key (-1102 missing, -2014 malformed, -2015 unknown), ``timestamp``/``recvWindow``
(-1102/-1100), ``signature`` (-1022) and timing against ``now_ms()`` (-1021, the venue's
rule: ``timestamp < now + 1000`` and ``now - timestamp <= recvWindow``), then the method's
parameters (-1102 missing, -1100 malformed, -1121 symbol, -1117 side, -1116/-1020 type,
-1114 timeInForce, -1013 filters) and finally the matching engine (-2010, -2011).

Time. ``now_ms()`` is the server clock clients sign against (timing checks, rate-limit
windows, the ``time`` method). Order events are stamped with model time: the ``now_ns`` of
the last market event given to :meth:`OrderEntry.on_book`/:meth:`OrderEntry.on_trade`
(ms), which is also the time requests are handed to the PaperVenue at; so fills carry the
replayed market's time and markouts line up with the replayed book.

Synchronous answers. Binance answers ``order.place`` after the matching engine ran it, so a
post-only order that would cross is refused in the response (-2010 "Order would immediately
match and take."). The sim checks that at request time against the last book seen and our
own resting orders, hands the order to the PaperVenue and processes whatever is due
(:meth:`PaperVenue.advance`). With ``latency_ns = 0`` (recommended for the sim: the loopback
is the real latency) the venue decides at once and the answer is exactly its decision. With
a positive latency the answer is the request-time check and the venue's own check at
arrival stays: if the book moved meanwhile, the order, already acknowledged NEW, ends with
an ``executionReport`` REJECTED (``r`` = WOULD_MATCH_IMMEDIATELY), which is how a venue
reports an order it accepted and then refused. Cancels are answered CANCELED at once; with
a positive latency the order can still fill before the cancel arrives and that fill is
reported (TRADE with status CANCELED): the account must stay true to the model.

Deviations from Binance, on purpose: commissions are charged in the quote asset on both
sides (Binance charges a buyer in the base asset unless paying with BNB) with the
PaperVenue's maker rate, and may be negative for a rebate; ``order.cancelReplace`` is a
cancel and a new order (a new ``orderId`` at the back of the queue), exactly as at Binance;
balances are not checked unless ``enforce_balance`` (then -2010 "Account has insufficient
balance for requested action."); only the REQUEST_WEIGHT rate limit is modelled (orders
per 10 s are not); each API key is its own account; orders survive a disconnect.

User data. After ``userDataStream.subscribe.signature`` a connection receives
``{"subscriptionId": n, "event": ...}`` for every order event of that API key's orders
(``executionReport``; ``outboundAccountPosition`` after fills), in the order they happened.
Outgoing frames go through a bounded queue per connection; a client that does not read
and lets it fill up is disconnected (close code 1008) rather than silently losing an event
(fail closed: a client that missed an execution report must not carry on).

Faults for tests, each a plain attribute or method: :meth:`OrderEntry.drop_connections`
(close every order-entry connection from the venue's side), :attr:`OrderEntry.accepting`
(False: a new connection is closed at once with 1013, "try again later"),
:attr:`OrderEntry.blackhole` (True: requests are still executed but nothing is sent back,
neither responses nor events: a network path that silently lost its way back),
:meth:`OrderEntry.delay_requests` (requests of a method run late and later requests overtake
them: a cancel reaches the matching engine before the place it cancels, acks come late)
and :meth:`OrderEntry.hold_responses` (requests run at once, their events go out, their
responses come late: an order can be acknowledged and fill on the user-data stream before
its ``order.place`` response; :attr:`OrderEntry.fills_before_response` counts those fills).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Final, NamedTuple

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from mmdaemon.book import OrderBook
from mmdaemon.exchange.fill_model import NO_BOOK, POST_ONLY_CROSS, PaperVenue
from mmdaemon.model import ExecutionEvent, Fill, Instrument, OrderStatus, OrderUpdate, Side, Trade
from mmdaemon.sim import wire
from mmdaemon.venues import binance_api as api

_MS: Final = 1_000_000  # ns per ms
_API_KEY_RE: Final = re.compile(r"[A-Za-z0-9]{1,128}")
_INT_RE: Final = re.compile(r"-?[0-9]{1,20}")
_DECIMAL_RE: Final = re.compile(r"[0-9]{1,20}(\.[0-9]{1,20})?")
_DECIMAL_LEGAL: Final = "^([0-9]{1,20})(\\.[0-9]{1,20})?$"
_OTHER_TYPES: Final = frozenset(
    {"LIMIT", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"}
)
_RESP_TYPES: Final = ("ACK", "RESULT", "FULL")
_WORKING: Final = frozenset({"NEW", "PARTIALLY_FILLED"})


class OpenOrder(NamedTuple):
    """An open order as the sim sees it: venue ``order_id``, ``price`` ticks, sizes lots."""

    api_key: str
    order_id: int
    client_order_id: str
    side: Side
    price: int
    size: int
    executed: int
    status: str


class Account:
    """One API key's spot account, exact: base asset in lots, quote asset in notional units.

    ``position_lots`` is the net base bought minus sold since the start, in lots;
    ``update_ms`` the model time of the last fill.
    """

    __slots__ = ("base_lots", "position_lots", "quote_units", "update_ms")

    def __init__(self, base_lots: int, quote_units: int) -> None:
        self.base_lots = base_lots
        self.quote_units = quote_units
        self.position_lots = 0
        self.update_ms = 0

    def apply_fill(self, side: Side, size: int, notional: int, fee: int, ms: int) -> None:
        """``size`` lots traded for ``notional`` units, paying ``fee`` units of quote."""
        if side is Side.BUY:
            self.base_lots += size
            self.quote_units -= notional + fee
            self.position_lots += size
        else:
            self.base_lots -= size
            self.quote_units += notional - fee
            self.position_lots -= size
        self.update_ms = ms


class _Order:
    """One venue order (its PaperVenue id is its ``order_id``)."""

    __slots__ = (
        "acked",
        "api_key",
        "cancel_client_id",
        "client_id",
        "closed",
        "created_ms",
        "cum_quote",
        "executed",
        "order_id",
        "price",
        "reject_reason",
        "side",
        "size",
        "status",
        "update_ms",
        "working_ms",
    )

    def __init__(
        self, api_key: str, order_id: int, client_id: str, side: Side, price: int, size: int,
        ms: int,
    ) -> None:
        self.api_key = api_key
        self.order_id = order_id
        self.client_id = client_id
        self.side = side
        self.price = price  # ticks
        self.size = size  # lots
        self.executed = 0  # lots
        self.cum_quote = 0  # notional units
        self.status = "NEW"  # Binance order status, as the client was told
        self.created_ms = ms
        self.update_ms = ms
        self.working_ms = -1
        self.acked = False  # the client was told NEW (response or executionReport)
        self.closed = False  # the client was told it is final
        self.cancel_client_id = ""  # the id a cancel gave it (``c`` of its CANCELED report)
        self.reject_reason = ""  # the PaperVenue's reason when it refused the order

    def view(self) -> wire.OrderView:
        return wire.OrderView(
            self.order_id, self.client_id, self.side, self.price, self.size, self.executed,
            self.cum_quote, self.status, self.created_ms, self.working_ms,
        )


class _Conn:
    """One ``/ws-api/v3`` connection: its outgoing queue and user-data subscriptions."""

    __slots__ = ("dead", "next_sub", "queue", "subs", "ws")

    def __init__(self, ws: ServerConnection, max_queue: int) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(max_queue)
        self.subs: dict[str, int] = {}  # API key -> subscriptionId
        self.next_sub = 0
        self.dead = False  # closed or closing: nothing more is queued


class _Reject(Exception):
    """A request refused with a Binance error (status 400 unless said otherwise)."""

    def __init__(self, code: int, msg: str, status: int = 400, data: Any = None) -> None:
        super().__init__(code, msg)
        self.code = code
        self.msg = msg
        self.status = status
        self.data = data


Handler = Callable[[_Conn, dict[str, Any], str], Any]


class _Method(NamedTuple):
    handler: Handler
    weight: int
    signed: bool


class OrderEntry:
    """Order entry of the sim venue for ``instrument``, matching in ``venue``.

    ``api_keys`` maps API key -> HMAC secret; each key is its own account, starting with
    ``base_balance`` and ``quote_balance`` (decimal text). ``now_ms`` is the server clock in
    ms since the epoch (timing checks); ``recv_window_max_ms`` the largest ``recvWindow``
    accepted. ``weight_limit`` is the request weight per minute (all connections, as for
    one IP); ``max_queue`` bounds each connection's outgoing frames.
    """

    def __init__(
        self,
        instrument: Instrument,
        venue: PaperVenue,
        api_keys: dict[str, str],
        now_ms: Callable[[], int],
        recv_window_max_ms: int = api.MAX_RECV_WINDOW_MS,
        *,
        base_asset: str | None = None,
        quote_asset: str | None = None,
        base_balance: str = "0",
        quote_balance: str = "0",
        enforce_balance: bool = False,
        weight_limit: int = 6000,
        max_queue: int = 1024,
    ) -> None:
        if venue.instrument.symbol != instrument.symbol:
            raise ValueError(
                f"OrderEntry: venue trades {venue.instrument.symbol}, not {instrument.symbol}"
            )
        if not api_keys or not all(isinstance(k, str) and k for k in api_keys):
            raise ValueError("OrderEntry.api_keys: expected a non-empty {api_key: secret}")
        if recv_window_max_ms <= 0 or weight_limit <= 0 or max_queue <= 0:
            raise ValueError("OrderEntry: recv_window_max_ms, weight_limit, max_queue must be > 0")
        self.instrument = instrument
        self.venue = venue
        if base_asset is None or quote_asset is None:
            guess = api.assets_of(instrument.symbol)
            base_asset = base_asset or guess.base
            quote_asset = quote_asset or guess.quote
        self.assets = api.Assets(base_asset, quote_asset)
        self._api_keys = dict(api_keys)
        self._now_ms = now_ms
        self.recv_window_max_ms = recv_window_max_ms
        self.enforce_balance = enforce_balance
        self.weight_limit = weight_limit
        self._max_queue = max_queue
        self._unit = api.notional_unit(instrument)
        self._min_notional = Fraction(instrument.min_notional) / self._unit  # notional units
        base_lots = instrument.lots.to_units(base_balance)
        quote = Fraction(Decimal(quote_balance)) / self._unit
        if quote.denominator != 1 or quote < 0:
            raise ValueError(f"OrderEntry.quote_balance {quote_balance!r} is not a whole "
                             f"non-negative number of {wire.notional_str(instrument, 1)}")
        self._accounts = {key: Account(base_lots, int(quote)) for key in self._api_keys}
        self._book: OrderBook | None = None
        self._now_ns = 0  # model time: the last market event's now_ns
        self._next_id = 0  # venue order ids (also the PaperVenue ids)
        self._trade_seq = 0  # trade ids ``t`` of our fills: unique, increasing
        self._exec_seq = 0  # execution ids ``I``
        self._trades: dict[str, list[api.AccountTrade]] = {key: [] for key in self._api_keys}
        self._history: dict[int, _Order] = {}  # every accepted order by orderId, open or not
        self._latest: dict[tuple[str, str], _Order] = {}  # (api key, client id) -> newest
        self._open: dict[str, dict[str, _Order]] = {key: {} for key in self._api_keys}
        self._by_id: dict[int, _Order] = {}  # open orders (client view) by orderId
        self._in_venue: dict[int, _Order] = {}  # orders the PaperVenue still holds open
        self._conns: set[_Conn] = set()
        self._outbox: list[tuple[str, dict[str, Any]]] = []  # (api key, event) to push
        self._tasks: set[asyncio.Task[None]] = set()
        self._weight_minute = -1
        self._weight_used = 0
        self.overflows = 0  # connections closed because their queue filled up
        self.internal_errors = 0  # requests answered -1000 (a bug: should stay 0)
        self.accepting = True  # test fault: False refuses new order-entry connections
        self.blackhole = False  # test fault: True sends nothing back (requests still run)
        # test faults: method -> [seconds, requests left] (delay_requests, hold_responses)
        self._delays: dict[str, list[float]] = {}
        self._holds: dict[str, list[float]] = {}
        self._placed: list[int] | None = None  # orders placed by the request being handled
        self._unanswered: set[int] = set()  # orders whose place response is being held
        self.fills_before_response = 0  # fills of orders in _unanswered
        self._methods: dict[str, _Method] = {
            api.ORDER_PLACE: _Method(self._order_place, 1, True),
            api.ORDER_CANCEL: _Method(self._order_cancel, 1, True),
            api.ORDER_CANCEL_REPLACE: _Method(self._order_cancel_replace, 1, True),
            api.OPEN_ORDERS_STATUS: _Method(self._open_orders_status, 6, True),
            api.OPEN_ORDERS_CANCEL_ALL: _Method(self._open_orders_cancel_all, 1, True),
            api.ACCOUNT_STATUS: _Method(self._account_status, 20, True),
            api.USER_DATA_SUBSCRIBE: _Method(self._subscribe, 2, True),
            api.USER_DATA_UNSUBSCRIBE: _Method(self._unsubscribe, 2, False),
            api.PING: _Method(self._ping, 1, False),
            api.TIME: _Method(self._time, 1, False),
            api.ORDER_STATUS: _Method(self._order_status, 4, True),
            api.MY_TRADES: _Method(self._my_trades, 20, True),
        }

    # ---- market side (sync, from the tape) --------------------------------------------------

    def advance(self, now_ns: int) -> None:
        """Before the market event at ``now_ns`` is applied: requests that reached the venue
        by then act on the book as it stood (strict time order)."""
        self._now_ns = max(self._now_ns, now_ns)
        events = self.venue.advance(self._now_ns)
        if events:
            self._apply(events)
        if self._outbox:
            self._flush()

    def on_book(self, book: OrderBook, now_ns: int) -> None:
        """A book update at ``now_ns``: the PaperVenue matches, events go to subscribers."""
        self._book = book
        self._now_ns = max(self._now_ns, now_ns)
        events = self.venue.on_book(book, self._now_ns)
        if events:
            self._apply(events)
        if self._outbox:
            self._flush()

    def on_trade(self, trade: Trade, now_ns: int) -> None:
        """A public trade at ``now_ns``: our orders at or through its price may fill."""
        self._now_ns = max(self._now_ns, now_ns)
        events = self.venue.on_trade(trade, self._now_ns)
        if events:
            self._apply(events)
        if self._outbox:
            self._flush()

    # ---- queries and operator actions -------------------------------------------------------

    def open_orders(self) -> list[OpenOrder]:
        """Every open order of every account, in placement order."""
        return [
            OpenOrder(o.api_key, o.order_id, o.client_id, o.side, o.price, o.size, o.executed,
                      o.status)
            for o in self._by_id.values()
        ]

    def account(self, api_key: str) -> Account:
        """The account of ``api_key`` (KeyError for an unknown key)."""
        return self._accounts[api_key]

    @property
    def connection_count(self) -> int:
        """``/ws-api/v3`` connections being served now."""
        return len(self._conns)

    @property
    def position_lots(self) -> int:
        """Net base asset bought minus sold, in lots, over all accounts."""
        return sum(a.position_lots for a in self._accounts.values())

    def cancel_all_for(self, api_key: str) -> int:
        """Cancel every open order of ``api_key`` (as ``openOrders.cancelAll``); how many."""
        orders = list(self._open.get(api_key, {}).values())
        for order in orders:
            self._cancel(order, None)
        if self._outbox:
            self._flush()
        return len(orders)

    async def drop_connections(self, *, abrupt: bool = False) -> int:
        """Close every ``/ws-api/v3`` connection from the venue's side; how many.

        A closing handshake with 1001 (going away), or with ``abrupt`` the TCP connection
        is cut without one (the client sees 1006). Orders stay, as at the venue.
        """
        conns = list(self._conns)
        for conn in conns:
            conn.dead = True
            if abrupt:
                conn.ws.transport.abort()
        if not abrupt:
            await asyncio.gather(*(c.ws.close(1001, "sim: connection dropped") for c in conns),
                                 return_exceptions=True)
        return len(conns)

    async def send_oversized(self, size: int) -> int:
        """Test fault: send every ``/ws-api/v3`` connection one text message of ``size``
        bytes, shaped like an answer (a broken or hostile venue); how many it went to."""
        conns = [conn for conn in self._conns if not conn.dead]
        head, tail = '{"id":null,"status":200,"result":"', '"}'
        message = head + "9" * (size - len(head) - len(tail)) + tail
        await asyncio.gather(*(conn.ws.send(message) for conn in conns),
                             return_exceptions=True)  # refused: the client hung up
        return len(conns)

    def delay_requests(self, method: str, seconds: float, count: int = 1) -> None:
        """Test fault: the next ``count`` ``method`` requests (any connection) run ``seconds``
        after they arrive, and requests that arrive meanwhile overtake them, as in a venue
        that processes requests concurrently. Their responses and events come that late.
        ``count`` 0 lifts the fault."""
        _set_fault(self._delays, method, seconds, count)

    def hold_responses(self, method: str, seconds: float, count: int = 1) -> None:
        """Test fault: the next ``count`` ``method`` requests run at once (their execution
        reports go out now) but their responses are sent ``seconds`` later. ``count`` 0
        lifts the fault."""
        _set_fault(self._holds, method, seconds, count)

    @property
    def late_work(self) -> int:
        """Delayed requests and held responses still to come, and requests still due to
        be delayed or held: 0 once the faults set have played out."""
        due = sum(int(f[1]) for f in (*self._delays.values(), *self._holds.values()))
        return len(self._tasks) + due

    @property
    def unanswered(self) -> int:
        """Orders whose place (or cancel-replace) response is being held now."""
        return len(self._unanswered)

    def order(self, order_id: int) -> OpenOrder | None:
        """Any order ever accepted (open or closed) by venue ``order_id``; None if unknown."""
        o = self._history.get(order_id)
        if o is None:
            return None
        return OpenOrder(o.api_key, o.order_id, o.client_id, o.side, o.price, o.size,
                         o.executed, o.status)

    def trades(self, api_key: str) -> list[api.AccountTrade]:
        """The trade history of ``api_key``'s account, oldest first (what ``myTrades`` lists)."""
        return list(self._trades[api_key])

    # ---- connections ------------------------------------------------------------------------

    async def serve(self, websocket: ServerConnection) -> None:
        """Handle one ``/ws-api/v3`` connection until it closes."""
        if not self.accepting:
            await websocket.close(1013, "sim: not accepting connections")
            return
        conn = _Conn(websocket, self._max_queue)
        self._conns.add(conn)
        sender = asyncio.create_task(self._send_loop(conn), name="sim-order-entry-send")
        try:
            async for message in websocket:
                if self._delays or self._holds:
                    delay, hold = self._timing(message)
                    if delay:
                        self._later(self._run_late(conn, message, delay))
                        continue
                    if hold:
                        self._placed = []
                        frame = self._handle(conn, message)
                        placed, self._placed = self._placed, None
                        self._unanswered.update(placed)
                        self._later(self._answer_late(conn, frame, placed, hold))
                        if self._outbox:
                            self._flush()
                        continue
                frame = self._handle(conn, message)
                if not conn.dead and not self.blackhole:
                    try:
                        conn.queue.put_nowait(frame)
                    except asyncio.QueueFull:
                        await conn.queue.put(frame)  # backpressure: stop reading requests
                if self._outbox:
                    self._flush()  # the request's events go out after its response
        except ConnectionClosed:
            pass
        finally:
            conn.dead = True
            self._conns.discard(conn)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    def _timing(self, message: str | bytes) -> tuple[float, float]:
        """(seconds to delay, seconds to hold the response) of a request, from the faults
        set for its method; each use counts against the fault's requests."""
        try:
            msg = orjson.loads(message)
        except orjson.JSONDecodeError:
            return 0.0, 0.0
        method = msg.get("method") if type(msg) is dict else None
        if not isinstance(method, str):
            return 0.0, 0.0
        method = method.removeprefix("v3/")
        out = [0.0, 0.0]
        for i, faults in enumerate((self._delays, self._holds)):
            fault = faults.get(method)
            if fault is not None:
                out[i] = fault[0]
                fault[1] -= 1
                if fault[1] <= 0:
                    del faults[method]
        return out[0], out[1]

    def _later(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_late(self, conn: _Conn, message: str | bytes, delay: float) -> None:
        """A delayed request: run it now (even if its connection is gone: the venue got
        it), answer it if the connection is still there."""
        await asyncio.sleep(delay)
        frame = self._handle(conn, message)
        self._offer(conn, frame)
        if self._outbox:
            self._flush()

    async def _answer_late(self, conn: _Conn, frame: bytes, placed: list[int],
                           hold: float) -> None:
        await asyncio.sleep(hold)
        self._unanswered.difference_update(placed)
        self._offer(conn, frame)

    async def _send_loop(self, conn: _Conn) -> None:
        try:
            while True:
                frame = await conn.queue.get()
                if self.blackhole:
                    continue  # lost on the way back: the client hears nothing
                await conn.ws.send(frame, text=True)
        except ConnectionClosed:
            pass
        finally:
            conn.dead = True
            while not conn.queue.empty():  # unblock a reader waiting for room
                conn.queue.get_nowait()

    def _offer(self, conn: _Conn, frame: bytes) -> None:
        if conn.dead or self.blackhole:
            return
        try:
            conn.queue.put_nowait(frame)
        except asyncio.QueueFull:
            conn.dead = True
            self.overflows += 1
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            task = loop.create_task(conn.ws.close(1008, "user data queue overflow"))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, []
        for api_key, event in outbox:
            for conn in self._conns:
                sid = conn.subs.get(api_key)
                if sid is not None:
                    self._offer(conn, wire.event_frame(sid, event))

    # ---- requests ---------------------------------------------------------------------------

    def _handle(self, conn: _Conn, message: str | bytes) -> bytes:
        """One request frame -> its response frame (events it caused wait in the outbox)."""
        try:
            msg = orjson.loads(message)
        except orjson.JSONDecodeError:
            return _error(None, api.INVALID_JSON, wire.ERROR_MESSAGES[api.INVALID_JSON])
        if type(msg) is not dict:
            return _error(None, api.INVALID_JSON, wire.ERROR_MESSAGES[api.INVALID_JSON])
        request_id = msg.get("id")
        if request_id is not None and not (
            isinstance(request_id, str) or _is_int(request_id)
        ):
            return _error(None, api.MANDATORY_PARAM_EMPTY_OR_MALFORMED,
                          wire.mandatory_param_msg("id"))
        method = msg.get("method")
        if not isinstance(method, str) or not method:
            return _error(request_id, api.MANDATORY_PARAM_EMPTY_OR_MALFORMED,
                          wire.mandatory_param_msg("method"))
        method = method.removeprefix("v3/")
        params = msg.get("params")
        if params is None:
            params = {}
        elif type(params) is not dict:
            return _error(request_id, api.INVALID_PARAMETER,
                          "Data sent for parameter 'params' is not valid.")
        spec = self._methods.get(method)
        if spec is None:
            legal = ", ".join(self._methods)
            return _error(request_id, wire.UNKNOWN_METHOD, wire.illegal_chars_msg("method", legal))
        weight = spec.weight
        if method == api.OPEN_ORDERS_STATUS and "symbol" not in params:
            weight = 80
        if method == api.MY_TRADES and params.get("orderId") not in (None, ""):
            weight = 5
        limits = self._charge(weight)
        if limits[0].used > self.weight_limit:
            now = self._now_ms()
            data = {"serverTime": now, "retryAfter": (now // 60_000 + 1) * 60_000}
            return wire.response_error(
                request_id, 429,
                api.ApiError(api.TOO_MANY_REQUESTS, wire.weight_limit_msg(self.weight_limit),
                             data),
                limits,
            )
        try:
            api_key = self._authenticate(params) if spec.signed else ""
            result = spec.handler(conn, params, api_key)
        except _Reject as rej:
            error = api.ApiError(rej.code, rej.msg, rej.data)
            return wire.response_error(request_id, rej.status, error, limits)
        except Exception:  # a bug must answer, not take the connection down
            self.internal_errors += 1
            return wire.response_error(
                request_id, 500, api.ApiError(api.UNKNOWN, wire.ERROR_MESSAGES[api.UNKNOWN]),
                limits,
            )
        return wire.response_ok(request_id, result, limits)

    def _charge(self, weight: int) -> tuple[api.RateLimit, ...]:
        minute = self._now_ms() // 60_000
        if minute != self._weight_minute:
            self._weight_minute = minute
            self._weight_used = 0
        self._weight_used += weight
        return (api.RateLimit("REQUEST_WEIGHT", "MINUTE", 1, self.weight_limit,
                              self._weight_used),)

    def _authenticate(self, params: dict[str, Any]) -> str:
        """The request's API key once key, timestamp, signature and timing are good."""
        key = params.get("apiKey")
        if key is None or key == "":
            raise _Reject(api.MANDATORY_PARAM_EMPTY_OR_MALFORMED,
                          wire.mandatory_param_msg("apiKey"))
        if not isinstance(key, str):
            raise _Reject(api.BAD_API_KEY_FMT, wire.ERROR_MESSAGES[api.BAD_API_KEY_FMT])
        secret = self._api_keys.get(key)
        if secret is None:
            code = api.REJECTED_MBX_KEY if _API_KEY_RE.fullmatch(key) else api.BAD_API_KEY_FMT
            raise _Reject(code, wire.ERROR_MESSAGES[code])
        timestamp = _int_param(params, "timestamp", required=True)
        assert timestamp is not None
        window = self._recv_window(params)
        signature = params.get("signature")
        if signature is None or signature == "":
            raise _Reject(api.MANDATORY_PARAM_EMPTY_OR_MALFORMED,
                          wire.mandatory_param_msg("signature"))
        if not wire.verify_signature(secret, params):
            raise _Reject(api.INVALID_SIGNATURE, wire.ERROR_MESSAGES[api.INVALID_SIGNATURE])
        late = wire.timestamp_error(timestamp, window, self._now_ms())
        if late is not None:
            raise _Reject(api.INVALID_TIMESTAMP, late)
        return key

    def _recv_window(self, params: dict[str, Any]) -> float:
        raw = params.get("recvWindow")
        if raw is None:
            return float(api.DEFAULT_RECV_WINDOW_MS)
        try:
            if isinstance(raw, bool) or not isinstance(raw, int | float | str):
                raise InvalidOperation
            value = Decimal(str(raw))
        except InvalidOperation:
            raise _Reject(api.MANDATORY_PARAM_EMPTY_OR_MALFORMED,
                          wire.mandatory_param_msg("recvWindow")) from None
        if not value.is_finite() or value <= 0:
            raise _Reject(api.MANDATORY_PARAM_EMPTY_OR_MALFORMED,
                          wire.mandatory_param_msg("recvWindow"))
        if value > self.recv_window_max_ms:
            raise _Reject(
                api.MANDATORY_PARAM_EMPTY_OR_MALFORMED,
                f"'recvWindow' contains unexpected value. Cannot be greater than "
                f"'{self.recv_window_max_ms}'.",
            )
        return float(value)

    # ---- parameters -------------------------------------------------------------------------

    def _symbol(self, params: dict[str, Any], required: bool) -> None:
        symbol = _str_param(params, "symbol", required)
        if symbol is not None and symbol != self.instrument.symbol:
            raise _Reject(api.BAD_SYMBOL, wire.ERROR_MESSAGES[api.BAD_SYMBOL])

    def _units(self, params: dict[str, Any], name: str, to_units: Callable[[str], int],
               filter_type: str) -> int:
        raw = params.get(name)
        if raw is None or raw == "":
            raise _Reject(api.MANDATORY_PARAM_EMPTY_OR_MALFORMED, wire.mandatory_param_msg(name))
        if _is_int(raw):
            raw = str(raw)
        if not isinstance(raw, str) or not _DECIMAL_RE.fullmatch(raw):
            raise _Reject(api.ILLEGAL_CHARS, wire.illegal_chars_msg(name, _DECIMAL_LEGAL))
        try:
            units = to_units(raw)
        except ValueError:
            raise _Reject(api.INVALID_MESSAGE, wire.filter_failure_msg(filter_type)) from None
        if units <= 0:
            raise _Reject(api.INVALID_MESSAGE, wire.filter_failure_msg(filter_type))
        return units

    def _order_params(self, params: dict[str, Any]) -> tuple[Side, int, int, str | None, str]:
        """side, price (ticks), size (lots), newClientOrderId, newOrderRespType."""
        inst = self.instrument
        self._symbol(params, required=True)
        side_text = _str_param(params, "side", required=True)
        if side_text not in ("BUY", "SELL"):
            raise _Reject(api.INVALID_SIDE, wire.ERROR_MESSAGES[api.INVALID_SIDE])
        order_type = _str_param(params, "type", required=True)
        if order_type != api.LIMIT_MAKER:
            if order_type in _OTHER_TYPES:
                raise _Reject(api.UNSUPPORTED_OPERATION,
                              wire.ERROR_MESSAGES[api.UNSUPPORTED_OPERATION])
            raise _Reject(api.INVALID_ORDER_TYPE, wire.ERROR_MESSAGES[api.INVALID_ORDER_TYPE])
        if params.get("timeInForce") is not None:
            raise _Reject(api.TIF_NOT_REQUIRED, wire.ERROR_MESSAGES[api.TIF_NOT_REQUIRED])
        price = self._units(params, "price", inst.ticks.to_units, "PRICE_FILTER")
        size = self._units(params, "quantity", inst.lots.to_units, "LOT_SIZE")
        if self.venue.exchange_filters:
            if size % inst.size_step_lots or size < inst.min_size_lots:
                raise _Reject(api.INVALID_MESSAGE, wire.filter_failure_msg("LOT_SIZE"))
            if price * size < self._min_notional:
                raise _Reject(api.INVALID_MESSAGE, wire.filter_failure_msg("NOTIONAL"))
        client_id = _client_id_param(params, "newClientOrderId")
        resp_type = _str_param(params, "newOrderRespType", required=False) or "ACK"
        if resp_type not in _RESP_TYPES:
            raise _Reject(api.ILLEGAL_CHARS,
                          wire.illegal_chars_msg("newOrderRespType", ", ".join(_RESP_TYPES)))
        return (Side.BUY if side_text == "BUY" else Side.SELL), price, size, client_id, resp_type

    def _lookup(self, api_key: str, params: dict[str, Any], id_name: str,
                client_name: str) -> _Order | None:
        """The open order named by ``id_name`` and/or ``client_name``; None if unknown."""
        order_id = _int_param(params, id_name, required=False)
        client_id = _client_id_param(params, client_name)
        if order_id is None and client_id is None:
            raise _Reject(api.MANDATORY_PARAM_EMPTY_OR_MALFORMED,
                          wire.either_param_msg(client_name, id_name))
        if order_id is not None:
            order = self._by_id.get(order_id)
            if order is None or order.api_key != api_key:
                return None
            if client_id is not None and order.client_id != client_id:
                return None
            return order
        assert client_id is not None
        return self._open[api_key].get(client_id)

    # ---- methods ----------------------------------------------------------------------------

    def _order_place(self, conn: _Conn, params: dict[str, Any], api_key: str) -> Any:
        side, price, size, client_id, resp_type = self._order_params(params)
        order = self._new_order(api_key, side, price, size, client_id)
        return self._place_result(order, resp_type)

    def _order_cancel(self, conn: _Conn, params: dict[str, Any], api_key: str) -> Any:
        self._symbol(params, required=True)
        new_client_id = _client_id_param(params, "newClientOrderId")
        order = self._lookup(api_key, params, "orderId", "origClientOrderId")
        if order is None:
            raise _Reject(api.CANCEL_REJECTED, wire.MSG_UNKNOWN_ORDER)
        return self._cancel(order, new_client_id)

    def _order_cancel_replace(self, conn: _Conn, params: dict[str, Any], api_key: str) -> Any:
        mode = _str_param(params, "cancelReplaceMode", required=True)
        if mode not in (api.STOP_ON_FAILURE, api.ALLOW_FAILURE):
            raise _Reject(api.ILLEGAL_CHARS, wire.illegal_chars_msg(
                "cancelReplaceMode", f"{api.STOP_ON_FAILURE}, {api.ALLOW_FAILURE}"))
        # filters are evaluated before anything is cancelled or placed
        cancel_new_id = _client_id_param(params, "cancelNewClientOrderId")
        side, price, size, client_id, resp_type = self._order_params(params)
        order = self._lookup(api_key, params, "cancelOrderId", "cancelOrigClientOrderId")
        if order is None:
            cancel_error = {"code": api.CANCEL_REJECTED, "msg": wire.MSG_UNKNOWN_ORDER}
            if mode == api.STOP_ON_FAILURE:
                raise _replace_error(False, None, cancel_error, None)
            try:
                placed = self._new_order(api_key, side, price, size, client_id)
            except _Reject as rej:
                raise _replace_error(False, False, cancel_error,
                                     {"code": rej.code, "msg": rej.msg}) from None
            raise _replace_error(False, True, cancel_error,
                                 self._place_result(placed, resp_type))
        cancel_response = self._cancel(order, cancel_new_id)
        try:
            placed = self._new_order(api_key, side, price, size, client_id)
        except _Reject as rej:
            raise _replace_error(True, False, cancel_response,
                                 {"code": rej.code, "msg": rej.msg}) from None
        return {
            "cancelResult": "SUCCESS",
            "newOrderResult": "SUCCESS",
            "cancelResponse": cancel_response,
            "newOrderResponse": self._place_result(placed, resp_type),
        }

    def _open_orders_status(self, conn: _Conn, params: dict[str, Any], api_key: str) -> Any:
        self._symbol(params, required=False)
        return [self._status_result(order) for order in self._open[api_key].values()]

    def _open_orders_cancel_all(self, conn: _Conn, params: dict[str, Any], api_key: str) -> Any:
        self._symbol(params, required=True)
        orders = list(self._open[api_key].values())
        if not orders:
            raise _Reject(api.CANCEL_REJECTED, wire.MSG_UNKNOWN_ORDER)
        return [self._cancel(order, None) for order in orders]

    def _account_status(self, conn: _Conn, params: dict[str, Any], api_key: str) -> Any:
        omit_zero = params.get("omitZeroBalances") in (True, "true")
        maker = self.venue.maker_fee_bps
        taker = self.venue.taker_fee_bps
        balances = [
            {"asset": asset, "free": free, "locked": locked}
            for asset, free, locked in self._balances(api_key)
            if not (omit_zero and Decimal(free) == 0 and Decimal(locked) == 0)
        ]
        return {
            "makerCommission": round(maker),
            "takerCommission": round(taker),
            "buyerCommission": 0,
            "sellerCommission": 0,
            "canTrade": True,
            "canWithdraw": False,
            "canDeposit": False,
            "commissionRates": {
                "maker": _rate_text(maker),
                "taker": _rate_text(taker),
                "buyer": "0.00000000",
                "seller": "0.00000000",
            },
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": self._accounts[api_key].update_ms,
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": list(self._api_keys).index(api_key) + 1,
        }

    def _subscribe(self, conn: _Conn, params: dict[str, Any], api_key: str) -> Any:
        sid = conn.subs.get(api_key)
        if sid is None:  # one subscription per account and connection: repeat = same id
            sid = conn.subs[api_key] = conn.next_sub
            conn.next_sub += 1
        return {"subscriptionId": sid}

    def _unsubscribe(self, conn: _Conn, params: dict[str, Any], api_key: str) -> Any:
        sid = _int_param(params, "subscriptionId", required=False)
        for key, value in list(conn.subs.items()):
            if sid is None or value == sid:
                del conn.subs[key]
        return {}

    def _order_status(self, conn: _Conn, params: dict[str, Any], api_key: str) -> Any:
        """One order of the account, open or closed: by ``orderId`` (checked against
        ``origClientOrderId`` when both are given) or by the newest with the client id."""
        self._symbol(params, required=True)
        order_id = _int_param(params, "orderId", required=False)
        client_id = _client_id_param(params, "origClientOrderId")
        if order_id is None and client_id is None:
            raise _Reject(api.MANDATORY_PARAM_EMPTY_OR_MALFORMED,
                          wire.either_param_msg("origClientOrderId", "orderId"))
        if order_id is not None:
            order = self._history.get(order_id)
            if order is not None and (order.api_key != api_key or (
                    client_id is not None and order.client_id != client_id)):
                order = None
        else:
            assert client_id is not None
            order = self._latest.get((api_key, client_id))
        if order is None:
            raise _Reject(api.NO_SUCH_ORDER, wire.ERROR_MESSAGES[api.NO_SUCH_ORDER])
        return self._status_result(order)

    def _my_trades(self, conn: _Conn, params: dict[str, Any], api_key: str) -> Any:
        """The account's trades, oldest first: from ``fromId``, in a time window, or the
        most recent ``limit``; optionally only one order's."""
        self._symbol(params, required=True)
        order_id = _int_param(params, "orderId", required=False)
        from_id = _int_param(params, "fromId", required=False)
        start = _int_param(params, "startTime", required=False)
        end = _int_param(params, "endTime", required=False)
        limit = _int_param(params, "limit", required=False)
        if limit is None:
            limit = api.DEFAULT_MY_TRADES_LIMIT
        elif not 1 <= limit <= api.MAX_MY_TRADES_LIMIT:
            raise _Reject(api.INVALID_PARAMETER, "Data sent for parameter 'limit' is not valid.")
        if from_id is not None and (start is not None or end is not None):
            raise _Reject(api.OPTIONAL_PARAMS_BAD_COMBO,
                          wire.ERROR_MESSAGES[api.OPTIONAL_PARAMS_BAD_COMBO])
        if start is not None and end is not None and not (
                0 <= end - start <= api.MAX_TRADE_LOOKUP_MS):
            raise _Reject(api.INVALID_INTERVAL, wire.ERROR_MESSAGES[api.INVALID_INTERVAL])
        trades = self._trades[api_key]
        if order_id is not None:
            trades = [t for t in trades if t.order_id == order_id]
        if from_id is not None:
            chosen = [t for t in trades if t.trade_id >= from_id][:limit]
        elif start is not None or end is not None:
            lo = start if start is not None else (end or 0) - api.MAX_TRADE_LOOKUP_MS
            hi = end if end is not None else lo + api.MAX_TRADE_LOOKUP_MS
            chosen = [t for t in trades if lo <= t.time_ms <= hi][:limit]
        else:
            chosen = trades[-limit:]
        return [wire.account_trade_json(self.instrument, t) for t in chosen]

    def _ping(self, conn: _Conn, params: dict[str, Any], api_key: str) -> Any:
        return {}

    def _time(self, conn: _Conn, params: dict[str, Any], api_key: str) -> Any:
        return {"serverTime": self._now_ms()}

    # ---- the matching engine's side ---------------------------------------------------------

    def _ms(self) -> int:
        """Model time in ms (the server clock before the first market event)."""
        return self._now_ns // _MS if self._now_ns else self._now_ms()

    def _would_take(self, side: Side, price: int) -> bool:
        """Post-only check now: against the last book and our own resting orders."""
        book = self._book
        assert book is not None
        own = [o.price for o in self._in_venue.values() if o.acked and o.side is not side]
        if side is Side.BUY:
            best = book.asks.best()
            return (best is not None and price >= best) or (bool(own) and price >= min(own))
        best = book.bids.best()
        return (best is not None and price <= best) or (bool(own) and price <= max(own))

    def _new_order(self, api_key: str, side: Side, price: int, size: int,
                   client_id: str | None) -> _Order:
        """Place a LIMIT_MAKER order or raise -2010 with the matching engine's reason."""
        open_orders = self._open[api_key]
        if client_id is not None and client_id in open_orders:
            raise _Reject(api.NEW_ORDER_REJECTED, wire.MSG_DUPLICATE_ORDER)
        if self._book is None:
            raise _Reject(api.NEW_ORDER_REJECTED, wire.MSG_MARKET_CLOSED)
        if self._would_take(side, price):
            raise _Reject(api.NEW_ORDER_REJECTED, wire.MSG_WOULD_TAKE)
        if self.enforce_balance and not self._affordable(api_key, side, price, size):
            raise _Reject(api.NEW_ORDER_REJECTED, wire.MSG_INSUFFICIENT_BALANCE)
        self._next_id += 1
        order_id = self._next_id
        if client_id is None:
            client_id = f"sim-{order_id}"
        ms = self._ms()
        order = _Order(api_key, order_id, client_id, side, price, size, ms)
        open_orders[client_id] = order
        self._by_id[order_id] = order
        self._in_venue[order_id] = order
        now = self._now_ns
        self._apply([*self.venue.place(order_id, side, price, size, now),
                     *self.venue.advance(now)])
        if order.status == "REJECTED":  # refused by the venue now: no event, an error
            reason = order.reject_reason
            if reason == POST_ONLY_CROSS:
                message = wire.MSG_WOULD_TAKE
            elif reason == NO_BOOK:
                message = wire.MSG_MARKET_CLOSED
            else:
                message = reason
            raise _Reject(api.NEW_ORDER_REJECTED, message)
        if not order.acked:  # in flight to the venue (latency): acknowledged now
            order.acked = True
            order.working_ms = ms
            self._report(order, "NEW")
        self._history[order_id] = order
        self._latest[(api_key, client_id)] = order
        if self._placed is not None:
            self._placed.append(order_id)
        return order

    def _cancel(self, order: _Order, new_client_id: str | None) -> dict[str, Any]:
        """Cancel an open order now; returns the ``order.cancel`` result."""
        orig_client_id = order.client_id
        order.cancel_client_id = new_client_id or f"sim-cxl-{order.order_id}"
        now = self._now_ns
        self._apply([*self.venue.cancel(order.order_id, now), *self.venue.advance(now)])
        if not order.closed:  # the cancel is still travelling (latency): final for the client
            self._close(order, "CANCELED")
            self._report(order, "CANCELED")
        return self._cancel_result(order, orig_client_id)

    def _close(self, order: _Order, status: str) -> None:
        order.status = status
        order.closed = True
        order.update_ms = self._ms()
        self._open[order.api_key].pop(order.client_id, None)
        self._by_id.pop(order.order_id, None)

    def _apply(self, events: list[ExecutionEvent]) -> None:
        for event in events:
            if type(event) is Fill:
                self._on_fill(event)
            else:
                assert isinstance(event, OrderUpdate)
                self._on_update(event)

    def _on_update(self, update: OrderUpdate) -> None:
        order = self._in_venue.get(update.order_id)
        if order is None:
            return
        status = update.status
        if status is OrderStatus.NEW or status is OrderStatus.PARTIALLY_FILLED:
            if not order.acked:
                order.acked = True
                order.working_ms = self._ms()
                self._report(order, "NEW")
            return
        if status is OrderStatus.REJECTED:
            state = self.venue.order(update.order_id)
            if state is not None and state.status is not OrderStatus.REJECTED:
                return  # the venue refused a request about the order, not the order
        elif status is not OrderStatus.FILLED and status is not OrderStatus.CANCELED:
            return  # PENDING_NEW / PENDING_CANCEL: internal to the venue
        del self._in_venue[update.order_id]  # the venue is done with it
        if order.closed:
            return
        if status is OrderStatus.FILLED:
            self._close(order, "FILLED")  # its TRADE report already went out
        elif status is OrderStatus.CANCELED:
            self._close(order, "CANCELED")
            self._report(order, "CANCELED")
        elif not order.acked:
            order.reject_reason = update.reason  # _new_order turns it into the error
            self._close(order, "REJECTED")
        else:
            self._close(order, "REJECTED")
            reason = api.REJECT_WOULD_MATCH if update.reason == POST_ONLY_CROSS else update.reason
            self._report(order, "REJECTED", reject_reason=reason)

    def _on_fill(self, fill: Fill) -> None:
        order = self._in_venue.get(fill.order_id)
        if order is None:
            return
        if fill.order_id in self._unanswered:
            self.fills_before_response += 1
        notional = fill.price * fill.size
        ms = self._ms()
        order.executed += fill.size
        order.cum_quote += notional
        order.update_ms = ms
        if not order.closed:
            order.status = "FILLED" if order.executed >= order.size else "PARTIALLY_FILLED"
        self._accounts[order.api_key].apply_fill(order.side, fill.size, notional, fill.fee, ms)
        self._trade_seq += 1
        inst = self.instrument
        self._trades[order.api_key].append(api.AccountTrade(
            self._trade_seq, order.order_id, -1, fill.price, fill.size,
            Decimal(wire.notional_str(inst, notional)), Decimal(wire.notional_str(inst, fill.fee)),
            self.assets.quote, ms, order.side is Side.BUY, fill.maker, True,
        ))
        self._report(
            order,
            "TRADE",
            last_qty=fill.size,
            last_price=fill.price,
            commission=wire.notional_str(self.instrument, fill.fee),
            trade_id=self._trade_seq,
            is_maker=fill.maker,
        )
        self._outbox.append((order.api_key, self._position_event(order.api_key)))

    def _report(
        self,
        order: _Order,
        execution_type: str,
        *,
        last_qty: int = 0,
        last_price: int = 0,
        commission: str = "0",
        trade_id: int = -1,
        is_maker: bool = False,
        reject_reason: str = api.REJECT_NONE,
    ) -> None:
        """Queue an ``executionReport`` of ``order`` for its account's subscribers."""
        self._exec_seq += 1
        ms = self._ms()
        cancel = execution_type == "CANCELED"
        event = wire.execution_report(
            self.instrument,
            order.view(),
            execution_type=execution_type,
            event_ms=ms,
            transact_ms=ms,
            execution_id=self._exec_seq,
            client_id=order.cancel_client_id if cancel else None,
            orig_client_id=order.client_id if cancel else "",
            reject_reason=reject_reason,
            last_qty=last_qty,
            last_price=last_price,
            commission=commission,
            commission_asset=self.assets.quote if execution_type == "TRADE" else None,
            trade_id=trade_id,
            is_maker=is_maker,
        )
        self._outbox.append((order.api_key, event))

    # ---- accounts ---------------------------------------------------------------------------

    def _locked(self, api_key: str) -> tuple[int, int]:
        """(base lots, quote notional units) reserved by the account's open orders."""
        base = quote = 0
        for order in self._open[api_key].values():
            left = order.size - order.executed
            if order.side is Side.BUY:
                quote += order.price * left
            else:
                base += left
        return base, quote

    def _affordable(self, api_key: str, side: Side, price: int, size: int) -> bool:
        account = self._accounts[api_key]
        locked_base, locked_quote = self._locked(api_key)
        if side is Side.BUY:
            return price * size <= account.quote_units - locked_quote
        return size <= account.base_lots - locked_base

    def _balances(self, api_key: str) -> list[tuple[str, str, str]]:
        """(asset, free, locked) texts; free may be negative when balances are not enforced."""
        inst = self.instrument
        account = self._accounts[api_key]
        locked_base, locked_quote = self._locked(api_key)
        return [
            (self.assets.base, inst.size_str(account.base_lots - locked_base),
             inst.size_str(locked_base)),
            (self.assets.quote, wire.notional_str(inst, account.quote_units - locked_quote),
             wire.notional_str(inst, locked_quote)),
        ]

    def _position_event(self, api_key: str) -> dict[str, Any]:
        ms = self._ms()
        return {
            "e": "outboundAccountPosition",
            "E": ms,
            "u": self._accounts[api_key].update_ms,
            "B": [{"a": a, "f": f, "l": lk} for a, f, lk in self._balances(api_key)],
        }

    # ---- result shapes ----------------------------------------------------------------------

    def _common(self, order: _Order) -> dict[str, Any]:
        inst = self.instrument
        return {
            "price": inst.price_str(order.price),
            "origQty": inst.size_str(order.size),
            "executedQty": inst.size_str(order.executed),
            "origQuoteOrderQty": wire.notional_str(inst, 0),
            "cummulativeQuoteQty": wire.notional_str(inst, order.cum_quote),
            "status": order.status,
            "timeInForce": "GTC",
            "type": api.LIMIT_MAKER,
            "side": order.side.name,
        }

    def _place_result(self, order: _Order, resp_type: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "symbol": self.instrument.symbol,
            "orderId": order.order_id,
            "orderListId": -1,
            "clientOrderId": order.client_id,
            "transactTime": order.created_ms,
        }
        if resp_type == "ACK":
            return out
        out.update(self._common(order))
        out["workingTime"] = order.working_ms
        if resp_type == "FULL":
            out["fills"] = []  # a LIMIT_MAKER order never trades on arrival
        out["selfTradePreventionMode"] = "NONE"
        return out

    def _status_result(self, order: _Order) -> dict[str, Any]:
        inst = self.instrument
        out: dict[str, Any] = {
            "symbol": inst.symbol,
            "orderId": order.order_id,
            "orderListId": -1,
            "clientOrderId": order.client_id,
        }
        out.update(self._common(order))
        out.update({
            "stopPrice": inst.price_str(0),
            "icebergQty": inst.size_str(0),
            "time": order.created_ms,
            "updateTime": order.update_ms,
            "isWorking": order.status in _WORKING,
            "workingTime": order.working_ms,
            "selfTradePreventionMode": "NONE",
        })
        return out

    def _cancel_result(self, order: _Order, orig_client_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "symbol": self.instrument.symbol,
            "origClientOrderId": orig_client_id,
            "orderId": order.order_id,
            "orderListId": -1,
            "clientOrderId": order.cancel_client_id,
            "transactTime": order.update_ms,
        }
        out.update(self._common(order))
        out["selfTradePreventionMode"] = "NONE"
        return out


# ---- helpers ---------------------------------------------------------------------------------


def _set_fault(faults: dict[str, list[float]], method: str, seconds: float,
               count: int) -> None:
    if count > 0:
        faults[method] = [seconds, count]
    else:
        faults.pop(method, None)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _error(request_id: str | int | None, code: int, msg: str) -> bytes:
    return wire.response_error(request_id, 400, api.ApiError(code, msg))


def _replace_error(cancel_ok: bool, new_ok: bool | None, cancel_response: Any,
                   new_response: Any) -> _Reject:
    """The cancel-replace failure: -2022 (400) when nothing succeeded, else -2021 (409)."""
    data = {
        "cancelResult": "SUCCESS" if cancel_ok else "FAILURE",
        "newOrderResult": "NOT_ATTEMPTED" if new_ok is None else (
            "SUCCESS" if new_ok else "FAILURE"),
        "cancelResponse": cancel_response,
        "newOrderResponse": new_response,
    }
    if cancel_ok or new_ok:
        code = api.CANCEL_REPLACE_PARTIALLY_FAILED
        return _Reject(code, wire.ERROR_MESSAGES[code], 409, data)
    code = api.CANCEL_REPLACE_FAILED
    return _Reject(code, wire.ERROR_MESSAGES[code], 400, data)


def _str_param(params: dict[str, Any], name: str, required: bool) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise _Reject(api.MANDATORY_PARAM_EMPTY_OR_MALFORMED, wire.mandatory_param_msg(name))
        return None
    if not isinstance(value, str):
        raise _Reject(api.MANDATORY_PARAM_EMPTY_OR_MALFORMED, wire.mandatory_param_msg(name))
    return value


def _int_param(params: dict[str, Any], name: str, required: bool) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise _Reject(api.MANDATORY_PARAM_EMPTY_OR_MALFORMED, wire.mandatory_param_msg(name))
        return None
    if _is_int(value):
        assert isinstance(value, int)
        return value
    if isinstance(value, str) and _INT_RE.fullmatch(value):
        return int(value)
    raise _Reject(api.ILLEGAL_CHARS, wire.illegal_chars_msg(name, "^[0-9]{1,20}$"))


def _client_id_param(params: dict[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not api.CLIENT_ORDER_ID_RE.fullmatch(value):
        raise _Reject(api.ILLEGAL_CHARS, wire.illegal_chars_msg(name, api.CLIENT_ORDER_ID_LEGAL))
    return value


def _rate_text(bps: Fraction) -> str:
    """A fee rate in bps as Binance's commission-rate text (a fraction, 8 decimals)."""
    rate = bps / 10_000
    return f"{Decimal(rate.numerator) / Decimal(rate.denominator):.8f}"
