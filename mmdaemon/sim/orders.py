"""The sim venue's order entry: a subset of Binance's spot WebSocket API over a PaperVenue.

:class:`OrderEntry` serves ``/ws-api/v3`` for ONE symbol. It is the asyncio shell (accept a
connection, read requests, queue and send frames) around sans-I/O parts, each with one job:

- :mod:`mmdaemon.sim.protocol`: a request frame in, its response frame out (methods,
  checks and error codes, result shapes, the request-weight limit);
- :mod:`mmdaemon.sim.matching`: glue to :class:`~mmdaemon.exchange.fill_model.PaperVenue`
  (latency, post-only, queue position, fees), the model the daemon's paper mode uses, so
  paper and sim agree by construction; model time and synchronous answers are its;
- :mod:`mmdaemon.sim.accounts`: balances, orders and trades of each account;
- :mod:`mmdaemon.sim.faults`: the faults tests inject;
- :mod:`mmdaemon.sim.wire`: the server side of the Binance API (answers, events, checks),
  the other end of :mod:`mmdaemon.venues.binance_api`, which the daemon's gateway uses.

Deviations from Binance, on purpose: commissions are charged in the quote asset on both
sides (Binance charges a buyer in the base asset unless paying with BNB) with the
PaperVenue's maker rate, and may be negative for a rebate; ``order.cancelReplace`` is a
cancel and a new order (a new ``orderId`` at the back of the queue), exactly as at Binance;
an order the account's free balance cannot pay for is refused, -2010 "Account has
insufficient balance for requested action." (a buy needs its notional and the most fee it
can be charged, a sell its quantity); only the REQUEST_WEIGHT rate limit is modelled (orders
per 10 s are not); each API key is its own account; orders survive a disconnect.
``myTrades`` answers from each account's trade history (every fill, kept for the life of
the sim), ``order.status`` from every order ever accepted, open or closed.

User data. After ``userDataStream.subscribe.signature`` a connection receives
``{"subscriptionId": n, "event": ...}`` for every order event of that API key's orders
(``executionReport``; ``outboundAccountPosition`` after fills), in the order they happened,
after the response of the request that caused them. Outgoing frames go through a bounded
queue per connection; a client that does not read and lets it fill up is disconnected
(close code 1008) rather than silently losing an event (fail closed: a client that missed
an execution report must not carry on).

Faults for tests, each a plain attribute or method (their rules: :mod:`mmdaemon.sim.faults`):
:meth:`OrderEntry.drop_connections` (close every order-entry connection from the venue's
side), :attr:`OrderEntry.accepting`, :attr:`OrderEntry.blackhole`,
:meth:`OrderEntry.delay_requests`, :meth:`OrderEntry.hold_responses` (with
:attr:`OrderEntry.fills_before_response`) and :meth:`OrderEntry.send_oversized`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from mmdaemon.book import OrderBook
from mmdaemon.exchange.fill_model import PaperVenue
from mmdaemon.model import Instrument, Trade
from mmdaemon.sim import wire
from mmdaemon.sim.accounts import Account, Ledger, OpenOrder
from mmdaemon.sim.balances import StartingBalances
from mmdaemon.sim.clock import SimClock
from mmdaemon.sim.faults import Faults, method_of
from mmdaemon.sim.matching import Matching
from mmdaemon.sim.protocol import OrderEntryProtocol, Subscriptions
from mmdaemon.venues import binance_api as api
from mmdaemon.venues import binance_parse as parse


def _account(instrument: Instrument, assets: api.Assets,
             balances: StartingBalances) -> Account:
    """An account starting with ``balances``: the base asset a whole number of lots, the
    quote asset of notional units (ValueError naming the asset and the grid otherwise); an
    asset missing is 0, any other asset is kept as it is."""
    base = Fraction(balances.get(assets.base, Decimal(0))) / Fraction(instrument.lot_size)
    quote = Fraction(balances.get(assets.quote, Decimal(0))) / parse.notional_unit(instrument)
    for asset, units, unit in ((assets.base, base, wire.qty_str(instrument, 1)),
                               (assets.quote, quote, wire.notional_str(instrument, 1))):
        if units.denominator != 1 or units < 0:
            raise ValueError(f"balance of {asset} {balances[asset]:f}: expected a "
                             f"non-negative whole number of {unit}")
    other = {a: v for a, v in balances.items() if a not in (assets.base, assets.quote)}
    return Account(int(base), int(quote), other)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class _Conn:
    """One ``/ws-api/v3`` connection: its outgoing queue and user-data subscriptions."""

    __slots__ = ("dead", "queue", "subs", "ws")

    def __init__(self, ws: ServerConnection, max_queue: int) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(max_queue)
        self.subs = Subscriptions()
        self.dead = False  # closed or closing: nothing more is queued


class OrderEntry:
    """Order entry of the sim venue for ``instrument``, matching in ``venue``.

    ``api_keys`` maps API key -> HMAC secret; each key is its own account, starting with
    ``base_balance`` and ``quote_balance`` (decimal text) or, for a key in
    ``account_balances``, with those balances (an asset not given: 0). ``now_ms`` is the
    clock signed requests are checked against and ``time`` tells, in ms since the epoch;
    None: the sim's (:meth:`use_clock`; the wall clock until then). ``recv_window_max_ms``
    the largest ``recvWindow`` accepted. ``weight_limit`` is the request weight per minute (all
    connections, as for one IP); ``max_queue`` bounds each connection's outgoing frames.
    """

    def __init__(
        self,
        instrument: Instrument,
        venue: PaperVenue,
        api_keys: dict[str, str],
        now_ms: Callable[[], int] | None = None,
        recv_window_max_ms: int = api.MAX_RECV_WINDOW_MS,
        *,
        base_asset: str | None = None,
        quote_asset: str | None = None,
        base_balance: str = "0",
        quote_balance: str = "0",
        account_balances: Mapping[str, StartingBalances] | None = None,
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
            guess = parse.assets_of(instrument.symbol)
            base_asset = base_asset or guess.base
            quote_asset = quote_asset or guess.quote
        self.assets = api.Assets(base_asset, quote_asset)
        every = {self.assets.base: Decimal(base_balance),
                 self.assets.quote: Decimal(quote_balance)}
        own = account_balances or {}
        unknown = sorted(set(own) - set(api_keys))
        if unknown:
            raise ValueError(f"OrderEntry.account_balances: no such API key {unknown[0][:4]}...")
        accounts = {key: _account(instrument, self.assets, own.get(key, every))
                    for key in api_keys}
        self._max_queue = max_queue
        self._signing_clock_given = now_ms is not None
        if now_ms is None:
            now_ms = _wall_ms
        self.ledger = Ledger(instrument, self.assets, accounts, venue.maker_fee_bps)
        self.faults = Faults()
        self.matching = Matching(instrument, venue, self.ledger, self.faults, now_ms)
        self.protocol = OrderEntryProtocol(instrument, self.matching, api_keys, now_ms,
                                           recv_window_max_ms=recv_window_max_ms,
                                           weight_limit=weight_limit)
        self._conns: set[_Conn] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.overflows = 0  # connections closed because their queue filled up

    def use_clock(self, clock: SimClock) -> None:
        """Run on the sim's one clock: events and answers are stamped with it and, unless
        a ``now_ms`` was given, signed requests are checked against it."""
        self.matching.use_clock(clock.now_ms)
        if not self._signing_clock_given:
            self.protocol.use_clock(clock.signing_ms)

    def charge(self, weight: int) -> int:
        """Charge a REST request's ``weight`` to the request weight the WebSocket API
        counts (one IP's); the weight used this minute."""
        return self.protocol.charge(weight)

    @property
    def weight_limit(self) -> int:
        """The request weight allowed per minute."""
        return self.protocol.weight_limit

    # ---- market side (sync, from the tape) --------------------------------------------------

    def advance(self, now_ns: int) -> None:
        """Before the market event at ``now_ns`` is applied: requests that reached the venue
        by then act on the book as it stood (strict time order)."""
        self.matching.advance(now_ns)
        self._flush()

    def on_book(self, book: OrderBook, now_ns: int) -> None:
        """A book update at ``now_ns``: the PaperVenue matches, events go to subscribers."""
        self.matching.on_book(book, now_ns)
        self._flush()

    def on_trade(self, trade: Trade, now_ns: int) -> None:
        """A public trade at ``now_ns``: our orders at or through its price may fill."""
        self.matching.on_trade(trade, now_ns)
        self._flush()

    # ---- queries and operator actions -------------------------------------------------------

    def open_orders(self) -> list[OpenOrder]:
        """Every open order of every account, in placement order."""
        return self.ledger.open_orders()

    def account(self, api_key: str) -> Account:
        """The account of ``api_key`` (KeyError for an unknown key)."""
        return self.ledger.accounts[api_key]

    def order(self, order_id: int) -> OpenOrder | None:
        """Any order ever accepted (open or closed) by venue ``order_id``; None if unknown."""
        return self.ledger.order(order_id)

    def trades(self, api_key: str) -> list[api.AccountTrade]:
        """The trade history of ``api_key``'s account, oldest first (what ``myTrades`` lists)."""
        return list(self.ledger.trades[api_key])

    @property
    def connection_count(self) -> int:
        """``/ws-api/v3`` connections being served now."""
        return len(self._conns)

    @property
    def position_lots(self) -> int:
        """Net base asset bought minus sold, in lots, over all accounts."""
        return self.ledger.position_lots

    @property
    def internal_errors(self) -> int:
        """Requests answered -1000 (a bug: should stay 0)."""
        return self.protocol.internal_errors

    def cancel_all_for(self, api_key: str) -> int:
        """Cancel every open order of ``api_key`` (as ``openOrders.cancelAll``); how many."""
        orders = list(self.ledger.open.get(api_key, {}).values())
        for order in orders:
            self.matching.cancel(order, None)
        self._flush()
        return len(orders)

    # ---- faults -----------------------------------------------------------------------------

    @property
    def accepting(self) -> bool:
        """False: a new connection is closed at once with 1013 ("try again later")."""
        return self.faults.accepting

    @accepting.setter
    def accepting(self, value: bool) -> None:
        self.faults.accepting = value

    @property
    def blackhole(self) -> bool:
        """True: requests are still executed but nothing is sent back, neither responses nor
        events (a network path that silently lost its way back)."""
        return self.faults.blackhole

    @blackhole.setter
    def blackhole(self, value: bool) -> None:
        self.faults.blackhole = value

    def delay_requests(self, method: str, seconds: float, count: int = 1) -> None:
        """The next ``count`` ``method`` requests run ``seconds`` late and later requests
        overtake them (:meth:`~mmdaemon.sim.faults.Faults.delay_requests`)."""
        self.faults.delay_requests(method, seconds, count)

    def hold_responses(self, method: str, seconds: float, count: int = 1) -> None:
        """The next ``count`` ``method`` requests run at once, their responses come
        ``seconds`` later (:meth:`~mmdaemon.sim.faults.Faults.hold_responses`)."""
        self.faults.hold_responses(method, seconds, count)

    @property
    def fills_before_response(self) -> int:
        """Fills of orders whose place (or cancel-replace) response was being held."""
        return self.faults.fills_before_response

    @property
    def late_work(self) -> int:
        """Delayed requests and held responses still to come, and requests still due to
        be delayed or held: 0 once the faults set have played out."""
        return len(self._tasks) + self.faults.due

    @property
    def unanswered(self) -> int:
        """Orders whose place (or cancel-replace) response is being held now."""
        return len(self.faults.unanswered)

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
        """Send every ``/ws-api/v3`` connection one text message of ``size`` bytes, shaped
        like an answer (a broken or hostile venue); how many it went to."""
        conns = [conn for conn in self._conns if not conn.dead]
        head, tail = '{"id":null,"status":200,"result":"', '"}'
        message = head + "9" * (size - len(head) - len(tail)) + tail
        await asyncio.gather(*(conn.ws.send(message) for conn in conns),
                             return_exceptions=True)  # refused: the client hung up
        return len(conns)

    # ---- connections ------------------------------------------------------------------------

    async def serve(self, websocket: ServerConnection) -> None:
        """Handle one ``/ws-api/v3`` connection until it closes."""
        faults = self.faults
        if not faults.accepting:
            await websocket.close(1013, "sim: not accepting connections")
            return
        conn = _Conn(websocket, self._max_queue)
        self._conns.add(conn)
        sender = asyncio.create_task(self._send_loop(conn), name="sim-order-entry-send")
        try:
            async for message in websocket:
                if faults.timed:
                    delay, hold = faults.timing(message)
                    if delay:
                        self._later(self._run_late(conn, message, delay))
                        continue
                    if hold:
                        self.matching.placed = []
                        frame = self.protocol.handle(conn.subs, message)
                        placed, self.matching.placed = self.matching.placed, None
                        faults.unanswered.update(placed)
                        self._later(self._answer_late(conn, frame, placed, hold))
                        self._flush()
                        continue
                frame = self.protocol.handle(conn.subs, message)
                if not conn.dead and not faults.blackhole:
                    try:
                        conn.queue.put_nowait(frame)
                    except asyncio.QueueFull:
                        await conn.queue.put(frame)  # backpressure: stop reading requests
                self._flush()  # the request's events go out after its response
        except ConnectionClosed:
            pass
        finally:
            conn.dead = True
            self._conns.discard(conn)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    def _later(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_late(self, conn: _Conn, message: str | bytes, delay: float) -> None:
        """A delayed request: run it now (even if its connection is gone: the venue got
        it), answer it if the connection is still there."""
        await asyncio.sleep(delay)
        self.matching.placed = []
        frame = self.protocol.handle(conn.subs, message)
        placed, self.matching.placed = self.matching.placed, None
        self.faults.late_placed.setdefault(method_of(message) or "", []).extend(placed)
        self._offer(conn, frame)
        self._flush()

    async def _answer_late(self, conn: _Conn, frame: bytes, placed: list[int],
                           hold: float) -> None:
        await asyncio.sleep(hold)
        self.faults.unanswered.difference_update(placed)
        self._offer(conn, frame)

    async def _send_loop(self, conn: _Conn) -> None:
        try:
            while True:
                frame = await conn.queue.get()
                if self.faults.blackhole:
                    continue  # lost on the way back: the client hears nothing
                await conn.ws.send(frame, text=True)
        except ConnectionClosed:
            pass
        finally:
            conn.dead = True
            while not conn.queue.empty():  # unblock a reader waiting for room
                conn.queue.get_nowait()

    def _offer(self, conn: _Conn, frame: bytes) -> None:
        if conn.dead or self.faults.blackhole:
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
        """Offer the user-data events queued since the last flush to their subscribers."""
        if not self.matching.outbox:
            return
        for api_key, event in self.matching.take_events():
            for conn in self._conns:
                sid = conn.subs.get(api_key)
                if sid is not None:
                    self._offer(conn, wire.event_frame(sid, event))
