"""Order manager: desired ladder in, place / cancel / amend actions out (pure, synchronous).

Several live orders a side, one per level of the desired :class:`~mmdaemon.model.Ladder`.
Per side, the desired levels are matched to our orders:

1. a level keeps the order within ``price_tolerance_ticks`` of its price (the nearest,
   when several are): an order is only touched when its level moved by at least the price
   tolerance or its size differs from the order's open size by at least
   ``size_tolerance_lots`` (then it is amended): that keeps queue priority and bounds the
   message rate;
2. an order with a request in flight (new, amend or cancel not yet answered) gets no
   further action; one that no level kept still holds a place on its side, so requests
   do not pile up and a side never has more orders than levels; a lost answer would
   leave it waiting: the order gateway times requests out (#5);
3. the levels left over take the idle orders left over, best with best, each amended to
   its level (an amend keeps one order where cancel + place would briefly need two, or
   leave a gap); levels still left over get new orders; idle orders still left over are
   cancelled.

Actions go out cancels first, then the amends and places of the two sides in turns (a
bid's, an ask's, ...), each side's in the order of the ladder; an amend or place that would
meet or cross one of our orders on the other side (at the price that order will have once
the actions before it apply) waits behind that side's actions, and is left for a later
quote if that order is not moving now, so we never trade with ourselves while a ladder
moves through its own old prices. An amend may pass one of our orders on its own side: the
venue never matches two orders of one side.

Order ids are ``run_id << 32 | seq``: unique across restarts of the same journal.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import zip_longest
from typing import Literal, NamedTuple

from mmdaemon.model import Ladder, Level, OrderStatus, OrderUpdate, Side

ActionKind = Literal["place", "cancel", "amend"]


class OrderAction(NamedTuple):
    """A request for the exchange adapter. Price in ticks, size in lots (total size).
    ``reduce_only``: a place the venue must refuse if it would increase the position (set by
    the engine while REDUCING); an amend keeps its order's flag at the venue."""

    kind: ActionKind
    order_id: int
    side: Side
    price: int
    size: int
    reduce_only: bool = False


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
    """Tracks our orders from the adapter's updates and diffs them against desired ladders."""

    def __init__(self, run_id: int, price_tolerance_ticks: int = 1,
                 size_tolerance_lots: int = 1) -> None:
        if price_tolerance_ticks < 1 or size_tolerance_lots < 1:
            raise ValueError("tolerances must be >= 1")
        self.price_tolerance = price_tolerance_ticks
        self.size_tolerance = size_tolerance_lots
        self._next_id = (run_id << 32) + 1
        self.orders: dict[int, LiveOrder] = {}
        # levels a side of the latest ladder: a place beyond them is stale (see applies())
        self._slots: dict[Side, int] = {Side.BUY: 0, Side.SELL: 0}

    def open_orders(self) -> int:
        return len(self.orders)

    def side_orders(self, side: Side) -> list[LiveOrder]:
        """Our orders on ``side`` (those being cancelled too), in the order placed."""
        return [o for o in self.orders.values() if o.side is side]

    def lots_besides(self, action: OrderAction) -> int:
        """Lots open on ``action``'s side in our other orders (at the sizes we last asked
        for: an amend in flight counts at its new size), less what ``action``'s own order
        has filled: ``lots_besides(action) + action.size`` is the side's open total once
        ``action`` applies (an amend's size is the order's total, fills included)."""
        own = self.orders.get(action.order_id)
        return sum(o.open_size for o in self.orders.values()
                   if o.side is action.side and o is not own) - (own.filled if own else 0)

    def notional_besides(self, action: OrderAction) -> int:
        """Notional (ticks x lots) open on ``action``'s side in our other orders, less
        what ``action``'s own order has filled at its price, as :meth:`lots_besides`:
        ``notional_besides(action) + action.price * action.size`` is the side's open
        notional once ``action`` applies."""
        own = self.orders.get(action.order_id)
        return sum(o.price * o.open_size for o in self.orders.values()
                   if o.side is action.side and o is not own) - (
            own.filled * action.price if own else 0)

    def decide(self, ladder: Ladder | None) -> list[OrderAction]:
        """Actions that move our orders toward ``ladder`` (None: no quote, cancel all).

        Nothing changes until the caller reports an action as sent (:meth:`sent`): an action
        that a pre-trade check stops leaves our view of the orders as it was.
        """
        if ladder is None:
            self._slots[Side.BUY] = self._slots[Side.SELL] = 0
            return self.cancel_all()
        bids = self._side(Side.BUY, ladder.bids)
        asks = self._side(Side.SELL, ladder.asks)
        if not (bids or asks):
            return []
        # the sides take turns, so that an order rate or max_open_orders too small for the
        # whole ladder goes to the innermost levels of both sides, not to the bids alone
        both = [a for pair in zip_longest(bids, asks) for a in pair if a is not None] \
            if bids and asks else bids or asks
        cancels = [a for a in both if a.kind == "cancel"]
        if not cancels:
            return self._uncrossed(both, cancels)
        moves = [a for a in both if a.kind != "cancel"]
        return cancels + self._uncrossed(moves, cancels) if moves else cancels

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

    def _side(self, side: Side, levels: tuple[Level, ...]) -> list[OrderAction]:
        """One side's actions (see the module docstring): cancels, amends, places."""
        self._slots[side] = len(levels)
        orders = [o for o in self.orders.values() if o.side is side]
        if not orders:
            return [self._place(side, price, size) for price, size in levels]
        tol, size_tol = self.price_tolerance, self.size_tolerance
        if len(orders) == 1 and len(levels) <= 1:  # one level a side: the rules below, short
            order = orders[0]
            if order.pending is not None:
                return []
            if not levels:
                return [self.cancel(order.order_id)]
            price, size = levels[0]
            if abs(price - order.price) >= tol or abs(size - order.open_size) >= size_tol:
                return [OrderAction("amend", order.order_id, side, price, order.filled + size)]
            return []
        out: list[OrderAction] = []
        free: list[Level] = []  # levels no order kept, best first
        candidates = [o for o in orders if o.status is not OrderStatus.PENDING_CANCEL]
        for price, size in levels:
            best: LiveOrder | None = None
            for order in candidates:
                if abs(order.price - price) < tol and (
                        best is None or abs(order.price - price) < abs(best.price - price)):
                    best = order
            if best is None:
                free.append((price, size))
                continue
            candidates.remove(best)
            if best.pending is None and abs(size - best.open_size) >= size_tol:
                # the venue counts amend sizes as total size: keep what already filled
                out.append(OrderAction("amend", best.order_id, side, price, best.filled + size))
        idle = [o for o in candidates if o.pending is None]
        # orders in flight that no level kept hold a place each: never more orders than levels
        busy = len(orders) - (len(levels) - len(free)) - len(idle)
        room = max(0, len(free) - busy)
        idle.sort(key=lambda o: -o.price * side)  # best first, as the levels are
        for order, (price, size) in zip(idle, free[:room], strict=False):
            out.append(OrderAction("amend", order.order_id, side, price, order.filled + size))
        for order in idle[room:]:
            out.append(self.cancel(order.order_id))
        for price, size in free[len(idle):room]:
            out.append(self._place(side, price, size))
        return out

    def _place(self, side: Side, price: int, size: int) -> OrderAction:
        order_id = self._next_id
        self._next_id += 1
        return OrderAction("place", order_id, side, price, size)

    def _uncrossed(self, moves: list[OrderAction],
                   cancels: list[OrderAction]) -> list[OrderAction]:
        """``moves`` in their order, but none before our other side is out of its way: an
        action at or through an order of ours on the other side waits behind the action
        that moves that order; with no such action it is dropped (a later quote retries)."""
        gone = {a.order_id for a in cancels}
        # the usual case in one pass: every bid of ours, where it stands and where it goes,
        # below every ask of ours: no action can meet our other side, in any order
        hi_bid, lo_ask = 0, 1 << 63
        for o in self.orders.values():
            if o.order_id not in gone:
                if o.side is Side.BUY:
                    hi_bid = max(hi_bid, o.price)
                else:
                    lo_ask = min(lo_ask, o.price)
        for a in moves:
            if a.side is Side.BUY:
                hi_bid = max(hi_bid, a.price)
            else:
                lo_ask = min(lo_ask, a.price)
        if hi_bid < lo_ask:
            return moves
        at = {o.order_id: (o.side, o.price) for o in self.orders.values()
              if o.order_id not in gone}
        out: list[OrderAction] = []
        waiting = moves
        while waiting:
            later: list[OrderAction] = []
            for action in waiting:
                if any(side is not action.side and (price - action.price) * action.side <= 0
                       for oid, (side, price) in at.items() if oid != action.order_id):
                    later.append(action)
                    continue
                at[action.order_id] = (action.side, action.price)
                out.append(action)
            if len(later) == len(waiting):
                break  # the rest would cross an order that is not moving now
            waiting = later
        return out

    def applies(self, action: OrderAction) -> bool:
        """``action`` still fits our orders: a place for a side with fewer orders than the
        latest ladder has levels there, an amend of an order waiting for nothing, a cancel
        of an order not already being cancelled; a place or an amend only while it meets
        none of our orders on the other side where they stand now.

        An action decided earlier may have gone stale before it could be sent (its sender
        waited for another task's cancel-all, whose confirmation removed the order; or a
        later quote placed for the same level): such an action must be dropped, not sent.
        :meth:`decide` orders a quote's actions so that none meets our other side once the
        actions before it went out; when one of those was held back (the order rate, while
        a live send let event time move on), the order it would have moved stayed where it
        was, and the action after it would trade with us.
        """
        side = action.side
        if action.kind == "place":
            if sum(1 for o in self.orders.values() if o.side is side) >= self._slots[side]:
                return False
        elif (order := self.orders.get(action.order_id)) is None:
            return False
        elif action.kind == "cancel":
            return order.status is not OrderStatus.PENDING_CANCEL
        elif order.pending is not None:
            return False
        # an order being cancelled is out of the way, as in decide()
        price = action.price
        return not any(o.side is not side and o.pending != "cancel"
                       and (o.price - price) * side <= 0 for o in self.orders.values())

    def sent(self, action: OrderAction) -> None:
        """Record that ``action`` goes to the exchange: its order now waits for the venue.

        Called before the request is handed over, because a simulated venue may answer
        within the call.
        """
        if action.kind == "place":
            order = LiveOrder(action.order_id, action.side, action.price, action.size)
            self.orders[order.order_id] = order
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
