"""Binance market-data codec (sans-I/O): frame bytes in, market events out.

Decodes combined-stream frames (``{"stream": .., "data": ..}``) and raw frames:
``depthUpdate`` diffs, ``bookTicker``, ``trade`` and REST depth snapshots
(``{"lastUpdateId": ..}``). It owns the book-sync state machine with the venue's rules:

- spot: buffer diffs until a snapshot; drop diffs with ``u <= lastUpdateId``; the first
  applied diff must satisfy ``U <= lastUpdateId + 1 <= u``; afterwards ``U == prev_u + 1``.
- USD-M futures: drop diffs with ``u < lastUpdateId``; the first applied diff must satisfy
  ``U <= lastUpdateId <= u`` or ``pu == lastUpdateId`` (a snapshot on an event boundary);
  afterwards ``pu == prev_u``.

Anything else after sync is a :class:`~mmdaemon.model.Gap`: the codec goes back to
buffering and the shell must fetch (live) or wait for (replay) a new snapshot. A diff that is
entirely old (``u <= prev_u``, e.g. a duplicated frame) is dropped, not treated as a gap,
because applying nothing is exactly right for it; but only a repeat of the last applied diff
or one older than it is old: the venue's diffs partition the id sequence, so one that ends
inside the last applied diff without repeating it means the ids are damaged (a corrupt ``u``
far ahead would otherwise keep the codec "in sequence" there, dropping every real diff as
old), and it is a gap too.

Nothing here reads a clock or does I/O; times come from the frame and its receive time.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

import orjson

from mmdaemon import speedups
from mmdaemon.model import (
    NS_PER_MS,
    BookUpdate,
    Gap,
    Instrument,
    Level,
    Malformed,
    MarketEvent,
    Side,
    TopOfBook,
    Trade,
)

if TYPE_CHECKING:
    from mmdaemon._speedups import Decoder

Market = Literal["spot", "usdm"]
Handler = Callable[[dict[str, Any], int], list[MarketEvent]]
_NO_EVENTS: list[MarketEvent] = []  # shared, never mutated
# Event tuples are built with tuple.__new__ on the hottest paths: the generated NamedTuple
# constructor is a Python function and costs 2.5x more for the same result.
_new = tuple.__new__


class SyncState(Enum):
    WAIT_SNAPSHOT = "wait_snapshot"  # buffering diffs, no usable book
    AWAIT_FIRST = "await_first"  # snapshot loaded, first diff must bridge it
    SYNCED = "synced"


class FrameError(ValueError):
    """A frame that cannot be decoded; the message is the reason that gets logged."""


class BinanceCodec:
    """Decode Binance frames for one instrument and keep the depth stream in sequence.

    :meth:`decode` returns the events a frame produces, in order; a frame produces at
    most one event except a snapshot, which also releases the buffered diffs it bridges.

    The diffs kept while waiting for a snapshot are bounded twice, the oldest dropped
    beyond either bound: ``max_buffer`` diffs and ``max_buffer_levels`` price levels in
    all (bids and asks of every buffered diff). The count alone does not bound memory: a
    diff of a 1 MiB frame (``feed.max_message_bytes``) holds up to ~100,000 levels (a
    level is 10 bytes of JSON at least, ``["1","1"],``), so 10,000 of them would be 10^9
    levels. A level decoded costs 16 bytes packed (the compiled decoder) and ~100 bytes as
    a Python ``(ticks, lots)`` tuple, so the default 1,000,000 levels is ~16 MB (~100 MB on
    the pure-Python path), the order of the feed's own 16 x 1 MiB message queue. A real
    feed never comes near it: the largest real diff seen is 1,076 levels, so it is 930 of
    the largest diffs, 93 s of a 100 ms stream, while a snapshot takes well under a
    second. Dropping the oldest is safe: a snapshot older than what remains does not
    bridge it, which is a :class:`~mmdaemon.model.Gap`, and the shell fetches a newer one.
    """

    def __init__(self, instrument: Instrument, market: Market = "spot", max_buffer: int = 10_000,
                 max_buffer_levels: int = 1_000_000):
        if market not in ("spot", "usdm"):
            raise ValueError(f"market must be 'spot' or 'usdm', got {market!r}")
        self.instrument = instrument
        self.market: Market = market
        self.state = SyncState.WAIT_SNAPSHOT
        self.last_id = 0  # final update id of the last applied diff or snapshot
        self.dropped_stale = 0  # diffs dropped because the book already contains them
        self._applied = (0, 0, 0)  # (first, last, prev) ids of the last applied diff
        self._buffer: deque[tuple[int, int, int, BookUpdate]] = deque()
        self._max_buffer = max_buffer
        self._max_buffer_levels = max_buffer_levels
        self._buffer_levels = 0  # bids and asks of every diff in _buffer: kept on hold/drop
        # memo misses only: the hot loops read the memos themselves
        self._price: Callable[[object], int] = instrument.ticks.parse
        self._size: Callable[[object], int] = instrument.lots.parse
        self._price_memo = instrument.ticks.memo
        self._size_memo = instrument.lots.memo
        self._symbol = instrument.symbol
        # the compiled twins of the decoders, when built (mmdaemon.speedups)
        self.decode: Callable[[int, bytes | str], list[MarketEvent]] = self._py_decode
        self._levels: Callable[[list[list[str]]], list[Level]] = self._py_levels
        book_ticker: Handler = self._py_book_ticker
        trade: Handler = self._py_trade
        fast = self.compiled_decoder()
        if fast is not None:
            self.decode, self._levels = fast.decode, fast.levels
            book_ticker, trade = fast.book_ticker, fast.trade
        self._handlers: dict[str, Handler] = {
            "bookTicker": book_ticker,
            "trade": trade,
            "depth": self._diff,
            "snapshot": self._snapshot,
            "control": self._control,
        }
        self._routes: dict[str, tuple[str, Handler]] = {}

    def compiled_decoder(self) -> Decoder | None:
        """The compiled twins of this codec's decoders (:mod:`mmdaemon.speedups`), each
        handing what is not plain to the Python method of the same job (``_py_decode``,
        ``_py_decode_msg``, ``_py_levels``, ``_py_book_ticker``, ``_py_trade``); or None when
        they are not built, turned off, or the instrument's grids do not fit the compiled
        arithmetic (the constructor refuses unit digits above 10**18 or more than 40
        decimal places)."""
        compiled = speedups.compiled
        if compiled is None:
            return None
        ticks, lots = self.instrument.ticks, self.instrument.lots
        (price_int, price_exp), (size_int, size_exp) = ticks.parts, lots.parts
        try:
            decoder: Decoder = compiled.Decoder(
                symbol=self.instrument.symbol,
                price_unit=price_int,
                price_exp=price_exp,
                size_unit=size_int,
                size_exp=size_exp,
                price_parse=ticks.parse,
                size_parse=lots.parse,
                top_cls=TopOfBook,
                trade_cls=Trade,
                buy=Side.BUY,
                sell=Side.SELL,
                loads=orjson.loads,
                levels_fallback=self._py_levels,
                ticker_fallback=self._py_book_ticker,
                trade_fallback=self._py_trade,
                msg_fallback=self._py_decode_msg,
                decode_fallback=self._py_decode,
                depth=self._depth,
                snapshot=self._load,
                usdm=self.market == "usdm",
            )
        except ValueError:  # a grid beyond the compiled arithmetic: the Python code decodes
            return None
        return decoder

    @property
    def synced(self) -> bool:
        """True when the book built from this codec's events is usable."""
        return self.state is not SyncState.WAIT_SNAPSHOT

    def reset(self) -> None:
        """Forget sequence state (e.g. on reconnect): wait for a new snapshot."""
        self.state = SyncState.WAIT_SNAPSHOT
        self._clear_buffer()

    def _hold(self, first: int, last: int, prev: int, update: BookUpdate) -> None:
        """Buffer a diff for a snapshot to come, dropping the oldest beyond the bounds
        (see the class docstring); the newest diff is always kept."""
        buffer = self._buffer
        buffer.append((first, last, prev, update))
        self._buffer_levels += len(update.bids) + len(update.asks)
        while len(buffer) > 1 and (len(buffer) > self._max_buffer
                                   or self._buffer_levels > self._max_buffer_levels):
            old = buffer.popleft()[3]
            self._buffer_levels -= len(old.bids) + len(old.asks)

    def _clear_buffer(self) -> None:
        self._buffer.clear()
        self._buffer_levels = 0

    # -- decoding -------------------------------------------------------------------------

    def _py_decode(self, recv_ns: int, frame: bytes | str) -> list[MarketEvent]:
        """Decode one frame received at ``recv_ns``; never raises on bad input.

        This is ``decode`` without the compiled twins, which decode the busiest streams
        themselves (``bookTicker`` and ``trade``; plain depth diffs straight from their
        bytes, continuing in :meth:`_depth`) and hand every other parsed frame to
        :meth:`_py_decode_msg`, and every frame that is not JSON to this method.
        """
        try:
            msg = orjson.loads(frame)
        except orjson.JSONDecodeError as exc:
            return [Malformed(f"bad JSON: {exc}", recv_ns)]
        return self._py_decode_msg(msg, recv_ns)

    def _py_decode_msg(self, msg: object, recv_ns: int) -> list[MarketEvent]:
        """The events of a parsed frame."""
        if type(msg) is not dict:
            return [Malformed("frame is not a JSON object", recv_ns)]
        kind = "frame"
        try:
            stream = msg.get("stream")
            if stream is not None:
                data = msg["data"]
                route = self._routes.get(stream) or self._route(stream)
                kind = route[0]
                if type(data) is not dict:
                    raise FrameError("'data' is not an object")
                return route[1](data, recv_ns)
            kind = raw_kind(msg)
            return self._handlers[kind](msg, recv_ns)
        except FrameError as exc:
            return self._malformed(kind, str(exc), recv_ns)
        except KeyError as exc:
            return self._malformed(kind, f"missing field {exc}", recv_ns)
        except (TypeError, ValueError, IndexError) as exc:
            return self._malformed(kind, str(exc), recv_ns)

    def _route(self, stream: object) -> tuple[str, Handler]:
        """Kind and handler of a combined stream, cached for names seen before."""
        kind = stream_kind(stream)
        route = (kind, self._handlers[kind])
        if len(self._routes) < 64:  # names come from our own subscription: a handful
            self._routes[stream] = route  # type: ignore[index]
        return route

    def _control(self, data: dict[str, Any], recv_ns: int) -> list[MarketEvent]:
        """Subscription acks and the like carry no market data."""
        return _NO_EVENTS

    def _malformed(self, kind: str, reason: str, recv_ns: int) -> list[MarketEvent]:
        events: list[MarketEvent] = [Malformed(f"{kind}: {reason}", recv_ns)]
        if kind == "depth" and self.state is not SyncState.WAIT_SNAPSHOT:
            # We know an update is missing: fail closed now rather than at the next diff.
            events.append(self._lose_sync("malformed depth update", self.last_id + 1, 0, recv_ns))
        return events

    def _check_symbol(self, data: dict[str, Any]) -> None:
        symbol = data["s"]
        if symbol != self._symbol:
            raise FrameError(f"symbol {symbol!r}, expected {self._symbol!r}")

    def _py_levels(self, raw: list[list[str]]) -> list[Level]:
        """Venue levels ``[[price, size], ...]`` as (ticks, lots): the reference loop, which
        the compiled one (:mod:`mmdaemon.speedups`) replaces when it is built."""
        # memo lookups inlined: this loop runs for every level of every diff
        price, size = self._price, self._size
        price_memo, size_memo = self._price_memo.get, self._size_memo.get
        out: list[Level] = []
        append = out.append
        for p, q in raw:
            ticks = price_memo(p)
            if ticks is None:
                ticks = price(p)
            lots = size_memo(q)
            if lots is None:
                lots = size(q)
            append((ticks, lots))
        return out

    def _py_book_ticker(self, data: dict[str, Any], recv_ns: int) -> list[MarketEvent]:
        """A ``bookTicker`` data object as [TopOfBook] (the reference of the compiled twin)."""
        if data["s"] != self._symbol:
            self._check_symbol(data)
        price_memo, size_memo = self._price_memo.get, self._size_memo.get
        b, bq, a, aq = data["b"], data["B"], data["a"], data["A"]
        bid = price_memo(b)
        if bid is None:
            bid = self._price(b)
        ask = price_memo(a)
        if ask is None:
            ask = self._price(a)
        bid_size = size_memo(bq)
        if bid_size is None:
            bid_size = self._size(bq)
        ask_size = size_memo(aq)
        if ask_size is None:
            ask_size = self._size(aq)
        update_id = data["u"]
        if type(update_id) is not int:
            raise FrameError("update id 'u' is not an integer")
        exch_ns = _ms(data.get("T", 0))
        return [_new(TopOfBook, (update_id, bid, bid_size, ask, ask_size, exch_ns, recv_ns))]

    def _py_trade(self, data: dict[str, Any], recv_ns: int) -> list[MarketEvent]:
        """A ``trade`` data object as [Trade] (the reference of the compiled twin)."""
        if data["s"] != self._symbol:
            self._check_symbol(data)
        q = data["q"]
        size = self._size_memo.get(q)
        if size is None:
            size = self._size(q)
        if not size:
            raise FrameError("trade of zero size")
        maker_is_buyer = data["m"]
        if maker_is_buyer is True:
            aggressor = Side.SELL
        elif maker_is_buyer is False:
            aggressor = Side.BUY
        else:
            raise FrameError("'m' is not a boolean")
        p = data["p"]
        price = self._price_memo.get(p)
        if price is None:
            price = self._price(p)
        trade_id = data["t"]
        if type(trade_id) is not int:
            raise FrameError("trade id 't' is not an integer")
        exch_ns = _ms(data.get("T", 0))
        return [_new(Trade, (price, size, aggressor, trade_id, exch_ns, recv_ns))]

    def _diff(self, data: dict[str, Any], recv_ns: int) -> list[MarketEvent]:
        self._check_symbol(data)
        first, last = data["U"], data["u"]
        prev = data.get("pu", -1) if self.market == "usdm" else first - 1
        if type(first) is not int or type(last) is not int or type(prev) is not int:
            raise FrameError("update ids are not integers")
        if first > last:
            raise FrameError(f"first update id {first} > final update id {last}")
        return self._depth(
            first,
            last,
            prev,
            self._levels(data["b"]),
            self._levels(data["a"]),
            _ms(data.get("T", data.get("E", 0))),
            recv_ns,
        )

    def _depth(self, first: int, last: int, prev: int, bids: Sequence[Level],
               asks: Sequence[Level], exch_ns: int, recv_ns: int) -> list[MarketEvent]:
        """A decoded diff (ids checked: ints, ``first <= last``) through the sync rules.

        The compiled scanner (:mod:`mmdaemon.speedups`), which reads plain depth frames
        straight from their bytes, continues here too, with packed levels.
        """
        update = BookUpdate(False, bids, asks, first, last, exch_ns, recv_ns)
        if self.state is SyncState.WAIT_SNAPSHOT:
            self._hold(first, last, prev, update)
            return _NO_EVENTS
        return self._sequence(first, last, prev, update)

    def _sequence(self, first: int, last: int, prev: int, update: BookUpdate) -> list[MarketEvent]:
        """Apply the sync rules to one diff once a snapshot is loaded."""
        if self.state is SyncState.SYNCED:
            if last <= self.last_id:
                if (first, last, prev) == self._applied or last <= self._applied[2]:
                    self.dropped_stale += 1  # a repeat of the last applied diff, or older
                    return _NO_EVENTS
                # ends inside the last applied diff without repeating it: damaged ids
                gap = self._lose_sync(
                    "stale diff overlaps the last applied one", self.last_id + 1, first,
                    update.recv_ns,
                )
                self._hold(first, last, prev, update)  # a new snapshot may use it
                return [gap]
            in_sequence = (
                prev == self.last_id if self.market == "usdm" else first == self.last_id + 1
            )
            if not in_sequence:
                gap = self._lose_sync("sequence gap", self.last_id + 1, first, update.recv_ns)
                self._hold(first, last, prev, update)  # a new snapshot may bridge it
                return [gap]
        else:  # AWAIT_FIRST: this diff must bridge the snapshot's lastUpdateId
            snap = self.last_id
            if self.market == "usdm":
                if last < snap:
                    self.dropped_stale += 1
                    return _NO_EVENTS
                # Binance's rule, U <= lastUpdateId <= u, or a diff whose pu is the
                # snapshot's id: a snapshot taken on an event boundary (u of the last event
                # sent) reaching a connection that subscribed after that event went out;
                # the next event continues the snapshot's book exactly (futures ids jump,
                # so its U is above lastUpdateId and the documented rule alone never syncs)
                bridges = first <= snap <= last or prev == snap
            else:
                if last <= snap:
                    self.dropped_stale += 1
                    return _NO_EVENTS
                bridges = first <= snap + 1 <= last
            if not bridges:
                gap = self._lose_sync("snapshot older than stream", snap + 1, first, update.recv_ns)
                self._hold(first, last, prev, update)  # a new snapshot may bridge it
                return [gap]
            self.state = SyncState.SYNCED
        self._applied = (first, last, prev)
        self.last_id = last
        return [update]

    def _lose_sync(self, reason: str, expected: int, got: int, recv_ns: int) -> Gap:
        self.state = SyncState.WAIT_SNAPSHOT
        self._clear_buffer()
        return Gap(reason, expected, got, recv_ns)

    def _snapshot(self, data: dict[str, Any], recv_ns: int) -> list[MarketEvent]:
        last = data["lastUpdateId"]
        if type(last) is not int:
            raise FrameError("lastUpdateId is not an integer")
        if self._stale(last):  # before its levels: a stale one is not even read
            return _NO_EVENTS
        return self._load(last, self._levels(data["bids"]), self._levels(data["asks"]),
                          _ms(data.get("T", data.get("E", 0))), recv_ns)

    def _stale(self, last: int) -> bool:
        """A snapshot of final update id ``last`` is older than the book we already hold:
        nothing to learn from it."""
        return self.state is SyncState.SYNCED and last <= self.last_id

    def _load(self, last: int, bids: Sequence[Level], asks: Sequence[Level], exch_ns: int,
              recv_ns: int) -> list[MarketEvent]:
        """A decoded snapshot (``last`` an int) as the book's new start, and the buffered
        diffs it releases through the sync rules.

        The compiled scanner (:mod:`mmdaemon.speedups`), which reads plain snapshots
        straight from their bytes, continues here too, with packed levels.
        """
        if self._stale(last):
            return _NO_EVENTS
        snapshot = BookUpdate(True, bids, asks, last, last, exch_ns, recv_ns)
        self.state = SyncState.AWAIT_FIRST
        self.last_id = last
        events: list[MarketEvent] = [snapshot]
        buffered = list(self._buffer)
        self._clear_buffer()
        for i, (first, final, prev, update) in enumerate(buffered):
            out = self._sequence(first, final, prev, update)
            events.extend(out)
            if self.state is SyncState.WAIT_SNAPSHOT:
                # _sequence re-buffered the diff that broke; keep what came after it too
                for entry in buffered[i + 1 :]:
                    self._hold(*entry)
                break
        return events


