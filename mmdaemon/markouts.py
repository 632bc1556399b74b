"""Markouts of our fills, exact at event level: one definition per number, everywhere.

The daemon (live figures, the metrics endpoint, the dry-run summary) and
:mod:`mmdaemon.analytics` (the report, the ``metrics`` of ``--json``) both build their
markout figures with :class:`MarkoutStats` from the same records, the ones this module
resolves and the journal keeps (:meth:`mmdaemon.journal.Journal.add_markouts`), so the
numbers agree to the last bit.

Definitions (issue #17's contract)
----------------------------------
For a fill of ``q`` lots on side ``s`` (+1 buy, -1 sell) at price ``p`` (ticks) at time
``t`` (the fill's ``ts_ns``):

- ``mid0`` = the mid *before the market event that filled us* (``Fill.mid_x2 / 2``; a live
  venue cannot say, and the daemon's own book mid when the report arrives stands in);
- ``mid_h`` = the mid of the book as it stood at event time ``t + h``: after every market
  event at or before ``t + h`` and before any later one (not a sample);
- ``move_h = s x (mid_h - mid0)`` ticks: the mid moved *against us* when ``move_h < 0``;
- ``markout_h = s x (mid_h - p)`` ticks, = edge + move with ``edge = s x (mid0 - p)``:
  a *negative markout* when ``markout_h < 0``. In money: ``markout_h x q x tick x lot`` in
  the instrument's quote currency (:func:`quote_currency` names it: USDT for BTCUSDT).

Rates are size-weighted (by lots) over the fills resolved at that horizon:
``adverse_move_rate`` = lots with ``move_h < 0`` / lots resolved, ``negative_markout_rate``
= lots with ``markout_h < 0`` / lots resolved, ``win_rate`` = lots with ``markout_h > 0`` /
lots resolved; zero counts as neither. The bps figures are notional-weighted:
``markout_bps = 1e4 x sum(s q (mid_h - p)) / sum(q mid0)``, the markout money per unit of
notional traded at the mid (``edge_bps`` and ``mid_move_bps`` alike, so ``markout_bps =
edge_bps + mid_move_bps`` exactly). Every sum is an integer (mids are kept as ``bid + ask``,
whole ticks): exact, and the same whatever the order of the fills.

A fill is *unresolved* at a horizon (counted, never guessed) when the run ended before an
event came after ``t + h``, when its report reached us after such an event (a late report:
the mid at ``t + h`` is gone), or when a side of the book was empty at the fill or at
``t + h``.

Ordering rules (strict time order, no look-ahead)
-------------------------------------------------
- The daemon calls :meth:`MarkoutTracker.before_event` with each market event's time
  *before* it applies the event to its book; the mid read then is the mid after every
  earlier event. A horizon due at ``t + h`` is resolved by the first event with a time
  strictly after ``t + h``, with the mid before that event: exactly the mid in force at
  ``t + h``, however long the book then stays quiet, and never one the event changed.
- Events with equal times all precede ``t + h`` when ``t + h`` equals their time: the
  horizon waits for a later event.
- A fill may be registered (:meth:`MarkoutTracker.on_fill`) at any time after it happened;
  a horizon whose ``t + h`` lies before the last event already seen is late (above).
- One clock: ``t`` and the events' times must be on the daemon's event clock. The paper
  venue's fills are. A live fill's ``t`` is the venue's transaction time, compared with our
  receive times: its horizons are measured from the venue's time as our clock reads it
  (early by the feed latency plus any clock skew, milliseconds).
- Cost on the hot path: :meth:`MarkoutTracker.before_event` compares the event's time with
  the earliest due time; only then does it read the book and pop the due horizons.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from heapq import heappop, heappush
from itertools import pairwise
from typing import Any, NamedTuple

from mmdaemon.book import OrderBook
from mmdaemon.model import NS_PER_S, Fill, Instrument
from mmdaemon.venues.binance_parse import (
    assets_of,
)

DEFAULT_HORIZONS_S: tuple[float, ...] = (1.0, 5.0, 30.0, 60.0)
MAX_HORIZON_S = 86_400.0  # a day: beyond it a "markout" says nothing about the fill
NEVER = 1 << 62  # a due time no event reaches


def horizons_ns(horizons_s: Sequence[float]) -> tuple[int, ...]:
    """Horizons in whole ns from seconds: non-empty, finite, > 0, at most a day, strictly
    increasing once rounded to ns. ValueError naming the rule otherwise."""
    values = list(horizons_s)
    expected = (f"a non-empty list of seconds > 0 and <= {MAX_HORIZON_S:g}, strictly "
                f"increasing (e.g. [1, 5, 30, 60])")
    if not values or any(isinstance(h, bool) or not isinstance(h, int | float)
                         or not math.isfinite(h) or not 0 < h <= MAX_HORIZON_S
                         for h in values):
        raise ValueError(f"markout horizons: expected {expected}, got {values!r}")
    out = tuple(round(h * NS_PER_S) for h in values)
    if out[0] <= 0 or any(b <= a for a, b in pairwise(out)):
        raise ValueError(f"markout horizons: expected {expected}, got {values!r}")
    return out


def quote_currency(symbol: str, venue: str = "", configured: str = "") -> str:
    """The currency money is counted in: ``configured`` if given (``[firm] quote_asset``),
    USD for a LOBSTER (NASDAQ) replay, else the quote asset of the venue symbol (BTCUSDT:
    USDT). A symbol without a known quote asset is named as such rather than guessed."""
    if configured:
        return configured
    if venue == "lobster":
        return "USD"
    try:
        return assets_of(symbol).quote
    except ValueError:
        return f"quote currency of {symbol}"


def base_currency(symbol: str, venue: str = "") -> str:
    """What sizes are counted in: ``shares`` for a LOBSTER (NASDAQ) replay, else the base
    asset of the venue symbol (BTCUSDT: BTC); named as unknown rather than guessed."""
    if venue == "lobster":
        return "shares"
    try:
        return assets_of(symbol).base
    except ValueError:
        return f"base currency of {symbol}"


def book_mid_x2(book: OrderBook) -> int:
    """Best bid + best ask of ``book`` in ticks (twice the mid: exact), 0 if a side is
    empty. The book is read as it stands, synced or not, like the paper venue's
    ``Fill.mid_x2`` and the daemon's mark."""
    bid, ask = book.bids.best(), book.asks.best()
    return bid + ask if bid is not None and ask is not None else 0


