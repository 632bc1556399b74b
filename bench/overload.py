"""Benchmark: a feed faster than the daemon can process. How far behind does it fall, and
when does it shed?

Run: ``.venv/bin/python bench/overload.py [--lines 30000] [--speeds 20,100,400,max]
[--max-lag-ms 1000,20]`` (one JSON object per run, then a table; the offered rate is
``frames_sent / burst_s``). For every speed and lag
limit, a ``mmdaemon sim`` process (market data only) plays the first ``--lines`` lines of
the bundled recording at that speed, starting when the daemon subscribes
(``--wait-for-subscriber``); the daemon (the real service: live feed, book, quoter, paper
exchange, journal) runs in this process on uvloop. Reported per run: frames the sim sent
and the daemon processed; the longest a frame waited in the daemon to be processed (its
lag) and the most frames queued at its feed; sheds and the queued frames they dropped;
gaps (frames the sim skipped for a subscriber that did not read, or shed ones); snapshots;
resident memory at start, its peak and at the end; and whether the daemon then held the
venue's final book, and how long after the tape ended (``catch_up_s``: what it still had to
read and process, or the quiet feed's reconnect after 1.5 s when frames were lost).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, SPOT_FILES
from bench.soak import rss_mb
from mmdaemon import log
from mmdaemon.clock import SystemClock
from mmdaemon.config_file import load_config
from mmdaemon.daemon import Service

SETTLE_S = 20.0  # after the tape ended: time allowed to resync to the final book


def first_lines(dest: Path, count: int) -> Path:
    """The first ``count`` lines of the bundled recording, gzipped at ``dest``."""
    with gzip.open(SPOT_FILES[0], "rb") as f:
        lines = f.read().splitlines()[:count]
    with gzip.open(dest, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_text(port: int, state: Path, max_lag_ms: int) -> str:
    """config/sim.toml against the sim on ``port``, the paper exchange, the lag limit; a
    feed quiet for 1.5 s reconnects (the sim is quiet once its tape ended)."""
    text = (REPO / "config" / "sim.toml").read_text()
    for old, new in (("9443", str(port)), ('dir = "../state/sim"', f'dir = "{state}"'),
                     ("stale_after_ms = 5000", f"stale_after_ms = 1500\nmax_lag_ms = {max_lag_ms}"),
                     ('adapter = "binance"', 'adapter = "paper"'),
                     ("stale_feed_ms = 2000", "stale_feed_ms = 60000")):
        assert old in text, f"config/sim.toml changed: {old!r} not found"
        text = text.replace(old, new)
    return text


async def venue_book_id(port: int) -> int:
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{port}/api/v3/depth?symbol=BTCUSDT&limit=5") as response:
        body: dict[str, Any] = orjson.loads(await response.read())
        return int(body["lastUpdateId"])


async def one_run(recording: Path, speed: str, max_lag_ms: int) -> dict[str, Any]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMDAEMON_API")}
    sim = subprocess.Popen(
        [sys.executable, "-m", "mmdaemon", "sim", str(recording), "--port", str(port),
         "--speed", speed, "--wait-for-subscriber"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    stdout = sim.stdout
    assert stdout is not None
    lines: list[bytes] = []
    reader = asyncio.get_running_loop().run_in_executor(None, lambda: lines.extend(stdout))
    try:
        while not any(b"sim_listening" in line for line in lines):
            await asyncio.sleep(0.02)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "sim.toml"
            path.write_text(config_text(port, Path(tmp) / "state", max_lag_ms))
            service = Service(load_config(path), SystemClock(), log.get_logger())
            rss_start = rss_mb()
            peak = rss_start
            started = time.monotonic()
            run = asyncio.create_task(service.run())
            while not any(b"sim_tape_finished" in line for line in lines):
                peak = max(peak, rss_mb())
                await asyncio.sleep(0.05)
            burst_s = time.monotonic() - started
            final = await venue_book_id(port)
            ended = time.monotonic()
            deadline = ended + SETTLE_S
            while not (service.engine.book.synced and service.engine.book.last_id == final):
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            caught_up = service.engine.book.synced and service.engine.book.last_id == final
            catch_up_s = time.monotonic() - ended
            service.stop()
            await run
            feed = service.live
            assert feed is not None
            sent = next(orjson.loads(line)["frames_sent"] for line in lines
                        if b"sim_tape_finished" in line)
            return {
                "speed": speed, "max_lag_ms": max_lag_ms, "burst_s": round(burst_s, 2),
                "frames_sent": sent, "frames_processed": service.engine.market.frames,
                "max_lag_ms_seen": round(service.pump.lag_max_ns / 1e6, 1),
                "max_backlog": service.pump.backlog_max, "queue_size": feed.settings.queue_size,
                "sheds": feed.sheds, "shed_items": feed.shed_items,
                "gaps": service.engine.market.gaps, "snapshots": feed.snapshots,
                "rss_mb_start": round(rss_start, 1), "rss_mb_peak": round(peak, 1),
                "rss_mb_end": round(rss_mb(), 1), "final_book": caught_up,
                "catch_up_s": round(catch_up_s, 3),
                "exit_code": service.exit_code,
            }
    finally:
        sim.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            sim.wait(20)
        await reader


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=30000)
    parser.add_argument("--speeds", default="20,100,400,max")
    parser.add_argument("--max-lag-ms", default="1000,20")
    args = parser.parse_args()
    log.configure("warning", open("/dev/null", "wb"))  # noqa: SIM115
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        recording = first_lines(Path(tmp) / "burst.gz", args.lines)
        for limit in (int(x) for x in args.max_lag_ms.split(",")):
            for speed in args.speeds.split(","):
                result = uvloop.run(one_run(recording, speed, limit))
                results.append(result)
                print(orjson.dumps(result).decode(), flush=True)
    print(f"\n{'speed':>6} {'limit ms':>8} {'sent':>7} {'processed':>9} {'max lag ms':>10} "
          f"{'backlog':>7} {'sheds':>5} {'gaps':>4} {'snaps':>5} {'RSS MiB start/peak/end':>22} "
          f"{'final book':>10} {'catch-up s':>10}")
    for r in results:
        rss = f"{r['rss_mb_start']}/{r['rss_mb_peak']}/{r['rss_mb_end']}"
        print(f"{r['speed']:>6} {r['max_lag_ms']:>8} {r['frames_sent']:>7} "
              f"{r['frames_processed']:>9} {r['max_lag_ms_seen']:>10} {r['max_backlog']:>7} "
              f"{r['sheds']:>5} {r['gaps']:>4} {r['snapshots']:>5} {rss:>22} "
              f"{r['final_book']!s:>10} {r['catch_up_s']:>10}")


if __name__ == "__main__":
    main()
