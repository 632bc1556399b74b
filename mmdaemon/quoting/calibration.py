"""Calibration of the AS/GLFT inputs from the market itself: A, k and sigma.

One estimator, :class:`TradeCalibrator`, serves both uses: ``mmdaemon calibrate`` runs it
over a whole recording (no window) and fits once at the end; online calibration
(:class:`OnlineCalibration`, ``[strategy.skew.online]``) runs it on a rolling window inside
the quoter and re-fits every ``interval_s`` of event time. Everything is on event time (the
events' ns timestamps, the replay's ``feed.clock``): nothing reads a clock, so a replay is
deterministic and the live daemon computes the same thing.

Units: prices in ticks, depths in ticks (held as integer half ticks: a mid is on the half
tick), time in ns in and seconds out, A per second, k per tick, sigma in ticks per
sqrt(second) (the unit GLFT's ``sigma x fair`` is in, :mod:`.skew`) and in bps per sqrt(s).

**Market orders (arrivals).** Binance prints one trade per maker order filled, so one
aggressive order that sweeps three levels is three trades with the same trade time ``T``.
The AS/GLFT intensity is that of market orders (each one fills a quote at depth delta when
it reaches delta), so consecutive trades with the same venue trade time and aggressor side
are one *arrival*, whose depth is the deepest of them. (Counting every trade would count
one sweep as several fills of the same quote; hftbacktest's GLFT example goes further and
keeps only the deepest arrival per 100 ms step, which caps the intensity at 10/s and
undercounts exactly where it matters, at the touch.)

**Depth.** delta = trade price - mid for a buy (the aggressor bought), mid - trade price for
a sell, in ticks, with the mid of the book just before the trade (the latest book event: the
mid our own quoter priced from). An arrival with delta < 0 went through that (stale) mid and
would fill no quote at a positive depth: it is counted (``through_mid``), never fitted.

**Intensity.** lambda(delta) = (arrivals with depth >= delta) / T, per second, where T is
the time observed with a usable book (``sigma_samples x sigma_interval_s``, below). This is
the rate at which a quote resting at depth delta would be reached.

**The touch regime.** Most arrivals trade exactly at the best price, at depth = half the
spread (0.5 tick in a one-tick market): lambda has a step there that no exponential
follows. The touch is the modal spread at the arrivals' times, halved; lambda at the touch
is reported on its own (observed, and what the fit predicts there), and the exponential is
fitted beyond it.

**The A, k fit.** Ordinary least squares of ln lambda(delta) on delta, lambda = A exp(-k
delta), over half-tick depths from just beyond the touch to the deepest one still reached
by ``fit_min_arrivals`` arrivals (a thinner tail is noise), at most :data:`MAX_POINTS`
evenly spaced points (a stride of half ticks; online, :data:`ONLINE_MAX_POINTS`). Quality:
R^2 of ln lambda, the RMSE of ln lambda (a ratio: 0.2 is about 20 %), the points used and
their depth range. A fit fails
(``why`` says so) with fewer than 3 points or k <= 0.

**Volatility.** The mid is sampled on a fixed grid of event time, every
``sigma_interval_s`` seconds (the last mid at or before each grid time) while the book is
usable; with returns r in ticks, sigma = sqrt(sum r^2 / (n x sigma_interval_s)) ticks per
sqrt(s) (realised variance, no mean removed). A book that becomes unusable (gap, crossed)
restarts the grid, so its outage counts neither as time nor as a return.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate, repeat
from operator import mul, sub

from mmdaemon.quoting import _validate as v

MAX_POINTS = 256
"""The most depths one fit regresses on (a stride of half ticks keeps it to this)."""
ONLINE_MAX_POINTS = 64
"""The same for online re-fits, which run on the quote path: a quarter of the points moves
A and k of the bundled recording by under 1% (2.070 -> 2.084/s, 2.0582e-3 -> 2.0602e-3 per
tick) and halves the fit's cost (139 -> 74 us)."""
_NS_PER_S = 1_000_000_000
_LN_FLOAT_MAX = math.log(1.7e308)
_BLOCK_SHIFT = 6
"""Arrivals are also counted by blocks of 2**6 half ticks, so a fit finds its deepest depth
without walking every bin."""


