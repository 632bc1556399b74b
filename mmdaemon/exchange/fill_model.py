"""Paper venue: how our orders would rest and fill against the replayed real market.

This is the pure core of the paper exchange (defect 7 of the design: the article's backtest
filled a whole quote whenever a bar touched it). It is synchronous, deterministic and free of
I/O and clock reads: time is the ``now_ns`` the caller passes, the receive time of the market
event being processed. An async adapter shell wraps it.

Units, as everywhere in the core: prices integer ticks, sizes integer lots, times integer
ns, fees integer notional units (ticks x lots; for BTCUSDT spot 1e-10 USDT), negative for a
rebate.

The model
---------
- **Latency.** Every request (place, cancel, amend) reaches the venue ``latency_ns`` after it
  was sent. Requests travel in one FIFO channel, like a gateway connection: they take effect
  in the order they were sent, each no earlier than its due time. Callers pass
  non-decreasing times; if time steps back, a request waits behind the ones sent before it
  (FIFO), it never takes effect early.
- **Strict time order (no look-ahead).** A request due at ``t`` takes effect against the
  market as it stood at ``t``: after every market event at or before ``t`` and before any
  event after ``t``. The caller therefore calls :meth:`PaperVenue.advance` with an event's
  time *before* it applies that event to the book, then :meth:`PaperVenue.on_book` /
  :meth:`PaperVenue.on_trade` after. A request due at exactly an event's time takes effect
  before that event (it reached the venue first). ``on_book`` and ``on_trade`` never process
  requests: with the book already changed that would be a look-ahead, so a request still
  due when they are called is a caller error (:class:`LookAhead`).
- **Post-only.** Orders are limit-maker. On arrival an order that would cross the public book
  (buy price >= best ask, sell price <= best bid) or one of our own resting opposite orders is
  rejected, so every fill is a maker fill at our own price. Before any book has been seen
  there is nothing to model an order against: it is rejected (``"no book seen yet"``).
- **Queue position** (:mod:`mmdaemon.exchange.queue`, chosen by ``queue``). Our orders are
  invisible to the public book, so an order joins the back of its level: ``queue_ahead`` =
  the displayed size at its price on its side at arrival. A public trade at our price
  consumes the queue ahead first and only the excess fills us. When the displayed size at
  our price changes on a synced book, the model moves ``queue_ahead``: ``conservative``
  (default) assumes the size that left was ahead of us only as far as it has to be (a cap at
  the displayed size); ``power`` / ``log`` move us forward by the expected share of the
  decrease not explained by trades that was ahead of us. After an unsynced stretch every
  model applies the cap only. Increases never move us forward.
- **Trade-through.** A public trade at a price worse than ours (a sell below our bid) means
  the market went through us; what fills depends on ``trade_through``:

  - ``"print"`` (default): up to the trade's size, print by print (Binance prints one trade
    per maker order an aggressor meets, so the prints of one sweep add up to what it took).
  - ``"whole"`` (optimistic; hftbacktest's "full execution"): the rest of the order, on the
    first print through our price, whatever its size.

  A book whose opposite best is at
  or through our price (best ask <= our bid) also means the market went through us; what
  fills then depends on ``fill_through``:

  - ``"whole"`` (default, optimistic): the rest of the order fills at our price, whether or
    not any volume traded: a public order resting at or through our price would have traded
    with us first, so we take it to have done so in full.
  - ``"traded"`` (conservative): the fill is capped by the volume printed at or through our
    price on our side since the order (last) rested and not already used to fill it; later
    trades through our price fill the rest as they come. The cap is the volume that really
    traded, not a queue estimate: it counts lots the queue model gave to orders ahead of us,
    so it bounds the fill from above rather than modelling it exactly.
- **No double counting.** One public trade's volume is shared across our orders, best price
  first, then by arrival time: the volume one of our orders took is not available to the next.

- **Mid at a fill.** Every fill carries ``mid_x2``: best bid + best ask (ticks) of the book
  before the market event that filled us (for a trade, the book it traded against; for a
  book update that went through our price, the book before that update).

Invariants (the tests check them on real data): an order never fills before it arrives nor
after its cancel arrived; cumulative filled never exceeds its size; every fill is at the
order's own price; same inputs give the same outputs.

Conventions of the reports
--------------------------
- Each :class:`~mmdaemon.model.OrderUpdate` and :class:`~mmdaemon.model.Fill` carries the
  ``now_ns`` of the call in which it happened. A fill is always followed by the order's
  update (PARTIALLY_FILLED or FILLED, with the cumulative filled size).
- A REJECTED update for an order id that is (or was) live rejects the *request* (a cancel or
  amend of a closed order, a duplicate id, invalid amend parameters), not that order: the
  order's own state is what :meth:`PaperVenue.order` returns.
- An amend that loses priority and would cross ends the order (Binance cancel-replace: the
  cancel leg has already happened): CANCELED with reason
  ``"amend rejected: post-only order would cross"``.

Not modelled: self-trade prevention beyond the post-only check, hidden or iceberg liquidity,
our own size changing what the public traders did (market impact), rate limits, partial
cancels by the venue.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from decimal import Decimal, InvalidOperation
from enum import IntEnum
from fractions import Fraction
from typing import NamedTuple

from mmdaemon.book import BookSide, OrderBook
from mmdaemon.exchange.latency import Latency
from mmdaemon.exchange.queue import CONSERVATIVE, QueueModel, QueuePos, rebase
from mmdaemon.model import ExecutionEvent, Fill, Instrument, OrderStatus, OrderUpdate, Side, Trade

POST_ONLY_CROSS = "post-only order would cross"
AMEND_CROSS = "amend rejected: post-only order would cross"
UNKNOWN_ORDER = "unknown order"
ORDER_CLOSED = "order already closed"
DUPLICATE_ID = "duplicate order id"
NO_BOOK = "no book seen yet"
REDUCE_ONLY = "reduce-only order would increase the position"  # Binance USD-M's -2022
FILL_THROUGH = ("whole", "traded")
TRADE_THROUGH = ("print", "whole")


class LookAhead(RuntimeError):
    """A market event was applied while a request due at or before it was still in flight.

    The caller must :meth:`PaperVenue.advance` to an event's time before applying it; this
    is a programming error of the caller, never a market condition.
    """

_BPS_LIMIT = 10_000  # |fee| above 100% of notional is a configuration error, not a fee
_BPS_DENOM = 10_000  # 1 bps = 1/10,000 of notional


class _Kind(IntEnum):
    PLACE = 1
    CANCEL = 2
    AMEND = 3


class _Known(IntEnum):
    """What we knew of the order id when the request was sent."""

    OPEN = 1
    CLOSED = 2
    UNKNOWN = 3


class _Action(NamedTuple):
    """A request in flight: it takes effect at the first event with ``now_ns >= due_ns``."""

    due_ns: int
    kind: _Kind
    order_id: int
    price: int  # AMEND only: new price (ticks)
    size: int  # AMEND only: new total size (lots)
    known: _Known


class _Order:
    """Mutable state of one of our orders (identity equality: lists remove by identity)."""

    __slots__ = (
        "cancel_pending",
        "filled",
        "last",
        "order_id",
        "price",
        "queue",
        "reduce_only",
        "resting",
        "seq",
        "side",
        "size",
        "traded",
    )

    def __init__(self, order_id: int, side: Side, price: int, size: int, last: OrderUpdate,
                 reduce_only: bool = False):
        self.order_id = order_id
        self.reduce_only = reduce_only  # refused on arrival if it would increase the position
        self.side = side
        self.price = price  # ticks
        self.size = size  # total lots (an amend can change it)
        self.filled = 0  # cumulative lots, 0 <= filled <= size
        self.queue = QueuePos(0, 0, 0)  # our place in the level; meaningful while resting
        # lots printed at or through our price on our side since the order rested, not used
        # to fill it: the cap of a through-the-book fill with fill_through = "traded"
        self.traded = 0
        self.seq = 0  # arrival order among our orders: time priority at equal price
        self.resting = False  # arrived at the venue and not closed
        self.cancel_pending = False  # a cancel is in flight
        self.last = last  # the last OrderUpdate reported for this order (its current state)


def _bid_key(order: _Order) -> tuple[int, int]:
    return (-order.price, order.seq)


def _ask_key(order: _Order) -> tuple[int, int]:
    return (order.price, order.seq)


def parse_bps(name: str, value: object) -> Fraction:
    """Exact fee rate in bps from an int, a float or a decimal string.

    A float goes through its shortest decimal text (``0.1`` -> ``"0.1"``), so the rate is the
    decimal the operator wrote, not the binary double next to it. Raises ``ValueError``
    naming ``name`` unless the value is a finite decimal within [-10000, 10000] bps.
    """
    expected = (
        f"a finite decimal number of bps in [-{_BPS_LIMIT}, {_BPS_LIMIT}] "
        "(int, float or decimal string)"
    )
    error = ValueError(f"PaperVenue.{name}: expected {expected}, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise error
    text = value.strip() if isinstance(value, str) else str(value)
    try:
        decimal = Decimal(text)
    except InvalidOperation:
        raise error from None
    if not decimal.is_finite():
        raise error
    rate = Fraction(decimal)
    if not -_BPS_LIMIT <= rate <= _BPS_LIMIT:
        raise error
    return rate


def fee_units(notional_units: int, bps: Fraction) -> int:
    """``notional_units x bps / 10,000`` rounded half up (toward +inf) to an integer.

    Exact: integer arithmetic on the rate's numerator and denominator. Half up charges a fee
    that is exactly half a unit as a whole unit and books a rebate that is exactly half a
    unit as the smaller one, so the rounding never flatters PnL.
    """
    denom = bps.denominator * _BPS_DENOM
    # floor(x + 1/2) with x = notional * num / denom, all in integers (// floors negatives)
    return (2 * notional_units * bps.numerator + denom) // (2 * denom)


class PaperVenue:
    """Simulated venue for one instrument: latency, post-only, queue position, maker fees.

    ``latency_ns`` (>= 0) is the one-way delay of every request, or ``entry`` draws one per
    request (see :mod:`mmdaemon.exchange.latency`); the channel stays FIFO either way.
    ``maker_fee_bps`` and ``taker_fee_bps`` are fee rates in bps of notional, negative for a rebate.
    post-only, so every fill here is a maker fill; the taker rate is validated and kept for
    the adapter (:meth:`fee` computes either). ``max_closed`` bounds how many closed orders are
    remembered for :meth:`order` and for duplicate-id checks, so memory stays flat over a
    long run. ``exchange_filters`` applies the instrument's order-entry filters as the venue
    does (size a multiple of ``size_step_lots``, at least ``min_size_lots``, notional at least
    ``min_notional``): paper trading must refuse what live trading would. Turn it off only to
    study sizes the venue would refuse (e.g. 1,000 lots of BTCUSDT, about 0.6 USDT, is under
    Binance's 5 USDT minimum notional). ``queue`` is the queue-position model
    (:mod:`mmdaemon.exchange.queue`), ``fill_through`` (``"whole"`` or ``"traded"``) what
    a book through our price fills and ``trade_through`` (``"print"`` or ``"whole"``) what a
    trade through our price fills. See the module docstring for the model.
    """

    def __init__(
        self,
        instrument: Instrument,
        latency_ns: int,
        maker_fee_bps: float | str,
        taker_fee_bps: float | str,
        *,
        max_closed: int = 100_000,
        exchange_filters: bool = True,
        entry: Latency | None = None,
        queue: QueueModel = CONSERVATIVE,
        fill_through: str = "whole",
        trade_through: str = "print",
    ) -> None:
        if not isinstance(instrument, Instrument):
            raise ValueError(f"PaperVenue.instrument: expected an Instrument, got {instrument!r}")
        if isinstance(latency_ns, bool) or not isinstance(latency_ns, int) or latency_ns < 0:
            raise ValueError(
                f"PaperVenue.latency_ns: expected an integer >= 0 (ns), got {latency_ns!r}"
            )
        if isinstance(max_closed, bool) or not isinstance(max_closed, int) or max_closed < 0:
            raise ValueError(f"PaperVenue.max_closed: expected an integer >= 0, got {max_closed!r}")
        if not isinstance(queue, QueueModel):
            raise ValueError(f"PaperVenue.queue: expected a QueueModel, got {queue!r}")
        if fill_through not in FILL_THROUGH:
            raise ValueError(f"PaperVenue.fill_through: expected one of "
                             f"{', '.join(map(repr, FILL_THROUGH))}, got {fill_through!r}")
        if trade_through not in TRADE_THROUGH:
            raise ValueError(f"PaperVenue.trade_through: expected one of "
                             f"{', '.join(map(repr, TRADE_THROUGH))}, got {trade_through!r}")
        self.trade_through = trade_through
        self._trade_whole = trade_through == "whole"
        self.queue_model = queue
        self.fill_through = fill_through
        self._fill_whole = fill_through == "whole"
        self.instrument = instrument
        self.latency_ns = latency_ns
        self._entry = entry
        self.maker_fee_bps = parse_bps("maker_fee_bps", maker_fee_bps)
        self.taker_fee_bps = parse_bps("taker_fee_bps", taker_fee_bps)
        self._max_closed = max_closed
        self.exchange_filters = bool(exchange_filters)
        # min notional in notional units (ticks x lots), exact, to compare with price x size
        self._min_notional_units = Fraction(instrument.min_notional) / (
            Fraction(instrument.tick_size) * Fraction(instrument.lot_size)
        )
        self._orders: dict[int, _Order] = {}  # open orders (client view), in placement order
        self._closed: OrderedDict[int, _Order] = OrderedDict()  # recent closed, oldest first
        self._pending: deque[_Action] = deque()  # requests in flight, in sending order
        self._bids: list[_Order] = []  # resting buys: best (highest) price first, then seq
        self._asks: list[_Order] = []  # resting sells: best (lowest) price first, then seq
        self._book: OrderBook | None = None  # the last book seen (the caller's live object)
        self._mid_x2 = 0  # bid + ask of the last book seen (ticks), 0 if a side was empty
        self._gap = False  # an unsynced book was seen since the last synced one
        self._seq = 0
        self._exec_seq = 0  # execution ids, like a venue's trade ids: unique, increasing
        # our position at the venue, lots (long > 0), from its fills: what a reduce-only
        # order is judged against; the daemon sets the journal's position at a restart
        self.position = 0

    # ---- requests -------------------------------------------------------------------------

    def place(
        self, order_id: int, side: Side, price: int, size: int, now_ns: int,
        reduce_only: bool = False,
    ) -> list[OrderUpdate]:
        """Send a post-only limit order: [PENDING_NEW] now, NEW or REJECTED on arrival
        (``reduce_only``: also REJECTED, :data:`REDUCE_ONLY`, if on arrival it would not
        shrink the position: flat, or on the position's own side).

        Parameters the venue would refuse (non-positive price or size, size off the
        instrument's step or below its minimum, notional below the minimum, an id already
        in use or remembered) give [REJECTED] at once, with the reason; nothing is sent.
        """
        side = Side(side)
        reason = self._check_new(order_id, price, size)
        if reason:
            return [
                OrderUpdate(order_id, OrderStatus.REJECTED, side, price, size, 0, reason, now_ns)
            ]
        update = OrderUpdate(order_id, OrderStatus.PENDING_NEW, side, price, size, 0, "", now_ns)
        self._orders[order_id] = _Order(order_id, side, price, size, update, reduce_only)
        self._send(_Kind.PLACE, order_id, 0, 0, _Known.OPEN, now_ns)
        return [update]

    def cancel(self, order_id: int, now_ns: int) -> list[OrderUpdate]:
        """Send a cancel: [PENDING_CANCEL] now, CANCELED (with filled so far) on arrival.

        If the order fills completely (or is rejected) before the cancel arrives, nothing
        more is reported: its final update already went out. For an id that is unknown or
        already closed when the cancel is sent, nothing now and REJECTED on arrival.
        """
        order = self._orders.get(order_id)
        if order is None:
            known = _Known.CLOSED if order_id in self._closed else _Known.UNKNOWN
            self._send(_Kind.CANCEL, order_id, 0, 0, known, now_ns)
            return []
        order.cancel_pending = True
        update = self._state(order, OrderStatus.PENDING_CANCEL, "", now_ns)
        self._send(_Kind.CANCEL, order_id, 0, 0, _Known.OPEN, now_ns)
        return [update]

    def amend(self, order_id: int, price: int, size: int, now_ns: int) -> list[OrderUpdate]:
        """Send an amend to ``price`` (ticks) and total ``size`` (lots); reports on arrival.

        On arrival (Binance cancel-replace semantics, keeping the order id): a size decrease at
        the same price keeps queue priority; a price change or a size increase rejoins the back
        of the queue at the new price, after a post-only check (crossing ends the order,
        CANCELED with reason :data:`AMEND_CROSS`). A new size <= filled ends the order
        (CANCELED). Otherwise the order reports NEW / PARTIALLY_FILLED with its new price and
        size. Returns [] now, or [REJECTED] at once for invalid parameters (the order is left
        as it is); unknown or closed ids are REJECTED on arrival, as for :meth:`cancel`.
        """
        order = self._orders.get(order_id)
        if order is None:
            known = _Known.CLOSED if order_id in self._closed else _Known.UNKNOWN
            self._send(_Kind.AMEND, order_id, 0, 0, known, now_ns)
            return []
        reason = self._check_price_size(price, size, allow_zero=True)
        if reason:
            return [
                OrderUpdate(
                    order_id,
                    OrderStatus.REJECTED,
                    order.side,
                    price,
                    size,
                    order.filled,
                    reason,
                    now_ns,
                )
            ]
        self._send(_Kind.AMEND, order_id, price, size, _Known.OPEN, now_ns)
        return []

    def cancel_all(self, now_ns: int) -> list[OrderUpdate]:
        """Cancel every open order that has no cancel in flight yet (same latency)."""
        out: list[OrderUpdate] = []
        for order in list(self._orders.values()):
            if not order.cancel_pending:
                out.extend(self.cancel(order.order_id, now_ns))
        return out

    # ---- market events --------------------------------------------------------------------

    def on_book(self, book: OrderBook, now_ns: int) -> list[ExecutionEvent]:
        """Call after every applied book update; ``book`` is the market's live book.

        :meth:`advance` to ``now_ns`` must have run before the update was applied (see the
        module docstring). For each resting order, caps ``queue_ahead`` at the displayed
        size of its level and fills the rest of any order the opposite best has reached or
        crossed. With an unsynced book (gap, crossed) the queue cap and the through-the-book
        fills are skipped: its levels may be wrong, and doing nothing is the conservative
        choice. Arrivals still use its levels (the venue accepts orders whatever the state of
        our feed). The book is kept by reference as "the last book seen" for arrivals.
        """
        self._book = book
        mid_before = self._mid_x2
        bid, ask = book.bids.best(), book.asks.best()
        self._mid_x2 = bid + ask if bid is not None and ask is not None else 0
        if not (self._pending or self._bids or self._asks):
            self._gap = not book.synced
            return []  # the common case: nothing of ours at the venue or in flight
        if self._pending and self._pending[0].due_ns <= now_ns:
            raise LookAhead(f"requests due by {now_ns} ns not processed before a book update")
        if not book.synced:
            self._gap = True  # the queue models rebase at the next synced book
            return []
        out: list[ExecutionEvent] = []
        if self._bids:
            self._check_levels(self._bids, book.bids, ask, True, now_ns, mid_before, out)
        if self._asks:
            self._check_levels(self._asks, book.asks, bid, False, now_ns, mid_before, out)
        self._gap = False
        return out

    def on_trade(self, trade: Trade, now_ns: int) -> list[ExecutionEvent]:
        """Call for every public trade (after :meth:`advance` to its time): the trade against
        our orders.

        A SELL aggressor hits bids: our bids above the trade price are traded through and fill
        up to the trade's size; at the trade price the trade first consumes ``queue_ahead``
        and only the excess fills us. Our orders share the trade's volume, best price first,
        then by arrival: lots one order took are not available to the next. BUY aggressors
        hit our asks symmetrically. Every order the trade reached in price counts its whole
        size (for the queue model and the ``fill_through = "traded"`` cap), whatever our
        other orders took: the public book lost all of it.
        """
        if not (self._pending or self._bids or self._asks):
            return []
        if self._pending and self._pending[0].due_ns <= now_ns:
            raise LookAhead(f"requests due by {now_ns} ns not processed before a trade")
        out: list[ExecutionEvent] = []
        hits_bids = trade.aggressor == Side.SELL
        orders = self._bids if hits_bids else self._asks
        if not orders:
            return out
        price = trade.price
        printed = trade.size
        available = printed
        model = self.queue_model
        step = self.instrument.size_step_lots
        for order in list(orders):  # a copy: a full fill removes the order from the list
            if hits_bids:
                if order.price < price:
                    break  # sorted best first: no later bid is reached either
                through = order.price > price
            else:
                if order.price > price:
                    break
                through = order.price < price
            order.traded += printed
            remaining = order.size - order.filled
            if through:
                qty = remaining if self._trade_whole else min(remaining, available)
            else:
                # The queue ahead takes it first. When all of it went there, keep going: our
                # later orders at this price were behind the same public queue and move up too.
                # Called even when nothing is left for us: the printed lots still left the
                # public level, and the model must not take that decrease for cancels.
                ahead = order.queue.ahead
                order.queue = model.on_trade(order.queue, printed, available)
                qty = min(remaining, available - ahead)
                # a probabilistic queue can leave part of a step ahead of us; the venue
                # trades whole steps only (every order is a multiple of one)
                qty -= qty % step
            if qty > 0:
                available = available - qty if qty < available else 0
                self._fill(order, qty, now_ns, self._mid_x2, out)
        return out

    def advance(self, now_ns: int) -> list[ExecutionEvent]:
        """Process requests due by ``now_ns``, against the book as it stands now.

        Call it before applying a market event at ``now_ns`` (strict time order) and from a
        shell's timer between events."""
        out: list[ExecutionEvent] = []
        if self._pending and self._pending[0].due_ns <= now_ns:
            self._process_due(now_ns, out)
        return out

    # ---- queries --------------------------------------------------------------------------

    def open_orders(self) -> list[OrderUpdate]:
        """The current state of every open order (sent and not closed), in placement order."""
        return [order.last for order in self._orders.values()]

    def order(self, order_id: int) -> OrderUpdate | None:
        """The current state of an open or remembered closed order, else None."""
        order = self._orders.get(order_id) or self._closed.get(order_id)
        return order.last if order is not None else None

    def queue_ahead(self, order_id: int) -> int | None:
        """Public lots ahead of a resting order at its price; None if it is not resting."""
        order = self._orders.get(order_id)
        return order.queue.ahead if order is not None and order.resting else None

    def next_due_ns(self) -> int | None:
        """Due time of the oldest request in flight (when :meth:`advance` has work), or None."""
        return self._pending[0].due_ns if self._pending else None

    def fee(self, price: int, size: int, *, maker: bool = True) -> int:
        """Fee in notional units for ``size`` lots at ``price`` ticks (negative = rebate)."""
        return fee_units(price * size, self.maker_fee_bps if maker else self.taker_fee_bps)

    # ---- internals ------------------------------------------------------------------------

    def _send(
        self, kind: _Kind, order_id: int, price: int, size: int, known: _Known, now_ns: int
    ) -> None:
        delay = self.latency_ns if self._entry is None else self._entry.draw()
        self._pending.append(_Action(now_ns + delay, kind, order_id, price, size, known))

    def _check_new(self, order_id: int, price: int, size: int) -> str:
        """Reason a new order is refused before it is sent, or ""."""
        if isinstance(order_id, bool) or not isinstance(order_id, int):
            return f"order id must be an integer, got {order_id!r}"
        if order_id in self._orders or order_id in self._closed:
            return DUPLICATE_ID
        reason = self._check_price_size(price, size, allow_zero=False)
        if reason:
            return reason
        if not self.exchange_filters:
            return ""
        if size < self.instrument.min_size_lots:
            return f"size {size} below the minimum {self.instrument.min_size_lots} lots"
        if price * size < self._min_notional_units:
            return f"notional below the minimum {self.instrument.min_notional}"
        return ""

    def _check_price_size(self, price: int, size: int, *, allow_zero: bool) -> str:
        if isinstance(price, bool) or not isinstance(price, int) or price <= 0:
            return f"price must be a positive integer of ticks, got {price!r}"
        if isinstance(size, bool) or not isinstance(size, int) or size < (0 if allow_zero else 1):
            lowest = "a non-negative" if allow_zero else "a positive"
            return f"size must be {lowest} integer of lots, got {size!r}"
        if self.exchange_filters and size % self.instrument.size_step_lots:
            return (
                f"size {size} is not a multiple of the step {self.instrument.size_step_lots} lots"
            )
        return ""

    def _process_due(self, now_ns: int, out: list[ExecutionEvent]) -> None:
        """Apply every request at the head of the channel whose due time has come."""
        pending = self._pending
        while pending and pending[0].due_ns <= now_ns:
            action = pending.popleft()
            if action.known is not _Known.OPEN:
                out.append(self._request_reject(action, now_ns))
                continue
            order = self._orders.get(action.order_id)
            if order is None:
                # Closed while the request travelled (filled, rejected, an earlier cancel):
                # its final update already went out, there is nothing more to say.
                continue
            if action.kind is _Kind.PLACE:
                self._arrive(order, now_ns, out)
            elif action.kind is _Kind.CANCEL:
                self._close(order, OrderStatus.CANCELED, "", now_ns, out)
            else:
                self._arrive_amend(order, action.price, action.size, now_ns, out)

    def _request_reject(self, action: _Action, now_ns: int) -> OrderUpdate:
        """REJECTED for a cancel/amend of an order that was unknown or closed when sent."""
        closed = self._closed.get(action.order_id)
        if action.known is _Known.CLOSED and closed is not None:
            last = closed.last
            return OrderUpdate(
                action.order_id,
                OrderStatus.REJECTED,
                last.side,
                last.price,
                last.size,
                last.filled,
                ORDER_CLOSED,
                now_ns,
            )
        # Side has no "none" value: BUY with zero price/size stands for "nothing known".
        reason = ORDER_CLOSED if action.known is _Known.CLOSED else UNKNOWN_ORDER
        return OrderUpdate(action.order_id, OrderStatus.REJECTED, Side.BUY, 0, 0, 0, reason, now_ns)

    def _arrive(self, order: _Order, now_ns: int, out: list[ExecutionEvent]) -> None:
        """A new order reaches the venue: reduce-only and post-only checks, then the back of
        its level."""
        reason = REDUCE_ONLY if order.reduce_only and int(order.side) * self.position >= 0 \
            else self._cross_reason(order.side, order.price)
        if reason:
            self._close(order, OrderStatus.REJECTED, reason, now_ns, out)
            return
        self._rest(order)
        out.append(self._state(order, OrderStatus.NEW, "", now_ns))

    def _arrive_amend(
        self, order: _Order, price: int, size: int, now_ns: int, out: list[ExecutionEvent]
    ) -> None:
        if size <= order.filled:
            self._close(order, OrderStatus.CANCELED, "", now_ns, out)
            return
        if price != order.price or size > order.size:
            # Loses priority: like a new order, it must not cross and joins the back.
            if self._cross_reason(order.side, price):
                self._close(order, OrderStatus.CANCELED, AMEND_CROSS, now_ns, out)
                return
            self._unrest(order)
            order.price = price
            order.size = size
            self._rest(order)
        else:
            order.size = size  # a decrease (or no change) at the same price keeps its place
        status = OrderStatus.PARTIALLY_FILLED if order.filled else OrderStatus.NEW
        out.append(self._state(order, status, "", now_ns))

    def _cross_reason(self, side: Side, price: int) -> str:
        """Why an order at ``price`` cannot rest now (post-only), or ""."""
        book = self._book
        if book is None:
            return NO_BOOK  # no market to model the order against: refuse, do not guess
        if side is Side.BUY:
            best = book.asks.best()
            own = self._asks[0].price if self._asks else None
            crosses = (best is not None and price >= best) or (own is not None and price >= own)
        else:
            best = book.bids.best()
            own = self._bids[0].price if self._bids else None
            crosses = (best is not None and price <= best) or (own is not None and price <= own)
        return POST_ONLY_CROSS if crosses else ""

    def _rest(self, order: _Order) -> None:
        """Put an arrived order at the back of its level (``queue`` = displayed size now)."""
        book = self._book
        assert book is not None  # _cross_reason refused the order otherwise
        self._seq += 1
        order.seq = self._seq
        order.resting = True
        order.traded = 0
        if order.side is Side.BUY:
            order.queue = self.queue_model.on_arrival(book.bids.size_at(order.price))
            self._bids.append(order)
            self._bids.sort(key=_bid_key)  # a handful of orders: sorting beats bookkeeping
        else:
            order.queue = self.queue_model.on_arrival(book.asks.size_at(order.price))
            self._asks.append(order)
            self._asks.sort(key=_ask_key)

    def _unrest(self, order: _Order) -> None:
        if order.resting:
            (self._bids if order.side is Side.BUY else self._asks).remove(order)
            order.resting = False

    def _check_levels(
        self,
        orders: list[_Order],
        side: BookSide,
        opposite_best: int | None,
        is_bid: bool,
        now_ns: int,
        mid_x2: int,
        out: list[ExecutionEvent],
    ) -> None:
        """Move queues with the displayed sizes; fill orders the opposite side reached."""
        model, gap, whole = self.queue_model, self._gap, self._fill_whole
        for order in list(orders):  # a copy: a fill removes the order
            shown = side.size_at(order.price)
            if shown != order.queue.shown:
                order.queue = rebase(order.queue, shown) if gap else model.on_level(
                    order.queue, shown)
            if opposite_best is not None and (
                opposite_best <= order.price if is_bid else opposite_best >= order.price
            ):
                # Someone offers at or through our bid (bids at or through our ask): with us
                # resting there they would have traded with us first.
                remaining = order.size - order.filled
                self._fill(order, remaining if whole else min(remaining, order.traded), now_ns,
                           mid_x2, out)

    def _fill(
        self, order: _Order, qty: int, now_ns: int, mid_x2: int, out: list[ExecutionEvent]
    ) -> None:
        """A maker fill of ``qty`` lots at the order's own price, then its update.

        ``mid_x2``: bid + ask (ticks) before the event that filled us, 0 if one side was empty.
        """
        if qty <= 0:
            return
        order.filled += qty
        self.position += int(order.side) * qty
        order.traded = max(order.traded - qty, 0)
        fee = fee_units(order.price * qty, self.maker_fee_bps)
        self._exec_seq += 1
        out.append(
            Fill(order.order_id, order.side, order.price, qty, fee, True, now_ns, self._exec_seq,
                 mid_x2)
        )
        if order.filled >= order.size:
            self._close(order, OrderStatus.FILLED, "", now_ns, out)
        else:
            out.append(self._state(order, OrderStatus.PARTIALLY_FILLED, "", now_ns))

    def _state(self, order: _Order, status: OrderStatus, reason: str, now_ns: int) -> OrderUpdate:
        """Record and return the order's current state as an OrderUpdate."""
        update = OrderUpdate(
            order.order_id,
            status,
            order.side,
            order.price,
            order.size,
            order.filled,
            reason,
            now_ns,
        )
        order.last = update
        return update

    def _close(
        self,
        order: _Order,
        status: OrderStatus,
        reason: str,
        now_ns: int,
        out: list[ExecutionEvent],
    ) -> None:
        """End the order: off the book, out of the open set, into the bounded history."""
        self._unrest(order)
        del self._orders[order.order_id]
        out.append(self._state(order, status, reason, now_ns))
        if self._max_closed:
            closed = self._closed
            closed[order.order_id] = order
            if len(closed) > self._max_closed:
                closed.popitem(last=False)
