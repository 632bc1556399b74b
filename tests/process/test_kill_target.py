"""`mmdaemon kill` / `rearm` signal the process that holds the state directory's lock, and
no other: real daemons, a real bystander process, stale and missing pid files."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemon_process import Daemon
from tests.helpers import proc_status, write_config


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated process with "mmdaemon" in its command line (what the old substring
    check took for an instance). SIGUSR1 and SIGUSR2 keep their default action: death."""
    # a process that only lives: the bystander, till the test kills it
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)",
                             "mmdaemon-bystander"])
    yield proc
    proc.kill()
    proc.wait(10)


def signalled(proc: subprocess.Popen[bytes]) -> bool:
    """Whether ``proc`` got a signal by now: dead, dying, or one pending. kill(2) marks the
    signal pending (a fatal one, the whole process as exiting) before it returns, so a
    sender that has finished leaves a trace here at once: no waiting needed."""
    try:
        fields = proc_status(proc.pid)
    except FileNotFoundError:  # reaped
        return True
    pending = int(fields["SigPnd"], 16) | int(fields["ShdPnd"], 16)
    return bool(pending) or fields["State"].startswith(("Z", "X")) or proc.poll() is not None


def cli(command: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmdaemon", command, "--config", str(config)],
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("command", ["kill", "rearm"])
@pytest.mark.parametrize("left_lock_file", [False, True])
def test_a_stale_pid_file_naming_a_bystander_is_reported_and_the_bystander_left_alone(
    tmp_path: Path, bystander: subprocess.Popen[bytes], command: str, left_lock_file: bool
) -> None:
    config = write_config(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    if left_lock_file:  # as a crashed instance leaves it: the file, but nobody holding it
        (state / "lock").touch()
    (state / "mmdaemon.pid").write_text(f"{bystander.pid}\n")
    proc = cli(command, config)
    assert not signalled(bystander)
    assert proc.returncode == 1, proc.stderr
    first, *rest = proc.stderr.strip().splitlines()
    assert first == (f"mmdaemon {command}: no instance is running on {state} "
                     f"(stale pid file names pid {bystander.pid})")
    # a kill is latched for the next start; a re-arm needs a running instance
    latched = (f"mmdaemon kill: the kill is latched in {state / 'kill.latch'}: the next "
               "start is KILLED (no instance runs: nothing to confirm)")
    assert rest == ([latched] if command == "kill" else [])
    assert proc.stdout == ""


def test_no_instance_and_no_pid_file_is_reported_as_such(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    proc = cli("kill", config)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == (f"mmdaemon kill: no instance is running on "
                                   f"{tmp_path / 'state'} (no pid file)")
    assert not (tmp_path / "state").exists()  # looking created nothing


def test_kill_and_rearm_reach_the_instance_holding_the_state_directory_whatever_the_pid_file_says(
    tmp_path: Path, bystander: subprocess.Popen[bytes]
) -> None:
    config = write_config(tmp_path, {"feed": {"speed": "1"}})
    state = tmp_path / "state"
    pid_file = state / "mmdaemon.pid"
    d = Daemon(config)
    try:
        d.wait_event("service_started")
        assert pid_file.read_text() == f"{d.proc.pid}\n"
        pid_file.write_text(f"{bystander.pid}\n")  # overwritten: names the bystander
        proc = cli("kill", config)
        assert proc.returncode == 0, proc.stderr
        sent, confirmed = proc.stdout.splitlines()
        assert sent == f"sent SIGUSR1 to pid {d.proc.pid}"
        assert confirmed.startswith("kill confirmed in "), confirmed
        assert f"the pid file {pid_file} names pid {bystander.pid}" in proc.stderr
        i, trip = d.wait_event("kill_switch_tripped")
        assert trip["reason"] == "operator_kill_switch"
        assert not signalled(bystander)

        pid_file.unlink()  # gone: the holder of the lock is still found
        proc = cli("rearm", config)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == f"sent SIGUSR2 to pid {d.proc.pid}\n"
        assert f"no pid file {pid_file}" in proc.stderr
        d.wait_event("kill_switch_rearmed", start=i)
        assert not signalled(bystander)
    finally:
        d.kill()  # SIGKILL: a crash, leaving the pid file behind
    pid_file.write_text(f"{d.proc.pid}\n")
    proc = cli("kill", config)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == (f"mmdaemon kill: no instance is running on {state} "
                                           f"(stale pid file names pid {d.proc.pid})")


def test_a_lock_file_that_cannot_be_read_is_not_taken_for_no_instance(tmp_path: Path) -> None:
    """Who holds the lock cannot be told without opening the lock file (here a symlink
    loop; as often a permission error): exit 2 and say so, rather than "not running" about
    an instance that may well run."""
    config = write_config(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    (state / "lock").symlink_to("lock")
    proc = cli("kill", config)
    assert proc.returncode == 2, proc.stderr
    assert f"mmdaemon kill: cannot tell which process holds {state / 'lock'}" in proc.stderr


STRANGER = """
import fcntl, sys, time
f = open(sys.argv[1], "a+")  # creates the file if it is gone
fcntl.lockf(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
print("locked", flush=True)
time.sleep(120)  # the stranger holds its lock till the test kills it
"""


@pytest.fixture
def stranger_factory() -> Iterator[Callable[[Path], subprocess.Popen[str]]]:
    """Start a process (not an instance) holding a shared record lock on a path; SIGUSR1
    keeps its default action there: death."""
    procs: list[subprocess.Popen[str]] = []

    def start(lock_path: Path) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-c", STRANGER, str(lock_path)],
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(10)


def test_a_stranger_holding_a_record_lock_on_the_lock_file_is_not_signalled(
    tmp_path: Path, stranger_factory: Callable[[Path], subprocess.Popen[str]]
) -> None:
    config = write_config(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    stranger = stranger_factory(state / "lock")
    (state / "mmdaemon.pid").write_text(f"{stranger.pid}\n")  # even the pid file agrees
    for command in ("kill", "rearm"):
        proc = cli(command, config)
        assert proc.returncode == 2, proc.stderr
        assert not signalled(stranger)
        assert proc.stdout == ""
        assert (f"pid {stranger.pid} holds a record lock on {state / 'lock'} but nobody "
                f"holds the directory {state}") in proc.stderr
        assert "no instance is running" not in proc.stderr


def assert_not_signalled(d: Daemon) -> None:
    """``d`` got no SIGUSR1: a SIGUSR2 of ours, delivered after any earlier SIGUSR1 (a
    lower signal number goes first, and the kill command finished sending before this),
    finds it not killed."""
    start = len(d.events)
    d.signal(signal.SIGUSR2)
    d.wait_event("rearm_ignored", start=start, reason="not killed")
    assert not [e for e in d.events if e.get("event") == "kill_switch_tripped"]


def test_a_deleted_lock_file_keeps_a_second_instance_out_and_kill_signals_nobody(
    tmp_path: Path, stranger_factory: Callable[[Path], subprocess.Popen[str]]
) -> None:
    """The instance keeps the directory: a second `run` is refused, and `kill` neither
    calls it not running nor signals it (nor a process holding a new lock file's record
    lock): the instance cannot be confirmed, so exit 2, naming who holds the directory."""
    config = write_config(tmp_path, {"feed": {"speed": "1"}})
    state = tmp_path / "state"
    d = Daemon(config)
    try:
        d.wait_event("service_started")
        (state / "lock").unlink()
        proc = cli("kill", config)
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == ""
        assert "no instance is running" not in proc.stderr
        assert f"{state} is held by pid {d.proc.pid}, but nobody holds" in proc.stderr
        assert f"names pid {d.proc.pid}" in proc.stderr  # the pid file, cross-checked
        assert_not_signalled(d)

        stranger = stranger_factory(state / "lock")  # a new lock file, someone else's lock
        proc = cli("kill", config)
        assert proc.returncode == 2, proc.stderr
        assert (f"pid {stranger.pid} holds a record lock on {state / 'lock'} but pid "
                f"{d.proc.pid} holds the directory {state}") in proc.stderr
        assert not signalled(stranger)
        assert_not_signalled(d)

        second = cli("run", config)
        assert second.returncode == 2, second.stderr
        assert (f"{state} is in use by another mmdaemon process (pid {d.proc.pid})"
                in second.stderr)
        assert d.proc.poll() is None
    finally:
        d.kill()
