"""What-if bounds of tick-to-quote: how far would a change go, measured before making it.

Run: ``.venv/bin/python bench/tick_bounds.py [--rounds 6] [TREE:VARIANT ...]`` (default
``.:base .:append .:append+nolog``, this checkout); prints one JSON object, then a table.
Before and after a change: ``bench/tick_bounds.py OLD:base .:base``, with OLD a clone at
the base commit (its ``mmdaemon/_speedups*.so`` built or copied in).

Each ``TREE:VARIANT`` is one in-memory dry run (bench/replay.py's, both recordings) of the
checkout at ``TREE`` in a process of its own, the runs of all of them interleaved, the order
reversed every other round; per frame that caused order actions, this thread's CPU time
from its bytes entering ``FeedTask.on_frame`` to its last action handed to the adapter
(bench/replay.py's tick-to-quote). Percentiles of all frames pooled, and without each run's
first such frame: that one is the first quote of a process, every code path cold (400-800
us), and with a few short runs pooled it alone is the p99.9; a daemon running for hours has
one in hundreds of thousands.

Variants (joined with ``+``) replace parts of the running service, never the checkout's
files; they are **not** safe changes, only the most each could win:

- ``base``: the service as it is;
- ``append``: a fill's journal commit (SQLite, WAL) replaced by one ``os.write`` of its
  fields to a file, with a set for repeats: the least any durable point could cost, so the
  bound of moving the no-lost-fill commit to a write-ahead fill file;
- ``nolog``: the fill's log line dropped (the bound of writing it after the quote);
- ``big``: the report buffers never written inside a frame (the supervisor writes them; at
  ``--speed max`` it runs only a few times, and a faster engine fills the 1,024-row order
  log between two of them, whose write inside a frame costs about 2 ms).

The clock starts in the pump's ``_next_due`` (the first call of ``FeedTask.on_frame``) and
stops when the pump's ``send`` returns with ``cause_ns`` set (a frame's own actions), so the
same harness times a checkout whose engine is compiled (a compiled object's methods cannot
be replaced; attributes holding callables can).

Measured 2026-12-07 on the 2-core VM (10 rounds each, load 0.65-0.96; p50 / p90 / p99 /
p99.9 us without each run's first frame): this tree 51 / 97-99 / 190-220 / 282-315;
``append+nolog+big`` 50-52 / 80-82 / 135-143 / 224-266. The same per-frame path compiled by
mypyc (33 modules, a scratch tree, not adopted): 25 / 68 / 153 / 408-515, and with
``append+nolog+big`` 24-25 / 49-50 / 103-106 / 147-171.
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from time import thread_time_ns
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# the package alone: a child imports mmdaemon from the checkout it times, so nothing here
# may import it before (bench.common does), and bench's modules come from this checkout
import bench  # noqa: F401

VARIANTS = frozenset({"base", "append", "nolog", "big"})
FILL_RECORD = struct.Struct("<9q")  # exec id, order id, side, price, size, fee, maker, ts, mid


def child(tree: Path, tokens: set[str]) -> tuple[str, list[int]]:
    """One timed run of ``tree``'s service with ``tokens`` applied: where its mmdaemon was
    imported from, and CPU ns per frame with actions, in order."""
    sys.path.insert(0, str(tree))
    os.chdir(tree)  # a compiled checkout's shared library sits at its top
    import uvloop

    import mmdaemon
    from bench.common import load_frames
    from bench.replay import InMemoryService, _service
    from mmdaemon import log, records

    InMemoryService.frames_in_memory = load_frames()
    if "big" in tokens:
        records.MAX_BUFFERED_ORDER_LOG = records.MAX_BUFFERED_SAMPLES = 1 << 30
    log.configure("info", open(os.devnull, "wb"))  # noqa: SIM115
    cpu: list[int] = []
    start = [0]
    with tempfile.TemporaryDirectory() as tmp:
        service = _service(tmp)
        engine, pump = service.engine, service.pump
        next_due, send = pump._next_due, pump.send

        def timed_next_due() -> int | None:
            start[0] = thread_time_ns()
            return next_due()

        async def timed_send(actions: Any) -> None:
            await send(actions)
            if pump.cause_ns:  # a frame's own actions, not a catch-up's or a pull's
                cpu.append(thread_time_ns() - start[0])

        pump._next_due, pump.send = timed_next_due, timed_send
        restore = service._restore

        def restored(state: Any) -> None:
            restore(state)
            if "append" in tokens:
                engine.journal.record_fill = _appending(Path(tmp) / "fills.bin")  # type: ignore[method-assign]
            if "nolog" in tokens:
                engine.log = _WithoutFillLines(engine.log)

        service._restore = restored  # type: ignore[method-assign]
        uvloop.run(service.run())
    return str(mmdaemon.__file__), cpu


def _appending(path: Path) -> Any:
    """A ``record_fill`` that appends the fill's fields to ``path`` (one write) and tells
    repeats by execution id: the cheapest durable point there could be."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    seen: set[int] = set()

    def record_fill(fill: Any) -> bool:
        if fill.exec_id in seen:
            return False
        seen.add(fill.exec_id)
        os.write(fd, FILL_RECORD.pack(fill.exec_id, fill.order_id, int(fill.side), fill.price,
                                      fill.size, fill.fee, int(fill.maker), fill.ts_ns,
                                      fill.mid_x2 or 0))
        return True

    return record_fill


