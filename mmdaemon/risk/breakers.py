"""Circuit breakers: checked on every fill, every requote and every supervisor tick.

Pure and synchronous. Inventory soft limit -> REDUCING; hard limit -> KILLED; loss (realised
+ mark-to-market, after fees) beyond ``max_loss`` -> KILLED; drawdown from the PnL peak
beyond ``max_drawdown`` -> KILLED; no book update for ``stale_feed_ns`` -> HALTED until a
fresh one; book out of sync -> HALTED until resynced; ``reject_burst`` exchange rejects
within ``reject_window_ns`` -> HALTED until the window passes without one.

Kills go through the injected ``kill`` callback, so the daemon can journal the latch and
cancel orders before anything else happens.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from mmdaemon.risk.state import RiskState, TradingState

Kill = Callable[..., None]
"""``kill(reason, **values)``"""


@dataclass(frozen=True)
class BreakerLimits:
    """Inventory in lots; loss and drawdown in notional units (ticks x lots); times in ns."""

    inventory_soft_lots: int
    inventory_hard_lots: int
    max_loss_units: Fraction
    max_drawdown_units: Fraction
    stale_feed_ns: int
    reject_burst: int
    reject_window_ns: int


class Breakers:
    """Evaluate the breakers; raise conditions on ``risk`` and kills through ``kill``."""

    def __init__(self, limits: BreakerLimits, risk: RiskState, kill: Kill) -> None:
        self.limits = limits
        self.risk = risk
        self.kill = kill
        self.trips = 0
        self.peak: Fraction | None = None
        self._rejects: deque[int] = deque()

    def _trip(self, reason: str, **values: Any) -> None:
        if not self.risk.killed:
            self.trips += 1
            self.kill(reason, **values)

    def check_inventory(self, position_lots: int) -> None:
        lim, size = self.limits, abs(position_lots)
        if size >= lim.inventory_hard_lots:
            self._trip("inventory_hard_limit", position=position_lots,
                       limit=lim.inventory_hard_lots)
        soft = size >= lim.inventory_soft_lots
        if soft and "inventory_soft_limit" not in self.risk.reducing:
            self.trips += 1
        self.risk.set_condition(TradingState.REDUCING, "inventory_soft_limit", soft,
                                position=position_lots, limit=lim.inventory_soft_lots)

    def check_pnl(self, total_units: Fraction) -> None:
        """``total_units``: realised + unrealised - fees, notional units."""
        lim = self.limits
        if self.peak is None or total_units > self.peak:
            self.peak = total_units
        if -total_units >= lim.max_loss_units:
            self._trip("loss_limit", pnl_units=float(total_units),
                       limit_units=float(lim.max_loss_units))
        elif self.peak - total_units >= lim.max_drawdown_units:
            self._trip("drawdown_limit", pnl_units=float(total_units),
                       peak_units=float(self.peak), limit_units=float(lim.max_drawdown_units))

    def check_feed(self, now_ns: int, last_book_ns: int, book_synced: bool) -> None:
        """Stale feed and book sync; both clear by themselves when the feed is healthy."""
        silent_ns = now_ns - last_book_ns
        stale = last_book_ns > 0 and silent_ns > self.limits.stale_feed_ns
        halts = self.risk.halts
        if stale is ("feed_stale" in halts) and book_synced is ("book_out_of_sync" not in halts):
            return  # nothing changes: the common case, kept cheap for the hot path
        # rounded up: the rule is strictly over the limit, so the logged figure must be too
        # (floored, 1000.4 ms of silence read "silent_ms 1000, limit_ms 1000")
        self.risk.set_condition(TradingState.HALTED, "feed_stale", stale,
                                silent_ms=-(-silent_ns // 1_000_000),
                                limit_ms=self.limits.stale_feed_ns // 1_000_000)
        self.risk.set_condition(TradingState.HALTED, "book_out_of_sync", not book_synced)

    def on_reject(self, now_ns: int, reason: str) -> None:
        rejects = self._rejects
        rejects.append(now_ns)
        self._expire(now_ns)
        if len(rejects) >= self.limits.reject_burst:
            if "reject_burst" not in self.risk.halts:
                self.trips += 1
            self.risk.set_condition(TradingState.HALTED, "reject_burst", True,
                                    rejects=len(rejects), last_reason=reason)

    def check_rejects(self, now_ns: int) -> None:
        """Clear the reject halt once the window holds fewer than ``reject_burst``."""
        self._expire(now_ns)
        if len(self._rejects) < self.limits.reject_burst:
            self.risk.set_condition(TradingState.HALTED, "reject_burst", False)

    def _expire(self, now_ns: int) -> None:
        rejects, window = self._rejects, self.limits.reject_window_ns
        while rejects and now_ns - rejects[0] > window:
            rejects.popleft()

    def holding(self, position_lots: int, total_units: Fraction | None) -> list[str]:
        """Kill conditions that still hold now: a re-arm is refused while any does.
        ``total_units`` None: the PnL is unknown (a position, no mark yet), which holds too."""
        lim = self.limits
        held = []
        if abs(position_lots) >= lim.inventory_hard_lots:
            held.append(f"inventory {position_lots} lots >= hard limit {lim.inventory_hard_lots}")
        if total_units is None:
            held.append(f"no mark yet: PnL of the {position_lots}-lot position unknown, the "
                        f"loss limit cannot be checked (retry once the book is in)")
        elif -total_units >= lim.max_loss_units:
            held.append(f"loss {float(-total_units):.0f} units >= max_loss "
                        f"{float(lim.max_loss_units):.0f}")
        return held

    def rearmed(self, total_units: Fraction) -> None:
        """A re-arm acknowledges the drawdown so far: measure it from here on."""
        self.peak = total_units
