"""Benchmark: what the exact markout tracker adds per market event, on the bundled recording.

Run: ``.venv/bin/python bench/markouts.py`` (prints one JSON object, then a readable table).

Decode + book of every frame, with and without :class:`mmdaemon.markouts.MarkoutTracker`
told each frame before it applies (as the daemon does), best of several interleaved runs.
The tracked run registers a fill every ``FILL_EVERY_S`` seconds of event time at the four
default horizons, far more often than the dry run fills (47 fills in 11 minutes), so the
book is read and horizons resolved on the way, not only compared against.
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
from mmdaemon.markouts import DEFAULT_HORIZONS_S, MarkoutTracker, book_mid_x2
from mmdaemon.model import BINANCE_SPOT_BTCUSDT, Fill, Side
from mmdaemon.venues.binance import BinanceCodec

RUNS = 5
FILL_EVERY_S = 1


def measure(runs: int = RUNS) -> dict[str, Any]:
    """Seconds per pass without and with the tracker (best of ``runs``, interleaved)."""
    frames = load_frames()
    step = FILL_EVERY_S * 1_000_000_000
    resolved = 0

    def run(tracked: bool) -> None:
        # the same loop both ways (fills scheduled alike): only the tracker's calls differ
        nonlocal resolved
        market = MarketState(BinanceCodec(BINANCE_SPOT_BTCUSDT, "spot"))
        book = market.book
        tracker = MarkoutTracker(DEFAULT_HORIZONS_S, lambda: book_mid_x2(book))
        on_frame, before_event = market.on_frame, tracker.before_event
        next_fill, order_id = frames[0][0] + step, 0
        for recv_ns, frame in frames:
            if tracked:
                before_event(recv_ns)
            on_frame(recv_ns, frame)
            if recv_ns >= next_fill and book.synced:  # a fill at this event's mid before
                order_id += 1
                mid = book_mid_x2(book)
                if tracked:
                    tracker.on_fill(Fill(order_id, Side.BUY, mid // 2, 1000, 0, True,
                                         recv_ns, order_id, mid))
                next_fill = recv_ns + step
        if tracked:
            resolved = len(tracker.take())

    plain_s = tracked_s = float("inf")
    for _ in range(runs):  # interleaved, so that a slow spell of the machine hits both alike
        plain_s = min(plain_s, best_of(1, lambda: run(False)))
        tracked_s = min(tracked_s, best_of(1, lambda: run(True)))
    n = len(frames)
    return {
        "frames": n,
        "markouts_resolved": resolved,
        "book_only_frames_per_s": round(n / plain_s),
        "with_tracker_frames_per_s": round(n / tracked_s),
        "tracker_ns_per_frame": round((tracked_s - plain_s) / n * 1e9),
        "share_of_decode_book": round((tracked_s - plain_s) / plain_s, 4),
        "runs": runs,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def main() -> None:
    r = measure()
    print(orjson.dumps(r).decode())
    print(f"{'decode + book':<34}{r['book_only_frames_per_s']:>12,} frames/s")
    print(f"{'decode + book + markout tracker':<34}{r['with_tracker_frames_per_s']:>12,} frames/s")
    print(f"{'tracker cost':<34}{r['tracker_ns_per_frame']:>12,} ns/frame "
          f"({100 * r['share_of_decode_book']:.1f} % of decode + book; "
          f"{r['markouts_resolved']:,} markouts resolved)")

if __name__ == "__main__":
    main()
