"""One chunk of the decoded-event cache (:mod:`mmdaemon.feed.event_cache`): columns of int64.

A chunk holds up to :data:`CHUNK_ITEMS` replay items in order: frames (their time and the
events the codec decoded from them) and the recording's bad lines. Each event kind is a
table of int64 columns, row-major (:class:`~mmdaemon.model.TopOfBook` 7 a row,
:class:`~mmdaemon.model.Trade` 6, :class:`~mmdaemon.model.BookUpdate` 7 with its level
counts, its levels in one flat (price, size) column); a byte per event says its kind, in
order, and a count per frame how many it decoded. The rare ones (a
:class:`~mmdaemon.model.Gap`, a frame the codec could not decode, a bad line) are kept as
they are. Reading one back is a few C-level passes (``array.tolist``, ``zip``, ``map``)
rather than a Python loop per value: the point of the cache is to be cheaper than the JSON.

Every value is an int64 exactly (ticks, lots, ids, ns): one that is not cannot be stored
(:class:`OverflowError` at the build, which then fails; the replay parses).
"""

from __future__ import annotations

import gc
import marshal
from array import array
from functools import partial
from itertools import islice
from typing import Any, cast

from mmdaemon.market import Decoded
from mmdaemon.model import BookUpdate, Gap, Malformed, MarketEvent, Side, TopOfBook, Trade

CHUNK_ITEMS = 8192
"""Items (frames and bad lines) per chunk: a chunk is read whole, so this bounds memory."""

_BOOK, _TRADE, _TICKER, _OTHER = range(4)
_SIDES = {int(side): side for side in Side}
_new = tuple.__new__


class ChunkWriter:
    """The items of one chunk as they come, then :meth:`encode` d."""

    def __init__(self) -> None:
        self.items = 0
        self.times = array("q")  # per frame: its time on the replay's clock, ns
        self.counts = array("I")  # per frame: events decoded from it
        self.kinds = bytearray()  # per event, in order: its table
        self.tickers = array("q")
        self.trades = array("q")
        self.books = array("q")
        self.levels = array("q")
        self.others: list[tuple[Any, ...]] = []  # a Gap's or a Malformed's fields, kind first
        self.lines: list[tuple[int, str, int]] = []  # (item index, reason, recv_ns)

    def frame(self, time_ns: int, events: list[MarketEvent]) -> None:
        """A frame decoded at ``time_ns`` into ``events`` (read now: before the book)."""
        self.items += 1
        self.times.append(time_ns)
        self.counts.append(len(events))
        for event in events:
            kind = type(event)
            if kind is TopOfBook:
                self.kinds.append(_TICKER)
                self.tickers.extend(event)  # type: ignore[arg-type]
            elif kind is Trade:
                self.kinds.append(_TRADE)
                self.trades.extend(event)  # type: ignore[arg-type]
            elif kind is BookUpdate:
                update = cast(BookUpdate, event)
                bids, asks = update.bids, update.asks
                self.kinds.append(_BOOK)
                self.books.extend((1 if update.snapshot else 0, update.first_id,
                                   update.last_id, update.exch_ns, update.recv_ns, len(bids),
                                   len(asks)))
                for side in (bids, asks):
                    for price, size in side:
                        self.levels.append(price)
                        self.levels.append(size)
            else:  # Gap, Malformed: rare, kept whole
                self.kinds.append(_OTHER)
                self.others.append((kind is Gap, *event))

    def line(self, reason: str, recv_ns: int) -> None:
        """A recording line that was not a frame (a :class:`Malformed`)."""
        self.lines.append((self.items, reason, recv_ns))
        self.items += 1

    def encode(self) -> bytes:
        """The chunk's bytes (marshal of the columns' bytes and the rare rows)."""
        return marshal.dumps((self.times.tobytes(), self.counts.tobytes(), bytes(self.kinds),
                              self.tickers.tobytes(), self.trades.tobytes(),
                              self.books.tobytes(), self.levels.tobytes(), self.others,
                              self.lines))


def _ints(raw: bytes, code: str = "q") -> list[int]:
    column = array(code)
    column.frombytes(raw)
    return column.tolist()


def decode(body: bytes | memoryview) -> list[Decoded | Malformed]:
    """The items of a chunk's bytes (:meth:`ChunkWriter.encode`), in order: each frame as
    :class:`~mmdaemon.market.Decoded` (its time, its events as the codec made them), each
    bad line as :class:`~mmdaemon.model.Malformed`.

    The cyclic garbage collector is paused meanwhile: a chunk is hundreds of thousands of
    new tuples, none in a cycle, and its passes over them were half the time."""
    paused = gc.isenabled()
    gc.disable()
    try:
        return _decode(body)
    finally:
        if paused:
            gc.enable()


def _decode(body: bytes | memoryview) -> list[Decoded | Malformed]:
    (times, counts, kinds, tickers, trades, books, levels, others,
     lines) = marshal.loads(body)
    it = iter(_ints(tickers))
    ticker_events = map(partial(_new, TopOfBook), zip(it, it, it, it, it, it, it, strict=True))
    t = _ints(trades)
    trade_events = map(partial(_new, Trade),
                       zip(t[0::6], t[1::6], map(_SIDES.__getitem__, t[2::6]), t[3::6],
                           t[4::6], t[5::6], strict=True))
    it = iter(_ints(levels))
    pairs = list(zip(it, it, strict=True))
    b = _ints(books)
    book_events = []
    at = 0
    for i in range(0, len(b), 7):
        bids_end = at + b[i + 5]
        asks_end = bids_end + b[i + 6]
        book_events.append(_new(BookUpdate, (b[i] == 1, pairs[at:bids_end],
                                             pairs[bids_end:asks_end], *b[i + 1:i + 5])))
        at = asks_end
    other_events = [_new(Gap if row[0] else Malformed, row[1:]) for row in others]
    tables = (iter(book_events), trade_events, ticker_events, iter(other_events))
    ordered = iter(list(map(next, map(tables.__getitem__, kinds))))
    events = [[next(ordered)] if n == 1 else list(islice(ordered, n))
              for n in _ints(counts, "I")]
    items: list[Decoded | Malformed] = list(map(partial(_new, Decoded),
                                                zip(_ints(times), events, strict=True)))
    for index, reason, recv_ns in lines:  # ascending: each index is its final place
        items.insert(index, _new(Malformed, (reason, recv_ns)))
    return items
