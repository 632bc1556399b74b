"""Between a strategy and the orders: every call guarded, every ladder checked.

A strategy is code the engine does not trust (a desk's own, loaded from the config). Three
promises hold whatever it does:

- **An exception never crashes the daemon.** It pulls every quote: the guard reports the
  strategy as failing and the engine raises the HALTED condition ``strategy_error`` (the
  state change cancels our orders). The traceback is logged once per distinct failure (the
  exception type and the line it came from); repeats are counted and logged at most once per
  minute of event time. The strategy keeps being called, so it can recover: the condition
  clears at the first good ladder ``hold_ns`` or more after the last failure.
- **A malformed ladder is a failure too** (not a :class:`~mmdaemon.model.Ladder`, levels
  that are not ``(int ticks, int lots)`` pairs with both > 0, prices not strictly moving
  away from the touch, the best bid not below the best ask, more than
  :data:`MAX_LEVELS` levels a side), with the problem named in the log. So is a price or
  size beyond a signed 64-bit integer (:data:`MAX_INT`: the journal and the venues store no
  more), and levels quoted around a ``fair`` that is not above 0 (the pre-trade price band
  is centred on ``fair`` and cannot apply around 0).
- **What leaves is sendable and passive.** Sizes are rounded down to the instrument's size
  step; a level then below the minimum size or notional is dropped, and so is one at or
  through the opposite best price of the book (a post-only order would be refused, a plain
  one would take). Each drop is reported through ``on_cut`` with its reason (counted and
  logged by the engine as the built-in quoter's size cuts are).

Every ``BaseException`` is caught, ``SystemExit``, ``KeyboardInterrupt`` and
``asyncio.CancelledError`` included: none of them can be the process's own control here (the
daemon takes the operator's signals through the event loop's handlers, and a task is only
cancelled at an ``await``, never inside this synchronous call), so raised by the strategy
they are its failure. Let through, they stopped the daemon without cancelling its orders (a
stale quote left at the venue) or ended a replay early with exit 0. A strategy that loops for
ever blocks the event loop; no guard in the same thread can stop it (the tick-to-quote
histogram shows a slow one).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from mmdaemon.model import Fill, Instrument, Ladder, Level, Side, TopOfBook, Trade
from mmdaemon.quoting.ladder import MAX_LEVELS
from mmdaemon.quoting.sizing import MIN_NOTIONAL, MIN_SIZE
from mmdaemon.risk.unsendable import WOULD_TAKE
from mmdaemon.strategy.api import Strategy, StrategyView

STRATEGY_ERROR = "strategy_error"
"""The HALTED condition raised while the strategy fails."""
MAX_INT = 2**63 - 1
"""Largest price (ticks) or size (lots) a level may have: the journal's SQLite integers and
the venues' order fields are signed 64-bit."""
REPEAT_LOG_NS = 60 * 1_000_000_000
"""Repeated failures are logged at most once per minute of event time."""

Failing = Callable[[bool, dict[str, Any]], None]
"""``(failing, values)``: the strategy started (True) or stopped (False) failing."""
Cut = Callable[[str, Side, int, int, int], None]
"""``(reason, side, price ticks, wanted lots, sendable lots)``: a level that was dropped."""


