"""`replay --report`, `mmdaemon report`, and the LOBSTER equity day through the same path."""

from __future__ import annotations

import hashlib
import re
import shutil
import sqlite3
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import orjson
import pytest

from mmdaemon import pages
from tests.conftest import SHARED_DATA, SPOT_FILES
from tests.helpers import first_lines

LOBSTER = SHARED_DATA / "lobster-amzn-l1"
MESSAGE = LOBSTER / "AMZN_2012-06-21_34200000_57600000_message_1.csv"
ORDERBOOK = LOBSTER / "AMZN_2012-06-21_34200000_57600000_orderbook_1.csv"


def mmdaemon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmdaemon", *args], capture_output=True,
                          text=True, timeout=300)


def test_replay_report_and_report_command(tmp_path: Path) -> None:
    state, first, second = tmp_path / "state", tmp_path / "r1", tmp_path / "r2"
    proc = mmdaemon("replay", *map(str, SPOT_FILES), "--state-dir", str(state), "--report",
                    str(first), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = orjson.loads(proc.stdout)
    metrics = summary["metrics"]
    assert metrics["fills"] == summary["fills"]
    assert (first / "report.html").is_file()
    # the same journal, reported again by the report command alone
    proc = mmdaemon("report", str(state), "--out", str(second))
    assert proc.returncode == 0, proc.stderr[-2000:]
    html_a = (first / "report.html").read_text()
    html_b = (second / "report.html").read_text()
    assert html_a == html_b  # deterministic: same journal, same report
    assert mmdaemon("report", str(tmp_path / "nowhere"), "--out", str(second)).returncode == 2


def test_lobster_equity_day_replays_with_a_time_of_day_table(tmp_path: Path) -> None:
    if not MESSAGE.exists():
        pytest.skip(f"{LOBSTER} not present: the LOBSTER sample lives in ../shared only")
    out = tmp_path / "report"
    proc = mmdaemon("replay", "--venue", "lobster", str(MESSAGE), str(ORDERBOOK), "--report",
                    str(out), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = orjson.loads(proc.stdout)
    assert s["malformed"] == 63  # the half-cent hidden executions (see the LOBSTER reader)
    assert s["frames"] == 57_515 + 11_356 + 63 and s["fills"] > 0 and s["gaps"] == 0
    hours = [row["hour"] for row in s["metrics"]["by_hour"]]
    assert hours == list(range(9, 16))  # 09:30-16:00 New York, the whole session
    assert sum(row["fills"] for row in s["metrics"]["by_hour"]) == s["fills"]
    html = (out / "report.html").read_text()
    assert "15:00" in html or ">15<" in html
    # NASDAQ money in USD, sizes in shares: never USDT, never a generic "quote currency"
    assert "PnL (USD)" in html and "price (USD)" in html and "size (shares)" in html
    # (outside the config's text and the definitions, which give BTCUSDT as an example)
    ours = re.sub(r"<pre .*?</pre>", "", html[:html.index("<h2>Definitions</h2>")],
                  flags=re.DOTALL)
    assert "USDT" not in ours and "quote currency" not in html
    assert '<td class="name">Volume (shares)</td>' in html


def test_the_config_and_version_are_in_the_json_the_report_and_the_journal(
        tmp_path: Path) -> None:
    """``replay --json`` and its report say which mmdaemon and which config file (path,
    sha256, text) produced them; ``mmdaemon report`` finds the same in the journal, and
    an older journal without them still reports, saying they were not recorded."""
    config = Path(__file__).resolve().parents[2] / "config" / "dryrun.toml"
    recording = first_lines(tmp_path / "short.gz", 3000)
    state, first, second = tmp_path / "state", tmp_path / "r1", tmp_path / "r2"
    proc = mmdaemon("replay", str(recording), "--config", str(config), "--state-dir",
                    str(state), "--report", str(first), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = orjson.loads(proc.stdout)
    sha = hashlib.sha256(config.read_bytes()).hexdigest()
    assert summary["version"] == version("mmdaemon")
    assert summary["config"]["path"] == str(config)
    assert summary["config"]["sha256"] == sha
    assert summary["config"]["text"] == config.read_text()  # nothing secret-looking in it
    assert summary["config"]["values"]["exchange"]["adapter"] == "paper"
    assert summary["feed"]["recordings"] == [{"path": str(recording),
                                              "bytes": recording.stat().st_size}]
    assert mmdaemon("report", str(state), "--out", str(second)).returncode == 0
    for out in (first, second):
        page = (out / "report.html").read_text()
        produced = page[page.index('id="provenance"'):page.index("<h2>Metrics</h2>")]
        assert f"<dd>{version('mmdaemon')}</dd>" in produced
        assert f"<dd>{sha}</dd>" in produced and f"<dd>{config}</dd>" in produced
        assert pages.esc(config.read_text()) in produced
        assert str(recording) in produced

    old = tmp_path / "old"
    shutil.copytree(state, old, ignore=shutil.ignore_patterns("*.lock", "*.pid"))
    with sqlite3.connect(old / "journal.sqlite") as db:
        db.execute("DELETE FROM state WHERE key = 'provenance'")
    proc = mmdaemon("report", str(old), "--out", str(tmp_path / "r3"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    page = (tmp_path / "r3" / "report.html").read_text()
    assert "Version and configuration: not recorded" in page
    assert 'id="plot-quote-distance"' in page


def test_the_summary_for_people_matches_the_json_one(tmp_path: Path) -> None:
    """Without --json: one ``name  value`` line per figure, the report's headlines and
    markouts flattened in (no nested structures dumped), the same numbers as --json."""
    recording = first_lines(tmp_path / "part.gz", 20_000)
    args = ("replay", str(recording))
    as_json = mmdaemon(*args, "--state-dir", str(tmp_path / "a"), "--json")
    text = mmdaemon(*args, "--state-dir", str(tmp_path / "b"))
    assert as_json.returncode == text.returncode == 0, text.stderr[-2000:]
    summary = orjson.loads(as_json.stdout)
    rows = dict(line.split(None, 1) for line in text.stdout.splitlines()[1:-1])
    assert "{" not in text.stdout and "[" not in text.stdout
    assert summary["fills"] > 0 and rows["fills"] == f"{summary['fills']:,}"
    assert rows["total_pnl"] == f"{summary['total_pnl']:,.6f}"
    horizons = [m["horizon_s"] for m in summary["metrics"]["markouts"]]
    assert horizons and all(f"markout_{h:g}s_bps" in rows for h in horizons)
    # the Sharpe ratio never without its interval count; n/a below 30 intervals
    intervals = summary["metrics"]["sharpe_intervals"]
    assert summary["metrics"]["sharpe"] is None and 0 < intervals < 30
    assert rows["sharpe"] == f"n/a ({intervals} intervals)"


PLOTTING = ("plotly", "mmdaemon.report", "mmdaemon.plots")

# `python -m mmdaemon ...`, then one more line on stdout: which of PLOTTING the run loaded
LOADED_PROBE = (
    "import sys, orjson\n"
    "from mmdaemon.cli import main\n"
    "code = main(sys.argv[1:])\n"
    f"print(orjson.dumps(sorted(set(sys.modules) & set({PLOTTING!r}))).decode())\n"
    "sys.exit(code)\n"
)


@pytest.mark.parametrize("with_report", [False, True], ids=["json", "json-and-report"])
def test_the_summary_metrics_never_import_the_plotting_library(tmp_path: Path,
                                                              with_report: bool) -> None:
    """plotly costs more to import than a short replay takes to run: the summary's
    metrics must not load it, only a report does (which also shows the probe sees it)."""
    recording = first_lines(tmp_path / "short.gz", 3000)
    report = ("--report", str(tmp_path / "report")) if with_report else ()
    proc = subprocess.run([sys.executable, "-c", LOADED_PROBE, "replay", str(recording),
                           "--json", *report], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary, loaded = proc.stdout.splitlines()
    assert orjson.loads(summary)["metrics"]["fills"] >= 0
    if with_report:
        assert set(orjson.loads(loaded)) == set(PLOTTING)
    else:
        assert orjson.loads(loaded) == []


def test_the_summary_for_people_ends_with_the_report_path(tmp_path: Path) -> None:
    """``make demo`` ends with the summary and where its report went."""
    recording = first_lines(tmp_path / "short.gz", 3000)
    out = tmp_path / "report"
    proc = mmdaemon("replay", str(recording), "--report", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = proc.stdout.splitlines()[-1]
    assert last == f"report: {out / 'report.html'}"
    assert (out / "report.html").is_file()
