"""Order entry on Binance USD-M futures: the live exchange adapter (issue #21).

:class:`UsdmGateway` is spot's :class:`~mmdaemon.exchange.binance_gateway.BinanceGateway`
(one supervisor, backoff, the request channel, status, rate-limit hold) around the
sans-I/O :class:`~mmdaemon.venues.usdm_orders.UsdmProtocol`, with what futures adds:

- a second connection, the user-data stream ``<user_stream_url>/<listenKey>``: after the
  WebSocket API connects, ``userDataStream.start`` gives the key, the stream is opened
  BEFORE reconciling (nothing the venue reports after the snapshot is missed), and the key
  is pinged every ``listen_key_keepalive_s`` (30 min: well inside Binance's 60). Either
  connection lost, or ``listenKeyExpired``, drops both; the supervisor reconnects with a
  new key and reconciles;
- REST (``rest_url``) for the listings and cancel-all, signed like the WebSocket API, the
  key in ``X-MBX-APIKEY``; its rate-limit answers hold order entry as the API's do;
- ``cancel_all`` returns only once the venue's ``openOrders`` lists nothing (or its
  deadline passes: ``open_order_count`` then stays > 0);
- account events (:class:`~mmdaemon.model.Funding`, :class:`~mmdaemon.model.Balances`) go
  to the listener too, after the execution events of the same step.

The listen key names a stream anyone could read: it is never logged (nor the stream URL).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException
from yarl import URL

from mmdaemon.clock import Clock
from mmdaemon.exchange.binance_gateway import BinanceGateway
from mmdaemon.exchange.binance_requests import RequestChannel
from mmdaemon.exchange.binance_settings import GatewaySettings, redact_url
from mmdaemon.model import NS_PER_S, Instrument
from mmdaemon.venues import binance_api as api
from mmdaemon.venues import usdm_api as usdm
from mmdaemon.venues.binance_order_io import Request, RequestFailed, RestCall, reason
from mmdaemon.venues.usdm_orders import UsdmProtocol

_SWEEP_PAUSE_MAX_S: Final = 1.0  # cancel_all's pause between sweeps grows up to this


@dataclass(frozen=True)
class UsdmSettings(GatewaySettings):
    """Spot's :class:`GatewaySettings` (``ws_api_url`` is the futures WebSocket API,
    ``.../ws-fapi/v1``) and: ``rest_url`` the REST base (``https://fapi.binance.com``),
    ``user_stream_url`` the stream base the listen key is appended to
    (``wss://fstream.binance.com/private/ws``), ``listen_key_keepalive_s`` seconds between pings."""

    rest_url: str = usdm.DEFAULT_REST_URL
    user_stream_url: str = usdm.DEFAULT_USER_STREAM_URL
    listen_key_keepalive_s: float = 1800.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.rest_url.startswith(("http://", "https://")):
            raise ValueError(f"rest_url must be an http:// or https:// URL, got "
                             f"{redact_url(self.rest_url)!r}")
        if not self.user_stream_url.startswith(("ws://", "wss://")):
            raise ValueError(f"user_stream_url must be a ws:// or wss:// URL, got "
                             f"{redact_url(self.user_stream_url)!r}")
        if not 0 < self.listen_key_keepalive_s < 3600:
            raise ValueError("listen_key_keepalive_s must be > 0 and < 3600 (the key "
                             "expires after 60 minutes without a ping)")


class _Channel(RequestChannel):
    """Spot's request channel; a request that is a REST call goes to ``rest`` instead."""

    def __init__(self, *args: Any, rest: Callable[[RestCall], Coroutine[Any, Any,
                                                                       api.Response]],
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rest = rest

    async def call(self, request: Request) -> api.Response:
        if request.rest is not None:
            return await self._rest(request.rest)
        return await super().call(request)


class UsdmGateway(BinanceGateway):
    """:class:`~mmdaemon.exchange.base.ExchangeAdapter` for Binance USD-M futures (see the
    module doc); arguments as spot's gateway, with :class:`UsdmSettings`."""

    def __init__(self, settings: UsdmSettings, instrument: Instrument,
                 credentials: api.Credentials, log: Any, *, clock: Clock | None = None,
                 now_ms: Callable[[], int] | None = None,
                 rng: Callable[[], float] = random.random,
                 asset_prices: dict[str, str] | None = None) -> None:
        super().__init__(settings, instrument, credentials, log, clock=clock, now_ms=now_ms,
                         rng=rng, asset_prices=asset_prices)
        self.usdm_settings = settings
        self._usdm = UsdmProtocol(
            instrument, self._creds, settings.client_prefix, log, rng=rng,
            backoff_initial_s=settings.backoff_initial_s,
            backoff_max_s=settings.backoff_max_s, asset_prices=asset_prices)
        self._proto = self._usdm
        self._channel = _Channel(self._usdm, lambda: self._ws, self._clock, self._wall_ns,
                                 self._pump, settings.request_timeout_s, rest=self._rest)
        self._user_ws: ClientConnection | None = None
        self._user_key = ""  # the listen key _user_ws reads (never logged)
        self._user_tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._account_task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return (f"UsdmGateway({redact_url(self.settings.ws_api_url)!r}, "
                f"prefix={self.settings.client_prefix!r}, "
                f"key={api.redact_key(self._creds.api_key)!r}, status={self.status!r})")

    @property
    def funding_recovered(self) -> int:
        """Funding payments delivered from ``income`` (the stream had missed them)."""
        return self._usdm.funding_recovered

    # ---- the adapter protocol ---------------------------------------------------------------

    def resume_funding_after(self, funding_id: int) -> None:
        """Before :meth:`start`: deliver funding payments with an id above ``funding_id``
        (the journal's last), so payments booked while we were down are not lost."""
        if self._started:
            raise RuntimeError("resume_funding_after() must be called before start()")
        self._usdm.resume_funding_after(funding_id)

    def expect_position(self, lots: int) -> None:
        """Before :meth:`start`: our position in lots (the journal's); each reconcile
        compares the venue's with it and the fills since, and logs an error when they
        differ (``gateway_position_mismatch``)."""
        if self._started:
            raise RuntimeError("expect_position() must be called before start()")
        self._usdm.expect_position(lots)

    def funding_watermark(self) -> int | None:
        """The funding id (ms) payments are delivered after, once start has set it."""
        return self._usdm.max_funding_id if self._usdm.funding_known else None

    async def amend(self, order_id: int, price: int, size: int) -> None:
        """``order.modify`` in place: price ticks, total size lots (filled included)."""
        await self._channel.start(lambda: self._usdm.amend(order_id, price, size,
                                                           self._blocked(), self._connected()))

    async def cancel_all(self) -> int:
        """Cancel every open order in the symbol (``DELETE allOpenOrders``) and return once
        the venue's ``openOrders`` lists none, or ``cancel_all_timeout_s`` has passed (then
        :meth:`open_order_count` stays > 0); how many orders the venue cancelled."""
        clock, s = self._clock, self.settings
        deadline = clock.monotonic_ns() + round(s.cancel_all_timeout_s * NS_PER_S)
        count, pause = 0, s.backoff_initial_s
        while True:
            if await self._wait(self._connected, deadline):
                try:
                    gone, confirmed = await self._channel.drive(self._usdm.cancel_all())
                    count += gone
                    if confirmed:
                        return count
                except RequestFailed as exc:
                    self.log.warning("gateway_cancel_all_retry", reason=exc.reason,
                                     retry_in_s=round(pause, 3))
            now = clock.monotonic_ns()
            if now >= deadline or self._closing:
                break
            # paced: a sweep repeated at once would spend the request weight in a tight loop
            retry_at = min(deadline, max(now + round(pause * NS_PER_S),
                                         self._usdm.limits.until_ns))
            await clock.sleep(max(0, retry_at - now) / NS_PER_S)
            pause = min(2 * pause, _SWEEP_PAUSE_MAX_S)
        self.log.error("gateway_cancel_all_unconfirmed", open_orders=self.open_order_count())
        return count

    async def close(self, timeout_s: float | None = None) -> None:
        """As spot's; the user-data stream and the REST session close too."""
        await super().close(timeout_s)
        if self._account_task is not None:
            self._account_task.cancel()
            await asyncio.gather(self._account_task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- connections --------------------------------------------------------------------------

    def _connected(self) -> bool:
        return super()._connected() and self._user_ws is not None

    async def _reconcile(self) -> None:
        """Open the user-data stream of this connection's listen key first when it is not
        open (a stream of an older connection's key is closed), then reconcile."""
        if self._ws is not None and (self._user_ws is None
                                     or self._user_key != self._usdm.listen_key):
            await self._close_user_stream()
            await self._open_user_stream()
        await super()._reconcile()

    async def _open_user_stream(self) -> None:
        """Connect to the stream of the listen key ``userDataStream.start`` gave; raises
        RequestFailed (the supervisor retries the whole connection)."""
        s = self.usdm_settings
        key = self._usdm.listen_key
        if not key:
            raise RequestFailed(f"{usdm.USER_DATA_START} gave no listenKey")
        base = redact_url(s.user_stream_url)
        try:
            ws = await connect(f"{s.user_stream_url.rstrip('/')}/{key}", proxy=s.proxy or None,
                               open_timeout=s.open_timeout_s, close_timeout=s.request_timeout_s,
                               compression=None, max_size=s.max_message_bytes)
        except (OSError, TimeoutError, WebSocketException, ValueError) as exc:
            raise RequestFailed(f"user-data stream at {base}: {type(exc).__name__}") from None
        self._user_ws, self._user_key = ws, key
        api_ws = self._ws
        loop = asyncio.get_running_loop()
        self._user_tasks = [loop.create_task(self._read_user(ws, api_ws), name="user-stream"),
                            loop.create_task(self._keep_alive(ws), name="listen-key-ping")]
        self.log.info("gateway_user_stream_connected", url=base)

    async def _read_user(self, ws: ClientConnection, api_ws: ClientConnection | None) -> None:
        """Feed every event of the stream to the protocol; when it ends, drop the API
        connection too (the supervisor starts a new key and reconciles)."""
        why = "closed"
        try:
            while True:
                frame = await ws.recv(decode=False)
                self._usdm.receive_user(frame, self._clock.monotonic_ns(), self._wall_ns())
                self._pump()
        except ConnectionClosed as exc:
            why = f"closed ({exc.rcvd.code if exc.rcvd is not None else 1006})"
        if self._user_ws is ws:
            self._user_ws = None
            if not self._closing:
                self.log.warning("gateway_user_stream_lost", reason=why)
            if api_ws is not None and api_ws is self._ws:
                self._spawn(self._hang_up(api_ws))

    async def _keep_alive(self, ws: ClientConnection) -> None:
        """Ping the listen key every ``listen_key_keepalive_s``; a refused ping drops the
        connections (the key is gone: a new one comes with the reconnect)."""
        while self._user_ws is ws:
            await self._clock.sleep(self.usdm_settings.listen_key_keepalive_s)
            try:
                response = await self._channel.call(self._usdm.keepalive())
            except RequestFailed:
                continue  # a lost connection is the reader's to handle
            if not response.ok and self._ws is not None and self._user_ws is ws:
                self.log.warning("gateway_listen_key_refused", reason=reason(response))
                self._spawn(self._hang_up(self._ws))
                return

    async def _hang_up(self, ws: ClientConnection) -> None:
        """Close the user-data stream with the API connection it belongs to."""
        await self._close_user_stream()
        await super()._hang_up(ws)

    async def _close_user_stream(self) -> None:
        """Close the user-data stream (if any) and stop its reader and keep-alive."""
        user, self._user_ws, self._user_key = self._user_ws, None, ""
        tasks, self._user_tasks = self._user_tasks, []
        others = [t for t in tasks if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        if user is not None:
            with contextlib.suppress(Exception):
                await user.close()
        await asyncio.gather(*others, return_exceptions=True)

    # ---- REST ---------------------------------------------------------------------------------

    async def _rest(self, call: RestCall) -> api.Response:
        """One REST call at ``rest_url``; its answer (rate limits accounted for). Raises
        RequestFailed ("timeout", a transport error) without one."""
        s = self.usdm_settings
        if self._session is None:
            self._session = aiohttp.ClientSession(trust_env=False)
        wall_ms = self._now_ms()
        query = usdm.rest_query(call, self._creds, wall_ms)
        url = URL(f"{s.rest_url.rstrip('/')}{call.path}" + (f"?{query}" if query else ""),
                  encoded=True)  # the signature is over the query exactly as written
        try:
            async with asyncio.timeout(s.request_timeout_s):
                async with self._session.request(
                        call.method, url, headers={"X-MBX-APIKEY": self._creds.api_key},
                        proxy=s.proxy or None) as http:
                    body = await http.read()
                    status = http.status
                    weight = http.headers.get(usdm.USED_WEIGHT_HEADER)
                    retry = http.headers.get("Retry-After")
        except TimeoutError:
            raise RequestFailed("timeout") from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise RequestFailed(f"{call.path}: {type(exc).__name__}") from None
        response = usdm.rest_response(status, body, weight, retry, self._now_ms())
        self._usdm.rest_answered(response, self._clock.monotonic_ns())
        self._pump()
        return response

    # ---- outputs ------------------------------------------------------------------------------

    def _pump(self) -> None:
        """Spot's outputs, then the account events; a balance refresh when one is due."""
        super()._pump()
        for event in self._usdm.drain_account():
            try:
                self._listener(event)
            except Exception as exc:  # the daemon's problem: not the reader's
                self.log.error("gateway_listener_failed", error=repr(exc))
        if self._usdm.account_stale and self._user_ws is not None and not self._closing:
            task = self._account_task
            if task is None or task.done():
                self._usdm.account_stale = False
                self._account_task = asyncio.get_running_loop().create_task(
                    self._refresh_account(), name="account-refresh")

    async def _refresh_account(self) -> None:
        """Read the account (and the funding income a FUNDING_FEE event asked for). A
        failed read of a payment is tried again, paced by the backoff, while this user-data
        stream lasts: its event was the only word of it (a reconnect's reconcile recovers
        it otherwise)."""
        user_ws, pause = self._user_ws, self.settings.backoff_initial_s
        while True:
            try:
                await self._channel.drive(self._usdm.read_account())
                return
            except RequestFailed as exc:
                self.log.warning("gateway_account_refresh_failed", reason=exc.reason,
                                 funding_unread=self._usdm.funding_stale)
            if not self._usdm.funding_stale or self._closing or self._user_ws is not user_ws:
                return
            await self._clock.sleep(pause)
            pause = min(2 * pause, self.settings.backoff_max_s)