class StrategyGuard:
    """Calls one strategy for the engine under the promises of the module docstring."""

    __slots__ = ("_cut", "_failing_cb", "_fill_hook", "_hold_ns", "_log", "_min_notional",
                 "_min_size", "_next_log_ns", "_quote", "_seen", "_step", "_tob_hook",
                 "_trade_hook", "_unlogged", "errors", "failing", "last_failure_ns", "name",
                 "strategy")

    def __init__(self, strategy: Strategy, name: str, instrument: Instrument, hold_ns: int,
                 log: Any, on_failing: Failing, on_cut: Cut) -> None:
        self.strategy = strategy
        self.name = name
        self._quote = strategy.quote
        # hooks looked up once: most strategies define none of them
        self._trade_hook: Callable[[Trade, StrategyView], object] | None = getattr(
            strategy, "on_trade", None)
        self._tob_hook: Callable[[TopOfBook, StrategyView], object] | None = getattr(
            strategy, "on_top_of_book", None)
        self._fill_hook: Callable[[Fill, StrategyView], object] | None = getattr(
            strategy, "on_fill", None)
        self._hold_ns = hold_ns
        self._log = log
        self._failing_cb = on_failing
        self._cut = on_cut
        self._step = instrument.size_step_lots
        self._min_size = instrument.min_size_lots
        self._min_notional = instrument.min_notional_units
        self._seen: set[tuple[str, str, int]] = set()  # failures logged with a traceback
        self._next_log_ns = 0
        self._unlogged = 0
        self.errors = 0  # failures, every kind
        self.failing = False
        self.last_failure_ns = 0

    # -- calls ------------------------------------------------------------------------------

    def quote(self, view: StrategyView) -> Ladder:
        """The strategy's ladder for ``view``, checked (the empty ladder when it fails or
        quotes nothing). The risk gate comes next, then :meth:`sendable`."""
        now_ns = view.now_ns
        try:
            ladder = self._quote(view)
        except BaseException as exc:  # every kind: see the module docstring
            self._failed(exc, "quote", now_ns)
            return view.empty()
        if ladder is None:
            ladder = view.empty()
        else:
            problem = (ladder_problem(ladder) if type(ladder) is Ladder
                       else f"expected a Ladder or None, got {type(ladder).__name__}")
            if problem:
                self._failed(InvalidLadder(problem), "quote", now_ns)
                return view.empty()
        if self.failing and now_ns - self.last_failure_ns >= self._hold_ns:
            self.failing = False
            self._failing_cb(False, {"strategy": self.name, "errors": self.errors})
        return ladder

    # The hooks run on every trade and top of book: the call is inline, one frame here.

    def on_trade(self, trade: Trade, view: StrategyView) -> None:
        """A public trade, to the strategy's ``on_trade`` if it has one."""
        hook = self._trade_hook
        if hook is not None:
            try:
                hook(trade, view)
            except BaseException as exc:  # every kind: see the module docstring
                self._failed(exc, "on_trade", view.now_ns)

    def on_top_of_book(self, tob: TopOfBook, view: StrategyView) -> None:
        """The venue's best bid/offer, to the strategy's ``on_top_of_book`` if it has one."""
        hook = self._tob_hook
        if hook is not None:
            try:
                hook(tob, view)
            except BaseException as exc:  # every kind: see the module docstring
                self._failed(exc, "on_top_of_book", view.now_ns)

    def on_fill(self, fill: Fill, view: StrategyView) -> None:
        """One of our fills (the position already moved), to ``on_fill`` if it has one."""
        hook = self._fill_hook
        if hook is not None:
            try:
                hook(fill, view)
            except BaseException as exc:  # every kind: see the module docstring
                self._failed(exc, "on_fill", view.now_ns)

    # -- failures ---------------------------------------------------------------------------

    def _failed(self, exc: BaseException, where: str, now_ns: int) -> None:
        """Count, log (traceback once per distinct failure), and halt while failing."""
        self.errors += 1
        self.last_failure_ns = now_ns
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        # where it was raised; an invalid ladder (raised by no line) by its problem without
        # its figures, or one traceback per price a broken strategy returns floods the log
        signature = ((type(exc).__name__, tb.tb_frame.f_code.co_filename, tb.tb_lineno)
                     if tb is not None
                     else (type(exc).__name__, _FIGURES.sub("#", str(exc)[:200]), 0))
        values = {"strategy": self.name, "during": where,
                  "error": f"{type(exc).__name__}: {exc}"[:500], "errors": self.errors}
        if signature not in self._seen:
            self._seen.add(signature)
            self._log.error("strategy_error", **values, exc_info=exc)
            self._next_log_ns = now_ns + REPEAT_LOG_NS
            self._unlogged = 0
        else:
            self._unlogged += 1
            if now_ns >= self._next_log_ns:
                self._log.error("strategy_error_repeated", **values, since_last=self._unlogged)
                self._next_log_ns = now_ns + REPEAT_LOG_NS
                self._unlogged = 0
        if not self.failing:
            self.failing = True
            self._failing_cb(True, values)

    # -- what may leave ----------------------------------------------------------------------

    def sendable(self, ladder: Ladder, view: StrategyView) -> Ladder:
        """``ladder`` (after the risk gate) with sizes on the step and unsendable or taking
        levels dropped, each drop reported; the same object when nothing had to change (the
        usual case, no allocation). After the gate, so a side the gate holds back is not
        reported as unsendable too."""
        book = view.book
        best_ask = book.best_ask()
        best_bid = book.best_bid()
        bids, asks = ladder.bids, ladder.asks
        # the usual case first, in one pass: every level on the grid and above the minimums,
        # the innermost ones passive (the others are further from the other side)
        step, min_size, min_notional = self._step, self._min_size, self._min_notional
        for price, size in bids + asks:
            if size % step or size < min_size or price * size < min_notional:
                break
        else:
            if ((not bids or best_ask is None or bids[0][0] < best_ask)
                    and (not asks or best_bid is None or asks[0][0] > best_bid)):
                return ladder
        new_bids = self._side(bids, Side.BUY, best_ask)
        new_asks = self._side(asks, Side.SELL, best_bid)
        return Ladder(new_bids, new_asks, ladder.fair, ladder.ts_ns)

    def _side(self, levels: tuple[Level, ...], side: Side,
              opposite: int | None) -> tuple[Level, ...]:
        step, min_size, min_notional = self._step, self._min_size, self._min_notional
        kept: list[Level] | None = None
        for i, (price, size) in enumerate(levels):
            sendable = size - size % step
            reason = ""
            if opposite is not None and (price >= opposite if side is Side.BUY
                                         else price <= opposite):
                reason = WOULD_TAKE
            elif sendable < min_size:
                reason = MIN_SIZE
            elif price * sendable < min_notional:
                reason = MIN_NOTIONAL
            if not reason and sendable == size:
                if kept is not None:
                    kept.append((price, size))
                continue
            if kept is None:
                kept = list(levels[:i])
            if reason:
                self._cut(reason, side, price, size, sendable)
            else:
                kept.append((price, sendable))
        return levels if kept is None else tuple(kept)