@dataclass(frozen=True, slots=True)
class IntensityFit:
    """One calibration: the A, k fit, lambda at the touch and sigma, with sample sizes.

    ``ok`` False: the fit failed (``why``), ``a_per_s`` and ``kappa_per_tick`` are NaN;
    sigma may still be good (``sigma_samples`` > 1). ``curve`` holds the (depth ticks,
    lambda per s) points regressed on; ``touch_curve`` those at or inside the touch.
    """

    ok: bool
    why: str
    a_per_s: float
    kappa_per_tick: float
    r2: float
    rmse_log: float
    points: int
    depth_lo_ticks: float
    depth_hi_ticks: float
    arrivals: int
    trades: int
    through_mid: int
    seconds: float
    touch_ticks: float
    touch_per_s: float
    touch_fitted_per_s: float
    sigma_ticks: float
    sigma_bps: float
    sigma_samples: int
    sigma_interval_s: float
    mid_ticks: float
    curve: tuple[tuple[float, float], ...] = ()
    touch_curve: tuple[tuple[float, float], ...] = ()


def fit_exponential_even(x0: float, step: float, ln_y: list[float]
                         ) -> tuple[float, float, float, float]:
    """(A, k, R^2, RMSE of ln y) of ln y = ln A - k x by least squares, the i-th ``ln_y`` at
    x = ``x0`` + i ``step`` (evenly spaced, as the fitted depths are; at least 2 points).
    R^2 is NaN when every ln y is equal (nothing to explain; k is then -0.0).

    Online calibration re-fits on the quote path: the x sums are closed forms and the y
    sums run in C (map, sum), a few microseconds where a Python loop over 256 points took
    ~0.1 ms; y is centred first, so nothing cancels."""
    n = len(ln_y)
    mean_i = (n - 1) / 2
    mx = x0 + step * mean_i
    if min(ln_y) == max(ln_y):
        return math.exp(ln_y[0]), -0.0, math.nan, 0.0
    my = sum(ln_y) / n
    dy = list(map(sub, ln_y, repeat(my, n)))
    sii = n * (n * n - 1) / 12  # sum of (i - mean_i)^2
    siy = sum(map(mul, range(n), dy)) - mean_i * sum(dy)  # sum of (i - mean_i)(y - my)
    syy = sum(map(mul, dy, dy))
    slope_i = siy / sii  # per point; per unit of x: / step
    slope = slope_i / step
    ss_res = max(syy - slope_i * siy, 0.0)  # syy - siy^2 / sii >= 0 but for rounding
    ln_a = my - slope * mx  # a steep decay seen only far out extrapolates past a float
    a = math.exp(ln_a) if ln_a < _LN_FLOAT_MAX else math.inf
    return a, -slope, 1.0 - ss_res / syy, math.sqrt(ss_res / n)


