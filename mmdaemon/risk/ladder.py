"""Risk's veto on a desired ladder, by trading state and in total (pure, synchronous).

:meth:`LadderGate.gate` is the first of the two places risk acts on quotes (the second is
the pre-trade check of every order action, :mod:`mmdaemon.risk.rules`):

- HALTED or KILLED: no ladder (every quote is pulled);
- REDUCING: only the side that shrinks the inventory keeps its levels (bids when short,
  asks when long, none when flat), and their total is capped at ``|position|``, so that a
  complete fill of the ladder brings the position to zero at most and never flips it;
- every state: a side's total is capped so that a complete fill of it never carries the
  position beyond the hard inventory limit (``|position| <= inventory_hard_lots``; a fill
  that reaches the limit trips the breaker, which kills: with one level a side that is the
  behaviour this daemon has always had), and at ``max_side_open_lots`` when that is set.

A side over its cap is trimmed from the outside in: levels are taken best first while they
fit; the first that does not is cut to the room left, rounded down to the instrument's
size step, and dropped if that is below the minimum size or notional; every level beyond
it is dropped. The innermost levels, the ones most likely to trade, are kept. Sizes in
lots, prices in ticks.
"""

from __future__ import annotations

from mmdaemon.model import Instrument, Ladder, Level
from mmdaemon.risk.rules import PreTradeLimits
from mmdaemon.risk.state import TradingState


class LadderGate:
    """Gates and trims ladders for one instrument (see the module docstring)."""

    def __init__(self, instrument: Instrument, limits: PreTradeLimits) -> None:
        """``limits``: the pre-trade checks' own, of which the gate reads
        ``inventory_hard_lots`` (lots, either sign) and ``max_side_open_lots`` (0: none)."""
        self.limits = limits
        self._step = instrument.size_step_lots
        self._min_size = instrument.min_size_lots
        self._min_notional = instrument.min_notional_units

    def gate(self, ladder: Ladder, state: TradingState, position: int) -> Ladder | None:
        """``ladder`` as the trading ``state`` and the ``position`` (lots, > 0 long) allow
        it; None when no quote may stand."""
        if state is TradingState.HALTED or state is TradingState.KILLED:
            return None
        hard = self.limits.inventory_hard_lots
        bid_room, ask_room = hard - position, hard + position
        side_cap = self.limits.max_side_open_lots
        if side_cap > 0:
            bid_room, ask_room = min(bid_room, side_cap), min(ask_room, side_cap)
        if state is TradingState.REDUCING:
            # only the side that shrinks the position, and no further than to zero
            bid_room = min(bid_room, -position) if position < 0 else 0
            ask_room = min(ask_room, position) if position > 0 else 0
        bids, asks = ladder.bids, ladder.asks
        if len(bids) <= 1 and len(asks) <= 1 and (not bids or bids[0][1] <= bid_room) \
                and (not asks or asks[0][1] <= ask_room):
            return ladder  # one level a side that fits: the usual case, no trim to run
        bids, asks = self.trim(bids, bid_room), self.trim(asks, ask_room)
        if bids is ladder.bids and asks is ladder.asks:
            return ladder
        return ladder._replace(bids=bids, asks=asks)

    def trim(self, levels: tuple[Level, ...], room: int) -> tuple[Level, ...]:
        """``levels`` (best first) cut from the outside in to at most ``room`` lots in
        total; the same tuple when they fit."""
        total = 0
        for i, (price, size) in enumerate(levels):
            if total + size <= room:
                total += size
                continue
            left = max(0, room - total)
            left -= left % self._step
            if left >= self._min_size and price * left >= self._min_notional:
                return (*levels[:i], (price, left))
            return levels[:i]
        return levels
