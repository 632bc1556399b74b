"""The target of the compiled code's fuzzer (``speedups_fuzzer.c``): one input, checked.

``speedups_fuzzer.c`` embeds Python and calls :func:`one_input` with each input libFuzzer
makes; its coverage is that of ``mmdaemon/_speedups.c``, built with libFuzzer's
instrumentation and AddressSanitizer + UBSan (``make fuzz-c``). Any exception is a finding:
the harness prints it and aborts, and libFuzzer keeps the input.

An input is one of two programs:

- anything not starting with ``B``: Binance frames separated by ``\\n``, through the
  compiled codec and book against the Python ones (:func:`codec_oracle.frames`, without
  the WebSocket API parsers, which are Python only). Real frames start with ``{``.
- ``B`` then bytes: operations on a compiled book side and on the Python reference
  (:class:`mmdaemon.book.BookSide`), every read compared after every operation (see
  :func:`book`).

Run as a script, it replays inputs (files, or directories of them) without libFuzzer; an
exception names the input::

    .venv/bin/python fuzz/speedups_target.py fuzz/corpus-c
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import codec_oracle
import orjson

from mmdaemon import speedups
from mmdaemon.book import BookSide
from mmdaemon.model import BINANCE_SPOT_BTCUSDT as INST
from mmdaemon.model import Level, MarketEvent
from mmdaemon.venues.binance import BinanceCodec

LIMIT = 2**62 - 1  # the compiled side's bound on a price or size (model.MAX_UNITS)
REGIONS = [(1, 1, 2), (2, 4, 8), (3, 5, 6), (1, 2, 3), (4, 4, 5), (32, 128, 256)]
"""(least, keep, most) of the side's sorted top region: small ones trim and refill often."""
EDGE_PRICES = [0, -1, 1, LIMIT, -LIMIT, LIMIT - 1, 2**32, -(2**40)]
EDGE_SIZES = [LIMIT, 2**53, 2**53 + 1, 2**53 + 3, LIMIT - 1, 1, 3 * 2**52 + 1, 2**62 - 3]
BEYOND = [(LIMIT + 1, 1), (1, LIMIT + 1), (-LIMIT - 1, 1), (1, -1), (2**64, 1), (1, 2**63)]
"""Changes the compiled side refuses (OverflowError, ValueError) and the reference takes."""


def compiled_module() -> Any:
    """The compiled module, which must be the build named by ``MMDAEMON_SPEEDUPS_SO`` when
    that is set (the instrumented one: fuzzing the normal build would find nothing)."""
    module = speedups.compiled
    if module is None:
        raise RuntimeError("the compiled hot loops are not built or are turned off "
                           "(MMDAEMON_PURE_PYTHON): nothing to fuzz")
    wanted = os.environ.get("MMDAEMON_SPEEDUPS_SO")
    if wanted and os.path.realpath(str(module.__file__)) != os.path.realpath(wanted):
        raise RuntimeError(f"mmdaemon._speedups is {module.__file__}, not {wanted}: run with "
                           "fuzz/preload on PYTHONPATH")
    return module


COMPILED = compiled_module()


class Bytes:
    """The rest of a book program, read a byte at a time (0 once it is used up)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def __bool__(self) -> bool:
        return self.at < len(self.data)

    def byte(self) -> int:
        self.at += 1
        return self.data[self.at - 1] if self.at <= len(self.data) else 0

    def price(self) -> int:
        b = self.byte()
        return EDGE_PRICES[b % 8] if b >= 0xF8 else 10_000 + b - 124

    def size(self) -> int:
        b = self.byte()
        if b >= 0xF8:
            return EDGE_SIZES[b % 8]
        return 0 if b % 5 == 0 else b  # a fifth of the changes delete

    def pairs(self) -> list[Level]:
        return [(self.price(), self.size()) for _ in range(self.byte() % 16)]


def _capture_levels() -> tuple[Callable[[bytes], object], list[Sequence[Level]]]:
    """A compiled decoder whose depth continuation keeps the bids it is given: the packed
    Levels the scanner makes from a depth diff's bytes."""
    got: list[Sequence[Level]] = []
    codec = BinanceCodec(INST, "spot")

    def depth(first: int, last: int, prev: int, bids: Sequence[Level], asks: Sequence[Level],
              exch_ns: int, recv_ns: int) -> list[MarketEvent]:
        got.append(bids)
        return []

    codec._depth = depth  # type: ignore[method-assign]
    decoder = codec.compiled_decoder()
    if decoder is None:
        raise RuntimeError("the compiled decoder refused the spot instrument's grids")
    return lambda frame: decoder.decode(0, frame), got


DECODE, CAPTURED = _capture_levels()


