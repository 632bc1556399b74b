"""Unit tests of each quoting component with hand-computed expectations.

Prices are ticks of BINANCE_SPOT_BTCUSDT (0.01 USDT): 6,180,000 ticks = 61,800.00 USDT,
where 1 bp of price = 6,180,000 / 1e4 = 618 ticks. Sizes are lots of 1e-8 BTC:
100,000 lots = 0.001 BTC. Each expected value has its arithmetic in a comment.
"""

from __future__ import annotations

import math

import pytest

from mmdaemon.book import OrderBook
from mmdaemon.model import BINANCE_SPOT_BTCUSDT, BookUpdate, Fill, Instrument, Level, Side
from mmdaemon.model import TopOfBook as Tob
from mmdaemon.quoting import (
    AdverseParams,
    AdverseSelection,
    EwmaVolatility,
    FairValue,
    FairValueParams,
    InventorySkew,
    Quoter,
    QuoterParams,
    RollingVolatility,
    SizeRule,
    SizingParams,
    SkewParams,
    SpreadModel,
    SpreadParams,
    VolatilityParams,
)

SEC = 1_000_000_000
FAIR = 6_180_000.0  # 61,800.00 USDT in ticks
YEAR_S = 365 * 86_400  # 31,536,000 s; sqrt = 5,615.6923


def make_book(bids: list[Level], asks: list[Level], last_id: int = 1) -> OrderBook:
    book = OrderBook()
    book.apply(BookUpdate(True, bids, asks, last_id, last_id, 0, 0))
    return book


# -- fair value -----------------------------------------------------------------------------


def test_fair_value_mid() -> None:
    book = make_book([(100, 3)], [(102, 1)])
    # (100 + 102) / 2 = 101
    assert FairValue(FairValueParams(mode="mid")).from_book(book) == 101.0


def test_l1_imbalance_shifts_fair_value_toward_the_heavier_side() -> None:
    fv = FairValue(FairValueParams(mode="l1_imbalance"))
    # bid-heavy: I1 = (3 - 1) / (3 + 1) = 0.5; fair = 101 + 0.5 tick x 0.5 = 101.25
    assert fv.from_book(make_book([(100, 3)], [(102, 1)])) == 101.25
    # ask-heavy: I1 = (1 - 3) / 4 = -0.5; fair = 101 - 0.25 = 100.75
    assert fv.from_book(make_book([(100, 1)], [(102, 3)])) == 100.75
    # balanced: fair = mid
    assert fv.from_book(make_book([(100, 2)], [(102, 2)])) == 101.0


def test_depth_imbalance_maps_to_bps_of_mid() -> None:
    fv = FairValue(FairValueParams(mode="depth_imbalance", depth_levels=2))
    bid, ask = 6_179_999, 6_180_001  # mid 6,180,000
    # weights 1/(i+1) over 2 levels; the third bid level is beyond depth and ignored:
    # bids 4/1 + 2/2 = 5, asks 1/1 + 2/2 = 2, I = (5 - 2) / 7 = 3/7
    # fair = 6,180,000 x (1 + 2 bps x 3/7 / 1e4) = 6,180,000 + 1,236 x 3/7 = 6,180,529.714...
    book = make_book([(bid, 4), (bid - 1, 2), (bid - 2, 100)], [(ask, 1), (ask + 1, 2)])
    assert fv.from_book(book) == pytest.approx(6_180_529.7142857, abs=1e-6)


def test_weighted_mid_leans_toward_the_thin_side() -> None:
    fv = FairValue(FairValueParams(mode="weighted_mid"))
    # (100 x 1 + 102 x 3) / (3 + 1) = 406 / 4 = 101.5: bid-heavy pushes fair up
    assert fv.from_book(make_book([(100, 3)], [(102, 1)])) == 101.5
    assert fv.from_book(make_book([(100, 3)], [])) is None


def test_microprice_is_the_old_name_of_weighted_mid() -> None:
    old, new = (FairValue(FairValueParams(mode=m)) for m in ("microprice", "weighted_mid"))
    assert FairValueParams().mode == "weighted_mid"
    for bids, asks in (([(100, 3)], [(102, 1)]), ([(100, 1)], [(101, 7)]), ([(5, 2)], [(9, 2)])):
        book = make_book(bids, asks)
        assert old.from_book(book) == new.from_book(book)


