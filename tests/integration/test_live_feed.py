"""The live network path over loopback: the sim venue serves a real recording, the daemon
connects to it with its websocket feed client, and we break things."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from mmdaemon.backoff import backoff_delay
from mmdaemon.clock import SystemClock
from mmdaemon.config_file import load_config
from mmdaemon.daemon import Service
from mmdaemon.model import BINANCE_SPOT_BTCUSDT
from mmdaemon.sim.server import SimVenue
from mmdaemon.venues.binance import SyncState
from tests.helpers import first_lines, until, write_config
from tests.recorder import Recorder


@pytest.fixture
def short_recording(tmp_path: Path) -> Path:
    """The first ~3 minutes of the real recording (snapshot at line 8): at speed 8 the tape
    lasts ~22 s, longer than all the steps take on a loaded machine (the last step needs
    diffs still coming to see its gap)."""
    return first_lines(tmp_path / "short.gz", 20_000)


async def reconnected_and_resynced(service: Service, log: Recorder, connects: int,
                                   mark: int) -> None:
    """The feed has a new connection and the daemon has handled it: HALTED out of sync
    (logged after ``mark``), then ACTIVE on a fresh snapshot. The state alone can still
    read ACTIVE from before the feed task reached the reconnect."""
    assert service.live is not None
    await until(lambda: service.live is not None and service.live.connects > connects)
    await until(lambda: ("HALTED", "book_out_of_sync") in [
        (e.get("new"), e.get("reason")) for e in log.events[mark:]]
        and service.engine.risk.state.value == "ACTIVE")


def state_changes(log: Recorder) -> list[tuple[str, str]]:
    return [(e["new"], e["reason"]) for e in log.named("state_changed")]


# both readers: our kernel-stamped one (plain ws://) and websockets' client, which reads every
# wss:// feed (Binance's) and plain ws:// with feed.kernel_timestamps = false
@pytest.mark.parametrize("kernel_timestamps", [True, False], ids=["stamped", "websockets"])
async def test_daemon_syncs_quotes_and_survives_drops_silence_and_gaps(
    tmp_path: Path, short_recording: Path, kernel_timestamps: bool
) -> None:
    async with SimVenue([short_recording], BINANCE_SPOT_BTCUSDT, speed=8.0,
                        clock=SystemClock()) as sim:
        config = load_config(write_config(tmp_path, {
            "feed": {"recordings": [], "url": sim.ws_url, "rest_url": sim.rest_url,
                     "stale_after_ms": 600, "backoff_initial_ms": 50, "backoff_max_ms": 200,
                     "kernel_timestamps": kernel_timestamps},
            "risk": {"stale_feed_ms": 400, "supervisor_interval_ms": 20},
        }))
        log = Recorder()
        service = Service(config, SystemClock(), log)
        assert service.live is not None
        run = asyncio.create_task(service.run())
        try:
            # 1. it connects, fetches a snapshot, syncs and quotes
            await until(lambda: service.engine.book.synced and service.engine.counters.orders > 0)
            assert log.named("feed_snapshot") and service.engine.risk.state.value == "ACTIVE"
            assert service.live.stamp_source == ("kernel" if kernel_timestamps else "userspace")

            # 2. the book equals the venue's own book at the same update id
            await until(lambda: service.engine.book.last_id == sim.tape.market.book.last_id)
            ours, venue = service.engine.book, sim.tape.market.book
            assert ours.bids.top(100) == venue.bids.top(100)
            assert ours.asks.top(100) == venue.asks.top(100)

            # 3. the venue hangs up: halted, reconnected, resynced, quoting again
            connects, mark = service.live.connects, len(log.events)
            await sim.tape.drop_connections()
            await reconnected_and_resynced(service, log, connects, mark)
            assert ("HALTED", "book_out_of_sync") in state_changes(log)
            assert len(log.named("feed_snapshot")) >= 2

            # 4. connected but silent: stale -> HALTED, quotes pulled, then recovery
            mark = len(log.events)
            sim.tape.go_silent(1.5)
            await until(lambda: ("HALTED", "feed_stale") in [
                (e.get("new"), e.get("reason")) for e in log.events[mark:]])
            await until(lambda: service.engine.risk.state.value == "ACTIVE", timeout=15)
            assert service.exchange.open_order_count() <= 2

            # 5. the venue announces a shutdown: planned reconnect at once, resync (a diff
            # withheld in step 6 before the daemon resynced would be inside the snapshot)
            connects, mark = service.live.connects, len(log.events)
            sim.tape.announce_shutdown(0)
            await reconnected_and_resynced(service, log, connects, mark)
            assert log.named("feed_server_shutdown")
            assert not [e for e in log.named("frame_malformed") if "serverShutdown" in
                        e["reason"]]

            # 6. a depth gap: reported, a fresh snapshot resyncs the book. The diff is
            # withheld once the book runs on diffs (past the snapshot's bridge); should the
            # feed reconnect meanwhile (on a starved machine a 600 ms silence is stale, or a
            # backlog is shed), its
            # new snapshot holds the withheld diff and there is no gap to see: withhold again
            gaps, snaps, live = service.engine.market.gaps, service.live.snapshots, service.live
            for _ in range(3):
                connects = service.live.connects
                await until(lambda: service.engine.market.codec.state is SyncState.SYNCED)
                sim.tape.skip_depth_updates(1)
                await until(lambda c=connects: service.engine.market.gaps > gaps
                            or live.connects > c)
                if service.engine.market.gaps > gaps:
                    break
            assert service.engine.market.gaps > gaps, "every withheld diff was lost to a reconnect"
            await until(lambda: service.live.snapshots > snaps and service.engine.book.synced)
            await until(lambda: service.engine.book.last_id == sim.tape.market.book.last_id)
            assert service.engine.book.bids.top(50) == sim.tape.market.book.bids.top(50)
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
