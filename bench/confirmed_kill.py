"""Benchmark: ``mmdaemon kill`` -> its confirmation, and ``status``'s round trip.

Run: ``.venv/bin/python bench/confirmed_kill.py [--trials 10] [--status-requests 200]``.
Starts ``mmdaemon sim`` at speed 1 and one daemon trading on it (config/sim.toml, the
Binance gateway). Each trial waits until the instance reports orders open at the venue
(over its control socket), runs ``mmdaemon kill --config`` as an operator does and reads
the time it prints (from just before the signal to the instance's report of KILLED,
latched, journaled and 0 open orders at the venue), with the command's own wall time
(interpreter start included); then ``mmdaemon rearm`` and the next trial. Then
``--status-requests`` status requests one after another on the control socket, from this
process (connect, request, answer, close). Prints one JSON object and a readable line.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, SPOT_FILES, Proc, free_port
from mmdaemon.control import ControlUnavailable, request_status

KEY, SECRET = "bench-key", "bench-secret"


def quoting(state: Path, timeout: float = 60.0) -> None:
    """Until the instance on ``state`` reports orders open at the venue."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = request_status(state)
            if status["state"] == "ACTIVE" and status["open_orders"]["venue"]:
                return
        except ControlUnavailable:
            pass  # not listening yet
        time.sleep(0.02)  # the poll interval
    raise RuntimeError(f"the instance on {state} did not quote within {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--status-requests", type=int, default=200)
    args = parser.parse_args()
    env = {**os.environ, "MMDAEMON_API_KEY": KEY, "MMDAEMON_API_SECRET": SECRET}
    os.environ.update(env)  # the sim and the daemon read the same made-up credentials
    mm = [sys.executable, "-m", "mmdaemon"]
    with tempfile.TemporaryDirectory(prefix="mmdaemon-bench-confirmed-kill-") as tmp_text:
        tmp = Path(tmp_text)
        port, state = free_port(), tmp / "state"
        text = (REPO / "config" / "sim.toml").read_text().replace("9443", str(port))
        config = tmp / "sim.toml"
        config.write_text(text.replace('dir = "../state/sim"', f'dir = "{state}"'))
        sim = Proc([*mm, "sim", "--balance", "BTC=1", "--balance", "USDT=100000",
                    *map(str, SPOT_FILES), "--port", str(port), "--speed", "1"])
        daemon: Proc | None = None
        confirmed_ms: list[float] = []
        command_ms: list[float] = []
        status_ms: list[float] = []
        try:
            sim.wait(0, 30, event="sim_listening")
            daemon = Proc([*mm, "run", "--config", str(config)])
            for _ in range(args.trials):
                quoting(state)
                start = time.perf_counter()
                done = subprocess.run([*mm, "kill", "--config", str(config)],
                                      capture_output=True, text=True, timeout=60)
                command_ms.append((time.perf_counter() - start) * 1000)
                found = re.search(r"kill confirmed in (\d+) ms", done.stdout)
                if done.returncode != 0 or found is None:
                    raise RuntimeError(f"kill not confirmed: {done.stdout} {done.stderr}")
                confirmed_ms.append(float(found.group(1)))
                subprocess.run([*mm, "rearm", "--config", str(config)], check=True,
                               capture_output=True, timeout=60)
            for _ in range(args.status_requests):
                start = time.perf_counter()
                request_status(state)
                status_ms.append((time.perf_counter() - start) * 1000)
        finally:
            for p in (daemon, sim):
                if p is not None:
                    p.stop()
    status_ms.sort()
    summary = {
        "trials": len(confirmed_ms),
        "confirmed_ms_median": statistics.median(confirmed_ms),
        "confirmed_ms_max": max(confirmed_ms),
        "kill_command_ms_median": round(statistics.median(command_ms), 1),
        "status_requests": len(status_ms),
        "status_round_trip_ms_median": round(statistics.median(status_ms), 3),
        "status_round_trip_ms_p99": round(status_ms[int(0.99 * (len(status_ms) - 1))], 3),
        "python": platform.python_version(), "cpus": os.cpu_count(),
    }
    print(orjson.dumps(summary).decode())
    print(f"kill confirmed: median {summary['confirmed_ms_median']:.0f} ms, max "
          f"{summary['confirmed_ms_max']:.0f} ms over {len(confirmed_ms)} trials (the "
          f"command: {summary['kill_command_ms_median']:.0f} ms with Python's start); status "
          f"round trip: median {summary['status_round_trip_ms_median']:.2f} ms, p99 "
          f"{summary['status_round_trip_ms_p99']:.2f} ms", file=sys.stderr)


if __name__ == "__main__":
    main()