class Markout(NamedTuple):
    """One resolved markout: ``fill`` (its ``mid_x2`` = bid + ask before the event that
    filled us, > 0) at ``horizon_ns``; ``mid_x2`` = bid + ask in force at ``ts_ns +
    horizon_ns``; ``resolved_ns`` the time of the first event after that (which it
    preceded)."""

    fill: Fill
    horizon_ns: int
    mid_x2: int
    resolved_ns: int


@dataclass
class HorizonStats:
    """Size-weighted sums of the markouts resolved at one horizon. Prices in half ticks
    (``bid + ask``), sizes in lots: every field is an exact integer."""

    horizon_ns: int
    fills: int = 0  # fills resolved
    lots: int = 0  # their lots
    adverse_lots: int = 0  # lots whose mid moved against us (move < 0)
    negative_lots: int = 0  # lots with a negative markout
    win_lots: int = 0  # lots with a positive markout
    markout2: int = 0  # sum s x q x (mid_h x 2 - 2p): half-tick lots
    edge2: int = 0  # sum s x q x (mid0 x 2 - 2p)
    move2: int = 0  # sum s x q x (mid_h x 2 - mid0 x 2)
    notional2: int = 0  # sum q x mid0 x 2: half-tick lots

    def add(self, side: int, price: int, size: int, mid0_x2: int, mid_x2: int) -> None:
        """One resolved fill: ``side`` +1/-1, ``price`` ticks, ``size`` lots, mids as bid +
        ask ticks before the filling event and at the horizon."""
        markout = side * (mid_x2 - 2 * price)
        move = side * (mid_x2 - mid0_x2)
        self.fills += 1
        self.lots += size
        if move < 0:
            self.adverse_lots += size
        if markout < 0:
            self.negative_lots += size
        elif markout > 0:
            self.win_lots += size
        self.markout2 += size * markout
        self.edge2 += size * side * (mid0_x2 - 2 * price)
        self.move2 += size * move
        self.notional2 += size * mid0_x2

    def share(self, lots: int) -> float | None:
        """``lots`` as a share of the lots resolved; None when none is."""
        return lots / self.lots if self.lots else None

    def bps(self, sum2: int) -> float | None:
        """One of the half-tick-lot sums in bps of the notional resolved (at the mids
        before); None when none is."""
        return float(Fraction(10_000 * sum2, self.notional2)) if self.notional2 else None

    def row(self, fills_total: int, instrument: Instrument) -> dict[str, Any]:
        """JSON-ready figures (see the module docstring); None where undefined (nothing
        resolved). ``fills_total``: every fill counted, resolved or not."""
        half_money = Fraction(instrument.tick_size) * Fraction(instrument.lot_size) / 2
        share, bps = self.share, self.bps
        return {
            "horizon_s": self.horizon_ns / NS_PER_S,
            "resolved_fills": self.fills,
            "resolved_lots": self.lots,
            "unresolved_fills": fills_total - self.fills,
            "adverse_move_rate": share(self.adverse_lots),
            "negative_markout_rate": share(self.negative_lots),
            "win_rate": share(self.win_lots),
            "markout_bps": bps(self.markout2),
            "edge_bps": bps(self.edge2),
            "mid_move_bps": bps(self.move2),
            "markout_pnl": float(self.markout2 * half_money),
        }


