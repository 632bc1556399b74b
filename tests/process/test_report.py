"""The HTML/PNG report on the bundled replay's journal, checked on disk and in a browser."""

from __future__ import annotations

import re
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


def test_report_files_and_images(report: tuple[Path, Path, dict[str, Any]]) -> None:
    journal, out, metrics = report
    page = (out / "report.html").read_text(encoding="utf-8")
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert sorted(sources) == sorted(PLOTS)  # every plot is on the page, nothing else
    for name in sources:
        assert "/" not in name  # relative, next to report.html: the directory moves as one
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC, name
        assert len(data) > 10_000, name  # a drawn plot, not an empty canvas
    assert 'id="metrics"' in page and 'id="by-hour"' in page and 'id="definitions"' in page
    assert "<style>" in page and "stylesheet" not in page  # self-contained CSS
    # the returned dict is the metrics of the journal with the same options
    again = compute_metrics(*load_journal(journal), BINANCE_SPOT_BTCUSDT,
                            markouts=load_markouts(journal))
    assert metrics == again


def test_report_is_deterministic(report: tuple[Path, Path, dict[str, Any]],
                                 tmp_path: Path) -> None:
    journal, out, _ = report
    write_report(journal, BINANCE_SPOT_BTCUSDT, tmp_path, inventory_soft_lots=SOFT_LOTS,
                 inventory_hard_lots=HARD_LOTS)
    for name in (*PLOTS, "report.html"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name


def _chromium(user_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={user_dir}", "--virtual-time-budget=5000",
         *args],
        capture_output=True, text=True, timeout=120,
    )


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason=f"{CHROMIUM} not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(report: tuple[Path, Path, dict[str, Any]],
                                             tmp_path: Path) -> None:
    _, out, metrics = report
    url = (out / "report.html").resolve().as_uri()
    dom = _chromium(tmp_path / "profile-dom", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # the page's script counts decoded images after the load event: all of them loaded
    loaded = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom.stdout)
    assert loaded is not None, dom.stdout[:2000]
    assert loaded.group(1) == loaded.group(2) == str(len(PLOTS))
    assert '<table id="metrics">' in dom.stdout
    assert "Total PnL (mark-to-market, after fees)" in dom.stdout
    assert f"{metrics['fills']:,}" in dom.stdout

    shot = tmp_path / "shot.png"
    run = _chromium(tmp_path / "profile-shot", "--hide-scrollbars", "--window-size=1280,4000",
                    f"--screenshot={shot}", url)
    assert run.returncode == 0, run.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 50_000  # a page with tables and plots
