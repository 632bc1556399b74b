"""What "best" means in a sweep: one numeric column of the rows and its direction, among
the runs that meet the requirements (e.g. a desk's quoting obligation: without one, the best
PnL of a sweep is often the run that quoted so wide it never traded)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mmdaemon.commands.usage import UsageError

DEFAULT_OBJECTIVE = "total_pnl"


@dataclass(frozen=True, slots=True)
class Requirement:
    """A run is eligible for "best" only when its column ``name`` is ``>=`` (``at_least``)
    or ``<=`` ``bound``; a run without the figure is not."""

    name: str
    at_least: bool
    bound: float

    @classmethod
    def parse(cls, text: str) -> Requirement:
        """``NAME>=X`` or ``NAME<=X`` (a column of runs.csv and a number)."""
        for op, at_least in ((">=", True), ("<=", False)):
            name, found, bound = text.partition(op)
            if found:
                try:
                    value = float(bound)
                except ValueError:
                    break
                if name.strip() and math.isfinite(value):
                    return cls(name.strip(), at_least, value)
                break
        # a shell reads an unquoted > as a redirection: NAME alone arrives here
        hint = ("; quote it, the shell took '>' for a redirection" if "=" not in text
                and "<" not in text else "")
        raise UsageError(f"mmdaemon sweep: --require: expected a column of runs.csv, >= or "
                         f"<= and a number, e.g. 'quote_uptime>=0.9' or 'fills>=50'; got "
                         f"{text!r}{hint}")

    def __str__(self) -> str:
        return f"{self.name} {'>=' if self.at_least else '<='} {self.bound:g}"

    def met(self, row: dict[str, Any]) -> bool:
        """Whether ``row`` has the figure and it is within the bound."""
        value = _number(row.get(self.name))
        if value is None:
            return False
        return value >= self.bound if self.at_least else value <= self.bound


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


@dataclass(frozen=True, slots=True)
class Objective:
    """What "best" means: the numeric column ``name``, larger better when ``maximize``,
    among the runs that meet every one of ``requires``."""

    name: str
    maximize: bool = True
    requires: tuple[Requirement, ...] = ()

    @classmethod
    def parse(cls, text: str, requires: Sequence[str] = ()) -> Objective:
        """``NAME``, ``NAME:max`` or ``NAME:min`` (a column of runs.csv); ``requires``
        the ``--require`` texts (:meth:`Requirement.parse`)."""
        name, _, way = text.partition(":")
        if not name.strip() or way not in ("", "max", "min"):
            raise UsageError(f"mmdaemon sweep: --objective: expected a column of runs.csv with "
                             f"an optional direction, e.g. total_pnl, total_pnl:max or "
                             f"max_drawdown:min; got {text!r}")
        return cls(name.strip(), way != "min", tuple(map(Requirement.parse, requires)))

    def __str__(self) -> str:
        among = f" among runs with {', '.join(map(str, self.requires))}" if self.requires else ""
        return f"{self.name} ({'largest' if self.maximize else 'smallest'} best){among}"

    @property
    def columns(self) -> list[str]:
        """Every column it reads: the objective's, then the requirements'."""
        return list(dict.fromkeys([self.name, *(r.name for r in self.requires)]))

    def value(self, row: dict[str, Any]) -> float | None:
        """The row's figure, or None when it has none (a failed run, a missing figure)."""
        return _number(row.get(self.name))

    def best(self, rows: Sequence[dict[str, Any]], count: int) -> list[dict[str, Any]]:
        """The ``count`` best rows of runs that did not fail, have the figure and meet the
        requirements (ties: the lower run number first)."""
        scored = [(v, row) for row in rows
                  if not row["error"] and (v := self.value(row)) is not None
                  and all(r.met(row) for r in self.requires)]
        scored.sort(key=lambda item: (-item[0] if self.maximize else item[0], item[1]["run"]))
        return [row for _, row in scored[:count]]
