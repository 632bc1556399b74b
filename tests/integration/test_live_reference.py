"""`run` live with a `[reference]` venue: the sim serves spot and the USD-M perpetual from
the real recordings, each on its own port; the daemon subscribes to both with its own
websocket feeds, and the reference venue goes away and comes back."""

from __future__ import annotations

import asyncio
import gzip
import itertools
from pathlib import Path
from typing import Any

from mmdaemon.clock import SystemClock
from mmdaemon.config_file import load_config
from mmdaemon.daemon import Service
from mmdaemon.metrics import ServiceCollector
from mmdaemon.model import BINANCE_SPOT_BTCUSDT, BINANCE_USDM_BTCUSDT, Instrument
from mmdaemon.sim.server import ReferenceSpec, SimVenue
from tests.helpers import first_lines, rewrite, until, write_config, write_gz
from tests.recorder import Recorder

SPEED = 4.0
# 90 s of market each (at 4x, 22 s: longer than every step takes on a loaded machine)
SPOT_LINES, USDM_LINES = 10_800, 24_500


def usdm_slice(usdm_file: Path, dest: Path, symbol: str) -> Path:
    with gzip.open(usdm_file, "rb") as f:
        lines = [line.rstrip(b"\n") for line in itertools.islice(f, USDM_LINES)]
    return write_gz(dest, lines if symbol == "BTCUSDT" else rewrite(lines, symbol))


def config_for(tmp_path: Path, sim: SimVenue, instrument: Instrument, on_stale: str) -> Any:
    assert sim.reference is not None
    return load_config(write_config(tmp_path, {
        "feed": {"recordings": [], "url": sim.ws_url, "rest_url": sim.rest_url,
                 "stale_after_ms": 3000, "backoff_initial_ms": 50, "backoff_max_ms": 200},
        "risk": {"stale_feed_ms": 2000, "supervisor_interval_ms": 20},
        "strategy.fair_value": {"mode": "lead_lag"},
        "reference": {"venue": "binance-usdm", "symbol": instrument.symbol,
                      "tick_size": str(instrument.tick_size),
                      "lot_size": f"{instrument.lot_size:f}",
                      "url": sim.reference.ws_url, "rest_url": sim.reference.rest_url,
                      "stale_ms": 400, "on_stale": on_stale},
    }))


def metric(service: Service, name: str) -> float:
    for family in ServiceCollector(service).collect():
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"no metric {name}")


