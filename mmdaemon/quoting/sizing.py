"""Quote sizes from inventory: the article's rule, on the instrument's size grid.

With inventory ``inv`` and limit ``max`` (lots), ``ratio = min(|inv| / max, 1)``:

1. full = base_size_lots x (1 - ratio)                    (both sides shrink with |inv|)
2. the side that would *grow* the position (the bid when long, the ask when short) gets
   full x ``growing_side_fraction`` (the article's half size); at inv = 0 both get full.
3. the side that *reduces* it gets max(full, base_size_lots x ``reduce_side_min_fraction``)
   so that a position at the limit can still be worked off passively (the article's rule
   alone quotes nothing on either side at the limit; set the fraction to 0 to keep that).
4. no fill may take the position beyond the limit: bid <= max - inv, ask <= max + inv. In
   particular the growing side is 0 at the limit.
5. rounded DOWN to a multiple of the instrument's ``size_step_lots``; a size below
   ``min_size_lots`` or whose notional (price x size) is below ``min_notional`` becomes 0.

Integer arithmetic throughout (lots), except the fractions in steps 2-3.

Steps 1-4 are the strategy's choice; step 5 is the venue's rule. A side that steps 1-4
wanted but step 5 zeroed could not have become an order: :meth:`SizeRule.cuts` says which
and why, so the daemon can count and report it instead of quoting nothing in silence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from mmdaemon.model import Instrument, Side
from mmdaemon.quoting import _validate as v

MIN_SIZE = "min_size"
MIN_NOTIONAL = "min_notional"


class SizeCut(NamedTuple):
    """A side the strategy wanted to quote but the instrument's grid and minimums zeroed.

    ``reason`` is :data:`MIN_SIZE` (below ``min_size_lots`` after rounding down to
    ``size_step_lots``) or :data:`MIN_NOTIONAL` (price x size below ``min_notional``);
    ``wanted_lots`` is the size before rounding, ``size_lots`` after it, ``price_ticks``
    the quote's price on that side.
    """

    side: Side
    reason: str
    wanted_lots: int
    size_lots: int
    price_ticks: int


@dataclass(frozen=True, slots=True)
class SizingParams:
    """Sizing parameters; sizes in lots of the instrument.

    ``base_size_lots``: quote size at zero inventory (default 100,000 lots = 0.001 BTC for
    BINANCE_SPOT_BTCUSDT, about 62 USDT). ``max_inventory_lots``: inventory limit, either
    sign (default 1,000,000 lots = 0.01 BTC). ``growing_side_fraction``: share of the size
    kept on the side that grows the position (article: 0.5). ``reduce_side_min_fraction``:
    minimum size on the reducing side as a share of the base size (0 = the article's rule).
    """

    base_size_lots: int = 100_000
    max_inventory_lots: int = 1_000_000
    growing_side_fraction: float = 0.5
    reduce_side_min_fraction: float = 0.25

    def __post_init__(self) -> None:
        owner = "SizingParams"
        v.integer(owner, "base_size_lots", self.base_size_lots, "lots", lo=1)
        v.integer(owner, "max_inventory_lots", self.max_inventory_lots, "lots", lo=1)
        v.real(
            owner,
            "growing_side_fraction",
            self.growing_side_fraction,
            "share of the size",
            lo=0,
            hi=1,
        )
        v.real(
            owner,
            "reduce_side_min_fraction",
            self.reduce_side_min_fraction,
            "share of base_size_lots",
            lo=0,
            hi=1,
        )


class SizeRule:
    """Bid and ask sizes in lots for an inventory and the quote prices."""

    __slots__ = (
        "_base",
        "_grow",
        "_max",
        "_min_notional_units",
        "_min_size",
        "_reduce_floor",
        "_step",
        "params",
    )

    def __init__(self, instrument: Instrument, params: SizingParams | None = None) -> None:
        self.params = params = params or SizingParams()
        self._base = params.base_size_lots
        self._max = params.max_inventory_lots
        self._grow = params.growing_side_fraction
        self._reduce_floor = int(params.base_size_lots * params.reduce_side_min_fraction)
        self._step = instrument.size_step_lots
        self._min_size = instrument.min_size_lots
        self._min_notional_units = instrument.min_notional_units

    def wanted(self, inventory_lots: int) -> tuple[int, int]:
        """Steps 1-4: (bid_size, ask_size) in lots before the instrument's grid."""
        inv, base, limit = inventory_lots, self._base, self._max
        absinv = inv if inv >= 0 else -inv
        full = base * (limit - absinv) // limit if absinv < limit else 0
        if inv > 0:
            bid = int(full * self._grow)
            ask = full if full > self._reduce_floor else self._reduce_floor
        elif inv < 0:
            ask = int(full * self._grow)
            bid = full if full > self._reduce_floor else self._reduce_floor
        else:
            bid = ask = full
        # A complete fill must not carry the position past the limit.
        room = limit - inv
        if bid > room:
            bid = room if room > 0 else 0
        room = limit + inv
        if ask > room:
            ask = room if room > 0 else 0
        return bid, ask

    def sizes(self, inventory_lots: int, bid_ticks: int, ask_ticks: int) -> tuple[int, int]:
        """(bid_size, ask_size) in lots; 0 means do not quote that side."""
        bid, ask = self.wanted(inventory_lots)
        # Round down to the size step; 0 below the minimum size or notional, or at a
        # non-positive price (no order there, whatever min_notional is). Inlined for both
        # sides: this runs on every book event.
        step, min_size, min_notional = self._step, self._min_size, self._min_notional_units
        bid -= bid % step
        if bid < min_size or bid_ticks <= 0 or bid_ticks * bid < min_notional:
            bid = 0
        ask -= ask % step
        if ask < min_size or ask_ticks <= 0 or ask_ticks * ask < min_notional:
            ask = 0
        return bid, ask

    def cuts(self, inventory_lots: int, bid_ticks: int, ask_ticks: int) -> list[SizeCut]:
        """The sides :meth:`sizes` zeroes by step 5 alone (the grid and the minimums), and
        why. Not on the per-event path: the caller asks only when a side came out 0."""
        step, min_size, min_notional = self._step, self._min_size, self._min_notional_units
        out: list[SizeCut] = []
        for side, wanted, price in zip((Side.BUY, Side.SELL), self.wanted(inventory_lots),
                                       (bid_ticks, ask_ticks), strict=True):
            if wanted <= 0 or price <= 0:
                continue  # the strategy's own zero, or no price to quote at
            size = wanted - wanted % step
            if size < min_size:
                out.append(SizeCut(side, MIN_SIZE, wanted, size, price))
            elif price * size < min_notional:
                out.append(SizeCut(side, MIN_NOTIONAL, wanted, size, price))
        return out
