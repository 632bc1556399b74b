"""The report's plots: plotly figures, zoomable in the page with no server.

Only :func:`mmdaemon.report.write_report` imports this module, so plotly loads when a
report is written and never for a replay's summary, whose metrics come from
:mod:`mmdaemon.analytics` alone. Each function returns one ``plotly.graph_objects.Figure``
that :class:`mmdaemon.pages.Figures` embeds. Time axes are event time shown as the wall
clock of the report's time zone; a series longer than :data:`MAX_POINTS` is drawn as its
envelope (:func:`mmdaemon.report_series.envelope`: extremes kept). Money is labelled with
the instrument's quote currency (``currency``: USDT for BTCUSDT, USD for LOBSTER), sizes
with its base currency (``base``: BTC, shares).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mmdaemon.analytics import (
    SampleLevels,
    SampleRow,
    pnl_series,
    quoted_spread_bps,
    sample_weights_ns,
)
from mmdaemon.model import NS_PER_S, Fill, Funding, Instrument, Side
from mmdaemon.report_series import envelope, quote_distances

MAX_POINTS = 3000
"""Points per time-series trace at most: a day of 250 ms samples (345,600) would make a page
of tens of MB that a browser redraws slowly on every zoom."""

_BID, _ASK = "#1f77b4", "#ff7f0e"  # our bid/ask levels (the ask's outer levels: dashed)
_WINDOW_BUTTONS = [{"count": 1, "label": "1 min", "step": "minute", "stepmode": "backward"},
                   {"count": 5, "label": "5 min", "step": "minute", "stepmode": "backward"},
                   {"count": 1, "label": "1 h", "step": "hour", "stepmode": "backward"},
                   {"count": 1, "label": "1 day", "step": "day", "stepmode": "backward"},
                   {"label": "all", "step": "all"}]


class Clock:
    """Event times (ns, UTC) as plotly date-axis numbers: ms of the wall clock in ``zone``
    (plotly reads a number on a date axis as UTC ms, so the zone's offset is added: the
    axis then shows local time, DST included). Memoised per minute: every real UTC offset
    is a whole number of minutes."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self._offset_ms: dict[int, int] = {}

    def __call__(self, ts_ns: int) -> int:
        minute = ts_ns // (60 * NS_PER_S)
        off = self._offset_ms.get(minute)
        if off is None:
            delta = datetime.fromtimestamp(minute * 60, UTC).astimezone(self.zone).utcoffset()
            off = self._offset_ms[minute] = int(delta.total_seconds() * 1000) if delta else 0
        return ts_ns // 1_000_000 + off

    def times(self, ts_ns: Sequence[int]) -> list[int]:
        return [self(t) for t in ts_ns]


def _layout(fig: go.Figure, title: str, ytitle: str, height: int = 420) -> go.Figure:
    fig.update_layout(title={"text": title, "x": 0.01}, template="plotly_white",
                      height=height, margin={"l": 70, "r": 20, "t": 60, "b": 50},
                      legend={"orientation": "h", "y": -0.25, "font": {"size": 11}},
                      hovermode="x unified")
    fig.update_yaxes(title_text=ytitle, zeroline=True, zerolinecolor="#999")
    return fig


def _time_axis(fig: go.Figure, clock: Clock, window: tuple[int, int] | None = None) -> None:
    """A date x axis in ``clock``'s zone with a range slider and window buttons; ``window``
    (event ns) the range shown first (None: the whole run)."""
    xaxis: dict[str, Any] = {"type": "date", "title": f"event time ({clock.zone.key})",
                             "rangeslider": {"visible": True, "thickness": 0.08},
                             "rangeselector": {"buttons": _WINDOW_BUTTONS}}
    if window is not None:
        xaxis["range"] = [clock(window[0]), clock(window[1])]
    fig.update_layout(xaxis=xaxis, legend={"y": -0.45}, height=(fig.layout.height or 420) + 80)


