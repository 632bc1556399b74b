"""The feed's hand-off (#23): frames go from the socket's read to the feed's queue with no
task in between, against real websockets servers on 127.0.0.1, under both readers (plain
``ws://`` read with kernel stamps, and websockets' client: ``feed.kernel_timestamps``
false). What the queue gave before must hold: a consumer that does not keep up stops the
reading (the venue is held back by TCP) with the backlog at most ``queue_size``, and
nothing is lost or reordered when it catches up; with a reference feed, every item handed
on is stamped no earlier than any handed on before it, even while the traded feed's queue
is full; a shed drops the backlog and replaces the connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any

import orjson
import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from mmdaemon.feed.stamped_ws import StampedConnection
from mmdaemon.feed.websocket import (
    FeedQueue,
    FeedSettings,
    Reconnected,
    ReferenceReconnected,
    WebsocketFeed,
    with_reference,
)
from mmdaemon.reference import ReferenceFrame
from tests.helpers import until
from tests.recorder import Recorder

READERS = pytest.mark.parametrize("kernel_timestamps", [True, False],
                                  ids=["stamped", "websockets"])
PAD = "x" * 1000  # a frame about as large as a depth update


class Flood:
    """A venue that sends numbered frames as fast as its connection takes them, and
    remembers its connections (to see whether TCP holds it back)."""

    def __init__(self, count: int = 1_000_000, pause_s: float = 0.0) -> None:
        self.count = count
        self.pause_s = pause_s
        self.sent = 0
        self.connections: list[ServerConnection] = []

    async def __call__(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        with contextlib.suppress(Exception):
            for n in range(self.count):
                await ws.send(orjson.dumps({"stream": "btcusdt@trade",
                                            "data": {"n": n, "pad": PAD}}))
                self.sent += 1
                if self.pause_s:
                    await asyncio.sleep(self.pause_s)
            await ws.wait_closed()

    def unsent_bytes(self) -> int:
        """What the latest connection's transport holds that the kernel would not take."""
        transport = self.connections[-1].transport
        return int(transport.get_write_buffer_size()) if transport else 0


@contextlib.asynccontextmanager
async def venue(handler: Flood) -> AsyncIterator[Server]:
    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        yield server


def settings(server: Server, kernel_timestamps: bool, queue_size: int) -> FeedSettings:
    port = server.sockets[0].getsockname()[1]
    return FeedSettings(f"ws://127.0.0.1:{port}", "http://127.0.0.1:9", "btcusdt",
                        queue_size=queue_size, kernel_timestamps=kernel_timestamps,
                        snapshot_timeout_s=0.1, backoff_max_s=0.1, stale_after_ms=60_000)


def numbers(items: list[Any]) -> list[int]:
    """The sequence numbers of the venue's frames among ``items``."""
    return [orjson.loads(item[1])["data"]["n"] for item in items
            if type(item) is tuple and item[1].startswith(b'{"stream"')]


@READERS
async def test_a_consumer_that_stops_taking_stops_the_reading_and_loses_nothing(
        kernel_timestamps: bool) -> None:
    flood = Flood()
    async with venue(flood) as server:
        feed = WebsocketFeed(settings(server, kernel_timestamps, queue_size=50), Recorder())
        batches = feed.batches(most=10)
        taken: list[Any] = list(await anext(batches))
        try:
            # the consumer takes nothing more: the queue fills, reading stops, and the
            # venue's writes back up into its own buffer (TCP holds it back)
            await until(lambda: feed.backlog == 50 and flood.unsent_bytes() > 0)
            sent = flood.sent
            await asyncio.sleep(0.2)  # time in which an unbounded reader would read on
            assert feed.backlog == 50
            if kernel_timestamps:
                assert len(feed._handing) == 1 and not feed._handing[0]._reading
            # caught up: every frame in order, none lost, none twice
            while len(numbers(taken)) < sent + 500:
                taken.extend(await anext(batches))
                assert feed.backlog <= 50
        finally:
            await batches.aclose()
    got = numbers(taken)
    assert got == list(range(len(got)))
    stamps = [item[0] for item in taken if type(item) is tuple]
    assert stamps == sorted(stamps)
    assert feed.stamp_source == ("kernel" if kernel_timestamps else "userspace")


@READERS
async def test_a_shed_drops_the_backlog_and_the_next_connection_starts_afresh(
        kernel_timestamps: bool) -> None:
    flood = Flood()
    async with venue(flood) as server:
        feed = WebsocketFeed(settings(server, kernel_timestamps, queue_size=50), Recorder())
        batches = feed.batches(most=10)
        try:
            first = await anext(batches)
            assert isinstance(first[0], Reconnected)
            await until(lambda: feed.backlog == 50)
            assert feed.shed() == 50 and feed.backlog <= 1
            after: list[Any] = []
            while not any(isinstance(item, Reconnected) for item in after):
                after.extend(await anext(batches))
        finally:
            await batches.aclose()
    assert feed.sheds == 1 and feed.shed_items == 50 and feed.connects == 2
    # the new connection's frames start from the venue's first again
    reconnect = next(i for i, item in enumerate(after) if isinstance(item, Reconnected))
    assert all(n < 60 for n in numbers(after[:reconnect]))  # at most a frame in flight


