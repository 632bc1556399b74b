"""The report's time series, made small enough to draw: quote distances and decimation.

Pure (no I/O, no clock): :mod:`mmdaemon.plots` draws what this computes.

- :func:`quote_distances`: where each of our quote levels sat against the market's touch,
  in ticks, per sample: a bid level's ``best_bid - price``, an ask level's ``price -
  best_ask``; 0 at the touch, > 0 behind it, < 0 inside the spread. Measured against our
  own side of the book, so a market one tick wide no longer hides our bid and ask in one
  band, as it does on a price scale.
- :func:`envelope`: a series of any length as at most ``max_points`` points that keep its
  extremes (per bucket of consecutive points, the lowest and the highest in time order,
  and a gap if the bucket had one): a day of 250 ms samples (345,600) stays responsive in
  a browser, and no spike is lost the way keeping every k-th point loses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from mmdaemon.analytics import SampleLevels, SampleRow

X = TypeVar("X")

Distances = dict[tuple[str, int], list[int | None]]
"""``(side, level) -> ticks per sample`` (None: no quote at that level, or no book on
that side); side ``"bid"`` or ``"ask"``, level 0 the innermost."""


def quote_distances(samples: Sequence[SampleRow],
                    levels: Sequence[SampleLevels] = ()) -> Distances:
    """Distance to the touch, ticks, of every level we quoted at each of ``samples`` (see
    the module docstring). Level 0 is the sample's own gated quote; a ladder's outer levels
    come from ``levels`` (the journal's ladder rows, matched by run and time). Every list
    has one value per sample; a level never quoted in the run has no key."""
    by_key = {(r.run_id, r.ts_ns): r for r in levels}
    depth = max((max(len(r.bids), len(r.asks)) for r in levels), default=1)
    out: Distances = {}
    for side in ("bid", "ask"):
        for i in range(max(depth, 1)):
            out[(side, i)] = [None] * len(samples)
    for j, s in enumerate(samples):
        row = by_key.get((s.run_id, s.ts_ns))
        bids = row.bids if row is not None else ((s.bid, s.bid_size),) if s.bid_size > 0 else ()
        asks = row.asks if row is not None else ((s.ask, s.ask_size),) if s.ask_size > 0 else ()
        if s.best_bid is not None:
            for i, (price, size) in enumerate(bids):
                if size > 0:
                    out[("bid", i)][j] = s.best_bid - price
        if s.best_ask is not None:
            for i, (price, size) in enumerate(asks):
                if size > 0:
                    out[("ask", i)][j] = price - s.best_ask
    return {k: v for k, v in out.items() if any(d is not None for d in v)}


def envelope(xs: Sequence[X], ys: Sequence[float | None],
             max_points: int) -> tuple[list[X], list[float | None]]:
    """``(xs, ys)`` in at most about ``max_points`` points (``max_points`` >= 3), keeping
    each bucket's lowest and highest ``ys`` (in time order) and a None where the bucket had
    one (a gap stays a gap). Shorter series are returned whole."""
    if len(xs) != len(ys):
        raise ValueError(f"envelope: {len(xs)} xs and {len(ys)} ys")
    if max_points < 3:
        raise ValueError(f"envelope: max_points must be >= 3, got {max_points}")
    n = len(ys)
    if n <= max_points:
        return list(xs), list(ys)
    size = -(-n // (max_points // 3))  # three points a bucket at most
    keep: list[int] = []
    for start in range(0, n, size):
        lo = hi = gap = -1
        low = high = 0.0
        for i in range(start, min(start + size, n)):
            y = ys[i]
            if y is None:
                if gap < 0:
                    gap = i
                continue
            if lo < 0 or y < low:
                lo, low = i, y
            if hi < 0 or y > high:
                hi, high = i, y
        keep.extend(sorted({i for i in (lo, hi, gap) if i >= 0}))
    return [xs[i] for i in keep], [ys[i] for i in keep]
