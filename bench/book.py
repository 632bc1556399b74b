"""Benchmark: decode + book on the bundled recording vs orjson parse-only, in one run.

Run: ``.venv/bin/python bench/book.py`` (prints one JSON object, then a readable table).
Goal (issue #2): decode + book at no less than a quarter of the parse-only rate.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import best_of, load_frames
from mmdaemon.market import MarketState
from mmdaemon.model import BINANCE_SPOT_BTCUSDT, Instrument
from mmdaemon.venues.binance import BinanceCodec

RUNS = 5


def fresh_spot_instrument() -> Instrument:
    """BTCUSDT spot with the grids of :data:`BINANCE_SPOT_BTCUSDT` and empty memos."""
    ref = BINANCE_SPOT_BTCUSDT
    return Instrument(ref.symbol, str(ref.tick_size), str(ref.lot_size),
                      size_step_lots=ref.size_step_lots, min_size_lots=ref.min_size_lots,
                      min_notional=str(ref.min_notional))


def measure(runs: int = RUNS) -> dict[str, Any]:
    """Decode + book and parse-only rates, best of ``runs`` each, interleaved."""
    frames = load_frames()

    def parse_only() -> None:
        loads = orjson.loads
        for _, frame in frames:
            loads(frame)

    def decode_and_book() -> None:
        # a fresh instrument each run: its decimal memos start cold every time, as in a
        # dry run (the shared BINANCE_SPOT_BTCUSDT would keep them warm across runs)
        market = MarketState(BinanceCodec(fresh_spot_instrument(), "spot"))
        on_frame = market.on_frame
        for recv_ns, frame in frames:
            on_frame(recv_ns, frame)
        assert market.book.synced and market.gaps == 0

    parse_s = book_s = float("inf")
    for _ in range(runs):  # interleaved, so that a slow spell of the machine hits both alike
        parse_s = min(parse_s, best_of(1, parse_only))
        book_s = min(book_s, best_of(1, decode_and_book))
    n = len(frames)
    return {
        "frames": n,
        "parse_only_frames_per_s": round(n / parse_s),
        "decode_book_frames_per_s": round(n / book_s),
        "ratio_decode_book_to_parse": round(book_s / parse_s, 2),
        "goal_within_4x": book_s / parse_s <= 4.0,
        "runs": runs,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def table(r: dict[str, Any]) -> list[str]:
    return [
        f"{'decode + book (no quoting)':<34}{r['decode_book_frames_per_s']:>12,} frames/s",
        f"{'decode+book / parse time':<34}{r['ratio_decode_book_to_parse']:>12}x (goal <= 4x)",
    ]


def main() -> None:
    result = measure()
    print(orjson.dumps(result).decode())
    print(f"{'orjson parse-only':<34}{result['parse_only_frames_per_s']:>12,} frames/s")
    print("\n".join(table(result)))


if __name__ == "__main__":
    main()
