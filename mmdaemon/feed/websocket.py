"""Live market data: Binance combined streams over a websocket, plus REST depth snapshots.

The feed is an I/O shell: it yields ``(recv_ns, frame_bytes)`` exactly as a recording holds
them (stream frames and the REST snapshots it fetched, in arrival order), so the codec, the
book and the recorder treat live and recorded data the same way. Book sync stays with the
codec; the feed's part is to keep frames coming:

- on every (re)connect it yields :class:`Reconnected` (the consumer drops its book) and then
  fetches a snapshot while the stream is already flowing, as Binance's procedure requires;
  :meth:`WebsocketFeed.request_snapshot` fetches another after a gap;
- reconnects use jittered exponential backoff; the attempt counter only resets after a
  connection stayed healthy for ``healthy_after_s``, so a venue that accepts and drops at
  once is not hammered;
- a connection that stays open but silent for ``stale_after_ms`` is closed and reopened
  (websockets' own ping/pong catches a dead peer; this catches a live one sending nothing).
  Silence is time spent waiting for a frame: time the reader spends blocked on a full
  queue (the consumer is behind) is not silence, and a watch that wakes during it looks
  again one ``stale_after_ms`` later;
- :meth:`WebsocketFeed.shed` drops every queued frame and replaces the connection at once:
  a consumer that fell too far behind is served better by a fresh snapshot than by the
  backlog; the queue (:class:`FeedQueue`) holds at most ``queue_size`` items, and once it
  is full nothing more is read: the connection keeps what its last read completed (the
  websocket client's own small buffer) and TCP holds the venue back (a venue drops or
  skips a client that does not read);
- a connection older than ``max_connection_age_s`` is replaced by a planned reconnect before
  the venue's 24 h limit cuts it, and so is one whose server announces ``serverShutdown``
  (the event is not passed on: it is not market data);
- Binance USD-M serves its streams on split routes (since 2026-04-23 depth and bookTicker
  only under ``/public``, trades under ``/market``): ``FeedSettings.routes`` opens one
  connection per route, all read into the one queue, each frame stamped on receipt, so
  the consumer sees one stream in receive order as a recording holds it. They live and
  die together: the end of one (closed, too large a frame, shed, planned) replaces all,
  a :class:`Reconnected` and a new snapshot as for one; silence is of them all together
  (a quiet symbol's trade stream alone may say nothing for long);
- frames are read as bytes (orjson parses bytes directly); system proxies are not used
  unless ``proxy`` is configured;
- a snapshot request that fails (an HTTP error, a rate limit, a body that is not a depth
  snapshot or is too large, no answer within ``snapshot_timeout_s``, a network error) is
  logged as ``feed_snapshot_failed`` with its ``reason`` and retried with backoff, no
  sooner than the venue's ``Retry-After``; a snapshot asked for again soon after the last
  one (it did not bring the book in sync) waits a backoff too, so a venue serving bad
  snapshots is not hammered (a 1000-level snapshot costs 50 of Binance's request weight).
  Only a body that looks like a snapshot is passed on; the consumer asks again if it does
  not decode;
- ``on_outage`` hears why market data is not coming and when the next try is (a failed
  connect, a failed snapshot), and ``None`` once the connection or a snapshot succeeds:
  the daemon tells systemd (``STATUS=``), from the first attempt at start on.

A reference venue's feed (``[reference]``, :mod:`mmdaemon.reference`) is a second
:class:`WebsocketFeed` with its own connection, snapshots, backoff, staleness and limits;
:func:`with_reference` hands the items of both to one consumer in receive-time order, the
reference's wrapped (:class:`~mmdaemon.reference.ReferenceFrame`,
:class:`ReferenceReconnected`) as a replay merges them. The reference's loss never ends the
traded feed: its connection loop retries on its own, and if it stops for good the
consumer goes on without it (logged ``reference_feed_stopped``).

Every time the feed reads comes from its :class:`~mmdaemon.clock.Clock`: receive stamps
are the clock's wall time (ns since the epoch, as a recording holds them), and staleness,
connection age, backoff waits and the healthy-connection test run on its monotonic time and
its ``sleep``, so a test's clock drives them all. (The websocket's ``open_timeout`` and the
snapshot request's ``snapshot_timeout_s`` are the I/O libraries' own, on the event loop.)

Receive stamps and the wire (#23): a plain ``ws://`` connection without a proxy is read by
:class:`~mmdaemon.feed.stamped_ws.StampedConnection`, which knows the kernel's receive time
of the segment that completed each message; on the system clock that is the frame's stamp
(``stamp_source`` ``"kernel"``), so a frame's lag and the daemon's wire-to-wire latency
start on the wire. ``wss://`` (the kernel would stamp encrypted bytes), a proxy, or a
test's clock keep the wall time the frame is handed over at (``"userspace"``). Stamps never
go back in the queue: one earlier than the last queued (another connection's, or a
snapshot's taken as it was queued, or the reference feed's: :func:`with_reference` merges
by stamp) is raised to it, as it is queued. On such a connection no task stands between
the socket and the consumer: the read callback that completes a message queues it and
wakes the consumer's task (:meth:`StampedConnection.hand_off
<mmdaemon.feed.stamped_ws.StampedConnection.hand_off>`); a connection loop task per
connection only waits for its end (websockets' client is read by that task).

Sizes are bounded before anything is parsed, so a broken or hostile endpoint cannot make
the daemon hold more than a few times the limits:

- a websocket message larger than ``max_message_bytes`` is refused by the websocket
  client while its frame headers are read (a single frame by its declared length, a
  fragmented message as its fragments add up), before its payload is buffered; the
  connection is closed (code 1009), ``feed_frame_too_large`` is logged with the size and
  the limit, the consumer gets a :class:`Reconnected` at once (a frame is lost: the book
  is out of sequence) and the feed reconnects with backoff. The client buffers at most 16
  messages (websockets' ``max_queue``), so its own memory is bounded by 16 x the limit;
- a REST snapshot body larger than ``max_snapshot_bytes`` is refused by its
  ``Content-Length`` before any of it is read, or while it streams in (no or a lying
  ``Content-Length``, chunked, or compressed: the count is of the decompressed bytes) as
  soon as the count passes the limit, and the connection is dropped; it is a snapshot
  failure like the others (``feed_snapshot_failed reason=too_large``), retried with
  backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from mmdaemon.aio import first_of
from mmdaemon.backoff import backoff_delay
from mmdaemon.clock import Clock, SystemClock
from mmdaemon.feed.recording import RecordedFrame
from mmdaemon.reference import ReferenceFrame

if TYPE_CHECKING:
    import aiohttp
    from websockets.asyncio.client import ClientConnection

    from mmdaemon.feed.stamped_ws import StampedConnection


class Reconnected(NamedTuple):
    """The stream was (re)opened, or lost a message it refused (``reason``
    ``"frame_too_large"``): whatever book the consumer holds is no longer in sequence."""

    reason: str
    recv_ns: int


class ReferenceReconnected(NamedTuple):
    """:class:`Reconnected` of the reference feed (see :func:`with_reference`)."""

    reason: str
    recv_ns: int


@dataclass(frozen=True)
class FeedSettings:
    """Where and how to connect. Times in seconds unless the name says ms."""

    ws_url: str  # base, e.g. wss://stream.binance.com:9443
    rest_url: str  # base, e.g. https://api.binance.com
    symbol: str
    streams: tuple[str, ...] = ("depth@100ms", "trade", "bookTicker")
    depth_path: str = "/api/v3/depth"
    snapshot_limit: int = 1000
    stale_after_ms: int = 5000
    max_connection_age_s: float = 23.5 * 3600
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 30.0
    healthy_after_s: float = 10.0
    open_timeout_s: float = 10.0
    snapshot_timeout_s: float = 10.0
    proxy: str | None = None
    queue_size: int = 10_000
    max_message_bytes: int = 1 << 20  # a larger websocket message closes the connection
    max_snapshot_bytes: int = 4 << 20  # a larger REST snapshot body is a failed snapshot
    # plain ws:// read by our own recvmsg reader for the kernel's receive stamps; False:
    # websockets' client for every URL, as wss:// always is (the escape hatch, and how the
    # tests run the wss:// reader's code over loopback)
    kernel_timestamps: bool = True

    # Binance USD-M's split: (route, streams) pairs, one connection each under ``ws_url``
    # (e.g. ("/public", depth, bookTicker), ("/market", trade)); empty: one connection on
    # ``streams`` at ``ws_url``'s own /stream (spot)
    routes: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def stream_urls(self) -> tuple[str, ...]:
        """The combined-stream URL of each connection the feed keeps open at once."""
        base = self.ws_url.rstrip("/")
        routes = self.routes or (("", self.streams),)
        return tuple(f"{base}{route}/stream?streams="
                     + "/".join(f"{self.symbol.lower()}@{s}" for s in streams)
                     for route, streams in routes)

    @property
    def snapshot_url(self) -> str:
        return (f"{self.rest_url.rstrip('/')}{self.depth_path}?symbol={self.symbol.upper()}"
                f"&limit={self.snapshot_limit}")


def snapshot_problem(body: bytes) -> str | None:
    """Why ``body`` is not a depth snapshot; None when it looks like one (a JSON object with
    an integer ``lastUpdateId`` and ``bids`` and ``asks`` lists: the levels are the codec's
    to judge)."""
    try:
        msg = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return f"bad JSON: {exc}"
    if type(msg) is not dict:
        return "not a JSON object"
    if type(msg.get("lastUpdateId")) is not int:
        return "no integer lastUpdateId"
    if type(msg.get("bids")) is not list or type(msg.get("asks")) is not list:
        return "no bids or asks list"
    return None


def retry_after_s(headers: Any) -> float:
    """The ``Retry-After`` header in seconds (0 when absent or not a number of seconds)."""
    try:
        return max(0.0, float(headers.get("Retry-After", 0)))
    except ValueError:
        return 0.0


async def read_at_most(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes | None, int]:
    """``(body, bytes read)`` of ``response``; the body is None, and the connection dropped
    unread, when it is longer than ``limit`` bytes: refused by its ``Content-Length`` before
    any of it is read, else counted as it streams in (decompressed), so that no more than
    ``limit`` plus one chunk (64 KiB) is ever held."""
    declared = response.content_length
    if declared is not None and declared > limit:
        response.close()
        return None, 0
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            response.close()  # not drained: the rest is never read
            return None, size
        chunks.append(chunk)
    return b"".join(chunks), size


RATE_LIMITED = frozenset({429, 418})  # Binance: 429 too much weight, 418 the IP is banned

FeedItem = RecordedFrame | Reconnected
OutageListener = Callable[[str | None, float], None]
"""``on_outage(why, retry_in_s)``: market data is not coming because of ``why`` and is tried
again in ``retry_in_s`` seconds; ``why`` None: it is coming again."""


def _no_outage_listener(why: str | None, retry_in_s: float) -> None:
    """``on_outage`` when nobody listens."""
_END: Any = object()  # queued when the connection loop stops
SERVER_SHUTDOWN = b'"e":"serverShutdown"'  # Binance: the server goes down soon, reconnect


class FeedQueue:
    """A feed's items for its one consumer, handed over with no task in between (#23).

    An item is stamped and pushed in one synchronous step (a plain ``ws://``
    connection's: in the socket's read callback itself, :meth:`StampedConnection.hand_off
    <mmdaemon.feed.stamped_ws.StampedConnection.hand_off>`), so no item is queued after
    one stamped later, and the consumer, waiting on :attr:`waiter`, runs in the event
    loop's next step. At most ``size`` items (and :data:`_END`): a task-driven reader
    waits for :meth:`room` before it reads on; a full queue takes no message from a read
    callback, whose connection keeps it (with the rest of that read) and stops reading
    (TCP holds the venue back) until the consumer takes the queue under ``size``
    (:attr:`held` is called then).
    """

    def __init__(self, size: int) -> None:
        if size < 1:  # asyncio.Queue's 0 meant unbounded; here it would never take an item
            raise ValueError(f"a feed queue holds at least 1 item, not {size}")
        self.items: deque[FeedItem] = deque()
        self.size = size
        #: the consumer's future while it waits (one future may wait on several queues)
        self.waiter: asyncio.Future[None] | None = None
        #: called once, each, when the queue is next taken under ``size``
        self.held: list[Callable[[], None]] = []
        self._room: list[asyncio.Future[None]] = []  # readers waiting for room

    def push(self, item: FeedItem) -> None:
        """Queue ``item`` and wake the consumer (the caller made sure there is room)."""
        self.items.append(item)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take(self, most: int) -> list[FeedItem]:
        """The oldest ``most`` items at most, removed."""
        items = self.items
        popleft = items.popleft
        batch = [popleft() for _ in range(min(most, len(items)))]
        if len(items) < self.size and (self.held or self._room):
            self._made_room()
        return batch

    def drop(self) -> int:
        """Drop every item but :data:`_END` (the connection loop's end still reaches the
        consumer); how many were dropped."""
        items = self.items
        dropped = len(items)
        ended = _END in items
        items.clear()
        if ended:
            items.append(_END)
        self._made_room()
        return dropped - ended

    async def room(self) -> None:
        """Until the queue holds fewer than ``size`` items."""
        while len(self.items) >= self.size:
            waiter = asyncio.get_running_loop().create_future()
            self._room.append(waiter)
            try:
                await waiter
            finally:
                with contextlib.suppress(ValueError):
                    self._room.remove(waiter)

    def _made_room(self) -> None:
        for waiter in self._room:
            if not waiter.done():
                waiter.set_result(None)
        held, self.held = self.held, []
        for release in held:
            release()


class WebsocketFeed:
    """Async iterator of live frames; see the module docstring. ``clock``: every time the
    feed reads or waits on (the system's clocks by default)."""

    def __init__(self, settings: FeedSettings, log: Any, *,
                 clock: Clock | None = None,
                 rng: Callable[[], float] = random.random,
                 on_outage: OutageListener = _no_outage_listener) -> None:
        self.settings = settings
        self.log = log
        self.clock: Clock = clock or SystemClock()
        # the stamp a frame received now gets (ns since the epoch): how far behind one is
        self.now_ns = self.clock.wall_ns
        self.rng = rng
        self.on_outage = on_outage
        self._connect_error = ""  # why the last connection attempt failed
        self.connected = False  # a connection is open now
        self.connects = 0
        self.reconnects = 0
        self.snapshots = 0
        self.snapshot_failures = 0
        self.sheds = 0
        self.shed_items = 0  # queued items dropped by shed()
        self._shed = False  # the reader must replace its connection
        self._queue = FeedQueue(settings.queue_size)
        # stamped connections handing their messages to the queue now (shed stops them)
        self._handing: list[StampedConnection] = []
        self._want_snapshot = asyncio.Event()
        self._closed = False
        # monotonic ns since which the reader waits for a frame; None while it is not waiting
        self._waiting_since: int | None = None
        # frames are stamped with the kernel's receive time where it is known (a plain ws://
        # connection, the system clock): "kernel"; else with the wall time they were handed
        # over at: "userspace"; set when a connection opens
        self.kernel_stamps = isinstance(self.clock, SystemClock)
        self.stamp_source = "userspace"
        # the latest stamp queued, [ns]: stamps never go back; shared with a reference feed
        # merged with this one (with_reference), whose order rests on it
        self._latest_stamp = [0]

    def request_snapshot(self) -> None:
        """Fetch a new REST snapshot (the codec reported a gap)."""
        self._want_snapshot.set()

    async def frames(self) -> AsyncIterator[FeedItem]:
        """Frames and reconnect markers one by one, until :meth:`close` or cancellation."""
        async with contextlib.aclosing(self.batches()) as batches:  # closed with this one
            async for batch in batches:
                for item in batch:
                    yield item

    def start(self, name: str = "ws-feed") -> asyncio.Task[None]:
        """Start the connection loop, filling the queue; the caller cancels the task."""
        runner = asyncio.create_task(self._run(), name=name)
        runner.add_done_callback(self._runner_done)
        return runner

    def _runner_done(self, runner: asyncio.Task[None]) -> None:
        if not runner.cancelled():  # behind whatever frames are still queued
            self._queue.push(_END)

    async def batches(self, most: int = 256) -> AsyncGenerator[list[FeedItem], None]:
        """Frames and reconnect markers in lists of whatever is queued (``most`` at most),
        waiting when nothing is, until :meth:`close` or cancellation.

        The connection loop runs as its own task and pushes items as they are read; when
        it stops (closed, or an unexpected error) it queues :data:`_END`, and what
        stopped it is raised here once the items before it are handed on.
        """
        runner = self.start()
        queue = self._queue
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not queue.items:
                    queue.waiter = waiter = loop.create_future()
                    try:
                        await waiter
                    finally:
                        queue.waiter = None
                batch = queue.take(most)
                if _END in batch:
                    batch = batch[:batch.index(_END)]
                    if batch:
                        yield batch
                    runner.result()  # re-raise what stopped the connection loop
                    return
                yield batch
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)

    def close(self) -> None:
        self._closed = True

    @property
    def backlog(self) -> int:
        """Items queued for the consumer now (at most ``queue_size``)."""
        return len(self._queue.items)

    def shed(self) -> int:
        """Drop every queued item and reconnect at once; how many items were dropped.

        For a consumer that fell behind: what waits in the queue is a stale market, and the
        new connection's snapshot resyncs the book to the present.
        """
        for conn in self._handing:  # nothing read from now on is queued
            conn.stop_hand_off("shed")
        dropped = self._queue.drop()
        self.sheds += 1
        self.shed_items += dropped
        self._shed = True  # a task-driven reader returns after its next frame
        return dropped

    def _stamp_now(self) -> int:
        """The stamp of an item queued now that has no kernel stamp (a snapshot, a
        reconnect): the wall time, on the stamp line (never before the latest queued)."""
        latest = self._latest_stamp
        latest[0] = stamp = max(self.clock.wall_ns(), latest[0])
        return stamp

    async def _queue_now(self, make: Callable[[int], FeedItem]) -> None:
        """Queue ``make(stamp)`` once there is room, stamped as it is queued (a stamp
        taken before a wait for room could fall behind one queued meanwhile)."""
        await self._queue.room()
        self._queue.push(make(self._stamp_now()))

    async def _run(self) -> None:
        s, clock = self.settings, self.clock
        attempt = 0
        import aiohttp  # here: replays never need it, and importing it costs ~0.1 s

        session = aiohttp.ClientSession(trust_env=False)  # no system proxies by default
        try:
            while not self._closed:
                started = clock.monotonic_ns()
                reason = await self._connection(session)
                if clock.monotonic_ns() - started >= s.healthy_after_s * 1e9:
                    attempt = 0
                if self._closed:
                    return
                attempt += 1
                delay = 0.0 if reason in ("planned", "shed") else backoff_delay(
                    attempt, s.backoff_initial_s, s.backoff_max_s, self.rng)
                self.log.warning("feed_reconnecting", reason=reason, attempt=attempt,
                                 delay_s=round(delay, 3))
                if reason == "connect_failed":
                    self.on_outage(f"unreachable: {self._connect_error}", delay)
                await clock.sleep(delay)
        finally:
            await session.close()

    async def _connection(self, session: aiohttp.ClientSession) -> str:
        """One connection's life; returns why it ended."""
        # here, not at the top: a replay never connects, and websockets' imports are 2% of
        # a whole `mmdaemon replay` of the bundled recording (our reader imports them too)
        from websockets.asyncio.client import connect
        from websockets.exceptions import (
            ConnectionClosed,
            InvalidHandshake,
            InvalidURI,
            PayloadTooBig,
        )

        from mmdaemon.feed.stamped_ws import StampedConnection, kernel_stamps_possible

        s = self.settings
        urls = s.stream_urls
        url = urls[0]  # the one a failure names
        try:
            async with contextlib.AsyncExitStack() as stack:
                wss: list[ClientConnection | StampedConnection] = []
                for url in urls:
                    # close_timeout is short because a feed we leave has usually stopped
                    # being read: its unread frames hold back the venue's close frame, and
                    # waiting the default 10 s for it would stall a reconnect or a shutdown
                    if s.kernel_timestamps and kernel_stamps_possible(url, s.proxy):
                        wss.append(await stack.enter_async_context(await StampedConnection.open(
                            url, open_timeout=s.open_timeout_s, close_timeout=1.0,
                            max_size=s.max_message_bytes)))
                    else:
                        wss.append(await stack.enter_async_context(connect(
                            url, proxy=s.proxy, open_timeout=s.open_timeout_s,
                            close_timeout=1.0, compression=None,
                            max_size=s.max_message_bytes)))
                self.connects += 1
                self.connected = True
                if self.connects > 1:
                    self.reconnects += 1
                self._shed = False  # a shed asked for before now was of an older connection
                self.log.info("feed_connected", url=" ".join(urls), connects=self.connects)
                self.on_outage(None, 0.0)
                await self._queue_now(lambda stamp: Reconnected("connected", stamp))
                self._want_snapshot.set()
                fetcher = asyncio.create_task(self._snapshots(session), name="ws-snapshots")
                try:
                    return await self._read_while_live(wss)
                finally:
                    self.connected = False
                    fetcher.cancel()
                    await asyncio.gather(fetcher, return_exceptions=True)
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            self.log.warning("feed_connect_failed", url=url, error=repr(exc))
            self._connect_error = f"cannot connect to {url}: {type(exc).__name__}: {exc}"
            return "connect_failed"
        except ConnectionClosed as exc:
            too_big = exc.__cause__
            if isinstance(too_big, PayloadTooBig):
                # the frame that crossed the limit, plus the fragments before it
                size = (too_big.size or 0) + (too_big.current_size or 0)
                self.log.warning("feed_frame_too_large", size=size, limit=s.max_message_bytes)
                await self._queue_now(lambda stamp: Reconnected("frame_too_large", stamp))
                return "frame_too_large"
            self.log.warning("feed_disconnected", code=exc.rcvd.code if exc.rcvd else None,
                             reason=exc.rcvd.reason if exc.rcvd else "")
            return "closed"

    async def _read_while_live(self, wss: list[ClientConnection | StampedConnection]) -> str:
        """Read every connection of ``wss`` into the one queue until one of them ends or
        all go silent for ``stale_after_ms``; why it ended (the end of one is the end of
        all: the book needs every stream). Errors of a connection (closed, a frame too
        large) are raised."""
        self._waiting_since = self.clock.monotonic_ns()
        tasks = await first_of(*(self._read(ws) for ws in wss), self._watch_silence())
        ended = next(task for task in tasks if not task.cancelled())
        return ended.result()

    async def _watch_silence(self) -> str:
        """Return ``"stale"`` once the reader has waited ``stale_after_ms`` for a frame."""
        s, clock = self.settings, self.clock
        stale_ns = s.stale_after_ms * 1_000_000
        while True:
            since = self._waiting_since
            wait_ns = stale_ns
            if since is not None:
                silent_ns = clock.monotonic_ns() - since
                if silent_ns >= stale_ns:
                    self.log.warning("feed_stale", silent_ms=s.stale_after_ms)
                    return "stale"
                wait_ns = stale_ns - silent_ns
            await clock.sleep(wait_ns / 1e9)

    async def _read(self, ws: ClientConnection | StampedConnection) -> str:
        """Queue ``ws``'s frames until it ends (raised), it is shed, the venue announces
        ``serverShutdown`` or it reaches ``max_connection_age_s``; why it ended."""
        from mmdaemon.feed.stamped_ws import StampedConnection

        deadline = self.clock.monotonic_ns() + round(self.settings.max_connection_age_s * 1e9)
        if isinstance(ws, StampedConnection):
            # the kernel's stamp is on the system's wall clock: a test's clock keeps its own
            kernel = self.kernel_stamps
            self.stamp_source = "kernel" if kernel else "userspace"
            ws.hand_off(self._sink(ws, kernel, deadline))
            self._handing.append(ws)
            try:
                return await ws.handed_off()
            finally:
                self._handing.remove(ws)
                ws.stop_hand_off("left")
        self.stamp_source = "userspace"
        return await self._read_client(ws, deadline)

    def _sink(self, conn: StampedConnection, kernel: bool,
              deadline: int) -> Callable[[int, bytes], bool]:
        """What ``conn``'s read callback hands each message to: queued with its stamp
        (the kernel's, or the clock's wall time when ``kernel`` is False, raised to the
        latest queued as it is queued); False, the message left with ``conn``, when the
        queue is full (``conn`` then waits until the consumer has taken some)."""
        queue, items, size = self._queue, self._queue.items, self._queue.size
        latest, log = self._latest_stamp, self.log
        wall_ns, monotonic_ns = self.clock.wall_ns, self.clock.monotonic_ns

        def release() -> None:
            self._waiting_since = monotonic_ns()
            conn.release()

        def sink(stamp: int, frame: bytes) -> bool:
            if len(items) >= size:
                self._waiting_since = None  # held: the consumer's delay, not silence
                queue.held.append(release)
                return False
            if not kernel:
                stamp = wall_ns()
            if SERVER_SHUTDOWN in frame[:48]:
                log.warning("feed_server_shutdown")
                conn.stop_hand_off("planned")
                return True
            # in receive order: a frame read after another (on another connection, or
            # after a snapshot stamped when it was queued) is never stamped before it
            if stamp < latest[0]:
                stamp = latest[0]
            latest[0] = stamp
            queue.push((stamp, frame))
            if (now := monotonic_ns()) >= deadline:
                log.info("feed_planned_reconnect", age_s=self.settings.max_connection_age_s)
                conn.stop_hand_off("planned")
            self._waiting_since = now
            return True

        return sink

    async def _read_client(self, ws: ClientConnection, deadline: int) -> str:
        """:meth:`_read` for websockets' client (``wss://``, a proxy, kernel stamps off):
        queue each frame once the queue has room for it, stamped as it is queued. The room
        is looked for after the frame is read: a snapshot or a marker may fill the queue
        while ``recv`` waits."""
        s, queue, monotonic_ns = self.settings, self._queue, self.clock.monotonic_ns
        while True:
            frame = await ws.recv(decode=False)
            if len(queue.items) >= queue.size:
                self._waiting_since = None  # a full queue is the consumer's delay
                await queue.room()
            if SERVER_SHUTDOWN in frame[:48]:
                self.log.warning("feed_server_shutdown")
                return "planned"
            queue.push((self._stamp_now(), frame))
            if self._shed:
                self._shed = False
                return "shed"
            now = self._waiting_since = monotonic_ns()
            if now >= deadline:
                self.log.info("feed_planned_reconnect", age_s=s.max_connection_age_s)
                return "planned"

    async def _snapshots(self, session: aiohttp.ClientSession) -> None:
        """Fetch a snapshot whenever asked, retrying with backoff until one arrives.

        ``streak`` counts the fetches since a snapshot last served (it came longer than
        ``healthy_after_s`` ago): every fetch of a streak but the first waits a backoff.
        """
        import aiohttp

        s = self.settings
        timeout = aiohttp.ClientTimeout(total=s.snapshot_timeout_s)
        streak = 0
        last_ok = -math.inf
        while True:
            await self._want_snapshot.wait()
            delay = 0.0
            if self.clock.monotonic_ns() - last_ok >= s.healthy_after_s * 1e9:
                streak = 0
            elif streak:  # the last snapshot did not bring the book in sync for long
                delay = backoff_delay(streak, s.backoff_initial_s, s.backoff_max_s, self.rng)
            while True:
                await self.clock.sleep(delay)
                self._want_snapshot.clear()
                streak += 1
                failure, wait_s = await self._fetch_snapshot(session, timeout)
                if failure is None:
                    last_ok = self.clock.monotonic_ns()
                    self.on_outage(None, 0.0)
                    break
                self.snapshot_failures += 1
                delay = max(wait_s, backoff_delay(streak, s.backoff_initial_s,
                                                  s.backoff_max_s, self.rng))
                self.log.warning("feed_snapshot_failed", attempt=streak,
                                 retry_in_s=round(delay, 3), **failure)
                detail = " ".join(str(failure[k]) for k in ("status", "error") if k in failure)
                self.on_outage(f"snapshot failed: {failure['reason']} {detail}".rstrip(), delay)

    async def _fetch_snapshot(self, session: aiohttp.ClientSession,
                              timeout: aiohttp.ClientTimeout) -> tuple[dict[str, Any] | None,
                                                                       float]:
        """One snapshot request. On success the snapshot is queued and the result is
        ``(None, 0)``; else what went wrong (fields for the log, ``reason`` first) and the
        least time in seconds the venue asked us to wait."""
        import aiohttp

        s = self.settings
        try:
            async with session.get(s.snapshot_url, proxy=s.proxy, timeout=timeout) as response:
                status = response.status
                body, read = await read_at_most(response, s.max_snapshot_bytes)
                if body is None:
                    return {"reason": "too_large", "status": status,
                            "declared_bytes": response.content_length, "read_bytes": read,
                            "limit": s.max_snapshot_bytes}, 0.0
                excerpt = body[:200].decode(errors="replace")
                if status in RATE_LIMITED:
                    wait_s = retry_after_s(response.headers)
                    return {"reason": "rate_limited", "status": status, "body": excerpt,
                            "retry_after_s": wait_s}, wait_s
                if status != 200:
                    return {"reason": "http_error", "status": status, "body": excerpt}, 0.0
                problem = snapshot_problem(body)
                if problem is not None:
                    return {"reason": "malformed", "error": problem, "bytes": len(body),
                            "body": excerpt[:80]}, 0.0
                self.snapshots += 1
                await self._queue_now(lambda stamp: (stamp, body))
                self.log.info("feed_snapshot", bytes=len(body))
                return None, 0.0
        except TimeoutError:
            return {"reason": "timeout", "timeout_s": s.snapshot_timeout_s}, 0.0
        except aiohttp.ClientError as exc:
            return {"reason": "network", "error": repr(exc)}, 0.0


