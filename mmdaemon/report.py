"""The run report: one self-contained ``report.html`` with zoomable plots, from a journal.

This is the I/O shell around :mod:`mmdaemon.analytics`: it reads the journal (read-only),
computes the metrics, draws the plots (:mod:`mmdaemon.plots`, plotly figures embedded with
:class:`mmdaemon.pages.Figures`: zoom, pan and a window slider in the page, no server, no
network) and writes the page with :mod:`mmdaemon.pages`' skeleton and sortable tables.

Files written to ``out_dir`` (names are fixed, so a report can be diffed or linked to):

- ``report.html``: what produced the run (version, config, feed), metrics each with its
  sample size, the markout table, the quote ladder's levels (a run of more than one level
  a side), plots (PnL, inventory, our quotes against the market and their distance to the
  touch in ticks per level over the whole run, markouts, by hour, spread distribution),
  hour-of-day and daily tables, the fills table, definitions;
- ``orders.csv``, ``fills.csv``: the order log and the fills (:mod:`mmdaemon.orderlog`,
  as ``mmdaemon export`` writes them), linked from the page.

Money is labelled with the instrument's quote currency (USDT for BTCUSDT, USD for a LOBSTER
replay), sizes with its base currency (BTC, shares).
"""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from mmdaemon import pages
from mmdaemon.analytics import SampleRow, compute_metrics, ladder_levels
from mmdaemon.journal_reader import (
    load_funding,
    load_journal,
    load_markouts,
    load_sample_levels,
    load_state,
)
from mmdaemon.markouts import base_currency
from mmdaemon.metric_definitions import DEFINITIONS
from mmdaemon.model import NS_PER_S, Instrument
from mmdaemon.orderlog import FILLS_FILE, ORDERS_FILE, ExportResult, export
from mmdaemon.provenance import PROVENANCE_KEY
from mmdaemon.report_sections import fills_table, provenance_html
from mmdaemon.sharpe import sharpe_text

PLOTS = ("pnl", "inventory", "quotes", "quote-distance", "markouts", "by-hour", "spread-hist")
"""Every plot of the page, in page order; its div's id is ``plot-`` and the name."""

DEFAULT_WINDOW_S = 300.0
"""The window a ``window_start_ns`` without ``window_s`` shows first (s)."""