def test_fair_value_params_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"FairValueParams\.mode: expected one of 'mid'"):
        FairValueParams(mode="vwap")
    with pytest.raises(ValueError, match=r"FairValueParams\.depth_levels: expected an integer"):
        FairValueParams(depth_levels=0)
    with pytest.raises(ValueError, match=r"FairValueParams\.l1_shift_ticks"):
        FairValueParams(l1_shift_ticks=True)


# -- volatility -----------------------------------------------------------------------------


def feed(est: EwmaVolatility | RollingVolatility, points: list[tuple[float, float]]) -> None:
    """Feed (seconds, mid) points."""
    for t_s, mid in points:
        est.update(round(t_s * SEC), mid)


def test_ewma_constant_returns_give_exact_sigma_and_annualisation() -> None:
    params = VolatilityParams(warmup_samples=5, min_interval_ns=0, ewma_halflife_s=10.0)
    est = EwmaVolatility(params)
    # mid alternates 100, 101 every 1 s: every |r| = ln(1.01) = 0.00995033, dt = 1 s, so
    # any weighting gives sum(w r^2) / sum(w dt) = ln(1.01)^2 per s
    feed(est, [(i, 100.0 + (i % 2)) for i in range(11)])
    assert est.samples == 10
    assert est.sigma_per_sqrt_s() == pytest.approx(math.log(1.01), rel=1e-12)
    # annualised: 0.00995033 x sqrt(365 x 86,400) = 0.00995033 x 5,615.6923 = 55.879
    assert est.sigma_annual() == pytest.approx(math.log(1.01) * 5_615.6922993, rel=1e-9)


def test_volatility_scales_with_the_actual_sampling_interval() -> None:
    params = VolatilityParams(warmup_samples=5, min_interval_ns=0)
    fast, slow = EwmaVolatility(params), EwmaVolatility(params)
    # same returns every 0.25 s instead of every 1 s: variance per s = r^2 / 0.25,
    # sigma = ln(1.01) / sqrt(0.25) = 2 x ln(1.01)
    feed(fast, [(i * 0.25, 100.0 + (i % 2)) for i in range(11)])
    feed(slow, [(float(i), 100.0 + (i % 2)) for i in range(11)])
    assert fast.sigma_per_sqrt_s() == pytest.approx(2 * math.log(1.01), rel=1e-9)
    assert slow.sigma_per_sqrt_s() == pytest.approx(math.log(1.01), rel=1e-9)


def test_ewma_weights_by_elapsed_time() -> None:
    est = EwmaVolatility(VolatilityParams(warmup_samples=1, min_interval_ns=0, ewma_halflife_s=1))
    # r1 = 0.01 after 1 s, r2 = 0.02 after another 1 s; halflife 1 s -> decay 0.5:
    # sum r2 = 0.5 x 1e-4 + 4e-4 = 4.5e-4, sum dt = 0.5 x 1 + 1 = 1.5, var = 3e-4 per s
    feed(est, [(0, 100.0), (1, 100.0 * math.exp(0.01)), (2, 100.0 * math.exp(0.03))])
    assert est.sigma_per_sqrt_s() == pytest.approx(math.sqrt(3e-4), rel=1e-9)


def test_rolling_irregular_samples_and_window() -> None:
    params = VolatilityParams(
        estimator="rolling", warmup_samples=1, min_interval_ns=0, window_samples=2
    )
    est = RollingVolatility(params)
    # 100 -> 110 after 1 s, -> 100 after 3 s more: r = +-ln(1.1) = +-0.0953102,
    # var = 2 x ln(1.1)^2 / (1 + 3) s, sigma = ln(1.1) x sqrt(0.5) = 0.0673948
    feed(est, [(0, 100.0), (1, 110.0), (4, 100.0)])
    assert est.sigma_per_sqrt_s() == pytest.approx(math.log(1.1) * math.sqrt(0.5), rel=1e-12)
    # 100 -> 110 after 4 s more: the window keeps the last 2 samples,
    # var = (ln(1.1)^2 + ln(1.1)^2) / (3 + 4) s, sigma = ln(1.1) x sqrt(2 / 7)
    feed(est, [(8, 110.0)])
    assert est.sigma_per_sqrt_s() == pytest.approx(math.log(1.1) * math.sqrt(2 / 7), rel=1e-12)


