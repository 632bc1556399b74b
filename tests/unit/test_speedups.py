"""The compiled hot loops (mmdaemon/_speedups.c) against their pure-Python twins.

The Python code is the reference: for every input, valid or not, the compiled path must give
the same events, the same book and the same error. Each test runs both on the same input.
"""

from __future__ import annotations

import gzip
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from shutil import which
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmdaemon import speedups
from mmdaemon.book import SIDE, BookSide, OrderBook
from mmdaemon.model import BINANCE_USDM_BTCUSDT, BookUpdate, Instrument, MarketEvent
from mmdaemon.venues.binance import BinanceCodec
from tests.conftest import SPOT_FILES
from tests.helpers import traced_growth

pytestmark = pytest.mark.skipif(
    speedups.compiled is None,
    reason="the compiled hot loops are not built here (no C compiler or Python headers at "
    "install, or MMDAEMON_PURE_PYTHON is set): only the Python code runs",
)


def spot() -> Instrument:
    """A fresh BTCUSDT spot instrument: its decimal memos start empty."""
    return Instrument("BTCUSDT", "0.01", "0.00000001", size_step_lots=1000, min_size_lots=1000)


def codecs(instrument: Instrument | None = None, market: str = "spot"
           ) -> tuple[BinanceCodec, BinanceCodec]:
    """(compiled, pure) codecs of the same instrument grids."""
    fast = BinanceCodec(instrument or spot(), market)  # type: ignore[arg-type]
    compiled, speedups.compiled = speedups.compiled, None
    try:
        pure = BinanceCodec(instrument or spot(), market)  # type: ignore[arg-type]
    finally:
        speedups.compiled = compiled
    assert fast.decode != pure.decode and pure.decode == pure._py_decode
    return fast, pure


def outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    """("ok", result) or ("error", (exception type, message))."""
    try:
        return "ok", fn(*args)
    except Exception as exc:
        return "error", (type(exc), str(exc))


def same_events(a: list[MarketEvent], b: list[MarketEvent]) -> bool:
    """Equal values and equal event types (a NamedTuple equals a plain tuple)."""
    return a == b and [type(e) for e in a] == [type(e) for e in b]


def recording_frames() -> Iterator[tuple[int, bytes]]:
    for path in SPOT_FILES:
        with gzip.open(path, "rb") as fh:
            for line in fh:
                recv_ns, _, frame = line.rstrip(b"\n").partition(b" ")
                yield int(recv_ns), frame


# ---- build --------------------------------------------------------------------------------

def test_compiled_module_is_built_where_it_can_be() -> None:
    """Guards against a build that fails quietly (the extension is optional): with a C
    compiler and the Python headers, ``pip install`` must have built it."""
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if which("cc") is None or not headers.exists():
        pytest.skip("no C compiler or Python headers: the optional build is skipped")
    assert speedups.compiled is not None


def test_a_grid_beyond_the_compiled_arithmetic_keeps_the_python_codec() -> None:
    """A tick of 1e-45 (more than 40 decimal places) or with more than 18 digits: the
    compiled decoder refuses the grid, and the codec decodes in Python, as before."""
    for tick in ("0." + "0" * 44 + "1", "1234567890123456789"):
        codec = BinanceCodec(Instrument("BTCUSDT", tick, "1"), "spot")
        assert codec.decode == codec._py_decode
    assert BinanceCodec(spot(), "spot").decode != BinanceCodec(spot(), "spot")._py_decode


# ---- decimal text -> units ----------------------------------------------------------------