def _line(fig: go.Figure, xs: Sequence[int], ys: Sequence[float | None], name: str,
          step: bool = False, **style: Any) -> None:
    """One trace of a series over time, as its envelope when long."""
    x, y = envelope(xs, ys, MAX_POINTS)
    fig.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines",
                             line_shape="hv" if step else "linear", **style))


def _no_data(fig: go.Figure, what: str) -> None:
    fig.add_annotation(text=f"no {what} in this journal", showarrow=False, x=0.5, y=0.5,
                       xref="paper", yref="paper")


def pnl(fills: Sequence[Fill], samples: Sequence[SampleRow], instrument: Instrument,
        clock: Clock, currency: str, funding: Sequence[Funding] = ()) -> go.Figure:
    """Mark-to-market PnL over time and its components (``currency``); the funding line
    only when the journal holds payments (perpetual futures)."""
    series = pnl_series(fills, samples, instrument, funding)
    fig = go.Figure()
    if series.ts_ns:
        t = clock.times(series.ts_ns)
        _line(fig, t, series.total, "total (mark-to-market)",
              line={"color": "black", "width": 2})
        _line(fig, t, series.spread_capture, "spread capture (edge vs mid at fill)",
              line={"color": "#2ca02c", "width": 1.2})
        _line(fig, t, series.inventory, "inventory (mid moves on the position)",
              line={"color": _BID, "width": 1.2})
        _line(fig, t, [-f for f in series.fees], "- fees (rebates > 0)",
              line={"color": "#d62728", "width": 1.2})
        if funding:
            _line(fig, t, series.funding, "funding (received > 0)",
                  line={"color": "#9467bd", "width": 1.2})
    else:
        _no_data(fig, "samples with a book")
    _layout(fig, f"PnL over time and its components (total = spread + inventory - fees"
            f"{' + funding' if funding else ''}), "
            f"{len(series.ts_ns):,} marks", f"PnL ({currency})")
    _time_axis(fig, clock)
    return fig


def inventory(samples: Sequence[SampleRow], instrument: Instrument, clock: Clock, base: str,
              soft: int | None, hard: int | None) -> go.Figure:
    """Position over time (``base``) with the ``soft``/``hard`` limits (lots) if given."""
    lot = Fraction(instrument.lot_size)
    fig = go.Figure()
    if samples:
        _line(fig, clock.times([s.ts_ns for s in samples]),
              [float(s.position * lot) for s in samples], "position", step=True,
              line={"color": _BID, "width": 1.4})
        for limit, dash, color, name in ((soft, "dash", "#ff7f0e", "soft limit"),
                                         (hard, "solid", "#d62728", "hard limit")):
            if limit:
                value = float(limit * lot)
                for y in (value, -value):
                    fig.add_hline(y=y, line={"dash": dash, "color": color, "width": 1},
                                  annotation_text=f"{name} {y:+g} {base}",
                                  annotation_position="top left")
    else:
        _no_data(fig, "samples")
    _layout(fig, f"Inventory over time ({len(samples):,} samples)",
            f"position ({base}, long > 0)", 380)
    _time_axis(fig, clock)
    return fig


