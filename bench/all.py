"""``make bench``: every headline figure of issue #9 in one run, as one JSON object and a
readable table.

    .venv/bin/python bench/all.py [--quick]

- dry-run replay of the bundled recording at ``--speed max`` vs orjson parse-only of the
  same frames, measured in the same run, and their ratio (bench/replay.py);
- in-process tick-to-quote, frame bytes in -> order actions handed to the adapter,
  p50/p99/p99.9 (bench/replay.py);
- decode + book alone vs parse-only (bench/book.py's measure);
- loopback end-to-end against the sim, depth frame sent -> order request received,
  p50/p99 (bench/latency.py; uvloop on both sides);
- the whole ``mmdaemon replay FILES --json`` command as a process vs gunzip + orjson
  parse-only of the same files, with the anchors (hftbacktest, NautilusTrader) on the same
  files, interleaved (bench/command.py);
- start-up to READY (sd_notify, as systemd sees it) and peak RSS of the real command
  (bench/startup.py);
- wire-to-wire inside the daemon at the recording's pace, kernel receive stamp -> order
  frame written, p50/p99/p99.9, and that run's loopback, against the sim and against the
  lean venue stand-in (bench/wire.py, bench/lean_venue.py), one after the other;
- the floor of that wire-to-wire on this machine: a client that does no work but write a
  ready-made order frame, measured the same way against the lean stand-in
  (bench/wire_floor.py);
- the decoded-event cache: one replay and a 100-run sweep with and without it
  (bench/cache.py; ``--quick``: a 20-run sweep).

``BENCH_DAY=1`` adds the long part (``make bench-day``, bench/day.py): a 24-hour recording
replayed streaming, RSS and frames/s per hour; about 6-8 minutes more, plus 4 to build the
day the first time.

``--quick`` plays a shorter part of the recording through the loopbacks and starts the
daemon fewer times: about 4 minutes instead of 13 (the wire-to-wire runs play the
recording at its real pace, against the sim and then the lean stand-in).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import book, cache, command, day, latency, replay, startup, wire, wire_floor
from mmdaemon import speedups


def machine() -> dict[str, Any]:
    """What the figures were taken on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cpus": os.cpu_count(), "python": platform.python_version(),
            "machine": platform.machine(), "load_avg_1m": round(os.getloadavg()[0], 2),
            "hot_loops": speedups.HOT_LOOPS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    quick = parser.parse_args().quick
    started = time.perf_counter()
    result: dict[str, Any] = {"machine": machine()}
    # start-up first: the kernel's peak-RSS figure of a child counts the parent's pages
    # from before its exec, and the other benchmarks hold the whole recording in memory
    result["startup"] = startup.measure(runs=3 if quick else 5)
    result["command"] = command.measure(runs=3 if quick else command.RUNS)
    result["replay"] = replay.measure()
    result["decode_book"] = book.measure()
    result["loopback"] = latency.measure(lines=30_000 if quick else 99_574)
    result["event_cache"] = cache.measure(repeat=3 if quick else 5,
                                          sweep_runs=20 if quick else 100)
    if os.environ.get("BENCH_DAY") == "1":
        files, manifest = day.day_files()
        result["day"] = day.measure_replay(files, manifest, day.DEFAULT_CONFIG)
        del result["day"]["summary"]  # the command's own output, config and all
    # last: it lowers this process's priority while it runs (the sim in it)
    result["wire"] = wire.measure(lines=6_000 if quick else 24_000)
    result["wire_floor"] = wire_floor.measure(lines=3_000 if quick else 12_000)
    result["bench_s"] = round(time.perf_counter() - started, 1)
    print(orjson.dumps(result).decode())
    m = result["machine"]
    print(f"\nmmdaemon benchmarks on {m['cpu']} ({m['cpus']} CPUs), Python {m['python']}, "
          f"load {m['load_avg_1m']} at start, {m['hot_loops']} hot loops")
    lines = [*command.table(result["command"]), *replay.table(result["replay"]),
             *book.table(result["decode_book"]), *latency.table(result["loopback"]),
             *startup.table(result["startup"]), *cache.table(result["event_cache"]),
             *wire.table(result["wire"]), *wire_floor.table(result["wire_floor"])]
    if "day" in result:
        lines += day.table(result["day"])
    print("\n".join(lines))


if __name__ == "__main__":
    main()
