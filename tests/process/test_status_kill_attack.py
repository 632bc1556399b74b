"""`mmdaemon status` and the confirmed `mmdaemon kill` where they could say more than they
know: an instance whose order entry has not reached the venue yet (so it has not read what
the venue holds open for it, a crashed run's orders included) must not report 0 orders at
the venue, and its kill must not be confirmed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon_process import Daemon
from tests.helpers import proc_status, wait_for, write_config
from tests.process.test_record_sim_cli import free_port
from tests.process.test_sim_processes import sim_config
from tests.process.test_status_kill import cli
from tests.unit.test_status import documented_fields, flat_fields


def test_a_kill_is_not_confirmed_while_order_entry_has_not_reached_the_venue(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # nobody listens on either port: order entry retries, the venue's book is unread
    port, dead = free_port(), free_port()
    config = sim_config(tmp_path, port, tmp_path / "state", monkeypatch)
    config.write_text(config.read_text().replace(f"127.0.0.1:{port}/ws-api",
                                                 f"127.0.0.1:{dead}/ws-api"))
    d = Daemon(config)
    try:
        d.wait_event("control_socket_listening")
        d.wait_event("venue_status", ready=False)
        out = cli("status", "--config", str(config), "--json")
        assert out.returncode == 0, out
        running = json.loads(out.stdout)
        assert running["open_orders"] == {"ours": 0, "venue": None}
        assert flat_fields(running) == documented_fields()  # the running side of the table

        out = cli("kill", "--config", str(config), "--timeout", "2")
        assert out.returncode == 1, out
        assert "kill confirmed" not in out.stdout
        assert "open orders at the venue unknown" in out.stderr, out.stderr
        out = cli("status", "--config", str(config))
        assert out.returncode == 0, out
        assert "state:       KILLED" in out.stdout, out.stdout
        assert "venue unknown" in out.stdout, out.stdout
        assert d.stop() == 0
    finally:
        d.kill()


def test_status_of_a_state_directory_it_may_not_read_says_so_and_guesses_nothing(
        tmp_path: Path) -> None:
    # the unit's StateDirectoryMode=0700 directory, owned by its DynamicUser=, asked by an
    # operator who is not root: root is stripped of what lets it read any directory
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("no setpriv (util-linux) to drop the capability to read any directory")
    config = write_config(tmp_path, {})
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, 65534, 65534)
    out = subprocess.run([setpriv, "--bounding-set=-dac_override,-dac_read_search",
                          sys.executable, "-m", "mmdaemon", "status", "--config", str(config)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2, out
    assert "holds" not in out.stderr, out.stderr  # nothing was seen to hold it
    assert f"cannot read {state}: Permission denied" in out.stderr, out.stderr
    assert "run as root or as the instance's user" in out.stderr, out.stderr


def test_status_of_an_instance_whose_socket_it_may_not_use_says_so(tmp_path: Path) -> None:
    # the instance runs and answers, but its 0600 socket is another user's (a state
    # directory made readable to all, the operator not root): not "stuck"
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("no setpriv (util-linux) to drop the capability to use any socket")
    config = write_config(tmp_path, {"feed": {"speed": "1"}})
    d = Daemon(config)
    try:
        d.wait_event("control_socket_listening")
        os.chown(tmp_path / "state" / "control.sock", 65534, 65534)
        out = subprocess.run([setpriv, "--bounding-set=-dac_override,-dac_read_search",
                              sys.executable, "-m", "mmdaemon", "status", "--config",
                              str(config)], capture_output=True, text=True, timeout=30)
        assert out.returncode == 2, out
        assert "still starting, stuck" not in out.stderr, out.stderr
        assert "control.sock: Permission denied: run as root or as the instance's user" \
            in out.stderr, out.stderr
        assert d.stop() == 0
    finally:
        d.kill()


def test_status_help_states_every_exit_status() -> None:
    out = cli("status", "--help")
    text = " ".join(out.stdout.split())
    assert out.returncode == 0, out
    for meaning in ("exit 0 running", "3 stopped", "1 not answering", "2 config error"):
        assert meaning in text, text


def sigusr1_pending(pid: int) -> bool:
    """SIGUSR1 is pending for ``pid`` (sent, not yet handled: a stopped process)."""
    fields = proc_status(pid)
    mask = int(fields["ShdPnd"], 16) | int(fields["SigPnd"], 16)
    return bool(mask & (1 << (signal.SIGUSR1 - 1)))


def test_a_kill_whose_instance_dies_before_handling_it_is_latched_for_the_restart(
        tmp_path: Path) -> None:
    # the signal reaches a process that is hung (stopped here) and then dies (the watchdog's
    # SIGABRT, the OOM killer; SIGKILL here) without running its handler: nothing latched
    # the kill, and systemd's restart 5 s later would quote again
    config = write_config(tmp_path, {"feed": {"speed": "1"}})
    d = Daemon(config)
    try:
        d.wait_event("control_socket_listening")
        d.signal(signal.SIGSTOP)
        kill = subprocess.Popen([sys.executable, "-m", "mmdaemon", "kill", "--config",
                                 str(config), "--timeout", "30"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: sigusr1_pending(d.proc.pid), 20, "the kill's SIGUSR1 sent")
        d.signal(signal.SIGKILL)
        out, err = kill.communicate(timeout=30)
    finally:
        d.kill()
    assert kill.returncode == 1, (out, err)
    assert "NOT confirmed" in err and "stopped before confirming" in err, err
    assert "the next start is KILLED" in err, err
    status = cli("status", "--config", str(config), "--json")
    assert status.returncode == 3, status
    latch = json.loads(status.stdout)["kill_latch"]
    assert latch["latched"] and latch["reason"] == "operator_kill_switch", latch


def test_status_of_a_state_dir_that_is_a_file_names_it_and_invents_no_holder(
        tmp_path: Path) -> None:
    config = write_config(tmp_path, {})
    (tmp_path / "state").write_text("not a directory\n")  # [state] dir pointed at a file
    out = cli("status", "--config", str(config))
    assert out.returncode == 2, out
    assert "holds" not in out.stderr, out.stderr
    assert f"cannot use the state directory {tmp_path / 'state'}: Not a directory" \
        in out.stderr, out.stderr


def test_status_with_a_config_for_another_instrument_does_not_report_that_instance_running(
        tmp_path: Path) -> None:
    """An ETHUSDT config whose [state] dir is a running BTCUSDT instance's (a copied config
    not edited): before, exit 0 and the BTCUSDT status, as if this config's instance ran."""
    config = write_config(tmp_path, {"feed": {"speed": "10"}})
    eth = write_config(tmp_path, {"feed": {"speed": "10"},
                                  "instrument": {"symbol": "ETHUSDT"}}, name="eth.toml")
    d = Daemon(config)
    try:
        d.wait_event("ready")
        assert cli("status", "--config", str(config)).returncode == 0
        out = cli("status", "--config", str(eth), "--json")
        assert out.returncode == 2, out
        said = json.loads(out.stdout)
        assert set(said) == {"error", "instance", "state_dir"} and said["instance"] == "unknown"
        assert (f"the instance running on {tmp_path / 'state'} (pid {d.proc.pid}) is another "
                f"instance: symbol 'BTCUSDT' (this config: 'ETHUSDT')") in out.stderr, out
        assert d.stop() == 0
    finally:
        if d.proc.poll() is None:
            d.kill()