def write_report(
    journal_path: Path | str,
    instrument: Instrument,
    out_dir: Path | str,
    *,
    inventory_soft_lots: int | None = None,
    inventory_hard_lots: int | None = None,
    window_start_ns: int | None = None,
    window_s: float | None = None,
    title: str | None = None,
    venue: str = "",
    **metric_options: Any,
) -> dict[str, Any]:
    """Write ``report.html`` and the CSVs for the journal at ``journal_path``; return metrics.

    ``inventory_soft_lots``/``inventory_hard_lots`` draw the risk limits (lots) on the
    inventory plot. The quote plots cover the whole run; with ``window_start_ns`` (event
    time, ns; default the first sample where we quote) or ``window_s`` (s; default
    :data:`DEFAULT_WINDOW_S`) they open on that window (the page's slider and buttons
    choose another). ``venue`` names the sizes' unit (``lobster``: shares).
    ``metric_options`` go to :func:`mmdaemon.analytics.compute_metrics` (``horizons_s``,
    ``currency``, ``max_spread_bps``, ``tz``, ``sharpe_interval_s``,
    ``seconds_per_year``); the journal's markouts are read here. The returned dict is that
    function's.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fills, samples = load_journal(journal_path)
    markouts = load_markouts(journal_path)
    funding = load_funding(journal_path)
    metrics = compute_metrics(fills, samples, instrument, markouts=markouts, funding=funding,
                              **metric_options)
    zone = ZoneInfo(metrics["tz"])
    currency, base = metrics["currency"], base_currency(instrument.symbol, venue)
    levels = load_sample_levels(journal_path)
    ordered = sorted(samples, key=lambda s: s.ts_ns)
    fills_sorted = sorted(fills, key=lambda f: f.ts_ns)
    window = _window(ordered, window_start_ns, window_s)
    stored = load_state(journal_path, PROVENANCE_KEY)
    produced = orjson.loads(stored) if stored is not None else None

    # imported here: plotly loads only when a report is drawn, not with this module
    from mmdaemon import plots

    clock = plots.Clock(zone)
    figures = pages.Figures()
    captions = {
        "pnl": "Mark-to-market PnL (black) and its exact components: spread capture, "
               "inventory, minus fees and funding (perpetual futures).",
        "inventory": "Position sampled over time, with the risk limits when given.",
        "quotes": "Our gated quotes (steps; a ladder's outer levels dashed) against the "
                  "market's best bid/ask and our fair value; triangles are our fills. "
                  "Drag on the plot or the slider below it to choose the window.",
        "quote-distance": "Each level's distance to the market's best price on its side, in "
                          "ticks: a bid's best bid - our price, an ask's our price - best ask "
                          "(0 = at the touch, < 0 = inside the spread), over the whole run. "
                          "The quote wanted after the risk gate at each sample, as the quotes "
                          "plot: the order resting at the venue may lag it (the order "
                          "tolerances, the order rate; orders.csv has every order).",
        "markouts": "Size-weighted markouts by horizon: the edge at the fill plus the mid's "
                    "move after it; n = fills and lots resolved at each horizon.",
        "by-hour": "Fills and PnL per hour of day.",
        "spread-hist": "How long we quoted each two-sided spread.",
    }
    drawn = {
        "pnl": plots.pnl(fills, ordered, instrument, clock, currency, funding),
        "inventory": plots.inventory(ordered, instrument, clock, base, inventory_soft_lots,
                                     inventory_hard_lots),
        "quotes": plots.quotes(fills_sorted, ordered, instrument, clock, currency, levels,
                               window),
        "quote-distance": plots.quote_distance(ordered, levels, clock, window),
        "markouts": plots.markouts(metrics),
        "by-hour": plots.by_hour(metrics, currency),
        "spread-hist": plots.spread_hist(ordered, metrics["max_spread_bps"]),
    }
    figures_html = "".join(figures.html(drawn[name], div_id=f"plot-{name}",
                                        caption=captions[name])
                           for name in PLOTS)
    with (out / ORDERS_FILE).open("w", encoding="utf-8", newline="") as orders, \
            (out / FILLS_FILE).open("w", encoding="utf-8", newline="") as fills_csv:
        exported = export(Path(journal_path), instrument, orders, fills_csv)
    horizons = [m["horizon_s"] for m in metrics["markouts"]]
    sections = {
        "provenance": provenance_html(produced),
        "ladder": _ladder_html(ladder_levels(levels, samples), len(levels)),
        "plots": figures_html,
        "fills": fills_table(fills, markouts, horizons, instrument, zone, currency, base),
    }
    page = _html(metrics, instrument, title or f"{instrument.symbol} market-making report",
                 str(journal_path), exported, base, sections)
    (out / "report.html").write_text(page, encoding="utf-8")
    return metrics


def _window(samples: list[SampleRow], start_ns: int | None,
            window_s: float | None) -> tuple[int, int] | None:
    """The quote plots' first window (event ns), None (the whole run) unless asked for."""
    if start_ns is None and window_s is None:
        return None
    if start_ns is None:
        quoting = [s.ts_ns for s in samples if s.bid_size > 0 or s.ask_size > 0]
        start_ns = quoting[0] if quoting else (samples[0].ts_ns if samples else 0)
    span = DEFAULT_WINDOW_S if window_s is None else window_s
    return start_ns, start_ns + round(span * NS_PER_S)


# -- html ---------------------------------------------------------------------------------