AWKWARD = [
    "61837.63000000", "0.00000000", "0.00000001", "1", "1.", ".5", "0.01", "007.10",
    "61837.635", "0.000000001", "", ".", "..", "1..2", "1.2.3", "-1.00", "+1.00", " 1.00",
    "1.00 ", "1e5", "1E-2", "nan", "inf", "1_000.00", "12\x00.00",
    "\u0661\u0662\u0663.\u0664\u0665", "\uff11\uff12.00",  # Arabic-Indic, fullwidth digits
    "9" * 19, "9" * 20, "9" * 25 + ".00", "18446744073709551615", "18446744073709551616",
    "92233720368547758.07", "92233720368547758.08", "9" * 40, "9" * 41, "0." + "0" * 38 + "1",
    "1" + "0" * 39,
]


@pytest.mark.parametrize("text", AWKWARD)
def test_awkward_decimal_text_gives_the_same_result_or_error(text: str) -> None:
    fast, pure = codecs()
    raw = [[text, text]]
    assert outcome(fast._levels, raw) == outcome(pure._levels, raw)


@pytest.mark.parametrize("unit", ["0.01", "0.1", "1", "5", "0.25", "10", "0.00000001",
                                  "1000000", "0.5"])
@given(text=st.from_regex(r"\A[0-9]{0,22}(\.[0-9]{0,22})?\Z") | st.text(max_size=30))
@settings(max_examples=150, deadline=None)
def test_any_text_on_any_grid_gives_the_same_result_or_error(unit: str, text: str) -> None:
    fast, pure = codecs(Instrument("X", unit, unit))
    raw = [[text, "1"], ["1", text]]
    assert outcome(fast._levels, raw) == outcome(pure._levels, raw)


@pytest.mark.parametrize("raw", [
    [], [["1.00", "2.00"], ["1.01", "0"]], [("1.00", "2.00")], [["1.00"]],
    [["1.00", "2.00", "3.00"]], "ab", {"1.00": "2.00"}, None, [[1.0, "2.00"]], [["1.00", 2]],
    [[None, "2.00"]], [["1.00", "2.00"], ("1.00", "2.00")], [["1.00", "2.00"], "xy"],
])
def test_odd_level_lists_give_the_same_result_or_error(raw: Any) -> None:
    fast, pure = codecs()
    assert outcome(fast._levels, raw) == outcome(pure._levels, raw)


# ---- whole frames ---------------------------------------------------------------------------

def test_the_bundled_recording_decodes_identically() -> None:
    """Every frame of both bundled files: the same events, of the same types, in order."""
    fast, pure = codecs()
    n = 0
    for recv_ns, frame in recording_frames():
        a, b = fast.decode(recv_ns, frame), pure.decode(recv_ns, frame)
        assert same_events(a, b), frame[:200]
        n += 1
    assert n > 90_000 and fast.last_id == pure.last_id > 0


TICKER = {"u": 400900217, "s": "BTCUSDT", "b": "61837.63000000", "B": "0.12300000",
          "a": "61837.64000000", "A": "1.00000000"}
TRADE = {"e": "trade", "E": 1723075200001, "s": "BTCUSDT", "t": 3712000001,
         "p": "61837.64000000", "q": "0.00100000", "T": 1723075200000, "m": True, "M": True}

FIELD_VALUES = st.one_of(
    st.sampled_from(["61837.63000000", "0.00000000", "1.5", "-1", "x", "", "0.001", "BTCUSDT",
                     "ETHUSDT"]),
    st.integers(min_value=-(2**63), max_value=2**64 - 1), st.booleans(), st.none(),
    st.floats(allow_nan=False, allow_infinity=False), st.lists(st.integers(0, 9), max_size=2),
)


@given(base=st.sampled_from([TICKER, TRADE]),
       changes=st.dictionaries(st.sampled_from(["u", "s", "b", "B", "a", "A", "T", "t", "p",
                                                "q", "m", "E"]), FIELD_VALUES, max_size=3),
       drop=st.sets(st.sampled_from(["u", "s", "b", "B", "a", "A", "T", "t", "p", "q", "m"]),
                    max_size=2),
       stream=st.sampled_from(["btcusdt@bookTicker", "btcusdt@trade", "btcusdt@depth",
                               "bookTicker", "btcusdt@bookTickerX", "btcusdt@trade@x", 7]))
