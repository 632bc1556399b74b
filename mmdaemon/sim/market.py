"""The sim's market data: one tape replayed from a recording to every subscriber.

Like a real venue, the sim has one market that moves on its own: frames go out at the
recorded receive times (scaled by ``speed``), to every connection subscribed to their
stream, whether or not anyone is listening. The sim keeps its own book from the same frames
(through the same codec the daemon uses), so ``GET /api/v3/depth`` answers with the book at
the current replay position and its correct ``lastUpdateId``.

Faults for tests, each a plain method: :meth:`MarketTape.drop_connections` (close every
stream connection), :meth:`MarketTape.go_silent` (keep connections open, send nothing for a
while), :meth:`MarketTape.skip_depth_updates` (withhold diffs from subscribers: a gap).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import orjson
from websockets.asyncio.server import ServerConnection, broadcast

from mmdaemon.clock import Clock
from mmdaemon.feed.replay import ReplaySource
from mmdaemon.market import MarketState
from mmdaemon.model import BookUpdate, Instrument, Malformed, Trade
from mmdaemon.venues.binance import BinanceCodec

DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000, 5000)
PRICE_PLACES = 8  # Binance spot prints prices and sizes with 8 decimals


class MarketListener(Protocol):
    """Who else sees the market (the sim's order entry matches against it)."""

    def on_book(self, book: Any, now_ns: int) -> None: ...

    def on_trade(self, trade: Trade, now_ns: int) -> None: ...


class MarketTape:
    """Replay ``paths`` at ``speed`` (None: as fast as possible) to stream subscribers."""

    def __init__(self, paths: Iterable[str | Path], instrument: Instrument, speed: float | None,
                 clock: Clock, listener: MarketListener | None = None) -> None:
        self.instrument = instrument
        self.source = ReplaySource(paths, speed, clock)
        self.clock = clock
        self.market = MarketState(BinanceCodec(instrument, "spot"))
        self.listener = listener
        self.subscribers: dict[ServerConnection, frozenset[str]] = {}
        self.frames_sent = 0
        self.finished = asyncio.Event()
        self._silent_until_ns = 0
        self._skip_depth = 0
        self.on_frame: Callable[[int, bytes], None] | None = None  # a hook for tests

    # -- the tape -------------------------------------------------------------------------

    async def run(self) -> None:
        """Play the whole recording once, then set :attr:`finished`."""
        market, listener = self.market, self.listener
        async for item in self.source.frames():
            if isinstance(item, Malformed):
                continue
            recv_ns, frame = item
            while self.clock.monotonic_ns() < self._silent_until_ns:
                await self.clock.sleep((self._silent_until_ns - self.clock.monotonic_ns()) / 1e9)
            events = market.on_frame(recv_ns, frame)
            if listener is not None:
                for event in events:
                    if type(event) is BookUpdate:
                        listener.on_book(market.book, recv_ns)
                    elif type(event) is Trade:
                        listener.on_trade(event, recv_ns)
            self._publish(frame)
            if self.on_frame is not None:
                self.on_frame(recv_ns, frame)
        self.finished.set()

    def _publish(self, frame: bytes) -> None:
        if not frame.startswith(b'{"stream":'):
            return  # the recorded REST snapshots are not stream frames
        stream_end = frame.find(b'"', 11)
        stream = frame[11:stream_end].decode()
        if self._skip_depth and "@depth" in stream:
            self._skip_depth -= 1
            return
        targets = [ws for ws, streams in self.subscribers.items() if stream in streams]
        if targets:
            # broadcast() never waits: a subscriber too slow to keep up is skipped and sees
            # a gap, exactly as on a real venue, instead of slowing everyone down
            broadcast(targets, frame.decode())
            self.frames_sent += len(targets)

    # -- connections ----------------------------------------------------------------------

    async def serve_streams(self, ws: ServerConnection, streams: frozenset[str]) -> None:
        """Keep a ``/stream?streams=..`` connection subscribed until it closes."""
        self.subscribers[ws] = streams
        try:
            async for _ in ws:  # clients only send pongs and the odd control frame
                pass
        finally:
            self.subscribers.pop(ws, None)

    def depth_snapshot(self, limit: int) -> bytes | None:
        """``GET /api/v3/depth`` body at the current position; None before the book syncs."""
        book = self.market.book
        if not book.synced:
            return None
        px, qty = self.instrument.ticks.to_str, self.instrument.lots.to_str
        return orjson.dumps({
            "lastUpdateId": book.last_id,
            "bids": [[px(p, PRICE_PLACES), qty(q, PRICE_PLACES)] for p, q in book.bids.top(limit)],
            "asks": [[px(p, PRICE_PLACES), qty(q, PRICE_PLACES)] for p, q in book.asks.top(limit)],
        })

    # -- faults ---------------------------------------------------------------------------

    async def drop_connections(self) -> None:
        """Close every stream connection (the venue hangs up)."""
        await asyncio.gather(*(ws.close(1001, "going away") for ws in list(self.subscribers)))

    def go_silent(self, seconds: float) -> None:
        """Send nothing for ``seconds`` of wall time while keeping connections open."""
        self._silent_until_ns = self.clock.monotonic_ns() + int(seconds * 1e9)

    def skip_depth_updates(self, count: int = 1) -> None:
        """Withhold the next ``count`` depth diffs from subscribers: a sequence gap."""
        self._skip_depth += count
