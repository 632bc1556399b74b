"""The compiled hot loops (mmdaemon/_speedups.c) behave as their Python references.

Two kinds of tests. The first pin each place where the compiled code once differed from its
Python reference (mmdaemon/book.py's BookSide, BinanceCodec's ``_py_*`` methods): levels of
unusual JSON types, int-like prices and sizes, rounding beyond 2**53, the Levels sequence
(huge region bounds, F6, need a fresh interpreter: tests/process/
test_speedups_in_a_fresh_interpreter.py). The second exercise what was found correct (the
depth scanner's acceptance of bytes, the hash table, the region's selection, reference counts
and memory on error paths, GC of the codec/decoder cycle), so that they keep being checked.
``make sanitize`` (run by CI) runs this file against a build with AddressSanitizer and UBSan,
and fails on any report (fuzz/README.md).
"""

from __future__ import annotations

import contextlib
import copy
import gc
import pickle
import sys
import weakref
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmdaemon import speedups
from mmdaemon.model import BookUpdate
from mmdaemon.venues.binance import BinanceCodec
from tests.helpers import traced_growth
from tests.unit.test_speedups import (
    apply_both,
    codecs,
    decode_both,
    outcome,
    same_events,
    sides,
    spot,
)

pytestmark = pytest.mark.skipif(speedups.compiled is None,
                                reason="the compiled hot loops are not built here")


# =============================================================================================
# where the compiled code once gave another result than the Python reference
# =============================================================================================

# ---- F1: a JSON array or object where a level's price or size should be ----------------------
#
# _py_levels looks the text up in the scaler's memo (a dict) first, so an unhashable value
# raises TypeError("unhashable type: 'list'"); Decoder_levels calls the parser directly, which
# raises ValueError("price or size is not a string: list"). The Malformed reason of the whole
# frame differs (depth diffs the scanner hands back, raw diffs, REST snapshots).

UNHASHABLE_LEVELS: list[Any] = [
    [[["1"], "1.00"]],
    [["61837.63000000", ["1"]]],
    [[{"p": "1.00"}, "1.00"]],
    [["61837.63000000", {"q": 1}]],
    [["61837.63000000", "1.00"], [[], "1.00"]],
]


@pytest.mark.parametrize("raw", UNHASHABLE_LEVELS)
def test_levels_with_an_array_or_object_raise_as_the_reference(raw: Any) -> None:
    fast, pure = codecs()
    assert outcome(fast._levels, raw) == outcome(pure._levels, raw)


@pytest.mark.parametrize("raw", UNHASHABLE_LEVELS)
@pytest.mark.parametrize("market", ["spot", "usdm"])
def test_frames_with_such_levels_give_the_reference_malformed_reason(raw: Any,
                                                                      market: str) -> None:
    data = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 101, "u": 102, "b": raw, "a": []}
    frames = [
        orjson.dumps({"stream": "btcusdt@depth@100ms", "data": data}),  # scanner hands back
        orjson.dumps(data),  # a raw diff: the JSON path only
        orjson.dumps({"lastUpdateId": 200, "bids": raw, "asks": []}),  # a REST snapshot
    ]
    for frame in frames:
        a, b = decode_both(frame, market)
        assert same_events(a, b), (frame, a, b)


# ---- F2: top(n) / weighted_size(n) with an n beyond 64 bits --------------------------------
#
# The reference slices a list (any int works); best_first() uses PyLong_AsSsize_t, which
# raises OverflowError.

@pytest.mark.parametrize("n", [2**63, 2**70, -(2**63) - 1, -(2**70)])
@pytest.mark.parametrize("region", [(2, 4, 8), (32, 128, 256)])
def test_top_and_weighted_size_take_any_int_as_the_reference(
        n: int, region: tuple[int, int, int]) -> None:
    fast, pure = sides(1, region)
    levels = [(p, p) for p in range(1, 40)]
    fast.update(levels)
    pure.update(levels)
    assert outcome(fast.top, n) == outcome(pure.top, n)
    assert outcome(fast.weighted_size, n) == outcome(pure.weighted_size, n)


