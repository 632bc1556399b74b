"""The sim venue's matching engine: glue between the accounts and the PaperVenue.

The matching itself is :class:`~mmdaemon.exchange.fill_model.PaperVenue`'s (latency,
post-only, queue position, fees), the model the daemon's paper mode uses, so paper and sim
agree by construction. :class:`Matching` hands it the orders the protocol accepted and the
market events of the tape, turns what it decides into the state of the
:class:`~mmdaemon.sim.accounts.Ledger` and queues the user-data events each account's
subscribers are to receive (:meth:`Matching.take_events`). No I/O: the connection shell
sends the events.

Time. Requests are handed to the PaperVenue at model time: the ``now_ns`` of the last
market event (:meth:`Matching.on_book`, :meth:`Matching.on_trade`, :meth:`Matching.advance`),
which the tape gives on the sim's time line (:mod:`mmdaemon.sim.clock`). Order events and
answers are stamped with the sim's clock once :meth:`Matching.use_clock` gave it one (never
behind model time); a fill's transaction time ``T`` (and its ``myTrades`` time) is the model
time of the market event that filled it, as a venue's fill shares its trade's time. Without
a clock, everything is stamped with model time, and before the first market event with the
server clock ``now_ms()``.

Synchronous answers. Binance answers ``order.place`` after the matching engine ran it, so a
post-only order that would cross is refused in the response (-2010 "Order would immediately
match and take."). :meth:`Matching.place` checks that at request time against the last book
seen and our own resting orders, hands the order to the PaperVenue and processes whatever
is due. With ``latency_ns = 0`` the venue decides at once and the answer is exactly its
decision. With a positive latency the answer is the request-time check and the venue's own
check at arrival stays: if the book moved meanwhile, the order, already acknowledged NEW,
ends with an ``executionReport`` REJECTED (``r`` = WOULD_MATCH_IMMEDIATELY). Cancels are
final for the client at once; with a positive latency the order can still fill before the
cancel arrives and that fill is reported (TRADE with status CANCELED): the account must
stay true to the model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mmdaemon.book import OrderBook
from mmdaemon.exchange.fill_model import NO_BOOK, POST_ONLY_CROSS, PaperVenue
from mmdaemon.model import (
    NS_PER_MS,
    ExecutionEvent,
    Fill,
    Instrument,
    OrderStatus,
    OrderUpdate,
    Side,
    Trade,
)
from mmdaemon.sim import wire
from mmdaemon.sim.accounts import Ledger, VenueOrder
from mmdaemon.sim.faults import Faults
from mmdaemon.venues import binance_api as api

UserDataEvent = tuple[str, dict[str, Any]]
"""(API key, event object): a user-data event for that account's subscribers."""



def would_take(book: OrderBook, side: Side, price: int, resting: list[int]) -> bool:
    """Whether a post-only ``side`` order at ``price`` ticks would trade at once: against
    the best opposite price of ``book``, or against ``resting``, the prices (ticks) of the
    venue's acknowledged orders on the opposite side, which sit inside the book."""
    if side is Side.BUY:
        best = book.asks.best()
        return (best is not None and price >= best) or (bool(resting) and price >= min(resting))
    best = book.bids.best()
    return (best is not None and price <= best) or (bool(resting) and price <= max(resting))

