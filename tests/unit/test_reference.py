"""The reference venue (mmdaemon.reference): its own book and sync rules, the exact
conversion of its mid into the traded instrument's ticks, the basis EWMA on event time, the
lead-lag fair value, staleness and its episodes; on the real USD-M recording where it can."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import orjson
import pytest

from mmdaemon.config import ReferenceConfig
from mmdaemon.feed.recording import read_recording
from mmdaemon.model import BINANCE_SPOT_BTCUSDT, Instrument, Malformed
from mmdaemon.quoting.fair_value import FairValueParams
from mmdaemon.quoting.quoter import Quoter, QuoterParams
from mmdaemon.reference import REFERENCE_STALE, Reference
from mmdaemon.risk.state import RiskState, TradingState

MS = 1_000_000
S = 1_000_000_000
T0 = 1_723_161_255_000 * MS  # 2024-08-08 23:54:15 UTC, in ns


class Log:
    """The lines a component logs, as (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append(("warning", event, fields))

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append(("info", event, fields))

    def events(self) -> list[str]:
        return [event for _, event, _ in self.lines]


def usdm(tick: str = "0.1", symbol: str = "BTCUSDT", **kw: Any) -> ReferenceConfig:
    return ReferenceConfig(venue="binance-usdm", symbol=symbol, tick_size=tick,
                           lot_size="0.001", recordings=("x.gz",), **kw)


def snapshot(update_id: int, bid: str, ask: str) -> bytes:
    return orjson.dumps({"lastUpdateId": update_id, "E": 1, "T": 1,
                         "bids": [[bid, "1.000"]], "asks": [[ask, "1.000"]]})


def diff(prev: int, first: int, last: int, bids: list[list[str]], asks: list[list[str]],
         symbol: str = "BTCUSDT") -> bytes:
    """A USD-M depth diff (``pu`` chains it to the one before)."""
    return orjson.dumps({"stream": f"{symbol.lower()}@depth@0ms", "data": {
        "e": "depthUpdate", "E": 1, "T": 1, "s": symbol, "U": first, "u": last, "pu": prev,
        "b": bids, "a": asks}})


def synced(ref: Reference, at_ns: int, bid: str = "61800.0", ask: str = "61800.1") -> None:
    """Sync ``ref``'s book: a snapshot, then the diff across it (USD-M rules)."""
    ref.on_frame(at_ns, snapshot(100, bid, ask))
    ref.on_frame(at_ns, diff(99, 99, 101, [[bid, "2.000"]], []))
    assert ref.book.synced


def test_reference_mid_is_converted_into_traded_ticks_exactly() -> None:
    # USD-M tick 0.1 against spot tick 0.01: one reference tick is ten traded ticks
    ref = Reference(usdm(), BINANCE_SPOT_BTCUSDT, Log())
    synced(ref, T0, "61800.0", "61800.1")
    assert ref.mid_ticks() == 6_180_005.0  # 61800.05 USDT / 0.01
    # a ratio below one, not a power of ten: tick 0.25 against a traded tick of 0.1
    quarter = Reference(usdm("0.25"), Instrument("BTCUSDT", "0.1", "0.001"), Log())
    synced(quarter, T0, "61800.25", "61800.75")
    mid = quarter.mid_ticks()
    assert mid is not None
    assert Decimal(mid) * Decimal("0.1") == Decimal("61800.5")


def test_the_first_traded_event_sets_the_basis_and_the_fair_value_follows_the_reference() -> None:
    ref = Reference(usdm(), BINANCE_SPOT_BTCUSDT, Log())
    synced(ref, T0)
    local = 6_180_300.0  # spot 3 USDT above the perpetual's mid
    assert ref.fair(local, 1, T0) == local  # basis = local - reference mid
    assert ref.basis_ticks == pytest.approx(local - 6_180_005.0)
    # the perpetual moves up 1 USDT; the spot book has not changed (same update id): the
    # move reaches the fair value at once, and the basis is not sampled on the lag
    ref.on_frame(T0 + 10 * MS, diff(101, 102, 102, [["61801.0", "1.000"]], [["61801.1", "1"],
                                                                              ["61800.1", "0"]]))
    moved = ref.fair(local, 1, T0 + 10 * MS)
    assert moved == pytest.approx(local + 100.0)
    assert ref.basis_updates == 1


def test_the_basis_moves_half_way_to_a_new_difference_in_one_half_life() -> None:
    ref = Reference(usdm(basis_halflife_s=10.0), BINANCE_SPOT_BTCUSDT, Log())
    synced(ref, T0)
    ref.fair(6_180_005.0 + 200.0, 1, T0)  # basis 200 ticks
    # keep the reference fresh for 10 s with tickers at the same prices
    for i in range(1, 11):
        ref.on_frame(T0 + i * S, ticker(102 + i, "61800.0", "61800.1"))
    ref.fair(6_180_005.0 + 400.0, 2, T0 + 10 * S)  # a new traded event, difference 400
    assert ref.basis_ticks == pytest.approx(300.0)  # 200 + (1 - 2^-1) x 200
    ref.fair(6_180_005.0 + 400.0, 2, T0 + 10 * S + 1)  # same traded book: no update
    assert ref.basis_updates == 2


def ticker(update_id: int, bid: str, ask: str, symbol: str = "BTCUSDT") -> bytes:
    return orjson.dumps({"stream": f"{symbol.lower()}@bookTicker", "data": {
        "e": "bookTicker", "u": update_id, "s": symbol, "b": bid, "B": "1.000", "a": ask,
        "A": "1.000", "T": 1, "E": 1}})


def test_a_newer_ticker_moves_the_reference_top_before_the_depth_stream() -> None:
    ref = Reference(usdm(), BINANCE_SPOT_BTCUSDT, Log())
    synced(ref, T0)
    assert ref.on_frame(T0 + MS, ticker(150, "61805.0", "61805.1"))  # newer than the book
    assert ref.top() == (618050, 618051)
    assert not ref.on_frame(T0 + 2 * MS, ticker(90, "61700.0", "61700.1"))  # older: ignored


def test_a_stale_reference_falls_back_to_the_local_fair_value_once_per_episode() -> None:
    log = Log()
    ref = Reference(usdm(stale_ms=500), BINANCE_SPOT_BTCUSDT, log)
    assert not ref.track(T0) and ref.episodes == 1  # the wait for the first sync
    synced(ref, T0)
    assert ref.track(T0) and ref.ok
    assert ref.fair(6_180_100.0, 1, T0 + 500 * MS) == pytest.approx(6_180_100.0)  # fresh
    assert ref.lead_lag_quotes == 1
    assert ref.fair(6_180_100.0, 2, T0 + 501 * MS) == 6_180_100.0  # 501 ms: stale
    assert ref.fallback_quotes == 1
    assert ref.track(T0 + 501 * MS) and not ref.ok
    assert not ref.track(T0 + 900 * MS)  # the same episode: no second line
    assert log.events().count("reference_unusable") == 2  # the start, and this one
    assert ref.episodes == 2
    ref.on_frame(T0 + S, ticker(200, "61800.0", "61800.1"))
    assert ref.track(T0 + S) and ref.ok
    assert ref.summary(T0 + S, Fraction("0.01"))["unusable_s"] == pytest.approx(0.499)


def test_halt_raises_and_clears_reference_stale_in_the_risk_state() -> None:
    changes: list[tuple[str, str, str]] = []
    risk = RiskState(lambda old, new, why, values: changes.append((old.value, new.value, why)),
                     halts={REFERENCE_STALE: {}})
    ref = Reference(usdm(stale_ms=500, on_stale="halt"), BINANCE_SPOT_BTCUSDT, Log())
    synced(ref, T0)
    assert ref.check(T0, risk) and risk.state is TradingState.ACTIVE
    assert not ref.check(T0 + 500 * MS, risk)  # exactly the limit: not yet stale
    assert ref.check(T0 + 500 * MS + 1, risk) and risk.state is TradingState.HALTED
    assert changes[-1] == ("ACTIVE", "HALTED", REFERENCE_STALE)
    # 1 ns over the limit is reported over it (rounded up to the us), never as 500.0
    assert risk.halts[REFERENCE_STALE]["age_ms"] == 500.001


def test_a_sequence_gap_makes_the_reference_unusable_and_asks_for_a_snapshot() -> None:
    ref = Reference(usdm(), BINANCE_SPOT_BTCUSDT, Log())
    synced(ref, T0)
    ref.on_frame(T0 + MS, diff(500, 501, 502, [], []))  # pu 500 is not the last u (101)
    assert ref.need_snapshot and not ref.book.synced
    assert ref.fair(1.0, 1, T0 + MS) == 1.0 and not ref.usable(T0 + MS)


def test_lead_lag_quotes_on_the_reference_and_other_modes_ignore_it() -> None:
    ref = Reference(usdm(), BINANCE_SPOT_BTCUSDT, Log())
    synced(ref, T0)
    lead = Quoter(BINANCE_SPOT_BTCUSDT, QuoterParams(fair_value=FairValueParams(mode="lead_lag")),
                  ref)
    local = Quoter(BINANCE_SPOT_BTCUSDT, QuoterParams(), ref)
    from mmdaemon.book import OrderBook
    from mmdaemon.model import BookUpdate

    book = OrderBook()
    book.apply(BookUpdate(True, [(6_180_300, 10)], [(6_180_301, 10)], 7, 7, 0, T0))
    assert lead.on_book(book, T0).fair == local.on_book(book, T0).fair  # basis just set
    ref.on_frame(T0 + MS, ticker(150, "61805.0", "61805.1"))  # the perpetual +5 USDT
    assert lead.on_book(book, T0 + MS).fair == pytest.approx(
        local.on_book(book, T0 + MS).fair + 500.0)
    assert ref.lead_lag_quotes == 2  # the local quoter never asked it


def test_the_real_usdm_recording_syncs_and_tracks_its_own_book(usdm_file: Path) -> None:
    ref = Reference(usdm(), BINANCE_SPOT_BTCUSDT, Log())
    mids = []
    for item in read_recording([usdm_file]):
        if isinstance(item, Malformed):
            continue
        ref.on_frame(*item)
        mid = ref.mid_ticks()
        if mid is not None:
            mids.append(mid)
    m = ref.market
    assert (m.snapshots, m.gaps, m.crossed) == (1, 0, 0)
    # SOURCE.md: final best 61659.70 / 61659.80, in spot ticks
    assert mids[-1] == 6_165_975.0
    assert all(math.isfinite(x) for x in mids) and len(mids) > 90_000
