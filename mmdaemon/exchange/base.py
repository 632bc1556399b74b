"""The exchange adapter protocol: how the daemon talks to a venue, live or simulated.

Requests are async (they may cross a network); the venue's answers (order updates and
fills) and what it says of the account (funding payments, balances: ``AccountEvent``) come
back through the listener, in the order the venue produced them. ``cancel_all``
returns only once every order is confirmed closed: the kill switch and the graceful stop
rely on that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

from mmdaemon.book import OrderBook
from mmdaemon.model import Side, Trade, VenueEvent
from mmdaemon.model import VenueRefused as VenueRefused  # the protocol's refusal, re-exported

Listener = Callable[[VenueEvent], None]


class VenueStatus(NamedTuple):
    """Whether order entry is usable: connected, subscribed to our executions, reconciled.

    ``ready`` False pulls every quote (the daemon goes HALTED) until it is True again.
    ``retry_in_s`` is set when a connection attempt has just failed: the seconds until the
    next one (``reason`` then says why the venue could not be reached).
    """

    ready: bool
    reason: str
    retry_in_s: float | None = None


StatusListener = Callable[[VenueStatus], None]


class ExchangeAdapter(Protocol):
    """Order entry for one instrument. Prices in ticks, sizes in lots."""

    def set_listener(self, listener: Listener) -> None:
        """Where order updates, fills, funding payments and balances go."""

    def set_status_listener(self, listener: StatusListener) -> None:
        """Where readiness changes go (connection lost, reconciled again, rate-limited)."""

    def set_round_trip_listener(self, listener: Callable[[int], None]) -> None:
        """Where each order-entry request's round trip (sent -> answered, ns, monotonic)
        goes; an in-process venue has none to report."""

    def resume_fills_after(self, exec_id: int) -> None:
        """Before :meth:`start`: the highest execution id the journal holds, so fills the
        venue reports above it (missed while we were down) are delivered at start."""

    def resume_funding_after(self, funding_id: int) -> None:
        """Before :meth:`start`: the highest funding id the journal holds, so payments the
        venue booked above it (missed while we were down) are delivered at start; not called
        for a journal that holds none. A venue without funding (spot, paper) ignores it."""

    async def start(self) -> None:
        """Connect and reconcile with the venue; returns once order entry is ready.

        A venue that cannot be reached is retried for as long as it takes (the status says
        why, and when the next attempt is); :class:`VenueRefused` when retrying cannot help.
        """

    async def close(self, timeout_s: float | None = None) -> None:
        """Disconnect (after the daemon's final cancel-all), within ``timeout_s`` seconds
        when given: a venue that does not answer the close is cut off then."""

    async def place(self, order_id: int, side: Side, price: int, size: int,
                    reduce_only: bool = False) -> None:
        """A post-only limit order. ``reduce_only``: the venue must refuse it if it would
        increase the position (futures: Binance -2022); a venue without the notion (spot)
        ignores it, and the engine's REDUCING gate is what keeps such orders reducing."""

    async def cancel(self, order_id: int) -> None: ...

    async def amend(self, order_id: int, price: int, size: int) -> None: ...

    async def flush(self) -> None:
        """After the order actions of one frame: let the requests just handed over leave
        before the caller goes on with its next frames (a network adapter yields to the
        event loop once, which writes them out; a simulated venue has nothing to do)."""

    async def cancel_all(self) -> int:
        """Cancel every open order and wait for the confirmations; returns how many."""
        ...

    def account(self) -> str:
        """Which account the orders go to, as a journal may record it without holding a
        secret: a fingerprint of the API key, ``paper`` for the paper exchange."""
        ...

    def fills_watermark(self) -> int | None:
        """After :meth:`start`: the execution id fills are delivered after (the journal
        keeps it, so a restart resumes from it even before the first fill); None for a
        venue that has no history of its own (the paper exchange)."""
        ...

    def funding_watermark(self) -> int | None:
        """After :meth:`start`: the funding id payments are delivered after (the journal
        keeps it, so a restart before the first payment still recovers the payments booked
        while down); None for a venue that pays no funding (spot, the paper exchange)."""
        ...

    def open_order_count(self) -> int:
        """Orders the venue holds open for us, as far as the adapter knows."""
        ...

    def open_order_names(self) -> list[str]:
        """The orders :meth:`open_order_count` counts, as the venue names them (client order
        id, or the venue's order id), for an operator to look up at the venue."""
        ...

    def next_due_ns(self) -> int | None:
        """Event time (ns) at which a simulated venue next acts or reports; None for a live
        venue, which keeps its own time."""

    def advance(self, now_ns: int) -> None:
        """Let a simulated venue act up to ``now_ns``: called before each market event is
        applied (strict time order) and at :meth:`next_due_ns` between events; live: no-op."""

    def on_book(self, book: OrderBook, now_ns: int) -> None:
        """Market data the venue sees (a simulated venue fills against it; live ignores it)."""

    def on_trade(self, trade: Trade, now_ns: int) -> None: ...