@READERS
async def test_with_a_reference_every_item_is_stamped_no_earlier_than_those_before_it(
        kernel_timestamps: bool) -> None:
    """The traded feed floods into a small queue that stays full (the consumer is slow)
    while the reference sends a frame every few ms: a frame of the traded feed read once
    there is room again must not be handed on stamped before a reference frame handed on
    earlier (its stamp is taken as it is queued, not when it was read and waited)."""
    traded_venue, reference_venue = Flood(), Flood(count=2_000, pause_s=0.002)
    async with venue(traded_venue) as traded_server, venue(reference_venue) as ref_server:
        log = Recorder()
        traded = WebsocketFeed(settings(traded_server, kernel_timestamps, queue_size=20), log)
        reference = WebsocketFeed(settings(ref_server, kernel_timestamps, queue_size=20), log)
        merged = with_reference(traded, reference, most=5)
        items: list[Any] = []
        try:
            while sum(isinstance(item, ReferenceFrame) for item in items) < 100:
                items.extend(await anext(merged))
                await asyncio.sleep(0.001)  # slower than the flood: the traded queue is full
        finally:
            await merged.aclose()
    stamps = [item.recv_ns if isinstance(item, Reconnected | ReferenceReconnected)
              else item[0] for item in items]
    assert stamps == sorted(stamps)
    assert numbers([item for item in items if type(item) is tuple]) == list(
        range(len(numbers([item for item in items if type(item) is tuple]))))
    assert traded.backlog <= 20 and reference.backlog <= 20


@READERS
async def test_a_frame_read_while_a_snapshot_filled_the_queue_waits_for_room(
        kernel_timestamps: bool) -> None:
    """The queue holds at most ``queue_size`` items whoever fills it: a frame read while
    a snapshot took the last place (it came while the reader waited for the venue) is
    queued only once the consumer has made room, and none is lost or reordered."""
    go = asyncio.Event()

    async def quiet_then_three(ws: ServerConnection) -> None:
        await go.wait()
        for n in range(3):
            await ws.send(orjson.dumps({"stream": "btcusdt@trade", "data": {"n": n}}))
        await ws.wait_closed()

    def depth(conn: ServerConnection, request: Request) -> Response | None:
        if request.path.startswith("/api/v3/depth"):
            return conn.respond(HTTPStatus.OK, '{"lastUpdateId":1,"bids":[],"asks":[]}')
        return None

    async with serve(quiet_then_three, "127.0.0.1", 0, compression=None,
                     process_request=depth) as server:
        url = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        feed = WebsocketFeed(FeedSettings(f"ws://{url}", f"http://{url}", "btcusdt",
                                          queue_size=1, kernel_timestamps=kernel_timestamps,
                                          stale_after_ms=60_000), Recorder())
        batches = feed.batches(most=1)
        try:
            (connected,) = await anext(batches)
            assert isinstance(connected, Reconnected)
            await until(lambda: feed.backlog == 1)  # the snapshot, in the only place
            go.set()  # the venue's first frame comes while the queue is full
            await until(lambda: feed.backlog > 1 or bool(feed._queue._room)
                        or (kernel_timestamps and not feed._handing[0]._reading))
            assert feed.backlog == 1
            items = [item for _ in range(4) for item in await anext(batches)]
        finally:
            await batches.aclose()
    assert items[0][1].startswith(b'{"lastUpdateId"')
    assert numbers(items) == [0, 1, 2]


async def test_a_stamped_connection_hands_each_message_to_its_sink_and_keeps_what_it_refuses(
        ) -> None:
    """The connection's side of the hand-off: messages go to the sink in order as they
    are read; one the sink refuses is kept (with what follows) and reading pauses until
    :meth:`release`, which offers them again first."""
    flood = Flood(count=400)
    async with venue(flood) as server:
        port = server.sockets[0].getsockname()[1]
        conn = await StampedConnection.open(f"ws://127.0.0.1:{port}/stream", open_timeout=10,
                                            max_size=1 << 20, close_timeout=1.0)
        taken: list[tuple[int, bytes]] = []
        room = [100]

        def sink(stamp: int, payload: bytes) -> bool:
            if len(taken) >= room[0]:
                return False
            taken.append((stamp, payload))
            return True

        async with conn:
            conn.hand_off(sink)
            await until(lambda: len(taken) == 100 and not conn._reading)
            assert conn._messages  # refused: kept, not dropped
            room[0] = 400
            conn.release()
            await until(lambda: len(taken) == 400)
            conn.stop_hand_off("done")
            assert await conn.handed_off() == "done"
    assert numbers(taken) == list(range(400))
    # the kernel's stamps come in receive order; a read Linux did not stamp yet (the first
    # after the system's first socket asked for stamps) carries the wall time as it ends,
    # which may pass the kernel's stamp of the next read: the feed raises such stamps
    # (test_with_a_reference_every_item_is_stamped_no_earlier_than_those_before_it)
    if not conn.userspace_stamps:
        stamps = [stamp for stamp, _ in taken]
        assert stamps == sorted(stamps)


@pytest.mark.parametrize("size", [0, -1])
def test_a_feed_queue_that_could_hold_nothing_is_refused(size: int) -> None:
    # asyncio.Queue read 0 as unbounded; a FeedQueue of 0 would stall the feed for good
    with pytest.raises(ValueError, match="at least 1 item"):
        FeedQueue(size)