def quotes(fills: Sequence[Fill], samples: Sequence[SampleRow], instrument: Instrument,
           clock: Clock, currency: str, levels: Sequence[SampleLevels] = (),
           window: tuple[int, int] | None = None) -> go.Figure:
    """Our quotes (every level of a ladder) against the market's best bid/ask and our fair
    value, prices in ``currency``, over the whole run; ``window`` (event ns) shown first."""
    tick = Fraction(instrument.tick_size)
    fig = go.Figure()
    if samples:
        t = clock.times([s.ts_ns for s in samples])

        def price(v: int | None) -> float | None:
            return float(v * tick) if v is not None else None

        _line(fig, t, [price(s.best_bid) for s in samples], "market best bid", step=True,
              line={"color": "#2ca02c", "width": 4}, opacity=0.4)
        _line(fig, t, [price(s.best_ask) for s in samples], "market best ask", step=True,
              line={"color": "#d62728", "width": 4}, opacity=0.4)
        _line(fig, t, [float(s.fair) * float(tick) if s.fair else None for s in samples],
              "fair value", line={"color": "black", "width": 1, "dash": "dot"})
        by_key = {(r.run_id, r.ts_ns): r for r in levels}
        depth = max((max(len(r.bids), len(r.asks)) for r in levels), default=1)
        for i in range(depth):
            for side, color in (("bid", _BID), ("ask", _ASK)):
                ys = [price(_level_price(s, by_key.get((s.run_id, s.ts_ns)), side, i))
                      for s in samples]
                if any(y is not None for y in ys):
                    _line(fig, t, ys, f"our {side} level {i}", step=True,
                          line={"color": color, "width": 1.6 if i == 0 else 0.9,
                                "dash": "solid" if i == 0 else "dash"})
        for way, symbol, color, name in ((Side.BUY, "triangle-up", _BID, "our buy fill"),
                                         (Side.SELL, "triangle-down", _ASK, "our sell fill")):
            pts = [f for f in fills if f.side is way]
            if pts:
                fig.add_trace(go.Scatter(
                    x=clock.times([f.ts_ns for f in pts]), y=[float(f.price * tick) for f in pts],
                    mode="markers", name=name, marker={"symbol": symbol, "size": 9,
                                                       "color": color,
                                                       "line": {"color": "black", "width": 1}}))
    else:
        _no_data(fig, "samples")
    _layout(fig, f"Our quotes vs the market ({len(samples):,} samples, {len(fills):,} fills)",
            f"price ({currency})", 480)
    fig.update_yaxes(tickformat=",.10~g")
    _time_axis(fig, clock, window)
    return fig


def _level_price(s: SampleRow, row: SampleLevels | None, side: str, i: int) -> int | None:
    """Our price at level ``i`` of ``side`` in sample ``s`` (its ladder ``row`` if it had
    one); None when not quoted there."""
    if row is not None:
        book = row.bids if side == "bid" else row.asks
        return book[i][0] if i < len(book) and book[i][1] > 0 else None
    if i:
        return None
    if side == "bid":
        return s.bid if s.bid_size > 0 else None
    return s.ask if s.ask_size > 0 else None