# ---- F3: size_at(price) with a number equal to an int price --------------------------------
#
# The reference is a dict lookup (7.0 == 7 finds the level); Side_size_at returns 0 for
# anything that is not an int.

@pytest.mark.parametrize("price", [7.0, Decimal(7), Fraction(7)])
def test_size_at_a_number_equal_to_an_int_price(price: Any) -> None:
    fast, pure = sides(1, (32, 128, 256))
    fast.set(7, 3)
    pure.set(7, 3)
    assert fast.size_at(price) == pure.size_at(price) == 3


# ---- F4: weighted_size of sizes beyond 2**53 --------------------------------------------------
#
# The reference divides ints (correctly rounded quotient); Side_weighted_size converts the
# size to double first and divides then: two roundings, off by an ulp for sizes > 2**53.

def test_weighted_size_is_rounded_as_the_reference_for_sizes_beyond_2_53() -> None:
    fast, pure = sides(1, (32, 128, 256))
    levels = [(100, 1), (99, 1), (98, 400410210737461715)]
    fast.update(levels)
    pure.update(levels)
    assert fast.weighted_size(3) == pure.weighted_size(3)


# ---- F5: Levels is not the list it stands for ----------------------------------------------
#
# speedups.py registers Levels as a collections.abc.Sequence, and BookUpdate.bids/asks are
# lists from the Python path; the packed Levels from the scanner has no slicing, no
# index()/count() (which Sequence promises), compares equal to a tuple (a list does not),
# and cannot be pickled or deep-copied (so neither can a BookUpdate holding one).

def _both_updates() -> tuple[BookUpdate, BookUpdate]:
    fast, pure = codecs()
    snapshot = orjson.dumps({"lastUpdateId": 99, "bids": [], "asks": []})
    frame = orjson.dumps({"stream": "btcusdt@depth", "data": {
        "s": "BTCUSDT", "U": 100, "u": 101, "b": [["1.00", "2.00"], ["0.99", "0"]], "a": []}})
    fast.decode(1, snapshot)
    pure.decode(1, snapshot)
    [a], [b] = fast.decode(2, frame), pure.decode(2, frame)
    assert speedups.compiled is not None and type(a.bids) is speedups.compiled.Levels
    assert type(b.bids) is list and a == b
    return a, b


def test_levels_slice_as_the_list() -> None:
    a, b = _both_updates()
    assert outcome(lambda: a.bids[:1]) == outcome(lambda: b.bids[:1])


def test_levels_have_the_sequence_methods_they_are_registered_for() -> None:
    a, b = _both_updates()
    assert isinstance(a.bids, Sequence)
    assert outcome(lambda: a.bids.index((99, 0))) == outcome(lambda: b.bids.index((99, 0)))
    assert outcome(lambda: a.bids.count((99, 0))) == outcome(lambda: b.bids.count((99, 0)))


def test_levels_compare_with_a_tuple_as_the_list() -> None:
    a, b = _both_updates()
    assert (a.bids == tuple(b.bids)) == (b.bids == tuple(b.bids))


def test_updates_holding_levels_pickle_and_copy_as_the_reference() -> None:
    a, b = _both_updates()
    assert outcome(lambda: pickle.loads(pickle.dumps(a)) == b) == ("ok", True)
    assert outcome(lambda: copy.deepcopy(a) == b) == ("ok", True)


# =============================================================================================
# what was checked and found right, kept as tests
# =============================================================================================

# ---- the depth scanner accepts exactly what the JSON path decodes the same way -------------

