"""Benchmark: the full dry run at --speed max vs orjson parse-only, in one run.

Run: ``.venv/bin/python bench/replay.py`` (prints one JSON object, then a readable table).
The dry run is the real service (book, quoter, risk gate, order manager, paper exchange,
journal on a temporary SQLite file, JSON logs to /dev/null) fed from frames already in
memory, so neither gunzip nor terminal output is timed. Goal (issue #4): within 5x of
parse-only.
"""

from __future__ import annotations

import asyncio
import platform
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, best_of, load_frames
from mmdaemon import log
from mmdaemon.clock import SystemClock
from mmdaemon.config import load_config
from mmdaemon.daemon import Service
from mmdaemon.feed.recording import RecordedFrame
from mmdaemon.feed.replay import YIELD_EVERY
from mmdaemon.model import Malformed

RUNS = 3


class InMemoryService(Service):
    """The service with its recording already in memory."""

    frames_in_memory: ClassVar[list[tuple[int, bytes]]] = []

    async def _batches_from_memory(self) -> AsyncIterator[Sequence[RecordedFrame | Malformed]]:
        frames = self.frames_in_memory
        for start in range(0, len(frames), YIELD_EVERY):  # as ReplaySource.batches does
            yield frames[start : start + YIELD_EVERY]
            await asyncio.sleep(0)

    def _batches(self) -> AsyncIterator[Sequence[RecordedFrame | Malformed]]:
        return self._batches_from_memory()


def main() -> None:
    frames = load_frames()
    InMemoryService.frames_in_memory = frames
    config = load_config(REPO / "config" / "dryrun.toml")
    devnull = open("/dev/null", "wb")  # noqa: SIM115
    log.configure("info", devnull)
    summaries: list[dict[str, Any]] = []

    def parse_only() -> None:
        loads = orjson.loads
        for _, frame in frames:
            loads(frame)

    def dry_run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            service = InMemoryService(config, SystemClock(), log.get_logger(), speed=None,
                                      state_dir=Path(tmp))
            start = time.perf_counter()
            uvloop.run(service.run())
            summaries.append(service.summary(time.perf_counter() - start))

    parse_s = best_of(RUNS, parse_only)
    run_s = best_of(RUNS, dry_run)
    n = len(frames)
    s = summaries[-1]
    result = {
        "frames": n,
        "parse_only_frames_per_s": round(n / parse_s),
        "dry_run_frames_per_s": round(n / run_s),
        "ratio_dry_run_to_parse": round(run_s / parse_s, 2),
        "goal_met": run_s / parse_s <= 5.0,
        "quotes": s["quotes"],
        "orders": s["orders"],
        "amends": s["amends"],
        "fills": s["fills"],
        "runs": RUNS,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(orjson.dumps(result).decode())
    print(f"{'frames':<30}{n:>12,}")
    print(f"{'orjson parse-only':<30}{result['parse_only_frames_per_s']:>12,} frames/s")
    print(f"{'full dry run (--speed max)':<30}{result['dry_run_frames_per_s']:>12,} frames/s")
    print(f"{'dry run / parse time':<30}{result['ratio_dry_run_to_parse']:>12}x (goal <= 5x)")


if __name__ == "__main__":
    main()