class TradeCalibrator:
    """The estimator of the module docstring, fed one event at a time.

    ``window_s`` None keeps everything (the offline use); otherwise arrivals and sigma
    samples older than ``window_s`` before the fit's time are dropped at :meth:`fit`.
    Per event the work is O(1) and allocates at most one small tuple; :meth:`fit` is
    O(depths fitted + evicted + depth bins / 64) and runs when asked (online: on the quote
    path, so it never walks the whole histogram or the whole window).
    """

    __slots__ = ("_arrivals", "_bins", "_blocks", "_hist", "_key", "_mid2", "_next_ns",
                 "_nonneg", "_pending", "_prev_mid2", "_samples", "_spread", "_spreads",
                 "_sq2", "_step_ns", "_window_ns", "fit_min_arrivals", "max_points",
                 "sigma_interval_s", "through_mid", "trades")

    def __init__(self, window_s: float | None, sigma_interval_s: float = 1.0,
                 fit_min_arrivals: int = 20, max_depth_ticks: int = 5000,
                 max_points: int = MAX_POINTS) -> None:
        owner = "TradeCalibrator"
        if window_s is not None:
            v.real(owner, "window_s", window_s, "seconds", lo=0, lo_open=True)
        v.real(owner, "sigma_interval_s", sigma_interval_s, "seconds", lo=0, lo_open=True)
        v.integer(owner, "fit_min_arrivals", fit_min_arrivals, "arrivals", lo=1)
        v.integer(owner, "max_depth_ticks", max_depth_ticks, "ticks", lo=1)
        v.integer(owner, "max_points", max_points, "depths", lo=3)
        self.max_points = max_points
        self._window_ns = None if window_s is None else int(window_s * _NS_PER_S)
        self.sigma_interval_s = sigma_interval_s
        self._step_ns = max(int(sigma_interval_s * _NS_PER_S), 1)
        self.fit_min_arrivals = fit_min_arrivals
        self._bins = 2 * max_depth_ticks + 1  # half ticks 0..2 max; deeper: the last bin
        self._hist = [0] * self._bins  # arrivals in the window by depth in half ticks
        # the same by blocks of 2**_BLOCK_SHIFT bins, and their total (depth >= 0)
        self._blocks = [0] * ((self._bins >> _BLOCK_SHIFT) + 1)
        self._nonneg = 0
        self._spreads: dict[int, int] = {}  # arrivals in the window by spread (ticks)
        self._arrivals: deque[tuple[int, int, int]] = deque()  # (ts, depth x2, spread)
        # (grid ns, (2 x return in ticks)^2): integers, so their running sum _sq2 is exact
        self._samples: deque[tuple[int, int]] = deque()
        self._sq2 = 0
        self._mid2 = 0  # bid + ask of the latest usable book; 0: none
        self._spread = 0
        self._prev_mid2 = 0  # the mid x 2 at the previous grid time
        self._next_ns = 0  # the next grid time; 0: the grid (re)starts at the next book
        self._key = (0, 0)  # (trade time, aggressor) of the pending arrival
        self._pending: list[int] = []  # [ts, depth x2, spread] not yet committed
        self.trades = 0  # trades seen with a usable mid (the whole run, not the window)
        self.through_mid = 0  # arrivals in the window with depth < 0

    # -- events ---------------------------------------------------------------------------

    def on_book(self, ts_ns: int, bid: int, ask: int) -> None:
        """The book's best prices (ticks, bid < ask) after a book event at ``ts_ns``."""
        mid2 = bid + ask
        nxt = self._next_ns
        if nxt == 0 or ts_ns - nxt > 100_000 * self._step_ns:
            # (re)start the grid; an absurd jump of time restarts it too rather than loop
            self._next_ns = ts_ns + self._step_ns
            self._prev_mid2 = mid2
        elif ts_ns >= nxt:
            last, step, samples = self._mid2, self._step_ns, self._samples
            while ts_ns >= nxt:  # each grid time passed takes the mid standing before it
                d = last - self._prev_mid2
                samples.append((nxt, d * d))
                self._sq2 += d * d
                self._prev_mid2 = last
                nxt += step
            self._next_ns = nxt
        self._mid2 = mid2
        self._spread = ask - bid

    def book_lost(self) -> None:
        """The book is unusable (not synced, one-sided, crossed): no mid until the next
        :meth:`on_book`, and the sampling grid restarts then."""
        self._mid2 = 0
        self._next_ns = 0

    def on_trade(self, ts_ns: int, price: int, buy: bool, trade_ns: int) -> None:
        """A public trade at ``price`` (ticks), ``buy`` True when the aggressor bought,
        ``trade_ns`` the venue's trade time (it groups one market order's trades)."""
        mid2 = self._mid2
        if mid2 == 0:
            return
        self.trades += 1
        depth2 = 2 * price - mid2 if buy else mid2 - 2 * price
        key = (trade_ns, 1 if buy else -1)
        pending = self._pending
        if pending and key == self._key and trade_ns:
            if depth2 > pending[1]:
                pending[1] = depth2
            return
        if pending:
            self._commit()
        self._key = key
        self._pending = [ts_ns, depth2, self._spread]

    def _commit(self) -> None:
        ts, depth2, spread = self._pending
        self._pending = []
        self._arrivals.append((ts, depth2, spread))
        if depth2 < 0:
            self.through_mid += 1
        else:
            j = depth2 if depth2 < self._bins else self._bins - 1
            self._hist[j] += 1
            self._blocks[j >> _BLOCK_SHIFT] += 1
            self._nonneg += 1
        self._spreads[spread] = self._spreads.get(spread, 0) + 1

    def _evict(self, now_ns: int) -> None:
        if self._window_ns is None:
            return
        oldest = now_ns - self._window_ns
        arrivals, hist, spreads, last = self._arrivals, self._hist, self._spreads, self._bins - 1
        blocks = self._blocks
        while arrivals and arrivals[0][0] < oldest:
            _, depth2, spread = arrivals.popleft()
            if depth2 < 0:
                self.through_mid -= 1
            else:
                j = depth2 if depth2 <= last else last
                hist[j] -= 1
                blocks[j >> _BLOCK_SHIFT] -= 1
                self._nonneg -= 1
            left = spreads[spread] - 1
            if left:
                spreads[spread] = left
            else:
                del spreads[spread]
        samples = self._samples
        while samples and samples[0][0] < oldest:
            self._sq2 -= samples.popleft()[1]

    # -- the fit --------------------------------------------------------------------------

    def fit(self, now_ns: int, curves: bool = False) -> IntensityFit:
        """Fit on the window ending at ``now_ns`` (the whole run without a window).
        ``curves``: also return the points (for plots)."""
        if self._pending:
            self._commit()
        self._evict(now_ns)
        n_sigma = len(self._samples)
        seconds = n_sigma * self.sigma_interval_s
        # sum r^2 = sum (2r)^2 / 4, exact in integers
        sigma = math.sqrt(self._sq2 / 4 / seconds) if n_sigma else math.nan
        mid = self._mid2 * 0.5
        sigma_bps = sigma / mid * 1e4 if mid > 0 else math.nan
        arrivals = len(self._arrivals)
        spreads = self._spreads
        spread = max(spreads.items(), key=lambda kv: (kv[1], -kv[0]))[0] if spreads else 1
        touch2 = spread  # the touch's depth in half ticks = the spread in ticks
        # cum(j), arrivals with depth >= j half ticks, is non-increasing in j
        hist, bins = self._hist, self._bins
        touch_count = self._nonneg - sum(hist[:touch2]) if touch2 < bins else 0
        touch_rate = touch_count / seconds if seconds > 0 else math.nan
        hi, cum_hi = self._deepest(self.fit_min_arrivals)
        lo = touch2 + 1
        js = range(0)
        counts: list[int] = []
        if hi >= lo and seconds > 0:
            stride = max(1, math.ceil((hi - lo + 1) / self.max_points))
            js = range(lo, hi + 1, stride)
            # cum(j) at the depths fitted, deepest first, from the arrivals in each stride
            # of bins between them (summed in C: the bins can be thousands)
            ends = [*js[1:], hi + 1]
            between = map(sum, map(hist.__getitem__, map(slice, reversed(js),
                                                         reversed(ends))))
            counts = list(accumulate(between, initial=cum_hi - hist[hi]))[:0:-1]
        touch_curve: tuple[tuple[float, float], ...] = ()
        if curves and seconds > 0:
            below = [0, *accumulate(hist[:touch2])]  # below[j]: arrivals shallower than j
            touch_curve = tuple((j * 0.5, (self._nonneg - below[j]) / seconds)
                                for j in range(1, min(touch2, bins - 1) + 1)
                                if self._nonneg > below[j])
        n = len(counts)
        nan = math.nan
        a = k = r2 = rmse = nan
        why = ""
        if n < 3:
            why = (f"{n} depths beyond the touch reached by >= "
                   f"{self.fit_min_arrivals} market orders (need 3): too few trades "
                   f"({arrivals} market orders in {seconds:g} s)")
        else:
            # ln lambda = ln count - ln seconds: only A carries the seconds
            a, k, r2, rmse = fit_exponential_even(js[0] * 0.5, js.step * 0.5,
                                                  list(map(math.log, counts)))
            a /= seconds
            if not (k > 0 and math.isfinite(k)):
                why = f"the intensity does not fall with depth (k = {k:.3g} per tick)"
                a = k = nan
            elif not math.isfinite(a):
                why = (f"A is out of range: k = {k:.3g} per tick fitted from {js[0] * 0.5:g} "
                       f"ticks out extrapolates to no finite rate at depth 0")
                a = k = nan
        return IntensityFit(
            ok=not why, why=why, a_per_s=a, kappa_per_tick=k, r2=r2, rmse_log=rmse,
            points=n, depth_lo_ticks=js[0] * 0.5 if n else nan,
            depth_hi_ticks=js[-1] * 0.5 if n else nan, arrivals=arrivals,
            trades=self.trades, through_mid=self.through_mid, seconds=seconds,
            touch_ticks=touch2 * 0.5, touch_per_s=touch_rate,
            touch_fitted_per_s=a * math.exp(-k * touch2 * 0.5), sigma_ticks=sigma,
            sigma_bps=sigma_bps, sigma_samples=n_sigma,
            sigma_interval_s=self.sigma_interval_s, mid_ticks=mid,
            curve=tuple((j * 0.5, c / seconds) for j, c in zip(js, counts, strict=True))
            if curves else (), touch_curve=touch_curve)

    def _deepest(self, least: int) -> tuple[int, int]:
        """(j, cum(j)) for the deepest half tick j reached by at least ``least`` arrivals;
        (-1, arrivals at depth >= 0) when fewer reach depth 0. Blocks first, then one block's
        bins."""
        blocks = self._blocks
        above = list(accumulate(reversed(blocks)))  # above[i]: the top i + 1 blocks
        i = bisect_left(above, least)
        if i == len(above):
            return -1, self._nonneg
        run = above[i - 1] if i else 0
        hist = self._hist
        j = min((len(blocks) - i) << _BLOCK_SHIFT, self._bins) - 1
        while True:
            run += hist[j]
            if run >= least:
                return j, run
            j -= 1