INTS = st.one_of(
    st.integers(-(2**64), 2**64),
    st.sampled_from([0, 1, -1, 2**62 - 1, 2**62, 4611686018427387909, 4611686018427387910,
                     2**63 - 1, 2**63, 2**64, 9223372036854, 9223372036855, -9223372036854,
                     -9223372036855, 100, 101, 102, 105]),
)
INT_TEXT = st.one_of(
    INTS.map(str),
    st.sampled_from(["-0", "01", "-01", "00", "1.0", "1e2", "1E2", "-", "+1", "0x1", "1.",
                     "true", "null", '"101"', "[]", "{}", "1 2", "9" * 30]),
)
DECIMALS = st.one_of(
    st.sampled_from(["61837.63000000", "0.00000000", "0.00000001", "1.00", "1", "1.", ".5",
                     "0.01", "007.10", "61837.635", "", ".", "-1.00", "1e5", "46116860184273879.03",
                     "46116860184273879.04", "18446744073709551615", "9" * 40, "9" * 41,
                     "0." + "0" * 38 + "1", "1.0000000000000000000", "\\u0031.00", "1.0\\t"]),
    st.from_regex(r"\A[0-9]{0,21}(\.[0-9]{0,21})?\Z"),
)
STRINGS = st.one_of(
    st.sampled_from(["BTCUSDT", "ETHUSDT", "btcusdt", "BTCUSD", "BTCUSDTX", "BTC\\u0055SDT",
                     "depthUpdate", "", "\x7f"]),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e, exclude_characters='"\\'),
            max_size=8),
)
WS = st.sampled_from(["", "", "", " ", "\n", "\t ", "\r\n  "])


@st.composite
def level_text(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 9)) == 0:  # an odd shape
        return draw(st.sampled_from(['["1.00"]', '["1.00","1","2"]', '"1.00"', "[1.0,\"1\"]",
                                     '["1.00",1]', "[]", "null", '[["1.00","1"]]']))
    w = draw(WS)
    return f'[{w}"{draw(DECIMALS)}"{draw(WS)},{w}"{draw(DECIMALS)}"{draw(WS)}]'


@st.composite
def level_list(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 15)) == 0:
        return draw(st.sampled_from(["null", "{}", '"x"', "[", "[[]", "[,]", "1"]))
    items = draw(st.lists(level_text(), max_size=6))
    sep = draw(st.sampled_from([",", ", ", " ,\n"]))
    trailing = "," if items and draw(st.integers(0, 20)) == 0 else ""
    return f"[{draw(WS)}{sep.join(items)}{trailing}{draw(WS)}]"


def damaged(draw: st.DrawFn, frame: str) -> bytes:
    """``frame`` as bytes, now and then with a stray tail, cut short or one byte flipped:
    the scanner must hand what it does not fully understand to the JSON path."""
    frame += draw(st.sampled_from(["", "", "", " \n", "x", "}", "\x00"]))
    raw = frame.encode()
    cut = draw(st.integers(0, 12))
    if cut == 0 and raw:  # truncate
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif cut == 1 and raw:  # flip one byte
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([draw(st.integers(0, 255))]) + raw[i + 1:]
    return raw


@st.composite
def depth_frame_text(draw: st.DrawFn) -> bytes:
    fields: list[tuple[str, str]] = [
        ("e", '"depthUpdate"'), ("E", draw(INT_TEXT)), ("s", '"BTCUSDT"'),
        ("U", draw(INT_TEXT)), ("u", draw(INT_TEXT)), ("b", draw(level_list())),
        ("a", draw(level_list())),
    ]
    if draw(st.booleans()):
        fields.append(("T", draw(INT_TEXT)))
    if draw(st.booleans()):
        fields.append(("pu", draw(INT_TEXT)))
    if draw(st.integers(0, 3)) == 0:
        fields[2] = ("s", f'"{draw(STRINGS)}"')
    if draw(st.integers(0, 5)) == 0:  # drop one
        del fields[draw(st.integers(0, len(fields) - 1))]
    if draw(st.integers(0, 8)) == 0:  # repeat one
        fields.append(draw(st.sampled_from(fields)) if fields else ("x", "1"))
    if draw(st.integers(0, 10)) == 0:
        fields.append((draw(st.sampled_from(["x", "\\u0062", "S", "", "bb"])), draw(INT_TEXT)))
    order = draw(st.permutations(fields))
    body = ",".join(f'{draw(WS)}"{k}"{draw(WS)}:{draw(WS)}{v}{draw(WS)}' for k, v in order)
    stream = draw(st.sampled_from(["btcusdt@depth", "btcusdt@depth@100ms", "@depth",
                                   "btcusdt@depthX", "btcusdt@depth@", "btcusdt@trade",
                                   "btcusdt", "btcusdt@depth\\u0040"]))
    envelope = [("stream", f'"{stream}"'), ("data", "{" + body + draw(WS) + "}")]
    if draw(st.integers(0, 6)) == 0:
        envelope.reverse()
    frame = "{" + ",".join(f'{draw(WS)}"{k}"{draw(WS)}:{v}' for k, v in envelope) + "}"
    return damaged(draw, frame)


