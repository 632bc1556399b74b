"""The strategy API: what a strategy sees (:class:`StrategyView`) and what it returns
(:class:`~mmdaemon.model.Ladder`).

A strategy is any object with a ``quote(view) -> Ladder | None`` method (:class:`Strategy`).
The engine calls it with the same view object on every event that can move a quote (a book
update, a loss of book sync, one of our fills, a reference-feed update): synchronously, on
the event loop, between the book update and the orders it leads to. The view is read-only
and reads the engine's state as it is at that moment; keep nothing from it beyond the call
except plain values.

Units, everywhere: prices in integer ticks of the traded instrument, sizes in integer lots,
time in integer ns of event time (:attr:`StrategyView.now_ns`: the recorded receive time in
a replay, the wall clock live; never read a clock yourself, or a replay stops being
deterministic). Fractional ticks (fair values, the mid) are floats.

Optional hooks, called when the strategy defines them: ``on_trade(trade, view)`` for every
public trade, ``on_top_of_book(tob, view)`` for the venue's best bid/offer, ``on_fill(fill,
view)`` for each of our fills (after the position has moved). They return nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

from mmdaemon.book import OrderBook
from mmdaemon.model import Instrument, Ladder, Level, Side, Trade

if TYPE_CHECKING:
    from mmdaemon.orders.manager import LiveOrder, OrderAction
    from mmdaemon.orders.position import Position
    from mmdaemon.reference import Reference
    from mmdaemon.risk.state import RiskState


class Strategy(Protocol):
    """Desired quotes from the view. Return the ladder to quote (see
    :class:`~mmdaemon.model.Ladder`), or None to quote nothing (every order is pulled).
    An exception pulls every quote and halts trading (see docs/strategies.md)."""

    def quote(self, view: StrategyView) -> Ladder | None: ...


class SideReader(Protocol):
    """One side of the traded book, read-only (prices in ticks, sizes in lots)."""

    def best(self) -> int | None: ...

    def best_level(self) -> Level | None: ...

    def size_at(self, price: int) -> int: ...

    def top(self, n: int) -> list[Level]: ...


class BookReader(Protocol):
    """The traded instrument's L2 book, read-only.

    ``synced`` is False until a snapshot has synced the book and after a gap: quote nothing
    from an unsynced book (the engine halts on it anyway). ``top(n)`` returns a new list of
    the best ``n`` levels, best first."""

    @property
    def bids(self) -> SideReader: ...

    @property
    def asks(self) -> SideReader: ...

    @property
    def synced(self) -> bool: ...

    @property
    def last_id(self) -> int: ...

    def best_bid(self) -> int | None: ...

    def best_ask(self) -> int | None: ...

    def mid(self) -> float | None: ...

    def weighted_mid(self) -> float | None: ...

    def imbalance(self, depth: int) -> float: ...


class ReadOnlySide:
    """One side of a book as a strategy sees it: :class:`SideReader`'s reads, bound to the
    engine's side (no extra call per read), and nothing that changes it."""

    __slots__ = ("best", "best_level", "size_at", "top")

    def __init__(self, side: SideReader) -> None:
        self.best = side.best
        self.best_level = side.best_level
        self.size_at = side.size_at
        self.top = side.top


class ReadOnlyBook:
    """A book as a strategy sees it (:class:`BookReader`): the engine's own book read
    through, so always current, with none of its methods that change it (``apply``,
    ``clear``, a side's ``set``...). A strategy that writes to the book it prices from would
    move the engine's, the paper venue's and the markouts' market with it."""

    __slots__ = ("_book", "asks", "best_ask", "best_bid", "bids", "imbalance", "mid",
                 "weighted_mid")

    def __init__(self, book: BookReader) -> None:
        self._book = book
        self.bids = ReadOnlySide(book.bids)
        self.asks = ReadOnlySide(book.asks)
        self.best_bid = book.best_bid
        self.best_ask = book.best_ask
        self.mid = book.mid
        self.weighted_mid = book.weighted_mid
        self.imbalance = book.imbalance

    @property
    def synced(self) -> bool:
        return self._book.synced

    @property
    def last_id(self) -> int:
        return self._book.last_id


class OrderView(NamedTuple):
    """One of our open orders as the engine knows it.

    ``pending`` names a request still unanswered ("place", "amend", "cancel") or is None.
    ``queue_ahead_lots`` estimates the displayed size ahead of the order at its price: the
    size shown at the price when the order was sent there, lowered each time the level shows
    less (a trade or a cancel ahead of us); size joining behind us never raises it. It is a
    pessimistic estimate from the public book (cancels behind us lower it too)."""

    order_id: int
    side: Side
    price: int
    size: int
    filled: int
    pending: str | None
    queue_ahead_lots: int

    @property
    def open_size(self) -> int:
        return self.size - self.filled


class LimitsView(NamedTuple):
    """The risk limits the gate applies after the strategy (lots, bps, orders)."""

    max_order_lots: int
    max_open_orders: int
    price_band_bps: float
    inventory_soft_lots: int
    inventory_hard_lots: int


