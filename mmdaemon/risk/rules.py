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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from mmdaemon.orders.manager import OrderAction

MAX_ORDER_SIZE = "max_order_size"
PRICE_BAND = "price_band"
MAX_OPEN_ORDERS = "max_open_orders"
ORDER_RATE = "order_rate"
BLOCK_REASONS: tuple[str, ...] = (MAX_ORDER_SIZE, PRICE_BAND, MAX_OPEN_ORDERS, ORDER_RATE)
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
              now_ns: int, side_lots: int = 0, position: int = 0) -> Blocked | None:
        """None when ``action`` may go out, else why not. Cancels always pass.

        ``open_orders`` counts our open orders, not yet the one being placed; ``side_lots``
        the lots open on the action's side in our other orders; ``position`` is in lots.
        ``side_lots + action.size`` is the side's open total once the action applies (see
        :meth:`mmdaemon.orders.manager.OrderManager.lots_besides`).
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
