"""Performance metrics of a run, computed from its journal (fills + samples).

Everything here is pure and deterministic: no clock is read, nothing is read or written
(:mod:`mmdaemon.journal_reader` reads the journal). The same functions serve a replay and
a live run, because both leave the same journal behind (:mod:`mmdaemon.journal`): every
fill, and a sample of the market, our quote, our position and our order counters every
``report.sample_ms`` of event time. The Sharpe ratio and the drawdown of the PnL path are
:mod:`mmdaemon.sharpe`'s, a venue's trading hours :mod:`mmdaemon.market_hours`' and the
definition of every metric :mod:`mmdaemon.metric_definitions`'.

Units and conventions
---------------------
- Prices are integer **ticks**, sizes integer **lots**, times integer **ns** (UTC epoch).
- The **mid** (the mark) is ``(best_bid + best_ask) / 2`` ticks of a sample with a
  two-sided book. Inside this module mids are kept as integer *half ticks*
  (``best_bid + best_ask``), so every money sum is an exact integer; money leaves as a
  float in the **quote currency** (one notional unit = ``tick_size x lot_size``).
- **Side** is +1 for a buy, -1 for a sell; **fees** are positive when paid, negative for
  rebates (the journal's convention).
- The **mid at a fill** is the mid *before the market event that filled us*, as the journal
  recorded it with the fill (``Fill.mid_x2``). A journal written before that was recorded
  falls back to the latest sample with a two-sided book at or before the fill (up to one
  sample interval old, and after the move that filled us when the sample was taken at the
  fill); ``fills_with_exact_mid`` says how many fills had the exact one. A fill with
  neither has no mid: its reference is its own price (zero edge) and it is left out of bps
  averages.
- **Markouts** (win, negative-markout and adverse-move rates, markout bps and money) are
  :mod:`mmdaemon.markouts`' exact event-level figures, read from the journal's ``markouts``
  table and summed by the same code as the daemon's own; a journal without them reports
  its fills as unresolved rather than measure them on samples.
- **bps** of a fill are relative to its mid at the fill.

PnL decomposition (exact, in integers)
--------------------------------------
With ``ref_i`` the mid at fill ``i``, ``m_T`` the final mark (the last sample's mid):

- spread capture ``S = sum_i side_i x size_i x (ref_i - price_i)``: the edge against the
  mid at the moment of each fill;
- inventory PnL ``I = sum_i side_i x size_i x (m_T - ref_i)``: the mark-to-market of what
  each fill left in inventory, from its mid at the fill to the final mark;
- fees ``F = sum_i fee_i``;
- funding ``G = sum_k amount_k`` over the funding payments of a perpetual-futures position
  (received > 0, paid < 0; none on spot and in a paper run);
- total ``S + I - F + G = cash + position x m_T - F + G``, the mark-to-market PnL of
  :class:`mmdaemon.orders.position.Position`, identically (the sum telescopes).

The same decomposition holds at every sample ``j`` (fills and payments up to ``t_j``, mark
``m_j``),
which gives the PnL time series behind the Sharpe ratio, the drawdown and the hour-of-day
attribution.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from itertools import chain
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from mmdaemon.market_hours import SECONDS_PER_DAY, SECONDS_PER_YEAR
from mmdaemon.markouts import (
    DEFAULT_HORIZONS_S,
    HorizonStats,
    horizons_ns,
    journaled,
    journaled_stats,
    quote_currency,
)
from mmdaemon.model import NS_PER_S, Fill, Funding, Instrument, Level
from mmdaemon.orders.position import Position
from mmdaemon.sharpe import MIN_SHARPE_INTERVALS, Drawdown, SharpeGrid, sharpe_stats

DEFAULT_MAX_SPREAD_BPS = 10.0


class SampleRow(NamedTuple):
    """One ``samples`` row of the journal, in column order (a :data:`journal.Sample`).

    Prices in ticks (``best_bid``/``best_ask`` None without a usable book), sizes and
    position in lots, ``fair`` in fractional ticks (0: no quote), ``ts_ns`` event time.
    ``orders``/``amends``/``cancels`` are cumulative counts of order requests of run
    ``run_id`` (they restart at 0 with every run).
    """

    run_id: int
    ts_ns: int
    best_bid: int | None
    best_ask: int | None
    fair: float
    bid: int
    bid_size: int
    ask: int
    ask_size: int
    position: int
    state: str
    orders: int
    amends: int
    cancels: int


SampleLike = tuple[int, int, int | None, int | None, float, int, int, int, int, int, str, int,
                   int, int]
"""What :func:`compute_metrics` accepts per sample: a :class:`SampleRow` or a plain tuple."""


class SampleLevels(NamedTuple):
    """One ``sample_levels`` row of the journal: the gated ladder of the sample at
    (``run_id``, ``ts_ns``), each side's ``(price ticks, size lots)`` levels best first. Only
    samples with more than one level on a side have one."""

    run_id: int
    ts_ns: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


def ladder_levels(levels: Sequence[SampleLevels],
                  samples: Sequence[SampleLike]) -> list[dict[str, Any]]:
    """Per side and level (0 = innermost) over the samples that quoted a ladder: the share
    of them quoting that level (``quoted_share``), its mean size (``mean_size_lots``) and
    its mean distance from the market's mid behind it (``mean_distance_bps``, bps of the
    mid; samples without a two-sided book are left out of the distance). Empty without
    ladder samples (a run of one level a side)."""
    if not levels:
        return []
    mids = {(s[0], s[1]): (s[2] + s[3]) / 2 for s in samples
            if s[2] is not None and s[3] is not None}
    depth = max(max(len(r.bids), len(r.asks)) for r in levels)
    out: list[dict[str, Any]] = []
    for side, sign in (("bid", 1), ("ask", -1)):
        for i in range(depth):
            sizes: list[int] = []
            dists: list[float] = []
            for row in levels:
                book = row.bids if sign > 0 else row.asks
                if i < len(book):
                    price, size = book[i]
                    sizes.append(size)
                    mid = mids.get((row.run_id, row.ts_ns))
                    if mid:
                        dists.append(sign * (mid - price) / mid * 1e4)
            out.append({"side": side, "level": i, "quoted_share": len(sizes) / len(levels),
                        "mean_size_lots": statistics.fmean(sizes) if sizes else None,
                        "mean_distance_bps": statistics.fmean(dists) if dists else None})
    return out


# -- small public helpers -----------------------------------------------------------------


def quoted_spread_bps(bid: int, ask: int) -> float:
    """Our quoted spread in bps of the quote's own midpoint: ``(ask-bid)/((ask+bid)/2) x 1e4``.

    The quote's midpoint (not the market's) is used so that the number needs nothing but
    the quote and is defined even without a book.
    """
    return 20_000.0 * (ask - bid) / (ask + bid)


def two_sided(sample: SampleLike) -> bool:
    """True when the sample's gated quote has a positive size on both sides."""
    return sample[6] > 0 and sample[8] > 0 and sample[5] > 0 and sample[7] > 0


