"""The whole network path over loopback: the sim venue (market data + order entry) and the
daemon with its live feed and the Binance gateway. Quotes rest at the sim, fills come back
through the user-data stream, and the books of both sides agree on the position."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from mmdaemon.clock import SystemClock
from mmdaemon.config_file import load_config
from mmdaemon.daemon import Service
from mmdaemon.exchange.fill_model import PaperVenue
from mmdaemon.model import BINANCE_SPOT_BTCUSDT
from mmdaemon.sim.orders import OrderEntry
from mmdaemon.sim.server import SimVenue
from tests.helpers import first_lines, until, write_config
from tests.recorder import Recorder

KEY, SECRET = "loopback-key", "loopback-secret-never-logged"


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    return first_lines(tmp_path / "short.gz", 12000)  # ~100 s of market


def sim_and_config(tmp_path: Path, recording: Path, monkeypatch: pytest.MonkeyPatch,
                   speed: float) -> tuple[SimVenue, OrderEntry, Path]:
    entry = OrderEntry(BINANCE_SPOT_BTCUSDT, PaperVenue(BINANCE_SPOT_BTCUSDT, 0, "0", "0"),
                       {KEY: SECRET}, lambda: time.time_ns() // 1_000_000,
                       base_balance="10", quote_balance="1000000")  # the checks need them
    sim = SimVenue([recording], BINANCE_SPOT_BTCUSDT, speed=speed, clock=SystemClock(),
                   order_entry=entry)
    monkeypatch.setenv("MMDAEMON_API_KEY", KEY)
    monkeypatch.setenv("MMDAEMON_API_SECRET", SECRET)
    return sim, entry, tmp_path


def daemon_config(tmp_path: Path, sim: SimVenue) -> Path:
    return write_config(tmp_path, {
        "feed": {"recordings": [], "url": sim.ws_url, "rest_url": sim.rest_url},
        "exchange": {"adapter": "binance", "ws_api_url": f"{sim.ws_url}/ws-api/v3",
                     "client_id_prefix": "mmtest"},
        "orders": {"price_tolerance_ticks": 5},
        "logging": {"level": "debug"},  # order_sent events
    })


async def test_quotes_rest_at_the_sim_fills_come_back_positions_agree(
    tmp_path: Path, recording: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, entry, _ = sim_and_config(tmp_path, recording, monkeypatch, speed=10.0)
    async with sim:
        log = Recorder()
        service = Service(load_config(daemon_config(tmp_path, sim)), SystemClock(), log)
        run = asyncio.create_task(service.run())
        try:
            await until(lambda: service.engine.book.synced and len(entry.open_orders()) > 0)
            sides = {o.side for o in entry.open_orders()}
            assert sides, "our quotes rest at the venue"
            await until(lambda: service.engine.position.fills >= 3, timeout=30)
            await until(lambda: service.engine.position.position == entry.position_lots)
        finally:
            service.stop()
            await asyncio.wait_for(run, 15)
        assert entry.open_orders() == []  # the graceful stop cancelled everything
        assert service.engine.position.position == entry.position_lots
        assert service.exit_code == 0
    fills = log.named("fill")
    assert len(fills) == service.engine.position.fills and all(f["exec_id"] > 0 for f in fills)
    assert not [e for e in log.events if SECRET in repr(e)]


async def test_kill_switch_empties_the_venue_and_nothing_is_placed_after(
    tmp_path: Path, recording: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, entry, _ = sim_and_config(tmp_path, recording, monkeypatch, speed=10.0)
    async with sim:
        log = Recorder()
        service = Service(load_config(daemon_config(tmp_path, sim)), SystemClock(), log)
        run = asyncio.create_task(service.run())
        try:
            await until(lambda: len(entry.open_orders()) > 0)
            service.kill("operator_kill_switch")  # what SIGUSR1 calls
            started = time.monotonic()
            await until(lambda: entry.open_orders() == [], timeout=5)
            emptied_s = time.monotonic() - started
            sent = [e for e in log.named("order_sent") if e["kind"] != "cancel"]
            assert sent, "orders were being placed before the kill"
            # 15 s of market processed since (1.5 s at speed 10; depth diffs come every
            # 100 ms of market): chances enough to quote
            diffs = service.engine.market.depth_updates
            await until(lambda: service.engine.market.depth_updates >= diffs + 150)
            assert entry.open_orders() == []
            assert [e for e in log.named("order_sent") if e["kind"] != "cancel"] == sent
        finally:
            service.stop()
            await asyncio.wait_for(run, 15)
    assert emptied_s < 5
    assert service.engine.risk.state.value == "KILLED"


async def test_order_connection_drop_halts_reconciles_and_leaves_no_orphans(
    tmp_path: Path, recording: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, entry, _ = sim_and_config(tmp_path, recording, monkeypatch, speed=10.0)
    async with sim:
        log = Recorder()
        service = Service(load_config(daemon_config(tmp_path, sim)), SystemClock(), log)
        run = asyncio.create_task(service.run())
        try:
            await until(lambda: len(entry.open_orders()) > 0)
            mark = len(log.events)
            await entry.drop_connections()

            def after(name: str) -> list[dict[str, object]]:
                return [e for e in log.events[mark:] if e["event"] == name]

            await until(lambda: any(not e["ready"] for e in after("venue_status")))
            await until(lambda: ("HALTED", "venue_not_ready") in [
                (e["new"], e["reason"]) for e in after("state_changed")])
            await until(lambda: service.engine.risk.state.value == "ACTIVE")
            await until(lambda: len(entry.open_orders()) > 0)
            # let it quote a while after the reconnect: 10 s of market (1 s at speed 10),
            # 100 depth diffs
            diffs = service.engine.market.depth_updates
            await until(lambda: service.engine.market.depth_updates >= diffs + 100)
            venue_orders = entry.open_orders()
            sides = [o.side for o in venue_orders]
            assert len(sides) == len(set(sides)) <= 2  # one per side, nothing left over
            assert len(venue_orders) == service.exchange.open_order_count()
        finally:
            service.stop()
            await asyncio.wait_for(run, 15)
        assert entry.open_orders() == []
        assert service.engine.position.position == entry.position_lots
