"""An order-flow-imbalance market maker in a few lines: the worked example of
docs/strategies.md, replayed by the tests on the bundled recording.

Order-flow imbalance (Cont, Kukanov and Stoikov, 2014) adds up, event by event, what the best
bid and ask gained or lost: size arriving at (or improving) the bid and size leaving the ask
push the price up, the reverse pushes it down. This strategy sums it over a sliding window of
event time, scales it by ``ofi_scale_lots`` (clamped to +-1), moves its fair value by up to
``shift_ticks`` in its direction, skews against the position, and quotes ``levels`` levels a
side ``half_spread_ticks`` from that fair value and ``spacing_ticks`` apart.

Units: prices in ticks, sizes in lots, time in ns (from the view, never a clock).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping

from mmdaemon.strategy import Ladder, StrategyView

DEFAULTS: dict[str, float] = {
    "window_ms": 1000, "ofi_scale_lots": 10_000_000, "shift_ticks": 2.0,
    "half_spread_ticks": 3.0, "spacing_ticks": 2, "levels": 1, "size_lots": 10_000,
    "max_position_lots": 500_000,
}


class OrderFlowImbalance:
    """``[strategy.params]``: window_ms, ofi_scale_lots, shift_ticks, half_spread_ticks,
    spacing_ticks, levels, size_lots, max_position_lots (all > 0; see the module docstring)."""

    def __init__(self, params: Mapping[str, object]) -> None:
        unknown = set(params) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown parameter(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")

        def number(key: str) -> float:
            value = params.get(key, DEFAULTS[key])
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{key}: expected a number > 0, got {value!r}")
            return float(value)

        self.window_ns = int(number("window_ms") * 1_000_000)
        self.scale = number("ofi_scale_lots")
        self.shift = number("shift_ticks")
        self.half = number("half_spread_ticks")
        self.spacing = int(number("spacing_ticks"))
        self.levels = int(number("levels"))
        self.size = int(number("size_lots"))
        self.max_position = int(number("max_position_lots"))
        self.flow: deque[tuple[int, int]] = deque()  # (event ns, signed lots)
        self.total = 0
        self.last: tuple[int, int, int, int] | None = None  # bid, bid size, ask, ask size

    def quote(self, view: StrategyView) -> Ladder | None:
        book = view.book
        bid_level, ask_level = book.bids.best_level(), book.asks.best_level()
        if not book.synced or bid_level is None or ask_level is None:
            self.last = None
            return None  # nothing to price from: quote nothing
        (bid, bid_size), (ask, ask_size) = bid_level, ask_level
        self._add_flow(view.now_ns, bid, bid_size, ask, ask_size)
        signal = max(-1.0, min(1.0, self.total / self.scale))
        position = view.position_lots
        fair = (bid + ask) / 2 + self.shift * signal - self.shift * position / self.max_position
        top_bid = min(math.floor(fair - self.half), ask - 1)  # never at or through the ask
        top_ask = max(math.ceil(fair + self.half), bid + 1)
        bids = tuple((top_bid - i * self.spacing, self.size) for i in range(self.levels))
        asks = tuple((top_ask + i * self.spacing, self.size) for i in range(self.levels))
        # no side that could carry the position past the limit
        if position + self.size > self.max_position:
            bids = ()
        if position - self.size < -self.max_position:
            asks = ()
        return Ladder(bids, asks, fair, view.now_ns)

    def _add_flow(self, now_ns: int, bid: int, bid_size: int, ask: int, ask_size: int) -> None:
        """One event's order flow at the best prices (lots), into the window's sum."""
        if self.last is not None:
            pb, qb, pa, qa = self.last
            e = (bid_size if bid >= pb else 0) - (qb if bid <= pb else 0)
            e += (qa if ask >= pa else 0) - (ask_size if ask <= pa else 0)
            if e:
                self.flow.append((now_ns, e))
                self.total += e
        self.last = (bid, bid_size, ask, ask_size)
        horizon = now_ns - self.window_ns
        while self.flow and self.flow[0][0] < horizon:
            self.total -= self.flow.popleft()[1]
