"""Order manager: desired quote in, place / cancel / amend actions out (pure, synchronous).

One live order per side. An order is only touched when the desired price moved by at least
``price_tolerance_ticks`` or the desired size differs from the order's open size by at least
``size_tolerance_lots``: that keeps queue priority and bounds the message rate. While an
order on a side waits for the venue (new, amend or cancel not yet answered) that side gets
no further action, so a side never has two live orders and requests do not pile up. A lost
answer would leave the side waiting: the order gateway times requests out (#5).

Order ids are ``run_id << 32 | seq``: unique across restarts of the same journal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

from mmdaemon.model import OrderStatus, OrderUpdate, Quote, Side

ActionKind = Literal["place", "cancel", "amend"]


class OrderAction(NamedTuple):
    """A request for the exchange adapter. Price in ticks, size in lots (total size)."""

    kind: ActionKind
    order_id: int
    side: Side
    price: int
    size: int


@dataclass
class LiveOrder:
    """Our view of one open order.

    ``price``/``size`` are what we last asked for; ``acked_price``/``acked_size`` what the
    venue last confirmed (0 before the first acknowledgement). ``pending`` names the request
    in flight, if any: the side is left alone until the venue answers it.
    """

    order_id: int
    side: Side
    price: int
    size: int  # total size, lots
    filled: int = 0
    status: OrderStatus = OrderStatus.PENDING_NEW
    pending: ActionKind | None = "place"
    acked_price: int = 0
    acked_size: int = 0

    @property
    def open_size(self) -> int:
        return self.size - self.filled


class OrderManager:
    """Tracks our orders from the adapter's updates and diffs them against desired quotes."""

    def __init__(self, run_id: int, price_tolerance_ticks: int = 1,
                 size_tolerance_lots: int = 1) -> None:
        if price_tolerance_ticks < 1 or size_tolerance_lots < 1:
            raise ValueError("tolerances must be >= 1")
        self.price_tolerance = price_tolerance_ticks
        self.size_tolerance = size_tolerance_lots
        self._next_id = (run_id << 32) + 1
        self.orders: dict[int, LiveOrder] = {}
        self._by_side: dict[Side, LiveOrder] = {}

    def open_orders(self) -> int:
        return len(self.orders)

    def decide(self, quote: Quote | None) -> list[OrderAction]:
        """Actions that move our orders toward ``quote`` (None: no quote, cancel both).

        Nothing changes until the caller reports an action as sent (:meth:`sent`): an action
        that a pre-trade check stops leaves our view of the orders as it was.
        """
        if quote is None:
            return self.cancel_all()
        actions: list[OrderAction] = []
        self._side(Side.BUY, quote.bid, quote.bid_size, actions)
        self._side(Side.SELL, quote.ask, quote.ask_size, actions)
        return actions

    def cancel_all(self) -> list[OrderAction]:
        """Cancel every order not already waiting on a cancel."""
        return [
            self.cancel(order.order_id)
            for order in self.orders.values()
            if order.status is not OrderStatus.PENDING_CANCEL
        ]

    def cancel(self, order_id: int) -> OrderAction:
        order = self.orders[order_id]
        return OrderAction("cancel", order_id, order.side, order.price, order.size)

    def _side(self, side: Side, price: int, size: int, out: list[OrderAction]) -> None:
        order = self._by_side.get(side)
        if order is None:
            if size > 0:
                order_id = self._next_id
                self._next_id += 1
                out.append(OrderAction("place", order_id, side, price, size))
            return
        if order.pending is not None:
            return
        if size <= 0:
            out.append(self.cancel(order.order_id))
        elif (
            abs(price - order.price) >= self.price_tolerance
            or abs(size - order.open_size) >= self.size_tolerance
        ):
            # the venue counts amend sizes as total size: keep what already filled
            out.append(OrderAction("amend", order.order_id, side, price, order.filled + size))

    def applies(self, action: OrderAction) -> bool:
        """``action`` still fits our orders: a place for a side with no order, an amend of
        an order waiting for nothing, a cancel of an order not already being cancelled.

        An action decided earlier may have gone stale before it could be sent (its sender
        waited for another task's cancel-all, whose confirmation removed the order): such
        an action must be dropped, not sent.
        """
        if action.kind == "place":
            return action.side not in self._by_side
        order = self.orders.get(action.order_id)
        if order is None:
            return False
        if action.kind == "amend":
            return order.pending is None
        return order.status is not OrderStatus.PENDING_CANCEL

    def sent(self, action: OrderAction) -> None:
        """Record that ``action`` goes to the exchange: its order now waits for the venue.

        Called before the request is handed over, because a simulated venue may answer
        within the call.
        """
        if action.kind == "place":
            order = LiveOrder(action.order_id, action.side, action.price, action.size)
            self.orders[order.order_id] = self._by_side[order.side] = order
            return
        order = self.orders[action.order_id]
        order.pending = action.kind
        if action.kind == "amend":
            order.price, order.size = action.price, action.size
        else:
            order.status = OrderStatus.PENDING_CANCEL

    def on_update(self, update: OrderUpdate) -> LiveOrder | None:
        """Apply the venue's word on an order; returns the order, None if it is not ours.

        A REJECTED update for an order the venue has acknowledged is about our *request*
        (an amend or a cancel the venue refused), not the order: the order stays, at the
        state the venue last confirmed. Only a rejected place removes it.
        """
        order = self.orders.get(update.order_id)
        if order is None:
            return None
        status = update.status
        if status is OrderStatus.PENDING_NEW or status is OrderStatus.PENDING_CANCEL:
            return order  # our own request echoed back: still waiting
        if status is OrderStatus.REJECTED:
            if order.pending == "place":
                self._forget(order)
            else:
                order.price, order.size = order.acked_price, order.acked_size
                order.status = (
                    OrderStatus.PARTIALLY_FILLED if order.filled else OrderStatus.NEW
                )
                order.pending = None
            return order
        order.filled = max(order.filled, update.filled)
        if not status.is_open:  # FILLED or CANCELED
            order.status = status
            self._forget(order)
            return order
        order.acked_price, order.acked_size = update.price, update.size
        if order.pending == "place" or (
            order.pending == "amend" and (update.price, update.size) == (order.price, order.size)
        ):
            order.pending = None
        if order.pending != "cancel":  # a fill during a cancel leaves it PENDING_CANCEL
            order.status = status
        return order

    def _forget(self, order: LiveOrder) -> None:
        del self.orders[order.order_id]
        if self._by_side.get(order.side) is order:
            del self._by_side[order.side]
