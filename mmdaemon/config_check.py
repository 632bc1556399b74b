"""``mmdaemon check-config``: what a valid config will do, before it runs.

:func:`review` takes a loaded (so already valid) config and a reference price, and returns
the effective configuration (every key, defaults included, with its unit), the figures
derived from it (order sizes in the base currency and their notional at the price, limits
in the quote currency, the half-spread the quoter starts from) and warnings for settings
that load but cannot work as meant: an order below the instrument's minimum size or
notional, a soft limit at the hard one, a price band narrower than the quoted spread, a
recording or credentials that are not there. It is pure: the price comes from the caller
(``--price``, or the first price of a recording, read by :func:`first_price`).

Units follow the key names (``_lots``, ``_ticks``, ``_bps``, ``_ms``, ``_s``); money keys
are decimal strings in the quote currency; "base" and "quote" are the instrument's two
currencies (BTC and USDT for BTCUSDT).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

import orjson

from mmdaemon.config import Config
from mmdaemon.model import BookUpdate, Instrument, TopOfBook, Trade
from mmdaemon.quoting.quoter import Quoter

MONEY_KEYS = frozenset({
    "instrument.min_notional", "risk.max_loss", "risk.max_drawdown", "firm.desk_max_loss",
    "firm.desk_max_drawdown", "max_notional",
})
"""Keys (dotted, or the last part for list items) whose value is quote currency."""


@dataclass(frozen=True)
class Finding:
    """A warning about one key: it loads, but cannot work as meant."""

    key: str
    message: str


@dataclass(frozen=True)
class Review:
    """What :func:`review` found. ``effective`` is ``{dotted key: (value, unit)}``;
    ``derived`` is ``{what: text}``; ``price`` the reference price (quote currency) the
    notional figures use, None when none was given."""

    effective: dict[str, tuple[Any, str]]
    derived: dict[str, str]
    warnings: list[Finding]
    price: Decimal | None
    price_source: str


def review(config: Config, price: Decimal | None, price_source: str = "") -> Review:
    """Effective values, derived figures and warnings of ``config`` at ``price`` (quote
    currency per base unit; None: the notional rules cannot be checked)."""
    inst = config.instrument.build()
    derived: dict[str, str] = {}
    warnings: list[Finding] = []
    if price is None:
        warnings.append(Finding("--price", "no reference price (give --price or --recording, "
                                "or feed.recordings): the minimum notional, the limits in "
                                "the quote currency and the spread in ticks are not checked"))
    _sizes(config, inst, price, derived, warnings)
    _limits(config, inst, price, derived, warnings)
    if price is not None:
        _spread(config, inst, price, derived, warnings)
    _files(config, derived, warnings)
    return Review(effective(config, inst), derived, warnings, price, price_source)


def effective(config: Config, inst: Instrument) -> dict[str, tuple[Any, str]]:
    """Every key of ``config`` (defaults included) as ``{dotted key: (value, unit)}``."""
    return {key: (value, _unit(key, value, inst)) for key, value in _leaves(config, "")}


def _leaves(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            yield from _leaves(value, key + ".")
        elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            for i, item in enumerate(value):
                yield from _leaves(item, f"{key}[{i}].")
        else:
            yield key, list(value) if isinstance(value, tuple) else value


def _unit(key: str, value: Any, inst: Instrument) -> str:
    """The unit of a key, and its value in the instrument's currencies where it helps."""
    name = key.rsplit(".", 1)[-1]
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if name.endswith("_lots") and isinstance(value, int):
        return f"lots = {_base(inst, value)} base"
    if name.endswith("_ticks") and number:
        return f"ticks = {_fmt(inst.tick_size * Decimal(str(value)))} quote"
    if name.endswith("_per_s"):
        return "per second"
    for suffix, unit in (("_bps", "bps"), ("_ms", "ms"), ("_ns", "ns"), ("_s", "s")):
        if name.endswith(suffix):
            return unit
    if key in MONEY_KEYS or name in MONEY_KEYS:
        return "quote"
    if key in ("instrument.tick_size",):
        return "quote per tick"
    if key in ("instrument.lot_size",):
        return "base per lot"
    return ""


