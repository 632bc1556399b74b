"""Quoting engine: pure, synchronous components that turn book events into a desired quote.

One module per component, each a small object with a frozen parameter dataclass:

- :mod:`.fair_value` -- fair value in fractional ticks (mid, L1 imbalance, depth imbalance,
  microprice);
- :mod:`.volatility` -- realised volatility of mid log returns on event time (EWMA, rolling);
- :mod:`.spread` -- the half-spread model in bps of fair value, converted to ticks;
- :mod:`.skew` -- inventory skew (linear, Avellaneda-Stoikov, GLFT);
- :mod:`.sizing` -- quote sizes from inventory on the instrument's size grid;
- :mod:`.adverse` -- moves after our fills, widening on the adverse-move excess, toxicity;
- :mod:`.quoter` -- composes them, with the tick discipline, into a :class:`~mmdaemon.model.Quote`.

Units: prices in ticks, sizes in lots, time in ns (from events; nothing reads a clock).
"""

from mmdaemon.quoting.adverse import AdverseParams, AdverseSelection
from mmdaemon.quoting.fair_value import FairValue, FairValueParams
from mmdaemon.quoting.quoter import Quoter, QuoterParams
from mmdaemon.quoting.sizing import SizeRule, SizingParams
from mmdaemon.quoting.skew import InventorySkew, SkewParams
from mmdaemon.quoting.spread import SpreadModel, SpreadParams
from mmdaemon.quoting.volatility import (
    EwmaVolatility,
    RollingVolatility,
    VolatilityParams,
    make_volatility,
)

__all__ = [
    "AdverseParams",
    "AdverseSelection",
    "EwmaVolatility",
    "FairValue",
    "FairValueParams",
    "InventorySkew",
    "Quoter",
    "QuoterParams",
    "RollingVolatility",
    "SizeRule",
    "SizingParams",
    "SkewParams",
    "SpreadModel",
    "SpreadParams",
    "VolatilityParams",
    "make_volatility",
]
