"""The shared page parts: escaped tables with sortable values, plotly inlined once a page."""

from __future__ import annotations

import plotly.graph_objects as go

from mmdaemon.pages import Figures, document, table


def test_table_escapes_text_and_keeps_the_value_a_column_sorts_by() -> None:
    out = table(["name", "PnL"], [["<b>x</b>", ("1,234.50 USDT", 1234.5)]], table_id="t")
    assert "&lt;b&gt;x&lt;/b&gt;" in out
    assert '<td data-v="1234.5">1,234.50 USDT</td>' in out
    assert 'class="sortable"' in out


def test_plotly_javascript_is_inlined_once_per_page_whatever_the_number_of_plots() -> None:
    figures = Figures()
    first = figures.html(go.Figure(go.Scatter(x=[1, 2], y=[3, 4])), div_id="a")
    second = figures.html(go.Figure(go.Scatter(x=[1, 2], y=[3, 4])), div_id="b")
    page = document("two plots", first + second)
    assert page.count("plotly.js v") == 1  # the library's banner: one copy
    assert 'id="a"' in page and 'id="b"' in page
    assert len(second) < 100_000 < len(first)
