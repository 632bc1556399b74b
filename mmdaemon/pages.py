"""Self-contained HTML pages: the report, the calibration page and the sweep's comparison.

One skeleton (:func:`document`), one stylesheet, one way to embed a zoomable plot
(:class:`Figures`) and one sortable table (:func:`table`), so every page a command writes
looks and behaves the same. Pages open from disk with no server and no network: plotly's
JavaScript is inlined once per page (about 4.8 MB), the figures after the first reuse it.

Plotly (``plotly.graph_objects``) is imported by the callers that draw, never here, so a
command that writes no page does not load it.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1150px; color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom:
  1px solid #ddd; padding-bottom: 0.2em; }
p.meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.name, th.name { text-align: left; }
table.sortable th { cursor: pointer; } table.sortable th[data-dir]::after {
  content: attr(data-dir); color: #888; }
tr.section td { background: #fafafa; font-weight: 600; text-align: left; }
td.neg { color: #b00020; } td.pos { color: #0a7d28; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
dl dt { font-weight: 600; margin-top: 0.5em; } dl dd { margin-left: 1.5em; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
"""

# Click a header of a table.sortable to sort by that column (again: the other way). Cells
# sort by their data-v attribute when present (the exact number behind a formatted text),
# else numerically when both parse as numbers, else as text; empty cells sort last.
SORT_SCRIPT = """
document.addEventListener("click", function (ev) {
  var th = ev.target.closest("table.sortable thead th");
  if (!th) { return; }
  var table = th.closest("table"), body = table.tBodies[0];
  var col = Array.prototype.indexOf.call(th.parentNode.children, th);
  var up = th.getAttribute("data-dir") !== " \\u25b2";
  Array.prototype.forEach.call(th.parentNode.children, function (h) {
    h.removeAttribute("data-dir"); });
  th.setAttribute("data-dir", up ? " \\u25b2" : " \\u25bc");
  function key(row) {
    var cell = row.children[col];
    if (!cell) { return null; }
    var raw = cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent;
    raw = raw.trim();
    if (raw === "" || raw === "n/a") { return null; }
    var num = Number(raw.replace(/,/g, ""));
    return isNaN(num) ? raw : num;
  }
  var rows = Array.prototype.slice.call(body.rows);
  rows.sort(function (a, b) {
    var x = key(a), y = key(b);
    if (x === null || y === null) { return (x === null) - (y === null); }
    if (typeof x !== typeof y) { x = String(x); y = String(y); }
    var c = x < y ? -1 : x > y ? 1 : 0;
    return up ? c : -c;
  });
  rows.forEach(function (r) { body.appendChild(r); });
});
"""


def esc(text: object) -> str:
    """``text`` as HTML text (quotes escaped too: safe inside attributes)."""
    return html.escape(str(text), quote=True)


def document(title: str, body: str, *, script: str = "") -> str:
    """A whole HTML5 page: ``title`` (plain text, escaped here), ``body`` (HTML, as given),
    the shared stylesheet, the table-sorting script and ``script`` (JavaScript) in the
    head."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{CSS}</style>
<script>{SORT_SCRIPT}{script}</script>
</head>
<body>
{body}
</body>
</html>
"""


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, table_id: str,
          sortable: bool = True, name_columns: int = 1) -> str:
    """A ``<table>`` with ``headers`` (plain text) and ``rows`` of cells.

    A cell is plain text (escaped here) or a pair ``(text, value)``: the text shows and
    the value (a number) is what the column sorts by, so ``"1,234.5 USDT"`` sorts as
    1234.5. The first ``name_columns`` columns are left-aligned names."""
    cls = ' class="sortable"' if sortable else ""
    head = "".join(f'<th{" class=name" if i < name_columns else ""}>{esc(h)}</th>'
                   for i, h in enumerate(headers))
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            name = ' class="name"' if i < name_columns else ""
            if isinstance(cell, tuple):
                text, value = cell
                cells.append(f'<td{name} data-v="{esc(value)}">{esc(text)}</td>')
            else:
                cells.append(f"<td{name}>{esc(cell)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<table id="{esc(table_id)}"{cls}><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


class Figures:
    """Plotly figures of one page: the first one :meth:`html` embeds carries plotly's
    JavaScript inline, the others reuse it, so a page is self-contained at the cost of
    one copy of the library whatever its number of plots."""

    __slots__ = ("_count",)

    def __init__(self) -> None:
        self._count = 0

    def html(self, figure: Any, *, div_id: str, caption: str = "") -> str:
        """``figure`` (a ``plotly.graph_objects.Figure``) as a ``<figure>`` whose plot div
        has the id ``div_id`` (stable, so a browser test can find it) and a caption."""
        first = self._count == 0
        self._count += 1
        div = figure.to_html(full_html=False, include_plotlyjs=first, div_id=div_id,
                             config={"displaylogo": False, "responsive": True})
        cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
        return f"<figure>{div}{cap}</figure>"