@dataclass
class MarkoutStats:
    """Markout figures per horizon over a set of fills: ``fills`` counts every fill (so
    that unresolved = fills - resolved), ``horizons`` the sums of the resolved ones."""

    horizons: list[HorizonStats]
    fills: int = 0
    _index: dict[int, int] = field(init=False, repr=False)  # horizon ns -> position

    def __post_init__(self) -> None:
        self._index = {h.horizon_ns: i for i, h in enumerate(self.horizons)}

    @classmethod
    def empty(cls, horizons: Sequence[int]) -> MarkoutStats:
        """No fill yet, at ``horizons`` (ns)."""
        return cls([HorizonStats(h) for h in horizons])

    def add(self, markout: Markout) -> None:
        """Count one resolved markout (ignored at a horizon these stats do not keep)."""
        i = self._index.get(markout.horizon_ns)
        if i is not None:
            f = markout.fill
            self.horizons[i].add(int(f.side), f.price, f.size, f.mid_x2, markout.mid_x2)

    def rows(self, instrument: Instrument) -> list[dict[str, Any]]:
        """One :meth:`HorizonStats.row` per horizon, shortest first."""
        return [h.row(self.fills, instrument) for h in self.horizons]


def journaled(fills: Iterable[Fill], rows: Iterable[tuple[str, int, int, int]],
              ) -> Iterator[Markout]:
    """The journal's markout ``rows`` ``(exec_key, horizon_ns, mid_x2, resolved_ns)`` as
    :class:`Markout` of the journaled ``fills`` (their ``mid_x2`` as journaled).

    A row whose fill is not among ``fills`` (a journal read while it was being written) or
    has no mid before is skipped: it cannot be checked, so it is not counted.
    """
    by_key = {f"{f.order_id}:{f.exec_id}": f for f in fills}
    for key, horizon, mid_x2, resolved in rows:
        fill = by_key.get(key)
        if fill is not None and fill.mid_x2 > 0 and mid_x2 > 0:
            yield Markout(fill, horizon, mid_x2, resolved)


