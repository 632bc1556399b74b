"""The compiled hot loops, when they were built, and the switch that turns them off.

``mmdaemon/_speedups.c`` compiles the Binance codec's decoding of its busiest frames
(``bookTicker`` and ``trade`` whole; depth diffs and REST snapshots read straight from their
bytes into packed levels, the sync rules staying in Python) and the book side
(:class:`~mmdaemon.book.BookSide`). They are built when ``pip install`` finds a C
compiler; without one the install goes on and the pure-Python loops run instead. The Python
loops stay the reference: the compiled ones hand every unusual input back to them, so
results and errors are the same either way (``tests/unit/test_speedups.py`` checks both).

``MMDAEMON_PURE_PYTHON=1`` in the environment makes a process use the Python loops even
when the compiled ones are there: for a user who suspects them, and for the tests.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import ModuleType


def _load() -> ModuleType | None:
    if os.environ.get("MMDAEMON_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from mmdaemon import _speedups
    except ImportError:
        return None
    Sequence.register(_speedups.Levels)  # a read-only sequence of (price, size) tuples
    return _speedups


compiled: ModuleType | None = _load()
"""The compiled module, or None when it is not built or turned off."""

HOT_LOOPS = "python" if compiled is None else "compiled"
"""Which hot loops this process runs (logged at start-up, printed by the benchmarks)."""
