"""The sim's market data: one tape replayed from a recording to every subscriber.

Like a real venue, the sim has one market that moves on its own: frames go out at the
recorded receive times (scaled by ``speed``), to every connection subscribed to their
stream, whether or not anyone is listening. The sim keeps its own book from the same frames
(through the same codec the daemon uses), so ``GET /api/v3/depth`` answers with the book at
the current replay position and its correct ``lastUpdateId``.

A tape may carry a second one, :attr:`MarketTape.reference` (another venue's market: the
USD-M perpetual beside spot), played by the same loop: the two recordings are merged by
receive time and paced on one clock, so the two markets keep the offsets in time they were
recorded with (a second paced loop would start its recording at its own first frame, and
the 1 s between the bundled spot and USD-M starts would be lost). Each tape keeps its own
codec (``spot`` or ``usdm`` sync rules), book, subscribers and faults.

Stream connections work as Binance's do. ``/stream?streams=..`` connections get combined
frames (``{"stream":..,"data":..}``); ``/ws/<name>`` connections get raw payloads (the
``data`` object alone). Either kind may change its streams with ``SUBSCRIBE``,
``UNSUBSCRIBE``, ``LIST_SUBSCRIPTIONS``, ``SET_PROPERTY``/``GET_PROPERTY`` (``combined``)
requests, answered ``{"result": .., "id": ..}`` or ``{"error": {"code", "msg"}, "id": ..}``
with Binance's error codes (0 unknown property, 1 bad value type, 2 invalid request,
3 invalid JSON); that is how third-party clients such as ccxt subscribe.

Faults for tests, each a plain method: :meth:`MarketTape.drop_connections` (close every
stream connection), :meth:`MarketTape.go_silent` (keep connections open, send nothing for a
while), :meth:`MarketTape.skip_depth_updates` (withhold diffs from subscribers: a gap).
Each acts on its own tape's subscribers only, so the reference can fail while the traded
market goes on.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import orjson
from websockets.asyncio.server import ServerConnection, broadcast
from websockets.exceptions import ConnectionClosed

from mmdaemon.clock import Clock
from mmdaemon.feed.recording import read_recording
from mmdaemon.feed.replay import paced
from mmdaemon.market import MarketState
from mmdaemon.model import NS_PER_MS, BookUpdate, Instrument, Malformed, Trade
from mmdaemon.sim.clock import SimClock
from mmdaemon.venues.binance import BinanceCodec, Market, frame_event_ns

DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000, 5000)  # spot's GET /api/v3/depth
USDM_DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)  # USD-M's GET /fapi/v1/depth
PRICE_PLACES = 8  # Binance spot prints prices and sizes with 8 decimals
USDM_PRICE_PLACES = 2  # USD-M prints a price with at least 2 (BTCUSDT "61800.20", tick 0.1)
MAX_STREAMS = 1024  # Binance: one connection listens to at most 1024 streams
MAX_ID_CHARS = 36  # Binance: a string request id is at most 36 characters
METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
_ENVELOPE_HEAD = b'{"stream":"'  # a combined frame: {"stream":"<name>","data":<payload>}
_DATA_KEY = b'","data":'

RequestId = int | str | None


class StreamRequestError(Exception):
    """A stream-control request the venue refuses: ``code`` and ``msg`` as Binance sends."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code, self.msg = code, msg


def raw_payload(frame: bytes, stream_end: int) -> bytes:
    """The ``data`` object of a combined frame: what a raw ``/ws`` stream sends.

    ``stream_end`` is the index of the quote closing the stream name. The payload is sliced
    out of the envelope, not decoded and re-encoded, so a raw subscriber gets exactly the
    recorded bytes (same number formatting, same key order) for the cost of one copy; a
    frame laid out some other way falls back to a decode.
    """
    if frame.startswith(_DATA_KEY, stream_end) and frame.endswith(b"}"):
        return frame[stream_end + len(_DATA_KEY):-1]
    return orjson.dumps(orjson.loads(frame)["data"])


def parse_request_id(request: dict[str, Any]) -> RequestId:
    """The request's ``id``: an int64, an alphanumeric string of up to 36 chars, or null."""
    if "id" not in request:
        raise StreamRequestError(2, "Invalid request: missing field `id`")
    rid = request["id"]
    if rid is None:
        return None
    if isinstance(rid, int) and not isinstance(rid, bool) and -(1 << 63) <= rid < (1 << 63):
        return rid
    if (isinstance(rid, str) and len(rid) <= MAX_ID_CHARS
            and rid.replace("-", "").replace("_", "").isalnum() and rid.isascii()):
        return rid
    raise StreamRequestError(2, "Invalid request: request ID must be an integer, a string "
                                f"of at most {MAX_ID_CHARS} characters, or null")


