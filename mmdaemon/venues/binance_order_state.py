"""The per-order records of Binance order entry: where each of our order ids stands, and
every venue order it has had (sans I/O; :mod:`mmdaemon.venues.binance_orders` drives them).

Our order ids are integers; at the venue they are client order ids. ``amend`` is a
cancel-replace that reuses the client id, so one of our orders is a chain of venue orders
(``orderId`` s, "legs"). The replacement's quantity counts from 0 at the venue, while our
sizes are totals including what already filled, so per order we keep every leg with its
quantity and executed size:

- ``filled`` = the sum over legs of what each executed;
- ``size`` = what earlier legs executed + the current leg's quantity (our total size).

:class:`OrderStates` is the state machine over these records: what the venue's word on a
leg (an execution report, an order object in a response, an open-orders listing) means for
our order, and what the daemon is told (an update only when the state it sees changed, a
fill once per venue trade id). Prices are integer ticks and sizes integer lots throughout;
times ns since the epoch.
"""

from __future__ import annotations

from collections import deque
from enum import Enum
from typing import Any, Final, NamedTuple

from mmdaemon.model import ExecutionEvent, Fill, OrderStatus, OrderUpdate, Side
from mmdaemon.venues.binance_order_io import Output

_SEEN_TRADES: Final = 100_000  # trade ids remembered for deduplication
_KEEP_CLOSED: Final = 10_000  # closed orders kept to recognise late reports of them


class Phase(Enum):
    """Where one of our client order ids stands, as order entry knows it."""

    PLACING = "placing"  # place sent, venue silent so far
    LIVE = "live"  # acknowledged and open: the daemon's order
    CLOSED = "closed"  # final state reported to the daemon
    DOUBTFUL = "doubtful"  # reported failed without an answer: may exist at the venue
    GONE = "gone"  # not (or no longer) the daemon's: known for its fills only


DAEMONS: Final = frozenset({Phase.PLACING, Phase.LIVE})  # orders the daemon holds
MAYBE_OPEN: Final = frozenset({Phase.PLACING, Phase.LIVE, Phase.DOUBTFUL})


class Leg:
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

    def see(self, order: OrderRecord, executed: int, traded: int) -> None:
        """Raise ``executed``/``traded`` to what a report or trade shows (lots), keeping
        the order's running total of what its legs filled."""
        before = self.filled
        self.executed = max(self.executed, executed)
        self.traded = traded
        order.legs_filled += self.filled - before


class OrderRecord:
    """Order entry's record of one of our order ids. Prices in ticks, sizes in lots.

    Invariant: ``legs_filled`` == the sum of ``leg.filled`` over ``legs`` (kept by
    :meth:`Leg.see`, the only writer of a leg's sizes).
    """

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
                 phase: Phase) -> None:
        self.order_id = order_id
        self.client_id = client_id
        self.side = side
        self.price = price  # current price at the venue (or asked, before the first answer)
        self.size = size  # asked total size: the answer before any leg is known
        self.phase = phase
        self.venue_id = 0  # the current leg's venue orderId, 0: none known yet
        self.legs: dict[int, Leg] = {}
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


class OpenOrder(NamedTuple):
    """An ``openOrders.status`` entry: our update (None if not ours) and the venue id."""

    update: OrderUpdate | None
    venue_id: int
    client_id: str


