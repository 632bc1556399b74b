"""Benchmark: a graceful stop (SIGTERM) with the venue frozen, the worst case of the runbook.

Run: ``.venv/bin/python bench/stop_frozen.py [--trials 3]``. Starts ``mmdaemon sim`` on a
free loopback port and, per trial, ``mmdaemon run`` with the sim config (Binance gateway and
live feed to the sim). Once the daemon's quotes rest at the venue, the sim is frozen with
SIGSTOP (its TCP connections stay open and nothing answers: a hung venue, not a refused
one) and the daemon is stopped; the time is measured from the SIGTERM to the process's exit.
Two scenarios, each ``--trials`` times:

- ``sigterm``: SIGTERM alone (the shutdown sweep, then the closes);
- ``kill_then_sigterm``: SIGUSR1 first, and SIGTERM once the kill is latched, so the kill
  switch's own sweep is still waiting for the venue when the stop begins (the unit's old
  worst case added the two sweeps).

After each trial the sim continues (SIGCONT); it then executes the cancels the stop wrote
before giving up (TCP had delivered them into its socket buffer), and the next trial's start
reconciles whatever is left. Prints one JSON object and a readable line per scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, SPOT_FILES, Proc, free_port
from mmdaemon.config_file import load_config
from mmdaemon.model import BINANCE_SPOT_BTCUSDT
from mmdaemon.venues import binance_api as api
from mmdaemon.venues import binance_parse as parse

KEY, SECRET = "bench-stop-key", "bench-stop-secret"


def open_orders(port: int) -> int:
    """How many orders the sim holds open for our account (asked over its WebSocket API)."""

    async def ask() -> int:
        async with connect(f"ws://127.0.0.1:{port}/ws-api/v3", proxy=None) as ws:
            await ws.send(api.open_orders_status(
                BINANCE_SPOT_BTCUSDT, request_id=1, creds=api.Credentials(KEY, SECRET),
                timestamp_ms=time.time_ns() // 1_000_000).decode())
            response = parse.parse_response(await ws.recv())
            assert isinstance(response, api.Response) and isinstance(response.result, list)
            return len(response.result)

    return asyncio.run(ask())


def trial(tmp: Path, sim: subprocess.Popen[bytes], port: int, kill_first: bool
          ) -> dict[str, Any]:
    """One stop against the frozen sim: seconds from SIGTERM to exit, the exit status and
    how many orders the daemon reported left open. Each trial has a state directory of its
    own (a kill latched by the last one would keep this one from quoting); the client order
    prefix is shared, so this start reconciles the orders the last stop left open."""
    state = Path(tempfile.mkdtemp(prefix="state-", dir=tmp))
    text = (REPO / "config" / "sim.toml").read_text().replace("9443", str(port))
    config = state / "sim.toml"
    config.write_text(text.replace('dir = "../state/sim"', f'dir = "{state}"'))
    mm = [sys.executable, "-m", "mmdaemon"]
    daemon = Proc([*mm, "run", "--config", str(config)])
    try:
        daemon.wait(0, 60, event="ready")
        deadline = time.monotonic() + 60
        while open_orders(port) == 0:
            if time.monotonic() > deadline:
                raise TimeoutError("the daemon's quotes never rested at the sim")
            time.sleep(0.1)
        sim.send_signal(signal.SIGSTOP)
        try:
            if kill_first:
                daemon.proc.send_signal(signal.SIGUSR1)
                daemon.wait(0, 10, event="kill_switch_tripped")
            started = time.monotonic()
            daemon.proc.send_signal(signal.SIGTERM)
            code = daemon.proc.wait(120)
            stop_s = time.monotonic() - started
        finally:
            sim.send_signal(signal.SIGCONT)
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait(10)
    time.sleep(0.2)  # the reader thread takes the last lines
    left = [e for e in daemon.events if e.get("event") == "orders_left_open"]
    return {"stop_s": round(stop_s, 3), "exit": code,
            "left_open": left[0]["open_orders"] if left else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    os.environ["MMDAEMON_API_KEY"], os.environ["MMDAEMON_API_SECRET"] = KEY, SECRET
    port = free_port()
    results: dict[str, list[dict[str, Any]]] = {"sigterm": [], "kill_then_sigterm": []}
    with tempfile.TemporaryDirectory(prefix="mmdaemon-bench-stop-") as tmp_text:
        tmp = Path(tmp_text)
        budget_ms = getattr(load_config(REPO / "config" / "sim.toml").exchange,
                            "stop_timeout_ms", None)
        sim = Proc([sys.executable, "-m", "mmdaemon", "sim", "--balance", "BTC=1",
                    "--balance", "USDT=100000", *map(str, SPOT_FILES),
                    "--port", str(port), "--speed", "1"])
        try:
            sim.wait(0, 30, event="sim_listening")
            for _ in range(args.trials):
                for name, kill_first in (("sigterm", False), ("kill_then_sigterm", True)):
                    results[name].append(trial(tmp, sim.proc, port, kill_first))
        finally:
            sim.proc.send_signal(signal.SIGCONT)
            sim.proc.send_signal(signal.SIGTERM)
            sim.proc.wait(30)
    summary: dict[str, Any] = {
        "trials": args.trials, "stop_timeout_ms": budget_ms,
        **{f"{name}_max_s": max(r["stop_s"] for r in runs) for name, runs in results.items()},
        "runs": results, "python": platform.python_version(), "cpus": os.cpu_count(),
    }
    print(orjson.dumps(summary).decode())
    for name, runs in results.items():
        print(f"{name}: stop with the venue frozen took "
              f"{', '.join(str(r['stop_s']) for r in runs)} s (max {summary[name + '_max_s']} s;"
              f" exit {sorted({r['exit'] for r in runs})}, orders left open "
              f"{[r['left_open'] for r in runs]}); budget {budget_ms} ms")


if __name__ == "__main__":
    main()
