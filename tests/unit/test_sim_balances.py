"""Starting balances of the sim's accounts: the ``ASSET=AMOUNT`` form, exact, refused clearly."""

from decimal import Decimal

import pytest

from mmdaemon.sim.balances import balances


def test_balances_are_exact_and_assets_upper_case() -> None:
    assert balances(["btc=1", "USDT=100000.00000001"]) == {
        "BTC": Decimal("1"), "USDT": Decimal("100000.00000001")}


@pytest.mark.parametrize(("text", "says"), [
    ("BTC", "expected ASSET=AMOUNT"), ("=1", "expected ASSET=AMOUNT"),
    ("BTC=-1", "non-negative decimal"), ("BTC=1e3", "non-negative decimal"),
    ("BTC=nan", "non-negative decimal"), ("BTC=", "non-negative decimal"),
])
def test_a_malformed_balance_names_the_expected_form(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        balances([text])


def test_an_asset_given_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="BTC given twice"):
        balances(["BTC=1", "BTC=2"])
