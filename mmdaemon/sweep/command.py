"""``mmdaemon sweep``: dry runs of many configurations (a grid or a random search over config
keys, :mod:`mmdaemon.sweep.grid`) in parallel, one row each to ``runs.csv`` and a comparison
page ``sweep.html``; with ``--holdout``, the best runs by the objective re-run on other
recordings and shown beside their in-sample figures.

Exit status: 0 every run gave its figures, 1 some run failed (its row has the ``error``),
2 unusable input (found before any run starts).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import orjson

from mmdaemon.commands.usage import UsageError
from mmdaemon.config import Config, ConfigError
from mmdaemon.sweep.executor import Executor, Recording
from mmdaemon.sweep.grid import Grid, GridError, base_table, cell, describe, load_grid, run_configs
from mmdaemon.sweep.objective import DEFAULT_OBJECTIVE, Objective
from mmdaemon.sweep.runner import HOLDOUT, ID_COLUMNS, IN_SAMPLE, RunTask, run_task

IGNORED = {
    "feed.recordings": "a sweep's recordings are its command line's (RECORDING... and "
                       "--holdout)",
    "feed.speed": "every run replays as fast as it can",
    "state": "every run keeps its journal in a temporary directory",
    "logging": "the runs log at the command line's --log-level",
    "metrics": "no run serves the metrics endpoint",
    "exchange.adapter": "every run trades with the paper exchange",
    "firm": "no run counts in the desk's firm-wide risk",
}
"""Config keys (and tables) whose value a sweep's dry runs do not use, and why: varying one
would give the same row under other names."""

PROGRESS_EVERY_S = 10.0
"""Not on a terminal, the progress line is printed at most this often (seconds)."""


@dataclass(frozen=True, slots=True)
class SweepArgs:
    """The command line of ``mmdaemon sweep``, as given."""

    config: Path
    grid: Path
    recordings: tuple[str, ...]
    holdout: tuple[str, ...] = ()
    holdout_config: Path | None = None
    out: Path = Path("sweep")
    workers: int | None = None
    objective: str = DEFAULT_OBJECTIVE
    top: int = 5
    as_json: bool = False
    cluster: str | None = None
    log_level: str = "error"
    version: str = "unknown"  # mmdaemon --version's text, stated on the page
    requires: tuple[str, ...] = ()  # --require: what a run must meet to count as best
    cache: bool = True  # build the recordings' decoded-event cache before the runs


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything a sweep may run, validated: the grid, the recordings to ship (each once)
    and, for every run of the grid, its in-sample task and its holdout task (run only for
    the best runs; none without ``--holdout``)."""

    grid: Grid
    files: list[Path]
    tasks: list[RunTask]
    holdout_tasks: list[RunTask]


def sweep(args: SweepArgs) -> int:
    """Run the sweep ``args`` describes; the exit status (see the module)."""
    objective = Objective.parse(args.objective, args.requires)
    if args.top < 1:
        raise UsageError(f"mmdaemon sweep: --top: expected at least 1 run, got {args.top}")
    if args.cluster is not None and args.workers is not None:
        raise UsageError("mmdaemon sweep: --workers: a sweep on --cluster runs on every "
                         "worker thread of the cluster; give one or the other")
    plan = _plan(args)
    _check_out(args.out)
    if args.cache:
        plan = _with_event_caches(plan)
    recordings = [Recording.read(path) for path in plan.files]
    start = time.monotonic()
    try:
        rows, holdout_rows, best, workers = _execute(args, plan, recordings, objective)
    except KeyboardInterrupt:
        print("\nmmdaemon sweep: interrupted: the runs under way were stopped, the rest "
              "dropped; nothing written", file=sys.stderr)
        return 130
    except RuntimeError as exc:  # a worker process died (killed, out of memory)
        print(f"mmdaemon sweep: {exc}; nothing written", file=sys.stderr)
        return 1
    wall_s = time.monotonic() - start
    all_rows = rows + holdout_rows
    from mmdaemon.sweep.page import page

    try:
        _write(args.out / "runs.csv", csv_text(all_rows, plan.grid.keys))
        _write(args.out / "sweep.html", page(rows, holdout_rows, best, plan.grid, objective,
                                             _context(args, plan, workers)))
    except OSError as exc:  # the disk filled during the sweep
        print(f"mmdaemon sweep: cannot write the results to {args.out}: {exc}: the "
              f"{len(all_rows):,} rows are lost (nothing half-written)", file=sys.stderr)
        return 1
    failed = [row for row in all_rows if row["error"]]
    _tell(args, plan, rows, holdout_rows, best, objective, failed, wall_s, workers)
    return 1 if failed else 0


