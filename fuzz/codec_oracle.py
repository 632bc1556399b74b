"""The codec oracle: Binance market-data frames through the codec and the book, checked.

Shared by the atheris harness ``fuzz_codec.py`` (coverage of the Python code) and the
libFuzzer harness of the compiled code (``speedups_target.py``, coverage of
``mmdaemon/_speedups.c``). The input is a sequence of frames separated by newlines. Every
frame goes to a spot :class:`~mmdaemon.market.MarketState` (codec + book), whose invariants
are checked after each frame; to a USD-M codec (must not raise, events well typed); and,
with ``api_parsers=True``, to the WebSocket API parsers (``parse_frame``, ``parse_response``: must
not raise). The compiled codec and book (when built) must agree with the Python ones on
every frame. Any exception is a finding.
"""

from __future__ import annotations

from mmdaemon import speedups
from mmdaemon.book import BookSide, OrderBook
from mmdaemon.market import MarketState
from mmdaemon.model import (
    BINANCE_SPOT_BTCUSDT,
    BINANCE_USDM_BTCUSDT,
    BookUpdate,
    Gap,
    Malformed,
    MarketEvent,
    TopOfBook,
    Trade,
)
from mmdaemon.venues import binance_api as api
from mmdaemon.venues import binance_parse as parse
from mmdaemon.venues.binance import BinanceCodec, Market, SyncState

INT_FIELDS: dict[type, tuple[str, ...]] = {
    BookUpdate: ("first_id", "last_id", "exch_ns", "recv_ns"),
    Trade: ("price", "size", "trade_id", "exch_ns", "recv_ns"),
    TopOfBook: TopOfBook._fields,
    Gap: ("expected_id", "got_id", "recv_ns"),
    Malformed: ("recv_ns",),
}
API_RESULTS = (api.Response, api.ProtocolError, api.ExecutionReport, api.ForeignOrder,
               api.AccountPosition, api.OtherEvent)


def check_book(state: MarketState, codec: BinanceCodec, lost: bool) -> None:
    book = state.book
    for side, sign in ((book.bids, 1), (book.asks, -1)):
        levels = side.levels
        side.check()  # sizes > 0, the sorted top region against the levels
        best = side.best()
        expected = (max(levels) if sign > 0 else min(levels)) if levels else None
        if best != expected:
            raise AssertionError(f"best {best} != {expected}")
    if book.synced != codec.synced:
        raise AssertionError(f"book synced {book.synced}, codec {codec.state}")
    if lost and book.synced:
        raise AssertionError("synced after a Gap without a snapshot")
    if book.synced and (book.is_crossed() or book.last_id != codec.last_id):
        raise AssertionError("synced book crossed or on another id than the codec")
    if codec.state is not SyncState.WAIT_SNAPSHOT and codec._buffer:
        raise AssertionError("diffs buffered while a snapshot is loaded")


def check_events(events: list[MarketEvent]) -> None:
    """Only model events, with integer fields where the model says int."""
    for event in events:
        names = INT_FIELDS.get(type(event))
        if names is None:
            raise AssertionError(f"not a market event: {event!r}")
        if any(type(getattr(event, name)) is not int for name in names):
            raise AssertionError(f"non-integer field: {event!r}")
        if isinstance(event, BookUpdate):
            for level in [*event.bids, *event.asks]:
                if type(level[0]) is not int or type(level[1]) is not int or min(level) < 0:
                    raise AssertionError(f"bad level {level!r}")


def pure_codec(market: Market) -> BinanceCodec:
    """A codec of the Python code only (no compiled twins), whatever is built."""
    compiled, speedups.compiled = speedups.compiled, None
    try:
        return BinanceCodec(BINANCE_SPOT_BTCUSDT if market == "spot" else BINANCE_USDM_BTCUSDT,
                            market)
    finally:
        speedups.compiled = compiled


def frames(data: bytes, api_parsers: bool = True) -> None:
    """Check ``data`` (frames separated by ``\\n``); raise on any finding."""
    spot = BinanceCodec(BINANCE_SPOT_BTCUSDT, "spot")
    usdm = BinanceCodec(BINANCE_USDM_BTCUSDT, "usdm")
    state = MarketState(spot)
    # the reference: the Python codec and book sides, to which the compiled ones must agree
    pure = pure_codec("spot")
    pure_usdm = pure_codec("usdm")
    pure_book = OrderBook(side=BookSide)
    lost = False
    for i, frame in enumerate(data.split(b"\n")):
        events = state.on_frame(i, frame)
        check_events(events)
        expected = pure.decode(i, frame)
        if events[: len(expected)] != expected:  # the book may add a Gap (crossed)
            raise AssertionError(f"compiled {events!r} != python {expected!r}")
        for event in expected:
            if type(event) is BookUpdate:
                pure_book.apply(event)
                if pure_book.is_crossed():
                    break  # as MarketState.apply: what follows a crossed update is not applied
        if state.book.bids.top(20) != pure_book.bids.top(20) or (
                state.book.asks.top(20) != pure_book.asks.top(20)):
            raise AssertionError("compiled book side differs from the Python one")
        if len(events) > len(expected):
            pure.reset()  # as MarketState does on a crossed book
        for event in events:
            if type(event) is Gap:
                lost = True
            elif type(event) is BookUpdate and event.snapshot:
                lost = False
        check_book(state, spot, lost)
        usdm_events = usdm.decode(i, frame)
        check_events(usdm_events)
        if usdm_events != pure_usdm.decode(i, frame):
            raise AssertionError(f"compiled USD-M {usdm_events!r} differs from the Python one")
        if not api_parsers:
            continue
        for result in (parse.parse_frame(frame, BINANCE_SPOT_BTCUSDT, "mm"),
                       parse.parse_response(frame)):
            if not isinstance(result, API_RESULTS):
                raise AssertionError(f"parser returned {result!r}")
