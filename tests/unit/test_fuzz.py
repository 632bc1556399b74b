"""Fuzzing of every decoder (issue #8 item 2): no exception escapes, no state corruption.

Decoders and their contracts:

- :meth:`BinanceCodec.decode` never raises and returns only model events with well-typed
  fields; :meth:`MarketState.on_frame` leaves the book consistent after every frame (sizes
  > 0, the sorted key list equal to the dict's keys, best = max/min, ``synced`` False after
  a Gap until a snapshot, book and codec agree on sync) and recovers from any damage once
  real frames and a fresh snapshot follow;
- :func:`read_recording` yields ``(recv_ns, frame)`` or Malformed, raises only RecordingError;
- :func:`load_config` raises only ConfigError;
- :func:`read_lobster` yields Trade/BookUpdate/Malformed, raises only RecordingError or
  ValueError, and those only when called;
- the WebSocket API parsers (``parse_response``/``parse_event``/``parse_frame`` and the
  result parsers) never raise.

Hypothesis runs derandomized (fixed examples, no example database) so that the file is a
deterministic regression suite; the atheris harnesses in ``fuzz/`` explore further (each runs
briefly in tests/process/test_fuzz_harnesses.py when atheris is installed). Specific regression
tests for the bugs this found are at the end of the file.
"""

from __future__ import annotations

import bisect
import functools
import gzip
import itertools
import re
import tempfile
import tomllib
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmdaemon.book import BookSide
from mmdaemon.config import Config, ConfigError
from mmdaemon.config_file import load_config
from mmdaemon.feed.lobster import LOBSTER_AMZN, read_lobster
from mmdaemon.feed.recording import RecordingError, read_recording
from mmdaemon.market import MarketState
from mmdaemon.model import (
    BINANCE_SPOT_BTCUSDT,
    BINANCE_USDM_BTCUSDT,
    BookUpdate,
    Gap,
    Instrument,
    Malformed,
    MarketEvent,
    OrderUpdate,
    Side,
    TopOfBook,
    Trade,
)
from mmdaemon.venues import binance_api as api
from mmdaemon.venues import binance_parse as parse
from mmdaemon.venues.binance import BinanceCodec, Market, SyncState

REPO = Path(__file__).resolve().parents[2]
SPOT_RECORDING = REPO / "data" / "binance-spot-btcusdt" / "btcusdt_20240808.gz"
DRYRUN_CONFIG = REPO / "config" / "dryrun.toml"
FUZZ_DIR = REPO / "fuzz"

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def fuzz(examples: int) -> settings:
    """The deterministic fuzz profile with ``examples`` examples."""
    return settings(FUZZ, max_examples=examples)


INSTRUMENTS: dict[str, Instrument] = {
    "spot": BINANCE_SPOT_BTCUSDT,
    "usdm": BINANCE_USDM_BTCUSDT,
}
MARKETS: list[Market] = ["spot", "usdm"]

# ---- shared value strategies ----------------------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON: st.SearchStrategy[Any] = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)

NASTY_NUMBERS = [
    "", "0", "-0", "-1.0", "+1", "1e5", "1E-8", "NaN", "-NaN", "sNaN", "Infinity", "-inf",
    "1_000", " 7", "7 ", "\u0663", "1.2.3", ".", ".5", "5.", "0x10", "00000.00000001",
    "1" * 5000, "0." + "0" * 5000 + "1", "9" * 4301, "." + "0" * 300,
    "1e999999999", "1e-999999999", "0e-999999999", "-1e999999999",
]  # fmt: skip
"""Decimal-looking text that has broken parsers: signs, exponents, non-ASCII digits,
separators, int() digit limits and exponents whose exact value costs minutes."""

DECIMALS: st.SearchStrategy[str] = st.one_of(
    st.builds(
        "{}.{}".format,
        st.integers(0, 99_999),
        st.text("0123456789", min_size=0, max_size=10),
    ),
    st.integers(0, 10**9).map(str),
    st.sampled_from(NASTY_NUMBERS),
    st.text(max_size=8),
)


def not_of_type(kind: type) -> Callable[[Any], bool]:
    """A filter for values of another type than ``kind`` (a type swap)."""
    return lambda value: type(value) is not kind