def test_prior_before_warm_up() -> None:
    params = VolatilityParams(warmup_samples=3, prior_annual_vol=0.5, min_interval_ns=0)
    est = EwmaVolatility(params)
    # 0.5 / sqrt(31,536,000) = 0.5 / 5,615.6923 = 8.9036e-5 per sqrt(s)
    assert est.sigma_per_sqrt_s() == pytest.approx(8.9036217e-5, rel=1e-7)
    feed(est, [(0, 100.0), (1, 101.0), (2, 100.0)])
    assert not est.warm
    assert est.sigma_per_sqrt_s() == pytest.approx(8.9036217e-5, rel=1e-7)
    feed(est, [(3, 101.0)])
    assert est.warm
    assert est.sigma_per_sqrt_s() == pytest.approx(math.log(1.01), rel=1e-9)


def test_sampling_rule_min_interval_and_heartbeat() -> None:
    params = VolatilityParams(
        warmup_samples=1, min_interval_ns=100_000_000, max_interval_ns=1_000_000_000
    )
    est = EwmaVolatility(params)
    assert not est.update(0, 100.0)  # first observation: no return yet
    assert not est.update(50_000_000, 101.0)  # moved but only 50 ms later: merged
    assert not est.update(90_000_000, 101.0)
    assert est.update(100_000_000, 101.0)  # 100 ms since the last sample, mid differs
    assert not est.update(600_000_000, 101.0)  # unchanged, before the heartbeat
    assert est.update(1_100_000_000, 101.0)  # unchanged for 1 s: heartbeat, r = 0
    assert not est.update(1_000_000_000, 102.0)  # time going backwards: ignored
    assert est.samples == 2
    # samples: r = ln(1.01) over 0.1 s, then 0 over 1 s; halflife 60 s:
    # var = (d x ln(1.01)^2 + 0) / (d x 0.1 + 1), d = 0.5 ** (1 / 60)
    d = 0.5 ** (1 / 60)
    expected = math.sqrt(d * math.log(1.01) ** 2 / (d * 0.1 + 1.0))
    assert est.sigma_per_sqrt_s() == pytest.approx(expected, rel=1e-9)


def test_volatility_params_validation() -> None:
    with pytest.raises(ValueError, match=r"VolatilityParams\.estimator"):
        VolatilityParams(estimator="garch")
    with pytest.raises(ValueError, match=r"VolatilityParams\.max_interval_ns: expected 0 or"):
        VolatilityParams(min_interval_ns=2_000, max_interval_ns=1_000)
    with pytest.raises(ValueError, match=r"VolatilityParams\.year_days"):
        VolatilityParams(year_days=0)


# -- spread ---------------------------------------------------------------------------------


def test_spread_base_and_volatility_terms_in_bps_then_ticks() -> None:
    model = SpreadModel(SpreadParams(base_bps=2.0, vol_mult=1.0, horizon_s=1.0))
    # half = 2 / 2 = 1 bp = 618 ticks at 6,180,000
    assert model.half_spread_ticks(FAIR, 0.0, 1) == pytest.approx(618.0)
    # sigma 1e-4 per sqrt(s) over 1 s = 1 bp: half = 1 + 1 = 2 bps = 1,236 ticks
    assert model.half_spread_ticks(FAIR, 1e-4, 1) == pytest.approx(1_236.0)
    assert model.half_spread_bps(FAIR, 1e-4, 1) == pytest.approx(2.0)
    # vol_mult 0.5, horizon 4 s: 1 + 0.5 x 1e-4 x sqrt(4) x 1e4 = 2 bps
    model = SpreadModel(SpreadParams(vol_mult=0.5, horizon_s=4.0))
    assert model.core_half_bps(1e-4) == pytest.approx(2.0)


