"""Property tests: for any book, parameters and inventory within limits, the quote is on the
tick grid, passive, two-sided with bid < ask, sized within limits on the size grid; and the
skew is monotone in inventory."""

from __future__ import annotations

from decimal import ROUND_CEILING
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from mmdaemon.book import OrderBook
from mmdaemon.model import (
    BINANCE_SPOT_BTCUSDT,
    BINANCE_USDM_BTCUSDT,
    BookUpdate,
    Fill,
    Instrument,
    Level,
    Quote,
    Side,
)
from mmdaemon.quoting import (
    AdverseParams,
    FairValueParams,
    Quoter,
    QuoterParams,
    SizingParams,
    SkewParams,
    SpreadParams,
    VolatilityParams,
)
from mmdaemon.quoting.adverse import TOXIC_ACTIONS
from mmdaemon.quoting.fair_value import FAIR_VALUE_MODES
from mmdaemon.quoting.microprice_fit import MicropriceTable
from mmdaemon.quoting.skew import SKEW_MODES

INSTRUMENTS = (BINANCE_SPOT_BTCUSDT, BINANCE_USDM_BTCUSDT)


def side_levels(draw: st.DrawFn, best: int, direction: int) -> list[Level]:
    gaps = draw(st.lists(st.integers(1, 20), min_size=0, max_size=7))
    sizes = draw(st.lists(st.integers(1, 10**9), min_size=len(gaps) + 1, max_size=len(gaps) + 1))
    prices = [best]
    for gap in gaps:
        prices.append(prices[-1] + direction * gap)
    return list(zip(prices, sizes, strict=True))


@st.composite
def books(draw: st.DrawFn, best_bid: int | None = None) -> OrderBook:
    """A synced book from a snapshot: 1-8 levels a side, spread 1-50 ticks."""
    if best_bid is None:
        best_bid = draw(st.integers(1_000, 10_000_000))
    spread = draw(st.integers(1, 50))
    bids = side_levels(draw, best_bid, -1)
    asks = side_levels(draw, best_bid + spread, +1)
    book = OrderBook()
    book.apply(BookUpdate(True, bids, asks, 1, 1, 0, 0))
    return book


@st.composite
def quoter_params(draw: st.DrawFn) -> QuoterParams:
    floats = st.floats
    mode = draw(st.sampled_from(FAIR_VALUE_MODES))
    table = None
    if mode == "stoikov":  # any fitted table: a few ticks either way, some states unfitted
        buckets, spreads = draw(st.sampled_from((1, 3, 5, 7))), draw(st.integers(1, 3))
        g = draw(st.lists(st.none() | floats(-3, 3), min_size=buckets * spreads,
                          max_size=buckets * spreads))
        table = MicropriceTable("binance-spot", "BTCUSDT", "0.01", buckets, spreads, tuple(g))
    return QuoterParams(
        fair_value=FairValueParams(
            mode=mode,
            l1_shift_ticks=draw(floats(0, 5)),
            depth_levels=draw(st.integers(1, 10)),
            depth_sensitivity_bps=draw(floats(0, 10)),
            stoikov_table="table.json" if table else "",
            stoikov=table,
        ),
        volatility=VolatilityParams(
            estimator=draw(st.sampled_from(("ewma", "rolling"))),
            warmup_samples=draw(st.integers(1, 5)),
            min_interval_ns=draw(st.integers(0, 10**8)),
            max_interval_ns=0,
            prior_annual_vol=draw(floats(0, 3)),
        ),
        spread=SpreadParams(
            base_bps=draw(floats(0, 50)),
            vol_mult=draw(floats(0, 3)),
            horizon_s=draw(floats(0, 60)),
            maker_fee_bps=draw(floats(-5, 10)),
            market_spread_fraction=draw(floats(0, 2)),
            min_half_spread_ticks=draw(floats(0.5, 10)),
        ),
        skew=SkewParams(
            mode=draw(st.sampled_from(SKEW_MODES)),
            linear_coef_bps=draw(floats(0, 50)),
            gamma=draw(floats(1e-5, 1e-1)),
            kappa_per_tick=draw(floats(1e-4, 1.0)),
            glft_a_per_s=draw(floats(0.01, 100)),
            glft_delta_q=draw(floats(0.1, 5)),
            as_tau_s=draw(floats(0, 60)),
        ),
        sizing=SizingParams(
            base_size_lots=draw(st.integers(1, 10**7)),
            max_inventory_lots=draw(st.integers(1, 10**8)),
            growing_side_fraction=draw(floats(0, 1)),
            reduce_side_min_fraction=draw(floats(0, 1)),
        ),
        adverse=AdverseParams(
            toxic_action=draw(st.sampled_from(TOXIC_ACTIONS)), toxic_min_markouts=1
        ),
    )


