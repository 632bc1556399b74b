"""Benchmark: start-up to READY, and peak resident memory, of the real command.

Run: ``.venv/bin/python bench/startup.py [--runs 5]`` (one JSON object, then a table).
Each run starts ``mmdaemon replay`` on the bundled recording at ``--speed max`` as a
subprocess with ``NOTIFY_SOCKET`` pointing at a datagram socket of ours, the way systemd
runs it; it parses (``--cache off``: a cache beside the files, which bench/command.py
builds, would change what is measured), after one uncounted run that writes the
bytecode. Start-up is the time from spawning the process to its ``READY=1`` (book in
sync, venue ready). The run then goes on to the end of the recording; its peak RSS is the
kernel's ``ru_maxrss`` for that child. Goal (issue #9): READY in under 1 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, SPOT_FILES


def one_run(tmp: Path) -> tuple[float, float]:
    """Seconds from spawn to READY=1, and the child's peak RSS in MiB."""
    address = str(tmp / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(30)
        env = dict(os.environ, NOTIFY_SOCKET=address)
        # bytecode written, as an installed package has it: with PYTHONDONTWRITEBYTECODE
        # (set here) every start would compile each module changed since its last .pyc
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "mmdaemon", "replay", *map(str, SPOT_FILES), "--config",
             str(REPO / "config" / "dryrun.toml"), "--state-dir", str(tmp / "state"),
             "--json", "--cache", "off"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ready_s = float("nan")
        while True:
            message = sock.recv(4096)
            if b"READY=1" in message.split(b"\n"):
                ready_s = time.perf_counter() - start
                break
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"mmdaemon replay exited with {status}")
        os.unlink(address)
    return ready_s, usage.ru_maxrss / 1024  # Linux reports KiB


def measure(runs: int = 5) -> dict[str, Any]:
    ready: list[float] = []
    rss: list[float] = []
    for i in range(runs + 1):
        with tempfile.TemporaryDirectory() as tmp:
            r, m = one_run(Path(tmp))
        if i:  # the first run writes any bytecode missing; not counted
            ready.append(r)
            rss.append(m)
    return {
        "startup_to_ready_ms_median": round(statistics.median(ready) * 1000, 1),
        "startup_to_ready_ms_max": round(max(ready) * 1000, 1),
        "goal_ready_under_1s": max(ready) < 1.0,
        "peak_rss_mib": round(max(rss), 1),
        "startup_runs": runs,
        "python": platform.python_version(),
    }


def table(r: dict[str, Any]) -> list[str]:
    return [
        f"{'start-up to READY median/max':<34}{r['startup_to_ready_ms_median']:>6} / "
        f"{r['startup_to_ready_ms_max']} ms (goal < 1000 ms)",
        f"{'peak RSS (full dry run)':<34}{r['peak_rss_mib']:>6} MiB",
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    result = measure(parser.parse_args().runs)
    print(orjson.dumps(result).decode())
    print("\n".join(table(result)))


if __name__ == "__main__":
    main()
