"""Parameter checks shared by the quoting components' frozen dataclasses.

Every check raises ``ValueError`` whose message names the dataclass field and the expected
form, e.g. ``SpreadParams.base_bps: expected a finite number >= 0 (bps), got -1.0``, so a
config loader can pass it straight to the operator. Types are checked as well as ranges
because parameters will come from TOML, where ``1`` and ``1.0`` and ``true`` are all
possible spellings: an ``int`` is accepted where a float is expected, a ``bool`` never is.
"""

from __future__ import annotations

import math


def fail(owner: str, name: str, expected: str, value: object) -> ValueError:
    """The error for field ``owner.name``: what was expected and what was given."""
    return ValueError(f"{owner}.{name}: expected {expected}, got {value!r}")


def real(
    owner: str,
    name: str,
    value: object,
    unit: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
) -> None:
    """``value`` must be a finite int/float within [lo, hi] (``lo`` exclusive if ``lo_open``)."""
    bounds = []
    if lo is not None:
        bounds.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        bounds.append(f"<= {hi:g}")
    expected = "a finite number" + (" " + " and ".join(bounds) if bounds else "")
    expected += f" ({unit})" if unit else ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail(owner, name, expected, value)
    if not math.isfinite(value):
        raise fail(owner, name, expected, value)
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise fail(owner, name, expected, value)
    if hi is not None and value > hi:
        raise fail(owner, name, expected, value)


def integer(owner: str, name: str, value: object, unit: str, *, lo: int) -> None:
    """``value`` must be an ``int`` (not a bool, not a float) and at least ``lo``."""
    expected = f"an integer >= {lo}" + (f" ({unit})" if unit else "")
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise fail(owner, name, expected, value)


def choice(owner: str, name: str, value: object, choices: tuple[str, ...]) -> None:
    """``value`` must be one of the strings in ``choices``."""
    if not isinstance(value, str) or value not in choices:
        expected = "one of " + ", ".join(repr(c) for c in choices)
        raise fail(owner, name, expected, value)
