"""Order entry on Binance spot over its WebSocket API: the live exchange adapter (issue #5).

:class:`BinanceGateway` implements :class:`~mmdaemon.exchange.base.ExchangeAdapter` over ONE
websocket connection to ``/ws-api/v3``. It is the connection shell (issue #18): frames,
the per-order state machine, rate-limit accounting and reconciliation are the sans-I/O
:class:`~mmdaemon.venues.binance_orders.OrderEntryProtocol`'s (its module doc tells how
orders, failures and reconciliation work); requests on the wire are
:class:`~mmdaemon.exchange.binance_requests.RequestChannel`'s. This module connects, backs
off, reads every frame into the protocol (responses are applied by the reader, *in wire
order*), keeps the timers and hands the protocol's outputs on. Time is the injected
:class:`~mmdaemon.clock.Clock`'s: deadlines on ``monotonic_ns``, request stamps ``wall_ns``.

``start()`` connects, subscribes to the account's executions on the same connection
(``userDataStream.subscribe.signature``: acks and execution reports then arrive in the
order the venue produced them), reconciles, and only then reports ``ready``. A venue that
cannot be reached (refused, timed out, a 5xx, a dropped connection, a request without an
answer) is retried by one supervisor with jittered exponential backoff
(:func:`mmdaemon.backoff.backoff_delay`), at start as after a loss, for as long as it
takes; only a refusal that retrying cannot fix (our key or signature, a URL or proxy that
cannot work) ends ``start()`` with :class:`~mmdaemon.exchange.base.VenueRefused`. The
status: ``"disconnected"`` at once on a loss (every request waiting fails), ``"unreachable:
<why>"`` with ``retry_in_s`` after a failed attempt, ``"reconciling"`` after a request
without an answer (reconciled at once, dropped if that fails too), ``"rate_limited"``
while the venue's limit holds (places and amends are refused locally, cancels go out).
The attempt counter only resets after a connection stayed up ``healthy_after_s``, so a
venue that accepts and drops at once is not hammered.

The API secret only ever reaches :func:`~mmdaemon.venues.binance_api.sign` and the HMAC
that :class:`~mmdaemon.venues.binance_orders.QuoteFrames` keys with it once. Nothing here
logs a frame we send; the credentials, the settings and the gateway have reprs that redact
(the proxy URL's password too).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from collections.abc import Callable, Coroutine
from typing import Any, Final

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, PayloadTooBig, WebSocketException

from mmdaemon.backoff import backoff_delay
from mmdaemon.book import OrderBook
from mmdaemon.clock import Clock, SystemClock
from mmdaemon.exchange.base import Listener, StatusListener, VenueRefused, VenueStatus
from mmdaemon.exchange.binance_requests import RequestChannel
from mmdaemon.exchange.binance_settings import GatewayError, GatewaySettings, redact_url, refusal
from mmdaemon.model import NS_PER_MS, NS_PER_S, Instrument, Side, Trade
from mmdaemon.venues import binance_api as api
from mmdaemon.venues.binance_order_io import (
    Answered,
    CancelStrays,
    HangUp,
    Hold,
    RequestFailed,
    Suspect,
    reason,
)
from mmdaemon.venues.binance_order_state import OrderRecord
from mmdaemon.venues.binance_orders import OrderEntryProtocol, refused_for_good

__all__ = ["BinanceGateway", "GatewayError", "GatewaySettings", "redact_url"]

_POLL_S: Final = 0.005  # how often cancel_all re-checks while it waits for confirmations
_SWEEP_PAUSE_MAX_S: Final = 1.0  # cancel_all's pause between sweeps grows up to this


class BinanceGateway:
    """:class:`~mmdaemon.exchange.base.ExchangeAdapter` for Binance spot (see the module doc).

    Units as in the core: prices ticks, sizes lots (an order's size is its total size,
    filled part included), our events' times ns since the epoch; venue times are ms.
    ``log`` is structlog-style; ``clock`` gives deadlines (monotonic) and the wall time
    signed requests are stamped with (``now_ms``, ms since the epoch, replaces it when
    given); ``rng`` jitters the backoff; ``assets``/``asset_prices`` convert fees (see
    :func:`~mmdaemon.venues.binance_api.parse_event`).
    """

    def __init__(
        self,
        settings: GatewaySettings,
        instrument: Instrument,
        credentials: api.Credentials,
        log: Any,
        *,
        clock: Clock | None = None,
        now_ms: Callable[[], int] | None = None,
        rng: Callable[[], float] = random.random,
        assets: api.Assets | None = None,
        asset_prices: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.instrument = instrument
        self.log = log
        self._creds = credentials._replace(recv_window_ms=settings.recv_window_ms)
        self._clock: Clock = clock or SystemClock()
        self._now_ms = now_ms or (lambda: self._clock.wall_ns() // NS_PER_MS)
        self._rng = rng
        self._proto = OrderEntryProtocol(
            instrument, self._creds, settings.client_prefix, log, rng=rng,
            backoff_initial_s=settings.backoff_initial_s,
            backoff_max_s=settings.backoff_max_s, assets=assets, asset_prices=asset_prices)
        self._listener: Listener = lambda event: None  # until one is set
        self._status_listener: StatusListener = lambda status: None
        self._round_trip: Callable[[int], None] | None = None  # run --latency-out
        self._status: VenueStatus | None = None
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._recheck: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
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
        self._connected_at_ns = 0  # monotonic, the last successful (re)connect
        self._limit_handle: asyncio.TimerHandle | None = None
        self._channel = RequestChannel(self._proto, lambda: self._ws, self._clock,
                                       self._wall_ns, self._pump, settings.request_timeout_s)
        self.connects = 0

    def __repr__(self) -> str:
        return (f"BinanceGateway({redact_url(self.settings.ws_api_url)!r}, "
                f"prefix={self.settings.client_prefix!r}, "
                f"key={api.redact_key(self._creds.api_key)!r}, status={self._status!r})")

    # the protocol's figures, read by metrics and tests
    @property
    def max_trade_id(self) -> int:
        """Highest venue trade id seen (``myTrades`` resumes after it)."""
        return self._proto.max_trade_id

    @property
    def fills_recovered(self) -> int:
        """Fills delivered from ``myTrades`` (the stream had missed them)."""
        return self._proto.fills_recovered

    @property
    def _orders(self) -> dict[int, OrderRecord]:  # tests check the protocol's leg totals
        return self._proto.orders

    @property
    def _pending(self) -> dict[int, Any]:  # tests: requests on the wire
        return self._channel.pending

    # ---- the adapter protocol ---------------------------------------------------------------

    def set_listener(self, listener: Listener) -> None:
        self._listener = listener

    def set_status_listener(self, listener: StatusListener) -> None:
        self._status_listener = listener

    def set_round_trip_listener(self, listener: Callable[[int], None]) -> None:
        self._round_trip = listener

    def set_write_listener(self, listener: Callable[[], None]) -> None:
        """``listener()`` is called as each request frame has been written to the socket
        (the daemon's wire-to-wire latency ends there, :mod:`mmdaemon.wire_latency`)."""
        self._channel.on_written = listener

    def resume_fills_after(self, trade_id: int) -> None:
        """Before :meth:`start`: deliver, at start, every fill of ours with a venue trade id
        above ``trade_id`` (the journal's highest exec id), so fills a crashed run never
        recorded are not lost. Without it, start takes the account's newest trade as the
        starting point and only fills from then on (and those of orders still open) come.
        """
        if self._started:
            raise RuntimeError("resume_fills_after() must be called before start()")
        self._proto.resume_fills_after(trade_id)

    def resume_funding_after(self, funding_id: int) -> None:
        """Spot pays no funding: nothing to resume."""

    @property
    def status(self) -> VenueStatus | None:
        """The last status reported (None before ``start``)."""
        return self._status

    async def start(self) -> None:
        """Connect, subscribe, reconcile; returns once order entry is ready. The supervisor
        that reconnects later makes the first connection too (see the module doc); raises
        :class:`~mmdaemon.exchange.base.VenueRefused` (status ``"refused: ..."``) when the
        venue refuses us for good before any connection worked. Cancelling ``start()``
        leaves the supervisor running until :meth:`close`."""
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
        clock = self._clock
        deadline = None if timeout_s is None else clock.monotonic_ns() + round(timeout_s * NS_PER_S)
        self._closing = True
        tasks = [t for t in (self._supervisor, self._recheck, *self._tasks, *self._channel.tasks)
                 if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._limit_handle is not None:
            self._limit_handle.cancel()
        ws = self._ws
        if ws is not None:
            if deadline is not None:  # read by websockets when the close frame is sent
                ws.close_timeout = max(0.0, (deadline - clock.monotonic_ns()) / NS_PER_S)
            await self._hang_up(ws)
        self._set_status(VenueStatus(False, "closed"))

    async def place(self, order_id: int, side: Side, price: int, size: int,
                    reduce_only: bool = False) -> None:
        """Place a post-only order (LIMIT_MAKER on spot, GTX on USD-M); the answer comes as
        an update (NEW or REJECTED). ``reduce_only``: it may only shrink the position. Spot
        has no reduce-only order and ignores it: the engine's REDUCING gate (only orders
        that shrink the position, no further than to zero) is what keeps such an order
        reducing there."""
        await self._channel.start(lambda: self._proto.place(order_id, side, price, size,
                                                            self._blocked(), reduce_only))

    async def cancel(self, order_id: int) -> None:
        """Cancel an order; the answer comes as an update (CANCELED, FILLED or REJECTED)."""
        self._channel.spawn(self._cancel(order_id))
        await asyncio.sleep(0)

    async def amend(self, order_id: int, price: int, size: int) -> None:
        """Change price and total size (lots, including what filled) by cancel-replace."""
        await self._channel.start(lambda: self._proto.amend(order_id, price, size,
                                                            self._blocked(), self._connected()))

    async def settled(self) -> None:
        """Until every request in flight has its answer (or has failed)."""
        await self._channel.settled()

    async def flush(self) -> None:
        """Yield once: the event loop writes out the frames sent since (see above)."""
        await asyncio.sleep(0)

    def _writes_now(self) -> bool:  # read by tests
        return self._channel.writes_now()

    async def _cancel(self, order_id: int) -> None:
        if self._proto.is_placing(order_id):
            # the place's answer decides what there is to cancel
            await self._wait(lambda: not self._proto.is_placing(order_id),
                             self._clock.monotonic_ns()
                             + round((self.settings.request_timeout_s + 1) * NS_PER_S))
        await self._channel.drive(self._proto.cancel(order_id, self._connected()))

    async def cancel_all(self) -> int:
        """Cancel every open order of the account in the symbol and wait for the venue.

        ``openOrders.cancelAll`` first (the kill switch wants everything gone, ours or
        not); then, until ``cancel_all_timeout_s``, wait for our view to show nothing open
        and, while it does not, ask the venue (``openOrders.status``) and cancel what it
        still lists one by one, with a growing pause between these sweeps. Returns how many
        orders the venue confirmed cancelled; if it could not confirm everything (no
        connection), :meth:`open_order_count` stays > 0.
        """
        clock, s = self._clock, self.settings
        deadline = clock.monotonic_ns() + round(s.cancel_all_timeout_s * NS_PER_S)
        if not await self._wait(self._connected, deadline):
            self.log.error("gateway_cancel_all_unconfirmed", reason="disconnected",
                           open_orders=self.open_order_count())
            return 0
        count, swept = await self._channel.drive(self._proto.cancel_all())
        if swept:
            # late reports (a fill just before the sweep) settle the rest by themselves
            await self._wait(lambda: self.open_order_count() == 0,
                             min(deadline,
                                 clock.monotonic_ns() + round(s.request_timeout_s / 5 * NS_PER_S)))
        pause = s.backoff_initial_s
        while (not swept or self.open_order_count()) and clock.monotonic_ns() < deadline:
            try:
                count += await self._channel.drive(self._proto.sweep_one_by_one())
                swept = True
            except RequestFailed as exc:
                self.log.warning("gateway_cancel_all_retry", reason=exc.reason,
                                 retry_in_s=round(pause, 3))
            # paced: what a sweep leaves (a place still in flight, a late report) settles by
            # itself, and sweeping again at once would spend the request weight in a tight
            # loop (a 429, then an IP ban); no sweep before a rate limit lifts either
            retry_at = min(deadline, max(clock.monotonic_ns() + round(pause * NS_PER_S),
                                         self._proto.limits.until_ns))
            if swept:
                await self._wait(lambda: self.open_order_count() == 0, retry_at)
            else:
                await clock.sleep(max(0, retry_at - clock.monotonic_ns()) / NS_PER_S)
            await self._wait(self._connected, deadline)
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
        return self._proto.max_trade_id if self._proto.watermark_known else None

    def funding_watermark(self) -> int | None:
        """Spot pays no funding."""
        return None

    def open_order_count(self) -> int:
        """Orders the venue may hold open for us (see the protocol's)."""
        return self._proto.open_order_count()

    def open_order_names(self) -> list[str]:
        """Client order ids, and ``orderId=N`` for unwanted venue orders."""
        return self._proto.open_order_names()

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

    def _connected(self) -> bool:
        return self._ws is not None and self._subscribed

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
            fix = refusal(exc)
            if fix is not None:
                raise VenueRefused(f"{text}: {fix}") from None
            raise GatewayError(text) from None
        self._ws = ws
        self._subscribed = False
        self._unreachable = None  # reached: a failure from now on is this attempt's own
        self._reader = asyncio.create_task(self._read(ws), name="gateway-reader")
        try:
            response = await self._channel.call(self._proto.subscribe())
            if not response.ok:
                text = f"{self._proto.subscribe_method} refused by {url}: {reason(response)}"
                if refused_for_good(response):
                    raise VenueRefused(f"{text}: check the API key and secret "
                                       "(exchange.credentials), the key's permissions and "
                                       "its IP restriction at the venue")
                raise GatewayError(text)
            self._subscribed = True
            self.connects += 1
            self._connected_at_ns = self._clock.monotonic_ns()
            self.log.info("gateway_connected", url=url, connects=self.connects)
            await self._reconcile()
        except RequestFailed as exc:
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
        healthy_ns = round(self.settings.healthy_after_s * NS_PER_S)
        attempt = 0
        delay: float | None = None  # before the next attempt; None: at once
        while not self._closing:
            if self._ever_connected:
                await self._lost.wait()
                self._lost.clear()
                if self._clock.monotonic_ns() - self._connected_at_ns >= healthy_ns:
                    attempt = 0
                delay = self._backoff(attempt + 1)
            while not self._closing:
                attempt += 1
                if delay is not None:
                    self.log.warning("gateway_reconnecting", attempt=attempt,
                                     delay_s=round(delay, 3))
                    await self._clock.sleep(delay)
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
        """Seconds before connection attempt ``attempt``: the jittered backoff, and never
        before the venue's rate limit lifts (a request it refuses meanwhile, the
        subscription's too, is what turns a 429 into an IP ban)."""
        s = self.settings
        held_s = max(0, self._proto.limits.until_ns - self._clock.monotonic_ns()) / NS_PER_S
        return max(held_s, backoff_delay(attempt, s.backoff_initial_s, s.backoff_max_s,
                                         self._rng))

    async def _read(self, ws: ClientConnection) -> None:
        """Read every frame of ``ws`` until it closes, feeding each to the protocol."""
        why = "closed"
        try:
            while True:
                frame = await ws.recv(decode=False)
                self._proto.receive(frame, self._clock.monotonic_ns(), self._wall_ns())
                self._pump()
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
        failed = self._channel.fail_all()
        if not self._closing:
            self.log.warning("gateway_disconnected", reason=why, failed_requests=failed)
        self._update_status()
        self._lost.set()

    # ---- requests -----------------------------------------------------------------------------

    def _wall_ns(self) -> int:
        """Now on the venue's clock, whole ms (what a signed request is stamped with)."""
        return self._now_ms() * NS_PER_MS

    def _pump(self) -> None:
        """Hand the protocol's outputs to whom they are for, in order."""
        for out in self._proto.outputs():
            if isinstance(out, Answered):
                round_trip = self._channel.answered(out)
                if round_trip is not None and out.response is not None and self._round_trip:
                    self._round_trip(round_trip)
            elif isinstance(out, Suspect):
                self._suspect(out.why)
            elif isinstance(out, CancelStrays):
                self._spawn(self._channel.drive(self._proto.cancel_strays()))
            elif isinstance(out, HangUp):
                ws = self._ws
                if ws is not None:
                    self._spawn(self._hang_up(ws))
            elif isinstance(out, Hold):
                self._hold(out.until_ns)
            else:
                try:
                    self._listener(out)
                except Exception as exc:  # the daemon's problem: not the reader's
                    self.log.error("gateway_listener_failed", error=repr(exc))

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
        elif not self._connected():
            failed = self._unreachable
            status = (VenueStatus(False, "disconnected") if failed is None
                      else VenueStatus(False, f"unreachable: {failed[0]}", failed[1]))
        elif self._reconciling or self._suspected:
            status = VenueStatus(False, "reconciling")
        elif self._proto.limits.held(self._clock.monotonic_ns()):
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

    def _hold(self, until_ns: int) -> None:
        """Rate limited until monotonic ``until_ns``: re-check the status then."""
        if self._limit_handle is not None:
            self._limit_handle.cancel()
        delay_s = max(0, until_ns - self._clock.monotonic_ns()) / NS_PER_S
        self._limit_handle = asyncio.get_running_loop().call_later(delay_s, self._limit_lifted)
        self._update_status()

    def _limit_lifted(self) -> None:
        self._limit_handle = None
        until_ns = self._proto.limits.until_ns
        if self._proto.limits.held(self._clock.monotonic_ns()):
            self._hold(until_ns)  # the loop's timer ran ahead of the clock: wait the rest
            return
        self._update_status()

    # ---- reconciliation -----------------------------------------------------------------------

    async def _reconcile(self) -> None:
        """Make our view the venue's (see the protocol); raises RequestFailed."""
        async with self._reconcile_lock:
            self._reconciling += 1
            self._update_status()
            try:
                await self._channel.drive(self._proto.reconcile())
            finally:
                self._reconciling -= 1
                self._update_status()

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
        except RequestFailed as exc:
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

    async def _wait(self, condition: Callable[[], bool], deadline_ns: int) -> bool:
        """Poll ``condition`` until true or monotonic ``deadline_ns``; its last value."""
        while not condition():
            if self._clock.monotonic_ns() >= deadline_ns or self._closing:
                return False
            await self._clock.sleep(_POLL_S)
        return True
