"""Starting balances of the sim's accounts: ``--balance BTC=1 --balance USDT=100000``.

A venue refuses what an account cannot pay for (Binance spot: -2010 insufficient balance;
USD-M: -2019 margin is insufficient), so the sim's accounts start with balances, per asset,
exact. The same text form is used on the command line and in a credentials file's
``balances`` table (``balances = { BTC = "1", USDT = "100000" }``): an asset of capital
letters and digits, a non-negative plain decimal amount.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation

StartingBalances = Mapping[str, Decimal]


def parse_balance(text: str) -> tuple[str, Decimal]:
    """``ASSET=AMOUNT`` as ``(asset, amount)``; ValueError naming the expected form."""
    asset, sep, amount = text.partition("=")
    asset = asset.strip().upper()
    if not sep or not asset.isascii() or not asset.isalnum():
        raise ValueError(f"expected ASSET=AMOUNT such as USDT=100000, got {text!r}")
    return asset, parse_amount(asset, amount.strip())


def parse_amount(asset: str, text: str) -> Decimal:
    """A balance's amount: plain non-negative decimal text (``"1"``, ``"0.5"``), exact."""
    try:
        amount = Decimal(text)
    except InvalidOperation:
        amount = Decimal("NaN")
    if not amount.is_finite() or amount < 0 or "e" in text.lower():
        raise ValueError(f"balance of {asset}: expected a non-negative decimal amount "
                         f"such as 100000 or 0.5, got {text!r}")
    return amount


def balances(pairs: Iterable[str]) -> dict[str, Decimal]:
    """Several ``ASSET=AMOUNT`` texts as one mapping; an asset given twice is an error."""
    out: dict[str, Decimal] = {}
    for text in pairs:
        asset, amount = parse_balance(text)
        if asset in out:
            raise ValueError(f"balance of {asset} given twice")
        out[asset] = amount
    return out