def _ms(value: object) -> int:
    """A venue time in ms as ns. Anything but an integer is a :class:`FrameError`: a string
    or a list would be repeated a million times over, a float is not a time in ns."""
    if type(value) is not int:
        raise FrameError(f"time is not an integer (ms): {type(value).__name__}")
    return value * NS_PER_MS


def stream_kind(stream: object) -> str:
    """Classify a combined-stream name such as ``btcusdt@depth@100ms`` (also used by
    :mod:`mmdaemon.venues.binance_survey`, so both sort frames alike)."""
    if type(stream) is not str:
        raise FrameError("'stream' is not a string")
    _, _, kind = stream.partition("@")
    if kind == "bookTicker" or kind == "trade":
        return kind
    if kind == "depth" or kind.startswith("depth@"):
        return "depth"
    raise FrameError(f"unknown stream {stream!r}")


def raw_kind(msg: dict[str, Any]) -> str:
    """Classify a frame without a combined-stream envelope."""
    event = msg.get("e")
    if event == "depthUpdate":
        return "depth"
    if event == "trade" or event == "bookTicker":
        return str(event)
    if event is None:
        if "lastUpdateId" in msg:
            return "snapshot"
        if "u" in msg and "b" in msg and "a" in msg:
            return "bookTicker"  # spot bookTicker carries no "e"
        if "id" in msg and ("result" in msg or "error" in msg):
            return "control"
    raise FrameError(f"unrecognised frame (event {event!r})")


# A frame's event time as the venue prints it: the key "E" and an integer of ms. Binance sends
# compact JSON, so the bytes can be searched without decoding the frame; in valid JSON only a
# key can match, since a quote inside a string value is escaped (\"E\":).
_EVENT_TIME = re.compile(rb'"E":([0-9]{1,13})[,}]')
_MAX_EVENT_MS = (2**63 - 1) // NS_PER_MS  # beyond this the time in ns is no int64 (journal, logs)


def frame_event_ns(frame: bytes) -> int:
    """The venue's event time ``E`` of a raw frame, in ns since the epoch; 0 when the frame
    has none (spot ``bookTicker``, REST snapshots, subscription replies) or it is not a
    plain integer of ms.

    This is the replay's exchange clock (see :func:`mmdaemon.feed.replay.exchange_timed`):
    it must cost far less than decoding, so it is one search of the bytes, not a JSON parse.
    """
    match = _EVENT_TIME.search(frame)
    if match is None:
        return 0
    ms = int(match[1])
    return ms * NS_PER_MS if ms <= _MAX_EVENT_MS else 0
