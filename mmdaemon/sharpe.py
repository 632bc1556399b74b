"""The risk statistics of a run's PnL path: the annualised Sharpe ratio on a fixed grid of
event time, and the maximum drawdown.

Pure and deterministic, like :mod:`mmdaemon.analytics`, which builds the PnL path (exact
integers in half notional units) and calls these; money leaves as a float in the quote
currency, times are integer ns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from mmdaemon.model import NS_PER_S

MIN_SHARPE_INTERVALS = 30
"""Fewest intervals for an annualised Sharpe ratio; below it the figure is None, with the
reason. Why 30: the ratio divides by a sample standard deviation, whose own relative error
is about 1 / sqrt(2 (n - 1)): 24 % from 10 intervals, 13 % from 30; and 30 is where a
t-distribution with n - 1 degrees of freedom is close enough to normal for the usual
reading of a mean / std ratio. It is a floor, not a guarantee: the standard error of a
Sharpe estimate from n intervals is about sqrt((1 + SR^2 / 2) / n) per interval, x
sqrt(intervals per year) annualised, which is large for any run of minutes; hence the
interval count is reported next to it, always."""


@dataclass(frozen=True)
class SharpeStats:
    """The Sharpe ratio of a run and what it rests on (see :func:`sharpe_stats`).

    ``sharpe`` annualised, or None with ``unavailable_reason``; ``intervals`` how many
    intervals it rests on (the last one included, whatever its length);
    ``last_interval_s`` the last interval's length, s; ``mean`` the PnL per interval of
    ``interval_s`` and ``std`` its standard deviation, quote currency (None without an
    interval, resp. with fewer than two).
    """

    sharpe: float | None
    unavailable_reason: str | None
    intervals: int
    last_interval_s: float
    mean: float | None
    std: float | None


def sharpe_stats(vt: list[int], pnl2: list[int], total2: int, half: Fraction,
                 interval_s: float, seconds_per_year: float) -> SharpeStats:
    """The Sharpe ratio of the PnL path over the whole run, on a fixed event-time grid.

    ``vt`` are the times (ns) of the samples with a two-sided book, ``pnl2`` the PnL at
    each and ``total2`` the run's total PnL, in half notional units (``half`` quote
    currency each). The path starts at 0 (before any fill) and ends at the total.

    **Grid.** Boundaries ``t_0 + n x interval`` from the first such sample ``t_0``; the
    PnL at a boundary is that of the latest sample at or before it, at the last sample the
    run's total. The run rarely ends on a boundary: its last, partial interval is kept, as
    its own interval when it is at least half an interval long, else merged into the one
    before (a stub of a few samples would weigh as much as a whole interval otherwise).
    Either way every interval k has its length ``w_k`` in intervals (1, except the last).

    **Estimate.** The PnL is taken as a random walk with drift: the change over interval
    k is ``d_k ~ N(mu w_k, sigma^2 w_k)``. The maximum-likelihood (weighted least squares)
    estimates are::

        mean  mu    = sum d_k / sum w_k = total PnL x interval / run length
        var   s^2   = sum (d_k - mu w_k)^2 / w_k / (K - 1)       K intervals
        Sharpe      = mu / s x sqrt(seconds_per_year / interval)

    so the mean per interval has the sign of the total PnL, always (dropping the last
    partial interval, as the grid did before, left out whatever happened in it: a run
    that lost in its last 50 s could show a positive Sharpe), and s^2 is unbiased. PnL
    changes, not returns on capital (a market maker has no natural capital base).

    None, with the reason, below :data:`MIN_SHARPE_INTERVALS` intervals or when the PnL
    changes by exactly its mean rate in every interval (s = 0). The grid is never laid
    out: an interval with no sample changes the PnL by exactly 0, so only the intervals
    that hold samples are visited; time and memory are O(samples) whatever the time span
    (a span of centuries from one corrupt time stamp is as cheap as a minute). The sums
    are exact (integers and fractions), so equal changes give a deviation of exactly 0.
    """
    if not vt:
        return SharpeStats(None, "no sample with a two-sided book", 0, 0.0, None, None)
    step = round(interval_s * NS_PER_S)
    t0, span = vt[0], vt[-1] - vt[0]
    full, rest = divmod(span, step)
    if span == 0:
        count = 0
    elif rest == 0:
        count = full
    elif 2 * rest >= step or full == 0:
        count = full + 1  # the partial interval on its own
    else:
        count = full  # the partial interval merged into the last whole one
    if count == 0:
        return SharpeStats(None, "the run spans no time (one sample with a book)", 0, 0.0,
                           None, None)
    last_len = span - (count - 1) * step  # ns
    # interval k (1..count) holds the samples in (t0 + (k-1) step, t0 + k step], the first
    # also t0 itself and the last everything after its start; the PnL at its end is its
    # last sample's, at the very end the total
    sum_d2_over_w = Fraction(0)
    before = 0
    at_k, at_pnl = 1, 0
    for t, p in zip(vt, pnl2, strict=True):
        k = min(max(-((t0 - t) // step), 1), count)
        if k != at_k:
            sum_d2_over_w += (at_pnl - before) ** 2  # a whole interval: w = 1
            before, at_k = at_pnl, k
        at_pnl = p
    assert at_k == count  # the last sample always lies in the last interval
    sum_d2_over_w += Fraction((total2 - before) ** 2 * step, last_len)
    weight = Fraction(span, step)
    mean2 = total2 / weight  # half units per interval
    last_s = last_len / NS_PER_S
    if count < 2:
        return SharpeStats(None, _too_few(count, interval_s), count, last_s,
                           float(mean2 * half), None)
    var2 = (sum_d2_over_w - total2 * mean2) / (count - 1)
    std = math.sqrt(var2 * half * half)
    mean = float(mean2 * half)
    if count < MIN_SHARPE_INTERVALS:
        return SharpeStats(None, _too_few(count, interval_s), count, last_s, mean, std)
    if var2 == 0:
        return SharpeStats(None, "the PnL changed at the same rate in every interval "
                           "(standard deviation 0)", count, last_s, mean, std)
    sharpe = mean / std * math.sqrt(seconds_per_year / interval_s)
    return SharpeStats(sharpe, None, count, last_s, mean, std)


def _too_few(count: int, interval_s: float) -> str:
    return (f"{count} interval{'s' if count != 1 else ''} of {interval_s:g} s; an annualised "
            f"figure needs at least {MIN_SHARPE_INTERVALS}")


def sharpe_text(metrics: dict[str, Any]) -> str:
    """The Sharpe ratio for people, always with its interval count: ``"1.23 (45
    intervals)"``, or ``"n/a (10 intervals)"`` when it is not available."""
    count = metrics["sharpe_intervals"]
    unit = "interval" if count == 1 else "intervals"
    value = metrics["sharpe"]
    return f"{'n/a' if value is None else format(value, ',.4g')} ({count:,} {unit})"


