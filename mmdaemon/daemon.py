"""The service: the asyncio shell around the trading engine (:mod:`mmdaemon.engine`).

It builds the parts (:mod:`mmdaemon.wiring`), runs their tasks and moves operator commands
into the engine; it is not on a frame's way to an order:

- the feed task (:mod:`mmdaemon.feed_task`) takes frames from the live websocket feed or a
  recording into the engine, in strict time order with a simulated venue; with a
  ``[reference]`` venue live, from both websocket feeds merged by receive time (the
  reference's own connection, snapshots and backoff: its outage never stops the traded
  feed; the engine falls back or halts as ``reference.on_stale`` says);
- order actions leave through :mod:`mmdaemon.order_sender`, one at a time under one lock,
  each vetted by the engine right before it leaves;
- the venue's answers and fills come back through the adapter's listener straight into
  :meth:`mmdaemon.engine.Engine.on_execution`;
- the supervisor task runs the periodic breakers on the clock (what event time cannot see:
  a feed gone silent), pulls quotes when the engine asks, and writes what may trail the hot
  path (:meth:`mmdaemon.engine.Engine.persist`);
- signals are operator commands: SIGUSR1 kill, SIGUSR2 re-arm, SIGHUP reload, SIGTERM/SIGINT
  stop; systemd hears through :mod:`mmdaemon.readiness`; readers (metrics, progress, the
  firm bus) see :meth:`Service.snapshot` and commands, never the engine's objects.

Order entry starts in the same task group (:meth:`Service._start_venue`): a venue that
cannot be reached at start leaves the daemon up and HALTED while the adapter and the feed
retry; a refusal that retrying cannot fix (:class:`~mmdaemon.exchange.base.VenueRefused`)
ends the run with it. On the way out the orders are cancelled and the venue's confirmation
awaited with the signal handlers still installed, all within ``exchange.stop_timeout_ms``
of the stop request; ``exit_code`` is 1 if any order is still open afterwards (they are
logged by name) or something failed.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from mmdaemon import early_signals, speedups
from mmdaemon.clock import Clock
from mmdaemon.config import Config
from mmdaemon.control import ControlServer, serve_control
from mmdaemon.engine import Engine
from mmdaemon.exchange.base import VenueRefused, VenueStatus
from mmdaemon.exchange.latency import LatencyRecorder
from mmdaemon.exchange.latency_file import save
from mmdaemon.exchange.paper import PaperExchange
from mmdaemon.feed.event_cache import EventCache
from mmdaemon.feed.websocket import WebsocketFeed, with_reference
from mmdaemon.feed_task import FeedItem, FeedTask
from mmdaemon.journal import Journal
from mmdaemon.latch import KillLatch, read_latch_since
from mmdaemon.latency_histogram import LatencyHistogram
from mmdaemon.log import DEFAULT_RATE_LIMIT, flush_suppressed
from mmdaemon.markouts import quote_currency
from mmdaemon.notify import Notifier
from mmdaemon.order_sender import OrderSender
from mmdaemon.pace import ReplayClock
from mmdaemon.provenance import PROVENANCE_KEY, run_versions
from mmdaemon.readiness import Readiness
from mmdaemon.risk.firm import Exposure
from mmdaemon.risk.state import TradingState
from mmdaemon.snapshot import FeedView, ReferenceFeedView, Snapshot, is_two_sided
from mmdaemon.startup import FILLS_FROM_KEY, FUNDING_FROM_KEY, OpenState, open_state
from mmdaemon.statedir import PID_FILE
from mmdaemon.status import LatchView, RunFacts, running_status
from mmdaemon.strategy_loader import load_strategy
from mmdaemon.wire_latency import WireToWire
from mmdaemon.wiring import (
    feed_settings,
    limits,
    make_exchange,
    make_firm_bus,
    make_market,
    recorded_batches,
    reference_feed_settings,
    reload_parts,
)

if TYPE_CHECKING:
    from mmdaemon.metrics import MetricsServer
    from mmdaemon.risk.redis_bus import FirmBus


LOG_FLUSH_NS = int(DEFAULT_RATE_LIMIT[1] * 1e9)  # once per window of the log rate limiter
# The share of the stop budget kept for closing the order connection after the cancel-all.
CLOSE_RESERVE_S = 1.0
# how long systemd waits for the journal's check at start (EXTEND_TIMEOUT_USEC=): ~60x what
# 10 days of samples took cold (313 MB, 5.0 s)
JOURNAL_CHECK_GRACE_S = 300.0


class _StoppedBeforeStart(Exception):
    """A stop (an early SIGTERM) was requested before the venue was contacted."""


class Service:
    """One instrument's quoting service. Build it, then ``await run()``."""

    def __init__(self, config: Config, clock: Clock, log: Any, *,
                 recordings: list[str] | None = None, speed: float | str | None = "config",
                 event_clock: ReplayClock | None = None, state_dir: Path | None = None,
                 write_pid: bool = False, config_path: Path | None = None,
                 log_level: str | None = None, latency_out: Path | None = None,
                 reference: list[str] | None = None,
                 provenance: dict[str, Any] | None = None, check_rules: bool = False,
                 event_cache: EventCache | None = None) -> None:
        self.config = config
        self.event_cache = event_cache  # a replay's decoded events, read instead of parsing
        # what produced this run (mmdaemon.provenance), journaled at start for the report
        self.provenance = provenance
        self.clock = clock
        self.log = log
        self.instrument = inst = config.instrument.build()
        self.recordings = recordings if recordings is not None else list(config.feed.recordings)
        # a replay's reference feed: these recordings, else [reference].recordings
        self.reference_recordings = reference if reference is not None else list(
            config.reference.recordings if config.reference is not None else ())
        # "config": the config's speed; None: as fast as possible
        self.speed = config.feed.speed_factor() if isinstance(speed, str) else speed
        # what a replay's event time is (None: the config's feed.clock); see feed/replay.py
        self.event_clock: ReplayClock = event_clock or config.feed.clock
        self.readiness = Readiness(Notifier(), self.snapshot, log)
        self.live: WebsocketFeed | None = None
        self.reference_live: WebsocketFeed | None = None  # the reference venue's live feed
        if not self.recordings:  # the live network feed: event time is wall time
            self.live = WebsocketFeed(feed_settings(config), log, on_outage=self._on_feed_outage,
                                      clock=clock)
            self.speed, self.event_clock = 1.0, "receive"
            ref_settings = reference_feed_settings(config)
            if ref_settings is not None:
                if not (ref_settings.ws_url and ref_settings.rest_url):
                    raise ValueError("reference.url and reference.rest_url: a live run (no "
                                     "feed.recordings) needs the reference venue's websocket "
                                     "and REST URLs")
                self.reference_live = WebsocketFeed(
                    ref_settings, log.bind(feed="reference"),
                    on_outage=self._on_reference_outage, clock=clock)
        # live: the venue's exchangeInfo checked before order entry (venue_rules)
        self.check_rules = check_rules and self.live is not None
        self.state_dir = Path(state_dir or config.state.dir)
        self.write_pid = write_pid
        self.config_path = config_path
        if config.instrument.venue == "lobster":
            if len(self.recordings) != 2:
                raise ValueError("a LOBSTER replay takes two files: MESSAGE_CSV ORDERBOOK_CSV")
            self.event_clock = "exchange"  # a LOBSTER row has no other time
        market = make_market(config, inst, self._report)
        self.exchange = make_exchange(config, inst, log, self._event_ns, clock)
        self.engine = engine = Engine(
            config, inst, market, self.exchange, self, log, limits(config, inst),
            load_strategy(config, inst, log),
            currency=quote_currency(inst.symbol, config.instrument.venue,
                                    config.firm.quote_asset),
            live=self.live is not None,
            log_debug=(log_level or config.logging.level) == "debug", firm=config.firm.enabled)
        self.tick_to_quote = LatencyHistogram()  # frame in -> order actions decided
        # measured latencies for a dry run to draw from (run --latency-out), None: not kept
        self.latency_out = latency_out
        if latency_out is not None:
            engine.latencies = recorder = LatencyRecorder(
                f"mmdaemon run, {config.exchange.adapter} adapter, {inst.symbol}")
            self.exchange.set_round_trip_listener(recorder.round_trip)
        self.exchange.set_listener(engine.on_execution)
        self.exchange.set_status_listener(self._on_venue_status)
        self.firm: FirmBus | None = make_firm_bus(config, self, clock, log)
        self.sender = OrderSender(engine, self.exchange)
        self.pump = FeedTask(engine, self.exchange, self.live, self.sender,
                             self.tick_to_quote.observe_ns, clock.monotonic_ns,
                             config.feed.max_lag_ms * 1_000_000, log, self.reference_live)
        self.wire: WireToWire | None = None  # live: frame received -> order frame written
        write_listener = getattr(self.exchange, "set_write_listener", None)
        if self.live is not None and write_listener is not None:
            live_feed = self.live
            self.wire = WireToWire(lambda: self.pump.cause_ns, clock.wall_ns,
                                   lambda: live_feed.stamp_source)
            write_listener(self.wire.written)
        self._stop = asyncio.Event()
        self._stop_at: float | None = None  # loop time of the first stop request
        self._refused: VenueRefused | None = None  # the venue refused us for good
        self._background: set[asyncio.Task[None]] = set()
        self._feed: asyncio.Task[None] | None = None
        self._supervisor_nap: asyncio.Future[None] | None = None  # its wait between checks
        self.exit_code = 0
        self._started_mono = clock.monotonic_ns()
        # order entry has reconciled with the venue at least once: only from then on does
        # the adapter's count include what the venue held for us before (a crashed run's)
        self._venue_read = False
        self.versions = run_versions(config_path, provenance)
        self.journal: Journal  # set in _open()
        self.latch: KillLatch

    # -- life cycle -----------------------------------------------------------------------

    def _open(self) -> None:
        """Open the state directory and hand the journal and latch to the engine to restore
        (:func:`mmdaemon.startup.open_state`: nothing is sent if this raises)."""
        self.readiness.notifier.still_starting(f"checking the journal in {self.state_dir}",
                                               JOURNAL_CHECK_GRACE_S)
        state = open_state(self.state_dir, self.config.state.durable, self.identity(),
                           self.clock.wall_ns(), self._restore)
        self.journal, self.latch = state.journal, state.latch

    def _restore(self, state: OpenState) -> None:
        if state.fills_after is not None:
            self.exchange.resume_fills_after(state.fills_after)
        if state.funding_after is not None:  # payments the venue booked while we were down
            self.exchange.resume_funding_after(state.funding_after)
        self.engine.restore(state.journal, state.latch, state.restored, self.clock.wall_ns())
        if isinstance(self.exchange, PaperExchange):  # it starts flat: judge reduce-only
            self.exchange.venue.position = self.engine.position.position  # on what we hold
        expect = getattr(self.exchange, "expect_position", None)  # futures: venue holds one
        if expect is not None:
            expect(self.engine.position.position)
        if self.provenance is not None:
            state.journal.put(PROVENANCE_KEY, orjson.dumps(self.provenance).decode(),
                              self.clock.wall_ns())

    def identity(self) -> dict[str, str]:
        """What this service's journal must belong to (see journal.IDENTITY_KEYS)."""
        inst, config = self.instrument, self.config
        return {"venue": config.instrument.venue, "symbol": inst.symbol,
                "tick_size": str(inst.tick_size), "lot_size": str(inst.lot_size),
                "adapter": config.exchange.adapter, "account": self.exchange.account(),
                "instance": config.firm.instance}

    async def run(self) -> None:
        """Run until the feed ends, a stop is requested, or something fails."""
        self._open()
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
                      state=self.engine.risk.state.value, recordings=self.recordings,
                      speed=self.speed or "max", clock=self.event_clock, pid=os.getpid(),
                      hot_loops=speedups.HOT_LOOPS)
        metrics: MetricsServer | None = None
        control: ControlServer | None = None
        try:
            if self._stop.is_set():  # stopped during start-up: nothing to start
                raise _StoppedBeforeStart
            m = self.config.metrics
            if m.port:
                # here: prometheus-client is 10 ms of a start, and a replay serves no metrics
                from mmdaemon.metrics import serve_metrics

                metrics = await serve_metrics(
                    self, m.host, m.port, latency=self.tick_to_quote,
                    allow_non_loopback=m.allow_non_loopback, clock=self.clock,
                    wire=None if self.wire is None else self.wire.histogram)
            # What exists now (config, journal, caches, imports) lives as long as the
            # service: freezing it keeps the collector's full passes, which would otherwise
            # walk all of it, short and off the tick-to-quote path.
            try:
                control = await serve_control(self.state_dir, self.control_answer, self.log)
            except OSError as exc:  # status and a confirmed kill need it; trading does not
                self.log.error("control_socket_failed", state_dir=str(self.state_dir),
                               error=repr(exc))
            gc.collect()
            gc.freeze()
            await self._tasks()
        except _StoppedBeforeStart:
            pass
        except BaseException:
            self.exit_code = 1
            raise
        finally:
            self.readiness.notifier.stopping()  # however we leave: systemd must not wait
            if self._stop_at is None:  # the feed ended, or something failed
                self._stop_at = loop.time()
            deadline = self._stop_at + self.config.exchange.stop_timeout_ms / 1000
            try:
                await self._shutdown(deadline - CLOSE_RESERVE_S)
                await self.exchange.close(max(0.0, deadline - loop.time()))
                self.engine.sample()  # the state after the final cancel-all
                self.engine.persist()
                self._write_latencies()
                if metrics is not None:
                    await metrics.stop()
            finally:
                await self._dispatch_taken_signals()
                # only now: a signal during the cancel must not kill us; from here on one
                # is recorded (a kill latched just below), never the default action
                early_signals.handover(
                    lambda: [loop.remove_signal_handler(sig) for sig in handlers])
                if signal.SIGUSR1 in early_signals.take():  # arrived while closing
                    self.engine.latch_kill("operator_kill_switch", during="stop")
                if control is not None:  # before the journal: no answer from a closed one
                    control.close()
                self.journal.close()
                self.latch.close()
                self.readiness.notifier.close()
                gc.unfreeze()  # a process that runs services one after another frees them
                if self.write_pid:
                    pid_path.unlink(missing_ok=True)
        if self._refused is not None:
            raise self._refused

    async def _tasks(self) -> None:
        """Order entry, feed, supervisor (and watchdog, firm bus) until the feed ends or a
        stop is requested; any task's exception cancels the others and surfaces here."""
        if self.check_rules:  # before any task runs: nothing quotes on rules not yet read
            self.set_condition(TradingState.HALTED, "instrument_rules_unread", True)
        async with asyncio.TaskGroup() as tasks:
            # order entry first: an in-process venue is ready before the first frame
            venue = tasks.create_task(self._start_venue(), name="venue")
            feed = self._feed = tasks.create_task(self.pump.run(self._batches()), name="feed")
            interval = self.readiness.notifier.watchdog_interval_s
            watchdog = (tasks.create_task(self.readiness.watchdog(interval, self._feeding),
                                          name="watchdog") if interval else None)
            supervisor = tasks.create_task(self._supervisor_task(), name="supervisor")
            firm = (tasks.create_task(self.firm.run(), name="firm")
                    if self.firm is not None else None)
            rules = (tasks.create_task(self._check_rules(), name="rules")
                     if self.check_rules else None)
            stop = tasks.create_task(self._stop.wait(), name="stop")
            spin = None
            if self.config.feed.busy_poll:
                spin = tasks.create_task(_busy_poll(), name="busy_poll")
                self.log.info("event_loop_busy_polling", key="feed.busy_poll")
            await asyncio.wait({feed, stop}, return_when=asyncio.FIRST_COMPLETED)
            for task in (venue, feed, supervisor, stop, watchdog, firm, rules, spin):
                if task is not None:
                    task.cancel()

    def _feeding(self) -> bool:
        return self._feed is not None and not self._feed.done()

    async def _dispatch_taken_signals(self) -> None:
        """Let the loop run the handler of a signal it has already taken in (a signal
        waits in the loop's wakeup pipe until the next iteration, and a stop that never
        suspends gives it none): removing the handlers first would drop it."""
        task = asyncio.current_task()
        if task is None or task.cancelling():
            return  # cancelled (Ctrl-C in a test): no await may run here
        for _ in range(2):  # one iteration reads the pipe, the next runs the handler
            await asyncio.sleep(0)

    async def _check_rules(self) -> None:
        """Live: the venue's exchangeInfo read (as long as it takes; systemd told why) and
        the config checked against it, HALTED until then, beside order entry's own start;
        a disagreement stops the service (exit 2). See :mod:`mmdaemon.venue_rules`."""
        from mmdaemon.venue_rules import RulesRefused, check_live, log_rules

        try:
            settled = await check_live(self.config, self.clock, self._rules_unavailable)
        except RulesRefused as exc:
            self._refused = exc
            self.exit_code = 2
            self._stop.set()
            return
        self.readiness.outage("instrument rules", None, 0.0)
        log_rules(self.log, settled)
        self.set_condition(TradingState.HALTED, "instrument_rules_unread", False)

    def _rules_unavailable(self, why: str, retry_in_s: float) -> None:
        self.log.warning("instrument_rules_unavailable", reason=why, retry_in_s=retry_in_s)
        self.readiness.outage("instrument rules", why, retry_in_s)

    async def _start_venue(self) -> None:
        """Order entry: connect and reconcile, however long an outage lasts. A refusal that
        retrying cannot fix stops the service; :meth:`run` raises it once stopped."""
        try:
            await self.exchange.start()
        except VenueRefused as exc:
            self._refused = exc
            self.exit_code = 2
            self._stop.set()
            return
        # where this instance's fills and funding begin: a restart before the first resumes
        for key, watermark in ((FILLS_FROM_KEY, self.exchange.fills_watermark()),
                               (FUNDING_FROM_KEY, self.exchange.funding_watermark())):
            if watermark is None or self.engine.records.broken or self.journal.get(key, ""):
                continue
            try:
                self.journal.put(key, str(watermark), self.engine.now_ns)
            except Exception as exc:
                self.engine.journal_failed(key, exc)

    async def _shutdown(self, deadline: float) -> None:
        """Cancel everything and wait for the venue until the loop time ``deadline`` at the
        latest (a kill's cancel-all still in flight included); log what is left, by name."""
        try:
            async with asyncio.timeout_at(deadline):
                for task in list(self._background):
                    await task
                await self.sender.cancel_everything("shutdown")
                if self.pump.settle():  # a simulated venue's confirmations, in event time
                    await self.sender.cancel_everything("shutdown")
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
        if self.wire is not None:  # the run's summary of it
            self.log.info("wire_to_wire", **self.wire.figures())
        self.log.info("stopped", state=self.engine.risk.state.value,
                      position_lots=self.engine.position.position, open_orders=left,
                      exit_code=self.exit_code)

    # -- operator commands ------------------------------------------------------------------

    def stop(self) -> None:
        """Graceful stop (SIGTERM/SIGINT): cancel all, confirm, flush, return, all within
        ``exchange.stop_timeout_ms`` of the first request."""
        self.log.info("stop_requested")
        if self._stop_at is None:
            self._stop_at = asyncio.get_running_loop().time()
        self._stop.set()

    def kill(self, reason: str, **values: Any) -> None:
        """Trip the kill switch (SIGUSR1, the global kill switch, a firm kill limit) and
        cancel everything now (again, if killed)."""
        self.engine.kill(reason, **values)
        task = asyncio.get_running_loop().create_task(self._cancel_now(reason))
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def rearm(self) -> None:
        """Clear the kill switch (SIGUSR2), refused while a breaker (ours or the firm's)
        holds."""
        held = self.firm.holding() if self.firm is not None else []
        if self.engine.rearm(held) and self.firm is not None:
            self.firm.rearmed()

    def rearm_global(self) -> None:
        """The global kill switch was re-armed: re-arm too if that is what killed us (an
        instance killed for its own reasons stays killed until re-armed itself)."""
        if self.engine.killed_globally():
            self.rearm()
        else:
            risk = self.engine.risk
            self.log.info("rearm_ignored", reason="not killed by the global kill switch",
                          state=risk.state.value, kill_reason=risk.kill_reason)

    def reload(self) -> None:
        """SIGHUP: reload strategy, risk, order and report parameters from the config file.

        All or nothing: the new config is read and every object built from it before any is
        swapped in, in one step with no await between, so no frame ever sees half of it. An
        invalid file keeps the old parameters; a change that needs a restart (instrument,
        feed, exchange, state, metrics, logging) is refused.
        """
        if self.readiness.ready_sent:  # before READY, systemd has no reload to hear about
            self.readiness.notifier.reloading()
        try:
            new = reload_parts(self.config_path, self.config, self.instrument,
                               self.engine.book.bids.least, self.log)
            if new is not None:
                interval_ms = self.config.risk.supervisor_interval_ms
                self.engine.reload(*new)
                self.config = new[0]
                nap = self._supervisor_nap
                if nap is not None and interval_ms != self.config.risk.supervisor_interval_ms:
                    nap.cancel()  # the supervisor's next wait is the new interval
                self.log.info("reloaded", config=str(self.config_path))
        finally:
            self.readiness.reloaded()

    # -- the feed -----------------------------------------------------------------------------

    def _batches(self) -> AsyncIterator[Sequence[FeedItem]]:
        if self.live is not None:
            if self.reference_live is not None:
                return with_reference(self.live, self.reference_live)
            return self.live.batches()
        return recorded_batches(self.config, self.instrument, self.recordings, self.speed,
                                self.clock, self.event_clock, self.reference_recordings,
                                self.event_cache)

    def _event_ns(self) -> int:
        """The event clock (ns) a simulated venue stamps our requests with."""
        return self.engine.now_ns

    def event_now(self) -> int:
        """Event time now: the last frame's time plus the time since it, scaled by speed.
        At ``--speed max`` event time only moves with frames, so a replay is deterministic."""
        now = self.engine.now_ns
        last = self.pump.last_frame_mono
        if self.speed is None or last == 0:
            return now
        return now + int((self.clock.monotonic_ns() - last) * self.speed)

    # -- order entry --------------------------------------------------------------------------

    async def _cancel_now(self, reason: str) -> None:
        if self.engine.cancel_due:
            await self.sender.cancel_everything(reason)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.exit_code = 1
            self.log.error("background_task_failed", error=repr(task.exception()))
            self._stop.set()

    def _on_venue_status(self, status: VenueStatus) -> None:
        """Order entry lost (or back): the engine halts; systemd hears why."""
        self.log.info("venue_status", ready=status.ready, reason=status.reason,
                      retry_in_s=status.retry_in_s)
        self._venue_read = self._venue_read or status.ready
        # the outage first: a state change below (and READY with it) reports the line
        retrying = status.retry_in_s is not None
        self.readiness.outage("order entry", status.reason if retrying else None,
                              status.retry_in_s or 0.0)
        self.engine.on_venue_status(status.ready, status.reason)

    def _on_feed_outage(self, why: str | None, retry_in_s: float) -> None:
        self.readiness.outage("market data", why, retry_in_s)

    def _on_reference_outage(self, why: str | None, retry_in_s: float) -> None:
        self.readiness.outage("reference data", why, retry_in_s)

    def _write_latencies(self) -> None:
        """At stop: the measured latencies to --latency-out; a failure makes the exit status
        1 (it cannot undo the run: its trading is over, its journal kept)."""
        latencies, path = self.engine.latencies, self.latency_out
        if latencies is not None and path is not None and not save(latencies, path, self.log):
            self.exit_code = 1

    # -- supervisor -----------------------------------------------------------------------------

    async def _supervisor_task(self) -> None:
        """On the clock: what event time cannot see (a feed gone silent), kills and halts.
        The interval is the config's in force: a reload that changes it cuts the current
        wait short (:meth:`reload`), so a tighter one watches from then on."""
        next_log_flush = 0
        engine = self.engine
        while True:
            nap = self._supervisor_nap = asyncio.ensure_future(
                self.clock.sleep(self.config.risk.supervisor_interval_ms / 1000))
            try:
                await nap
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():  # this task is cancelled
                    raise
            if self.speed is not None:  # at --speed max event time is the only clock
                engine.supervise(self.event_now())
            now = self.clock.monotonic_ns()
            if now >= next_log_flush:  # counts of rate-limited log lines, once per window
                flush_suppressed(self.log)
                next_log_flush = now + LOG_FLUSH_NS
            if engine.cancel_due:
                await self.sender.pull()
            engine.persist()  # after any cancel: a pull of quotes never waits for SQLite

    # -- the engine's shell (mmdaemon.engine.EngineShell) ----------------------------------------

    def state_changed(self, old: TradingState, new: TradingState) -> None:
        self.readiness.status()
        self.supervised()

    def supervised(self) -> None:
        if not self.readiness.ready_sent:  # every supervisor tick: nothing to do once READY
            risk = self.engine.risk
            self.readiness.maybe_ready(risk.halts, risk.state.value)

    def fail(self, why: str) -> None:
        if not self._stop.is_set():
            self.log.error("service_stopping", reason=why, exit_code=1)
        self.exit_code = 1
        self._stop.set()

    def exposure_changed(self) -> None:
        if self.firm is not None:
            self.firm.publish_soon()

    def wall_ns(self) -> int:
        return self.clock.wall_ns()

    def _report(self, event: str, **fields: Any) -> None:
        self.log.warning(event, **fields)

    # -- the firm bus's host (mmdaemon.risk.redis_bus.FirmHost) ---------------------------------

    def firm_exposure(self) -> Exposure:
        return self.engine.exposure()

    def killed(self) -> bool:
        return self.engine.risk.killed

    def set_condition(self, severity: TradingState, name: str, active: bool,
                      **values: Any) -> None:
        self.engine.risk.set_condition(severity, name, active, **values)

    # -- what readers see ---------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The engine's state and the feed's figures as plain values (mmdaemon.snapshot)."""
        live = self.live
        if live is None:
            feed = FeedView(False, lag_max_ns=self.pump.lag_max_ns, event_now_ns=self.event_now(),
                            reference=self._reference_view())
        else:
            feed = FeedView(True, live.connects, live.reconnects, live.snapshots,
                            live.snapshot_failures, live.sheds, live.backlog,
                            self.pump.lag_max_ns, self.event_now(), self._reference_view())
        return self.engine.snapshot(feed)

    def _reference_view(self) -> ReferenceFeedView | None:
        """The reference feed's figures (its connection's, live), None without one."""
        ref = self.engine.reference
        if ref is None:
            return None
        m, live, pump = ref.market, self.reference_live, self.pump
        if live is None:
            return ReferenceFeedView(False, False, frames=pump.reference_frames,
                                     last_frame_ns=pump.reference_last_ns, synced=m.book.synced,
                                     usable=ref.ok, gaps=m.gaps)
        return ReferenceFeedView(True, live.connected, live.connects, live.reconnects,
                                 live.snapshots, live.snapshot_failures, pump.reference_frames,
                                 pump.reference_last_ns, m.book.synced, ref.ok, m.gaps)

    def control_answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """The control socket's answer to a ``status`` request (:mod:`mmdaemon.control`)."""
        engine, last = self.engine, self.pump.last_frame_mono
        now = self.clock.monotonic_ns()
        try:
            journaled = self.journal.get("killed", "0") == "1"
        except Exception:  # a journal that failed: the kill is not confirmed by it
            journaled = False
        read = read_latch_since(self.state_dir)
        latch = (LatchView(False, "", None) if read is None
                 else LatchView(read[0].killed, read[0].reason, read[1]))
        facts = RunFacts(os.getpid(), engine.risk.kill_reason, journaled,
                         self.exchange.open_order_count() if self._venue_read else None,
                         (now - last) / 1e9 if last else None,
                         (now - self._started_mono) / 1e9, latch, self.versions)
        return {"ok": True, "status": running_status(self.snapshot(), facts)}

    def two_sided(self) -> bool | None:
        engine = self.engine
        return is_two_sided(engine.manager.orders.values()) if engine.opened() else None

    def status_line(self) -> str:
        """The one line ``systemctl status`` shows (:func:`mmdaemon.readiness.status_line`)."""
        return self.readiness.status_line()

    @property
    def feed_finished(self) -> bool:
        """Whether the market feed ran to its end (a replay read all its recordings) rather
        than being stopped first (SIGTERM/SIGINT, a failure): a stopped replay's figures
        cover only the part it read."""
        feed = self._feed
        return (feed is not None and feed.done() and not feed.cancelled()
                and feed.exception() is None)

    def summary(self, wall_s: float) -> dict[str, Any]:
        """The dry-run summary: the engine's figures, with the replay clock and the rate."""
        figures = self.engine.summary()
        frames = figures.pop("frames")
        return {"frames": frames, "clock": self.event_clock, **figures,
                "wall_s": round(wall_s, 3),
                "frames_per_s": round(frames / wall_s) if wall_s > 0 else None}


async def _busy_poll() -> None:
    """``feed.busy_poll``: a task that is always ready, so each turn of the event loop polls
    its sockets with a zero timeout and the loop never sleeps in ``epoll``. A frame is then
    read as it arrives and handled by a process that is still warm; asleep between frames
    10-100 ms apart, every stage of the next one ran at 2-5x its warm cost. It spends a
    whole core: for a host with one to spare (systemd ``CPUAffinity``), never beside the
    venue or other work on the same cores. bench/wire.py ``--busy-poll`` measures it."""
    while True:
        await asyncio.sleep(0)
