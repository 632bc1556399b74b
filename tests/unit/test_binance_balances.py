"""A spot account's holdings into the daemon's Balances (venues/binance_balances.py): exact,
rounded down, merged across ``outboundAccountPosition`` events that list only what changed;
a malformed ``account.status`` fails the reconciliation with the field named."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mmdaemon.model import Balances, Instrument
from mmdaemon.venues import binance_api as api
from mmdaemon.venues.binance_balances import Holdings
from mmdaemon.venues.binance_order_io import RequestFailed

ASSETS = api.Assets("BTC", "USDT")
# coarser than Binance spot (8 decimals both), so rounding down shows: unit 1e-7 USDT
INSTR = Instrument("BTCUSDT", "0.01", "0.00001")


def position(ms: int, **held: tuple[str, str]) -> api.AccountPosition:
    return api.AccountPosition(None, ms, ms, {a: (Decimal(f), Decimal(lk))
                                              for a, (f, lk) in held.items()})


def test_holdings_become_balances_in_lots_and_notional_units_rounded_down() -> None:
    h = Holdings(INSTR, ASSETS)
    # 0.5 + 0.2500099 BTC = 75,000.99 lots -> 75,000; 1,000.00000005 USDT -> 10,000,000,000
    status = {"updateTime": 1_723_000_000_000, "balances": [
        {"asset": "BTC", "free": "0.50000000", "locked": "0.25000990"},
        {"asset": "USDT", "free": "999.00000005", "locked": "1.00000000"},
        {"asset": "BNB", "free": "3.00000000", "locked": "0.00000000"}]}
    assert h.status(status) == [
        Balances(75_000, 10_000_000_000, 0, 1_723_000_000_000 * 1_000_000)]
    # a fill sold BTC: the event lists both changed assets
    assert h.changed(position(1_723_000_000_500, BTC=("0.40000000", "0"),
                              USDT=("1040.00000000", "0"))) == [
        Balances(40_000, 10_400_000_000, 0, 1_723_000_000_500 * 1_000_000)]
    # an event of another asset alone leaves ours as they were
    assert h.changed(position(1_723_000_000_600, BNB=("2.9", "0")))[0][:2] == (
        40_000, 10_400_000_000)


def test_an_asset_account_status_does_not_list_is_held_at_zero() -> None:
    h = Holdings(INSTR, ASSETS)
    assert h.changed(position(5, BTC=("1", "0"))) == []  # the quote asset not known yet
    assert h.status({"balances": [{"asset": "USDT", "free": "10", "locked": "0"}]}) == [
        Balances(0, 100_000_000, 0, 0)]


@pytest.mark.parametrize(("result", "named"), [
    ([], "'balances'"),
    ({"balances": [{"asset": "BTC", "free": "1"}]}, "'locked'"),
    ({"balances": [{"asset": "BTC", "free": "x", "locked": "0"}]}, "'free'"),
    ({"balances": [{"free": "1", "locked": "0"}]}, "without an asset"),
])
def test_a_malformed_account_status_fails_naming_the_field(result: object, named: str) -> None:
    with pytest.raises(RequestFailed, match=named):
        Holdings(INSTR, ASSETS).status(result)
