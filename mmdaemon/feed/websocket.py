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
  backlog; the queue is bounded (``queue_size``), and beyond it the websocket client's
  own small buffer and then TCP hold the venue back (a venue drops or skips a client that
  does not read);
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
by stamp) is raised to it.

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
from collections.abc import AsyncIterator, Callable
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
        self._queue: asyncio.Queue[FeedItem] = asyncio.Queue(settings.queue_size)
        self._end: asyncio.Task[None] | None = None
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
        """Frames and reconnect markers, until :meth:`close` or cancellation.

        The connection loop runs as its own task and hands frames over through the queue;
        when it stops (closed, or an unexpected error) it queues :data:`_END`, so waiting
        here is one plain ``queue.get`` per frame: this is on the tick-to-quote path.
        """
        runner = self.start()
        get = self._queue.get
        try:
            while True:
                item = await get()
                if item is _END:
                    runner.result()  # re-raise what stopped the connection loop
                    return
                yield item
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)

    def start(self, name: str = "ws-feed") -> asyncio.Task[None]:
        """Start the connection loop, filling the queue; the caller cancels the task."""
        runner = asyncio.create_task(self._run(), name=name)
        runner.add_done_callback(self._runner_done)
        return runner

    def _runner_done(self, runner: asyncio.Task[None]) -> None:
        if not runner.cancelled():  # behind whatever frames are still queued
            self._end = asyncio.get_running_loop().create_task(self._queue.put(_END))

    async def batches(self, most: int = 256) -> AsyncIterator[list[FeedItem]]:
        """The same items in lists: one waited for, then whatever else is already queued."""
        queue = self._queue
        async for first in self.frames():
            batch = [first]
            while len(batch) < most and not queue.empty():
                batch.append(queue.get_nowait())
            yield batch

    def close(self) -> None:
        self._closed = True

    @property
    def backlog(self) -> int:
        """Items queued for the consumer now (at most ``queue_size``)."""
        return self._queue.qsize()

    def shed(self) -> int:
        """Drop every queued item and reconnect at once; how many items were dropped.

        For a consumer that fell behind: what waits in the queue is a stale market, and the
        new connection's snapshot resyncs the book to the present.
        """
        queue = self._queue
        dropped = [queue.get_nowait() for _ in range(queue.qsize())]
        ended = [item for item in dropped if item is _END]
        for item in ended:  # the connection loop's end must still reach the consumer
            queue.put_nowait(item)
        self.sheds += 1
        self.shed_items += len(dropped) - len(ended)
        self._shed = True
        return len(dropped) - len(ended)

    def _stamp_now(self) -> int:
        """The stamp of an item queued now that has no kernel stamp (a snapshot, a
        reconnect): the wall time, on the stamp line (never before the latest queued)."""
        latest = self._latest_stamp
        latest[0] = stamp = max(self.clock.wall_ns(), latest[0])
        return stamp

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
                await self._queue.put(Reconnected("connected", self._stamp_now()))
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
                await self._queue.put(Reconnected("frame_too_large", self._stamp_now()))
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
        from mmdaemon.feed.stamped_ws import StampedConnection

        s = self.settings
        monotonic_ns = self.clock.monotonic_ns
        deadline = monotonic_ns() + round(s.max_connection_age_s * 1e9)
        put, wall_ns = self._queue.put, self.clock.wall_ns
        # the kernel's stamp is on the system's wall clock: a test's clock keeps its own
        kernel = isinstance(ws, StampedConnection) and self.kernel_stamps
        self.stamp_source = "kernel" if kernel else "userspace"
        while True:
            if isinstance(ws, StampedConnection):
                stamp, frame = await ws.recv_stamped()
                if not kernel:
                    stamp = wall_ns()
            else:
                frame = await ws.recv(decode=False)
                stamp = wall_ns()
            self._waiting_since = None  # a full queue below is the consumer's delay
            if SERVER_SHUTDOWN in frame[:48]:
                self.log.warning("feed_server_shutdown")
                return "planned"
            # in receive order: a frame read after another (on another connection, or
            # after a snapshot stamped when it was queued) is never stamped before it
            latest = self._latest_stamp
            if stamp < latest[0]:
                stamp = latest[0]
            latest[0] = stamp
            await put((stamp, frame))
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
                await self._queue.put((self._stamp_now(), body))
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
    """Both feeds' items in lists, in one receive-time order: whatever each has queued when
    either has something, merged by receive stamp (at most ``most`` of each per list).

    Why that is the order they arrived in: every item's stamp is no later than any stamp
    queued after it, of either feed (a kernel stamp, taken before the item reaches its
    queue, is raised to the latest queued of both), so each queued item is no younger than
    any item still to come; merging all that is queued now hands the engine a prefix of the
    whole stream in time order (two consumers, one per feed, would interleave them by
    whichever the loop runs first). A traded feed that ends ends this too (re-raising
    what stopped it); a reference that ends is logged and left out, and the traded feed
    goes on alone.
    """
    # kernel stamps are taken before the item is queued: one stamp line for both feeds
    # keeps "queued before" meaning "stamped no later" across them
    reference._latest_stamp = traded._latest_stamp
    runners = [traded.start("ws-feed"), reference.start("ws-reference-feed")]
    sources = {0: traded._queue, 1: reference._queue}  # a feed whose loop stopped leaves
    gets: dict[int, asyncio.Task[FeedItem]] = {}  # kept until done: a get cancelled after
    try:  # it took an item would lose the item
        while True:
            for i, queue in sources.items():
                if i not in gets:
                    gets[i] = asyncio.ensure_future(queue.get())
            await asyncio.wait(gets.values(), return_when=asyncio.FIRST_COMPLETED)
            batch: list[LiveItem] = []
            done = [i for i, task in gets.items() if task.done()]
            for i in done:
                items = [gets.pop(i).result()]
                queue = sources[i]
                while len(items) < most and not queue.empty():
                    items.append(queue.get_nowait())
                if _END in items:  # its connection loop stopped; what it queued first stays
                    items = items[:items.index(_END)]
                    del sources[i]
                batch.extend(items if i == 0 else map(_as_reference, items))
            if len(done) > 1:
                batch.sort(key=_received_ns)  # a stable sort: each feed's order is kept
            if batch:
                yield batch
            if 0 not in sources:
                runners[0].result()  # re-raise what stopped the traded feed
                return
            if 1 in done and 1 not in sources:
                stopped = None if runners[1].cancelled() else runners[1].exception()
                reference.log.error("reference_feed_stopped", error=repr(stopped),
                                    note="trading goes on without the reference")
    finally:
        for task in (*runners, *gets.values()):
            task.cancel()
        await asyncio.gather(*runners, *gets.values(), return_exceptions=True)