def _sizes(config: Config, inst: Instrument, price: Decimal | None, derived: dict[str, str],
           warnings: list[Finding]) -> None:
    """Order sizes against the instrument's step, minimum size and minimum notional."""
    sizing = config.strategy.sizing
    base = sizing.base_size_lots
    derived["order size"] = _size_text(inst, base, price)
    minimum = min_order_lots(inst, price)
    derived["smallest order"] = _size_text(inst, minimum, price) + (
        "" if price is not None else " (before the minimum notional)")
    key = "strategy.sizing.base_size_lots"
    if base % inst.size_step_lots:
        warnings.append(Finding(key, f"{base} lots is not a multiple of instrument."
                                f"size_step_lots {inst.size_step_lots}: orders are rounded "
                                f"down to {base - base % inst.size_step_lots} lots"))
    if base < minimum:
        warnings.append(Finding(key, f"{_size_text(inst, base, price)} is below the "
                                f"instrument's smallest order, {_size_text(inst, minimum, price)}"
                                f" ({_minimum_rule(inst)}): no quote can become an order; "
                                f"set it to at least {minimum} lots"))
        return
    for name, fraction, side in (
        ("growing_side_fraction", sizing.growing_side_fraction,
         "once any inventory is held, the side that would grow it"),
        ("reduce_side_min_fraction", sizing.reduce_side_min_fraction,
         "at the inventory limit, the side that reduces it"),
    ):
        lots = int(base * fraction)
        if fraction > 0 and lots < minimum:
            warnings.append(Finding(f"strategy.sizing.{name}", f"{fraction} x base_size_lots "
                                    f"is {_size_text(inst, lots, price)}, below the smallest "
                                    f"order: {side} is not quoted"))


