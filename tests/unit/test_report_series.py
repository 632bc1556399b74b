"""The report's series: quote distances to the touch and the decimation that keeps spikes."""

from __future__ import annotations

import pytest

from mmdaemon.analytics import SampleLevels, SampleRow
from mmdaemon.report_series import envelope, quote_distances


def _sample(ts: int, best_bid: int | None, best_ask: int | None, bid: int, bid_size: int,
            ask: int, ask_size: int) -> SampleRow:
    return SampleRow(1, ts, best_bid, best_ask, 0.0, bid, bid_size, ask, ask_size, 0,
                     "ACTIVE", 0, 0, 0)


def test_distances_are_ticks_behind_the_touch_of_each_side_inside_negative() -> None:
    """A market one tick wide (100/101): at the touch both sides read 0 rather than merge
    into one price band; behind it > 0, inside the spread < 0, no quote or no book None."""
    samples = [_sample(1, 100, 101, 100, 5, 101, 5),   # both at the touch
               _sample(2, 100, 101, 97, 5, 103, 5),    # 3 and 2 ticks behind
               _sample(3, 100, 104, 101, 5, 103, 5),   # both inside a 4-tick spread
               _sample(4, 100, 101, 99, 0, 102, 5),    # no bid quoted
               _sample(5, None, 101, 99, 5, 102, 5)]   # no bid side in the book
    d = quote_distances(samples)
    assert d == {("bid", 0): [0, 3, -1, None, None], ("ask", 0): [0, 2, -1, 1, 1]}


def test_a_ladders_outer_levels_come_from_its_rows() -> None:
    samples = [_sample(1, 100, 101, 99, 5, 102, 5), _sample(2, 100, 101, 99, 5, 102, 5)]
    ladder = [SampleLevels(1, 2, ((99, 5), (97, 5)), ((102, 5), (105, 5), (108, 5)))]
    d = quote_distances(samples, ladder)
    assert d[("bid", 1)] == [None, 3] and d[("ask", 2)] == [None, 7]
    assert d[("bid", 0)] == [1, 1] and ("bid", 2) not in d  # never quoted: no trace


def test_envelope_keeps_every_spike_and_gap_of_a_long_series() -> None:
    n = 100_000
    ys: list[float | None] = [0.0] * n
    ys[12_345], ys[77_777], ys[50_000] = 9.0, -4.0, None
    xs, kept = envelope(list(range(n)), ys, 3000)
    assert len(xs) <= 3000 and xs == sorted(xs)
    assert (12_345, 9.0) in zip(xs, kept, strict=True)
    assert (77_777, -4.0) in zip(xs, kept, strict=True)
    assert (50_000, None) in zip(xs, kept, strict=True)
    assert envelope([1, 2], [3.0, None], 3) == ([1, 2], [3.0, None])  # short: whole
    with pytest.raises(ValueError, match="max_points"):
        envelope([1], [1.0], 2)


def test_hour_bars_are_an_hour_wide_whatever_hours_the_run_covers() -> None:
    from mmdaemon import plots

    rows = [{"hour": 0, "fills": 77, "pnl": 0.02}, {"hour": 23, "fills": 106, "pnl": -0.25}]
    fig = plots.by_hour({"by_hour": rows, "tz": "UTC"}, "USDT")
    assert len(fig.data) == 2
    assert all(bar.width is not None and bar.width <= 1 for bar in fig.data)
