"""The adverse-selection widening acts on evidence (#17 item 6): no widening on one fill,
a toxic stretch widens, the widening fades after it, the fee is not multiplied (on the
bundled recording Avellaneda-Stoikov quotes near its own spread:
tests/process/test_avellaneda_stoikov_dry_run.py).

Book: 61,800.00 / 61,800.01 USDT (BINANCE_SPOT_BTCUSDT, tick 0.01), mid 6,180,000.5 ticks,
where 1 bp is 618 ticks; fills are one base order (100,000 lots), one unit of evidence.
"""

from __future__ import annotations

import pytest

from mmdaemon.book import OrderBook
from mmdaemon.model import BINANCE_SPOT_BTCUSDT, BookUpdate, Fill, Side
from mmdaemon.quoting import (
    AdverseParams,
    FairValueParams,
    Quoter,
    QuoterParams,
    SpreadModel,
    SpreadParams,
)

SEC = 1_000_000_000
BID, ASK = 6_180_000, 6_180_001
MID = 6_180_000.5
HALF = 618.00005  # 1 bp of the mid: the quiet model's half-spread, ticks
BASE = 100_000  # lots: the default base order size


def make_book(shift: int = 0) -> OrderBook:
    book = OrderBook()
    book.apply(BookUpdate(True, [(BID + shift, 10**8)], [(ASK + shift, 10**8)], 1, 1, 0, 0))
    return book


def quoter(**adverse: object) -> Quoter:
    """Mid fair value, a 1 bp half-spread, no market floor; the adverse defaults unless
    overridden (the toxicity switch on, widening)."""
    return Quoter(BINANCE_SPOT_BTCUSDT, QuoterParams(
        fair_value=FairValueParams(mode="mid"),
        spread=SpreadParams(base_bps=2.0, vol_mult=0.0, market_spread_fraction=0.0),
        adverse=AdverseParams(**adverse),  # type: ignore[arg-type]
    ))


def fills(q: Quoter, moves: list[int], start_s: float, step_s: float = 2.0) -> float:
    """One buy of a base order every ``step_s`` from ``start_s``; 1 s after each the book has
    moved by that many ticks (< 0: against the buy). Returns the time after the last."""
    t = start_s
    for i, move in enumerate(moves):
        q.on_book(make_book(), round(t * SEC))
        q.on_fill(Fill(i, Side.BUY, BID, BASE, 0, True, round(t * SEC)), MID)
        q.on_book(make_book(move), round((t + 1) * SEC))
        t += step_s
    return t


def half_at(q: Quoter, ts_s: float) -> float:
    q.on_book(make_book(), round(ts_s * SEC))
    return q.last_half_spread_ticks


def test_one_adverse_fill_does_not_widen_the_spread() -> None:
    q = quoter()
    assert half_at(q, 0.0) == pytest.approx(HALF)
    # one buy, and the mid falls 2 bps within the second: the old rule (rate 1.0 > 0.6, x(1 +
    # rate)) doubled the half-spread, and the toxicity switch (after 5) could double it again
    fills(q, [-1_236], 1.0)
    assert half_at(q, 3.0) == pytest.approx(HALF)
    assert q.adverse.resolved == 1
    # nor do nineteen: no widening before widen_min_markouts (20) resolved moves
    fills(q, [-1_236] * 18, 3.0)
    assert q.adverse.resolved == 19
    assert half_at(q, 40.0) == pytest.approx(HALF)


def test_a_sweep_printed_as_many_small_fills_counts_for_its_size_not_its_prints() -> None:
    """One aggressor sweeping through our order shows as one print per maker it met: 40
    fills of a twentieth of the base size are two base orders of evidence, not 40, and do
    not pass the 20 the widening waits for."""
    q = quoter()
    for i in range(40):
        t = 1.0 + i * 0.001
        q.on_book(make_book(), round(t * SEC))
        q.on_fill(Fill(i, Side.BUY, BID, BASE // 20, 0, True, round(t * SEC)), MID)
    q.on_book(make_book(-1_236), round(3 * SEC))
    assert q.adverse.resolved == pytest.approx(2.0)
    assert q.adverse.adverse_move_excess(round(3 * SEC)) == 0.0
    assert half_at(q, 3.0) == pytest.approx(HALF)


def test_a_toxic_stretch_widens_by_the_excess_over_the_baseline() -> None:
    q = quoter(toxic_action="off")
    # ten minutes of normal flow: every other fill sees the mid move 1 tick against it
    t = fills(q, [1, -1] * 150, 0.0)
    now = t
    normal = q.adverse.adverse_move_excess(round(now * SEC))
    assert normal < 0.02 and half_at(q, now) == pytest.approx(HALF * (1 + normal))
    # then two minutes of fills (60 in a row) all run over by 2 bps
    t = fills(q, [-1_236] * 60, t)
    ts = round(t * SEC)
    b = q.adverse.baseline_adverse_move_rate(ts)
    r = q.adverse.recent_adverse_move_rate(ts)
    assert 0.5 < b < 0.6  # the half hour's normal barely moved by two minutes of stretch
    assert r > 0.8
    assert half_at(q, t) == pytest.approx(HALF * (1 + r - b))
    assert half_at(q, t) > 1.25 * HALF


def test_the_widening_fades_after_the_stretch() -> None:
    q = quoter(toxic_action="off")
    t = fills(q, [1, -1] * 150, 0.0)
    t = fills(q, [-1_236] * 60, t)
    assert half_at(q, t) > 1.25 * HALF
    assert half_at(q, t + 600) < 1.01 * HALF
    excess = [q.adverse.adverse_move_excess(round((t + s) * SEC)) for s in (0, 60, 180, 600)]
    assert excess[0] > 0.25
    # with no new fills the recent evidence halves every minute; the recent rate holds while
    # that evidence outweighs recent_weight (60 fills: about log2(60 / 5) = 3.6 minutes),
    # then falls back to the baseline: the excess is gone in ten minutes
    assert excess[0] > excess[1] > excess[2] > excess[3]
    assert excess[2] < 0.6 * excess[0]
    assert excess[3] < 0.01


def test_the_fee_is_added_after_the_multipliers() -> None:
    model = SpreadModel(SpreadParams(base_bps=2.0, vol_mult=0.0, maker_fee_bps=1.0,
                                     market_spread_fraction=0.0))
    fair = 6_180_000.0  # 1 bp = 618 ticks
    # toxicity x3: 618 x 3 + fee 618 = 2,472, not (618 + 618) x 3 = 3,708
    assert model.half_spread_ticks(fair, 0.0, 1, multiplier=3.0) == pytest.approx(618 * 3 + 618)
    # and with the adverse-move excess 0.5 too: 618 x 1.5 x 2 + 618, the same 2,472
    assert model.half_spread_ticks(fair, 0.0, 1, 0.5, 2.0) == pytest.approx(618 * 3 + 618)
    # a rebate narrows by the same amount whatever the widening
    rebate = SpreadModel(SpreadParams(base_bps=2.0, vol_mult=0.0, maker_fee_bps=-0.5,
                                      market_spread_fraction=0.0))
    assert rebate.half_spread_ticks(fair, 0.0, 1, 0.0, 2.0) == pytest.approx(618 * 2 - 309)
