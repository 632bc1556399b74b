"""A graceful stop with the venue frozen ends within ``exchange.stop_timeout_ms``, with real
processes: `mmdaemon sim` quoted at by `mmdaemon run`, the sim frozen with SIGSTOP (its TCP
connections stay open, nothing answers), the daemon sent SIGTERM.

The stop cannot confirm the cancels, so it exits 1 and names the orders it leaves behind;
it must do so within its budget (plus a margin for a loaded machine: the bound is this
test's pass/fail). The next start, with the sim running again, leaves none of them open."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, SPOT_FILES
from tests.daemon_process import Daemon
from tests.helpers import SIM_BALANCES, wait_for
from tests.process.test_record_sim_cli import free_port, mmdaemon, wait_for_line
from tests.process.test_sim_processes import KEY, SECRET, open_orders

BUDGET_MS = 4000  # exchange.stop_timeout_ms here: the default 10 s would only make it slower
MARGIN_S = 5.0  # process exit and a loaded machine


def client_ids(port: int) -> set[str]:
    """Client order ids of the orders the sim holds open for our account."""
    orders: list[Any] = open_orders(port)
    return {str(order["clientOrderId"]) for order in orders}


def test_a_stop_with_the_venue_frozen_ends_within_the_budget_and_the_next_start_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MMDAEMON_API_KEY", KEY)
    monkeypatch.setenv("MMDAEMON_API_SECRET", SECRET)
    port = free_port()
    text = (REPO / "config" / "sim.toml").read_text().replace("9443", str(port))
    text = text.replace('dir = "../state/sim"', f'dir = "{tmp_path / "state"}"')
    text = text.replace("request_timeout_ms = 5000",
                        f"request_timeout_ms = 5000\nstop_timeout_ms = {BUDGET_MS}")
    config = tmp_path / "sim.toml"
    config.write_text(text)
    sim = mmdaemon("sim", *SIM_BALANCES, *map(str, SPOT_FILES), "--port", str(port), "--speed", "5")
    frozen = False
    d: Daemon | None = None
    try:
        wait_for_line(sim, b"sim_listening")
        d = Daemon(config)
        d.wait_event("ready", timeout=60)
        wait_for(lambda: client_ids(port), 30, "the daemon quotes at the sim")

        sim.send_signal(signal.SIGSTOP)
        frozen = True
        asked = time.monotonic()
        d.signal(signal.SIGTERM)
        code = d.proc.wait(BUDGET_MS / 1000 + MARGIN_S + 30)  # the bound is asserted below
        took = time.monotonic() - asked
        assert took <= BUDGET_MS / 1000 + MARGIN_S, f"stop took {took:.1f} s"
        assert code == 1  # orders could not be confirmed cancelled
        _, left = d.wait_event("orders_left_open")
        assert left["level"] == "error" and left["open_orders"] == len(left["orders"]) >= 1
        named = set(left["orders"])
        assert all(name.startswith("mmsim") for name in named)

        sim.send_signal(signal.SIGCONT)
        frozen = False
        # The next start, the venue answering again. TCP had delivered what the stop wrote
        # before giving up (its cancels) into the frozen sim's socket buffer, and the sim
        # executes them as it resumes; whatever it still holds of ours is this start's to
        # cancel: READY comes after that reconciliation.
        d = Daemon(config)
        d.wait_event("ready", timeout=60)
        assert not client_ids(port) & named
        strays = {e["client_id"] for e in d.events
                  if e.get("event") == "gateway_unwanted_order"}
        assert strays <= named  # only the stopped run's orders were unknown to this one
        assert d.stop() == 0
    finally:
        if frozen:
            sim.send_signal(signal.SIGCONT)
        if d is not None and d.proc.poll() is None:
            d.kill()
        sim.send_signal(signal.SIGTERM)
        try:
            sim.wait(20)
        except subprocess.TimeoutExpired:
            sim.kill()
