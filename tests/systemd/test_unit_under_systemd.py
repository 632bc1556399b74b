"""deploy/mmdaemon@.service run by the real service manager: systemd 252 as PID 1 of a
Debian 12 container (systemd-nspawn), mmdaemon installed by the runbook's install steps, each
instance against ``mmdaemon sim`` on the host's loopback (the container shares the host's
network). Every step is asserted from systemd's own view (``systemctl show -p ActiveState,
SubState,StatusText,MainPID,NRestarts,Result``) and from the daemon's JSON lines in the
journal (``journalctl -u``), the open orders from the venue's.

``make test-systemd`` runs this; ``make test`` does not (marker ``systemd``). The machine,
the install and the per-step durations are printed in the terminal summary.
"""

from __future__ import annotations

import re
import socket
import time
from typing import Any

import pytest

from tests.systemd.conftest import Instance, stamp
from tests.systemd.machine import poll

pytestmark = pytest.mark.systemd

STATE_LINE = r"{state} BTCUSDT position=\S+ pnl=\S+ fills=\d+"
# the unit's WatchdogSec= and RestartSec=, and slack for a loaded 2-core host
WATCHDOG_S, RESTART_S, SLACK_S = 10, 5, 20
# frames the daemon processes before "no order was placed" is believed: ~3 s of market;
# started ACTIVE it places its first orders within the frame that syncs the book
QUIET_FRAMES = 300
OUTAGE_S = 12  # the venue is down this long after `systemctl start`
PLACED = 'mmdaemon_order_requests_total{kind="place"}'
AMENDED = 'mmdaemon_order_requests_total{kind="amend"}'


def running(inst: Instance) -> dict[str, str]:
    """Started against a running sim: active (running), READY, quoting; systemd's view."""
    inst.sim.start()
    shown = inst.start()
    assert (shown["ActiveState"], shown["SubState"]) == ("active", "running"), inst.context()
    inst.quoting()
    return shown


def kill_switch(inst: Instance, pid: str) -> None:
    """``systemctl kill -s SIGUSR1``; returns once KILLED shows and the venue is empty."""
    begin = time.monotonic()
    inst.systemctl("kill", "-s", "SIGUSR1", inst.unit)
    shown = inst.wait_show(10, "KILLED in the status line", StatusText="KILLED *")
    assert re.fullmatch(STATE_LINE.format(state="KILLED"), shown["StatusText"]), shown
    inst.wait_event("kill_switch_tripped", pid, reason="operator_kill_switch")
    cancelled = inst.wait_event("orders_cancelled", pid, reason="operator_kill_switch")
    assert cancelled["open_after"] == 0, cancelled
    poll(lambda: inst.sim.open_orders() == [], 10, f"no open order at the sim\n{inst.context()}")
    inst.step("SIGUSR1 -> KILLED, venue empty", begin)


def test_start_is_active_only_after_ready_and_status_shows_the_state(
        instance: Instance) -> None:
    """Step 1: ``systemctl start`` returns with the unit active (running) once the daemon
    sent READY=1 (book in sync, venue reconciled), not when the process started; the
    Status line is the daemon's state line; the process runs inside the unit's sandbox."""
    shown = running(instance)
    pid = shown["MainPID"]
    assert pid != "0" and shown["NRestarts"] == "0" and shown["Result"] == "success", shown
    assert re.fullmatch(STATE_LINE.format(state="ACTIVE"), shown["StatusText"]), shown
    ready = instance.wait_event("ready", pid, state="ACTIVE")
    events = instance.events(pid)
    before = events[:events.index(ready)]
    assert [e for e in before if e["event"] == "venue_status" and e.get("ready") is True], (
        "the venue was reconciled before READY", before)
    assert [e for e in before if e["event"] == "feed_snapshot"], ("the book synced", before)
    # systemd made the unit active after every line the daemon wrote before READY=1, and
    # the process started before the first of them: activation waited for the daemon
    active_at = stamp(shown["ActiveEnterTimestamp"])
    assert stamp(shown["ExecMainStartTimestamp"]) < stamp(before[0]["timestamp"]) < active_at
    early = [e for e in before if stamp(e["timestamp"]) > active_at]
    assert not early, (f"active at {active_at} before the daemon's start-up was done", early)
    # the unit's sandbox is in effect in this container, not skipped: a transient user, no
    # capabilities, no new privileges, the system-call filter
    status = dict(line.split(":", 1) for line in instance.machine.run(
        "cat", f"/proc/{pid}/status").stdout.splitlines())
    assert status["Uid"].split()[0] != "0", status["Uid"]
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0, status
    assert status["NoNewPrivs"].strip() == "1" and status["Seccomp"].strip() == "2", status


