"""Pre-trade checks: every order action passes here before it reaches the exchange.

Pure and synchronous; time is the event time passed in (ns). A failed check returns why,
as a stable code (one of :data:`BLOCK_REASONS`, for counts) and as text with the figures,
and the action is not sent.

Per order: size, price band, open orders, rate. In total, per side: the lots open on the
action's side over all our orders once the action applies (an amend replaces its order's
open size) against ``max_side_open_lots``, and with the position against the hard inventory
limit (a complete fill of the side must not carry ``|position|`` beyond
``inventory_hard_lots``; reaching it trips the breaker, as it always has). Both
are counted under ``max_order_size``: the size the order would add is what is too large.

What the account can carry (``insufficient_balance``), once the venue has reported its
:class:`~mmdaemon.model.Balances` (the paper exchange and a replay never do: there is no such
check there). Spot: a sell whose lots plus our other open sells' exceed the base asset
held, a buy whose notional plus our other open buys' exceeds the quote asset held (both
free plus locked in our orders, so our own open orders count against them once). Futures
(no base balance): an order whose position-increasing part (the lots beyond closing the
position), as initial margin (notional / leverage), exceeds the margin available to open
positions; the venue's available margin already nets the margin of our other open orders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from mmdaemon.model import Balances, Side
from mmdaemon.orders.manager import OrderAction

MAX_ORDER_SIZE = "max_order_size"
PRICE_BAND = "price_band"
MAX_OPEN_ORDERS = "max_open_orders"
ORDER_RATE = "order_rate"
INSUFFICIENT_BALANCE = "insufficient_balance"
BLOCK_REASONS: tuple[str, ...] = (MAX_ORDER_SIZE, PRICE_BAND, MAX_OPEN_ORDERS, ORDER_RATE,
                                  INSUFFICIENT_BALANCE)
"""The codes of :attr:`Blocked.code`, one per check."""


class Blocked(NamedTuple):
    """Why an action may not go out: ``code`` (one of :data:`BLOCK_REASONS`) and ``reason``,
    the text with the figures. ``retry``: only the rate limit stopped it; the order at the
    venue is still within every other limit, so leave it and try again later."""

    code: str
    reason: str
    retry: bool


@dataclass(frozen=True)
class PreTradeLimits:
    """Limits on single orders and on a side's total. Sizes in lots, band in bps of fair
    value, rate per second; ``max_side_open_lots`` and ``inventory_hard_lots`` 0: that
    total is not checked."""

    max_order_lots: int
    price_band_bps: float
    max_open_orders: int
    max_orders_per_s: float
    burst: int
    max_side_open_lots: int = 0
    inventory_hard_lots: int = 0


class PreTradeChecks:
    """Max order size, price band around fair value, max open orders, order rate."""

    def __init__(self, limits: PreTradeLimits) -> None:
        self.limits = limits
        self._tokens = float(limits.burst)
        self._last_ns = 0

    def check(self, action: OrderAction, fair_ticks: float, open_orders: int,
              now_ns: int, side_lots: int = 0, position: int = 0,
              balances: Balances | None = None, side_notional: int = 0) -> Blocked | None:
        """None when ``action`` may go out, else why not. Cancels always pass.

        ``open_orders`` counts our open orders, not yet the one being placed; ``side_lots``
        the lots open on the action's side in our other orders; ``position`` is in lots.
        ``side_lots + action.size`` is the side's open total once the action applies (see
        :meth:`mmdaemon.orders.manager.OrderManager.lots_besides`); likewise
        ``side_notional + action.price * action.size`` its notional (ticks x lots; only
        read for a spot buy). ``balances``: the venue's last report, None: not checked.
        """
        if action.kind == "cancel":
            return None
        lim = self.limits
        if action.size > lim.max_order_lots:
            return Blocked(MAX_ORDER_SIZE,
                           f"size {action.size} lots > max_order_lots {lim.max_order_lots}", False)
        total = side_lots + action.size
        if 0 < lim.max_side_open_lots < total:
            return Blocked(MAX_ORDER_SIZE, f"{action.side.name} side open {total} lots > "
                           f"risk.max_side_open_lots {lim.max_side_open_lots}", False)
        if lim.inventory_hard_lots and abs(position + total * action.side) > \
                lim.inventory_hard_lots:
            return Blocked(MAX_ORDER_SIZE, f"a complete fill of the {action.side.name} side "
                           f"({total} lots) takes position {position} beyond the hard limit "
                           f"risk.inventory_hard_lots {lim.inventory_hard_lots}", False)
        if balances is not None and (short := _short_of(
                balances, action, total, side_notional, position)):
            return Blocked(INSUFFICIENT_BALANCE, short, False)
        if fair_ticks > 0:
            off_bps = abs(action.price - fair_ticks) / fair_ticks * 1e4
            if off_bps > lim.price_band_bps:
                return Blocked(
                    PRICE_BAND,
                    f"price {action.price} is {off_bps:.1f} bps from fair > {lim.price_band_bps}",
                    False,
                )
        if action.kind == "place" and open_orders >= lim.max_open_orders:
            return Blocked(MAX_OPEN_ORDERS,
                           f"{open_orders} open orders >= max_open_orders {lim.max_open_orders}",
                           False)
        # token bucket on event time: `burst` orders at once, refilled at max_orders_per_s
        elapsed_s = max(0, now_ns - self._last_ns) / 1e9
        self._last_ns = now_ns
        self._tokens = min(float(lim.burst), self._tokens + elapsed_s * lim.max_orders_per_s)
        if self._tokens < 1:
            return Blocked(ORDER_RATE, f"order rate above {lim.max_orders_per_s}/s", True)
        self._tokens -= 1
        return None


def _short_of(balances: Balances, action: OrderAction, side_lots: int, side_notional: int,
              position: int) -> str:
    """What the account lacks to carry ``action`` (its side's open total ``side_lots``
    lots, and ``side_notional`` of the other orders on its side), or "" if it can."""
    side = action.side
    if balances.base_lots is not None:  # spot: sell what we hold, buy with what we have
        if side is Side.SELL:
            if side_lots > balances.base_lots:
                return (f"SELL side open {side_lots} lots > the base balance "
                        f"{balances.base_lots} lots")
            return ""
        notional = side_notional + action.price * action.size
        if notional > balances.quote_units:
            return (f"BUY side open notional {notional} units > the quote balance "
                    f"{balances.quote_units} units")
        return ""
    closing = max(0, -int(side) * position)  # lots of the order that close the position
    opening = max(0, action.size - closing)
    leverage = max(1, balances.leverage)
    margin = action.price * opening
    if margin > balances.quote_units * leverage:  # notional / leverage > available margin
        return (f"{side.name} {opening} lots opening the position at {action.price} ticks: "
                f"initial margin {margin / leverage:.0f} units (leverage {leverage}) > the "
                f"available margin {balances.quote_units} units")
    return ""
