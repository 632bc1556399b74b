"""Ladder shaping: the quoter's one bid and one ask become N levels a side.

The quoter's quote is the innermost level (level 0). From it, per side:

1. ``min_distance_ticks`` n > 0: level 0 is moved back to at least n ticks behind the touch
   on its side (bid <= best bid - n, ask >= best ask + n); 0 turns the rule off (level 0
   may then improve on the touch when the model says so, as with one level).
2. level i sits ``i x spacing`` ticks behind level 0 (bids down, asks up), the spacing
   being ``spacing_ticks``, or ``spacing_bps`` of the quote's fair value rounded to the
   nearest whole tick and at least 1 tick.
3. ``join_touch``: when level 0 is behind the touch (bid < best bid, ask > best ask), it
   joins it (bid = best bid, ask = best ask); levels 1.. keep the prices step 2 gave them,
   so the depth of the ladder stays where the model put it and only the innermost order
   takes its place in the touch's queue. It never moves a level inside the spread, and a
   level at the touch on its own side is passive (the book is neither crossed nor locked).
   ``join_touch`` with ``min_distance_ticks`` > 0 contradicts itself and is refused.
4. sizes: level i wants ``size_profile[i]`` x level 0's size (an empty profile is flat:
   every level the size of level 0); a level at a price <= 0 is left out. The instrument's
   size step and minimums are applied after the risk gate, to every strategy's ladder
   alike (:meth:`mmdaemon.strategy.guard.StrategyGuard.sendable`: rounded down, a level
   below the minimums dropped and counted as unsendable).

A side of the quote with size 0 (or price 0: no usable book) gives no level on that side.
Every level stays passive: outer levels are further from the other side than level 0,
which the quoter already keeps off the opposite best. Prices in ticks, sizes in lots.
Pure and synchronous: the book's best prices are passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmdaemon.model import Ladder, Level, Quote, Side
from mmdaemon.quoting import _validate as v

MAX_LEVELS = 50
"""The most levels a side may have: beyond any venue's open-order limit (Binance: 200 a
symbol) shared by both sides, and a bound on the work per quote."""


@dataclass(frozen=True, slots=True)
class LadderParams:
    """Ladder parameters (``[strategy.ladder]``); see the module docstring for the rules.

    ``levels``: levels a side (1 = the quoter's quote as it is). ``spacing_ticks`` (ticks)
    or ``spacing_bps`` (bps of fair value): the step between levels; exactly one of them is
    set (> 0) when ``levels`` > 1, 0 means unset. ``size_profile``: one multiplier of level
    0's size per level, the first 1.0 (empty: flat). ``join_touch``: level 0 joins the
    touch when behind it. ``min_distance_ticks``: no level closer than this to the touch on
    its side (ticks; 0: off).
    """

    levels: int = 1
    spacing_ticks: int = 0
    spacing_bps: float = 0.0
    size_profile: tuple[float, ...] = ()
    join_touch: bool = False
    min_distance_ticks: int = 0

    def __post_init__(self) -> None:
        owner = "LadderParams"
        v.integer(owner, "levels", self.levels, "levels a side", lo=1)
        if self.levels > MAX_LEVELS:
            raise v.fail(owner, "levels", f"an integer from 1 to {MAX_LEVELS}", self.levels)
        v.integer(owner, "spacing_ticks", self.spacing_ticks, "ticks; 0: unset", lo=0)
        v.real(owner, "spacing_bps", self.spacing_bps, "bps of fair value; 0: unset", lo=0)
        v.integer(owner, "min_distance_ticks", self.min_distance_ticks, "ticks; 0: off", lo=0)
        if not isinstance(self.join_touch, bool):
            raise v.fail(owner, "join_touch", "true or false", self.join_touch)
        if self.levels > 1 and (self.spacing_ticks > 0) == (self.spacing_bps > 0):
            raise v.fail(owner, "spacing_ticks", f"exactly one of spacing_ticks (ticks) and "
                         f"spacing_bps (bps of fair value) set above 0 with {self.levels} "
                         f"levels; spacing_bps is", self.spacing_bps)
        if self.join_touch and self.min_distance_ticks > 0:
            raise v.fail(owner, "join_touch", "false while min_distance_ticks > 0 (a level "
                         "cannot both join the touch and keep away from it)", True)
        profile = self.size_profile
        if profile:
            if not isinstance(profile, tuple) or len(profile) != self.levels:
                raise v.fail(owner, "size_profile", f"a list of {self.levels} multipliers "
                             f"(one per level) or [] for flat", profile)
            for i, m in enumerate(profile):
                v.real(owner, f"size_profile[{i}]", m, "multiple of level 0's size", lo=0,
                       lo_open=True)
            if profile[0] != 1:
                raise v.fail(owner, "size_profile[0]", "1.0 (level 0 is the quoter's size)",
                             profile[0])

    def multiplier(self, level: int) -> float:
        """Level ``level``'s size as a multiple of level 0's."""
        return self.size_profile[level] if self.size_profile else 1.0


class LadderShaper:
    """Builds a :class:`~mmdaemon.model.Ladder` from the quoter's quote (:meth:`build`)."""

    __slots__ = ("params", "plain")

    def __init__(self, params: LadderParams | None = None) -> None:
        self.params = params = params or LadderParams()
        # one level, no touch rule: the quote passes through as it is (the hot path today)
        self.plain = params.levels == 1 and not params.join_touch \
            and params.min_distance_ticks == 0

    def spacing_ticks(self, fair_ticks: float) -> int:
        """The step between levels at fair value ``fair_ticks`` (ticks, >= 1)."""
        p = self.params
        if p.spacing_ticks > 0:
            return p.spacing_ticks
        return max(1, round(fair_ticks * p.spacing_bps / 1e4))

    def build(self, quote: Quote, best_bid: int | None, best_ask: int | None) -> Ladder:
        """The ladder for ``quote`` with the book's best prices (ticks; None: that side of
        the book is empty, the touch rules then do not apply)."""
        if self.plain:
            return Ladder(((quote.bid, quote.bid_size),) if quote.bid_size > 0 else (),
                          ((quote.ask, quote.ask_size),) if quote.ask_size > 0 else (),
                          quote.fair, quote.ts_ns)
        step = self.spacing_ticks(quote.fair) if self.params.levels > 1 else 0
        bids = self._side(Side.BUY, quote.bid, quote.bid_size, best_bid, step)
        asks = self._side(Side.SELL, quote.ask, quote.ask_size, best_ask, step)
        return Ladder(bids, asks, quote.fair, quote.ts_ns)

    def _side(self, side: Side, price0: int, size0: int, touch: int | None,
              step: int) -> tuple[Level, ...]:
        """One side's levels, best first; ``side`` is the quote's side (BUY: bids)."""
        if size0 <= 0 or price0 <= 0:
            return ()
        p, away = self.params, -int(side)  # away: the direction of worse prices (bid: -1)
        if touch is not None and p.min_distance_ticks > 0:
            limit = touch + away * p.min_distance_ticks
            price0 = min(price0, limit) if side is Side.BUY else max(price0, limit)
        out: list[Level] = []
        for i in range(p.levels):
            price = price0 + away * i * step
            if i == 0 and p.join_touch and touch is not None and (touch - price) * side > 0:
                price = touch  # behind the touch: join it
            size = int(size0 * p.multiplier(i)) if i else size0
            if price > 0 and size > 0:
                out.append((price, size))
        return tuple(out)
