"""Trading state: the one place that decides whether and how we may quote.

``ACTIVE`` quote both sides; ``REDUCING`` only quotes that shrink inventory; ``HALTED`` no
quotes, resumes by itself when every halting condition has cleared; ``KILLED`` latched,
cleared only by an explicit re-arm. Conditions are named (``feed_stale``, ``book_out_of_sync``,
``inventory_soft`` ...) so that several can hold at once and each clears on its own; the
state is the most severe of them.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any


class TradingState(Enum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"
    KILLED = "KILLED"


Transition = Callable[[TradingState, TradingState, str, dict[str, Any]], None]
"""``on_change(old, new, reason, values)``: called on every state change."""


class RiskState:
    """Named conditions in, one trading state out."""

    def __init__(self, on_change: Transition, killed: bool = False, kill_reason: str = "",
                 halts: dict[str, dict[str, Any]] | None = None) -> None:
        self._on_change = on_change
        self.halts: dict[str, dict[str, Any]] = dict(halts or {})
        self.reducing: dict[str, dict[str, Any]] = {}
        self.killed = killed
        self.kill_reason = kill_reason
        self.state = self._derive()

    def _derive(self) -> TradingState:
        if self.killed:
            return TradingState.KILLED
        if self.halts:
            return TradingState.HALTED
        if self.reducing:
            return TradingState.REDUCING
        return TradingState.ACTIVE

    def _update(self, reason: str, values: dict[str, Any]) -> None:
        new = self._derive()
        if new is not self.state:
            old, self.state = self.state, new
            self._on_change(old, new, reason, values)

    def set_condition(self, severity: TradingState, name: str, active: bool,
                      **values: Any) -> None:
        """Raise or clear a HALTED or REDUCING condition called ``name``."""
        table = self.halts if severity is TradingState.HALTED else self.reducing
        if active:
            if name in table:
                return
            table[name] = values
            self._update(name, values)
        elif name in table:
            del table[name]
            self._update(f"{name}_cleared", values)

    def kill(self, reason: str, **values: Any) -> bool:
        """Latch KILLED; False when it already was."""
        if self.killed:
            return False
        self.killed, self.kill_reason = True, reason
        self._update(reason, values)
        return True

    def rearm(self) -> None:
        """Clear the latch (the caller has checked that no breaker still holds)."""
        self.killed, self.kill_reason = False, ""
        self._update("rearmed", {})
