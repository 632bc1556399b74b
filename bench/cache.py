"""Benchmark: the decoded-event cache (mmdaemon/feed/event_cache.py), with and without it.

Run: ``.venv/bin/python bench/cache.py [--repeat N] [--sweep-runs N] [--workers N]``
(one JSON object, then a table). On copies of the bundled BTCUSDT spot recording in a
temporary directory (the cache is written beside them), measured in the same run,
interleaved:

- **build**: the real ``mmdaemon replay --cache build`` once (the cache's cost, paid once),
  and the cache's size against the gzip recordings';
- **feed**: in this process, CPU time (best of ``--repeat``) of the replay's feed alone:
  reading and decoding the recordings (gunzip, line split, codec) against reading the
  cache's items (:meth:`EventCache.items`), each to the same events;
- **one replay**: the real command ``mmdaemon replay FILES --json`` with ``--cache off``
  and ``--cache use``, ``--repeat`` times each, alternating: the process's wall time from
  spawn to exit and its CPU time (user + system), the median and the best; the summary of
  every run with the cache is checked equal to the parsed one's (wall-clock fields aside);
- **one sweep run**: in this process, CPU time (best of ``--repeat``) of what a sweep's
  worker does per run (``run_task``), without and with the cache, rows checked equal;
- **sweep**: the real ``mmdaemon sweep`` of ``--sweep-runs`` runs (default 100: the grid
  of config/sweep-example.toml, or its first N points) with ``--cache off`` and ``--cache
  build`` (which builds the cache once before the runs), wall time and runs/s; runs.csv of
  the two checked equal. (Wall time only: the workers' CPU time does not reach this
  process's children's rusage.)

The machine's load average is stated: on a shared machine wall times are the machine's;
the CPU times say what the cache saves whatever else runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, SPOT_FILES

WALL_CLOCK = ("wall_s", "frames_per_s")
MMDAEMON = [sys.executable, "-m", "mmdaemon"]


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(args: list[str]) -> tuple[float, float, bytes]:
    """Wall and CPU seconds of the command ``args``, and its stdout."""
    cpu, start = _child_cpu(), time.perf_counter()
    done = subprocess.run(args, capture_output=True, check=False, cwd=REPO)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[2:5])}... exited {done.returncode}: "
                           f"{done.stderr.decode()[-2000:]}")
    return wall, _child_cpu() - cpu, done.stdout


def _summary(stdout: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(stdout)
    for key in WALL_CLOCK:
        doc.pop(key, None)
    return doc


def feed_cpu(files: list[Path], repeat: int) -> dict[str, float]:
    """CPU seconds (best of ``repeat``) of the feed alone: parse + decode vs the cache."""
    from mmdaemon.feed.event_cache import EventCache, cache_key, cache_path
    from mmdaemon.feed.recording import read_recording
    from mmdaemon.model import BINANCE_SPOT_BTCUSDT
    from mmdaemon.venues.binance import BinanceCodec

    key = cache_key(BINANCE_SPOT_BTCUSDT, "spot", "receive")
    path = cache_path(files, key)
    parse, cached = [], []
    for _ in range(repeat):
        start = time.process_time()
        codec = BinanceCodec(BINANCE_SPOT_BTCUSDT, "spot")
        for item in read_recording(files):
            if type(item) is tuple:
                codec.decode(*item)
        parse.append(time.process_time() - start)
        start = time.process_time()
        cache = EventCache(path, files, key)  # the checks (crc of every chunk) included
        for _item in cache.items():
            pass
        cache.close()
        cached.append(time.process_time() - start)
    return {"parse_decode_cpu_s": round(min(parse), 3),
            "cache_read_cpu_s": round(min(cached), 3),
            "feed_speedup": round(min(parse) / min(cached), 2)}


def one_replay(files: list[Path], repeat: int) -> dict[str, Any]:
    """The real replay command with and without the cache, alternating."""
    out: dict[str, Any] = {}
    walls: dict[str, list[float]] = {"off": [], "use": []}
    cpus: dict[str, list[float]] = {"off": [], "use": []}
    reference: dict[str, Any] | None = None
    for _ in range(repeat):
        for mode in ("off", "use"):
            wall, cpu, stdout = run([*MMDAEMON, "replay", *map(str, files), "--json",
                                     "--cache", mode])
            walls[mode].append(wall)
            cpus[mode].append(cpu)
            summary = _summary(stdout)
            if reference is None:
                reference = summary
            elif summary != reference:
                raise RuntimeError(f"replay --cache {mode} gave another summary")
    for mode in ("off", "use"):
        out[f"{mode}_wall_median_s"] = round(statistics.median(walls[mode]), 3)
        out[f"{mode}_wall_best_s"] = round(min(walls[mode]), 3)
        out[f"{mode}_cpu_median_s"] = round(statistics.median(cpus[mode]), 3)
        out[f"{mode}_cpu_best_s"] = round(min(cpus[mode]), 3)
    out["cpu_saved_median_s"] = round(out["off_cpu_median_s"] - out["use_cpu_median_s"], 3)
    out["wall_speedup_median"] = round(out["off_wall_median_s"] / out["use_wall_median_s"], 2)
    out["same_summary"] = True
    return out


def run_cpu(files: list[Path], repeat: int) -> dict[str, Any]:
    """CPU seconds (this process, best of ``repeat`` after a warm-up of each) of one sweep
    run (:func:`mmdaemon.sweep.runner.run_task`, what a worker does per run, start-up of
    the interpreter aside) without and with the cache, alternating; the rows checked
    equal. 100 runs' work on 2 idle cores is about 50 times it."""
    from mmdaemon import log
    from mmdaemon.feed.event_cache import ensure
    from mmdaemon.sweep.executor import Recording
    from mmdaemon.sweep.grid import base_table, run_config
    from mmdaemon.sweep.runner import IN_SAMPLE, RunTask, run_task

    log.configure("error", open(os.devnull, "wb"))  # noqa: SIM115 (the process's log)
    base = REPO / "config" / "dryrun.toml"
    config = run_config(base_table(base), {}, base)
    path, how = ensure(config, files)
    if path is None:
        raise RuntimeError(f"no cache: {how}")
    plain = RunTask(0, IN_SAMPLE, (), config, (0, 1))
    cached = dataclasses.replace(plain, event_cache=str(path))
    recordings = [Recording.read(f) for f in files]
    rows = {"off": run_task(plain, recordings), "use": run_task(cached, recordings)}
    if rows["off"] != rows["use"] or rows["off"]["error"]:
        raise RuntimeError("a sweep run gave another row with the cache")
    best = {"off": float("inf"), "use": float("inf")}
    for _ in range(repeat):
        for mode, task in (("off", plain), ("use", cached)):
            start = time.process_time()
            run_task(task, recordings)
            best[mode] = min(best[mode], time.process_time() - start)
    return {"off_cpu_s": round(best["off"], 3), "use_cpu_s": round(best["use"], 3),
            "speedup": round(best["off"] / best["use"], 2),
            "idle_2_cores_100_runs_off_estimate_s": round(50 * best["off"], 1),
            "idle_2_cores_100_runs_use_estimate_s": round(50 * best["use"], 1)}


