"""``mmdaemon check-config``: what a valid config will do, before it runs.

:func:`review` takes a loaded (so already valid) config and a reference price, and returns
the effective configuration (every key, defaults included, with its unit), the figures
derived from it (order sizes in the base currency and their notional at the price, limits
in the quote currency, the half-spread the quoter starts from) and warnings for settings
that load but cannot work as meant: an order below the instrument's minimum size or
notional, a soft limit at the hard one, a price band narrower than the quoted spread, a
recording or credentials that are not there. It is pure: the price comes from the caller
(``--price``, or the first price of a recording, read by :func:`sample_recording`).

Units follow the key names (``_lots``, ``_ticks``, ``_bps``, ``_ms``, ``_s``, ``_bytes``);
money keys are decimal strings in the quote currency; "base" and "quote" are the
instrument's two currencies (BTC and USDT for BTCUSDT).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Context, Decimal, localcontext
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from mmdaemon.config import Config
from mmdaemon.model import MAX_UNITS, BookUpdate, Instrument, Malformed, TopOfBook, Trade
from mmdaemon.quoting.fair_value import MODE_ALIASES, NOT_A_CONFIG_KEY
from mmdaemon.quoting.quoter import Quoter
from mmdaemon.venues.binance_parse import assets_of

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


def review(config: Config, price: Decimal | None, price_source: str = "",
           sample: PriceSample | None = None) -> Review:
    """Effective values, derived figures and warnings of ``config`` at ``price`` (quote
    currency per base unit; None: the notional rules cannot be checked); ``sample``, the
    start of the recording the price came from, if it did."""
    with localcontext(Context(prec=120)):  # exact figures for any grid a config may load
        return _review(config, price, price_source, sample)


def _review(config: Config, price: Decimal | None, price_source: str,
            sample: PriceSample | None) -> Review:
    inst = config.instrument.build()
    derived: dict[str, str] = {}
    warnings: list[Finding] = []
    if sample is not None and sample.malformed * 100 > sample.frames:
        warnings.append(Finding("instrument", f"{sample.malformed:,} of the first "
                                f"{sample.frames:,} frames of the recording do not decode "
                                f"with this instrument (first: {sample.first_error}): the "
                                f"symbol or the grids do not fit it"))
    if price is None:
        warnings.append(Finding("--price", "no reference price (give --price or --recording, "
                                "or feed.recordings): the minimum notional, the limits in "
                                "the quote currency and the spread in ticks are not checked"))
    _sizes(config, inst, price, derived, warnings)
    _limits(config, inst, price, derived, warnings)
    if price is not None:
        _spread(config, inst, price, derived, warnings)
    _files(config, derived, warnings)
    _fair_value(config, derived, warnings)
    _reference_currency(config, warnings)
    return Review(effective(config, inst), derived, warnings, price, price_source)


SECRET_SOURCES = ("exchange.credentials", "firm.password")
"""Keys that name where a secret is, never the secret: ``"env"``, ``""`` or a file."""


def effective(config: Config, inst: Instrument) -> dict[str, tuple[Any, str]]:
    """Every key of ``config`` (defaults included) as ``{dotted key: (value, unit)}``; a
    secret's source that does not look like one is not shown (:func:`_secret_source`)."""
    return {key: ((_secret_source(value) if key in SECRET_SOURCES else value),
                  _unit(key, value, inst)) for key, value in _leaves(config, "")}


def _secret_source(value: str) -> str:
    """``value`` if it reads as a source ("env", "", a file name such as ``redis.toml``,
    a path, a systemd credential name); else it may be the secret itself, typed where its
    source belongs: hidden."""
    if value in ("", "env") or "/" in value or value.endswith(".toml") or (
            value.isidentifier() and len(value) <= 32):
        return value
    return "<hidden: not 'env' or a file name; if this is the secret, move it to a file>"


