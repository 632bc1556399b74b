"""The ``[instrument]`` section, and how the venue's rules complete and check it.

Every grid key may be left out: it is then the venue's, read from its exchangeInfo at start
(:mod:`mmdaemon.venue_rules` fetches it, :mod:`mmdaemon.venues.binance_rules` parses it,
:func:`apply_rules` here decides). What the config states is checked against the venue:

- ``tick_size`` must equal ``PRICE_FILTER.tickSize``;
- ``lot_size`` (the unit sizes are counted in) must divide every size the venue writes
  (``10^-baseAssetPrecision`` on spot, ``10^-quantityPrecision`` on USD-M), its
  ``LOT_SIZE.stepSize`` and ``minQty``; left out it is the venue's finest size;
- ``size_step_lots`` x ``lot_size`` must equal ``stepSize``;
- ``min_size_lots`` x ``lot_size`` and ``min_notional`` must be at least the venue's
  ``minQty`` and minimum notional: a floor of the desk's own above the venue's is kept, one
  below it would send orders the venue refuses;
- the symbol must be ``TRADING`` and list the post-only order the daemon sends.

A disagreement raises ``ValueError`` naming the key, the config's value and the venue's
(the caller makes it a :class:`~mmdaemon.config.ConfigError`, exit 2).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Literal

from mmdaemon.model import MAX_UNITS, Instrument
from mmdaemon.venues.binance_rules import VenueRules

GRID_KEYS = ("tick_size", "lot_size", "size_step_lots", "min_size_lots", "min_notional")
"""The ``[instrument]`` keys the venue's rules can fill in."""


@dataclass(frozen=True)
class InstrumentConfig:
    """The instrument: grids as decimal strings (exact), order sizes in lots; None: left
    out of the config, the venue's (see the module). :meth:`build` needs the grids known."""

    venue: Literal["binance-spot", "binance-usdm", "lobster"]
    symbol: str
    tick_size: str | None = None
    lot_size: str | None = None
    size_step_lots: int | None = None
    min_size_lots: int | None = None
    min_notional: str | None = None

    def build(self) -> Instrument:
        """The instrument; a ValueError naming the grid key still unknown."""
        for key in ("tick_size", "lot_size"):
            if getattr(self, key) is None:
                raise ValueError(f"instrument.{key}: missing, and no venue rules to take it "
                                 f"from (a live feed's exchangeInfo, or exchangeInfo-"
                                 f"{self.symbol}.json beside the recordings): set it")
        assert self.tick_size is not None and self.lot_size is not None
        return Instrument(self.symbol, self.tick_size, self.lot_size,
                          size_step_lots=self.size_step_lots or 1,
                          min_size_lots=self.min_size_lots or 1,
                          min_notional=self.min_notional or "0")

    def complete(self) -> bool:
        """Every grid key is stated."""
        return all(getattr(self, key) is not None for key in GRID_KEYS)

    def left_out_from(self, running: InstrumentConfig) -> InstrumentConfig:
        """This section with the grid keys it leaves out taken from ``running`` (the
        venue's, read at start): what a reloaded file means by leaving them out."""
        return dataclasses.replace(running, venue=self.venue, symbol=self.symbol, **{
            key: getattr(self, key) for key in GRID_KEYS if getattr(self, key) is not None})


def _text(value: Decimal) -> str:
    """A decimal as plain text without trailing zeros (``0.01000000`` -> ``0.01``)."""
    return f"{value.normalize():f}"


def apply_rules(inst: InstrumentConfig, rules: VenueRules) -> tuple[InstrumentConfig,
                                                                    tuple[str, ...]]:
    """``inst`` completed from the venue's ``rules`` and checked against them (see the
    module), and the keys that were filled in. Raises ValueError naming the key, what the
    config says and what the venue says."""
    who = f"Binance {rules.symbol}'s"
    if not rules.trading:
        raise ValueError(f"instrument.symbol: {who} status is {rules.status}, not TRADING: "
                         f"the venue takes no orders for it")
    missing = rules.post_only_missing()
    if missing:
        raise ValueError(f"instrument.symbol: {who} exchangeInfo does not list {missing}: the "
                         f"daemon's post-only orders would be refused")
    given = {key: getattr(inst, key) for key in GRID_KEYS if getattr(inst, key) is not None}
    try:
        tick = Decimal(inst.tick_size) if inst.tick_size is not None else rules.tick_size
        finest = Decimal(1).scaleb(-rules.size_places)
        lot = Decimal(inst.lot_size) if inst.lot_size is not None else min(
            finest, _unit_of(rules.step_size), _unit_of(rules.min_qty))
    except InvalidOperation:  # the config's own check refused these already
        raise ValueError("instrument: tick_size and lot_size: expected decimals") from None
    if tick != rules.tick_size:
        raise ValueError(f"instrument.tick_size: the config says {inst.tick_size}, {who} "
                         f"PRICE_FILTER tickSize is {_text(rules.tick_size)}")
    places = "quantityPrecision" if rules.market == "usdm" else "baseAssetPrecision"
    for venue_value, what in ((finest, f"finest size ({places} {rules.size_places})"),
                              (rules.step_size, "LOT_SIZE stepSize"),
                              (rules.min_qty, "LOT_SIZE minQty")):
        if venue_value / lot > MAX_UNITS:  # and decimal's % could not even divide them
            raise ValueError(f"instrument.lot_size: {inst.lot_size or _text(lot)} is too "
                             f"fine for {who} {what}, {_text(venue_value)}: more than "
                             f"{MAX_UNITS} lots")
        if venue_value % lot:
            raise ValueError(f"instrument.lot_size: the config says {inst.lot_size}, which "
                             f"does not divide {who} {what}, {_text(venue_value)}: a lot "
                             f"must divide every size the venue uses")
    step_lots = int(rules.step_size / lot)
    if inst.size_step_lots is not None and inst.size_step_lots != step_lots:
        raise ValueError(f"instrument.size_step_lots: the config says {inst.size_step_lots} "
                         f"(x lot {_text(lot)} = {_text(inst.size_step_lots * lot)}), {who} "
                         f"LOT_SIZE stepSize is {_text(rules.step_size)} ({step_lots} lots)")
    min_lots = max(1, int(rules.min_qty / lot))
    if inst.min_size_lots is not None and inst.min_size_lots < min_lots:
        raise ValueError(f"instrument.min_size_lots: the config says {inst.min_size_lots} "
                         f"(x lot {_text(lot)} = {_text(inst.min_size_lots * lot)}), below "
                         f"{who} LOT_SIZE minQty {_text(rules.min_qty)} ({min_lots} lots)")
    if inst.min_notional is not None and Decimal(inst.min_notional) < rules.min_notional:
        name = "MIN_NOTIONAL notional" if rules.market == "usdm" else "minimum notional"
        raise ValueError(f"instrument.min_notional: the config says {inst.min_notional}, "
                         f"below {who} {name} {_text(rules.min_notional)}")
    done = dataclasses.replace(
        inst, tick_size=inst.tick_size or _text(tick), lot_size=inst.lot_size or _text(lot),
        size_step_lots=step_lots, min_size_lots=inst.min_size_lots or min_lots,
        min_notional=inst.min_notional or _text(rules.min_notional))
    return done, tuple(key for key in GRID_KEYS if key not in given)


def _unit_of(value: Decimal) -> Decimal:
    """The last decimal place of ``value`` (``0.00100`` -> ``0.001``; 0 -> 1)."""
    if not value:
        return Decimal(1)
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    return Decimal(1).scaleb(min(exponent, 0))
