"""The calibration estimator (mmdaemon/quoting/calibration.py) and online GLFT calibration in
the quoter: the A, k fit beyond the touch, one market order counted once, sigma on a fixed
grid of event time, bounds, failures keeping the previous values, config errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mmdaemon.config import ConfigError
from mmdaemon.config_file import load_config
from mmdaemon.model import BookUpdate, Side, Trade
from mmdaemon.quoting.calibration import (
    ONLINE_MAX_POINTS,
    OnlineCalibration,
    OnlineCalibrationParams,
    TradeCalibrator,
)
from mmdaemon.quoting.quoter import Quoter, QuoterParams
from mmdaemon.quoting.skew import SkewParams
from tests.helpers import write_config

S = 1_000_000_000
BID, ASK = 100_000, 100_001  # a one-tick market: mid x 2 = 200_001, the touch 0.5 tick


def exponential_depths(a: float, k: float, seconds: float) -> list[float]:
    """Depths (ticks, beyond the touch) of a + k exponential tail, deterministic: the
    quantiles of the distribution, so lambda(delta) = a exp(-k delta) on the grid."""
    n = round(a * seconds)
    return [-math.log((i + 0.5) / n) / k for i in range(n)]


def feed(cal: TradeCalibrator, depths: list[float], seconds: float, touch: int = 0) -> int:
    """A steady one-tick book for ``seconds``, ``touch`` market orders at the ask and one
    buy at each depth (rounded to the tick grid); the time of the end."""
    n = len(depths) + touch
    t = 1 * S
    cal.on_book(t, BID, ASK)
    step = int(seconds * S / n)
    prices = [ASK] * touch + [round(100_000.5 + d) for d in depths]
    for price in prices:
        t += step
        cal.on_book(t, BID, ASK)
        cal.on_trade(t, price, True, t)
    return t


def test_fit_recovers_a_and_k_of_an_exponential_tail_and_reports_the_touch_apart() -> None:
    cal = TradeCalibrator(None, sigma_interval_s=1.0, fit_min_arrivals=20)
    end = feed(cal, exponential_depths(2.0, 0.01, 1000.0), 1000.0, touch=8000)
    fit = cal.fit(end, curves=True)
    assert fit.ok, fit.why
    assert fit.kappa_per_tick == pytest.approx(0.01, rel=0.05)
    assert fit.a_per_s == pytest.approx(2.0, rel=0.1)
    assert fit.r2 > 0.99
    assert fit.arrivals == 10_000 and fit.touch_ticks == 0.5
    # 8 market orders a second at the touch, plus the tail that reaches past it
    assert fit.touch_per_s == pytest.approx(10.0, rel=0.01)
    assert fit.touch_fitted_per_s == pytest.approx(2.0, rel=0.1)
    assert fit.depth_lo_ticks == 1.0 and fit.points <= 256
    assert all(depth > 0.5 for depth, _ in fit.curve)
    assert fit.touch_curve and all(depth <= 0.5 for depth, _ in fit.touch_curve)


def test_trades_of_one_market_order_are_one_arrival_at_its_deepest_price() -> None:
    cal = TradeCalibrator(None)
    cal.on_book(S, BID, ASK)
    for price in (ASK, ASK + 1, ASK + 2):  # one sweep: three trades, one trade time
        cal.on_trade(2 * S, price, True, 7 * S)
    cal.on_trade(2 * S, BID, False, 7 * S)  # the other side at the same time: another
    cal.on_book(3 * S, BID, ASK)
    fit = cal.fit(3 * S)
    assert (fit.trades, fit.arrivals) == (4, 2)
    assert not fit.ok and "too few" in fit.why


def test_sigma_is_the_realised_variance_of_the_mid_on_a_fixed_grid_of_event_time() -> None:
    cal = TradeCalibrator(None, sigma_interval_s=1.0)
    mid_moves = [0, 4, -2, 0, 6, 6, -4]  # ticks, one per second (bid and ask move together)
    price = BID
    for second, move in enumerate(mid_moves, start=1):
        price += move
        cal.on_book(second * S, price, price + 1)
    # a burst inside one grid interval is one return (the grid takes the last mid)
    cal.on_book(8 * S + 1, price + 50, price + 51)
    cal.on_book(8 * S + 2, price, price + 1)
    cal.on_book(9 * S, price, price + 1)
    fit = cal.fit(9 * S)
    returns = [4, -2, 0, 6, 6, -4, 0, 0]
    assert fit.sigma_samples == len(returns)
    assert fit.sigma_ticks == pytest.approx(math.sqrt(sum(r * r for r in returns) / 8))
    # an unusable book restarts the grid: its outage is neither time nor a return
    cal.book_lost()
    cal.on_book(100 * S, price + 1000, price + 1001)
    assert cal.fit(100 * S).sigma_samples == len(returns)


def online(**kw: object) -> OnlineCalibration:
    params = OnlineCalibrationParams(**{"enabled": True, "window_s": 1000.0,
                                        "min_trades": 100, **kw})  # type: ignore[arg-type]
    return OnlineCalibration(params, 1.0, 0.002)


def test_online_refit_clamps_to_the_bounds_and_says_which() -> None:
    cal = online(kappa_per_tick_max=0.005)
    end = feed(cal.estimator, exponential_depths(2.0, 0.01, 1000.0), 1000.0)
    got: list[tuple[float, float]] = []
    refit = cal.refit(end, lambda a, k: got.append((a, k)))
    # a still mid measures sigma 0: clamped up to sigma_bps_min too
    assert refit.applied and refit.clamped == ("kappa_per_tick", "sigma_bps")
    assert cal.kappa_per_tick == 0.005 and got == [(cal.a_per_s, 0.005)]
    assert cal.view().clamped == 1 and cal.view().refits == 1


def test_an_online_refit_regresses_on_fewer_depths_than_the_offline_fit_and_agrees() -> None:
    depths = exponential_depths(2.0, 0.01, 1000.0)
    offline = TradeCalibrator(None)
    end = feed(offline, depths, 1000.0)
    cal = online()
    feed(cal.estimator, depths, 1000.0)
    full, quick = offline.fit(end), cal.estimator.fit(end)
    assert quick.points <= ONLINE_MAX_POINTS < full.points
    assert quick.kappa_per_tick == pytest.approx(full.kappa_per_tick, rel=0.05)
    assert quick.a_per_s == pytest.approx(full.a_per_s, rel=0.1)


def test_online_refit_that_fails_keeps_the_previous_values_and_says_why() -> None:
    cal = online(min_trades=10_000)
    end = feed(cal.estimator, exponential_depths(2.0, 0.01, 1000.0), 1000.0)
    refit = cal.refit(end, lambda a, k: None)
    assert not refit.applied and "min_trades 10000" in refit.why
    assert (cal.a_per_s, cal.kappa_per_tick, cal.sigma) == (1.0, 0.002, None)

    def refuse(a: float, k: float) -> None:
        raise ValueError("no finite GLFT terms")

    cal = online()
    end = feed(cal.estimator, exponential_depths(2.0, 0.01, 1000.0), 1000.0)
    refit = cal.refit(end, refuse)
    assert not refit.applied and refit.why == "no finite GLFT terms"
    assert (cal.a_per_s, cal.kappa_per_tick, cal.failures) == (1.0, 0.002, 1)


def test_the_rolling_window_forgets_market_orders_older_than_it() -> None:
    cal = TradeCalibrator(10.0)
    cal.on_book(S, BID, ASK)
    cal.on_trade(2 * S, ASK + 5, True, 2 * S)
    cal.on_book(20 * S, BID, ASK)
    cal.on_trade(20 * S, ASK + 5, True, 20 * S)
    assert cal.fit(21 * S).arrivals == 1


def book(bid: int, ask: int, ts: int) -> BookUpdate:
    return BookUpdate(True, [(bid, 10**6)], [(ask, 10**6)], 1, 1, 0, ts)


def test_the_glft_quoter_recomputes_its_constants_on_refit_not_per_event() -> None:
    from mmdaemon.book import OrderBook
    from mmdaemon.model import Instrument

    inst = Instrument("BTCUSDT", "0.01", "0.00000001", size_step_lots=1000, min_size_lots=1000)
    params = QuoterParams(skew=SkewParams(mode="glft", online=OnlineCalibrationParams(
        enabled=True, window_s=60.0, interval_s=5.0, min_trades=50)))
    quoter = Quoter(inst, params)
    ob = OrderBook()
    constants = (quoter.skew._c1, quoter.skew._c2)
    depths = exponential_depths(3.0, 0.02, 60.0)
    t = S
    for i, depth in enumerate(depths):
        t = S + i * (60 * S // len(depths))
        ob.apply(book(BID, ASK, t))
        quoter.on_book(ob, t)
        quoter.on_trade(Trade(round(ASK + depth), 1000, Side.BUY, i, t, t))
        # between re-fits nothing changes
        if quoter.calibration is not None and quoter.calibration.refits == 0:
            assert (quoter.skew._c1, quoter.skew._c2) == constants
    cal = quoter.calibration
    assert cal is not None and cal.refits >= 10 and cal.failures < cal.refits
    assert quoter.skew.params.kappa_per_tick == cal.kappa_per_tick != 0.002
    assert (quoter.skew._c1, quoter.skew._c2) != constants
    assert quoter.last_sigma == cal.sigma  # the calibrated sigma priced the last quote


@pytest.mark.parametrize(("online_table", "message"), [
    ({"enabled": True, "window_s": -1.0}, "window_s: expected a finite number > 0"),
    ({"enabled": True, "a_per_s_min": 2.0, "a_per_s_max": 1.0}, "a_per_s_max"),
    ({"enabled": True, "sigma_interval_s": 100.0, "window_s": 60.0}, "sigma_interval_s"),
    ({"enabled": "yes"}, "strategy.skew.online.enabled: expected"),
    ({"window": 60.0}, "strategy.skew.online.window: unknown key"),
])
def test_online_calibration_config_errors_name_the_key(tmp_path: Path,
                                                       online_table: dict[str, object],
                                                       message: str) -> None:
    path = write_config(tmp_path, {"strategy": {"class": "glft"},
                                   "strategy.skew": {"mode": "glft"},
                                   "strategy.skew.online": online_table})
    with pytest.raises(ConfigError, match=r"strategy\.skew\.online") as info:
        load_config(path)
    assert message in str(info.value)


def test_online_calibration_needs_the_glft_mode(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"strategy.skew.online": {"enabled": True}})
    with pytest.raises(ConfigError, match="mode 'glft'"):
        load_config(path)


def wide_touch_steep_tail(cal: TradeCalibrator) -> int:
    """A 400-tick market (the touch 200 ticks out) whose market orders all stop within one
    tick beyond the touch: a decay this steep, seen this far out, extrapolates to an A past
    any float at depth 0. The time of the end."""
    bid, ask = 100_000, 100_400
    cal.on_book(S, bid, ask)
    t = S
    for i in range(2000):
        t += S // 100
        cal.on_book(t, bid, ask)
        cal.on_trade(t, ask + 1 if i else ask + 2, True, t)
    return t


def test_a_steep_tail_beyond_a_wide_touch_fails_the_fit_and_says_why_instead_of_raising(
) -> None:
    cal = TradeCalibrator(None, fit_min_arrivals=1)
    end = wide_touch_steep_tail(cal)
    fit = cal.fit(end, curves=True)  # OverflowError (math.exp) before
    assert fit.touch_ticks == 200.0 and fit.points == 4
    assert not fit.ok and "A is out of range" in fit.why
    assert math.isnan(fit.a_per_s) and math.isnan(fit.kappa_per_tick)
    # online, the same window is a failed re-fit that keeps the configured A and k
    online = OnlineCalibration(OnlineCalibrationParams(
        enabled=True, window_s=60.0, min_trades=10, fit_min_arrivals=1), 1.0, 0.002)
    wide_touch_steep_tail(online.estimator)
    refit = online.refit(end, lambda a, k: None)
    assert not refit.applied and "A is out of range" in refit.why
    assert (online.a_per_s, online.kappa_per_tick, online.failures) == (1.0, 0.002, 1)


def test_the_touch_curve_of_a_touch_deeper_than_the_histogram_is_cut_at_its_last_bin(
) -> None:
    cal = TradeCalibrator(None, fit_min_arrivals=1, max_depth_ticks=50)
    cal.on_book(S, BID, BID + 300)  # the modal spread: 300 ticks, past 2 x 50 + 1 bins
    for i in range(50):
        cal.on_trade(S + i, BID + 300, True, S + i)
    cal.on_book(60 * S, BID, BID + 300)
    fit = cal.fit(60 * S, curves=True)  # IndexError before
    assert fit.touch_ticks == 150.0 and not fit.ok
    assert fit.touch_curve and max(depth for depth, _ in fit.touch_curve) == 50.0


def test_the_fit_is_least_squares_of_ln_lambda_on_depth_as_numpy_computes_it() -> None:
    np = pytest.importorskip("numpy")
    cal = TradeCalibrator(None, sigma_interval_s=1.0, fit_min_arrivals=5)
    # a tail that is not exponential (two slopes), so the fit has residuals to measure
    depths = exponential_depths(2.0, 0.05, 600.0) + exponential_depths(0.5, 0.004, 600.0)
    end = feed(cal, depths, 600.0, touch=3000)
    fit = cal.fit(end, curves=True)
    assert fit.ok and 3 <= fit.points <= 256
    x = np.array([p[0] for p in fit.curve])
    y = np.log([p[1] for p in fit.curve])
    assert np.allclose(np.diff(x), x[1] - x[0])  # evenly spaced depths
    slope, intercept = np.polyfit(x, y, 1)
    res = y - (intercept + slope * x)
    assert fit.kappa_per_tick == pytest.approx(-slope, rel=1e-9)
    assert fit.a_per_s == pytest.approx(math.exp(intercept), rel=1e-9)
    assert fit.r2 == pytest.approx(1 - (res ** 2).sum() / ((y - y.mean()) ** 2).sum(), rel=1e-9)
    assert fit.rmse_log == pytest.approx(math.sqrt((res ** 2).mean()), rel=1e-9)
    assert fit.r2 < 0.99  # the two slopes show
