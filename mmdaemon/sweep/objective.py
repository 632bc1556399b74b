"""What "best" means in a sweep: one numeric column of the rows and its direction."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mmdaemon.commands.usage import UsageError

DEFAULT_OBJECTIVE = "total_pnl"


@dataclass(frozen=True, slots=True)
class Objective:
    """What "best" means: the numeric column ``name``, larger better when ``maximize``."""

    name: str
    maximize: bool = True

    @classmethod
    def parse(cls, text: str) -> Objective:
        """``NAME``, ``NAME:max`` or ``NAME:min`` (a column of runs.csv)."""
        name, _, way = text.partition(":")
        if not name.strip() or way not in ("", "max", "min"):
            raise UsageError(f"mmdaemon sweep: --objective: expected a column of runs.csv with "
                             f"an optional direction, e.g. total_pnl, total_pnl:max or "
                             f"max_drawdown:min; got {text!r}")
        return cls(name.strip(), way != "min")

    def __str__(self) -> str:
        return f"{self.name} ({'largest' if self.maximize else 'smallest'} best)"

    def value(self, row: dict[str, Any]) -> float | None:
        """The row's figure, or None when it has none (a failed run, a missing figure)."""
        value = row.get(self.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return None if math.isnan(value) else float(value)

    def best(self, rows: Sequence[dict[str, Any]], count: int) -> list[dict[str, Any]]:
        """The ``count`` best rows of runs that did not fail and have the figure (ties: the
        lower run number first)."""
        scored = [(v, row) for row in rows
                  if not row["error"] and (v := self.value(row)) is not None]
        scored.sort(key=lambda item: (-item[0] if self.maximize else item[0], item[1]["run"]))
        return [row for _, row in scored[:count]]
