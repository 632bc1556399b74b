"""Binance's request rate limits as order entry accounts for them (sans I/O).

A rate-limited answer (-1003, status 429 or 418) holds places and amends back until the
venue's ``retryAfter`` (ms since the epoch), else the end of the exhausted rate limit
window (the venue's windows are aligned to the wall clock: a MINUTE limit resets at the
minute), else a jittered backoff that grows with each limited answer in a row. Sending
while limited would only extend a ban; cancels still go out.

Times: the hold is on the monotonic clock (ns), the venue's windows and ``retryAfter`` on
the wall clock (ms since the epoch); both are passed in, never read here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from mmdaemon.backoff import backoff_delay
from mmdaemon.model import NS_PER_MS, NS_PER_S
from mmdaemon.venues import binance_api as api
from mmdaemon.venues import binance_parse as parse

_INTERVAL_MS: Final = {"SECOND": 1_000, "MINUTE": 60_000, "HOUR": 3_600_000, "DAY": 86_400_000}


class RateLimitHold:
    """Until when (monotonic ns) places and amends are held back; 0: never held yet.

    ``backoff_initial_s``/``backoff_max_s`` and ``rng`` shape the fallback backoff (see
    :func:`mmdaemon.backoff.backoff_delay`) used when an answer says neither when to retry
    nor which limit it exceeded.
    """

    def __init__(self, backoff_initial_s: float, backoff_max_s: float,
                 rng: Callable[[], float]) -> None:
        self._initial_s = backoff_initial_s
        self._max_s = backoff_max_s
        self._rng = rng
        self._attempt = 0  # rate-limited answers since the last successful one
        self.until_ns = 0

    def held(self, mono_ns: int) -> bool:
        """Whether places and amends are held back at monotonic time ``mono_ns``."""
        return mono_ns < self.until_ns

    def on_response(self, response: api.Response, mono_ns: int, wall_ms: int) -> float | None:
        """Account for one response received at ``mono_ns`` (``wall_ms`` on the venue's
        clock): None unless it was rate limited, else the seconds the venue wants us to
        wait from now (the hold is extended to that, never shortened)."""
        if not parse.is_rate_limited(response):
            if response.ok:
                self._attempt = 0
            return None
        delay_ms = 0
        after = parse.retry_after_ms(response)
        if after is not None:
            delay_ms = after - wall_ms
        else:
            for limit in response.rate_limits:
                if limit.used > limit.limit:
                    window = _INTERVAL_MS.get(limit.interval, 60_000) * max(1, limit.interval_num)
                    delay_ms = max(delay_ms, (wall_ms // window + 1) * window - wall_ms)
        if delay_ms > 0:
            delay_s = delay_ms / 1000
            until = mono_ns + delay_ms * NS_PER_MS
        else:
            self._attempt += 1
            delay_s = backoff_delay(self._attempt, self._initial_s, self._max_s, self._rng)
            until = mono_ns + round(delay_s * NS_PER_S)
        self.until_ns = max(self.until_ns, until)
        return delay_s
