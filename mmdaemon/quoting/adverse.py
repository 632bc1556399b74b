"""Adverse selection judged by markouts, on event time.

**Markout.** For a fill on side s (+1 bought, -1 sold) when the mid was m0 (ticks), the
markout at horizon h is

    markout_h = s x (m_h - m0) / m0 x 1e4        bps of the mid; > 0 is good for us

where m_h is the mid *in force* at fill time + h: the mid after the last book event whose
timestamp is <= fill time + h. Time is the events' ns timestamps (the same clock domain as
the fills' ``ts_ns``); nothing reads a clock. A markout is resolved by the first book event
at or after its due time, so it is exact even if the book then stays quiet for minutes.
Fills are expected in time order; one that arrives late is resolved at the next event.

**Per horizon** (default 1 s, 5 s, 30 s) a running EMA of the markouts (``ema_alpha`` per
markout) is kept.

**The article's detector, judged by markouts.** Over the last ``detector_window`` fills
(article: 100) whose *shortest-horizon* markout is known: the adverse rate is the share
whose markout is < 0 (the mid moved against us), the average adverse move the mean |markout|
of those, in bps. The spread model widens by (1 + rate) above its threshold.

**Toxicity.** When a newly resolved shortest-horizon markout leaves that horizon's EMA below
``-toxic_threshold_bps`` (after ``toxic_min_markouts`` markouts), quoting turns toxic for
``cooldown_ns`` from that event: ``toxic_action`` ``"widen"`` multiplies the half-spread by
``toxic_widen_multiplier``, ``"pause"`` quotes size 0, ``"off"`` does nothing. The cool-down is
re-armed by each further toxic markout; it is a window, not a level, because a paused quoter
gets no fills and so no new markouts that could clear a level.

**Bounded memory.** At most ``max_pending_fills`` fills wait per horizon (the oldest is
dropped and counted in ``dropped`` beyond that); the detector window is a fixed-size deque.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from itertools import pairwise

from mmdaemon.model import Fill
from mmdaemon.quoting import _validate as v

TOXIC_ACTIONS = ("widen", "pause", "off")
_NEVER = 1 << 62  # a due time no event reaches


@dataclass(frozen=True, slots=True)
class AdverseParams:
    """Markout and adverse-selection parameters.

    ``horizons_s``: markout horizons in seconds, strictly increasing; the first (shortest)
    drives the detector and the toxicity switch. ``ema_alpha``: weight of each new markout
    in the per-horizon EMA (0 < alpha <= 1). ``detector_window``: fills in the adverse-rate
    window (article: 100). ``toxic_threshold_bps``: the shortest-horizon markout EMA below
    minus this many bps is toxic. ``toxic_min_markouts``: markouts needed before toxicity
    is judged. ``toxic_action``: ``"widen"``, ``"pause"`` or ``"off"``.
    ``toxic_widen_multiplier``: half-spread multiplier while toxic (widen).
    ``cooldown_ns``: how long toxicity lasts after a toxic markout, ns.
    ``max_pending_fills``: cap on fills awaiting their markouts, per horizon.
    """

    horizons_s: tuple[float, ...] = (1.0, 5.0, 30.0)
    ema_alpha: float = 0.1
    detector_window: int = 100
    toxic_threshold_bps: float = 0.5
    toxic_min_markouts: int = 5
    toxic_action: str = "widen"
    toxic_widen_multiplier: float = 2.0
    cooldown_ns: int = 5_000_000_000
    max_pending_fills: int = 10_000

    def __post_init__(self) -> None:
        owner = "AdverseParams"
        hs = self.horizons_s
        expected = "a non-empty tuple of finite seconds > 0, strictly increasing"
        if not isinstance(hs, tuple) or not hs:
            raise v.fail(owner, "horizons_s", expected, hs)
        for h in hs:
            if isinstance(h, bool) or not isinstance(h, int | float) or not math.isfinite(h):
                raise v.fail(owner, "horizons_s", expected, hs)
        if hs[0] <= 0 or any(b <= a for a, b in pairwise(hs)):
            raise v.fail(owner, "horizons_s", expected, hs)
        v.real(owner, "ema_alpha", self.ema_alpha, "weight per markout", lo=0, hi=1, lo_open=True)
        v.integer(owner, "detector_window", self.detector_window, "fills", lo=1)
        v.real(owner, "toxic_threshold_bps", self.toxic_threshold_bps, "bps", lo=0)
        v.integer(owner, "toxic_min_markouts", self.toxic_min_markouts, "markouts", lo=1)
        v.choice(owner, "toxic_action", self.toxic_action, TOXIC_ACTIONS)
        v.real(owner, "toxic_widen_multiplier", self.toxic_widen_multiplier, "multiplier", lo=1)
        v.integer(owner, "cooldown_ns", self.cooldown_ns, "ns", lo=0)
        v.integer(owner, "max_pending_fills", self.max_pending_fills, "fills", lo=1)


class AdverseSelection:
    """Markouts per horizon, the markout-judged adverse rate, and the toxicity switch."""

    __slots__ = (
        "_adverse_count",
        "_adverse_sum",
        "_alpha",
        "_horizons_ns",
        "_last_mid",
        "_min_markouts",
        "_next_due",
        "_pending",
        "_threshold",
        "_toxic_until",
        "_widen",
        "_window",
        "_window_evictions",
        "dropped",
        "ema_bps",
        "markouts",
        "params",
        "pause",
    )

    def __init__(self, params: AdverseParams | None = None) -> None:
        self.params = params = params or AdverseParams()
        self._horizons_ns = [round(h * 1e9) for h in params.horizons_s]
        n = len(self._horizons_ns)
        # Per horizon: fills awaiting that horizon's markout, (due_ns, side, mid0_ticks).
        self._pending: list[deque[tuple[int, int, float]]] = [
            deque(maxlen=params.max_pending_fills) for _ in range(n)
        ]
        self._next_due = _NEVER
        self._last_mid = 0.0  # 0.0: no mid seen yet
        self._alpha = params.ema_alpha
        #: EMA of markouts per horizon, bps (0.0 until the first markout: see ``markouts``)
        self.ema_bps = [0.0] * n
        #: markouts resolved per horizon
        self.markouts = [0] * n
        #: fills dropped from a full pending queue, per horizon
        self.dropped = [0] * n
        # Detector over the shortest horizon's last ``detector_window`` markouts (bps).
        self._window: deque[float] = deque()
        self._window_evictions = 0
        self._adverse_count = 0
        self._adverse_sum = 0.0
        self._threshold = -params.toxic_threshold_bps
        self._min_markouts = params.toxic_min_markouts
        self._toxic_until = -_NEVER
        self._widen = params.toxic_widen_multiplier if params.toxic_action == "widen" else 1.0
        self.pause = params.toxic_action == "pause"

    # -- inputs ---------------------------------------------------------------------------

    def on_fill(self, fill: Fill, mid_ticks: float) -> None:
        """Register our fill; ``mid_ticks`` is the book mid at the fill (ticks)."""
        self.add_fill(int(fill.side), fill.ts_ns, mid_ticks)

    def add_fill(self, side: int, ts_ns: int, mid_ticks: float) -> None:
        """Register a fill on ``side`` (+1 bought, -1 sold) at ``ts_ns`` with mid ``mid_ticks``."""
        if not mid_ticks > 0.0:  # no reference mid (or NaN): a markout would be meaningless
            return
        if self._last_mid == 0.0:
            self._last_mid = mid_ticks
        for i, horizon in enumerate(self._horizons_ns):
            queue = self._pending[i]
            if len(queue) == queue.maxlen:
                self.dropped[i] += 1  # the append below evicts the oldest
            queue.append((ts_ns + horizon, side, mid_ticks))
        due = ts_ns + self._horizons_ns[0]
        if due < self._next_due:
            self._next_due = due

    def on_mid(self, ts_ns: int, mid_ticks: float) -> None:
        """A book event at ``ts_ns`` left the mid at ``mid_ticks``: resolve due markouts.

        The mid in force at a due time strictly before ``ts_ns`` is the previous one; at a
        due time equal to ``ts_ns`` it is this one.
        """
        if ts_ns >= self._next_due:
            self._resolve(ts_ns - 1, self._last_mid, ts_ns)
            self._last_mid = mid_ticks
            self._resolve(ts_ns, mid_ticks, ts_ns)
            self._next_due = min((q[0][0] for q in self._pending if q), default=_NEVER)
        else:
            self._last_mid = mid_ticks

    def _resolve(self, upto_ns: int, mid: float, now_ns: int) -> None:
        """Resolve every pending markout due at or before ``upto_ns`` with ``mid``."""
        if not mid > 0.0:
            return
        alpha = self._alpha
        for i, queue in enumerate(self._pending):
            while queue and queue[0][0] <= upto_ns:
                _, side, mid0 = queue.popleft()
                markout = side * (mid - mid0) / mid0 * 1e4
                n = self.markouts[i]
                ema = markout if n == 0 else self.ema_bps[i] + alpha * (markout - self.ema_bps[i])
                self.ema_bps[i] = ema
                self.markouts[i] = n + 1
                if i == 0:
                    self._detect(markout)
                    if (
                        (self._widen != 1.0 or self.pause)
                        and n + 1 >= self._min_markouts
                        and ema < self._threshold
                    ):
                        self._toxic_until = now_ns + self.params.cooldown_ns

    def _detect(self, markout: float) -> None:
        """Push one shortest-horizon markout into the detector window."""
        window = self._window
        window.append(markout)
        if markout < 0.0:
            self._adverse_count += 1
            self._adverse_sum -= markout
        if len(window) > self.params.detector_window:
            old = window.popleft()
            if old < 0.0:
                self._adverse_count -= 1
                self._adverse_sum += old
            self._window_evictions += 1
            if self._window_evictions >= self.params.detector_window:
                # Re-add the float sum exactly now and then so rounding cannot accumulate.
                self._window_evictions = 0
                self._adverse_sum = math.fsum(-m for m in window if m < 0.0)

    # -- outputs --------------------------------------------------------------------------

    def rate(self) -> float:
        """Share (0..1) of the window's fills whose shortest-horizon markout was < 0."""
        n = len(self._window)
        return self._adverse_count / n if n else 0.0

    def average_adverse_bps(self) -> float:
        """Mean |markout| (bps) of the window's adverse fills; 0.0 when there are none."""
        count = self._adverse_count
        return self._adverse_sum / count if count else 0.0

    def ema_by_horizon(self) -> dict[float, float | None]:
        """Horizon (s) -> markout EMA (bps), None before that horizon's first markout."""
        return {
            h: (self.ema_bps[i] if self.markouts[i] else None)
            for i, h in enumerate(self.params.horizons_s)
        }

    def toxic(self, ts_ns: int) -> bool:
        """True inside a toxicity cool-down at event time ``ts_ns``."""
        return ts_ns < self._toxic_until

    def multiplier(self, ts_ns: int) -> float:
        """Half-spread multiplier at ``ts_ns``: the widen multiplier while toxic, else 1."""
        return self._widen if ts_ns < self._toxic_until else 1.0

    def paused(self, ts_ns: int) -> bool:
        """True when quoting must pause at ``ts_ns`` (toxic with action "pause")."""
        return self.pause and ts_ns < self._toxic_until

    @property
    def pending(self) -> int:
        """Fills still awaiting their longest-horizon markout."""
        return len(self._pending[-1])
