"""What readers see of a running instance: an immutable snapshot of plain values.

The metrics collector, the progress line, ``status`` and the firm risk bus read one of these
(taken by :meth:`mmdaemon.engine.Engine.snapshot`, with the shell's feed figures), never the
engine's objects: a reader cannot change the engine, and the engine can change shape without
breaking a reader. Taking one costs a few microseconds; readers take one per scrape or line,
never per frame.

Units: prices in ticks, sizes in lots, money in notional units (ticks x lots, exact
``Fraction``), times in ns.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any, Protocol

from mmdaemon.model import OrderStatus, Side
from mmdaemon.orders.manager import LiveOrder
from mmdaemon.quoting.calibration import CalibrationView

# an order on the book at the venue: acknowledged and not (yet) closed
_RESTING = (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)


def is_two_sided(orders: Iterable[LiveOrder]) -> bool:
    """The venue has acknowledged a live order of ours on each side, not being cancelled."""
    buy = sell = False
    for order in orders:
        if order.status in _RESTING and order.pending != "cancel":
            if order.side is Side.BUY:
                buy = True
            else:
                sell = True
    return buy and sell


@dataclass(frozen=True, slots=True)
class ReferenceFeedView:
    """The reference venue's feed (``[reference]``): its connection's figures (all 0 and
    False on a replay), the frames the daemon took from it and when the latest arrived
    (receive time, ns since the epoch; 0 before any), whether its book is in sync and
    whether the fair value could price on it at the latest check (``usable``)."""

    live: bool
    connected: bool
    connects: int = 0
    reconnects: int = 0
    rest_snapshots: int = 0
    snapshot_failures: int = 0
    frames: int = 0
    last_frame_ns: int = 0
    synced: bool = False
    usable: bool = False
    gaps: int = 0


@dataclass(frozen=True, slots=True)
class FeedView:
    """The feed shell's figures (all 0 on a replay but ``lag`` and ``event_now_ns``), and
    the reference venue's feed if there is one."""

    live: bool
    connects: int = 0
    reconnects: int = 0
    rest_snapshots: int = 0
    snapshot_failures: int = 0
    sheds: int = 0
    backlog: int = 0
    lag_max_ns: int = 0  # the longest a live frame waited to be processed
    event_now_ns: int = 0  # event time now (a live feed's: the last frame's plus since)
    reference: ReferenceFeedView | None = None


@dataclass(frozen=True, slots=True)
class MarketView:
    """The book and the codec's counts."""

    frames: int
    malformed: int
    undecodable: int  # frames (LOBSTER: rows) that did not decode: the rest did
    first_malformed: str  # the first malformed one's reason, "" if none
    depth_updates: int
    snapshots: int
    trades: int
    tickers: int
    gaps: int
    crossed: int
    resyncs: int
    synced: bool
    last_book_ns: int  # receive time of the last book update, 0 before the first


@dataclass(frozen=True, slots=True)
class AdverseView:
    """The quoter's adverse-selection detector, per horizon (:mod:`mmdaemon.quoting.adverse`)."""

    horizons_s: tuple[float, ...]
    ema_bps: tuple[float, ...]
    markouts: tuple[int, ...]
    recent_adverse_move_rate: float
    baseline_adverse_move_rate: float
    toxic: bool


@dataclass(frozen=True, slots=True)
class RiskLimitsView:
    """The breakers' limits in force (a reload may change them) and the PnL peak the
    drawdown is measured from: what a position or a PnL is judged against."""

    inventory_soft_lots: int  # |position| at or above: REDUCING
    inventory_hard_lots: int  # |position| at or above: KILLED
    max_loss_units: Fraction  # notional units (ticks x lots); a loss this large: KILLED
    max_drawdown_units: Fraction  # notional units; a fall this large from the peak: KILLED
    pnl_peak_units: Fraction | None  # notional units; None before the first marked PnL


@dataclass(frozen=True, slots=True)
class TradingView:
    """Orders, position, PnL and risk: there once the journal is open."""

    quotes: int
    orders: int
    amends: int
    cancels: int
    blocked: int
    rejects: int
    unsendable: dict[str, int]  # a copy
    open_orders: int
    two_sided: bool
    fills: int
    volume_lots: int
    position_lots: int
    realized_units: Fraction
    fees_units: Fraction
    funding_units: Fraction  # funding received (paid < 0)
    mark_ticks: Fraction | None  # the mid, None without a two-sided book
    unrealized_units: Fraction | None  # None without a mark
    total_units: Fraction | None  # None without a mark while holding a position
    state: str
    killed: bool
    halts: tuple[str, ...]
    reducing: tuple[str, ...]
    breaker_trips: int
    markouts: list[dict[str, Any]]  # the report's rows per horizon (fresh dicts)
    adverse: AdverseView
    limits: RiskLimitsView
    calibration: CalibrationView | None = None  # None: no online calibration


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One instance at one moment: who it is, its feed, its market and (once the journal is
    open) its trading."""

    symbol: str
    venue: str
    adapter: str
    tick_size: Decimal
    lot_size: Decimal
    currency: str
    now_ns: int  # event time of the latest event
    feed: FeedView
    market: MarketView
    trading: TradingView | None


class Observed(Protocol):
    """A running instance as readers see it (:class:`mmdaemon.daemon.Service`)."""

    log: Any

    def snapshot(self) -> Snapshot: ...

    def two_sided(self) -> bool | None:
        """:attr:`TradingView.two_sided` alone, for a sampler that asks four times a second
        (None before the journal is open): a whole snapshot costs tens of microseconds."""
