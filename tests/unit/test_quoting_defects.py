"""The article's defects (DESIGN.md, "The article's defects we fix"), one test each.

Every test states what the article's code would have produced and fails on it. Defect 7
(the fill model) is not part of quoting; of defect 8 only the fee part applies here.
Book: 61,800.00 / 61,800.01 USDT (BINANCE_SPOT_BTCUSDT, tick 0.01), mid 6,180,000.5 ticks.
"""

from __future__ import annotations

import math

import pytest

from mmdaemon.book import OrderBook
from mmdaemon.model import BINANCE_SPOT_BTCUSDT, BookUpdate, Fill, Side
from mmdaemon.quoting import (
    AdverseParams,
    AdverseSelection,
    EwmaVolatility,
    FairValueParams,
    Quoter,
    QuoterParams,
    RollingVolatility,
    SkewParams,
    SpreadModel,
    SpreadParams,
    VolatilityParams,
)

SEC = 1_000_000_000
BID, ASK = 6_180_000, 6_180_001
MID = 6_180_000.5


def make_book(bid: int = BID, ask: int = ASK) -> OrderBook:
    book = OrderBook()
    book.apply(BookUpdate(True, [(bid, 10**8)], [(ask, 10**8)], 1, 1, 0, 0))
    return book


def quiet(**over: object) -> QuoterParams:
    """Mid fair value, no volatility term, no toxicity switch, unless overridden."""
    fields: dict[str, object] = {
        "fair_value": FairValueParams(mode="mid"),
        "spread": SpreadParams(vol_mult=0.0),
        "adverse": AdverseParams(toxic_action="off"),
    }
    fields.update(over)
    return QuoterParams(**fields)  # type: ignore[arg-type]


def test_defect1_half_spread_is_bps_of_fair_value_converted_to_ticks() -> None:
    quote = Quoter(BINANCE_SPOT_BTCUSDT, quiet()).on_book(make_book(), 1)
    # 2 bps of 61,800.005 = 12.36 USDT = 1,236 ticks (half 618 each side). The article
    # subtracts 0.0001 from the price itself: its quote is at most 2 ticks (0.02 USDT) wide.
    width = quote.ask - quote.bid
    assert 1_236 <= width <= 1_237  # + up to one tick from rounding outward
    assert width / MID * 1e4 == pytest.approx(2.0, abs=0.002)


@pytest.mark.parametrize("mode", ["linear", "avellaneda_stoikov", "glft"])
def test_defect2_long_inventory_shifts_both_quotes_down(mode: str) -> None:
    params = quiet(skew=SkewParams(mode=mode))
    q = Quoter(BINANCE_SPOT_BTCUSDT, params)
    book = make_book()
    flat = q.on_book(book, 1)
    q.set_inventory(100_000)  # one base size long: a shift smaller than the half-spread
    long = q.on_book(book, 1)
    # The article: bid down AND ask up (a wider quote, no skew). Here both move down, by the
    # same number of ticks up to rounding: the reservation price moved, the width did not.
    assert long.bid < flat.bid and long.ask < flat.ask
    assert abs((flat.bid - long.bid) - (flat.ask - long.ask)) <= 1
    assert (long.ask - long.bid) - (flat.ask - flat.bid) in (-1, 0, 1)


