"""What the engine is given and what it counts: its ports to the venue (:class:`Matcher`)
and to the shell around it (:class:`EngineShell`), its risk limits (:class:`Limits`) and its
counters (:class:`Counters`). Pure declarations; :mod:`mmdaemon.engine` uses them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from mmdaemon.book import OrderBook
from mmdaemon.model import Trade
from mmdaemon.risk.breakers import BreakerLimits
from mmdaemon.risk.rules import PreTradeLimits
from mmdaemon.risk.state import TradingState


class Matcher(Protocol):
    """The venue's side of the market: a simulated venue matches our resting orders against
    each event (a live one ignores them)."""

    def on_book(self, book: OrderBook, now_ns: int) -> None: ...

    def on_trade(self, trade: Trade, now_ns: int) -> None: ...


class EngineShell(Protocol):
    """What the engine asks of the shell around it, synchronously."""

    def state_changed(self, old: TradingState, new: TradingState) -> None:
        """The trading state changed (systemd status, READY)."""

    def fail(self, why: str) -> None:
        """End the run with exit status 1 (the way out cancels every order first)."""

    def supervised(self) -> None:
        """A supervisor tick ran (READY may be due although no state changed)."""

    def exposure_changed(self) -> None:
        """A fill changed what the firm risk bus publishes."""

    def wall_ns(self) -> int:
        """Wall time (ns since the epoch) for the order log's ``wall_ns`` column only: never
        an input to a decision."""


@dataclass
class Counters:
    """What the engine sent and decided, for the summary and the metrics."""

    quotes: int = 0
    orders: int = 0
    amends: int = 0
    cancels: int = 0
    blocked: int = 0
    rejects: int = 0


@dataclass(frozen=True)
class Limits:
    """The risk parameters built from a config (swapped in whole on reload)."""

    checks: PreTradeLimits
    breakers: BreakerLimits