@settings(max_examples=400, deadline=None)
def test_changed_ticker_and_trade_frames_decode_identically(
    base: dict[str, Any], changes: dict[str, Any], drop: set[str], stream: Any
) -> None:
    data = {k: v for k, v in {**base, **changes}.items() if k not in drop}
    fast, pure = codecs()
    for frame in (orjson.dumps({"stream": stream, "data": data}), orjson.dumps(data),
                  orjson.dumps({"stream": stream, "data": [data]})):
        a, b = fast.decode(7, frame), pure.decode(7, frame)
        assert same_events(a, b), (frame, a, b)
    if isinstance(stream, str) and stream.endswith("@bookTicker"):
        assert outcome(fast._handlers["bookTicker"], data, 7) == outcome(
            pure._handlers["bookTicker"], data, 7)
    assert outcome(fast._handlers["trade"], data, 7) == outcome(pure._handlers["trade"], data, 7)


@pytest.mark.parametrize("field", ["u", "T", "t", "E"])
@pytest.mark.parametrize("value", [2**70, -(2**70), 2**63, 0, -1])
def test_big_integers_through_the_handlers_decode_identically(field: str, value: int) -> None:
    fast, pure = codecs()
    for kind, base in (("bookTicker", TICKER), ("trade", TRADE)):
        data = {**base, field: value}
        assert outcome(fast._handlers[kind], data, 7) == outcome(pure._handlers[kind], data, 7)


@pytest.mark.parametrize("frame", [
    b"", b"{", b"[]", b"null", b"\xff\xfe", b'{"stream": "btcusdt@bookTicker"}',
    b'{"stream":"btcusdt@bookTicker","data":null}', b'{"data":{}}',
    b'{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"1.00","B":"1",'
    b'"a":"2.00","A":"1","T":1.5}}',
    b'{"stream":"btcusdt@trade","data":{"s":"BTCUSDT","t":1,"p":"1.00","q":"0","m":true}}',
    b'{"stream":"btcusdt@trade","data":{"s":"BTCUSDT","t":1,"p":"1.00","q":"1","m":1}}',
])
def test_broken_frames_decode_identically(frame: bytes) -> None:
    fast, pure = codecs()
    assert same_events(fast.decode(5, frame), pure.decode(5, frame))
    assert same_events(fast.decode(5, frame.decode("latin-1")),
                       pure.decode(5, frame.decode("latin-1")))


DEPTH = {"e": "depthUpdate", "E": 1723075200123, "s": "BTCUSDT", "U": 100, "u": 105,
         "b": [["61837.63000000", "0.12300000"], ["61837.62000000", "0.00000000"]],
         "a": [["61837.64000000", "1.00000000"]]}


def depth_frame(data: Any, stream: Any = "btcusdt@depth@100ms", **dumps: Any) -> bytes:
    return orjson.dumps({"stream": stream, "data": data}, **dumps)


def decode_both(frame: bytes | str, market: str = "spot") -> tuple[list[MarketEvent],
                                                                     list[MarketEvent]]:
    """Both codecs, each first given a snapshot the diff bridges (so a diff is applied)."""
    instrument = spot() if market == "spot" else BINANCE_USDM_BTCUSDT
    fast, pure = codecs(instrument, market)
    snapshot = orjson.dumps({"lastUpdateId": 100, "bids": [["61837.60000000", "1.00000000"]],
                             "asks": [["61837.70000000", "1.00000000"]]})
    for codec in (fast, pure):
        codec.decode(1, snapshot)
    return fast.decode(2, frame), pure.decode(2, frame)


