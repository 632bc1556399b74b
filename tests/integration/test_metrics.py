"""Live metrics: a real service on a real recording, scraped over HTTP (promtool checks the
exposition in tests/process/test_metrics_promtool.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from fractions import Fraction
from itertools import pairwise
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from mmdaemon.clock import SystemClock
from mmdaemon.config import Config
from mmdaemon.config_file import load_config
from mmdaemon.daemon import Service
from mmdaemon.hosts import check_host
from mmdaemon.latency_histogram import LatencyHistogram
from mmdaemon.metrics import (
    KNOWN_CONDITIONS,
    MetricsServer,
    QuoteUptime,
    ServiceCollector,
    serve_metrics,
)
from mmdaemon.model import OrderStatus, Side
from mmdaemon.orders.manager import LiveOrder, OrderManager
from mmdaemon.risk.state import RiskState, TradingState
from mmdaemon.snapshot import is_two_sided
from tests.conftest import REPO
from tests.helpers import SteppedClock, first_lines, until
from tests.recorder import Recorder

LINES = 8000  # about a minute of market: fills, and markouts at every horizon (1, 5, 30 s)
# one observation per interesting place: below, on and above the first bound, mid-range,
# and beyond the last bound (+Inf only)
OBSERVED_NS = [0, 4_999, 5_000, 5_001, 150_000, 3_000_000, 10_000_000_000]

S = 1_000_000_000  # ns per second
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def dryrun_config(tmp_path: Path) -> Config:
    config = load_config(REPO / "config" / "dryrun.toml")
    return dataclasses.replace(config, state=dataclasses.replace(config.state, dir=str(tmp_path)))


def parse(text: str) -> Samples:
    """Every sample of a text exposition, keyed by (sample name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def scrape(port: int, path: str = "/metrics") -> tuple[int, str, str]:
    """GET ``path`` with a real HTTP client: status, content type, body."""
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, response.headers["Content-Type"], await response.text()


async def replayed_service(tmp_path: Path, lines: int = LINES) -> Service:
    """A dry-run service that has replayed the first ``lines`` frames of the recording."""
    recording = first_lines(tmp_path / "short.gz", lines)
    service = Service(dryrun_config(tmp_path / "state"), SystemClock(), Recorder(),
                      recordings=[str(recording)], speed=None)
    await service.run()
    assert service.exit_code == 0 and service.engine.market.frames == lines
    return service


def fed_histogram() -> LatencyHistogram:
    histogram = LatencyHistogram()
    for ns in OBSERVED_NS:
        histogram.observe_ns(ns)
    return histogram


# -- units ----------------------------------------------------------------------------------


def test_histogram_buckets_are_le_and_cumulative() -> None:
    h = fed_histogram()
    assert h.count == len(OBSERVED_NS) and h.sum_ns == sum(OBSERVED_NS)
    buckets = dict(h.cumulative())
    assert list(buckets)[-1] == "+Inf"
    # a value equal to a bound is inside it (le); 5_001 ns is not <= 5 us
    assert buckets["5e-06"] == 3 and buckets["1e-05"] == 4
    assert buckets["0.0001"] == 4 and buckets["0.0002"] == 5
    assert buckets["0.002"] == 5 and buckets["0.005"] == 6 and buckets["0.05"] == 6
    assert buckets["+Inf"] == len(OBSERVED_NS)
    for bad in ((), (1e-3, 1e-3), (2e-3, 1e-3), (0.0,), (math.inf,), (math.nan,)):
        with pytest.raises(ValueError, match="bounds_s"):
            LatencyHistogram(bad)


def test_quote_uptime_is_sample_and_hold() -> None:
    up = QuoteUptime()
    up.sample(1_000, True)  # starts the clock only
    assert up.observed_ns == 0 and up.two_sided_ns == 0
    up.sample(3_000, False)  # (1000, 3000] held the earlier sample's state: two-sided
    up.sample(4_000, True)  # (3000, 4000] one-sided
    up.sample(3_500, True)  # a clock going back adds nothing and moves nothing back
    up.sample(9_000, True)  # (4000, 9000] two-sided
    assert up.observed_ns == 8_000 and up.two_sided_ns == 7_000


def test_only_loopback_hosts_unless_allowed() -> None:
    for host in ("127.0.0.1", "127.0.0.53", "::1", "localhost"):
        check_host(host)
    for host in ("0.0.0.0", "::", "", "192.168.1.10", "10.0.0.1", "example.com"):
        with pytest.raises(ValueError, match="not a loopback address"):
            check_host(host)
        check_host(host, allow_non_loopback=True)


async def test_server_refuses_a_public_host_before_binding(tmp_path: Path) -> None:
    service = Service(dryrun_config(tmp_path), SystemClock(), Recorder(), recordings=["x"])
    with pytest.raises(ValueError, match="not a loopback address"):
        await serve_metrics(service, "0.0.0.0", 0)
    with pytest.raises(ValueError, match="port"):
        MetricsServer(service, "127.0.0.1", 70_000)
    # explicitly allowed: constructed (not started: a test should not listen publicly)
    MetricsServer(service, "0.0.0.0", 0, allow_non_loopback=True)


def test_two_sided_means_an_acknowledged_live_order_on_each_side() -> None:
    manager = OrderManager(1)
    buy = LiveOrder(1, Side.BUY, 100, 1000, status=OrderStatus.NEW, pending=None)
    sell = LiveOrder(2, Side.SELL, 101, 1000)  # sent, not yet acknowledged
    manager.orders = {1: buy, 2: sell}
    assert not is_two_sided(manager.orders.values())
    sell.status, sell.pending = OrderStatus.PARTIALLY_FILLED, None
    assert is_two_sided(manager.orders.values())
    sell.pending = "amend"  # still resting at its acknowledged price while an amend flies
    assert is_two_sided(manager.orders.values())
    buy.status, buy.pending = OrderStatus.PENDING_CANCEL, "cancel"
    assert not is_two_sided(manager.orders.values())


def test_before_the_service_opens_only_feed_families(tmp_path: Path) -> None:
    service = Service(dryrun_config(tmp_path), SystemClock(), Recorder(), recordings=["x"])
    registry = CollectorRegistry()
    registry.register(ServiceCollector(service))
    samples = parse(generate_latest(registry).decode())
    assert value(samples, "mmdaemon_feed_frames_total") == 0
    assert math.isnan(value(samples, "mmdaemon_feed_delay_seconds"))
    assert not any(name.startswith("mmdaemon_trading_state") for name, _ in samples)


# -- a real service, scraped ---------------------------------------------------------------


async def test_scrape_matches_the_service(tmp_path: Path) -> None:
    service = await replayed_service(tmp_path)
    server = await serve_metrics(service, "127.0.0.1", 0, latency=fed_histogram())
    try:
        status, content_type, text = await scrape(server.port)
        missing, _, _ = await scrape(server.port, "/other")
    finally:
        await server.stop()
    assert status == 200 and content_type == CONTENT_TYPE_LATEST and missing == 404
    s = parse(text)
    summary = service.summary(1.0)
    engine = service.engine
    market, counters, position = engine.market, engine.counters, engine.position

    # feed
    assert value(s, "mmdaemon_feed_frames_total") == market.frames == LINES
    assert value(s, "mmdaemon_feed_events_total", kind="depth_update") == market.depth_updates
    assert value(s, "mmdaemon_feed_events_total", kind="snapshot") == market.snapshots >= 1
    assert value(s, "mmdaemon_feed_events_total", kind="trade") == market.trades > 0
    assert value(s, "mmdaemon_book_gaps_total") == market.gaps == 0
    assert value(s, "mmdaemon_book_resyncs_total") == market.resyncs
    assert value(s, "mmdaemon_feed_malformed_frames_total") == market.malformed
    assert value(s, "mmdaemon_feed_reconnects_total") == 0  # a replay has no connection
    for name in ("mmdaemon_feed_rest_snapshot_failures_total", "mmdaemon_feed_sheds_total",
                 "mmdaemon_feed_backlog_frames", "mmdaemon_feed_lag_max_seconds"):
        assert value(s, name) == 0, name
    assert value(s, "mmdaemon_book_synced") == 1
    delay = value(s, "mmdaemon_feed_delay_seconds")
    assert delay == (service.engine.now_ns - service.engine.last_book_ns) / 1e9 and delay >= 0
    assert value(s, "mmdaemon_feed_last_book_update_timestamp_seconds") == \
        service.engine.last_book_ns / 1e9

    # orders
    assert value(s, "mmdaemon_quotes_total") == counters.quotes > 0
    assert value(s, "mmdaemon_order_requests_total", kind="place") == counters.orders > 0
    assert value(s, "mmdaemon_order_requests_total", kind="amend") == counters.amends > 0
    assert value(s, "mmdaemon_order_requests_total", kind="cancel") == counters.cancels
    assert value(s, "mmdaemon_order_blocked_total") == counters.blocked
    assert value(s, "mmdaemon_order_rejects_total") == counters.rejects
    assert value(s, "mmdaemon_open_orders") == 0  # everything was cancelled at the end
    assert value(s, "mmdaemon_quote_two_sided") == 0
    assert value(s, "mmdaemon_quote_two_sided_seconds_total") == 0
    assert value(s, "mmdaemon_quote_observed_seconds_total") >= 0

    # position and PnL: the same numbers as the dry-run summary, in base/quote currency
    assert value(s, "mmdaemon_fills_total") == position.fills == summary["fills"] > 0
    assert value(s, "mmdaemon_fill_volume_lots_total") == position.volume
    assert value(s, "mmdaemon_position_lots") == position.position == summary["position_lots"]
    assert position.position != 0
    assert value(s, "mmdaemon_position_base") == summary["position"]
    assert value(s, "mmdaemon_mark_price_quote") == summary["mark"]
    assert value(s, "mmdaemon_pnl_realized_quote") == summary["realized_pnl"] != 0
    assert value(s, "mmdaemon_pnl_unrealized_quote") == summary["unrealized_pnl"]
    assert value(s, "mmdaemon_fees_quote") == summary["fees"]
    assert value(s, "mmdaemon_pnl_total_quote") == summary["total_pnl"]

    # risk: one state is 1, the others 0
    current = service.engine.risk.state
    for state in TradingState:
        expected = 1.0 if state is current else 0.0
        assert value(s, "mmdaemon_trading_state", state=state.value) == expected
    assert value(s, "mmdaemon_kill_switch_latched") == 0
    # every known condition has a series; the run ended with none holding
    assert not service.engine.risk.halts and not service.engine.risk.reducing
    shown = {(dict(labels)["condition"], dict(labels)["severity"]): v
             for (name, labels), v in s.items() if name == "mmdaemon_risk_condition"}
    assert shown == dict.fromkeys(KNOWN_CONDITIONS, 0.0)
    assert value(s, "mmdaemon_instrument_info", venue="binance-spot", symbol="BTCUSDT",
                 tick_size="0.01", lot_size="0.00000001", adapter="paper", feed="replay") == 1

    # the quoter's detector per horizon (the exact markouts: tests/process/test_markouts.py)
    adverse = service.engine.quoter.adverse
    for i, horizon in enumerate(("1", "5", "30")):
        assert value(s, "mmdaemon_adverse_detector_markouts_total",
                     horizon_seconds=horizon) == adverse.markouts[i] > 0
        assert value(s, "mmdaemon_adverse_detector_markout_ema_bps",
                     horizon_seconds=horizon) == adverse.ema_bps[i]

    # the latency histogram: cumulative buckets, count = observations fed
    buckets = sorted(
        (float(dict(labels)["le"]), v)
        for (name, labels), v in s.items() if name == "mmdaemon_tick_to_quote_seconds_bucket"
    )
    assert buckets[-1] == (math.inf, len(OBSERVED_NS))
    assert all(a[1] <= b[1] for a, b in pairwise(buckets))
    for le, count in buckets:
        assert count == sum(1 for ns in OBSERVED_NS if ns <= le * 1e9)
    assert value(s, "mmdaemon_tick_to_quote_seconds_count") == len(OBSERVED_NS)
    assert value(s, "mmdaemon_tick_to_quote_seconds_sum") == pytest.approx(
        sum(OBSERVED_NS) / 1e9, rel=1e-12)

    # the standard process families come along
    assert value(s, "process_resident_memory_bytes") > 0


async def test_the_risk_limits_in_force_and_the_pnl_peak_are_served(tmp_path: Path) -> None:
    """What a dashboard draws a position and a PnL against: the config's limits, in lots
    and in quote currency, followed when a reload swaps them, and the peak the drawdown
    breaker measures from."""
    service = await replayed_service(tmp_path)
    registry = CollectorRegistry()
    registry.register(ServiceCollector(service))
    risk, engine = service.config.risk, service.engine
    s = parse(generate_latest(registry).decode())
    assert value(s, "mmdaemon_risk_inventory_soft_limit_lots") == risk.inventory_soft_lots > 0
    assert value(s, "mmdaemon_risk_inventory_hard_limit_lots") == risk.inventory_hard_lots
    assert value(s, "mmdaemon_risk_max_loss_quote") == float(risk.max_loss) > 0
    assert value(s, "mmdaemon_risk_max_drawdown_quote") == float(risk.max_drawdown) > 0
    assert engine.breakers.peak is not None  # the replay marked its PnL
    peak = value(s, "mmdaemon_pnl_peak_quote")
    assert peak >= value(s, "mmdaemon_pnl_total_quote") and peak >= 0
    money = Fraction(engine.instrument.tick_size) * Fraction(engine.instrument.lot_size)
    assert peak == float(engine.breakers.peak * money)
    # a reload swaps the breakers' limits (Engine.reload): the next scrape shows the new ones
    engine.breakers.limits = dataclasses.replace(
        engine.breakers.limits, inventory_soft_lots=123, max_loss_units=Fraction(7) / money)
    s = parse(generate_latest(registry).decode())
    assert value(s, "mmdaemon_risk_inventory_soft_limit_lots") == 123
    assert value(s, "mmdaemon_risk_max_loss_quote") == 7.0


async def test_risk_conditions_and_state_follow_the_risk_layer(tmp_path: Path) -> None:
    service = await replayed_service(tmp_path, 2000)
    # a fresh risk state (the journal the service's own one reports to is closed now)
    service.engine.risk = risk = RiskState(lambda *_: None)
    registry = CollectorRegistry()
    registry.register(ServiceCollector(service))

    def scraped() -> Samples:
        return parse(generate_latest(registry).decode())

    risk.set_condition(TradingState.HALTED, "feed_stale", True, silent_ms=2500)
    risk.set_condition(TradingState.REDUCING, "new_condition", True)
    s = scraped()
    assert value(s, "mmdaemon_risk_condition", condition="feed_stale", severity="HALTED") == 1
    assert value(s, "mmdaemon_risk_condition", condition="new_condition",
                 severity="REDUCING") == 1
    assert value(s, "mmdaemon_risk_condition", condition="reject_burst", severity="HALTED") == 0
    assert value(s, "mmdaemon_trading_state", state="HALTED") == 1
    assert value(s, "mmdaemon_trading_state", state="ACTIVE") == 0
    risk.set_condition(TradingState.HALTED, "feed_stale", False)
    risk.set_condition(TradingState.REDUCING, "new_condition", False)
    risk.kill("operator_kill_switch")
    s = scraped()
    # cleared conditions stay as 0, even one the collector only learnt about at run time
    assert value(s, "mmdaemon_risk_condition", condition="feed_stale", severity="HALTED") == 0
    assert value(s, "mmdaemon_risk_condition", condition="new_condition",
                 severity="REDUCING") == 0
    assert value(s, "mmdaemon_trading_state", state="KILLED") == 1
    assert sum(value(s, "mmdaemon_trading_state", state=t.value) for t in TradingState) == 1
    assert value(s, "mmdaemon_kill_switch_latched") == 1


async def test_scrape_while_the_service_runs(tmp_path: Path) -> None:
    """Served from the same loop as a paced replay: before start-up, during, after stop."""
    recording = first_lines(tmp_path / "short.gz", 3000)  # about 25 s of market
    service = Service(dryrun_config(tmp_path / "state"), SystemClock(), Recorder(),
                      recordings=[str(recording)], speed=50.0)
    async with MetricsServer(service, uptime_sample_s=0.01) as server:
        _, _, before = await scrape(server.port)  # not opened yet: feed families only
        assert value(parse(before), "mmdaemon_feed_frames_total") == 0
        run = asyncio.create_task(service.run())
        await until(lambda: service.engine.market.frames > 1000)
        status, _, during = await scrape(server.port)
        service.stop()
        await run
    assert status == 200
    s = parse(during)
    assert 1000 < value(s, "mmdaemon_feed_frames_total") < 3000
    assert value(s, "mmdaemon_trading_state", state=TradingState.ACTIVE.value) == 1
    assert value(s, "mmdaemon_quote_observed_seconds_total") > 0
    assert 0 <= value(s, "mmdaemon_quote_two_sided_seconds_total") <= \
        value(s, "mmdaemon_quote_observed_seconds_total")
    # paced at 50x, event time runs ahead of the last book update only a little
    assert 0 <= value(s, "mmdaemon_feed_delay_seconds") < 5
    assert service.exit_code == 0


async def test_quote_uptime_is_sampled_and_measured_on_the_servers_clock(
        tmp_path: Path) -> None:
    """The sampler waits ``uptime_sample_s`` on the injected clock, and the time between
    samples is that clock's: a test clock drives the uptime to the nanosecond."""
    service = Service(dryrun_config(tmp_path), SystemClock(), Recorder(), recordings=["x"])
    service._open()  # the journal: orders, position and risk exist from here
    manager = service.engine.manager
    manager.orders = {1: LiveOrder(1, Side.BUY, 100, 1000, status=OrderStatus.NEW, pending=None),
                      2: LiveOrder(2, Side.SELL, 101, 1000, status=OrderStatus.NEW,
                                   pending=None)}
    clock = SteppedClock()
    try:
        await uptime_on(service, manager, clock)
    finally:
        service.journal.close()
        service.latch.close()


async def uptime_on(service: Service, manager: OrderManager, clock: SteppedClock) -> None:
    async with MetricsServer(service, uptime_sample_s=2.0, process_metrics=False,
                             clock=clock) as server:
        uptime = server.collector.uptime
        await until(lambda: clock.deadlines == [2 * S])  # sampled at 0, asleep until 2 s
        assert uptime.observed_ns == 0
        clock.advance(2)
        await until(lambda: clock.deadlines == [4 * S])
        assert uptime.observed_ns == uptime.two_sided_ns == 2 * S
        manager.orders[2].status = OrderStatus.PENDING_CANCEL  # one side only from here
        manager.orders[2].pending = "cancel"
        clock.advance(1.5)
        server.collector.sample_uptime()  # what a scrape does
        clock.advance(0.5)
        await until(lambda: clock.deadlines == [6 * S])
    # sample and hold: two-sided until the sample at 3.5 s saw one side
    assert (uptime.observed_ns, uptime.two_sided_ns) == (4 * S, 3_500_000_000)


def test_an_uptime_sample_asks_for_two_sidedness_not_a_whole_snapshot(tmp_path: Path) -> None:
    """The sampler runs four times a second beside the hot path: it must not build the
    snapshot a scrape builds (markout rows, adverse rates: tens of microseconds)."""
    service = Service(dryrun_config(tmp_path), SystemClock(), Recorder(), recordings=["x"])
    service._open()
    try:
        taken: list[int] = []
        snapshot = service.snapshot

        def counted() -> Any:
            taken.append(1)
            return snapshot()

        service.snapshot = counted  # type: ignore[method-assign]
        manager = service.engine.manager
        manager.orders = {1: LiveOrder(1, Side.BUY, 100, 1000, status=OrderStatus.NEW),
                          2: LiveOrder(2, Side.SELL, 101, 1000, status=OrderStatus.NEW)}
        clock = SteppedClock()
        collector = ServiceCollector(service, clock=clock)
        for _ in range(3):
            collector.sample_uptime()
            clock.advance(1)
        assert taken == []
        assert collector.uptime.two_sided_ns == collector.uptime.observed_ns == 2 * S
    finally:
        service.journal.close()
        service.latch.close()
