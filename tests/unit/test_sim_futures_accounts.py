"""The futures sim's book-keeping: one-way positions (average entry, realised PnL on reducing
fills, flips), the wallet, income, margins, and Binance's fixed-decimal texts."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from mmdaemon.model import BINANCE_USDM_BTCUSDT, Side
from mmdaemon.sim.futures_accounts import (
    FuturesLedger,
    FuturesOrder,
    Position,
    price_text,
    usdt,
)

BTC = BINANCE_USDM_BTCUSDT
UNIT = Fraction(1, 10_000)  # USDT per notional unit: tick 0.1 x lot 0.001


def test_reducing_fills_realise_pnl_against_the_average_entry() -> None:
    p = Position()
    assert p.apply_fill(Side.BUY, 600_000, 2, UNIT, 1) == 0  # 0.002 at 60000.0
    assert p.apply_fill(Side.BUY, 600_100, 2, UNIT, 2) == 0  # 0.002 at 60010.0
    assert p.entry_ticks == 600_050 and p.amount == 4  # average 60005.0
    # sell 0.003 at 60020.0: (60020 - 60005) x 0.003 = 0.045 USDT
    assert p.apply_fill(Side.SELL, 600_200, 3, UNIT, 3) == Fraction(45, 1000)
    assert p.amount == 1 and p.entry_ticks == 600_050  # the rest keeps its entry
    assert p.realized == Fraction(45, 1000)


def test_a_fill_through_zero_closes_and_opens_at_its_price() -> None:
    p = Position()
    p.apply_fill(Side.SELL, 600_000, 2, UNIT, 1)  # short 0.002 at 60000.0
    realized = p.apply_fill(Side.BUY, 599_000, 5, UNIT, 2)  # buy 0.005 at 59900.0
    assert realized == Fraction(2, 10)  # (60000 - 59900) x 0.002 on the short
    assert (p.amount, p.entry_ticks) == (3, 599_000)  # long 0.003 at 59900.0
    p.apply_fill(Side.SELL, 599_000, 3, UNIT, 3)
    assert (p.amount, p.cost, p.entry_ticks) == (0, 0, 0)


@given(st.lists(st.tuples(st.sampled_from([Side.BUY, Side.SELL]), st.integers(590_000, 610_000),
                          st.integers(1, 50)), max_size=40))
def test_a_position_closed_out_has_realised_exactly_its_cash_flow(
        fills: list[tuple[Side, int, int]]) -> None:
    """The entry rounds to a sub-unit on reducing fills, so only the split over time is
    rounded: once the position is flat again, the realised PnL is exactly the money that
    changed hands, and the basis stays a whole number of sub-units throughout."""
    p = Position()
    realized, flow = Fraction(0), 0
    for ms, (side, price, size) in enumerate(fills):
        realized += p.apply_fill(side, price, size, UNIT, ms)
        flow += price * size * (1 if side is Side.SELL else -1)
        assert type(p.cost_scaled) is int and p.cost_scaled >= 0
    if p.amount:
        close = Side.SELL if p.amount > 0 else Side.BUY
        flow += 600_000 * abs(p.amount) * (1 if close is Side.SELL else -1)
        realized += p.apply_fill(close, 600_000, abs(p.amount), UNIT, len(fills))
    assert (p.amount, p.cost_scaled) == (0, 0)
    assert realized == p.realized == flow * UNIT


def test_fills_book_pnl_and_commission_on_the_wallet_and_income() -> None:
    ledger = FuturesLedger({"BTCUSDT": BTC}, ["k"], Fraction(1000))
    buy = FuturesOrder("k", "BTCUSDT", 1, "b", Side.BUY, 600_000, 10, False, 5)
    sell = FuturesOrder("k", "BTCUSDT", 2, "s", Side.SELL, 601_000, 10, False, 6)
    ledger.add(buy)
    ledger.add(sell)
    ledger.record_fill(buy, 600_000, 10, 12, True, 7)  # commission 12 units = 0.0012
    trade = ledger.record_fill(sell, 601_000, 10, 12, True, 8)
    assert trade.realized == Fraction(1)  # (60100 - 60000) x 0.010
    assert ledger.accounts["k"].wallet == 1000 + 1 - Fraction(24, 10_000)
    kinds = [(e.income_type, usdt(e.amount)) for e in ledger.income["k"]]
    assert kinds == [("COMMISSION", "-0.00120000"), ("REALIZED_PNL", "1.00000000"),
                     ("COMMISSION", "-0.00120000")]
    assert len({e.tran_id for e in ledger.income["k"]}) == 3
    assert (buy.status, sell.status) == ("FILLED", "FILLED")


def test_available_margin_counts_open_orders_and_positions_at_leverage() -> None:
    ledger = FuturesLedger({"BTCUSDT": BTC}, ["k"], Fraction(1000))
    ledger.add(FuturesOrder("k", "BTCUSDT", 1, "b", Side.BUY, 600_000, 100, False, 5))
    # 0.1 BTC at 60000 = 6000 USDT notional / 20 = 300 USDT of margin
    assert ledger.available("k") == 700
    ledger.marks["BTCUSDT"] = Fraction(610_000)
    order = ledger.orders[1]
    ledger.record_fill(order, 600_000, 100, 0, True, 6)
    # long 0.1 at 60000, mark 61000: +100 unrealised, margin 6100 / 20 = 305
    assert ledger.unrealized("k", "BTCUSDT") == 100
    assert ledger.available("k") == 1000 + 100 - 305


def test_texts_are_binance_fixed_decimals() -> None:
    assert usdt(Fraction(-1, 3)) == "-0.33333333"
    assert usdt(Fraction(-1, 10**9)) == "0.00000000"  # never "-0.00000000"
    assert price_text(BTC, Fraction(600_050)) == "60005.0"
    assert price_text(BTC, Fraction(1_800_151, 3)) == "60005.03333333"  # between ticks