@given(frame=depth_frame_text(), market=st.sampled_from(["spot", "usdm"]))
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_scanned_depth_frames_decode_as_the_json_path(frame: bytes, market: str) -> None:
    a, b = decode_both(frame, market)
    assert same_events(a, b), (frame, a, b)


# ---- the snapshot scanner accepts exactly what the JSON path decodes the same way ----------

@st.composite
def grid_level_list(draw: st.DrawFn) -> str:
    """Levels on the spot grids (ticks of 0.01, lots of 1e-8), sizes 0 included: plain."""
    levels = draw(st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 10**12)),
                           max_size=40))
    return "[" + ",".join(f'["{p // 100}.{p % 100:02d}","{s // 10**8}.{s % 10**8:08d}"]'
                          for p, s in levels) + "]"


@st.composite
def snapshot_frame_text(draw: st.DrawFn) -> bytes:
    """A REST depth snapshot, mostly as Binance writes it (compact, the id first, so that the
    scanner reads it), with the depth strategy's odd ids, levels, keys and bytes."""
    clean = draw(st.booleans())  # half of them plain, for the scanner to read through
    ids = INTS.map(str) if clean else st.one_of(INTS.map(str), INT_TEXT)
    levels = grid_level_list() if clean else st.one_of(grid_level_list(), level_list())
    fields: list[tuple[str, str]] = [
        ("lastUpdateId", draw(ids)), ("bids", draw(levels)), ("asks", draw(levels)),
    ]
    if draw(st.booleans()):
        fields.append(("E", draw(ids)))
    if draw(st.booleans()):
        fields.append(("T", draw(ids)))
    if not clean and draw(st.integers(0, 5)) == 0:  # drop one
        del fields[draw(st.integers(0, len(fields) - 1))]
    if not clean and draw(st.integers(0, 8)) == 0:  # repeat one
        fields.append(draw(st.sampled_from(fields)) if fields else ("x", "1"))
    if not clean and draw(st.integers(0, 10)) == 0:
        fields.append((draw(st.sampled_from(["e", "x", "\\u0045", "lastupdateid", "", "bid"])),
                       draw(INT_TEXT)))
    order = list(draw(st.permutations(fields)))
    if draw(st.integers(0, 3)):
        order.sort(key=lambda kv: kv[0] != "lastUpdateId")
    ws = WS if draw(st.integers(0, 3)) == 0 else st.just("")
    frame = "{" + ",".join(f'{draw(ws)}"{k}"{draw(ws)}:{draw(ws)}{v}{draw(ws)}'
                           for k, v in order) + "}"
    if clean:
        return frame.encode()
    return damaged(draw, frame)


def _synced(codec: BinanceCodec) -> BinanceCodec:
    """``codec`` after a snapshot (id 100) and the diff that bridges it: synced at 101, so a
    snapshot of id 101 or less is stale."""
    codec.decode(1, orjson.dumps({"lastUpdateId": 100, "bids": [["61837.60000000", "1"]],
                                  "asks": [["61837.70000000", "1"]]}))
    codec.decode(2, orjson.dumps({"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 101,
                                  "u": 101, "b": [], "a": []}))
    return codec