def _leaves(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    for f in dataclasses.fields(node):
        if f.metadata.get(NOT_A_CONFIG_KEY):
            continue  # read from a file a key names: :func:`_fair_value` describes it
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
    for suffix, unit in (("_bps", "bps"), ("_ms", "ms"), ("_ns", "ns"), ("_s", "s"),
                         ("_bytes", "bytes")):
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
    if risk.max_open_orders < 2:
        warnings.append(Finding("risk.max_open_orders", f"{risk.max_open_orders}: a two-sided "
                                f"quote needs 2 open orders; the second side of every quote "
                                f"is blocked"))
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
    if not (math.isfinite(half_ticks) and math.isfinite(shift_ticks)
            and max(half_ticks, shift_ticks) <= MAX_UNITS):
        warnings.append(Finding("strategy", f"the half-spread ({half_ticks:g} ticks) or the "
                                f"inventory shift ({shift_ticks:g} ticks) at the start is "
                                f"beyond any price ({MAX_UNITS:,} ticks): the strategy's "
                                f"parameters are out of range, the quoter would quote "
                                f"nothing"))
        return
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


def _fair_value(config: Config, derived: dict[str, str], warnings: list[Finding]) -> None:
    """An old mode name (it may have been meant as another model); the fitted table."""
    fair = config.strategy.fair_value
    if fair.mode in MODE_ALIASES:
        new = MODE_ALIASES[fair.mode]
        warnings.append(Finding("strategy.fair_value.mode", f"{fair.mode!r} is the old name "
                                f"of {new!r}, the size-weighted mid (bid x A + ask x B) / "
                                f"(A + B), and works as that; write {new!r}, or 'stoikov' for "
                                f"Stoikov's micro-price (a table fitted by mmdaemon "
                                f"fit-microprice)"))
    table = fair.stoikov
    if table is not None:
        fitted = sum(g is not None for g in table.g_ticks)
        derived["micro-price table (strategy.fair_value.stoikov_table)"] = (
            f"{table.buckets} imbalance buckets x spreads 1..{table.spreads} ticks, "
            f"{fitted} of {len(table.g_ticks)} states fitted, |g| up to "
            f"{max((abs(g) for g in table.g_ticks if g is not None), default=0.0):.3f} ticks; "
            f"elsewhere the weighted mid")
        if fair.mode != "stoikov":
            warnings.append(Finding("strategy.fair_value.stoikov_table", f"read, but mode is "
                                    f"{fair.mode!r}: the table is used only by 'stoikov'"))


def _reference_currency(config: Config, warnings: list[Finding]) -> None:
    """A reference quoted in another currency than the instrument: its mid is converted to
    the traded ticks by the grids alone, as if one unit of each currency were worth the
    same (a stablecoin pair may be meant; BTCUSDT for ETHBTC is not)."""
    ref = config.reference
    if ref is None or "lobster" in (ref.venue, config.instrument.venue):
        return
    try:
        theirs, ours = assets_of(ref.symbol).quote, assets_of(config.instrument.symbol).quote
    except ValueError:  # a quote asset not known: nothing to compare
        return
    if theirs != ours:
        warnings.append(Finding("reference.symbol", f"{ref.symbol!r} is quoted in {theirs}, "
                                f"the instrument {config.instrument.symbol!r} in {ours}: its "
                                f"mid is taken as a price in {ours} (lead_lag's fair value "
                                f"and basis mix the two currencies)"))


def _files(config: Config, derived: dict[str, str], warnings: list[Finding]) -> None:
    """Recordings and secrets that are named but not there, or not fit to use (a secret's
    file is read to check it and its resolved path reported, the secret never shown). A
    systemd credential name is a file in ``$CREDENTIALS_DIRECTORY``, which exists only
    inside the service (``LoadCredential=``): outside it, it is not judged."""
    from mmdaemon.exchange.credentials import (
        CredentialsError,
        load_credentials,
        load_redis_password,
        secret_file,
    )

    for i, path in enumerate(config.feed.recordings):
        if not Path(path).is_file():
            warnings.append(Finding(f"feed.recordings[{i}]", f"no such file: {path}"))
    latency_file = config.exchange.latency_file
    if config.exchange.adapter == "paper" and latency_file:
        from mmdaemon.exchange.latency import KINDS, LatencyFileError
        from mmdaemon.exchange.latency_file import read_latency_file

        try:
            samples = read_latency_file(Path(latency_file))
        except LatencyFileError as exc:  # replay and run refuse it: say so now
            warnings.append(Finding("exchange.latency_file", str(exc)))
        else:
            drawn = [kind for kind in KINDS if samples[kind]]
            derived["exchange.latency_file"] = (
                f"{latency_file}: draws {', '.join(drawn)} from "
                f"{', '.join(str(len(samples[k])) for k in drawn)} samples; the other "
                "delays are the constants")
    ca_file = config.firm.tls_ca_file
    if config.firm.enabled and ca_file and not Path(ca_file).is_file():
        warnings.append(Finding("firm.tls_ca_file", f"no such file: {ca_file}"))
    secrets: list[tuple[str, str, Callable[[str], object]]] = []
    if config.exchange.adapter == "binance":
        allow = config.exchange.allow_readable_credentials
        secrets.append(("exchange.credentials", config.exchange.credentials,
                        lambda s: load_credentials(s, allow_readable=allow)))
    if config.firm.enabled and config.firm.password:
        allow_password = config.firm.allow_readable_password
        secrets.append(("firm.password", config.firm.password,
                        lambda s: load_redis_password(s, allow_readable=allow_password)))
    for key, source, load in secrets:
        if _secret_source(source) != source:
            warnings.append(Finding(key, "expected where the secret is ('env' or a file), "
                                    "got something that may be the secret itself (not shown)"))
            continue
        if source != "env" and "/" not in source and "CREDENTIALS_DIRECTORY" not in os.environ:
            derived[key] = (f"the systemd credential {source!r}: a file in "
                            f"$CREDENTIALS_DIRECTORY, which systemd sets for the service "
                            f"only: not checked here")
            continue
        try:
            load(source)
        except CredentialsError as exc:  # its text names the key already
            warnings.append(Finding(key, f"{str(exc).removeprefix(key).lstrip(' :=')}: "
                                    f"`mmdaemon run` would stop at start"))
            continue
        if source != "env":
            derived[key] = f"read from {secret_file(key, source)} (not shown)"


def _size_text(inst: Instrument, lots: int, price: Decimal | None) -> str:
    text = f"{lots:,} lots = {_base(inst, lots)} base"
    if price is not None:
        # to the price's own grid, as the band and spread are: 0.01 is a USDT cent, and an
        # ETHBTC order of 0.06183764 BTC read 0.06
        text += f" = {_fmt((price * inst.lot_size * lots).quantize(inst.tick_size))} quote"
    return text


def _base(inst: Instrument, lots: int) -> str:
    return _fmt(inst.lot_size * lots)


def _fmt(value: Decimal) -> str:
    """Plain decimal text, no exponent, no trailing zeros."""
    return f"{value.normalize():f}"


SAMPLE_FRAMES = 1000
"""How many frames (or LOBSTER rows) :func:`sample_recording` reads at most. More than 1%
of them not decoding means the instrument does not fit the recording; a stray odd row (the
LOBSTER sample's hidden executions at half cents) does not."""


class PriceSample(NamedTuple):
    """The start of a recording as the config's instrument decodes it: the first price
    (quote currency; None if there was none), the file it came from, how many frames were
    read and how many of them did not decode (with the first reason)."""

    price: Decimal | None
    path: str
    frames: int
    malformed: int
    first_error: str


def sample_recording(paths: Sequence[str | Path], config: Config) -> PriceSample:
    """The first price of recordings, and whether their first :data:`SAMPLE_FRAMES` frames
    fit the config's instrument (symbol, tick, lot): the mid of the first two-sided book or
    venue top of book, else the first trade's price.

    Reads the files (the one part of this module that does I/O): Binance recordings through
    the codec, or a LOBSTER pair (message file, order-book file) for a ``lobster`` venue.
    """
    inst = config.instrument.build()
    price: Decimal | None = None
    source = ""
    frames = malformed = 0
    first_error = ""
    for path, item in _decoded(paths, config, inst):
        frames += 1
        if isinstance(item, str):
            malformed += 1
            first_error = first_error or item
        elif price is None and item is not None:
            price, source = inst.tick_size * item, path
        if frames >= SAMPLE_FRAMES:
            break
    return PriceSample(price, source, frames, malformed, first_error)


def _decoded(paths: Sequence[str | Path], config: Config,
             inst: Instrument) -> Iterator[tuple[str, Decimal | str | None]]:
    """Per frame (or LOBSTER row), with its file: a price in (possibly half) ticks, the
    reason it did not decode (text), or None (decoded, no price yet)."""
    if config.instrument.venue == "lobster":
        from mmdaemon.feed.lobster import read_lobster

        if len(paths) != 2:
            raise ValueError("a LOBSTER recording is two files: MESSAGE_CSV ORDERBOOK_CSV")
        for row in read_lobster(paths[0], paths[1], inst):
            if isinstance(row, Malformed):
                yield str(paths[0]), row.reason
            elif isinstance(row, BookUpdate) and row.bids and row.asks:
                yield str(paths[0]), Decimal(row.bids[0][0] + row.asks[0][0]) / 2
            else:
                yield str(paths[0]), None
        return
    from mmdaemon.feed.recording import read_recording
    from mmdaemon.market import MarketState
    from mmdaemon.venues.binance import BinanceCodec

    for path in paths:  # one file at a time, to say which one the price came from
        market = MarketState(BinanceCodec(
            inst, "usdm" if config.instrument.venue == "binance-usdm" else "spot"))
        for item in read_recording([path]):
            if type(item) is not tuple:
                yield str(path), item.reason  # type: ignore[union-attr]
                continue
            found: Decimal | str | None = None
            for event in market.on_frame(*item):
                if isinstance(event, Malformed):
                    found = event.reason
                elif found is None and isinstance(event, TopOfBook) and event.bid and event.ask:
                    found = Decimal(event.bid + event.ask) / 2
                elif found is None and isinstance(event, Trade):
                    found = Decimal(event.price)
            bid, ask = market.book.best_bid(), market.book.best_ask()
            if found is None and bid is not None and ask is not None:
                found = Decimal(bid + ask) / 2
            yield str(path), found


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