def test_defect3_volatility_uses_log_returns_and_the_actual_interval() -> None:
    params = VolatilityParams(warmup_samples=2, min_interval_ns=0, window_samples=50)
    # Prices near 61,800 USDT: the article's list starts with the *price* and, once the window
    # is full, takes log(price / previous return); here only returns are ever kept. 500
    # samples (10x the window) of mid alternating 6,180,000 / 6,180,001 ticks every 0.1 s:
    # r = ln(6,180,001 / 6,180,000) = 1.618e-7, variance per s = r^2 / 0.1
    r = math.log(6_180_001 / 6_180_000)
    for est in (EwmaVolatility(params), RollingVolatility(params)):
        for i in range(501):
            est.update(i * SEC // 10, 6_180_000.0 + (i % 2))
        assert est.sigma_per_sqrt_s() == pytest.approx(r / math.sqrt(0.1), rel=1e-9)
        # the article assumes 1 s samples: it would report r, sqrt(10) times too low
        assert est.sigma_per_sqrt_s() / r == pytest.approx(math.sqrt(10), rel=1e-9)
    # annualised over a configurable year (365 days for crypto), not 252 x 6.5 h
    crypto = EwmaVolatility(VolatilityParams(warmup_samples=1, min_interval_ns=0))
    equity = EwmaVolatility(VolatilityParams(warmup_samples=1, min_interval_ns=0, year_days=252))
    for est in (crypto, equity):
        est.update(0, 100.0)
        est.update(SEC, 101.0)
    ratio = crypto.sigma_annual() / equity.sigma_annual()
    assert ratio == pytest.approx(math.sqrt(365 / 252), rel=1e-12)


def test_defect4_one_spread_model_volatility_enters_once_linearly() -> None:
    model = SpreadModel(SpreadParams(base_bps=2.0, vol_mult=1.0, horizon_s=1.0))
    # The article: spread x (1 + vol / 0.01), then x (vol / 0.20): at zero vol its spread is 0
    # and it grows with vol squared. Here: base / 2 + vol_mult x sigma x sqrt(h) x 1e4.
    assert model.half_spread_bps(MID, 0.0, 1) == pytest.approx(1.0)
    one = model.half_spread_bps(MID, 1e-4, 1) - model.half_spread_bps(MID, 0.0, 1)
    two = model.half_spread_bps(MID, 2e-4, 1) - model.half_spread_bps(MID, 0.0, 1)
    assert one == pytest.approx(1.0) and two == pytest.approx(2.0)
    # the quoter uses exactly that model with its estimator's sigma: no second vol factor
    q = Quoter(BINANCE_SPOT_BTCUSDT, quiet(spread=SpreadParams()))
    q.on_book(make_book(), 1)
    expected = model.half_spread_ticks(MID, q.last_sigma, 1)
    assert q.last_sigma > 0 and q.last_half_spread_ticks == pytest.approx(expected, rel=1e-12)


def test_defect5_adverse_selection_is_judged_by_markouts() -> None:
    adv = AdverseSelection(AdverseParams(horizons_s=(1.0,)), size_unit_lots=1)
    # Fill 1: buy at mid 10,000; 1 s later the mid is 10,001: good (+1 bp).
    adv.on_mid(0, 10_000.0)
    adv.on_fill(Fill(1, Side.BUY, 10_000, 1, 0, True, 0), 10_000.0)
    adv.on_mid(SEC, 10_001.0)
    # The market falls to 9,990 while we are flat; fill 2: buy at mid 9,990, and 1 s later
    # the mid is 9,995: good again (+5 bps).
    adv.on_mid(3 * SEC, 9_990.0)
    adv.on_fill(Fill(2, Side.BUY, 9_990, 1, 0, True, 4 * SEC), 9_990.0)
    adv.on_mid(5 * SEC, 9_995.0)
    # The article compares the mid at fill 2 with the mid at fill 1 (9,990 < 10,000 after a
    # buy) and calls fill 2 adverse: rate 1.0 > 0.6, so it would widen. The moves say no fill
    # was adverse: the baseline rate is the prior's (1 adverse of 2) with two good fills,
    # (0 + 1) / (1 x 2^(-4/1800) + 1 + 2) at 5 s (fill 1's evidence is 4 s older), no excess.
    assert adv.baseline_adverse_move_rate(5 * SEC) == pytest.approx(1 / (2 ** (-4 / 1800) + 3))
    assert adv.adverse_move_excess(5 * SEC) == 0.0
    assert adv.ema_bps[0] > 0


def test_defect6_widened_quotes_stay_on_the_grid() -> None:
    params = quiet(adverse=AdverseParams(horizons_s=(1.0,), toxic_action="off",
                                         widen_min_markouts=5))
    q = Quoter(BINANCE_SPOT_BTCUSDT, params)
    # 5 buys, 4 of which see the mid 100 ticks lower 1 s later: an excess over the baseline
    for i, move in enumerate((-100, -100, 100, -100, -100)):
        t = 10 * i * SEC
        q.on_book(make_book(), t)
        q.on_fill(Fill(i, Side.BUY, BID, 100_000, 0, True, t), MID)
        q.on_book(make_book(BID + move, ASK + move), t + SEC)
    excess = q.adverse.adverse_move_excess(42 * SEC)
    assert 0 < excess < 1
    quote = q.on_book(make_book(), 42 * SEC)
    # half = 618.00005 x (1 + excess) ticks around 6,180,000.5, then floor / ceil: on the
    # grid. The article re-centres on mid +- new_spread / 2, off the grid.
    half = 618.00005 * (1 + excess)
    assert (quote.bid, quote.ask) == (math.floor(MID - half), math.ceil(MID + half))
    assert type(quote.bid) is int and type(quote.ask) is int
    assert quote.bid < BID - 618 and quote.ask > ASK + 618
    # with the toxicity switch widening too, still integers and passive
    toxic = Quoter(BINANCE_SPOT_BTCUSDT, quiet(adverse=AdverseParams(toxic_min_markouts=1)))
    toxic.on_book(make_book(), 0)
    toxic.on_fill(Fill(0, Side.BUY, BID, 100_000, 0, True, 0), MID)
    wide = toxic.on_book(make_book(BID - 5_000, ASK - 5_000), SEC)
    assert toxic.adverse.multiplier(SEC) == 2.0
    assert type(wide.bid) is int and type(wide.ask) is int
    assert wide.bid < BID - 5_000 and wide.ask > ASK - 5_000


def test_defect8_fee_part_maker_fee_is_priced_into_the_spread() -> None:
    no_fee = Quoter(BINANCE_SPOT_BTCUSDT, quiet()).on_book(make_book(), 1)
    fee = Quoter(BINANCE_SPOT_BTCUSDT, quiet(spread=SpreadParams(vol_mult=0.0, maker_fee_bps=1.0)))
    with_fee = fee.on_book(make_book(), 1)
    # a 1 bp maker fee adds 618 ticks a side: each fill's edge is stated net of the fee
    # (the article's PnL and spread ignore fees)
    assert no_fee.bid - with_fee.bid == 618 and with_fee.ask - no_fee.ask == 618