class SharpeGrid:
    """The PnL path kept as :func:`sharpe_stats` reads it, as it comes (time order): the
    first sample, then only the last sample of each grid interval from it (a sample
    replaces the one before it in the same interval). :func:`sharpe_stats` on ``vt`` and
    ``pnl2`` gives what it gives on the whole path, from one pair per interval of
    ``interval_s`` that holds a sample (a day: 1,441 at most for 60 s, against 345,600
    samples of 250 ms)."""

    def __init__(self, interval_s: float) -> None:
        self.step = round(interval_s * NS_PER_S)  # as sharpe_stats lays out the grid
        self.vt: list[int] = []
        self.pnl2: list[int] = []
        self._k = 0  # the grid interval of the last pair

    def add(self, t: int, pnl2: int) -> None:
        """The PnL ``pnl2`` (half notional units) at a sample at ``t`` (ns)."""
        k = -((self.vt[0] - t) // self.step) if self.vt else 0
        if len(self.vt) >= 2 and k == self._k:
            self.vt[-1], self.pnl2[-1] = t, pnl2
        else:
            self.vt.append(t)
            self.pnl2.append(pnl2)
        self._k = k


class Drawdown:
    """:func:`max_drawdown` taken one sample at a time: :meth:`add` each, then
    :meth:`result`."""

    def __init__(self) -> None:
        self.peak, self.best = 0.0, 0.0
        self.peak_t: int | None = None
        self.best_peak: int | None = None
        self.best_trough: int | None = None

    def add(self, t: int, p: float) -> None:
        """The PnL ``p`` (quote currency) at ``t`` (ns)."""
        if p > self.peak:
            self.peak, self.peak_t = p, t
        if self.peak - p > self.best:
            self.best, self.best_peak, self.best_trough = self.peak - p, self.peak_t, t

    def result(self) -> tuple[float, int | None, int | None]:
        """(drawdown, peak time, trough time), as :func:`max_drawdown`."""
        return self.best, self.best_peak, self.best_trough


def max_drawdown(vt: list[int], pnl: list[float]) -> tuple[float, int | None, int | None]:
    """Largest fall of the PnL series from a running peak, quote currency (>= 0).

    The peak starts at 0, the PnL before the first fill, so a run that only ever loses
    has its whole loss as drawdown. Returns (drawdown, peak time, trough time).
    """
    drawdown = Drawdown()
    for t, p in zip(vt, pnl, strict=True):
        drawdown.add(t, p)
    return drawdown.result()