@pytest.mark.parametrize("change", [
    {}, {"E": "1"}, {"E": 1.5}, {"T": 1723075200000}, {"T": 2**62}, {"T": -5}, {"U": 106},
    {"U": 50, "u": 49}, {"u": 2**62}, {"u": 2**63}, {"U": -1}, {"s": "ETHUSDT"}, {"s": "btcusdt"},
    {"e": 7}, {"x": 1}, {"pu": 99}, {"b": []}, {"a": [["1.00", "2.00", "3"]]},
    {"a": [["61837.645", "1.00"]]}, {"a": [["-1.00", "1.00"]]}, {"a": [["1e5", "1.00"]]},
    {"b": [[61837.63, "1.00"]]}, {"b": [["61837.63", "9" * 30]]}, {"b": {"61837.63": "1"}},
    {"b": None}, {"a": [["\u0661.00", "1.00"]]}, {"b": [["61837.63000000", "0.1"]] * 900},
])
@pytest.mark.parametrize("drop", [None, "E", "s", "U", "b"])
def test_depth_frames_read_from_bytes_decode_identically(change: dict[str, Any],
                                                         drop: str | None) -> None:
    """The depth scanner (bytes straight to levels) against the JSON path, on valid diffs
    and on every kind of field it must hand back: the same events, Gap and Malformed ones
    included."""
    data = {k: v for k, v in {**DEPTH, **change}.items() if k != drop}
    for market in ("spot", "usdm"):
        for frame in (depth_frame(data), depth_frame(data, option=orjson.OPT_INDENT_2)):
            a, b = decode_both(frame, market)
            assert same_events(a, b), (frame[:300], a, b)


@pytest.mark.parametrize("frame", [
    b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":101,'
    b'"u":102,"b":[["1.00","2.00"]],"a":[]}}',
    b' {"data":{"b":[],"a":[],"s":"BTCUSDT","U":101,"u":102},"stream":"btcusdt@depth"} \n',
    b'{"stream":"btcusdt@depth","data":{"s":"BTCUSDT","U":101,"u":102,"b":[],"a":[]}} x',
    b'{"stream":"btcusdt@depth","data":{"s":"BTCUSDT","U":101,"u":102,"b":[],"a":[],"b":[]}}',
    b'{"stream":"btcusdt@depth","stream":"btcusdt@depth","data":{"s":"BTCUSDT","U":101,'
    b'"u":102,"b":[],"a":[]}}',
    b'{"stream":"btcusdt@depth","data":{"s":"BTC\\u0055SDT","U":101,"u":102,"b":[],"a":[]}}',
    b'{"stream":"btcusdt@depth","data":{"s":"BTCUSDT","U":0101,"u":102,"b":[],"a":[]}}',
    b'{"stream":"btcusdt@depth","data":{"s":"BTCUSDT","U":101,"u":102.0,"b":[],"a":[]}}',
    b'{"stream":"btcusdt@depth","data":{"s":"BTCUSDT","U":101,"u":1e2,"b":[],"a":[]}}',
    b'{"stream":"btcusdt@depth","data":{"s":"BTCUSDT","U":101,"u":102,"b":[["1.00","2.00"],],'
    b'"a":[]}}',
    b'{"stream":"btcusdt@depthX","data":{"s":"BTCUSDT","U":101,"u":102,"b":[],"a":[]}}',
    b'{"stream":"btcusdt@depth@","data":{"s":"BTCUSDT","U":101,"u":102,"b":[],"a":[]}}',
    b'{"stream":"btcusdt@depth","data":{"s":"BTCUSDT","U":101,"u":102,"b":[],"a":[]}',
    b'{"stream":"btcusdt@depth","data":{"s":"BTCUSDT","U":101,"u":102,"b":[],"a":[]}}}',
    b'{"stream":"btcusdt@depth","data":{"s":"BTCUSDT","U":101,"u":102,"b":[],"a":[["1.00"\x00,'
    b'"1"]]}}',
    b'{"stream":"btcusdt@depth","data":{"s":"BTCUSDT","U":101,"u":102,"b":[],"a":[["\xc3\xa9",'
    b'"1"]]}}',
    b'{"stream":"btcusdt@depth","data":{"s":"BTCUSDT","U":-0,"u":102,"b":[],"a":[]}}',
    b'{"stream":"btcusdt@depth","data":{"s":"BTCUSDT","U":-,"u":102,"b":[],"a":[]}}',
    b'{"stream":"btcusdt@depth","data":{"s":"BTCUSDT","U":101,"u":102,"b":[],"a":[]},"x":1}',
    b'{"stream":"btcusdt@depth","data":{"s":"BTCUSDT","U":101,"u":102,"b":[[ "1.00" , "2.00" ]'
    b'\t],"a":[]}}',
])
def test_odd_depth_bytes_decode_identically(frame: bytes) -> None:
    """Whitespace, key order, repeated keys, escapes, leading zeros, fractions, trailing
    bytes, truncation, NUL, non-ASCII, negative zero, unknown keys: the scanner takes what
    it fully understands and hands back the rest; the results are the JSON path's."""
    for market in ("spot", "usdm"):
        a, b = decode_both(frame, market)
        assert same_events(a, b), (frame, a, b)


