"""The L2 book against a naive reference, plus its derived quantities by hand."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmdaemon.book import OrderBook
from mmdaemon.model import BookUpdate, Level


class NaiveBook:
    """Reference: plain dicts, sorted on every read."""

    def __init__(self) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}

    def apply(self, u: BookUpdate) -> None:
        if u.snapshot:
            self.bids = {p: s for p, s in u.bids if s}
            self.asks = {p: s for p, s in u.asks if s}
            return
        for side, levels in ((self.bids, u.bids), (self.asks, u.asks)):
            for p, s in levels:
                if s:
                    side[p] = s
                else:
                    side.pop(p, None)

    def top(self, n: int) -> tuple[list[Level], list[Level]]:
        bids = sorted(self.bids.items(), reverse=True)[:n]
        asks = sorted(self.asks.items())[:n]
        return bids, asks


def upd(bids: list[Level], asks: list[Level], snapshot: bool = False) -> BookUpdate:
    return BookUpdate(snapshot, bids, asks, 0, 0, 0, 0)


prices = st.integers(min_value=1, max_value=60)
sizes = st.integers(min_value=0, max_value=5)  # 0 deletes, often
levels = st.lists(st.tuples(prices, sizes), max_size=12)
updates = st.lists(st.tuples(st.booleans(), levels, levels), min_size=1, max_size=40)


@settings(max_examples=300)
@given(updates)
def test_book_matches_naive_reference(steps: list[tuple[bool, list[Level], list[Level]]]) -> None:
    book, ref = OrderBook(), NaiveBook()
    for is_snapshot, bids, asks in steps:
        update = upd(bids, asks, is_snapshot)
        book.apply(update)
        ref.apply(update)
        ref_bids, ref_asks = ref.top(1000)
        assert book.bids.top(1000) == ref_bids
        assert book.asks.top(1000) == ref_asks
        assert book.bids.top(3) == ref_bids[:3]
        assert book.best_bid() == (ref_bids[0][0] if ref_bids else None)
        assert book.best_ask() == (ref_asks[0][0] if ref_asks else None)
        assert len(book.bids) == len(ref.bids) and len(book.asks) == len(ref.asks)
        crossed = bool(ref_bids and ref_asks and ref_bids[0][0] >= ref_asks[0][0])
        assert book.is_crossed() is crossed


wide_prices = st.integers(min_value=1, max_value=200)
wide_levels = st.lists(st.tuples(wide_prices, sizes), max_size=40)


@settings(max_examples=300)
@given(st.lists(st.tuples(st.booleans(), wide_levels, wide_levels), min_size=1, max_size=40),
       st.sampled_from([(1, 1, 2), (2, 4, 8), (3, 5, 6)]))
def test_a_small_sorted_region_refills_and_trims_exactly(
    steps: list[tuple[bool, list[Level], list[Level]]], region: tuple[int, int, int]
) -> None:
    """The sorted top region sized down to a few levels, so that trims (beyond ``most``),
    refills (below ``least``) and reads deeper than the region all happen: every read
    equals the reference's, and the region holds exactly the levels above its floor."""
    book, ref = OrderBook(*region), NaiveBook()
    for is_snapshot, bids, asks in steps:
        update = upd(bids, asks, is_snapshot)
        book.apply(update)
        ref.apply(update)
        book.bids.check()
        book.asks.check()
        ref_bids, ref_asks = ref.top(1000)
        for n in (1, 2, 5, 9, 1000):
            assert book.bids.top(n) == ref_bids[:n]
            assert book.asks.top(n) == ref_asks[:n]
            assert book.bids.weighted_size(n) == pytest.approx(
                sum(s / (i + 1) for i, (_, s) in enumerate(ref_bids[:n])))
        assert book.best_bid() == (ref_bids[0][0] if ref_bids else None)
        assert book.best_ask() == (ref_asks[0][0] if ref_asks else None)
        assert len(book.bids) == len(ref.bids) and len(book.asks) == len(ref.asks)


def test_deep_changes_leave_the_sorted_region_alone() -> None:
    """Below the region's floor a change touches the dict only: the region stays as it
    was (the point of the design: deep churn moves no list memory)."""
    book = OrderBook(2, 3, 5)
    book.apply(upd([(p, 1) for p in range(100, 90, -1)], [], snapshot=True))
    region = list(book.bids._keys)
    assert region == [98, 99, 100]
    book.apply(upd([(91, 0), (50, 7), (92, 3)], []))
    assert book.bids._keys == region and book.bids.levels[50] == 7 and 91 not in book.bids.levels
    book.apply(upd([(100, 0), (99, 0)], []))  # the region falls below `least`: refilled
    assert book.bids._keys == [96, 97, 98] and book.best_bid() == 98
    book.bids.check()


def test_region_sizes_are_checked() -> None:
    with pytest.raises(ValueError, match="least <= keep < most"):
        OrderBook(4, 2, 8)


def test_delete_absent_level_is_fine_and_zero_size_snapshot_levels_are_skipped() -> None:
    book = OrderBook()
    book.apply(upd([(100, 5), (99, 0)], [(101, 3)], snapshot=True))
    book.apply(upd([(98, 0)], [(150, 0)]))
    assert book.bids.top(5) == [(100, 5)]
    assert book.asks.top(5) == [(101, 3)]


def test_mid_weighted_mid_imbalance_by_hand() -> None:
    book = OrderBook()
    assert book.mid() is None and book.weighted_mid() is None and book.imbalance(5) == 0.0
    book.apply(upd([(100, 30), (99, 20)], [(102, 10), (103, 40)], snapshot=True))
    assert book.mid() == 101.0
    # weighted mid = (bid * ask_size + ask * bid_size) / (bid_size + ask_size)
    #            = (100*10 + 102*30) / 40 = 4060/40 = 101.5 (leans to the thin ask)
    assert book.weighted_mid() == pytest.approx(101.5)
    # weights 1, 1/2: bid = 30 + 20/2 = 40, ask = 10 + 40/2 = 30 -> (40-30)/70
    assert book.imbalance(2) == pytest.approx(10 / 70)
    assert book.imbalance(1) == pytest.approx((30 - 10) / 40)
    assert not book.is_crossed()
    book.apply(upd([(102, 1)], []))  # locked
    assert book.is_crossed()


def test_snapshot_marks_synced_and_invalidate_clears_it() -> None:
    book = OrderBook()
    assert not book.synced
    book.apply(BookUpdate(True, [(1, 1)], [(2, 1)], 7, 7, 0, 0))
    assert book.synced and book.last_id == 7
    book.invalidate()
    assert not book.synced
