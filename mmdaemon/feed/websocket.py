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
  (websockets' own ping/pong catches a dead peer; this catches a live one sending nothing);
- a connection older than ``max_connection_age_s`` is replaced by a planned reconnect before
  the venue's 24 h limit cuts it, and so is one whose server announces ``serverShutdown``
  (the event is not passed on: it is not market data);
- frames are read as bytes (orjson parses bytes directly); system proxies are not used
  unless ``proxy`` is configured.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from mmdaemon.feed.recording import RecordedFrame

if TYPE_CHECKING:
    import aiohttp


class Reconnected(NamedTuple):
    """The stream was (re)opened: whatever book the consumer holds is no longer in sequence."""

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

    @property
    def stream_url(self) -> str:
        names = "/".join(f"{self.symbol.lower()}@{s}" for s in self.streams)
        return f"{self.ws_url.rstrip('/')}/stream?streams={names}"

    @property
    def snapshot_url(self) -> str:
        return (f"{self.rest_url.rstrip('/')}{self.depth_path}?symbol={self.symbol.upper()}"
                f"&limit={self.snapshot_limit}")


def backoff_delay(attempt: int, initial_s: float, max_s: float, rng: Callable[[], float]) -> float:
    """Seconds to wait before reconnect ``attempt`` (1-based): exponential, capped, with
    "equal jitter" (half fixed, half random) so many instances do not reconnect in step."""
    ceiling: float = min(max_s, initial_s * 2.0 ** (attempt - 1))
    return ceiling / 2 + rng() * ceiling / 2


FeedItem = RecordedFrame | Reconnected
_END: Any = object()  # queued when the connection loop stops
SERVER_SHUTDOWN = b'"e":"serverShutdown"'  # Binance: the server goes down soon, reconnect


class WebsocketFeed:
    """Async iterator of live frames; see the module docstring."""

    def __init__(self, settings: FeedSettings, log: Any, *,
                 now_ns: Callable[[], int] = time.time_ns,
                 rng: Callable[[], float] = random.random) -> None:
        self.settings = settings
        self.log = log
        self.now_ns = now_ns
        self.rng = rng
        self.connects = 0
        self.reconnects = 0
        self.snapshots = 0
        self._queue: asyncio.Queue[FeedItem] = asyncio.Queue(settings.queue_size)
        self._end: asyncio.Task[None] | None = None
        self._want_snapshot = asyncio.Event()
        self._closed = False

    def request_snapshot(self) -> None:
        """Fetch a new REST snapshot (the codec reported a gap)."""
        self._want_snapshot.set()

    async def frames(self) -> AsyncIterator[FeedItem]:
        """Frames and reconnect markers, until :meth:`close` or cancellation.

        The connection loop runs as its own task and hands frames over through the queue;
        when it stops (closed, or an unexpected error) it queues :data:`_END`, so waiting
        here is one plain ``queue.get`` per frame: this is on the tick-to-quote path.
        """
        runner = asyncio.create_task(self._run(), name="ws-feed")
        runner.add_done_callback(self._runner_done)
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

    async def _run(self) -> None:
        s = self.settings
        attempt = 0
        import aiohttp  # here: replays never need it, and importing it costs ~0.1 s

        session = aiohttp.ClientSession(trust_env=False)  # no system proxies by default
        try:
            while not self._closed:
                started = time.monotonic()
                reason = await self._connection(session)
                if time.monotonic() - started >= s.healthy_after_s:
                    attempt = 0
                if self._closed:
                    return
                attempt += 1
                delay = 0.0 if reason == "planned" else backoff_delay(
                    attempt, s.backoff_initial_s, s.backoff_max_s, self.rng)
                self.log.warning("feed_reconnecting", reason=reason, attempt=attempt,
                                 delay_s=round(delay, 3))
                await asyncio.sleep(delay)
        finally:
            await session.close()

    async def _connection(self, session: aiohttp.ClientSession) -> str:
        """One connection's life; returns why it ended."""
        s = self.settings
        try:
            # close_timeout is short because a feed we leave has usually stopped being read:
            # its unread frames hold back the venue's close frame, and waiting the default
            # 10 s for it would stall a reconnect or a shutdown for nothing
            async with connect(s.stream_url, proxy=s.proxy, open_timeout=s.open_timeout_s,
                               close_timeout=1.0, compression=None, max_size=None) as ws:
                self.connects += 1
                if self.connects > 1:
                    self.reconnects += 1
                self.log.info("feed_connected", url=s.stream_url, connects=self.connects)
                await self._queue.put(Reconnected("connected", self.now_ns()))
                self._want_snapshot.set()
                fetcher = asyncio.create_task(self._snapshots(session), name="ws-snapshots")
                try:
                    return await self._read(ws)
                finally:
                    fetcher.cancel()
                    await asyncio.gather(fetcher, return_exceptions=True)
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            self.log.warning("feed_connect_failed", url=s.stream_url, error=repr(exc))
            return "connect_failed"
        except ConnectionClosed as exc:
            self.log.warning("feed_disconnected", code=exc.rcvd.code if exc.rcvd else None,
                             reason=exc.rcvd.reason if exc.rcvd else "")
            return "closed"

    async def _read(self, ws: ClientConnection) -> str:
        s = self.settings
        deadline = time.monotonic() + s.max_connection_age_s
        stale_s = s.stale_after_ms / 1000
        put, now_ns = self._queue.put, self.now_ns
        while True:
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that lands as a frame arrives, and the feed would never stop
                async with asyncio.timeout(stale_s):
                    frame = await ws.recv(decode=False)
            except TimeoutError:
                self.log.warning("feed_stale", silent_ms=s.stale_after_ms)
                return "stale"
            if SERVER_SHUTDOWN in frame[:48]:
                self.log.warning("feed_server_shutdown")
                return "planned"
            await put((now_ns(), frame))
            if time.monotonic() >= deadline:
                self.log.info("feed_planned_reconnect", age_s=s.max_connection_age_s)
                return "planned"

    async def _snapshots(self, session: aiohttp.ClientSession) -> None:
        """Fetch a snapshot whenever asked, retrying with backoff until one arrives."""
        import aiohttp

        s = self.settings
        timeout = aiohttp.ClientTimeout(total=s.snapshot_timeout_s)
        while True:
            await self._want_snapshot.wait()
            attempt = 0
            while True:
                self._want_snapshot.clear()
                try:
                    async with session.get(s.snapshot_url, proxy=s.proxy,
                                           timeout=timeout) as response:
                        body = await response.read()
                        if response.status == 200:
                            self.snapshots += 1
                            await self._queue.put((self.now_ns(), body))
                            self.log.info("feed_snapshot", bytes=len(body))
                            break
                        self.log.warning("feed_snapshot_failed", status=response.status,
                                         body=body[:200].decode(errors="replace"))
                except (aiohttp.ClientError, TimeoutError) as exc:
                    self.log.warning("feed_snapshot_failed", error=repr(exc))
                attempt += 1
                await asyncio.sleep(backoff_delay(attempt, s.backoff_initial_s,
                                                  s.backoff_max_s, self.rng))
