"""Metrics from the journal: a hand-computed journal, and the bundled real replay."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from mmdaemon.analytics import SampleRow, compute_metrics, pnl_series
from mmdaemon.journal import Journal
from mmdaemon.journal_reader import load_fills, load_journal, load_markouts, stream_samples
from mmdaemon.markouts import Markout
from mmdaemon.model import BINANCE_SPOT_BTCUSDT, Fill, Instrument, Side
from mmdaemon.records import Sample
from tests.conftest import SPOT_FILES

# tick 0.01, lot 1: one notional unit (tick x lot) is 0.01 quote currency; prices near
# 10,000 ticks, so one tick is about one bps.
INST = Instrument("TEST", "0.01", "1")
U = 0.01  # quote currency per notional unit
T0 = int(datetime(2024, 8, 9, 13, 59, 55, tzinfo=UTC).timestamp()) * 10**9  # 13:59:55 UTC


def ts(seconds: float) -> int:
    return T0 + round(seconds * 10**9)


def sample(run: int, t: float, bb: int | None, ba: int | None, quote: tuple[int, int, int, int],
           position: int, counts: tuple[int, int, int]) -> Sample:
    bid, bid_size, ask, ask_size = quote
    fair = (bb + ba) / 2 if bb is not None and ba is not None else 0.0
    state = "ACTIVE" if bb is not None else "HALTED"
    return (run, ts(t), bb, ba, fair, bid, bid_size, ask, ask_size, position, state, *counts)


NOQ = (0, 0, 0, 0)
# Samples: run 1 at t = 0..6 s, run 2 at t = 10..12 s (the 6 -> 10 gap is not observed).
# The mid (bid + ask)/2 is given at the end of each line; position = fills up to t.
SAMPLES: list[Sample] = [
    sample(1, 0, None, None, NOQ, 0, (0, 0, 0)),                          # no book
    sample(1, 1, 9999, 10001, (9999, 2, 10001, 2), 1, (2, 0, 0)),        # mid 10000
    sample(1, 2, 9999, 10001, (9999, 2, 10001, 2), 3, (2, 1, 0)),        # mid 10000
    sample(1, 3, 10001, 10003, (9996, 2, 10004, 2), 3, (2, 3, 0)),       # mid 10002, wide
    sample(1, 4, 10001, 10003, (10001, 0, 10003, 1), 2, (3, 3, 1)),      # mid 10002, one side
    sample(1, 5, 9997, 9999, (9997, 1, 9999, 1), 2, (3, 4, 1)),          # mid  9998
    sample(1, 6, 9999, 10001, (9999, 1, 10001, 1), 1, (4, 5, 2)),        # mid 10000
    sample(2, 10, 10003, 10005, (10003, 1, 10005, 1), 1, (2, 0, 0)),     # mid 10004
    sample(2, 11, 10003, 10005, (10003, 1, 10005, 1), 4, (2, 2, 0)),     # mid 10004
    sample(2, 12, 10005, 10007, (10005, 1, 10007, 1), 4, (3, 2, 1)),     # mid 10006 (final)
]
# Fills (time s, side, price ticks, size lots, fee units, maker):
FILLS = [
    Fill(1, Side.BUY, 10001, 1, 0, False, ts(0.5), 1),   # F0: before any mid
    Fill(2, Side.BUY, 9999, 2, -1, True, ts(1.5), 2),    # F1: mid 10000 (t=1), rebate 1
    Fill(3, Side.SELL, 10003, 1, 0, True, ts(3.5), 3),   # F2: mid 10002 (t=3)
    Fill(4, Side.SELL, 9999, 1, 2, True, ts(5.2), 4),    # F3: mid  9998 (t=5), fee 2
    Fill(5, Side.BUY, 10003, 3, 0, True, ts(10.5), 5),   # F4: mid 10004 (t=10)
]


def write_journal(path: Path, fills: list[Fill], samples: list[Sample]) -> None:
    journal = Journal(path)
    journal.restore(T0)
    for fill in fills:
        assert journal.record_fill(fill)
    journal.add_samples(samples)
    journal.close()


@pytest.fixture
def hand(tmp_path: Path) -> tuple[list[Fill], list[SampleRow]]:
    path = tmp_path / "state" / "journal.sqlite"
    write_journal(path, FILLS, SAMPLES)
    return load_journal(path)


def test_load_journal_round_trip(hand: tuple[list[Fill], list[SampleRow]]) -> None:
    fills, samples = hand
    assert fills == FILLS
    assert samples == SAMPLES  # a SampleRow is a tuple in column order
    assert samples[3].best_ask == 10003 and samples[0].best_bid is None


def test_streamed_journal_samples_come_in_time_order_with_the_same_metrics(
        tmp_path: Path) -> None:
    """Samples written out of time order (a later run's clock behind, equal times):
    streamed from the journal in the order the metrics sort them, the same figures."""
    path = tmp_path / "state" / "journal.sqlite"
    late = [sample(3, 2, 9999, 10001, (9999, 1, 10001, 1), 2, (1, 0, 0)),
            sample(3, 2, 9998, 10002, (9998, 1, 10002, 1), 2, (1, 1, 0))]
    write_journal(path, FILLS, [*SAMPLES[5:], *late, *SAMPLES[:5]])
    fills, samples = load_journal(path)
    streamed = list(stream_samples(path))
    assert streamed == sorted(samples, key=lambda s: s.ts_ns)
    assert streamed != samples and load_fills(path) == fills
    assert (compute_metrics(fills, stream_samples(path), INST)
            == compute_metrics(fills, samples, INST))


def test_pnl_decomposition_by_hand(hand: tuple[list[Fill], list[SampleRow]]) -> None:
    m = compute_metrics(*hand, INST, horizons_s=(1, 5), max_spread_bps=5, sharpe_interval_s=2)
    # cash = -10001 - 2*9999 + 10003 + 9999 - 3*10003 = -40006; position 1+2-1-1+3 = 4
    # fees = 0 - 1 + 0 + 2 + 0 = 1; final mark 10006
    # total = -40006 + 4*10006 - 1 = 17 units
    assert m["total_pnl"] == pytest.approx(17 * U)
    # spread capture = side x size x (mid at fill - price):
    #   F0 no mid -> 0; F1 +2*(10000-9999) = 2; F2 -1*(10002-10003) = 1;
    #   F3 -1*(9998-9999) = 1; F4 +3*(10004-10003) = 3; sum 7
    assert m["spread_capture_pnl"] == pytest.approx(7 * U)
    assert m["fees"] == pytest.approx(1 * U)
    # inventory = side x size x (10006 - mid at fill): F0 1*(10006-10001) = 5 (its own
    # price), F1 2*6 = 12, F2 -1*4 = -4, F3 -1*8 = -8, F4 3*2 = 6; sum 11 = 17 - 7 + 1
    assert m["inventory_pnl"] == pytest.approx(11 * U)
    assert m["spread_capture_pnl"] + m["inventory_pnl"] - m["fees"] == pytest.approx(
        m["total_pnl"], abs=1e-12)
    assert m["fills_without_mid"] == 1
    assert m["position_lots"] == 4 and m["final_mark"] == pytest.approx(100.06)
    # average cost: buys 1@10001 + 2@9999 -> cost 29999, avg 29999/3; the sells close 2 lots:
    # realised = (10003 - 29999/3) + (9999 - 29999/3) = 10/3 - 2/3 = 8/3
    # then 1 lot at 29999/3 + 3 bought at 10003: cost 120026/3, so at the mark 10006
    # unrealised = 4*10006 - 120026/3 = 46/3 (= total + fees - realised = 17 + 1 - 8/3)
    # (the basis is kept to 1e-9 of a unit: within the approximation)
    assert m["realized_pnl"] == pytest.approx(8 / 3 * U)
    assert m["unrealized_pnl"] == pytest.approx(46 / 3 * U)
    assert m["maker_share"] == pytest.approx(4 / 5)
    assert m["volume_lots"] == 1 + 2 + 1 + 1 + 3


def test_series_drawdown_and_sharpe_by_hand(hand: tuple[list[Fill], list[SampleRow]]) -> None:
    fills, samples = hand
    series = pnl_series(fills, samples, INST)
    # PnL at each sample with a book = cash + position x mid - fees, fills up to then:
    # t=1  F0:       -10001 + 1*10000           = -1
    # t=2  +F1:      -29999 + 3*10000 + 1       =  2
    # t=3            -29999 + 3*10002 + 1       =  8
    # t=4  +F2:      -19996 + 2*10002 + 1       =  9
    # t=5            -19996 + 2*9998 + 1        =  1
    # t=6  +F3:       -9997 + 1*10000 - 1       =  2
    # t=10            -9997 + 10004 - 1         =  6
    # t=11 +F4:      -40006 + 4*10004 - 1       =  9
    # t=12           -40006 + 4*10006 - 1       = 17
    expected = [-1, 2, 8, 9, 1, 2, 6, 9, 17]
    assert series.total == pytest.approx([x * U for x in expected])
    for tot, sc, inv, fee in zip(series.total, series.spread_capture, series.inventory,
                                 series.fees, strict=True):
        assert sc + inv - fee == pytest.approx(tot, abs=1e-12)
    assert series.mid[-1] == pytest.approx(100.06)

    m = compute_metrics(fills, samples, INST, horizons_s=(1, 5), max_spread_bps=5,
                        sharpe_interval_s=2)
    # drawdown from the running peak (which starts at 0): peak 9 at t=4, trough 1 at t=5
    assert m["max_drawdown"] == pytest.approx(8 * U)
    assert (m["max_drawdown_peak_ns"], m["max_drawdown_trough_ns"]) == (ts(4), ts(5))
    # 2 s grid from the first sample with a book (t=1): boundaries 1, 3, 5, 7, 9, 11, and
    # the run's end at 12, a last interval of 1 s (half an interval: kept on its own).
    # The path starts at 0, ends at the total 17; PnL at or before each boundary:
    # 8 (t=3), 1 (t=5), 2 (t=6), 2 (t=6), 9 (t=11), 17 -> changes 8, -7, 1, 0, 7, 8 (sum 17)
    # with weights 1, 1, 1, 1, 1, 0.5 (5.5 intervals): mean = 17 / 5.5 = 34/11 per 2 s;
    # variance = (sum d^2 / w - 17^2 / 5.5) / (6 - 1) = (163 + 128 - 578/11) / 5
    assert m["sharpe_intervals"] == 6 and m["sharpe_last_interval_s"] == 1.0
    assert m["interval_pnl_mean"] == pytest.approx(34 / 11 * U)
    assert m["interval_pnl_std"] == pytest.approx(math.sqrt((291 - 578 / 11) / 5) * U)
    # six intervals are too few to annualise: None, with the reason
    assert m["sharpe"] is None and m["sharpe_min_intervals"] == 30
    assert m["sharpe_unavailable_reason"] == (
        "6 intervals of 2 s; an annualised figure needs at least 30")
    # on a 0.25 s grid the 11 s are 44 whole intervals; the PnL changes in those ending at
    # t = 1, 2, 3, 4, 5, 6, 10, 11, 12 by -1 (0 -> -1), 3, 6, 1, -8, 1, 4, 3, 8 (sum 17)
    m = compute_metrics(fills, samples, INST, horizons_s=(1, 5), sharpe_interval_s=0.25)
    changes = [-1, 3, 6, 1, -8, 1, 4, 3, 8]
    var = (sum(d * d for d in changes) - 17 * 17 / 44) / 43
    assert m["sharpe_intervals"] == 44 and m["sharpe_unavailable_reason"] is None
    assert m["interval_pnl_mean"] == pytest.approx(17 / 44 * U)
    assert m["sharpe"] == pytest.approx(17 / 44 / math.sqrt(var) * math.sqrt(365 * 86400 / 0.25))


# The same fills, journaled as the daemon does now: each with its mid before (here the
# samples' mids, bid + ask ticks) and its exact markouts (mid at t+h, bid + ask ticks).
# F0 has no mid before: nothing is measured for it. F4's 5 s horizon was never reached.
MIDS_BEFORE = [0, 20000, 20004, 19996, 20008]
MARKOUTS = {  # (fill index, horizon s) -> bid + ask at t+h
    (1, 1): 20000, (2, 1): 20004, (3, 1): 20000, (4, 1): 20008,
    (1, 5): 20000, (2, 5): 20000, (3, 5): 20008,
}


@pytest.fixture
def exact(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "exact" / "journal.sqlite"
    fills = [f._replace(mid_x2=m) for f, m in zip(FILLS, MIDS_BEFORE, strict=True)]
    write_journal(path, fills, SAMPLES)
    journal = Journal(path)
    journal.add_markouts([Markout(fills[i], h * 10**9, mid, fills[i].ts_ns + h * 10**9 + 1)
                          for (i, h), mid in MARKOUTS.items()])
    journal.close()
    loaded_fills, samples = load_journal(path)
    return compute_metrics(loaded_fills, samples, INST, markouts=load_markouts(path),
                           horizons_s=(1, 5), max_spread_bps=5, sharpe_interval_s=2)


def test_markouts_come_from_the_journaled_exact_mids_by_hand(exact: dict[str, Any]) -> None:
    m = exact
    one, five = m["markouts"]
    # per fill at 1 s, in half ticks per lot (mids are bid + ask):
    #   F1 buy 2 @9999, mid before 20000, at t+1 20000: markout 20000 - 19998 = +2, move 0
    #   F2 sell 1 @10003, 20004 -> 20004: markout -(20004 - 20006) = +2, move 0
    #   F3 sell 1 @9999, 19996 -> 20000: markout -(20000 - 19998) = -2, move -4 (against)
    #   F4 buy 3 @10003, 20008 -> 20008: markout 20008 - 20006 = +2, move 0
    assert (one["resolved_fills"], one["resolved_lots"], one["unresolved_fills"]) == (4, 7, 1)
    # by lots: wins 2 + 1 + 3 = 6 of 7; negative markout and adverse move F3's 1 lot
    assert m["markout_horizon_s"] == 1.0
    assert m["win_rate"] == pytest.approx(6 / 7)
    assert m["negative_markout_rate"] == pytest.approx(1 / 7)
    assert m["adverse_move_rate"] == pytest.approx(1 / 7)
    # money: 2 x 2 + 2 - 2 + 3 x 2 = 10 half-tick lots = 5 units
    assert one["markout_pnl"] == pytest.approx(5 * U)
    # bps of the notional at the mids before: 2 x 20000 + 20004 + 19996 + 3 x 20008 = 140024
    assert one["markout_bps"] == pytest.approx(1e4 * 10 / 140024)
    assert one["edge_bps"] == pytest.approx(1e4 * 14 / 140024)  # 4 + 2 + 2 + 6
    assert one["mid_move_bps"] == pytest.approx(1e4 * -4 / 140024)
    # 5 s: F1 +2 (move 0); F2 mid 20000: -(20000 - 20006) = +6 (move +4);
    # F3 mid 20008: -(20008 - 19998) = -10 (move -12); F4 unresolved (with F0)
    assert (five["resolved_fills"], five["resolved_lots"], five["unresolved_fills"]) == (
        3, 4, 2)
    assert (five["win_rate"], five["negative_markout_rate"], five["adverse_move_rate"]) == (
        3 / 4, 1 / 4, 1 / 4)
    assert five["markout_pnl"] == pytest.approx((4 + 6 - 10) / 2 * U)
    # the hour tables use the shortest horizon: 13h F1, F2 win (F0 unresolved);
    # 14h F3 (1 lot) negative, F4 (3 lots) wins
    h13, h14 = m["by_hour"]
    assert (h13["win_rate"], h13["negative_markout_rate"], h13["adverse_move_rate"]) == (
        1.0, 0.0, 0.0)
    assert (h14["win_rate"], h14["negative_markout_rate"], h14["adverse_move_rate"]) == (
        3 / 4, 1 / 4, 1 / 4)
    assert h13["markout_bps"] == pytest.approx(1e4 * (4 + 2) / (40000 + 20004))
    # the mid at each fill is the journaled one: no sample age, same edges as the samples'
    assert m["fills_with_exact_mid"] == 4 and m["fills_without_mid"] == 1
    assert m["mid_at_fill_age_ms_median"] is None
    assert m["spread_capture_pnl"] == pytest.approx(7 * U)


def test_without_journaled_markouts_every_fill_is_unresolved(
        hand: tuple[list[Fill], list[SampleRow]]) -> None:
    m = compute_metrics(*hand, INST, horizons_s=(1, 5), max_spread_bps=5, sharpe_interval_s=2)
    for row in m["markouts"]:
        assert (row["resolved_fills"], row["unresolved_fills"]) == (0, 5)
        assert row["win_rate"] is None and row["markout_bps"] is None
    assert m["win_rate"] is None and m["negative_markout_rate"] is None
    # average spread captured, on the samples' mids (the fills carry none):
    # edges 1/10000 (x2), 1/10002, 1/9998, 1/10004 (x3), in bps
    avg = (2 * 1 + 1e4 / 10002 + 1e4 / 9998 + 3 * 1e4 / 10004) / 7
    assert m["avg_spread_captured_bps"] == pytest.approx(avg)
    # the mid at F1 (1.5 s) is the t=1 sample's: 500 ms old; F3 (5.2): 200 ms; F2, F4 500 ms
    assert m["mid_at_fill_age_ms_median"] == pytest.approx(500)
    assert m["mid_at_fill_age_ms_max"] == pytest.approx(500)


def test_inventory_quoting_and_orders_by_hand(hand: tuple[list[Fill], list[SampleRow]]) -> None:
    m = compute_metrics(*hand, INST, horizons_s=(1, 5), max_spread_bps=5, sharpe_interval_s=2)
    # weights (s): each sample until the next of its run: t0..t5 1 each, t6 0 (run ends),
    # t10 1, t11 1, t12 0 -> 8 s sampled
    assert m["sampled_s"] == pytest.approx(8)
    assert m["runs"] == 2 and m["samples"] == 10
    # |position| x weight: 0 + 1 + 3 + 3 + 2 + 2 + (1 x 0) + 1 + 4 + (4 x 0) = 16 -> 16/8 = 2
    assert m["avg_abs_inventory_lots"] == pytest.approx(2.0)
    assert m["max_abs_inventory_lots"] == 4
    # turnover = volume 8 / avg 2 = 4; per day 4 / (8 / 86400 days) = 43200
    assert m["inventory_turnover"] == pytest.approx(4.0)
    assert m["inventory_turnover_per_day_extrapolated"] == pytest.approx(43_200)
    # quote uptime at 5 bps: two-sided and (ask-bid)/((ask+bid)/2) x 1e4 <= 5:
    # t1 2 bps yes, t2 yes, t3 8/10000 = 8 bps no, t4 one-sided no, t5 2/9998 yes,
    # t6 weight 0, t10 yes, t11 yes -> 5 of 8 s; two-sided (any spread) 6 of 8 s
    assert m["quote_uptime"] == pytest.approx(5 / 8)
    assert m["two_sided_share"] == pytest.approx(6 / 8)
    # mean quoted spread over the 6 two-sided seconds, bps of the quote's midpoint:
    # t1, t2: 2/10000 -> 2; t3: 8/10000 -> 8; t5: 2/9998; t10, t11: 2/10004 (x 1e4)
    mean_bps = (2 + 2 + 8 + 2e4 / 9998 + 2 * 2e4 / 10004) / 6
    assert m["quoted_spread_bps_mean"] == pytest.approx(mean_bps)
    # orders: run 1 ends at (4, 5, 2), run 2 at (3, 2, 1) -> 7 places, 7 amends, 3 cancels
    assert (m["places"], m["amends"], m["cancels"], m["order_requests"]) == (7, 7, 3, 17)
    assert m["order_to_trade"] == pytest.approx(17 / 5)
    assert m["fill_rate"] == pytest.approx(5 / 14)


def test_hour_of_day_table_by_hand(hand: tuple[list[Fill], list[SampleRow]]) -> None:
    m = compute_metrics(*hand, INST, horizons_s=(1, 5), max_spread_bps=5, sharpe_interval_s=2)
    h13, h14 = m["by_hour"]
    assert (h13["hour"], h14["hour"]) == (13, 14)  # t0..t4 are 13:59:55..59, t5 is 14:00:00
    # 13h: fills F0, F1, F2 (4 lots); spread 0 + 2 + 1 = 3; fees -1; inventory PnL is the
    # inventory component at t=4: 2 x 10002 - (10001 + 2*10000 - 10002) = 20004 - 19999 = 5
    # -> PnL 3 + 5 + 1 = 9 (= the PnL at t=4)
    assert (h13["fills"], h13["volume_lots"]) == (3, 4)
    assert h13["spread_capture_pnl"] == pytest.approx(3 * U)
    assert h13["fees"] == pytest.approx(-1 * U)
    assert h13["inventory_pnl"] == pytest.approx(5 * U)
    assert h13["pnl"] == pytest.approx(9 * U)
    # 14h: F3, F4; spread 1 + 3 = 4; fees 2; inventory 11 - 5 = 6 -> PnL 8; 9 + 8 = 17
    assert (h14["fills"], h14["volume_lots"]) == (2, 4)
    assert h14["spread_capture_pnl"] == pytest.approx(4 * U)
    assert h14["inventory_pnl"] == pytest.approx(6 * U)
    assert h14["pnl"] == pytest.approx(8 * U)
    # sampled time: 13h t0..t4 = 5 s; 14h t5 (1) + t6 (0) + t10 (1) + t11 (1) + t12 (0) = 3 s
    assert (h13["sampled_s"], h14["sampled_s"]) == (pytest.approx(5), pytest.approx(3))
    # |inventory|: 13h (0 + 1 + 3 + 3 + 2)/5 = 1.8; 14h (2 + 1 + 4)/3
    assert h13["avg_abs_inventory"] == pytest.approx(1.8)
    assert h14["avg_abs_inventory"] == pytest.approx(7 / 3)
    # uptime: 13h t1, t2 -> 2/5; 14h t5, t10, t11 -> 3/3
    assert (h13["quote_uptime"], h14["quote_uptime"]) == (pytest.approx(0.4), 1.0)
    # requests: run 1 counters reach 3+3+1 = 7 at t4 (13h); the rest of run 1 (+4) and all of
    # run 2 (6) in 14h -> 7 and 10, summing to 17
    assert (h13["order_requests"], h14["order_requests"]) == (7, 10)
    assert h13["order_to_trade"] == pytest.approx(7 / 3)
    # no markouts journaled: none per hour either (the exact ones: see the test above)
    assert (h13["win_rate"], h14["negative_markout_rate"], h13["markout_bps"]) == (
        None, None, None)
    # one UTC day; the same instants in New York (EDT, UTC-4) are 09:59:55.. -> hours 9, 10
    assert [d["date"] for d in m["by_day"]] == ["2024-08-09"]
    assert m["by_day"][0]["pnl"] == pytest.approx(17 * U)
    ny = compute_metrics(*hand, INST, horizons_s=(1, 5), tz="America/New_York")
    assert [r["hour"] for r in ny["by_hour"]] == [9, 10]
    assert [r["fills"] for r in ny["by_hour"]] == [3, 2]


def test_empty_journal_is_all_undefined(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    write_journal(path, [], [])
    m = compute_metrics(*load_journal(path), INST)
    assert m["fills"] == 0 and m["total_pnl"] == 0.0 and m["by_hour"] == []
    assert m["sharpe"] is None and m["win_rate"] is None and m["quote_uptime"] is None
    orjson.dumps(m)  # JSON-ready even when empty


def test_rejects_bad_options(hand: tuple[list[Fill], list[SampleRow]]) -> None:
    with pytest.raises(ValueError, match="markout horizons: expected"):
        compute_metrics(*hand, INST, horizons_s=(0,))
    with pytest.raises(ValueError, match="sharpe_interval_s"):
        compute_metrics(*hand, INST, sharpe_interval_s=0)


def test_load_journal_is_read_only_next_to_a_live_writer(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    write_journal(path, FILLS[:2], SAMPLES[:3])
    live = Journal(path)  # holds the state directory's lock, as a running daemon does
    try:
        fills, samples = load_journal(path)
        assert len(fills) == 2 and len(samples) == 3
    finally:
        live.close()
    with pytest.raises(FileNotFoundError):
        load_journal(tmp_path / "missing.sqlite")


# -- the bundled real recording ---------------------------------------------------------


def run_replay(state_dir: Path) -> dict[str, Any]:
    """``mmdaemon replay --json`` of the bundled recording into ``state_dir``; its summary."""
    proc = subprocess.run(
        [sys.executable, "-m", "mmdaemon", "replay", *map(str, SPOT_FILES), "--state-dir",
         str(state_dir), "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary: dict[str, Any] = orjson.loads(proc.stdout)
    return summary


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    state = tmp_path_factory.mktemp("replay") / "state"
    return run_replay(state), state / "journal.sqlite"


def test_replay_metrics_are_consistent(replayed: tuple[dict[str, Any], Path]) -> None:
    summary, journal = replayed
    fills, samples = load_journal(journal)
    m = compute_metrics(fills, samples, BINANCE_SPOT_BTCUSDT, markouts=load_markouts(journal))
    assert m["fills"] == summary["fills"] > 0
    assert m["spread_capture_pnl"] + m["inventory_pnl"] - m["fees"] == pytest.approx(
        m["total_pnl"], abs=1e-9)
    # the replay marks at the book's final mid, we at the last sample's: within a cent
    assert m["total_pnl"] == pytest.approx(summary["total_pnl"], abs=0.01)
    assert m["realized_pnl"] == pytest.approx(summary["realized_pnl"], abs=1e-9)
    assert m["position_lots"] == summary["position_lots"]
    assert m["volume"] == pytest.approx(summary["volume"])
    assert m["max_abs_inventory"] == pytest.approx(summary["max_abs_position"])
    assert (m["places"], m["amends"]) == (summary["orders"], summary["amends"])
    # cancels sent after the last sample (the shutdown's cancel-all) are not in the samples
    assert m["cancels"] <= summary["cancels"]
    for table in ("by_hour", "by_day"):
        rows = m[table]
        assert sum(r["fills"] for r in rows) == m["fills"]
        assert sum(r["volume_lots"] for r in rows) == m["volume_lots"]
        assert sum(r["order_requests"] for r in rows) == m["order_requests"]
        assert sum(r["pnl"] for r in rows) == pytest.approx(m["total_pnl"], abs=1e-9)
        assert sum(r["sampled_s"] for r in rows) == pytest.approx(m["sampled_s"])
    # the recording spans midnight UTC: 23h on the 8th, 00h on the 9th
    assert [r["hour"] for r in m["by_hour"]] == [0, 23]
    assert m["markouts"] == summary["markouts"] == summary["metrics"]["markouts"]
    for row in m["markouts"]:
        assert row["resolved_fills"] + row["unresolved_fills"] == m["fills"]
        assert row["resolved_fills"] > 0
        assert math.isfinite(row["markout_bps"]) and math.isfinite(row["mid_move_bps"])
        assert row["win_rate"] + row["negative_markout_rate"] <= 1.0
    for key in ("win_rate", "negative_markout_rate", "adverse_move_rate", "quote_uptime",
                "two_sided_share"):
        assert 0.0 <= m[key] <= 1.0
    assert m["max_drawdown"] >= 0 and m["avg_abs_inventory"] <= m["max_abs_inventory"]
    # 650 s on a 60 s grid: 11 intervals (the last 50 s long), too few to annualise
    assert m["sharpe_intervals"] == 11 and m["sharpe"] is None
    assert m["sharpe_unavailable_reason"] == (
        "11 intervals of 60 s; an annualised figure needs at least 30")
    orjson.dumps(m)  # JSON-ready: no NaN, no Fractions
