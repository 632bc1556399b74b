"""The state directory's lock names its holder, to other processes and to the holder
itself, and asking never loosens it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmdaemon.clock import ManualClock
from mmdaemon.journal import Journal
from mmdaemon.statedir import (
    POLL_S,
    StateDirLocked,
    dir_holder,
    lock_holder,
    lock_state_dir,
)

HOLD = """
import sys, time
from pathlib import Path
from mmdaemon.statedir import lock_state_dir
lock = lock_state_dir(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(120)  # the holder process: holds the lock till the test kills it
"""
FLOCK_ONLY = """
import fcntl, sys, time
f = open(sys.argv[1] + "/lock", "w")
fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("locked", flush=True)
time.sleep(120)  # the holder process, as above
"""
ASK = "import sys; from pathlib import Path; from mmdaemon.statedir import lock_holder; " \
      "print(lock_holder(Path(sys.argv[1])))"


def holding(code: str, state_dir: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", code, str(state_dir)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    return proc


def asked_elsewhere(state_dir: Path) -> str:
    """What another process hears from :func:`lock_holder`."""
    return subprocess.run([sys.executable, "-c", ASK, str(state_dir)], capture_output=True,
                          text=True, check=True, timeout=30).stdout.strip()


@pytest.fixture
def other(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    proc = holding(HOLD, tmp_path)
    yield proc
    proc.kill()
    proc.wait(10)


def test_another_process_holding_the_lock_is_named_and_keeps_this_one_out(
        tmp_path: Path, other: subprocess.Popen[str]) -> None:
    assert lock_holder(tmp_path) == other.pid
    with pytest.raises(StateDirLocked, match=rf"in use by another mmdaemon process "
                                             rf"\(pid {other.pid}\)"):
        lock_state_dir(tmp_path)
    assert lock_holder(tmp_path) == other.pid  # the failed attempt loosened nothing
    other.kill()  # a crash: the file stays, the lock goes with the process
    other.wait(10)
    assert (tmp_path / "lock").exists() and lock_holder(tmp_path) is None
    lock_state_dir(tmp_path).close()


def test_the_holder_asking_about_its_own_lock_keeps_it(tmp_path: Path) -> None:
    """A record lock goes when its process closes *any* descriptor of the file: asking (or
    trying again) in the holding process must not open the file."""
    with lock_state_dir(tmp_path / "state") as lock:
        assert lock_holder(tmp_path / "state") == lock_holder(tmp_path / "state") > 0
        with pytest.raises(StateDirLocked, match="in use by this process already"):
            lock_state_dir(tmp_path / "state")
        journal = Journal(tmp_path / "state" / "journal.sqlite", lock=lock)
        journal.close()  # a journal given the lock leaves it to its owner
        assert asked_elsewhere(tmp_path / "state") == str(lock_holder(tmp_path / "state"))
    assert asked_elsewhere(tmp_path / "state") == "None"
    assert lock_holder(tmp_path / "nothing-here") is None
    assert not (tmp_path / "nothing-here").exists()


def test_an_older_version_holding_only_the_flock_still_keeps_this_one_out(
        tmp_path: Path) -> None:
    proc = holding(FLOCK_ONLY, tmp_path)
    try:
        with pytest.raises(StateDirLocked, match=r"in use by another mmdaemon process$"):
            lock_state_dir(tmp_path)
    finally:
        proc.kill()
        proc.wait(10)


def test_a_journal_refuses_a_lock_on_another_directory(tmp_path: Path) -> None:
    with lock_state_dir(tmp_path / "a") as lock, pytest.raises(ValueError, match="is on"):
        Journal(tmp_path / "b" / "journal.sqlite", lock=lock)


def test_deleting_the_lock_file_does_not_let_a_second_holder_in(
        tmp_path: Path, other: subprocess.Popen[str]) -> None:
    """The directory's flock is the exclusivity: unlinking ``lock`` (which a directory's
    flock cannot suffer) leaves the holder holding, named by the kernel."""
    (tmp_path / "lock").unlink()
    with pytest.raises(StateDirLocked, match=rf"in use by another mmdaemon process "
                                             rf"\(pid {other.pid}\)"):
        lock_state_dir(tmp_path)
    assert lock_holder(tmp_path) is None  # the record lock went with the file's name
    assert dir_holder(tmp_path) == other.pid


RELEASE_ON_LINE = HOLD.replace("time.sleep(120)", """sys.stdin.readline()
time.sleep(0.2)  # a kill command's brief hold, still under way when the waiter starts
lock.close()
print("released", flush=True)
time.sleep(120)""")


def test_a_lock_released_within_the_wait_is_taken(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", RELEASE_ON_LINE, str(tmp_path)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        assert proc.stdout.readline() == "locked\n"
        with pytest.raises(StateDirLocked):  # no wait: one attempt
            lock_state_dir(tmp_path)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        with lock_state_dir(tmp_path, wait_s=30.0):
            assert proc.stdout.readline() == "released\n"
            assert dir_holder(tmp_path) == lock_holder(tmp_path) == os.getpid()
    finally:
        proc.kill()
        proc.wait(10)


def test_a_lock_still_held_after_the_wait_is_refused_no_sooner(
        tmp_path: Path, other: subprocess.Popen[str]) -> None:
    started = time.monotonic()
    with pytest.raises(StateDirLocked, match=rf"\(pid {other.pid}\)"):
        lock_state_dir(tmp_path, wait_s=0.3)
    assert time.monotonic() - started >= 0.3
    assert dir_holder(tmp_path) == lock_holder(tmp_path) == other.pid


def test_a_journal_waits_for_its_lock_as_asked(tmp_path: Path,
                                               other: subprocess.Popen[str]) -> None:
    with pytest.raises(StateDirLocked, match=rf"\(pid {other.pid}\)"):
        Journal(tmp_path / "journal.sqlite", lock_wait_s=0.05)


def test_a_negative_wait_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="wait_s: expected a finite number"):
        lock_state_dir(tmp_path, wait_s=-1.0)


def test_the_wait_for_a_held_lock_is_measured_on_the_given_clock(
        tmp_path: Path, other: subprocess.Popen[str]) -> None:
    """30 s of waiting on a manual clock: refused once the clock reaches the deadline, after
    an attempt every POLL_S, and no real time spent waiting."""
    clock = ManualClock()
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        clock.now_ns += round(seconds * 1e9)

    with pytest.raises(StateDirLocked, match=rf"\(pid {other.pid}\)"):
        lock_state_dir(tmp_path, wait_s=30.0, clock=clock, pause=pause)
    assert clock.now_ns == 30 * 10**9 and pauses == [POLL_S] * 3000