def test_scanned_levels_behave_as_a_list_of_tuples() -> None:
    assert speedups.compiled is not None
    fast, _ = codecs()
    fast.decode(1, orjson.dumps({"lastUpdateId": 99, "bids": [], "asks": []}))
    [update] = fast.decode(2, depth_frame(DEPTH))
    assert isinstance(update, BookUpdate) and type(update.bids) is speedups.compiled.Levels
    expected = [(6183763, 12300000), (6183762, 0)]
    assert update.bids == expected and expected == update.bids and update.bids != expected[:1]
    assert list(update.bids) == expected and len(update.bids) == 2
    assert update.bids[1] == (6183762, 0) and update.asks == [(6183764, 100000000)]
    assert repr(update.asks) == "Levels([(6183764, 100000000)])"
    with pytest.raises(IndexError):
        update.bids[2]
    with pytest.raises(TypeError):
        hash(update.bids)
    side = BookSide(1)
    side.update(update.bids)  # the Python reference reads them as tuples
    assert side.levels == {6183763: 12300000}


def test_another_instrument_grid_decodes_identically() -> None:
    """USD-M's grid (tick 0.1, lot 0.001): spot prices off its grid are errors in both."""
    fast, pure = codecs(BINANCE_USDM_BTCUSDT, "usdm")
    for recv_ns, frame in list(recording_frames())[:5000]:
        assert same_events(fast.decode(recv_ns, frame), pure.decode(recv_ns, frame))


