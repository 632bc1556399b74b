"""A funding payment in the journal (the real file, written by the real Journal as the
daemon writes one) reaches every reader: the replay summary (``--json`` and the table), its
metrics and the report, with total = realised + unrealised - fees + funding."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from mmdaemon.journal import JOURNAL_FILE, Journal
from mmdaemon.model import Funding
from tests.helpers import first_lines

PAID = -12_340_000  # notional units of 1e-10 USDT: -0.001234 USDT
FUNDING_ID = 1_723_075_200_000  # a payment's transaction time, ms


def mmdaemon(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "mmdaemon", *args], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_a_journaled_funding_payment_is_in_the_summary_metrics_and_report(
        tmp_path: Path) -> None:
    recording, state = first_lines(tmp_path / "short.gz", 6000), tmp_path / "state"
    before = orjson.loads(mmdaemon("replay", str(recording), "--state-dir", str(state),
                                   "--json").stdout)
    assert before["funding"] == 0.0 and before["fills"] > 0
    journal = Journal(state / JOURNAL_FILE)
    try:  # inside the recording's time, so the PnL path carries it too
        assert journal.record_funding(Funding(PAID, before["metrics"]["start_ns"] + 10**9,
                                              FUNDING_ID))
    finally:
        journal.close()

    after = orjson.loads(mmdaemon("replay", str(recording), "--state-dir", str(state),
                                  "--json").stdout)
    assert after["funding"] == -0.001234
    parts = (after["realized_pnl"] + after["unrealized_pnl"] - after["fees"]
             + after["funding"])
    assert abs(after["total_pnl"] - parts) < 1e-9
    metrics = after["metrics"]
    assert metrics["funding"] == -0.001234 and metrics["funding_payments"] == 1
    assert abs(metrics["total_pnl"] - (metrics["spread_capture_pnl"]
                                       + metrics["inventory_pnl"] - metrics["fees"]
                                       - 0.001234)) < 1e-9
    assert abs(sum(h["funding"] for h in metrics["by_hour"]) + 0.001234) < 1e-12

    table = mmdaemon("replay", str(recording), "--state-dir", str(state)).stdout
    [row] = [line for line in table.splitlines() if line.split()[:1] == ["funding"]]
    assert row.split()[1] == "-0.001234"

    out = tmp_path / "report"
    mmdaemon("report", str(state), "--out", str(out))
    html = (out / "report.html").read_text()
    assert "Funding (received &gt; 0, paid &lt; 0)" in html and "1 payments" in html
    assert "funding (received \\u003e 0)" in html  # the PnL plot's line, in its JSON