def sample_weights_ns(samples: Sequence[SampleLike]) -> list[int]:
    """How long each sample's state held, in ns: until the next sample of the same run.

    The last sample of a run weighs 0: what happened between a stop and the next start was
    not observed, so it must not count as time at that inventory or quote.
    ``samples`` must be in time order.
    """
    weights = [0] * len(samples)
    for j in range(len(samples) - 1):
        if samples[j + 1][0] == samples[j][0]:
            weights[j] = samples[j + 1][1] - samples[j][1]
    return weights


@dataclass(frozen=True)
class PnlSeries:
    """Mark-to-market PnL at every sample with a two-sided book, for plots.

    ``ts_ns`` event times; ``mid`` the mark in quote currency per base unit; ``total``,
    ``spread_capture``, ``inventory``, ``fees`` and ``funding`` cumulative in quote
    currency, with ``total = spread_capture + inventory - fees + funding`` (fills and
    funding payments up to each time, marked at its mid).
    """

    ts_ns: list[int]
    mid: list[float]
    total: list[float]
    spread_capture: list[float]
    inventory: list[float]
    fees: list[float]
    funding: list[float]


# -- the core computation -------------------------------------------------------------------


Step = Callable[[int, int, int, int, int, int, int], None]
"""What :class:`_Walk` hands on per two-sided sample: ``(t, m2, pnl2, spread2, inventory2,
fees2, funding2)``, time ns, mid and money in half units, money cumulative."""