# (label, key, kind, sample) rows of the main table; kind picks the formatting and unit,
# sample the sample size shown beside it (_SAMPLE); labels name {currency} and {base}
_METRIC_ROWS: list[tuple[str, str, str, str] | str] = [
    "PnL ({currency})",
    ("Total PnL (mark-to-market, after fees and funding)", "total_pnl", "money", "fills"),
    ("Spread capture", "spread_capture_pnl", "money", "fills"),
    ("Inventory PnL", "inventory_pnl", "money", "fills"),
    ("Fees (paid > 0, rebates < 0)", "fees", "cost", "fills"),
    ("Funding (received > 0, paid < 0)", "funding", "money", "funding"),
    ("Realised PnL (average cost)", "realized_pnl", "money", "fills"),
    ("Unrealised PnL at the final mark", "unrealized_pnl", "money", "fills"),
    ("PnL per hour (extrapolated from the sampled time)", "pnl_per_hour_extrapolated",
     "money", "sampled"),
    ("PnL per day (extrapolated from the sampled time)", "pnl_per_day_extrapolated", "money",
     "sampled"),
    ("Max drawdown", "max_drawdown", "cost", "marks"),
    ("Sharpe ratio (annualised, 365 d; intervals)", "sharpe", "sharpe", "intervals"),
    ("Sharpe interval (s) / last interval (s)", "sharpe_interval_s", "sharpe_grid", ""),
    "Fills and markouts (size-weighted, at the short horizon)",
    ("Fills", "fills", "int", ""),
    ("Maker share", "maker_share", "pct", "fills"),
    ("Volume ({base})", "volume", "num", "fills"),
    ("Win rate (lots with markout > 0)", "win_rate", "pct", "short"),
    ("Negative-markout rate (lots with markout < 0)", "negative_markout_rate", "pct",
     "short"),
    ("Adverse-move rate (lots after which the mid moved against us)", "adverse_move_rate",
     "pct", "short"),
    ("Short markout horizon (s)", "markout_horizon_s", "num", ""),
    ("Avg spread captured (bps, size-weighted)", "avg_spread_captured_bps", "bps",
     "with_mid"),
    ("Fills with the exact mid before them", "fills_with_exact_mid", "int", "fills"),
    ("Fills with a sampled mid (after the fill's event)", "fills_with_sampled_mid", "int",
     "fills"),
    ("Fills without a mid", "fills_without_mid", "int", "fills"),
    ("Age of a sampled mid at a fill (ms, median / max)", "mid_at_fill_age_ms_median", "age",
     "sampled_mid"),
    "Orders",
    ("Order requests (places + amends + cancels)", "order_requests", "int", "sampled"),
    ("Places / amends / cancels", "places", "orders", ""),
    ("Order-to-trade ratio", "order_to_trade", "num", "requests"),
    ("Fill rate (fills per place or amend)", "fill_rate", "pct", "places"),
    "Inventory",
    ("Avg |inventory| (time-weighted, {base})", "avg_abs_inventory", "num", "sampled"),
    ("Max |inventory| ({base})", "max_abs_inventory", "num", "sampled_fills"),
    ("Inventory turnover (volume / avg |inventory|)", "inventory_turnover", "x",
     "sampled_fills"),
    ("Inventory turnover per day (extrapolated)", "inventory_turnover_per_day_extrapolated",
     "x", "sampled_fills"),
    ("Final position ({base})", "position", "num", "fills"),
    ("Final mark (mid, {currency})", "final_mark", "price", ""),
    "Quoting",
    ("Quote uptime (two-sided, spread within the limit)", "quote_uptime", "pct", "sampled"),
    ("Uptime spread limit (bps)", "max_spread_bps", "num", ""),
    ("Two-sided share of time", "two_sided_share", "pct", "sampled"),
    ("Mean quoted spread (bps, time-weighted)", "quoted_spread_bps_mean", "bps",
     "two_sided"),
    ("Mean market spread (bps, time-weighted)", "market_spread_bps_mean", "bps", "market"),
    "Period",
    ("Start", "start_ns", "time", ""),
    ("End", "end_ns", "time", ""),
    ("Sampled time (s)", "sampled_s", "num", ""),
    ("Samples / runs", "samples", "samples", ""),
]


def _sample(metrics: dict[str, Any], basis: str) -> str:
    """The sample size behind a metric of the main table ("" for a setting or a count)."""
    m = metrics
    short = m["markouts"][0] if m["markouts"] else {"resolved_fills": 0, "resolved_lots": 0}
    texts = {
        "": "",
        "fills": f"{m['fills']:,} fills",
        "funding": f"{m['funding_payments']:,} payments",
        "sampled": f"{m['samples']:,} samples, {m['sampled_s']:,.1f} s",
        "sampled_fills": f"{m['samples']:,} samples, {m['fills']:,} fills",
        "marks": f"{m['marked_samples']:,} marks of the PnL path",
        "intervals": f"{m['sharpe_intervals']:,} intervals",
        "short": (f"{short['resolved_fills']:,} fills, {short['resolved_lots']:,} lots "
                  f"resolved"),
        "with_mid": f"{m['fills_with_mid']:,} fills with a mid",
        "sampled_mid": f"{m['fills_with_sampled_mid']:,} fills",
        "requests": f"{m['order_requests']:,} requests, {m['fills']:,} fills",
        "places": f"{m['places'] + m['amends']:,} places + amends",
        "two_sided": f"{m['two_sided_samples']:,} samples, {m['two_sided_s']:,.1f} s",
        "market": f"{m['market_samples']:,} samples, {m['market_s']:,.1f} s",
    }
    return texts[basis]