Rows = list[dict[str, Any]]


def _execute(args: SweepArgs, plan: Plan, recordings: list[Recording],
             objective: Objective) -> tuple[Rows, Rows, Rows, int]:
    """The in-sample runs, then the best ones' holdout runs, on one executor: the rows,
    the holdout rows, the best in-sample rows and how many workers ran them."""
    with _executor(args) as executor:
        rows = _map(executor, plan.tasks, recordings, "in-sample")
        best = objective.best(rows, args.top)
        good = next((r for r in rows if not r["error"]), None)
        numeric = sorted(k for k, v in (good or {}).items()
                         if isinstance(v, int | float) and not isinstance(v, bool))
        unknown = [c for c in objective.columns if good is not None and c not in numeric]
        if unknown:
            _write(args.out / "runs.csv", csv_text(rows, plan.grid.keys))
            raise UsageError(f"mmdaemon sweep: --objective/--require {', '.join(unknown)}: "
                             f"not a numeric column of the runs (runs.csv written); choose "
                             f"among: {', '.join(numeric)}")
        holdout_rows: Rows = []
        if args.holdout and best:
            held = [plan.holdout_tasks[row["run"]] for row in best]
            holdout_rows = _map(executor, held, recordings, "holdout")
        return rows, holdout_rows, best, executor.workers


def _plan(args: SweepArgs) -> Plan:
    """The grid and every run's configs, checked before anything runs (exit 2 if not)."""
    from mmdaemon.commands.run import reference_recordings

    for path in args.recordings + args.holdout:
        if not Path(path).is_file():
            raise UsageError(f"mmdaemon sweep: no such recording: {path}")
    if args.holdout_config is not None and not args.holdout:
        raise UsageError("mmdaemon sweep: --holdout-config needs --holdout RECORDING...")
    try:
        grid = load_grid(args.grid)
        for key in grid.keys:
            for ignored, why in IGNORED.items():
                if key == ignored or key.startswith(f"{ignored}."):
                    raise GridError(f"{args.grid}: {key}: {why}, not a key to vary")
        configs = [_as_run(c) for c in run_configs(grid, base_table(args.config), args.config)]
        held_path = args.holdout_config or args.config
        holdout_configs = ([_as_run(c) for c in run_configs(grid, base_table(held_path),
                                                              held_path)]
                           if args.holdout else [])
    except (GridError, ConfigError) as exc:
        raise UsageError(f"mmdaemon sweep: {exc}") from None
    files: list[Path] = []
    sources: list[str] = []  # each file as first named (the command line, a config)

    def indexes(paths: Sequence[str]) -> tuple[int, ...]:
        out = []
        for text in paths:
            path = Path(text).resolve()
            if path not in files:
                files.append(path)
                sources.append(text)
            out.append(files.index(path))
        return tuple(out)

    def tasks(configs: list[Config], recordings: Sequence[str], which: str,
              config_path: Path) -> list[RunTask]:
        shipped = indexes(recordings)
        return [RunTask(run, which, tuple(grid.overrides(run).items()), config, shipped,
                        indexes(reference_recordings(config, None, str(config_path))),
                        args.log_level)
                for run, config in enumerate(configs)]

    in_sample = tasks(configs, args.recordings, IN_SAMPLE, args.config)
    holdout = tasks(holdout_configs, args.holdout, HOLDOUT, held_path)
    # every task names every file: the holdout's are only known once they are indexed
    named = tuple(sources)
    return Plan(grid, files, [dataclasses.replace(t, sources=named) for t in in_sample],
                [dataclasses.replace(t, sources=named) for t in holdout])


