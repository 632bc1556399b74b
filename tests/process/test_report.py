"""The HTML report on the bundled replay's journal, checked on disk and in a browser."""

from __future__ import annotations

import re
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mmdaemon.analytics import compute_metrics
from mmdaemon.journal_reader import load_journal, load_markouts
from mmdaemon.model import BINANCE_SPOT_BTCUSDT
from mmdaemon.report import PLOTS, write_report
from tests.process.test_analytics import run_replay

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM = Path("/usr/bin/chromium")
# config/dryrun.toml's inventory limits, drawn on the inventory plot
SOFT_LOTS, HARD_LOTS = 800_000, 1_500_000


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    """(journal, report directory, returned metrics) of one replay of the recording."""
    base = tmp_path_factory.mktemp("report")
    run_replay(base / "state")
    journal = base / "state" / "journal.sqlite"
    out = base / "out"
    metrics = write_report(journal, BINANCE_SPOT_BTCUSDT, out, inventory_soft_lots=SOFT_LOTS,
                           inventory_hard_lots=HARD_LOTS)
    return journal, out, metrics


def test_report_is_one_self_contained_page_with_every_plot(
        report: tuple[Path, Path, dict[str, Any]]) -> None:
    journal, out, metrics = report
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<img" not in page and not list(out.glob("*.png"))  # no images beside it
    for name in PLOTS:  # every plot is a plotly div of its own
        assert f'id="plot-{name}"' in page, name
    # plotly's JavaScript inlined once, no script or stylesheet fetched from anywhere
    assert page.count("plotly.js v") >= 1 and "<script src=" not in page
    assert "<link" not in page and "<img" not in page
    assert 'id="metrics"' in page and 'id="by-hour"' in page and 'id="definitions"' in page
    # money in the instrument's quote currency, sizes in its base currency, never generic
    # (the config file's own text, embedded as it was read, may say what it likes)
    ours = re.sub(r"<pre .*?</pre>", "", page, flags=re.DOTALL)
    assert "quote currency" not in ours and "base currency" not in ours
    assert "PnL (USDT)" in page and "Volume (BTC)" in page
    # the returned dict is the metrics of the journal with the same options
    again = compute_metrics(*load_journal(journal), BINANCE_SPOT_BTCUSDT,
                            markouts=load_markouts(journal))
    assert metrics == again


def test_every_metric_shows_its_sample_size(report: tuple[Path, Path, dict[str, Any]]) -> None:
    """Rates and means never stand alone: each row names the fills, lots, samples or
    intervals behind it, and the hourly table the lots its markouts rest on."""
    _, out, metrics = report
    page = (out / "report.html").read_text(encoding="utf-8")
    table = page[page.index('<table id="metrics">'):page.index("</table>",
                                                                page.index('id="metrics"'))]
    short = metrics["markouts"][0]
    assert (f"<td>{short['resolved_fills']:,} fills, {short['resolved_lots']:,} lots resolved"
            f"</td>") in table  # the win / negative-markout / adverse-move rates
    assert f"<td>{metrics['sharpe_intervals']:,} intervals</td>" in table
    assert (f"<td>{metrics['two_sided_samples']:,} samples, {metrics['two_sided_s']:,.1f} s"
            f"</td>") in table  # the mean quoted spread
    assert f"<td>{metrics['samples']:,} samples, {metrics['sampled_s']:,.1f} s</td>" in table
    hours = page[page.index('<table id="by-hour"'):]
    assert "markout lots resolved" in hours[:hours.index("</thead>")]
    assert sum(r["markout_lots"] for r in metrics["by_hour"]) == short["resolved_lots"]


def test_report_is_deterministic(report: tuple[Path, Path, dict[str, Any]],
                                 tmp_path: Path) -> None:
    journal, out, _ = report
    write_report(journal, BINANCE_SPOT_BTCUSDT, tmp_path, inventory_soft_lots=SOFT_LOTS,
                 inventory_hard_lots=HARD_LOTS)
    for name in ("report.html", "orders.csv", "fills.csv"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name


def _chromium(user_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={user_dir}", "--virtual-time-budget=10000",
         *args],
        capture_output=True, text=True, timeout=120,
    )


def _div(dom: str, div_id: str) -> str:
    """The rendered DOM of the plot div ``div_id`` (up to the next plot's figure)."""
    start = dom.index(f'id="{div_id}"')
    end = dom.find("<figure>", start)
    return dom[start:end if end > 0 else len(dom)]


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason=f"{CHROMIUM} not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(report: tuple[Path, Path, dict[str, Any]],
                                             tmp_path: Path) -> None:
    """The page as a desk opens it: the quote-distance plot drawn by plotly (an SVG with
    one trace per level and side, legend and window slider), the fills table with a row
    for every fill the journal holds, and the links to both CSVs."""
    journal, out, metrics = report
    url = (out / "report.html").resolve().as_uri()
    dom = _chromium(tmp_path / "profile-dom", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    distance = _div(html, "plot-quote-distance")
    assert 'class="main-svg"' in distance  # plotly drew it
    legend = re.findall(r'class="legendtext"[^>]*>([^<]+)<', distance)
    # the bundled run quotes one level a side: its bid and its ask, one trace each
    assert sorted(re.sub(r" \(.*", "", name) for name in legend) == ["ask level 0",
                                                                     "bid level 0"]
    plot_area = distance[:distance.index("rangeslider")]
    assert plot_area.count('class="trace scatter') == 2
    assert "rangeslider" in distance and "rangeselector" in distance
    for name in PLOTS:  # every plot drew an SVG
        assert 'class="main-svg"' in _div(html, f"plot-{name}"), name

    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
        journal_fills = db.execute("SELECT count(*) FROM fills").fetchone()[0]
    assert journal_fills == metrics["fills"] > 0
    fills = html[html.index('<table id="fills"'):]
    body = fills[fills.index("<tbody>"):fills.index("</tbody>")]
    assert body.count("<tr>") == journal_fills
    assert 'href="fills.csv"' in html and 'href="orders.csv"' in html
    assert "price (USDT)" in fills[:fills.index("</thead>")]
    assert "Total PnL (mark-to-market, after fees and funding)" in html

    shot = tmp_path / "shot.png"
    run = _chromium(tmp_path / "profile-shot", "--hide-scrollbars", "--window-size=1280,4000",
                    f"--screenshot={shot}", url)
    assert run.returncode == 0, run.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 50_000  # a page with tables and plots
