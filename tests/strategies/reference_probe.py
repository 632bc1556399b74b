"""A test strategy: a lead-lag of its own. Quotes one level a side ``half_ticks`` around the
reference's mid (in traded ticks) plus its own running basis (traded mid - reference mid,
an exponential average per call) while the reference is usable; nothing otherwise (or
without a reference)."""

from __future__ import annotations

import math
from collections.abc import Mapping

from mmdaemon.strategy import Ladder, StrategyView


class ReferenceProbe:
    def __init__(self, params: Mapping[str, object]) -> None:
        self.half = float(params.get("half_ticks", 300))  # type: ignore[arg-type]
        self.basis: float | None = None

    def quote(self, view: StrategyView) -> Ladder | None:
        ref = view.reference
        if ref is None or not ref.usable or ref.mid_ticks is None:
            return None
        assert ref.age_ns >= 0 and ref.book.synced
        traded = view.book.mid()
        if traded is None:
            return None
        gap = traded - ref.mid_ticks
        self.basis = gap if self.basis is None else self.basis + 0.01 * (gap - self.basis)
        mid = ref.mid_ticks + self.basis
        return Ladder(((math.floor(mid - self.half), 20_000),),
                      ((math.ceil(mid + self.half), 20_000),), mid, view.now_ns)