@dataclass(frozen=True, slots=True)
class OnlineCalibrationParams:
    """``[strategy.skew.online]``: GLFT's A, k and sigma re-estimated on a rolling window.

    ``enabled``: off by default (the skew's configured values stand). ``window_s``: the
    window (s of event time); ``interval_s``: time between re-fits (s); ``min_trades``:
    market orders (arrivals, see :mod:`.calibration`) the window must hold for a fit.
    ``sigma_interval_s``, ``fit_min_arrivals``, ``max_depth_ticks``: the estimator's (module
    docstring). Bounds: a fitted value outside ``[*_min, *_max]`` is clamped to it (and the
    log says so): ``a_per_s`` per second, ``kappa_per_tick`` per tick, ``sigma_bps`` bps of
    the mid per sqrt(second).
    """

    enabled: bool = False
    window_s: float = 600.0
    interval_s: float = 5.0
    min_trades: int = 200
    sigma_interval_s: float = 1.0
    fit_min_arrivals: int = 20
    max_depth_ticks: int = 5000
    a_per_s_min: float = 0.01
    a_per_s_max: float = 100.0
    kappa_per_tick_min: float = 1e-5
    kappa_per_tick_max: float = 10.0
    sigma_bps_min: float = 0.01
    sigma_bps_max: float = 50.0

    def __post_init__(self) -> None:
        owner = "OnlineCalibrationParams"
        if not isinstance(self.enabled, bool):
            raise v.fail(owner, "enabled", "true or false", self.enabled)
        v.real(owner, "window_s", self.window_s, "seconds", lo=0, lo_open=True)
        v.real(owner, "interval_s", self.interval_s, "seconds", lo=0, lo_open=True)
        v.integer(owner, "min_trades", self.min_trades, "market orders", lo=1)
        v.real(owner, "sigma_interval_s", self.sigma_interval_s, "seconds", lo=0, lo_open=True)
        if self.sigma_interval_s * 2 > self.window_s:
            raise v.fail(owner, "sigma_interval_s",
                         f"at most half of window_s ({self.window_s:g} s)",
                         self.sigma_interval_s)
        v.integer(owner, "fit_min_arrivals", self.fit_min_arrivals, "market orders", lo=1)
        v.integer(owner, "max_depth_ticks", self.max_depth_ticks, "ticks", lo=1)
        for name, unit in (("a_per_s", "per second"), ("kappa_per_tick", "per tick"),
                           ("sigma_bps", "bps per sqrt(second)")):
            lo, hi = getattr(self, f"{name}_min"), getattr(self, f"{name}_max")
            v.real(owner, f"{name}_min", lo, unit, lo=0, lo_open=True)
            v.real(owner, f"{name}_max", hi, f"{unit}, >= {name}_min", lo=lo)


