"""Benchmark the quoting engine on the bundled real recording (a script, not a test).

    .venv/bin/python bench/quoting.py [--runs 3] [--events book|book+trade]

Loads both bundled Binance spot BTCUSDT files into memory, then, best of ``--runs`` each:

(a) decode + book: ``MarketState.on_frame`` over every frame;
(b) decode + book + quoter: the same, plus ``Quoter.on_book`` on every book-changing event
    (``--events book``, the default) or on every book update and public trade
    (``--events book+trade``, one quote per event as the daemon does);
(c) the quoter timed call by call inside (b), for the latency distribution (p50/p99), with
    the timer's own cost measured and subtracted.

The per-quote cost is (b - a) / quotes; it is the difference of two totals, so with few
quotes it carries the runs' noise; (c) measures the same thing directly. Prints one JSON
object, then a readable line.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

from mmdaemon.feed.recording import read_recording
from mmdaemon.market import MarketState
from mmdaemon.model import BINANCE_SPOT_BTCUSDT, BookUpdate, Malformed, Trade
from mmdaemon.quoting import Quoter
from mmdaemon.venues.binance import BinanceCodec

DATA = Path(__file__).resolve().parents[1] / "data" / "binance-spot-btcusdt"
FILES = [DATA / "btcusdt_20240808.gz", DATA / "btcusdt_20240809.gz"]

Frames = list[tuple[int, bytes]]


def load() -> Frames:
    """Every (recv_ns, frame) of both files, in memory, so no run pays for gzip."""
    return [item for item in read_recording(FILES) if not isinstance(item, Malformed)]


def new_state() -> MarketState:
    return MarketState(BinanceCodec(BINANCE_SPOT_BTCUSDT, "spot"))


def run_decode(frames: Frames) -> float:
    """(a): seconds to decode every frame and apply it to the book."""
    state = new_state()
    on_frame = state.on_frame
    start = time.process_time()
    for recv_ns, frame in frames:
        on_frame(recv_ns, frame)
    return time.process_time() - start


def quote_kinds(events: str) -> tuple[type, ...]:
    return (BookUpdate,) if events == "book" else (BookUpdate, Trade)


def run_quoter(frames: Frames, events: str) -> tuple[float, int]:
    """(b): seconds to decode, apply and quote; and the number of quotes."""
    state = new_state()
    book = state.book
    on_frame = state.on_frame
    on_book = Quoter(BINANCE_SPOT_BTCUSDT).on_book
    kinds = quote_kinds(events)
    quotes = 0
    start = time.process_time()
    for recv_ns, frame in frames:
        for event in on_frame(recv_ns, frame):
            if type(event) in kinds:
                on_book(book, recv_ns)
                quotes += 1
    return time.process_time() - start, quotes


def timer_overhead_ns() -> float:
    """Median cost of one back-to-back perf_counter_ns() pair, subtracted from (c)."""
    clock = time.perf_counter_ns
    samples = []
    for _ in range(20_000):
        t0 = clock()
        samples.append(clock() - t0)
    samples.sort()
    return float(samples[len(samples) // 2])


def run_timed(frames: Frames, events: str) -> list[int]:
    """(c): the quoter's cost per call, ns (timer cost included; see timer_overhead_ns)."""
    state = new_state()
    book = state.book
    on_frame = state.on_frame
    on_book = Quoter(BINANCE_SPOT_BTCUSDT).on_book
    kinds = quote_kinds(events)
    clock = time.perf_counter_ns
    costs: list[int] = []
    for recv_ns, frame in frames:
        for event in on_frame(recv_ns, frame):
            if type(event) in kinds:
                t0 = clock()
                on_book(book, recv_ns)
                costs.append(clock() - t0)
    return costs


def percentile(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="best of this many runs (3)")
    parser.add_argument("--events", choices=("book", "book+trade"), default="book")
    args = parser.parse_args(argv)
    runs: int = max(1, args.runs)
    events: str = args.events

    frames = load()
    gc.collect()
    # One untimed pass of each first: the instrument's decimal-string memo and the
    # allocator warm up once, for both. Then (a) and (b) interleaved, so that a slow spell
    # of the machine hits both alike.
    run_decode(frames)
    run_quoter(frames, events)
    decode_s = full_s = float("inf")
    quotes = 0
    for _ in range(runs):
        decode_s = min(decode_s, run_decode(frames))
        seconds, quotes = run_quoter(frames, events)
        full_s = min(full_s, seconds)
    overhead = timer_overhead_ns()
    best_costs: list[float] = []
    for _ in range(runs):
        costs = sorted(max(0.0, c - overhead) for c in run_timed(frames, events))
        if not best_costs or costs[len(costs) // 2] < best_costs[len(best_costs) // 2]:
            best_costs = costs
    result = {
        "frames": len(frames),
        "quotes": quotes,
        "events_quoted": events,
        "runs": runs,
        "decode_book_s": round(decode_s, 4),
        "decode_book_quote_s": round(full_s, 4),
        "frames_per_s_decode_book": round(len(frames) / decode_s),
        "frames_per_s_with_quoter": round(len(frames) / full_s),
        "quotes_per_s": round(quotes / full_s),
        "quoter_only_quotes_per_s": round(quotes / max(full_s - decode_s, 1e-9)),
        "decode_us_per_frame": round(decode_s / len(frames) * 1e6, 3),
        "quoter_us_per_quote_diff": round((full_s - decode_s) / quotes * 1e6, 3),
        "quoter_us_per_quote_p50": round(percentile(best_costs, 0.50) / 1e3, 3),
        "quoter_us_per_quote_p99": round(percentile(best_costs, 0.99) / 1e3, 3),
        "quoter_us_per_quote_mean": round(sum(best_costs) / len(best_costs) / 1e3, 3),
        "timer_overhead_ns": overhead,
        "python": sys.version.split()[0],
    }
    print(json.dumps(result))
    print(
        f"{len(frames):,} frames, {quotes:,} quotes ({events}): decode+book "
        f"{decode_s:.3f} s ({result['frames_per_s_decode_book']:,} frames/s, "
        f"{result['decode_us_per_frame']} us/frame); +quoter {full_s:.3f} s "
        f"({result['quotes_per_s']:,} quotes/s); quoter cost per quote "
        f"{result['quoter_us_per_quote_diff']} us by difference, "
        f"p50 {result['quoter_us_per_quote_p50']} us / p99 {result['quoter_us_per_quote_p99']} us "
        f"timed; best of {runs}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
