"""Paper exchange: the adapter shell around the simulated venue of :mod:`.fill_model`.

Time is event time: the daemon's event clock (the receive time of the market event being
processed, or its exchange time), so a replay at any speed produces the same orders and
fills. The shell adds the three delays of :mod:`.latency` on one timeline:

- The daemon sees the market ``feed`` later than the venue. The recorded market is placed on
  the daemon's clock, so the venue's market is that same market ``feed`` earlier: a request
  sent at ``t`` meets the market the daemon will see at ``t + entry + feed``. That is when it
  takes effect here.
- A report the venue makes at venue time ``v`` reaches the daemon at ``v + response``, i.e.
  at daemon time ``t + response - feed`` for something the venue did when the daemon's clock
  showed ``t``; never before ``t`` itself: the daemon cannot learn the outcome of a market
  event before the replay has reached it (with ``response < feed`` reports arrive up to
  ``feed - response`` late; say so when choosing such figures).
- Reports travel in one FIFO stream, like a user-data connection.

Ordering rules (strict, no look-ahead): the daemon calls :meth:`PaperExchange.advance` to an
event's time *before* applying that event to its book, and :meth:`PaperExchange.next_due_ns`
tells it when the next request arrives or report is due between events, so every request
takes effect against the market as it stood at its arrival and every report is delivered at
its own time. Placing, cancelling and amending return their local answer at once
(PENDING_NEW, PENDING_CANCEL, a parameter refusal); everything the venue decides is a report.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from mmdaemon.book import OrderBook
from mmdaemon.exchange.base import Listener, StatusListener, VenueStatus
from mmdaemon.exchange.fill_model import PaperVenue
from mmdaemon.exchange.latency import LatencyModel
from mmdaemon.model import ExecutionEvent, Side, Trade, VenueEvent


def _drop(event: VenueEvent) -> None:
    """Listener before one is set."""


def _ignore_status(status: VenueStatus) -> None:
    """Status listener before one is set."""


class _EntryAndFeed:
    """Entry latency as the shell's timeline sees it: entry + feed (see the module docs)."""

    __slots__ = ("_entry", "_feed")

    def __init__(self, model: LatencyModel) -> None:
        self._entry = model.entry
        self._feed = model.feed

    def draw(self) -> int:
        return self._entry.draw() + self._feed.draw()


