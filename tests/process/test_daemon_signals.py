"""`mmdaemon run` as a real subprocess receiving real signals."""

from __future__ import annotations

import gzip
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from mmdaemon import speedups
from tests.conftest import SPOT_FILES
from tests.daemon_process import Daemon, Event
from tests.helpers import write_config


def sends(e: Event) -> bool:
    return e.get("event") == "order_sent" and e.get("kind") in ("place", "amend")


def cli(command: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmdaemon", command, "--config", str(config)],
                          capture_output=True, text=True, timeout=30)


def test_kill_switch_survives_restart_rearm_resumes_and_sigterm_stops_clean(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, {"feed": {"speed": "20"}, "logging": {"level": "debug"}})
    d = Daemon(config)
    try:
        d.wait_for(sends, timeout=30)  # quoting
        d.signal(signal.SIGHUP)  # a reload of the same file: applied, trading goes on
        d.wait_event("reloaded")
        assert d.proc.poll() is None
        d.signal(signal.SIGUSR1)
        i, trip = d.wait_event("kill_switch_tripped")
        assert trip["reason"] == "operator_kill_switch"
        _, cancelled = d.wait_event("orders_cancelled", start=i)
        assert cancelled["open_after"] == 0
        # 20 s of market at speed 20: plenty of chances to quote. Kept: an absence over a
        # span of market, and a daemon process logs nothing per frame to wait for instead
        time.sleep(1.0)
        assert not [e for e in d.events[i:] if sends(e)]
        assert d.stop() == 0
        stopped = d.events[-1]
        assert stopped["event"] == "stopped" and stopped["open_orders"] == 0
        assert stopped["state"] == "KILLED"
    finally:
        if d.proc.poll() is None:
            d.kill()

    d = Daemon(config)  # restart: the latch is in the journal
    try:
        _, restored = d.wait_event("journal_restored")
        assert restored["killed"] and restored["kill_reason"] == "operator_kill_switch"
        _, started = d.wait_event("service_started")
        assert started["state"] == "KILLED"
        # operators see which hot loops run (the compiled ones, when the install built them)
        assert started["hot_loops"] == ("compiled" if speedups.compiled else "python")
        time.sleep(1.0)  # 20 s of market with no quote, as above
        assert not [e for e in d.events if sends(e)]
        proc = cli("rearm", config)  # SIGUSR2 through the pid file
        assert proc.returncode == 0 and "SIGUSR2" in proc.stdout
        i, _ = d.wait_event("kill_switch_rearmed")
        d.wait_for(sends, start=i)  # quoting resumes
        proc = cli("kill", config)  # and the CLI trips it too
        assert proc.returncode == 0
        d.wait_event("kill_switch_tripped", start=i)
        d.signal(signal.SIGUSR2)
        j, _ = d.wait_event("kill_switch_rearmed", start=i + 1)
        d.wait_for(sends, start=j)
        assert d.stop() == 0
        assert d.events[-1]["event"] == "stopped" and d.events[-1]["open_orders"] == 0
        assert not (tmp_path / "state" / "mmdaemon.pid").exists()
    finally:
        if d.proc.poll() is None:
            d.kill()


def test_rearm_is_refused_while_a_breaker_holds(tmp_path: Path) -> None:
    # a hard inventory limit at one base size trips on the first full fill and keeps holding
    config = write_config(tmp_path, {"feed": {"speed": "50"},
                                     "risk": {"inventory_soft_lots": 100000,
                                              "inventory_hard_lots": 100000}})
    d = Daemon(config)
    try:
        _, trip = d.wait_event("kill_switch_tripped", timeout=60)
        assert trip["reason"] == "inventory_hard_limit"
        d.signal(signal.SIGUSR2)
        _, refused = d.wait_event("rearm_refused")
        assert "hard limit" in refused["reasons"][0]
        assert d.stop() == 0
    finally:
        if d.proc.poll() is None:
            d.kill()


def test_sigkill_mid_replay_loses_no_fill_and_doubles_none(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"feed": {"speed": "60"}})
    journal = tmp_path / "state" / "journal.sqlite"
    d = Daemon(config)
    try:
        d.wait_for(lambda e: sum(x.get("event") == "fill" for x in d.events) >= 4, timeout=60)
    finally:
        d.kill()  # SIGKILL: no cleanup of any kind
    logged = [e for e in d.events if e["event"] == "fill"]
    rows = sqlite3.connect(journal).execute(
        "SELECT order_id, side, price, size, ts_ns FROM fills ORDER BY seq").fetchall()
    # a fill is logged only after its commit: every logged fill is in the journal
    journaled = {(r[0], r[2], r[3], r[4]) for r in rows}
    assert {(e["order_id"], e["price"], e["size"], e["ts_ns"]) for e in logged} <= journaled
    assert len(rows) == len(journaled) >= len(logged)

    d = Daemon(config)  # restart: position and fills exactly as the journal held them
    try:
        _, restored = d.wait_event("journal_restored")
        assert restored["fills"] == len(rows)
        assert restored["position_lots"] == sum(side * size for _, side, _, size, _ in rows)
        d.wait_for(sends_or_fill, timeout=30)
        assert d.stop() == 0
    finally:
        if d.proc.poll() is None:
            d.kill()
    after = sqlite3.connect(journal).execute(
        "SELECT COUNT(*), COUNT(DISTINCT exec_key) FROM fills").fetchone()
    assert after[0] == after[1] >= len(rows)


def sends_or_fill(e: Event) -> bool:
    return e.get("event") in ("fill", "orders_cancelled", "state_changed")


def test_a_reloaded_supervisor_interval_is_the_one_that_watches_a_silent_feed(
        tmp_path: Path) -> None:
    """Started checking once a minute, reloaded to a 1 s staleness limit checked every
    20 ms: a 6 s silence some seconds later halts (`feed_stale`). Before, the clock's
    supervisor kept the interval read at start and slept through the silence: no halt,
    quotes left out on a silent feed."""
    with gzip.open(SPOT_FILES[0], "rb") as f:
        lines = f.read().splitlines()[:3000]
    hole_ns = 6_000_000_000  # no frame at all, then the feed resumes
    shifted = [str(int(ns) + hole_ns).encode() + b" " + frame
               for ns, frame in (line.split(b" ", 1) for line in lines[2000:])]
    recording = tmp_path / "hole.gz"
    with gzip.open(recording, "wb") as f:
        f.write(b"\n".join(lines[:2000] + shifted) + b"\n")
    config = write_config(tmp_path, {
        "feed": {"recordings": [str(recording)], "speed": "2"},
        "risk": {"stale_feed_ms": 60_000, "supervisor_interval_ms": 60_000}})
    text = config.read_text()
    d = Daemon(config)
    try:
        d.wait_event("ready")
        config.write_text(text.replace("stale_feed_ms = 60000", "stale_feed_ms = 1000")
                          .replace("supervisor_interval_ms = 60000", "supervisor_interval_ms = 20"))
        d.signal(signal.SIGHUP)
        i, _ = d.wait_event("reloaded")
        _, stale = d.wait_event("state_changed", reason="feed_stale", start=i)
        assert stale["new"] == "HALTED"
        assert d.stop() == 0
    finally:
        if d.proc.poll() is None:
            d.kill()