def test_spread_market_floor_adverse_toxicity_fee_and_minimum() -> None:
    model = SpreadModel(SpreadParams(base_bps=0.0, vol_mult=0.0))
    # floor: 50% of a 100-tick market spread, halved: 0.5 x 100 / 2 = 25 ticks
    assert model.half_spread_ticks(FAIR, 0.0, 100) == 25.0
    # minimum: 0.5 x 1 / 2 = 0.25 < 0.5 tick minimum
    assert model.half_spread_ticks(FAIR, 0.0, 1) == 0.5
    model = SpreadModel(SpreadParams())
    # adverse-move excess 0.7: 618 x 1.7 = 1,050.6; none: 618
    assert model.half_spread_ticks(FAIR, 0.0, 1, adverse_excess=0.7) == pytest.approx(1_050.6)
    assert model.half_spread_ticks(FAIR, 0.0, 1, adverse_excess=0.0) == pytest.approx(618.0)
    # toxicity multiplier 2: 1,236
    assert model.half_spread_ticks(FAIR, 0.0, 1, multiplier=2.0) == pytest.approx(1_236.0)
    # maker fee 1 bp adds 618 ticks; a 0.5 bp rebate removes 309
    fee = SpreadModel(SpreadParams(maker_fee_bps=1.0))
    assert fee.half_spread_ticks(FAIR, 0.0, 1) == pytest.approx(1_236.0)
    rebate = SpreadModel(SpreadParams(maker_fee_bps=-0.5))
    assert rebate.half_spread_ticks(FAIR, 0.0, 1) == pytest.approx(309.0)


def test_spread_params_validation() -> None:
    with pytest.raises(ValueError, match=r"SpreadParams\.min_half_spread_ticks: .*>= 0\.5"):
        SpreadParams(min_half_spread_ticks=0.0)
    with pytest.raises(ValueError, match=r"SpreadParams\.base_bps"):
        SpreadParams(base_bps=float("nan"))


# -- skew -----------------------------------------------------------------------------------


def skew(mode: str, **kw: float) -> InventorySkew:
    return InventorySkew(
        SkewParams(mode=mode, **kw),
        max_inventory_lots=1_000_000,
        q_unit_lots=100_000,
    )


def test_linear_skew_moves_reservation_against_the_position() -> None:
    s = skew("linear", linear_coef_bps=2.0)
    # long half the limit: -2 bps x 0.5 = -1 bp = -618 ticks
    assert s.shift_ticks(500_000, FAIR, 0.0) == pytest.approx(-618.0)
    assert s.shift_ticks(-500_000, FAIR, 0.0) == pytest.approx(618.0)
    assert s.shift_ticks(0, FAIR, 0.0) == 0.0
    # beyond the limit is clipped to it: -2 bps = -1,236 ticks
    assert s.shift_ticks(3_000_000, FAIR, 0.0) == pytest.approx(-1_236.0)
    assert not s.prices_spread
    assert s.half_spread_ticks(FAIR, 1e-4) == 0.0


def test_avellaneda_stoikov() -> None:
    s = skew("avellaneda_stoikov", gamma=1e-3, kappa_per_tick=2e-3, as_tau_s=1.0)
    # sigma 1e-4 x 6,180,000 = 618 ticks/sqrt(s); sigma^2 tau = 381,924 ticks^2
    # q = 200,000 / 100,000 = 2: r - s = -2 x 1e-3 x 381,924 = -763.848 ticks
    assert s.shift_ticks(200_000, FAIR, 1e-4) == pytest.approx(-763.848)
    # total spread = 1e-3 x 381,924 + (2 / 1e-3) ln(1.5) = 381.924 + 810.930; half = 596.427
    assert s.half_spread_ticks(FAIR, 1e-4) == pytest.approx(596.4271081)
    assert s.prices_spread


