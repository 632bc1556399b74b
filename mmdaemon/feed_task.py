"""The feed task: frames from the feed into the engine, in strict time order.

Where a frame enters: :meth:`FeedTask.run` hands each frame to :meth:`FeedTask.on_frame`
(into :meth:`mmdaemon.engine.Engine.on_frame`, the hot path) and the order actions it
returns to the :class:`~mmdaemon.order_sender.OrderSender`. Before each event, a simulated
venue acts on everything due by then (:meth:`FeedTask.venue_until`; requests and reports due
*between* events come through :meth:`FeedTask.catch_up` at their own times), so a fill
report never precedes the event that caused it and an order never acts on a market it could
not have seen (docs/simulation.md). Live, a batch that waited longer than
``feed.max_lag_ms`` is dropped with the feed's backlog and the book (``feed_shed``): the
daemon must not quote on a market that is gone.

A reference venue's frames (:mod:`mmdaemon.reference`) come in the same batches, in the same
time order (a replay merges the recordings, a live run both websocket feeds:
:func:`~mmdaemon.feed.websocket.with_reference`), into
:meth:`~mmdaemon.engine.Engine.on_reference_frame`; the reference's own snapshots are
fetched when the engine asks (``reference_need_snapshot``), and its reconnects reach
:meth:`~mmdaemon.engine.Engine.on_reference_reconnected`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from time import perf_counter_ns
from typing import Any, cast

from mmdaemon.engine import NOT_DECIDED, Engine
from mmdaemon.exchange.base import ExchangeAdapter
from mmdaemon.feed.recording import RecordedFrame
from mmdaemon.feed.websocket import Reconnected, ReferenceReconnected, WebsocketFeed
from mmdaemon.market import Decoded
from mmdaemon.model import Malformed
from mmdaemon.order_sender import OrderSender
from mmdaemon.orders.manager import OrderAction
from mmdaemon.reference import ReferenceFrame, ReferenceMalformed

FeedItem = (RecordedFrame | Malformed | Reconnected | Decoded | ReferenceFrame
            | ReferenceMalformed | ReferenceReconnected)
"""What a feed batch holds: a raw frame, a line that was not one, a new connection, or a
row decoded elsewhere (LOBSTER); or the reference feed's frame, bad line or connection."""


