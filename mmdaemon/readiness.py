"""What systemd hears from the service: STATUS=, READY=1 once, EXTEND_TIMEOUT_USEC= while
an outage at start is waited out, WATCHDOG=1 while the loop and the feed task live.

READY=1 is sent once, when the book is in sync and the venue reconciled (even if KILLED).
Until then every retry of an unreachable venue moves systemd's start timeout past the next
attempt, so an outage at start is waited out while a start that hangs still times out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from fractions import Fraction
from typing import Any

from mmdaemon.notify import Notifier
from mmdaemon.snapshot import Snapshot

# Until READY, every retry of an unreachable venue moves systemd's start timeout to its due
# time plus this: the attempt itself (connect 10 s, the subscription and reconciliation
# requests 5 s each) and what follows it (the feed's connect and snapshot, 10 s each).
START_RETRY_GRACE_S = 60.0
# conditions that keep READY back: the book is not in sync, the venue not reconciled, its
# instrument rules not read
NOT_READY = ("book_out_of_sync", "venue_not_ready", "instrument_rules_unread")


def status_line(snap: Snapshot, outages: dict[str, tuple[str, float]]) -> str:
    """One line for ``systemctl status``: state, what keeps the venue from us if anything
    (why, and when the next try is), position (base currency) and PnL (quote currency)."""
    t = snap.trading
    gone = "".join(f"{what} {why}, retry in {retry_in_s:.1f}s; "
                   for what, (why, retry_in_s) in outages.items())
    if t is None:
        return f"STARTING {snap.symbol} {gone}".rstrip()
    money = Fraction(snap.tick_size) * Fraction(snap.lot_size)
    pnl = "unknown" if t.total_units is None else f"{float(t.total_units * money):.2f}"
    base = float(t.position_lots * Fraction(snap.lot_size))
    return f"{t.state} {snap.symbol} {gone}position={base:g} pnl={pnl} fills={t.fills}"


class Readiness:
    """The service's side of sd_notify, telling systemd the :func:`status_line` of
    ``snapshot()`` on every change."""

    def __init__(self, notifier: Notifier, snapshot: Callable[[], Snapshot], log: Any) -> None:
        self.notifier = notifier
        self.snapshot = snapshot
        self.log = log
        self.ready_sent = False
        # what keeps the venue from us now ("order entry", "market data") -> why, retry in s
        self.outages: dict[str, tuple[str, float]] = {}

    def status_line(self) -> str:
        return status_line(self.snapshot(), self.outages)

    def _line(self) -> str:
        """The status line, taken only when systemd listens (a snapshot is not free)."""
        return self.status_line() if self.notifier.enabled else ""

    def outage(self, what: str, why: str | None, retry_in_s: float) -> None:
        """``what`` cannot be reached because of ``why`` and is tried again in
        ``retry_in_s`` seconds (``why`` None: reached again)."""
        if why is None:
            if self.outages.pop(what, None) is None:
                return
        else:
            self.outages[what] = (why, retry_in_s)
        if self.ready_sent:
            self.notifier.status(self._line())
        else:
            self.notifier.still_starting(self._line(), retry_in_s + START_RETRY_GRACE_S)

    def maybe_ready(self, halts: Collection[str], state: str) -> None:
        """READY=1 once no halt in :data:`NOT_READY` holds."""
        if not self.ready_sent and not any(h in halts for h in NOT_READY):
            self.ready_sent = True
            self.notifier.ready(self._line())
            self.log.info("ready", state=state)

    def status(self) -> None:
        """The state changed: tell systemd the new line."""
        self.notifier.status(self._line())

    def reloaded(self) -> None:
        """A reload is over: READY=1 again after RELOADING=1 (before READY, a status only)."""
        if self.ready_sent:
            self.notifier.ready(self._line())
        else:  # still starting (a venue outage, say): READY=1 waits for the sync
            self.notifier.status(self._line())

    async def watchdog(self, interval_s: float, alive: Callable[[], bool]) -> None:
        """WATCHDOG=1 every ``interval_s`` while the loop runs and ``alive()`` holds (the
        feed task lives). A blocked loop cannot run this, and a dead feed task stops it:
        either way systemd stops hearing from us and restarts the service."""
        while True:
            await asyncio.sleep(interval_s)
            if not alive():
                self.log.error("watchdog_stopped", reason="the feed task is not running")
                return
            self.notifier.watchdog()
