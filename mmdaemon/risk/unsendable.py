"""Quotes that could not become orders: counted by reason, reported with their figures.

A quote side can fail to become an order in two places, and neither may pass in silence (a
dry run with thousands of quotes and no order, and not one line saying why, is a
configuration nobody can debug):

- **the instrument's rules**, when the quoter sizes a side (:mod:`mmdaemon.quoting.sizing`):
  ``min_size`` (below ``min_size_lots`` after rounding down to ``size_step_lots``) and
  ``min_notional`` (price x size below ``min_notional``); counted once per quote side;
- **the strategy guard** (:mod:`mmdaemon.strategy.guard`): ``would_take``, a level at or
  through the opposite best price, dropped (and the two above for any strategy's levels);
- **the pre-trade checks** on every order action (:mod:`mmdaemon.risk.rules`):
  ``max_order_size``, ``price_band``, ``max_open_orders``, ``order_rate``,
  ``insufficient_balance``; counted once per blocked action.

:class:`Unsendable` keeps the counts (for the summary and the metrics endpoint) and decides
when a reason is logged: at its first occurrence, then at most once per ``interval_ns`` of
event time with the number of occurrences since the last line. Event time, not wall time,
so a replay logs the same lines at any speed. Pure: no clock, no I/O.
"""

from __future__ import annotations

from mmdaemon.quoting.sizing import MIN_NOTIONAL, MIN_SIZE
from mmdaemon.risk.rules import BLOCK_REASONS

WOULD_TAKE = "would_take"
"""A strategy's level at or through the opposite best price (:mod:`mmdaemon.strategy.guard`)."""

REASONS: tuple[str, ...] = (MIN_SIZE, MIN_NOTIONAL, WOULD_TAKE, *BLOCK_REASONS)
"""Every reason, in the order the summary shows them."""

LOG_INTERVAL_NS = 60 * 1_000_000_000
"""After its first line, a reason is logged at most once per minute of event time."""


class Unsendable:
    """Counts by reason (``counts``, every reason present from the start) and the log
    cadence per reason."""

    __slots__ = ("_interval_ns", "_next_log_ns", "_unlogged", "counts")

    def __init__(self, interval_ns: int = LOG_INTERVAL_NS) -> None:
        if interval_ns <= 0:
            raise ValueError(f"log interval must be positive, got {interval_ns} ns")
        self._interval_ns = interval_ns
        self.counts: dict[str, int] = dict.fromkeys(REASONS, 0)
        self._next_log_ns: dict[str, int] = {}
        self._unlogged: dict[str, int] = dict.fromkeys(REASONS, 0)

    def record(self, reason: str, now_ns: int) -> int:
        """Count one occurrence of ``reason`` at event time ``now_ns`` (ns).

        Returns how many occurrences the log line due now should report (this one and
        those since the last line), or 0 when no line is due.
        """
        self.counts[reason] += 1
        self._unlogged[reason] += 1
        due = self._next_log_ns.get(reason)
        if due is not None and now_ns < due:
            return 0
        self._next_log_ns[reason] = now_ns + self._interval_ns
        reported, self._unlogged[reason] = self._unlogged[reason], 0
        return reported

    def total(self) -> int:
        """Occurrences of every reason together."""
        return sum(self.counts.values())