class MarketListener(Protocol):
    """Who else sees the market (the sim's order entry matches against it)."""

    def advance(self, now_ns: int) -> None: ...

    def on_book(self, book: Any, now_ns: int) -> None: ...

    def on_trade(self, trade: Trade, now_ns: int) -> None: ...


TapedFrame = tuple[int, int, bytes]
"""A frame of a merged tape: ``(recv_ns, tape index, frame)``; the index breaks no ties
(the merge keeps each recording's order and the traded tape's frames first at one time)."""


def _receive_time(item: TapedFrame) -> int:
    return item[0]


def merged(recordings: list[list[Path]]) -> Iterator[TapedFrame]:
    """The frames of several recordings in one receive-time order, each tagged with the
    index of its recording; lines that are not frames are left out."""
    streams = [_tagged(paths, index) for index, paths in enumerate(recordings)]
    return heapq.merge(*streams, key=_receive_time) if len(streams) > 1 else streams[0]


def _tagged(paths: list[Path], index: int) -> Iterator[TapedFrame]:
    for item in read_recording(paths):
        if not isinstance(item, Malformed):  # the sim serves frames, it reports nothing
            yield item[0], index, item[1]


class MarketTape:
    """Replay ``paths`` at ``speed`` (None: as fast as possible) to stream subscribers;
    with ``wait_for_subscriber``, not before the first stream connection (so that a client
    sees a burst at ``--speed max`` from its start). ``market`` is the venue's kind: its
    depth-sync rules and the shape of its REST snapshot. ``sim_clock`` is the sim's time line
    (shared with the reference tape and the order entry; default: a new one on ``clock``):
    the tape fixes its offset at the first timed frame, and every venue time it shows or
    hands the ``listener`` is on it."""

    def __init__(self, paths: Iterable[str | Path], instrument: Instrument, speed: float | None,
                 clock: Clock, listener: MarketListener | None = None, *,
                 wait_for_subscriber: bool = False, market: Market = "spot",
                 sim_clock: SimClock | None = None) -> None:
        self.instrument = instrument
        self.paths = [Path(p) for p in paths]
        self.speed = speed
        self.clock = clock
        self.sim_clock = sim_clock if sim_clock is not None else SimClock(clock, speed)
        self.kind: Market = market
        self.market = MarketState(BinanceCodec(instrument, market))
        self.listener = listener
        # another venue's tape played on this one's clock (see the module docstring)
        self.reference: MarketTape | None = None
        self.last_event_ms = 0  # the venue's time (ms) of the last book update applied
        # every stream connection and its streams; the raw ones (combined=false) also in raw
        self.subscribers: dict[ServerConnection, frozenset[str]] = {}
        self.raw: set[ServerConnection] = set()
        self.frames_sent = 0
        self.finished = asyncio.Event()
        self.subscribed = asyncio.Event()  # a stream connection came
        self._wait_for_subscriber = wait_for_subscriber
        self._silent_until_ns = 0
        self._skip_depth = 0
        self.on_frame: Callable[[int, bytes], None] | None = None  # a hook for tests

    # -- the tape -------------------------------------------------------------------------

    async def run(self) -> None:
        """Play the whole recording (with the :attr:`reference`'s, merged) once, then set
        :attr:`finished`. A silence of this tape (:meth:`go_silent`) pauses both: they
        share one clock."""
        if self._wait_for_subscriber:
            await self.subscribed.wait()
        tapes = [self] if self.reference is None else [self, self.reference]
        clock, speed = self.clock, self.speed
        frames = merged([tape.paths for tape in tapes])
        async for batch in paced(frames, _receive_time, speed, clock):
            for recv_ns, index, frame in batch:
                while clock.monotonic_ns() < self._silent_until_ns:
                    await clock.sleep((self._silent_until_ns - clock.monotonic_ns()) / 1e9)
                tapes[index].play(recv_ns, frame)
                if speed is not None:
                    # frames recorded in the same instant come as a burst; a real venue's
                    # order entry does not wait for its market-data publisher to finish
                    # one, so let the loop read requests between frames
                    await asyncio.sleep(0)
        self.finished.set()

    def play(self, recv_ns: int, frame: bytes) -> None:
        """One recorded frame: into this tape's book (and the order entry's market), then
        out to its subscribers."""
        market, listener, sim = self.market, self.listener, self.sim_clock
        # the venue's time of this frame on the sim's time line (a frame without one, such
        # as a spot bookTicker or a REST snapshot, is at the latest time played); the
        # recorder's receive time is not the venue's (the bundled one runs 1.27 s behind)
        recorded_ns = frame_event_ns(frame)
        if recorded_ns:
            sim.start(recorded_ns)
            sim.played(sim.venue_ns(recorded_ns))
        now_ns = sim.position_ns
        if listener is not None:
            listener.advance(now_ns)  # strict time order: arrivals meet the book before
        events = market.on_frame(recv_ns, frame)
        for event in events:
            if type(event) is BookUpdate:
                self.last_event_ms = sim.venue_ns(event.exch_ns) // NS_PER_MS
                if listener is not None:
                    listener.on_book(market.book, now_ns)
            elif type(event) is Trade and listener is not None:
                listener.on_trade(event, now_ns)
        if self._silent_until_ns and self.clock.monotonic_ns() < self._silent_until_ns:
            return  # a reference tape's silence: its market moves on, nothing is sent
        self._publish(frame)
        if self.on_frame is not None:
            self.on_frame(recv_ns, frame)

    def _publish(self, frame: bytes) -> None:
        if not frame.startswith(_ENVELOPE_HEAD):
            return  # the recorded REST snapshots are not stream frames
        head = len(_ENVELOPE_HEAD)
        stream_end = frame.find(b'"', head)
        stream = frame[head:stream_end].decode()
        if self._skip_depth and "@depth" in stream:
            self._skip_depth -= 1
            return
        targets = [ws for ws, streams in self.subscribers.items() if stream in streams]
        if not targets:
            return
        # broadcast() never waits: a subscriber too slow to keep up is skipped and sees a
        # gap, exactly as on a real venue, instead of slowing everyone down
        raw = self.raw
        if raw:
            raw_targets = [ws for ws in targets if ws in raw]
            if raw_targets:
                targets = [ws for ws in targets if ws not in raw]
                payload = raw_payload(frame, stream_end)
                broadcast(raw_targets, self.sim_clock.shift_frame(payload).decode())
                self.frames_sent += len(raw_targets)
        if targets:
            broadcast(targets, self.sim_clock.shift_frame(frame).decode())
            self.frames_sent += len(targets)

    # -- connections ----------------------------------------------------------------------

    async def serve_streams(self, ws: ServerConnection, streams: frozenset[str], *,
                            combined: bool = True) -> None:
        """Keep a stream connection subscribed until it closes, answering its requests.

        ``combined``: frames wrapped as ``/stream`` sends them, else raw payloads as ``/ws``
        sends them (a connection may switch with ``SET_PROPERTY``).
        """
        self.subscribers[ws] = streams
        self.subscribed.set()
        if not combined:
            self.raw.add(ws)
        try:
            async for message in ws:
                await ws.send(self.control(ws, message))
        except ConnectionClosed:
            pass  # gone mid-reply or closed abnormally: nobody is left to answer
        finally:
            self.subscribers.pop(ws, None)
            self.raw.discard(ws)

    def control(self, ws: ServerConnection, message: str | bytes) -> str:
        """Apply one stream-control request from ``ws``; the reply text to send back."""
        rid: RequestId = None
        try:
            try:
                request = orjson.loads(message)
            except orjson.JSONDecodeError as exc:
                raise StreamRequestError(3, f"Invalid JSON: {exc}") from None
            if not isinstance(request, dict):
                raise StreamRequestError(2, "Invalid request: expected a JSON object")
            rid = parse_request_id(request)
            result = self._apply(ws, request)
        except StreamRequestError as exc:
            return orjson.dumps({"error": {"code": exc.code, "msg": exc.msg},
                                 "id": rid}).decode()
        return orjson.dumps({"result": result, "id": rid}).decode()

    def _apply(self, ws: ServerConnection, request: dict[str, Any]) -> Any:
        if request.keys() - {"method", "params", "id"}:
            raise StreamRequestError(2, "Invalid request: too many parameters")
        method = request.get("method")
        if method is None:
            raise StreamRequestError(2, "Invalid request: missing field `method`")
        if method not in METHODS:
            raise StreamRequestError(2, f"Invalid request: unknown variant `{method}`, "
                                        f"expected one of {', '.join(METHODS)}")
        params = request.get("params", [])
        if not isinstance(params, list):
            raise StreamRequestError(2, "Invalid request: params must be an array")
        streams = self.subscribers.get(ws, frozenset())
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not all(isinstance(p, str) and p for p in params):
                raise StreamRequestError(2, "Invalid request: stream names must be strings")
            if method == "UNSUBSCRIBE":
                self.subscribers[ws] = streams.difference(params)
                return None
            wanted = streams.union(params)
            if len(wanted) > MAX_STREAMS:
                raise StreamRequestError(2, f"Invalid request: at most {MAX_STREAMS} streams "
                                            "per connection")
            self.subscribers[ws] = wanted
            return None
        if method == "LIST_SUBSCRIPTIONS":
            if params:
                raise StreamRequestError(2, "Invalid request: too many parameters")
            return sorted(streams)
        # SET_PROPERTY ["combined", bool] / GET_PROPERTY ["combined"]
        if not params or not isinstance(params[0], str):
            raise StreamRequestError(2, "Invalid request: property name must be a string")
        if params[0] != "combined":
            raise StreamRequestError(0, "Unknown property")
        if method == "GET_PROPERTY":
            if len(params) != 1:
                raise StreamRequestError(2, "Invalid request: too many parameters")
            return ws not in self.raw
        if len(params) != 2:
            raise StreamRequestError(2, "Invalid request: SET_PROPERTY takes a name and a value")
        if not isinstance(params[1], bool):
            raise StreamRequestError(1, "Invalid value type: expected Boolean")
        if params[1]:
            self.raw.discard(ws)
        else:
            self.raw.add(ws)
        return None

    @property
    def depth_limits(self) -> tuple[int, ...]:
        """The ``limit`` values this venue's depth request accepts."""
        return USDM_DEPTH_LIMITS if self.kind == "usdm" else DEPTH_LIMITS

    def depth_snapshot(self, limit: int) -> bytes | None:
        """The REST depth body at the current position (``GET /api/v3/depth``, or for USD-M
        ``GET /fapi/v1/depth`` with its ``E`` and ``T``: the venue's time of the book, in
        ms, the recording's); None before the book syncs."""
        book = self.market.book
        if not book.synced:
            return None
        inst = self.instrument
        px, qty = inst.ticks.to_str, inst.lots.to_str
        if self.kind == "usdm":  # the venue's own precision, as its frames print it
            price_places, size_places = max(USDM_PRICE_PLACES, inst.price_precision), \
                inst.size_precision
        else:
            price_places = size_places = PRICE_PLACES
        body: dict[str, Any] = {"lastUpdateId": book.last_id}
        if self.kind == "usdm":
            body["E"] = body["T"] = self.last_event_ms
        body["bids"] = [[px(p, price_places), qty(q, size_places)]
                        for p, q in book.bids.top(limit)]
        body["asks"] = [[px(p, price_places), qty(q, size_places)]
                        for p, q in book.asks.top(limit)]
        return orjson.dumps(body)

    # -- faults ---------------------------------------------------------------------------

    async def drop_connections(self) -> None:
        """Close every stream connection, combined or raw (the venue hangs up)."""
        await asyncio.gather(*(ws.close(1001, "going away") for ws in list(self.subscribers)))

    async def send_oversized(self, size: int, fragment: int = 0) -> int:
        """Send every stream connection one text message of ``size`` bytes, as a broken or
        hostile venue might: one frame, or with ``fragment`` > 0 fragments of that many bytes
        made as they are sent (the sim never holds the whole message). It starts like a
        trade event so only its size gives it away. Returns how many connections took it
        whole; one that refuses it (closes) does not count."""
        head = '{"stream":"btcusdt@trade","data":{"e":"trade","p":"'
        pad = size - len(head) - 3

        async def pieces() -> AsyncIterator[str]:
            yield head
            left = pad
            while left > 0:
                n = min(fragment, left)
                left -= n
                yield "9" * n
            yield '"}}'

        async def send(ws: ServerConnection) -> bool:
            try:
                await ws.send(pieces() if fragment else head + "9" * pad + '"}}')
            except ConnectionClosed:
                return False
            return True

        sent = await asyncio.gather(*(send(ws) for ws in list(self.subscribers)))
        return sum(sent)

    def go_silent(self, seconds: float) -> None:
        """Send nothing for ``seconds`` of wall time while keeping connections open. The
        traded tape pauses (the reference with it: one clock); a reference tape withholds
        its frames while the markets move on, so its clients see a stale stream and then
        a gap."""
        self._silent_until_ns = self.clock.monotonic_ns() + int(seconds * 1e9)

    def skip_depth_updates(self, count: int = 1) -> None:
        """Withhold the next ``count`` depth diffs from subscribers: a sequence gap."""
        self._skip_depth += count

    def announce_shutdown(self, now_ms: int) -> None:
        """Send Binance's ``serverShutdown`` event to every stream connection (the venue
        is about to go down; clients should reconnect elsewhere at once)."""
        if self.subscribers:
            broadcast(list(self.subscribers), orjson.dumps(
                {"e": "serverShutdown", "E": now_ms}).decode())
