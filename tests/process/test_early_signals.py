"""The operator's signals from the first instruction: ``mmdaemond`` (the launcher the
systemd unit runs) holds them until the service can act, so a kill switch flipped at any
moment of start-up is latched and SIGTERM at any moment exits cleanly; never a death by
the signal. Real processes, real signals, the real kill latch on disk."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvloop

from mmdaemon.clock import SystemClock
from mmdaemon.config_file import load_config
from mmdaemon.daemon import Service
from mmdaemon.early_signals import launcher_path
from mmdaemon.latch import read_latch
from mmdaemon.records import LatchState
from tests.daemon_process import Daemon
from tests.helpers import first_lines, proc_status, wait_for, write_config
from tests.recorder import Recorder

LAUNCHER = Path(sys.executable).with_name("mmdaemond")
DELAYS_MS = (0, 10, 50, 100, 200, 500)

pytestmark = pytest.mark.skipif(
    not LAUNCHER.exists() or launcher_path() is None,
    reason="no mmdaemond launcher beside this python (built on Linux with a C compiler; "
           "`make` links it into .venv/bin)")


def signal_bits(pid: int) -> int:
    """SigBlk | SigCgt of ``pid``: nonzero once the launcher or Python holds a signal."""
    fields = proc_status(pid)
    return int(fields["SigBlk"], 16) | int(fields["SigCgt"], 16)


def start(config: Path) -> subprocess.Popen[bytes]:
    """``mmdaemond run``, returned once its first instruction has run: SIGUSR1 is blocked
    (the launcher) or caught (Python). Before that the kernel is still inside execve and
    no program can act on a signal (see the launcher's header)."""
    proc = subprocess.Popen([str(LAUNCHER), "run", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    usr1 = 1 << (signal.SIGUSR1 - 1)
    deadline = time.monotonic() + 10
    while not signal_bits(proc.pid) & usr1:
        assert time.monotonic() < deadline, "the launcher never blocked SIGUSR1"
    return proc


def events(out: bytes) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in out.splitlines() if line.startswith(b"{")]


def stop(proc: subprocess.Popen[bytes]) -> tuple[int, list[dict[str, object]], str]:
    """SIGTERM (again, harmless if it is on its way out) and collect everything."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, events(out), err.decode()


def config_for(tmp_path: Path) -> Path:
    # the bundled recording, paced at 1x: a run that lasts until it is stopped
    return write_config(tmp_path, {"feed": {"speed": "1"}})


@pytest.mark.parametrize("delay_ms", DELAYS_MS)
def test_a_kill_switch_at_any_moment_of_start_up_is_latched(
    tmp_path: Path, delay_ms: int
) -> None:
    config = config_for(tmp_path)
    proc = start(config)
    time.sleep(delay_ms / 1000)  # the moment under test, not a wait for a condition
    os.kill(proc.pid, signal.SIGUSR1)
    wait_latched(proc, tmp_path / "state")
    code, logged, err = stop(proc)
    assert code == 0, (code, err[-2000:])  # a clean exit, not -SIGUSR1 / -SIGTERM
    names = [e["event"] for e in logged]
    assert "kill_switch_tripped" in names
    # the kill came before the first quote could fill: nothing traded in this run
    assert not [e for e in logged if e["event"] == "fill"]


@pytest.mark.parametrize("delay_ms", DELAYS_MS)
def test_sigterm_at_any_moment_of_start_up_exits_cleanly(
    tmp_path: Path, delay_ms: int
) -> None:
    proc = start(config_for(tmp_path))
    time.sleep(delay_ms / 1000)  # the moment under test, not a wait for a condition
    os.kill(proc.pid, signal.SIGTERM)
    code, logged, err = stop(proc)
    assert code == 0, (code, err[-2000:])
    assert [e for e in logged if e["event"] == "stopped"], err[-2000:]


def wait_latched(proc: subprocess.Popen[bytes], state: Path) -> None:
    """Until the latch file says killed by the operator (the process must live on)."""
    def latched() -> bool:
        assert proc.poll() is None, stop(proc)
        return read_latch(state) == LatchState(True, "operator_kill_switch")

    wait_for(latched, 30, "the kill was never latched")


def test_the_next_start_after_an_early_kill_is_killed(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    proc = start(config)
    os.kill(proc.pid, signal.SIGUSR1)  # at its first instruction
    wait_latched(proc, tmp_path / "state")
    code, _, err = stop(proc)
    assert code == 0, err[-2000:]
    again = subprocess.Popen([sys.executable, "-m", "mmdaemon", "run", "--config",
                              str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert again.stdout is not None
    restored = None
    for line in again.stdout:  # JSON lines until journal_restored (or the end)
        event = orjson.loads(line)
        if event["event"] == "journal_restored":
            restored = event
            break
    code, _, err = stop(again)
    assert restored is not None, err[-2000:]
    assert restored["killed"] is True and restored["kill_reason"] == "operator_kill_switch"
    assert code == 0


@pytest.mark.parametrize("delay_ms", (0, 5, 20, 50, 100, 200))
def test_a_kill_switch_while_the_daemon_stops_is_never_fatal(
    tmp_path: Path, delay_ms: int
) -> None:
    """SIGTERM, then SIGUSR1 ``delay_ms`` later, whether the service is still closing,
    has closed its latch or the interpreter is on its way out: a clean exit, never a death
    by the signal (before: rc -10 from 8 to 120 ms)."""
    d = Daemon(config_for(tmp_path))
    try:
        d.wait_event("ready", timeout=60)
        d.signal(signal.SIGTERM)
        time.sleep(delay_ms / 1000)  # the moment under test
        try:
            d.signal(signal.SIGUSR1)
        except ProcessLookupError:
            pytest.skip("the process had already exited: nothing to honour")
        code = d.proc.wait(60)
    finally:
        if d.proc.poll() is None:
            d.kill()
    assert code == 0, (code, d.proc.stderr.read().decode()[-2000:] if d.proc.stderr else "")


class KillAtShutdown(Recorder):
    """Sends this process SIGUSR1 as the service's shutdown sweep logs its result."""

    def _log(self, event: str, **fields: Any) -> None:
        super()._log(event, **fields)
        if event == "orders_cancelled" and fields.get("reason") == "shutdown":
            os.kill(os.getpid(), signal.SIGUSR1)

    info = warning = error = debug = _log


def test_a_kill_switch_while_the_service_closes_is_latched(tmp_path: Path) -> None:
    """SIGUSR1 while the service closes, after its last suspension point (a paper stop
    never suspends): the loop has taken the signal in, and it is run before the handlers
    go (before: dropped with them), so the kill is latched for the next start."""
    rec = first_lines(tmp_path / "slice.gz", 20_000)
    log = KillAtShutdown()
    service = Service(load_config(write_config(tmp_path, {"feed": {"recordings": [str(rec)]}})),
                      SystemClock(), log, speed=None)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(service.run())
    assert log.named("kill_switch_tripped"), [e["event"] for e in log.events[-8:]]
    assert read_latch(tmp_path / "state") == LatchState(True, "operator_kill_switch")


def test_kill_with_no_instance_running_latches_the_next_start(tmp_path: Path) -> None:
    """Between runs (systemd's RestartSec, a daemon still starting) ``mmdaemon kill`` has
    no process to signal: it says so, exit 1, and latches the kill on disk."""
    config = config_for(tmp_path)
    (tmp_path / "state").mkdir()  # an instance ran here before (a directory never used: no)
    done = subprocess.run([sys.executable, "-m", "mmdaemon", "kill", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "no instance is running" in done.stderr and "the next start is KILLED" in done.stderr
    assert read_latch(tmp_path / "state") == LatchState(True, "operator_kill_switch")
    d = Daemon(config)
    try:
        _, restored = d.wait_event("journal_restored", timeout=60)
        assert restored["killed"] is True
        assert restored["kill_reason"] == "operator_kill_switch"
        assert d.stop() == 0
    finally:
        if d.proc.poll() is None:
            d.kill()


def test_the_launcher_runs_the_venvs_mmdaemon_from_any_directory_and_by_path(
    tmp_path: Path
) -> None:
    """An ``mmdaemon`` package in the working directory is never what runs (``-P``); a
    launcher found on PATH (no slash in argv[0]) finds the python beside it."""
    planted = tmp_path / "mmdaemon"
    planted.mkdir()
    (planted / "__init__.py").write_text("")
    (planted / "__main__.py").write_text("print('planted')\n")
    here = subprocess.run([str(LAUNCHER), "--version"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert here.returncode == 0 and here.stdout.startswith("mmdaemon "), here
    env = {**os.environ, "PATH": f"{LAUNCHER.parent}:/usr/bin:/bin"}
    by_path = subprocess.run(["mmdaemond", "--version"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=60, env=env)
    assert by_path.returncode == 0 and by_path.stdout.startswith("mmdaemon "), by_path