class FeedTask:
    """One run of the feed through ``engine``; order actions leave through ``sender``.
    ``tick_to_quote`` observes, in ns, each frame's way from its arrival (before decoding)
    to the order actions decided, on frames that made the engine decide a quote."""

    def __init__(self, engine: Engine, exchange: ExchangeAdapter, live: WebsocketFeed | None,
                 sender: OrderSender, tick_to_quote: Callable[[int], None],
                 monotonic_ns: Callable[[], int], max_lag_ns: int, log: Any,
                 reference: WebsocketFeed | None = None) -> None:
        self.engine = engine
        self.exchange = exchange
        self.live = live
        self.reference = reference  # the reference venue's live feed, if any
        self.send = sender.send
        self.pull = sender.pull
        self.tick_to_quote = tick_to_quote
        # bound once: the per-frame path reads them on every frame
        self._next_due = exchange.next_due_ns
        self._engine_on_frame = engine.on_frame
        self.monotonic_ns = monotonic_ns
        self.max_lag_ns = max_lag_ns
        self.log = log
        self.last_frame_mono = 0  # monotonic time the latest batch arrived, 0 before any
        self.lag_max_ns = 0  # live: the longest a frame waited to be processed
        self.backlog_max = 0  # live: the most frames queued at the feed at once
        self.reference_frames = 0  # reference frames handed to the engine
        self.reference_last_ns = 0  # receive time of the latest of them, 0 before any
        # the receive stamp of the frame whose order actions are being sent now, 0 when
        # none: what an order frame written meanwhile was caused by (wire-to-wire, #23)
        self.cause_ns = 0

    async def run(self, batches: AsyncIterator[Sequence[FeedItem]]) -> None:
        """Until the feed ends (a recording) or the task is cancelled (live)."""
        engine, live, monotonic, send = self.engine, self.live, self.monotonic_ns, self.send
        on_frame, next_due, market = self.on_frame, self.exchange.next_due_ns, engine.market
        on_decoded, on_reference = self.on_decoded, self.on_reference
        async for batch in batches:
            self.last_frame_mono = monotonic()
            if live is not None and self._fell_behind(batch, live):
                if engine.cancel_due:  # pull the quotes made on the old market now
                    await self.pull()
                continue
            for item in batch:
                kind = type(item)
                due = next_due()
                if due is not None and (kind is tuple or kind is Decoded
                                        or kind is ReferenceFrame):
                    at = cast(int, item[0])  # a frame's or decoded row's event time
                    if due < at:
                        await self.catch_up(at)
                if kind is tuple:
                    actions = on_frame(*item)
                    if actions:
                        self.cause_ns = item[0]  # type: ignore[assignment]
                        await send(actions)
                        self.cause_ns = 0
                    if engine.need_snapshot and live is not None:
                        engine.need_snapshot = False
                        live.request_snapshot()
                elif kind is Decoded:
                    actions = on_decoded(item)  # type: ignore[arg-type]
                    if actions:
                        await send(actions)
                elif kind is ReferenceFrame:
                    actions = on_reference(*item)
                    if actions:
                        self.cause_ns = item[0]  # type: ignore[assignment]
                        await send(actions)
                        self.cause_ns = 0
                elif kind is Reconnected:
                    engine.on_reconnected(item.recv_ns)  # type: ignore[union-attr]
                elif kind is ReferenceReconnected:
                    engine.on_reference_reconnected(item.recv_ns)  # type: ignore[union-attr]
                elif kind is ReferenceMalformed:
                    engine.reference.market.on_malformed(  # type: ignore[union-attr]
                        item.malformed)  # type: ignore[union-attr]
                else:
                    market.on_malformed(item)  # type: ignore[arg-type]
                if engine.cancel_due:
                    await self.pull()
        self.log.info("feed_ended", frames=market.frames)

    def on_frame(self, recv_ns: int, frame: bytes) -> list[OrderAction]:
        """The hot path: one frame into the engine, after a simulated venue has acted on
        everything due by its time (:meth:`venue_until`, inlined: this runs per frame)."""
        t0 = perf_counter_ns()
        due = self._next_due()
        if due is not None and due <= recv_ns:
            self._advance_to(recv_ns)
        actions = self._engine_on_frame(recv_ns, frame)
        if actions is not NOT_DECIDED:
            self.tick_to_quote(perf_counter_ns() - t0)
        return actions

    def on_reference(self, recv_ns: int, frame: bytes) -> list[OrderAction]:
        """:meth:`on_frame` for a frame of the reference feed (its own codec and book); a
        snapshot of the reference fetched if the engine asks for one (live)."""
        t0, engine = perf_counter_ns(), self.engine
        self.venue_until(recv_ns)
        self.reference_frames += 1
        self.reference_last_ns = recv_ns
        actions = engine.on_reference_frame(recv_ns, frame)
        if actions is not NOT_DECIDED:
            self.tick_to_quote(perf_counter_ns() - t0)
        if engine.reference_need_snapshot and self.reference is not None:
            engine.reference_need_snapshot = False
            self.reference.request_snapshot()
        return actions

    def on_decoded(self, decoded: Decoded) -> list[OrderAction]:
        """:meth:`on_frame` for a row decoded elsewhere (LOBSTER)."""
        t0, engine, event_ns = perf_counter_ns(), self.engine, decoded.recv_ns
        self.venue_until(event_ns)
        engine.before_event(event_ns)
        actions = engine.on_events(event_ns, engine.market.on_decoded(decoded))
        if actions is not NOT_DECIDED:
            self.tick_to_quote(perf_counter_ns() - t0)
        return actions

    def venue_until(self, event_ns: int) -> None:
        """Strict time order, before the event at ``event_ns`` is applied: what reaches a
        simulated venue by then acts on the market as it stood."""
        due = self._next_due()
        if due is not None and due <= event_ns:
            self._advance_to(event_ns)

    def _advance_to(self, event_ns: int) -> None:
        self.engine.hold_time(event_ns)  # the reports delivered now arrive at its time
        self.exchange.advance(self.engine.now_ns)

    async def catch_up(self, until_ns: int) -> None:
        """A simulated venue's requests and reports due before the next event at
        ``until_ns``, each at its own time: a report can requote (a fill) or pull quotes (a
        breaker) before the market moves on, as it would live."""
        exchange, engine = self.exchange, self.engine
        while (due := exchange.next_due_ns()) is not None and due < until_ns:
            engine.hold_time(due)
            exchange.advance(due)
            if engine.cancel_due:
                await self.pull()
            elif engine.requote:
                actions = engine.decide(engine.now_ns)
                if actions:
                    await self.send(actions)

    def settle(self) -> bool:
        """The market is over (a stop, or the recording ended): let everything a simulated
        venue has in flight arrive, each at its own time. True if anything was."""
        settled = False
        while (due := self.exchange.next_due_ns()) is not None:
            self.engine.hold_time(due)
            self.exchange.advance(self.engine.now_ns)
            settled = True
        return settled

    def _fell_behind(self, batch: Sequence[FeedItem], live: WebsocketFeed) -> bool:
        """Live, once per batch: how long its oldest frame waited since it was read (ns);
        beyond ``max_lag_ns`` the batch, the feed's backlog and the book are dropped (HALTED
        at once, no quote on it), and the feed reconnects for a fresh snapshot."""
        first = batch[0]  # live: a frame (recv_ns, bytes) or a Reconnected marker
        recv_ns = first.recv_ns if isinstance(first, Reconnected | ReferenceReconnected) \
            else cast(int, first[0])
        lag_ns = live.now_ns() - recv_ns
        self.lag_max_ns = max(self.lag_max_ns, lag_ns)
        self.backlog_max = max(self.backlog_max, live.backlog)
        if lag_ns <= self.max_lag_ns:
            return False
        dropped = live.shed() + len(batch)
        if self.reference is not None:  # queued behind the same delay: as stale
            dropped += self.reference.shed()
            self.engine.on_reference_reconnected(recv_ns)
        # rounded up to the us: the rule is strictly over the limit, and so is the figure
        self.log.warning("feed_shed", lag_ms=-(-lag_ns // 1000) / 1000, dropped=dropped,
                         limit_ms=self.max_lag_ns // 1_000_000)
        self.engine.on_reconnected(recv_ns)
        return True
