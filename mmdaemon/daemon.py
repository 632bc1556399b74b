"""The service: the asyncio shell around the trading engine (:mod:`mmdaemon.engine`).

It moves events into the engine and the engine's order actions out, and nothing else:

- the feed task takes frames from the live websocket feed or a recording and hands each to
  :meth:`Service.on_frame` (a simulated venue first acts on everything due before it: strict
  time order, docs/simulation.md);
- the order actions the engine returns go out through :meth:`Service._send`, one at a time
  under one lock, each vetted by the engine right before it leaves
  (:meth:`mmdaemon.engine.Engine.vet`): a kill or halt that lands while another task is
  sending stops the next request;
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
import sqlite3
from collections.abc import AsyncIterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mmdaemon import early_signals, speedups
from mmdaemon.clock import Clock
from mmdaemon.config import Config, ConfigError, load_config
from mmdaemon.engine import Engine, Limits
from mmdaemon.exchange.base import VenueRefused, VenueStatus
from mmdaemon.exchange.latency import LatencyRecorder
from mmdaemon.feed.lobster import read_lobster
from mmdaemon.feed.recording import RecordedFrame
from mmdaemon.feed.replay import ReplaySource, paced
from mmdaemon.feed.websocket import Reconnected, WebsocketFeed
from mmdaemon.journal import JOURNAL_FILE, Journal, JournalUnavailable
from mmdaemon.latch import JOURNAL_KEY as LATCH_KEY
from mmdaemon.latch import KillLatch
from mmdaemon.log import DEFAULT_RATE_LIMIT, flush_suppressed
from mmdaemon.market import Decoded, MarketState, NoCodec
from mmdaemon.markouts import quote_currency
from mmdaemon.metrics import LatencyHistogram, MetricsServer, serve_metrics
from mmdaemon.model import Malformed
from mmdaemon.notify import Notifier
from mmdaemon.orders.manager import OrderAction
from mmdaemon.pace import ReplayClock
from mmdaemon.quoting.quoter import Quoter
from mmdaemon.readiness import START_RETRY_GRACE_S, Readiness
from mmdaemon.risk.firm import Exposure
from mmdaemon.risk.state import TradingState
from mmdaemon.snapshot import FeedView, Snapshot
from mmdaemon.venues.binance import BinanceCodec, Market, frame_event_ns
from mmdaemon.wiring import feed_settings, limits, make_exchange, make_firm_bus

if TYPE_CHECKING:
    from mmdaemon.risk.redis_bus import FirmBus

__all__ = ["PID_FILE", "START_RETRY_GRACE_S", "Service", "StateDirUnusable"]

PID_FILE = "mmdaemon.pid"
LOG_FLUSH_NS = int(DEFAULT_RATE_LIMIT[1] * 1e9)  # once per window of the log rate limiter
# config sections a SIGHUP cannot change: they shape connections, files and the book itself
RESTART_SECTIONS = ("instrument", "feed", "exchange", "state", "metrics", "logging", "firm")
FeedItem = RecordedFrame | Malformed | Reconnected | Decoded
# The share of the stop budget kept for closing the order connection after the cancel-all.
CLOSE_RESERVE_S = 1.0
MAX_PLAUSIBLE_LATENCY_NS = 10 * 1_000_000_000  # a round trip beyond this: clocks apart
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


def _decoded_ns(item: Decoded) -> int:
    return item.recv_ns


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
        self.instrument = inst = config.instrument.build()
        self.recordings = recordings if recordings is not None else list(config.feed.recordings)
        # "config": the config's speed; None: as fast as possible
        self.speed = config.feed.speed_factor() if isinstance(speed, str) else speed
        # what a replay's event time is (None: the config's feed.clock); see feed/replay.py
        self.event_clock: ReplayClock = event_clock or config.feed.clock
        self.readiness = Readiness(Notifier(), self.status_line, log)
        self.live: WebsocketFeed | None = None
        if not self.recordings:  # the live network feed: event time is wall time
            self.live = WebsocketFeed(feed_settings(config), log, on_outage=self._on_feed_outage)
            self.speed, self.event_clock = 1.0, "receive"
        self.state_dir = Path(state_dir or config.state.dir)
        self.write_pid = write_pid
        self.config_path = config_path
        self.lobster = config.instrument.venue == "lobster"
        depth = config.strategy.fair_value.depth_levels  # levels per side read every quote
        if self.lobster:
            if len(self.recordings) != 2:
                raise ValueError("a LOBSTER replay takes two files: MESSAGE_CSV ORDERBOOK_CSV")
            market = MarketState(NoCodec(), self._report, depth)
            self.event_clock = "exchange"  # a LOBSTER row has no other time
        else:
            kind: Market = "usdm" if config.instrument.venue == "binance-usdm" else "spot"
            market = MarketState(BinanceCodec(inst, kind), self._report, depth)
        self.exchange = make_exchange(config, inst, log, self._event_ns)
        self.engine = engine = Engine(
            config, inst, market, self.exchange, self, log, limits(config, inst),
            currency=quote_currency(inst.symbol, config.instrument.venue,
                                    config.firm.quote_asset),
            live=self.live is not None,
            log_debug=(log_level or config.logging.level) == "debug", firm=config.firm.enabled)
        self.tick_to_quote = LatencyHistogram()  # frame in -> order actions decided
        engine.tick_to_quote = self.tick_to_quote.observe_ns
        # measured latencies for a dry run to draw from (run --latency-out), None: not kept
        self.latency_out = latency_out
        if latency_out is not None:
            engine.latencies = LatencyRecorder(f"mmdaemon run, {config.exchange.adapter} "
                                               f"adapter, {inst.symbol}")
            self.exchange.set_round_trip_listener(self._on_round_trip)
        self.exchange.set_listener(engine.on_execution)
        self.exchange.set_status_listener(self._on_venue_status)
        self._next_due_ns = self.exchange.next_due_ns  # asked before every frame
        self.firm: FirmBus | None = make_firm_bus(config, self, clock, log)
        self._last_frame_mono = 0
        self._max_lag_ns = config.feed.max_lag_ms * 1_000_000
        self.feed_lag_max_ns = 0  # live: the longest a frame waited to be processed
        self.feed_backlog_max = 0  # live: the most frames queued at the feed at once
        self._stop = asyncio.Event()
        self._stop_at: float | None = None  # loop time of the first stop request
        self._refused: VenueRefused | None = None  # the venue refused us for good
        self._send_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self._feed: asyncio.Task[None] | None = None
        self.exit_code = 0
        self.journal: Journal  # set in _open()
        self.latch: KillLatch

    # -- life cycle -----------------------------------------------------------------------

    def _open(self) -> None:
        """Open the journal and the kill latch and hand them to the engine to restore.

        Refused (:class:`~mmdaemon.journal.JournalRefused`, exit 2) for a journal that is
        locked, corrupt or another instance's; an OSError if the latch cannot be written.
        Either way nothing has been sent."""
        self.journal = journal = Journal(self.state_dir / JOURNAL_FILE,
                                         durable=self.config.state.durable,
                                         lock_wait_s=STATE_DIR_LOCK_WAIT_S)
        try:
            wall_ns = self.clock.wall_ns()
            journal.check_identity(self.identity(), wall_ns)
            restored = journal.restore(wall_ns)
            self.latch = KillLatch.open(self.state_dir, journal.get(LATCH_KEY, "") == "1",
                                        restored.killed, restored.kill_reason, wall_ns)
            journal.put(LATCH_KEY, "1", wall_ns)
            # fills the venue reports above this were never journaled (missed while down);
            # a journal with neither fills nor a starting point (new, or retired) takes the
            # account's newest trade instead: an account's history is not this instance's
            fills_from = journal.get(FILLS_FROM_KEY, "")
            if restored.fills or fills_from:
                self.exchange.resume_fills_after(max(
                    max((f.exec_id for f in restored.fills), default=0), int(fills_from or 0)))
            self.engine.restore(journal, self.latch, restored, wall_ns)
        except BaseException:
            journal.close()
            latch: KillLatch | None = getattr(self, "latch", None)
            if latch is not None:
                latch.close()
            raise

    def identity(self) -> dict[str, str]:
        """What this service's journal must belong to (see journal.IDENTITY_KEYS)."""
        inst, config = self.instrument, self.config
        return {"venue": config.instrument.venue, "symbol": inst.symbol,
                "tick_size": str(inst.tick_size), "lot_size": str(inst.lot_size),
                "adapter": config.exchange.adapter, "account": self.exchange.account(),
                "instance": config.firm.instance}

    def _open_state(self) -> None:
        """:meth:`_open`, its failures named for the operator (nothing was sent)."""
        self.readiness.notifier.still_starting(f"checking the journal in {self.state_dir}",
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

    async def run(self) -> None:
        """Run until the feed ends, a stop is requested, or something fails."""
        self._open_state()
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
        async with asyncio.TaskGroup() as tasks:
            # order entry first: an in-process venue is ready before the first frame
            venue = tasks.create_task(self._start_venue(), name="venue")
            feed = self._feed = tasks.create_task(self._feed_task(), name="feed")
            interval = self.readiness.notifier.watchdog_interval_s
            watchdog = (tasks.create_task(self.readiness.watchdog(interval, self._feeding),
                                          name="watchdog") if interval else None)
            supervisor = tasks.create_task(self._supervisor_task(), name="supervisor")
            firm = (tasks.create_task(self.firm.run(), name="firm")
                    if self.firm is not None else None)
            stop = tasks.create_task(self._stop.wait(), name="stop")
            await asyncio.wait({feed, stop}, return_when=asyncio.FIRST_COMPLETED)
            for task in (venue, feed, supervisor, stop, watchdog, firm):
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
        watermark = self.exchange.fills_watermark()
        if watermark is not None and not self.engine.journal_broken and not self.journal.get(
                FILLS_FROM_KEY, ""):
            try:  # where this instance's fills begin: a restart before the first resumes here
                self.journal.put(FILLS_FROM_KEY, str(watermark), self.engine.now_ns)
            except Exception as exc:
                self.engine.journal_failed("fills_from", exc)

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
            new = self._reloadable()
            if new is not None:
                self.engine.reload(*new)
                self.config = new[0]
                self.log.info("reloaded", config=str(self.config_path))
        finally:
            self.readiness.reloaded()

    def _reloadable(self) -> tuple[Config, Quoter, Limits] | None:
        """The config file's new parameters, and what the engine builds from them, if they
        can be swapped in now; else None (the reason logged)."""
        if self.config_path is None:
            self.log.warning("reload_refused", reason="no config file to reload from")
            return None
        try:
            new = load_config(self.config_path)
            quoter = Quoter(self.instrument, new.strategy)
            risk_limits = limits(new, self.instrument)
        except (ConfigError, ValueError) as exc:
            self.log.error("reload_failed", error=str(exc), kept="the running parameters")
            return None
        fixed = [name for name in RESTART_SECTIONS
                 if getattr(new, name) != getattr(self.config, name)]
        if new.report.markout_horizons_s != self.config.report.markout_horizons_s:
            fixed.append("report.markout_horizons_s")  # the markouts pending keep theirs
        if fixed:
            self.log.warning("reload_refused", sections=fixed, reason="needs a restart")
            return None
        depth, kept = new.strategy.fair_value.depth_levels, self.engine.book.bids.least
        if depth > kept:  # the book was sized for the old depth
            self.log.warning("reload_refused", sections=["strategy"],
                             reason=f"fair_value.depth_levels {depth} is more than the "
                                    f"{kept} levels the book keeps sorted: needs a restart")
            return None
        return new, quoter, risk_limits

    # -- the feed -----------------------------------------------------------------------------

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
        engine, live, monotonic = self.engine, self.live, self.clock.monotonic_ns
        on_frame, next_due, market = self.on_frame, self._next_due_ns, engine.market
        async for batch in self._batches():
            self._last_frame_mono = monotonic()
            if live is not None and self._fell_behind(batch, live):
                if engine.cancel_due:  # pull the quotes made on the old market now
                    await self._cancel_everything(engine.risk.state.value.lower())
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
                    if engine.need_snapshot and live is not None:
                        engine.need_snapshot = False
                        live.request_snapshot()
                elif kind is Decoded:
                    decoded: Decoded = item  # type: ignore[assignment]
                    self._venue_until(decoded.recv_ns)
                    engine.before_event(decoded.recv_ns)
                    actions = engine.on_events(decoded.recv_ns, market.on_decoded(decoded))
                    if actions:
                        await self._send(actions)
                elif kind is Reconnected:
                    engine.on_reconnected(item.recv_ns)  # type: ignore[union-attr]
                else:
                    market.on_malformed(item)  # type: ignore[arg-type]
                if engine.cancel_due:
                    await self._cancel_everything(engine.risk.state.value.lower())
        self.log.info("feed_ended", frames=market.frames)

    def on_frame(self, recv_ns: int, frame: bytes) -> list[OrderAction]:
        """The hot path: one frame into the engine, after a simulated venue has acted on
        everything due by its time."""
        self._venue_until(recv_ns)
        return self.engine.on_frame(recv_ns, frame)

    def _venue_until(self, event_ns: int) -> None:
        """Strict time order, before the event at ``event_ns`` is applied: what reaches a
        simulated venue by then acts on the market as it stood."""
        due = self._next_due_ns()
        if due is not None and due <= event_ns:
            self.engine.hold_time(event_ns)  # the reports delivered now arrive at its time
            self.exchange.advance(self.engine.now_ns)

    def _fell_behind(self, batch: Sequence[FeedItem], live: WebsocketFeed) -> bool:
        """Live, once per batch: how long its oldest frame waited since it was read (ns).

        Beyond ``feed.max_lag_ms`` the daemon is processing a market that is gone: the
        batch and the feed's backlog are dropped, the book with them (HALTED at once, no
        quote on it), and the feed reconnects for a fresh snapshot (``feed_shed``).
        """
        first = batch[0]  # live: a frame (recv_ns, bytes) or a Reconnected marker
        recv_ns = first.recv_ns if isinstance(first, Reconnected) else cast(int, first[0])
        lag_ns = live.now_ns() - recv_ns
        self.feed_lag_max_ns = max(self.feed_lag_max_ns, lag_ns)
        self.feed_backlog_max = max(self.feed_backlog_max, live.backlog)
        if lag_ns <= self._max_lag_ns:
            return False
        dropped = live.shed() + len(batch)
        self.log.warning("feed_shed", lag_ms=round(lag_ns / 1e6, 3), dropped=dropped,
                         limit_ms=self._max_lag_ns // 1_000_000)
        self.engine.on_reconnected(recv_ns)
        return True

    async def _catch_up(self, until_ns: int) -> None:
        """A simulated venue's requests and reports due before the next event at
        ``until_ns``, each at its own time: a report can requote (a fill) or pull quotes (a
        breaker) before the market moves on, as it would live."""
        exchange, engine = self.exchange, self.engine
        while (due := exchange.next_due_ns()) is not None and due < until_ns:
            engine.hold_time(due)
            exchange.advance(due)
            if engine.cancel_due:
                await self._cancel_everything(engine.risk.state.value.lower())
            elif engine.requote:
                actions = engine.decide(engine.now_ns)
                if actions:
                    await self._send(actions)

    def _settle(self) -> bool:
        """The market is over (a stop, or the recording ended): let everything a simulated
        venue has in flight arrive, each at its own time. True if anything was."""
        settled = False
        while (due := self._next_due_ns()) is not None:
            self.engine.hold_time(due)
            self.exchange.advance(self.engine.now_ns)
            settled = True
        return settled

    def _event_ns(self) -> int:
        """The event clock (ns) a simulated venue stamps our requests with."""
        return self.engine.now_ns

    def event_now(self) -> int:
        """Event time now: the last frame's time plus the time since it, scaled by speed.
        At ``--speed max`` event time only moves with frames, so a replay is deterministic."""
        now = self.engine.now_ns
        if self.speed is None or self._last_frame_mono == 0:
            return now
        return now + int((self.clock.monotonic_ns() - self._last_frame_mono) * self.speed)

    # -- order entry --------------------------------------------------------------------------

    async def _send(self, actions: list[OrderAction]) -> None:
        """Each action vetted by the engine right before it leaves; a vetoed one never does."""
        async with self._send_lock:
            for action in actions:
                await self._emit(self.engine.vet(action))
            await self.exchange.flush()

    async def _emit(self, action: OrderAction | None) -> None:
        if action is None:
            return
        exchange = self.exchange
        if action.kind == "place":
            await exchange.place(action.order_id, action.side, action.price, action.size)
        elif action.kind == "amend":
            await exchange.amend(action.order_id, action.price, action.size)
        else:
            await exchange.cancel(action.order_id)

    async def _cancel_everything(self, why: str) -> None:
        """Pull every quote and wait for the venue to confirm (kill, halt, stop)."""
        engine = self.engine
        if not engine.venue_ready:
            return  # cancel_due stays set: this runs again once the venue is back
        async with self._send_lock:
            for action in engine.cancel_all():
                await self._emit(engine.vet(action, why))
            open_before = self.exchange.open_order_count()
            if open_before:
                await self.exchange.cancel_all()
            open_after = self.exchange.open_order_count()
        engine.pulled(why, open_before, open_after)

    async def _cancel_now(self, reason: str) -> None:
        if self.engine.cancel_due:
            await self._cancel_everything(reason)

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
        # the outage first: a state change below (and READY with it) reports the line
        retrying = status.retry_in_s is not None
        self.readiness.outage("order entry", status.reason if retrying else None,
                              status.retry_in_s or 0.0)
        self.engine.on_venue_status(status.ready, status.reason)

    def _on_feed_outage(self, why: str | None, retry_in_s: float) -> None:
        self.readiness.outage("market data", why, retry_in_s)

    def _on_round_trip(self, rtt_ns: int) -> None:
        """One order-entry request's round trip: half each way (one clock cannot split it)."""
        latencies = self.engine.latencies
        if latencies is not None and 0 <= rtt_ns <= MAX_PLAUSIBLE_LATENCY_NS:
            latencies.add("entry", rtt_ns // 2)
            latencies.add("response", rtt_ns - rtt_ns // 2)

    def _write_latencies(self) -> None:
        """At stop: the measured latencies to --latency-out. A failure is logged and makes
        the exit status 1; it cannot undo the run (its trading is over, its journal kept).
        A process killed outright (SIGKILL, a crash) writes nothing."""
        latencies, path = self.engine.latencies, self.latency_out
        if latencies is None or path is None:
            return
        try:
            latencies.write(path)
        except OSError as exc:  # asked for and not delivered: the exit status says so
            self.exit_code = 1
            self.log.error("latency_file_not_written", path=str(path), error=str(exc))
            return
        self.log.info("latency_file_written", path=str(path),
                      **{f"{k}_samples": len(v) for k, v in latencies.samples.items()})

    # -- supervisor -----------------------------------------------------------------------------

    async def _supervisor_task(self) -> None:
        """On the clock: what event time cannot see (a feed gone silent), kills and halts."""
        interval_s = self.config.risk.supervisor_interval_ms / 1000
        next_log_flush = 0
        engine = self.engine
        while True:
            await self.clock.sleep(interval_s)
            if self.speed is not None:  # at --speed max event time is the only clock
                engine.supervise(self.event_now())
            now = self.clock.monotonic_ns()
            if now >= next_log_flush:  # counts of rate-limited log lines, once per window
                flush_suppressed(self.log)
                next_log_flush = now + LOG_FLUSH_NS
            if engine.cancel_due:
                await self._cancel_everything(engine.risk.state.value.lower())
            engine.persist()  # after any cancel: a pull of quotes never waits for SQLite

    # -- the engine's shell (mmdaemon.engine.EngineShell) ----------------------------------------

    def state_changed(self, old: TradingState, new: TradingState) -> None:
        self.readiness.status()
        self.supervised()

    def supervised(self) -> None:
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
            feed = FeedView(False, lag_max_ns=self.feed_lag_max_ns, event_now_ns=self.event_now())
        else:
            feed = FeedView(True, live.connects, live.reconnects, live.snapshots,
                            live.snapshot_failures, live.sheds, live.backlog,
                            self.feed_lag_max_ns, self.feed_backlog_max, self.event_now())
        return self.engine.snapshot(feed)

    def status_line(self) -> str:
        """One line for ``systemctl status``: state, what keeps the venue from us if
        anything (why, and when the next try is), position and PnL."""
        engine, inst = self.engine, self.instrument
        outages = "".join(f"{what} {why}, retry in {retry_in_s:.1f}s; "
                          for what, (why, retry_in_s) in self.readiness.outages.items())
        pos, total = engine.position, engine.total_pnl_units()
        money = Fraction(inst.tick_size) * Fraction(inst.lot_size)
        pnl = "unknown" if total is None else f"{float(total * money):.2f}"
        base = float(pos.position * Fraction(inst.lot_size))
        return (f"{engine.risk.state.value} {inst.symbol} {outages}position={base:g} pnl={pnl} "
                f"fills={pos.fills}")

    def summary(self, wall_s: float) -> dict[str, Any]:
        """The dry-run summary: the engine's figures, with the replay clock and the rate."""
        figures = self.engine.summary()
        frames = figures.pop("frames")
        return {"frames": frames, "clock": self.event_clock, **figures,
                "wall_s": round(wall_s, 3),
                "frames_per_s": round(frames / wall_s) if wall_s > 0 else None}

