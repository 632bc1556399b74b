"""The compiled hot loops, when they were built, and the switch that turns them off.

``mmdaemon/_speedups.c`` compiles the Binance codec's decoding of its busiest frames
(``bookTicker`` and ``trade`` whole; depth diffs read straight from their bytes into packed
levels, the sync rules staying in Python; the levels of snapshots) and the book side
(:class:`~mmdaemon.book.BookSide`). They are built when ``pip install`` finds a C
compiler; without one the install goes on and the pure-Python loops run instead. The Python
loops stay the reference: the compiled ones hand every unusual input back to them, so
results and errors are the same either way (``tests/test_speedups.py`` checks both).

``MMDAEMON_PURE_PYTHON=1`` in the environment makes a process use the Python loops even
when the compiled ones are there: for a user who suspects them, and for the tests.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING

import orjson

from mmdaemon.model import Side, TopOfBook, Trade

if TYPE_CHECKING:
    from mmdaemon._speedups import Decoder
    from mmdaemon.venues.binance import BinanceCodec


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


def binance_decoder(codec: BinanceCodec) -> Decoder | None:
    """The compiled twins of ``codec``'s decoders, each handing what is not plain to the
    codec's Python method of the same job (``_py_decode``, ``_py_decode_msg``,
    ``_py_levels``, ``_py_book_ticker``, ``_py_trade``); or None when they are not built,
    turned off, or the instrument's grids do not fit the compiled arithmetic (the
    constructor refuses unit digits above 10**18 or more than 40 decimal places)."""
    if compiled is None:
        return None
    ticks, lots = codec.instrument.ticks, codec.instrument.lots
    (price_int, price_exp), (size_int, size_exp) = ticks.parts, lots.parts
    try:
        decoder: Decoder = compiled.Decoder(
            symbol=codec.instrument.symbol,
            price_unit=price_int,
            price_exp=price_exp,
            size_unit=size_int,
            size_exp=size_exp,
            price_parse=ticks.parse,
            size_parse=lots.parse,
            top_cls=TopOfBook,
            trade_cls=Trade,
            buy=Side.BUY,
            sell=Side.SELL,
            loads=orjson.loads,
            levels_fallback=codec._py_levels,
            ticker_fallback=codec._py_book_ticker,
            trade_fallback=codec._py_trade,
            msg_fallback=codec._py_decode_msg,
            decode_fallback=codec._py_decode,
            depth=codec._depth,
            usdm=codec.market == "usdm",
        )
    except ValueError:  # a grid beyond the compiled arithmetic: the Python code decodes
        return None
    return decoder
