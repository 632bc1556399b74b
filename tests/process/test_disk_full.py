"""A full disk under a quoting daemon, end to end with real processes: the sim venue, the
daemon with its state directory on a small tmpfs, the disk filled while orders rest at the
venue. The journal fails, the kill goes to the latch file (written in place, no space
needed), the orders are cancelled and the process exits 1. After space is freed a restart
is KILLED and sends nothing; a re-arm resumes quoting."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mmdaemon.latch import read_latch
from tests.conftest import REPO, SPOT_FILES
from tests.daemon_process import Daemon
from tests.helpers import SIM_BALANCES
from tests.process.test_record_sim_cli import free_port, mmdaemon, wait_for_line
from tests.process.test_sim_processes import assert_quoting_at, open_orders, sim_config


@contextmanager
def tmpfs(mnt: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (mount's form: "16m") mounted on the new directory ``mnt``, owner
    only, unmounted after; the test skips where it cannot mount (needs root)."""
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                           str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs: a file system that can really fill up."""
    with tmpfs(tmp_path / "small", "16m") as mnt:
        yield mnt


def fill(directory: Path) -> Path:
    """Write zeros into ``directory`` until the file system says ENOSPC."""
    filler = directory / "filler"
    chunk = b"\0" * (1 << 16)
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def places_after(d: Daemon, start: int) -> list[dict[str, object]]:
    return [e for e in d.events[start:]
            if e.get("event") == "order_sent" and e.get("kind") == "place"]


def test_full_disk_kills_exits_1_and_the_restart_stays_killed_until_rearmed(
    tmp_path: Path, small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    state = small_disk / "state"
    config = sim_config(tmp_path, port, state, monkeypatch, '\n[logging]\nlevel = "debug"\n')
    sim = mmdaemon("sim", *SIM_BALANCES, *map(str, SPOT_FILES), "--port", str(port), "--speed", "5")
    try:
        wait_for_line(sim, b"sim_listening")
        # 1. quoting, orders resting at the venue
        d = Daemon(config)
        try:
            d.wait_event("ready", timeout=60)
            d.wait_for(lambda e: e.get("event") == "order_sent" and e["kind"] == "place",
                       timeout=30)
            assert_quoting_at(port, 10, "our quotes rest at the venue")
            # 2. the disk fills up: trip, cancel, exit 1, on its own (no SIGTERM)
            filler = fill(small_disk)
            i, failed = d.wait_event("journal_write_failed", timeout=30)
            assert "full" in failed["error"], failed
            _, trip = d.wait_event("kill_switch_tripped", start=i)
            assert trip["reason"] == "journal_write_failed"
            assert d.proc.wait(30) == 1
            assert trip.get("latch_removed") is False  # written in place, on the full disk
            d._reader.join(5)
            assert open_orders(port) == []
            stopped = d.events[d.wait_event("stopped", start=i)[0]]
            assert stopped["exit_code"] == 1 and stopped["open_orders"] == 0
        finally:
            if d.proc.poll() is None:
                d.kill()
        latch = read_latch(state)
        assert latch is not None and latch.killed and latch.reason == "journal_write_failed"
        # 3. systemd restarts it on the still-full disk: a passing fault, not a corrupt
        # journal (exit 1 and retried, not exit 2 and left failed)
        again = subprocess.run([sys.executable, "-m", "mmdaemon", "run", "--config",
                                str(config)], capture_output=True, text=True, timeout=60)
        assert again.returncode == 1, again.stderr
        assert '"event":"state_dir_unusable"' in again.stdout, again.stdout[-2000:]
        assert "journal_refused" not in again.stdout and "order_sent" not in again.stdout
        # 4. space freed; the restart is KILLED and sends nothing while the market runs
        filler.unlink()
        d = Daemon(config)
        try:
            _, restored = d.wait_event("journal_restored", timeout=30)
            assert restored["killed"] is True
            assert restored["kill_reason"] == "journal_write_failed"
            i, ready = d.wait_event("ready", timeout=60)
            assert ready["state"] == "KILLED"
            # 15 s of market at speed 5 go by: nothing is placed (kept: an absence over a
            # span of market, watched throughout; the daemon logs nothing per frame)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                assert not places_after(d, 0), places_after(d, 0)
                time.sleep(0.1)
            assert open_orders(port) == []
            assert d.proc.poll() is None
            # 5. the operator re-arms: quoting again
            rearm = subprocess.run([str(REPO / ".venv/bin/mmdaemon"), "rearm", "--config",
                                    str(config)], capture_output=True, text=True, timeout=30)
            assert rearm.returncode == 0, rearm.stderr
            j, _ = d.wait_event("kill_switch_rearmed", timeout=30)
            d.wait_for(lambda e: e.get("event") == "order_sent" and e["kind"] == "place",
                       timeout=30, start=j)
            assert_quoting_at(port, 10, "our quotes rest at the venue")
            assert d.stop() == 0
        finally:
            if d.proc.poll() is None:
                d.kill()
        latch = read_latch(state)
        assert latch is not None and not latch.killed
    finally:
        sim.send_signal(15)
        assert sim.wait(20) == 0
        assert os.path.ismount(small_disk)