def test_glft() -> None:
    s = skew("glft", gamma=1e-3, kappa_per_tick=2e-3, glft_a_per_s=1.0, glft_delta_q=1.0)
    # xi Delta / kappa = 0.5; c1 = ln(1.5) / 1e-3 = 405.4651 ticks
    # c2 = sqrt(1e-3 / (2 x 1 x 1 x 2e-3) x 1.5^(2 + 1)) = sqrt(0.25 x 3.375) = 0.9185587
    # sigma c2 = 618 x 0.9185587 = 567.6692; half = 405.4651 + 567.6692 / 2 = 689.2997
    assert s.half_spread_ticks(FAIR, 1e-4) == pytest.approx(689.2997321)
    # shift at q = 2: -2 x 567.6692 = -1,135.3385
    assert s.shift_ticks(200_000, FAIR, 1e-4) == pytest.approx(-1_135.3384958)


def test_skew_params_validation() -> None:
    with pytest.raises(ValueError, match=r"SkewParams\.mode: expected one of 'linear'"):
        SkewParams(mode="quadratic")
    with pytest.raises(ValueError, match=r"SkewParams\.kappa_per_tick: expected .* > 0"):
        SkewParams(kappa_per_tick=0.0)


# -- sizing ---------------------------------------------------------------------------------


def sizes(inv: int, price: int = 6_180_000, **kw: float) -> tuple[int, int]:
    params = SizingParams(**kw)  # type: ignore[arg-type]
    return SizeRule(BINANCE_SPOT_BTCUSDT, params).sizes(inv, price, price + 1)


def test_sizing_article_rule() -> None:
    # flat: full base size both sides
    assert sizes(0) == (100_000, 100_000)
    # long half the limit: full = 100,000 x (1 - 0.5) = 50,000; growing (bid) half: 25,000
    assert sizes(500_000) == (25_000, 50_000)
    assert sizes(-500_000) == (50_000, 25_000)
    # long 25%: full = 75,000; bid = 37,500 -> rounded down to the 1,000-lot step = 37,000
    assert sizes(250_000) == (37_000, 75_000)


def test_sizing_at_the_limit() -> None:
    # at the limit the growing side is 0; the reducing side keeps 25% of base = 25,000
    assert sizes(1_000_000) == (0, 25_000)
    assert sizes(-1_000_000) == (25_000, 0)
    assert sizes(5_000_000) == (0, 25_000)
    # the article's rule exactly (no reducing-side floor): both sides 0 at the limit
    assert sizes(1_000_000, reduce_side_min_fraction=0.0) == (0, 0)


def test_sizing_grid_minimums_and_room() -> None:
    # base 123,456 lots rounds down to the 1,000-lot step
    assert sizes(0, base_size_lots=123_456) == (123_000, 123_000)
    # notional 0.001 BTC x 4,000.00 USDT = 4 USDT < 5 USDT min notional -> 0
    assert sizes(0, price=400_000) == (0, 0)
    # 0.001 BTC x 5,000.00 = exactly 5 USDT: allowed
    assert sizes(0, price=500_000) == (100_000, 100_000)
    # min size: an instrument with min 50,000 lots zeroes the 25,000-lot growing side
    inst = Instrument("X", "0.01", "0.00000001", size_step_lots=1_000, min_size_lots=50_000)
    assert SizeRule(inst).sizes(500_000, 6_180_000, 6_180_001) == (0, 50_000)
    # room: base 3,000,000, max 1,000,000, long 500,000: full = 1,500,000, bid = 750,000 but
    # only 1,000,000 - 500,000 = 500,000 of room; ask 1,500,000 fits 1,000,000 + 500,000
    assert sizes(500_000, base_size_lots=3_000_000) == (500_000, 1_500_000)


# -- adverse selection ------------------------------------------------------------------------


UNIT = 1_000  # lots of one unit of evidence (the quoter's base order size)


def buy(ts_s: float) -> Fill:
    return Fill(1, Side.BUY, 100, UNIT, 0, True, round(ts_s * SEC))


def sell(ts_s: float) -> Fill:
    return Fill(2, Side.SELL, 100, UNIT, 0, True, round(ts_s * SEC))


def detector(**params: object) -> AdverseSelection:
    return AdverseSelection(AdverseParams(**params), size_unit_lots=UNIT)  # type: ignore[arg-type]


