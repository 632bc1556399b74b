"""The trading engine: one instrument's decisions, synchronous and deterministic.

Events in, actions out. The asyncio shell (:class:`mmdaemon.daemon.Service`) moves
events in (:meth:`Engine.on_frame`, :meth:`Engine.on_events`, :meth:`Engine.on_execution`,
:meth:`Engine.supervise`, operator commands :meth:`Engine.kill`, :meth:`Engine.rearm`,
:meth:`Engine.reload`) and carries the order actions they return to the venue. The engine
reads no clock (time is the events' time, ``now_ns``), awaits nothing and opens nothing:
its journal and kill latch are handed to it (:meth:`Engine.restore`), and what it asks of
the shell goes through :class:`EngineShell`.

Where things happen:

- a frame enters at :meth:`Engine.on_frame` (decoded by the venue's codec into the book);
- the quote is decided by the strategy (:mod:`mmdaemon.strategy`: a built-in or a desk's
  own) in :meth:`Engine.decide`, through :class:`~mmdaemon.strategy.guard.StrategyGuard`, as
  a ladder of levels a side;
- risk vetoes it in one place, in this order: the trading state gates the ladder
  (:meth:`Engine.gate`, :mod:`mmdaemon.risk.ladder`: HALTED/KILLED nothing, REDUCING only
  the levels that shrink inventory, every side trimmed to the inventory limits); the
  instrument's grid and minimums cut levels that cannot become orders (counted,
  :mod:`mmdaemon.risk.unsendable`); then, right before each order action leaves,
  :meth:`Engine.vet` checks the state again (a kill may have landed since), that the order
  still applies, and the pre-trade checks (:mod:`mmdaemon.risk.rules`). Breakers
  (:mod:`mmdaemon.risk.breakers`) raise the conditions the state is derived from;
- fills come back through :meth:`Engine.on_execution`, committed to the journal before
  anything acts on them; so do funding payments (journaled once per funding id, then in
  the PnL) and the account's balances (kept for the pre-trade checks);
- every order action sent and every answer of the venue is buffered for the order log
  (:mod:`mmdaemon.orderlog`) and written by :meth:`Engine.persist`.

PnL at the mark, the readers' snapshot and the run's summary are read off this state by
the base class, :class:`mmdaemon.engine_figures.EngineFigures`.
"""

from __future__ import annotations

from collections import deque
from fractions import Fraction
from functools import partial
from typing import Any

import orjson

from mmdaemon.config import Config
from mmdaemon.engine_figures import EngineFigures
from mmdaemon.engine_ports import Counters, EngineShell, Limits, Matcher
from mmdaemon.exchange.latency import LatencyRecorder
from mmdaemon.market import MarketState, snapshot_lost
from mmdaemon.markouts import MarkoutTracker, book_mid_x2, journaled_stats
from mmdaemon.model import (
    Balances,
    BookUpdate,
    Fill,
    Funding,
    Gap,
    Instrument,
    Ladder,
    Malformed,
    MarketEvent,
    OrderStatus,
    OrderUpdate,
    Quote,
    Side,
    TopOfBook,
    Trade,
    VenueEvent,
)
from mmdaemon.orders.manager import OrderAction, OrderManager
from mmdaemon.orders.position import Position
from mmdaemon.records import (
    FILL,
    Latch,
    LatchNotPersisted,
    Records,
    Restored,
    Store,
    answer_event,
)
from mmdaemon.reference import REFERENCE_STALE, Reference
from mmdaemon.risk.breakers import BreakerLimits, Breakers
from mmdaemon.risk.firm import FIRM_NOT_READY, GLOBAL_KILL_REASON
from mmdaemon.risk.ladder import LadderGate
from mmdaemon.risk.rules import PreTradeChecks
from mmdaemon.risk.state import RiskState, TradingState
from mmdaemon.risk.unsendable import Unsendable
from mmdaemon.strategy.api import LimitsView, QueueEstimates, Strategy, StrategyView
from mmdaemon.strategy.builtin import QuoterStrategy
from mmdaemon.strategy.guard import STRATEGY_ERROR, StrategyGuard

RECENT_TRADES = 1000
"""Public trades the strategy view keeps (:attr:`StrategyView.trades`)."""
NOT_DECIDED: list[OrderAction] = []
"""What :meth:`Engine.on_events` returns when the events changed no quoter input: no quote
was decided (the feed task times tick-to-quote on the others). Never appended to."""


