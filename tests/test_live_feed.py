"""The live network path over loopback: the sim venue serves a real recording, the daemon
connects to it with its websocket feed client, and we break things."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from mmdaemon.clock import SystemClock
from mmdaemon.config import load_config
from mmdaemon.daemon import Service
from mmdaemon.feed.websocket import backoff_delay
from mmdaemon.model import BINANCE_SPOT_BTCUSDT
from mmdaemon.sim.server import SimVenue
from tests.helpers import first_lines, until, write_config
from tests.recorder import Recorder


@pytest.fixture
def short_recording(tmp_path: Path) -> Path:
    """The first ~3 minutes of the real recording (snapshot at line 8): at speed 8 the tape
    lasts ~22 s, longer than every step takes on a loaded machine (with ~60 s, ~7.5 s of
    tape, a busy CI box ran out of market before the last step's gap was served)."""
    return first_lines(tmp_path / "short.gz", 20_000)




def state_changes(log: Recorder) -> list[tuple[str, str]]:
    return [(e["new"], e["reason"]) for e in log.named("state_changed")]


async def test_daemon_syncs_quotes_and_survives_drops_silence_and_gaps(
    tmp_path: Path, short_recording: Path
) -> None:
    async with SimVenue([short_recording], BINANCE_SPOT_BTCUSDT, speed=8.0,
                        clock=SystemClock()) as sim:
        config = load_config(write_config(tmp_path, {
            "feed": {"recordings": [], "url": sim.ws_url, "rest_url": sim.rest_url,
                     "stale_after_ms": 600, "backoff_initial_ms": 50, "backoff_max_ms": 200},
            "risk": {"stale_feed_ms": 400, "supervisor_interval_ms": 20},
        }))
        log = Recorder()
        service = Service(config, SystemClock(), log)
        assert service.live is not None
        run = asyncio.create_task(service.run())
        try:
            # 1. it connects, fetches a snapshot, syncs and quotes
            await until(lambda: service.book.synced and service.counters.orders > 0)
            assert log.named("feed_snapshot") and service.risk.state.value == "ACTIVE"

            # 2. the book equals the venue's own book at the same update id
            await until(lambda: service.book.last_id == sim.tape.market.book.last_id)
            ours, venue = service.book, sim.tape.market.book
            assert ours.bids.top(100) == venue.bids.top(100)
            assert ours.asks.top(100) == venue.asks.top(100)

            # 3. the venue hangs up: halted, reconnected, resynced, quoting again
            connects = service.live.connects
            await sim.tape.drop_connections()
            await until(lambda: service.live.connects > connects)
            await until(lambda: service.risk.state.value == "ACTIVE")
            assert ("HALTED", "book_out_of_sync") in state_changes(log)
            assert len(log.named("feed_snapshot")) >= 2

            # 4. connected but silent: stale -> HALTED, quotes pulled, then recovery
            mark = len(log.events)
            sim.tape.go_silent(1.5)
            await until(lambda: ("HALTED", "feed_stale") in [
                (e.get("new"), e.get("reason")) for e in log.events[mark:]])
            await until(lambda: service.risk.state.value == "ACTIVE", timeout=15)
            assert service.exchange.open_order_count() <= 2

            # 5. the venue announces a shutdown: planned reconnect at once, resync
            connects = service.live.connects
            sim.tape.announce_shutdown(0)
            await until(lambda: service.live.connects > connects)
            assert log.named("feed_server_shutdown")
            await until(lambda: service.risk.state.value == "ACTIVE")
            assert not [e for e in log.named("frame_malformed") if "serverShutdown" in
                        e["reason"]]

            # 6. a depth gap: reported, a fresh snapshot resyncs the book
            gaps, snaps = service.market.gaps, service.live.snapshots
            sim.tape.skip_depth_updates(1)
            await until(lambda: service.market.gaps > gaps)
            await until(lambda: service.live.snapshots > snaps and service.book.synced)
            await until(lambda: service.book.last_id == sim.tape.market.book.last_id)
            assert service.book.bids.top(50) == sim.tape.market.book.bids.top(50)
        finally:
            service.stop()
            await asyncio.wait_for(run, 10)
    stopped = log.named("stopped")[-1]
    assert stopped["open_orders"] == 0 and service.exit_code == 0


def test_backoff_is_exponential_capped_and_jittered() -> None:
    lows = [backoff_delay(n, 0.1, 2.0, lambda: 0.0) for n in range(1, 8)]
    highs = [backoff_delay(n, 0.1, 2.0, lambda: 1.0) for n in range(1, 8)]
    assert lows == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert highs == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])


async def test_a_venue_that_accepts_and_drops_at_once_is_not_hammered(tmp_path: Path) -> None:
    """Each connection opens and closes at once: the backoff keeps growing."""
    from websockets.asyncio.server import ServerConnection, serve

    from mmdaemon.feed.websocket import FeedSettings, WebsocketFeed

    async def hang_up(ws: ServerConnection) -> None:
        await ws.close(1011, "overloaded")

    async with serve(hang_up, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        log = Recorder()
        feed = WebsocketFeed(FeedSettings(ws_url=f"ws://127.0.0.1:{port}",
                                          rest_url=f"http://127.0.0.1:{port}", symbol="BTCUSDT",
                                          backoff_initial_s=0.02, backoff_max_s=0.16,
                                          healthy_after_s=5.0), log, rng=lambda: 1.0)

        async def consume() -> None:
            async for _ in feed.frames():
                pass

        task = asyncio.create_task(consume())
        await until(lambda: len(log.named("feed_reconnecting")) >= 5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    delays: list[Any] = [e["delay_s"] for e in log.named("feed_reconnecting")][:5]
    assert delays == [0.02, 0.04, 0.08, 0.16, 0.16]
