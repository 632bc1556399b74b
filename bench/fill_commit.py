"""A fill's journal commit under a live-like mix of writes: its latency percentiles.

Run: ``.venv/bin/python bench/fill_commit.py [CHECKOUT]`` (default this one: pass a clone
of an older commit to measure its journal with the same mix; ``TMPDIR`` picks the disk).

The mix: 3,000 fills committed one by one, as the engine does (each before anything acts
on it); after every second fill, what the supervisor's persist writes at a tick: the
journal's checkpoint where the checkout has one (:meth:`mmdaemon.journal.Journal
.checkpoint`), then 40 report samples in one transaction. With SQLite's automatic
checkpoint, the commit that takes the WAL past 1,000 pages runs the checkpoint (two
fsyncs), and the first commit after one starts the WAL over (one more): sometimes a
fill's. ``strace -f -e trace=fdatasync`` on this run shows which commits sync.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

FILLS = 3000
SAMPLES_A_TICK = 40


def measure(checkout: Path) -> dict[str, Any]:
    """Fill-commit latency percentiles (us) of ``checkout``'s journal under the mix."""
    sys.path.insert(0, str(checkout))
    journal_module = importlib.import_module("mmdaemon.journal")
    model = importlib.import_module("mmdaemon.model")
    fill, buy = model.Fill, model.Side.BUY
    times: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        journal = journal_module.Journal(Path(tmp) / "journal.sqlite")
        journal.restore(1)
        checkpoint = getattr(journal, "checkpoint", None)
        for i in range(1, FILLS + 1):
            start = time.perf_counter_ns()
            journal.record_fill(fill(7, buy, 100 + i, 5, 2, True, i, exec_id=i))
            times.append(time.perf_counter_ns() - start)
            if i % 2 == 0:
                if checkpoint is not None:
                    checkpoint()
                journal.add_samples([(1, i * 1000 + k, 100, 101, 100.5, 99, 5, 102, 5, 0,
                                      "ACTIVE", i, i, 0) for k in range(SAMPLES_A_TICK)])
        journal.close()
    times.sort()
    return {"checkout": str(checkout), "fills": FILLS, "tmpdir": tempfile.gettempdir(),
            **{q: round(times[int(f * (len(times) - 1))] / 1000, 1) for q, f in
               (("p50_us", 0.5), ("p99_us", 0.99), ("p999_us", 0.999), ("max_us", 1.0))}}


def main() -> None:
    checkout = Path(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))).resolve()
    r = measure(checkout)
    print(orjson.dumps(r).decode())
    print(f"fill commit under the persist mix: p50 {r['p50_us']} / p99 {r['p99_us']} / "
          f"p99.9 {r['p999_us']} / max {r['max_us']} us ({r['fills']:,} fills, {checkout})")


if __name__ == "__main__":
    main()