def min_notional_units(inst: Instrument) -> int:
    unit = inst.tick_size * inst.lot_size
    return int((inst.min_notional / unit).to_integral_value(rounding=ROUND_CEILING))


def check_quote(
    quote: Quote, book: OrderBook, inst: Instrument, params: QuoterParams, inv: int
) -> None:
    """The invariants every quote from a usable book satisfies."""
    best_bid, best_ask = book.best_bid(), book.best_ask()
    assert best_bid is not None and best_ask is not None
    assert type(quote.bid) is int and type(quote.ask) is int
    assert quote.bid < best_ask and quote.ask > best_bid, (quote, best_bid, best_ask)
    assert quote.bid < quote.ask
    limit, base = params.sizing.max_inventory_lots, params.sizing.base_size_lots
    for size, price, room in (
        (quote.bid_size, quote.bid, limit - inv),
        (quote.ask_size, quote.ask, limit + inv),
    ):
        assert type(size) is int
        assert 0 <= size <= base
        assert size <= max(room, 0)  # a full fill never passes the inventory limit
        assert size % inst.size_step_lots == 0
        if size:
            assert size >= inst.min_size_lots
            assert price * size >= min_notional_units(inst)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_quote_invariants_for_any_book_and_inventory(data: st.DataObject) -> None:
    params = data.draw(quoter_params())
    inst = data.draw(st.sampled_from(INSTRUMENTS))
    book = data.draw(books())
    limit = params.sizing.max_inventory_lots
    quoter = Quoter(inst, params)
    for inv in data.draw(st.lists(st.integers(-limit, limit), min_size=1, max_size=5)):
        quoter.set_inventory(inv)
        check_quote(quoter.on_book(book, 1), book, inst, params, inv)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_skew_is_monotone_in_inventory(data: st.DataObject) -> None:
    params = data.draw(quoter_params())
    inst = data.draw(st.sampled_from(INSTRUMENTS))
    book = data.draw(books())
    limit = params.sizing.max_inventory_lots
    inventories = sorted(data.draw(st.lists(st.integers(-limit, limit), min_size=2, max_size=6)))
    quoter = Quoter(inst, params)
    quotes = []
    for inv in inventories:  # same book, same time: only the inventory changes
        quoter.set_inventory(inv)
        quotes.append(quoter.on_book(book, 1))
    for less_long, more_long in pairwise(quotes):
        assert more_long.bid <= less_long.bid
        assert more_long.ask <= less_long.ask


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_invariants_hold_along_an_event_sequence(data: st.DataObject) -> None:
    """Moving books, warming volatility, fills and toxicity: every quote stays valid."""
    params = data.draw(quoter_params())
    inst = data.draw(st.sampled_from(INSTRUMENTS))
    limit = params.sizing.max_inventory_lots
    quoter = Quoter(inst, params)
    ts = 0
    best_bid = data.draw(st.integers(100_000, 10_000_000))
    for _ in range(data.draw(st.integers(1, 25))):
        ts += data.draw(st.integers(0, 3_000_000_000))
        best_bid = max(1_000, best_bid + data.draw(st.integers(-200, 200)))
        book = data.draw(books(best_bid=best_bid))
        inv = data.draw(st.integers(-limit, limit))
        quoter.set_inventory(inv)
        quote = quoter.on_book(book, ts)
        check_quote(quote, book, inst, params, inv)
        if data.draw(st.booleans()):
            side = data.draw(st.sampled_from((Side.BUY, Side.SELL)))
            mid = book.mid()
            assert mid is not None
            quoter.on_fill(Fill(0, side, quote.bid, 1, 0, True, ts), mid)
