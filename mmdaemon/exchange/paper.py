"""Paper exchange: the adapter shell around the simulated venue of :mod:`.fill_model`.

Time is event time: the receive time of the market event being processed, so a replay at
any speed produces the same orders and fills. Requests take effect after the configured
latency (in event time); ``cancel_all`` confirms by advancing the venue's clock by one
latency, which is what a real venue's confirmation would cost.
"""

from __future__ import annotations

from collections.abc import Iterable

from mmdaemon.book import OrderBook
from mmdaemon.exchange.base import Listener, StatusListener, VenueStatus
from mmdaemon.exchange.fill_model import PaperVenue
from mmdaemon.model import ExecutionEvent, Side, Trade


def _drop(event: ExecutionEvent) -> None:
    """Listener before one is set."""


def _ignore_status(status: VenueStatus) -> None:
    """Status listener before one is set."""


class PaperExchange:
    """:class:`~mmdaemon.exchange.base.ExchangeAdapter` over a :class:`PaperVenue`."""

    def __init__(self, venue: PaperVenue, latency_ns: int) -> None:
        self.venue = venue
        self.latency_ns = latency_ns
        self.now_ns = 0
        self._listener: Listener = _drop
        self._status: StatusListener = _ignore_status

    def set_listener(self, listener: Listener) -> None:
        self._listener = listener

    def set_status_listener(self, listener: StatusListener) -> None:
        self._status = listener

    def resume_fills_after(self, exec_id: int) -> None:
        """An in-process venue starts empty: nothing was missed."""

    async def start(self) -> None:
        """In-process: always ready."""
        self._status(VenueStatus(True, "paper exchange"))

    async def close(self, timeout_s: float | None = None) -> None:
        """Nothing to disconnect."""

    def _emit(self, events: Iterable[ExecutionEvent]) -> None:
        listener = self._listener
        for event in events:
            listener(event)

    async def place(self, order_id: int, side: Side, price: int, size: int) -> None:
        self._emit(self.venue.place(order_id, side, price, size, self.now_ns))

    async def cancel(self, order_id: int) -> None:
        self._emit(self.venue.cancel(order_id, self.now_ns))

    async def amend(self, order_id: int, price: int, size: int) -> None:
        self._emit(self.venue.amend(order_id, price, size, self.now_ns))

    async def flush(self) -> None:
        """Nothing to write out: the simulated venue took each request within its call."""

    async def cancel_all(self) -> int:
        count = len(self.venue.open_orders())
        self._emit(self.venue.cancel_all(self.now_ns))
        # every request in flight was sent by now, so all have arrived one latency later
        self.now_ns += self.latency_ns
        self._emit(self.venue.advance(self.now_ns))
        return count

    def account(self) -> str:
        return "paper"

    def fills_watermark(self) -> int | None:
        return None  # in-process: no account history to resume from

    def open_order_count(self) -> int:
        return len(self.venue.open_orders())

    def open_order_names(self) -> list[str]:
        return [str(order.order_id) for order in self.venue.open_orders()]

    def on_book(self, book: OrderBook, now_ns: int) -> None:
        self.now_ns = now_ns
        self._emit(self.venue.on_book(book, now_ns))

    def on_trade(self, trade: Trade, now_ns: int) -> None:
        self.now_ns = now_ns
        self._emit(self.venue.on_trade(trade, now_ns))
