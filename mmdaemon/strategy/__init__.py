"""Strategies: the plug-in point for quoting (see docs/strategies.md).

A strategy turns a read-only :class:`StrategyView` into a :class:`~mmdaemon.model.Ladder`
of desired quotes; the engine calls it through :class:`~mmdaemon.strategy.guard.StrategyGuard`
and applies the risk gate after it. The built-ins (:mod:`.builtin`) use the same interface.
"""

from mmdaemon.model import Fill, Instrument, Ladder, Level, Side, TopOfBook, Trade
from mmdaemon.strategy.api import (
    BookReader,
    LimitsView,
    OrderView,
    SideReader,
    Strategy,
    StrategyView,
)

__all__ = [
    "BookReader",
    "Fill",
    "Instrument",
    "Ladder",
    "Level",
    "LimitsView",
    "OrderView",
    "Side",
    "SideReader",
    "Strategy",
    "StrategyView",
    "TopOfBook",
    "Trade",
]
