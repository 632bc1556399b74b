"""A test strategy that misbehaves on purpose (loaded through ``strategy.path``): quotes one
level a side ``offset_ticks`` outside the touch for its first ``good_calls`` calls, then does
what ``kind`` says on every call:

- ``"huge_size"``: a bid size beyond 64 bits; ``"huge_price"``: an ask price beyond 64 bits;
- ``"fair_zero"``: levels 1,000 USDT outside the touch around a fair value of 0;
- ``"raise"``: raises the exception class named by ``exc`` (``SystemExit``,
  ``KeyboardInterrupt``, ``CancelledError``, ``GeneratorExit``: the ``BaseException`` kinds
  that are not ``Exception``).

``init_raise`` names an exception for ``__init__`` to raise instead (a class that now fails
to build)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from mmdaemon.strategy import Ladder, StrategyView

RAISE: dict[str, type[BaseException]] = {
    "SystemExit": SystemExit, "KeyboardInterrupt": KeyboardInterrupt,
    "CancelledError": asyncio.CancelledError, "GeneratorExit": GeneratorExit,
}
BEYOND_64_BITS = 2**64


class Hostile:
    def __init__(self, params: Mapping[str, object]) -> None:
        if params.get("init_raise"):
            raise RAISE[str(params["init_raise"])]()
        self.kind = str(params.get("kind", ""))
        self.exc = RAISE.get(str(params.get("exc", "")), RuntimeError)
        self.good_calls = int(params.get("good_calls", 0))  # type: ignore[call-overload]
        self.offset = int(params.get("offset_ticks", 200))  # type: ignore[call-overload]
        self.calls = 0

    def quote(self, view: StrategyView) -> Ladder | None:
        bid, ask = view.book.best_bid(), view.book.best_ask()
        if bid is None or ask is None:
            return None
        self.calls += 1
        fair = (bid + ask) / 2
        bids, asks = ((bid - self.offset, 20_000),), ((ask + self.offset, 20_000),)
        if self.calls <= self.good_calls:
            return Ladder(bids, asks, fair, view.now_ns)
        if self.kind == "raise":
            raise self.exc()
        if self.kind == "huge_size":
            return Ladder(((bid - self.offset, BEYOND_64_BITS),), asks, fair, view.now_ns)
        if self.kind == "huge_price":
            return Ladder(bids, ((BEYOND_64_BITS, 20_000),), fair, view.now_ns)
        if self.kind == "fair_zero":
            return Ladder(((bid - 100_000, 20_000),), ((ask + 100_000, 20_000),), 0.0,
                          view.now_ns)
        return Ladder(bids, asks, fair, view.now_ns)
