"""A venue that is down when `mmdaemon run` starts, with real processes: the daemon is
started against a loopback port where nothing listens, `mmdaemon sim` only later.

The daemon must stay up and HALTED, retry with its reconnect backoff, tell the service
manager why (``STATUS=`` with ``EXTEND_TIMEOUT_USEC=``, on a real notify socket), send
READY=1 only once the venue is up and reconciled, and then quote at the sim; signals work
meanwhile. A venue that refuses our key is not an outage: exit 2 at once, also when it was
down at first."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmdaemon.readiness import START_RETRY_GRACE_S
from tests.conftest import REPO, SPOT_FILES
from tests.daemon_process import Daemon
from tests.helpers import SIM_BALANCES
from tests.process.test_notify import NotifySocket
from tests.process.test_record_sim_cli import free_port, mmdaemon, wait_for_line
from tests.process.test_sim_processes import KEY, SECRET, assert_quoting_at, open_orders

OUTAGE_S = 10.0  # how long the venue stays down after the daemon started


@pytest.fixture
def creds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both processes take the same made-up credentials from the environment."""
    monkeypatch.setenv("MMDAEMON_API_KEY", KEY)
    monkeypatch.setenv("MMDAEMON_API_SECRET", SECRET)


def sim_config(tmp_path: Path, port: int) -> Path:
    text = (REPO / "config" / "sim.toml").read_text().replace("9443", str(port))
    path = tmp_path / "sim.toml"
    path.write_text(text.replace('dir = "../state/sim"', f'dir = "{tmp_path / "state"}"'))
    return path


def start_daemon(config: Path, notify: NotifySocket | None = None) -> Daemon:
    if notify is not None:
        os.environ["NOTIFY_SOCKET"] = notify.address
    try:
        return Daemon(config)
    finally:
        os.environ.pop("NOTIFY_SOCKET", None)


def start_sim(port: int) -> subprocess.Popen[bytes]:
    sim = mmdaemon("sim", *SIM_BALANCES, *map(str, SPOT_FILES), "--port", str(port), "--speed", "5")
    wait_for_line(sim, b"sim_listening")
    return sim


def stop_sim(sim: subprocess.Popen[bytes]) -> None:
    sim.send_signal(signal.SIGTERM)
    sim.wait(20)


def extensions_usec(messages: list[tuple[float, str]]) -> Iterator[int]:
    for _, message in messages:
        found = re.search(r"^EXTEND_TIMEOUT_USEC=(\d+)$", message, re.MULTILINE)
        if found:
            yield int(found[1])


def test_a_venue_down_at_start_is_waited_out_halted_and_told_to_systemd(
    tmp_path: Path, creds: None
) -> None:
    port = free_port()  # nothing listens on it: connections are refused
    notify = NotifySocket(str(tmp_path / "notify.sock"))
    d = start_daemon(sim_config(tmp_path, port), notify)
    sim: subprocess.Popen[bytes] | None = None
    try:
        # the outage: the daemon stays up and HALTED for all of it, retrying; a reload
        # meanwhile is applied and is no READY
        started = time.monotonic()
        d.wait_event("gateway_start_failed")
        d.signal(signal.SIGHUP)
        d.wait_event("reloaded")
        while time.monotonic() - started < OUTAGE_S:
            assert d.proc.poll() is None, f"the daemon exited: {d.events[-5:]}"
            time.sleep(0.1)  # the outage under test lasts OUTAGE_S; watched throughout
        retries = [e for e in d.events if e.get("event") == "gateway_start_failed"]
        assert len(retries) >= 3 and all(e["retry_in_s"] > 0 for e in retries)
        assert not [e for e in d.events if e.get("event") in ("ready", "state_changed")]
        # systemd was told why, and that the start is alive: no READY yet
        unreachable = f"cannot connect to ws://127.0.0.1:{port}/ws-api/v3"
        statuses = notify.with_line("STATUS=")
        # first the journal's check (its own timeout extension), then the outage
        assert statuses[0][1].startswith("STATUS=checking the journal in ")
        statuses = statuses[1:]
        said = [m for _, m in statuses if unreachable in m]
        assert said and all(m.startswith("STATUS=HALTED BTCUSDT ") for _, m in statuses)
        assert re.search(r"order entry unreachable: .*Connection refused, retry in \d+\.\ds",
                         said[-1])
        assert any("market data unreachable: " in m for _, m in statuses)
        extensions = list(extensions_usec(statuses))
        assert extensions and min(extensions) >= START_RETRY_GRACE_S * 1e6
        assert not notify.with_line("READY=1")

        # the venue comes up: READY once in sync and reconciled, then quotes at the sim
        sim_started = time.monotonic()
        sim = start_sim(port)
        ready_at, ready = notify.wait("READY=1", timeout=90)
        assert ready_at > sim_started and "STATUS=ACTIVE BTCUSDT position=" in ready
        assert "unreachable" not in ready
        assert len(notify.with_line("READY=1")) == 1
        assert_quoting_at(port, 30, "the daemon quotes at the venue that came up")
        assert d.stop() == 0
    finally:
        if d.proc.poll() is None:
            d.kill()
        if sim is not None:
            stop_sim(sim)
        notify.close()


