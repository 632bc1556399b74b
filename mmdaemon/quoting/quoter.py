"""The quoter: composes the components into one desired two-sided quote per market event.

Per book (or trade) event, with the book already updated:

1. no usable book (not synced, a side empty, crossed or locked) -> the empty quote,
   prices 0 and sizes 0 (fail closed);
2. mid = (best_bid + best_ask) / 2 feeds the volatility estimator and resolves due markouts;
3. fair value (ticks) from :mod:`.fair_value` (mode ``"lead_lag"``: that local value handed
   to the attached reference, :meth:`Quoter.attach_reference`, which returns the reference
   mid + basis, or the local value while the reference is unusable); sigma from
   :mod:`.volatility`;
4. reservation = fair + inventory shift (:mod:`.skew`), below fair when long;
5. half-spread (ticks) from :mod:`.spread`, whose core is the skew model's own when the skew
   mode prices spread ("avellaneda_stoikov", "glft"), widened by the adverse-move excess and
   the toxicity multiplier, then the maker fee added (after the multipliers);
6. tick discipline: bid = floor(reservation - half), ask = ceil(reservation + half) (integer
   ticks: the bid never rounds up, the ask never down); then the quote is made passive against
   the current book, bid <= best_ask - 1 and ask >= best_bid + 1, so a post-only order never
   takes; when the venue's own top of book (:meth:`Quoter.on_top_of_book`) is newer than the
   book, against that too. bid < ask always holds (min half-spread >= 0.5 tick);
7. sizes from :mod:`.sizing` (0 while adverse selection pauses quoting).

Time is the event's ns timestamp passed in (``ts_ns``; use the receive time, the same clock
as the fills given to :meth:`Quoter.on_fill`); nothing reads a clock and nothing does I/O.
No look-ahead: the quoter sees only events up to ``ts_ns`` (the book after the event it is
called for, which the daemon has received); a markout due strictly before ``ts_ns`` is
resolved with the mid before this event, one due at ``ts_ns`` with the mid after it; the mid
given with a fill is the mid before the event that filled us (``Fill.mid_x2``).
Inventory comes from the position keeper through :meth:`Quoter.set_inventory` (lots): the
quoter does not count fills itself, so there is one source of truth for the position.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from mmdaemon.book import OrderBook
from mmdaemon.model import (
    BookUpdate,
    Fill,
    Gap,
    Instrument,
    MarketEvent,
    Quote,
    Side,
    TopOfBook,
    Trade,
)
from mmdaemon.quoting import _validate as v
from mmdaemon.quoting.adverse import AdverseParams, AdverseSelection
from mmdaemon.quoting.calibration import OnlineCalibration, Refit
from mmdaemon.quoting.fair_value import LEAD_LAG, FairValue, FairValueParams
from mmdaemon.quoting.ladder import LadderParams
from mmdaemon.quoting.sizing import SizeCut, SizeRule, SizingParams
from mmdaemon.quoting.skew import InventorySkew, SkewParams
from mmdaemon.quoting.spread import SpreadModel, SpreadParams
from mmdaemon.quoting.volatility import VolatilityParams, make_volatility

# NamedTuple's generated __new__ is a Python-level function (~0.2 us); tuple.__new__ builds
# the identical Quote without it. Used on the per-event path only.
_new_quote: Callable[[type[Quote], tuple[int, int, int, int, float, int]], Quote] = tuple.__new__


class LeadLag(Protocol):
    """What mode ``"lead_lag"`` asks of the reference (:class:`mmdaemon.reference.Reference`)."""

    def fair(self, local_ticks: float, traded_book_id: int, now_ns: int) -> float:
        """The fair value (ticks) given the local one, the traded book's update id and the
        event time (ns)."""
        ...


@dataclass(frozen=True, slots=True)
class QuoterParams:
    """All quoting parameters, one frozen dataclass per component.

    The inventory limit and the base size are stated once, in ``sizing``; the skew uses
    them too (the limit, and the base size as its q-unit). ``ladder`` shapes the quote into
    levels (:mod:`.ladder`): the built-in strategy applies it, the quoter's quote is its
    level 0.
    """

    fair_value: FairValueParams = field(default_factory=FairValueParams)
    volatility: VolatilityParams = field(default_factory=VolatilityParams)
    spread: SpreadParams = field(default_factory=SpreadParams)
    skew: SkewParams = field(default_factory=SkewParams)
    sizing: SizingParams = field(default_factory=SizingParams)
    adverse: AdverseParams = field(default_factory=AdverseParams)
    ladder: LadderParams = field(default_factory=LadderParams)

    def __post_init__(self) -> None:
        for name, kind in (
            ("fair_value", FairValueParams),
            ("volatility", VolatilityParams),
            ("spread", SpreadParams),
            ("skew", SkewParams),
            ("sizing", SizingParams),
            ("adverse", AdverseParams),
            ("ladder", LadderParams),
        ):
            value = getattr(self, name)
            if not isinstance(value, kind):
                raise v.fail("QuoterParams", name, f"a {kind.__name__}", value)


class Quoter:
    """Desired quote per market event for one instrument (prices in ticks, sizes in lots).

    Components are public attributes (``fair_value``, ``volatility``, ``spread``, ``skew``,
    ``sizing``, ``adverse``) for inspection and metrics; the ``last_*`` attributes hold the
    intermediate numbers of the latest quote (fair and reservation in ticks, shift and
    half-spread in ticks, sigma per sqrt(s)).
    """

    __slots__ = (
        "_core",
        "_fair",
        "_finalize",
        "_inventory",
        "_lead_lag",
        "_model_half",
        "_model_prices_spread",
        "_shift",
        "_sigma_of",
        "_sizes",
        "_tob_ask",
        "_tob_bid",
        "_tob_id",
        "_vol_update",
        "adverse",
        "calibration",
        "fair_value",
        "instrument",
        "last_half_spread_ticks",
        "last_reservation",
        "last_shift_ticks",
        "last_sigma",
        "last_trade",
        "log",
        "params",
        "sizing",
        "skew",
        "spread",
        "volatility",
    )

    def __init__(self, instrument: Instrument, params: QuoterParams | None = None,
                 reference: LeadLag | None = None, log: Any = None) -> None:
        """``reference``: the reference venue for fair-value mode ``"lead_lag"`` (see
        :meth:`attach_reference`); ``log`` (a structlog-style logger, or None) hears each
        re-fit of online calibration (``glft_calibrated``, ``glft_calibration_kept``)."""
        self.instrument = instrument
        self.params = params = params or QuoterParams()
        self.fair_value = FairValue(params.fair_value)
        self.volatility = make_volatility(params.volatility)
        self.spread = SpreadModel(params.spread)
        self.skew = InventorySkew(
            params.skew,
            max_inventory_lots=params.sizing.max_inventory_lots,
            q_unit_lots=params.sizing.base_size_lots,
        )
        self.sizing = SizeRule(instrument, params.sizing)
        self.adverse = AdverseSelection(
            params.adverse, size_unit_lots=params.sizing.base_size_lots
        )
        self.log = log
        # GLFT's A, k and sigma re-fitted on a rolling window ([strategy.skew.online])
        online = params.skew.online
        self.calibration = OnlineCalibration(
            online, params.skew.glft_a_per_s, params.skew.kappa_per_tick
        ) if online.enabled else None
        # Bound methods looked up once: this path runs on every book update.
        self._fair = self.fair_value.compute
        self._vol_update = self.volatility.update
        # sigma per sqrt(s): the estimator's, until online calibration's first good fit
        self._sigma_of: Callable[[], float] = self.volatility.sigma_per_sqrt_s
        self._shift = self.skew.shift_ticks
        self._model_half = self.skew.half_spread_ticks
        self._model_prices_spread = self.skew.prices_spread
        self._core = self.spread.core_half_ticks
        self._finalize = self.spread.finalize
        self._sizes = self.sizing.sizes
        self._inventory = 0
        self._lead_lag: Callable[[float, int, int], float] | None = None
        self.attach_reference(reference)
        self._tob_id = -1  # update id of the venue's latest top of book; -1: none
        self._tob_bid = 0
        self._tob_ask = 0
        self.last_trade: Trade | None = None
        self.last_reservation = 0.0
        self.last_shift_ticks = 0.0
        self.last_half_spread_ticks = 0.0
        self.last_sigma = self.volatility.sigma_per_sqrt_s()

    # -- state inputs ---------------------------------------------------------------------

    @property
    def inventory(self) -> int:
        """Current inventory in lots (> 0 long)."""
        return self._inventory

    def set_inventory(self, lots: int) -> None:
        """Set the position in lots (> 0 long), from the position keeper."""
        self._inventory = lots

    def attach_reference(self, reference: LeadLag | None) -> None:
        """The reference venue whose lead-lag fair value replaces the local one in mode
        ``"lead_lag"`` (the engine attaches its own; a quoter built on a reload gets the same
        one, basis and all). Other modes ignore it; ``"lead_lag"`` without one quotes on the
        local fair value (the config refuses that mode without a ``[reference]``)."""
        lead_lag = self.params.fair_value.mode == LEAD_LAG and reference is not None
        self._lead_lag = reference.fair if lead_lag else None  # type: ignore[union-attr]

    def on_fill(self, fill: Fill, book_mid_ticks: float) -> None:
        """Register our fill for markouts; ``book_mid_ticks`` is the mid at the fill (ticks).

        Does not change the inventory: call :meth:`set_inventory` with the new position.
        """
        self.adverse.on_fill(fill, book_mid_ticks)

    # ``_view`` is ignored: the built-in strategy hands these methods to the engine as its
    # hooks as they are (no wrapper frame on the per-event path).

    def on_trade(self, trade: Trade, _view: object = None) -> None:
        """A public trade. Kept as ``last_trade``; the current model prices from the book.
        With online calibration, a market-order arrival at its depth from the mid of the
        latest book this quoter priced from (the book before the trade)."""
        self.last_trade = trade
        if self.calibration is not None:
            self.calibration.on_trade(trade.recv_ns, trade.price, trade.aggressor is Side.BUY,
                                      trade.exch_ns)

    def on_top_of_book(self, tob: TopOfBook, _view: object = None) -> None:
        """The venue's best bid/offer. When it is newer than the book (higher update id), the
        next quotes are also kept passive against it: a depth stream batched every 100 ms
        lags the real top of book, and a post-only order priced off the lagging book could be
        rejected or, worse, take.
        """
        if tob.update_id > self._tob_id:
            self._tob_id = tob.update_id
            self._tob_bid = tob.bid
            self._tob_ask = tob.ask

    # -- quotes ---------------------------------------------------------------------------

    def on_event(self, event: MarketEvent, book: OrderBook) -> Quote | None:
        """Dispatch one decoded event (after ``book`` has applied it).

        Book updates and trades give a quote (at the event's receive time), a gap gives the
        empty quote, a top of book is recorded (:meth:`on_top_of_book`), anything else None.
        """
        kind = type(event)
        if kind is BookUpdate:
            return self.on_book(book, event.recv_ns)
        if kind is Trade:
            self.on_trade(event)  # type: ignore[arg-type]
            return self.on_book(book, event.recv_ns)
        if kind is TopOfBook:
            self.on_top_of_book(event)  # type: ignore[arg-type]
            return None
        if kind is Gap:
            return Quote(0, 0, 0, 0, 0.0, event.recv_ns)
        return None

    def size_cuts(self, quote: Quote) -> list[SizeCut]:
        """The sides of ``quote`` (the latest of :meth:`on_book`) that the strategy wanted
        but the instrument's size grid and minimums zeroed (see :meth:`SizeRule.cuts`);
        none for the empty quote or while adverse selection pauses quoting."""
        if quote.bid <= 0 or (self.adverse.pause and self.adverse.paused(quote.ts_ns)):
            return []
        return self.sizing.cuts(self._inventory, quote.bid, quote.ask)

    def on_book(self, book: OrderBook, ts_ns: int) -> Quote:
        """The desired quote for ``book`` at event time ``ts_ns`` (see the module docstring)."""
        if not book.synced:
            return self._no_book(ts_ns)
        bid_level = book.bids.best_level()
        ask_level = book.asks.best_level()
        if bid_level is None or ask_level is None:
            return self._no_book(ts_ns)
        best_bid, bid_size = bid_level
        best_ask, ask_size = ask_level
        if best_bid >= best_ask:  # crossed or locked: the book cannot be right
            return self._no_book(ts_ns)

        mid = (best_bid + best_ask) * 0.5
        self._vol_update(ts_ns, mid)
        calibration = self.calibration
        if calibration is not None:
            calibration.on_book(ts_ns, best_bid, best_ask)
            if calibration.due(ts_ns):
                self._refit(calibration, ts_ns)
        adverse = self.adverse
        adverse.on_mid(ts_ns, mid)

        fair = self._fair(book, best_bid, bid_size, best_ask, ask_size)
        if self._lead_lag is not None:
            fair = self._lead_lag(fair, book.last_id, ts_ns)
        sigma = self._sigma_of()
        inventory = self._inventory
        shift = self._shift(inventory, fair, sigma)
        core = (
            self._model_half(fair, sigma) if self._model_prices_spread else self._core(fair, sigma)
        )
        half = self._finalize(
            core,
            fair,
            best_ask - best_bid,
            adverse.adverse_move_excess(ts_ns),
            adverse.multiplier(ts_ns),
        )
        reservation = fair + shift
        try:
            bid = math.floor(reservation - half)
            ask = math.ceil(reservation + half)
        except (ValueError, OverflowError):  # NaN or infinite from degenerate inputs
            return Quote(0, 0, 0, 0, 0.0, ts_ns)

        # Passive against the book: never at or through the opposite best price.
        if bid >= best_ask:
            bid = best_ask - 1
        if ask <= best_bid:
            ask = best_bid + 1
        if self._tob_id > book.last_id:  # the venue's top of book is newer than the book
            if bid >= self._tob_ask:
                bid = self._tob_ask - 1
            if ask <= self._tob_bid:
                ask = self._tob_bid + 1
        if bid >= ask:  # unreachable while min_half_spread_ticks >= 0.5; kept as a guard
            ask = bid + 1

        self.last_sigma = sigma
        self.last_shift_ticks = shift
        self.last_reservation = reservation
        self.last_half_spread_ticks = half
        if adverse.pause and adverse.paused(ts_ns):
            return _new_quote(Quote, (bid, 0, ask, 0, fair, ts_ns))
        bid_lots, ask_lots = self._sizes(inventory, bid, ask)
        return _new_quote(Quote, (bid, bid_lots, ask, ask_lots, fair, ts_ns))

    def _no_book(self, ts_ns: int) -> Quote:
        """The empty quote for an unusable book (online calibration loses its mid)."""
        if self.calibration is not None:
            self.calibration.book_lost()
        return Quote(0, 0, 0, 0, 0.0, ts_ns)

    def _calibrated_sigma(self) -> float:
        return self.calibration.sigma  # type: ignore[union-attr,return-value]

    def _refit(self, calibration: OnlineCalibration, ts_ns: int) -> None:
        """Online calibration's re-fit at ``ts_ns``: the skew's c1, c2 recomputed with the
        new A and k (:meth:`InventorySkew.recalibrate`), sigma the calibrated one from the
        first good fit on; logged either way."""
        refit = calibration.refit(ts_ns, self.skew.recalibrate)
        if refit.applied:
            self._sigma_of = self._calibrated_sigma
        if self.log is not None:
            self._log_refit(refit)

    def _log_refit(self, refit: Refit) -> None:
        fit = refit.fit
        fields = {"a_per_s": refit.a_per_s, "kappa_per_tick": refit.kappa_per_tick,
                  "sigma_bps": refit.sigma * 1e4, "fitted_a_per_s": fit.a_per_s,
                  "fitted_kappa_per_tick": fit.kappa_per_tick,
                  "fitted_sigma_bps": fit.sigma_bps, "r2": fit.r2,
                  "market_orders": fit.arrivals, "window_s": fit.seconds,
                  "touch_per_s": fit.touch_per_s, "clamped": list(refit.clamped),
                  "refits": self.calibration.refits,  # type: ignore[union-attr]
                  "ts_ns": refit.ts_ns}
        if refit.applied:
            self.log.info("glft_calibrated", **fields)
        else:
            self.log.info("glft_calibration_kept", why=refit.why, **fields)
