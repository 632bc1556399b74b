"""The report's plots: one PNG per figure, drawn with matplotlib's Agg backend.

Only :func:`mmdaemon.report.write_report` imports this module, so matplotlib (about half a
second to import) loads when a report is written and never for a replay's summary, whose
metrics come from :mod:`mmdaemon.analytics` alone. Each function draws one figure into
``path``; times on the x axes are event times shown in ``zone``, prices and positions in
the quote and base currencies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")  # before pyplot: headless, deterministic raster output

import matplotlib.dates as mdates
import matplotlib.pyplot as plt

from mmdaemon.analytics import (
    SampleLevels,
    SampleRow,
    pnl_series,
    quoted_spread_bps,
    sample_weights_ns,
)
from mmdaemon.model import NS_PER_S, Fill, Instrument, Side

_MAX_POINTS = 20_000  # per line: a week of 250 ms samples would make a slow, unreadable plot
_DPI = 100
_PNG_META = {"Software": None}  # no version string: the same data gives the same bytes


def _times(ts_ns: Sequence[int]) -> list[float]:
    """matplotlib date numbers (days since its epoch) of ns timestamps; the axis formatter
    shows them in the report's time zone."""
    stamps = [datetime.fromtimestamp(t / NS_PER_S, UTC) for t in ts_ns]
    return list(mdates.date2num(stamps))  # type: ignore[no-untyped-call]


def _stride(n: int) -> int:
    """Keep every k-th point so a line has at most ``_MAX_POINTS`` (tables keep it all)."""
    return max(1, -(-n // _MAX_POINTS))


def _time_axis(ax: Any, zone: ZoneInfo) -> None:
    # matplotlib.dates is not annotated, hence the ignores here and in _times
    locator = mdates.AutoDateLocator(tz=zone)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(
        mdates.ConciseDateFormatter(locator, tz=zone))  # type: ignore[no-untyped-call]
    ax.set_xlabel(f"event time ({zone.key})")


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI, metadata=_PNG_META)
    plt.close(fig)


def _finish(fig: Any, ax: Any, path: Path, title: str, ylabel: str,
            xlabel: str | None = None) -> None:
    """Title, axis labels, grid, then the PNG at ``path``."""
    ax.set_title(title)
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    _save(fig, path)


def _over_time(ax: Any, zone: ZoneInfo) -> None:
    """A series over time around zero: the zero line, the time axis, the legend."""
    ax.axhline(0, color="grey", lw=0.6)
    _time_axis(ax, zone)
    ax.legend(loc="best", fontsize=8)


def _no_data(ax: Any, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} in this journal", ha="center", va="center",
            transform=ax.transAxes)


def pnl(path: Path, fills: Sequence[Fill], samples: Sequence[SampleRow],
        instrument: Instrument, zone: ZoneInfo) -> None:
    """Mark-to-market PnL over time and its components (quote currency)."""
    series = pnl_series(fills, samples, instrument)
    fig, ax = plt.subplots(figsize=(11, 4.5))
    if series.ts_ns:
        k = _stride(len(series.ts_ns))
        t = _times(series.ts_ns[::k])
        ax.plot(t, series.total[::k], color="black", lw=1.8, label="total (mark-to-market)")
        ax.plot(t, series.spread_capture[::k], color="tab:green", lw=1.1,
                label="spread capture (edge vs mid at fill)")
        ax.plot(t, series.inventory[::k], color="tab:blue", lw=1.1,
                label="inventory (mid moves on the position)")
        ax.plot(t, [-f for f in series.fees[::k]], color="tab:red", lw=1.1,
                label="- fees (rebates > 0)")
        _over_time(ax, zone)
    else:
        _no_data(ax, "samples with a book")
    _finish(fig, ax, path, "PnL over time and its components (total = spread + inventory - "
            "fees)", "PnL (quote currency)")


