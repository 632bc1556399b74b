"""Benchmark: the whole ``mmdaemon replay FILES --json`` command as a user runs it, against
gunzip + orjson parse-only of the same files, and the anchors (hftbacktest, NautilusTrader)
on the same files, interleaved, in one run (issue #23 item 1).

Run: ``.venv/bin/python bench/command.py [--runs 5]`` (one JSON object, then a table).

Every contender is a process of its own, timed from spawn to exit, start-up included:
the command is a process for its users, so the baseline is one too (the same interpreter
start-up on both sides; a parse-only child spends about 20 ms of its time starting).

- **command**: the console script ``mmdaemon replay FILES --json --cache off`` on the
  bundled recording (default config), its summary on a pipe (checked: the frames it
  counted), its logs to /dev/null (what a terminal costs is not the engine's); it parses,
  as parse-only does;
- **command_cached**: the same reading the decoded-event cache (built first), which a
  replay uses when one lies beside its files (docs/event-cache.md);
- **parse-only**: ``gzip.decompress`` of each whole file, split in lines, ``orjson.loads`` of
  every frame: the fastest plain reading of the same bytes;
- **anchors** (bench/anchors/run.py, in the anchors' own locked venv; skipped, and said so,
  when it is not installed): hftbacktest converting the same files and backtesting a quoting
  strategy on them, NautilusTrader's BacktestEngine replaying the same frames as order-book
  deltas and trades to a quoting strategy.

The rate of each is the recording's frames over its wall time; its ratio is parse-only's
time over its own (the issue's target: the command at 0.30x of parse-only or more). Median
and best of the rounds, and the median CPU time (user + system) with its ratio too; rounds
interleave all contenders so that a slow spell of this shared machine hits each alike.

The children run without ``PYTHONDONTWRITEBYTECODE`` (after one warm-up round that writes
any missing ``.pyc``): an installed package has its bytecode compiled, and compiling every
module at each start (0.45 s here) is not what a user's command pays.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, SPOT_FILES

RUNS = 5
ANCHORS_DIR = REPO / "bench" / "anchors"
ANCHORS_PYTHON = ANCHORS_DIR / ".venv" / "bin" / "python"
ANCHORS = ("hftbacktest", "nautilus")

PARSE_ONLY = """
import gzip, sys, orjson
loads = orjson.loads
frames = 0
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        data = gzip.decompress(f.read())
    for line in data.splitlines():
        loads(line[line.index(b" ") + 1:])
        frames += 1
print(frames)
"""
"""The parse-only child: prints the number of frames it parsed."""


def _env(baseline: Path | None = None) -> dict[str, str]:
    """The children's environment: bytecode caches written; ``baseline`` a directory whose
    ``mmdaemon`` package is imported instead of this checkout's."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if baseline is not None:
        env["PYTHONPATH"] = str(baseline)
    return env


def _timed(args: list[str], baseline: Path | None = None) -> tuple[float, float, bytes]:
    """Wall seconds from spawn to exit of ``args``, its CPU seconds (user + system, the
    figure a loaded machine disturbs less) and its stdout; raises on failure."""
    start = time.perf_counter()
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          env=_env(baseline)) as proc:
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall_s = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{args[:4]}... exited with {proc.returncode}")
    return wall_s, usage.ru_utime + usage.ru_stime, out


def command_args(files: list[Path], *extra: str) -> list[str]:
    """The command as a user types it, through the venv's console script (``extra``: more
    arguments)."""
    return [str(Path(sys.executable).parent / "mmdaemon"), "replay", *map(str, files), "--json",
            *extra]


def anchors_available() -> str:
    """Empty when the anchors' venv is installed, else why not."""
    if not ANCHORS_PYTHON.exists():
        return (f"no {ANCHORS_PYTHON.relative_to(REPO)}: install the anchors with `make bench` "
                "(uv sync --locked --project bench/anchors)")
    return ""


