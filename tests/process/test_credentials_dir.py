"""Credentials through a systemd-style credentials directory: the gateway uses them, and
the secret appears in no output of either process, on success or on failure."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.conftest import REPO, SPOT_FILES
from tests.daemon_process import Daemon
from tests.helpers import SIM_BALANCES, systemd_credential
from tests.process.test_record_sim_cli import free_port, mmdaemon, wait_for_line
from tests.process.test_sim_processes import assert_quoting_at

KEY, SECRET = "proc-key", "proc-secret-never-in-logs"


def daemon_config(tmp_path: Path, port: int) -> Path:
    text = (REPO / "config" / "sim.toml").read_text().replace("9443", str(port))
    text = text.replace('dir = "../state/sim"', f'dir = "{tmp_path / "state"}"')
    text = text.replace('credentials = "env"', 'credentials = "binance"')
    path = tmp_path / "live.toml"
    path.write_text(text + '\n[logging]\nlevel = "debug"\n')
    return path


@pytest.mark.parametrize("secret_given", [SECRET, "a-wrong-secret-also-never-shown"])
def test_secret_from_the_credentials_directory_is_used_and_never_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret_given: str
) -> None:
    venue_creds = tmp_path / "venue.toml"
    venue_creds.write_text(f'api_key = "{KEY}"\napi_secret = "{SECRET}"\n')
    creds_dir = tmp_path / "credentials"
    systemd_credential(creds_dir, "binance", f'api_key = "{KEY}"\napi_secret = "{secret_given}"\n')
    monkeypatch.delenv("MMDAEMON_API_KEY", raising=False)
    monkeypatch.delenv("MMDAEMON_API_SECRET", raising=False)
    port = free_port()
    sim = mmdaemon("sim", *SIM_BALANCES, str(SPOT_FILES[0]), "--port", str(port), "--speed", "5",
                   "--credentials", str(venue_creds))
    outputs: list[bytes] = []
    try:
        wait_for_line(sim, b"sim_listening")
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds_dir))
        d = Daemon(daemon_config(tmp_path, port))
        monkeypatch.delenv("CREDENTIALS_DIRECTORY")
        try:
            if secret_given == SECRET:
                d.wait_event("venue_status", ready=True, timeout=30)
                assert_quoting_at(port, 15, "signed with the secret: the venue took our orders")
                assert d.stop() == 0
            else:
                # the venue refuses the signature: retrying cannot help, exit 2 (the unit's
                # RestartPreventExitStatus) with the venue's reason
                assert d.proc.wait(60) == 2
                _, refused = d.wait_event("venue_refused")
                assert "-1022" in refused["error"]
        finally:
            if d.proc.poll() is None:
                d.kill()
        outputs.append(b"".join(repr(e).encode() for e in d.events))
        outputs.append(d.proc.stderr.read() if d.proc.stderr else b"")
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(20)
        outputs.append(sim.stdout.read() if sim.stdout else b"")
        outputs.append(sim.stderr.read() if sim.stderr else b"")
    everything = b"\n".join(outputs)
    assert everything, "there was output to search"
    assert SECRET.encode() not in everything
    assert secret_given.encode() not in everything
