"""``sweep.html``: the comparison page of a sweep (mmdaemon/pages.py's skeleton, plotly).

What it shows: how it was made (version, base config, grid, recordings, objective); with a
holdout, the best runs in-sample beside out-of-sample; the Pareto plots (PnL against the
average absolute inventory and against the maximum drawdown, the Pareto-efficient runs
highlighted); the markout curves (one line per run, the best emphasised); and the sortable
table of every run. Every figure also is in runs.csv, with all the others.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mmdaemon.pages import Figures, document, esc, table
from mmdaemon.sweep.grid import Grid, cell
from mmdaemon.sweep.objective import Objective

HEADLINES = ("total_pnl", "spread_capture_pnl", "inventory_pnl", "max_drawdown",
             "avg_abs_inventory", "fills", "volume", "quote_uptime", "order_to_trade",
             "fill_rate")
"""The figures the page's tables show (runs.csv has them all), markouts added per horizon."""

COMPARED = ("total_pnl", "max_drawdown", "avg_abs_inventory", "fills", "quote_uptime")
"""The figures the holdout table shows in-sample beside out of sample (with the objective
and the markout at the middle horizon)."""

_MARKOUT = re.compile(r"markouts\.([0-9.e+-]+)s\.markout_bps")


def markout_columns(rows: Sequence[Mapping[str, Any]]) -> list[tuple[float, str]]:
    """(horizon in seconds, column) of every markout-in-bps column, by horizon."""
    found: dict[str, float] = {}
    for row in rows:
        for name in row:
            match = _MARKOUT.fullmatch(name)
            if match:
                found[name] = float(match.group(1))
    return sorted((h, name) for name, h in found.items())


def pareto(points: Sequence[tuple[float, float]]) -> set[int]:
    """Indexes of the Pareto-efficient ``points`` (risk, reward): no other point has no
    more risk and no less reward with one of them strictly better (equal points are
    efficient together). One sort, then one pass: O(n log n)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    efficient: set[int] = set()
    last: tuple[float, float] | None = None
    for i in order:
        if last is None or points[i][1] > last[1] or points[i] == last:
            efficient.add(i)
            last = points[i]
    return efficient


def _number(row: Mapping[str, Any], name: str) -> float | None:
    value = row.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return None
    return float(value)


def _shown(value: Any) -> Any:
    """A table cell: numbers to 6 significant digits, sorting by their exact value."""
    if isinstance(value, float):
        return (f"{value:,.6g}", repr(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return (f"{value:,}", value)
    return cell(value)


def page(rows: Sequence[dict[str, Any]], holdout: Sequence[dict[str, Any]],
         best: Sequence[dict[str, Any]], grid: Grid, objective: Objective,
         context: Mapping[str, str]) -> str:
    """The page (HTML) of a sweep's in-sample ``rows``, its ``holdout`` rows and its
    ``best`` in-sample rows by ``objective``."""
    currency = next((str(r["currency"]) for r in rows if r.get("currency")), "quote currency")
    markouts = markout_columns(rows)
    headlines = [*dict.fromkeys([objective.name, *HEADLINES]), *(c for _, c in markouts)]
    figures = Figures()
    ok = [row for row in rows if not row["error"]]
    best_runs = [row["run"] for row in best]
    meta = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in context.items())
    parts = [
        f"<h1>Sweep: {len(rows):,} runs</h1>",
        f'<p class="meta">objective: {esc(objective)}; money in {esc(currency)}, '
        f"inventory in the base currency</p>",
        f"<dl>{meta}</dl>",
    ]
    broken = [row for row in [*rows, *holdout] if row["error"]]
    if broken:
        parts.append(f"<h2>Failed runs ({len(broken):,})</h2><ul>" + "".join(
            f"<li>{esc(row['set'])} run {row['run']} failed: {esc(row['error'])}</li>"
            for row in broken) + "</ul>")
    if holdout:
        middle = [markouts[len(markouts) // 2][1]] if markouts else []
        compared = list(dict.fromkeys([objective.name, *COMPARED, *middle]))
        parts.append(_holdout_section(best, holdout, grid, compared, objective))
    parts.append("<h2>PnL against risk</h2>")
    for risk, label, div in (("avg_abs_inventory", "average |inventory| (base currency)",
                              "pareto-inventory"),
                             ("max_drawdown", f"maximum drawdown ({currency})",
                              "pareto-drawdown")):
        parts.append(_pareto_figure(figures, ok, grid, risk, label, div, currency, best_runs))
    if markouts:
        parts.append("<h2>Markouts</h2>")
        parts.append(_markout_figure(figures, ok, markouts, best_runs))
    parts.append(f"<h2>Every run ({len(rows) + len(holdout):,} rows)</h2>")
    parts.append("<p>Click a header to sort. runs.csv beside this page has every figure "
                 "of every run.</p>")
    names = ["run", "set", *grid.keys, *headlines, "error"]
    parts.append(_scrolling(table(names, ([_shown(row.get(n)) for n in names]
                                          for row in [*rows, *holdout]),
                                  table_id="runs", name_columns=2)))
    return document(f"Sweep: {len(rows):,} runs", "\n".join(parts))


def _holdout_section(best: Sequence[dict[str, Any]], holdout: Sequence[dict[str, Any]],
                     grid: Grid, headlines: Sequence[str], objective: Objective) -> str:
    """The best runs by the objective: each figure in-sample beside out of sample."""
    held = {row["run"]: row for row in holdout}
    names = ["run", *grid.keys]
    for name in headlines:
        names += [f"{name} in-sample", f"{name} holdout"]
    body = []
    for row in best:
        out = held.get(row["run"], {})
        cells = [_shown(row["run"]), *(_shown(row.get(k)) for k in grid.keys)]
        for name in headlines:
            cells += [_shown(row.get(name)), _shown(out.get(name))]
        body.append(cells)
    return (f"<h2>Best {len(best)} by {esc(objective)}: in-sample and holdout</h2>"
            f"<p>Chosen on the in-sample recordings, re-run unchanged on the holdout "
            f"recordings.</p>"
            + _scrolling(table(names, body, table_id="best")))


def _scrolling(html: str) -> str:
    """A wide table in a box of the page's width that scrolls sideways."""
    return f'<div style="overflow-x: auto">{html}</div>'


