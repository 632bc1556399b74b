"""Fair value: where, in fractional ticks, the quote is centred before inventory skew.

Modes (``FairValueParams.mode``):

- ``"mid"``: (best_bid + best_ask) / 2.
- ``"l1_imbalance"``: mid + ``l1_shift_ticks`` x I1, where I1 = (B - A) / (B + A) is the
  top-of-book size imbalance in [-1, 1] (B, A = best bid / ask size in lots). With the
  default 0.5 ticks this is the article's ``mid + imbalance x tick x 0.5`` expressed in ticks.
- ``"depth_imbalance"``: mid x (1 + ``depth_sensitivity_bps`` x I_N / 1e4), where I_N is the
  depth-weighted imbalance over ``depth_levels`` levels per side with weights 1/(i+1), i = 0
  at the best level (:meth:`mmdaemon.book.OrderBook.imbalance`). The sensitivity maps one
  unit of imbalance to a predicted move in bps of the mid (the article's linear model).
- ``"microprice"``: (bid x A + ask x B) / (B + A), the size-weighted mid.
- ``"lead_lag"``: the reference venue's mid + the basis (:mod:`mmdaemon.reference`), with
  the ``local_mode`` fair value (one of the modes above) as the basis's traded price and
  the fallback while the reference is stale or out of sync. :class:`FairValue` computes the
  local part; the quoter hands it to the reference.

In every mode more resting size on the bid (buying pressure) moves fair value *up*. The
default is ``"microprice"``: BTCUSDT spot trades with a one-tick spread almost always, and
the microprice stays inside it, whereas ``"depth_imbalance"`` at 2 bps per unit imbalance
moves fair value by up to ~1,236 ticks at 61,800 USDT (tick 0.01), which needs calibrating
before it is used there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mmdaemon.book import OrderBook
from mmdaemon.quoting import _validate as v

LEAD_LAG = "lead_lag"
FAIR_VALUE_MODES = ("mid", "l1_imbalance", "depth_imbalance", "microprice", LEAD_LAG)


@dataclass(frozen=True, slots=True)
class FairValueParams:
    """Fair-value model parameters.

    ``mode``: one of :data:`FAIR_VALUE_MODES`.
    ``l1_shift_ticks``: ticks of fair-value shift per unit of top-of-book imbalance
    (``"l1_imbalance"``; the article's 0.5 tick).
    ``depth_levels``: levels per side in the depth-weighted imbalance (``"depth_imbalance"``).
    ``depth_sensitivity_bps``: predicted move in bps of mid per unit of depth imbalance.
    ``local_mode``: with ``mode = "lead_lag"``, the local fair value (any other mode): the
    basis's traded price and the fallback (ignored by the other modes).
    """

    mode: str = "microprice"
    l1_shift_ticks: float = 0.5
    depth_levels: int = 5
    depth_sensitivity_bps: float = 2.0
    local_mode: str = "microprice"

    def __post_init__(self) -> None:
        owner = "FairValueParams"
        v.choice(owner, "mode", self.mode, FAIR_VALUE_MODES)
        v.choice(owner, "local_mode", self.local_mode,
                 tuple(m for m in FAIR_VALUE_MODES if m != LEAD_LAG))
        v.real(owner, "l1_shift_ticks", self.l1_shift_ticks, "ticks per unit imbalance", lo=0)
        v.integer(owner, "depth_levels", self.depth_levels, "book levels per side", lo=1)
        v.real(
            owner,
            "depth_sensitivity_bps",
            self.depth_sensitivity_bps,
            "bps of mid per unit imbalance",
            lo=0,
        )


class FairValue:
    """Computes fair value in fractional ticks from the book's top levels (in mode
    ``"lead_lag"`` the local part: ``local_mode``'s).

    ``compute(book, bid, bid_size, ask, ask_size) -> float`` takes the best levels the caller
    already read (the quoter reads them once per event for several purposes; prices in
    ticks, sizes in lots > 0) and returns fair value in ticks. It is an attribute bound to
    the mode's function at construction, so the per-event call has no dispatch.
    :meth:`from_book` reads the levels itself.
    """

    __slots__ = ("_depth_factor", "compute", "depth_levels", "l1_shift_ticks", "params")

    def __init__(self, params: FairValueParams | None = None) -> None:
        self.params = params = params or FairValueParams()
        self.l1_shift_ticks = params.l1_shift_ticks
        self.depth_levels = params.depth_levels
        # bps -> fraction once, not per event
        self._depth_factor = params.depth_sensitivity_bps / 1e4
        # Choose the mode's function once so the per-event path has no string compare.
        self.compute: Callable[[OrderBook, int, int, int, int], float] = {
            "mid": self._mid,
            "l1_imbalance": self._l1_imbalance,
            "depth_imbalance": self._depth_imbalance,
            "microprice": self._microprice,
        }[params.local_mode if params.mode == LEAD_LAG else params.mode]

    def from_book(self, book: OrderBook) -> float | None:
        """Fair value in ticks of ``book``, or None when a side is empty."""
        bid_level, ask_level = book.bids.best_level(), book.asks.best_level()
        if bid_level is None or ask_level is None:
            return None
        return self.compute(book, bid_level[0], bid_level[1], ask_level[0], ask_level[1])

    @staticmethod
    def _mid(book: OrderBook, bid: int, bid_size: int, ask: int, ask_size: int) -> float:
        return (bid + ask) * 0.5

    def _l1_imbalance(
        self, book: OrderBook, bid: int, bid_size: int, ask: int, ask_size: int
    ) -> float:
        total = bid_size + ask_size
        imbalance = (bid_size - ask_size) / total if total > 0 else 0.0
        return (bid + ask) * 0.5 + self.l1_shift_ticks * imbalance

    def _depth_imbalance(
        self, book: OrderBook, bid: int, bid_size: int, ask: int, ask_size: int
    ) -> float:
        mid = (bid + ask) * 0.5
        return mid * (1.0 + self._depth_factor * book.imbalance(self.depth_levels))

    @staticmethod
    def _microprice(book: OrderBook, bid: int, bid_size: int, ask: int, ask_size: int) -> float:
        total = bid_size + ask_size
        if total <= 0:  # the book never holds empty levels; guard against a zero division
            return (bid + ask) * 0.5
        return (bid * ask_size + ask * bid_size) / total