def _with_event_caches(plan: Plan) -> Plan:
    """The plan's tasks with the decoded-event cache of their recordings, built once here
    (or found valid) for each instrument and clock among them, so that the runs read
    events rather than parse JSON (:mod:`mmdaemon.feed.event_cache`; the rows are the
    same). A cache that cannot be built is said on stderr and its runs parse."""
    from mmdaemon.feed.event_cache import ensure
    from mmdaemon.venue_rules import settle

    found: dict[tuple[Any, ...], str] = {}

    def cached(task: RunTask) -> RunTask:
        paths = [plan.files[i] for i in task.recordings]
        try:
            config = settle(task.config, [str(p) for p in paths]).config
        except ConfigError:
            return task  # the run fails and says why
        inst = config.instrument
        key = (task.recordings, task.reference, inst.venue, inst.symbol, inst.tick_size,
               inst.lot_size, config.feed.clock)
        if key not in found:
            path, how = ensure(config, paths, [plan.files[i] for i in task.reference])
            found[key] = str(path or "")
            print(f"mmdaemon sweep: event cache: {how}" + (f": {path}" if path else ""),
                  file=sys.stderr)
        return dataclasses.replace(task, event_cache=found[key])

    return Plan(plan.grid, plan.files, [cached(t) for t in plan.tasks],
                [cached(t) for t in plan.holdout_tasks])


def _as_run(config: Config) -> Config:
    """``config`` as a sweep's run has it: no metrics endpoint (runs in parallel, or a
    daemon of the desk, would contend for its port; nobody watches a run's)."""
    return dataclasses.replace(config, metrics=dataclasses.replace(config.metrics, port=0))


def _executor(args: SweepArgs) -> Executor:
    if args.cluster is None:
        from mmdaemon.sweep.local import ProcessExecutor

        return ProcessExecutor(args.workers)
    from mmdaemon.sweep.cluster import DaskExecutor  # says itself if distributed is missing

    return DaskExecutor(args.cluster)


def _map(executor: Executor, tasks: list[RunTask], recordings: list[Recording],
         what: str) -> Rows:
    progress = Progress(len(tasks), what, sys.stderr)
    rows = executor.map(run_task, tasks, recordings,
                        on_result=lambda _i, _row: progress.advance())
    progress.close()
    return rows


