"""A daemon trading live against `mmdaemon sim` at speed 1: its fills (stamped with the
venue's times) and its samples (its own event times) on one time line, so the report's fill
markers, PnL path and markouts line up (#20 left this open: the sim stamped fills with the
recording's 2024 times while the daemon sampled in its own present)."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import SPOT_FILES
from tests.daemon_process import Daemon
from tests.helpers import SIM_BALANCES, wait_for
from tests.process.test_record_sim_cli import free_port, mmdaemon, wait_for_line
from tests.process.test_sim_processes import sim_config

MS = 1_000_000


def count(db: Path, sql: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


def test_live_fills_and_samples_share_the_sims_time_line_and_markouts_resolve(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port, state = free_port(), tmp_path / "state"
    config = sim_config(tmp_path, port, state, monkeypatch)
    sim = mmdaemon("sim", *SIM_BALANCES, *map(str, SPOT_FILES), "--port", str(port),
                   "--speed", "1")
    journal = state / "journal.sqlite"
    try:
        wait_for_line(sim, b"sim_listening")
        d = Daemon(config)
        try:
            d.wait_event("fill", timeout=240)
            # a markout resolves once the market has moved past its horizon; a fill on
            # another clock is "late" and never does
            wait_for(lambda: count(journal, "SELECT count(*) FROM markouts"), 60,
                     "a resolved markout")
            d.signal(signal.SIGTERM)
            assert d.stop() == 0
        finally:
            d.kill()
    finally:
        sim.send_signal(signal.SIGTERM)
        assert sim.wait(20) == 0
    conn = sqlite3.connect(journal)
    try:
        first, last = conn.execute("SELECT min(ts_ns), max(ts_ns) FROM samples").fetchone()
        fills = [ts for (ts,) in conn.execute("SELECT ts_ns FROM fills")]
    finally:
        conn.close()
    assert fills
    # every fill inside the sampled span (a sample every report.sample_ms of event time)
    assert all(first - 1_000 * MS <= ts <= last + 1_000 * MS for ts in fills), (
        first, last, fills)