class Matching:
    """Orders of the ``ledger``'s accounts, matched in ``venue`` (one symbol).

    ``now_ms`` is the server clock (ms since the epoch), used for model time until the
    first market event; an order the account cannot afford is refused (-2010).
    ``faults`` learns of fills (held responses, see :mod:`mmdaemon.sim.faults`).
    """

    def __init__(self, instrument: Instrument, venue: PaperVenue, ledger: Ledger,
                 faults: Faults, now_ms: Callable[[], int]) -> None:
        self.instrument = instrument
        self.venue = venue
        self.ledger = ledger
        self.faults = faults
        self._now_ms = now_ms
        self.book: OrderBook | None = None
        self.now_ns = 0  # model time: the last market event's now_ns
        self._next_id = 0  # venue order ids (also the PaperVenue ids)
        self._exec_seq = 0  # execution ids ``I``
        self._in_venue: dict[int, VenueOrder] = {}  # orders the PaperVenue still holds open
        self.outbox: list[UserDataEvent] = []  # events not yet taken, in the order they happened
        self.placed: list[int] | None = None  # when a list: orders placed are appended to it
        self._clock: Callable[[], int] | None = None  # the sim's clock (ms), see use_clock

    def use_clock(self, now_ms: Callable[[], int]) -> None:
        """Stamp events and answers with ``now_ms()`` (the sim's clock, ms since the epoch;
        never behind the model time the tape hands in)."""
        self._clock = now_ms

    # ---- market side (from the tape) --------------------------------------------------------

    def advance(self, now_ns: int) -> None:
        """Before the market event at ``now_ns`` is applied: requests that reached the venue
        by then act on the book as it stood (strict time order)."""
        self.now_ns = max(self.now_ns, now_ns)
        events = self.venue.advance(self.now_ns)
        if events:
            self._apply(events)

    def on_book(self, book: OrderBook, now_ns: int) -> None:
        """A book update at ``now_ns``: the PaperVenue matches our resting orders."""
        self.book = book
        self.now_ns = max(self.now_ns, now_ns)
        events = self.venue.on_book(book, self.now_ns)
        if events:
            self._apply(events)

    def on_trade(self, trade: Trade, now_ns: int) -> None:
        """A public trade at ``now_ns``: our orders at or through its price may fill."""
        self.now_ns = max(self.now_ns, now_ns)
        events = self.venue.on_trade(trade, self.now_ns)
        if events:
            self._apply(events)

    def take_events(self) -> list[UserDataEvent]:
        """The user-data events queued since the last call, oldest first; the queue empties."""
        outbox, self.outbox = self.outbox, []
        return outbox

    # ---- orders (from requests) -------------------------------------------------------------

    def ms(self) -> int:
        """The time of what happens now, in ms: the sim's clock when there is one, else
        :meth:`model_ms`."""
        return self._clock() if self._clock is not None else self.model_ms()

    def model_ms(self) -> int:
        """Model time in ms (the server clock before the first market event)."""
        return self.now_ns // NS_PER_MS if self.now_ns else self._now_ms()

    def place(self, api_key: str, side: Side, price: int, size: int,
              client_id: str | None) -> VenueOrder:
        """Place a LIMIT_MAKER order of ``size`` lots at ``price`` ticks, or raise -2010
        (:class:`~mmdaemon.sim.wire.Reject`) with the matching engine's reason."""
        ledger = self.ledger
        if client_id is not None and client_id in ledger.open[api_key]:
            raise wire.Reject(api.NEW_ORDER_REJECTED, wire.MSG_DUPLICATE_ORDER)
        if self.book is None:
            raise wire.Reject(api.NEW_ORDER_REJECTED, wire.MSG_MARKET_CLOSED)
        # the account is checked before the order reaches the matching engine
        if not ledger.affordable(api_key, side, price, size):
            raise wire.Reject(api.NEW_ORDER_REJECTED, wire.MSG_INSUFFICIENT_BALANCE)
        if self._would_take(side, price):
            raise wire.Reject(api.NEW_ORDER_REJECTED, wire.MSG_WOULD_TAKE)
        self._next_id += 1
        order_id = self._next_id
        if client_id is None:
            client_id = f"sim-{order_id}"
        ms = self.ms()
        order = VenueOrder(api_key, order_id, client_id, side, price, size, ms)
        ledger.add_open(order)
        self._in_venue[order_id] = order
        now = self.now_ns
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
            raise wire.Reject(api.NEW_ORDER_REJECTED, message)
        if not order.acked:  # in flight to the venue (latency): acknowledged now
            order.acked = True
            order.working_ms = ms
            self._report(order, "NEW")
        ledger.remember(order)
        if self.placed is not None:
            self.placed.append(order_id)
        return order

    def cancel(self, order: VenueOrder, new_client_id: str | None) -> None:
        """Cancel an open order now; ``new_client_id`` (default ``sim-cxl-<orderId>``) is the
        cancel's own client id. The order is final (CANCELED, or FILLED if it filled first)
        when this returns."""
        order.cancel_client_id = new_client_id or f"sim-cxl-{order.order_id}"
        now = self.now_ns
        self._apply([*self.venue.cancel(order.order_id, now), *self.venue.advance(now)])
        if not order.closed:  # the cancel is still travelling (latency): final for the client
            self.ledger.close(order, "CANCELED", self.ms())
            self._report(order, "CANCELED")

    # ---- what the PaperVenue decided --------------------------------------------------------

    def _would_take(self, side: Side, price: int) -> bool:
        """Post-only check now: against the last book and our own resting orders."""
        assert self.book is not None
        return would_take(self.book, side, price, [
            o.price for o in self._in_venue.values() if o.acked and o.side is not side])

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
                order.working_ms = self.ms()
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
            self.ledger.close(order, "FILLED", self.ms())  # its TRADE report already went out
        elif status is OrderStatus.CANCELED:
            self.ledger.close(order, "CANCELED", self.ms())
            self._report(order, "CANCELED")
        elif not order.acked:
            order.reject_reason = update.reason  # place() turns it into the error
            self.ledger.close(order, "REJECTED", self.ms())
        else:
            self.ledger.close(order, "REJECTED", self.ms())
            reason = api.REJECT_WOULD_MATCH if update.reason == POST_ONLY_CROSS else update.reason
            self._report(order, "REJECTED", reject_reason=reason)

    def _on_fill(self, fill: Fill) -> None:
        order = self._in_venue.get(fill.order_id)
        if order is None:
            return
        self.faults.note_fill(fill.order_id)
        trade = self.ledger.record_fill(order, fill, self.model_ms())
        self._report(
            order,
            "TRADE",
            transact_ms=trade.time_ms,
            last_qty=fill.size,
            last_price=fill.price,
            commission=wire.notional_str(self.instrument, fill.fee),
            trade_id=trade.trade_id,
            is_maker=fill.maker,
        )
        self.outbox.append((order.api_key, self.ledger.position_event(order.api_key, self.ms())))

    def _report(
        self,
        order: VenueOrder,
        execution_type: str,
        *,
        last_qty: int = 0,
        last_price: int = 0,
        commission: str = "0",
        trade_id: int = -1,
        is_maker: bool = False,
        reject_reason: str = api.REJECT_NONE,
        transact_ms: int | None = None,
    ) -> None:
        """Queue an ``executionReport`` of ``order`` for its account's subscribers, at
        :meth:`ms` (``transact_ms``: its transaction time ``T``, if not then)."""
        self._exec_seq += 1
        ms = self.ms()
        cancel = execution_type == "CANCELED"
        event = wire.execution_report(
            self.instrument,
            order.view(),
            execution_type=execution_type,
            event_ms=ms,
            transact_ms=ms if transact_ms is None else transact_ms,
            execution_id=self._exec_seq,
            client_id=order.cancel_client_id if cancel else None,
            orig_client_id=order.client_id if cancel else "",
            reject_reason=reject_reason,
            last_qty=last_qty,
            last_price=last_price,
            commission=commission,
            commission_asset=self.ledger.assets.quote if execution_type == "TRADE" else None,
            trade_id=trade_id,
            is_maker=is_maker,
        )
        self.outbox.append((order.api_key, event))