def anything_or(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly ``valid``, sometimes any JSON value (a wrong type)."""
    return st.one_of(valid, valid, valid, JSON)


# ---- model checks ---------------------------------------------------------------------------

EVENT_TYPES = (BookUpdate, Trade, TopOfBook, Gap, Malformed)


def is_int(value: object) -> bool:
    return type(value) is int


def check_levels(levels: object) -> None:
    # a list of tuples, or the compiled scanner's packed levels (a sequence of tuples)
    assert isinstance(levels, Sequence) and not isinstance(levels, (str, bytes)), levels
    for level in levels:
        assert type(level) is tuple and len(level) == 2, level
        price, size = level
        assert is_int(price) and is_int(size) and price >= 0 and size >= 0, level


def check_event(event: object) -> None:
    """``event`` is one of the model's market events with fields of the declared types."""
    kind = type(event)
    assert kind in EVENT_TYPES, f"not a market event: {event!r}"
    if isinstance(event, BookUpdate):
        assert type(event.snapshot) is bool
        check_levels(event.bids)
        check_levels(event.asks)
        assert all(map(is_int, (event.first_id, event.last_id, event.exch_ns, event.recv_ns)))
        assert event.first_id <= event.last_id
    elif isinstance(event, Trade):
        assert all(map(is_int, (event.price, event.size, event.trade_id, event.exch_ns)))
        assert is_int(event.recv_ns) and event.price >= 0 and event.size > 0
        assert type(event.aggressor) is Side
    elif isinstance(event, TopOfBook):
        fields = (event.update_id, event.bid, event.bid_size, event.ask, event.ask_size)
        assert all(map(is_int, fields)) and min(fields[1:]) >= 0
        assert is_int(event.exch_ns) and is_int(event.recv_ns)
    elif isinstance(event, Gap):
        assert type(event.reason) is str and is_int(event.recv_ns)
        assert is_int(event.expected_id) and is_int(event.got_id)
    else:
        assert isinstance(event, Malformed)
        assert type(event.reason) is str and is_int(event.recv_ns)


def check_side(side: BookSide, sign: int, best: int | None) -> None:
    levels = side.levels
    assert all(is_int(p) and is_int(s) and s > 0 for p, s in levels.items()), "size <= 0"
    side.check()  # the sorted top region against the levels
    if levels:
        assert best == (max(levels) if sign > 0 else min(levels))
    else:
        assert best is None


def check_market(state: MarketState, full: bool = True) -> None:
    """The book and codec invariants; ``full`` False skips the O(levels) checks (used only
    after frames that produced no BookUpdate or Gap: nothing else touches the book)."""
    book, codec = state.book, state.codec
    assert isinstance(codec, BinanceCodec)
    if full:
        check_side(book.bids, 1, book.best_bid())
        check_side(book.asks, -1, book.best_ask())
    assert book.synced == codec.synced, (book.synced, codec.state)
    if book.synced:
        assert not book.is_crossed(), "a crossed book is marked synced"
        assert book.last_id == codec.last_id
    if codec.state is not SyncState.WAIT_SNAPSHOT:
        assert not codec._buffer, "diffs buffered while a snapshot is loaded"


class Feeder:
    """Feeds frames to a MarketState and checks everything after every frame."""

    def __init__(self, market: Market = "spot") -> None:
        self.state = MarketState(BinanceCodec(INSTRUMENTS[market], market))
        self.lost = False  # a Gap was seen and no snapshot since

    def feed(self, recv_ns: int, frame: bytes | str, always_full: bool = False) -> list[Any]:
        events = self.state.on_frame(recv_ns, frame)
        changed = always_full
        for event in events:
            check_event(event)
            if type(event) is Gap:
                self.lost = changed = True
            elif type(event) is BookUpdate:
                changed = True
                if event.snapshot:
                    self.lost = False
        if self.lost:
            assert not self.state.book.synced, "synced after a Gap without a snapshot"
        check_market(self.state, full=changed)
        return events


# ---- (a) BinanceCodec.decode on arbitrary input ---------------------------------------------


def decode_checked(market: Market, frame: bytes | str) -> list[MarketEvent]:
    codec = BinanceCodec(INSTRUMENTS[market], market)
    events = codec.decode(7, frame)
    assert type(events) is list
    for event in events:
        check_event(event)
    return events


@fuzz(400)
@given(st.sampled_from(MARKETS), st.binary(max_size=200) | st.text(max_size=200))
def test_codec_survives_arbitrary_bytes(market: Market, frame: bytes | str) -> None:
    decode_checked(market, frame)


@fuzz(400)
@given(st.sampled_from(MARKETS), JSON)
def test_codec_survives_arbitrary_json(market: Market, value: Any) -> None:
    decode_checked(market, orjson.dumps(value))
    decode_checked(market, orjson.dumps({"stream": "btcusdt@depth@100ms", "data": value}))


IDS = st.one_of(st.integers(95, 125), st.integers(-(2**63), 2**63 - 1))
MS = st.one_of(st.integers(0, 2**41), st.just(1723161255208))
SYMBOLS = st.sampled_from(["BTCUSDT", "BTCUSDT", "ETHUSDT", "btcusdt", ""])
LEVEL = st.lists(DECIMALS, min_size=2, max_size=2)
SPOT_PRICES = st.integers(9_990, 10_010).map(lambda t: f"{t // 100}.{t % 100:02d}")
SPOT_LEVEL = st.tuples(SPOT_PRICES, st.sampled_from(["0", "0.0", "1.5", "0.00000001", "2"]))
LEVELS = st.one_of(
    st.lists(SPOT_LEVEL.map(list), max_size=4),
    st.lists(SPOT_LEVEL.map(list), max_size=4),
    st.lists(anything_or(LEVEL), max_size=3),
)
Fields = dict[str, tuple[Any, st.SearchStrategy[Any]]]
"""Per key of an object: a good value and a strategy for other plausible values."""


def shaped(fields: Fields) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with ``fields``' keys: all good values except up to three keys, each of which
    is missing, drawn from its strategy or any JSON value. Whole valid objects are common,
    so the deep paths (a fill, a book update) are reached with one or two bad fields."""

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        bad = draw(st.sets(st.sampled_from(sorted(fields)), max_size=3))
        out: dict[str, Any] = {}
        for key, (good, valid) in fields.items():
            if key not in bad:
                out[key] = good
                continue
            choice = draw(st.integers(0, 4))
            if choice:
                out[key] = draw(JSON) if choice == 1 else draw(valid)
        return out

    return build()


FRAME_FIELDS: dict[str, Fields] = {
    "depth": {
        "e": ("depthUpdate", st.text(max_size=12)), "E": (1723161255208, MS),
        "T": (1723161255207, MS), "s": ("BTCUSDT", SYMBOLS), "U": (101, IDS), "u": (103, IDS),
        "pu": (100, IDS), "b": ([["100.00", "1.5"]], LEVELS), "a": ([["100.20", "0"]], LEVELS),
    },
    "trade": {
        "e": ("trade", st.text(max_size=6)), "E": (1723161255343, MS),
        "T": (1723161255342, MS), "s": ("BTCUSDT", SYMBOLS), "t": (3735683259, IDS),
        "p": ("100.10", DECIMALS), "q": ("0.02000000", DECIMALS), "m": (True, st.booleans()),
        "M": (True, st.booleans()),
    },
    "bookTicker": {
        "u": (102, IDS), "s": ("BTCUSDT", SYMBOLS), "b": ("100.00", DECIMALS),
        "B": ("3.78826000", DECIMALS), "a": ("100.20", DECIMALS), "A": ("1.5", DECIMALS),
        "T": (1723161255342, MS), "E": (1723161255343, MS),
    },
    "snapshot": {
        "lastUpdateId": (100, IDS), "bids": ([["100.00", "1"], ["99.90", "2"]], LEVELS),
        "asks": ([["100.20", "1"]], LEVELS), "E": (1723161255343, MS), "T": (0, MS),
    },
    "control": {"id": (1, st.integers(0, 10)), "result": (None, JSON), "error": (None, JSON)},
}  # fmt: skip
STREAMS = {
    "depth": "btcusdt@depth@100ms",
    "trade": "btcusdt@trade",
    "bookTicker": "btcusdt@bookTicker",
}


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """A Binance-shaped frame: right keys with values that are right, wrong or missing."""
    kind = draw(st.sampled_from(sorted(FRAME_FIELDS)))
    data = draw(shaped(FRAME_FIELDS[kind]))
    if draw(st.booleans()):  # move the update ids about, so that sequences mean something
        for key in ("U", "u", "pu", "lastUpdateId"):
            if is_int(data.get(key)):
                data[key] = draw(st.integers(95, 125))
    envelope = draw(st.integers(0, 5))
    if kind in STREAMS and envelope < 4:
        stream: Any = STREAMS[kind] if envelope < 3 else draw(anything_or(st.text(max_size=20)))
        return orjson.dumps({"stream": stream, "data": data})
    return orjson.dumps(data)


@fuzz(400)
@given(st.sampled_from(MARKETS), frames())
def test_codec_survives_binance_shaped_frames(market: Market, frame: bytes) -> None:
    decode_checked(market, frame)


@fuzz(300)
@given(st.sampled_from(MARKETS), st.lists(frames(), max_size=25))
def test_market_state_stays_consistent_on_binance_shaped_sequences(
    market: Market, sequence: list[bytes]
) -> None:
    feeder = Feeder(market)
    for i, frame in enumerate(sequence):
        feeder.feed(i, frame, always_full=True)


BAD_VALUES: list[Any] = [
    *NASTY_NUMBERS, None, True, False, 0, -1, 2**63 - 1, -(2**63), 1.5, -0.0, 1e308, [], {},
    [[]], [["1", "2", "3"]], ["100.00", "1"], {"a": 1}, "x", "BTCUSDT",
]  # fmt: skip
"""Every field of every decoder gets each of these in turn (one bad field per object)."""


def one_bad_field(fields: Fields) -> Iterator[dict[str, Any]]:
    """The good object with each field in turn missing or set to each of BAD_VALUES."""
    good = {key: value for key, (value, _) in fields.items()}
    for key in fields:
        yield {k: v for k, v in good.items() if k != key}
        for value in BAD_VALUES:
            yield {**good, key: value}


@pytest.mark.parametrize("market", MARKETS)
def test_codec_every_field_with_every_bad_value(market: Market) -> None:
    """Exhaustive, not random: a good frame of each kind with one field wrong, combined and
    raw, decoded after a good snapshot by a MarketState whose invariants must hold."""
    for kind, fields in FRAME_FIELDS.items():
        for data in one_bad_field(fields):
            frames_ = [orjson.dumps(data)]
            if kind in STREAMS:
                frames_.append(orjson.dumps({"stream": STREAMS[kind], "data": data}))
            for frame in frames_:
                feeder = Feeder(market)
                feeder.feed(0, orjson.dumps({k: v for k, (v, _) in FRAME_FIELDS["snapshot"]
                                             .items()}))
                feeder.feed(1, frame, always_full=True)


# ---- (b) mutations of the real recording ----------------------------------------------------

WINDOW_MAX = 60  # frames per mutated window


@functools.cache
def real_frames() -> tuple[tuple[int, bytes], ...]:
    """The first 3000 ``(recv_ns, frame)`` of the real spot recording (snapshot at line 8)."""
    with gzip.open(SPOT_RECORDING, "rb") as f:
        lines = list(itertools.islice(f, 3000))
    out = []
    for line in lines:
        ns, _, frame = line.partition(b" ")
        out.append((int(ns), frame.rstrip(b"\r\n")))
    return tuple(out)


@functools.cache
def depth_indices() -> tuple[int, ...]:
    return tuple(i for i, (_, f) in enumerate(real_frames()) if b'"depthUpdate"' in f)


BookCopy = tuple[dict[int, int], dict[int, int], int]


@functools.cache
def reference() -> dict[int, BookCopy]:
    """Reference replay of the unmodified frames: the book after frame ``i - 1`` for every
    ``i`` where frame ``i - 1`` changed the book (and for the end)."""
    state = MarketState(BinanceCodec(BINANCE_SPOT_BTCUSDT, "spot"))
    copies: dict[int, BookCopy] = {}
    frames_ = real_frames()
    for i, (ns, frame) in enumerate(frames_):
        events = state.on_frame(ns, frame)
        assert not any(type(e) in (Gap, Malformed) for e in events)
        if any(type(e) is BookUpdate for e in events):
            copies[i + 1] = (dict(state.book.bids.levels), dict(state.book.asks.levels),
                             state.book.last_id)
    assert state.book.synced
    copies[len(frames_)] = (dict(state.book.bids.levels), dict(state.book.asks.levels),
                            state.book.last_id)
    return copies


def snapshot_frame(bids: dict[int, int], asks: dict[int, int], last_id: int) -> bytes:
    """A REST depth snapshot of a book (what the venue would send for it)."""
    inst = BINANCE_SPOT_BTCUSDT

    def rows(levels: dict[int, int], reverse: bool) -> list[list[str]]:
        return [[inst.price_str(p), inst.size_str(s)]
                for p, s in sorted(levels.items(), reverse=reverse)]

    return orjson.dumps(
        {"lastUpdateId": last_id, "bids": rows(bids, True), "asks": rows(asks, False)}
    )


NUMBER_IN_FRAME = re.compile(rb'"[0-9]+\.[0-9]+"')
ID_KEYS = ("U", "u", "pu", "lastUpdateId", "t")
MUTATIONS = (
    "flip", "delete", "insert", "truncate", "replace_number", "drop_key", "swap_type",
    "change_id", "duplicate", "swap", "drop_frame",
)  # fmt: skip


def _payload(msg: Any) -> dict[str, Any] | None:
    if type(msg) is not dict:
        return None
    data = msg.get("data")
    return data if type(data) is dict else msg


def mutate(draw: Callable[[st.SearchStrategy[Any]], Any], window: list[bytes]) -> None:
    """Apply one random mutation to the frames of ``window`` (in place)."""
    op = draw(st.sampled_from(MUTATIONS))
    i = draw(st.integers(0, len(window) - 1))
    frame = window[i]
    if op in ("duplicate", "swap", "drop_frame"):
        j = draw(st.integers(0, len(window) - 1))
        if op == "duplicate":
            window.insert(j, frame)
        elif op == "swap":
            window[i], window[j] = window[j], window[i]
        elif len(window) > 1:
            del window[i]
        return
    if op in ("drop_key", "swap_type", "change_id"):
        try:
            msg = orjson.loads(frame)
        except orjson.JSONDecodeError:
            msg = None
        payload = _payload(msg)
        if payload:
            keys = sorted(payload)
            if op == "change_id":
                keys = [k for k in ID_KEYS if k in payload] or keys
            key = draw(st.sampled_from(keys))
            if op == "drop_key":
                del payload[key]
            elif op == "swap_type":
                old = type(payload[key])
                payload[key] = draw(JSON.filter(not_of_type(old)))
            else:
                old_id = payload[key]
                delta = draw(st.integers(-40, 40) | st.sampled_from([10**6, -(10**6), 2**62]))
                payload[key] = old_id + delta if is_int(old_id) else delta
            window[i] = orjson.dumps(msg)
            return
        op = "flip"  # not JSON any more: damage bytes instead
    if op == "replace_number":
        spans = [m.span() for m in NUMBER_IN_FRAME.finditer(frame)]
        if spans:
            start, end = draw(st.sampled_from(spans))
            text = draw(st.sampled_from(NASTY_NUMBERS[:24]) | DECIMALS | st.text(max_size=6))
            window[i] = frame[:start] + orjson.dumps(text) + frame[end:]
            return
        op = "flip"
    if not frame:
        window[i] = draw(st.binary(min_size=1, max_size=8))
        return
    pos = draw(st.integers(0, len(frame) - 1))
    if op == "flip":
        damaged = bytearray(frame)
        damaged[pos] ^= draw(st.integers(1, 255))
        window[i] = bytes(damaged)
    elif op == "delete":
        window[i] = frame[:pos] + frame[pos + draw(st.integers(1, 8)) :]
    elif op == "insert":
        window[i] = frame[:pos] + draw(st.binary(min_size=1, max_size=8)) + frame[pos:]
    else:
        window[i] = frame[:pos]


@fuzz(120)
@given(st.data())
def test_mutated_real_frames_never_corrupt_the_book(data: st.DataObject) -> None:
    """Random damage to a window of real frames, then the real frames that follow with a
    fresh snapshot from the reference replay: the book is consistent after every frame, and
    at the end it is exactly the reference book (or, where damaged frames could still be
    in the codec's buffer when the snapshot came, at least not synced on a wrong id)."""
    frames_ = real_frames()
    diffs = depth_indices()
    ref = reference()
    n = len(frames_)
    # the window ends before the third-last diff: real diffs follow it, and the fresh
    # snapshot comes after at least one of them and before at least one more
    a = data.draw(st.integers(0, diffs[-3] - 1), label="window start")
    b = data.draw(st.integers(a + 1, min(a + WINDOW_MAX, diffs[-3])), label="window end")
    window = [frame for _, frame in frames_[a:b]]
    for _ in range(data.draw(st.integers(1, 8), label="mutations")):
        mutate(data.draw, window)
    # (after the snapshot at line 8 too: the reference has a book there)
    later = [d for d in diffs if max(b, 8) <= d < diffs[-1]]
    c = data.draw(st.sampled_from(later), label="diff before the fresh snapshot") + 1

    feeder = Feeder("spot")
    codec = feeder.state.codec
    assert isinstance(codec, BinanceCodec)
    for ns, frame in frames_[:a]:
        feeder.feed(ns, frame)
    recv_ns = frames_[a][0]
    for frame in window:
        feeder.feed(recv_ns, frame, always_full=True)
    for ns, frame in frames_[b:c]:
        feeder.feed(ns, frame)

    bids_c, asks_c, id_c = ref[c]
    if codec.state is SyncState.SYNCED:
        # real diffs came after the damage: a codec still in sequence holds their id
        assert codec.last_id == id_c, "in sequence on a wrong update id (wedged codec)"
    clean = all(last <= id_c for _, last, _, _ in codec._buffer)
    events = feeder.feed(frames_[c - 1][0], snapshot_frame(bids_c, asks_c, id_c))
    applied = any(type(e) is BookUpdate and e.snapshot for e in events)
    assert applied or codec.state is SyncState.SYNCED, "snapshot refused while unsynced"
    for ns, frame in frames_[c:]:
        feeder.feed(ns, frame)

    bids_end, asks_end, id_end = ref[n]
    book = feeder.state.book
    if book.synced:
        assert codec.last_id == id_end, "synced on a wrong update id at the end"
    if applied and clean:
        assert book.synced and book.last_id == id_end
        assert book.bids.levels == bids_end and book.asks.levels == asks_end
    # a snapshot newer than anything seen must always be taken
    clean = all(last <= id_end + 1 for _, last, _, _ in codec._buffer)
    events = feeder.feed(frames_[-1][0], snapshot_frame(bids_end, asks_end, id_end + 1))
    assert any(type(e) is BookUpdate and e.snapshot for e in events), "fresh snapshot ignored"
    if clean:
        assert book.synced and book.last_id == id_end + 1
        assert book.bids.levels == bids_end and book.asks.levels == asks_end


# ---- (c) read_recording ---------------------------------------------------------------------

VALID_LINES = st.builds(
    lambda ns, frame: b"%d %s" % (ns, frame),
    st.integers(0, 2**63 - 1),
    st.sampled_from([f for _, f in itertools.islice(real_frames(), 12)]) | st.binary(max_size=30),
)
LINES = st.one_of(
    VALID_LINES,
    VALID_LINES,
    st.binary(max_size=40),
    st.builds(lambda d, f: d + b" " + f, st.sampled_from([b"1" * 5000, b"-5", b"\xd9\xa3", b""]),
              st.binary(max_size=10)),
)


@st.composite
def recording_bytes(draw: st.DrawFn) -> tuple[bytes, str]:
    """File contents and how they were made: plain, gzip, truncated or damaged gzip, junk."""
    body = draw(st.sampled_from([b"\n", b"\r\n", b"\r"])).join(draw(st.lists(LINES, max_size=8)))
    how = draw(st.sampled_from(["plain", "gzip", "truncated", "damaged", "trailing", "junk"]))
    if how == "plain":
        return body, how
    if how == "junk":
        return draw(st.binary(max_size=100) | st.binary(max_size=20).map(b"\x1f\x8b".__add__)), how
    packed = gzip.compress(body, mtime=0)
    if how == "truncated":
        return packed[: draw(st.integers(0, len(packed) - 1))], how
    if how == "damaged":
        damaged = bytearray(packed)
        pos = draw(st.integers(0, len(packed) - 1))
        damaged[pos] ^= draw(st.integers(1, 255))
        return bytes(damaged), how
    if how == "trailing":
        return packed + draw(st.binary(min_size=1, max_size=20)), how
    return packed, how


@fuzz(300)
@given(st.lists(recording_bytes(), min_size=1, max_size=3))
def test_read_recording_raises_only_recording_error(files: list[tuple[bytes, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, (content, _) in enumerate(files):
            path = Path(tmp) / f"rec{i}.gz"
            path.write_bytes(content)
            paths.append(path)
        items: list[Any] = []
        try:
            for item in read_recording(paths):
                items.append(item)
        except RecordingError:
            # only compression damage may stop a replay; plain text and cut-short gzip never
            assert any(how in ("damaged", "trailing", "junk") for _, how in files)
    for item in items:
        if isinstance(item, Malformed):
            assert type(item.reason) is str and is_int(item.recv_ns)
        else:
            recv_ns, frame = item
            assert is_int(recv_ns) and 0 <= recv_ns < 2**64
            assert type(frame) is bytes and frame and not frame.endswith((b"\r", b"\n"))


# ---- (d) load_config ------------------------------------------------------------------------

TOML_SCALARS = (
    st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(NASTY_NUMBERS)
    | st.sampled_from(["max", "microprice", "paper", "binance", "ws://x", "127.0.0.1", "::1"])
)
TOML_VALUES: st.SearchStrategy[Any] = st.recursive(
    TOML_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=6,
)
BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_key(key: str) -> str:
    return key if BARE_KEY.fullmatch(key) else toml_string(key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # inf, nan, 1e+300: all TOML
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(data: dict[str, Any], prefix: str = "") -> str:
    """TOML for ``data``: scalars, arrays and inline tables first, then [sub.tables]."""
    lines = [f"[{prefix}]"] if prefix else []
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in data.items() if k not in tables]
    for key, table in tables.items():
        name = f"{prefix}.{toml_key(key)}" if prefix else toml_key(key)
        lines.append(toml_document(table, name))
    return "\n".join(lines) + "\n"


def _paths(node: dict[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, value in node.items():
        yield (*prefix, key)
        if isinstance(value, dict):
            yield from _paths(value, (*prefix, key))


def _parent(root: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    node = root
    for part in path[:-1]:
        node = node[part]
    return node


@functools.cache
def dryrun_text() -> str:
    return DRYRUN_CONFIG.read_text()


@st.composite
def config_documents(draw: st.DrawFn) -> bytes:
    """The shipped dry-run config with keys deleted, types swapped, values replaced, keys
    added; sometimes with its bytes damaged too."""
    data = tomllib.loads(dryrun_text())
    for _ in range(draw(st.integers(1, 6))):
        paths = sorted(_paths(data))
        op = draw(st.sampled_from(["delete", "swap", "value", "add"]))
        if not paths:
            op = "add"
        if op == "add":
            target = data
            tables = [p for p in paths if isinstance(_parent(data, p)[p[-1]], dict)]
            into_table: bool = draw(st.booleans())
            if tables and into_table:
                path = draw(st.sampled_from(tables))
                target = _parent(data, path)[path[-1]]
            target[draw(st.text(max_size=8))] = draw(TOML_VALUES)
            continue
        path = draw(st.sampled_from(paths))
        parent = _parent(data, path)
        if op == "delete":
            del parent[path[-1]]
        elif op == "swap":
            old = type(parent[path[-1]])
            parent[path[-1]] = draw(TOML_VALUES.filter(not_of_type(old)))
        else:
            parent[path[-1]] = draw(TOML_VALUES)
    document = toml_document(data).encode()
    if draw(st.integers(0, 7)) == 0:
        damaged = bytearray(document)
        for _ in range(draw(st.integers(1, 3))):
            pos = draw(st.integers(0, len(damaged) - 1))
            damaged[pos] = draw(st.integers(0, 255))
        document = bytes(damaged)
    return document


@fuzz(400)
@given(config_documents())
def test_load_config_raises_only_config_error(document: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mm.toml"
        path.write_bytes(document)
        try:
            config = load_config(path)
        except ConfigError as exc:
            assert str(exc)
            return
    assert isinstance(config, Config)


def test_config_fuzz_base_document_loads() -> None:
    """The unmutated base renders back to a loadable config (the fuzz starts from valid)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mm.toml"
        path.write_text(toml_document(tomllib.loads(dryrun_text())))
        assert isinstance(load_config(path), Config)


# ---- (e) read_lobster -----------------------------------------------------------------------

LOBSTER_INTS = st.one_of(
    st.integers(-10, 10).map(str),
    st.integers(0, 10**10).map(str),
    st.sampled_from(["9999999999", "-9999999999", "2238200", "2238250", "100", "0"]),
    st.sampled_from(NASTY_NUMBERS),
    st.sampled_from(["7" * 5000, "-" + "7" * 5000]),
    st.text(max_size=6),
)
LOBSTER_TIMES = st.one_of(
    st.builds("{}.{}".format, st.integers(0, 90_000), st.text("0123456789", max_size=11)),
    st.integers(0, 90_000).map(str),
    st.sampled_from(NASTY_NUMBERS),
)
MESSAGE_ROWS = st.one_of(
    st.tuples(LOBSTER_TIMES, st.integers(0, 8).map(str) | LOBSTER_INTS, LOBSTER_INTS,
              LOBSTER_INTS, LOBSTER_INTS, st.sampled_from(["1", "-1"]) | LOBSTER_INTS).map(list),
    st.lists(LOBSTER_INTS, max_size=8),
)
BOOK_ROWS = st.one_of(
    st.tuples(LOBSTER_INTS, LOBSTER_INTS, LOBSTER_INTS, LOBSTER_INTS).map(list),
    st.lists(LOBSTER_INTS, max_size=9),
)


def csv_bytes(draw: Callable[[st.SearchStrategy[Any]], Any],
              rows: st.SearchStrategy[list[str]]) -> bytes:
    lines = [",".join(r).encode() for r in draw(st.lists(rows, max_size=8))]
    if draw(st.integers(0, 4)) == 0:
        lines.append(draw(st.binary(max_size=30)))
    newline: bytes = draw(st.sampled_from([b"\n", b"\r\n"]))
    end: bytes = draw(st.sampled_from([b"", b"\n"]))
    return newline.join(lines) + end


@fuzz(300)
@given(st.data())
def test_read_lobster_yields_events_never_raises(data: st.DataObject) -> None:
    messages = csv_bytes(data.draw, MESSAGE_ROWS)
    orderbook = csv_bytes(data.draw, BOOK_ROWS)
    with tempfile.TemporaryDirectory() as tmp:
        msg_path = Path(tmp) / "AMZN_2012-06-21_34200000_57600000_message_1.csv"
        book_path = Path(tmp) / "AMZN_2012-06-21_34200000_57600000_orderbook_1.csv"
        msg_path.write_bytes(messages)
        book_path.write_bytes(orderbook)
        events = list(read_lobster(msg_path, book_path, LOBSTER_AMZN))
    for event in events:
        assert type(event) in (BookUpdate, Trade, Malformed), event
        check_event(event)
        if isinstance(event, BookUpdate):
            assert event.snapshot and len(event.bids) <= 1 and len(event.asks) <= 1
            assert all(size > 0 for _, size in event.bids + event.asks)


TIME_ZONES = st.one_of(
    st.sampled_from(["America/New_York", "UTC", "America", "Europe", "", "..", "/etc/passwd",
                     "a" * 300, "\x00", "Etc/../UTC", "Nowhere/Else"]),
    st.text(max_size=20),
)


@fuzz(150)
@given(
    st.one_of(st.none(), st.text(max_size=12), st.sampled_from(["2012-06-21", "2012-13-45"])),
    TIME_ZONES,
    st.sampled_from(["AMZN_2012-06-21_x_message_1.csv", "no_date.csv", "AMZN_2012-06-22_x.csv"]),
)
def test_read_lobster_arguments_fail_only_at_call_time(date: str | None, tz: str,
                                                       name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        msg_path = Path(tmp) / name
        book_path = Path(tmp) / "AMZN_2012-06-21_x_orderbook_1.csv"
        msg_path.write_bytes(b"34200.1,1,1,100,2238200,1\n")
        book_path.write_bytes(b"2238300,100,2238200,100\n")
        try:
            iterator = read_lobster(msg_path, book_path, LOBSTER_AMZN, date=date, tz=tz)
        except (RecordingError, ValueError):
            return
        for event in iterator:
            check_event(event)


# ---- (f) the WebSocket API parsers ----------------------------------------------------------

PREFIX = "mm"
PARSED_TYPES = (
    api.Response, api.ProtocolError, api.ExecutionReport, api.ForeignOrder,
    api.AccountPosition, api.OtherEvent,
)  # fmt: skip
CLIENT_IDS = st.sampled_from(["mm-1", "mm-ff", "mm-0", "mm-01", "x-1", "mm-", "-1"])
ORDER_STATUSES = st.sampled_from(["NEW", "FILLED", "PARTIALLY_FILLED", "EXPIRED", "WHAT"])
SIDES = st.sampled_from(["BUY", "SELL", "HOLD"])
EXEC_FIELDS: Fields = {
    "e": ("executionReport", st.text(max_size=6)), "E": (1723161255343, MS),
    "s": ("BTCUSDT", SYMBOLS), "c": ("mm-1", CLIENT_IDS),
    "C": ("", st.sampled_from(["", "null", "mm-2"]) | st.none()), "S": ("BUY", SIDES),
    "x": ("TRADE", st.sampled_from(["NEW", "TRADE", "CANCELED", "EXPIRED"])),
    "X": ("PARTIALLY_FILLED", ORDER_STATUSES), "i": (12, IDS), "p": ("61837.60", DECIMALS),
    "q": ("0.002", DECIMALS), "z": ("0.001", DECIMALS), "l": ("0.001", DECIMALS),
    "L": ("61837.60", DECIMALS), "n": ("0.00000100", DECIMALS),
    "N": ("BTC", st.sampled_from(["USDT", "BTC", "BNB", "XYZ"]) | st.none()),
    "T": (1723161255342, MS), "t": (99, IDS), "m": (True, st.booleans()),
    "r": ("NONE", st.sampled_from(["NONE", "INSUFFICIENT_BALANCE"])),
}  # fmt: skip
BALANCES = st.lists(
    shaped({"a": ("BTC", st.sampled_from(["BTC", "USDT"])), "f": ("1.5", DECIMALS),
            "l": ("0", DECIMALS)}),
    max_size=3,
)
POSITION_FIELDS: Fields = {
    "e": ("outboundAccountPosition", st.text(max_size=6)), "E": (1723161255343, MS),
    "u": (1723161255342, MS), "B": ([{"a": "BTC", "f": "1.5", "l": "0"}], BALANCES),
}  # fmt: skip
RATE_LIMITS = st.lists(
    shaped({"rateLimitType": ("REQUEST_WEIGHT", st.text(max_size=4)),
            "interval": ("MINUTE", st.text(max_size=4)), "intervalNum": (1, st.integers(0, 5)),
            "limit": (6000, st.integers(0, 6000)), "count": (7, st.integers(0, 6000))}),
    max_size=2,
)
RESPONSE_FIELDS: Fields = {
    "id": ("req-1", st.integers(0, 99) | st.text(max_size=4)),
    "status": (200, st.sampled_from([200, 400, 418, 429, 503])),
    "result": ({}, JSON),
    "error": (None, shaped({"code": (-1013, st.integers(-2000, 0)),
                            "msg": ("Filter failure", st.text(max_size=8)),
                            "data": (None, JSON)})),
    "rateLimits": ([], RATE_LIMITS),
}  # fmt: skip
TRADE_FIELDS: Fields = {
    "symbol": ("BTCUSDT", SYMBOLS), "id": (99, IDS), "orderId": (12, IDS),
    "orderListId": (-1, IDS), "price": ("61837.60", DECIMALS), "qty": ("0.001", DECIMALS),
    "quoteQty": ("61.8376", DECIMALS), "commission": ("0.00000100", DECIMALS),
    "commissionAsset": ("BTC", st.sampled_from(["BTC", "USDT", "BNB"])),
    "time": (1723161255342, MS), "isBuyer": (True, st.booleans()),
    "isMaker": (True, st.booleans()), "isBestMatch": (True, st.booleans()),
}  # fmt: skip
ORDER_FIELDS: Fields = {
    "symbol": ("BTCUSDT", SYMBOLS), "origClientOrderId": ("", EXEC_FIELDS["C"][1]),
    "clientOrderId": ("mm-1", CLIENT_IDS), "orderId": (12, IDS),
    "status": ("NEW", ORDER_STATUSES), "side": ("SELL", SIDES),
    "price": ("61837.60", DECIMALS), "origQty": ("0.002", DECIMALS),
    "executedQty": ("0", DECIMALS), "transactTime": (1723161255342, MS), "time": (1, MS),
}  # fmt: skip


@st.composite
def api_frames(draw: st.DrawFn) -> bytes | dict[str, Any]:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.binary(max_size=80))
    if kind == 1:
        obj: Any = draw(JSON)
    elif kind == 2:
        obj = draw(shaped(RESPONSE_FIELDS))
    else:
        event = draw(shaped(EXEC_FIELDS if kind == 3 else POSITION_FIELDS))
        obj = {"subscriptionId": draw(anything_or(st.integers(0, 9))), "event": event}
        if draw(st.booleans()):
            obj = event
    frame = orjson.dumps(obj)
    return obj if type(obj) is dict and draw(st.integers(0, 3)) == 0 else frame


@fuzz(500)
@given(api_frames(), st.sampled_from(MARKETS))
def test_api_parsers_never_raise(frame: bytes | dict[str, Any], market: Market) -> None:
    instrument = INSTRUMENTS[market]
    assets = api.Assets("BTC", "USDT")
    prices = {"BNB": "600.5"}
    results = [
        parse.parse_response(frame),
        parse.parse_event(frame, instrument, PREFIX, assets=assets, asset_prices=prices),
        parse.parse_event(frame, instrument, PREFIX),
        parse.parse_frame(frame, instrument, PREFIX, assets=assets),
    ]
    for result in results:
        assert isinstance(result, PARSED_TYPES), result
    report = results[1]
    if isinstance(report, api.ExecutionReport) and report.fill is not None:
        fill = report.fill
        assert all(map(is_int, (fill.price, fill.size, fill.fee, fill.exec_id, fill.ts_ns)))
        assert fill.price > 0 and fill.size > 0 and fill.exec_id > 0


@fuzz(300)
@given(st.one_of(JSON, shaped(TRADE_FIELDS), shaped(ORDER_FIELDS),
                 st.lists(shaped(TRADE_FIELDS), max_size=3)))
def test_api_result_parsers_never_raise(result: Any) -> None:
    instrument = BINANCE_SPOT_BTCUSDT
    update = parse.order_update_from_result(result, instrument, PREFIX)
    assert isinstance(update, OrderUpdate | api.ForeignOrder | api.ProtocolError)
    trade = parse.parse_account_trade(result, instrument)
    assert isinstance(trade, api.AccountTrade | api.ProtocolError)
    trades = parse.parse_my_trades(result, instrument)
    assert isinstance(trades, list | api.ProtocolError)



def test_api_every_field_with_every_bad_value() -> None:
    """Exhaustive: each user-data event, response and result object with one field wrong."""
    instrument = BINANCE_SPOT_BTCUSDT
    for fields in (EXEC_FIELDS, POSITION_FIELDS):
        for event in one_bad_field(fields):
            for frame in (orjson.dumps({"subscriptionId": 1, "event": event}), event):
                assert isinstance(parse.parse_frame(frame, instrument, PREFIX), PARSED_TYPES)
    for response in one_bad_field(RESPONSE_FIELDS):
        assert isinstance(parse.parse_response(orjson.dumps(response)), PARSED_TYPES)
    for order in one_bad_field(ORDER_FIELDS):
        result = parse.order_update_from_result(order, instrument, PREFIX)
        assert isinstance(result, OrderUpdate | api.ForeignOrder | api.ProtocolError)
    for trade in one_bad_field(TRADE_FIELDS):
        parsed = parse.parse_account_trade(trade, instrument)
        assert isinstance(parsed, api.AccountTrade | api.ProtocolError)
        if isinstance(parsed, api.AccountTrade):
            parse.fill_from_trade(parsed, 1, instrument)  # a parsed trade is usable

# ---- regression tests for the bugs the fuzzing found ----------------------------------------


def _trade(**fields: Any) -> bytes:
    data = {"e": "trade", "E": 5, "T": 4, "s": "BTCUSDT", "t": 77, "p": "61837.63",
            "q": "0.0012", "m": True}
    data.update(fields)
    return orjson.dumps({"stream": "btcusdt@trade", "data": data})


@pytest.mark.parametrize(
    "frame",
    [
        _trade(q=5),  # AttributeError: 'int' object has no attribute 'partition'
        _trade(p=None),
        orjson.dumps({"lastUpdateId": 5, "bids": [[1, 2]], "asks": []}),
        orjson.dumps({"u": 1, "s": "BTCUSDT", "b": 61837.63, "B": "1", "a": "1.00", "A": "1"}),
        orjson.dumps({"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 1, "u": 2,
                      "b": [["1.00", True]], "a": []}),
    ],
)
def test_regression_non_string_price_or_size_is_malformed(frame: bytes) -> None:
    (event,) = decode_checked("spot", frame)
    assert isinstance(event, Malformed) and "not a string" in event.reason


@pytest.mark.parametrize(
    "frame",
    [
        _trade(T="x" * 64),  # was "x" * 64_000_000: 64 MB of exch_ns per frame
        _trade(T=[1, 2, 3]),  # a 3,000,000-element list
        _trade(T=1.5),  # exch_ns a float
        _trade(T=True),
        orjson.dumps({"u": 1, "s": "BTCUSDT", "b": "1.00", "B": "1", "a": "1.01", "A": "1",
                      "T": "1"}),
        orjson.dumps({"lastUpdateId": 5, "bids": [], "asks": [], "E": [0] * 10}),
        orjson.dumps({"e": "depthUpdate", "E": "1", "s": "BTCUSDT", "U": 1, "u": 2,
                      "b": [], "a": []}),
        _trade().replace(b'"T":4', b'"T":17231612553420000000000'),  # a float to orjson
    ],
)
def test_regression_non_integer_time_is_malformed(frame: bytes) -> None:
    (event,) = decode_checked("spot", frame)
    assert isinstance(event, Malformed) and "time" in event.reason


@pytest.mark.parametrize(
    "frame",
    [
        _trade(t="77"),
        _trade(t=None),
        orjson.dumps({"u": "1", "s": "BTCUSDT", "b": "1.00", "B": "1", "a": "1.01", "A": "1"}),
        orjson.dumps({"u": 1.5, "s": "BTCUSDT", "b": "1.00", "B": "1", "a": "1.01", "A": "1"}),
        # beyond 64 bits orjson gives a float (found by fuzz_codec.py: update_id=5.0e19)
        b'{"u":50093244698093250000,"s":"BTCUSDT","b":"1.00","B":"1","a":"1.01","A":"1"}',
    ],
)
def test_regression_non_integer_trade_or_ticker_id_is_malformed(frame: bytes) -> None:
    (event,) = decode_checked("spot", frame)
    assert isinstance(event, Malformed) and "not an integer" in event.reason


def _depth(first: int, last: int, pu: int | None = None, bids: Any = ()) -> bytes:
    data: dict[str, Any] = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": first, "u": last,
                            "b": [list(b) for b in bids], "a": []}
    if pu is not None:
        data["pu"] = pu
    return orjson.dumps({"stream": "btcusdt@depth@100ms", "data": data})


def _snap(last: int) -> bytes:
    return orjson.dumps({"lastUpdateId": last, "bids": [["100.0", "1"]],  # on both grids
                         "asks": [["100.2", "1"]]})


def test_regression_diff_with_a_corrupt_final_id_cannot_wedge_the_book() -> None:
    """One diff whose ``u`` jumped far ahead used to put the codec in sequence at that id:
    every real diff after it was dropped as 'stale' and every snapshot ignored as older,
    while the book stayed ``synced`` (frozen). A stale diff that is not a repeat of what
    was applied is now a gap."""
    m = MarketState(BinanceCodec(BINANCE_SPOT_BTCUSDT, "spot"))
    m.on_frame(1, _snap(100))
    assert [type(e) for e in m.on_frame(2, _depth(101, 10**9))] == [BookUpdate]  # corrupt u
    events = m.on_frame(3, _depth(102, 110, bids=[("100.01", "1")]))  # the real next diff
    (gap,) = events
    assert isinstance(gap, Gap) and "overlaps" in gap.reason
    assert not m.book.synced
    events = m.on_frame(4, _snap(110))
    assert m.book.synced and isinstance(m.codec, BinanceCodec) and m.codec.last_id == 110


def test_regression_repeated_and_older_diffs_are_still_dropped_as_stale() -> None:
    for market, frames_ in (
        ("spot", [_depth(101, 105), _depth(106, 110), _depth(106, 110), _depth(101, 105)]),
        ("usdm", [_depth(95, 105, pu=90), _depth(107, 110, pu=105),
                  _depth(107, 110, pu=105), _depth(90, 100, pu=80)]),
    ):
        codec = BinanceCodec(INSTRUMENTS[market], market)  # type: ignore[arg-type]
        codec.decode(0, _snap(100))
        events = [e for f in frames_ for e in codec.decode(1, f)]
        assert [type(e) for e in events] == [BookUpdate, BookUpdate], market
        assert codec.synced and codec.dropped_stale == 2 and codec.last_id == 110


def test_regression_usdm_diff_overlapping_the_applied_one_is_a_gap() -> None:
    codec = BinanceCodec(BINANCE_USDM_BTCUSDT, "usdm")
    codec.decode(0, _snap(100))
    codec.decode(1, _depth(95, 100, pu=90))  # bridges the snapshot (U <= 100 <= u)
    codec.decode(1, _depth(101, 10**9, pu=100))  # corrupt u, pu in sequence
    (gap,) = codec.decode(2, _depth(101, 105, pu=100))  # the real one: overlaps, not a repeat
    assert isinstance(gap, Gap) and not codec.synced


def test_regression_recording_timestamp_beyond_int64_is_malformed() -> None:
    """A 5,000-digit timestamp made ``int()`` raise ValueError out of read_recording."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.txt"
        path.write_bytes(b"1" * 5000 + b" {}\n" + b"99999999999999999999 {}\n"
                         b"1723161253937085768 {}\n")
        items = list(read_recording([path]))
    assert [type(i) for i in items] == [Malformed, Malformed, tuple]
    assert items[2] == (1723161253937085768, b"{}")


def _write_config(tmp: str, document: bytes) -> Path:
    path = Path(tmp) / "mm.toml"
    path.write_bytes(document)
    return path


def _dryrun_with(section: str, key: str, value: Any) -> bytes:
    """The dry-run config with ``[section] key = value``."""
    data = tomllib.loads(dryrun_text())
    data[section][key] = value
    return toml_document(data).encode()


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"\xff\xfe = 1\n", "not UTF-8"),  # UnicodeDecodeError
        (_dryrun_with("exchange", "taker_fee_bps", "1e999999999"),
         "exchange.taker_fee_bps"),  # decimal.Overflow
        (_dryrun_with("instrument", "lot_size", "1e999999999"),
         "instrument.lot_size"),  # decimal.Overflow
        (_dryrun_with("instrument", "min_notional", "abc"),
         "instrument.min_notional"),  # decimal.InvalidOperation
        (_dryrun_with("instrument", "min_notional", "NaN"),
         "instrument.min_notional"),  # was accepted
        (_dryrun_with("risk", "max_loss", "1e999999999"),
         "risk.max_loss"),  # was accepted: Fraction() of it at start took minutes
        (_dryrun_with("state", "dir", "a\x00b"), "state.dir"),  # ValueError: embedded null
        (_dryrun_with("feed", "recordings", ["x\x00"]), "feed.recordings[0]"),
    ],
)
def test_regression_config_errors_are_config_errors(document: bytes, message: str) -> None:
    with tempfile.TemporaryDirectory() as tmp, pytest.raises(ConfigError, match=re.escape(message)):
        load_config(_write_config(tmp, document))


@pytest.mark.parametrize("tz", ["America", "a" * 300])
def test_regression_lobster_directory_or_long_time_zone_is_a_value_error(tz: str) -> None:
    """``ZoneInfo("America")`` raises IsADirectoryError, a long key ENAMETOOLONG: OSErrors,
    not the documented ValueError."""
    with tempfile.TemporaryDirectory() as tmp, pytest.raises(ValueError, match="time zone"):
        msg = Path(tmp) / "AMZN_2012-06-21_x_message_1.csv"
        book = Path(tmp) / "AMZN_2012-06-21_x_orderbook_1.csv"
        msg.write_bytes(b"")
        book.write_bytes(b"")
        read_lobster(msg, book, LOBSTER_AMZN, tz=tz)


def test_regression_lobster_huge_integer_field_is_malformed() -> None:
    """A 5,000-digit order id made ``int()`` raise ValueError out of the iterator."""
    with tempfile.TemporaryDirectory() as tmp:
        msg = Path(tmp) / "AMZN_2012-06-21_x_message_1.csv"
        book = Path(tmp) / "AMZN_2012-06-21_x_orderbook_1.csv"
        msg.write_bytes(b"34200.5,1," + b"7" * 5000 + b",100,2238200,1\n")
        book.write_bytes(b"2238300,100,2238200,100\n")
        events = list(read_lobster(msg, book, LOBSTER_AMZN))
    assert [type(e) for e in events] == [Malformed, BookUpdate]
    assert "order id" in events[0].reason  # type: ignore[union-attr]


@pytest.mark.parametrize("text", ["1e-999999999", "1e999999999", "1" * 200])
def test_regression_api_decimal_of_absurd_size_is_a_protocol_error(text: str) -> None:
    """An exponent like 1e-999999999 is a finite Decimal; turning the commission into an
    exact Fraction then took minutes (and gigabytes) inside a parser that must not block."""
    event = {"e": "executionReport", "E": 1, "s": "BTCUSDT", "c": "mm-1", "C": "", "S": "BUY",
             "x": "TRADE", "X": "FILLED", "i": 9, "p": "1.00", "q": "1", "z": "1", "l": "1",
             "L": "1.00", "n": text, "N": "USDT", "T": 2, "t": 3, "m": True}
    result = parse.parse_event(orjson.dumps({"event": event}), BINANCE_SPOT_BTCUSDT, PREFIX)
    assert isinstance(result, api.ProtocolError) and "'n'" in result.reason
    event["n"] = "0.00012345"
    result = parse.parse_event(orjson.dumps({"event": event}), BINANCE_SPOT_BTCUSDT, PREFIX)
    assert isinstance(result, api.ExecutionReport) and result.commission == Decimal("0.00012345")


def test_fuzz_reference_replay_is_clean() -> None:
    """The mutation test's premise: the first 3000 real frames replay without a gap, with
    the snapshot at line 8, and every checkpoint is a consistent book."""
    ref = reference()
    keys = sorted(ref)
    assert keys[0] == 8 and len(depth_indices()) > 100
    for bids, asks, _ in (ref[keys[0]], ref[keys[-1]]):
        assert bids and asks and max(bids) < min(asks)
    assert bisect.bisect_left(keys, len(real_frames())) == len(keys) - 1
