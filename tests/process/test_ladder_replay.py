"""The shipped ladder config (config/ladder.toml, 3 levels a side) replayed on the bundled
spot recording: every level is quoted, journaled and shown in the report, no side ever
holds more orders than levels, and a journal from before ladders still reports."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import orjson

from mmdaemon.journal_reader import load_sample_levels
from tests.conftest import REPO, SPOT_FILES

LEVELS = 3


def replay(config: Path, state: Path, report: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "mmdaemon", "replay", *map(str, SPOT_FILES), "--config",
         str(config), "--state-dir", str(state), "--report", str(report), "--json"],
        capture_output=True, timeout=300)


def most_open_orders_a_side(journal: Path) -> dict[int, int]:
    """The most orders of ours open at once on each side (+1 buy, -1 sell), from the order
    log: an order opens with its place and closes when the venue says it is gone."""
    db = sqlite3.connect(journal)
    rows = db.execute("SELECT event, order_id, side FROM order_log ORDER BY seq").fetchall()
    db.close()
    open_: dict[int, set[int]] = defaultdict(set)
    acked: set[int] = set()
    most: dict[int, int] = defaultdict(int)
    for event, order_id, side in rows:
        if event == "place":
            open_[side].add(order_id)
            most[side] = max(most[side], len(open_[side]))
        elif event in ("ack", "partially_filled"):
            acked.add(order_id)
        elif event in ("canceled", "filled", "expired") or (
                event == "reject" and order_id not in acked):
            open_[side].discard(order_id)
    return dict(most)


def test_a_three_level_ladder_replays_and_the_report_shows_every_level(
        tmp_path: Path) -> None:
    state, report = tmp_path / "state", tmp_path / "report"
    proc = replay(REPO / "config" / "ladder.toml", state, report)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = orjson.loads(proc.stdout)
    assert summary["fills"] > 0 and summary["state"] == "ACTIVE"
    journal = state / "journal.sqlite"
    levels = load_sample_levels(journal)
    assert levels, "the samples keep the ladder"
    full = [r for r in levels if len(r.bids) == LEVELS and len(r.asks) == LEVELS]
    assert len(full) > 0.9 * len(levels)
    for row in full:
        bids, asks = [p for p, _ in row.bids], [p for p, _ in row.asks]
        assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
        assert bids[0] < asks[0]
    # the venue held the whole ladder, and never more orders a side than levels
    assert most_open_orders_a_side(journal) == {1: LEVELS, -1: LEVELS}
    stops = [orjson.loads(line) for line in proc.stderr.splitlines()
             if b'"orders_cancelled"' in line]
    assert stops and stops[-1]["cancelled"] == 2 * LEVELS  # the whole ladder, at shutdown
    page = (report / "report.html").read_text()
    assert f"Up to {LEVELS} levels on the bid and {LEVELS} on the ask" in page
    for side in ("bid", "ask"):
        for level in range(LEVELS):
            assert f'<tr><td class="name">{side}</td><td data-v="{level}">{level}</td>' in page
    # the quote plots draw every level of each side (one trace each, named by it)
    for plot in ("plot-quotes", "plot-quote-distance"):
        div = page[page.index(f'id="{plot}"'):]
        div = div[:div.index("</figure>")]
        for side in ("bid", "ask"):
            for level in range(LEVELS):
                assert f"{side} level {level}" in div, (plot, side, level)


def test_a_journal_from_before_ladders_still_reports(tmp_path: Path) -> None:
    state, report = tmp_path / "state", tmp_path / "report"
    proc = replay(REPO / "config" / "dryrun.toml", state, report)
    assert proc.returncode == 0, proc.stderr[-3000:]
    journal = state / "journal.sqlite"
    assert load_sample_levels(journal) == []  # one level a side: no ladder rows
    db = sqlite3.connect(journal)
    db.execute("DROP TABLE sample_levels")  # as a journal written before ladders
    db.commit()
    db.close()
    assert load_sample_levels(journal) == []
    again = subprocess.run([sys.executable, "-m", "mmdaemon", "report", str(state), "--out",
                            str(tmp_path / "again")], capture_output=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    page = (tmp_path / "again" / "report.html").read_text()
    assert "Quote ladder" not in page and "Markouts" in page
