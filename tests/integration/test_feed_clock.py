"""The live feed client reads every time through its injected clock: receive stamps are the
clock's wall time, and staleness, connection age, reconnect backoff and the healthy-connection
test run on the clock's monotonic time, so a test's clock drives them to the nanosecond
(a real websocket server on 127.0.0.1 sends what the test says, when it says)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from mmdaemon.feed.websocket import FeedItem, FeedSettings, Reconnected, WebsocketFeed
from tests.helpers import SteppedClock, until
from tests.recorder import Recorder

SNAPSHOT = b'{"lastUpdateId":1,"bids":[],"asks":[]}'
S = 1_000_000_000  # ns per second


@dataclass
class Venue:
    """A websocket server that holds every connection open until the test closes it, and
    answers the REST depth request with a small valid snapshot."""

    port: int = 0
    conns: list[ServerConnection] = field(default_factory=list)

    async def handler(self, ws: ServerConnection) -> None:
        self.conns.append(ws)
        await ws.wait_closed()

    def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        if request.path.startswith("/api/v3/depth"):
            return conn.respond(HTTPStatus.OK, SNAPSHOT.decode())
        return None


@asynccontextmanager
async def running(clock: SteppedClock, **settings: Any) -> AsyncIterator[
        tuple[Venue, WebsocketFeed, list[FeedItem], Recorder]]:
    """A venue, a feed on ``clock`` connected to it, what the feed yielded and logged."""
    venue = Venue()
    async with serve(venue.handler, "127.0.0.1", 0,
                     process_request=venue.process_request) as server:
        venue.port = server.sockets[0].getsockname()[1]
        log = Recorder()
        url = f"ws://127.0.0.1:{venue.port}"
        feed = WebsocketFeed(FeedSettings(ws_url=url, rest_url=url.replace("ws:", "http:"),
                                          symbol="BTCUSDT", **settings),
                             log, clock=clock, rng=lambda: 1.0)
        items: list[FeedItem] = []

        async def consume() -> None:
            async for item in feed.frames():
                items.append(item)

        task = asyncio.create_task(consume())
        try:
            yield venue, feed, items, log
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_frames_and_snapshots_are_stamped_with_the_clocks_wall_time() -> None:
    clock = SteppedClock(start_ns=5 * S)
    async with running(clock) as (venue, _, items, _):
        await until(lambda: len(items) >= 2)  # the reconnect marker and the snapshot
        clock.advance(1.5)
        await venue.conns[0].send('{"stream":"btcusdt@trade","data":{}}')
        await until(lambda: len(items) >= 3)
    connected_ns = clock.wall_offset_ns + 5 * S
    assert items[0] == Reconnected("connected", connected_ns)
    assert (connected_ns, SNAPSHOT) in items[1:3]
    assert items[2:] == [(connected_ns + 3 * S // 2, b'{"stream":"btcusdt@trade","data":{}}')]


async def test_a_connection_is_replaced_once_the_clock_passes_its_max_age() -> None:
    clock = SteppedClock()
    async with running(clock, max_connection_age_s=3600.0,
                       stale_after_ms=10 * 3600 * 1000) as (venue, feed, items, log):
        await until(lambda: len(items) >= 2)
        clock.advance(3599.999)
        await venue.conns[0].send('{"a":1}')
        await venue.conns[0].send('{"a":2}')  # read after the age check of the first
        await until(lambda: len(items) >= 4)
        assert feed.connects == 1 and not log.named("feed_planned_reconnect")
        clock.advance(0.001)
        await venue.conns[0].send('{"a":3}')
        await until(lambda: len(venue.conns) == 2)  # no backoff before a planned reconnect
    assert [e["age_s"] for e in log.named("feed_planned_reconnect")] == [3600.0]
    assert [(e["reason"], e["delay_s"]) for e in log.named("feed_reconnecting")] == [
        ("planned", 0.0)]


async def test_a_connection_silent_for_stale_after_ms_on_the_clock_is_replaced() -> None:
    clock = SteppedClock()
    async with running(clock, stale_after_ms=60_000, backoff_initial_s=0.1) as (
            venue, _, items, log):
        await until(lambda: len(items) >= 2 and 60 * S in clock.deadlines)
        clock.advance(30)
        await venue.conns[0].send('{"a":1}')  # silence counts from here now
        await until(lambda: len(items) >= 3)
        clock.advance(30)
        # the watch woke at 60 s, found 30 s of silence and sleeps to 90 s
        await until(lambda: 90 * S in clock.deadlines)
        assert not log.named("feed_stale")
        clock.advance(29.999)
        assert 90 * S in clock.deadlines and not log.named("feed_stale")
        clock.advance(0.001)
        await until(lambda: bool(log.named("feed_reconnecting")))
        assert len(venue.conns) == 1  # the backoff waits on the clock
        clock.advance(0.1)
        await until(lambda: len(venue.conns) == 2)
    assert [e["silent_ms"] for e in log.named("feed_stale")] == [60_000]
    assert [(e["reason"], e["delay_s"]) for e in log.named("feed_reconnecting")] == [
        ("stale", 0.1)]


async def test_backoff_resets_after_a_connection_healthy_for_healthy_after_s_on_the_clock(
        ) -> None:
    clock = SteppedClock()
    async with running(clock, healthy_after_s=10.0, backoff_initial_s=0.1,
                       stale_after_ms=3600 * 1000) as (venue, _, _, log):

        async def drop(n: int, after_s: float) -> None:
            """Let connection ``n`` (from 1) live ``after_s`` on the clock, then close it and
            step the clock through the backoff the feed then waits."""
            await until(lambda: len(venue.conns) == n)
            clock.advance(after_s)
            await venue.conns[n - 1].close()
            await until(lambda: len(log.named("feed_reconnecting")) == n)
            assert len(venue.conns) == n  # the backoff waits on the clock
            clock.advance(log.named("feed_reconnecting")[-1]["delay_s"])

        await drop(1, 0.0)
        await drop(2, 9.999)
        await drop(3, 10.0)  # healthy: the next failure starts the backoff afresh
        await until(lambda: len(venue.conns) == 4)
    assert [(e["attempt"], e["delay_s"]) for e in log.named("feed_reconnecting")] == [
        (1, 0.1), (2, 0.2), (1, 0.1)]
