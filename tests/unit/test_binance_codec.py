"""Binance codec: decoding, the official sync rules (spot and USD-M), bad input."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from mmdaemon.market import MarketState
from mmdaemon.model import (
    BINANCE_SPOT_BTCUSDT,
    BINANCE_USDM_BTCUSDT,
    BookUpdate,
    Gap,
    Malformed,
    Side,
    TopOfBook,
    Trade,
)
from mmdaemon.venues.binance import BinanceCodec, SyncState


def depth(first: int, last: int, bids: Any = (), asks: Any = (), pu: int | None = None) -> bytes:
    data: dict[str, Any] = {
        "e": "depthUpdate",
        "E": 1000,
        "s": "BTCUSDT",
        "U": first,
        "u": last,
        "b": [list(x) for x in bids],
        "a": [list(x) for x in asks],
    }
    if pu is not None:
        data["pu"] = pu
    return orjson.dumps({"stream": "btcusdt@depth@100ms", "data": data})


def snapshot(
    last: int, bids: Any = (("100.00", "1.0"),), asks: Any = (("100.01", "1.0"),)
) -> bytes:
    return orjson.dumps(
        {"lastUpdateId": last, "bids": [list(x) for x in bids], "asks": [list(x) for x in asks]}
    )


def kinds(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def spot() -> BinanceCodec:
    return BinanceCodec(BINANCE_SPOT_BTCUSDT, "spot")


def test_spot_buffers_until_snapshot_then_drops_old_and_bridges() -> None:
    c = spot()
    assert c.decode(1, depth(90, 95)) == []  # buffered
    assert c.decode(2, depth(96, 104, bids=[("100.00", "2.0")])) == []
    assert c.decode(3, depth(105, 110)) == []
    events = c.decode(4, snapshot(100))
    # 90-95 dropped (u <= 100), 96-104 bridges (96 <= 101 <= 104), 105-110 follows
    assert kinds(events) == ["BookUpdate", "BookUpdate", "BookUpdate"]
    assert [e.last_id for e in events] == [100, 104, 110]
    assert events[0].snapshot and events[1].bids == [(10000, 200000000)]
    assert c.state is SyncState.SYNCED and c.dropped_stale == 1
    assert kinds(c.decode(5, depth(111, 112))) == ["BookUpdate"]


def test_spot_gap_after_sync_and_resync_from_next_snapshot() -> None:
    c = spot()
    c.decode(1, snapshot(100))
    assert kinds(c.decode(2, depth(101, 105))) == ["BookUpdate"]
    gap = c.decode(3, depth(107, 109))  # 106 missing
    assert kinds(gap) == ["Gap"] and gap[0].expected_id == 106 and gap[0].got_id == 107
    assert not c.synced
    assert c.decode(4, depth(110, 112)) == []  # buffered again, not applied
    events = c.decode(5, snapshot(108))
    # the diff that broke (107-109) bridges the new snapshot: 107 <= 109 <= 109
    assert [e.last_id for e in events] == [108, 109, 112]
    assert c.synced


def test_spot_snapshot_older_than_stream_is_a_gap() -> None:
    c = spot()
    c.decode(1, depth(120, 130))
    events = c.decode(2, snapshot(100))  # needs a diff with U <= 101 <= u
    assert kinds(events) == ["BookUpdate", "Gap"]
    assert events[1].reason == "snapshot older than stream"
    assert not c.synced


def test_duplicate_diff_is_dropped_not_a_gap() -> None:
    c = spot()
    c.decode(1, snapshot(100))
    c.decode(2, depth(101, 105))
    assert c.decode(3, depth(101, 105)) == []
    assert c.synced and c.dropped_stale == 1
    assert kinds(c.decode(4, depth(106, 107))) == ["BookUpdate"]


def test_usdm_rules_use_pu_chain() -> None:
    c = BinanceCodec(BINANCE_USDM_BTCUSDT, "usdm")
    c.decode(1, depth(50, 99, pu=49))  # dropped: u < lastUpdateId
    c.decode(2, depth(100, 120, pu=99))  # bridges: U <= 110 <= u
    snap = snapshot(110, bids=[("61800.2", "1.000")], asks=[("61800.3", "2.000")])
    events = c.decode(3, snap)
    assert [e.last_id for e in events] == [110, 120]
    # futures ids jump: continuity is pu == previous u, not U == u + 1
    assert kinds(c.decode(4, depth(130, 140, pu=120))) == ["BookUpdate"]
    gap = c.decode(5, depth(150, 160, pu=145))
    assert kinds(gap) == ["Gap"]


def test_usdm_first_diff_may_end_exactly_at_snapshot_id() -> None:
    c = BinanceCodec(BINANCE_USDM_BTCUSDT, "usdm")
    c.decode(1, snapshot(110, bids=[("1.0", "1.000")], asks=[("1.1", "1.000")]))
    # spot would drop this (u <= lastUpdateId); futures applies it (U <= 110 <= u)
    assert kinds(c.decode(2, depth(100, 110, pu=99))) == ["BookUpdate"]


def test_usdm_first_diff_continuing_exactly_from_the_snapshot_id_syncs() -> None:
    """A snapshot taken just after the venue sent diff k (lastUpdateId = u_k) to a
    connection that subscribed after k went out: the first diff it gets is k+1, whose ``U``
    is above lastUpdateId (futures ids jump) but whose ``pu`` is exactly lastUpdateId. It
    continues the snapshot's book with nothing missed: applied, not a gap (the sim's
    snapshots are always taken on such a boundary; a recorder does not refetch)."""
    c = BinanceCodec(BINANCE_USDM_BTCUSDT, "usdm")
    c.decode(1, snapshot(110, bids=[("1.0", "1.000")], asks=[("1.1", "1.000")]))
    assert kinds(c.decode(2, depth(130, 140, pu=110))) == ["BookUpdate"]
    assert c.state is SyncState.SYNCED and c.last_id == 140
    # a diff that skips ids past the snapshot is still a gap
    c2 = BinanceCodec(BINANCE_USDM_BTCUSDT, "usdm")
    c2.decode(1, snapshot(110, bids=[("1.0", "1.000")], asks=[("1.1", "1.000")]))
    assert kinds(c2.decode(2, depth(130, 140, pu=120))) == ["Gap"]


def test_trade_and_book_ticker_decoding() -> None:
    c = spot()
    trade = {
        "stream": "btcusdt@trade",
        "data": {
            "e": "trade",
            "E": 5,
            "T": 4,
            "s": "BTCUSDT",
            "t": 77,
            "p": "61837.63000000",
            "q": "0.00120000",
            "m": True,
            "M": True,
        },
    }
    (t,) = c.decode(9, orjson.dumps(trade))
    assert t == Trade(6183763, 120000, Side.SELL, 77, 4_000_000, 9)  # buyer was maker: sold
    trade["data"]["m"] = False
    assert c.decode(9, orjson.dumps(trade))[0].aggressor is Side.BUY
    ticker = {
        "stream": "btcusdt@bookTicker",
        "data": {
            "u": 5,
            "s": "BTCUSDT",
            "b": "1.00",
            "B": "2.00000000",
            "a": "1.01",
            "A": "0.00000001",
        },
    }
    assert c.decode(3, orjson.dumps(ticker)) == [TopOfBook(5, 100, 200000000, 101, 1, 0, 3)]
    # raw (non-combined) frames decode too
    assert c.decode(3, orjson.dumps(ticker["data"]))[0] == TopOfBook(
        5, 100, 200000000, 101, 1, 0, 3
    )
    assert c.decode(3, b'{"result":null,"id":1}') == []


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpd', "bad JSON"),
        (b"not json at all", "bad JSON"),
        (b"[1,2]", "not a JSON object"),
        (b'{"stream":"btcusdt@kline_1m","data":{}}', "unknown stream 'btcusdt@kline_1m'"),
        (
            b'{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","t":1,"p":"abc",'
            b'"q":"1.0","m":true}}',
            "trade: not a plain decimal number: 'abc'",
        ),
        (
            b'{"stream":"btcusdt@trade","data":{"e":"trade","s":"ETHUSDT","t":1,"p":"1.00",'
            b'"q":"1.0","m":true}}',
            "symbol 'ETHUSDT', expected 'BTCUSDT'",
        ),
        (
            b'{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"1.00"}}',
            "bookTicker: missing field 'B'",
        ),
        (b'{"e":"somethingElse"}', "unrecognised frame"),
    ],
)
def test_malformed_frames_are_reported_with_a_reason(frame: bytes, reason: str) -> None:
    (event,) = spot().decode(42, frame)
    assert isinstance(event, Malformed)
    assert reason in event.reason and event.recv_ns == 42


def test_malformed_depth_update_never_touches_the_book_and_fails_closed() -> None:
    reports: list[tuple[str, dict[str, Any]]] = []
    m = MarketState(spot(), lambda name, **f: reports.append((name, f)))
    m.on_frame(1, snapshot(100, bids=[("100.00", "1.0")], asks=[("100.02", "1.0")]))
    m.on_frame(2, depth(101, 101, bids=[("100.01", "3.0")]))
    before = (m.book.bids.top(10), m.book.asks.top(10))
    bad_size = depth(102, 102, bids=[("100.00", "5.0")], asks=[("100.02", "-1.0")])
    events = m.on_frame(3, bad_size)
    assert kinds(events) == ["Malformed", "Gap"]
    assert "negative value '-1.0'" in events[0].reason
    assert (m.book.bids.top(10), m.book.asks.top(10)) == before  # first level not half-applied
    assert not m.book.synced and m.malformed == 1 and m.gaps == 1
    assert [name for name, _ in reports] == ["frame_malformed", "book_gap"]
    bad_price = depth(103, 103, bids=[("1O0.00", "5.0")])
    assert kinds(m.on_frame(4, bad_price)) == ["Malformed"]  # already unsynced: no 2nd gap
    assert (m.book.bids.top(10), m.book.asks.top(10)) == before


def test_crossed_book_is_counted_invalidated_and_needs_a_snapshot() -> None:
    m = MarketState(spot())
    m.on_frame(1, snapshot(100, bids=[("100.00", "1.0")], asks=[("100.02", "1.0")]))
    events = m.on_frame(2, depth(101, 101, bids=[("100.05", "1.0")]))
    assert kinds(events) == ["BookUpdate", "Gap"] and events[1].reason == "crossed book"
    assert m.crossed == 1 and not m.book.synced and not m.codec.synced  # type: ignore[attr-defined]
    m.on_frame(3, depth(102, 102))
    assert not m.book.synced
    m.on_frame(4, snapshot(102, bids=[("100.00", "1.0")], asks=[("100.02", "1.0")]))
    assert m.book.synced and m.resyncs == 1


def test_buffer_is_bounded_while_waiting_for_a_snapshot() -> None:
    c = BinanceCodec(BINANCE_SPOT_BTCUSDT, "spot", max_buffer=3)
    for i in range(10):
        c.decode(i, depth(10 * i + 1, 10 * i + 10))
    assert len(c._buffer) == 3
    events = c.decode(99, snapshot(75))  # 71-80 bridges; the oldest kept diff
    assert [e.last_id for e in events if isinstance(e, BookUpdate)] == [75, 80, 90, 100]
    assert not any(isinstance(e, Gap) for e in events)


def test_buffer_is_bounded_by_its_levels_not_only_its_count() -> None:
    """The review's attack: large valid diffs (here 25,000 levels each, a ~800 KB frame)
    while the snapshot is slow. The default codec keeps at most 1,000,000 levels however
    many diffs come; a snapshot that the newest kept diffs bridge still syncs, and one
    older than what is kept is a Gap, so the shell fetches a newer one."""
    bids = [(f"{50_000 + i // 100}.{i % 100:02d}", "0.5") for i in range(12_500)]
    asks = [(f"{70_000 + i // 100}.{i % 100:02d}", "0.5") for i in range(12_500)]
    per_diff = len(bids) + len(asks)
    for sync_at in (None, 1):  # a snapshot that bridges the kept diffs, then one too old
        c = spot()
        for i in range(100):  # 2,500,000 levels sent, 100 diffs: far under the count bound
            c.decode(i, depth(10 * i + 1, 10 * i + 10, bids=bids, asks=asks))
            held = sum(len(u.bids) + len(u.asks) for *_, u in c._buffer)
            assert held <= 1_000_000
        assert held == c._buffer_levels  # the running total the bound is kept by is exact
        kept = [first for first, *_ in c._buffer]
        assert len(kept) == 1_000_000 // per_diff and kept[-1] == 991  # the newest kept
        if sync_at is None:
            events = c.decode(200, snapshot(kept[0] + 4))  # bridged by the oldest kept
            assert kinds(events) == ["BookUpdate"] * (1 + len(kept)) and c.synced
            assert c.state is SyncState.SYNCED and c.last_id == 1000
        else:  # the diffs it needs were dropped: a gap, and the codec waits for another
            events = c.decode(200, snapshot(sync_at))
            assert kinds(events) == ["BookUpdate", "Gap"] and not c.synced
            # the kept diffs stay buffered: a newer snapshot syncs from the newest
            events = c.decode(201, snapshot(kept[-1] + 4))
            assert kinds(events) == ["BookUpdate", "BookUpdate"] and events[0].snapshot
            assert c.state is SyncState.SYNCED and c.last_id == 1000
