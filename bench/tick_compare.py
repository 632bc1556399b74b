"""Tick-to-quote of two checkouts, measured interleaved in one run (before/after a change).

Run: ``.venv/bin python bench/tick_compare.py OLD NEW [ROUNDS]``, e.g. with OLD a clone of
main at the base commit (its ``mmdaemon/_speedups*.so`` built or copied in) and NEW this
checkout. Each round runs one timed in-memory dry run of each (bench/replay.py's
tick-to-quote: a frame's bytes into the feed task to its last order action handed to the
adapter) in a fresh process with ``PYTHONPATH`` at that checkout, alternating which goes
first, so that a busy spell of the machine hits both alike; the samples of all rounds are
pooled per checkout. Wall and this thread's CPU time (the machine's other work is not in
the latter). Default 6 rounds. Prints one JSON object, then a table.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, percentile_us

CHILD = r"""
import asyncio, sys, tempfile
from pathlib import Path
from time import perf_counter_ns, thread_time_ns
import orjson, uvloop
from mmdaemon import log
from mmdaemon.clock import SystemClock
from mmdaemon.config_file import load_config
from mmdaemon.daemon import Service
from mmdaemon.feed.recording import read_recording
from mmdaemon.feed.replay import YIELD_EVERY

paths = [Path(p) for p in sys.argv[2:]]
frames = [i for i in read_recording(paths) if type(i) is tuple]


class InMemory(Service):
    async def _from_memory(self):
        for start in range(0, len(frames), YIELD_EVERY):
            yield frames[start : start + YIELD_EVERY]
            await asyncio.sleep(0)

    def _batches(self):
        return self._from_memory()


log.configure("info", open("/dev/null", "wb"))
wall, cpu, t0, pending = [], [], [0, 0], [False]
with tempfile.TemporaryDirectory() as tmp:
    service = InMemory(load_config(Path(sys.argv[1])), SystemClock(), log.get_logger(),
                       speed=None, state_dir=Path(tmp))
    pump = service.pump
    on_frame, send = pump.on_frame, pump.send

    def timed_frame(recv_ns, frame):
        t0[0], t0[1] = perf_counter_ns(), thread_time_ns()
        actions = on_frame(recv_ns, frame)
        pending[0] = bool(actions)
        return actions

    async def timed_send(actions):
        await send(actions)
        if pending[0]:
            pending[0] = False
            wall.append(perf_counter_ns() - t0[0])
            cpu.append(thread_time_ns() - t0[1])

    pump.on_frame, pump.send = timed_frame, timed_send
    uvloop.run(service.run())
sys.stdout.write(orjson.dumps({"wall": wall, "cpu": cpu}).decode())
"""

CONFIG = REPO / "config" / "dryrun.toml"
RECORDINGS = [REPO / "data" / "binance-spot-btcusdt" / f"btcusdt_2024080{d}.gz" for d in (8, 9)]


def one_run(tree: Path) -> dict[str, list[int]]:
    """One timed dry run with ``tree``'s mmdaemon: wall and CPU ns per frame with actions."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", CHILD, str(CONFIG), *map(str, RECORDINGS)],
                         env=env, capture_output=True, check=True, cwd=tree).stdout
    result: dict[str, list[int]] = orjson.loads(out)
    return result


def measure(old: Path, new: Path, rounds: int = 6) -> dict[str, Any]:
    """Pooled tick-to-quote percentiles (us) of ``old`` and ``new``, interleaved."""
    pooled: dict[str, dict[str, list[int]]] = {
        "old": {"wall": [], "cpu": []}, "new": {"wall": [], "cpu": []}}
    trees = {"old": old, "new": new}
    for i in range(rounds):
        for name in (("old", "new") if i % 2 == 0 else ("new", "old")):
            run = one_run(trees[name])
            for clock in ("wall", "cpu"):
                pooled[name][clock] += run[clock]
    result: dict[str, Any] = {"rounds": rounds, "old": str(old), "new": str(new)}
    for name, clocks in pooled.items():
        for clock, values in clocks.items():
            values.sort()
            result[f"{name}_{clock}"] = {
                "samples": len(values),
                **{q: percentile_us(values, f) for q, f in
                   (("p50", 0.5), ("p99", 0.99), ("p999", 0.999), ("max", 1.0))}}
    return result


def table(r: dict[str, Any]) -> list[str]:
    """Readable lines for :func:`measure`'s result."""
    lines = [f"tick-to-quote, {r['rounds']} interleaved rounds, us: p50 / p99 / p99.9 / max"]
    for key in ("old_wall", "new_wall", "old_cpu", "new_cpu"):
        q = r[key]
        lines.append(f"  {key:<9}{q['p50']:>8} /{q['p99']:>8} /{q['p999']:>8} /{q['max']:>9}"
                     f"   ({q['samples']:,} frames)")
    return lines


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit("usage: bench/tick_compare.py OLD_CHECKOUT NEW_CHECKOUT [ROUNDS]")
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 6
    result = measure(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve(), rounds)
    print(orjson.dumps(result).decode())
    print("\n".join(table(result)))


if __name__ == "__main__":
    main()