def inventory(path: Path, samples: Sequence[SampleRow], instrument: Instrument,
              zone: ZoneInfo, soft: int | None, hard: int | None) -> None:
    """Position over time (base currency) with the ``soft``/``hard`` limits (lots) if
    given."""
    lot = Fraction(instrument.lot_size)
    fig, ax = plt.subplots(figsize=(11, 4))
    if samples:
        k = _stride(len(samples))
        picked = samples[::k]
        ax.step(_times([s.ts_ns for s in picked]),
                [float(s.position * lot) for s in picked], where="post", color="tab:blue",
                lw=1.2, label="position")
        for limit, style, name in ((soft, "--", "soft limit"), (hard, "-", "hard limit")):
            if limit:
                value = float(limit * lot)
                ax.axhline(value, color="tab:orange" if style == "--" else "tab:red",
                           ls=style, lw=1, label=f"{name} ±{value:g}")
                ax.axhline(-value, color="tab:orange" if style == "--" else "tab:red",
                           ls=style, lw=1)
        _over_time(ax, zone)
    else:
        _no_data(ax, "samples")
    _finish(fig, ax, path, "Inventory over time (sampled)", "position (base currency, long > 0)")


def quotes(path: Path, fills: Sequence[Fill], samples: Sequence[SampleRow],
           instrument: Instrument, zone: ZoneInfo, start_ns: int | None,
           window_s: float, levels: Sequence[SampleLevels] = ()) -> None:
    """Our quotes against the market's best bid/ask and fair value (quote currency),
    ``window_s`` seconds from ``start_ns`` (event time; None: the first quoting sample);
    ``levels``, a ladder's samples, add its outer levels (thinner lines, level 1 on)."""
    tick = Fraction(instrument.tick_size)
    if start_ns is None:
        quoting = [s.ts_ns for s in samples if s.bid_size > 0 or s.ask_size > 0]
        start_ns = quoting[0] if quoting else (samples[0].ts_ns if samples else 0)
    end_ns = start_ns + round(window_s * NS_PER_S)
    win = [s for s in samples if start_ns <= s.ts_ns <= end_ns]
    fig, ax = plt.subplots(figsize=(11, 5))
    if win:
        t = _times([s.ts_ns for s in win])

        def price(v: int | None, on: bool = True) -> float:
            # NaN breaks the line where a side is absent, rather than drawing it at 0
            return float(v * tick) if v is not None and on else float("nan")

        # wide, pale market lines: a one-tick market spread would otherwise vanish under
        # the fair value line at this scale
        ax.step(t, [price(s.best_bid) for s in win], where="post", color="tab:green",
                lw=3, alpha=0.45, label="market best bid")
        ax.step(t, [price(s.best_ask) for s in win], where="post", color="tab:red",
                lw=3, alpha=0.45, label="market best ask")
        ax.plot(t, [float(s.fair) * float(tick) if s.fair else float("nan") for s in win],
                color="black", lw=0.8, ls=":", label="fair value")
        ax.step(t, [price(s.bid, s.bid_size > 0) for s in win], where="post",
                color="tab:blue", lw=1.4, label="our bid")
        ax.step(t, [price(s.ask, s.ask_size > 0) for s in win], where="post",
                color="tab:orange", lw=1.4, label="our ask")
        _outer_levels(ax, win, levels, price)
        inside = [f for f in fills if start_ns <= f.ts_ns <= end_ns]
        for side, marker, color, name in ((Side.BUY, "^", "tab:blue", "our buy fill"),
                                          (Side.SELL, "v", "tab:orange", "our sell fill")):
            pts = [f for f in inside if f.side is side]
            if pts:
                ax.scatter(_times([f.ts_ns for f in pts]),
                           [float(f.price * tick) for f in pts], marker=marker, s=50,
                           color=color, edgecolors="black", zorder=5, label=name)
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")
        _time_axis(ax, zone)
        ax.legend(loc="best", fontsize=8, ncol=2)
    else:
        _no_data(ax, "samples in the window")
    _finish(fig, ax, path, f"Our quotes vs the market, {window_s:g} s from "
            f"{datetime.fromtimestamp(start_ns / NS_PER_S, zone):%Y-%m-%d %H:%M:%S %Z}",
            "price (quote currency)")


