"""Order entry on Binance spot over its WebSocket API: the live exchange adapter (issue #5).

:class:`BinanceGateway` implements :class:`~mmdaemon.exchange.base.ExchangeAdapter` over ONE
websocket connection to ``/ws-api/v3``. The protocol (signing, frames, parsing) is
:mod:`mmdaemon.venues.binance_api`'s; this module is the I/O shell around it and the
bookkeeping that turns the venue's view of orders into the daemon's.

Connection
----------
``start()`` connects, subscribes to the account's executions on the same connection
(``userDataStream.subscribe.signature``: acks and execution reports then arrive in the
order the venue produced them), reconciles, and only then reports ``ready``. A venue that
cannot be reached at start (refused, timed out, a 5xx, a dropped connection, a request
without an answer) is retried exactly like a connection lost later, by the same supervisor
and backoff, for as long as it takes; only a refusal that retrying cannot fix (our key or
signature, a URL or proxy that cannot work) ends ``start()`` with
:class:`~mmdaemon.exchange.base.VenueRefused`. One reader task
reads every frame: responses go to the request waiting for that id (each request has a
timeout), user-data events to the bookkeeping. Responses are applied *by the reader, in
wire order*, not by the coroutine that sent the request when it next runs: otherwise a
response could be applied after events the venue produced later (a NEW after the FILLED).

A lost connection makes the status ``ready=False, "disconnected"`` at once; every request
waiting for an answer fails (REJECTED ``"disconnected"``); a supervisor reconnects with
jittered exponential backoff (:func:`mmdaemon.backoff.backoff_delay`), subscribes,
reconciles and reports ready again. After each failed attempt the status is ``ready=False``
with ``"unreachable: <why>"`` and ``retry_in_s``. The attempt counter only resets after a
connection stayed up ``healthy_after_s``, so a venue that accepts and drops at once is not
hammered.

Orders
------
Our order ids are integers; at the venue they are client order ids
``client_order_id(prefix, order_id)``. Every order is LIMIT_MAKER (post-only). ``amend`` is
``order.cancelReplace`` (STOP_ON_FAILURE) reusing the client id, so our order id survives;
the venue reports the pair as CANCELED (old venue order) then NEW (new venue order, same
client id), which we report as one amend. The replacement's quantity counts from 0 at the
venue, while our sizes are totals including what already filled, so per order we keep every
venue order it has had ("legs") with its quantity and executed size:

- ``filled`` = the sum over legs of what each executed;
- ``size`` = what earlier legs executed + the current leg's quantity (our total size).

A fill that races the replace (the old leg trades between our request and the cancel) makes
the new total larger than asked: the order is then reported as it is, followed by a
REJECTED for the amend, which makes the order manager adopt the venue's numbers instead of
waiting for an exact match that will never come.

Failures, as the order manager reads them (REJECTED of an acknowledged order = the request
failed and the order stays; REJECTED before the acknowledgement = the place failed):

- error response: REJECTED ``"<code> <msg>"``;
- no answer in ``request_timeout_s``: REJECTED ``"timeout"``, and the connection is suspect:
  it is reconciled at once (status ``"reconciling"``), and dropped if that fails too. A place
  that timed out may still have reached the venue: reconciliation cancels it;
- rate limited (-1003, status 429 or 418): REJECTED with the venue's reason, and status
  ``"rate_limited"`` until the venue's ``retryAfter`` (else the end of the exhausted rate
  limit window, else a backoff); places and amends are refused locally meanwhile (sending
  them would only extend a ban), cancels still go out;
- cancel of an order the venue does not know (-2011/-2013): the venue is asked
  (``openOrders.status``, then ``myTrades`` for fills it may have missed); an order that is
  not open there is reported FILLED or CANCELED, never left waiting.

Reconciliation
--------------
After every (re)connect, and whenever the connection is suspect: ``openOrders.status``
first, then ``myTrades`` from the highest trade id seen (the account's fills while we were
not listening), then:

- an open order with our prefix that is not one of our live orders (left by a crashed
  previous run, a place we already reported failed, a replacement we already reported
  closed) is cancelled, and its fills are still delivered;
- one of our live orders that the venue no longer lists ended meanwhile: FILLED if its
  fills (now all known) cover its size, else CANCELED.

Fills go to the listener once per venue trade id (``exec_id``), whether they came from an
``executionReport`` or from ``myTrades``; the journal deduplicates on (order id, exec id)
too, so a re-delivery is harmless, a lost fill would not be.

Secrets
-------
The API secret only ever reaches :func:`~mmdaemon.venues.binance_api.sign`. Nothing here
logs a frame we send; :class:`~mmdaemon.venues.binance_api.Credentials`, the settings and
the gateway itself have reprs that redact (the proxy URL's password too).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import re
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, NamedTuple

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidProxy,
    InvalidProxyStatus,
    InvalidStatus,
    InvalidURI,
    PayloadTooBig,
    WebSocketException,
)

from mmdaemon.backoff import backoff_delay
from mmdaemon.book import OrderBook
from mmdaemon.exchange.base import Listener, StatusListener, VenueRefused, VenueStatus
from mmdaemon.model import ExecutionEvent, Fill, Instrument, OrderStatus, OrderUpdate, Side, Trade
from mmdaemon.venues import binance_api as api

_MS: Final = 1_000_000  # ns per ms
_SEEN_TRADES: Final = 100_000  # trade ids remembered for deduplication
_KEEP_CLOSED: Final = 10_000  # closed orders kept to recognise late reports of them
_POLL_S: Final = 0.005  # how often cancel_all re-checks while it waits for confirmations
_SWEEP_PAUSE_MAX_S: Final = 1.0  # cancel_all's pause between sweeps grows up to this
_UNKNOWN_ORDER: Final = frozenset({api.CANCEL_REJECTED, api.NO_SUCH_ORDER})
_AUTH_ERRORS: Final = frozenset({
    api.INVALID_SIGNATURE, api.BAD_API_KEY_FMT, api.REJECTED_MBX_KEY,
    api.MANDATORY_PARAM_EMPTY_OR_MALFORMED,
})
# HTTP answers to the websocket handshake that retrying can fix: the WAF's temporary block
# (403), a request timeout (408), rate limits and bans with an end (429, 418); any other
# 4xx (a wrong path, a proxy that wants credentials) is a configuration to fix, 5xx an outage
_HANDSHAKE_RETRYABLE: Final = frozenset({403, 408, 418, 429})
_INTERVAL_MS: Final = {"SECOND": 1_000, "MINUTE": 60_000, "HOUR": 3_600_000, "DAY": 86_400_000}
_USERINFO: Final = re.compile(r"(?<=//)[^/@\s]*@")


def _wall_ms() -> int:
    """Wall-clock time in ms since the epoch: what the venue checks ``timestamp`` against."""
    return time.time_ns() // _MS


def redact_url(text: str) -> str:
    """``text`` with the user info of any URL in it (``//user:password@``) masked."""
    return _USERINFO.sub("***@", text)


@dataclass(frozen=True)
class GatewaySettings:
    """Where and how to reach the venue's WebSocket API. Times in seconds unless named ms.

    ``ws_api_url`` is the whole URL (``wss://ws-api.binance.com:443/ws-api/v3``);
    ``client_prefix`` starts every client order id we send and marks the venue's orders
    that are ours (one prefix per daemon instance and account); ``recv_window_ms`` is sent
    with every signed request; ``proxy`` None connects directly (system proxy settings are
    ignored). ``cancel_all_timeout_s`` bounds how long :meth:`BinanceGateway.cancel_all`
    waits for confirmations (and for a connection). A connection attempt waits
    ``backoff_initial_s`` .. ``backoff_max_s`` (jittered, doubling) after a failed one. A
    message longer than ``max_message_bytes`` is refused unread: the connection closes
    (``gateway_frame_too_large``) and is replaced like any other lost one.
    """

    ws_api_url: str
    client_prefix: str
    recv_window_ms: int = api.DEFAULT_RECV_WINDOW_MS
    request_timeout_s: float = 5.0
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 30.0
    proxy: str | None = None
    open_timeout_s: float = 10.0
    cancel_all_timeout_s: float = 10.0
    healthy_after_s: float = 10.0
    max_message_bytes: int = 16 << 20  # a larger message closes the connection unparsed

    def __post_init__(self) -> None:
        api.client_order_id(self.client_prefix, (1 << 64) - 1)  # ValueError: prefix unusable
        if not 0 < self.recv_window_ms <= api.MAX_RECV_WINDOW_MS:
            raise ValueError(f"recv_window_ms must be 1..{api.MAX_RECV_WINDOW_MS}")
        for name in ("request_timeout_s", "backoff_initial_s", "backoff_max_s",
                     "open_timeout_s", "cancel_all_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")

    def __repr__(self) -> str:
        proxy = None if self.proxy is None else redact_url(self.proxy)
        return (f"GatewaySettings(ws_api_url={redact_url(self.ws_api_url)!r}, "
                f"client_prefix={self.client_prefix!r}, recv_window_ms={self.recv_window_ms}, "
                f"request_timeout_s={self.request_timeout_s}, proxy={proxy!r})")


class GatewayError(Exception):
    """A connection attempt failed in a way that a later attempt may not (the venue down,
    slow or dropping us). The message names the cause; it never holds a secret.
    """


def _refusal(exc: Exception) -> str | None:
    """What to fix when a connection error is one that retrying cannot fix (a URL or proxy
    that cannot work, a handshake the venue or proxy refuses for good); None otherwise."""
    if isinstance(exc, InvalidURI | InvalidProxy | ValueError):
        return "exchange.ws_api_url or feed.proxy cannot be used as given"
    if isinstance(exc, InvalidStatus | InvalidProxyStatus):
        status = exc.response.status_code
        if 400 <= status < 500 and status not in _HANDSHAKE_RETRYABLE:
            who = "the proxy (feed.proxy)" if isinstance(exc, InvalidProxyStatus) else (
                "the venue: check exchange.ws_api_url")
            return f"HTTP {status} from {who}"
    return None


class _Failed(Exception):
    """A request that got no usable answer, or an API error where one was required."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Phase(Enum):
    """Where one of our client order ids stands, as the gateway knows it."""

    PLACING = "placing"  # place sent, venue silent so far
    LIVE = "live"  # acknowledged and open: the daemon's order
    CLOSED = "closed"  # final state reported to the daemon
    DOUBTFUL = "doubtful"  # reported failed without an answer: may exist at the venue
    GONE = "gone"  # not (or no longer) the daemon's: known for its fills only


_DAEMONS: Final = frozenset({_Phase.PLACING, _Phase.LIVE})  # orders the daemon holds
_MAYBE_OPEN: Final = frozenset({_Phase.PLACING, _Phase.LIVE, _Phase.DOUBTFUL})


class _Leg:
    """One venue order (``orderId``) of our order: quantity and executed size, in lots.

    ``executed`` is the venue's cumulative figure (``z``/``executedQty``), ``traded`` the
    sum of the distinct trades we delivered; the larger is the truth we know. ``ended``: the
    venue reported it final (filled, cancelled, rejected); a venue never reopens an order,
    so an open status of it that comes later is an older answer arriving late.
    """

    __slots__ = ("ended", "executed", "qty", "traded")

    def __init__(self, qty: int) -> None:
        self.qty = qty
        self.executed = 0
        self.traded = 0
        self.ended = False

    @property
    def filled(self) -> int:
        return max(self.executed, self.traded)

    def see(self, order: _Order, executed: int, traded: int) -> None:
        """Raise ``executed``/``traded`` to what a report or trade shows (lots), keeping
        the order's running total of what its legs filled."""
        before = self.filled
        self.executed = max(self.executed, executed)
        self.traded = traded
        order.legs_filled += self.filled - before


class _Order:
    """The gateway's record of one of our order ids. Prices in ticks, sizes in lots."""

    __slots__ = (
        "adopted",
        "busy",
        "client_id",
        "final",
        "held",
        "last",
        "legs",
        "legs_filled",
        "order_id",
        "phase",
        "price",
        "reason",
        "replacing",
        "resolve",
        "side",
        "size",
        "venue_id",
        "want",
    )

    def __init__(self, order_id: int, client_id: str, side: Side, price: int, size: int,
                 phase: _Phase) -> None:
        self.order_id = order_id
        self.client_id = client_id
        self.side = side
        self.price = price  # current price at the venue (or asked, before the first answer)
        self.size = size  # asked total size: the answer before any leg is known
        self.phase = phase
        self.venue_id = 0  # the current leg's venue orderId, 0: none known yet
        self.legs: dict[int, _Leg] = {}
        # the sum of legs' filled, kept as they change: an order amended all day has
        # thousands of legs, and this is read on every amend
        self.legs_filled = 0
        self.final: OrderStatus | None = None  # FILLED / CANCELED / REJECTED once CLOSED
        self.reason = ""
        self.replacing = False  # an order.cancelReplace is in flight
        self.held: OrderUpdate | None = None  # a CANCELED that may be the replace's half
        self.adopted = False  # the replacement leg appeared during the current replace
        self.want = 0  # the total size the replace in flight asks for
        self.resolve = ""  # set by a response handler: ask the venue whether it is open
        self.busy = 0  # requests in flight about this order
        self.last: tuple[OrderStatus, int, int, int] | None = None  # last reported state

    def filled(self) -> int:
        """Lots executed over every leg."""
        return self.legs_filled

    def total_size(self) -> int:
        """Our total size: what earlier legs executed plus the current leg's quantity."""
        current = self.legs.get(self.venue_id)
        if current is None:
            return self.size
        return self.legs_filled - current.filled + current.qty


_REQUEST_ROOM = 4096  # bytes: more than any order request frame


class _Sent(NamedTuple):
    """A request on the wire: its id and the future its response will complete."""

    request_id: int
    future: asyncio.Future[api.Response]


class _Pending(NamedTuple):
    """A request waiting for its response: the future, and what to apply in wire order."""

    future: asyncio.Future[api.Response]
    handler: Callable[[api.Response], None] | None
    sent_ns: int  # monotonic clock when it was written: its round trip (the loop's clock,
    # uvloop's, ticks in whole cached milliseconds: too coarse for a loopback round trip)


class _OpenOrder(NamedTuple):
    """An ``openOrders.status`` entry: our update (None if not ours) and the venue id."""

    update: OrderUpdate | None
    venue_id: int
    client_id: str


def _drop(event: ExecutionEvent) -> None:
    """Listener before one is set."""


def _ignore(status: VenueStatus) -> None:
    """Status listener before one is set."""


def _reason(response: api.Response) -> str:
    """``"<code> <msg>"`` of an error response (the REJECTED reason the daemon logs)."""
    error = response.error
    if error is None:
        return f"status {response.status}"
    return f"{error.code} {error.msg}"


def _venue_id(entry: object) -> int:
    """The ``orderId`` of an order object that :func:`order_update_from_result` accepted."""
    assert isinstance(entry, dict)
    value = entry["orderId"]
    assert isinstance(value, int)
    return value


class BinanceGateway:
    """:class:`~mmdaemon.exchange.base.ExchangeAdapter` for Binance spot (see the module doc).

    Units as in the core: prices integer ticks, sizes integer lots (an order's size is its
    total size, including what already filled), our events' times ns since the epoch;
    venue times are ms.
    ``log`` is a structlog-style logger (``log.info(event, **values)``); ``now_ms`` the
    wall clock in ms since the epoch that signed requests are stamped with; ``rng`` the
    jitter source of the reconnect backoff; ``assets`` the symbol's base/quote assets
    (default: from the symbol) and ``asset_prices`` quote currency per unit of any other
    commission asset (BNB), both for fee conversion.
    """

    def __init__(
        self,
        settings: GatewaySettings,
        instrument: Instrument,
        credentials: api.Credentials,
        log: Any,
        *,
        now_ms: Callable[[], int] = _wall_ms,
        rng: Callable[[], float] = random.random,
        assets: api.Assets | None = None,
        asset_prices: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.instrument = instrument
        self.log = log
        self._creds = credentials._replace(recv_window_ms=settings.recv_window_ms)
        self._prefix = settings.client_prefix
        self._now_ms = now_ms
        self._rng = rng
        self._assets = assets or api.assets_of(instrument.symbol)
        self._asset_prices = asset_prices
        self._listener: Listener = _drop
        self._status_listener: StatusListener = _ignore
        self._round_trip: Callable[[int], None] | None = None  # run --latency-out
        self._status: VenueStatus | None = None
        # connection
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._recheck: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._requests: set[asyncio.Task[None]] = set()  # the daemon's requests in flight
        self._pending: dict[int, _Pending] = {}
        self._next_request = 0
        self._subscribed = False
        self._reconciling = 0
        self._suspected = False  # no answer to a request: not ready until reconciled
        self._reconcile_lock = asyncio.Lock()
        self._lost = asyncio.Event()
        self._closing = False
        self._started = False
        self._first: asyncio.Future[None] | None = None  # start(): the first connection
        self._ever_connected = False
        self._unreachable: tuple[str, float] | None = None  # last attempt's failure, retry in
        self._watermark_known = False  # max_trade_id is where myTrades resumes
        self._connected_at = 0.0  # loop time of the last successful (re)connect
        self._limited_until = 0.0  # loop time the rate limit lifts
        self._limit_handle: asyncio.TimerHandle | None = None
        self._limit_attempt = 0
        # orders
        self._orders: dict[int, _Order] = {}
        self._owner: dict[int, int] = {}  # venue orderId -> our order id
        self._stray: dict[int, int] = {}  # open venue orders nobody wants -> our order id
        self._cancelling: set[int] = set()  # stray venue orders with a cancel in flight
        self._foreign: set[int] = set()  # venue orderIds known not to be ours
        self._closed_fifo: deque[int] = deque()
        self._seen: set[int] = set()
        self._seen_fifo: deque[int] = deque()
        self.max_trade_id = 0  # highest venue trade id seen (myTrades resumes after it)
        # counters, for metrics and tests
        self.connects = 0
        self.timeouts = 0
        self.rate_limits = 0
        self.fills_recovered = 0

    def __repr__(self) -> str:
        return (f"BinanceGateway({redact_url(self.settings.ws_api_url)!r}, "
                f"prefix={self._prefix!r}, key={api.redact_key(self._creds.api_key)!r}, "
                f"status={self._status!r})")

    # ---- the adapter protocol ---------------------------------------------------------------

    def set_listener(self, listener: Listener) -> None:
        self._listener = listener

    def set_status_listener(self, listener: StatusListener) -> None:
        self._status_listener = listener

    def set_round_trip_listener(self, listener: Callable[[int], None]) -> None:
        self._round_trip = listener

    def resume_fills_after(self, trade_id: int) -> None:
        """Before :meth:`start`: deliver, at start, every fill of ours with a venue trade id
        above ``trade_id`` (the journal's highest exec id), so fills a crashed run never
        recorded are not lost. Without it, start takes the account's newest trade as the
        starting point and only fills from then on (and those of orders still open) come.
        """
        if self._started:
            raise RuntimeError("resume_fills_after() must be called before start()")
        self.max_trade_id = max(0, trade_id)
        self._watermark_known = True

    @property
    def status(self) -> VenueStatus | None:
        """The last status reported (None before ``start``)."""
        return self._status

    async def start(self) -> None:
        """Connect, subscribe, reconcile; returns once order entry is ready.

        The first connection is made by the supervisor that later reconnects, so a venue
        that cannot be reached now is retried as a lost connection is: with the same
        backoff, for as long as it takes, the status ``ready=False, "unreachable: ..."``
        with ``retry_in_s`` after every failed attempt. Raises
        :class:`~mmdaemon.exchange.base.VenueRefused` when, before any connection
        succeeded, the venue refuses our key or signature or the URL cannot work (retrying
        would not help); the status is then ``ready=False, "refused: ..."``. Cancelling
        ``start()`` leaves the supervisor running until :meth:`close`.
        """
        if self._started:
            raise RuntimeError("BinanceGateway.start() called twice")
        self._started = True
        first = self._first = asyncio.get_running_loop().create_future()
        self._supervisor = asyncio.create_task(self._supervise(), name="gateway-supervisor")
        await first

    async def close(self, timeout_s: float | None = None) -> None:
        """Disconnect and stop reconnecting, within ``timeout_s`` seconds when given (the
        close handshake with a venue that does not answer is cut short then: the
        connection is aborted). Open orders stay at the venue (the daemon's final
        cancel-all comes first)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        self._closing = True
        tasks = [t for t in (self._supervisor, self._recheck, *self._tasks, *self._requests)
                 if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._limit_handle is not None:
            self._limit_handle.cancel()
        ws = self._ws
        if ws is not None:
            if deadline is not None:  # read by websockets when the close frame is sent
                ws.close_timeout = max(0.0, deadline - loop.time())
            await self._hang_up(ws)
        self._set_status(VenueStatus(False, "closed"))

    # The daemon's requests return as soon as the frame is on the wire: the venue's answer
    # comes back as an update through the listener, and the daemon's feed loop must not
    # wait a round trip per order (it would delay every frame behind it), nor on a socket
    # the venue stopped reading. A place or an amend writes its frame in the caller's own
    # step when the order socket is far from its high-water mark (the send then cannot
    # wait), and only the wait for the answer runs as a task: a task of its own would first
    # wait for the event loop to parse whatever else arrived on the feed meanwhile (up to
    # 1.4 ms at p99, #9). Otherwise, and for a cancel (which may wait for a place's answer
    # first), the whole request runs as a task. The event loop writes small frames out at
    # the end of its iteration (uvloop buffers them until then): :meth:`flush` yields once
    # after a frame's requests, so that they do not wait for the rest of the caller's batch.

    async def place(self, order_id: int, side: Side, price: int, size: int) -> None:
        """Place a LIMIT_MAKER order; the answer comes as an update (NEW or REJECTED)."""
        await self._start(self._place(order_id, side, price, size))

    async def cancel(self, order_id: int) -> None:
        """Cancel an order; the answer comes as an update (CANCELED, FILLED or REJECTED)."""
        self._request(self._cancel(order_id))
        await asyncio.sleep(0)

    async def amend(self, order_id: int, price: int, size: int) -> None:
        """Change price and total size (lots, including what filled) by cancel-replace."""
        await self._start(self._amend(order_id, price, size))

    async def settled(self) -> None:
        """Until every request in flight has its answer (or has failed)."""
        while self._requests:
            await asyncio.gather(*self._requests, return_exceptions=True)

    async def _start(self, start: Coroutine[Any, Any, Coroutine[Any, Any, None] | None]) -> None:
        """Run a request whose ``start`` sends it and returns what is left to wait for."""
        if self._writes_now():
            rest = await start
            if rest is not None:
                self._request(rest)
        else:
            self._request(self._whole(start))
            await asyncio.sleep(0)  # lets the task send its frame

    async def flush(self) -> None:
        """Yield once: the event loop writes out the frames sent since (see above)."""
        await asyncio.sleep(0)

    @staticmethod
    async def _whole(start: Coroutine[Any, Any, Coroutine[Any, Any, None] | None]) -> None:
        rest = await start
        if rest is not None:
            await rest

    def _writes_now(self) -> bool:
        """A request frame written now cannot take the order socket's buffer to the
        high-water mark at which a send waits for the venue to read."""
        transport = getattr(self._ws, "transport", None)
        if transport is None:
            return False
        _, high = transport.get_write_buffer_limits()
        return bool(transport.get_write_buffer_size() + _REQUEST_ROOM < high)

    def _request(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._requests.add(task)
        task.add_done_callback(self._requests.discard)

    async def _place(self, order_id: int, side: Side, price: int, size: int
                     ) -> Coroutine[Any, Any, None] | None:
        """Check and send a place; the wait for its answer (None: nothing to wait for)."""
        side = Side(side)
        if order_id in self._orders:
            self._emit_state(order_id, OrderStatus.REJECTED, side, price, size, 0,
                             "duplicate order id")
            return None
        try:
            client_id = api.client_order_id(self._prefix, order_id)
            api.limit_maker_params(self.instrument, side, price, size)
        except ValueError as exc:
            self._emit_state(order_id, OrderStatus.REJECTED, side, price, size, 0, str(exc))
            return None
        order = _Order(order_id, client_id, side, price, size, _Phase.PLACING)
        self._orders[order_id] = order
        blocked = self._blocked()
        if blocked:
            self._close(order, OrderStatus.REJECTED, blocked)
            return None
        order.busy += 1
        try:
            sent = await self._send(
                lambda rid, ts: api.order_place(
                    self.instrument, side, price, size, client_id, request_id=rid,
                    creds=self._creds, timestamp_ms=ts),
                lambda response: self._on_place_response(order, response),
            )
        except _Failed as exc:
            order.busy -= 1
            self._place_failed(order, exc.reason)
            return None
        return self._place_answered(order, sent)

    async def _place_answered(self, order: _Order, sent: _Sent) -> None:
        try:
            await self._answer(sent)
        except _Failed as exc:
            self._place_failed(order, exc.reason)
        finally:
            order.busy -= 1

    async def _cancel(self, order_id: int) -> None:
        order = self._orders.get(order_id)
        if order is not None and order.phase is _Phase.PLACING:
            # the place's answer decides what there is to cancel
            placing = order
            await self._wait(lambda: placing.phase is not _Phase.PLACING,
                             asyncio.get_running_loop().time()
                             + self.settings.request_timeout_s + 1)
        if order is None or order.phase is not _Phase.LIVE:
            self._answer_not_live(order_id, order)
            return
        if self._ws is None or not self._subscribed:
            self._reject_request(order, "disconnected")
            return
        order.busy += 1
        order.resolve = ""
        try:
            await self._call(
                lambda rid, ts: api.order_cancel(
                    self.instrument, order.client_id, request_id=rid, creds=self._creds,
                    timestamp_ms=ts),
                lambda response: self._on_cancel_response(order, response),
            )
        except _Failed as exc:
            if order.phase is _Phase.LIVE:
                self._reject_request(order, exc.reason)
            if exc.reason == "timeout":
                self._suspect("cancel timed out")
            return
        finally:
            order.busy -= 1
        if order.resolve and order.phase is _Phase.LIVE:
            await self._resolve_missing(order, order.resolve)

    async def _amend(self, order_id: int, price: int, size: int
                     ) -> Coroutine[Any, Any, None] | None:
        """Check and send a cancel-replace; what is left to do as a task (the wait for
        its answer, or a cancel), None when nothing is."""
        order = self._orders.get(order_id)
        if order is None or order.phase is not _Phase.LIVE:
            if order is not None and order.phase is _Phase.CLOSED:
                self._report_again(order)
            else:
                self._emit_state(order_id, OrderStatus.REJECTED,
                                 order.side if order else Side.BUY, price, size, 0,
                                 "amend of an order that is not open")
            return None
        blocked = self._blocked()
        if blocked:
            self._reject_request(order, blocked)
            return None
        new_qty = size - order.filled()
        if new_qty <= 0:
            # it already filled what is now wanted: what is left must go (a cancel may wait
            # for a place's answer: not in the caller's step)
            return self._cancel(order_id)
        try:
            api.limit_maker_params(self.instrument, order.side, price, new_qty)
        except ValueError as exc:
            self._reject_request(order, str(exc))
            return None
        order.replacing, order.adopted, order.held = True, False, None
        order.want = size
        order.resolve = ""
        order.busy += 1
        try:
            sent = await self._send(
                lambda rid, ts: api.order_cancel_replace(
                    self.instrument, order.client_id, order.side, price, new_qty,
                    request_id=rid, creds=self._creds, timestamp_ms=ts),
                lambda response: self._on_replace_response(order, response),
            )
        except _Failed as exc:
            self._replace_failed(order, exc.reason)
            order.busy -= 1
            order.replacing = False
            return None
        return self._amend_answered(order, sent)

    async def _amend_answered(self, order: _Order, sent: _Sent) -> None:
        try:
            await self._answer(sent)
        except _Failed as exc:
            self._replace_failed(order, exc.reason)
            if exc.reason == "timeout":
                self._suspect("amend timed out")
            return
        finally:
            order.busy -= 1
            order.replacing = False
        if order.resolve and order.phase is _Phase.LIVE:
            await self._resolve_missing(order, order.resolve)

    async def cancel_all(self) -> int:
        """Cancel every open order of the account in the symbol and wait for the venue.

        ``openOrders.cancelAll`` first (the kill switch wants everything gone, ours or
        not); then, until ``cancel_all_timeout_s``, wait for our view to show nothing open
        and, while it does not, ask the venue (``openOrders.status``) and cancel what it
        still lists one by one, with a growing pause between these sweeps. Returns how many
        orders the venue confirmed cancelled; if it could not confirm everything (no
        connection), :meth:`open_order_count` stays > 0.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.cancel_all_timeout_s
        if not await self._wait(lambda: self._ws is not None and self._subscribed, deadline):
            self.log.error("gateway_cancel_all_unconfirmed", reason="disconnected",
                           open_orders=self.open_order_count())
            return 0
        count = 0
        swept = False
        try:
            response = await self._call(
                lambda rid, ts: api.open_orders_cancel_all(
                    self.instrument, request_id=rid, creds=self._creds, timestamp_ms=ts),
                self._on_cancel_all_response,
            )
            if response.ok and isinstance(response.result, list):
                count += len(response.result)
                swept = True
            elif response.error is not None and response.error.code == api.CANCEL_REJECTED:
                swept = True  # the venue had nothing open
            else:
                self.log.warning("gateway_cancel_all_refused", reason=_reason(response))
        except _Failed as exc:
            self.log.warning("gateway_cancel_all_failed", reason=exc.reason)
        if swept:
            # late reports (a fill just before the sweep) settle the rest by themselves
            await self._wait(lambda: self.open_order_count() == 0,
                             min(deadline, loop.time() + self.settings.request_timeout_s / 5))
        pause = self.settings.backoff_initial_s
        while (not swept or self.open_order_count()) and loop.time() < deadline:
            try:
                count += await self._sweep_one_by_one()
                swept = True
            except _Failed as exc:
                self.log.warning("gateway_cancel_all_retry", reason=exc.reason,
                                 retry_in_s=round(pause, 3))
            # paced: what a sweep leaves (a place still in flight, a late report) settles by
            # itself, and sweeping again at once would spend the request weight in a tight
            # loop (a 429, then an IP ban); no sweep before a rate limit lifts either
            retry_at = min(deadline, max(loop.time() + pause, self._limited_until))
            if swept:
                await self._wait(lambda: self.open_order_count() == 0, retry_at)
            else:
                await asyncio.sleep(max(0.0, retry_at - loop.time()))
            await self._wait(lambda: self._ws is not None and self._subscribed, deadline)
            pause = min(2 * pause, _SWEEP_PAUSE_MAX_S)
        left = self.open_order_count()
        if left:
            self.log.error("gateway_cancel_all_unconfirmed", reason="timeout", open_orders=left)
        return count

    def account(self) -> str:
        """``key:`` and 16 hex digits of the API key's SHA-256: the same key, the same
        account; nothing a reader of the journal could sign with."""
        return "key:" + hashlib.sha256(self._creds.api_key.encode()).hexdigest()[:16]

    def fills_watermark(self) -> int | None:
        """The account's trade id fills are delivered after, once start has set it."""
        return self.max_trade_id if self._watermark_known else None

    def open_order_count(self) -> int:
        """Orders the venue may hold open for us: live or in flight, places whose outcome
        is unknown, and unwanted ones whose cancel is not confirmed yet."""
        held = sum(1 for o in self._orders.values() if o.phase in _MAYBE_OPEN)
        return held + len(self._stray)

    def open_order_names(self) -> list[str]:
        """The orders :meth:`open_order_count` counts: client order ids, and ``orderId=N``
        for unwanted venue orders (whose client id may be unknown)."""
        held = [o.client_id for o in self._orders.values() if o.phase in _MAYBE_OPEN]
        return held + [f"orderId={vid}" for vid in self._stray]

    def next_due_ns(self) -> int | None:
        """A live venue keeps its own time."""
        return None

    def advance(self, now_ns: int) -> None:
        """A live venue acts by itself: nothing to do."""

    def on_book(self, book: OrderBook, now_ns: int) -> None:
        """A live venue matches by itself: nothing to do."""

    def on_trade(self, trade: Trade, now_ns: int) -> None:
        """A live venue matches by itself: nothing to do."""

    # ---- connection ---------------------------------------------------------------------------

    async def _open(self) -> None:
        """Connect, subscribe and reconcile; raises GatewayError (the connection closed)."""
        s = self.settings
        url = redact_url(s.ws_api_url)
        try:
            ws = await connect(s.ws_api_url, proxy=s.proxy or None, open_timeout=s.open_timeout_s,
                               close_timeout=s.request_timeout_s, compression=None,
                               max_size=s.max_message_bytes)
        except (OSError, TimeoutError, WebSocketException, ValueError) as exc:
            # handshake, URI and proxy errors alike; their text may hold the proxy's password
            text = f"cannot connect to {url}: {redact_url(f'{type(exc).__name__}: {exc}')}"
            fix = _refusal(exc)
            if fix is not None:
                raise VenueRefused(f"{text}: {fix}") from None
            raise GatewayError(text) from None
        self._ws = ws
        self._subscribed = False
        self._unreachable = None  # reached: a failure from now on is this attempt's own
        self._reader = asyncio.create_task(self._read(ws), name="gateway-reader")
        try:
            response = await self._call(
                lambda rid, ts: api.user_data_subscribe(request_id=rid, creds=self._creds,
                                                        timestamp_ms=ts))
            if not response.ok:
                error = response.error
                text = f"{api.USER_DATA_SUBSCRIBE} refused by {url}: {_reason(response)}"
                if error is not None and error.code in _AUTH_ERRORS:
                    raise VenueRefused(f"{text}: check the API key and secret "
                                       "(exchange.credentials), the key's permissions and "
                                       "its IP restriction at the venue")
                raise GatewayError(text)
            self._subscribed = True
            self.connects += 1
            self._connected_at = asyncio.get_running_loop().time()
            self.log.info("gateway_connected", url=url, connects=self.connects)
            await self._reconcile()
        except _Failed as exc:
            await self._hang_up(ws)
            raise GatewayError(f"{url}: {exc.reason} during connect") from None
        except BaseException:
            await self._hang_up(ws)
            raise
        if self._ws is ws:
            self._lost.clear()  # any loss signalled so far was of an older connection
        self._update_status()

    async def _hang_up(self, ws: ClientConnection) -> None:
        """Close ``ws`` and wait for its reader to finish (which fails what is pending)."""
        with contextlib.suppress(Exception):
            await ws.close()
        reader = self._reader
        if reader is not None and self._ws is ws:
            await asyncio.gather(reader, return_exceptions=True)
        self._connection_lost(ws, "closed by us")

    async def _supervise(self) -> None:
        """Make the first connection (at once), then reconnect whenever the connection is
        lost (after a backoff), until :meth:`close`. Every failed attempt is followed by
        the next after a backoff that grows with the attempts."""
        loop = asyncio.get_running_loop()
        attempt = 0
        delay: float | None = None  # before the next attempt; None: at once
        while not self._closing:
            if self._ever_connected:
                await self._lost.wait()
                self._lost.clear()
                if loop.time() - self._connected_at >= self.settings.healthy_after_s:
                    attempt = 0
                delay = self._backoff(attempt + 1)
            while not self._closing:
                attempt += 1
                if delay is not None:
                    self.log.warning("gateway_reconnecting", attempt=attempt,
                                     delay_s=round(delay, 3))
                    await asyncio.sleep(delay)
                try:
                    await self._open()
                    break
                except (GatewayError, VenueRefused) as exc:
                    if isinstance(exc, VenueRefused) and not self._ever_connected:
                        self._refused(exc)
                        return
                    # refused after a connection worked (a key revoked meanwhile): the
                    # orders may still be open there, so keep trying, as for an outage
                    delay = self._backoff(attempt + 1)
                    self._unreachable = (str(exc), delay)
                    self.log.warning("gateway_reconnect_failed" if self._ever_connected
                                     else "gateway_start_failed", attempt=attempt,
                                     error=str(exc), retry_in_s=round(delay, 3))
                    self._update_status()
            if not self._closing and not self._ever_connected:
                self._ever_connected = True
                if self._first is not None and not self._first.done():
                    self._first.set_result(None)

    def _refused(self, exc: VenueRefused) -> None:
        """Before any connection worked, the venue refused us for good: ``start()`` fails."""
        self.log.error("gateway_start_refused", error=str(exc))
        self._set_status(VenueStatus(False, f"refused: {exc}"))
        if self._first is not None and not self._first.done():
            self._first.set_exception(exc)

    def _backoff(self, attempt: int) -> float:
        s = self.settings
        return backoff_delay(attempt, s.backoff_initial_s, s.backoff_max_s, self._rng)

    async def _read(self, ws: ClientConnection) -> None:
        """Read every frame of ``ws`` until it closes."""
        why = "closed"
        try:
            while True:
                frame = await ws.recv(decode=False)
                self._on_frame(frame)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            why = f"closed ({code})"
            too_big = exc.__cause__
            if isinstance(too_big, PayloadTooBig):  # refused unread; we closed with 1009
                why = "frame_too_large"
                self.log.error("gateway_frame_too_large",
                               size=(too_big.size or 0) + (too_big.current_size or 0),
                               limit=self.settings.max_message_bytes)
        finally:
            self._connection_lost(ws, why)

    def _connection_lost(self, ws: ClientConnection, why: str) -> None:
        """Everything waiting on ``ws`` fails; the status drops; the supervisor reconnects."""
        if self._ws is not ws:
            return
        self._ws = None
        self._subscribed = False
        pending, self._pending = self._pending, {}
        for request in pending.values():
            if not request.future.done():
                request.future.set_exception(_Failed("disconnected"))
        if not self._closing:
            self.log.warning("gateway_disconnected", reason=why, failed_requests=len(pending))
        self._update_status()
        self._lost.set()

    async def _call(
        self,
        build: Callable[[int, int], bytes],
        handler: Callable[[api.Response], None] | None = None,
        timeout: float | None = None,
    ) -> api.Response:
        """Send the frame ``build(request_id, timestamp_ms)``; its response.

        ``handler`` runs in the reader when the response arrives, before any later frame
        is read. Raises :class:`_Failed` ("disconnected", "timeout") without a response.
        """
        return await self._answer(await self._send(build, handler), timeout)

    async def _send(
        self,
        build: Callable[[int, int], bytes],
        handler: Callable[[api.Response], None] | None = None,
    ) -> _Sent:
        """Write the frame ``build(request_id, timestamp_ms)``: the first half of
        :meth:`_call`, whose :meth:`_answer` must follow. Raises :class:`_Failed`
        ("disconnected") when it cannot be written."""
        ws = self._ws
        if ws is None:
            raise _Failed("disconnected")
        self._next_request += 1
        request_id = self._next_request
        frame = build(request_id, self._now_ms())
        future: asyncio.Future[api.Response] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = _Pending(future, handler, time.monotonic_ns())
        try:
            await ws.send(frame, text=True)
        except BaseException as exc:
            self._forget_request(request_id, future)
            if isinstance(exc, ConnectionClosed):
                raise _Failed("disconnected") from None
            raise
        return _Sent(request_id, future)

    async def _answer(self, sent: _Sent, timeout: float | None = None) -> api.Response:
        """The response to a request :meth:`_send` wrote; raises :class:`_Failed`
        ("disconnected", "timeout") without one."""
        request_id, future = sent
        try:
            return await asyncio.wait_for(future, timeout or self.settings.request_timeout_s)
        except TimeoutError:
            self.timeouts += 1
            raise _Failed("timeout") from None
        finally:
            self._forget_request(request_id, future)

    def _forget_request(self, request_id: int, future: asyncio.Future[api.Response]) -> None:
        self._pending.pop(request_id, None)
        if future.done() and not future.cancelled():
            future.exception()  # failed while nobody waited (the send raised): retrieved

    # ---- frames -------------------------------------------------------------------------------

    def _on_frame(self, frame: bytes) -> None:
        obj = api.decode(frame)
        if isinstance(obj, api.ProtocolError):
            self.log.warning("gateway_bad_frame", reason=obj.reason, frame=frame[:200])
            return
        if "event" in obj:
            self._on_event(api.parse_event(obj, self.instrument, self._prefix,
                                           assets=self._assets,
                                           asset_prices=self._asset_prices))
            return
        response = api.parse_response(obj)
        if isinstance(response, api.ProtocolError):
            self.log.warning("gateway_bad_response", reason=response.reason,
                             frame=frame[:200])
            request_id = obj.get("id")
            request = self._pending.pop(request_id, None) if isinstance(request_id, int) else None
            if request is not None and not request.future.done():
                request.future.set_exception(_Failed(f"malformed response: {response.reason}"))
                self._suspect("malformed response")
            return
        self._on_response(response)

    def _on_response(self, response: api.Response) -> None:
        if api.is_rate_limited(response):
            self._rate_limited(response)
        elif response.ok:
            self._limit_attempt = 0
        request_id = response.id
        request = self._pending.pop(request_id, None) if isinstance(request_id, int) else None
        if request is None:
            return  # the answer to a request that already timed out: events tell the rest
        if self._round_trip is not None:
            self._round_trip(time.monotonic_ns() - request.sent_ns)
        if request.handler is not None:
            try:
                request.handler(response)
            except Exception as exc:  # a bug must not kill the reader
                self.log.error("gateway_handler_failed", error=repr(exc))
                self._suspect("handler failed")
        if not request.future.done():
            request.future.set_result(response)

    def _on_event(self, event: api.UserEvent | api.ProtocolError) -> None:
        if isinstance(event, api.ExecutionReport):
            self._on_report(event)
        elif isinstance(event, api.ProtocolError):
            # an execution report we could not read may have carried a fill: re-check
            self.log.warning("gateway_bad_event", reason=event.reason)
            self._suspect("undecodable event")
        elif isinstance(event, api.OtherEvent) and event.kind == "eventStreamTerminated":
            # the venue ended our subscription: a fresh connection subscribes again
            self.log.warning("gateway_stream_terminated")
            ws = self._ws
            if ws is not None:
                self._spawn(self._hang_up(ws))

    # ---- status -------------------------------------------------------------------------------

    def _set_status(self, status: VenueStatus) -> None:
        if status == self._status:
            return
        self._status = status
        self.log.info("gateway_status", ready=status.ready, reason=status.reason)
        try:
            self._status_listener(status)
        except Exception as exc:
            self.log.error("gateway_status_listener_failed", error=repr(exc))

    def _update_status(self) -> None:
        if not self._started:
            return
        if self._closing:
            status = VenueStatus(False, "closed")
        elif self._ws is None or not self._subscribed:
            failed = self._unreachable
            status = (VenueStatus(False, "disconnected") if failed is None
                      else VenueStatus(False, f"unreachable: {failed[0]}", failed[1]))
        elif self._reconciling or self._suspected:
            status = VenueStatus(False, "reconciling")
        elif asyncio.get_running_loop().time() < self._limited_until:
            status = VenueStatus(False, "rate_limited")
        else:
            status = VenueStatus(True, "ready")
        self._set_status(status)

    def _blocked(self) -> str:
        """Why a place or amend may not be sent now ("" when it may)."""
        status = self._status
        if status is None:
            return "not started"
        return "" if status.ready else status.reason

    def _rate_limited(self, response: api.Response) -> None:
        """Hold places and amends until the venue's limit lifts."""
        self.rate_limits += 1
        now_ms = self._now_ms()
        delay_ms = 0
        after = api.retry_after_ms(response)
        if after is not None:
            delay_ms = after - now_ms
        else:
            for limit in response.rate_limits:
                if limit.used > limit.limit:
                    window = _INTERVAL_MS.get(limit.interval, 60_000) * max(1, limit.interval_num)
                    delay_ms = max(delay_ms, (now_ms // window + 1) * window - now_ms)
        if delay_ms > 0:
            delay = delay_ms / 1000
        else:
            self._limit_attempt += 1
            delay = self._backoff(self._limit_attempt)
        loop = asyncio.get_running_loop()
        until = loop.time() + delay
        self.log.warning("gateway_rate_limited", status=response.status,
                         reason=_reason(response), retry_in_s=round(delay, 3))
        if until > self._limited_until:
            self._limited_until = until
            if self._limit_handle is not None:
                self._limit_handle.cancel()
            self._limit_handle = loop.call_later(delay, self._limit_lifted)
        self._update_status()

    def _limit_lifted(self) -> None:
        self._limit_handle = None
        self._update_status()

    # ---- reporting ----------------------------------------------------------------------------

    def _emit(self, event: ExecutionEvent) -> None:
        try:
            self._listener(event)
        except Exception as exc:  # the daemon's problem: it must not take the reader down
            self.log.error("gateway_listener_failed", error=repr(exc))

    def _emit_state(self, order_id: int, status: OrderStatus, side: Side, price: int,
                    size: int, filled: int, reason: str) -> None:
        self._emit(OrderUpdate(order_id, status, side, price, size, filled, reason,
                               self._now_ms() * _MS))

    def _sync(self, order: _Order, ts_ns: int = 0) -> None:
        """Report ``order``'s state to the daemon if it changed since the last report."""
        if order.phase is _Phase.LIVE:
            filled = order.filled()
            status = OrderStatus.PARTIALLY_FILLED if filled else OrderStatus.NEW
        elif order.phase is _Phase.CLOSED and order.final is not None:
            filled = order.filled()
            status = order.final
        else:
            return
        state = (status, order.price, order.total_size(), filled)
        if state == order.last:
            return
        order.last = state
        reason = order.reason if not status.is_open else ""
        self._emit(OrderUpdate(order.order_id, status, order.side, order.price,
                               order.total_size(), filled, reason,
                               ts_ns or self._now_ms() * _MS))

    def _report_again(self, order: _Order) -> None:
        """The last state of a closed order once more (a request about it cannot wait)."""
        order.last = None
        self._sync(order)

    def _reject_request(self, order: _Order, reason: str) -> None:
        """REJECTED for a request about an acknowledged order: the order itself stays."""
        self._emit_state(order.order_id, OrderStatus.REJECTED, order.side, order.price,
                         order.total_size(), order.filled(), reason)

    def _answer_not_live(self, order_id: int, order: _Order | None) -> None:
        """A cancel of an order that is not live: answer at once, never leave it waiting."""
        if order is not None and order.phase is _Phase.CLOSED:
            self._report_again(order)
            return
        side = order.side if order is not None else Side.BUY
        self._emit_state(order_id, OrderStatus.CANCELED, side, 0, 0,
                         order.filled() if order is not None else 0, "not open")

    def _set_phase(self, order: _Order, phase: _Phase) -> None:
        if order.phase is phase:
            return
        order.phase = phase
        if phase is _Phase.CLOSED or phase is _Phase.GONE:
            fifo = self._closed_fifo
            fifo.append(order.order_id)
            while len(fifo) > _KEEP_CLOSED:
                self._forget(fifo.popleft())

    def _forget(self, order_id: int) -> None:
        order = self._orders.get(order_id)
        if order is None or order.phase not in (_Phase.CLOSED, _Phase.GONE):
            return
        if any(vid in self._stray for vid in order.legs):
            return  # still open somewhere: keep it until the venue confirms the cancel
        del self._orders[order_id]
        for vid in order.legs:
            self._owner.pop(vid, None)

    def _close(self, order: _Order, status: OrderStatus, reason: str, ts_ns: int = 0) -> None:
        order.final, order.reason = status, reason
        self._set_phase(order, _Phase.CLOSED)
        self._sync(order, ts_ns)

    def _close_as_ended(self, order: _Order, reason: str) -> None:
        """The venue no longer lists it: FILLED if its (complete) fills cover it, else
        CANCELED."""
        done = order.filled() >= order.total_size()
        self._close(order, OrderStatus.FILLED if done else OrderStatus.CANCELED,
                    "" if done else reason)

    # ---- the venue's word on orders -----------------------------------------------------------

    def _record_for(self, order_id: int, side: Side, client_id: str) -> _Order:
        """Our record of ``order_id``; a new one (not the daemon's) if we never had it."""
        order = self._orders.get(order_id)
        if order is None:
            order = _Order(order_id, client_id, side, 0, 0, _Phase.GONE)
            self._orders[order_id] = order
            self._closed_fifo.append(order_id)
        return order

    def _see_leg(self, order: _Order, vid: int, update: OrderUpdate,
                 adopt: bool | None = None) -> _Leg:
        """Record venue order ``vid`` of ``order`` (``update.size`` its quantity,
        ``update.filled`` its executed size). An open venue order we did not know under
        this client id is the order itself (first sight) or its replacement (a
        cancel-replace reuses the client id): it becomes the current leg."""
        leg = order.legs.get(vid)
        if leg is None:
            leg = order.legs[vid] = _Leg(update.size)
            self._owner[vid] = order.order_id
            if adopt is None:
                adopt = update.status.is_open
        elif adopt is None:
            adopt = False
        # only the daemon's orders follow a replacement; others are known by venue id
        adopt = order.venue_id == 0 or (adopt and order.phase in _DAEMONS)
        if adopt and order.venue_id != vid:
            if order.venue_id:
                order.adopted = True
                order.held = None  # the CANCELED we held was the replace's first half
            order.venue_id = vid
            order.price = update.price
        leg.see(order, update.filled, leg.traded)
        if not update.status.is_open:
            leg.ended = True
        return leg

    def _apply_status(self, order: _Order, vid: int, update: OrderUpdate) -> None:
        """What the venue's status of leg ``vid`` means for ``order``."""
        if order.phase not in (_Phase.PLACING, _Phase.LIVE):
            self._unwanted_state(order, vid, update)
            return
        if vid != order.venue_id:
            self._sync(order, update.ts_ns)  # a retired leg: its fills count, its status not
            return
        status = update.status
        if status.is_open:
            self._set_phase(order, _Phase.LIVE)
            self._sync(order, update.ts_ns)
        elif status is OrderStatus.CANCELED:
            if order.replacing:
                order.held = update  # the replace's cancel, unless the replace fails
                return
            self._close(order, OrderStatus.CANCELED, update.reason, update.ts_ns)
        elif status is OrderStatus.FILLED:
            self._close(order, OrderStatus.FILLED, "", update.ts_ns)
        else:  # REJECTED by the venue after all
            reason = update.reason or "rejected by the venue"
            if order.phase is _Phase.LIVE:
                # acknowledged first: for the order manager REJECTED would mean "your request
                # failed, the order stays"; the order has ended, so it is CANCELED
                self._close(order, OrderStatus.CANCELED, f"rejected: {reason}", update.ts_ns)
            else:
                self._close(order, OrderStatus.REJECTED, reason, update.ts_ns)

    def _unwanted_state(self, order: _Order, vid: int, update: OrderUpdate) -> None:
        """A venue order of ours that the daemon does not (or no longer) hold: if open,
        it must go; its fills are delivered all the same."""
        if order.phase is _Phase.DOUBTFUL:
            self._set_phase(order, _Phase.GONE)  # no longer in doubt: we know its fate
        leg = order.legs.get(vid)
        if update.status.is_open and not (leg is not None and leg.ended):
            if vid not in self._stray:
                self._stray[vid] = order.order_id
                self.log.warning("gateway_unwanted_order", order_id=order.order_id,
                                 venue_order_id=vid, client_id=order.client_id)
        else:
            self._stray.pop(vid, None)
        if order.phase is _Phase.CLOSED:
            self._sync(order, update.ts_ns)  # late fills of a closed order

    def _on_report(self, report: api.ExecutionReport) -> None:
        update = report.update
        client_id = report.orig_client_order_id or report.client_order_id
        order = self._record_for(update.order_id, update.side, client_id)
        vid = report.exchange_order_id
        leg = self._see_leg(order, vid, update)
        fill = report.fill
        if fill is not None:
            if not report.fee_converted:
                self.log.warning("gateway_fee_unconverted", order_id=order.order_id,
                                 commission=str(report.commission),
                                 asset=report.commission_asset)
            if self._deliver(fill):
                leg.see(order, leg.executed, leg.traded + fill.size)
        had_stray = len(self._stray)
        self._apply_status(order, vid, update)
        if len(self._stray) > had_stray:
            self._spawn(self._cancel_strays())  # a cancel already in flight is not repeated

    def _deliver(self, fill: Fill) -> bool:
        """Hand ``fill`` to the daemon unless its trade id was delivered already."""
        trade_id = fill.exec_id
        if trade_id in self._seen:
            return False
        self._remember(trade_id)
        self._emit(fill)
        return True

    def _remember(self, trade_id: int) -> None:
        self._seen.add(trade_id)
        self._seen_fifo.append(trade_id)
        if len(self._seen_fifo) > _SEEN_TRADES:
            self._seen.discard(self._seen_fifo.popleft())
        self.max_trade_id = max(self.max_trade_id, trade_id)

    def _result_update(self, result: object) -> tuple[OrderUpdate, int] | None:
        """Our update and the venue id from an order object of a response; None (logged)
        when it is not ours or does not decode."""
        update = api.order_update_from_result(result, self.instrument, self._prefix)
        if isinstance(update, OrderUpdate):
            return update, _venue_id(result)
        self.log.warning("gateway_unexpected_result", reason=update.reason
                         if isinstance(update, api.ProtocolError) else "not our order")
        return None

    def _on_place_response(self, order: _Order, response: api.Response) -> None:
        if not response.ok:
            if order.phase is _Phase.PLACING:
                self._close(order, OrderStatus.REJECTED, _reason(response))
            return
        got = self._result_update(response.result)
        if got is None:
            self._suspect("unreadable place result")
            return
        update, vid = got
        self._see_leg(order, vid, update)
        self._apply_status(order, vid, update)

    def _place_failed(self, order: _Order, reason: str) -> None:
        """No answer to a place: failed for the daemon, in doubt for us (reconciliation
        cancels it if it did reach the venue)."""
        if reason == "timeout":
            self._suspect("place timed out")
        if order.phase is not _Phase.PLACING:
            return  # its execution report came first: the place did succeed
        self._emit_state(order.order_id, OrderStatus.REJECTED, order.side, order.price,
                         order.size, 0, reason)
        self._set_phase(order, _Phase.DOUBTFUL)

    def _on_cancel_response(self, order: _Order, response: api.Response) -> None:
        if response.ok:
            got = self._result_update(response.result)
            if got is None:
                self._suspect("unreadable cancel result")
                return
            update, vid = got
            # cancelled by client id: whatever it cancelled was the current venue order
            self._see_leg(order, vid, update, adopt=True)
            self._apply_status(order, vid, update)
            return
        error = response.error
        if error is not None and error.code in _UNKNOWN_ORDER:
            order.resolve = _reason(response)  # the coroutine asks the venue
        elif order.phase is _Phase.LIVE:
            self._reject_request(order, _reason(response))

    def _on_replace_response(self, order: _Order, response: api.Response) -> None:
        order.replacing = False
        held, order.held = order.held, None
        if response.ok:
            result = response.result
            parts = (result.get("newOrderResponse"), result.get("cancelResponse")) if isinstance(
                result, dict) else (None, None)
            new = self._result_update(parts[0])
            if new is None:
                self._suspect("unreadable cancel-replace result")
                return
            update, vid = new
            self._see_leg(order, vid, update, adopt=True)
            old = self._result_update(parts[1]) if parts[1] is not None else None
            if old is not None:
                self._see_leg(order, old[1], old[0], adopt=False)
            self._apply_status(order, vid, update)
            self._check_amend_size(order)
            return
        error = response.error
        data = error.data if error is not None and isinstance(error.data, dict) else {}
        if error is not None and error.code == api.CANCEL_REPLACE_PARTIALLY_FAILED and (
                data.get("cancelResult") == "SUCCESS"):
            # the old order is gone, the new one was refused: the order ended
            inner = data.get("newOrderResponse")
            reason = _reason(response)
            if isinstance(inner, dict) and "code" in inner:
                reason = f"{inner.get('code')} {inner.get('msg')}"
            self._reject_request(order, reason)
            cancelled = self._result_update(data.get("cancelResponse"))
            if cancelled is not None:
                self._see_leg(order, cancelled[1], cancelled[0], adopt=False)
            self._close(order, OrderStatus.CANCELED, f"amend failed: {reason}")
            return
        cancel_part = data.get("cancelResponse")
        unknown = isinstance(cancel_part, dict) and cancel_part.get("code") in _UNKNOWN_ORDER
        reason = _reason(response)
        if isinstance(cancel_part, dict) and "code" in cancel_part:
            reason = f"{reason} (cancel: {cancel_part.get('code')} {cancel_part.get('msg')})"
        if held is not None:
            # the CANCELED we held was not the replace's: the order ended on its own
            self._reject_request(order, reason)
            self._apply_status(order, order.venue_id, held)
        elif unknown:
            order.resolve = reason
        elif order.phase is _Phase.LIVE:
            self._reject_request(order, reason)

    def _replace_failed(self, order: _Order, reason: str) -> None:
        order.replacing = False
        held, order.held = order.held, None
        if order.adopted:
            self._check_amend_size(order)  # the replacement's report came: it happened
            return
        if order.phase is not _Phase.LIVE:
            return
        self._reject_request(order, reason)
        if held is not None:
            # its cancel half happened; whether a replacement exists, reconciliation sees
            self._apply_status(order, order.venue_id, held)

    def _check_amend_size(self, order: _Order) -> None:
        """A fill that raced the replace leaves a total other than the one asked for:
        REJECTED makes the order manager take the venue's numbers."""
        if order.phase is _Phase.LIVE and order.total_size() != order.want:
            self._reject_request(order, f"amend overlapped a fill: total size is "
                                        f"{order.total_size()}, not {order.want}")

    def _on_cancel_all_response(self, response: api.Response) -> None:
        if not response.ok or not isinstance(response.result, list):
            return
        for entry in response.result:
            update = api.order_update_from_result(entry, self.instrument, self._prefix)
            if not isinstance(update, OrderUpdate):
                continue
            vid = _venue_id(entry)
            order = self._record_for(update.order_id, update.side,
                                     str(entry.get("origClientOrderId") or ""))
            self._see_leg(order, vid, update, adopt=True)  # the open one of its client id
            self._apply_status(order, vid, update)
            self._stray.pop(vid, None)

    # ---- asking the venue ---------------------------------------------------------------------

    async def _open_orders(self) -> list[_OpenOrder]:
        """``openOrders.status``: every open order of the account in the symbol."""
        response = await self._call(
            lambda rid, ts: api.open_orders_status(self.instrument, request_id=rid,
                                                   creds=self._creds, timestamp_ms=ts))
        if not response.ok:
            raise _Failed(_reason(response))
        if not isinstance(response.result, list):
            raise _Failed("openOrders.status: the result is not a list")
        out: list[_OpenOrder] = []
        for entry in response.result:
            update = api.order_update_from_result(entry, self.instrument, self._prefix)
            if isinstance(update, api.ProtocolError):
                raise _Failed(f"openOrders.status: {update.reason}")
            if isinstance(update, OrderUpdate):
                out.append(_OpenOrder(update, _venue_id(entry), str(entry["clientOrderId"])))
            else:
                out.append(_OpenOrder(None, update.exchange_order_id, update.client_order_id))
        return out

    async def _recover_fills(self) -> None:
        """Deliver every trade of the account after the highest trade id seen (``myTrades``
        from ``fromId``, paged).

        The first time (at start) there is nothing to recover yet: the account's newest
        trade id becomes the starting point instead. Trade ids, not times: they are what the
        venue orders trades by, and they do not depend on our clock agreeing with its.
        """
        if not self._watermark_known:
            latest = await self._my_trades(limit=1)
            if latest:
                self.max_trade_id = max(self.max_trade_id, latest[-1].trade_id)
            self._watermark_known = True
            return
        from_id = self.max_trade_id + 1
        touched: set[int] = set()
        while True:
            trades = await self._my_trades(from_id=from_id)
            for trade in trades:
                order_id = await self._on_account_trade(trade)
                if order_id is not None:
                    touched.add(order_id)
            if len(trades) < api.MAX_MY_TRADES_LIMIT:
                break
            from_id = trades[-1].trade_id + 1
        for order_id in touched:
            order = self._orders.get(order_id)
            if order is not None:
                self._sync(order)

    async def _my_trades(self, *, from_id: int | None = None, order_id: int | None = None,
                         limit: int = api.MAX_MY_TRADES_LIMIT) -> list[api.AccountTrade]:
        response = await self._call(
            lambda rid, ts: api.my_trades(
                self.instrument, from_id=from_id, order_id=order_id, limit=limit,
                request_id=rid, creds=self._creds, timestamp_ms=ts))
        if not response.ok:
            raise _Failed(_reason(response))
        trades = api.parse_my_trades(response.result, self.instrument)
        if isinstance(trades, api.ProtocolError):
            raise _Failed(f"myTrades: {trades.reason}")
        return trades

    async def _on_account_trade(self, trade: api.AccountTrade) -> int | None:
        """Deliver one ``myTrades`` trade (once); the order id it belongs to, None if the
        trade is not one of our orders'."""
        if trade.trade_id in self._seen or trade.order_id in self._foreign:
            self._remember(trade.trade_id)
            return None
        order_id = self._owner.get(trade.order_id)
        if order_id is None:
            order_id = await self._whose(trade.order_id)
            if order_id is None:
                self._remember(trade.trade_id)
                return None
        order = self._orders[order_id]
        leg = order.legs[trade.order_id]
        fill, converted = api.fill_from_trade(trade, order_id, self.instrument,
                                              assets=self._assets,
                                              asset_prices=self._asset_prices)
        if not converted:
            self.log.warning("gateway_fee_unconverted", order_id=order_id,
                             commission=str(trade.commission), asset=trade.commission_asset)
        if self._deliver(fill):
            leg.see(order, leg.executed, leg.traded + trade.qty)
            self.fills_recovered += 1
            self.log.info("gateway_fill_recovered", order_id=order_id, exec_id=trade.trade_id,
                          size=trade.qty)
        return order_id

    async def _whose(self, vid: int) -> int | None:
        """Our order id of venue order ``vid`` (``order.status``); None if not ours."""
        response = await self._call(
            lambda rid, ts: api.order_status(self.instrument, order_id=vid, request_id=rid,
                                             creds=self._creds, timestamp_ms=ts))
        if not response.ok:
            raise _Failed(_reason(response))
        update = api.order_update_from_result(response.result, self.instrument, self._prefix)
        if isinstance(update, api.ProtocolError):
            raise _Failed(f"order.status: {update.reason}")
        if not isinstance(update, OrderUpdate):
            self._foreign.add(vid)
            return None
        result = response.result
        assert isinstance(result, dict)
        order = self._record_for(update.order_id, update.side, str(result["clientOrderId"]))
        self._see_leg(order, vid, update, adopt=order.venue_id == 0)
        return order.order_id

    # ---- reconciliation -----------------------------------------------------------------------

    async def _reconcile(self) -> None:
        """Make our view the venue's (see the module docstring); raises _Failed."""
        async with self._reconcile_lock:
            self._reconciling += 1
            self._update_status()
            try:
                await self._reconcile_once()
            finally:
                self._reconciling -= 1
                self._update_status()

    def _settled_candidates(self) -> tuple[set[int], set[int]]:
        """Before a snapshot of the open orders: the orders (live or in doubt, no request in
        flight) and stray venue orders that its absence from the snapshot may settle. An
        order acknowledged after the snapshot was taken is not absent from the venue, only
        from the snapshot."""
        orders = {o.order_id for o in self._orders.values()
                  if o.phase in (_Phase.LIVE, _Phase.DOUBTFUL) and not o.busy}
        return orders, set(self._stray)

    def _settle_absent(self, orders: set[int], strays: set[int], open_ids: set[int],
                       open_vids: set[int]) -> None:
        """Candidates the snapshot did not list ended while we were not looking."""
        for order_id in orders - open_ids:
            order = self._orders.get(order_id)
            if order is None or order.busy:
                continue  # a request in flight will tell
            if order.phase is _Phase.LIVE:
                self._close_as_ended(order, "not open at the venue")
            elif order.phase is _Phase.DOUBTFUL:
                self._set_phase(order, _Phase.GONE)
        for vid in strays - open_vids:
            self._stray.pop(vid, None)

    async def _reconcile_once(self) -> None:
        orders, strays = self._settled_candidates()
        listed = await self._open_orders()
        await self._recover_fills()  # after the snapshot: every fill before it is in here
        open_ids: set[int] = set()
        open_vids: set[int] = set()
        for entry in listed:
            update = entry.update
            if update is None:
                continue  # another client's order on the account: not ours to touch
            order = self._record_for(update.order_id, update.side, entry.client_id)
            leg = self._see_leg(order, entry.venue_id, update)
            self._apply_status(order, entry.venue_id, update)
            open_ids.add(order.order_id)
            open_vids.add(entry.venue_id)
            if entry.venue_id in self._stray and leg.executed > leg.traded:
                await self._fill_history(order, entry.venue_id)  # e.g. a crashed run's fills
        self._settle_absent(orders, strays, open_ids, open_vids)
        await self._cancel_strays()

    async def _fill_history(self, order: _Order, vid: int) -> None:
        """Every trade of venue order ``vid`` (``myTrades`` by ``orderId``), delivered once."""
        for trade in await self._my_trades(order_id=vid):
            await self._on_account_trade(trade)
        self._sync(order)

    async def _cancel_strays(self) -> None:
        """Cancel every open venue order of ours that nobody wants (one by one)."""
        for vid in list(self._stray):
            if vid in self._cancelling or vid not in self._stray:
                continue
            self._cancelling.add(vid)
            try:
                await self._cancel_venue_order(vid)
            except _Failed as exc:
                self.log.warning("gateway_unwanted_cancel_failed", venue_order_id=vid,
                                 reason=exc.reason)
            finally:
                self._cancelling.discard(vid)

    async def _cancel_venue_order(self, vid: int) -> bool:
        """``order.cancel`` by venue id; True if the venue cancelled it now. Unknown to the
        venue (-2011) means it is closed already."""
        response = await self._call(
            lambda rid, ts: api.order_cancel(self.instrument, order_id=vid, request_id=rid,
                                             creds=self._creds, timestamp_ms=ts),
            self._on_venue_cancel_response,
        )
        if response.ok:
            self._stray.pop(vid, None)
            order_id = self._owner.get(vid)
            order = self._orders.get(order_id) if order_id is not None else None
            leg = order.legs.get(vid) if order is not None else None
            if order is not None and leg is not None and leg.executed > leg.traded:
                await self._fill_history(order, vid)
            return True
        error = response.error
        if error is not None and error.code in _UNKNOWN_ORDER:
            self._stray.pop(vid, None)
            return False
        raise _Failed(_reason(response))

    def _on_venue_cancel_response(self, response: api.Response) -> None:
        if not response.ok:
            return
        update = api.order_update_from_result(response.result, self.instrument, self._prefix)
        if not isinstance(update, OrderUpdate):
            return
        vid = _venue_id(response.result)
        order = self._record_for(update.order_id, update.side, "")
        self._see_leg(order, vid, update, adopt=False)
        self._apply_status(order, vid, update)

    async def _resolve_missing(self, order: _Order, reason: str) -> None:
        """The venue did not know the order we cancelled or replaced: is it open there?"""
        try:
            listed = await self._open_orders()
            await self._recover_fills()
        except _Failed as exc:
            if order.phase is _Phase.LIVE:
                self._reject_request(order, f"{reason}; status unknown: {exc.reason}")
            return
        for entry in listed:
            if entry.update is not None and entry.update.order_id == order.order_id:
                self._see_leg(order, entry.venue_id, entry.update)
                self._apply_status(order, entry.venue_id, entry.update)
                if order.phase is _Phase.LIVE:
                    self._reject_request(order, reason)  # open after all: the request failed
                return
        if order.phase is _Phase.LIVE:
            self._close_as_ended(order, f"not open at the venue ({reason})")

    async def _sweep_one_by_one(self) -> int:
        """List the open orders, cancel each; when none is listed, settle our view."""
        orders, strays = self._settled_candidates()
        listed = await self._open_orders()
        await self._recover_fills()
        if not listed:
            self._settle_absent(orders, strays, set(), set())
            return 0
        count = 0
        for entry in listed:
            if entry.update is not None:
                order = self._record_for(entry.update.order_id, entry.update.side,
                                         entry.client_id)
                self._see_leg(order, entry.venue_id, entry.update)
            if await self._cancel_venue_order(entry.venue_id):
                count += 1
        return count

    def _suspect(self, why: str) -> None:
        """No (usable) answer: the connection may be dead or our view wrong. Reconcile now;
        if that fails too, drop the connection (the supervisor reconnects)."""
        if self._closing or self._ws is None:
            return
        if self._recheck is not None and not self._recheck.done():
            return
        self._suspected = True  # quotes come off now, not when the check gets to run
        self._update_status()
        self._recheck = asyncio.get_running_loop().create_task(self._recheck_connection(why),
                                                              name="gateway-recheck")

    async def _recheck_connection(self, why: str) -> None:
        ws = self._ws
        self.log.warning("gateway_suspect", reason=why)
        try:
            await self._reconcile()
        except _Failed as exc:
            self.log.warning("gateway_dropping_connection", reason=exc.reason)
            if ws is not None and ws is self._ws:
                await self._hang_up(ws)
        finally:
            # a dropped connection reconciles again when it is back (status: disconnected)
            self._suspected = False
            self._update_status()

    # ---- helpers ------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _wait(self, condition: Callable[[], bool], deadline: float) -> bool:
        """Poll ``condition`` until true or the loop time ``deadline``; its last value."""
        loop = asyncio.get_running_loop()
        while not condition():
            if loop.time() >= deadline or self._closing:
                return False
            await asyncio.sleep(_POLL_S)
        return True