class PaperExchange:
    """:class:`~mmdaemon.exchange.base.ExchangeAdapter` over a :class:`PaperVenue`.

    Build the venue with :meth:`venue_entry` as its ``entry`` latency so requests arrive
    ``entry + feed`` after they were sent.
    """

    def __init__(self, venue: PaperVenue, latency: LatencyModel,
                 event_ns: Callable[[], int]) -> None:
        """``event_ns``: the daemon's event clock (ns), read when a request is sent."""
        self.venue = venue
        self.latency = latency
        self._event_ns = event_ns
        self._listener: Listener = _drop
        self._status: StatusListener = _ignore_status
        self._reports: deque[tuple[int, ExecutionEvent]] = deque()  # (due ns, report), FIFO
        self._last_due = 0  # due time of the newest report queued: the stream stays FIFO
        self._due: int | None = None  # next_due_ns(), refreshed by every change

    @staticmethod
    def venue_entry(latency: LatencyModel) -> _EntryAndFeed:
        """The ``entry`` latency to build the :class:`PaperVenue` with."""
        return _EntryAndFeed(latency)

    def set_listener(self, listener: Listener) -> None:
        self._listener = listener

    def set_status_listener(self, listener: StatusListener) -> None:
        self._status = listener

    def set_round_trip_listener(self, listener: Callable[[int], None]) -> None:
        """No wire: the simulated delays are the model's own (:mod:`.latency`)."""

    def resume_fills_after(self, exec_id: int) -> None:
        """An in-process venue starts empty: nothing was missed."""

    def resume_funding_after(self, funding_id: int) -> None:
        """The paper venue books no funding."""

    async def start(self) -> None:
        """In-process: always ready."""
        self._status(VenueStatus(True, "paper exchange"))

    async def close(self, timeout_s: float | None = None) -> None:
        """Nothing to disconnect."""

    # ---- the timeline ---------------------------------------------------------------------

    def next_due_ns(self) -> int | None:
        """When the venue next acts or a report is next due (ns), or None: nothing pending.

        Asked before every frame, so it is kept up to date by every call that changes it
        rather than computed here."""
        return self._due

    def _refresh_due(self) -> None:
        venue_due = self.venue.next_due_ns()
        if self._reports:
            report_due = self._reports[0][0]
            if venue_due is None or report_due < venue_due:
                venue_due = report_due
        self._due = venue_due

    def advance(self, now_ns: int) -> None:
        """Requests that reach the venue by ``now_ns`` take effect (against the book as it
        stands: call this before applying an event at ``now_ns``), then every report due by
        ``now_ns`` is delivered, in order."""
        venue, reports = self.venue, self._reports
        while True:  # one step at a time, in time order: each acts and reports at its own time
            due = venue.next_due_ns()
            if due is not None and due <= now_ns and (not reports or due <= reports[0][0]):
                self._report(venue.advance(due), due)
            elif reports and reports[0][0] <= now_ns:
                self._listener(reports.popleft()[1])
            else:
                self._refresh_due()
                return

    def _report(self, events: Iterable[ExecutionEvent], now_ns: int) -> None:
        """Queue what the venue did at ``now_ns`` (daemon clock) for delivery."""
        for event in events:
            due = now_ns + self.latency.response.draw() - self.latency.feed.draw()
            if due < now_ns:
                due = now_ns  # not before the replay reaches the event (module docstring)
            if due < self._last_due:
                due = self._last_due
            self._last_due = due
            self._reports.append((due, event))

    def _deliver(self, now_ns: int) -> None:
        reports, listener = self._reports, self._listener
        while reports and reports[0][0] <= now_ns:
            listener(reports.popleft()[1])

    def _emit(self, events: Iterable[ExecutionEvent]) -> None:
        """Local answers (our own state, known at once): straight to the listener."""
        listener = self._listener
        for event in events:
            listener(event)

    # ---- requests -------------------------------------------------------------------------

    async def place(self, order_id: int, side: Side, price: int, size: int,
                    reduce_only: bool = False) -> None:
        self._emit(self.venue.place(order_id, side, price, size, self._event_ns(),
                                    reduce_only=reduce_only))
        self._refresh_due()

    async def cancel(self, order_id: int) -> None:
        self._emit(self.venue.cancel(order_id, self._event_ns()))
        self._refresh_due()

    async def amend(self, order_id: int, price: int, size: int) -> None:
        self._emit(self.venue.amend(order_id, price, size, self._event_ns()))
        self._refresh_due()

    async def flush(self) -> None:
        """Nothing to write out: the simulated venue took each request within its call."""

    async def cancel_all(self) -> int:
        """Send a cancel for every open order that has none in flight; the number sent.

        It does not wait: in a replay the market goes on while the cancels travel, and an
        order can still fill until its cancel arrives. The daemon sees the confirmations as
        they come (:meth:`open_order_count` falls to 0), and at a stop, with no market left,
        lets everything in flight arrive (``Service._settle``)."""
        sent = self.venue.cancel_all(self._event_ns())
        self._emit(sent)
        self._refresh_due()
        return len(sent)

    def account(self) -> str:
        return "paper"

    def fills_watermark(self) -> int | None:
        return None  # in-process: no account history to resume from

    def funding_watermark(self) -> int | None:
        return None  # in-process: no funding

    def open_order_count(self) -> int:
        return len(self.venue.open_orders())

    def open_order_names(self) -> list[str]:
        return [str(order.order_id) for order in self.venue.open_orders()]

    # ---- market events (after advance to their time) ----------------------------------------

    def on_book(self, book: OrderBook, now_ns: int) -> None:
        self._matched(self.venue.on_book(book, now_ns), now_ns)

    def on_trade(self, trade: Trade, now_ns: int) -> None:
        self._matched(self.venue.on_trade(trade, now_ns), now_ns)

    def _matched(self, events: list[ExecutionEvent], now_ns: int) -> None:
        """What the venue did on a market event at ``now_ns``: reports on their way."""
        if events:
            self._report(events, now_ns)
            self._deliver(now_ns)
            self._refresh_due()