def grid_file(folder: Path, runs: int) -> Path:
    """config/sweep-example.toml's grid (100 runs), or one of ``runs`` points of it."""
    example = REPO / "config" / "sweep-example.toml"
    if runs == 100:
        return example
    grid = folder / "grid.toml"
    values = ", ".join(f"{0.5 + 0.05 * i:.2f}" for i in range(runs))
    grid.write_text(f'[grid]\n"strategy.spread.base_bps" = [{values}]\n')
    return grid


def sweep(files: list[Path], runs: int, workers: int, folder: Path) -> dict[str, Any]:
    """``mmdaemon sweep`` of ``runs`` runs without and with the cache."""
    grid = grid_file(folder, runs)
    out: dict[str, Any] = {"runs": runs, "workers": workers}
    for mode in ("off", "build"):
        target = folder / f"sweep-{mode}"
        load = os.getloadavg()[0]
        wall, _cpu, stdout = run([*MMDAEMON, "sweep", *map(str, files), "--config",
                                 str(REPO / "config" / "dryrun.toml"), "--grid", str(grid),
                                 "--out", str(target), "--workers", str(workers),
                                 "--cache", mode, "--json"])
        doc = orjson.loads(stdout)
        if doc["runs"] != runs or doc["failed"]:
            raise RuntimeError(f"sweep --cache {mode}: {doc['runs']} runs, "
                               f"{doc['failed']} failed")
        out[f"{mode}_wall_s"] = round(wall, 2)
        out[f"{mode}_runs_per_s"] = round(runs / wall, 2)
        out[f"{mode}_load_avg_1min_before"] = round(load, 2)
    out["same_rows"] = ((folder / "sweep-off" / "runs.csv").read_bytes()
                        == (folder / "sweep-build" / "runs.csv").read_bytes())
    out["wall_speedup"] = round(out["off_wall_s"] / out["build_wall_s"], 2)
    return out


