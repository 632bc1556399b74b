"""What the engine writes to the journal, and the rows that may trail the hot path.

A fill, a kill, a state change are written at once (:class:`Store`: synchronous, durable on
return). Report samples, order-log rows and resolved markouts are only for reports: they are
buffered here and written in batches by :meth:`Records.flush` (the shell's supervisor task,
and at stop), so a frame never waits for SQLite on its way to a quote, or at once when a
buffer holds :data:`MAX_BUFFERED_SAMPLES` / :data:`MAX_BUFFERED_ORDER_LOG` rows (a loop too
busy to run that task). A crash loses at most one supervisor interval of them.

After one failed write nothing more is written (:attr:`Records.broken`): the engine ends the
run (:meth:`mmdaemon.engine.Engine.journal_failed`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import orjson

from mmdaemon.markouts import Markout
from mmdaemon.model import Fill, Funding, Ladder, OrderStatus, OrderUpdate
from mmdaemon.orders.manager import LiveOrder

Sample = tuple[int, int, int | None, int | None, float, int, int, int, int, int, str, int, int,
               int]
"""One ``samples`` row, in column order (see :data:`mmdaemon.journal.SCHEMA`)."""

LevelsRow = tuple[int, int, str, str]
"""One ``sample_levels`` row: run id, event time (ns) and the gated ladder's bids and asks
as JSON lists of ``[price ticks, size lots]``, best first (see :func:`levels_row`)."""

OrderLogRow = tuple[int, int | None, int, str, int, int, int, int, int | None, str, int | None,
                    int | None]
"""One ``order_log`` row without its ``seq``, in column order (see
:data:`mmdaemon.journal.SCHEMA`)."""



@dataclass(frozen=True)
class Restored:
    """What the journal held at start."""

    fills: list[Fill]  # in the order they were recorded
    killed: bool
    kill_reason: str
    pnl_peak_units: Fraction | None  # the drawdown breaker's peak, notional units
    run_id: int  # this start's number, 1 for a fresh journal
    funding: list[Funding] = field(default_factory=list)  # payments, in the order recorded


PLACE, AMEND, CANCEL = "place", "amend", "cancel"
ACK, REJECT, CANCELED, PARTIALLY_FILLED, FILLED, EXPIRED = (
    "ack", "reject", "canceled", "partially_filled", "filled", "expired")
FILL = "fill"
ACTIONS = frozenset({PLACE, AMEND, CANCEL})
"""Our actions: the names are :data:`mmdaemon.orders.manager.ActionKind`'s."""
ANSWERS = frozenset({ACK, REJECT, CANCELED, PARTIALLY_FILLED, FILLED, EXPIRED})
EXPIRED_PREFIX = "expired"
"""The reason a CANCELED the venue decided on its own carries (mmdaemon.venues.binance_api
maps EXPIRED and EXPIRED_IN_MATCH to CANCELED with ``expired...``)."""

def answer_event(update: OrderUpdate, order: LiveOrder | None) -> str | None:
    """The order-log event of the venue's ``update``, or None for our own state echoed back.

    ``order`` is the order manager's record of the order *before* the update is applied
    (None if it has none): a PARTIALLY_FILLED that carries exactly the price and size of
    an amend in flight is the amend's acceptance (``ack``), as the order manager reads it.
    """
    status = update.status
    if status is OrderStatus.NEW:
        return ACK
    if status is OrderStatus.PARTIALLY_FILLED:
        if order is not None and order.pending == AMEND and (
                update.price, update.size) == (order.price, order.size):
            return ACK
        return PARTIALLY_FILLED
    if status is OrderStatus.FILLED:
        return FILLED
    if status is OrderStatus.CANCELED:
        return EXPIRED if update.reason.startswith(EXPIRED_PREFIX) else CANCELED
    if status is OrderStatus.REJECTED:
        return REJECT
    return None  # PENDING_NEW, PENDING_CANCEL


class LatchNotPersisted(OSError):
    """The kill could neither be written into the latch file nor the file removed."""


@dataclass(frozen=True)
class LatchState:
    """What the latch says: killed or armed, and why (empty when armed)."""

    killed: bool
    reason: str


class Latch(Protocol):
    """The kill latch as the engine sets it (:class:`mmdaemon.latch.KillLatch`): on disk
    before :meth:`set` returns, or it raises (``LatchNotPersisted``: neither written nor
    removed; another OSError on a re-arm)."""

    path: Path
    removed: bool
    state: LatchState

    def set(self, killed: bool, reason: str, now_ns: int) -> None: ...