class _Walk:
    """The exact PnL path walked one sample at a time, in time order: the fills (in
    memory, time order) and funding payments applied up to each sample with a two-sided
    book, and each fill's reference mid (``ref2``, ``has_mid``, ``mid_age``) found on the
    way.

    A fill without a journaled mid takes the latest two-sided sample at or before it, the
    last of several at the same time: so the samples of one event time are held until a
    later time comes (:meth:`add`) or the walk ends (:meth:`finish`). Memory is the fills
    and the samples of one instant, however long the run. Each two-sided sample goes to
    ``on_step`` once the fills and payments up to its time are in.
    """

    def __init__(self, fills: list[Fill], funding: list[Funding], on_step: Step) -> None:
        self.fs, self.gs, self.on_step = fills, funding, on_step
        self.ref2 = [0] * len(fills)  # per fill: mid at the fill, half ticks (2 x price without)
        self.has_mid = [False] * len(fills)  # journaled, or a sample mid at or before it
        self.mid_age: list[int] = []  # per fill with a sample's mid: its age at the fill, ns
        self.marked = 0  # samples with a two-sided book
        self._group: list[int] = []  # mids of the two-sided samples at _group_t
        self._group_t = 0
        self._last: tuple[int, int] | None = None  # (t, m2): the last sample before _group
        self._i = self._k = 0  # fills, payments applied
        self._pos = self._cash2 = self._sref2 = self._sc2 = self._fee2 = self._fund2 = 0

    def add(self, t: int, m2: int) -> None:
        """A sample with a two-sided book at ``t`` (ns), mid ``m2`` (half ticks)."""
        if self._group and t != self._group_t:
            self._flush()
        self._group_t = t
        self._group.append(m2)

    def _resolve(self, i: int, last: tuple[int, int] | None) -> None:
        """Fill ``i``'s mid: its journaled one, else ``last``'s (the latest sample at or
        before it), else none (its own price)."""
        f = self.fs[i]
        if f.mid_x2 > 0:  # journaled: the mid before the event that filled us, exact
            self.has_mid[i], self.ref2[i] = True, f.mid_x2
        elif last is None:
            self.ref2[i] = 2 * f.price
        else:
            self.has_mid[i], self.ref2[i] = True, last[1]
            self.mid_age.append(f.ts_ns - last[0])

    def _flush(self) -> None:
        t, fs, gs = self._group_t, self.fs, self.gs
        for m2 in self._group:
            while self._k < len(gs) and gs[self._k].ts_ns <= t:
                self._fund2 += 2 * gs[self._k].amount
                self._k += 1
            while self._i < len(fs) and fs[self._i].ts_ns <= t:
                i = self._i
                f = fs[i]
                self._resolve(i, (t, self._group[-1]) if f.ts_ns == t else self._last)
                signed = int(f.side) * f.size
                self._pos += signed
                self._cash2 -= 2 * signed * f.price
                self._sref2 += signed * self.ref2[i]
                self._sc2 += signed * (self.ref2[i] - 2 * f.price)
                self._fee2 += 2 * f.fee
                self._i += 1
            inv2 = self._pos * m2 - self._sref2
            pnl2 = self._sc2 + inv2 - self._fee2 + self._fund2
            # the identity the module docstring promises, checked where it is cheap
            assert pnl2 == self._cash2 + self._pos * m2 - self._fee2 + self._fund2
            self.on_step(t, m2, pnl2, self._sc2, inv2, self._fee2, self._fund2)
        self.marked += len(self._group)
        self._last = (t, self._group[-1])
        self._group = []

    def finish(self) -> _Totals:
        """End the walk: the fills after the last sample resolved, the run's totals."""
        if self._group:
            self._flush()
        for i in range(self._i, len(self.fs)):
            self._resolve(i, self._last)
        fs = self.fs
        # without any sample with a book there is no mid to mark at; the last fill's price
        # is the only market price the journal then knows
        final_m2 = (self._last[1] if self._last is not None
                    else (2 * fs[-1].price if fs else None))
        tot_sc2 = tot_inv2 = tot_fee2 = 0
        for f, r2 in zip(fs, self.ref2, strict=True):
            signed = int(f.side) * f.size
            tot_sc2 += signed * (r2 - 2 * f.price)
            tot_fee2 += 2 * f.fee
            if final_m2 is not None:
                tot_inv2 += signed * (final_m2 - r2)
        return _Totals(final_m2, tot_sc2, tot_inv2, tot_fee2,
                       2 * sum(g.amount for g in self.gs))