def measure(repeat: int = 5, sweep_runs: int = 100, workers: int = 2) -> dict[str, Any]:
    """Every figure of the module docstring, on copies of the bundled recording."""
    with tempfile.TemporaryDirectory(prefix="mmdaemon-bench-cache-") as tmp:
        folder = Path(tmp)
        files = [Path(shutil.copy(f, folder / f.name)) for f in SPOT_FILES]
        result: dict[str, Any] = {"load_avg_1min_start": round(os.getloadavg()[0], 2)}
        wall, cpu, _ = run([*MMDAEMON, "replay", *map(str, files), "--json",
                            "--cache", "build"])
        cache_file = next(folder.glob("*.mmevents"))
        result["build"] = {
            "replay_with_build_wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "cache_bytes": cache_file.stat().st_size,
            "recording_gzip_bytes": sum(f.stat().st_size for f in files)}
        result["feed"] = feed_cpu(files, repeat)
        result["one_replay"] = one_replay(files, repeat)
        result["sweep_run"] = run_cpu(files, repeat)
        if sweep_runs:
            result["sweep"] = sweep(files, sweep_runs, workers, folder)
    return result


def table(r: dict[str, Any]) -> list[str]:
    """Readable lines for :func:`measure`'s result."""
    b, f, o = r["build"], r["feed"], r["one_replay"]
    lines = [
        f"{'event cache: size / gzip recording':<34}{b['cache_bytes']:>12,} / "
        f"{b['recording_gzip_bytes']:,} bytes (built in a {b['replay_with_build_wall_s']} s "
        f"replay)",
        f"{'  feed CPU: parse+decode / cache':<34}{f['parse_decode_cpu_s']:>12} / "
        f"{f['cache_read_cpu_s']} s ({f['feed_speedup']}x)",
        f"{'  replay CPU median: off / use':<34}{o['off_cpu_median_s']:>12} / "
        f"{o['use_cpu_median_s']} s (wall {o['off_wall_median_s']} / "
        f"{o['use_wall_median_s']} s)",
    ]
    w = r["sweep_run"]
    lines.append(f"{'  one sweep run CPU: off / use':<34}{w['off_cpu_s']:>12} / "
                 f"{w['use_cpu_s']} s ({w['speedup']}x; 100 runs on 2 idle cores about "
                 f"{w['idle_2_cores_100_runs_off_estimate_s']} / "
                 f"{w['idle_2_cores_100_runs_use_estimate_s']} s)")
    s = r.get("sweep")
    if s:
        lines.append(f"{'  sweep ' + str(s['runs']) + ' runs: off / build':<34}"
                     f"{s['off_wall_s']:>12} / {s['build_wall_s']} s wall "
                     f"({s['wall_speedup']}x; {s['workers']} workers, rows the same: "
                     f"{s['same_rows']})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sweep-runs", type=int, default=100,
                        help="runs of the sweep measured (0: none; 100: sweep-example.toml)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    result = measure(args.repeat, args.sweep_runs, args.workers)
    print(orjson.dumps(result).decode())
    print("\n".join(table(result)))


if __name__ == "__main__":
    main()