def test_systemctl_kill_sigusr1_latches_killed_and_empties_the_venue(
        instance: Instance) -> None:
    """Step 2: the kill switch through systemd: KILLED in Status and the log, every order
    cancelled at the venue, the process still running (nothing restarted)."""
    pid = running(instance)["MainPID"]
    kill_switch(instance, pid)
    changed = instance.wait_event("state_changed", pid, new="KILLED")
    assert changed["reason"] == "operator_kill_switch", changed
    shown = instance.show()
    assert (shown["ActiveState"], shown["SubState"], shown["MainPID"], shown["NRestarts"]) == (
        "active", "running", pid, "0"), shown


def test_the_kill_latch_holds_across_systemctl_restart(instance: Instance) -> None:
    """Step 3: after ``systemctl restart`` the new process restores KILLED from its journal
    before READY and places no order while it processes the market."""
    old = running(instance)["MainPID"]
    kill_switch(instance, old)
    begin = time.monotonic()
    instance.systemctl("restart", instance.unit)
    begin = instance.step("systemctl restart -> returned", begin)
    shown = instance.show()
    pid = shown["MainPID"]
    assert (shown["ActiveState"], shown["SubState"], shown["NRestarts"]) == (
        "active", "running", "0") and pid not in ("0", old), shown
    assert re.fullmatch(STATE_LINE.format(state="KILLED"), shown["StatusText"]), shown
    restored = instance.wait_event("journal_restored", pid)
    assert restored["killed"] is True and restored["kill_reason"] == "operator_kill_switch"
    instance.wait_event("ready", pid, state="KILLED")

    def quiet_window() -> dict[str, float] | None:
        samples = instance.scrape()
        if samples and samples.get("mmdaemon_feed_frames_total", 0) >= QUIET_FRAMES:
            return samples
        return None

    samples = poll(quiet_window, 60, f"{QUIET_FRAMES} frames processed\n{instance.context()}")
    instance.step(f"{QUIET_FRAMES} frames processed while KILLED", begin)
    assert samples[PLACED] == 0 and samples[AMENDED] == 0, samples
    sent = [e for e in instance.events(pid)
            if e["event"] == "order_sent" and e["kind"] != "cancel"]
    assert not sent, sent
    assert instance.sim.open_orders() == []
    assert instance.show()["StatusText"].startswith("KILLED ")


@pytest.mark.parametrize("how", ["systemctl-kill-sigusr2", "mmdaemon-rearm-cli"])
def test_rearm_goes_back_to_active_and_quoting(instance: Instance, how: str) -> None:
    """Step 4: re-armed by ``systemctl kill -s SIGUSR2`` or by ``mmdaemon rearm --config``
    run in the machine as root (the pid file in the DynamicUser state directory): ACTIVE in
    Status and the log, and orders at the venue again, same process."""
    pid = running(instance)["MainPID"]
    kill_switch(instance, pid)
    begin = time.monotonic()
    if how == "systemctl-kill-sigusr2":
        instance.systemctl("kill", "-s", "SIGUSR2", instance.unit)
    else:
        done = instance.machine.run("/opt/mmdaemon/.venv/bin/mmdaemon", "rearm", "--config",
                                    instance.config_path, check=False)
        assert done.returncode == 0, (done.stdout, done.stderr)
    shown = instance.wait_show(10, "ACTIVE in the status line", StatusText="ACTIVE *")
    assert re.fullmatch(STATE_LINE.format(state="ACTIVE"), shown["StatusText"]), shown
    instance.wait_event("kill_switch_rearmed", pid, state="ACTIVE")
    instance.wait_event("state_changed", pid, old="KILLED", new="ACTIVE", reason="rearmed")
    instance.quoting()
    instance.step(f"{how} -> ACTIVE, quoting", begin)
    assert (shown["MainPID"], shown["NRestarts"]) == (pid, "0"), shown


def test_systemctl_reload_applies_a_changed_strategy_parameter(instance: Instance) -> None:
    """Step 5: a changed ``[strategy.spread] base_bps`` and ``systemctl reload`` (SIGHUP
    through ExecReload=/bin/kill): the same process logs ``reloaded`` and keeps running."""
    pid = running(instance)["MainPID"]
    instance.machine.write(instance.config_path, instance.config_text(base_bps="3.0"), "0644")
    begin = time.monotonic()
    done = instance.systemctl("reload", instance.unit, check=False)
    assert done.returncode == 0, (done.stderr, instance.context())
    reloaded = instance.wait_event("reloaded", pid)
    instance.step("systemctl reload -> reloaded", begin)
    assert reloaded["config"] == instance.config_path
    refused = [e for e in instance.events(pid) if e["event"] in ("reload_failed",
                                                                 "reload_refused")]
    assert not refused, refused
    shown = instance.wait_show(10, "running after the reload", ActiveState="active",
                               SubState="running")
    assert (shown["MainPID"], shown["NRestarts"]) == (pid, "0"), shown