class _WithoutFillLines:
    """The engine's logger but for its ``fill`` lines."""

    def __init__(self, logger: Any) -> None:
        self._logger = logger

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)

    def info(self, event: str, **values: Any) -> None:
        if event != "fill":
            self._logger.info(event, **values)


def _quantiles(values: list[int]) -> dict[str, float]:
    from bench.common import percentile_us  # imports mmdaemon: the parent only

    values = sorted(values)
    return {q: percentile_us(values, f) for q, f in
            (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999), ("max", 1.0))}


def measure(runs: list[str], rounds: int) -> dict[str, Any]:
    """Pooled percentiles (us) per ``TREE:VARIANT`` of ``runs``, interleaved ``rounds``
    times; ``all`` frames and ``steady`` (without each run's first)."""
    pooled: dict[str, list[int]] = {run: [] for run in runs}
    steady: dict[str, list[int]] = {run: [] for run in runs}
    for i in range(rounds):
        for run in runs if i % 2 == 0 else runs[::-1]:
            tree, variant = run.rsplit(":", 1)
            samples = child_run(Path(tree).resolve(), variant)
            pooled[run] += samples
            steady[run] += samples[1:]
    return {"rounds": rounds, "load_avg_1m": round(os.getloadavg()[0], 2),
            "all": {run: {"frames": len(v), **_quantiles(v)} for run, v in pooled.items()},
            "steady": {run: {"frames": len(v), **_quantiles(v)} for run, v in steady.items()}}


def child_run(tree: Path, variant: str) -> list[int]:
    """:func:`child` in a process of its own; RuntimeError if the mmdaemon it ran is not
    ``tree``'s (then the figures would be another checkout's)."""
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "child", str(tree),
                          variant], capture_output=True, check=True).stdout
    result = orjson.loads(out.splitlines()[-1])
    if not Path(result["mmdaemon"]).resolve().is_relative_to(tree):
        raise RuntimeError(f"{tree}:{variant} ran the mmdaemon of {result['mmdaemon']}")
    samples: list[int] = result["samples"]
    return samples


def table(r: dict[str, Any]) -> list[str]:
    """Readable lines for :func:`measure`'s result."""
    lines = [f"tick-to-quote what-if bounds, CPU us, {r['rounds']} interleaved rounds: "
             "p50 / p90 / p99 / p99.9 / max"]
    for group, title in (("all", "all frames"), ("steady", "without each run's first")):
        lines.append(title)
        for run, q in r[group].items():
            lines.append(f"  {run:<28}" + " /".join(f"{q[k]:>8}" for k in
                                                     ("p50", "p90", "p99", "p999", "max"))
                         + f"   ({q['frames']:,} frames)")
    return lines


def _tokens(variant: str) -> set[str]:
    tokens = set(variant.split("+"))
    if not tokens <= VARIANTS:
        raise SystemExit(f"unknown variant in {variant!r}: one or more of {sorted(VARIANTS)}"
                         " joined with '+'")
    return tokens


def main() -> None:
    if sys.argv[1:2] == ["child"]:
        package, samples = child(Path(sys.argv[2]), _tokens(sys.argv[3]))
        sys.stdout.write(orjson.dumps({"mmdaemon": package, "samples": samples}).decode()
                         + "\n")
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", default=[".:base", ".:append", ".:append+nolog"],
                        help="TREE:VARIANT, e.g. .:base or /tmp/old:append+nolog")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    for run in args.runs:
        if ":" not in run:
            parser.error(f"{run!r}: expected TREE:VARIANT, e.g. .:base")
        _tokens(run.rsplit(":", 1)[1])
    result = measure(args.runs, args.rounds)
    print(orjson.dumps(result).decode())
    print("\n".join(table(result)))


if __name__ == "__main__":
    main()
