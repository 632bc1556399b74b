"""An instrument's trading rules from Binance's ``exchangeInfo`` (spot ``GET
/api/v3/exchangeInfo?symbol=S``, USD-M ``GET /fapi/v1/exchangeInfo``), exactly as decimals.

What is read, per market (the field names are Binance's; the shapes those of its official
SDKs' ``ExchangeInfoResponse`` / ``ExchangeInformationResponse`` models):

- ``status``: ``TRADING`` or another state in which the venue takes no orders;
- ``PRICE_FILTER``: ``tickSize`` (the price grid), ``minPrice``, ``maxPrice`` (``0``: no
  limit, Binance's convention);
- ``LOT_SIZE``: ``stepSize`` (the order-size grid), ``minQty``, ``maxQty``;
- the minimum notional, quote currency: spot ``NOTIONAL.minNotional`` (or the older
  ``MIN_NOTIONAL.minNotional``), USD-M ``MIN_NOTIONAL.notional``; none listed: 0;
- the price band around the average price: spot ``PERCENT_PRICE_BY_SIDE`` (bid/ask
  multipliers up and down) or ``PERCENT_PRICE``, USD-M ``PERCENT_PRICE``
  (``multiplierUp``/``Down``), each a multiplier of the reference price; optional;
- the finest size the venue writes: spot ``baseAssetPrecision``, USD-M
  ``quantityPrecision`` (decimal places), which bounds the lot the core counts sizes in;
- ``orderTypes`` and (USD-M) ``timeInForce``: the daemon quotes post-only, ``LIMIT_MAKER``
  on spot and ``LIMIT`` with ``GTX`` on USD-M.

Sans-I/O: the caller fetches the body. A body that does not hold these, or holds them in
another form, raises :class:`RulesError` naming the filter and field.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from mmdaemon.venues.binance import Market


class RulesError(ValueError):
    """An exchangeInfo body that does not give the rules: the message names the field."""


@dataclass(frozen=True)
class PriceBand:
    """Multipliers of the venue's reference price within which a limit price is accepted
    (bid: ``bid_down x ref <= price <= bid_up x ref``; ask likewise). Dimensionless."""

    bid_up: Decimal
    bid_down: Decimal
    ask_up: Decimal
    ask_down: Decimal


@dataclass(frozen=True)
class VenueRules:
    """One symbol's rules as the venue states them. Prices in quote currency, sizes in the
    base asset (USD-M: contracts of one base unit), all exact; ``max_price`` /
    ``max_qty`` 0 means the venue sets no upper limit. ``size_places`` is how many
    decimals the venue writes sizes with."""

    market: Market
    symbol: str
    status: str
    tick_size: Decimal
    min_price: Decimal
    max_price: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal
    size_places: int
    price_band: PriceBand | None
    order_types: tuple[str, ...]
    time_in_force: tuple[str, ...]

    @property
    def trading(self) -> bool:
        """The venue takes orders for the symbol."""
        return self.status == "TRADING"

    def post_only_missing(self) -> str:
        """What the daemon's post-only order needs and the venue does not list ("" when it
        lists all of it)."""
        if self.market == "spot":
            return "" if "LIMIT_MAKER" in self.order_types else "orderTypes LIMIT_MAKER"
        missing = [f"orderTypes {t}" for t in ("LIMIT",) if t not in self.order_types]
        missing += [f"timeInForce {t}" for t in ("GTX",) if t not in self.time_in_force]
        return ", ".join(missing)

    def as_fields(self) -> dict[str, Any]:
        """The rules as log fields (decimals as text)."""
        band = self.price_band
        return {"symbol": self.symbol, "status": self.status,
                "tick_size": str(self.tick_size), "min_price": str(self.min_price),
                "max_price": str(self.max_price), "step_size": str(self.step_size),
                "min_qty": str(self.min_qty), "max_qty": str(self.max_qty),
                "min_notional": str(self.min_notional), "size_places": self.size_places,
                "price_band": None if band is None else [str(band.bid_down), str(band.bid_up),
                                                         str(band.ask_down), str(band.ask_up)],
                "order_types": list(self.order_types),
                "time_in_force": list(self.time_in_force)}


def parse_exchange_info(body: bytes | str, market: Market, symbol: str) -> VenueRules:
    """The rules of ``symbol`` in an exchangeInfo ``body`` of ``market``. Raises
    :class:`RulesError` naming what is missing or malformed (the symbol not listed
    included)."""
    where = f"Binance {'USD-M' if market == 'usdm' else 'spot'} exchangeInfo"
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RulesError(f"{where}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("symbols"), list):
        raise RulesError(f"{where}: expected an object with a 'symbols' list")
    found = [s for s in doc["symbols"] if isinstance(s, dict) and s.get("symbol") == symbol]
    if not found:
        raise RulesError(f"{where}: symbol {symbol} is not listed")
    entry: dict[str, Any] = found[0]
    where = f"{where} of {symbol}"
    filters = _filters(entry, where)
    price = _filter(filters, "PRICE_FILTER", where)
    lot = _filter(filters, "LOT_SIZE", where)
    if market == "usdm":
        notional_filter, notional_key = filters.get("MIN_NOTIONAL"), "notional"
        notional_name = "MIN_NOTIONAL"
    else:
        notional_name = "NOTIONAL" if "NOTIONAL" in filters else "MIN_NOTIONAL"
        notional_filter, notional_key = filters.get(notional_name), "minNotional"
    tick = _decimal(price, "tickSize", f"{where}: PRICE_FILTER", positive=True)
    step = _decimal(lot, "stepSize", f"{where}: LOT_SIZE", positive=True)
    min_qty = _decimal(lot, "minQty", f"{where}: LOT_SIZE")
    places_key = "quantityPrecision" if market == "usdm" else "baseAssetPrecision"
    places = entry.get(places_key)
    if not isinstance(places, int) or isinstance(places, bool) or not 0 <= places <= 18:
        raise RulesError(f"{where}: {places_key}: expected an integer number of decimals "
                         f"0..18, got {places!r}")
    order_types = _names(entry, "orderTypes", where)
    tif = _names(entry, "timeInForce", where) if market == "usdm" else ()
    status = entry.get("status")
    if not isinstance(status, str) or not status:
        raise RulesError(f"{where}: status: expected a text such as 'TRADING', got {status!r}")
    return VenueRules(
        market=market, symbol=symbol, status=status, tick_size=tick,
        min_price=_decimal(price, "minPrice", f"{where}: PRICE_FILTER"),
        max_price=_decimal(price, "maxPrice", f"{where}: PRICE_FILTER"),
        step_size=step, min_qty=min_qty,
        max_qty=_decimal(lot, "maxQty", f"{where}: LOT_SIZE"),
        min_notional=Decimal(0) if notional_filter is None else _decimal(
            notional_filter, notional_key, f"{where}: {notional_name}"),
        size_places=places, price_band=_band(filters, market, where),
        order_types=order_types, time_in_force=tif)


def _filters(entry: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    filters = entry.get("filters")
    if not isinstance(filters, list):
        raise RulesError(f"{where}: filters: expected a list")
    out: dict[str, dict[str, Any]] = {}
    for i, item in enumerate(filters):
        kind = item.get("filterType") if isinstance(item, dict) else None
        if not isinstance(kind, str):
            raise RulesError(f"{where}: filters[{i}]: expected an object with a filterType")
        out[kind] = item
    return out


def _filter(filters: dict[str, dict[str, Any]], name: str, where: str) -> dict[str, Any]:
    found = filters.get(name)
    if found is None:
        raise RulesError(f"{where}: no {name} filter")
    return found


def _decimal(table: dict[str, Any], key: str, where: str, positive: bool = False) -> Decimal:
    """``table[key]``, a decimal string (Binance writes them quoted), >= 0 (> 0 with
    ``positive``)."""
    text = table.get(key)
    expected = "a positive decimal" if positive else "a decimal >= 0"
    if not isinstance(text, str):
        raise RulesError(f"{where}: {key}: expected {expected} as text, got {text!r}")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise RulesError(f"{where}: {key}: expected {expected}, got {text!r}") from None
    if not value.is_finite() or value < 0 or (positive and value == 0) or (
            value and not -30 <= value.adjusted() <= 30):
        raise RulesError(f"{where}: {key}: expected {expected}, got {text!r}")
    return value


def _names(entry: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    names = entry.get(key)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise RulesError(f"{where}: {key}: expected a list of names, got {names!r}")
    return tuple(names)


def _band(filters: dict[str, dict[str, Any]], market: Market, where: str) -> PriceBand | None:
    by_side = filters.get("PERCENT_PRICE_BY_SIDE") if market == "spot" else None
    if by_side is not None:
        at = f"{where}: PERCENT_PRICE_BY_SIDE"
        return PriceBand(*(_decimal(by_side, key, at, positive=True) for key in (
            "bidMultiplierUp", "bidMultiplierDown", "askMultiplierUp", "askMultiplierDown")))
    plain = filters.get("PERCENT_PRICE")
    if plain is None:
        return None
    up = _decimal(plain, "multiplierUp", f"{where}: PERCENT_PRICE", positive=True)
    down = _decimal(plain, "multiplierDown", f"{where}: PERCENT_PRICE", positive=True)
    return PriceBand(up, down, up, down)