class _Totals(NamedTuple):
    """Totals over all fills and payments, marked at the final mark, half notional units."""

    final_m2: int | None
    spread2: int
    inventory2: int
    fees2: int
    funding2: int


def _by_time(samples: Iterable[SampleLike]) -> Iterator[SampleLike]:
    """``samples`` in time order: a sequence sorted (stable, so equal times keep its
    order), anything else streamed as it comes, which must be in time order already."""
    if isinstance(samples, Sequence):
        yield from sorted(samples, key=lambda s: s[1])
        return
    last = None
    for s in samples:
        if last is not None and s[1] < last:
            raise ValueError(f"samples streamed out of time order: {s[1]} after {last}")
        last = s[1]
        yield s


def _money_per_half_unit(instrument: Instrument) -> Fraction:
    """Quote currency per half notional unit: tick_size x lot_size / 2."""
    return Fraction(instrument.tick_size) * Fraction(instrument.lot_size) / 2


def pnl_series(fills: Sequence[Fill], samples: Sequence[SampleLike],
               instrument: Instrument, funding: Sequence[Funding] = ()) -> PnlSeries:
    """The mark-to-market PnL and its components at every two-sided sample (see
    :class:`PnlSeries`)."""
    half = _money_per_half_unit(instrument)
    tick = Fraction(instrument.tick_size)
    series = PnlSeries([], [], [], [], [], [], [])

    def step(t: int, m2: int, pnl2: int, spread2: int, inventory2: int, fees2: int,
             funding2: int) -> None:
        series.ts_ns.append(t)
        series.mid.append(float(m2 * tick / 2))
        series.total.append(float(pnl2 * half))
        series.spread_capture.append(float(spread2 * half))
        series.inventory.append(float(inventory2 * half))
        series.fees.append(float(fees2 * half))
        series.funding.append(float(funding2 * half))

    walk = _Walk(sorted(fills, key=lambda f: f.ts_ns), sorted(funding, key=lambda g: g.ts_ns),
                 step)
    for s in _by_time(samples):
        if s[2] is not None and s[3] is not None:
            walk.add(s[1], s[2] + s[3])
    walk.finish()
    return series


# -- buckets by hour of day / by day ------------------------------------------------------


@dataclass
class _Bucket:
    """Sums for one hour of day (or one day); money in half notional units."""

    fills: int = 0
    volume_lots: int = 0
    spread2: int = 0
    fees2: int = 0
    funding2: int = 0
    inventory2: int = 0
    sampled_ns: int = 0
    abs_inventory_ns: int = 0  # sum of |position| x weight: lots x ns
    uptime_ns: int = 0
    requests: int = 0
    # the fills' markouts at the shortest horizon (its horizon_ns is not used here)
    short: HorizonStats = field(default_factory=lambda: HorizonStats(0))

    def row(self, half: Fraction, lot: Fraction) -> dict[str, Any]:
        pnl2 = self.spread2 + self.inventory2 - self.fees2 + self.funding2
        return {
            "sampled_s": self.sampled_ns / NS_PER_S,
            "fills": self.fills,
            "volume": float(self.volume_lots * lot),
            "volume_lots": self.volume_lots,
            "pnl": float(pnl2 * half),
            "spread_capture_pnl": float(self.spread2 * half),
            "inventory_pnl": float(self.inventory2 * half),
            "fees": float(self.fees2 * half),
            "funding": float(self.funding2 * half),
            "markout_bps": self.short.bps(self.short.markout2),
            "markout_fills": self.short.fills,
            "markout_lots": self.short.lots,
            "win_rate": self.short.share(self.short.win_lots),
            "negative_markout_rate": self.short.share(self.short.negative_lots),
            "adverse_move_rate": self.short.share(self.short.adverse_lots),
            "avg_abs_inventory": (float(Fraction(self.abs_inventory_ns, self.sampled_ns) * lot)
                                  if self.sampled_ns else None),
            "quote_uptime": _ratio(self.uptime_ns, self.sampled_ns),
            "order_requests": self.requests,
            "order_to_trade": _ratio(self.requests, self.fills),
        }


