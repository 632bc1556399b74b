"""The exchange adapter protocol: how the daemon talks to a venue, live or simulated.

Requests are async (they may cross a network); the venue's answers (order updates and
fills) come back through the listener, in the order the venue produced them. ``cancel_all``
returns only once every order is confirmed closed: the kill switch and the graceful stop
rely on that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from mmdaemon.book import OrderBook
from mmdaemon.model import ExecutionEvent, Side, Trade

Listener = Callable[[ExecutionEvent], None]


class ExchangeAdapter(Protocol):
    """Order entry for one instrument. Prices in ticks, sizes in lots."""

    def set_listener(self, listener: Listener) -> None:
        """Where order updates and fills go."""

    async def place(self, order_id: int, side: Side, price: int, size: int) -> None: ...

    async def cancel(self, order_id: int) -> None: ...

    async def amend(self, order_id: int, price: int, size: int) -> None: ...

    async def cancel_all(self) -> int:
        """Cancel every open order and wait for the confirmations; returns how many."""
        ...

    def open_order_count(self) -> int:
        """Orders the venue holds open for us, as far as the adapter knows."""
        ...

    def on_book(self, book: OrderBook, now_ns: int) -> None:
        """Market data the venue sees (a simulated venue fills against it; live ignores it)."""

    def on_trade(self, trade: Trade, now_ns: int) -> None: ...
