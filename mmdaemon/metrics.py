"""Live metrics for Prometheus: a collector that reads the service at scrape time.

Nothing here runs per frame: the hot path fills its histograms through
:mod:`mmdaemon.latency_histogram`, which imports neither this module nor prometheus-client
(a replay serves no metrics). Every value is read from one
:class:`~mmdaemon.snapshot.Snapshot` of the instance when Prometheus scrapes
(:class:`ServiceCollector`), and served by :class:`MetricsServer` from inside the daemon's
event loop (aiohttp, no threads). A scrape is synchronous, so it sees one consistent state:
no frame is processed in the middle of it.

**Naming rules** (Prometheus conventions; ``promtool check metrics`` passes with no lint):

- every name starts ``mmdaemon_`` (the standard ``process_*``/``python_*`` families of
  prometheus-client are served as well, under their own names);
- base units, stated as the name's last word before ``_total``: ``_seconds`` (never ms),
  ``_lots`` (the instrument's size unit), ``_base`` (base currency, e.g. BTC),
  ``_quote`` (quote currency, e.g. USDT), ``_bps`` (basis points of the mid; markouts are
  quoted in bps by the strategy, so they stay in bps), ``_ratio`` (0..1);
- counters end in ``_total``; gauges never do; ``_timestamp_seconds`` is Unix time;
- 0/1 gauges for booleans; enum-style gauges for states
  (``mmdaemon_trading_state{state="ACTIVE"} 1``, the other states 0);
- a label only where summing over it means something (request kinds, event kinds) or
  where the values are a small fixed set (state, horizon, risk condition).

**Definitions** of the values that are not plain counters:

- ``mmdaemon_feed_delay_seconds``: event time now (the daemon's ``event_now``: the last
  frame's receive time plus the time since it on the daemon's clock, scaled by the replay
  speed) minus the receive time of the last book update. It is the quantity the stale-feed
  breaker judges, so an alert on it agrees with the breaker. It is *not* the venue's
  exchange-to-receive latency (the exchange time is not kept). NaN before the first book
  update. Live, receive times are wall clock (the feed clock's ``wall_ns``), so a step shows
  up here as it does in the breaker.
- ``mmdaemon_quote_two_sided_seconds_total`` / ``mmdaemon_quote_observed_seconds_total``:
  quote uptime, sampled (:class:`QuoteUptime`). *Two-sided* means the order manager holds,
  on each side, an order the venue has acknowledged (``NEW`` or ``PARTIALLY_FILLED``) and
  that we are not cancelling. The state is sampled every ``uptime_sample_s`` by a task of
  the metrics server and at every scrape; the time from one sample to the next, on the
  monotonic clock, counts as observed, and as two-sided when the earlier sample was
  (sample and hold). Each change of state is thus misplaced by at most one sample
  interval. Uptime over a window is
  ``rate(..two_sided..[1h]) / rate(..observed..[1h])``.
- PnL gauges are exact (:class:`~mmdaemon.orders.position.Position`) until converted to
  float here, in quote currency: notional units x tick_size x lot_size. Unrealized and
  total PnL at the mark (the book's mid) are NaN while there is no mark and a position is
  open: the value is unknown, and a made-up number would hide that.
- ``mmdaemon_tick_to_quote_seconds``: a histogram filled by the daemon's hot path through
  :class:`~mmdaemon.latency_histogram.LatencyHistogram` (see the daemon for which span it
  times).
- ``mmdaemon_wire_to_wire_seconds``: a live run's histogram from a market-data frame's
  receive stamp to the order frame it caused being written (:mod:`mmdaemon.wire_latency`).
- ``mmdaemon_markout_*{horizon_seconds}``: the exact markouts of every journaled fill
  (:mod:`mmdaemon.markouts`: the same figures, by the same code, as the dry-run summary and
  the report): lots resolved, fills unresolved (pending, or never: a late report, no mid),
  and the size-weighted ``adverse_move`` (mid moved against us), ``negative_markout`` and
  ``win`` ratios, NaN before the horizon's first markout; the markout money carries its
  currency as a label (``currency="USDT"``).
- ``mmdaemon_adverse_detector_*``: the quoter's own adverse-selection detector
  (:mod:`mmdaemon.quoting.adverse`), the input its spread widening reads; not the markout
  statistics above.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from fractions import Fraction
from types import TracebackType
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from mmdaemon.clock import Clock, SystemClock
from mmdaemon.hosts import check_host
from mmdaemon.latency_histogram import LatencyHistogram
from mmdaemon.quoting.calibration import CalibrationView
from mmdaemon.risk.state import TradingState
from mmdaemon.snapshot import AdverseView, Observed, ReferenceFeedView, Snapshot, TradingView

if TYPE_CHECKING:  # aiohttp is imported where metrics are served
    from aiohttp import web

__all__ = [
    "DEFAULT_HOST",
    "KNOWN_CONDITIONS",
    "MetricsServer",
    "QuoteUptime",
    "ServiceCollector",
    "serve_metrics",
]

DEFAULT_HOST = "127.0.0.1"

KNOWN_CONDITIONS: frozenset[tuple[str, str]] = frozenset({
    ("book_out_of_sync", "HALTED"),
    ("feed_stale", "HALTED"),
    ("reject_burst", "HALTED"),
    ("venue_not_ready", "HALTED"),
    ("instrument_rules_unread", "HALTED"),  # live: the venue's exchangeInfo not read yet
    ("inventory_soft_limit", "REDUCING"),
    ("firm_bus_not_ready", "HALTED"),  # the firm risk bus ([firm]); its limits are named
    ("firm_bus_unreachable", "HALTED"),  # per asset, so they show once they first hold
})
"""(condition, severity) pairs the risk layer raises today (breakers and the daemon), so each
has a series (0 until it first holds) from the first scrape. A condition added later still
shows: any name seen active is kept from then on."""

_NAN = math.nan


class QuoteUptime:
    """Seconds with a two-sided quote, against seconds observed; sample and hold.

    Each :meth:`sample` closes the interval since the previous one: it counts as observed,
    and as two-sided when the *previous* sample saw two sides (what was true at the start
    of the interval is assumed to hold through it). The first sample only starts the clock.
    """

    __slots__ = ("_last_ns", "_last_two_sided", "observed_ns", "two_sided_ns")

    def __init__(self) -> None:
        self._last_ns = -1  # no sample yet
        self._last_two_sided = False
        #: monotonic ns covered by samples
        self.observed_ns = 0
        #: of which the quote was two-sided, ns
        self.two_sided_ns = 0

    def sample(self, now_ns: int, two_sided: bool) -> None:
        """The quote is (or is not) ``two_sided`` at monotonic time ``now_ns``."""
        last = self._last_ns
        if last >= 0 and now_ns > last:
            elapsed = now_ns - last
            self.observed_ns += elapsed
            if self._last_two_sided:
                self.two_sided_ns += elapsed
        if now_ns > last:  # a clock that did not move (or went back) starts nothing new
            self._last_ns = now_ns
        self._last_two_sided = two_sided


def _fmt_horizon(seconds: float) -> str:
    """A horizon label: ``1``, ``0.5``, ``30`` (no trailing ``.0``)."""
    return f"{seconds:g}"


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    # prometheus-client appends the _total suffix itself; the name is given without it
    return CounterMetricFamily(name.removesuffix("_total"), doc, value=value)


class ServiceCollector(Collector):
    """Reads one :class:`~mmdaemon.snapshot.Snapshot` of the instance when the registry
    collects, and turns it into the families.

    ``latency``: the tick-to-quote histogram the daemon fills, if any. ``clock``: its
    monotonic time measures the quote uptime (the system's clock by default: uptime is
    about the live venue, whatever the replay speed).

    Orders, position and risk exist only once the instance has opened its journal; until
    then only the feed and instrument families are served, so a scrape during start-up does
    not fail.
    """

    def __init__(self, service: Observed, latency: LatencyHistogram | None = None, *,
                 clock: Clock | None = None, wire: LatencyHistogram | None = None) -> None:
        self.service = service
        self.latency = latency
        self.wire = wire  # wire-to-wire (mmdaemon.wire_latency), live runs only
        self.monotonic_ns = (clock or SystemClock()).monotonic_ns
        self.uptime = QuoteUptime()
        # every risk condition ever seen, so a cleared one reads 0 rather than vanishing
        self._conditions: set[tuple[str, str]] = set(KNOWN_CONDITIONS)

    def sample_uptime(self, snap: Snapshot | None = None) -> None:
        """Take one quote-uptime sample now (the server's task and every scrape call it)."""
        two_sided = (self.service.two_sided() if snap is None else
                     snap.trading.two_sided if snap.trading is not None else None)
        if two_sided is not None:
            self.uptime.sample(self.monotonic_ns(), two_sided)

    def collect(self) -> Iterator[Metric]:
        """Every family, read now from one snapshot (called by the registry on a scrape)."""
        snap = self.service.snapshot()
        yield from self._instrument(snap)
        yield from self._feed(snap)
        if snap.feed.reference is not None:
            yield from self._reference(snap.feed.reference, snap.feed.event_now_ns)
        trading = snap.trading
        if trading is not None:
            self.sample_uptime(snap)
            money = Fraction(snap.tick_size) * Fraction(snap.lot_size)
            yield from self._orders(trading)
            yield from self._position(snap, trading, money)
            yield from self._risk(trading)
            yield from self._markouts(snap, trading)
            yield from self._adverse(trading.adverse)
            if trading.calibration is not None:
                yield from self._calibration(trading.calibration)
        if self.latency is not None:
            yield self._histogram(self.latency)
        if self.wire is not None:
            yield HistogramMetricFamily(
                "mmdaemon_wire_to_wire_seconds",
                "From the receive stamp of a market-data frame (the kernel's on a plain ws:// "
                "feed, else the user-space one; the log's wire_to_wire line says which) to "
                "an order frame it caused being written to the order-entry socket, seconds.",
                buckets=self.wire.cumulative(), sum_value=self.wire.sum_ns / 1e9)

    # -- families -------------------------------------------------------------------------

    @staticmethod
    def _instrument(snap: Snapshot) -> Iterator[Metric]:
        info = InfoMetricFamily("mmdaemon_instrument", "The instrument this daemon quotes.")
        info.add_metric([], {
            "venue": snap.venue,
            "symbol": snap.symbol,
            "tick_size": f"{snap.tick_size:f}",  # plain notation, not 1E-8
            "lot_size": f"{snap.lot_size:f}",
            "adapter": snap.adapter,
            "feed": "live" if snap.feed.live else "replay",
        })
        yield info

    @staticmethod
    def _feed(snap: Snapshot) -> Iterator[Metric]:
        m, live = snap.market, snap.feed
        yield _counter("mmdaemon_feed_frames_total",
                       "Frames received from the feed (live or replayed).", m.frames)
        yield _counter("mmdaemon_feed_malformed_frames_total",
                       "Frames that could not be decoded and changed nothing.", m.malformed)
        events = CounterMetricFamily(
            "mmdaemon_feed_events", "Market events decoded from the feed, by kind.",
            labels=["kind"])
        events.add_metric(["depth_update"], m.depth_updates)
        events.add_metric(["snapshot"], m.snapshots)
        events.add_metric(["trade"], m.trades)
        events.add_metric(["ticker"], m.tickers)
        yield events
        yield _counter("mmdaemon_book_gaps_total",
                       "Sequence gaps: the book lost sync and waits for a snapshot.", m.gaps)
        yield _counter("mmdaemon_book_crossed_total",
                       "Crossed books detected (the book is dropped and resynced).", m.crossed)
        yield _counter("mmdaemon_book_resyncs_total",
                       "Snapshots applied after the book had lost sync.", m.resyncs)
        yield _gauge("mmdaemon_book_synced",
                     "1 while the book is in sequence with the venue, else 0.",
                     1.0 if m.synced else 0.0)
        yield _counter("mmdaemon_feed_connects_total",
                       "Websocket connections opened (0 on a replay).", live.connects)
        yield _counter("mmdaemon_feed_reconnects_total",
                       "Websocket connections opened after the first (0 on a replay).",
                       live.reconnects)
        yield _counter("mmdaemon_feed_rest_snapshots_total",
                       "REST depth snapshots fetched by the live feed (0 on a replay).",
                       live.rest_snapshots)
        yield _counter("mmdaemon_feed_rest_snapshot_failures_total",
                       "REST depth snapshot requests that failed (HTTP error, rate limit, "
                       "not a snapshot, timeout, network; 0 on a replay).",
                       live.snapshot_failures)
        yield _counter("mmdaemon_feed_sheds_total",
                       "Times the daemon fell more than feed.max_lag_ms behind the live feed "
                       "and dropped its backlog to resync (0 on a replay).", live.sheds)
        yield _gauge("mmdaemon_feed_backlog_frames",
                     "Frames queued at the live feed for the daemon now (0 on a replay).",
                     live.backlog)
        yield _gauge("mmdaemon_feed_lag_max_seconds",
                     "The longest a live frame waited to be processed since start, seconds "
                     "(0 on a replay).", live.lag_max_ns / 1e9)
        last_book = m.last_book_ns
        delay = (live.event_now_ns - last_book) / 1e9 if last_book else _NAN
        yield _gauge("mmdaemon_feed_delay_seconds",
                     "Event time now minus the receive time of the last book update, "
                     "seconds (what the stale-feed breaker judges); NaN before the first.",
                     delay)
        yield _gauge("mmdaemon_feed_last_book_update_timestamp_seconds",
                     "Receive time of the last book update, Unix seconds (0 before the "
                     "first; a replay reports the recording's time).", last_book / 1e9)

    @staticmethod
    def _reference(ref: ReferenceFeedView, event_now_ns: int) -> Iterator[Metric]:
        """The reference venue's feed ([reference]): only with one."""
        yield _gauge("mmdaemon_reference_connected",
                     "1 while the reference feed's websocket is open, else 0 (0 on a "
                     "replay).", 1.0 if ref.connected else 0.0)
        yield _counter("mmdaemon_reference_connects_total",
                       "Reference websocket connections opened (0 on a replay).", ref.connects)
        yield _counter("mmdaemon_reference_reconnects_total",
                       "Reference websocket connections opened after the first (0 on a "
                       "replay).", ref.reconnects)
        yield _counter("mmdaemon_reference_rest_snapshots_total",
                       "REST depth snapshots of the reference fetched (0 on a replay).",
                       ref.rest_snapshots)
        yield _counter("mmdaemon_reference_rest_snapshot_failures_total",
                       "Reference REST depth snapshot requests that failed (0 on a replay).",
                       ref.snapshot_failures)
        yield _counter("mmdaemon_reference_frames_total",
                       "Reference frames handed to the engine.", ref.frames)
        yield _counter("mmdaemon_reference_gaps_total",
                       "Sequence gaps of the reference book.", ref.gaps)
        yield _gauge("mmdaemon_reference_synced",
                     "1 while the reference book is in sequence with its venue, else 0.",
                     1.0 if ref.synced else 0.0)
        yield _gauge("mmdaemon_reference_usable",
                     "1 while the fair value may price on the reference (synced, fresh), "
                     "else 0: it falls back to the local fair value or halts.",
                     1.0 if ref.usable else 0.0)
        age = (event_now_ns - ref.last_frame_ns) / 1e9 if ref.last_frame_ns else _NAN
        yield _gauge("mmdaemon_reference_last_frame_age_seconds",
                     "Event time now minus the receive time of the last reference frame, "
                     "seconds; NaN before the first.", age)

    def _orders(self, t: TradingView) -> Iterator[Metric]:
        yield _counter("mmdaemon_quotes_total",
                       "Quotes decided (one per frame that changed a quoter input).", t.quotes)
        requests = CounterMetricFamily(
            "mmdaemon_order_requests", "Order requests sent to the exchange, by kind.",
            labels=["kind"])
        requests.add_metric(["place"], t.orders)
        requests.add_metric(["amend"], t.amends)
        requests.add_metric(["cancel"], t.cancels)
        yield requests
        yield _counter("mmdaemon_order_blocked_total",
                       "Order actions stopped by a pre-trade check (never sent).", t.blocked)
        unsendable = CounterMetricFamily(
            "mmdaemon_quotes_unsendable",
            "Quote sides that could not become orders, by reason: min_size, min_notional "
            "(the instrument's minimums, per quote side); max_order_size, price_band, "
            "max_open_orders, order_rate (pre-trade checks, per order action).",
            labels=["reason"])
        for reason, count in t.unsendable.items():
            unsendable.add_metric([reason], count)
        yield unsendable
        yield _counter("mmdaemon_order_rejects_total",
                       "Order requests the exchange rejected.", t.rejects)
        yield _gauge("mmdaemon_open_orders", "Orders of ours the order manager holds open.",
                     t.open_orders)
        yield _gauge("mmdaemon_quote_two_sided",
                     "1 while an acknowledged order rests on each side, else 0.",
                     1.0 if t.two_sided else 0.0)
        up = self.uptime
        yield _counter("mmdaemon_quote_two_sided_seconds_total",
                       "Monotonic seconds sampled with an acknowledged order resting on "
                       "each side (sample and hold).", up.two_sided_ns / 1e9)
        yield _counter("mmdaemon_quote_observed_seconds_total",
                       "Monotonic seconds covered by quote-uptime samples since the "
                       "metrics server started.", up.observed_ns / 1e9)

    @staticmethod
    def _position(snap: Snapshot, t: TradingView, money: Fraction) -> Iterator[Metric]:
        yield _counter("mmdaemon_fills_total", "Our fills, journaled.", t.fills)
        yield _counter("mmdaemon_fill_volume_lots_total", "Traded volume of our fills, lots.",
                       t.volume_lots)
        yield _gauge("mmdaemon_position_lots", "Signed position (long > 0), lots.",
                     t.position_lots)
        yield _gauge("mmdaemon_position_base",
                     "Signed position (long > 0), base currency (lots x lot_size).",
                     float(t.position_lots * Fraction(snap.lot_size)))
        mark = t.mark_ticks
        if mark is not None and t.unrealized_units is not None and t.total_units is not None:
            unrealized = float(t.unrealized_units * money)
            total = float(t.total_units * money)
            mark_quote = float(mark * Fraction(snap.tick_size))
        else:
            unrealized = total = 0.0 if t.position_lots == 0 else _NAN
            mark_quote = _NAN
        yield _gauge("mmdaemon_mark_price_quote",
                     "Mark price (the book's mid), quote currency; NaN without a book.",
                     mark_quote)
        yield _gauge("mmdaemon_pnl_realized_quote",
                     "Realized PnL (average cost, before fees), quote currency.",
                     float(t.realized_units * money))
        yield _gauge("mmdaemon_pnl_unrealized_quote",
                     "Unrealized PnL of the open position at the mark, quote currency.",
                     unrealized)
        yield _gauge("mmdaemon_fees_quote",
                     "Fees paid (negative: rebates received), quote currency.",
                     float(t.fees_units * money))
        yield _gauge("mmdaemon_funding_quote",
                     "Funding received on a perpetual-futures position (negative: paid), "
                     "quote currency.", float(t.funding_units * money))
        yield _gauge("mmdaemon_pnl_total_quote",
                     "Total PnL = realized + unrealized - fees + funding, quote currency.",
                     total)
        lim = t.limits
        yield _gauge("mmdaemon_pnl_peak_quote",
                     "Highest total PnL so far (kept across restarts), quote currency: the "
                     "drawdown is peak - total; NaN before the first marked PnL.",
                     _NAN if lim.pnl_peak_units is None else float(lim.pnl_peak_units * money))
        yield _gauge("mmdaemon_risk_inventory_soft_limit_lots",
                     "risk.inventory_soft_lots in force: |position| at or above it is REDUCING.",
                     lim.inventory_soft_lots)
        yield _gauge("mmdaemon_risk_inventory_hard_limit_lots",
                     "risk.inventory_hard_lots in force: |position| at or above it is KILLED.",
                     lim.inventory_hard_lots)
        yield _gauge("mmdaemon_risk_max_loss_quote",
                     "risk.max_loss in force, quote currency: a total PnL at or below minus "
                     "this is KILLED.", float(lim.max_loss_units * money))
        yield _gauge("mmdaemon_risk_max_drawdown_quote",
                     "risk.max_drawdown in force, quote currency: a fall of the total PnL "
                     "from its peak this large is KILLED.", float(lim.max_drawdown_units * money))

    def _risk(self, t: TradingView) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "mmdaemon_trading_state", "1 for the current trading state, 0 for the others.",
            labels=["state"])
        for each in TradingState:
            state.add_metric([each.value], 1.0 if t.state == each.value else 0.0)
        yield state
        yield _gauge("mmdaemon_kill_switch_latched",
                     "1 while the kill switch is latched (cleared only by a re-arm).",
                     1.0 if t.killed else 0.0)
        active = {(name, TradingState.HALTED.value) for name in t.halts}
        active |= {(name, TradingState.REDUCING.value) for name in t.reducing}
        self._conditions |= active
        conditions = GaugeMetricFamily(
            "mmdaemon_risk_condition",
            "1 while the named condition holds (severity: the state it forces), "
            "0 once it has cleared.", labels=["condition", "severity"])
        for name, severity in sorted(self._conditions):
            conditions.add_metric([name, severity], 1.0 if (name, severity) in active else 0.0)
        yield conditions
        yield _counter("mmdaemon_breaker_trips_total", "Breaker trips since start.",
                       t.breaker_trips)

    @staticmethod
    def _markouts(snap: Snapshot, t: TradingView) -> Iterator[Metric]:
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "resolved_fills": CounterMetricFamily(
                "mmdaemon_markout_resolved_fills",
                "Journaled fills whose exact markout at the horizon is known.",
                labels=["horizon_seconds"]),
            "resolved_lots": CounterMetricFamily(
                "mmdaemon_markout_resolved_lots",
                "Lots of the fills resolved at the horizon (the rates' denominator).",
                labels=["horizon_seconds"]),
            "unresolved_fills": GaugeMetricFamily(
                "mmdaemon_markout_unresolved_fills",
                "Journaled fills without a markout at the horizon: pending, or never (the "
                "report came after the horizon had passed, no mid, an earlier run stopped "
                "first).", labels=["horizon_seconds"]),
            "adverse_move_rate": GaugeMetricFamily(
                "mmdaemon_markout_adverse_move_ratio",
                "Lots after which the mid moved against us at the horizon / lots resolved "
                "(0..1); NaN before the first.", labels=["horizon_seconds"]),
            "negative_markout_rate": GaugeMetricFamily(
                "mmdaemon_markout_negative_ratio",
                "Lots whose markout (side x (mid at the horizon - our price)) is negative / "
                "lots resolved (0..1); NaN before the first.", labels=["horizon_seconds"]),
            "win_rate": GaugeMetricFamily(
                "mmdaemon_markout_win_ratio",
                "Lots whose markout is positive / lots resolved (0..1); NaN before the "
                "first.", labels=["horizon_seconds"]),
            "markout_bps": GaugeMetricFamily(
                "mmdaemon_markout_bps",
                "Markout money / notional at the mids before the fills, bps (> 0 good for "
                "us); NaN before the first.", labels=["horizon_seconds"]),
        }
        money = GaugeMetricFamily(
            "mmdaemon_markout_pnl_quote",
            "Sum of the resolved markouts in money, quote currency (the currency label).",
            labels=["horizon_seconds", "currency"])
        for row in t.markouts:
            label = [_fmt_horizon(row["horizon_s"])]
            for key, family in families.items():
                value = row[key]
                family.add_metric(label, _NAN if value is None else value)
            money.add_metric([*label, snap.currency], row["markout_pnl"])
        yield from families.values()
        yield money

    @staticmethod
    def _adverse(adverse: AdverseView) -> Iterator[Metric]:
        ema = GaugeMetricFamily(
            "mmdaemon_adverse_detector_markout_ema_bps",
            "The quoter's adverse-selection detector: EMA of its mid moves after our fills "
            "per horizon, bps of the mid (> 0 good for us); NaN before the horizon's "
            "first.", labels=["horizon_seconds"])
        count = CounterMetricFamily(
            "mmdaemon_adverse_detector_markouts",
            "The quoter's adverse-selection detector: fills it has judged per horizon.",
            labels=["horizon_seconds"])
        for i, horizon in enumerate(adverse.horizons_s):
            label = [_fmt_horizon(horizon)]
            n = adverse.markouts[i]
            ema.add_metric(label, adverse.ema_bps[i] if n else _NAN)
            count.add_metric(label, n)
        yield ema
        yield count
        yield _gauge("mmdaemon_adverse_detector_recent_adverse_move_ratio",
                     "The quoter's adverse-selection detector: recent share of fills whose "
                     "mid moved against them at the shortest horizon (size-weighted, "
                     "decayed, shrunk toward the baseline), 0..1; see quoting/adverse.py.",
                     adverse.recent_adverse_move_rate)
        yield _gauge("mmdaemon_adverse_detector_baseline_adverse_move_ratio",
                     "The quoter's adverse-selection detector: this market's normal share of "
                     "fills whose mid moved against them, 0..1; the half-spread widens by "
                     "x(1 + recent - baseline) when the recent share is higher.",
                     adverse.baseline_adverse_move_rate)
        yield _gauge("mmdaemon_adverse_toxic",
                     "1 inside a toxicity cool-down at the current event time, else 0.",
                     1.0 if adverse.toxic else 0.0)

    @staticmethod
    def _calibration(c: CalibrationView) -> Iterator[Metric]:
        yield _gauge("mmdaemon_glft_a_per_second",
                     "GLFT's A in use: market orders per second reaching depth 0, online "
                     "calibration's latest good fit, bounded (the configured value before).",
                     c.a_per_s)
        yield _gauge("mmdaemon_glft_kappa_per_tick",
                     "GLFT's k in use: decay of the market-order intensity per tick of depth "
                     "(online calibration; the configured value before its first good fit).",
                     c.kappa_per_tick)
        yield _gauge("mmdaemon_glft_sigma_bps",
                     "GLFT's sigma in use from online calibration, bps of the mid per "
                     "sqrt(second); NaN until its first good fit (the volatility estimator's "
                     "is used until then).", c.sigma_bps)
        yield _counter("mmdaemon_glft_refits", "Online calibration's re-fits tried.",
                       c.refits)
        yield _counter("mmdaemon_glft_refit_failures",
                       "Online calibration's re-fits that failed (too few market orders, no "
                       "fit, k <= 0): the previous values stayed.", c.failures)
        yield _counter("mmdaemon_glft_refits_clamped",
                       "Online calibration's re-fits applied with a value clamped to its "
                       "bounds ([strategy.skew.online] *_min, *_max).", c.clamped)

    @staticmethod
    def _histogram(latency: LatencyHistogram) -> Metric:
        return HistogramMetricFamily(
            "mmdaemon_tick_to_quote_seconds",
            "In-process time from a frame's arrival in the daemon to its order actions "
            "being decided, seconds (frames that requote only).",
            buckets=latency.cumulative(), sum_value=latency.sum_ns / 1e9)