def _ratio(num: float, den: float) -> float | None:
    """``num / den`` as a float, None when the denominator is 0 (undefined, not zero)."""
    return float(num) / float(den) if den else None


def _local_buckets(tz: ZoneInfo, by_hour: dict[int, _Bucket], by_day: dict[str, _Bucket]
                   ) -> Callable[[int], tuple[_Bucket, _Bucket]]:
    """``ts_ns ->`` the buckets of its hour of day and of its ISO date in ``tz``, made in
    ``by_hour`` and ``by_day`` when new.

    Memoised per UTC minute: every real UTC offset is a whole number of minutes, so all
    instants of one UTC minute share a local hour and date, and samples every 250 ms would
    otherwise pay for a datetime conversion (and two dict lookups) each.
    """
    memo: dict[int, tuple[_Bucket, _Bucket]] = {}

    def buckets(ts_ns: int) -> tuple[_Bucket, _Bucket]:
        minute = ts_ns // (60 * NS_PER_S)
        hit = memo.get(minute)
        if hit is None:
            local = datetime.fromtimestamp(minute * 60, tz)
            hour, day = local.hour, local.date().isoformat()
            hb, db = by_hour.get(hour), by_day.get(day)
            if hb is None:
                hb = by_hour[hour] = _Bucket()
            if db is None:
                db = by_day[day] = _Bucket()
            hit = memo[minute] = (hb, db)
        return hit

    return buckets


# -- metrics ------------------------------------------------------------------------------

