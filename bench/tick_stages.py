"""Where tick-to-quote goes: the frames that caused order actions, split by stage.

Run: ``.venv/bin/python bench/tick_stages.py [CONFIG] [--gap-us G --frames N]`` (default
config/dryrun.toml; one run of bench/replay.py's in-memory dry run; prints one JSON object,
then a table). Back to back (the default) the path stays warm; ``--gap-us`` idles after
every frame, as a live feed's frames come apart (the recording's real rate is 10-100 ms
between frames). On this 2-core VM (load about 1 from other work), ``--frames 4000``:
back to back and with 200 us gaps, p50 65 us; with 1,000 us gaps 232 us, with 5,000 us gaps
294-401 us, every stage 2-5x its warm cost. Pinning the process to one core or keeping the
vCPU out of its halt state (cpuidle ``state1/disable``) did not change it.

For each frame that caused order actions (the frames bench/replay.py's tick-to-quote
counts), this thread's CPU time (``time.thread_time_ns``: another process's turn on the
core is not in it) in each stage, nested stages subtracted from their parent:

- ``venue``: a simulated venue acting on what was due before the frame;
- ``decode``: the codec and the book (:meth:`mmdaemon.market.MarketState.on_frame`);
- ``match``: the paper venue matching our orders against the frame;
- ``fill``: a fill's own cost but its commit: position, markouts, breakers, its log line;
- ``commit``: the fill's commit to the journal (SQLite, WAL);
- ``supervise``: the periodic breakers, when the frame's event time made one due;
- ``decide``: strategy, gate, order manager diff;
- ``send``: each action vetted (pre-trade checks) and handed to the adapter;
- ``other``: the rest of the frame (markouts' mid, event dispatch, the wrappers here).

Each stage's time is its own: a stage reached from within another (a paper fill delivered
while matching) is taken out of the one that called it.

Also per frame: its wall time less its CPU time (the machine's other work, or waiting on
the disk), and the garbage collections that ran in it; then the slowest frames by CPU.
The wrappers cost about a microsecond a stage: read the split, not the totals (those are
bench/replay.py's).
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from time import perf_counter_ns, thread_time_ns
from typing import Any

import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import replay
from bench.common import load_frames, percentile_us
from bench.replay import InMemoryService, _service
from mmdaemon import log
from mmdaemon.orders.manager import OrderAction

STAGES = ("venue", "decode", "match", "fill", "commit", "supervise", "decide", "send",
          "other")


class StageClock:
    """CPU ns per stage of the frame being timed; ``frames`` holds one dict per frame with
    actions (stage -> ns, plus ``wall``, ``cpu``, ``gc``, ``kinds``)."""

    def __init__(self) -> None:
        self.current: Counter[str] = Counter()
        self.frames: list[dict[str, Any]] = []
        self.collections = 0
        self.inner: list[int] = []  # per stage being timed: ns spent in stages within it
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.collections += 1

    def wrap(self, obj: object, name: str, stage: str) -> None:
        """Time ``obj.name`` into ``stage`` (set on the instance: the class is untouched)."""
        fn: Callable[..., Any] = getattr(obj, name)
        current, inner = self.current, self.inner

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = thread_time_ns()
            inner.append(0)
            try:
                return fn(*args, **kwargs)
            finally:
                spent = thread_time_ns() - start
                current[stage] += spent - inner.pop()  # a stage called within is its own
                if inner:
                    inner[-1] += spent

        setattr(obj, name, timed)


def measure(gap_us: float = 0.0, frames: int = 0) -> dict[str, Any]:
    """One timed run: per-stage CPU percentiles of the frames with actions, fill frames
    and the others apart, and the slowest frames. ``gap_us`` > 0: the process idles that
    long after each frame (``frames``: only the first that many, 0: all)."""
    InMemoryService.frames_in_memory = load_frames()[:frames or None]
    InMemoryService.gap_s = gap_us / 1e6
    log.configure("info", open("/dev/null", "wb"))  # noqa: SIM115
    clock = StageClock()
    with tempfile.TemporaryDirectory() as tmp:
        service = _service(tmp)
        engine, pump = service.engine, service.pump
        restore = engine.restore

        def restored(*args: Any) -> None:  # the parts that exist only once restored
            restore(*args)
            clock.wrap(engine, "_on_fill", "fill")
            clock.wrap(engine.journal, "record_fill", "commit")
            clock.wrap(engine, "decide", "decide")
            clock.wrap(engine, "supervise", "supervise")
            clock.wrap(engine.market, "on_frame", "decode")
            clock.wrap(engine.matcher, "on_book", "match")
            clock.wrap(engine.matcher, "on_trade", "match")

        setattr(engine, "restore", restored)  # noqa: B010 (on the instance)
        clock.wrap(pump, "_advance_to", "venue")
        on_frame, send = pump.on_frame, pump.send
        frame: dict[str, int] = {}

        def timed_frame(recv_ns: int, data: bytes) -> list[OrderAction]:
            clock.current.clear()
            frame.update(wall=perf_counter_ns(), cpu=thread_time_ns(), gc=clock.collections,
                         pending=0)
            actions = on_frame(recv_ns, data)
            frame["pending"] = len(actions)
            return actions

        async def timed_send(actions: list[OrderAction]) -> None:
            start = thread_time_ns()
            await send(actions)
            if not frame.get("pending"):
                return  # not a frame's actions
            frame["pending"] = 0
            row: dict[str, Any] = dict(clock.current)
            row["send"] = thread_time_ns() - start
            row["cpu"] = thread_time_ns() - frame["cpu"]
            row["wall"] = perf_counter_ns() - frame["wall"]
            row["gc"] = clock.collections - frame["gc"]
            row["kinds"] = "".join(a.kind[0] for a in actions)
            row["other"] = row["cpu"] - sum(row.get(s, 0) for s in STAGES if s != "other")
            clock.frames.append(row)

        setattr(pump, "on_frame", timed_frame)  # noqa: B010 (on the instance)
        pump.send = timed_send
        uvloop.run(service.run())
    rows = clock.frames
    fills = [r for r in rows if r.get("fill")]

    def in_us(row: dict[str, Any]) -> dict[str, Any]:
        return {k: (round(v / 1000, 1) if isinstance(v, int) and k != "gc" else v)
                for k, v in row.items()}

    return {
        "frames_with_actions": len(rows),
        "fill_frames": len(fills),
        "all": _split(rows),
        "with_a_fill": _split(fills),
        "without_a_fill": _split([r for r in rows if not r.get("fill")]),
        "frames_with_gc": sum(1 for r in rows if r["gc"]),
        # the process's first quote: every path it takes runs for the first time
        "first": in_us(rows[0]) if rows else None,
        "slowest_by_cpu": [in_us(r) for r in sorted(rows, key=lambda r: -int(r["cpu"]))[:10]],
    }


def _split(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per stage (and cpu, wall, wall - cpu): p50, p90, p99 and max in us."""
    out: dict[str, dict[str, float]] = {}
    for key in ("cpu", "wall", "waited", *STAGES):
        values = sorted(int(r["wall"] - r["cpu"]) if key == "waited" else int(r.get(key, 0))
                        for r in rows)
        out[key] = {q: percentile_us(values, f) for q, f in
                    (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))}
    return out


def table(r: dict[str, Any]) -> list[str]:
    """Readable lines for :func:`measure`'s result."""
    lines = [f"{r['frames_with_actions']:,} frames with order actions, {r['fill_frames']:,} "
             f"with a fill, {r['frames_with_gc']} with a garbage collection; us, "
             "p50/p90/p99/max"]
    for group in ("all", "with_a_fill", "without_a_fill"):
        lines.append(group)
        for stage, q in r[group].items():
            lines.append(f"  {stage:<10}{q['p50']:>8}{q['p90']:>8}{q['p99']:>8}{q['max']:>9}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", type=Path, default=replay.CONFIG)
    parser.add_argument("--gap-us", type=float, default=0.0,
                        help="idle time after each frame, us (0: back to back)")
    parser.add_argument("--frames", type=int, default=0, help="the first N frames (0: all)")
    args = parser.parse_args()
    replay.CONFIG = args.config
    result = measure(args.gap_us, args.frames)
    print(orjson.dumps(result).decode())
    print("\n".join(table(result)))


if __name__ == "__main__":
    main()
