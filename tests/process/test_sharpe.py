"""The Sharpe ratio agrees in sign with the PnL and says what it rests on (#17 item 5).

The bundled dry run used to print Sharpe +20.3 with a total PnL of -0.082: its 60 s grid
dropped the last partial interval (the PnL was positive at 600 s of 650 s) and it
annualised from 10 intervals without saying so.
"""

from __future__ import annotations

import math
import random
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from mmdaemon.analytics import SampleRow, compute_metrics
from mmdaemon.journal_reader import load_journal
from mmdaemon.model import BINANCE_SPOT_BTCUSDT, Fill, Instrument, Side
from tests.conftest import REPO, SPOT_FILES
from tests.unit.test_lobster import MESSAGES, ORDERBOOK

S = 1_000_000_000
T0 = 1_723_161_000 * S
INST = Instrument("TEST", "0.01", "1")


def lobster_sample() -> tuple[Path, Path]:
    if not (MESSAGES.is_file() and ORDERBOOK.is_file()):
        pytest.skip("../shared/data not present: the LOBSTER sample is not shipped in the repo")
    return MESSAGES, ORDERBOOK


def book_sample(t: int, mid: int, position: int) -> SampleRow:
    return SampleRow(1, t, mid - 1, mid + 1, float(mid), mid - 1, 1, mid + 1, 1, position,
                     "ACTIVE", 0, 0, 0)