def test_markouts_use_the_mid_in_force_at_each_horizon() -> None:
    adv = detector(horizons_s=(1.0, 5.0), ema_alpha=0.5)
    adv.on_mid(0, 10_000.0)
    adv.on_fill(buy(0.0), 10_000.0)
    adv.on_mid(SEC // 2, 10_001.0)  # 0.5 s
    adv.on_mid(SEC * 12 // 10, 9_999.0)  # 1.2 s: the 1 s markout resolves with 10,001
    # +1 x (10,001 - 10,000) / 10,000 x 1e4 = +1 bp
    assert adv.markouts == [1, 0]
    assert adv.ema_bps[0] == pytest.approx(1.0)
    adv.on_mid(6 * SEC, 9_998.0)  # the 5 s markout: mid in force at 5 s is 9,999 -> -1 bp
    assert adv.ema_bps[1] == pytest.approx(-1.0)
    # a sell at 6 s, mid 9,998; the event exactly at 7 s uses its own mid (9,997):
    # -1 x (9,997 - 9,998) / 9,998 x 1e4 = +1.0002 bp; EMA(alpha 0.5) = 1 + 0.5 x 0.0002
    adv.on_fill(sell(6.0), 9_998.0)
    adv.on_mid(7 * SEC, 9_997.0)
    assert adv.ema_bps[0] == pytest.approx(1.0 + 0.5 * (1e4 / 9_998 - 1.0))
    emas = adv.ema_by_horizon()
    assert list(emas) == [1.0, 5.0] and emas[5.0] == pytest.approx(-1.0)


def test_adverse_move_rates_are_the_formulas_of_the_docstring() -> None:
    adv = detector(horizons_s=(1.0,), widen_min_markouts=5)
    adv.on_mid(0, 10_000.0)
    # five buys at t = 0 whose mids were these; 1 s later the mid is 10,000, so the moves
    # are +2, -1, -2, 0, -3 bps (about): 3 adverse, one exactly 0 (neither), weight 1 each
    for mid0 in (9_998.0, 10_001.0, 10_002.0, 10_000.0, 10_003.0):
        adv.on_fill(buy(0.0), mid0)
    adv.on_mid(SEC, 10_000.0)
    assert adv.resolved == 5
    # b = (A + a) / (N + a + c) = (3 + 1) / (5 + 2); r = (3 + 5 b) / (5 + 5)
    b = 4 / 7
    r = (3 + 5 * b) / 10
    assert adv.baseline_adverse_move_rate(SEC) == pytest.approx(b)
    assert adv.recent_adverse_move_rate(SEC) == pytest.approx(r)
    assert adv.adverse_move_excess(SEC) == pytest.approx(r - b)  # 1/70
    # a minute later the recent evidence weighs half, the baseline's 2^(-60/1800)
    slow, fast = 2 ** (-60 / 1800), 0.5
    b = (3 * slow + 1) / (5 * slow + 2)
    r = (3 * fast + 5 * b) / (5 * fast + 5)
    assert adv.baseline_adverse_move_rate(61 * SEC) == pytest.approx(b)
    assert adv.adverse_move_excess(61 * SEC) == pytest.approx(r - b)


def warm(adv: AdverseSelection, moves: list[float], start_s: float, step_s: float = 2.0) -> float:
    """One buy every ``step_s`` from ``start_s`` whose mid moves by each of ``moves`` ticks
    (about that many bps of a 10,000-tick mid) 1 s later; returns the time after the last."""
    t = start_s
    for move in moves:
        adv.on_mid(round(t * SEC), 10_000.0)
        adv.on_fill(buy(t), 10_000.0)
        adv.on_mid(round((t + 1) * SEC), 10_000.0 + move)
        t += step_s
    return t


def test_toxicity_widens_then_cools_down() -> None:
    adv = detector(horizons_s=(1.0,), toxic_threshold_bps=0.5, cooldown_ns=5 * SEC)
    # normal flow for 400 s: the mid moves 1 tick (about 1 bp) either way, alternately
    t = warm(adv, [1.0, -1.0] * 100, 0.0)
    assert adv.multiplier(round(t * SEC)) == 1.0
    # then every fill is run over by 3 ticks: three such fills are not yet toxic (the recent
    # mean move is shrunk toward the baseline's), fifteen are
    t = warm(adv, [-3.0] * 3, t)
    assert adv.multiplier(round(t * SEC)) == 1.0
    end = warm(adv, [-3.0] * 12, t)
    last_due = round((end - 2 + 1) * SEC)  # the last fill's move resolved then: re-armed
    assert adv.multiplier(last_due) == 2.0
    assert adv.multiplier(last_due + 5 * SEC - 1) == 2.0
    assert adv.multiplier(last_due + 5 * SEC) == 1.0
    assert not adv.paused(last_due)


def test_toxicity_pause_and_bounded_pending() -> None:
    params = AdverseParams(
        horizons_s=(1.0, 2.0), toxic_action="pause", toxic_min_markouts=1, max_pending_fills=3
    )
    adv = AdverseSelection(params, size_unit_lots=UNIT)
    adv.on_mid(0, 10_000.0)
    for i in range(5):
        adv.on_fill(buy(i * 0.001), 10_000.0)
    assert adv.dropped == [2, 2]  # 5 fills into queues of 3
    assert adv.pending == 3
    adv.on_mid(SEC // 2, 9_990.0)  # the mid drops before any horizon
    adv.on_mid(3 * SEC, 9_990.0)  # all due: every markout is -10 bps, resolved at 3 s
    assert adv.markouts == [3, 3]
    assert adv.pending == 0
    assert adv.paused(3 * SEC) and adv.paused(8 * SEC - 1) and not adv.paused(8 * SEC)
    assert adv.multiplier(3 * SEC) == 1.0


def test_adverse_params_validation() -> None:
    with pytest.raises(ValueError, match=r"AdverseParams\.horizons_s: expected .* increasing"):
        AdverseParams(horizons_s=(5.0, 1.0))
    with pytest.raises(ValueError, match=r"AdverseParams\.horizons_s"):
        AdverseParams(horizons_s=())
    with pytest.raises(ValueError, match=r"AdverseParams\.toxic_action"):
        AdverseParams(toxic_action="panic")
    for name, bad in (("prior_adverse_move_rate", 1.0), ("prior_adverse_move_rate", 0),
                      ("prior_weight", 0.0), ("baseline_half_life_s", float("inf")),
                      ("recent_weight", -1.0), ("widen_min_markouts", 0),
                      ("recent_half_life_s", 3600.0)):
        with pytest.raises(ValueError, match=rf"AdverseParams\.{name}: expected"):
            AdverseParams(**{name: bad})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"AdverseSelection\.size_unit_lots"):
        AdverseSelection(AdverseParams(), size_unit_lots=0)


# -- the quoter -----------------------------------------------------------------------------

BID, ASK = 6_180_000, 6_180_001  # 61,800.00 / 61,800.01, mid 6,180,000.5


def quiet_params(**spread: float) -> QuoterParams:
    """Mid fair value, no volatility term: the spread is base_bps / 2 exactly."""
    return QuoterParams(
        fair_value=FairValueParams(mode="mid"),
        spread=SpreadParams(vol_mult=0.0, **spread),
    )


def test_quote_arithmetic_and_tick_rounding() -> None:
    q = Quoter(BINANCE_SPOT_BTCUSDT, quiet_params())
    quote = q.on_book(make_book([(BID, 10**8)], [(ASK, 10**8)]), 5)
    # half = 1 bp x 6,180,000.5 / 1e4 = 618.00005 ticks
    # bid = floor(6,180,000.5 - 618.00005) = floor(6,179,382.49995) = 6,179,382
    # ask = ceil(6,180,000.5 + 618.00005) = ceil(6,180,618.50005) = 6,180,619
    assert quote == (6_179_382, 100_000, 6_180_619, 100_000, 6_180_000.5, 5)
    assert type(quote.bid) is int and type(quote.ask) is int


def test_long_inventory_lowers_both_quotes_and_halves_the_bid() -> None:
    q = Quoter(BINANCE_SPOT_BTCUSDT, quiet_params())
    book = make_book([(BID, 10**8)], [(ASK, 10**8)])
    flat = q.on_book(book, 1)
    q.set_inventory(500_000)  # half the 1,000,000-lot limit
    long = q.on_book(book, 1)
    # linear 2 bps x 0.5 = 1 bp = 618.00005 ticks lower: both quotes move down by 618
    assert flat.bid - long.bid == 618 and flat.ask - long.ask == 618
    # full = 50,000; growing side (bid) half: 25,000; ask 50,000
    assert (long.bid_size, long.ask_size) == (25_000, 50_000)
    q.set_inventory(-500_000)
    short = q.on_book(book, 1)
    assert short.bid > flat.bid and short.ask > flat.ask
    assert (short.bid_size, short.ask_size) == (50_000, 25_000)


def test_at_max_inventory_the_growing_side_is_zero() -> None:
    q = Quoter(BINANCE_SPOT_BTCUSDT, quiet_params())
    book = make_book([(BID, 10**8)], [(ASK, 10**8)])
    q.set_inventory(1_000_000)
    quote = q.on_book(book, 1)
    assert quote.bid_size == 0 and quote.ask_size == 25_000
    q.set_inventory(-1_000_000)
    quote = q.on_book(book, 1)
    assert quote.ask_size == 0 and quote.bid_size == 25_000


def test_quotes_stay_passive_and_unusable_books_give_no_quote() -> None:
    # a tight model (half 0.5 tick) and a strong short skew pushes the bid above the ask
    params = QuoterParams(
        fair_value=FairValueParams(mode="mid"),
        spread=SpreadParams(base_bps=0.0, vol_mult=0.0),
    )
    q = Quoter(BINANCE_SPOT_BTCUSDT, params)
    book = make_book([(BID, 10**8)], [(ASK, 10**8)])
    # flat: bid = floor(6,180,000.5 - 0.5) = BID, ask = ceil(6,180,001) = ASK: the touch
    assert q.on_book(book, 1)[:4:2] == (BID, ASK)
    # short at the limit: shift = +2 bps x 6,180,000.5 = +1,236.0001 ticks, so
    # bid = floor(6,181,236.0001) is above the ask -> clamped to best ask - 1 = BID;
    # ask = ceil(6,181,236.5001 + 0.5) = 6,181,238
    q.set_inventory(-1_000_000)
    quote = q.on_book(book, 1)
    assert quote.bid == ASK - 1 and quote.ask == 6_181_238
    # venue top of book newer than the book, already lower: the bid stays below it
    q.on_top_of_book(Tob(2, BID - 5, 1, BID - 4, 1, 0, 0))
    assert q.on_book(book, 2).bid == BID - 5
    book.invalidate()
    assert q.on_book(book, 3) == (0, 0, 0, 0, 0.0, 3)
    assert q.on_book(make_book([(BID, 1)], []), 4) == (0, 0, 0, 0, 0.0, 4)


def test_quoter_toxicity_pause_zeroes_sizes_on_the_grid() -> None:
    params = QuoterParams(
        fair_value=FairValueParams(mode="mid"),
        adverse=AdverseParams(horizons_s=(1.0,), toxic_action="pause", toxic_min_markouts=1),
    )
    q = Quoter(BINANCE_SPOT_BTCUSDT, params)
    q.on_book(make_book([(BID, 10**8)], [(ASK, 10**8)]), 0)
    q.on_fill(Fill(1, Side.SELL, ASK, 100_000, 0, True, 0), 6_180_000.5)
    # we sold, then the mid rose 10,000 ticks: move -10,000 / 6,180,000.5 x 1e4 = -16.2 bps;
    # one base order of evidence: baseline mean move -16.2 / (1 + 2) = -5.4 bps, recent
    # (-16.2 + 5 x -5.4) / (1 + 5) = -7.2 bps: 1.8 bps worse than the baseline, toxic
    higher = make_book([(BID + 10_000, 10**8)], [(ASK + 10_000, 10**8)])
    q.on_book(higher, SEC // 2)
    quote = q.on_book(higher, 2 * SEC)  # resolves the 1 s markout: paused 2 s .. 7 s
    assert quote.bid_size == 0 and quote.ask_size == 0
    assert quote.bid < quote.ask and type(quote.bid) is int
    assert q.on_book(higher, 7 * SEC).bid_size > 0  # the 5 s cool-down is over