def quote_distance(samples: Sequence[SampleRow], levels: Sequence[SampleLevels],
                   clock: Clock, window: tuple[int, int] | None = None) -> go.Figure:
    """Each of our levels' distance to the market's touch on its side, ticks (one trace per
    level and side: :func:`mmdaemon.report_series.quote_distances`), over the whole run;
    ``window`` (event ns) shown first."""
    fig = go.Figure()
    distances = quote_distances(samples, levels)
    t = clock.times([s.ts_ns for s in samples])
    for (side, i), ticks in sorted(distances.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        quoted = sum(d is not None for d in ticks)
        _line(fig, t, [float(d) if d is not None else None for d in ticks],
              f"{side} level {i} ({quoted:,} samples)", step=True,
              line={"color": _BID if side == "bid" else _ASK, "width": 1.5 if i == 0 else 1,
                    "dash": "solid" if i == 0 else "dash"})
    if not distances:
        _no_data(fig, "quotes with a market book")
    _layout(fig, "Our quotes' distance to the touch (0 = at the best price of our side, "
            "< 0 = inside the spread)", "ticks behind the touch", 440)
    _time_axis(fig, clock, window)
    return fig


def markouts(metrics: dict[str, Any]) -> go.Figure:
    """The markout curve of ``metrics`` (bps of the mid before each fill, by horizon), each
    point with its resolved fills and lots."""
    rows = [r for r in metrics["markouts"] if r["markout_bps"] is not None]
    fig = go.Figure()
    if rows:
        hs = [r["horizon_s"] for r in rows]
        text = [f"n = {r['resolved_fills']:,} fills, {r['resolved_lots']:,} lots" for r in rows]
        fig.add_trace(go.Scatter(x=hs, y=[r["markout_bps"] for r in rows], text=text,
                                 mode="lines+markers+text", textposition="top right",
                                 name="markout (edge + mid move)",
                                 line={"color": "black"}))
        fig.add_trace(go.Scatter(x=hs, y=[r["mid_move_bps"] for r in rows], text=text,
                                 mode="lines+markers", name="mid move after the fill",
                                 line={"color": "#d62728", "dash": "dash"}))
        fig.add_hline(y=metrics["avg_spread_captured_bps"] or 0.0,
                      line={"color": "#2ca02c", "dash": "dot"},
                      annotation_text="edge at the fill (avg spread captured)")
        fig.update_xaxes(type="log", tickvals=hs, ticktext=[f"{h:g}" for h in hs])
    else:
        _no_data(fig, "measurable fills")
    _layout(fig, "Markout curve (notional-weighted, bps of the mid before the fill)",
            "bps (> 0 = in our favour)", 420)
    fig.update_layout(hovermode="closest")
    fig.update_xaxes(title_text="horizon after the fill (s, log scale)")
    return fig


def by_hour(metrics: dict[str, Any], currency: str) -> go.Figure:
    """Fills (count) and PnL (``currency``) by hour of day in ``metrics``' time zone."""
    rows = metrics["by_hour"]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    hours = [r["hour"] for r in rows]
    # one hour wide whatever the hours present (plotly sizes bars by the closest pair: a
    # run over 23:00 and 00:00 alone drew two bars half a day wide)
    fig.add_trace(go.Bar(x=hours, y=[r["fills"] for r in rows], name="fills",
                         marker_color=_BID, width=0.8), row=1, col=1)
    pnl = [r["pnl"] for r in rows]
    fig.add_trace(go.Bar(x=hours, y=pnl, name=f"PnL ({currency})",
                         marker_color=["#2ca02c" if p >= 0 else "#d62728" for p in pnl],
                         text=[f"{r['fills']:,} fills" for r in rows], width=0.8),
                  row=2, col=1)
    _layout(fig, f"Fills and PnL by hour of day ({metrics['tz']})", "", 480)
    fig.update_yaxes(title_text="fills (count)", row=1, col=1)
    fig.update_yaxes(title_text=f"PnL ({currency})", row=2, col=1)
    fig.update_xaxes(title_text=f"hour of day ({metrics['tz']}), hour h covers "
                     "[h:00, h+1:00)", dtick=1, range=[-0.6, 23.6], row=2, col=1)
    fig.update_layout(hovermode="closest")
    return fig


def spread_hist(samples: Sequence[SampleRow], max_spread_bps: float,
                bins: int = 40) -> go.Figure:
    """Time-weighted distribution of our two-sided quoted spread (bps) in ``bins`` equal
    bins, with the uptime limit ``max_spread_bps``."""
    weights = sample_weights_ns(samples)
    spreads: list[float] = []
    secs: list[float] = []
    for s, w in zip(samples, weights, strict=True):
        if s.bid_size > 0 and s.ask_size > 0 and s.bid > 0 and s.ask > 0 and w > 0:
            spreads.append(quoted_spread_bps(s.bid, s.ask))
            secs.append(w / NS_PER_S)
    fig = go.Figure()
    if spreads:
        lo, hi = min(spreads), max(spreads)
        width: float = (hi - lo) / bins or 1.0
        totals = [0.0] * bins
        counts = [0] * bins
        for x, held_s in zip(spreads, secs, strict=True):
            k = min(int((x - lo) / width), bins - 1)
            totals[k] += held_s
            counts[k] += 1
        fig.add_trace(go.Bar(x=[lo + (k + 0.5) * width for k in range(bins)], y=totals,
                             width=width, name="time quoted two-sided",
                             text=[f"{c:,} samples" for c in counts], marker_color=_BID))
        fig.add_vline(x=max_spread_bps, line={"color": "#d62728", "dash": "dash"},
                      annotation_text=f"uptime limit {max_spread_bps:g} bps")
    else:
        _no_data(fig, "two-sided quotes")
    _layout(fig, f"Distribution of our quoted spread (time-weighted, {len(spreads):,} "
            f"two-sided samples)", "time (s)", 400)
    fig.update_traces(textposition="none")
    fig.update_layout(hovermode="closest")
    fig.update_xaxes(title_text="quoted spread (bps of the quote's midpoint)")
    return fig