def test_decoding_does_not_leak() -> None:
    """Objects made in C are freed: decoding the same frames again allocates nothing new
    (valid frames, and broken ones that take every hand-back path)."""
    frames = [f for _, f in recording_frames()][:20_000]
    frames += [f[: len(f) // 2] for f in frames[:2000]]  # truncated: not JSON
    frames += [f.replace(b'"s":"BTCUSDT"', b'"s":"ETHUSDT"') for f in frames[:2000]]
    frames += [f.replace(b'000000"', b'000001"', 1) for f in frames[:2000]]  # off the grid
    fast, _ = codecs(spot())
    decode = fast.decode

    def run() -> None:
        for frame in frames:
            decode(1, frame)

    grown = traced_growth(run)
    assert grown < 64 * 1024, f"{grown} bytes more after three more passes"


# ---- the book -------------------------------------------------------------------------------

PRICES = st.integers(min_value=-5, max_value=60)
SIZES = st.sampled_from([0, 0, 1, 2, 7, 2**62 - 1])
CHANGES = st.lists(st.tuples(PRICES, SIZES), max_size=30)
OPS = st.lists(st.one_of(
    st.tuples(st.just("update"), CHANGES), st.tuples(st.just("load"), CHANGES),
    st.tuples(st.just("set"), st.tuples(PRICES, SIZES)), st.tuples(st.just("clear"), st.none()),
), min_size=1, max_size=25)


def sides(sign: int, region: tuple[int, int, int]) -> tuple[Any, BookSide]:
    assert speedups.compiled is not None
    return speedups.compiled.BookSide(sign, *region), BookSide(sign, *region)


def apply_both(fast: Any, pure: BookSide, op: str, arg: Any) -> None:
    """One operation ("update", "load", "set", "clear") on both book sides."""
    for side in (fast, pure):
        if op == "set":
            side.set(*arg)
        elif op == "clear":
            side.clear()
        else:
            getattr(side, op)(arg)


@given(ops=OPS, sign=st.sampled_from([1, -1]),
       region=st.sampled_from([(1, 1, 2), (2, 4, 8), (3, 5, 6), (32, 128, 256)]))
@settings(max_examples=400, deadline=None)
def test_book_side_is_identical(ops: list[tuple[str, Any]], sign: int,
                                region: tuple[int, int, int]) -> None:
    """Both sides through the same operations, small regions included (trims, refills and
    reads deeper than the region): every read the same after every step."""
    fast, pure = sides(sign, region)
    for op, arg in ops:
        apply_both(fast, pure, op, arg)
        fast.check()
        pure.check()
        assert fast.levels == pure.levels and len(fast) == len(pure)
        assert fast._keys == pure._keys and fast._floor == pure._floor
        assert fast.best() == pure.best() and fast.best_level() == pure.best_level()
        for n in (-1, 0, 1, 3, 9, 100):
            assert fast.top(n) == pure.top(n)
            assert fast.weighted_size(n) == pure.weighted_size(n)
        for price in (-5, 0, 7, 60, 2**70, "x"):
            assert fast.size_at(price) == pure.size_at(price)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [[(1, -1)], [(2**62, 1)], [(1, 2**62)], [("1", 1)],
                                 [(1.0, 1)], [(1, 2, 3)], [1], None])
def test_book_side_refuses_what_it_cannot_hold(bad: Any) -> None:
    """Out of its range (the codec never produces these: DecimalScaler stops at 2**62 - 1
    units) the compiled side raises instead of storing something else; the changes before
    the bad one stay applied and the side stays consistent."""
    fast, _ = sides(1, (2, 4, 8))
    with pytest.raises((TypeError, ValueError, OverflowError)):
        fast.update([(5, 1), *bad] if isinstance(bad, list) else bad)
    fast.check()
    assert fast.levels == ({5: 1} if isinstance(bad, list) else {})


def test_book_built_from_the_recording_is_identical() -> None:
    """The whole bundled recording through both codecs and both book sides: the same book
    after every depth update."""
    assert SIDE is not BookSide  # OrderBook runs compiled
    fast_codec, pure_codec = codecs()
    fast_book, pure_book = OrderBook(), OrderBook(side=BookSide)
    checked = 0
    for recv_ns, frame in recording_frames():
        fast_updates = [e for e in fast_codec.decode(recv_ns, frame) if type(e) is BookUpdate]
        pure_updates = [e for e in pure_codec.decode(recv_ns, frame) if type(e) is BookUpdate]
        assert fast_updates == pure_updates
        for fast_update, pure_update in zip(fast_updates, pure_updates, strict=True):
            fast_book.apply(fast_update)  # packed levels into the compiled sides
            pure_book.apply(pure_update)  # lists of tuples into the Python ones
            checked += 1
            assert fast_book.bids.top(40) == pure_book.bids.top(40)
            assert fast_book.asks.top(40) == pure_book.asks.top(40)
    assert checked > 6000 and len(fast_book.bids) > 100
    assert fast_book.bids.levels == pure_book.bids.levels
    assert fast_book.asks.levels == pure_book.asks.levels
    fast_book.bids.check()
    fast_book.asks.check()
