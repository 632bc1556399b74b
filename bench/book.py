"""Benchmark: decode + book on the bundled recording vs orjson parse-only, in one run.

Run: ``.venv/bin/python bench/book.py`` (prints one JSON object, then a readable table).
Goal (issue #2): decode + book at no less than a quarter of the parse-only rate.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import best_of, load_frames
from mmdaemon.market import MarketState
from mmdaemon.model import BINANCE_SPOT_BTCUSDT
from mmdaemon.venues.binance import BinanceCodec

RUNS = 5


def main() -> None:
    frames = load_frames()

    def parse_only() -> None:
        loads = orjson.loads
        for _, frame in frames:
            loads(frame)

    def decode_and_book() -> None:
        # a fresh codec each run: its per-string memo starts cold every time
        market = MarketState(BinanceCodec(BINANCE_SPOT_BTCUSDT, "spot"))
        on_frame = market.on_frame
        for recv_ns, frame in frames:
            on_frame(recv_ns, frame)
        assert market.book.synced and market.gaps == 0

    parse_s = best_of(RUNS, parse_only)
    book_s = best_of(RUNS, decode_and_book)
    n = len(frames)
    result = {
        "frames": n,
        "parse_only_frames_per_s": round(n / parse_s),
        "decode_book_frames_per_s": round(n / book_s),
        "ratio_parse_to_decode_book": round(book_s / parse_s, 2),
        "goal_met": book_s / parse_s <= 4.0,
        "runs": RUNS,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(orjson.dumps(result).decode())
    print(f"{'frames':<28}{n:>12,}")
    print(f"{'orjson parse-only':<28}{result['parse_only_frames_per_s']:>12,} frames/s")
    print(f"{'decode + book':<28}{result['decode_book_frames_per_s']:>12,} frames/s")
    print(
        f"{'decode+book / parse time':<28}{result['ratio_parse_to_decode_book']:>12}x (goal <= 4x)"
    )


if __name__ == "__main__":
    main()
