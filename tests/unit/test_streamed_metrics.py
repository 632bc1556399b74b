"""The run's metrics from samples streamed one at a time: the same figures as from a list,
in memory that does not grow with the number of samples (a day is 345,600 of them)."""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import Iterator
from fractions import Fraction

import pytest

from mmdaemon.analytics import SampleLike, compute_metrics
from mmdaemon.model import Fill, Instrument, Side
from mmdaemon.sharpe import SharpeGrid, sharpe_stats

INST = Instrument("TEST", "0.01", "1")
T0 = 1_723_161_600 * 10**9
STEP_NS = 250_000_000  # the default sample_ms
HALF = Fraction(1, 200)  # quote currency per half notional unit of INST


def samples(n: int, seed: int = 1) -> Iterator[SampleLike]:
    """``n`` samples every 250 ms, made as they are taken (none held here): a random-walk
    book, our quote around it, a position; every 7th pair shares its event time."""
    rng = random.Random(seed)
    mid = 10_000
    t = T0
    for j in range(n):
        mid += rng.choice((-1, 0, 1))
        if j % 7:
            t += STEP_NS
        bb, ba = (None, None) if j % 97 == 5 else (mid - 1, mid + 1)
        yield (1, t, bb, ba, float(mid), mid - 2, 3, mid + 2, 3, j % 5 - 2, "ACTIVE",
               j // 10, j // 3, j // 50)


def fills(n_samples: int) -> list[Fill]:
    """A fill every 40 samples, on a sample's time (no journaled mid: the sample's is used,
    the last of those at that time) or between two."""
    out = []
    for k, j in enumerate(range(3, n_samples, 40)):
        at = T0 + (j - j // 7) * STEP_NS + (0 if k % 2 else STEP_NS // 2)
        out.append(Fill(k + 1, Side.BUY if k % 3 else Side.SELL, 10_000 + k % 5, 2, k % 2,
                        True, at, k + 1))
    return out


def test_metrics_of_streamed_samples_equal_the_listed_ones() -> None:
    n = 5_000
    fs = fills(n)
    listed = compute_metrics(fs, list(samples(n)), INST)
    assert compute_metrics(fs, samples(n), INST) == listed
    assert listed["samples"] == n and listed["fills"] == len(fs) > 100
    assert listed["fills_with_sampled_mid"] == len(fs)  # none journaled: each sample's mid


def test_streamed_samples_are_not_held() -> None:
    """10,000 samples (about 40 minutes) through the metrics: the traced peak stays under
    1 MiB (a list of them alone is about 3 MiB, and a day holds 35 times as many)."""
    n = 10_000
    fs = fills(n)
    tracemalloc.start()
    try:
        compute_metrics(fs, samples(n), INST)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_streamed_samples_out_of_time_order_are_refused() -> None:
    rows = list(samples(10))
    rows[4], rows[6] = rows[6], rows[4]
    with pytest.raises(ValueError, match="samples streamed out of time order"):
        compute_metrics([], iter(rows), INST)


def test_sharpe_grid_keeps_one_pair_per_interval_and_the_same_ratio() -> None:
    rng = random.Random(3)
    vt, pnl2 = [], []
    t, p = T0, 0
    for j in range(20_000):  # 1.4 hours at 250 ms, some times repeated
        t += 0 if j % 11 == 0 else STEP_NS
        p += rng.randint(-50, 51)
        vt.append(t)
        pnl2.append(p)
    grid = SharpeGrid(60)
    for pair in zip(vt, pnl2, strict=True):
        grid.add(*pair)
    intervals = (vt[-1] - vt[0]) // (60 * 10**9) + 1
    assert len(grid.vt) <= intervals + 2
    assert (sharpe_stats(grid.vt, grid.pnl2, p, HALF, 60, 3.15e7)
            == sharpe_stats(vt, pnl2, p, HALF, 60, 3.15e7))