# (header, key, kind) columns of the hour-of-day and daily tables; {currency}, {base}
_TABLE_COLS: list[tuple[str, str, str]] = [
    ("sampled s", "sampled_s", "num"),
    ("fills", "fills", "int"),
    ("volume ({base})", "volume", "num"),
    ("PnL ({currency})", "pnl", "money"),
    ("spread ({currency})", "spread_capture_pnl", "money"),
    ("inventory ({currency})", "inventory_pnl", "money"),
    ("fees ({currency})", "fees", "cost"),
    ("funding ({currency})", "funding", "money"),
    ("markout lots resolved", "markout_lots", "int"),
    ("markout bps", "markout_bps", "bps"),
    ("win", "win_rate", "pct"),
    ("neg. markout", "negative_markout_rate", "pct"),
    ("adverse move", "adverse_move_rate", "pct"),
    ("avg |inv| ({base})", "avg_abs_inventory", "num"),
    ("uptime", "quote_uptime", "pct"),
    ("requests", "order_requests", "int"),
    ("OTR", "order_to_trade", "num"),
]


def _fmt(value: Any, kind: str, metrics: dict[str, Any] | None = None) -> str:
    if kind == "sharpe" and metrics is not None:  # n/a too, with the interval count
        return sharpe_text(metrics)
    if value is None:
        return "n/a"
    if kind in ("money", "cost"):  # cost: money that is not colour-coded by sign
        return f"{value:,.6f}" if abs(value) < 1e4 else f"{value:,.2f}"
    if kind == "price":
        return f"{value:,.10g}"
    if kind == "pct":
        return f"{100 * value:.1f} %"
    if kind == "bps":
        return f"{value:,.3f}"
    if kind == "int":
        return f"{value:,}"
    if kind == "x":
        return f"{value:,.2f}x"
    if kind == "time":
        return datetime.fromtimestamp(value / NS_PER_S, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if kind == "orders" and metrics is not None:
        return f"{metrics['places']:,} / {metrics['amends']:,} / {metrics['cancels']:,}"
    if kind == "sharpe_grid" and metrics is not None:
        return f"{value:g} / {metrics['sharpe_last_interval_s']:,.3f}"
    if kind == "age" and metrics is not None:
        return f"{value:,.0f} / {metrics['mid_at_fill_age_ms_max']:,.0f}"
    if kind == "samples" and metrics is not None:
        return f"{metrics['samples']:,} / {metrics['runs']}"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.6g}"


def _cell(value: Any, kind: str, metrics: dict[str, Any] | None = None) -> str:
    cls = ""
    if kind == "money" and isinstance(value, float):
        cls = ' class="neg"' if value < 0 else (' class="pos"' if value > 0 else "")
    return f"<td{cls}>{pages.esc(_fmt(value, kind, metrics))}</td>"


def _sortable(value: Any, kind: str) -> tuple[str, Any] | str:
    """A cell of a sortable table: the formatted text, sorting by the number behind it."""
    text = _fmt(value, kind)
    return (text, value) if isinstance(value, int | float) else text


def _bucket_table(rows: list[dict[str, Any]], key: str, label: str, table_id: str,
                  units: dict[str, str]) -> str:
    headers = [label, *(name.format(**units) for name, _, _ in _TABLE_COLS)]
    body = [[(f"{row[key]:02d}:00", row[key]) if key == "hour" else str(row[key]),
             *(_sortable(row[k], kind) for _, k, kind in _TABLE_COLS)] for row in rows]
    return pages.table(headers, body, table_id=table_id)


def _ladder_html(rows: list[dict[str, Any]], samples: int) -> str:
    """The "Quote ladder" section: per side and level, how often it was quoted, its mean
    size and distance from the mid ("" for a run of one level a side)."""
    if not rows:
        return ""
    depth = {side: max((r["level"] + 1 for r in rows
                        if r["side"] == side and r["quoted_share"] > 0), default=0)
             for side in ("bid", "ask")}
    body = [[r["side"], _sortable(r["level"], "int"), _sortable(r["quoted_share"], "pct"),
             _sortable(r["mean_size_lots"], "num"), _sortable(r["mean_distance_bps"], "bps")]
            for r in rows]
    table = pages.table(["side", "level", "quoted (share of those samples)",
                         "mean size (lots)", "mean distance from mid (bps)"], body,
                        table_id="ladder")
    return (f'<h2>Quote ladder</h2>\n<p id="ladder-depth">Up to {depth["bid"]} levels on the '
            f'bid and {depth["ask"]} on the ask, over {samples:,} samples quoting more than '
            f'one level on a side (level 0 is the innermost; the metrics above count every '
            f"level's orders and fills).</p>\n{table}")