class MetricsServer:
    """``GET /metrics`` in Prometheus text format, served from the running event loop.

    ``port`` 0 binds an ephemeral port (read :attr:`port` after :meth:`start`); whether
    metrics are on at all is the caller's decision (the config's ``port = 0`` means off).
    ``uptime_sample_s``: period of the quote-uptime sampling task, seconds.
    ``process_metrics``: also serve prometheus-client's ``process_*``, ``python_gc_*`` and
    ``python_info`` families (memory, CPU, open files: the "memory flat" goal).
    ``clock``: the uptime is measured and sampled on it (the system's clock by default).
    """

    def __init__(self, service: Observed, host: str = DEFAULT_HOST, port: int = 0, *,
                 latency: LatencyHistogram | None = None, allow_non_loopback: bool = False,
                 uptime_sample_s: float = 0.25, process_metrics: bool = True,
                 clock: Clock | None = None, wire: LatencyHistogram | None = None) -> None:
        check_host(host, allow_non_loopback)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"metrics port: expected an integer 0..65535, got {port!r}")
        if not (math.isfinite(uptime_sample_s) and uptime_sample_s > 0):
            raise ValueError(f"uptime_sample_s: expected seconds > 0, got {uptime_sample_s!r}")
        self.service = service
        self.host = host
        self.requested_port = port
        self.uptime_sample_s = uptime_sample_s
        self.clock: Clock = clock or SystemClock()
        self.collector = ServiceCollector(service, latency, clock=self.clock, wire=wire)
        self.registry = CollectorRegistry()
        self.registry.register(self.collector)
        if process_metrics:
            # our own instances: the library's defaults are bound to its global registry
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        self.runner: web.AppRunner | None = None
        self._sampler: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (the ephemeral one when 0 was asked for)."""
        if self.runner is None or not self.runner.addresses:
            raise RuntimeError("metrics server not started")
        address = self.runner.addresses[0]
        return int(address[1])

    async def start(self) -> None:
        """Bind and serve; start the uptime sampler. Raises OSError if the port is taken."""
        from aiohttp import web  # here: a replay without metrics starts ~0.1 s sooner

        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        # no access log: a scrape every few seconds would drown the daemon's own log
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.requested_port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self.runner = runner
        self.collector.sample_uptime()  # the uptime clock starts now
        self._sampler = asyncio.get_running_loop().create_task(
            self._sample_loop(), name="metrics-uptime")
        self.service.log.info("metrics_listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        """Stop sampling and serving (idempotent)."""
        sampler, self._sampler = self._sampler, None
        if sampler is not None:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
        runner, self.runner = self.runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> MetricsServer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    async def _sample_loop(self) -> None:
        sample, period = self.collector.sample_uptime, self.uptime_sample_s
        sleep = self.clock.sleep
        while True:
            await sleep(period)
            sample()

    async def _handle(self, request: web.Request) -> web.Response:
        from aiohttp import web
        try:
            # synchronous on purpose: the scrape sees one state, and no other thread reads
            # the service's objects while the loop mutates them
            body = generate_latest(self.registry)
        except Exception as exc:
            self.service.log.error("metrics_collect_failed", error=repr(exc))
            return web.Response(status=500, text="metrics collection failed\n")
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def serve_metrics(service: Observed, host: str = DEFAULT_HOST, port: int = 0, *,
                        latency: LatencyHistogram | None = None,
                        allow_non_loopback: bool = False,
                        uptime_sample_s: float = 0.25,
                        clock: Clock | None = None,
                        wire: LatencyHistogram | None = None) -> MetricsServer:
    """Start a :class:`MetricsServer` for ``service`` on ``host:port``; ``await .stop()``
    when done. ValueError for a non-loopback ``host`` unless ``allow_non_loopback``."""
    server = MetricsServer(service, host, port, latency=latency,
                           allow_non_loopback=allow_non_loopback,
                           uptime_sample_s=uptime_sample_s, clock=clock, wire=wire)
    await server.start()
    return server