def measure(runs: int = RUNS, files: list[Path] = SPOT_FILES,
            baseline: Path | None = None) -> dict[str, Any]:
    """Wall times of every contender over ``runs`` interleaved rounds, their rates and their
    ratios to parse-only; with ``baseline`` (a directory holding another version's
    ``mmdaemon`` package, e.g. ``git archive`` of an older commit with its compiled
    ``_speedups``) that version's command too, as ``command_baseline``: before and after in
    one run."""
    # the command parses: a decoded-event cache beside the files (which `sweep` or
    # `replay --cache build` leave) would skip the very work parse-only stands for; the
    # cached command is measured on its own (after a build), as ``command_cached``
    subprocess.run(command_args(files, "--cache", "build"), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    contenders: dict[str, list[str]] = {
        "command": command_args(files, "--cache", "off"),
        "command_cached": command_args(files, "--cache", "use"),
        "parse_only": [sys.executable, "-c", PARSE_ONLY, *map(str, files)],
    }
    if baseline is not None:  # parsing too: the cache built above would spare it the work
        contenders["command_baseline"] = command_args(files, "--cache", "off")
    skipped = anchors_available()
    if not skipped:
        for name in ANCHORS:
            contenders[name] = [str(ANCHORS_PYTHON), str(ANCHORS_DIR / "run.py"), name,
                                *map(str, files)]
    times: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    details: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for round_ in range(runs + 1):  # round 0 warms up (bytecode, page cache) and is not kept
        for name, args in contenders.items():
            if name in failed:
                continue
            try:
                wall_s, cpu_s, out = _timed(
                    args, baseline if name == "command_baseline" else None)
            except RuntimeError as exc:
                failed[name] = str(exc)
                continue
            if round_:
                times[name].append(wall_s)
                cpu[name].append(cpu_s)
            else:
                details[name] = out
    frames = int(details["parse_only"])
    summary = orjson.loads(details["command"])
    if summary["frames"] != frames:
        raise RuntimeError(f"the command counted {summary['frames']} frames, parse-only {frames}")
    parse_median = statistics.median(times["parse_only"])
    parse_best = min(times["parse_only"])
    parse_cpu = statistics.median(cpu["parse_only"])
    result: dict[str, Any] = {"frames": frames, "runs": runs, "contenders": {}}
    for name, walls in times.items():
        if not walls:
            continue
        median, best = statistics.median(walls), min(walls)
        entry: dict[str, Any] = {
            "median_s": round(median, 3), "best_s": round(best, 3),
            "frames_per_s": round(frames / median),
            "ratio_to_parse_median": round(parse_median / median, 3),
            "ratio_to_parse_best": round(parse_best / best, 3),
            "cpu_median_s": round(statistics.median(cpu[name]), 3),
            "ratio_to_parse_cpu": round(parse_cpu / statistics.median(cpu[name]), 3),
        }
        if name in ANCHORS:
            entry["detail"] = orjson.loads(details[name])
        result["contenders"][name] = entry
    result["command_fills"] = summary["fills"]
    result["goal_command_at_least_0_30x"] = (
        result["contenders"]["command"]["ratio_to_parse_median"] >= 0.30)
    result["anchors_skipped"] = skipped
    result["failed"] = failed
    return result


def table(r: dict[str, Any]) -> list[str]:
    """Readable lines for :func:`measure`'s result."""
    lines = [f"{'whole command vs parse-only':<34}{r['frames']:>12,} frames, "
             f"{r['runs']} interleaved rounds (median / best)"]
    labels = {"command": "mmdaemon replay --json",
              "command_cached": "  the same, from the event cache",
              "command_baseline": "  the same, --baseline version",
              "parse_only": "gunzip + orjson parse-only",
              "hftbacktest": "hftbacktest convert+backtest",
              "nautilus": "NautilusTrader BacktestEngine"}
    for name, c in r["contenders"].items():
        lines.append(f"  {labels[name]:<32}{c['median_s']:>7.3f} / {c['best_s']:.3f} s "
                     f"{c['frames_per_s']:>10,} frames/s  {c['ratio_to_parse_median']:.3f}x "
                     f"/ {c['ratio_to_parse_best']:.3f}x of parse-only (CPU "
                     f"{c['cpu_median_s']:.3f} s: {c['ratio_to_parse_cpu']:.3f}x)")
    for name in ANCHORS:
        detail = r["contenders"].get(name, {}).get("detail")
        if detail:
            phases = ", ".join(f"{key[:-6]} {value:.2f}" for key, value in detail.items()
                               if key.endswith("_cpu_s"))
            lines.append(f"    {name} CPU s by phase: {phases}; fills {detail['fills']}, "
                         f"orders sent {detail['orders_sent']}")
    lines.append(f"  {'goal: command >= 0.30x':<32}"
                 f"{'met' if r['goal_command_at_least_0_30x'] else 'NOT met'}")
    if r["anchors_skipped"]:
        lines.append(f"  anchors skipped: {r['anchors_skipped']}")
    for name, why in r["failed"].items():
        lines.append(f"  {name} failed: {why}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="also time the command of the mmdaemon package in DIR")
    args = parser.parse_args()
    result = measure(args.runs, baseline=args.baseline)
    print(orjson.dumps(result).decode())
    print("\n".join(table(result)))


if __name__ == "__main__":
    main()
