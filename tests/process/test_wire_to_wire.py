"""`mmdaemon run` against `mmdaemon sim` (real processes, loopback): the daemon measures
wire-to-wire, from the kernel's receive stamp of the market-data frame that caused an order
frame to that frame written to the order-entry socket, on ``/metrics``
(``mmdaemon_wire_to_wire_seconds``) and in its ``wire_to_wire`` line at the stop. The
figures themselves are bench/wire.py's."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.conftest import SPOT_FILES
from tests.daemon_process import Daemon
from tests.helpers import SIM_BALANCES, wait_for
from tests.process.test_metrics_daemon import scrape, value
from tests.process.test_record_sim_cli import free_port, mmdaemon, wait_for_line
from tests.process.test_sim_processes import sim_config


def test_a_live_daemon_measures_wire_to_wire_from_kernel_stamps(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port, metrics_port = free_port(), free_port()
    config = sim_config(tmp_path, port, tmp_path / "state", monkeypatch,
                        f'\n[logging]\nlevel = "debug"\n\n[metrics]\nport = {metrics_port}\n')
    sim = mmdaemon("sim", *SIM_BALANCES, *map(str, SPOT_FILES), "--port", str(port),
                   "--speed", "5")
    try:
        wait_for_line(sim, b"sim_listening")
        d = Daemon(config)
        try:
            d.wait_event("venue_status", ready=True, timeout=30)
            d.wait_for(lambda e: e.get("event") == "order_sent" and e["kind"] == "place",
                       timeout=30)
            counted = wait_for(
                lambda: value(scrape(metrics_port), "mmdaemon_wire_to_wire_seconds_count"),
                30, "an order frame's wire-to-wire observed")
            assert counted >= 1
            assert d.stop() == 0
        finally:
            if d.proc.poll() is None:
                d.kill()
        _, summary = d.wait_event("wire_to_wire")
        assert summary["stamp"] == "kernel"
        assert summary["orders"] >= counted
        assert 0 < summary["p50_us"] <= summary["p90_us"] <= summary["p99_us"] \
            <= summary["p999_us"] <= summary["max_us"]
    finally:
        sim.send_signal(signal.SIGTERM)
        assert sim.wait(20) == 0