# 4 minutes of samples at the 250 ms default
MAX_BUFFERED_SAMPLES = 1024
# a minute of amends at 20 a second
MAX_BUFFERED_ORDER_LOG = 1024


class Store(Protocol):
    """The journal as the engine writes it (:class:`mmdaemon.journal.Journal`)."""

    path: Path

    def record_fill(self, fill: Fill) -> bool: ...

    def record_funding(self, funding: Funding) -> bool: ...

    def add_markouts(self, markouts: list[Markout]) -> None: ...

    def add_samples(self, rows: list[Sample]) -> None: ...

    def add_sample_levels(self, rows: list[LevelsRow]) -> None: ...

    def add_order_log(self, rows: list[OrderLogRow]) -> None: ...

    def set_killed(self, killed: bool, reason: str, now_ns: int) -> None: ...

    def set_trading_state(self, state: str, now_ns: int) -> None: ...

    def set_pnl_peak(self, peak_units: Fraction, now_ns: int) -> None: ...

    def put(self, key: str, value: str, now_ns: int) -> None: ...

    def get(self, key: str, default: str) -> str: ...

    def markouts(self) -> list[tuple[str, int, int, int]]: ...

    def checkpoint(self) -> bool: ...


class Records:
    """Buffers of report rows for one journal. ``failed(during, exc)`` hears of a write that
    failed; ``wall_ns`` stamps order-log rows with wall time (read by people, never an input
    to a decision)."""

    def __init__(self, wall_ns: Callable[[], int],
                 failed: Callable[[str, Exception], None]) -> None:
        self.wall_ns = wall_ns
        self.failed = failed
        self.broken = False  # a write failed: nothing more is written
        self.samples: list[Sample] = []
        self.levels: list[LevelsRow] = []
        self.order_log: list[OrderLogRow] = []
        self.journal: Store  # set by attach()

    def attach(self, journal: Store) -> None:
        self.journal = journal

    def sample(self, row: Sample, ladder: Ladder | None = None) -> None:
        """One report sample (see :data:`mmdaemon.journal.Sample`), and the ``ladder`` it
        quoted when that has more than one level on a side (the sample's own columns hold
        the innermost level)."""
        self.samples.append(row)
        if ladder is not None and (len(ladder.bids) > 1 or len(ladder.asks) > 1):
            self.levels.append(levels_row(row[0], row[1], ladder))
        if len(self.samples) >= MAX_BUFFERED_SAMPLES:
            self._flush_samples()

    def order(self, ts_ns: int, venue_ns: int | None, event: str, order_id: int, side: int,
              price: int, size: int, filled: int | None, reason: str,
              exec_id: int | None = None, mid_x2: int | None = None) -> None:
        """One order-log row of an action (``venue_ns`` None), an answer or a fill
        (``exec_id``; ``mid_x2`` bid + ask before it, ticks, None unknown), at event time
        ``ts_ns`` (the fields: :mod:`mmdaemon.orderlog`). The fill itself is committed at
        once; its row need not be."""
        self.order_log.append((ts_ns, venue_ns, self.wall_ns(), event, order_id, side, price,
                               size, filled, reason, exec_id, mid_x2))
        if len(self.order_log) >= MAX_BUFFERED_ORDER_LOG:
            self._flush_order_log()

    def flush(self, markouts: list[Markout]) -> None:
        """Write the buffered samples, the resolved ``markouts`` and the order-log rows."""
        self._flush_samples()
        if markouts and not self.broken:
            try:
                self.journal.add_markouts(markouts)
            except Exception as exc:
                self.failed("markouts", exc)
        self._flush_order_log()

    def _flush_samples(self) -> None:
        rows, self.samples = self.samples, []
        levels, self.levels = self.levels, []
        if rows and not self.broken:  # broken: not worth another failing write
            try:
                self.journal.add_samples(rows)
                if levels:
                    self.journal.add_sample_levels(levels)
            except Exception as exc:
                self.failed("samples", exc)

    def _flush_order_log(self) -> None:
        rows, self.order_log = self.order_log, []
        if rows and not self.broken:
            try:
                self.journal.add_order_log(rows)
            except Exception as exc:
                self.failed("order_log", exc)


def levels_row(run_id: int, ts_ns: int, ladder: Ladder) -> LevelsRow:
    """The ``sample_levels`` row of ``ladder`` sampled at ``ts_ns`` in run ``run_id``."""
    return (run_id, ts_ns, orjson.dumps(ladder.bids).decode(),
            orjson.dumps(ladder.asks).decode())