def _hover(row: Mapping[str, Any], grid: Grid) -> str:
    return "<br>".join([f"run {row['run']}",
                        *(f"{k} = {esc(cell(row.get(k)))}" for k in grid.keys)])


def _pareto_figure(figures: Figures, rows: Sequence[dict[str, Any]], grid: Grid, risk: str,
                   label: str, div_id: str, currency: str, best: Sequence[int]) -> str:
    import plotly.graph_objects as go

    points = [(row, x, y) for row in rows
              if (x := _number(row, risk)) is not None
              and (y := _number(row, "total_pnl")) is not None]
    efficient = pareto([(x, y) for _, x, y in points])
    fig = go.Figure()
    groups: list[tuple[str, Callable[[int], bool], dict[str, Any]]] = [
        ("dominated", lambda i: i not in efficient, {"color": "#9e9e9e", "size": 7}),
        ("Pareto-efficient", lambda i: i in efficient, {"color": "#d62728", "size": 10}),
    ]
    for name, keep, marker in groups:
        chosen = [p for i, p in enumerate(points) if keep(i)]
        if name == "Pareto-efficient":
            chosen.sort(key=lambda p: p[1])  # drawn as the frontier, left to right
        fig.add_trace(go.Scatter(
            x=[x for _, x, _ in chosen], y=[y for _, _, y in chosen], name=name,
            mode="markers+lines" if name == "Pareto-efficient" else "markers",
            marker=marker, text=[_hover(r, grid) for r, _, _ in chosen],
            hovertemplate="%{text}<br>x %{x:.6g}<br>PnL %{y:.6g}<extra></extra>"))
    top = [p for p in points if p[0]["run"] in best]
    fig.add_trace(go.Scatter(
        x=[x for _, x, _ in top], y=[y for _, _, y in top], name="best by objective",
        mode="markers", marker={"symbol": "circle-open", "size": 16, "color": "#1f77b4",
                                "line": {"width": 2}},
        text=[_hover(r, grid) for r, _, _ in top], hoverinfo="text"))
    fig.update_layout(xaxis_title=label, yaxis_title=f"total PnL ({currency})",
                      height=460, margin={"t": 30})
    return figures.html(fig, div_id=div_id, caption=(
        f"Each point a run: total PnL against {label}. Red: Pareto-efficient (no other run "
        f"has as much PnL with less risk); circled: the best by the objective. "
        f"{len(points):,} runs."))


def _markout_figure(figures: Figures, rows: Sequence[dict[str, Any]],
                    markouts: Sequence[tuple[float, str]], best: Sequence[int]) -> str:
    import plotly.graph_objects as go

    fig = go.Figure()
    horizons = [h for h, _ in markouts]
    emphasised = {run: rank for rank, run in enumerate(best)}
    # the best drawn last (on top), in rank order (the legend's)
    ordered = sorted(rows, key=lambda r: (r["run"] in emphasised,
                                          emphasised.get(r["run"], 0)))
    for row in ordered:
        rank = emphasised.get(row["run"])
        fig.add_trace(go.Scatter(
            x=horizons, y=[_number(row, c) for _, c in markouts], mode="lines+markers",
            name=f"run {row['run']}" + (f" (best #{rank + 1})" if rank is not None else ""),
            showlegend=rank is not None,
            line={"width": 3} if rank is not None else {"width": 1, "color": "#c8c8c8"},
            marker={"size": 6 if rank is not None else 3}))
    fig.update_layout(xaxis_title="horizon (s, log scale)", xaxis_type="log",
                      yaxis_title="markout (bps of the mid)", height=460, margin={"t": 30})
    return figures.html(fig, div_id="markouts", caption=(
        "Markout of each run's fills at each horizon, volume-weighted, in bps (positive: "
        "the fills earned); grey: every run, coloured: the best by the objective."))