def _html(metrics: dict[str, Any], instrument: Instrument, title: str, source: str,
          exported: ExportResult, base: str, sections: dict[str, str]) -> str:
    esc = pages.esc
    currency = metrics["currency"]
    units = {"currency": currency, "base": base}
    notes = "".join(f"<p>{esc(w)}</p>" for w in exported.warnings)
    main_rows = ['<tr><th class="name">metric</th><th>value</th><th>sample size</th></tr>']
    for item in _METRIC_ROWS:
        if isinstance(item, str):
            main_rows.append(f'<tr class="section"><td colspan="3">'
                             f"{esc(item.format(**units))}</td></tr>")
            continue
        label, key, kind, basis = item
        main_rows.append(f'<tr><td class="name">{esc(label.format(**units))}</td>'
                         f"{_cell(metrics.get(key), kind, metrics)}"
                         f"<td>{esc(_sample(metrics, basis))}</td></tr>")
    markout_cols = (("horizon_s", "num"), ("resolved_fills", "int"), ("resolved_lots", "int"),
                    ("unresolved_fills", "int"), ("markout_bps", "bps"), ("edge_bps", "bps"),
                    ("mid_move_bps", "bps"), ("markout_pnl", "money"), ("win_rate", "pct"),
                    ("negative_markout_rate", "pct"), ("adverse_move_rate", "pct"))
    markouts = pages.table(
        ["horizon (s)", "resolved fills", "resolved lots", "unresolved fills",
         "markout (bps)", "edge (bps)", "mid move (bps)", f"markout PnL ({currency})", "win",
         "negative markout", "adverse move"],
        [[_sortable(r[k], kind) for k, kind in markout_cols] for r in metrics["markouts"]],
        table_id="markouts")
    # the definitions speak of "quote currency" and "base currency": this report's names
    defs = "".join(
        f"<dt>{esc(k)}</dt><dd>"
        f"{esc(v.replace('quote currency', currency).replace('base currency', base))}</dd>"
        for k, v in DEFINITIONS.items())
    unit = Fraction(instrument.tick_size) * Fraction(instrument.lot_size)
    body = f"""<h1>{esc(title)}</h1>
<p class="meta">Instrument {esc(instrument.symbol)}: tick {instrument.tick_size:f} {esc(currency)},
lot {instrument.lot_size:f} {esc(base)} (one notional unit = {esc(str(float(unit)))}
{esc(currency)}; money is in {esc(currency)}, sizes in {esc(base)}).
Journal: {esc(source)}. Times in event time; hour-of-day tables in {esc(metrics["tz"])}.</p>
{sections["provenance"]}
<h2>Metrics</h2>
<table id="metrics"><tbody>{"".join(main_rows)}</tbody></table>
<h2>Markouts</h2>
<p>Exact at event level: the mid before the market event that filled us against the book's
mid at fill time + horizon; rates weighted by lots over the fills resolved at that horizon.</p>
{markouts}
{sections["ladder"]}
<h2>Plots</h2>
<p>Drag to zoom, double-click to reset; the time plots have a window slider and buttons.</p>
{sections["plots"]}
<h2>By hour of day ({esc(metrics["tz"])})</h2>
{_bucket_table(metrics["by_hour"], "hour", "hour", "by-hour", units)}
<h2>By day ({esc(metrics["tz"])})</h2>
{_bucket_table(metrics["by_day"], "date", "date", "by-day", units)}
{sections["fills"]}
<h2>Order log</h2>
<p id="order-log"><a href="{ORDERS_FILE}">{ORDERS_FILE}</a>: {exported.orders:,} rows, every
order action sent and every answer of the venue; <a href="{FILLS_FILE}">{FILLS_FILE}</a>:
{exported.fills:,} fills. Formats: mmdaemon/orderlog.py (<code>mmdaemon export</code> writes
the same files).</p>
{notes}
<h2>Definitions</h2>
<dl id="definitions">{defs}</dl>
"""
    return pages.document(title, body)
