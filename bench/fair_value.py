"""Benchmark the fair-value modes per event (a script, not a test).

    .venv/bin/python bench/fair_value.py [--runs 5]

Rebuilds the book from both bundled Binance spot BTCUSDT files once, keeping the best
levels (price ticks, size lots) after every book update: the inputs the quoter hands
``FairValue.compute`` on every quote. Then, best of ``--runs``, the time of one
``compute`` call over all of them for each mode, the loop's own cost (the same loop
calling a function that returns its argument) subtracted. ``stoikov`` reads the shipped
table ``config/stoikov-btcusdt-spot.json``. Prints one JSON object, then a line per mode.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.quoting import FILES, load, new_state
from mmdaemon.book import OrderBook
from mmdaemon.config_file import load_config
from mmdaemon.model import BookUpdate
from mmdaemon.quoting.fair_value import FairValue, FairValueParams

REPO = Path(__file__).resolve().parents[1]
MODES = ("mid", "weighted_mid", "l1_imbalance", "stoikov")

Top = tuple[int, int, int, int]  # bid, bid size, ask, ask size


def tops() -> tuple[OrderBook, list[Top]]:
    """The book after the recording and the best levels after every book update."""
    state = new_state()
    book = state.book
    seen: list[Top] = []
    for recv_ns, frame in load():
        for event in state.on_frame(recv_ns, frame):
            if type(event) is BookUpdate and book.synced:
                bid, ask = book.bids.best_level(), book.asks.best_level()
                if bid is not None and ask is not None:
                    seen.append((bid[0], bid[1], ask[0], ask[1]))
    return book, seen


def params(mode: str) -> FairValueParams:
    if mode == "stoikov":
        return load_config(REPO / "config" / "dryrun-stoikov.toml").strategy.fair_value
    return FairValueParams(mode=mode)


def timed(call: Callable[[OrderBook, int, int, int, int], object], book: OrderBook,
          levels: list[Top]) -> int:
    """ns for one pass of ``call`` over ``levels``."""
    start = time.perf_counter_ns()
    for bid, bid_size, ask, ask_size in levels:
        call(book, bid, bid_size, ask, ask_size)
    return time.perf_counter_ns() - start


def _empty(book: OrderBook, bid: int, bid_size: int, ask: int, ask_size: int) -> object:
    return book


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    book, levels = tops()
    levels = levels * 20  # ~130,000 calls a pass: long enough to time, short to run
    loop_ns = min(timed(_empty, book, levels) for _ in range(runs))
    result = {"files": [f.name for f in FILES], "calls_per_pass": len(levels),
              "loop_ns_per_call": loop_ns / len(levels), "ns_per_call": {}}
    for mode in MODES:
        compute = FairValue(params(mode)).compute
        best = min(timed(compute, book, levels) for _ in range(runs))
        result["ns_per_call"][mode] = (best - loop_ns) / len(levels)  # type: ignore[index]
    print(json.dumps(result))
    for mode, ns in result["ns_per_call"].items():  # type: ignore[attr-defined]
        print(f"{mode:>13}: {ns:6.1f} ns per event (loop {result['loop_ns_per_call']:.1f} ns "
              f"subtracted)")


if __name__ == "__main__":
    main()
