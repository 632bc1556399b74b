"""A feed faster than the daemon can process: the sim (a separate process) plays ~250 s of
the real recording unpaced (``--speed max``) to the daemon's live feed.

The daemon's buffers are bounded (the feed's queue, the websocket client's, TCP's); once a
frame has waited longer than ``feed.max_lag_ms`` to be processed, the daemon sheds: the
backlog and the book are dropped at once (HALTED, no quote on a stale book), the feed
reconnects and resyncs from a fresh snapshot (``feed_shed``). When the burst is over it
holds exactly the venue's final book and quotes again."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from mmdaemon.clock import SystemClock
from mmdaemon.config_file import load_config
from mmdaemon.daemon import Service
from mmdaemon.model import BINANCE_SPOT_BTCUSDT
from tests.helpers import first_lines, until, write_config
from tests.process.test_record_sim_cli import free_port, mmdaemon, wait_for_line
from tests.recorder import Recorder

MAX_LAG_MS = 20  # the sim at --speed max keeps this daemon ~50-100 ms behind


async def venue_book(port: int) -> dict[str, Any]:
    """The sim's book now (``GET /api/v3/depth``, 20 levels)."""
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{port}/api/v3/depth?symbol=BTCUSDT&limit=20") as response:
        assert response.status == 200
        book: dict[str, Any] = orjson.loads(await response.read())
        return book


async def test_an_unpaced_feed_is_shed_halted_and_recovered(tmp_path: Path) -> None:
    recording = first_lines(tmp_path / "burst.gz", 30000)
    port = free_port()
    sim = mmdaemon("sim", str(recording), "--port", str(port), "--speed", "max",
                   "--wait-for-subscriber")
    try:
        await asyncio.to_thread(wait_for_line, sim, b"sim_listening")
        url = f"ws://127.0.0.1:{port}"
        config = load_config(write_config(tmp_path, {
            "feed": {"recordings": [], "url": url, "rest_url": f"http://127.0.0.1:{port}",
                     # quiet after the burst: reconnect, resync to the venue's final book
                     "max_lag_ms": MAX_LAG_MS, "stale_after_ms": 1500,
                     "backoff_initial_ms": 20, "backoff_max_ms": 200},
            "risk": {"stale_feed_ms": 60000},  # the market is still after the burst
            "logging": {"level": "debug"},  # order_sent events
        }))
        log = Recorder()
        service = Service(config, SystemClock(), log)
        assert service.live is not None
        run = asyncio.create_task(service.run())
        try:
            await asyncio.to_thread(wait_for_line, sim, b"sim_tape_finished", 60)
            final = await venue_book(port)
            # recovered: the venue's final book, exactly, and quoting on it
            await until(lambda: service.engine.book.synced
                        and service.engine.book.last_id == final["lastUpdateId"], timeout=20)
            await until(lambda: service.engine.risk.state.value == "ACTIVE", timeout=10)
            inst = BINANCE_SPOT_BTCUSDT
            book = service.engine.book
            for side, ours in (("bids", book.bids), ("asks", book.asks)):
                assert ours.top(20) == [(inst.ticks.to_units(p), inst.lots.to_units(q))
                                        for p, q in final[side]]
            await until(lambda: service.exchange.open_order_count() > 0)
            assert not run.done()
        finally:
            service.stop()
            await asyncio.wait_for(run, 15)
    finally:
        sim.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(sim.wait, 20) == 0
    assert service.exit_code == 0
    feed = service.live
    sheds = log.named("feed_shed")
    print(f"overload: {service.engine.market.frames} frames processed, max lag "
          f"{service.pump.lag_max_ns / 1e6:.1f} ms, max backlog {service.pump.backlog_max}, "
          f"{feed.sheds} sheds dropping {feed.shed_items} queued items, "
          f"{service.engine.market.gaps} gaps, {service.engine.market.resyncs} resyncs, "
          f"{feed.snapshots} snapshots")
    # bounded: the feed's queue never held more than its size
    assert service.pump.backlog_max <= feed.settings.queue_size
    # it lagged and shed, or it kept up within the limit
    assert sheds or service.pump.lag_max_ns <= MAX_LAG_MS * 1_000_000
    assert all(e["lag_ms"] > MAX_LAG_MS for e in sheds) and feed.sheds == len(sheds)
    # no quote on a stale book: after each shed, nothing was placed or amended until the
    # book was back in sync (HALTED, then ACTIVE again)
    halted = False
    for e in log.events:
        if e["event"] == "feed_shed":
            halted = True
        elif e["event"] == "state_changed" and e["new"] == "ACTIVE":
            halted = False
        elif e["event"] == "order_sent" and e["kind"] != "cancel":
            assert not halted, "an order was placed on a shed book"
    for e in sheds:  # the shed book halts at once, unless something else halted already
        i = log.events.index(e)
        after = [x for x in log.events[i:] if x["event"] == "state_changed"][:1]
        assert not after or after[0]["new"] == "HALTED" or after[0]["old"] == "HALTED", after