@dataclass(frozen=True, slots=True)
class CalibrationView:
    """Online GLFT calibration as readers see it (the metrics endpoint): the values in use
    (A per s, k per tick, sigma bps per sqrt(s), NaN until the first good fit) and the
    counts of re-fits tried, failed (previous values kept) and clamped to the bounds."""

    a_per_s: float
    kappa_per_tick: float
    sigma_bps: float
    refits: int
    failures: int
    clamped: int


@dataclass(frozen=True, slots=True)
class Refit:
    """What one re-fit did: the values now in use and why.

    ``applied`` False: the fit failed (``why``) and the previous values stand. ``clamped``
    names the parameters a bound changed. ``sigma`` is a fraction of the mid per sqrt(s)
    (the quoter's unit; x 1e4 = bps)."""

    ts_ns: int
    applied: bool
    why: str
    a_per_s: float
    kappa_per_tick: float
    sigma: float
    clamped: tuple[str, ...]
    fit: IntensityFit


def _clamp(value: float, lo: float, hi: float) -> float:
    return lo if value < lo else hi if value > hi else value


class OnlineCalibration:
    """The rolling calibrator of ``[strategy.skew.online]``, driven by event time.

    Feed it :meth:`on_book`/:meth:`book_lost` and :meth:`on_trade` (O(1)); :meth:`due`
    says whether ``now_ns`` is at or past the next re-fit, :meth:`refit` fits and returns
    a :class:`Refit`. ``a_per_s``, ``kappa_per_tick`` and ``sigma`` hold the values in
    use: the configured ones (``sigma`` None: the volatility estimator's) until the first
    fit that succeeds. ``refits``/``failures`` count the fits tried and failed.
    """

    __slots__ = ("_next_ns", "_step_ns", "a_per_s", "book_lost", "clamps", "estimator",
                 "failures", "kappa_per_tick", "last", "on_book", "on_trade", "params",
                 "refits", "sigma")

    def __init__(self, params: OnlineCalibrationParams, a_per_s: float,
                 kappa_per_tick: float) -> None:
        self.params = params
        self.estimator = est = TradeCalibrator(params.window_s, params.sigma_interval_s,
                                               params.fit_min_arrivals, params.max_depth_ticks,
                                               ONLINE_MAX_POINTS)
        self.on_book = est.on_book
        self.book_lost = est.book_lost
        self.on_trade = est.on_trade
        self.a_per_s = a_per_s
        self.kappa_per_tick = kappa_per_tick
        self.sigma: float | None = None
        self._step_ns = max(int(params.interval_s * _NS_PER_S), 1)
        self._next_ns = 0  # the first re-fit: one interval after the first event seen
        self.refits = 0
        self.failures = 0
        self.clamps = 0  # re-fits applied with at least one value clamped to its bounds
        self.last: Refit | None = None

    def due(self, now_ns: int) -> bool:
        """True when a re-fit is due at event time ``now_ns``."""
        if now_ns < self._next_ns:
            return False
        if self._next_ns == 0:
            self._next_ns = now_ns + self._step_ns
            return False
        return True

    def refit(self, now_ns: int, apply: Callable[[float, float], None]) -> Refit:
        """Fit the window ending at ``now_ns``; hand the bounded A and k to ``apply`` and
        keep them, or keep the previous values when the fit fails (too few market orders,
        non-finite, k <= 0) or ``apply`` refuses them (ValueError)."""
        self._next_ns = now_ns + self._step_ns
        self.refits += 1
        p = self.params
        fit = self.estimator.fit(now_ns)
        why = ""
        if fit.arrivals < p.min_trades:
            why = f"{fit.arrivals} market orders in the window (min_trades {p.min_trades})"
        elif not fit.ok:
            why = fit.why
        elif not math.isfinite(fit.sigma_bps):  # 0 is a measurement: clamped to the min
            why = f"no volatility measured ({fit.sigma_samples} samples)"
        if why:
            self.failures += 1
            self.last = Refit(now_ns, False, why, self.a_per_s, self.kappa_per_tick,
                              self.sigma if self.sigma is not None else math.nan, (), fit)
            return self.last
        a = _clamp(fit.a_per_s, p.a_per_s_min, p.a_per_s_max)
        k = _clamp(fit.kappa_per_tick, p.kappa_per_tick_min, p.kappa_per_tick_max)
        s = _clamp(fit.sigma_bps, p.sigma_bps_min, p.sigma_bps_max)
        clamped = tuple(name for name, got, used in (
            ("a_per_s", fit.a_per_s, a), ("kappa_per_tick", fit.kappa_per_tick, k),
            ("sigma_bps", fit.sigma_bps, s)) if got != used)
        try:
            apply(a, k)
        except ValueError as exc:
            self.failures += 1
            self.last = Refit(now_ns, False, str(exc), self.a_per_s, self.kappa_per_tick,
                              self.sigma if self.sigma is not None else math.nan, (), fit)
            return self.last
        self.a_per_s, self.kappa_per_tick, self.sigma = a, k, s * 1e-4
        self.clamps += bool(clamped)
        self.last = Refit(now_ns, True, "", a, k, s * 1e-4, clamped, fit)
        return self.last

    def view(self) -> CalibrationView:
        """The values in use and the counts, as plain values."""
        sigma = self.sigma
        return CalibrationView(self.a_per_s, self.kappa_per_tick,
                               sigma * 1e4 if sigma is not None else math.nan, self.refits,
                               self.failures, self.clamps)

    def summary(self) -> dict[str, object]:
        """The values in use and the counts, for a run's summary (JSON: None for NaN)."""
        last = self.last

        def num(x: float | None) -> float | None:
            return x if x is not None and math.isfinite(x) else None

        return {"a_per_s": self.a_per_s, "kappa_per_tick": self.kappa_per_tick,
                "sigma_bps": num(self.sigma * 1e4 if self.sigma is not None else None),
                "refits": self.refits, "failures": self.failures, "clamped": self.clamps,
                "last_applied": last.applied if last else None,
                "last_why": last.why if last else None,
                "last_r2": num(last.fit.r2) if last else None,
                "last_market_orders": last.fit.arrivals if last else None}