def test_a_frozen_daemon_is_restarted_by_the_watchdog(instance: Instance) -> None:
    """Step 6: SIGSTOP (``systemctl kill -s SIGSTOP``) silences the watchdog pings: after
    WatchdogSec systemd aborts it (Result=watchdog, Python's traceback in the journal),
    restarts it RestartSec later (NRestarts 1), and the new process comes back READY."""
    old = running(instance)["MainPID"]
    begin = time.monotonic()
    instance.systemctl("kill", "-s", "SIGSTOP", instance.unit)
    fired = instance.wait_show(WATCHDOG_S + SLACK_S, "the watchdog fired", Result="watchdog")
    begin = instance.step("SIGSTOP -> Result=watchdog", begin)
    assert fired["ActiveState"] in ("activating", "deactivating"), fired
    back = instance.wait_show(RESTART_S + SLACK_S + 30, "restarted and READY",
                              ActiveState="active", SubState="running")
    instance.step("Result=watchdog -> active (running) again", begin)
    pid = back["MainPID"]
    assert pid not in ("0", old) and back["NRestarts"] == "1", back
    instance.wait_event("ready", pid)
    lines = instance.manager_lines()
    assert any("Failed with result 'watchdog'" in line for line in lines), lines
    old_lines = [e.get("MESSAGE") for e in instance.journal() if e.get("_PID") == old]
    assert any(str(line).startswith("Fatal Python error: Aborted") for line in old_lines), (
        "PYTHONFAULTHANDLER=1: the frozen process's traceback", old_lines[-10:])
    instance.quoting()


def _trace_line(t: float, shown: dict[str, str]) -> str:
    return (f"{t:6.2f}s {shown.get('ActiveState')}/{shown.get('SubState')} "
            f"NRestarts={shown.get('NRestarts')} MainPID={shown.get('MainPID')} "
            f"Result={shown.get('Result')} StatusText={shown.get('StatusText', '')[:100]!r}")


def _trace(samples: list[tuple[float, dict[str, str]]]) -> str:
    """The samples where systemd's view changed (the timeline of the outage)."""
    out: list[str] = []
    last: Any = None
    keys = ("ActiveState", "SubState", "NRestarts", "MainPID", "Result", "StatusText")
    for t, shown in samples:
        view = tuple(shown.get(k) for k in keys)
        if view != last:
            out.append(_trace_line(t, shown))
            last = view
    return "\n".join(out)


def test_a_venue_down_at_start_keeps_the_unit_up_until_it_returns(instance: Instance) -> None:
    """Step 7: nothing listens on the venue's port at ``systemctl start``. The daemon stays
    up, HALTED, telling systemd why (Status), never restarted and never failed; the sim
    started 12 s later is found, and the unit becomes active (running), READY, quoting,
    with NRestarts still 0."""
    with socket.socket() as probe:  # the venue really is down
        assert probe.connect_ex(("127.0.0.1", instance.sim.port)) != 0
    begin = time.monotonic()
    instance.systemctl("start", "--no-block", instance.unit)
    samples: list[tuple[float, dict[str, str]]] = []
    while (elapsed := time.monotonic() - begin) < OUTAGE_S:  # the outage lasts this long
        samples.append((elapsed, instance.show()))
        time.sleep(0.2)  # the sampling interval of the timeline, not a wait for a state
    timeline = _trace(samples)
    print(f"venue down at start, systemd's view:\n{timeline}")
    last = samples[-1][1]
    assert all(s["ActiveState"] != "failed" for _, s in samples), timeline
    assert all(s["NRestarts"] == "0" for _, s in samples), timeline
    pids = {s["MainPID"] for _, s in samples[len(samples) // 2:]}
    assert len(pids) == 1 and "0" not in pids, ("one process rides the outage out", timeline)
    assert re.search(r"HALTED|unreachable", last["StatusText"], re.I), (
        "Status says why it is not ready", timeline)
    instance.sim.start()
    begin = instance.step(f"venue down {OUTAGE_S} s (unit up, HALTED)", begin)
    shown = instance.wait_show(90, "active once the venue is back", ActiveState="active",
                               SubState="running")
    instance.step("sim started -> active (running)", begin)
    assert shown["NRestarts"] == "0" and shown["MainPID"] in pids, (shown, timeline)
    instance.wait_event("ready", shown["MainPID"])
    instance.quoting()