class Progress:
    """The sweep's progress on ``stream``: on a terminal one line rewritten in place (runs
    done of the total, runs per second, time left); elsewhere (a log, a pipe) a line at
    most every :data:`PROGRESS_EVERY_S` seconds and one at the end."""

    def __init__(self, total: int, what: str, stream: TextIO) -> None:
        self.total, self.what, self.stream = total, what, stream
        self.done = 0
        self.tty = stream.isatty()
        self.start = self.last = time.monotonic()

    def line(self, now: float) -> str:
        """``done/total runs``, the rate since the start and the estimated time left."""
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else math.inf
        eta = f"{left:,.0f} s left" if math.isfinite(left) else "-- s left"
        return (f"sweep {self.what}: {self.done:,}/{self.total:,} runs  {rate:,.2f} runs/s  "
                f"{elapsed:,.0f} s  {eta}")

    def advance(self) -> None:
        """One more run finished."""
        self.done += 1
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r\x1b[K" + self.line(now))
            self.stream.flush()
        elif now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            print(self.line(now), file=self.stream, flush=True)

    def close(self) -> None:
        """End the line (the last state stays on screen)."""
        if self.tty:
            self.stream.write("\n")
        elif self.done:
            print(self.line(time.monotonic()), file=self.stream)
        self.stream.flush()


def columns(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[str]:
    """runs.csv's columns: the identity columns, the parameters (grid order), then every
    figure in the order the rows first name it."""
    seen = dict.fromkeys([*ID_COLUMNS, *keys])
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def csv_text(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> str:
    """The rows as CSV (a figure a row lacks: an empty cell)."""
    out = io.StringIO()
    names = columns(rows, keys)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    for row in rows:
        writer.writerow([cell(row.get(name)) for name in names])
    return out.getvalue()


def _check_out(out: Path) -> None:
    """Refuse an ``--out`` the results could not be written to, before any run: the work
    would be lost at the end. Nothing is created yet (a refused or interrupted sweep
    writes nothing)."""
    existing = out
    while not existing.exists() and existing != existing.parent:  # the rest gets made
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"mmdaemon sweep: --out {out}: {existing} is a file, not a "
                         f"directory: give a directory for runs.csv and sweep.html")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"mmdaemon sweep: --out {out}: cannot write in {existing} "
                         f"(permissions, or a read-only file system): give another --out")


def _write(path: Path, text: str) -> None:
    """``text`` to ``path`` whole or not at all (a full disk leaves no half file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.part")
    try:
        part.write_text(text)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)


def _context(args: SweepArgs, plan: Plan, workers: int) -> dict[str, str]:
    """What the page states about how it was made."""
    where = args.cluster or f"this machine, {workers} worker processes"
    context = {"version": args.version, "base config": str(args.config),
               "grid": f"{args.grid}: {plan.grid.description}",
               "in-sample recordings": ", ".join(args.recordings), "executed on": where}
    if args.holdout:
        context["holdout recordings"] = ", ".join(args.holdout)
        context["holdout config"] = str(args.holdout_config or args.config)
    return context


def _tell(args: SweepArgs, plan: Plan, rows: list[dict[str, Any]],
          holdout_rows: list[dict[str, Any]], best: list[dict[str, Any]],
          objective: Objective, failed: list[dict[str, Any]], wall_s: float,
          workers: int) -> None:
    """The result on stdout: one JSON object, or lines for people."""
    held = {row["run"]: row for row in holdout_rows}
    if args.as_json:
        doc = {"runs": len(rows), "holdout_runs": len(holdout_rows), "failed": len(failed),
               "workers": workers, "wall_s": round(wall_s, 3), "objective": objective.name,
               "maximize": objective.maximize, "requires": [str(r) for r in objective.requires],
               "grid": plan.grid.description,
               "csv": str(args.out / "runs.csv"), "html": str(args.out / "sweep.html"),
               "best": [{"run": row["run"], "params": dict(zip(plan.grid.keys, plan.grid.points[
                   row["run"]], strict=True)), objective.name: objective.value(row),
                   "holdout": objective.value(held[row["run"]]) if row["run"] in held else None}
                   for row in best]}
        sys.stdout.buffer.write(orjson.dumps(doc) + b"\n")
        return
    print(f"sweep: {_count(len(rows), 'run')} ({plan.grid.description}) and "
          f"{_count(len(holdout_rows), 'holdout run')} on {_count(workers, 'worker')} in "
          f"{wall_s:,.1f} s "
          f"({len(rows + holdout_rows) / wall_s if wall_s else 0:,.2f} runs/s)")
    print(f"best by {objective}:" + ("" if best else " none (no run gave the figure"
                                     + (" and met the requirements)" if objective.requires
                                        else ")")))
    for row in best:
        out = held.get(row["run"])
        outside = "" if out is None else (
            f"  holdout {_figure(objective.value(out))}" if not out["error"]
            else "  holdout failed")
        print(f"  run {row['run']:>4}  {objective.name} {_figure(objective.value(row))}"
              f"{outside}  {describe(plan.grid.overrides(row['run']))}")
    for row in failed[:5]:
        print(f"FAILED: {row['set']} run {row['run']}: {row['error']}")
    if failed:
        print(f"{_count(len(failed), 'run')} failed (their rows in runs.csv have the error)")
    print(f"rows: {args.out / 'runs.csv'}\npage: {args.out / 'sweep.html'}")


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.6g}"
