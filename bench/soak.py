"""Soak: the full dry run on the bundled recording, looped, with memory and history sizes.

Run: ``.venv/bin/python bench/soak.py [--minutes 20]`` (prints one JSON object per loop
and a closing summary). Each loop replays the 99,574 in-memory frames with receive times
shifted past the previous loop, behind a reconnect marker, exactly as a feed that
reconnects would: the book is dropped and resyncs from the recorded snapshot. After every
loop it reports resident memory and the size of every in-memory history the daemon keeps,
which must stay flat however long it runs.

``--tracemalloc`` also reports Python's traced heap (``tracemalloc``, one frame) after
every loop and its growth beside RSS's: a traced total that stays flat while RSS creeps
is the allocator (arena fragmentation, malloc's own caches, SQLite's page cache, which
tracemalloc does not see), not a Python object that is kept. It slows the run about 4x.
The bench itself keeps one record per loop (about 0.6 KiB each), which shows in both.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, load_frames
from mmdaemon import log
from mmdaemon.clock import SystemClock
from mmdaemon.config import Config
from mmdaemon.config_file import load_config
from mmdaemon.daemon import Service
from mmdaemon.feed.replay import YIELD_EVERY
from mmdaemon.feed.websocket import Reconnected
from mmdaemon.feed_task import FeedItem


def rss_mb() -> float:
    """Current resident set size in MiB (from /proc; ru_maxrss is only the peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def histories(service: Service) -> dict[str, int]:
    """Sizes of everything in memory that grows with activity."""
    codec: Any = service.engine.market.codec
    venue: Any = getattr(service.exchange, "venue", None)
    quoter = service.engine.quoter  # the soak runs a built-in strategy
    assert quoter is not None
    adverse: Any = quoter.adverse
    volatility: Any = quoter.volatility
    return {
        "price_memo": len(service.instrument.ticks.memo),
        "size_memo": len(service.instrument.lots.memo),
        "codec_buffer": len(codec._buffer),
        "book_levels": len(service.engine.book.bids) + len(service.engine.book.asks),
        "open_orders": service.engine.manager.open_orders(),
        "paper_closed_orders": len(venue._closed) if venue is not None else 0,
        "markouts_pending": sum(len(q) for q in adverse._pending),
        "volatility_window": len(getattr(volatility, "_window", ())),
        "rejects_window": len(service.engine.breakers._rejects),
        "samples_buffered": len(service.engine.records.samples),
    }


class LoopedService(Service):
    """The service fed the in-memory recording ``loops`` times, each behind a reconnect."""

    frames: ClassVar[list[tuple[int, bytes]]] = []
    loops = 1
    on_loop: Any = None

    async def _looped(self) -> AsyncIterator[Sequence[FeedItem]]:
        span = self.frames[-1][0] - self.frames[0][0] + 1_000_000_000
        for loop in range(self.loops):
            shift = loop * span
            yield [Reconnected("loop", self.frames[0][0] + shift)]
            for start in range(0, len(self.frames), YIELD_EVERY):
                yield [(ns + shift, f) for ns, f in self.frames[start : start + YIELD_EVERY]]
                await asyncio.sleep(0)
            hook = type(self).on_loop  # a plain function, not a method of ours
            if hook is not None:
                hook(loop, self)

    def _batches(self) -> AsyncIterator[Sequence[FeedItem]]:
        return self._looped()


def soak(config: Config, loops: int, deadline_s: float | None,
         report: Any = print, keep_all: bool = True) -> list[dict[str, Any]]:
    """Run ``loops`` loops (or until ``deadline_s`` of wall time); one record per loop,
    each reported. Kept: all of them, or with ``keep_all=False`` only the first, the last
    before half of ``deadline_s`` and the last, so that the bench's own bookkeeping does not
    grow with the run it measures (it would add about 4 MiB an hour)."""
    LoopedService.frames = load_frames()
    LoopedService.loops = loops
    records: list[dict[str, Any]] = []
    start = time.monotonic()

    def on_loop(loop: int, service: Service) -> None:
        wall_s = round(time.monotonic() - start, 1)
        record: dict[str, Any] = {"loop": loop + 1, "wall_s": wall_s,
                  "rss_mb": round(rss_mb(), 1), "fills": service.engine.position.fills,
                  "state": service.engine.risk.state.value, **histories(service)}
        if tracemalloc.is_tracing():
            record["traced_mb"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 2)
        half = deadline_s is not None and wall_s >= deadline_s / 2
        if keep_all or not records:
            records.append(record)
        elif not half:
            records[1:] = [record]  # the latest before half time: the run's middle
        elif len(records) < 3:
            records.append(record)
        else:
            records[2] = record
        report(orjson.dumps(record).decode())
        if deadline_s is not None and time.monotonic() - start > deadline_s:
            service.stop()

    LoopedService.on_loop = on_loop
    with tempfile.TemporaryDirectory() as tmp:
        service = LoopedService(config, SystemClock(), log.get_logger(), speed=None,
                                state_dir=Path(tmp))
        uvloop.run(service.run())
    return records


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also report tracemalloc's traced total (about 4x slower)")
    args = parser.parse_args()
    if args.tracemalloc:
        tracemalloc.start(1)
    log.configure("warning", open("/dev/null", "wb"))  # noqa: SIM115
    config = load_config(REPO / "config" / "dryrun.toml")
    rss_start = rss_mb()  # before the recording is loaded into memory
    records = soak(config, loops=10**6, deadline_s=args.minutes * 60, keep_all=False)
    first, mid, last = records[0], records[len(records) // 2], records[-1]
    loops = last["loop"]

    def per_hour(a: dict[str, Any], b: dict[str, Any], key: str = "rss_mb") -> float | None:
        """Growth of ``key`` (MiB) from record ``a`` to ``b``, MiB per hour of wall time."""
        hours = (b["wall_s"] - a["wall_s"]) / 3600
        return round((b[key] - a[key]) / hours, 2) if hours > 0 else None

    traced: dict[str, Any] = {}
    if args.tracemalloc:
        traced = {"traced_mb_after_first_loop": first["traced_mb"],
                  "traced_mb_at_half": mid["traced_mb"], "traced_mb_at_end": last["traced_mb"],
                  "traced_growth_mb_per_hour": per_hour(first, last, "traced_mb"),
                  "traced_growth_mb_per_hour_second_half": per_hour(mid, last, "traced_mb")}
    print(orjson.dumps({"loops": loops, "wall_s": last["wall_s"],
                        "rss_mb_at_start": round(rss_start, 1),
                        "rss_mb_after_first_loop": first["rss_mb"],
                        "rss_mb_at_half": mid["rss_mb"],
                        "rss_mb_at_end": last["rss_mb"],
                        "rss_growth_mb_per_hour": per_hour(first, last),
                        "rss_growth_mb_per_hour_second_half": per_hour(mid, last),
                        **traced,
                        "frames": len(LoopedService.frames) * loops,
                        "histories_first": {k: first[k] for k in histories_keys(first)},
                        "histories_last": {k: last[k] for k in histories_keys(last)}}).decode())


def histories_keys(record: dict[str, Any]) -> list[str]:
    return [k for k in record
            if k not in ("loop", "wall_s", "rss_mb", "traced_mb", "fills", "state")]


if __name__ == "__main__":
    main()