def min_order_lots(inst: Instrument, price: Decimal | None) -> int:
    """The smallest order the instrument accepts at ``price``, in lots: at least
    ``min_size_lots``, a multiple of ``size_step_lots``, and (with a price) at least
    ``min_notional``."""
    step = inst.size_step_lots
    lots = inst.min_size_lots
    if price is not None and price > 0 and inst.min_notional > 0:
        by_notional = (inst.min_notional / (price * inst.lot_size)).to_integral_value(
            rounding=ROUND_CEILING)
        lots = max(lots, int(by_notional))
    return -(-lots // step) * step


def _minimum_rule(inst: Instrument) -> str:
    return (f"instrument.min_size_lots {inst.min_size_lots}, size_step_lots "
            f"{inst.size_step_lots}, min_notional {_fmt(inst.min_notional)}")


def _limits(config: Config, inst: Instrument, price: Decimal | None, derived: dict[str, str],
            warnings: list[Finding]) -> None:
    """Inventory and order limits in the base (and quote) currency; limits that clash. (An
    order limit below the smallest order needs no warning of its own: the base size may
    not exceed it, so the base size's warning has said it.)"""
    risk, sizing = config.risk, config.strategy.sizing
    for label, lots in (("max order (risk.max_order_lots)", risk.max_order_lots),
                        ("inventory target limit (strategy.sizing.max_inventory_lots)",
                         sizing.max_inventory_lots),
                        ("REDUCING at (risk.inventory_soft_lots)", risk.inventory_soft_lots),
                        ("KILLED at (risk.inventory_hard_lots)", risk.inventory_hard_lots)):
        derived[label] = _size_text(inst, lots, price)
    derived["KILLED at a loss of (risk.max_loss)"] = f"{_fmt(Decimal(risk.max_loss))} quote"
    derived["KILLED at a drawdown of (risk.max_drawdown)"] = (
        f"{_fmt(Decimal(risk.max_drawdown))} quote")
    if risk.inventory_soft_lots >= risk.inventory_hard_lots:
        warnings.append(Finding("risk.inventory_soft_lots", f"{risk.inventory_soft_lots} lots "
                                f"is at the hard limit ({risk.inventory_hard_lots}): the "
                                f"position goes straight to KILLED, never REDUCING first"))


def _spread(config: Config, inst: Instrument, price: Decimal, derived: dict[str, str],
            warnings: list[Finding]) -> None:
    """The half-spread the quoter starts from (prior volatility, no market floor, no
    adverse widening) and the inventory shift at the limit, against the price band."""
    quoter = Quoter(inst, config.strategy)
    fair = float(price / inst.tick_size)  # ticks
    sigma = quoter.volatility.sigma_per_sqrt_s()  # the prior: what a cold start quotes with
    skew = quoter.skew
    core = (skew.half_spread_ticks(fair, sigma) if skew.prices_spread
            else quoter.spread.core_half_ticks(fair, sigma))
    half_ticks = quoter.spread.finalize(core, fair, 0.0)
    shift_ticks = abs(skew.shift_ticks(config.strategy.sizing.max_inventory_lots, fair, sigma))
    half_bps, shift_bps = half_ticks / fair * 1e4, shift_ticks / fair * 1e4
    band = config.risk.price_band_bps
    derived["half-spread at start (prior volatility)"] = (
        f"{half_bps:.3f} bps = {half_ticks:,.1f} ticks = "
        f"{_fmt((inst.tick_size * Decimal(half_ticks)).quantize(inst.tick_size))} quote")
    derived["inventory shift at the limit"] = f"{shift_bps:.3f} bps = {shift_ticks:,.1f} ticks"
    derived["price band (risk.price_band_bps)"] = (
        f"{band:g} bps = {_fmt((price * Decimal(str(band)) / 10_000).quantize(inst.tick_size))}"
        f" quote")
    if half_bps > band:
        warnings.append(Finding("risk.price_band_bps", f"{band:g} bps is narrower than the "
                                f"half-spread the quoter starts with ({half_bps:.3f} bps): "
                                f"every order is blocked as outside the band"))
    elif half_bps + shift_bps > band:
        warnings.append(Finding("risk.price_band_bps", f"{band:g} bps is narrower than the "
                                f"half-spread plus the inventory shift at the limit "
                                f"({half_bps + shift_bps:.3f} bps): near the limit, orders "
                                f"on the side away from fair value are blocked"))


def _files(config: Config, derived: dict[str, str], warnings: list[Finding]) -> None:
    """Recordings and secrets that are named but not there (a secret is read to check it,
    never shown). A secret file relative to ``$CREDENTIALS_DIRECTORY`` exists only inside
    the service (systemd's ``LoadCredential=``): outside it, it is not judged."""
    from mmdaemon.exchange.credentials import (
        CredentialsError,
        load_credentials,
        load_redis_password,
    )

    for i, path in enumerate(config.feed.recordings):
        if not Path(path).is_file():
            warnings.append(Finding(f"feed.recordings[{i}]", f"no such file: {path}"))
    secrets: list[tuple[str, str, Callable[[str], object]]] = []
    if config.exchange.adapter == "binance":
        secrets.append(("exchange.credentials", config.exchange.credentials, load_credentials))
    if config.firm.enabled and config.firm.password:
        secrets.append(("firm.password", config.firm.password, load_redis_password))
    for key, source, load in secrets:
        if source != "env" and not Path(source).is_absolute() and (
                "CREDENTIALS_DIRECTORY" not in os.environ):
            derived[key] = (f"the file {source!r} in $CREDENTIALS_DIRECTORY, which systemd "
                            f"sets for the service only: not checked here")
            continue
        try:
            load(source)
        except CredentialsError as exc:  # its text names the key already
            warnings.append(Finding(key, f"{str(exc).removeprefix(key).lstrip(' :=')}: "
                                    f"`mmdaemon run` would stop at start"))


def _size_text(inst: Instrument, lots: int, price: Decimal | None) -> str:
    text = f"{lots:,} lots = {_base(inst, lots)} base"
    if price is not None:
        text += f" = {_fmt((price * inst.lot_size * lots).quantize(Decimal('0.01')))} quote"
    return text


def _base(inst: Instrument, lots: int) -> str:
    return _fmt(inst.lot_size * lots)


def _fmt(value: Decimal) -> str:
    """Plain decimal text, no exponent, no trailing zeros."""
    return f"{value.normalize():f}"


def first_price(paths: Sequence[str | Path], config: Config) -> Decimal | None:
    """The first price in recordings (quote currency): the mid of the first two-sided book
    or venue top of book, else the first trade's price; None if there is none.

    Reads the files (the one part of this module that does I/O): Binance recordings through
    the codec, or a LOBSTER pair (message file, order-book file) for a ``lobster`` venue.
    """
    inst = config.instrument.build()
    for ticks in _prices(paths, config, inst):
        return inst.tick_size * ticks
    return None


def _prices(paths: Sequence[str | Path], config: Config, inst: Instrument) -> Iterator[Decimal]:
    """Prices in (possibly half) ticks as the recording goes: mids and trades."""
    if config.instrument.venue == "lobster":
        from mmdaemon.feed.lobster import read_lobster

        if len(paths) != 2:
            raise ValueError("a LOBSTER recording is two files: MESSAGE_CSV ORDERBOOK_CSV")
        for row in read_lobster(paths[0], paths[1], inst):
            if isinstance(row, BookUpdate) and row.bids and row.asks:
                yield Decimal(row.bids[0][0] + row.asks[0][0]) / 2
        return
    from mmdaemon.feed.recording import read_recording
    from mmdaemon.market import MarketState
    from mmdaemon.venues.binance import BinanceCodec

    market = MarketState(BinanceCodec(
        inst, "usdm" if config.instrument.venue == "binance-usdm" else "spot"))
    for item in read_recording(paths):
        if type(item) is not tuple:
            continue  # a malformed line: the next one may do
        for event in market.on_frame(*item):
            if isinstance(event, TopOfBook) and event.bid and event.ask:
                yield Decimal(event.bid + event.ask) / 2
            elif isinstance(event, Trade):
                yield Decimal(event.price)
        bid, ask = market.book.best_bid(), market.book.best_ask()
        if bid is not None and ask is not None:
            yield Decimal(bid + ask) / 2


def render(path: str, result: Review) -> str:
    """The review for people: the verdict, derived figures, warnings, every key."""
    count = len(result.warnings)
    lines = [f"{path}: valid, {count} warning{'' if count == 1 else 's'}"
             + (" (at the end)" if count else "")]
    if result.price is not None:
        lines.append(f"reference price: {_fmt(result.price)} quote ({result.price_source})")
    lines.append("effective configuration:")
    for key, (value, unit) in result.effective.items():
        # JSON text of a value reads as TOML here: quoted strings, true/false, [lists]
        shown = orjson.dumps(value).decode()
        lines.append(f"  {key} = {shown}" + (f"  # {unit}" if unit else ""))
    width = max(map(len, result.derived), default=0)
    lines.append("derived:")
    lines += [f"  {k:<{width}}  {v}" for k, v in result.derived.items()]
    # last, where a terminal leaves them in view
    lines += [f"WARNING {w.key}: {w.message}" for w in result.warnings]
    return "\n".join(lines)


def as_json(path: str, result: Review) -> dict[str, Any]:
    """The review for machines (``--json``)."""
    return {
        "config": path,
        "valid": True,
        "price": None if result.price is None else str(result.price),
        "price_source": result.price_source,
        "derived": result.derived,
        "warnings": [{"key": w.key, "message": w.message} for w in result.warnings],
        "effective": {k: {"value": v, "unit": u} for k, (v, u) in result.effective.items()},
    }