def compute_metrics(
    fills: Sequence[Fill],
    samples: Iterable[SampleLike],
    instrument: Instrument,
    *,
    markouts: Sequence[tuple[str, int, int, int]] = (),
    funding: Sequence[Funding] = (),
    horizons_s: Sequence[float] = DEFAULT_HORIZONS_S,
    currency: str | None = None,
    max_spread_bps: float = DEFAULT_MAX_SPREAD_BPS,
    tz: str = "UTC",
    sharpe_interval_s: float = 60,
    seconds_per_year: float = SECONDS_PER_YEAR,
    trading_day_s: float = SECONDS_PER_DAY,
) -> dict[str, Any]:
    """The run's metrics as a JSON-ready dict (plain ints, floats, None, str, lists, dicts).

    See :data:`DEFINITIONS` for the exact definition and unit of every key. Money is in the
    quote currency (named by ``currency``, by default the symbol's quote asset: USDT for
    BTCUSDT), sizes in base currency (``*_lots`` keys in lots), bps of the mid at the fill,
    times in s. A metric whose denominator is zero is None (undefined), not 0.

    ``samples`` a sequence (sorted here by time, stably) or any other iterable, streamed
    in the order it comes, which must be time order (:func:`mmdaemon.journal_reader.
    stream_samples`; ValueError otherwise): memory is then the fills and markouts, not the
    samples.

    ``funding`` are the journal's funding payments
    (:func:`mmdaemon.journal_reader.load_funding`; none on spot). ``markouts`` are the
    journal's resolved markouts
    (:func:`mmdaemon.journal_reader.load_markouts`); a fill without one at a horizon is
    unresolved there. ``horizons_s`` are the markout horizons
    reported (the daemon's ``report.markout_horizons_s``, 1, 5, 30, 60 s by default; the
    journal records the ones it ran with); the shortest is the one the headline rates use.
    ``max_spread_bps`` is the widest
    quoted spread that counts as quoting for the uptime. ``tz`` names the time zone of the
    hour-of-day and daily tables (e.g. ``"America/New_York"`` for US equities). The Sharpe
    ratio uses PnL changes over ``sharpe_interval_s`` and annualises with
    ``seconds_per_year`` of trading (365 days of 24 h for crypto; see :func:`market_hours`);
    the per-day extrapolations count ``trading_day_s`` of trading a day.
    """
    hz = horizons_ns(horizons_s)  # ValueError naming the rule
    if sharpe_interval_s <= 0:
        raise ValueError(f"sharpe_interval_s must be positive, got {sharpe_interval_s}")
    if max_spread_bps < 0:
        raise ValueError(f"max_spread_bps must be >= 0, got {max_spread_bps}")
    zone = ZoneInfo(tz)
    fs = sorted(fills, key=lambda f: f.ts_ns)  # stable: equal times keep the journal's order
    half = _money_per_half_unit(instrument)
    half_num, half_den = half.numerator, half.denominator
    tick = Fraction(instrument.tick_size)
    lot = Fraction(instrument.lot_size)
    by_hour: dict[int, _Bucket] = {}
    by_day: dict[str, _Bucket] = {}
    buckets = _local_buckets(zone, by_hour, by_day)

    # -- the PnL path, one two-sided sample at a time: inventory PnL per step between two
    # of them (to the step's end time), the Sharpe grid, the drawdown
    grid = SharpeGrid(sharpe_interval_s)
    drawdown = Drawdown()
    prev_inv2 = last_vt = 0

    def step(t: int, m2: int, pnl2: int, spread2: int, inventory2: int, fees2: int,
             funding2: int) -> None:
        nonlocal prev_inv2, last_vt
        for b in buckets(t):
            b.inventory2 += inventory2 - prev_inv2
        prev_inv2, last_vt = inventory2, t
        grid.add(t, pnl2)
        # float(pnl2 * half) without a Fraction per sample: int / int is correctly rounded
        drawdown.add(t, pnl2 * half_num / half_den)

    walk = _Walk(fs, sorted(funding, key=lambda g: g.ts_ns), step)

    # -- samples: time-weighted inventory, uptime, spreads, order requests; a sample's
    # weight is known when the next one comes (:func:`sample_weights_ns`)
    max_spread = Fraction(str(max_spread_bps))
    spread_num, spread_den = max_spread.numerator, max_spread.denominator
    sampled_ns = abs_inv_ns = uptime_ns = two_sided_ns = any_side_ns = 0
    two_sided_samples = market_samples = sample_count = 0
    spread_bps_ns = 0.0
    market_bps_ns = 0.0
    market_ns = 0
    last_counts: dict[int, int] = {}  # run -> requests at its previous sample
    run_totals: dict[int, tuple[int, int, int]] = {}
    max_abs_inv = 0
    first_ns: int | None = None
    last_ns: int | None = None
    prev: SampleLike | None = None
    for s in chain(_by_time(samples), [None]):
        if s is not None:
            if s[2] is not None and s[3] is not None:
                walk.add(s[1], s[2] + s[3])
            sample_count += 1
            if first_ns is None:
                first_ns = s[1]
        if prev is None:
            prev = s
            continue
        w = s[1] - prev[1] if s is not None and s[0] == prev[0] else 0
        run, ts, bb, ba, _fair, qb, qbs, qa, qas, position = prev[:10]
        places, amends, cancels = prev[11], prev[12], prev[13]
        prev, last_ns = s, ts
        requests = places + amends + cancels
        hb, db = buckets(ts)
        for b in (hb, db):
            b.requests += requests - last_counts.get(run, 0)
        last_counts[run] = requests
        run_totals[run] = (places, amends, cancels)
        max_abs_inv = max(max_abs_inv, abs(position))
        both = qbs > 0 and qas > 0 and qb > 0 and qa > 0
        # exact comparison: 2e4 x (ask - bid) / (ask + bid) <= max, without float rounding
        # (in integers: max is spread_num / spread_den)
        inside = both and 20_000 * (qa - qb) * spread_den <= spread_num * (qa + qb)
        sampled_ns += w
        abs_inv_ns += abs(position) * w
        any_side_ns += w if (qbs > 0 or qas > 0) else 0
        if both:
            two_sided_samples += 1
            two_sided_ns += w
            spread_bps_ns += quoted_spread_bps(qb, qa) * w
        if inside:
            uptime_ns += w
        if bb is not None and ba is not None:
            market_samples += 1
            market_ns += w
            market_bps_ns += 20_000.0 * (ba - bb) / (ba + bb) * w
        for b in (hb, db):
            b.sampled_ns += w
            b.abs_inventory_ns += abs(position) * w
            b.uptime_ns += w if inside else 0
    totals = walk.finish()
    # fills after the last sample (a live journal whose venue stamps fills ahead of the
    # daemon's samples: a sim replaying faster than 1x) are marked at the last sample's mid
    # too, a move their own mid need not share: it is booked in the last fill's hour and
    # day, so the buckets still sum to the total exactly
    rest2 = totals.inventory2 - prev_inv2
    if rest2 and walk.marked and fs:
        for b in buckets(max(fs[-1].ts_ns, last_vt)):
            b.inventory2 += rest2

    # -- fills: volume, spread capture, fees, edge in bps
    volume_lots = maker_fills = 0
    edge_num = 0.0
    edge_den = 0
    for f, r2, ok in zip(fs, walk.ref2, walk.has_mid, strict=True):
        signed = int(f.side) * f.size
        volume_lots += f.size
        maker_fills += f.maker
        for b in buckets(f.ts_ns):
            b.fills += 1
            b.volume_lots += f.size
            b.spread2 += signed * (r2 - 2 * f.price)
            b.fees2 += 2 * f.fee
        if ok:
            edge_num += f.size * 1e4 * int(f.side) * (r2 - 2 * f.price) / r2
            edge_den += f.size

    for g in funding:  # a payment counts in the hour and day it was booked
        for b in buckets(g.ts_ns):
            b.funding2 += 2 * g.amount

    # the exact position path reaches peaks that fall between two samples
    pos = 0
    for f in fs:
        pos += int(f.side) * f.size
        max_abs_inv = max(max_abs_inv, abs(pos))

    places = sum(t[0] for t in run_totals.values())
    amends = sum(t[1] for t in run_totals.values())
    cancels = sum(t[2] for t in run_totals.values())
    order_requests = places + amends + cancels

    # -- markouts: the journal's exact ones, summed as the daemon sums them
    mk_rows = journaled_stats(hz, fs, markouts).rows(instrument)
    short = mk_rows[0]
    for m in journaled(fs, (row for row in markouts if row[1] == hz[0])):
        f = m.fill
        for b in buckets(f.ts_ns):
            b.short.add(int(f.side), f.price, f.size, f.mid_x2, m.mid_x2)

    # -- the PnL series: Sharpe on a fixed grid, maximum drawdown
    total2 = totals.spread2 + totals.inventory2 - totals.fees2 + totals.funding2
    exact_mids = sum(f.mid_x2 > 0 for f in fs)
    sharpe = sharpe_stats(grid.vt, grid.pnl2, total2, half, sharpe_interval_s,
                          seconds_per_year)
    max_dd, peak_ns, trough_ns = drawdown.result()

    # -- totals, cross-checked against the position keeper's arithmetic
    total = float(total2 * half)
    realized = unrealized = None
    if totals.final_m2 is not None:
        book = Position()  # the daemon's own bookkeeping, as an independent check
        for f in fs:
            book.apply(f)
        for g in funding:
            book.apply_funding(g.amount)
        mark = Fraction(totals.final_m2, 2)
        assert book.total(mark) * 2 == total2
        realized = float(book.realized * 2 * half)
        unrealized = float(book.unrealized(mark) * 2 * half)
    final_position = sum(int(f.side) * f.size for f in fs)
    sampled_s = sampled_ns / NS_PER_S
    avg_abs_inv_lots = Fraction(abs_inv_ns, sampled_ns) if sampled_ns else None
    turnover = (float(volume_lots / avg_abs_inv_lots) if avg_abs_inv_lots else None)

    hour_rows = [{"hour": h, **by_hour[h].row(half, lot)} for h in sorted(by_hour)]
    day_rows = [{"date": d, **by_day[d].row(half, lot)} for d in sorted(by_day)]
    return {
        "symbol": instrument.symbol,
        "tz": tz,
        "start_ns": first_ns,
        "end_ns": last_ns,
        "sampled_s": sampled_s,
        "samples": sample_count,
        "runs": len(run_totals),
        "fills": len(fs),
        "maker_share": _ratio(maker_fills, len(fs)),
        "volume": float(volume_lots * lot),
        "volume_lots": volume_lots,
        "position": float(final_position * lot),
        "position_lots": final_position,
        "final_mark": (float(totals.final_m2 * tick / 2) if totals.final_m2 is not None else None),
        "total_pnl": total,
        "spread_capture_pnl": float(totals.spread2 * half),
        "inventory_pnl": float(totals.inventory2 * half),
        "fees": float(totals.fees2 * half),
        "funding": float(totals.funding2 * half),
        "funding_payments": len(funding),
        "realized_pnl": realized,
        "unrealized_pnl": unrealized,
        "pnl_per_hour_extrapolated": total / (sampled_s / 3600) if sampled_s else None,
        "pnl_per_day_extrapolated": (total / (sampled_s / trading_day_s) if sampled_s
                                     else None),
        "trading_day_s": trading_day_s,
        "seconds_per_year": seconds_per_year,
        "sharpe": sharpe.sharpe,
        "sharpe_unavailable_reason": sharpe.unavailable_reason,
        "sharpe_interval_s": sharpe_interval_s,
        "sharpe_intervals": sharpe.intervals,
        "sharpe_min_intervals": MIN_SHARPE_INTERVALS,
        "sharpe_last_interval_s": sharpe.last_interval_s,
        "interval_pnl_mean": sharpe.mean,
        "interval_pnl_std": sharpe.std,
        "max_drawdown": max_dd,
        "max_drawdown_peak_ns": peak_ns,
        "max_drawdown_trough_ns": trough_ns,
        "currency": currency or quote_currency(instrument.symbol),
        "markout_horizon_s": short["horizon_s"],
        "win_rate": short["win_rate"],
        "negative_markout_rate": short["negative_markout_rate"],
        "adverse_move_rate": short["adverse_move_rate"],
        "avg_spread_captured_bps": _ratio(edge_num, edge_den),
        "fills_with_exact_mid": exact_mids,
        "fills_with_sampled_mid": sum(walk.has_mid) - exact_mids,
        "fills_without_mid": sum(not ok for ok in walk.has_mid),
        "mid_at_fill_age_ms_median": (statistics.median(walk.mid_age) / 1e6
                                      if walk.mid_age else None),
        "mid_at_fill_age_ms_max": max(walk.mid_age) / 1e6 if walk.mid_age else None,
        "markouts": mk_rows,
        "avg_abs_inventory": (float(avg_abs_inv_lots * lot)
                              if avg_abs_inv_lots is not None else None),
        "avg_abs_inventory_lots": (float(avg_abs_inv_lots)
                                   if avg_abs_inv_lots is not None else None),
        "max_abs_inventory": float(max_abs_inv * lot),
        "max_abs_inventory_lots": max_abs_inv,
        "inventory_turnover": turnover,
        "inventory_turnover_per_day_extrapolated": (
            turnover / (sampled_s / trading_day_s) if turnover is not None and sampled_s
            else None),
        "places": places,
        "amends": amends,
        "cancels": cancels,
        "order_requests": order_requests,
        "order_to_trade": _ratio(order_requests, len(fs)),
        "fill_rate": _ratio(len(fs), places + amends),
        "max_spread_bps": max_spread_bps,
        "quote_uptime": _ratio(uptime_ns, sampled_ns),
        "two_sided_share": _ratio(two_sided_ns, sampled_ns),
        "any_side_share": _ratio(any_side_ns, sampled_ns),
        "quoted_spread_bps_mean": _ratio(spread_bps_ns, two_sided_ns),
        "market_spread_bps_mean": _ratio(market_bps_ns, market_ns),
        # the sample sizes behind the time-weighted figures and the PnL path
        "two_sided_samples": two_sided_samples,
        "two_sided_s": two_sided_ns / NS_PER_S,
        "market_samples": market_samples,
        "market_s": market_ns / NS_PER_S,
        "marked_samples": walk.marked,
        "fills_with_mid": sum(walk.has_mid),
        "by_hour": hour_rows,
        "by_day": day_rows,
    }
