"""Benchmark: ``kill --global`` -> the last instance's confirmed cancel, over repeated trials.

Run: ``.venv/bin/python bench/global_kill.py [--instances 3] [--trials 10]``; needs
``redis-server`` (Debian package). Starts its own redis-server on a free loopback port,
``mmdaemon sim`` (one account per instance) and the daemons (``mmdaemon run``, Binance
gateway to the sim, firm bus on). Each trial waits until every instance is quoting,
sets the global kill exactly as ``mmdaemon kill --global`` does
(:func:`mmdaemon.risk.redis_bus.global_kill`) and measures, on the wall clock of this one
host, from the moment the command starts talking to Redis (its connect included) to each
instance's
``orders_cancelled`` with no order left open (the venue has answered every cancel); then
``rearm --global`` and the next trial. Prints one JSON object and a readable line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, SPOT_FILES, Event, Proc, free_port
from mmdaemon.config_file import load_config
from mmdaemon.risk.redis_bus import global_kill, global_rearm


def wall_s(event: Event) -> float:
    return datetime.fromisoformat(event["timestamp"]).timestamp()


def instance_config(tmp: Path, name: str, sim_port: int, redis_url: str) -> Path:
    text = (REPO / "config" / "sim.toml").read_text().replace("9443", str(sim_port))
    text = text.replace('dir = "../state/sim"', f'dir = "{tmp / name}"')
    text = text.replace('credentials = "env"', f'credentials = "{tmp}/creds-{name}.toml"')
    text = text.replace('client_id_prefix = "mmsim"', f'client_id_prefix = "mm{name}"')
    path = tmp / f"{name}.toml"
    path.write_text(text + f"""
[logging]
level = "debug"

[firm]
enabled = true
redis_url = "{redis_url}"
desk = "bench"
instance = "btc-{name}"
base_asset = "BTC"
quote_asset = "USDT"
heartbeat_ms = 500
ttl_ms = 3000
grace_ms = 3000
""")
    return path


def trial(daemons: list[Proc], config: Any) -> dict[str, float]:
    """One kill: seconds to the first and the last instance's confirmed cancel, and the
    orders cancelled; then re-arm and wait until every instance quotes again."""
    marks = [len(d.events) for d in daemons]
    receivers, sent_ns = asyncio.run(global_kill(config.firm, None, "bench"))
    if receivers != len(daemons):
        raise RuntimeError(f"{receivers} instances listening, expected {len(daemons)}")
    sent = sent_ns / 1e9
    done, cancelled = [], 0
    for d, mark in zip(daemons, marks, strict=True):
        i, _ = d.wait(mark, 30, event="kill_switch_tripped", reason="global_kill_switch")
        _, event = d.wait(i, 30, event="orders_cancelled", open_after=0)
        done.append(wall_s(event) - sent)
        cancelled += event["cancelled"]
    marks = [len(d.events) for d in daemons]
    asyncio.run(global_rearm(config.firm, None))
    for d, mark in zip(daemons, marks, strict=True):
        i, _ = d.wait(mark, 30, event="kill_switch_rearmed")
        d.wait(i, 60, event="order_sent", kind="place")
    return {"last_s": max(done), "first_s": min(done), "cancelled": cancelled}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        sys.exit("bench/global_kill.py: redis-server is not installed (apt-get install "
                 "redis-server)")
    names = [chr(ord("a") + i) for i in range(args.instances)]
    with tempfile.TemporaryDirectory(prefix="mmdaemon-bench-kill-") as tmp_text:
        tmp = Path(tmp_text)
        redis_port, sim_port = free_port(), free_port()
        redis = subprocess.Popen(
            [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp_text], stdout=subprocess.DEVNULL)
        creds: list[str] = []
        for name in names:
            (tmp / f"creds-{name}.toml").write_text(
                f'api_key = "bench{name}"\napi_secret = "bench-secret-{name}"\n')
            creds += ["--credentials", str(tmp / f"creds-{name}.toml")]
        mm = [sys.executable, "-m", "mmdaemon"]
        sim = Proc([*mm, "sim", "--balance", "BTC=1", "--balance", "USDT=100000",
                    *map(str, SPOT_FILES), "--port", str(sim_port), "--speed", "1", *creds])
        daemons: list[Proc] = []
        results: list[dict[str, float]] = []
        try:
            sim.wait(0, 30, event="sim_listening")
            url = f"redis://127.0.0.1:{redis_port}/0"
            configs = [instance_config(tmp, n, sim_port, url) for n in names]
            daemons = [Proc([*mm, "run", "--config", str(c)]) for c in configs]
            for d in daemons:
                d.wait(0, 60, event="order_sent", kind="place")
            config = load_config(configs[0])
            for _ in range(args.trials):
                results.append(trial(daemons, config))
        finally:
            for p in (*daemons, sim):
                p.stop()
            redis.terminate()
            redis.wait(10)
    last = [r["last_s"] * 1000 for r in results]
    first = [r["first_s"] * 1000 for r in results]
    summary = {
        "instances": args.instances, "trials": len(results),
        "last_cancel_ms_median": round(statistics.median(last), 2),
        "last_cancel_ms_max": round(max(last), 2),
        "first_cancel_ms_median": round(statistics.median(first), 2),
        "orders_cancelled": sum(int(r["cancelled"]) for r in results),
        "python": platform.python_version(), "cpus": os.cpu_count(),
    }
    print(orjson.dumps(summary).decode())
    print(f"kill --global -> last of {args.instances} instances' confirmed cancel: median "
          f"{summary['last_cancel_ms_median']} ms, max {summary['last_cancel_ms_max']} ms over "
          f"{len(results)} trials (first instance: median {summary['first_cancel_ms_median']} "
          f"ms; {summary['orders_cancelled']} resting orders cancelled in all)")


if __name__ == "__main__":
    main()