@given(frame=snapshot_frame_text(), market=st.sampled_from(["spot", "usdm"]),
       synced=st.booleans())
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_scanned_snapshot_frames_decode_as_the_json_path(frame: bytes, market: str,
                                                        synced: bool) -> None:
    """Waiting for a snapshot, or synced (where an older one is ignored): the same events,
    and the codec in the same state after them."""
    fast, pure = codecs(spot(), market)
    if synced:
        _synced(fast), _synced(pure)
    diff = orjson.dumps({"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 90, "u": 95,
                         "b": [["61837.50000000", "2"]], "a": []})
    fast.decode(3, diff), pure.decode(3, diff)  # buffered (waiting): a snapshot may release it
    a, b = fast.decode(4, frame), pure.decode(4, frame)
    assert same_events(a, b), (frame, a, b)
    assert (fast.state, fast.last_id, len(fast._buffer)) == (
        pure.state, pure.last_id, len(pure._buffer))


def test_a_plain_snapshot_is_read_from_its_bytes() -> None:
    """The venue's snapshot, spot and USD-M, takes the scanner (packed levels, no JSON
    objects), not the JSON path that decodes the same events."""
    assert speedups.compiled is not None
    for market, extra in (("spot", {}), ("usdm", {"E": 1723161256501, "T": 1723161256493})):
        frame = orjson.dumps({"lastUpdateId": 50, **extra,
                              "bids": [["61837.63000000", "3.78826000"]],
                              "asks": [["61837.64000000", "0.5"], ["61837.70000000", "0"]]})
        fast, pure = codecs(spot(), market)
        a, b = fast.decode(1, frame), pure.decode(1, frame)
        assert same_events(a, b)
        assert type(a[0].bids) is type(a[0].asks) is speedups.compiled.Levels  # type: ignore[union-attr]
        assert a[0].exch_ns == extra.get("T", 0) * 1_000_000  # type: ignore[union-attr]


def _packed(levels: list[tuple[int, int]]) -> Sequence[tuple[int, int]]:
    """``levels`` (ticks of 0.01, lots of 1e-8) as the compiled scanner packs a snapshot's."""
    fast, _ = codecs(spot())
    text = [[f"{p // 100}.{p % 100:02d}", f"{s // 10**8}.{s % 10**8:08d}"] for p, s in levels]
    (update,) = fast.decode(1, orjson.dumps({"lastUpdateId": 1, "bids": text, "asks": []}))
    return update.bids  # type: ignore[union-attr,no-any-return]


@given(levels=st.lists(st.tuples(st.integers(1, 3000), st.sampled_from([0, 1, 5, 10**8])),
                       max_size=700),
       sign=st.sampled_from([1, -1]),
       region=st.sampled_from([(1, 1, 2), (2, 4, 8), (32, 128, 256)]))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_snapshots_packed_levels_load_as_the_list(levels: list[tuple[int, int]], sign: int,
                                                   region: tuple[int, int, int]) -> None:
    """BookSide.load of packed levels (its table sized for them at once) is the reference's
    load of the same list: zero sizes skipped, a repeated price's last size kept, what was
    there before gone."""
    assert speedups.compiled is not None
    packed = _packed(levels)
    assert type(packed) is speedups.compiled.Levels and packed == levels
    fast, pure = sides(sign, region)
    apply_both(fast, pure, "update", [(p, 1) for p in range(4000, 4100)])
    fast.load(packed)
    pure.load(levels)
    fast.check()
    assert fast.levels == pure.levels and len(fast) == len(pure)
    assert fast._keys == pure._keys and fast._floor == pure._floor
    for n in (1, region[0], region[1] + 1, 10_000):
        assert fast.top(n) == pure.top(n)


# ---- the hash table and the region, against the reference ----------------------------------

