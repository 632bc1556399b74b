"""The run report: ``report.html`` plus PNG plots, from a journal.

This is the I/O shell around :mod:`mmdaemon.analytics`: it reads the journal (read-only),
computes the metrics, draws the plots (:mod:`mmdaemon.plots`, matplotlib's Agg backend: no
display needed) and writes one self-contained HTML page (inline CSS, images by relative
file name, so the directory can be copied or served as it is).

Files written to ``out_dir`` (names are fixed, so a report can be diffed or linked to):

- ``report.html``: metrics, markout table, the quote ladder's levels (a run of more than
  one level a side), hour-of-day and daily tables, definitions;
- ``pnl.png``: mark-to-market PnL and its components over time;
- ``inventory.png``: position over time with the soft/hard limits if given;
- ``quotes.png``: our quotes (every level of a ladder) against the market's best bid/ask
  and fair value in a window;
- ``markouts.png``: the markout curve;
- ``by_hour.png``: fills and PnL by hour of day;
- ``spread_hist.png``: distribution of our quoted spread, weighted by time;
- ``orders.csv``, ``fills.csv``: the order log and the fills (:mod:`mmdaemon.orderlog`,
  as ``mmdaemon export`` writes them), linked from the page.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from mmdaemon.analytics import compute_metrics, ladder_levels
from mmdaemon.journal_reader import load_journal, load_markouts, load_sample_levels
from mmdaemon.metric_definitions import DEFINITIONS
from mmdaemon.model import NS_PER_S, Instrument
from mmdaemon.orderlog import FILLS_FILE, ORDERS_FILE, ExportResult, export
from mmdaemon.sharpe import sharpe_text

PLOTS = ("pnl.png", "inventory.png", "quotes.png", "markouts.png", "by_hour.png",
         "spread_hist.png")
"""Every PNG the report writes, in page order."""


def write_report(
    journal_path: Path | str,
    instrument: Instrument,
    out_dir: Path | str,
    *,
    inventory_soft_lots: int | None = None,
    inventory_hard_lots: int | None = None,
    window_start_ns: int | None = None,
    window_s: float = 300.0,
    title: str | None = None,
    **metric_options: Any,
) -> dict[str, Any]:
    """Write ``report.html`` and its plots for the journal at ``journal_path``; return metrics.

    ``inventory_soft_lots``/``inventory_hard_lots`` draw the risk limits (lots) on the
    inventory plot. The quotes plot covers ``window_s`` seconds from ``window_start_ns``
    (event time, ns), by default from the first sample where we quote. ``metric_options``
    go to :func:`mmdaemon.analytics.compute_metrics` (``horizons_s``, ``currency``,
    ``max_spread_bps``, ``tz``, ``sharpe_interval_s``, ``seconds_per_year``); the journal's
    markouts are read here. The returned dict is that
    function's.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fills, samples = load_journal(journal_path)
    metrics = compute_metrics(fills, samples, instrument, markouts=load_markouts(journal_path),
                              **metric_options)
    zone = ZoneInfo(metrics["tz"])
    levels = load_sample_levels(journal_path)
    ordered = sorted(samples, key=lambda s: s.ts_ns)
    fills_sorted = sorted(fills, key=lambda f: f.ts_ns)

    # imported here: matplotlib loads only when a report is drawn, not with this module
    from mmdaemon import plots

    plots.pnl(out / "pnl.png", fills, ordered, instrument, zone)
    plots.inventory(out / "inventory.png", ordered, instrument, zone, inventory_soft_lots,
                    inventory_hard_lots)
    plots.quotes(out / "quotes.png", fills_sorted, ordered, instrument, zone, window_start_ns,
                 window_s, levels)
    plots.markouts(out / "markouts.png", metrics)
    plots.by_hour(out / "by_hour.png", metrics)
    plots.spread_hist(out / "spread_hist.png", ordered, metrics["max_spread_bps"])
    with (out / ORDERS_FILE).open("w", encoding="utf-8", newline="") as orders, \
            (out / FILLS_FILE).open("w", encoding="utf-8", newline="") as fills_csv:
        exported = export(Path(journal_path), instrument, orders, fills_csv)
    page = _html(metrics, instrument, title or f"{instrument.symbol} market-making report",
                 str(journal_path), exported, _ladder_html(ladder_levels(levels, samples),
                                                           len(levels)))
    (out / "report.html").write_text(page, encoding="utf-8")
    return metrics


