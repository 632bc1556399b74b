"""Realised volatility of the mid on event time.

Each *sample* is a pair (r, dt): r = ln(mid_now / mid_at_previous_sample), a log return
(dimensionless), and dt the time between the two samples in seconds, from the events' own
ns timestamps. The variance rate is then

    variance per second = sum(r^2) / sum(dt)            (1 / s)
    sigma per sqrt(second) = sqrt(variance per second)    (1 / sqrt(s), a fraction of price)
    sigma annualised = sigma per sqrt(s) x sqrt(year_days x 86,400)

so irregular sampling is handled exactly: a 10 s quiet spell that ends in one move counts
as 10 s of time, never as one "period". The year length is ``year_days`` (default 365: crypto
trades every day). Sigma per sqrt(s) x 1e4 is "bps per sqrt(second)"; for BTC at ~50%
annualised this is ~0.9 bp per sqrt(s).

When a sample is taken (``VolatilityParams``), at a book event with time ts:

- the mid differs from the last sampled mid **and** at least ``min_interval_ns`` (and at
  least 1 ns) passed since the last sample: bursts of updates inside ``min_interval_ns`` are
  merged into one return (log returns telescope, so nothing is lost but bid-ask bounce);
- or ``max_interval_ns`` passed with the mid unchanged: a heartbeat sample with r = 0, so the
  reported estimate decays in a quiet market instead of freezing (0 disables heartbeats).

Events with a timestamp earlier than the last sample, or a non-positive mid, are ignored.

Two estimators share this sampling:

- :class:`EwmaVolatility`: both sums decay by 0.5 ** (dt / ``ewma_halflife_s``) at each
  sample, i.e. an exponentially time-weighted sum(r^2) / sum(dt).
- :class:`RollingVolatility`: plain sums over the last ``window_samples`` samples.

Before ``warmup_samples`` samples, both report the configured prior (``prior_annual_vol``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from mmdaemon.quoting import _validate as v

SECONDS_PER_DAY = 86_400
VOL_ESTIMATORS = ("ewma", "rolling")
_NS_PER_S = 1e9


@dataclass(frozen=True, slots=True)
class VolatilityParams:
    """Volatility estimator parameters.

    ``estimator``: ``"ewma"`` or ``"rolling"``.
    ``ewma_halflife_s``: time (s) after which a sample's weight halves (EWMA).
    ``window_samples``: number of samples in the rolling window (rolling).
    ``min_interval_ns``: minimum ns between samples when the mid moved.
    ``max_interval_ns``: ns after which an unchanged mid is sampled anyway (0: never).
    ``warmup_samples``: samples needed before the estimate replaces the prior.
    ``prior_annual_vol``: volatility reported before warm-up, annualised fraction (0.5 = 50%).
    ``year_days``: days in the annualisation year (365 for crypto, ~252 for equities).
    """

    estimator: str = "ewma"
    ewma_halflife_s: float = 60.0
    window_samples: int = 300
    min_interval_ns: int = 50_000_000
    max_interval_ns: int = 1_000_000_000
    warmup_samples: int = 30
    prior_annual_vol: float = 0.5
    year_days: float = 365.0

    def __post_init__(self) -> None:
        owner = "VolatilityParams"
        v.choice(owner, "estimator", self.estimator, VOL_ESTIMATORS)
        v.real(owner, "ewma_halflife_s", self.ewma_halflife_s, "seconds", lo=0, lo_open=True)
        v.integer(owner, "window_samples", self.window_samples, "samples", lo=1)
        v.integer(owner, "min_interval_ns", self.min_interval_ns, "ns", lo=0)
        v.integer(owner, "max_interval_ns", self.max_interval_ns, "ns, 0 = no heartbeat", lo=0)
        if 0 < self.max_interval_ns < self.min_interval_ns:
            raise v.fail(
                owner,
                "max_interval_ns",
                f"0 or an integer >= min_interval_ns ({self.min_interval_ns}) (ns)",
                self.max_interval_ns,
            )
        v.integer(owner, "warmup_samples", self.warmup_samples, "samples", lo=1)
        v.real(owner, "prior_annual_vol", self.prior_annual_vol, "annualised fraction", lo=0)
        v.real(owner, "year_days", self.year_days, "days", lo=0, lo_open=True)

    @property
    def seconds_per_year(self) -> float:
        """Seconds in the annualisation year."""
        return self.year_days * SECONDS_PER_DAY


class VolatilityEstimator(Protocol):
    """What the quoter needs from an estimator."""

    samples: int

    def update(self, ts_ns: int, mid_ticks: float) -> bool: ...

    def sigma_per_sqrt_s(self) -> float: ...

    def sigma_annual(self) -> float: ...

    @property
    def warm(self) -> bool: ...


class _Sampler:
    """The sampling rule and the prior/warm-up logic both estimators share."""

    __slots__ = (
        "_last_mid",
        "_last_ns",
        "_max_ns",
        "_min_ns",
        "_sigma",
        "_sqrt_year_s",
        "_warmup",
        "params",
        "samples",
    )

    def __init__(self, params: VolatilityParams | None) -> None:
        self.params = params = params or VolatilityParams()
        self._min_ns = max(params.min_interval_ns, 1)  # dt must be > 0 for r^2 / dt
        self._max_ns = params.max_interval_ns or (1 << 62)  # 0: heartbeat never due
        self._warmup = params.warmup_samples
        self._sqrt_year_s = math.sqrt(params.seconds_per_year)
        self._last_mid = 0.0  # 0.0: no sample yet
        self._last_ns = 0
        self.samples = 0  # samples taken (returns), not counting the first observation
        # The prior until warm; recomputed only when a sample is taken, so reads are free.
        self._sigma = params.prior_annual_vol / self._sqrt_year_s

    def update(self, ts_ns: int, mid_ticks: float) -> bool:
        """Offer the mid (ticks) at event time ``ts_ns``; True when a sample was taken."""
        last_mid = self._last_mid
        if not mid_ticks > 0.0:  # also rejects NaN
            return False
        if last_mid == 0.0:
            self._last_mid = mid_ticks
            self._last_ns = ts_ns
            return False
        dt_ns = ts_ns - self._last_ns
        if mid_ticks != last_mid:
            if dt_ns < self._min_ns:
                return False
            r = math.log(mid_ticks / last_mid)
        elif dt_ns >= self._max_ns:
            r = 0.0
        else:
            return False
        self._last_mid = mid_ticks
        self._last_ns = ts_ns
        self.samples += 1
        var_per_s = self._add(r * r, dt_ns / _NS_PER_S)
        if self.samples >= self._warmup:
            self._sigma = math.sqrt(var_per_s) if var_per_s > 0.0 else 0.0
        return True

    def _add(self, r2: float, dt_s: float) -> float:
        """Fold in one sample; return the current variance per second."""
        raise NotImplementedError

    def sigma_per_sqrt_s(self) -> float:
        """Volatility of log mid per sqrt(second) (the prior before warm-up)."""
        return self._sigma

    def sigma_annual(self) -> float:
        """Volatility annualised over ``params.year_days`` days (the prior before warm-up)."""
        return self._sigma * self._sqrt_year_s

    @property
    def warm(self) -> bool:
        """True once ``warmup_samples`` samples have been taken."""
        return self.samples >= self._warmup


class EwmaVolatility(_Sampler):
    """Exponentially time-weighted realised volatility (see the module docstring)."""

    __slots__ = ("_k", "_sum_dt", "_sum_r2")

    def __init__(self, params: VolatilityParams | None = None) -> None:
        super().__init__(params)
        # decay = 0.5 ** (dt / halflife) = exp(-dt x ln 2 / halflife)
        self._k = math.log(2.0) / self.params.ewma_halflife_s
        self._sum_r2 = 0.0
        self._sum_dt = 0.0

    def _add(self, r2: float, dt_s: float) -> float:
        # Decay by the time since the previous sample, then add this sample at full weight:
        # a sample's weight is 0.5 ** (its age / halflife), whatever the sampling rate.
        decay = math.exp(-self._k * dt_s)
        self._sum_r2 = self._sum_r2 * decay + r2
        self._sum_dt = self._sum_dt * decay + dt_s
        return self._sum_r2 / self._sum_dt


class RollingVolatility(_Sampler):
    """Realised volatility over the last ``window_samples`` samples."""

    __slots__ = ("_evicted", "_sum_dt", "_sum_r2", "_window")

    def __init__(self, params: VolatilityParams | None = None) -> None:
        super().__init__(params)
        self._window: deque[tuple[float, float]] = deque()
        self._sum_r2 = 0.0
        self._sum_dt = 0.0
        self._evicted = 0

    def _add(self, r2: float, dt_s: float) -> float:
        window = self._window
        window.append((r2, dt_s))
        self._sum_r2 += r2
        self._sum_dt += dt_s
        if len(window) > self.params.window_samples:
            old_r2, old_dt = window.popleft()
            self._sum_r2 -= old_r2
            self._sum_dt -= old_dt
            self._evicted += 1
            if self._evicted >= self.params.window_samples:
                # Running sums drift by rounding as values come and go; re-add them exactly
                # once per window length (amortised O(1) per sample).
                self._evicted = 0
                self._sum_r2 = math.fsum(s[0] for s in window)
                self._sum_dt = math.fsum(s[1] for s in window)
        sum_dt = self._sum_dt
        return max(self._sum_r2, 0.0) / sum_dt if sum_dt > 0.0 else 0.0


def make_volatility(params: VolatilityParams | None = None) -> EwmaVolatility | RollingVolatility:
    """The estimator ``params.estimator`` names."""
    params = params or VolatilityParams()
    if params.estimator == "rolling":
        return RollingVolatility(params)
    return EwmaVolatility(params)