LiveItem = RecordedFrame | Reconnected | ReferenceFrame | ReferenceReconnected
"""What :func:`with_reference` yields: the traded feed's items and the reference's."""


def _received_ns(item: LiveItem) -> int:
    if isinstance(item, Reconnected | ReferenceReconnected):
        return item.recv_ns
    return item[0]


def _as_reference(item: FeedItem) -> ReferenceFrame | ReferenceReconnected:
    if isinstance(item, Reconnected):
        return ReferenceReconnected(*item)
    return ReferenceFrame(*item)


async def with_reference(traded: WebsocketFeed, reference: WebsocketFeed,
                         most: int = 256) -> AsyncIterator[list[LiveItem]]:
    """Both feeds' items in lists, in one receive-time order: the oldest ``most`` of what
    both have queued when either has something, merged by receive stamp.

    Why that is the order they arrived in: every item is stamped as it is queued, raised
    to the latest stamp queued of either feed, so each queued item is no younger than any
    item still to come; the oldest items of both queues are a prefix of the whole stream
    in time order (two consumers, one per feed, would interleave them by whichever the
    loop runs first). A traded feed that ends ends this too (re-raising what stopped
    it); a reference that ends is logged and left out, and the traded feed goes on alone.
    """
    # one stamp line for both feeds keeps "queued before" meaning "stamped no later"
    reference._latest_stamp = traded._latest_stamp
    runners = [traded.start("ws-feed"), reference.start("ws-reference-feed")]
    ours, theirs = traded._queue, reference._queue
    queues = [ours, theirs]  # the ones still served: a reference whose loop stopped leaves
    loop = asyncio.get_running_loop()
    try:
        while True:
            if not any(queue.items for queue in queues):
                waiter = loop.create_future()  # whichever is pushed to first wakes it
                for queue in queues:
                    queue.waiter = waiter
                try:
                    await waiter
                finally:
                    for queue in queues:
                        queue.waiter = None
            batch: list[LiveItem] = []
            stopped = ended = False
            while len(batch) < most and not stopped:
                head = ours.items[0] if ours.items else None
                ref = theirs.items[0] if len(queues) > 1 and theirs.items else None
                if ref is _END:
                    theirs.take(1)
                    queues.remove(theirs)
                    ended = True
                elif ref is None:
                    if head is None:
                        break
                    batch.extend(ours.take(most - len(batch)))
                    if _END in batch:  # its connection loop stopped; what came first goes
                        del batch[batch.index(_END):]
                        stopped = True
                elif head is _END:
                    ours.take(1)
                    stopped = True
                elif head is not None and _received_ns(head) <= _received_ns(ref):
                    batch.append(head)
                    ours.take(1)
                else:
                    batch.append(_as_reference(ref))
                    theirs.take(1)
            if batch:
                yield batch
            if stopped:
                runners[0].result()  # re-raise what stopped the traded feed
                return
            if ended:
                stopped_by = None if runners[1].cancelled() else runners[1].exception()
                reference.log.error("reference_feed_stopped", error=repr(stopped_by),
                                    note="trading goes on without the reference")
    finally:
        for task in runners:
            task.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