@given(ops=st.lists(st.tuples(st.sampled_from(["update", "load", "clear"]),
                              st.lists(st.tuples(st.integers(-3000, 3000),
                                                 st.sampled_from([0, 0, 0, 1, 5])),
                                       max_size=400)),
                    min_size=1, max_size=12),
       sign=st.sampled_from([1, -1]),
       region=st.sampled_from([(1, 1, 2), (2, 4, 8), (32, 128, 256)]))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_book_side_under_churn_is_the_reference(ops: list[tuple[str, Any]], sign: int,
                                               region: tuple[int, int, int]) -> None:
    """Many inserts and deletes (tombstones, rehashes at the same and a larger capacity),
    loads and clears: the same levels, region and reads after every step."""
    fast, pure = sides(sign, region)
    for op, arg in ops:
        apply_both(fast, pure, op, arg)
        fast.check()
        assert fast.levels == pure.levels and len(fast) == len(pure)
        assert fast._keys == pure._keys and fast._floor == pure._floor
        for n in (1, region[0], region[1] + 1, 10_000):
            assert fast.top(n) == pure.top(n)
        for price in range(-3000, 3001, 97):
            assert fast.size_at(price) == pure.size_at(price)


@pytest.mark.parametrize("keep", [1, 2, 3, 128])
@pytest.mark.parametrize("extra", [1, 2, 3, 50, 900])
@pytest.mark.parametrize("order", ["up", "down", "shuffled", "organ"])
def test_load_selects_the_best_keep_levels(keep: int, extra: int, order: str) -> None:
    """select_largest() at the edges: n = keep + 1, keep + 2, ..., ascending, descending,
    shuffled and organ-pipe inputs (the table hands keys over in its own order anyway)."""
    import random

    n = keep + extra
    prices = list(range(1, n + 1))
    if order == "down":
        prices.reverse()
    elif order == "shuffled":
        random.Random(n * keep).shuffle(prices)
    elif order == "organ":
        prices = prices[::2] + prices[1::2][::-1]
    for sign in (1, -1):
        fast, pure = sides(sign, (1, keep, keep + 1))
        fast.load([(p, 1) for p in prices])
        pure.load([(p, 1) for p in prices])
        fast.check()
        assert fast._keys == pure._keys and fast._floor == pure._floor


# ---- reference counts and memory on the error and hand-back paths ----------------------------

def _error_frames() -> list[bytes]:
    """Frames that take the hand-back and error paths of the Decoder (scanner, ticker, trade,
    levels), and valid ones."""
    depth = {"e": "depthUpdate", "E": 1723075200123, "s": "BTCUSDT", "U": 101, "u": 102,
             "b": [["61837.63000000", "0.12300000"]], "a": [["61837.64000000", "1.00000000"]]}
    ticker = {"u": 1, "s": "BTCUSDT", "b": "1.00", "B": "1", "a": "2.00", "A": "1"}
    trade = {"e": "trade", "E": 1, "s": "BTCUSDT", "t": 1, "p": "1.00", "q": "1", "T": 1,
             "m": True}
    out: list[bytes] = []
    depth_changes: list[dict[str, Any]] = [
        {}, {"T": 2**50}, {"E": 2**50}, {"U": 103}, {"u": 2**63}, {"pu": "x"}, {"s": "ETHUSDT"},
        {"b": [["1.001", "1"]]}, {"b": [["1.00", "1.000000001"]]}, {"b": [[1, "1"]]},
        {"b": [["1.00", 1]]}, {"b": [["1.00"]]}, {"b": [("1.00", "x")]}, {"a": [[["1"], "1"]]},
        {"a": [["1.00", {"q": 1}]]}, {"b": None}, {"x": 1}, {"b": [["-1", "1"]]},
        {"b": [["1.00", "9" * 30]]}, {"b": [["1.00", "1"]] * 600},
    ]
    for change in depth_changes:
        data = {**depth, **change}
        out.append(orjson.dumps({"stream": "btcusdt@depth@100ms", "data": data}))
        out.append(orjson.dumps(data))
    for base, stream in ((ticker, "btcusdt@bookTicker"), (trade, "btcusdt@trade")):
        for change in ({}, {"s": "X"}, {"b": ["1"]}, {"p": "x"}, {"q": "0"}, {"m": 1},
                       {"u": 1.5}, {"t": "1"}, {"T": 2**63 - 1}, {"T": "1"}, {"B": {"a": 1}}):
            data = {**base, **change}
            out.append(orjson.dumps({"stream": stream, "data": data}))
            out.append(orjson.dumps(data))
            out.append(orjson.dumps({"stream": stream, "data": [data]}))
    out += [orjson.dumps({"lastUpdateId": 50, "bids": [["1.00", "1"]], "asks": [[1, 2]]}),
            orjson.dumps({"lastUpdateId": 50, "bids": [["1.00", "1"]], "asks": []}),
            orjson.dumps({"lastUpdateId": 51, "E": 1, "T": 2**62, "bids": [], "asks": []}),
            orjson.dumps({"lastUpdateId": 52, "bids": [["1.00", "1"]] * 600, "asks": [],
                          "x": 1}),
            b'{"lastUpdateId":53,"bids":[],"asks":[],"asks":[]}',
            b'{"lastUpdateId":54,"bids":[["1.00","1"]],"asks":[["1.001","1"]]}',
            b"", b"{", b"[]", b"null", b"\xff", b'{"stream":"btcusdt@depth","data":{"s":']
    return out


