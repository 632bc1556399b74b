"""`mmdaemon status` and the confirmed `mmdaemon kill` against a real daemon trading on
`mmdaemon sim`: the control socket (its mode, a crashed run's socket file, garbage on it),
the status of the running and then the stopped instance, and the kill confirmed by the
venue (the sim is asked directly over its WebSocket API), not confirmed (a SIGSTOP'd
daemon), and not waited for (--no-wait). One daemon serves every check, in this order,
because each step leaves the state the next one starts from."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
from decimal import Decimal
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest

from mmdaemon.risk.firm import Keys
from tests.conftest import SPOT_FILES
from tests.daemon_process import Daemon
from tests.helpers import SIM_BALANCES, wait_for, write_config
from tests.process.test_firm_config import FIRM
from tests.process.test_record_sim_cli import free_port, mmdaemon, wait_for_line
from tests.process.test_sim_processes import assert_quoting_at, open_orders, sim_config
from tests.redis_server import RedisServer


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmdaemon", *args], capture_output=True,
                          text=True, timeout=timeout)


def status_json(config: Path) -> tuple[int, dict[str, Any]]:
    out = cli("status", "--config", str(config), "--json")
    assert out.stdout, out.stderr
    return out.returncode, json.loads(out.stdout)


def quoting(config: Path) -> tuple[int, dict[str, Any]] | None:
    """The status, once it has orders open at the venue (None before)."""
    code, status = status_json(config)
    return (code, status) if status["open_orders"]["venue"] else None


def ask(path: Path, payload: bytes) -> bytes:
    """Send ``payload`` on the control socket at ``path``; what comes back until EOF."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(payload)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def stale_socket(path: Path) -> None:
    """A socket file as a crashed run leaves it: bound, nobody listening any more."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))


def test_status_and_confirmed_kill_of_a_daemon_trading_on_the_sim(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port, state = free_port(), tmp_path / "state"
    config = sim_config(tmp_path, port, state, monkeypatch)
    sock = state / "control.sock"
    state.mkdir()
    stale_socket(sock)
    # nothing ever ran here, and the socket file answers nobody: stopped, no journal
    out = cli("status", "--config", str(config))
    assert out.returncode == 3, out
    assert "no instance runs" in out.stderr and "no journal" in out.stderr, out.stderr
    # --json: one object on stdout all the same (a script piping it to jq reads JSON)
    out = cli("status", "--config", str(config), "--json")
    assert out.returncode == 3, out
    said = json.loads(out.stdout)
    assert said["instance"] == "stopped" and "no journal" in said["error"], said
    sim = mmdaemon("sim", *SIM_BALANCES, *map(str, SPOT_FILES), "--port", str(port),
                   "--speed", "5")
    try:
        wait_for_line(sim, b"sim_listening")
        d = Daemon(config)
        try:
            d.wait_event("control_socket_replaced")
            d.wait_event("control_socket_listening")
            assert_quoting_at(port, 30, "our quotes rest at the venue")
            mode = os.lstat(sock).st_mode
            assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600, oct(mode)
            assert not list(state.glob(".control-*"))  # the private bind directory is gone

            code, running = wait_for(lambda: quoting(config), 20,
                                     "a status with orders at the venue")
            assert code == 0
            assert running["instance"] == "running" and running["pid"] == d.proc.pid
            assert running["symbol"] == "BTCUSDT" and running["currency"] == "USDT"
            assert running["open_orders"]["ours"] > 0
            assert not running["kill_latch"]["latched"] and not running["kill_journaled"]
            assert running["last_frame_age_s"] is not None and running["uptime_s"] > 0
            pos, pnl = running["position"], running["pnl"]
            assert Decimal(pos["base"]) == pos["lots"] * Decimal("0.00000001")
            assert pnl["total"] == pytest.approx(pnl["realized"] + pnl["unrealized"]
                                                 - pnl["fees"] + pnl["funding"], abs=1e-7)
            assert running["versions"]["config"] == str(config.resolve())
            assert running["versions"]["config_sha256"] == sha256(config.read_bytes()).hexdigest()
            text = cli("status", "--config", str(config))
            assert text.returncode == 0 and f"running (pid {d.proc.pid})" in text.stdout
            assert "open orders: ours" in text.stdout and "kill latch:  armed" in text.stdout

            # a client that connects and says nothing: dropped after its 2 s, unseen by
            # anyone else (the checks below go on meanwhile)
            idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            idle.connect(str(sock))
            # garbage, a line too long, an unknown command: refused, the daemon unhurt
            assert b'"ok":false' in ask(sock, b"garbage\n")
            assert b"longer than" in ask(sock, b"x" * 10_000 + b"\n")
            assert b"unknown request" in ask(sock, b'{"cmd": "kill"}\n')
            assert status_json(config)[0] == 0
            d.wait_event("control_request_refused", why="not JSON")
            d.wait_event("control_request_refused", why="request line too long")
            # a second instance on the same state directory takes no socket from the first
            assert cli("run", "--config", str(config)).returncode != 0
            assert status_json(config)[1]["pid"] == d.proc.pid
            d.wait_event("control_request_refused", why="no request line in time")
            assert idle.recv(1) == b""  # closed by the daemon
            idle.close()

            # the confirmed kill: timing printed, the venue empty
            out = cli("kill", "--config", str(config))
            assert out.returncode == 0, out
            assert re.search(rf"kill confirmed in \d+ ms: pid {d.proc.pid} is KILLED",
                             out.stdout), out.stdout
            assert open_orders(port) == []
            code, killed = status_json(config)
            assert killed["state"] == "KILLED" and killed["reason"] == "operator_kill_switch"
            assert killed["kill_latch"]["latched"] and killed["kill_journaled"]
            assert killed["kill_latch"]["since_ns"] > 0
            assert killed["open_orders"] == {"ours": 0, "venue": 0}

            # an instance that cannot answer: not confirmed within --timeout, exit 1
            d.signal(signal.SIGSTOP)
            try:
                frozen = cli("status", "--config", str(config))
                out = cli("kill", "--config", str(config), "--timeout", "1")
            finally:
                d.signal(signal.SIGCONT)
            assert frozen.returncode == 1, frozen
            assert (f"pid {d.proc.pid} holds {state} but does not answer on its control "
                    f"socket") in frozen.stderr
            assert out.returncode == 1, out
            assert "NOT confirmed within 1 s" in out.stderr, out.stderr
            # --no-wait: today's behaviour, no confirmation sought
            out = cli("kill", "--config", str(config), "--no-wait")
            assert out.returncode == 0 and out.stdout == f"sent SIGUSR1 to pid {d.proc.pid}\n"
            assert d.stop() == 0
        finally:
            d.kill()
    finally:
        sim.send_signal(signal.SIGTERM)
        assert sim.wait(20) == 0
    assert not sock.exists()  # removed at stop

    config.write_text(config.read_text() + "\n# edited after the stop\n")
    code, stopped = status_json(config)
    assert stopped["versions"] == running["versions"]  # what the last run read at its start
    assert code == 3 and stopped["instance"] == "stopped" and stopped["pid"] is None
    assert stopped["state"] == "KILLED" and stopped["reason"] == "operator_kill_switch"
    assert stopped["kill_latch"]["latched"] and stopped["kill_journaled"]
    assert stopped["position"] == killed["position"]  # no fill after the kill
    assert stopped["pnl"]["realized"] == killed["pnl"]["realized"]
    assert stopped["last_record_ns"] >= killed["kill_latch"]["since_ns"]
    text = cli("status", "--config", str(config))
    assert text.returncode == 3 and "stopped, last journal record 20" in text.stdout
    assert "LATCHED since" in text.stdout
    # no instance: the kill is latched for the next start, nothing to confirm
    out = cli("kill", "--config", str(config))
    assert out.returncode == 1, out
    assert "the next start is KILLED (no instance runs: nothing to confirm)" in out.stderr


def test_an_instance_whose_control_socket_cannot_be_made_trades_on_and_status_says_so(
        tmp_path: Path) -> None:
    config = write_config(tmp_path, {"feed": {"speed": "1"}})
    state = tmp_path / "state"
    (state / "control.sock" / "in-the-way").mkdir(parents=True)  # a directory: no rename
    d = Daemon(config)
    try:
        _, failed = d.wait_event("control_socket_failed")
        assert failed["state_dir"] == str(state)
        d.wait_event("state_changed", new="ACTIVE")  # quoting all the same
        out = cli("status", "--config", str(config))
        assert out.returncode == 1, out
        assert "does not answer on its control socket" in out.stderr
        assert not list(state.glob(".control-*"))  # the private bind directory is gone
        assert d.stop() == 0
    finally:
        d.kill()


def test_a_global_kill_with_no_local_instance_has_nothing_to_confirm_here(
        tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        config = write_config(tmp_path, {"firm": {**FIRM, "redis_url": server.url}})
        out = cli("kill", "--global", "--config", str(config))
        assert out.returncode == 0, out
        assert "global kill switch latched" in out.stdout
        assert (f"no instance of this config runs here ({tmp_path / 'state'}): nothing to "
                f"confirm locally") in out.stdout
        with server.client() as redis:
            assert redis.exists(Keys("mmdaemon", FIRM["desk"]).kill)  # the switch is set
    finally:
        server.stop()
