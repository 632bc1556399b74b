"""A test strategy (loaded through ``strategy.path``): quotes one level a side
``offset_ticks`` outside the touch, and raises while the file ``trigger`` exists, so a test
can make a running daemon's strategy fail and recover from outside. ``exc`` names what it
raises: ``RuntimeError`` (the default), ``SystemExit``, ``KeyboardInterrupt`` or
``CancelledError``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from mmdaemon.strategy import Ladder, StrategyView

RAISE: dict[str, type[BaseException]] = {
    "SystemExit": SystemExit, "KeyboardInterrupt": KeyboardInterrupt,
    "CancelledError": asyncio.CancelledError,
}


class Flaky:
    def __init__(self, params: Mapping[str, object]) -> None:
        self.trigger = Path(str(params["trigger"]))
        self.exc = RAISE.get(str(params.get("exc", "")), RuntimeError)
        self.offset = int(params.get("offset_ticks", 200))  # type: ignore[call-overload]
        self.size = int(params.get("size_lots", 20_000))  # type: ignore[call-overload]

    def quote(self, view: StrategyView) -> Ladder | None:
        if self.trigger.exists():
            raise self.exc(f"{self.trigger} exists")
        bid, ask = view.book.best_bid(), view.book.best_ask()
        if bid is None or ask is None:
            return None
        return Ladder(((bid - self.offset, self.size),), ((ask + self.offset, self.size),),
                      (bid + ask) / 2, view.now_ns)