def _percentile(counts: dict[int, float], q: float) -> int:
    """The smallest key whose cumulative weight reaches ``q`` of the total."""
    total = math.fsum(counts.values())
    run = 0.0
    for key in sorted(counts):
        run += counts[key]
        if run >= q * total:
            return key
    return max(counts)


@dataclass(frozen=True, slots=True)
class BookFigures:
    """Spread and depth statistics of the book events seen (:class:`BookStats`).

    Spreads in ticks: ``events`` book events with a usable book over ``seconds`` of event
    time; shares and percentiles by event, ``*_time`` weighted by how long each spread
    stood. Depths in lots, one value per side per event: at the best price (``touch_*``)
    and summed over the best price and the ``within_ticks`` ticks behind it (``near_*``).
    """

    events: int
    seconds: float
    spread_share_1: float
    spread_share_1_time: float
    spread_mean: float
    spread_mean_time: float
    spread_p50: int
    spread_p90: int
    spread_p99: int
    spread_counts: tuple[tuple[int, int], ...]
    within_ticks: int
    touch_mean: float
    touch_median: float
    near_mean: float
    near_median: float


class BookStats:
    """Spread and depth accumulated over book events (offline: the samples are kept)."""

    __slots__ = ("_counts", "_last_ns", "_last_spread", "_near", "_time", "_touch",
                 "within_ticks")

    def __init__(self, within_ticks: int) -> None:
        v.integer("BookStats", "within_ticks", within_ticks, "ticks", lo=0)
        self.within_ticks = within_ticks
        self._counts: dict[int, int] = {}  # events by spread (ticks)
        self._time: dict[int, float] = {}  # seconds by spread
        self._touch: list[int] = []  # lots at the best price, both sides
        self._near: list[int] = []  # lots within within_ticks of the best, both sides
        self._last_ns = 0
        self._last_spread = 0  # 0: no usable book standing

    def on_book(self, ts_ns: int, spread: int, touch: tuple[int, int],
                near: tuple[int, int]) -> None:
        """A usable book at ``ts_ns``: ``spread`` ticks, (bid, ask) lots at the touch and
        within ``within_ticks`` of it."""
        self._close(ts_ns)
        self._counts[spread] = self._counts.get(spread, 0) + 1
        self._touch.extend(touch)
        self._near.extend(near)
        self._last_ns, self._last_spread = ts_ns, spread

    def book_lost(self, ts_ns: int) -> None:
        """The book became unusable at ``ts_ns``: its time counts for no spread."""
        self._close(ts_ns)
        self._last_spread = 0

    def _close(self, ts_ns: int) -> None:
        if self._last_spread and ts_ns > self._last_ns:
            s = self._last_spread
            self._time[s] = self._time.get(s, 0.0) + (ts_ns - self._last_ns) / _NS_PER_S

    def figures(self) -> BookFigures | None:
        """The statistics, None before any usable book."""
        counts, times = self._counts, self._time
        events = sum(counts.values())
        if not events:
            return None
        seconds = math.fsum(times.values())
        touch, near = sorted(self._touch), sorted(self._near)
        return BookFigures(
            events=events, seconds=seconds, spread_share_1=counts.get(1, 0) / events,
            spread_share_1_time=times.get(1, 0.0) / seconds if seconds else math.nan,
            spread_mean=math.fsum(s * c for s, c in counts.items()) / events,
            spread_mean_time=math.fsum(s * t for s, t in times.items()) / seconds
            if seconds else math.nan,
            spread_p50=_percentile(dict(counts), 0.5),
            spread_p90=_percentile(dict(counts), 0.9),
            spread_p99=_percentile(dict(counts), 0.99),
            spread_counts=tuple(sorted(counts.items())), within_ticks=self.within_ticks,
            touch_mean=math.fsum(touch) / len(touch), touch_median=touch[len(touch) // 2],
            near_mean=math.fsum(near) / len(near), near_median=near[len(near) // 2])