def journaled_stats(horizons: Sequence[int], fills: Sequence[Fill],
                    rows: Iterable[tuple[str, int, int, int]]) -> MarkoutStats:
    """:class:`MarkoutStats` at ``horizons`` (ns) of journaled ``fills`` and markout
    ``rows`` (:func:`journaled`)."""
    stats = MarkoutStats.empty(horizons)
    stats.fills = len(fills)
    for markout in journaled(fills, rows):
        stats.add(markout)
    return stats


class MarkoutTracker:
    """Resolves the markouts of our fills as market events arrive (see the module docs).

    ``mid_x2`` reads the book as it stands (bid + ask ticks, 0 if a side is empty): it is
    called only when a horizon is due, from :meth:`before_event`, before the event is
    applied. Resolved markouts are counted in :attr:`stats` at once and queued for the
    journal until :meth:`take`.
    """

    __slots__ = ("_heap", "_last_ns", "_mid_x2", "_resolved", "_seq", "horizons_ns",
                 "late", "next_due_ns", "no_mid", "stats")

    def __init__(self, horizons_s: Sequence[float], mid_x2: Callable[[], int]) -> None:
        self.horizons_ns = horizons_ns(horizons_s)
        self._mid_x2 = mid_x2
        #: the earliest due time pending (ns); NEVER when nothing is
        self.next_due_ns = NEVER
        # (due ns, registration order, fill): a heap, so reports out of time order are fine
        self._heap: list[tuple[int, int, int, Fill]] = []
        self._seq = 0
        self._last_ns = -NEVER  # the latest event time seen
        self._resolved: list[Markout] = []
        self.stats = MarkoutStats.empty(self.horizons_ns)
        #: horizons never resolved: the report arrived after t + h had passed
        self.late = 0
        #: horizons never resolved: a side of the book empty at the fill or at t + h
        self.no_mid = 0

    def restore(self, stats: MarkoutStats) -> None:
        """Start from the journal's figures (fills and markouts of earlier runs): their
        horizons still pending at the last stop are unresolved for good."""
        self.stats = stats

    @property
    def pending(self) -> int:
        """Horizons waiting for an event after their due time."""
        return len(self._heap)

    def before_event(self, event_ns: int) -> None:
        """A market event at ``event_ns`` is about to be applied to the book: resolve every
        horizon due before it with the mid as the book stands now."""
        if event_ns > self._last_ns:
            self._last_ns = event_ns
        if event_ns > self.next_due_ns:
            self._resolve(event_ns)

    def _resolve(self, event_ns: int) -> None:
        mid_x2 = self._mid_x2()
        heap, stats, out = self._heap, self.stats, self._resolved
        while heap and heap[0][0] < event_ns:
            _, _, horizon, fill = heappop(heap)
            if mid_x2 > 0:
                markout = Markout(fill, horizon, mid_x2, event_ns)
                stats.add(markout)
                out.append(markout)
            else:
                self.no_mid += 1
        self.next_due_ns = heap[0][0] if heap else NEVER

    def on_fill(self, fill: Fill) -> None:
        """Our fill, journaled; ``fill.mid_x2`` the mid before the event that filled us
        (bid + ask ticks; 0: unknown, so no markout can be measured for it)."""
        self.stats.fills += 1
        if fill.mid_x2 <= 0:
            self.no_mid += len(self.horizons_ns)
            return
        for horizon in self.horizons_ns:
            due = fill.ts_ns + horizon
            if due < self._last_ns:
                self.late += 1  # an event after t + h is already applied
                continue
            self._seq += 1
            heappush(self._heap, (due, self._seq, horizon, fill))
        if self._heap:
            self.next_due_ns = self._heap[0][0]

    def take(self) -> list[Markout]:
        """The markouts resolved since the last call, in resolution order (for the
        journal)."""
        out, self._resolved = self._resolved, []
        return out
