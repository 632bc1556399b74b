"""The engine's figures: PnL at the mark and what readers see (the snapshot, the summary).

A part of :class:`mmdaemon.engine.Engine` (its base class), kept apart because it only
reads: nothing here changes the engine's state, so the hot path and the decisions stay in
``engine.py``. The attributes below are the engine's, set by its constructor and
:meth:`~mmdaemon.engine.Engine.restore`.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from mmdaemon.book import OrderBook
from mmdaemon.config import Config
from mmdaemon.engine_ports import Counters
from mmdaemon.market import MarketState
from mmdaemon.markouts import MarkoutTracker
from mmdaemon.model import Instrument
from mmdaemon.orders.manager import OrderManager
from mmdaemon.orders.position import Position
from mmdaemon.quoting.quoter import Quoter
from mmdaemon.reference import Reference
from mmdaemon.risk.breakers import Breakers
from mmdaemon.risk.firm import Exposure
from mmdaemon.risk.state import RiskState
from mmdaemon.risk.unsendable import Unsendable
from mmdaemon.snapshot import (
    AdverseView,
    FeedView,
    MarketView,
    RiskLimitsView,
    Snapshot,
    TradingView,
    is_two_sided,
)


class EngineFigures:
    """PnL at the mark, the snapshot for readers and the run's summary, read off the
    engine's state (money in notional units, ticks x lots, unless a figure says)."""

    config: Config
    instrument: Instrument
    market: MarketState
    book: OrderBook
    currency: str
    now_ns: int
    last_book_ns: int
    time_backsteps: int
    counters: Counters
    unsendable: Unsendable
    markouts: MarkoutTracker
    reference: Reference | None
    quoter: Quoter | None
    position: Position
    risk: RiskState
    breakers: Breakers
    manager: OrderManager

    def opened(self) -> bool:
        """:meth:`restore` has run (position, risk state and orders exist)."""
        return hasattr(self, "manager")

    # -- PnL --------------------------------------------------------------------------------

    def mark(self) -> Fraction | None:
        """Mark price in ticks: the book's mid (exact half ticks), None without a book."""
        bid, ask = self.book.best_bid(), self.book.best_ask()
        if bid is None or ask is None:
            return None
        return Fraction(bid + ask, 2)

    def total_pnl_units(self) -> Fraction | None:
        """Realised + unrealised - fees + funding at the mark, notional units (ticks x
        lots). Without a mark: cash - fees + funding when flat (that is the whole PnL), None
        with a position (cash - fees alone would count the position's whole cost as a
        loss)."""
        marked = self.marked_pnl_units()
        if marked is not None:
            return marked
        position = self.position
        return Fraction(position.cash - position.fees + position.funding) if (
            position.position == 0) else None

    def marked_pnl_units(self) -> Fraction | None:
        """:meth:`total_pnl_units` at the mark, None without a mark (what the loss breakers
        judge after a fill)."""
        mark = self.mark()
        return None if mark is None else self.position.total(mark)

    def exposure(self) -> Exposure:
        """Our numbers for the firm risk bus: position, mark, PnL, state."""
        return Exposure(self.position.position, self.mark(), self.total_pnl_units(),
                        self.risk.state.value)

    # -- what readers see ------------------------------------------------------------------------

    def snapshot(self, feed: FeedView) -> Snapshot:
        """The engine's state as plain values, with the shell's ``feed`` figures, for readers
        (metrics, status, progress): taking it changes nothing, and nothing a reader does to
        it reaches the engine."""
        inst, config, m, book = self.instrument, self.config, self.market, self.book
        market = MarketView(m.frames, m.malformed, m.undecodable, m.first_malformed,
                            m.depth_updates, m.snapshots, m.trades, m.tickers, m.gaps,
                            m.crossed, m.resyncs, book.synced, self.last_book_ns)
        return Snapshot(inst.symbol, config.instrument.venue, config.exchange.adapter,
                        inst.tick_size, inst.lot_size, self.currency, self.now_ns, feed,
                        market, self._trading_view() if self.opened() else None)

    def _trading_view(self) -> TradingView:
        c, pos, risk, now = self.counters, self.position, self.risk, self.now_ns
        lim = self.breakers.limits
        mark = self.mark()
        adverse = self.quoter.adverse if self.quoter is not None else None
        return TradingView(
            c.quotes, c.orders, c.amends, c.cancels, c.blocked, c.rejects,
            dict(self.unsendable.counts), self.manager.open_orders(),
            is_two_sided(self.manager.orders.values()), pos.fills, pos.volume, pos.position,
            pos.realized, Fraction(pos.fees), Fraction(pos.funding), mark,
            pos.unrealized(mark) if mark is not None else None, self.total_pnl_units(),
            risk.state.value, risk.killed, tuple(risk.halts),
            tuple(risk.reducing), self.breakers.trips,
            self.markouts.stats.rows(self.instrument),
            AdverseView(tuple(adverse.params.horizons_s), tuple(adverse.ema_bps),
                        tuple(adverse.markouts), adverse.recent_adverse_move_rate(now),
                        adverse.baseline_adverse_move_rate(now), adverse.toxic(now))
            if adverse is not None else AdverseView((), (), (), 0.0, 0.0, False),
            RiskLimitsView(lim.inventory_soft_lots, lim.inventory_hard_lots, lim.max_loss_units,
                           lim.max_drawdown_units, self.breakers.peak),
            self.quoter.calibration.view() if self.quoter and self.quoter.calibration else None)

    def summary(self) -> dict[str, Any]:
        """The run's figures: counts, position and PnL in base/quote currency (named by
        ``currency``), and the exact markouts per horizon of every journaled fill
        (:mod:`mmdaemon.markouts`, the same rows as the report's)."""
        inst, pos, c = self.instrument, self.position, self.counters
        money = Fraction(inst.tick_size) * Fraction(inst.lot_size)
        mark = self.mark()
        unrealized = pos.unrealized(mark) if mark is not None else Fraction(0)
        total = pos.total(mark) if mark is not None else Fraction(
            pos.cash - pos.fees + pos.funding)
        figures = {
            "frames": self.market.frames,
            "quotes": c.quotes,
            "orders": c.orders,
            "amends": c.amends,
            "cancels": c.cancels,
            "blocked": c.blocked,
            "unsendable": dict(self.unsendable.counts),
            "rejects": c.rejects,
            "fills": pos.fills,
            "volume": float(pos.volume * Fraction(inst.lot_size)),
            "position": float(pos.position * Fraction(inst.lot_size)),
            "position_lots": pos.position,
            "cash": float(pos.cash * money),
            "realized_pnl": float(pos.realized * money),
            "unrealized_pnl": float(unrealized * money),
            "fees": float(pos.fees * money),
            "funding": float(pos.funding * money),
            "total_pnl": float(total * money),
            "mark": float(mark * Fraction(inst.tick_size)) if mark is not None else None,
            "max_abs_position": float(pos.max_abs * Fraction(inst.lot_size)),
            "currency": self.currency,
            "markouts": self.markouts.stats.rows(inst),
            "state": self.risk.state.value,
            "breaker_trips": self.breakers.trips,
            "gaps": self.market.gaps,
            "malformed": self.market.malformed,
            "first_malformed": self.market.first_malformed,
            "time_backsteps": self.time_backsteps,
        }
        if self.quoter is not None and self.quoter.calibration is not None:  # likewise
            figures["calibration"] = self.quoter.calibration.summary()
        if self.reference is not None:  # only then: a run without one sums up as before
            figures["reference"] = self.reference.summary(self.now_ns, Fraction(inst.tick_size))
        return figures
