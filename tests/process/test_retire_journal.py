"""The runbook's "retiring a journal": the instance starts afresh, position 0, and the
account's earlier fills are not imported again (they are the retired journal's history,
not this instance's). Real processes: the sim venue and the daemon through its gateway."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SPOT_FILES
from tests.daemon_process import Daemon
from tests.helpers import SIM_BALANCES
from tests.process.test_record_sim_cli import free_port, mmdaemon, wait_for_line
from tests.process.test_sim_processes import sim_config


def test_a_retired_journal_starts_flat_without_the_accounts_old_fills(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    state = tmp_path / "state"
    config = sim_config(tmp_path, port, state, monkeypatch)
    sim = mmdaemon("sim", *SIM_BALANCES, *map(str, SPOT_FILES), "--port", str(port),
                   "--speed", "10")
    try:
        wait_for_line(sim, b"sim_listening")
        d = Daemon(config)
        try:
            d.wait_event("fill", timeout=120)  # the account now has trades of ours
            assert d.stop() == 0
        finally:
            if d.proc.poll() is None:
                d.kill()
        # the runbook's retire steps (the instance stopped; kill.latch kept)
        for name in ("journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm"):
            (state / name).unlink(missing_ok=True)
        d = Daemon(config)
        try:
            _, restored = d.wait_event("journal_restored", timeout=30)
            assert restored["fills"] == 0 and restored["position_lots"] == 0
            i, _ = d.wait_event("ready", timeout=60)
            assert not [e for e in d.events[:i] if e.get("event") == "gateway_fill_recovered"]
            assert d.stop() == 0
        finally:
            if d.proc.poll() is None:
                d.kill()
        stopped = [e for e in d.events if e.get("event") == "stopped"][-1]
        fills = [e for e in d.events if e.get("event") == "fill"]
        # only this run's own fills count towards its position
        assert stopped["position_lots"] == sum(
            e["size"] if e["side"] == "BUY" else -e["size"] for e in fills)
    finally:
        sim.send_signal(15)
        assert sim.wait(20) == 0