class Engine(EngineFigures):
    """One instrument's book, quoting, risk gate, orders, position and kill latch.

    Build it, hand it the journal and latch with :meth:`restore`, then feed it events.
    ``matcher`` sees every market event after the book (the paper exchange fills against
    it); ``live`` says the feed is the venue's own (feed latency is measurable)."""

    def __init__(self, config: Config, instrument: Instrument, market: MarketState,
                 matcher: Matcher, shell: EngineShell, log: Any, limits: Limits,
                 strategy: Strategy, *, currency: str, live: bool = False,
                 log_debug: bool = False, firm: bool = False) -> None:
        self.config = config
        self.instrument = instrument
        self.market = market
        self.book = market.book
        self.matcher = matcher
        self.shell = shell
        self.log = log
        self.currency = currency
        self.live = live
        self.log_debug = log_debug
        self.firm = firm
        # exact markouts of our fills (mmdaemon.markouts): told each event before it applies
        self.markouts = MarkoutTracker(config.report.markout_horizons_s,
                                       partial(book_mid_x2, self.book))
        # the reference venue (mmdaemon.reference), None without a [reference] section
        self.reference = ref = Reference(config.reference, instrument, log) if (
            config.reference) else None
        self.guard = StrategyGuard(strategy, config.plugin.name, instrument,
                                   config.plugin.error_hold_ms * 1_000_000, log,
                                   self._strategy_failing, self._level_cut)
        # the built-ins' quoter: its fair value reads the reference, readers its detector
        self.quoter = strategy.quoter if isinstance(strategy, QuoterStrategy) else None
        if self.quoter is not None:
            self.quoter.attach_reference(ref)
        self.trades: deque[Trade] = deque(maxlen=RECENT_TRADES)  # the view's public trades
        self.queues = QueueEstimates()
        self.ladder_gate = LadderGate(self.instrument, limits.checks)
        self.checks = PreTradeChecks(limits.checks)
        self.breaker_limits = limits.breakers
        self.counters = Counters()
        self.unsendable = Unsendable()  # quote sides that could not become orders, by reason
        self.now_ns = 0  # event time: the time of the latest event
        self.time_backsteps = 0  # events older than the event time before them
        self.last_book_ns = 0
        self.cancel_due = False  # quotes must be pulled now (kill, halt)
        self.requote = False  # a fill changed the inventory since the last quote
        self.need_snapshot = False  # the codec lost sequence: the live feed must fetch one
        self.reference_need_snapshot = False  # the same for the reference feed
        self.venue_ready = False
        self.latencies: LatencyRecorder | None = None  # feed delays kept for --latency-out
        self.balances: Balances | None = None  # the venue's last report; None: not checked
        self._cancelling: int | None = None  # open orders when an unconfirmed pull began
        self._fair = 0.0  # fair value (ticks) of the latest quote: the price band's centre
        self._supervise_interval_ns = config.risk.supervisor_interval_ms * 1_000_000
        self._next_supervise_ns = 0
        self._sample_interval_ns = config.report.sample_ms * 1_000_000
        self._next_sample_ns = 0
        self._saved_peak: Fraction | None = None
        self._pnl_inputs: tuple[int, int, int, int, BreakerLimits] | None = None
        # report rows buffered for the journal; a failed write ends the run
        self.records = Records(shell.wall_ns, self.journal_failed)
        # the latest ladder the strategy wanted, and what the gate let through (None: pulled)
        self._last_wanted = Ladder((), (), 0.0, 0)
        self._last_ladder: Ladder | None = None
        self.run_id = 0
        # set in restore(): they need the journal
        self.journal: Store
        self.latch: Latch
        self.position: Position
        self.risk: RiskState
        self.breakers: Breakers
        self.manager: OrderManager
        self.view: StrategyView

    # -- start ----------------------------------------------------------------------------

    def restore(self, journal: Store, latch: Latch, restored: Restored,
                wall_ns: int) -> None:
        """Take the opened journal and latch and restore: fills, kill, drawdown peak. The
        service starts HALTED until the book is synced and the venue ready (and the firm bus
        has read the global kill latch): no quote before."""
        self.journal, self.latch = journal, latch
        self.records.attach(journal)
        killed, kill_reason = latch.state.killed, latch.state.reason
        self.position = position = Position()
        for fill in restored.fills:  # the same arithmetic as live: a restart changes nothing
            position.apply(fill)
        for funding in restored.funding:
            position.apply_funding(funding.amount)
        self.markouts.restore(journaled_stats(self.markouts.horizons_ns, restored.fills,
                                              journal.markouts()))
        halts: dict[str, dict[str, Any]] = {"book_out_of_sync": {}, "venue_not_ready": {}}
        if self.firm:
            halts[FIRM_NOT_READY] = {}
        if self.reference is not None and self.reference.halt:  # until it is usable
            halts[REFERENCE_STALE] = {"why": "no snapshot yet"}
        self.risk = RiskState(self._on_transition, killed, kill_reason, halts=halts)
        self.breakers = Breakers(self.breaker_limits, self.risk, self.latch_kill)
        self.breakers.peak = self._saved_peak = restored.pnl_peak_units
        self.run_id = restored.run_id
        inst, config = self.instrument, self.config  # so `mmdaemon report` needs nothing more
        journal.put("instrument", orjson.dumps({
            "symbol": inst.symbol, "tick_size": str(inst.tick_size),
            "lot_size": str(inst.lot_size), "venue": config.instrument.venue,
            "inventory_soft_lots": config.risk.inventory_soft_lots,
            "inventory_hard_lots": config.risk.inventory_hard_lots,
            "max_spread_bps": config.report.max_spread_bps,
            "markout_horizons_s": config.report.markout_horizons_s,
        }).decode(), wall_ns)
        self.manager = OrderManager(restored.run_id, config.orders.price_tolerance_ticks,
                                    config.orders.size_tolerance_lots)
        self.view = StrategyView(self.instrument, self.book, self.trades, self.queues,
                                 position, self.manager.orders, self.risk,
                                 self._limits_view(), self.reference)
        self.log.info("journal_restored", path=str(journal.path),
                      fills=len(restored.fills), position_lots=position.position,
                      cash_units=position.cash, fees_units=position.fees,
                      funding_units=position.funding,
                      killed=killed, kill_reason=kill_reason, latch_file=str(latch.path),
                      run_id=restored.run_id)
        # a restored position may already be beyond a limit: judge it before any quote
        self.breakers.check_inventory(position.position)

    # -- market events (the hot path) -----------------------------------------------------

    def on_frame(self, recv_ns: int, frame: bytes) -> list[OrderAction]:
        """One raw frame: decoded into the book, then :meth:`on_events`. The caller has let
        a simulated venue act up to ``recv_ns`` first (strict time order)."""
        self.markouts.before_event(recv_ns)
        return self.on_events(recv_ns, self.market.on_frame(recv_ns, frame))

    def before_event(self, event_ns: int) -> None:
        """An event already decoded elsewhere (a LOBSTER row) is about to apply at
        ``event_ns``: markouts due before it take the mid as the book stands."""
        self.markouts.before_event(event_ns)

    def hold_time(self, event_ns: int) -> None:
        """Move event time forward to ``event_ns`` (never back): a simulated venue's reports
        delivered now arrive at that time."""
        if event_ns > self.now_ns:
            self.now_ns = event_ns

    def on_events(self, recv_ns: int, events: list[MarketEvent]) -> list[OrderAction]:
        """Events already applied to the book, through the matcher, quoter, gate, orders.

        A new quote is decided on every event that changes a quoter input: a book update,
        a loss of sync, or one of our fills (inventory). Time order (docs/simulation.md):
        the venue only matches our resting orders against the events here, and the quote is
        decided last, on the book as it now is."""
        if recv_ns < self.now_ns:
            recv_ns = self._time_went_back(recv_ns)
        self.now_ns = recv_ns
        requote = False
        for event in events:
            kind = type(event)
            if kind is BookUpdate:
                self.last_book_ns = recv_ns
                self.matcher.on_book(self.book, recv_ns)
                self.queues.on_book(self.book, self.manager.orders)
                requote = True
            elif kind is Trade:
                # a public trade does not requote (strategies price from the book); it can
                # fill us, and a fill requotes through self.requote
                self.matcher.on_trade(event, recv_ns)  # type: ignore[arg-type]
                self.trades.append(event)  # type: ignore[arg-type]
                self.view.now_ns = recv_ns
                self.guard.on_trade(event, self.view)  # type: ignore[arg-type]
            elif kind is TopOfBook:
                self.view.now_ns = recv_ns
                self.guard.on_top_of_book(event, self.view)  # type: ignore[arg-type]
            elif kind is Gap:
                self.need_snapshot = True  # live: fetch one; replay: wait for the next
                requote = True
            elif kind is Malformed and snapshot_lost(event, self.book):  # type: ignore[arg-type]
                self.need_snapshot = True
        if self.latencies is not None and self.live and (  # a live feed on wall time only
                apart := self.latencies.feed(recv_ns, events)) is not None:
            self.log.warning("latency_feed_clocks_apart", delay_ms=apart / 1e6,
                             note="the venue's event times are not on our clock: "
                                  "no feed latency is measured from them")
        if recv_ns >= self._next_supervise_ns:
            self._next_supervise_ns = recv_ns + self._supervise_interval_ns
            self.supervise(recv_ns)
        if not (requote or self.requote):
            return NOT_DECIDED
        return self.decide(recv_ns)

    def on_reconnected(self, recv_ns: int) -> None:
        """A new connection (or a shed backlog): the old sequence is gone; halt until a
        snapshot resyncs."""
        self.market.codec.reset()
        self.book.invalidate()
        self.breakers.check_feed(recv_ns, self.last_book_ns, False)

    def on_reference_frame(self, recv_ns: int, frame: bytes) -> list[OrderAction]:
        """One raw frame of the reference feed, into its own codec and book
        (:mod:`mmdaemon.reference`); a new quote when the lead-lag fair value may have moved
        (its top of book changed). The caller has let a simulated venue act up to
        ``recv_ns`` first, as for :meth:`on_frame`."""
        if recv_ns < self.now_ns:
            recv_ns = self._time_went_back(recv_ns)
        self.now_ns = recv_ns
        ref: Reference = self.reference  # type: ignore[assignment]
        moved = ref.on_frame(recv_ns, frame)
        if ref.need_snapshot:  # live: the feed fetches one (and clears the flag)
            self.reference_need_snapshot, ref.need_snapshot = True, False
        if recv_ns >= self._next_supervise_ns:
            self._next_supervise_ns = recv_ns + self._supervise_interval_ns
            self.supervise(recv_ns)
        return self.decide(recv_ns) if moved or self.requote else NOT_DECIDED

    def on_reference_reconnected(self, recv_ns: int) -> None:
        """A new connection of the reference feed: unusable until a snapshot resyncs it."""
        if self.reference is not None:
            self.reference.on_reconnected()
            self.requote |= self.reference.check(max(recv_ns, self.now_ns), self.risk)

    def decide(self, now_ns: int) -> list[OrderAction]:
        """A new quote on the book as it stands, through the risk gate, into order actions."""
        if self.reference is not None:
            self.reference.check(now_ns, self.risk)
        self.requote = False
        self.breakers.check_feed(now_ns, self.last_book_ns, self.book.synced)
        view = self.view
        view.now_ns = now_ns
        ladder = self.guard.quote(view)
        self._fair = ladder.fair
        self.counters.quotes += 1
        gated = self.gate(ladder)
        if gated is not None:
            gated = self.guard.sendable(gated, view)
        self._last_ladder, self._last_wanted = gated, ladder  # the samples read them
        return self.manager.decide(gated)

    def _time_went_back(self, recv_ns: int) -> int:
        """Event time never moves backwards: a frame older than the last (recordings given
        out of order, a wall clock stepped back) is handled at the latest time. Otherwise
        the paper venue would hold requests due in a future that never comes."""
        self.time_backsteps += 1
        if self.time_backsteps == 1:
            self.log.warning("event_time_went_back", frame_ns=recv_ns, held_at_ns=self.now_ns,
                             back_ms=round((self.now_ns - recv_ns) / 1e6, 3))
        return self.now_ns

    # -- the risk gate ---------------------------------------------------------------------

    def gate(self, ladder: Ladder) -> Ladder | None:
        """Risk's veto by trading state and in total (:mod:`mmdaemon.risk.ladder`): REDUCING
        keeps only the levels that shrink inventory, no further than to zero."""
        return self.ladder_gate.gate(ladder, self.risk.state, self.position.position)

    def _level_cut(self, reason: str, side: Side, price: int, wanted: int, size: int) -> None:
        """A level the gate let through that could not become an order (the instrument's
        size grid and minimums, or it would take): counted per quote; logged with the
        figures at the first occurrence of a reason and then once per minute of event
        time."""
        due = self.unsendable.record(reason, self.now_ns)
        if not due:
            return
        inst = self.instrument
        self.log.warning(
            "quote_unsendable", reason=reason, side=side.name, price=price,
            wanted_lots=wanted, size_lots=size,
            wanted_notional=f"{inst.notional(price, wanted):f}",
            min_size_lots=inst.min_size_lots, size_step_lots=inst.size_step_lots,
            min_notional=f"{inst.min_notional:f}", count=due,
            total=self.unsendable.counts[reason])

    def _strategy_failing(self, failing: bool, values: dict[str, Any]) -> None:
        """The strategy started or stopped failing: HALTED (quotes pulled) while it fails."""
        self.risk.set_condition(TradingState.HALTED, STRATEGY_ERROR, failing, **values)

    def _limits_view(self) -> LimitsView:
        checks, breakers = self.checks.limits, self.breaker_limits
        return LimitsView(checks.max_order_lots, checks.max_open_orders, checks.price_band_bps,
                          breakers.inventory_soft_lots, breakers.inventory_hard_lots)

    def _reduces(self, side: Side) -> bool:
        """An order on ``side`` would shrink the position."""
        pos = self.position.position
        return pos < 0 if side is Side.BUY else pos > 0

    def _may_quote(self, action: OrderAction) -> bool:
        """The state allows this action now (cancels always pass)."""
        if action.kind == "cancel":
            return True
        state = self.risk.state
        if state is TradingState.ACTIVE:
            return True
        if state is TradingState.REDUCING:
            return self._reduces(action.side)
        return False

    def vet(self, action: OrderAction, why: str = "") -> OrderAction | None:
        """The last check, right before ``action`` leaves: the venue is up, the state allows
        it, the order it is about still applies, and the pre-trade checks pass. Returns the
        action to send (an amend a check refuses becomes a cancel of the resting order),
        recorded as sent and in the order log; None: nothing leaves. ``why`` is the order
        log's reason ("": it follows the quote)."""
        manager, counters = self.manager, self.counters
        if not self.venue_ready or not self._may_quote(action) or not manager.applies(action):
            return None  # the state or the order changed since the action was decided
        balances = self.balances
        blocked = self.checks.check(
            action, self._fair, manager.open_orders(), self.now_ns,
            manager.lots_besides(action), self.position.position, balances,
            manager.notional_besides(action) if balances is not None else 0)
        if blocked is not None:
            counters.blocked += 1
            due = self.unsendable.record(blocked.code, self.now_ns)
            if due or self.log_debug:
                self.log.warning("order_blocked", kind=action.kind, order_id=action.order_id,
                                 side=action.side.name, price=action.price,
                                 size=action.size, code=blocked.code, reason=blocked.reason,
                                 count=due, total=self.unsendable.counts[blocked.code])
            if blocked.retry or action.kind != "amend":
                return None
            # the resting order no longer matches a quote we may send: pull it
            action = manager.cancel(action.order_id)
            why = blocked.code
        elif action.kind == "place" and self.risk.state is TradingState.REDUCING:
            action = action._replace(reduce_only=True)  # the venue refuses it if it increases
        manager.sent(action)
        if action.kind != "cancel" and self.quoter is None:  # the built-ins read no queue
            self.queues.sent(action, self.book)
        self.records.order(self.now_ns, None, action.kind, action.order_id, action.side,
                        action.price, action.size, None, why)
        if self.log_debug:
            self.log.debug("order_sent", kind=action.kind, order_id=action.order_id,
                           side=action.side.name, price=action.price, size=action.size,
                           ts_ns=self.now_ns)
        if action.kind == "place":
            counters.orders += 1
        elif action.kind == "amend":
            counters.amends += 1
        else:
            counters.cancels += 1
        return action

    def cancel_all(self) -> list[OrderAction]:
        """A cancel for every order we hold open (kill, halt, stop); pass each to
        :meth:`vet` as it is sent."""
        return self.manager.cancel_all()

    def pulled(self, why: str, open_before: int, open_after: int) -> None:
        """A pull of every quote went out with ``open_before`` orders open at the venue and
        ``open_after`` still open after it. One pull can take several calls: a simulated
        venue's cancels travel in event time while the market goes on, a live one may leave
        orders to retry; one line when it starts unconfirmed, one when it is confirmed,
        with the count it started with."""
        if open_after == 0:
            self.cancel_due = False
        first = self._cancelling is None
        if first:
            self._cancelling = open_before
        if open_after == 0:
            self.log.info("orders_cancelled", reason=why, cancelled=self._cancelling,
                          open_after=0)
            self._cancelling = None
        elif first:
            self.log.info("orders_cancel_pending", reason=why, cancelling=open_before,
                          open_after=open_after)

    # -- executions -------------------------------------------------------------------------

    def on_execution(self, event: VenueEvent) -> None:
        """What the venue reports: an answer to one of our orders, a fill, a funding
        payment, or the account's balances (the last one is what the pre-trade checks
        use)."""
        if isinstance(event, Fill):
            self._on_fill(event)
            return
        if isinstance(event, Funding):
            self._on_funding(event)
            return
        if isinstance(event, Balances):
            self.balances = event
            return
        update: OrderUpdate = event
        # before the manager applies it: whether it accepts an amend depends on what is pending
        answer = answer_event(update, self.manager.orders.get(update.order_id))
        if answer is not None:
            self.records.order(self.now_ns, update.ts_ns, answer, update.order_id, update.side,
                            update.price, update.size, update.filled, update.reason)
        self.manager.on_update(update)
        if update.status is OrderStatus.REJECTED:
            self.counters.rejects += 1
            self.log.warning("order_rejected", order_id=update.order_id, reason=update.reason)
            self.breakers.on_reject(self.now_ns, update.reason)

    def _on_fill(self, fill: Fill) -> None:
        # a sample at the fill: the position's step shows in the samples at its own time
        # (the mid at the fill is the fill's own mid before, journaled with it)
        self._sample(self.now_ns)
        if not fill.mid_x2:  # a live venue cannot say: our book as the report arrives
            fill = fill._replace(mid_x2=book_mid_x2(self.book))
        try:
            fresh = self.journal.record_fill(fill)
        except Exception as exc:  # the journal is the promise: without it, stop trading
            self.journal_failed("fill", exc)
            raise
        if not fresh:
            self.log.warning("fill_duplicate_ignored", order_id=fill.order_id,
                             exec_id=fill.exec_id)
            return
        self.records.order(self.now_ns, fill.ts_ns, FILL, fill.order_id, fill.side, fill.price,
                        fill.size, None, "", fill.exec_id, fill.mid_x2 or None)
        position = self.position
        position.apply(fill)
        self.markouts.on_fill(fill)
        self.requote = True
        self.view.now_ns = self.now_ns
        self.guard.on_fill(fill, self.view)
        self.log.info("fill", order_id=fill.order_id, exec_id=fill.exec_id,
                      side=fill.side.name, price=fill.price, size=fill.size, fee=fill.fee,
                      maker=fill.maker, ts_ns=fill.ts_ns, position_lots=position.position)
        self.shell.exposure_changed()
        self.breakers.check_inventory(position.position)
        total = self.marked_pnl_units()
        if total is not None:  # no mark: no PnL to judge
            self.breakers.check_pnl(total)

    def _on_funding(self, funding: Funding) -> None:
        """Journaled first (a payment the venue delivers again is ignored), then in the PnL,
        which the loss breakers judge at once, as after a fill."""
        try:
            fresh = self.journal.record_funding(funding)
        except Exception as exc:  # as for a fill: without the journal, stop trading
            self.journal_failed("funding", exc)
            raise
        if not fresh:
            self.log.warning("funding_duplicate_ignored", funding_id=funding.funding_id)
            return
        position = self.position
        position.apply_funding(funding.amount)
        self.log.info("funding", funding_id=funding.funding_id, amount_units=funding.amount,
                      ts_ns=funding.ts_ns, funding_units=position.funding,
                      position_lots=position.position)
        self.shell.exposure_changed()
        total = self.marked_pnl_units()
        if total is not None:
            self.breakers.check_pnl(total)

    def on_venue_status(self, ready: bool, reason: str | None) -> None:
        """Order entry lost (or back): no quotes while the venue cannot be trusted. While it
        is not ready nothing leaves at all (a request could not arrive); the cancel-all the
        halt asks for waits, and runs once the venue is back."""
        self.venue_ready = ready
        self.risk.set_condition(TradingState.HALTED, "venue_not_ready", not ready,
                                venue=reason)

    # -- kill, re-arm, reload ----------------------------------------------------------------

    def journal_failed(self, during: str, exc: Exception) -> None:
        """The journal cannot be written: fail closed, KILLED, quotes pulled, exit 1.

        Trading on without the journal would break the promise that every fill is on disk
        before anything acts on it, so this is a kill, and the process ends once the
        cancel-all is through (a disk that filled up does not free itself; systemd's
        restart then starts KILLED from the latch).
        """
        self._journal_lost(during, exc)
        self.latch_kill("journal_write_failed", during=during)

    def _journal_lost(self, during: str, exc: Exception) -> None:
        """A journal write failed: nothing more is written to it, and the run ends."""
        self.records.broken = True
        self.log.error("journal_write_failed", during=during, error=repr(exc))
        self.shell.fail("journal_write_failed")

    def latch_kill(self, reason: str, **values: Any) -> None:
        """Latch KILLED on disk first, then change state; the cancel-all follows at once.

        The latch file (:mod:`mmdaemon.latch`) takes the kill even on a full disk; the
        journal records it too where it can. A kill that reaches neither still goes KILLED
        in memory, cancels everything and ends the process (exit 1).
        """
        if self.risk.killed:
            return
        try:
            self.latch.set(True, reason, self.now_ns)
        except LatchNotPersisted as exc:
            self.log.error("kill_latch_failed", error=str(exc), reason=reason)
            self.shell.fail("kill_latch_failed")
        if not self.records.broken:
            try:
                self.journal.set_killed(True, reason, self.now_ns)
            except Exception as exc:
                self._journal_lost("kill", exc)
        self.risk.kill(reason, **values)
        self.log.warning("kill_switch_tripped", reason=reason, latch_file=str(self.latch.path),
                         latch_removed=self.latch.removed, **values)
        self.cancel_due = True

    def kill(self, reason: str, **values: Any) -> None:
        """Operator command (SIGUSR1, the global kill switch, a firm kill limit): latch the
        kill and pull every quote now (again, if already killed)."""
        self.latch_kill(reason, **values)
        self.cancel_due = True

    def rearm(self, held_elsewhere: list[str] | None = None) -> bool:
        """Operator command (SIGUSR2): clear the kill switch, refused while a breaker
        condition holds (or ``held_elsewhere`` names one: the firm bus's). True if re-armed.

        A position without a mark is refused, not deferred: the loss limit cannot be checked,
        and the drawdown peak a re-arm sets would be cash - fees (the position's whole cost
        as a loss); the book arrives within seconds of a start, so retrying is cheap."""
        if not self.risk.killed:
            self.log.info("rearm_ignored", reason="not killed")
            return False
        total = self.total_pnl_units()
        held = self.breakers.holding(self.position.position, total) + (held_elsewhere or [])
        if held:
            self.log.warning("rearm_refused", reasons=held)
            return False
        assert total is not None  # holding() refuses an unknown PnL
        if not self._unlatch():
            return False
        self.breakers.rearmed(total)
        self.risk.rearm()
        self.log.info("kill_switch_rearmed", state=self.risk.state.value)
        return True

    def killed_globally(self) -> bool:
        """The kill in force is the global kill switch's (a re-arm of that one clears it)."""
        return self.risk.killed and self.risk.kill_reason == GLOBAL_KILL_REASON

    def _unlatch(self) -> bool:
        """Clear the kill in the journal, then in the latch; False (still KILLED) if
        either cannot be written. The latch goes last: until it reads armed, a restart is
        KILLED whatever the journal says."""
        if self.records.broken:
            self.log.warning("rearm_refused", reasons=["journal_write_failed"])
            return False
        try:
            self.journal.set_killed(False, "", self.now_ns)
        except Exception as exc:
            self.journal_failed("rearm", exc)
            return False
        try:
            self.latch.set(False, "", self.now_ns)
        except OSError as exc:
            self.log.error("kill_latch_failed", error=str(exc), during="rearm")
            self.log.warning("rearm_refused", reasons=["kill_latch_failed"])
            try:
                self.journal.set_killed(True, self.risk.kill_reason, self.now_ns)
            except Exception as journal_exc:
                self.journal_failed("rearm", journal_exc)
            return False
        return True

    def reload(self, new: Config, strategy: Strategy, limits: Limits) -> None:
        """Operator command (SIGHUP): swap in ``new``'s risk, order and report parameters
        and the ``strategy`` built from them, all in one step (the caller built them first,
        so a bad file changes nothing, and has checked that nothing needing a restart
        changed). The new strategy's estimators start their warm-up again."""
        self.config = new
        self.guard = StrategyGuard(strategy, new.plugin.name, self.instrument,
                                   new.plugin.error_hold_ms * 1_000_000, self.log,
                                   self._strategy_failing, self._level_cut)
        self.risk.set_condition(TradingState.HALTED, STRATEGY_ERROR, False, reloaded=True)
        self.quoter = strategy.quoter if isinstance(strategy, QuoterStrategy) else None
        if self.quoter is not None:
            self.quoter.attach_reference(self.reference)  # the same one: its basis goes on
        self.ladder_gate = LadderGate(self.instrument, limits.checks)
        self.checks = PreTradeChecks(limits.checks)
        self.breakers.limits = self.breaker_limits = limits.breakers
        self.view.limits = self._limits_view()
        self.manager.price_tolerance = new.orders.price_tolerance_ticks
        self.manager.size_tolerance = new.orders.size_tolerance_lots
        self._supervise_interval_ns = new.risk.supervisor_interval_ms * 1_000_000
        self._sample_interval_ns = new.report.sample_ms * 1_000_000
        self.requote = True  # the next frame quotes with the new parameters
        self.breakers.check_inventory(self.position.position)

    def _on_transition(self, old: TradingState, new: TradingState, reason: str,
                       values: dict[str, Any]) -> None:
        self.log.warning("state_changed", old=old.value, new=new.value, reason=reason,
                         **values)
        if not self.records.broken:
            try:
                self.journal.set_trading_state(new.value, self.now_ns)
            except Exception as exc:
                self.journal_failed("state", exc)
        self.shell.state_changed(old, new)
        if new is TradingState.HALTED or new is TradingState.KILLED:
            self.cancel_due = True

    # -- supervisor ---------------------------------------------------------------------------

    def supervise(self, now_ns: int) -> None:
        """Periodic breakers at event time ``now_ns``: staleness, rejects, PnL at the mark."""
        self.shell.supervised()
        if now_ns >= self._next_sample_ns:
            self._next_sample_ns = now_ns + self._sample_interval_ns
            self._sample(now_ns)
        if self.last_book_ns:
            self.breakers.check_feed(now_ns, self.last_book_ns, self.book.synced)
        if self.reference is not None:  # a change of its usability requotes
            self.requote |= self.reference.check(now_ns, self.risk)
        self.breakers.check_rejects(now_ns)
        self._check_pnl()

    def _check_pnl(self) -> None:
        """Loss and drawdown at the mark (the mid). Skipped when the top of book, the fills,
        the funding and the limits are all as at the last check: the answer could not
        differ, and the exact Fraction arithmetic is most of a supervisor tick's cost."""
        bid, ask = self.book.best_bid(), self.book.best_ask()
        if bid is None or ask is None:
            return
        inputs = (bid, ask, self.position.fills, self.position.funding, self.breakers.limits)
        if inputs == self._pnl_inputs:
            return
        self._pnl_inputs = inputs
        total = self.marked_pnl_units()
        assert total is not None  # there is a mark
        self.breakers.check_pnl(total)

    def sample(self) -> None:
        """One report sample now (the state after a final cancel-all, at stop)."""
        self._sample(self.now_ns)

    def _sample(self, now_ns: int) -> None:
        """One report sample: the market, our gated quote, position, state, order counts;
        none before the first event (a live supervisor ticks at event time 0 first: a report
        would start in 1970)."""
        if not now_ns:
            return
        book, quote, c = self.book, _innermost(self._last_ladder, self._last_wanted), self.counters
        self.records.sample((
            self.run_id, now_ns, book.best_bid(), book.best_ask(), quote.fair, quote.bid,
            quote.bid_size, quote.ask, quote.ask_size, self.position.position,
            self.risk.state.value, c.orders, c.amends, c.cancels,
        ), self._last_ladder)

    def persist(self) -> None:
        """Checkpoint the journal when due, then write what may trail the hot path: report
        samples, order-log rows and a new PnL peak. The shell runs this in its supervisor
        task (and at stop), so a frame never waits for SQLite on its way to a quote; fills
        are not among these, they are committed before anything acts on them, and their
        commit never pays for a checkpoint (:meth:`mmdaemon.journal.Journal.checkpoint`).
        The checkpoint goes first because the first commit after one starts the WAL over
        and fsyncs it: the rows written here take that fsync, not the next fill. A crash
        loses at most one supervisor interval of samples, order log and peak."""
        if not self.records.broken:
            try:
                self.journal.checkpoint()
            except Exception as exc:
                self.journal_failed("checkpoint", exc)
        self.records.flush(self.markouts.take())
        peak = self.breakers.peak
        if peak is not None and peak != self._saved_peak and not self.records.broken:
            self._saved_peak = peak
            try:
                self.journal.set_pnl_peak(peak, self.now_ns)
            except Exception as exc:
                self.journal_failed("pnl_peak", exc)


def _innermost(gated: Ladder | None, wanted: Ladder) -> Quote:
    """The innermost level a side of the ``gated`` ladder as a one-level quote for the report
    samples; a side gated out keeps the price the strategy ``wanted`` with size 0."""
    bids, asks = (gated.bids, gated.asks) if gated is not None else ((), ())
    bid = bids[0] if bids else ((wanted.bids[0][0], 0) if wanted.bids else (0, 0))
    ask = asks[0] if asks else ((wanted.asks[0][0], 0) if wanted.asks else (0, 0))
    return Quote(*bid, *ask, wanted.fair, wanted.ts_ns)