def test_sigterm_while_the_venue_is_down_at_start_exits_0_at_once(
    tmp_path: Path, creds: None
) -> None:
    d = start_daemon(sim_config(tmp_path, free_port()))
    try:
        d.wait_for(lambda e: e.get("event") == "gateway_start_failed" and e["attempt"] >= 3)
        assert d.proc.poll() is None
        asked = time.monotonic()
        d.signal(signal.SIGTERM)
        assert d.proc.wait(10) == 0
        took = time.monotonic() - asked
        _, stopped = d.wait_event("stopped")
        assert stopped["exit_code"] == 0 and stopped["open_orders"] == 0
        assert took < 5, took  # nothing to wait for: no connection, no order
    finally:
        if d.proc.poll() is None:
            d.kill()


def test_a_kill_while_the_venue_is_down_at_start_latches_and_nothing_is_placed_after(
    tmp_path: Path, creds: None
) -> None:
    port = free_port()
    notify = NotifySocket(str(tmp_path / "notify.sock"))
    d = start_daemon(sim_config(tmp_path, port), notify)
    sim: subprocess.Popen[bytes] | None = None
    try:
        d.wait_for(lambda e: e.get("event") == "gateway_start_failed" and e["attempt"] >= 2)
        d.signal(signal.SIGUSR1)
        d.wait_event("kill_switch_tripped", reason="operator_kill_switch")
        sim = start_sim(port)
        # READY still comes (synced, reconciled), as KILLED; the pending cancel-all runs
        _, ready = notify.wait("READY=1", timeout=90)
        assert "STATUS=KILLED BTCUSDT" in ready
        i, _ = d.wait_event("venue_status", ready=True)
        d.wait_event("orders_cancelled", start=i)
        # the market moves on (5x speed) and the daemon places nothing
        watched = time.monotonic()
        while time.monotonic() - watched < 3:
            assert open_orders(port) == []
            time.sleep(0.2)  # an absence over a span of market, watched throughout
        assert d.stop() == 0
        assert [e["state"] for e in d.events if e.get("event") == "stopped"] == ["KILLED"]
    finally:
        if d.proc.poll() is None:
            d.kill()
        if sim is not None:
            stop_sim(sim)
        notify.close()


@pytest.mark.parametrize("down_first", [False, True])
def test_a_key_the_venue_refuses_exits_2_and_is_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, down_first: bool
) -> None:
    """-2014 (a key of the wrong format) from the sim: exit 2, the unit's
    RestartPreventExitStatus, whether the venue answered at once or was down at first."""
    monkeypatch.setenv("MMDAEMON_API_KEY", KEY)
    monkeypatch.setenv("MMDAEMON_API_SECRET", SECRET)
    port = free_port()
    sim = None if down_first else start_sim(port)
    monkeypatch.setenv("MMDAEMON_API_KEY", "not a key!")
    d = start_daemon(sim_config(tmp_path, port))
    try:
        if down_first:
            d.wait_event("gateway_start_failed")
            monkeypatch.setenv("MMDAEMON_API_KEY", KEY)  # the sim's account
            sim = start_sim(port)
        assert d.proc.wait(90) == 2
        _, refused = d.wait_event("venue_refused")
        assert "-2014" in refused["error"] and "exchange.credentials" in refused["error"]
        assert d.proc.stderr is not None
        assert b"the venue refused us" in d.proc.stderr.read()
        i, _ = d.wait_event("gateway_start_refused")
        assert not [e for e in d.events[i:] if e.get("event") == "gateway_reconnecting"]
    finally:
        if d.proc.poll() is None:
            d.kill()
        if sim is not None:
            stop_sim(sim)
