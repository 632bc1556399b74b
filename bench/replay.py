"""Benchmark: the full dry run at --speed max vs orjson parse-only, in one run; and the
in-process tick-to-quote latency of the same service.

Run: ``.venv/bin/python bench/replay.py [CONFIG]`` (default config/dryrun.toml; prints one
JSON object, then a readable table).
The dry run is the real service (book, quoter, risk gate, order manager, paper exchange,
journal on a temporary SQLite file, JSON logs to /dev/null) fed from frames already in
memory, so neither gunzip nor terminal output is timed. Goals (DESIGN.md): the dry run
within 5x of parse-only; tick-to-quote p99 under 100 us, p99.9 under 300 us.

Tick-to-quote is timed in separate runs (the timer is not free; ``T2Q_RUNS`` of them, their
samples pooled, so that p99.9 is not just the one worst frame): from the moment a frame's
bytes enter :meth:`FeedTask.on_frame` (mmdaemon/feed_task.py) to the moment every order
action that frame caused has been handed to the exchange adapter, for each frame that
caused one. Beside the wall time, the same span in this thread's CPU time: on a machine
shared with other work the wall tail is mostly other processes' turns on the cores (and
the disk), the CPU tail is ours. bench/tick_stages.py splits it by stage.
"""

from __future__ import annotations

import asyncio
import platform
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from time import perf_counter_ns, thread_time_ns
from typing import Any, ClassVar

import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, best_of, load_frames, percentile_us
from mmdaemon import log
from mmdaemon.clock import SystemClock
from mmdaemon.config_file import load_config
from mmdaemon.daemon import Service
from mmdaemon.feed.recording import RecordedFrame
from mmdaemon.feed.replay import YIELD_EVERY
from mmdaemon.model import Malformed
from mmdaemon.orders.manager import OrderAction

RUNS = 5  # best of: this VM's wall-clock figures move by 10% from run to run
T2Q_RUNS = 3  # timed runs whose tick-to-quote samples are pooled


class InMemoryService(Service):
    """The service with its recording already in memory."""

    frames_in_memory: ClassVar[list[tuple[int, bytes]]] = []
    gap_s: ClassVar[float] = 0.0
    """0: frames back to back, in batches as a replay reads them; else one frame at a time
    with this idle time (s) after each, as a live feed's frames come apart (bench/tick_stages.py
    ``--gap-us``)."""

    async def _batches_from_memory(self) -> AsyncIterator[Sequence[RecordedFrame | Malformed]]:
        frames, gap_s = self.frames_in_memory, self.gap_s
        if gap_s:
            for frame in frames:
                yield (frame,)
                await asyncio.sleep(gap_s)
            return
        for start in range(0, len(frames), YIELD_EVERY):  # as ReplaySource.batches does
            yield frames[start : start + YIELD_EVERY]
            await asyncio.sleep(0)

    def _batches(self) -> AsyncIterator[Sequence[RecordedFrame | Malformed]]:
        return self._batches_from_memory()


class Timings:
    """Notes, per frame that caused order actions, ns from its bytes in to the last action
    handed to the adapter (``frame_t0`` is taken as the feed task's ``on_frame`` starts,
    before decoding), in wall and in this thread's CPU time; and per frame that made the
    quoter decide a quote (changed or not), ns to that decision. Only a send that follows
    a frame counts (one a simulated venue's report caused between frames has no tick).
    Wraps the service's feed task in place."""

    def __init__(self, service: Service) -> None:
        self.tick_to_action_ns: list[int] = []
        self.tick_to_action_cpu_ns: list[int] = []
        self.tick_to_decision_ns: list[int] = []
        self.sync_ns: list[int] = []  # of those, the frames that (re)synced the book
        self.frame_t0 = self.frame_cpu0 = 0
        self.pending = False  # the latest frame returned actions not yet sent
        self.synced = False  # the latest frame applied a snapshot
        pump, counters, market = service.pump, service.engine.counters, service.engine.market
        on_frame, send = pump.on_frame, pump.send

        def timed_frame(recv_ns: int, frame: bytes) -> list[OrderAction]:
            self.frame_t0, self.frame_cpu0 = perf_counter_ns(), thread_time_ns()
            quotes, snapshots = counters.quotes, market.snapshots
            actions = on_frame(recv_ns, frame)
            self.synced = market.snapshots != snapshots
            if counters.quotes != quotes:
                self.tick_to_decision_ns.append(perf_counter_ns() - self.frame_t0)
            self.pending = bool(actions)
            return actions

        async def timed_send(actions: list[OrderAction]) -> None:
            await send(actions)
            if self.pending:
                self.pending = False
                self.tick_to_action_ns.append(perf_counter_ns() - self.frame_t0)
                if self.synced:
                    self.sync_ns.append(self.tick_to_action_ns[-1])
                self.tick_to_action_cpu_ns.append(thread_time_ns() - self.frame_cpu0)

        pump.on_frame = timed_frame  # type: ignore[method-assign]
        pump.send = timed_send


CONFIG = REPO / "config" / "dryrun.toml"
"""The dry run's config; run alone, the first argument (e.g. config/dryrun-glft-online.toml).
Not read from ``sys.argv`` at import: bench/all.py's own flags (``--quick``) are not a
config."""


def _service(tmp: str) -> InMemoryService:
    config = load_config(CONFIG)
    return InMemoryService(config, SystemClock(), log.get_logger(), speed=None,
                           state_dir=Path(tmp))