class QueueEstimates:
    """The queue ahead of each of our orders, from the public book (see :class:`OrderView`).

    Kept as order id -> (price ticks, lots ahead). The engine tells it of every place and
    amend it sends (:meth:`sent`; for a plug-in strategy only: the built-ins read no queue)
    and of every book update (:meth:`on_book`), where orders that are gone are dropped."""

    __slots__ = ("_ahead",)

    def __init__(self) -> None:
        self._ahead: dict[int, list[int]] = {}

    def sent(self, action: OrderAction, book: BookReader) -> None:
        """A place or amend of ``action.order_id`` at ``action.price`` went out: it joins
        the back of the queue at that price (an amend of the size alone keeps its place)."""
        entry = self._ahead.get(action.order_id)
        if entry is not None and entry[0] == action.price:
            return
        side = book.bids if action.side is Side.BUY else book.asks
        self._ahead[action.order_id] = [action.price, side.size_at(action.price)]

    def on_book(self, book: BookReader, orders: Mapping[int, LiveOrder]) -> None:
        """The book moved: no queue ahead of us is longer than the level now shows."""
        ahead = self._ahead
        if not ahead:
            return
        gone: list[int] | None = None
        for order_id, entry in ahead.items():
            order = orders.get(order_id)
            if order is None:
                gone = [order_id] if gone is None else [*gone, order_id]
                continue
            side = book.bids if order.side is Side.BUY else book.asks
            shown = side.size_at(entry[0])
            if shown < entry[1]:
                entry[1] = shown
        if gone is not None:
            for order_id in gone:
                del ahead[order_id]

    def ahead(self, order_id: int) -> int:
        """Lots estimated ahead of ``order_id`` (0 when unknown)."""
        entry = self._ahead.get(order_id)
        return entry[1] if entry is not None else 0


class RecentTrades(Sequence[Trade]):
    """The latest public trades, oldest first, at most ``maxlen`` (read-only)."""

    __slots__ = ("_trades",)

    def __init__(self, trades: deque[Trade]) -> None:
        self._trades = trades

    def __len__(self) -> int:
        return len(self._trades)

    def __getitem__(self, index: int) -> Trade:  # type: ignore[override]
        return self._trades[index]

    def __iter__(self) -> Iterator[Trade]:
        return iter(self._trades)


class StrategyView:
    """What a strategy sees on each call, read-only.

    - ``now_ns``: event time, ns;
    - ``instrument``: the traded instrument (tick and lot size, size step, minimums);
    - ``book``: the traded L2 book (:class:`BookReader`);
    - ``trades``: the latest public trades, oldest first (:class:`RecentTrades`);
    - ``position_lots``: our position, lots (> 0 long), every fill up to now included;
    - ``orders``: our open orders with their queue estimates (:class:`OrderView`);
    - ``state``: the trading state ("ACTIVE", "REDUCING", "HALTED", "KILLED"): the gate
      applies it after the strategy (REDUCING keeps the levels that shrink the position);
    - ``limits``: the risk limits applied after the strategy (:class:`LimitsView`);
    - ``reference``: the reference feed's fair-value inputs (:class:`ReferenceView`), None
      without a ``[reference]`` section.

    The engine owns it and sets ``now_ns`` (and ``limits`` on a reload) before each call.
    """

    __slots__ = ("_engine_book", "_orders", "_position", "_queues", "_risk", "book",
                 "instrument", "limits", "now_ns", "reference", "trades")

    def __init__(self, instrument: Instrument, book: OrderBook, trades: deque[Trade],
                 queues: QueueEstimates, position: Position, orders: Mapping[int, LiveOrder],
                 risk: RiskState, limits: LimitsView, reference: Reference | None = None
                 ) -> None:
        self.now_ns = 0
        self.instrument = instrument
        self._engine_book = book
        self.book: BookReader = ReadOnlyBook(book)
        self.trades = RecentTrades(trades)
        self._queues = queues
        self._position = position
        self._orders = orders
        self._risk = risk
        self.limits = limits
        self.reference = ReferenceView(reference, self) if reference is not None else None

    @property
    def position_lots(self) -> int:
        return self._position.position

    @property
    def state(self) -> str:
        return self._risk.state.value

    @property
    def orders(self) -> tuple[OrderView, ...]:
        ahead = self._queues.ahead
        return tuple(
            OrderView(o.order_id, o.side, o.price, o.size, o.filled, o.pending,
                      ahead(o.order_id))
            for o in self._orders.values()
        )

    def empty(self) -> Ladder:
        """A ladder quoting nothing, at this event's time."""
        return Ladder((), (), 0.0, self.now_ns)


class ReferenceView:
    """The reference feed (``[reference]``: another venue or instrument, read-only) as a
    strategy sees it, at the view's time.

    - ``usable``: its book is synced and fresh (a book update or ticker within
      ``reference.stale_ms``);
    - ``mid_ticks``: its mid converted into the *traded* instrument's ticks (exact ratio of
      the two tick sizes, rounded once), None without a top of book;
    - ``age_ns``: event time since its last book update or ticker;
    - ``basis_ticks``: the built-in lead-lag fair value's basis (traded price - reference mid,
      an EWMA; see :mod:`mmdaemon.reference`), None unless ``fair_value.mode = "lead_lag"``
      has updated it;
    - ``book``: its own L2 book, in its own ticks and lots.
    """

    __slots__ = ("_book", "_ref", "_view")

    def __init__(self, reference: Reference, view: StrategyView) -> None:
        self._ref = reference
        self._view = view
        self._book = ReadOnlyBook(reference.book)

    @property
    def usable(self) -> bool:
        return self._ref.usable(self._view.now_ns)

    @property
    def mid_ticks(self) -> float | None:
        return self._ref.mid_ticks()

    @property
    def age_ns(self) -> int:
        return self._view.now_ns - self._ref.last_ns

    @property
    def basis_ticks(self) -> float | None:
        return self._ref.basis_ticks if self._ref.basis_updates else None

    @property
    def book(self) -> BookReader:
        return self._book


def engine_book(view: StrategyView) -> OrderBook:
    """The engine's own book behind ``view.book``, for the built-in strategies: code of this
    package, on the per-event path, that reads the book as the OrderBook it is. A plug-in
    reads ``view.book``."""
    return view._engine_book