def test_error_paths_leave_no_reference_behind() -> None:
    """A unique recv_ns object: every event that held it is gone, so its reference count is
    back where it started (a leak of an argument on any path shows here)."""
    frames = _error_frames()
    for market in ("spot", "usdm"):
        fast, _ = codecs(spot(), market)
        recv_ns = 10**30 + 7  # not a cached small int: only this test holds it
        before = sys.getrefcount(recv_ns)
        for _ in range(3):
            for frame in frames:
                fast.decode(recv_ns, frame)
                fast.decode(recv_ns, frame.decode("latin-1"))
        fast.reset()  # drop the buffered diffs, which hold recv_ns
        gc.collect()  # exception tracebacks of the Python path, if any cycle held one
        assert sys.getrefcount(recv_ns) == before


def test_error_paths_do_not_leak_memory() -> None:
    """tracemalloc over the Decoder's and BookSide's error paths, repeated."""
    frames = _error_frames()
    fast, _ = codecs(spot())
    bad_changes: list[Any] = [[(1, -1)], [(2**62, 1)], [(1, 2**62)], [("1", 1)], [(1.0, 1)],
                              [(1, 2, 3)], [1], None, [[1, 2, 3]], [iter([1, 2])], [b"ab"]]
    assert speedups.compiled is not None
    side = speedups.compiled.BookSide(1, 2, 4, 8)

    def run() -> None:
        for frame in frames:
            fast.decode(7, frame)
        fast.reset()
        for bad in bad_changes:
            for method in (side.update, side.load):
                with contextlib.suppress(TypeError, ValueError, OverflowError):
                    method([(5, 1), *bad] if isinstance(bad, list) else bad)
        side.update([(p, 1) for p in range(100)])
        side.update([(p, 0) for p in range(100)])
        _, update = _both_updates()
        _ = repr(update)
        gc.collect()  # the codecs made above are a cycle (codec <-> decoder)

    grown = traced_growth(run, warm=3, passes=20)
    assert grown < 32 * 1024, f"{grown} bytes more after 20 more passes"


def test_levels_compare_and_repr_leave_no_reference_behind() -> None:
    a, _ = _both_updates()
    probe = [(100, 200000000), (99, 0)]
    before = sys.getrefcount(probe), sys.getrefcount(a.bids)
    for _ in range(100):
        assert a.bids == probe and (a.bids != probe) is False and probe == a.bids
        repr(a.bids)
    assert (sys.getrefcount(probe), sys.getrefcount(a.bids)) == before


# ---- GC: the codec <-> decoder cycle -----------------------------------------------------------

def test_a_codec_and_its_decoder_are_collected() -> None:
    """The codec holds the Decoder's bound methods, the Decoder the codec's: a cycle the
    Decoder's tp_traverse must expose for the codec to be freed."""
    assert speedups.compiled is not None
    codec = BinanceCodec(spot())
    decoder = codec.decode.__self__  # type: ignore[attr-defined]
    assert type(decoder) is speedups.compiled.Decoder and gc.is_tracked(decoder)
    ref = weakref.ref(codec)
    del codec, decoder
    gc.collect()
    assert ref() is None