def measure(runs: int = RUNS) -> dict[str, Any]:
    """Dry-run and parse-only rates (best of ``runs``), and tick-to-quote percentiles."""
    frames = load_frames()
    InMemoryService.frames_in_memory = frames
    devnull = open("/dev/null", "wb")  # noqa: SIM115
    log.configure("info", devnull)
    summaries: list[dict[str, Any]] = []

    def parse_only() -> None:
        loads = orjson.loads
        for _, frame in frames:
            loads(frame)

    def dry_run() -> float:
        """Seconds of one dry run: the service's run, as its summary's frames/s counts it
        (building the service and its temporary journal directory is not timed; start-up
        has its own figure)."""
        with tempfile.TemporaryDirectory() as tmp:
            service = _service(tmp)
            start = time.perf_counter()
            uvloop.run(service.run())
            wall_s = time.perf_counter() - start
            summaries.append(service.summary(wall_s))
            return wall_s

    # interleaved, so that a slow spell of the machine hits both alike
    parse_s = run_s = float("inf")
    for _ in range(runs):
        parse_s = min(parse_s, best_of(1, parse_only))
        run_s = min(run_s, dry_run())
    samples: list[int] = []
    syncs: list[int] = []
    cpu: list[int] = []
    decisions: list[int] = []
    for _ in range(T2Q_RUNS):
        with tempfile.TemporaryDirectory() as tmp:
            service = _service(tmp)
            timed = Timings(service)
            uvloop.run(service.run())
        samples += timed.tick_to_action_ns
        syncs += timed.sync_ns
        cpu += timed.tick_to_action_cpu_ns
        decisions += timed.tick_to_decision_ns
    ticks = sorted(samples)
    for sync in syncs:  # a snapshot (and the diffs it releases) is a start, not a tick
        ticks.remove(sync)
    samples.sort()
    cpu.sort()
    decisions.sort()
    n = len(frames)
    s = summaries[-1]
    return {
        "frames": n,
        "parse_only_frames_per_s": round(n / parse_s),
        "dry_run_frames_per_s": round(n / run_s),
        "ratio_dry_run_to_parse": round(run_s / parse_s, 2),
        "goal_dry_run_within_5x": run_s / parse_s <= 5.0,
        "tick_to_quote_samples": len(samples),
        "tick_to_quote_p50_us": percentile_us(samples, 0.50),
        "tick_to_quote_p99_us": percentile_us(samples, 0.99),
        "tick_to_quote_p999_us": percentile_us(samples, 0.999),
        "tick_to_quote_max_us": percentile_us(samples, 1.0),
        "book_sync_frames": len(syncs),
        "tick_to_quote_without_syncs_p999_us": percentile_us(ticks, 0.999),
        "tick_to_quote_without_syncs_max_us": percentile_us(ticks, 1.0),
        "tick_to_quote_cpu_p50_us": percentile_us(cpu, 0.50),
        "tick_to_quote_cpu_p99_us": percentile_us(cpu, 0.99),
        "tick_to_quote_cpu_p999_us": percentile_us(cpu, 0.999),
        "tick_to_quote_cpu_max_us": percentile_us(cpu, 1.0),
        "goal_tick_to_quote_p999_under_300us": percentile_us(samples, 0.999) < 300,
        "goal_tick_to_quote_p99_under_100us": percentile_us(samples, 0.99) < 100,
        "quote_decisions": len(decisions),
        "tick_to_decision_p50_us": percentile_us(decisions, 0.50),
        "tick_to_decision_p99_us": percentile_us(decisions, 0.99),
        "tick_to_decision_p999_us": percentile_us(decisions, 0.999),
        "tick_to_decision_max_us": percentile_us(decisions, 1.0),
        "quotes": s["quotes"],
        "orders": s["orders"],
        "amends": s["amends"],
        "fills": s["fills"],
        "runs": runs,
        "tick_to_quote_runs": T2Q_RUNS,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def table(r: dict[str, Any]) -> list[str]:
    """Readable lines for :func:`measure`'s result."""
    return [
        f"{'frames':<34}{r['frames']:>12,}",
        f"{'orjson parse-only':<34}{r['parse_only_frames_per_s']:>12,} frames/s",
        f"{'full dry run (--speed max)':<34}{r['dry_run_frames_per_s']:>12,} frames/s",
        f"{'dry run / parse time':<34}{r['ratio_dry_run_to_parse']:>12}x (goal <= 5x)",
        f"{'tick-to-quote p50/p99/p99.9/max':<34}{r['tick_to_quote_p50_us']:>6} / "
        f"{r['tick_to_quote_p99_us']} / {r['tick_to_quote_p999_us']} / "
        f"{r['tick_to_quote_max_us']} us ({r['tick_to_quote_samples']:,} frames with order "
        f"actions, {r['tick_to_quote_runs']} runs; goal p99 < 100, p99.9 < 300 us)",
        f"{'  without book syncs p99.9/max':<34}{r['tick_to_quote_without_syncs_p999_us']:>6} / "
        f"{r['tick_to_quote_without_syncs_max_us']} us (less the {r['book_sync_frames']} "
        "frames that applied a snapshot: start-up, resyncs)",
        f"{'  in CPU time p50/p99/p99.9/max':<34}{r['tick_to_quote_cpu_p50_us']:>6} / "
        f"{r['tick_to_quote_cpu_p99_us']} / {r['tick_to_quote_cpu_p999_us']} / "
        f"{r['tick_to_quote_cpu_max_us']} us (this thread's: without other processes' turns)",
        f"{'  every quote decision p50/p99/p99.9':<34}{r['tick_to_decision_p50_us']:>6} / "
        f"{r['tick_to_decision_p99_us']} / {r['tick_to_decision_p999_us']} us "
        f"({r['quote_decisions']:,} frames that made the quoter decide)",
    ]


def main() -> None:
    global CONFIG
    if len(sys.argv) > 1:
        CONFIG = Path(sys.argv[1])
    result = measure()
    print(orjson.dumps(result).decode())
    print("\n".join(table(result)))


if __name__ == "__main__":
    main()
