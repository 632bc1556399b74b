"""Adverse selection judged by the mid's move after our fills, on event time.

**Move.** For a fill of ``size`` lots on side s (+1 bought, -1 sold) when the mid was m0
(ticks; the caller's mid at the fill, ideally the mid before the event that filled us), the
move at horizon h is

    move_h = s x (m_h - m0) / m0 x 1e4        bps of the mid; < 0: the mid moved against us

where m_h is the mid *in force* at fill time + h: the mid after the last book event whose
timestamp is <= fill time + h. It is the contract's ``move_h`` (not a markout: the fill's
edge against the mid is not in it). Time is the events' ns timestamps (the same clock domain
as the fills' ``ts_ns``); nothing reads a clock. A move is resolved by the first book event
at or after its due time, so it is exact even if the book then stays quiet for minutes.
Fills are expected in time order; one that arrives late is resolved at the next event.

**Per horizon** (default 1 s, 5 s, 30 s) a running EMA of the moves (``ema_alpha`` per
resolved move) is kept, for the metrics; no decision reads it.

**Evidence.** Decisions read only the shortest horizon. Each resolved fill is evidence of
weight w = size / ``size_unit_lots`` (the quoter's base order size: one base order weighs 1),
so the rates are size-weighted as the contract's ``adverse_move_rate`` is. The evidence is
kept as two sets of exponentially decaying sums on event time, one with
``baseline_half_life_s`` (slow) and one with ``recent_half_life_s`` (fast): the weight of
adverse moves A, of all resolved moves N (a move of exactly 0 counts in N only) and the
weighted sum of moves S (bps x weight); evidence of age t (from the move's due time, fill
time + h) counts 2^(-t / half-life). At event time t:

    baseline rate  b  = (A_slow + a) / (N_slow + a + c)      a = prior_adverse_move_rate x
                                                            prior_weight, c = prior_weight - a
    recent rate    r  = (A_fast + k x b) / (N_fast + k)       k = recent_weight
    excess         e  = max(0, r - b)                         0 before widen_min_markouts
    baseline move  mb = S_slow / (N_slow + prior_weight)      bps (prior: 0 bps, the mid is a
                                                            martingale)
    recent move    mr = (S_fast + k x mb) / (N_fast + k)      bps

b is the Beta(a, c) posterior mean of *this market's normal* adverse-move rate; r is the
recent rate shrunk toward b (with no recent evidence r = b, and e = 0); both are shares
(0..1), e a difference of shares. The spread model multiplies the half-spread by (1 + e)
(:mod:`.spread`): dimensionless, at most 2, zero when recent fills are no more often run over
than this market's fills normally are. Why relative to a baseline: a passive quote fills
when the market comes to it, so most fills see the mid move against them (about 90 % at
1 s on the bundled BTCUSDT recording); the spread model prices that normal flow, and a
multiplier on the absolute rate would always be on and override it. The defence is for
flow *more* toxic than normal. What it cannot see: toxicity that persists for longer than
the baseline half-life becomes the baseline; the spread model's calibration must price it.

**Toxicity.** When a newly resolved move leaves the recent mean move below the baseline
mean move by more than ``toxic_threshold_bps`` (mr - mb < -threshold, after
``toxic_min_markouts`` resolved moves), quoting turns toxic for ``cooldown_ns`` from that
event: ``toxic_action`` ``"widen"`` multiplies the half-spread by ``toxic_widen_multiplier``,
``"pause"`` quotes size 0, ``"off"`` does nothing. The cool-down is re-armed by each further
toxic move; it is a window, not a level, because a paused quoter gets no fills and so no
new moves that could clear a level.

**Bounded memory.** At most ``max_pending_fills`` fills wait per horizon (the oldest is
dropped and counted in ``dropped`` beyond that); the evidence is six floats.
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
_LN2_PER_NS_S = math.log(2.0) / 1e9  # ln 2 per second of half-life, per ns of age


@dataclass(frozen=True, slots=True)
class AdverseParams:
    """Move and adverse-selection parameters (the formulas: the module docstring).

    ``horizons_s``: move horizons in seconds, strictly increasing; the first (shortest)
    drives the widening and the toxicity switch. ``ema_alpha``: weight of each new move in
    the per-horizon EMA (0 < alpha <= 1), reported only.

    The evidence, with the defaults and why:

    - ``prior_adverse_move_rate`` (0.5, a share) and ``prior_weight`` (2.0 base orders): the
      Beta(1, 1) prior, uniform: no belief about the market's normal rate, which the data
      then sets after a few base orders of fills. A larger weight is for a market whose
      normal rate is known.
    - ``baseline_half_life_s`` (1800 s): "normal" is the last half hour or so: long against
      a toxic stretch (tens of seconds to minutes), which then barely moves the baseline;
      short enough to follow the market's intraday changes.
    - ``recent_half_life_s`` (60 s): the time scale of a toxic stretch (an informed order
      being worked, a news move). After one, with no new fills, the recent evidence halves
      every half-life; r stays near the stretch's rate while that evidence outweighs
      ``recent_weight`` and then falls back to b: a stretch of N base orders keeps its
      widening for about log2(N / recent_weight) half-lives, then it fades.
    - ``recent_weight`` (5.0 base orders): how much recent evidence it takes to move the
      recent rate halfway from the baseline to what the recent fills show; five base orders
      (five full fills) all run over, against a baseline of 0.5, widen by 1 + 0.25.
    - ``widen_min_markouts`` (20 base orders of resolved moves: fills weigh their size / the
      base size, so a sweep printed as many small fills counts for what it traded): no
      widening before. At 20 full fills a rate near 0.5 is known to about +-0.22 (95 %),
      the size of the excess it would react to; with less, the first ones alone could move
      the estimate.
    - ``toxic_min_markouts`` (20 base orders of resolved moves): the same, for the toxicity
      switch.
    - ``toxic_threshold_bps`` (0.5 bps): recent mean move this far below the baseline's
      is toxic: half a basis point is most of the edge of a tight BTCUSDT quote (half-spread
      0.5 to 1 bps), so flow that runs over us by that much more than usual takes the edge.
      ``toxic_action``: ``"widen"``, ``"pause"`` or ``"off"``.
      ``toxic_widen_multiplier``: half-spread multiplier while toxic (widen).
      ``cooldown_ns``: how long toxicity lasts after a toxic move, ns.

    ``max_pending_fills``: cap on fills awaiting their moves, per horizon.
    """

    horizons_s: tuple[float, ...] = (1.0, 5.0, 30.0)
    ema_alpha: float = 0.1
    prior_adverse_move_rate: float = 0.5
    prior_weight: float = 2.0
    baseline_half_life_s: float = 1800.0
    recent_half_life_s: float = 60.0
    recent_weight: float = 5.0
    widen_min_markouts: int = 20
    toxic_threshold_bps: float = 0.5
    toxic_min_markouts: int = 20
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
        v.real(owner, "ema_alpha", self.ema_alpha, "weight per move", lo=0, hi=1, lo_open=True)
        rate = self.prior_adverse_move_rate
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate < 1:
            raise v.fail(owner, "prior_adverse_move_rate",
                         "a finite number > 0 and < 1 (share of fills)", rate)
        v.real(owner, "prior_weight", self.prior_weight, "base orders", lo=0, lo_open=True)
        v.real(owner, "baseline_half_life_s", self.baseline_half_life_s, "seconds", lo=0,
               lo_open=True)
        v.real(owner, "recent_half_life_s", self.recent_half_life_s, "seconds", lo=0,
               lo_open=True)
        if self.recent_half_life_s > self.baseline_half_life_s:
            raise v.fail(owner, "recent_half_life_s",
                         f"seconds <= baseline_half_life_s ({self.baseline_half_life_s:g})",
                         self.recent_half_life_s)
        v.real(owner, "recent_weight", self.recent_weight, "base orders", lo=0, lo_open=True)
        v.integer(owner, "widen_min_markouts", self.widen_min_markouts, "moves", lo=1)
        v.real(owner, "toxic_threshold_bps", self.toxic_threshold_bps, "bps", lo=0)
        v.integer(owner, "toxic_min_markouts", self.toxic_min_markouts, "moves", lo=1)
        v.choice(owner, "toxic_action", self.toxic_action, TOXIC_ACTIONS)
        v.real(owner, "toxic_widen_multiplier", self.toxic_widen_multiplier, "multiplier", lo=1)
        v.integer(owner, "cooldown_ns", self.cooldown_ns, "ns", lo=0)
        v.integer(owner, "max_pending_fills", self.max_pending_fills, "fills", lo=1)


class AdverseSelection:
    """Moves per horizon, the adverse-move evidence, the widening and the toxicity switch.

    ``size_unit_lots`` is the size (lots) of one unit of evidence: the quoter's base order.
    """

    __slots__ = (
        "_alpha",
        "_fast",
        "_fast_k",
        "_horizons_ns",
        "_last_mid",
        "_next_due",
        "_pending",
        "_prior_a",
        "_prior_weight",
        "_recent_weight",
        "_resolved",
        "_slow",
        "_slow_k",
        "_threshold",
        "_toxic_until",
        "_unit",
        "_updated_ns",
        "_widen",
        "dropped",
        "ema_bps",
        "markouts",
        "params",
        "pause",
    )

    def __init__(self, params: AdverseParams | None = None, *, size_unit_lots: int) -> None:
        if isinstance(size_unit_lots, bool) or not isinstance(size_unit_lots, int) or (
                size_unit_lots < 1):
            raise ValueError(f"AdverseSelection.size_unit_lots: expected an integer >= 1 "
                             f"(lots), got {size_unit_lots!r}")
        self.params = params = params or AdverseParams()
        self._horizons_ns = [round(h * 1e9) for h in params.horizons_s]
        n = len(self._horizons_ns)
        # Per horizon: fills awaiting that horizon's move, (due_ns, side, mid0_ticks, weight).
        self._pending: list[deque[tuple[int, int, float, float]]] = [
            deque(maxlen=params.max_pending_fills) for _ in range(n)
        ]
        self._next_due = _NEVER
        self._last_mid = 0.0  # 0.0: no mid seen yet
        self._alpha = params.ema_alpha
        #: EMA of moves per horizon, bps (0.0 until the first move: see ``markouts``)
        self.ema_bps = [0.0] * n
        #: moves resolved per horizon
        self.markouts = [0] * n
        #: fills dropped from a full pending queue, per horizon
        self.dropped = [0] * n
        self._unit = float(size_unit_lots)
        # The evidence at ``_updated_ns``: [adverse weight, resolved weight, sum of
        # weight x move bps], decaying with the slow and the fast half-life.
        self._slow = [0.0, 0.0, 0.0]
        self._fast = [0.0, 0.0, 0.0]
        self._updated_ns = 0
        self._slow_k = _LN2_PER_NS_S / params.baseline_half_life_s
        self._fast_k = _LN2_PER_NS_S / params.recent_half_life_s
        self._prior_a = params.prior_adverse_move_rate * params.prior_weight
        self._prior_weight = params.prior_weight
        self._recent_weight = params.recent_weight
        # shortest-horizon moves resolved, in base orders (size / base size), never decayed:
        # one sweep split into many small prints is one piece of evidence, not many
        self._resolved = 0.0
        self._threshold = -params.toxic_threshold_bps
        self._toxic_until = -_NEVER
        self._widen = params.toxic_widen_multiplier if params.toxic_action == "widen" else 1.0
        self.pause = params.toxic_action == "pause"

    # -- inputs ---------------------------------------------------------------------------

    def on_fill(self, fill: Fill, mid_ticks: float) -> None:
        """Register our fill; ``mid_ticks`` is the book mid at the fill (ticks)."""
        self.add_fill(int(fill.side), fill.ts_ns, mid_ticks, fill.size)

    def add_fill(self, side: int, ts_ns: int, mid_ticks: float, size_lots: int) -> None:
        """Register a fill of ``size_lots`` on ``side`` (+1 bought, -1 sold) at ``ts_ns`` with
        mid ``mid_ticks``."""
        if not mid_ticks > 0.0:  # no reference mid (or NaN): a move would be meaningless
            return
        if self._last_mid == 0.0:
            self._last_mid = mid_ticks
        weight = size_lots / self._unit
        for i, horizon in enumerate(self._horizons_ns):
            queue = self._pending[i]
            if len(queue) == queue.maxlen:
                self.dropped[i] += 1  # the append below evicts the oldest
            queue.append((ts_ns + horizon, side, mid_ticks, weight))
        due = ts_ns + self._horizons_ns[0]
        if due < self._next_due:
            self._next_due = due

    def on_mid(self, ts_ns: int, mid_ticks: float) -> None:
        """A book event at ``ts_ns`` left the mid at ``mid_ticks``: resolve due moves.

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
        """Resolve every pending move due at or before ``upto_ns`` with ``mid``."""
        if not mid > 0.0:
            return
        alpha = self._alpha
        for i, queue in enumerate(self._pending):
            while queue and queue[0][0] <= upto_ns:
                due, side, mid0, weight = queue.popleft()
                move = side * (mid - mid0) / mid0 * 1e4
                n = self.markouts[i]
                ema = move if n == 0 else self.ema_bps[i] + alpha * (move - self.ema_bps[i])
                self.ema_bps[i] = ema
                self.markouts[i] = n + 1
                if i == 0:
                    self._add_evidence(due, move, weight, now_ns)

    def _add_evidence(self, due_ns: int, move: float, weight: float, now_ns: int) -> None:
        """One shortest-horizon move, evidence as of its due time; judge toxicity."""
        # a fill reported late resolves after later ones: its evidence joins at the latest
        # time, never moving the decay clock back
        if due_ns > self._updated_ns:
            self._decay(due_ns)
        adverse = weight if move < 0.0 else 0.0
        for sums in (self._slow, self._fast):
            sums[0] += adverse
            sums[1] += weight
            sums[2] += weight * move
        self._resolved += weight
        if (
            (self._widen != 1.0 or self.pause)
            and self._resolved >= self.params.toxic_min_markouts
            and self._recent_move_excess(1.0, 1.0) < self._threshold
        ):
            self._toxic_until = now_ns + self.params.cooldown_ns

    def _decay(self, ts_ns: int) -> None:
        """Age the evidence to ``ts_ns`` (> the last update)."""
        age = ts_ns - self._updated_ns
        self._updated_ns = ts_ns
        slow = math.exp(-self._slow_k * age)
        fast = math.exp(-self._fast_k * age)
        for j in range(3):
            self._slow[j] *= slow
            self._fast[j] *= fast

    def _factors(self, ts_ns: int) -> tuple[float, float]:
        """(slow, fast) decay factors from the last update to ``ts_ns`` (1 at or before)."""
        age = ts_ns - self._updated_ns
        if age <= 0:
            return 1.0, 1.0
        return math.exp(-self._slow_k * age), math.exp(-self._fast_k * age)

    def _rates(self, slow: float, fast: float) -> tuple[float, float]:
        """(baseline b, recent r) adverse-move rates with the evidence scaled by the
        factors."""
        a_slow, n_slow = self._slow[0] * slow, self._slow[1] * slow
        baseline = (a_slow + self._prior_a) / (n_slow + self._prior_weight)
        k = self._recent_weight
        recent = (self._fast[0] * fast + k * baseline) / (self._fast[1] * fast + k)
        return baseline, recent

    def _recent_move_excess(self, slow: float, fast: float) -> float:
        """mr - mb, bps: the recent mean move less the baseline's (< 0: recent fills worse)."""
        baseline = self._slow[2] * slow / (self._slow[1] * slow + self._prior_weight)
        k = self._recent_weight
        recent = (self._fast[2] * fast + k * baseline) / (self._fast[1] * fast + k)
        return recent - baseline

    # -- outputs --------------------------------------------------------------------------

    def baseline_adverse_move_rate(self, ts_ns: int) -> float:
        """b at ``ts_ns``: this market's normal adverse-move rate (share, 0..1)."""
        return self._rates(*self._factors(ts_ns))[0]

    def recent_adverse_move_rate(self, ts_ns: int) -> float:
        """r at ``ts_ns``: the recent adverse-move rate, shrunk toward b (share, 0..1)."""
        return self._rates(*self._factors(ts_ns))[1]

    def adverse_move_excess(self, ts_ns: int) -> float:
        """e at ``ts_ns``: max(0, r - b), 0 before ``widen_min_markouts`` base orders of
        resolved moves; the
        spread model widens the half-spread by the factor (1 + e)."""
        if self._resolved < self.params.widen_min_markouts:
            return 0.0
        baseline, recent = self._rates(*self._factors(ts_ns))
        return recent - baseline if recent > baseline else 0.0

    @property
    def resolved(self) -> float:
        """Shortest-horizon moves resolved so far, in base orders (size / base size): the
        evidence the minimums are judged on, never decayed."""
        return self._resolved

    def ema_by_horizon(self) -> dict[float, float | None]:
        """Horizon (s) -> move EMA (bps), None before that horizon's first move."""
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
        """Fills still awaiting their longest-horizon move."""
        return len(self._pending[-1])