def packed(pairs: list[Level]) -> Sequence[Level]:
    """``pairs`` (non-negative) as the scanner packs a depth diff's levels."""
    data = {"e": "depthUpdate", "E": 1, "s": INST.symbol, "U": 1, "u": 1,
            "b": [[INST.price_str(p), INST.size_str(s)] for p, s in pairs], "a": []}
    CAPTURED.clear()
    DECODE(orjson.dumps({"stream": "btcusdt@depth@100ms", "data": data}))
    levels = CAPTURED[0] if CAPTURED else None
    if levels is None or type(levels) is not COMPILED.Levels or list(levels) != pairs:
        raise AssertionError(f"the scanner did not pack the plain diff {pairs!r}: {levels!r}")
    return levels


def check_levels(levels: Sequence[Level], pairs: list[Level], i: int) -> None:
    """The packed levels read as the list of tuples they stand for."""
    n = len(pairs)
    reads: list[tuple[object, object]] = [
        (len(levels), n), (levels == pairs, True), (levels != pairs, False),
        (levels[i:], pairs[i:]), (levels[::-2], pairs[::-2]), (repr(levels), f"Levels({pairs!r})"),
        (pickle.loads(pickle.dumps(levels)), pairs),
    ]
    if -n <= i < n:
        reads += [(levels[i], pairs[i]), (levels.index(pairs[i]), pairs.index(pairs[i])),
                  (levels.count(pairs[i]), pairs.count(pairs[i]))]
    else:
        try:
            levels[i]
        except IndexError:
            pass
        else:
            raise AssertionError(f"levels[{i}] of {n} levels did not raise IndexError")
    for got, want in reads:
        if got != want:
            raise AssertionError(f"packed levels read {got!r}, the list {want!r}")


def same(fast: Any, pure: BookSide) -> None:
    fast.check()
    pure.check()
    if fast.levels != pure.levels or len(fast) != len(pure):
        raise AssertionError(f"levels {fast.levels} != {pure.levels}")
    if fast._keys != pure._keys or fast._floor != pure._floor:
        raise AssertionError(f"region {fast._keys}/{fast._floor} != {pure._keys}/{pure._floor}")
    if fast.best() != pure.best() or fast.best_level() != pure.best_level():
        raise AssertionError(f"best {fast.best_level()} != {pure.best_level()}")


def book(data: bytes) -> None:
    """A book program: byte 0 picks the side (bit 0) and the region (the rest); then each
    operation is a byte (mod 8) and its arguments: 0 update, 1 load, 2 set, 3 clear, 4 reads
    (top, weighted_size, size_at), 5 update ending in a change beyond the compiled side's
    range (it must raise; what came before stays applied, as in the reference), 6 update
    with packed levels from a scanned depth diff, 7 update with [price, size] lists."""
    src = Bytes(data)
    head = src.byte()
    sign = -1 if head & 1 else 1
    region = REGIONS[(head >> 1) % len(REGIONS)]
    fast, pure = COMPILED.BookSide(sign, *region), BookSide(sign, *region)
    while src:
        op = src.byte() % 8
        if op in (0, 1):
            pairs = src.pairs()
            name = "update" if op == 0 else "load"
            getattr(fast, name)(pairs)
            getattr(pure, name)(pairs)
        elif op == 2:
            price, size = src.price(), src.size()
            fast.set(price, size)
            pure.set(price, size)
        elif op == 3:
            fast.clear()
            pure.clear()
        elif op == 4:
            n, price = src.byte() - 8, src.price()  # a negative n reads nothing
            for got, want in ((fast.top(n), pure.top(n)),
                              (fast.weighted_size(n), pure.weighted_size(n)),
                              (fast.size_at(price), pure.size_at(price))):
                if got != want:
                    raise AssertionError(f"read {got!r} != reference {want!r}")
        elif op == 5:
            pairs = src.pairs()
            try:
                fast.update([*pairs, BEYOND[src.byte() % len(BEYOND)]])
            except (OverflowError, ValueError):
                pure.update(pairs)
            else:
                raise AssertionError("a change beyond 2**62 or below 0 was taken")
        elif op == 6:
            pairs = [(abs(p), s) for p, s in src.pairs()]
            levels = packed(pairs)
            check_levels(levels, pairs, src.byte() - 16)
            fast.update(levels)
            pure.update(pairs)
        else:
            pairs = src.pairs()
            fast.update([[p, s] for p, s in pairs])
            pure.update(pairs)
        same(fast, pure)


def one_input(data: bytes) -> None:
    """Check one input; raise on any finding."""
    if data[:1] == b"B":
        book(data[1:])
    else:
        codec_oracle.frames(data, api_parsers=False)


def inputs(paths: list[str]) -> Iterator[Path]:
    for name in paths:
        path = Path(name)
        yield from sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def main(paths: list[str]) -> int:
    count = 0
    for path in inputs(paths):
        try:
            one_input(path.read_bytes())
        except Exception as exc:
            raise SystemExit(f"{path}: {type(exc).__name__}: {exc}") from exc
        count += 1
    print(f"speedups_target: {count} inputs clean ({COMPILED.__file__})")
    return 0 if count else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
