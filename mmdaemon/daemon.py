"""The service: wires feed -> book -> quoter -> risk gate -> order manager -> exchange.

Where things happen:

- a frame enters at :meth:`Service.on_frame` (called by the feed task for every frame);
- the quote is decided by :class:`~mmdaemon.quoting.quoter.Quoter` inside it;
- risk can veto it in :meth:`Service._gate` (trading state) and
  :meth:`Service._send` (pre-trade checks on every order action); a quote side that cannot
  become an order (the instrument's minimums, a pre-trade check) is counted by reason and
  reported (:mod:`mmdaemon.risk.unsendable`), never dropped in silence;
- fills come back through :meth:`Service._on_execution`, journaled first;
- every order action sent (:meth:`Service._send_one`) and every answer of the venue
  (:meth:`Service._on_execution`) is journaled in the order log (:mod:`mmdaemon.orderlog`).

Two tasks run under one :class:`asyncio.TaskGroup`: the feed task and the supervisor task
(plus the systemd watchdog when asked for, and the firm risk bus when ``[firm]`` is enabled:
:mod:`mmdaemon.risk.redis_bus`).
The periodic breakers (staleness, reject window, PnL at the mark) run on *event time* inside
the feed path, so a replay at any speed gives the same result; the supervisor task runs them
on the clock as well, which is what notices a feed that has gone silent. Any exception in a
task cancels the other and surfaces from :meth:`Service.run`; a stop request (SIGTERM/SIGINT)
ends both cleanly. On the way out the orders are cancelled and the venue's confirmation
awaited with the signal handlers still installed, all of it within one budget
(``exchange.stop_timeout_ms`` from the stop request); ``exit_code`` is 1 if any order is
still open afterwards (they are logged by name) or something failed.

Order entry starts in the same task group (:meth:`Service._start_venue`), beside the feed:
a venue that cannot be reached at start leaves the daemon up and HALTED
(``venue_not_ready``, ``book_out_of_sync``) while the adapter and the feed retry with their
reconnect backoff, signals work as at any other time, and systemd hears why through
``STATUS=`` (with ``EXTEND_TIMEOUT_USEC=`` until READY, so an outage does not time the start
out while a start that hangs still does). READY=1 is sent once, when the book is in sync and
the venue reconciled. A refusal that retrying cannot fix
(:class:`~mmdaemon.exchange.base.VenueRefused`: our credentials, an unusable URL) ends the
run with it instead.

Every order request goes out under one lock, and the trading state is checked again right
before each place or amend: a kill or halt that lands while another task is sending stops
the next request. So is the order itself: an action decided before the lock was free may
be about an order that the lock's holder (a cancel-all) has closed meanwhile; it is dropped.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, cast

import orjson

from mmdaemon import early_signals, speedups
from mmdaemon.clock import Clock
from mmdaemon.config import Config, ConfigError, load_config
from mmdaemon.exchange.base import ExchangeAdapter, VenueRefused, VenueStatus
from mmdaemon.exchange.fill_model import PaperVenue
from mmdaemon.exchange.latency import LatencyRecorder, build_model
from mmdaemon.exchange.paper import PaperExchange
from mmdaemon.exchange.queue import make_queue_model
from mmdaemon.feed.lobster import read_lobster
from mmdaemon.feed.recording import RecordedFrame
from mmdaemon.feed.replay import ReplaySource, paced
from mmdaemon.feed.websocket import FeedSettings, Reconnected, WebsocketFeed
from mmdaemon.journal import JOURNAL_FILE, Journal, JournalUnavailable, OrderLogRow, Sample
from mmdaemon.latch import JOURNAL_KEY as LATCH_KEY
from mmdaemon.latch import KillLatch, LatchNotPersisted
from mmdaemon.log import DEFAULT_RATE_LIMIT, flush_suppressed
from mmdaemon.market import Decoded, MarketState, NoCodec
from mmdaemon.markouts import MarkoutTracker, book_mid_x2, journaled_stats, quote_currency
from mmdaemon.metrics import LatencyHistogram, MetricsServer, serve_metrics
from mmdaemon.model import (
    BookUpdate,
    ExecutionEvent,
    Fill,
    Gap,
    Instrument,
    Malformed,
    MarketEvent,
    OrderStatus,
    OrderUpdate,
    Quote,
    Side,
    TopOfBook,
    Trade,
)
from mmdaemon.notify import Notifier
from mmdaemon.orderlog import FILL, answer_event
from mmdaemon.orders.manager import OrderAction, OrderManager
from mmdaemon.orders.position import Position
from mmdaemon.pace import ReplayClock
from mmdaemon.quoting.quoter import Quoter
from mmdaemon.risk.breakers import BreakerLimits, Breakers
from mmdaemon.risk.firm import FIRM_NOT_READY, GLOBAL_KILL_REASON, Exposure, Identity
from mmdaemon.risk.rules import PreTradeChecks, PreTradeLimits
from mmdaemon.risk.state import RiskState, TradingState
from mmdaemon.risk.unsendable import Unsendable
from mmdaemon.venues.binance import BinanceCodec, Market, frame_event_ns

if TYPE_CHECKING:  # the bus imports redis: only a daemon with [firm] enabled loads it
    from mmdaemon.risk.redis_bus import FirmBus

PID_FILE = "mmdaemon.pid"
# config sections a SIGHUP cannot change: they shape connections, files and the book itself
LOG_FLUSH_NS = int(DEFAULT_RATE_LIMIT[1] * 1e9)  # once per window of the log rate limiter
# Report samples wait for the supervisor task to write them; this many force a write on the
# spot (a loop too busy to run that task for 4 minutes of samples at the 250 ms default).
MAX_BUFFERED_SAMPLES = 1024
# Order-log rows wait for the same task; this many (a minute of amends at 20 a second) force
# a write on the spot.
MAX_BUFFERED_ORDER_LOG = 1024
RESTART_SECTIONS = ("instrument", "feed", "exchange", "state", "metrics", "logging", "firm")
FeedItem = RecordedFrame | Malformed | Reconnected | Decoded
# Until READY, every retry of an unreachable venue moves systemd's start timeout to its due
# time plus this: the attempt itself (connect 10 s, the subscription and reconciliation
# requests 5 s each) and what follows it (the feed's connect and snapshot, 10 s each).
START_RETRY_GRACE_S = 60.0
# The share of the stop budget kept for closing the order connection after the cancel-all.
CLOSE_RESERVE_S = 1.0
MALFORMED_SNAPSHOT = "snapshot:"  # how the codec's Malformed reason names a bad snapshot


def _decoded_ns(item: Decoded) -> int:
    return item.recv_ns
# a one-way delay beyond this is two clocks apart, not a measurement (run --latency-out)
MAX_PLAUSIBLE_LATENCY_NS = 10 * 1_000_000_000
FILLS_FROM_KEY = "fills_from"  # journal: the venue trade id this instance's fills follow
# how long systemd waits for the journal's check at start (EXTEND_TIMEOUT_USEC=): ~60x what
# 10 days of samples took cold (313 MB, 5.0 s)
JOURNAL_CHECK_GRACE_S = 300.0
# seconds a starting instance waits for the state directory's lock: `mmdaemon kill` holds it
# for milliseconds when it latches a kill into a directory no instance holds
STATE_DIR_LOCK_WAIT_S = 2.0


class _StoppedBeforeStart(Exception):
    """A stop (an early SIGTERM) was requested before the venue was contacted."""


class StateDirUnusable(RuntimeError):
    """The state directory cannot take the kill latch: the service must not start."""


@dataclass
class Counters:
    """What the service sent and decided, for the summary."""

    quotes: int = 0
    orders: int = 0
    amends: int = 0
    cancels: int = 0
    blocked: int = 0
    rejects: int = 0


class Service:
    """One instrument's quoting service. Build it, then ``await run()``."""

    def __init__(self, config: Config, clock: Clock, log: Any, *,
                 recordings: list[str] | None = None, speed: float | str | None = "config",
                 event_clock: ReplayClock | None = None, state_dir: Path | None = None,
                 write_pid: bool = False, config_path: Path | None = None,
                 log_level: str | None = None, latency_out: Path | None = None) -> None:
        self.config = config
        self.clock = clock
        self.log = log
        self.instrument: Instrument = config.instrument.build()
        self.recordings = recordings if recordings is not None else list(config.feed.recordings)
        # "config": the config's speed; None: as fast as possible
        self.speed = config.feed.speed_factor() if isinstance(speed, str) else speed
        # what a replay's event time is (None: the config's feed.clock); see feed/replay.py
        self.event_clock: ReplayClock = event_clock or config.feed.clock
        self.live: WebsocketFeed | None = None
        # what keeps the venue from us now ("order entry", "market data") -> why, retry in s
        self._outages: dict[str, tuple[str, float]] = {}
        if not self.recordings:  # the live network feed: event time is wall time
            self.live = WebsocketFeed(feed_settings(config), log,
                                      on_outage=self._on_feed_outage)
            self.speed = 1.0
            self.event_clock = "receive"
        self.state_dir = Path(state_dir or config.state.dir)
        self.write_pid = write_pid
        # the process's log level (--log-level) when given, else the config's
        self.log_debug = (log_level or config.logging.level) == "debug"
        self.lobster = config.instrument.venue == "lobster"
        depth = config.strategy.fair_value.depth_levels  # levels per side read every quote
        if self.lobster:
            if len(self.recordings) != 2:
                raise ValueError("a LOBSTER replay takes two files: MESSAGE_CSV ORDERBOOK_CSV")
            self.market = MarketState(NoCodec(), self._report, depth)
            self.event_clock = "exchange"  # a LOBSTER row has no other time
        else:
            market: Market = "usdm" if config.instrument.venue == "binance-usdm" else "spot"
            self.market = MarketState(BinanceCodec(self.instrument, market), self._report,
                                      depth)
        self.book = self.market.book
        # exact markouts of our fills (mmdaemon.markouts): told each event before it applies
        self.markouts = MarkoutTracker(config.report.markout_horizons_s,
                                       partial(book_mid_x2, self.book))
        self.currency = quote_currency(self.instrument.symbol, config.instrument.venue,
                                       config.firm.quote_asset)
        self.quoter = Quoter(self.instrument, config.strategy)
        self.counters = Counters()
        self.unsendable = Unsendable()  # quote sides that could not become orders, by reason
        self.now_ns = 0  # event time: the time of the latest frame (by event_clock)
        self.time_backsteps = 0  # frames older than the event time before them
        self.feed_clock_apart = 0  # --latency-out: frames whose venue time is off our clock
        self.last_book_ns = 0
        self._last_frame_mono = 0
        self._max_lag_ns = config.feed.max_lag_ms * 1_000_000
        self.feed_lag_max_ns = 0  # live: the longest a frame waited to be processed
        self.feed_backlog_max = 0  # live: the most frames queued at the feed at once
        self._stop = asyncio.Event()
        self._stop_at: float | None = None  # loop time of the first stop request
        self._refused: VenueRefused | None = None  # the venue refused us for good
        self._cancel_due = False  # quotes must be pulled now (kill, halt)
        self._cancelling: int | None = None  # open orders when an unconfirmed pull began
        self._requote = False  # a fill changed the inventory since the last quote
        self._need_snapshot = False  # the codec lost sequence: the live feed must fetch one
        self._fair = 0.0  # fair value (ticks) of the latest quote: the price band's centre
        self._venue_ready = False
        self._send_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self._supervise_interval_ns = config.risk.supervisor_interval_ms * 1_000_000
        self._next_supervise_ns = 0
        self._saved_peak: Fraction | None = None
        self._pnl_inputs: tuple[int, int, int, BreakerLimits] | None = None
        self._samples: list[Sample] = []
        self._order_log: list[OrderLogRow] = []  # not yet written (see _flush_order_log)
        self._sample_interval_ns = config.report.sample_ms * 1_000_000
        self._next_sample_ns = 0
        self._last_quote = Quote(0, 0, 0, 0, 0.0, 0)
        self.run_id = 0
        self.exit_code = 0
        self._feed: asyncio.Task[None] | None = None
        self.tick_to_quote = LatencyHistogram()  # frame in -> order actions decided
        self._frame_t0 = 0
        inst = self.instrument
        self.checks = PreTradeChecks(pretrade_limits(config))
        self.breaker_limits = breaker_limits(config, inst)
        self.config_path = config_path
        self.notifier = Notifier()
        self._ready_sent = False
        self.exchange = make_exchange(config, inst, log, self._event_ns, clock)
        # measured latencies for a dry run to draw from (run --latency-out), None: not kept
        self.latency_out = latency_out
        self.latencies: LatencyRecorder | None = None
        if latency_out is not None:
            self.latencies = LatencyRecorder(f"mmdaemon run, {config.exchange.adapter} "
                                             f"adapter, {inst.symbol}")
            self.exchange.set_round_trip_listener(self._on_round_trip)
        self.exchange.set_listener(self._on_execution)
        self.exchange.set_status_listener(self._on_venue_status)
        self._next_due_ns = self.exchange.next_due_ns  # asked before every frame
        self.firm = make_firm_bus(config, self, clock, log)
        # set in _open(): they need the journal
        self.journal: Journal
        self.position: Position
        self.risk: RiskState
        self.breakers: Breakers
        self.manager: OrderManager
        self.latch: KillLatch
        self._journal_broken = False  # a write failed: nothing more is written to it

    # -- life cycle -----------------------------------------------------------------------

    def _open(self) -> None:
        """Open the journal and the kill latch and restore: fills, kill, drawdown peak.

        Refused (:class:`~mmdaemon.journal.JournalRefused`, exit 2) for a journal that is
        locked, corrupt or another instance's; an OSError if the latch cannot be written.
        Either way nothing has been sent."""
        self.journal = Journal(self.state_dir / JOURNAL_FILE, durable=self.config.state.durable,
                               lock_wait_s=STATE_DIR_LOCK_WAIT_S)
        try:
            self._restore()
        except BaseException:
            self.journal.close()
            latch: KillLatch | None = getattr(self, "latch", None)
            if latch is not None:
                latch.close()
            raise

    def _restore(self) -> None:
        journal, wall_ns = self.journal, time.time_ns()
        journal.check_identity(self.identity(), wall_ns)
        restored = journal.restore(wall_ns)
        self.latch = latch = KillLatch.open(self.state_dir, journal.get(LATCH_KEY, "") == "1",
                                            restored.killed, restored.kill_reason, wall_ns)
        journal.put(LATCH_KEY, "1", wall_ns)
        killed, kill_reason = latch.state.killed, latch.state.reason
        self.position = position = Position()
        for fill in restored.fills:  # the same arithmetic as live: a restart changes nothing
            position.apply(fill)
        self.quoter.set_inventory(position.position)
        self.markouts.restore(journaled_stats(self.markouts.horizons_ns, restored.fills,
                                              journal.markouts()))
        # start HALTED until the book is synced and the venue is ready (and the firm bus has
        # read the global kill latch): no quote before
        halts: dict[str, dict[str, Any]] = {"book_out_of_sync": {}, "venue_not_ready": {}}
        if self.firm is not None:
            halts[FIRM_NOT_READY] = {}
        self.risk = RiskState(self._on_transition, killed, kill_reason, halts=halts)
        self.breakers = Breakers(self.breaker_limits, self.risk, self._latch_kill)
        self.breakers.peak = self._saved_peak = restored.pnl_peak_units
        # fills the venue reports above this were never journaled (missed while down);
        # a journal with neither fills nor a starting point (new, or retired) takes the
        # account's newest trade instead: an account's history is not this instance's
        fills_from = journal.get(FILLS_FROM_KEY, "")
        if restored.fills or fills_from:
            self.exchange.resume_fills_after(max(
                max((f.exec_id for f in restored.fills), default=0), int(fills_from or 0)))
        self.run_id = restored.run_id
        inst = self.instrument  # so `mmdaemon report` needs nothing but the state directory
        self.journal.put("instrument", orjson.dumps({
            "symbol": inst.symbol, "tick_size": str(inst.tick_size),
            "lot_size": str(inst.lot_size), "venue": self.config.instrument.venue,
            "inventory_soft_lots": self.config.risk.inventory_soft_lots,
            "inventory_hard_lots": self.config.risk.inventory_hard_lots,
            "max_spread_bps": self.config.report.max_spread_bps,
            "markout_horizons_s": self.config.report.markout_horizons_s,
        }).decode(), time.time_ns())
        self.manager = OrderManager(restored.run_id, self.config.orders.price_tolerance_ticks,
                                    self.config.orders.size_tolerance_lots)
        self.log.info("journal_restored", path=str(self.journal.path),
                      fills=len(restored.fills), position_lots=position.position,
                      cash_units=position.cash, fees_units=position.fees,
                      killed=killed, kill_reason=kill_reason, latch_file=str(latch.path),
                      run_id=restored.run_id)
        # a restored position may already be beyond a limit: judge it before any quote
        self.breakers.check_inventory(position.position)

    def identity(self) -> dict[str, str]:
        """What this service's journal must belong to (see journal.IDENTITY_KEYS)."""
        inst, config = self.instrument, self.config
        return {"venue": config.instrument.venue, "symbol": inst.symbol,
                "tick_size": str(inst.tick_size), "lot_size": str(inst.lot_size),
                "adapter": config.exchange.adapter, "account": self.exchange.account(),
                "instance": config.firm.instance}

    async def run(self) -> None:
        """Run until the feed ends, a stop is requested, or something fails."""
        # the journal's integrity check reads every page: minutes for a journal of a year's
        # samples on a cold cache, which must not count against systemd's start timeout
        self.notifier.still_starting(f"checking the journal in {self.state_dir}",
                                     JOURNAL_CHECK_GRACE_S)
        try:
            self._open()
        except JournalUnavailable as exc:
            raise StateDirUnusable(str(exc)) from exc
        except sqlite3.OperationalError as exc:  # restoring writes too: a full disk
            raise StateDirUnusable(
                f"journal {self.state_dir / JOURNAL_FILE} cannot be written ({exc}): free "
                "space or fix the state directory's file system; nothing was sent") from exc
        except OSError as exc:  # the latch: a state directory we could not write a kill to
            raise StateDirUnusable(
                f"state directory {self.state_dir} cannot hold the kill latch ({exc}): "
                "nothing was sent") from exc
        loop = asyncio.get_running_loop()
        pid_path = self.state_dir / PID_FILE
        handlers = {
            signal.SIGUSR1: lambda: self.kill("operator_kill_switch"),
            signal.SIGUSR2: self.rearm,
            signal.SIGTERM: self.stop,
            signal.SIGINT: self.stop,
            signal.SIGHUP: self.reload,
        }
        for sig, handler in handlers.items():
            loop.add_signal_handler(sig, handler)
        for sig in early_signals.take():  # arrived during start-up: now, in order
            self.log.info("early_signal", signal=sig.name)
            handlers[sig]()
        if self.write_pid:
            pid_path.write_text(f"{os.getpid()}\n")
        self.log.info("service_started", instrument=self.instrument.symbol,
                      state=self.risk.state.value, recordings=self.recordings,
                      speed=self.speed or "max", clock=self.event_clock, pid=os.getpid(),
                      hot_loops=speedups.HOT_LOOPS)
        metrics: MetricsServer | None = None
        try:
            if self._stop.is_set():  # stopped during start-up: nothing to start
                raise _StoppedBeforeStart
            m = self.config.metrics
            if m.port:
                metrics = await serve_metrics(self, m.host, m.port, latency=self.tick_to_quote,
                                              allow_non_loopback=m.allow_non_loopback)
            # What exists now (config, journal, caches, imports) lives as long as the
            # service: freezing it keeps the collector's full passes, which would otherwise
            # walk all of it, short and off the tick-to-quote path.
            gc.collect()
            gc.freeze()
            async with asyncio.TaskGroup() as tasks:
                # order entry first: an in-process venue is ready before the first frame
                venue = tasks.create_task(self._start_venue(), name="venue")
                feed = self._feed = tasks.create_task(self._feed_task(), name="feed")
                interval = self.notifier.watchdog_interval_s
                watchdog = (tasks.create_task(self._watchdog_task(interval), name="watchdog")
                            if interval else None)
                supervisor = tasks.create_task(self._supervisor_task(), name="supervisor")
                firm = (tasks.create_task(self.firm.run(), name="firm")
                        if self.firm is not None else None)
                stop = tasks.create_task(self._stop.wait(), name="stop")
                await asyncio.wait({feed, stop}, return_when=asyncio.FIRST_COMPLETED)
                for task in (venue, feed, supervisor, stop, watchdog, firm):
                    if task is not None:
                        task.cancel()
        except _StoppedBeforeStart:
            pass
        except BaseException:
            self.exit_code = 1
            raise
        finally:
            self.notifier.stopping()  # however we leave: systemd must not think us hung
            if self._stop_at is None:  # the feed ended, or something failed
                self._stop_at = loop.time()
            deadline = self._stop_at + self.config.exchange.stop_timeout_ms / 1000
            try:
                await self._shutdown(deadline - CLOSE_RESERVE_S)
                await self.exchange.close(max(0.0, deadline - loop.time()))
                self._sample(self.now_ns)  # the state after the final cancel-all
                self._persist()
                self._write_latencies()
                if metrics is not None:
                    await metrics.stop()
            finally:
                await self._dispatch_taken_signals()
                # only now: a signal during the cancel must not kill us; from here on one
                # is recorded (a kill latched just below), never the default action
                early_signals.handover(
                    lambda: [loop.remove_signal_handler(sig) for sig in handlers])
                self._latch_late_kill()
                self.journal.close()
                self.latch.close()
                self.notifier.close()
                gc.unfreeze()  # a process that runs services one after another frees them
                if self.write_pid:
                    pid_path.unlink(missing_ok=True)
        if self._refused is not None:
            raise self._refused

    async def _dispatch_taken_signals(self) -> None:
        """Let the loop run the handler of a signal it has already taken in (a signal
        waits in the loop's wakeup pipe until the next iteration, and a stop that never
        suspends gives it none): removing the handlers first would drop it."""
        task = asyncio.current_task()
        if task is None or task.cancelling():
            return  # cancelled (Ctrl-C in a test): no await may run here
        for _ in range(2):  # one iteration reads the pipe, the next runs the handler
            await asyncio.sleep(0)

    def _latch_late_kill(self) -> None:
        """A SIGUSR1 that arrived while the service was closing (after its handlers went):
        latched now, as any kill, before the latch closes; the orders are already
        cancelled."""
        if signal.SIGUSR1 in early_signals.take():
            self._latch_kill("operator_kill_switch", during="stop")

    async def _start_venue(self) -> None:
        """Order entry: connect and reconcile, however long an outage lasts (the adapter
        retries, and reports each retry through the status listener). A refusal that
        retrying cannot fix stops the service; :meth:`run` raises it once stopped."""
        try:
            await self.exchange.start()
        except VenueRefused as exc:
            self._refused = exc
            self.exit_code = 2
            self._stop.set()
            return
        watermark = self.exchange.fills_watermark()
        if watermark is not None and not self._journal_broken and not self.journal.get(
                FILLS_FROM_KEY, ""):
            try:  # where this instance's fills begin: a restart before the first resumes here
                self.journal.put(FILLS_FROM_KEY, str(watermark), self.now_ns)
            except Exception as exc:
                self._journal_failed("fills_from", exc)

    async def _shutdown(self, deadline: float) -> None:
        """Cancel everything and wait for the venue until the loop time ``deadline`` at the
        latest (a kill's cancel-all still in flight included); log what is left, by name."""
        try:
            async with asyncio.timeout_at(deadline):
                for task in list(self._background):
                    await task
                await self._cancel_everything("shutdown")
                if self._settle():  # a simulated venue's confirmations, now in event time
                    await self._cancel_everything("shutdown")
        except TimeoutError:
            self.log.warning("shutdown_cancel_timed_out",
                             stop_timeout_ms=self.config.exchange.stop_timeout_ms)
        except Exception as exc:
            self.exit_code = 1
            self.log.error("shutdown_cancel_failed", error=repr(exc))
        flush_suppressed(self.log)
        left = self.exchange.open_order_count()
        if left:
            self.exit_code = 1
            self.log.error("orders_left_open", open_orders=left,
                           orders=self.exchange.open_order_names())
        self.log.info("stopped", state=self.risk.state.value,
                      position_lots=self.position.position, open_orders=left,
                      exit_code=self.exit_code)

    def stop(self) -> None:
        """Graceful stop (SIGTERM/SIGINT): cancel all, confirm, flush, return, all within
        ``exchange.stop_timeout_ms`` of the first request."""
        self.log.info("stop_requested")
        if self._stop_at is None:
            self._stop_at = asyncio.get_running_loop().time()
        self._stop.set()

    def reload(self) -> None:
        """SIGHUP: reload strategy, risk, order and report parameters from the config file.

        All or nothing: the new config is read and every object built from it before any is
        swapped in, in one step with no await between, so no frame ever sees half of it. An
        invalid file keeps the old parameters; a change that needs a restart (instrument,
        feed, exchange, state, metrics, logging) is refused. The quoter is rebuilt, so its
        estimators start their warm-up again (with their configured priors).
        """
        if self._ready_sent:  # before READY, systemd has no reload to hear about
            self.notifier.reloading()
        try:
            if self.config_path is None:
                self.log.warning("reload_refused", reason="no config file to reload from")
                return
            try:
                new = load_config(self.config_path)
                quoter = Quoter(self.instrument, new.strategy)
                checks = PreTradeChecks(pretrade_limits(new))
                limits = breaker_limits(new, self.instrument)
            except (ConfigError, ValueError) as exc:
                self.log.error("reload_failed", error=str(exc), kept="the running parameters")
                return
            fixed = [name for name in RESTART_SECTIONS
                     if getattr(new, name) != getattr(self.config, name)]
            if new.report.markout_horizons_s != self.config.report.markout_horizons_s:
                fixed.append("report.markout_horizons_s")  # the markouts pending keep theirs
            if fixed:
                self.log.warning("reload_refused", sections=fixed, reason="needs a restart")
                return
            depth = new.strategy.fair_value.depth_levels
            if depth > self.book.bids.least:  # the book was sized for the old depth
                self.log.warning("reload_refused", sections=["strategy"],
                                 reason=f"fair_value.depth_levels {depth} is more than the "
                                        f"{self.book.bids.least} levels the book keeps "
                                        "sorted: needs a restart")
                return
            quoter.set_inventory(self.position.position)
            self.config, self.quoter, self.checks = new, quoter, checks
            self.breakers.limits = self.breaker_limits = limits
            self.manager.price_tolerance = new.orders.price_tolerance_ticks
            self.manager.size_tolerance = new.orders.size_tolerance_lots
            self._supervise_interval_ns = new.risk.supervisor_interval_ms * 1_000_000
            self._sample_interval_ns = new.report.sample_ms * 1_000_000
            self._requote = True  # the next frame quotes with the new parameters
            self.breakers.check_inventory(self.position.position)
            self.log.info("reloaded", config=str(self.config_path))
        finally:
            if self._ready_sent:
                self.notifier.ready(self.status_line())
            else:  # still starting (a venue outage, say): READY=1 waits for the sync
                self.notifier.status(self.status_line())

    def status_line(self) -> str:
        """One line for ``systemctl status``: state, what keeps the venue from us if
        anything (why, and when the next try is), position and PnL."""
        inst, pos = self.instrument, self.position
        money = Fraction(inst.tick_size) * Fraction(inst.lot_size)
        total = self.total_pnl_units()
        pnl = "unknown" if total is None else f"{float(total * money):.2f}"
        base = float(pos.position * Fraction(inst.lot_size))
        outages = "".join(f"{what} {why}, retry in {retry_in_s:.1f}s; "
                          for what, (why, retry_in_s) in self._outages.items())
        return (f"{self.risk.state.value} {inst.symbol} {outages}position={base:g} pnl={pnl} "
                f"fills={pos.fills}")

    def _outage(self, what: str, why: str | None, retry_in_s: float) -> None:
        """``what`` ("order entry", "market data") cannot be reached because of ``why``
        and is tried again in ``retry_in_s`` seconds (``why`` None: reached again). Tells
        systemd; until READY also that the start is alive, so that its timeout moves past
        the next attempt (an outage at start is waited out, a hung start is not)."""
        if why is None:
            if self._outages.pop(what, None) is None:
                return
        else:
            self._outages[what] = (why, retry_in_s)
        if self._ready_sent:
            self.notifier.status(self.status_line())
        else:
            self.notifier.still_starting(self.status_line(), retry_in_s + START_RETRY_GRACE_S)

    def _on_feed_outage(self, why: str | None, retry_in_s: float) -> None:
        self._outage("market data", why, retry_in_s)

    def _maybe_ready(self) -> None:
        """READY=1 once: the book is in sync and the venue reconciled (even if KILLED)."""
        halts = self.risk.halts
        if not self._ready_sent and "book_out_of_sync" not in halts and (
            "venue_not_ready" not in halts
        ):
            self._ready_sent = True
            self.notifier.ready(self.status_line())
            self.log.info("ready", state=self.risk.state.value)

    async def _watchdog_task(self, interval_s: float) -> None:
        """WATCHDOG=1 every ``interval_s`` while the loop runs and the feed task lives.

        A blocked loop cannot run this, and a dead feed task stops it: either way systemd
        stops hearing from us and restarts the service.
        """
        while True:
            await asyncio.sleep(interval_s)
            feed = self._feed
            if feed is None or feed.done():
                self.log.error("watchdog_stopped", reason="the feed task is not running")
                return
            self.notifier.watchdog()

    # -- feed -----------------------------------------------------------------------------

    def _batches(self) -> AsyncIterator[Sequence[FeedItem]]:
        """Recorded frames (dry run), LOBSTER rows, or the live websocket feed."""
        if self.live is not None:
            return self.live.batches()
        if self.lobster:
            message, orderbook = self.recordings
            rows = (Decoded(e.recv_ns, [e])
                    for e in read_lobster(message, orderbook, self.instrument))
            return paced(rows, _decoded_ns, self.speed, self.clock)
        event_ns = frame_event_ns if self.event_clock == "exchange" else None
        return ReplaySource(self.recordings, self.speed, self.clock, event_ns).batches()

    async def _feed_task(self) -> None:
        on_frame, monotonic, live = self.on_frame, self.clock.monotonic_ns, self.live
        next_due = self._next_due_ns
        async for batch in self._batches():
            self._last_frame_mono = monotonic()
            if live is not None and self._fell_behind(batch, live):
                if self._cancel_due:  # pull the quotes made on the old market now
                    await self._cancel_everything(self.risk.state.value.lower())
                continue
            for item in batch:
                kind = type(item)
                due = next_due()
                if due is not None and (kind is tuple or kind is Decoded):
                    at = cast(int, item[0])  # a frame's or decoded row's event time
                    if due < at:
                        await self._catch_up(at)
                if kind is tuple:
                    actions = on_frame(*item)
                    if actions:
                        await self._send(actions)
                    if self._need_snapshot and self.live is not None:
                        self._need_snapshot = False
                        self.live.request_snapshot()
                elif kind is Decoded:
                    decoded: Decoded = item  # type: ignore[assignment]
                    self._frame_t0 = perf_counter_ns()
                    self._before_event(decoded.recv_ns)
                    actions = self.on_events(decoded.recv_ns, self.market.on_decoded(decoded))
                    if actions:
                        await self._send(actions)
                elif kind is Reconnected:
                    self._on_reconnected(item)  # type: ignore[arg-type]
                else:
                    self.market.on_malformed(item)  # type: ignore[arg-type]
                if self._cancel_due:
                    await self._cancel_everything(self.risk.state.value.lower())
        self.log.info("feed_ended", frames=self.market.frames)

    def _fell_behind(self, batch: Sequence[FeedItem], live: WebsocketFeed) -> bool:
        """Live, once per batch: how long its oldest frame waited since it was read (ns).

        Beyond ``feed.max_lag_ms`` the daemon is processing a market that is gone: the
        batch and the feed's backlog are dropped, the book with them (HALTED at once, no
        quote on it), and the feed reconnects for a fresh snapshot (``feed_shed``).
        """
        first = batch[0]  # live: a frame (recv_ns, bytes) or a Reconnected marker
        recv_ns = first.recv_ns if isinstance(first, Reconnected) else cast(int, first[0])
        lag_ns = live.now_ns() - recv_ns
        if lag_ns > self.feed_lag_max_ns:
            self.feed_lag_max_ns = lag_ns
        backlog = live.backlog
        if backlog > self.feed_backlog_max:
            self.feed_backlog_max = backlog
        if lag_ns <= self._max_lag_ns:
            return False
        dropped = live.shed() + len(batch)
        self.log.warning("feed_shed", lag_ms=round(lag_ns / 1e6, 3), dropped=dropped,
                         limit_ms=self._max_lag_ns // 1_000_000)
        self._on_reconnected(Reconnected("shed", recv_ns))
        return True

    def _on_reconnected(self, event: Reconnected) -> None:
        """A new connection: the old sequence is gone; halt until a snapshot resyncs."""
        self.market.codec.reset()
        self.book.invalidate()
        self.breakers.check_feed(event.recv_ns, self.last_book_ns, False)

    async def _catch_up(self, until_ns: int) -> None:
        """A simulated venue's requests and reports due before the next event at
        ``until_ns``, each at its own time: a report can requote (a fill) or pull quotes (a
        breaker) before the market moves on, as it would live."""
        exchange = self.exchange
        while (due := exchange.next_due_ns()) is not None and due < until_ns:
            if due > self.now_ns:
                self.now_ns = due
            exchange.advance(due)
            if self._cancel_due:
                await self._cancel_everything(self.risk.state.value.lower())
            elif self._requote:
                actions = self._decide(self.now_ns)
                if actions:
                    await self._send(actions)

    def _event_ns(self) -> int:
        """The event clock (ns) a simulated venue stamps our requests with."""
        return self.now_ns

    def _settle(self) -> bool:
        """The market is over (a stop, or the recording ended): let everything a simulated
        venue has in flight arrive, each at its own time. True if anything was."""
        settled = False
        while (due := self._next_due_ns()) is not None:
            if due > self.now_ns:
                self.now_ns = due
            self.exchange.advance(self.now_ns)
            settled = True
        return settled

    def _before_event(self, event_ns: int) -> None:
        """Strict time order, before the event at ``event_ns`` is applied to the book: what
        reaches a simulated venue by then acts on the market as it stood, and markouts due
        before it take the mid as the book stands (the mid before the event)."""
        due = self._next_due_ns()
        if due is not None and due <= event_ns:
            if event_ns > self.now_ns:  # the reports delivered now arrive at the event's time
                self.now_ns = event_ns
            self.exchange.advance(self.now_ns)
        self.markouts.before_event(event_ns)

    def on_frame(self, recv_ns: int, frame: bytes) -> list[OrderAction]:
        """The hot path: one frame through book, paper venue, quoter, gate, order manager."""
        self._frame_t0 = perf_counter_ns()  # tick-to-quote starts before decoding
        self._before_event(recv_ns)
        return self.on_events(recv_ns, self.market.on_frame(recv_ns, frame))

    def on_events(self, recv_ns: int, events: list[MarketEvent]) -> list[OrderAction]:
        """Events already applied to the book, through paper venue, quoter, gate, orders.

        A new quote is decided on every event that changes a quoter input: a book update,
        a loss of sync, or one of our fills (inventory). Time order (docs/simulation.md):
        the caller has let a simulated venue act up to ``recv_ns`` *before* applying the
        events (:meth:`_before_event`; reports due between events came through
        :meth:`_catch_up` at their own times), so here the venue only matches our resting
        orders against the events, and the quote is decided last, on the book as it now is.
        """
        if recv_ns < self.now_ns:
            recv_ns = self._time_went_back(recv_ns)
        self.now_ns = recv_ns
        requote = False
        for event in events:
            kind = type(event)
            if kind is BookUpdate:
                self.last_book_ns = recv_ns
                self.exchange.on_book(self.book, recv_ns)
                requote = True
            elif kind is Trade:
                # a public trade moves no quoter input (the model prices from the book);
                # it can fill us, and a fill requotes through _requote
                self.exchange.on_trade(event, recv_ns)  # type: ignore[arg-type]
                self.quoter.on_trade(event)  # type: ignore[arg-type]
            elif kind is TopOfBook:
                self.quoter.on_top_of_book(event)  # type: ignore[arg-type]
            elif kind is Gap:
                self._need_snapshot = True  # live: fetch one; replay: wait for the next
                requote = True
            elif kind is Malformed and event.reason.startswith(  # type: ignore[union-attr]
                    MALFORMED_SNAPSHOT) and not self.book.synced:
                # the snapshot we waited for did not decode: without another, the book
                # would wait for ever (the feed backs off if they keep coming bad)
                self._need_snapshot = True
        if self.latencies is not None:
            self._measure_feed(recv_ns, events)
        if recv_ns >= self._next_supervise_ns:
            self._next_supervise_ns = recv_ns + self._supervise_interval_ns
            self.supervise(recv_ns)
        if not (requote or self._requote):
            return []
        actions = self._decide(recv_ns)
        self.tick_to_quote.observe_ns(perf_counter_ns() - self._frame_t0)
        return actions

    def _decide(self, now_ns: int) -> list[OrderAction]:
        """A new quote on the book as it stands, through the risk gate, into order actions."""
        self._requote = False
        self.breakers.check_feed(now_ns, self.last_book_ns, self.book.synced)
        quote = self.quoter.on_book(self.book, now_ns)
        self._fair = quote.fair
        self.counters.quotes += 1
        gated = self._gate(quote)
        if gated is not None and (gated.bid_size == 0 or gated.ask_size == 0):
            self._count_cuts(gated)
        self._last_quote = gated if gated is not None else quote._replace(bid_size=0, ask_size=0)
        return self.manager.decide(gated)

    def _measure_feed(self, recv_ns: int, events: list[MarketEvent]) -> None:
        """Feed latency samples (receipt - the venue's event time, ns) for --latency-out.

        Only from a live feed on wall time; a value outside 0..MAX_PLAUSIBLE_LATENCY_NS
        says the two clocks disagree (a venue replaying old data, an unsynced host), not how
        long the data took: it is counted and logged once, never kept."""
        recorder = self.latencies
        if recorder is None or self.live is None:
            return
        for event in events:
            kind = type(event)
            if kind is BookUpdate or kind is Trade:
                exch_ns = event.exch_ns  # type: ignore[union-attr]
                if not exch_ns:
                    continue
                delay = recv_ns - exch_ns
                if 0 <= delay <= MAX_PLAUSIBLE_LATENCY_NS:
                    recorder.add("feed", delay)
                else:
                    self.feed_clock_apart += 1
                    if self.feed_clock_apart == 1:
                        self.log.warning("latency_feed_clocks_apart", delay_ms=delay / 1e6,
                                         note="the venue's event times are not on our clock: "
                                              "no feed latency is measured from them")

    def _on_round_trip(self, rtt_ns: int) -> None:
        """One order-entry request's round trip: half each way (one clock cannot split it)."""
        if self.latencies is not None and 0 <= rtt_ns <= MAX_PLAUSIBLE_LATENCY_NS:
            self.latencies.add("entry", rtt_ns // 2)
            self.latencies.add("response", rtt_ns - rtt_ns // 2)

    def _write_latencies(self) -> None:
        """At stop: the measured latencies to --latency-out. A failure is logged and makes
        the exit status 1; it cannot undo the run (its trading is over, its journal kept).
        A process killed outright (SIGKILL, a crash) writes nothing: the samples live in
        memory until the stop."""
        if self.latencies is None or self.latency_out is None:
            return
        try:
            self.latencies.write(self.latency_out)
        except OSError as exc:  # asked for and not delivered: the exit status says so
            self.exit_code = 1
            self.log.error("latency_file_not_written", path=str(self.latency_out),
                           error=str(exc))
            return
        self.log.info("latency_file_written", path=str(self.latency_out),
                      **{f"{k}_samples": len(v) for k, v in self.latencies.samples.items()})

    def _time_went_back(self, recv_ns: int) -> int:
        """Event time never moves backwards: a frame older than the last (recordings given
        out of order, a wall clock stepped back) is handled at the latest time. Otherwise
        the paper venue would hold requests due in a future that never comes."""
        self.time_backsteps += 1
        if self.time_backsteps == 1:
            self.log.warning("event_time_went_back", frame_ns=recv_ns, held_at_ns=self.now_ns,
                             back_ms=round((self.now_ns - recv_ns) / 1e6, 3))
        return self.now_ns

    def _gate(self, quote: Quote) -> Quote | None:
        """Risk's veto by trading state: REDUCING keeps only the side that shrinks inventory."""
        state = self.risk.state
        if state is TradingState.ACTIVE:
            return quote
        if state is TradingState.REDUCING:
            return quote._replace(
                bid_size=quote.bid_size if self._reduces(Side.BUY) else 0,
                ask_size=quote.ask_size if self._reduces(Side.SELL) else 0,
            )
        return None

    def _count_cuts(self, gated: Quote) -> None:
        """Sides the state lets through that the instrument's size grid or minimums zeroed:
        they could not become orders. Counted per quote; logged with the figures at the
        first occurrence of a reason and then once per minute of event time."""
        inst, reducing = self.instrument, self.risk.state is TradingState.REDUCING
        for cut in self.quoter.size_cuts(gated):
            if reducing and not self._reduces(cut.side):
                continue  # the gate, not the instrument, holds this side back
            due = self.unsendable.record(cut.reason, self.now_ns)
            if not due:
                continue
            self.log.warning(
                "quote_unsendable", reason=cut.reason, side=cut.side.name,
                price=cut.price_ticks, wanted_lots=cut.wanted_lots, size_lots=cut.size_lots,
                wanted_notional=f"{inst.notional(cut.price_ticks, cut.wanted_lots):f}",
                min_size_lots=inst.min_size_lots, size_step_lots=inst.size_step_lots,
                min_notional=f"{inst.min_notional:f}", count=due,
                total=self.unsendable.counts[cut.reason])

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

    async def _send(self, actions: list[OrderAction]) -> None:
        """Pre-trade checks, then the exchange. A blocked action never leaves."""
        async with self._send_lock:
            for action in actions:
                await self._send_one(action)
            await self.exchange.flush()

    async def _send_one(self, action: OrderAction, why: str = "") -> None:
        """Send ``action`` unless the state, the order or a pre-trade check stops it; ``why``
        is the order log's reason for it ("": it follows the quote)."""
        manager, counters, exchange = self.manager, self.counters, self.exchange
        if not self._venue_ready or not self._may_quote(action) or not manager.applies(action):
            return  # the state or the order changed since the action was decided
        blocked = self.checks.check(action, self._fair, manager.open_orders(), self.now_ns)
        if blocked is not None:
            counters.blocked += 1
            due = self.unsendable.record(blocked.code, self.now_ns)
            if due or self.log_debug:
                self.log.warning("order_blocked", kind=action.kind, order_id=action.order_id,
                                 side=action.side.name, price=action.price,
                                 size=action.size, code=blocked.code, reason=blocked.reason,
                                 count=due, total=self.unsendable.counts[blocked.code])
            if blocked.retry or action.kind != "amend":
                return
            # the resting order no longer matches a quote we may send: pull it
            action = manager.cancel(action.order_id)
            why = blocked.code
        manager.sent(action)
        self._log_order(self.now_ns, None, action.kind, action.order_id, action.side,
                        action.price, action.size, None, why)
        if self.log_debug:
            self.log.debug("order_sent", kind=action.kind, order_id=action.order_id,
                           side=action.side.name, price=action.price, size=action.size,
                           ts_ns=self.now_ns)
        if action.kind == "place":
            counters.orders += 1
            await exchange.place(action.order_id, action.side, action.price, action.size)
        elif action.kind == "amend":
            counters.amends += 1
            await exchange.amend(action.order_id, action.price, action.size)
        else:
            counters.cancels += 1
            await exchange.cancel(action.order_id)

    async def _cancel_everything(self, why: str) -> None:
        """Pull every quote and wait for the venue to confirm (kill, halt, stop)."""
        if not self._venue_ready:
            return  # _cancel_due stays set: this runs again once the venue is back
        async with self._send_lock:
            for action in self.manager.cancel_all():
                await self._send_one(action, why)
            open_before = self.exchange.open_order_count()
            if open_before:
                await self.exchange.cancel_all()
            open_after = self.exchange.open_order_count()
            if open_after == 0:
                self._cancel_due = False
        # one pull can take several calls: a simulated venue's cancels travel in event time
        # while the market goes on, a live one may leave orders to retry; one line when it
        # starts unconfirmed, one when it is confirmed, with the count it started with
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

    # -- executions -----------------------------------------------------------------------

    def _on_execution(self, event: ExecutionEvent) -> None:
        if isinstance(event, Fill):
            self._on_fill(event)
            return
        update: OrderUpdate = event
        # before the manager applies it: whether it accepts an amend depends on what is pending
        answer = answer_event(update, self.manager.orders.get(update.order_id))
        if answer is not None:
            self._log_order(self.now_ns, update.ts_ns, answer, update.order_id, update.side,
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
            self._journal_failed("fill", exc)
            raise
        if not fresh:
            self.log.warning("fill_duplicate_ignored", order_id=fill.order_id,
                             exec_id=fill.exec_id)
            return
        self._log_order(self.now_ns, fill.ts_ns, FILL, fill.order_id, fill.side, fill.price,
                        fill.size, None, "", fill.exec_id, fill.mid_x2 or None)
        position = self.position
        position.apply(fill)
        self.markouts.on_fill(fill)
        self._requote = True
        self.quoter.set_inventory(position.position)
        # 0: not even our own book had both sides; the detector then skips the fill
        self.quoter.on_fill(fill, fill.mid_x2 / 2)
        self.log.info("fill", order_id=fill.order_id, exec_id=fill.exec_id,
                      side=fill.side.name, price=fill.price, size=fill.size, fee=fill.fee,
                      maker=fill.maker, ts_ns=fill.ts_ns, position_lots=position.position)
        if self.firm is not None:
            self.firm.publish_soon()
        self.breakers.check_inventory(position.position)
        total = self.total_pnl_units()
        if self.mark() is not None and total is not None:  # no mark: no PnL to judge
            self.breakers.check_pnl(total)

    # -- risk -----------------------------------------------------------------------------

    def mark(self) -> Fraction | None:
        """Mark price in ticks: the book's mid (exact half ticks), None without a book."""
        bid, ask = self.book.best_bid(), self.book.best_ask()
        if bid is None or ask is None:
            return None
        return Fraction(bid + ask, 2)

    def total_pnl_units(self) -> Fraction | None:
        """Realised + unrealised - fees at the mark, notional units (ticks x lots). Without
        a mark: cash - fees when flat (that is the whole PnL), None with a position (cash -
        fees alone would count the position's whole cost as a loss)."""
        mark = self.mark()
        position = self.position
        if mark is None:
            return Fraction(position.cash - position.fees) if position.position == 0 else None
        return position.total(mark)

    def _journal_failed(self, during: str, exc: Exception) -> None:
        """The journal cannot be written: fail closed, KILLED, quotes pulled, exit 1.

        Trading on without the journal would break the promise that every fill is on disk
        before anything acts on it, so this is a kill, and the process ends once the
        cancel-all is through (a disk that filled up does not free itself; systemd's
        restart then starts KILLED from the latch).
        """
        self._journal_lost(during, exc)
        self._latch_kill("journal_write_failed", during=during)

    def _journal_lost(self, during: str, exc: Exception) -> None:
        """A journal write failed: nothing more is written to it, and the run ends."""
        self._journal_broken = True
        self.log.error("journal_write_failed", during=during, error=repr(exc))
        self._fail("journal_write_failed")

    def _fail(self, why: str) -> None:
        """End the run with exit status 1; the way out cancels every order first."""
        if not self._stop.is_set():
            self.log.error("service_stopping", reason=why, exit_code=1)
        self.exit_code = 1
        self._stop.set()

    def _latch_kill(self, reason: str, **values: Any) -> None:
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
            self._fail("kill_latch_failed")
        if not self._journal_broken:
            try:
                self.journal.set_killed(True, reason, self.now_ns)
            except Exception as exc:
                self._journal_lost("kill", exc)
        self.risk.kill(reason, **values)
        self.log.warning("kill_switch_tripped", reason=reason, latch_file=str(self.latch.path),
                         latch_removed=self.latch.removed, **values)
        self._cancel_due = True

    def kill(self, reason: str, **values: Any) -> None:
        """Trip the kill switch (SIGUSR1, the global kill switch, a firm kill limit) and
        cancel everything now (again, if killed)."""
        self._latch_kill(reason, **values)
        self._cancel_due = True
        task = asyncio.get_running_loop().create_task(self._cancel_now(reason))
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.exit_code = 1
            self.log.error("background_task_failed", error=repr(task.exception()))
            self._stop.set()

    async def _cancel_now(self, reason: str) -> None:
        if self._cancel_due:
            await self._cancel_everything(reason)

    def rearm(self) -> None:
        """Clear the kill switch (SIGUSR2), refused while a breaker condition holds."""
        if not self.risk.killed:
            self.log.info("rearm_ignored", reason="not killed")
            return
        # a position without a mark: refused, not deferred. The loss limit cannot be checked,
        # and the drawdown peak a re-arm sets would be cash - fees (the position's whole cost
        # as a loss); the book arrives within seconds of a start, so retrying is cheap
        total = self.total_pnl_units()
        held = self.breakers.holding(self.position.position, total)
        if self.firm is not None:
            held += self.firm.holding()
        if held:
            self.log.warning("rearm_refused", reasons=held)
            return
        assert total is not None  # holding() refuses an unknown PnL
        if not self._unlatch():
            return
        self.breakers.rearmed(total)
        if self.firm is not None:
            self.firm.rearmed()
        self.risk.rearm()
        self.log.info("kill_switch_rearmed", state=self.risk.state.value)

    def _unlatch(self) -> bool:
        """Clear the kill in the journal, then in the latch; False (still KILLED) if
        either cannot be written. The latch goes last: until it reads armed, a restart is
        KILLED whatever the journal says."""
        if self._journal_broken:
            self.log.warning("rearm_refused", reasons=["journal_write_failed"])
            return False
        try:
            self.journal.set_killed(False, "", self.now_ns)
        except Exception as exc:
            self._journal_failed("rearm", exc)
            return False
        try:
            self.latch.set(False, "", self.now_ns)
        except OSError as exc:
            self.log.error("kill_latch_failed", error=str(exc), during="rearm")
            self.log.warning("rearm_refused", reasons=["kill_latch_failed"])
            try:
                self.journal.set_killed(True, self.risk.kill_reason, self.now_ns)
            except Exception as journal_exc:
                self._journal_failed("rearm", journal_exc)
            return False
        return True

    def rearm_global(self) -> None:
        """The global kill switch was re-armed: re-arm too if that is what killed us (an
        instance killed for its own reasons stays killed until re-armed itself)."""
        if self.risk.killed and self.risk.kill_reason == GLOBAL_KILL_REASON:
            self.rearm()
        else:
            self.log.info("rearm_ignored", reason="not killed by the global kill switch",
                          state=self.risk.state.value, kill_reason=self.risk.kill_reason)

    def firm_exposure(self) -> Exposure:
        """Our numbers for the firm risk bus: position, mark, PnL, state."""
        return Exposure(self.position.position, self.mark(), self.total_pnl_units(),
                        self.risk.state.value)

    def _on_transition(self, old: TradingState, new: TradingState, reason: str,
                       values: dict[str, Any]) -> None:
        self.log.warning("state_changed", old=old.value, new=new.value, reason=reason,
                         **values)
        if not self._journal_broken:
            try:
                self.journal.set_trading_state(new.value, self.now_ns)
            except Exception as exc:
                self._journal_failed("state", exc)
        self.notifier.status(self.status_line())
        self._maybe_ready()
        if new is TradingState.HALTED or new is TradingState.KILLED:
            self._cancel_due = True

    def _on_venue_status(self, status: VenueStatus) -> None:
        """Order entry lost (or back): no quotes while the venue cannot be trusted.

        While it is not ready nothing is sent at all (a request could not arrive); the
        cancel-all that the halt asks for waits, and runs once the venue is back.
        """
        self._venue_ready = status.ready
        self.log.info("venue_status", ready=status.ready, reason=status.reason,
                      retry_in_s=status.retry_in_s)
        # the outage first: a state change below (and READY with it) reports the line
        retrying = status.retry_in_s is not None
        self._outage("order entry", status.reason if retrying else None,
                     status.retry_in_s or 0.0)
        self.risk.set_condition(TradingState.HALTED, "venue_not_ready", not status.ready,
                                venue=status.reason)

    def _report(self, event: str, **fields: Any) -> None:
        self.log.warning(event, **fields)

    # -- supervisor -----------------------------------------------------------------------

    def event_now(self) -> int:
        """Event time now: the last frame's time plus the time since it, scaled by speed.

        At ``--speed max`` event time only moves with frames, so a replay is deterministic.
        """
        if self.speed is None or self._last_frame_mono == 0:
            return self.now_ns
        elapsed = self.clock.monotonic_ns() - self._last_frame_mono
        return self.now_ns + int(elapsed * self.speed)

    async def _supervisor_task(self) -> None:
        """On the clock: what event time cannot see (a feed gone silent), kills and halts."""
        interval_s = self.config.risk.supervisor_interval_ms / 1000
        next_log_flush = 0
        while True:
            await self.clock.sleep(interval_s)
            if self.speed is not None:  # at --speed max event time is the only clock
                self.supervise(self.event_now())
            now = self.clock.monotonic_ns()
            if now >= next_log_flush:  # counts of rate-limited log lines, once per window
                flush_suppressed(self.log)
                next_log_flush = now + LOG_FLUSH_NS
            if self._cancel_due:
                await self._cancel_everything(self.risk.state.value.lower())
            self._persist()  # after any cancel: a pull of quotes never waits for SQLite

    def _sample(self, now_ns: int) -> None:
        """One report sample: the market, our gated quote, position, state, order counts."""
        book, quote, c = self.book, self._last_quote, self.counters
        self._samples.append((
            self.run_id, now_ns, book.best_bid(), book.best_ask(), quote.fair, quote.bid,
            quote.bid_size, quote.ask, quote.ask_size, self.position.position,
            self.risk.state.value, c.orders, c.amends, c.cancels,
        ))
        if len(self._samples) >= MAX_BUFFERED_SAMPLES:
            self._flush_samples()  # only if the supervisor task has not run for that long

    def _log_order(self, ts_ns: int, venue_ns: int | None, event: str, order_id: int,
                   side: int, price: int, size: int, filled: int | None, reason: str,
                   exec_id: int | None = None, mid_x2: int | None = None) -> None:
        """Buffer one order-log row of an action (``venue_ns`` None), an answer or a fill
        (``exec_id``; ``mid_x2`` bid + ask before it, ticks, None unknown), at event time
        ``ts_ns`` (the fields: :mod:`mmdaemon.orderlog`). Written in batches, in order,
        like the report samples (:meth:`_persist`; at once when
        :data:`MAX_BUFFERED_ORDER_LOG` wait): the fill itself is committed at once, its
        row need not be."""
        self._order_log.append((ts_ns, venue_ns, time.time_ns(), event, order_id, side,
                                price, size, filled, reason, exec_id, mid_x2))
        if len(self._order_log) >= MAX_BUFFERED_ORDER_LOG:
            self._flush_order_log()

    def _flush_order_log(self) -> None:
        if self._journal_broken:
            self._order_log.clear()  # like the samples: not worth another failing write
            return
        if self._order_log:
            rows, self._order_log = self._order_log, []
            try:
                self.journal.add_order_log(rows)
            except Exception as exc:
                self._journal_failed("order_log", exc)

    def _flush_samples(self) -> None:
        if self._journal_broken:
            self._samples.clear()  # reports only: not worth another failing write
            return
        if self._samples:
            rows, self._samples = self._samples, []
            try:
                self.journal.add_samples(rows)
            except Exception as exc:
                self._journal_failed("samples", exc)

    def _flush_markouts(self) -> None:
        """Journal the markouts resolved since the last flush (reports only, like
        samples: a crash loses them, and those fills count as unresolved)."""
        rows = self.markouts.take()
        if rows and not self._journal_broken:
            try:
                self.journal.add_markouts(rows)
            except Exception as exc:
                self._journal_failed("markouts", exc)

    def supervise(self, now_ns: int) -> None:
        """Periodic breakers at event time ``now_ns``: staleness, rejects, PnL at the mark."""
        if not self._ready_sent:
            self._maybe_ready()
        if now_ns >= self._next_sample_ns:
            self._next_sample_ns = now_ns + self._sample_interval_ns
            self._sample(now_ns)
        if self.last_book_ns:
            self.breakers.check_feed(now_ns, self.last_book_ns, self.book.synced)
        self.breakers.check_rejects(now_ns)
        self._check_pnl()

    def _check_pnl(self) -> None:
        """Loss and drawdown at the mark (the mid). Skipped when the top of book, the fills
        and the limits are all as at the last check: the answer could not differ, and the
        exact Fraction arithmetic is most of a supervisor tick's cost."""
        bid, ask = self.book.best_bid(), self.book.best_ask()
        if bid is None or ask is None:
            return
        inputs = (bid, ask, self.position.fills, self.breakers.limits)
        if inputs == self._pnl_inputs:
            return
        self._pnl_inputs = inputs
        total = self.total_pnl_units()
        assert total is not None  # there is a mark
        self.breakers.check_pnl(total)

    def _persist(self) -> None:
        """Write what may trail the hot path: report samples, order-log rows and a new PnL
        peak. Runs in the supervisor task (and at stop), so a frame never waits for SQLite
        on its way to a quote; fills are not among these, they are committed before
        anything acts on them. A crash loses at most one supervisor interval of samples,
        order log and peak."""
        self._flush_samples()
        self._flush_markouts()
        self._flush_order_log()
        peak = self.breakers.peak
        if peak is not None and peak != self._saved_peak and not self._journal_broken:
            self._saved_peak = peak
            try:
                self.journal.set_pnl_peak(peak, self.now_ns)
            except Exception as exc:
                self._journal_failed("pnl_peak", exc)

    # -- results --------------------------------------------------------------------------

    def summary(self, wall_s: float) -> dict[str, Any]:
        """The dry-run summary: counts, position and PnL in base/quote currency (named by
        ``currency``), and the exact markouts per horizon of every journaled fill
        (:mod:`mmdaemon.markouts`, the same rows as the report's)."""
        inst, pos, c = self.instrument, self.position, self.counters
        money = Fraction(inst.tick_size) * Fraction(inst.lot_size)
        mark = self.mark()
        unrealized = pos.unrealized(mark) if mark is not None else Fraction(0)
        total = pos.total(mark) if mark is not None else Fraction(pos.cash - pos.fees)
        frames = self.market.frames
        return {
            "frames": frames,
            "clock": self.event_clock,
            "quotes": c.quotes,
            "orders": c.orders,
            "amends": c.amends,
            "cancels": c.cancels,
            "blocked": c.blocked,
            "unsendable": dict(self.unsendable.counts),
            "rejects": c.rejects,
            "fills": pos.fills,
            "volume": float(pos.volume * Fraction(inst.lot_size)),
            "position": float(pos.position * Fraction(inst.lot_size)),
            "position_lots": pos.position,
            "cash": float(pos.cash * money),
            "realized_pnl": float(pos.realized * money),
            "unrealized_pnl": float(unrealized * money),
            "fees": float(pos.fees * money),
            "total_pnl": float(total * money),
            "mark": float(mark * Fraction(inst.tick_size)) if mark is not None else None,
            "max_abs_position": float(pos.max_abs * Fraction(inst.lot_size)),
            "currency": self.currency,
            "markouts": self.markouts.stats.rows(inst),
            "state": self.risk.state.value,
            "breaker_trips": self.breakers.trips,
            "gaps": self.market.gaps,
            "malformed": self.market.malformed,
            "first_malformed": self.market.first_malformed,
            "time_backsteps": self.time_backsteps,
            "wall_s": round(wall_s, 3),
            "frames_per_s": round(frames / wall_s) if wall_s > 0 else None,
        }


def feed_settings(config: Config) -> FeedSettings:
    """The live feed's settings from the config (streams and snapshot path by venue)."""
    feed, usdm = config.feed, config.instrument.venue == "binance-usdm"
    return FeedSettings(
        ws_url=feed.url,
        rest_url=feed.rest_url,
        symbol=config.instrument.symbol,
        streams=("depth@0ms", "trade", "bookTicker") if usdm else
        ("depth@100ms", "trade", "bookTicker"),
        depth_path="/fapi/v1/depth" if usdm else "/api/v3/depth",
        stale_after_ms=feed.stale_after_ms,
        max_connection_age_s=feed.max_connection_age_s,
        backoff_initial_s=feed.backoff_initial_ms / 1000,
        backoff_max_s=feed.backoff_max_ms / 1000,
        snapshot_timeout_s=feed.snapshot_timeout_ms / 1000,
        proxy=feed.proxy or None,
        max_message_bytes=feed.max_message_bytes,
        max_snapshot_bytes=feed.max_snapshot_bytes,
    )


def make_exchange(config: Config, instrument: Instrument, log: Any,
                  event_ns: Callable[[], int], clock: Clock | None = None) -> ExchangeAdapter:
    """The configured adapter: the paper exchange on the daemon's event clock
    (``event_ns``), or the Binance gateway with credentials read now (a
    :class:`~mmdaemon.exchange.credentials.CredentialsError`, a ValueError, says which
    source failed)."""
    ex = config.exchange
    if ex.adapter == "paper":
        constants = {"entry": round(ex.latency_ms * 1_000_000),
                     "response": round(ex.response_latency_ms * 1_000_000),
                     "feed": round(ex.feed_latency_ms * 1_000_000)}
        try:
            latency = build_model(constants, Path(ex.latency_file) if ex.latency_file else None,
                                  ex.latency_seed)
        except ValueError as exc:
            raise ValueError(f"exchange.latency_file: {exc}") from None
        # closed orders are kept only to answer requests that arrive after them: a short
        # memory keeps a long run's footprint flat
        venue = PaperVenue(instrument, constants["entry"], ex.maker_fee_bps, ex.taker_fee_bps,
                           max_closed=10_000, entry=PaperExchange.venue_entry(latency),
                           queue=make_queue_model(ex.queue_model, ex.queue_power),
                           fill_through=ex.fill_through, trade_through=ex.trade_through)
        return PaperExchange(venue, latency, event_ns)
    from mmdaemon.exchange.binance_gateway import BinanceGateway, GatewaySettings
    from mmdaemon.exchange.credentials import load_credentials
    from mmdaemon.venues.binance_api import Credentials

    creds = load_credentials(ex.credentials, allow_readable=ex.allow_readable_credentials)
    settings = GatewaySettings(ws_api_url=ex.ws_api_url, client_prefix=ex.client_id_prefix,
                               recv_window_ms=ex.recv_window_ms,
                               request_timeout_s=ex.request_timeout_ms / 1000,
                               proxy=config.feed.proxy or None,
                               max_message_bytes=ex.max_message_bytes)
    return BinanceGateway(settings, instrument, Credentials(creds.api_key, creds.secret), log,
                          clock=clock)


def make_firm_bus(config: Config, service: Service, clock: Clock, log: Any) -> FirmBus | None:
    """The firm risk bus when ``[firm]`` is enabled, else None. The Redis password is read
    now (a :class:`~mmdaemon.exchange.credentials.CredentialsError` names the source)."""
    firm = config.firm
    if not firm.enabled:
        return None
    from mmdaemon.exchange.credentials import load_redis_password
    from mmdaemon.risk.redis_bus import FirmBus

    inst = config.instrument
    identity = Identity(firm.instance, firm.desk, firm.base_asset, firm.quote_asset,
                        inst.tick_size, inst.lot_size)
    password = load_redis_password(firm.password, allow_readable=firm.allow_readable_password)
    return FirmBus(firm, identity, service, clock, log, password)


def pretrade_limits(config: Config) -> PreTradeLimits:
    """The pre-trade limits of ``config.risk``."""
    risk = config.risk
    return PreTradeLimits(max_order_lots=risk.max_order_lots, price_band_bps=risk.price_band_bps,
                          max_open_orders=risk.max_open_orders,
                          max_orders_per_s=risk.max_orders_per_s, burst=risk.order_burst)


def breaker_limits(config: Config, instrument: Instrument) -> BreakerLimits:
    """The breakers' limits of ``config.risk``, money in notional units."""
    risk = config.risk
    return BreakerLimits(
        inventory_soft_lots=risk.inventory_soft_lots,
        inventory_hard_lots=risk.inventory_hard_lots,
        max_loss_units=config.money_units(risk.max_loss, instrument),
        max_drawdown_units=config.money_units(risk.max_drawdown, instrument),
        stale_feed_ns=risk.stale_feed_ms * 1_000_000,
        reject_burst=risk.reject_burst,
        reject_window_ns=risk.reject_window_ms * 1_000_000)
