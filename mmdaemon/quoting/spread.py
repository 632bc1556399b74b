"""The spread model: one half-spread, every term in stated units.

The half-spread is the distance from the reservation price (fair value + inventory shift)
to each quote. It is built in bps of fair value and converted to ticks explicitly with
``ticks = bps x fair_ticks / 1e4`` (1 bp of a 61,800.00 USDT price with a 0.01 tick is
6.18 USDT = 618 ticks):

1. core, bps:      h = base_bps / 2 + vol_mult x sigma x sqrt(horizon_s) x 1e4
                   sigma is the volatility of log mid per sqrt(second) (a fraction), so
                   sigma x sqrt(horizon_s) x 1e4 is the one-standard-deviation move over
                   ``horizon_s`` seconds in bps. Volatility enters here and nowhere else.
                   (With skew mode "avellaneda_stoikov" or "glft" the model's own optimal
                   half-spread, in ticks, replaces this core; see :mod:`.skew`.)
2. market floor:   h >= market_spread_fraction x market_spread / 2 (our full spread is at
                   least that fraction of the market's; the article's 50%). Steps 1-2 are
                   the *model* half-spread.
3. adverse, x:     h x= (1 + e), e the excess of the recent adverse-move rate over this
                   market's baseline rate (a difference of shares, 0 until enough moves are
                   resolved; :mod:`.adverse`), then x= the toxicity multiplier (>= 1).
4. fee, bps:       h += maker_fee_bps x fair / 1e4 (a rebate, negative, narrows): the edge
                   per fill is stated net of the maker fee. Added *after* the multipliers,
                   which scale the price of risk, not a fixed cost per fill.
5. minimum, ticks: h >= min_half_spread_ticks (>= 0.5, so that flooring the bid and
                   ceiling the ask always leaves the two at least one tick apart).

So ``h = max(core, floor) x (1 + e) x toxic_multiplier + fee``, then the minimum.

Quotes are put on the tick grid by the quoter (bid rounded down, ask rounded up), so
widening never produces an off-grid price.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mmdaemon.quoting import _validate as v

_BPS = 1e-4  # one basis point as a fraction


@dataclass(frozen=True, slots=True)
class SpreadParams:
    """Spread model parameters.

    ``base_bps``: base *full* spread in bps of fair value (half of it each side; the
    article's 2 bps). ``vol_mult``: how many one-sigma moves over ``horizon_s`` seconds
    are added to the half-spread (dimensionless). ``horizon_s``: that horizon in seconds.
    ``maker_fee_bps``: maker fee in bps of notional added to the half-spread after the
    adverse multipliers (negative for a rebate). ``market_spread_fraction``: our full spread
    >= this fraction of the market's full spread (0 disables). ``min_half_spread_ticks``:
    minimum half-spread in ticks (>= 0.5). The adverse-selection widening's parameters are
    :class:`~mmdaemon.quoting.adverse.AdverseParams` (``strategy.adverse``).
    """

    base_bps: float = 2.0
    vol_mult: float = 1.0
    horizon_s: float = 1.0
    maker_fee_bps: float = 0.0
    market_spread_fraction: float = 0.5
    min_half_spread_ticks: float = 0.5

    def __post_init__(self) -> None:
        owner = "SpreadParams"
        v.real(owner, "base_bps", self.base_bps, "bps of fair value", lo=0)
        v.real(owner, "vol_mult", self.vol_mult, "sigmas over horizon_s", lo=0)
        v.real(owner, "horizon_s", self.horizon_s, "seconds", lo=0)
        v.real(owner, "maker_fee_bps", self.maker_fee_bps, "bps of notional, < 0 = rebate")
        v.real(
            owner,
            "market_spread_fraction",
            self.market_spread_fraction,
            "fraction of the market spread",
            lo=0,
        )
        v.real(owner, "min_half_spread_ticks", self.min_half_spread_ticks, "ticks", lo=0.5)


class SpreadModel:
    """Half-spread in ticks from fair value, volatility, market spread and adverse state."""

    __slots__ = (
        "_base_half_bps",
        "_fee_frac",
        "_floor_frac",
        "_min_ticks",
        "_vol_frac",
        "params",
    )

    def __init__(self, params: SpreadParams | None = None) -> None:
        self.params = params = params or SpreadParams()
        self._base_half_bps = params.base_bps / 2.0
        # vol_mult x sqrt(horizon_s) x 1e4 collapses to one factor: sigma -> bps
        self._vol_frac = params.vol_mult * math.sqrt(params.horizon_s) * 1e4
        self._fee_frac = params.maker_fee_bps * _BPS
        self._floor_frac = params.market_spread_fraction / 2.0  # full spread -> half
        self._min_ticks = params.min_half_spread_ticks

    def core_half_bps(self, sigma_per_sqrt_s: float) -> float:
        """Step 1: base_bps / 2 + vol_mult x sigma x sqrt(horizon_s) x 1e4, in bps."""
        return self._base_half_bps + self._vol_frac * sigma_per_sqrt_s

    def core_half_ticks(self, fair_ticks: float, sigma_per_sqrt_s: float) -> float:
        """Step 1 converted to ticks: bps x fair_ticks / 1e4."""
        return (self._base_half_bps + self._vol_frac * sigma_per_sqrt_s) * _BPS * fair_ticks

    def finalize(
        self,
        core_ticks: float,
        fair_ticks: float,
        market_spread_ticks: float,
        adverse_excess: float = 0.0,
        multiplier: float = 1.0,
    ) -> float:
        """Steps 2-5 on a core half-spread (ticks); returns the half-spread in ticks.

        ``market_spread_ticks`` is best ask - best bid; ``adverse_excess`` the recent
        adverse-move rate's excess over the baseline (0..1, 0 = none); ``multiplier`` the
        toxicity widening (>= 1, 1 = none).
        """
        floor = self._floor_frac * market_spread_ticks
        half = core_ticks if core_ticks > floor else floor
        half *= (1.0 + adverse_excess) * multiplier
        half += self._fee_frac * fair_ticks
        return half if half > self._min_ticks else self._min_ticks

    def half_spread_ticks(
        self,
        fair_ticks: float,
        sigma_per_sqrt_s: float,
        market_spread_ticks: float,
        adverse_excess: float = 0.0,
        multiplier: float = 1.0,
    ) -> float:
        """The whole model (steps 1-5) in ticks."""
        core = self.core_half_ticks(fair_ticks, sigma_per_sqrt_s)
        return self.finalize(core, fair_ticks, market_spread_ticks, adverse_excess, multiplier)

    def half_spread_bps(
        self,
        fair_ticks: float,
        sigma_per_sqrt_s: float,
        market_spread_ticks: float,
        adverse_excess: float = 0.0,
        multiplier: float = 1.0,
    ) -> float:
        """The whole model in bps of fair value (for reports and metrics)."""
        ticks = self.half_spread_ticks(
            fair_ticks, sigma_per_sqrt_s, market_spread_ticks, adverse_excess, multiplier
        )
        return ticks / fair_ticks / _BPS
