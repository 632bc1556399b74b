"""The built-in strategies: the article's composition, Avellaneda-Stoikov and GLFT.

All three are :class:`~mmdaemon.quoting.quoter.Quoter` (fair value, volatility, spread,
inventory skew, sizing, adverse selection; see :mod:`mmdaemon.quoting`) behind the same
:class:`~mmdaemon.strategy.api.Strategy` interface as a desk's own strategy: the engine calls
them through the same guard, with the same view. They differ in the skew model
(``[strategy.skew] mode``): the composition uses the configured one (``linear`` by default),
``avellaneda_stoikov`` and ``glft`` fix it to theirs (the config sets it:
:data:`mmdaemon.config.BUILTIN_SKEW_MODE`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mmdaemon.model import Fill, Instrument, Ladder, Side, TopOfBook, Trade
from mmdaemon.quoting.ladder import LadderShaper
from mmdaemon.quoting.quoter import Quoter, QuoterParams
from mmdaemon.strategy.api import StrategyView, engine_book


class QuoterStrategy:
    """A built-in strategy: the :class:`Quoter` of ``params``, its quote shaped into
    ``params.ladder``'s levels a side (:mod:`mmdaemon.quoting.ladder`)."""

    __slots__ = ("_build", "_on_book", "_plain", "_set_inventory", "on_top_of_book",
                 "on_trade", "quoter")

    def __init__(self, instrument: Instrument, params: QuoterParams, log: Any = None) -> None:
        """``log``: where online calibration's re-fits are logged (None: nowhere)."""
        self.quoter = quoter = Quoter(instrument, params, log=log)
        # the hooks are the quoter's own methods (they take and ignore the view)
        self.on_trade: Callable[[Trade, StrategyView], None] = quoter.on_trade
        self.on_top_of_book: Callable[[TopOfBook, StrategyView], None] = (
            quoter.on_top_of_book)
        self._on_book = quoter.on_book
        self._set_inventory = quoter.set_inventory
        shaper = LadderShaper(params.ladder)
        self._build = shaper.build
        self._plain = shaper.plain  # one level, no touch rule: the quote as it is

    def quote(self, view: StrategyView) -> Ladder:
        """The quoter's quote on the view's book at the view's time (see
        :mod:`mmdaemon.quoting.quoter`), shaped into the ladder's levels."""
        self._set_inventory(view.position_lots)
        book = engine_book(view)
        q = self._on_book(book, view.now_ns)
        bid_size, ask_size = q.bid_size, q.ask_size
        if bid_size > 0 and ask_size > 0:
            if self._plain:  # the per-event path: no shaping to do
                return Ladder(((q.bid, bid_size),), ((q.ask, ask_size),), q.fair, q.ts_ns)
        elif q.bid > 0:
            # a side the instrument's grid zeroed: hand its wanted size on, so the guard
            # drops it and says why (an adverse pause or the model's own zero gives none)
            for cut in self.quoter.size_cuts(q):
                if cut.side is Side.BUY:
                    q = q._replace(bid_size=cut.wanted_lots)
                else:
                    q = q._replace(ask_size=cut.wanted_lots)
        return self._build(q, book.best_bid(), book.best_ask())

    def on_fill(self, fill: Fill, view: StrategyView) -> None:
        """Markouts of our fill for the adverse-selection component; the mid is the one
        before the event that filled us (``Fill.mid_x2``)."""
        self.quoter.set_inventory(view.position_lots)
        self.quoter.on_fill(fill, fill.mid_x2 / 2)