_FIGURES = re.compile(r"[-+]?[\d.]+(?:e[-+]?\d+)?")
"""The figures in a problem's text, which vary from one call to the next."""


class InvalidLadder(ValueError):
    """A strategy returned something that is not a well-formed ladder."""


def ladder_problem(ladder: Ladder) -> str:
    """What is wrong with ``ladder`` ("" when nothing is): see the module docstring."""
    bids, asks, fair, ts_ns = ladder
    # the usual case in one pass (a strategy is called on every book event); any doubt
    # goes to the full check below, which names the problem
    if (type(bids) is tuple and type(asks) is tuple and type(ts_ns) is int
            and type(fair) is float and 0 < fair < math.inf
            and _plain(bids, -1) and _plain(asks, 1)
            and not (bids and asks and bids[0][0] >= asks[0][0])):
        return ""
    return _problem(ladder)


def _plain(levels: tuple[Level, ...], away: int) -> bool:
    """``levels`` are at most MAX_LEVELS well-formed levels moving ``away`` from the touch."""
    if len(levels) > MAX_LEVELS:
        return False
    last = 0
    for level in levels:
        if type(level) is not tuple or len(level) != 2:
            return False
        price, size = level
        if (type(price) is not int or type(size) is not int or not 0 < price <= MAX_INT
                or not 0 < size <= MAX_INT or (last and (price - last) * away <= 0)):
            return False
        last = price
    return True


def _problem(ladder: Ladder) -> str:
    """The full check of :func:`ladder_problem`, naming the first problem found."""
    bids, asks, fair = ladder.bids, ladder.asks, ladder.fair
    for name, levels, sign in (("bids", bids, -1), ("asks", asks, 1)):
        if not isinstance(levels, tuple):
            return f"{name}: expected a tuple of (price ticks, size lots), got " \
                   f"{type(levels).__name__}"
        if len(levels) > MAX_LEVELS:
            return f"{name}: {len(levels)} levels, at most {MAX_LEVELS}"
        last = 0
        for i, level in enumerate(levels):
            if (type(level) is not tuple or len(level) != 2 or type(level[0]) is not int
                    or type(level[1]) is not int):
                return f"{name}[{i}]: expected (int price ticks, int size lots), got {level!r}"
            price, size = level
            if price <= 0 or size <= 0:
                return f"{name}[{i}]: price and size must be > 0, got {level!r}"
            if price > MAX_INT or size > MAX_INT:
                return f"{name}[{i}]: price and size must be at most {MAX_INT} (64-bit), " \
                       f"got {level!r}"
            if i and (price - last) * sign <= 0:
                return f"{name}[{i}]: price {price} does not move away from the touch " \
                       f"(previous {last})"
            last = price
    if bids and asks and bids[0][0] >= asks[0][0]:
        return f"best bid {bids[0][0]} is not below best ask {asks[0][0]}"
    if type(fair) not in (int, float) or not math.isfinite(fair):
        return f"fair: expected a finite number of ticks, got {fair!r}"
    if fair <= 0 and (bids or asks):
        return f"fair: expected > 0 ticks with levels to quote (the price band is centred " \
               f"on it), got {fair!r}"
    if type(ladder.ts_ns) is not int:
        return f"ts_ns: expected int ns, got {ladder.ts_ns!r}"
    return ""