def _outer_levels(ax: Any, win: Sequence[SampleRow], levels: Sequence[SampleLevels],
                  price: Callable[[int | None, bool], float]) -> None:
    """A ladder's levels 1.. as thin steps over the samples ``win`` (a sample without a
    ladder row, or a side shorter than the level, breaks the line)."""
    by_key = {(r.run_id, r.ts_ns): r for r in levels}
    rows = [by_key.get((s.run_id, s.ts_ns)) for s in win]
    depth = max((max(len(r.bids), len(r.asks)) for r in rows if r is not None), default=0)
    if depth < 2:
        return
    t = _times([s.ts_ns for s in win])
    for i in range(1, depth):
        for book, color, name in (("bids", "tab:blue", "bid"), ("asks", "tab:orange", "ask")):
            ys = [price(getattr(r, book)[i][0], True)
                  if r is not None and len(getattr(r, book)) > i else float("nan")
                  for r in rows]
            ax.step(t, ys, where="post", color=color, lw=0.7, alpha=0.8,
                    ls=(0, (3, 1 + i)), label=f"our {name} level {i}")


def markouts(path: Path, metrics: dict[str, Any]) -> None:
    """The markout curve of ``metrics`` (bps of the mid before each fill, by horizon)."""
    rows = [r for r in metrics["markouts"] if r["markout_bps"] is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if rows:
        hs = [r["horizon_s"] for r in rows]
        ax.plot(hs, [r["markout_bps"] for r in rows], "o-", color="black",
                label="markout (edge + mid move)")
        ax.plot(hs, [r["mid_move_bps"] for r in rows], "s--", color="tab:red",
                label="mid move after the fill")
        ax.axhline(metrics["avg_spread_captured_bps"] or 0.0, color="tab:green", ls=":",
                   label="edge at the fill (avg spread captured)")
        ax.axhline(0, color="grey", lw=0.6)
        for r in rows:
            ax.annotate(f"n={r['resolved_fills']}", (r["horizon_s"], r["markout_bps"]),
                        textcoords="offset points", xytext=(4, 6), fontsize=7)
        ax.set_xscale("log")
        ax.set_xticks(hs, [f"{h:g}" for h in hs])
        ax.minorticks_off()
        ax.legend(loc="best", fontsize=8)
    else:
        _no_data(ax, "measurable fills")
    _finish(fig, ax, path, "Markout curve (notional-weighted, bps of the mid before the fill)",
            "bps (> 0 = in our favour)", "horizon after the fill (s, log scale)")


def by_hour(path: Path, metrics: dict[str, Any]) -> None:
    """Fills (count) and PnL (quote currency) by hour of day in ``metrics``' time zone."""
    rows = metrics["by_hour"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    hours = [r["hour"] for r in rows]
    top.bar(hours, [r["fills"] for r in rows], color="tab:blue", label="fills")
    top.set_ylabel("fills (count)")
    top.set_title(f"Fills and PnL by hour of day ({metrics['tz']})")
    pnl = [r["pnl"] for r in rows]
    bottom.bar(hours, pnl, color=["tab:green" if p >= 0 else "tab:red" for p in pnl],
               label="PnL")
    bottom.axhline(0, color="grey", lw=0.6)
    bottom.set_ylabel("PnL (quote currency)")
    bottom.set_xlabel(f"hour of day ({metrics['tz']}), hour h covers [h:00, h+1:00)")
    bottom.set_xticks(range(24))
    bottom.set_xlim(-0.6, 23.6)
    for ax in (top, bottom):
        ax.grid(alpha=0.3, axis="y")
    _save(fig, path)


def spread_hist(path: Path, samples: Sequence[SampleRow], max_spread_bps: float) -> None:
    """Time-weighted distribution of our two-sided quoted spread (bps), with the uptime
    limit ``max_spread_bps``."""
    weights = sample_weights_ns(samples)
    spreads: list[float] = []
    secs: list[float] = []
    for s, w in zip(samples, weights, strict=True):
        if s.bid_size > 0 and s.ask_size > 0 and s.bid > 0 and s.ask > 0 and w > 0:
            spreads.append(quoted_spread_bps(s.bid, s.ask))
            secs.append(w / NS_PER_S)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if spreads:
        ax.hist(spreads, bins=40, weights=secs, color="tab:blue", alpha=0.8,
                label="time quoted two-sided")
        ax.axvline(max_spread_bps, color="tab:red", ls="--",
                   label=f"uptime limit {max_spread_bps:g} bps")
        ax.legend(loc="best", fontsize=8)
    else:
        _no_data(ax, "two-sided quotes")
    _finish(fig, ax, path, "Distribution of our quoted spread (time-weighted)", "time (s)",
            "quoted spread (bps of the quote's midpoint)")