async def test_run_quotes_on_the_reference_and_falls_back_while_it_is_away(
        tmp_path: Path, usdm_file: Path) -> None:
    spot = first_lines(tmp_path / "spot.gz", SPOT_LINES)
    ref = usdm_slice(usdm_file, tmp_path / "usdm.gz", "BTCUSDT")
    async with SimVenue([spot], BINANCE_SPOT_BTCUSDT, speed=SPEED, clock=SystemClock(),
                        reference=ReferenceSpec((ref,), BINANCE_USDM_BTCUSDT)) as sim:
        assert sim.reference is not None
        log = Recorder()
        service = Service(config_for(tmp_path, sim, BINANCE_USDM_BTCUSDT, "fallback"),
                          SystemClock(), log)
        engine, live, reference = service.engine, service.live, service.reference_live
        assert live is not None and reference is not None and engine.reference is not None
        run = asyncio.create_task(service.run())
        try:
            # 1. both feeds sync, each by its venue's rules, and the quotes price on the
            # reference: the lead-lag fair value, not the local one
            await until(lambda: engine.book.synced and engine.reference is not None
                        and engine.reference.ok and engine.reference.lead_lag_quotes > 20
                        and engine.counters.orders > 0, timeout=30)
            ours, venue = engine.reference.book, sim.reference.tape.market.book
            await until(lambda: ours.last_id == venue.last_id)
            assert ours.bids.top(100) == venue.bids.top(100)
            assert ours.asks.top(100) == venue.asks.top(100)
            assert engine.reference.basis_updates > 0
            assert metric(service, "mmdaemon_reference_connected") == 1.0
            assert metric(service, "mmdaemon_reference_usable") == 1.0
            assert metric(service, "mmdaemon_reference_frames_total") > 100
            assert 0 <= metric(service, "mmdaemon_reference_last_frame_age_seconds") < 1.0
            assert engine.risk.state.value == "ACTIVE"

            # 2. the reference venue hangs up and refuses us for 1.5 s: the traded feed
            # goes on on its one connection, the fair value falls back to the local one,
            # the daemon keeps quoting; the reference reconnects (with backoff) and resyncs
            traded_connects, ref_connects = live.connects, reference.connects
            frames, fallbacks = engine.market.frames, engine.reference.fallback_quotes
            mark = len(log.events)
            await sim.reference.refuse_connections(1.5)
            await until(lambda: engine.reference is not None and not engine.reference.ok)
            assert not reference.connected
            await until(lambda: engine.reference is not None
                        and engine.reference.fallback_quotes > fallbacks + 5)
            assert engine.risk.state.value == "ACTIVE" and engine.market.frames > frames
            # systemd's status line says why the reference is away, the traded feed is not
            await until(lambda: "reference data" in service.readiness.outages)
            assert "market data" not in service.readiness.outages
            await until(lambda: reference.connects > ref_connects and engine.reference
                        is not None and engine.reference.ok, timeout=20)
            assert sim.reference.refused > 0 and reference.snapshots >= 2
            assert live.connects == traded_connects  # never touched
            assert engine.market.gaps == 0
            # unusable from the hang-up (stale: no frame for stale_ms; or out of sync) until
            # the resync, each spell logged once; a first snapshot the stream does not
            # bridge is a gap, and the next one resyncs (another spell, another snapshot)
            whys = [e["why"] for e in log.events[mark:] if e["event"] == "reference_unusable"]
            assert whys and set(whys) <= {"stale", "out of sync"}
            gaps = [e for e in log.events[mark:] if e["event"] == "reference_book_gap"]
            assert len(gaps) >= len(whys) - 1
            assert any(e.get("feed") == "reference" for e in log.events[mark:]
                       if e["event"] == "feed_connected")
            await until(lambda: ours.last_id == venue.last_id)
            assert ours.bids.top(50) == venue.bids.top(50)
            assert "reference data" not in service.readiness.outages
            # one feed task, both feeds merged by receive time: event time never went back
            assert engine.time_backsteps == 0
            assert not [e for e in log.events if e["event"] == "reference_feed_stopped"]
        finally:
            service.stop()
            await asyncio.wait_for(run, 10)
    assert not [e for e in log.named("state_changed") if e["reason"] == "reference_stale"]
    assert log.named("stopped")[-1]["open_orders"] == 0 and service.exit_code == 0


async def test_run_halts_while_an_other_symbols_reference_is_away_when_told_to(
        tmp_path: Path, usdm_file: Path) -> None:
    """``on_stale = "halt"``, and a reference of another symbol (the perpetual renamed
    ETHUSDT on its own grids): HALTED ``reference_stale`` with the quotes pulled while the
    reference is away, ACTIVE again once it is back; the traded feed never stops."""
    eth = Instrument("ETHUSDT", "0.001", "1")
    spot = first_lines(tmp_path / "spot.gz", SPOT_LINES)
    ref = usdm_slice(usdm_file, tmp_path / "ethusdt.gz", "ETHUSDT")
    async with SimVenue([spot], BINANCE_SPOT_BTCUSDT, speed=SPEED, clock=SystemClock(),
                        reference=ReferenceSpec((ref,), eth)) as sim:
        assert sim.reference is not None
        log = Recorder()
        service = Service(config_for(tmp_path, sim, eth, "halt"), SystemClock(), log)
        engine, live = service.engine, service.live
        assert live is not None and engine.reference is not None
        run = asyncio.create_task(service.run())
        try:
            await until(lambda: engine.counters.orders > 0
                        and engine.risk.state.value == "ACTIVE", timeout=30)
            assert engine.reference.instrument.symbol == "ETHUSDT"
            assert engine.reference.lead_lag_quotes > 0
            connects, mark = live.connects, len(log.events)
            await sim.reference.refuse_connections(1.5)
            await until(lambda: ("HALTED", "reference_stale") in [
                (e.get("new"), e.get("reason")) for e in log.events[mark:]])
            await until(lambda: service.exchange.open_order_count() == 0)
            frames = engine.market.frames
            await until(lambda: engine.market.frames > frames + 50)  # the market goes on
            await until(lambda: engine.risk.state.value == "ACTIVE"
                        and engine.counters.orders > 0, timeout=20)
            assert live.connects == connects and engine.market.gaps == 0
            assert engine.time_backsteps == 0
        finally:
            service.stop()
            await asyncio.wait_for(run, 10)
    assert log.named("stopped")[-1]["open_orders"] == 0 and service.exit_code == 0