class OrderStates:
    """Our orders as the venue's reports make them, and what the daemon is told of them.

    Outputs (execution events) go to ``self._out`` in the order they happen; ``_now_ns``
    (wall ns) stamps an update the venue did not stamp. Both belong to the protocol that
    extends this class; ``log`` is a structlog-style logger.
    """

    def __init__(self, log: Any) -> None:
        self.log = log
        self._out: list[Output] = []
        self._now_ns = 0  # wall ns of the latest input
        self.orders: dict[int, OrderRecord] = {}
        self._owner: dict[int, int] = {}  # venue orderId -> our order id
        self._stray: dict[int, int] = {}  # open venue orders nobody wants -> our order id
        self._closed_fifo: deque[int] = deque()
        self._seen: set[int] = set()
        self._seen_fifo: deque[int] = deque()
        self.max_trade_id = 0  # highest venue trade id seen
        # the highest trade id seen when the stream last had a gap (a lost connection, an
        # event we could not read): myTrades resumes after it, not after a trade a later
        # event brought; None: no gap since the last recovery
        self._gap_after: int | None = None

    def _stream_gap(self) -> None:
        """The stream may miss trades from now on: the next recovery starts after the
        highest trade id seen now (a fill on a new connection can arrive before the
        reconcile asks ``myTrades``, and must not move the start past the gap)."""
        if self._gap_after is None:
            self._gap_after = self.max_trade_id

    def open_order_count(self) -> int:
        """Orders the venue may hold open for us: live or in flight, places whose outcome
        is unknown, and unwanted ones whose cancel is not confirmed yet."""
        held = sum(1 for o in self.orders.values() if o.phase in MAYBE_OPEN)
        return held + len(self._stray)

    def open_order_names(self) -> list[str]:
        """The orders :meth:`open_order_count` counts: client order ids, and ``orderId=N``
        for unwanted venue orders (whose client id may be unknown)."""
        held = [o.client_id for o in self.orders.values() if o.phase in MAYBE_OPEN]
        return held + [f"orderId={vid}" for vid in self._stray]

    # ---- reporting ----------------------------------------------------------------------------

    def _emit(self, event: ExecutionEvent) -> None:
        self._out.append(event)

    def _emit_state(self, order_id: int, status: OrderStatus, side: Side, price: int,
                    size: int, filled: int, reason: str) -> None:
        self._emit(OrderUpdate(order_id, status, side, price, size, filled, reason,
                               self._now_ns))

    def _sync(self, order: OrderRecord, ts_ns: int = 0) -> None:
        """Report ``order``'s state to the daemon if it changed since the last report."""
        if order.phase is Phase.LIVE:
            filled = order.filled()
            status = OrderStatus.PARTIALLY_FILLED if filled else OrderStatus.NEW
        elif order.phase is Phase.CLOSED and order.final is not None:
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
                               order.total_size(), filled, reason, ts_ns or self._now_ns))

    def _report_again(self, order: OrderRecord) -> None:
        """The last state of a closed order once more (a request about it cannot wait)."""
        order.last = None
        self._sync(order)

    def _reject_request(self, order: OrderRecord, reason: str) -> None:
        """REJECTED for a request about an acknowledged order: the order itself stays."""
        self._emit_state(order.order_id, OrderStatus.REJECTED, order.side, order.price,
                         order.total_size(), order.filled(), reason)

    def _answer_not_live(self, order_id: int, order: OrderRecord | None) -> None:
        """A cancel of an order that is not live: answer at once, never leave it waiting."""
        if order is not None and order.phase is Phase.CLOSED:
            self._report_again(order)
            return
        side = order.side if order is not None else Side.BUY
        self._emit_state(order_id, OrderStatus.CANCELED, side, 0, 0,
                         order.filled() if order is not None else 0, "not open")

    def _set_phase(self, order: OrderRecord, phase: Phase) -> None:
        if order.phase is phase:
            return
        order.phase = phase
        if phase is Phase.CLOSED or phase is Phase.GONE:
            fifo = self._closed_fifo
            fifo.append(order.order_id)
            while len(fifo) > _KEEP_CLOSED:
                self._forget(fifo.popleft())

    def _forget(self, order_id: int) -> None:
        order = self.orders.get(order_id)
        if order is None or order.phase not in (Phase.CLOSED, Phase.GONE):
            return
        if any(vid in self._stray for vid in order.legs):
            return  # still open somewhere: keep it until the venue confirms the cancel
        del self.orders[order_id]
        for vid in order.legs:
            self._owner.pop(vid, None)

    def _close(self, order: OrderRecord, status: OrderStatus, reason: str,
               ts_ns: int = 0) -> None:
        order.final, order.reason = status, reason
        self._set_phase(order, Phase.CLOSED)
        self._sync(order, ts_ns)

    def _close_as_ended(self, order: OrderRecord, reason: str) -> None:
        """The venue no longer lists it: FILLED if its (complete) fills cover it, else
        CANCELED."""
        done = order.filled() >= order.total_size()
        self._close(order, OrderStatus.FILLED if done else OrderStatus.CANCELED,
                    "" if done else reason)

    # ---- the venue's word on orders -----------------------------------------------------------

    def _record_for(self, order_id: int, side: Side, client_id: str) -> OrderRecord:
        """Our record of ``order_id``; a new one (not the daemon's) if we never had it."""
        order = self.orders.get(order_id)
        if order is None:
            order = OrderRecord(order_id, client_id, side, 0, 0, Phase.GONE)
            self.orders[order_id] = order
            self._closed_fifo.append(order_id)
        return order

    def _see_leg(self, order: OrderRecord, vid: int, update: OrderUpdate,
                 adopt: bool | None = None) -> Leg:
        """Record venue order ``vid`` of ``order`` (``update.size`` its quantity,
        ``update.filled`` its executed size). An open venue order we did not know under
        this client id is the order itself (first sight) or its replacement (a
        cancel-replace reuses the client id): it becomes the current leg."""
        leg = order.legs.get(vid)
        if leg is None:
            leg = order.legs[vid] = Leg(update.size)
            self._owner[vid] = order.order_id
            if adopt is None:
                adopt = update.status.is_open
        elif adopt is None:
            adopt = False
        # only the daemon's orders follow a replacement; others are known by venue id
        adopt = order.venue_id == 0 or (adopt and order.phase in DAEMONS)
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

    def _apply_status(self, order: OrderRecord, vid: int, update: OrderUpdate) -> None:
        """What the venue's status of leg ``vid`` means for ``order``."""
        if order.phase not in (Phase.PLACING, Phase.LIVE):
            self._unwanted_state(order, vid, update)
            return
        if vid != order.venue_id:
            self._sync(order, update.ts_ns)  # a retired leg: its fills count, its status not
            return
        status = update.status
        if status.is_open:
            self._set_phase(order, Phase.LIVE)
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
            if order.phase is Phase.LIVE:
                # acknowledged first: for the order manager REJECTED would mean "your request
                # failed, the order stays"; the order has ended, so it is CANCELED
                self._close(order, OrderStatus.CANCELED, f"rejected: {reason}", update.ts_ns)
            else:
                self._close(order, OrderStatus.REJECTED, reason, update.ts_ns)

    def _unwanted_state(self, order: OrderRecord, vid: int, update: OrderUpdate) -> None:
        """A venue order of ours that the daemon does not (or no longer) hold: if open,
        it must go; its fills are delivered all the same."""
        if order.phase is Phase.DOUBTFUL:
            self._set_phase(order, Phase.GONE)  # no longer in doubt: we know its fate
        leg = order.legs.get(vid)
        if update.status.is_open and not (leg is not None and leg.ended):
            if vid not in self._stray:
                self._stray[vid] = order.order_id
                self.log.warning("gateway_unwanted_order", order_id=order.order_id,
                                 venue_order_id=vid, client_id=order.client_id)
        else:
            self._stray.pop(vid, None)
        if order.phase is Phase.CLOSED:
            self._sync(order, update.ts_ns)  # late fills of a closed order

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