def test_the_sharpe_sign_agrees_with_the_pnl_on_the_bundled_dry_run(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = subprocess.run(
        [sys.executable, "-m", "mmdaemon", "replay", *map(str, SPOT_FILES), "--config",
         str(REPO / "config" / "dryrun.toml"), "--state-dir", str(state), "--json"],
        capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = orjson.loads(proc.stdout)
    m = summary["metrics"]
    total = m["total_pnl"]
    assert total != 0
    # the mean interval PnL is the total spread over the run: the same sign, exactly
    assert math.copysign(1, m["interval_pnl_mean"]) == math.copysign(1, total)
    assert m["sharpe"] is None or math.copysign(1, m["sharpe"]) == math.copysign(1, total)
    # 650 s of event time on the 60 s grid: 11 intervals, the last one partial (kept)
    assert m["sharpe_intervals"] == 11 and 30 <= m["sharpe_last_interval_s"] < 60
    assert m["sharpe"] is None
    assert m["sharpe_unavailable_reason"] == (
        "11 intervals of 60 s; an annualised figure needs at least 30")
    assert m["interval_pnl_mean"] == pytest.approx(
        total / (m["sharpe_intervals"] - 1 + m["sharpe_last_interval_s"] / 60))
    # on grids fine enough to annualise, the ratio has the sign of the PnL too
    fills, samples = load_journal(state / "journal.sqlite")
    for interval_s in (1.0, 5.0, 7.0, 20.0):
        fine = compute_metrics(fills, samples, BINANCE_SPOT_BTCUSDT,
                               sharpe_interval_s=interval_s)
        assert fine["total_pnl"] == total
        assert fine["sharpe_intervals"] >= 30 and fine["sharpe"] is not None, interval_s
        assert math.copysign(1, fine["sharpe"]) == math.copysign(1, total), interval_s


def test_a_loss_in_the_last_partial_interval_makes_the_sharpe_negative() -> None:
    """One lot bought at the start, marked at the mid: a noisy rise for 60 s (30 whole
    2 s intervals), then a fall in the last 1.5 s that leaves the run at a loss. Without
    the last partial interval the ratio would be positive."""
    fills = [Fill(1, Side.BUY, 10_000, 1, 0, True, T0, 1)]
    rng = random.Random(17)
    mids = [10_000]
    for _ in range(120):  # every 0.5 s up to 60 s: up 3 ticks or down 2, at random
        mids.append(mids[-1] + rng.choice((3, -2)))
    assert mids[-1] > 10_000
    mids += [10_050, 9_990, 9_980]  # at 60.5, 61 and 61.5 s: below the purchase price
    samples = [book_sample(T0 + k * S // 2, mid, 1) for k, mid in enumerate(mids)]
    m = compute_metrics(fills, samples, INST, sharpe_interval_s=2.0)
    assert m["total_pnl"] == pytest.approx((9_980 - 10_000) * 0.01)
    assert m["sharpe"] is not None and m["sharpe"] < 0
    # 61.5 s: 30 whole intervals and a last one of 1.5 s (at least half of 2 s: its own)
    assert m["sharpe_intervals"] == 31 and m["sharpe_last_interval_s"] == 1.5
    assert m["interval_pnl_mean"] == pytest.approx(-0.2 / 30.75)
    # the same run stopped at the last boundary (60 s) made money, with a positive ratio
    upto = compute_metrics(fills, samples[:121], INST, sharpe_interval_s=2.0)
    assert upto["total_pnl"] > 0 and upto["sharpe"] is not None and upto["sharpe"] > 0


def test_a_short_last_stub_is_merged_into_the_interval_before() -> None:
    """A last interval shorter than half an interval joins the one before it, so that a
    stub of one sample cannot weigh as much as a whole interval; its change still counts."""
    fills = [Fill(1, Side.BUY, 10_000, 1, 0, True, T0, 1)]
    mids = [10_000 + (k % 3) for k in range(61)] + [9_900]  # every 1 s to 60 s, then 60.4 s
    times = [T0 + k * S for k in range(61)] + [T0 + 60 * S + 4 * S // 10]
    samples = [book_sample(t, mid, 1) for t, mid in zip(times, mids, strict=True)]
    m = compute_metrics(fills, samples, INST, sharpe_interval_s=2.0)
    assert m["total_pnl"] == pytest.approx(-1.0)
    assert m["interval_pnl_mean"] == pytest.approx(-1.0 / 30.2)
    assert m["sharpe"] is not None and m["sharpe"] < 0
    assert m["sharpe_intervals"] == 30 and m["sharpe_last_interval_s"] == pytest.approx(2.4)


def test_extrapolated_rates_say_so() -> None:
    fills = [Fill(1, Side.BUY, 10_000, 1, 0, True, T0, 1)]
    samples = [book_sample(T0 + k * S, 10_000 + k, 1) for k in range(11)]
    m = compute_metrics(fills, samples, INST)
    # 10 s sampled, +0.10 in the quote currency: 36 per hour, 864 per day, extrapolated
    assert m["sampled_s"] == 10
    assert m["pnl_per_hour_extrapolated"] == pytest.approx(36.0)
    assert m["pnl_per_day_extrapolated"] == pytest.approx(864.0)
    assert "pnl_per_day" not in m and "inventory_turnover_per_day" not in m
    assert m["inventory_turnover_per_day_extrapolated"] == pytest.approx(1 / 1 * 8_640)


def test_an_equity_day_is_annualised_and_extrapolated_on_its_trading_hours() -> None:
    """A LOBSTER run is one whole 6.5 h NASDAQ session: its per-day extrapolation is that
    day's PnL (not 24/6.5 of it), and its Sharpe is annualised over 252 days of 6.5 h."""
    message, orderbook = lobster_sample()
    proc = subprocess.run(
        [sys.executable, "-m", "mmdaemon", "replay", "--venue", "lobster", str(message),
         str(orderbook), "--json"], capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = orjson.loads(proc.stdout)["metrics"]
    assert m["currency"] == "USD" and m["trading_day_s"] == 6.5 * 3600
    assert m["seconds_per_year"] == 252 * 6.5 * 3600
    [day] = m["by_day"]
    assert m["pnl_per_day_extrapolated"] == pytest.approx(day["pnl"], rel=0.01)
    assert m["sharpe"] is not None and m["sharpe_intervals"] >= 30
    crypto_year = compute_metrics([], [], INST)["seconds_per_year"]
    assert m["sharpe"] == pytest.approx(
        m["interval_pnl_mean"] / m["interval_pnl_std"] * math.sqrt(
            m["seconds_per_year"] / m["sharpe_interval_s"]))
    assert m["seconds_per_year"] < crypto_year / 5
