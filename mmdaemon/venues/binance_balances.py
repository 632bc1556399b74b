"""What a Binance spot account holds, as the pre-trade checks use it (issue #21), sans I/O.

The protocol object (:mod:`mmdaemon.venues.binance_orders`) asks ``account.status`` at every
reconciliation (everything the account holds) and hears ``outboundAccountPosition`` after
every change (only the assets that changed); :class:`Holdings` keeps the base and quote
asset's free + locked amounts, exact, and turns them into the daemon's
:class:`~mmdaemon.model.Balances`: the base asset in lots and the quote asset in notional
units (ticks x lots), each rounded down, so a check never counts more than is held.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from fractions import Fraction

from mmdaemon.model import NS_PER_MS, Balances, Instrument
from mmdaemon.venues import binance_api as api
from mmdaemon.venues.binance_order_io import RequestFailed


def _amount(item: dict[str, object], key: str) -> Decimal:
    text = item.get(key)
    try:
        if not isinstance(text, str):
            raise InvalidOperation
        value = Decimal(text)
    except InvalidOperation:
        raise RequestFailed(f"account.status: balance field {key!r} is not a decimal text: "
                            f"{text!r}") from None
    if not value.is_finite():
        raise RequestFailed(f"account.status: balance field {key!r} is {text!r}")
    return value


def account_holdings(result: object) -> dict[str, Decimal]:
    """Asset -> free + locked of an ``account.status`` result; :class:`RequestFailed`
    naming the field when the result is not of that shape (the reconciliation fails and
    is retried, as for any unusable answer)."""
    balances = result.get("balances") if isinstance(result, dict) else None
    if not isinstance(balances, list) or not all(isinstance(b, dict) for b in balances):
        raise RequestFailed("account.status: no list of balance objects in 'balances'")
    held: dict[str, Decimal] = {}
    for item in balances:
        asset = item.get("asset")
        if not isinstance(asset, str) or not asset:
            raise RequestFailed(f"account.status: a balance without an asset: {item!r}")
        held[asset] = _amount(item, "free") + _amount(item, "locked")
    return held


class Holdings:
    """The account's base and quote asset (free + locked), and the Balances they make."""

    def __init__(self, instrument: Instrument, assets: api.Assets) -> None:
        self.instrument = instrument
        self.assets = assets
        self.held: dict[str, Decimal] = {}  # asset -> free + locked; empty: not known yet

    def status(self, result: object) -> list[Balances]:
        """An ``account.status`` result: everything held (an asset it does not list, the
        account holds none of). Raises :class:`RequestFailed` for a malformed result."""
        held = account_holdings(result)
        update_ms = result.get("updateTime") if isinstance(result, dict) else None
        self.held = {self.assets.base: Decimal(0), self.assets.quote: Decimal(0), **held}
        return self._balances(update_ms if isinstance(update_ms, int) else 0)

    def changed(self, event: api.AccountPosition) -> list[Balances]:
        """An ``outboundAccountPosition``: the assets it lists changed."""
        self.held.update({a: free + locked for a, (free, locked) in event.balances.items()})
        return self._balances(event.event_ms)

    def _balances(self, venue_ms: int) -> list[Balances]:
        """The Balances now, or none while the base or the quote asset is unknown (an
        ``outboundAccountPosition`` before the first ``account.status``)."""
        base, quote = self.held.get(self.assets.base), self.held.get(self.assets.quote)
        if base is None or quote is None:
            return []
        inst = self.instrument
        lots = Fraction(base) / Fraction(inst.lot_size)
        units = Fraction(quote) / (Fraction(inst.tick_size) * Fraction(inst.lot_size))
        return [Balances(lots.numerator // lots.denominator,
                         units.numerator // units.denominator, 0, venue_ms * NS_PER_MS)]