# -- html ---------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1150px; color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom:
  1px solid #ddd; padding-bottom: 0.2em; }
p.meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.name, th.name { text-align: left; }
tr.section td { background: #fafafa; font-weight: 600; text-align: left; }
td.neg { color: #b00020; } td.pos { color: #0a7d28; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
dl dt { font-weight: 600; margin-top: 0.5em; } dl dd { margin-left: 1.5em; }
"""

# After the load event every <img> either decoded (naturalWidth > 0) or failed; the count
# lands on <body> so a headless browser's DOM dump shows whether the plots displayed.
_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; }
  }
  document.body.setAttribute("data-images-loaded", ok + "/" + imgs.length);
});
"""

# (label, key, kind) rows of the main table; kind picks the formatting and unit
_METRIC_ROWS: list[tuple[str, str, str] | str] = [
    "PnL ({currency})",
    ("Total PnL (mark-to-market, after fees)", "total_pnl", "money"),
    ("Spread capture", "spread_capture_pnl", "money"),
    ("Inventory PnL", "inventory_pnl", "money"),
    ("Fees (paid > 0, rebates < 0)", "fees", "cost"),
    ("Realised PnL (average cost)", "realized_pnl", "money"),
    ("Unrealised PnL at the final mark", "unrealized_pnl", "money"),
    ("PnL per hour (extrapolated from the sampled time)", "pnl_per_hour_extrapolated",
     "money"),
    ("PnL per day (extrapolated from the sampled time)", "pnl_per_day_extrapolated", "money"),
    ("Max drawdown", "max_drawdown", "cost"),
    ("Sharpe ratio (annualised, 365 d; intervals)", "sharpe", "sharpe"),
    ("Sharpe interval (s) / last interval (s)", "sharpe_interval_s", "sharpe_grid"),
    "Fills and markouts (size-weighted, at the short horizon)",
    ("Fills", "fills", "int"),
    ("Maker share", "maker_share", "pct"),
    ("Volume (base currency)", "volume", "num"),
    ("Win rate (lots with markout > 0)", "win_rate", "pct"),
    ("Negative-markout rate (lots with markout < 0)", "negative_markout_rate", "pct"),
    ("Adverse-move rate (lots after which the mid moved against us)", "adverse_move_rate",
     "pct"),
    ("Short markout horizon (s)", "markout_horizon_s", "num"),
    ("Avg spread captured (bps, size-weighted)", "avg_spread_captured_bps", "bps"),
    ("Fills with the exact mid before them", "fills_with_exact_mid", "int"),
    ("Fills with a sampled mid (after the fill's event)", "fills_with_sampled_mid", "int"),
    ("Fills without a mid", "fills_without_mid", "int"),
    ("Age of a sampled mid at a fill (ms, median / max)", "mid_at_fill_age_ms_median", "age"),
    "Orders",
    ("Order requests (places + amends + cancels)", "order_requests", "int"),
    ("Places / amends / cancels", "places", "orders"),
    ("Order-to-trade ratio", "order_to_trade", "num"),
    ("Fill rate (fills per place or amend)", "fill_rate", "pct"),
    "Inventory",
    ("Avg |inventory| (time-weighted, base)", "avg_abs_inventory", "num"),
    ("Max |inventory| (base)", "max_abs_inventory", "num"),
    ("Inventory turnover (volume / avg |inventory|)", "inventory_turnover", "x"),
    ("Inventory turnover per day (extrapolated)", "inventory_turnover_per_day_extrapolated",
     "x"),
    ("Final position (base)", "position", "num"),
    ("Final mark (mid, quote currency)", "final_mark", "price"),
    "Quoting",
    ("Quote uptime (two-sided, spread within the limit)", "quote_uptime", "pct"),
    ("Uptime spread limit (bps)", "max_spread_bps", "num"),
    ("Two-sided share of time", "two_sided_share", "pct"),
    ("Mean quoted spread (bps, time-weighted)", "quoted_spread_bps_mean", "bps"),
    ("Mean market spread (bps, time-weighted)", "market_spread_bps_mean", "bps"),
    "Period",
    ("Start", "start_ns", "time"),
    ("End", "end_ns", "time"),
    ("Sampled time (s)", "sampled_s", "num"),
    ("Samples / runs", "samples", "samples"),
]

_TABLE_COLS: list[tuple[str, str, str]] = [
    ("sampled s", "sampled_s", "num"),
    ("fills", "fills", "int"),
    ("volume", "volume", "num"),
    ("PnL", "pnl", "money"),
    ("spread", "spread_capture_pnl", "money"),
    ("inventory", "inventory_pnl", "money"),
    ("fees", "fees", "cost"),
    ("markout bps", "markout_bps", "bps"),
    ("win", "win_rate", "pct"),
    ("neg. markout", "negative_markout_rate", "pct"),
    ("adverse move", "adverse_move_rate", "pct"),
    ("avg |inv|", "avg_abs_inventory", "num"),
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
    return f"<td{cls}>{html.escape(_fmt(value, kind, metrics))}</td>"


def _bucket_table(rows: list[dict[str, Any]], key: str, label: str, table_id: str) -> str:
    head = f'<th class="name">{html.escape(label)}</th>' + "".join(
        f"<th>{html.escape(name)}</th>" for name, _, _ in _TABLE_COLS)
    body = []
    for row in rows:
        key_text = f"{row[key]:02d}:00" if key == "hour" else str(row[key])
        cells = "".join(_cell(row[k], kind) for _, k, kind in _TABLE_COLS)
        body.append(f'<tr><td class="name">{html.escape(key_text)}</td>{cells}</tr>')
    return (f'<table id="{table_id}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def _ladder_html(rows: list[dict[str, Any]], samples: int) -> str:
    """The "Quote ladder" section: per side and level, how often it was quoted, its mean
    size and distance from the mid ("" for a run of one level a side)."""
    if not rows:
        return ""
    depth = {side: max((r["level"] + 1 for r in rows
                        if r["side"] == side and r["quoted_share"] > 0), default=0)
             for side in ("bid", "ask")}
    body = "".join(
        f'<tr><td class="name">{r["side"]}</td>{_cell(r["level"], "int")}'
        f'{_cell(r["quoted_share"], "pct")}{_cell(r["mean_size_lots"], "num")}'
        f'{_cell(r["mean_distance_bps"], "bps")}</tr>' for r in rows)
    return (f'<h2>Quote ladder</h2>\n<p id="ladder-depth">Up to {depth["bid"]} levels on the '
            f'bid and {depth["ask"]} on the ask, over {samples:,} samples quoting more than '
            f'one level on a side (level 0 is the innermost; the metrics above count every '
            f'level\'s orders and fills).</p>\n<table id="ladder"><thead><tr><th class="name">'
            f"side</th><th>level</th><th>quoted (share of those samples)</th><th>mean size "
            f"(lots)</th><th>mean distance from mid (bps)</th></tr></thead><tbody>{body}"
            f"</tbody></table>")


def _html(metrics: dict[str, Any], instrument: Instrument, title: str, source: str,
          exported: ExportResult, ladder: str = "") -> str:
    esc = html.escape
    currency = metrics["currency"]
    notes = "".join(f"<p>{esc(w)}</p>" for w in exported.warnings)
    main_rows = []
    for item in _METRIC_ROWS:
        if isinstance(item, str):
            section = item.format(currency=currency)
            main_rows.append(f'<tr class="section"><td colspan="2">{esc(section)}</td></tr>')
            continue
        label, key, kind = item
        main_rows.append(f'<tr><td class="name">{esc(label)}</td>'
                         f"{_cell(metrics.get(key), kind, metrics)}</tr>")
    mk_head = ("<tr><th>horizon (s)</th><th>resolved fills</th><th>resolved lots</th>"
               "<th>unresolved fills</th><th>markout (bps)</th><th>edge (bps)</th>"
               f"<th>mid move (bps)</th><th>markout PnL ({esc(currency)})</th><th>win</th>"
               "<th>negative markout</th><th>adverse move</th></tr>")
    mk_rows = "".join(
        "<tr>" + "".join(_cell(r[k], kind) for k, kind in (
            ("horizon_s", "num"), ("resolved_fills", "int"), ("resolved_lots", "int"),
            ("unresolved_fills", "int"), ("markout_bps", "bps"), ("edge_bps", "bps"),
            ("mid_move_bps", "bps"), ("markout_pnl", "money"), ("win_rate", "pct"),
            ("negative_markout_rate", "pct"), ("adverse_move_rate", "pct"))) + "</tr>"
        for r in metrics["markouts"])
    captions = {
        "pnl.png": "Mark-to-market PnL (black) and its exact components: spread capture, "
                   "inventory and minus fees.",
        "inventory.png": "Position sampled over time, with the risk limits when given.",
        "quotes.png": "Our gated quotes (steps; a ladder's outer levels thinner) against the "
                      "market's best bid/ask and our fair value; triangles are our fills.",
        "markouts.png": "Size-weighted markouts by horizon: the edge at the fill plus the "
                        "mid's move after it.",
        "by_hour.png": "Fills and PnL per hour of day.",
        "spread_hist.png": "How long we quoted each two-sided spread.",
    }
    figures = "".join(
        f'<figure><img src="{name}" alt="{esc(name)}"><figcaption>{esc(captions[name])}'
        "</figcaption></figure>" for name in PLOTS)
    defs = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in DEFINITIONS.items())
    unit = Fraction(instrument.tick_size) * Fraction(instrument.lot_size)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{_CSS}</style>
<script>{_SCRIPT}</script>
</head>
<body>
<h1>{esc(title)}</h1>
<p class="meta">Instrument {esc(instrument.symbol)}: tick {instrument.tick_size:f}, lot
{instrument.lot_size:f} (one notional unit = {esc(str(float(unit)))} {esc(currency)}; money
is in {esc(currency)}).
Journal: {esc(source)}. Times in event time; hour-of-day tables in {esc(metrics["tz"])}.</p>
<h2>Metrics</h2>
<table id="metrics"><tbody>{"".join(main_rows)}</tbody></table>
<h2>Markouts</h2>
<p>Exact at event level: the mid before the market event that filled us against the book's
mid at fill time + horizon; rates weighted by lots over the fills resolved at that horizon.</p>
<table id="markouts"><thead>{mk_head}</thead><tbody>{mk_rows}</tbody></table>
{ladder}
<h2>Plots</h2>
{figures}
<h2>By hour of day ({esc(metrics["tz"])})</h2>
{_bucket_table(metrics["by_hour"], "hour", "hour", "by-hour")}
<h2>By day ({esc(metrics["tz"])})</h2>
{_bucket_table(metrics["by_day"], "date", "date", "by-day")}
<h2>Order log</h2>
<p id="order-log"><a href="{ORDERS_FILE}">{ORDERS_FILE}</a>: {exported.orders:,} rows, every
order action sent and every answer of the venue; <a href="{FILLS_FILE}">{FILLS_FILE}</a>:
{exported.fills:,} fills. Formats: mmdaemon/orderlog.py (<code>mmdaemon export</code> writes
the same files).</p>
{notes}
<h2>Definitions</h2>
<dl id="definitions">{defs}</dl>
</body>
</html>
"""
