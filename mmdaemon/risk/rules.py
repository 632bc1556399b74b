"""Pre-trade checks: every order action passes here before it reaches the exchange.

Pure and synchronous; time is the event time passed in (ns). A failed check returns why,
as a stable code (one of :data:`BLOCK_REASONS`, for counts) and as text with the figures,
and the action is not sent.
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
    """Limits on single orders. Sizes in lots, band in bps of fair value, rate per second."""

    max_order_lots: int
    price_band_bps: float
    max_open_orders: int
    max_orders_per_s: float
    burst: int


class PreTradeChecks:
    """Max order size, price band around fair value, max open orders, order rate."""

    def __init__(self, limits: PreTradeLimits) -> None:
        self.limits = limits
        self._tokens = float(limits.burst)
        self._last_ns = 0

    def check(self, action: OrderAction, fair_ticks: float, open_orders: int,
              now_ns: int) -> Blocked | None:
        """None when ``action`` may go out, else why not. Cancels always pass.

        ``open_orders`` counts our open orders, not yet the one being placed.
        """
        if action.kind == "cancel":
            return None
        lim = self.limits
        if action.size > lim.max_order_lots:
            return Blocked(MAX_ORDER_SIZE,
                           f"size {action.size} lots > max_order_lots {lim.max_order_lots}", False)
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
