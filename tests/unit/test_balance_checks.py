"""The pre-trade check of what the account can carry (risk/rules.py, insufficient_balance):
spot sells against the base asset held, spot buys against the quote asset held, futures
orders' opening lots as initial margin against the available margin; no Balances, no
check. Expected figures are worked out by hand beside each call."""

from __future__ import annotations

from mmdaemon.model import Balances, Side
from mmdaemon.orders.manager import OrderAction
from mmdaemon.risk.rules import INSUFFICIENT_BALANCE, PreTradeChecks, PreTradeLimits

FAIR = 10_000.0  # ticks


def checks() -> PreTradeChecks:
    """Every other limit out of the way (a burst large enough for every call here)."""
    return PreTradeChecks(PreTradeLimits(max_order_lots=10**6, price_band_bps=1e4,
                                         max_open_orders=100, max_orders_per_s=1e6,
                                         burst=10**6))


def order(side: Side, size: int, price: int = 10_000, kind: str = "place") -> OrderAction:
    return OrderAction(kind, 1, side, price, size)  # type: ignore[arg-type]


def code(blocked: object) -> str | None:
    return getattr(blocked, "code", None)


def test_a_spot_sell_beyond_the_base_held_is_refused_counting_our_other_sells() -> None:
    c, spot = checks(), Balances(base_lots=50, quote_units=10**12, leverage=0, ts_ns=1)
    assert c.check(order(Side.SELL, 50), FAIR, 0, 0, 0, 0, spot) is None  # 50 of 50
    # 30 already open on the sell side: 30 + 21 = 51 > 50
    refused = c.check(order(Side.SELL, 21), FAIR, 1, 0, 30, 0, spot)
    assert code(refused) == INSUFFICIENT_BALANCE
    assert refused is not None and "51 lots > the base balance 50" in refused.reason
    assert not refused.retry
    assert c.check(order(Side.SELL, 20), FAIR, 1, 0, 30, 0, spot) is None  # 50 of 50
    # without balances (paper, replay) the same order passes
    assert c.check(order(Side.SELL, 21), FAIR, 1, 0, 30, 0, None) is None


def test_a_spot_buy_beyond_the_quote_held_is_refused_counting_our_other_buys() -> None:
    # 10 lots at 10,000 ticks = 100,000 units; 50,000 units already in our other buys
    c, spot = checks(), Balances(base_lots=0, quote_units=150_000, leverage=0, ts_ns=1)
    assert c.check(order(Side.BUY, 10), FAIR, 1, 0, 5, 0, spot, 50_000) is None
    refused = c.check(order(Side.BUY, 10, price=10_001), FAIR, 1, 0, 5, 0, spot, 50_000)
    assert code(refused) == INSUFFICIENT_BALANCE  # 150,010 > 150,000
    assert refused is not None and "150010 units > the quote balance 150000" in refused.reason
    # a sell of a spot account with no base asset at all
    assert code(c.check(order(Side.SELL, 1), FAIR, 0, 0, 0, 0, spot)) == INSUFFICIENT_BALANCE


def test_a_futures_order_whose_opening_margin_exceeds_the_available_is_refused() -> None:
    # leverage 20: 100,000 units of margin carry 2,000,000 notional = 200 lots at 10,000
    c, usdm = checks(), Balances(base_lots=None, quote_units=100_000, leverage=20, ts_ns=1)
    assert c.check(order(Side.BUY, 200), FAIR, 0, 0, 0, 0, usdm) is None
    refused = c.check(order(Side.BUY, 201), FAIR, 0, 0, 0, 0, usdm)
    assert code(refused) == INSUFFICIENT_BALANCE
    assert refused is not None and "201 lots opening" in refused.reason
    # short 50: a buy of 250 closes 50 and opens 200, which the margin carries
    assert c.check(order(Side.BUY, 250), FAIR, 0, 0, 0, -50, usdm) is None
    assert code(c.check(order(Side.BUY, 251), FAIR, 0, 0, 0, -50, usdm)) == INSUFFICIENT_BALANCE
    # long 500: a sell of 500 only closes, whatever the margin
    broke = usdm._replace(quote_units=0)
    assert c.check(order(Side.SELL, 500), FAIR, 0, 0, 0, 500, broke) is None
    assert code(c.check(order(Side.SELL, 501), FAIR, 0, 0, 0, 500, broke)) == \
        INSUFFICIENT_BALANCE


def test_an_amend_is_checked_and_a_cancel_never() -> None:
    c, spot = checks(), Balances(base_lots=5, quote_units=0, leverage=0, ts_ns=1)
    assert code(c.check(order(Side.SELL, 6, kind="amend"), FAIR, 1, 0, 0, 0, spot)) == \
        INSUFFICIENT_BALANCE
    assert c.check(order(Side.SELL, 10**6, kind="cancel"), FAIR, 1, 0, 0, 0, spot) is None
