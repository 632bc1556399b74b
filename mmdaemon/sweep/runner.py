"""One run of a sweep, wherever it executes: a dry run of one configuration on the shipped
recordings (:func:`mmdaemon.commands.run.dry_run`, the replay command's own path) turned
into one flat **row** of the parameters and every figure of its summary and metrics.

Rows are deterministic: the same task on the same recordings gives the same row, so no
wall-clock figure is kept (:data:`WALL_CLOCK`). A run that fails gives a row too, with
its ``error``, and the sweep goes on.
"""

from __future__ import annotations

import gzip
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmdaemon.config import Config
from mmdaemon.feed.recording import GZIP_MAGIC
from mmdaemon.provenance import IN_SUMMARY
from mmdaemon.sweep.executor import Recording, materialize

IN_SAMPLE, HOLDOUT = "in-sample", "holdout"
"""The ``set`` column: the recordings the configurations were chosen on, or the others."""

WALL_CLOCK = frozenset({"wall_s", "frames_per_s"})
"""Summary fields measured on the wall clock: they differ run to run, so rows leave them
out (the bench measures speed)."""

ID_COLUMNS = ("run", "set", "error")
"""The columns every row has before its parameters: the run's number in its set (the
grid's order, from 0), its set and why it failed ("" when it did not)."""


@dataclass(frozen=True, slots=True)
class RunTask:
    """One dry run to execute: run ``run`` of set ``set`` with the parameters ``params``
    ((dotted key, value) pairs) and the configuration they give, on the shipped recordings
    at the indexes ``recordings`` (the reference feed's at ``reference``); the worker
    logs at ``log_level`` (the runs' logs go to its stderr). ``sources`` names every
    shipped recording as the command line did (by index): a row says those, never the
    worker's temporary copies, whose names change from run to run. ``event_cache``: the
    recordings' decoded-event cache the sweep built before its runs ("" none: the run
    parses them), checked against the worker's copies by their content."""

    run: int
    set: str
    params: tuple[tuple[str, Any], ...]
    config: Config
    recordings: tuple[int, ...]
    reference: tuple[int, ...] = ()
    log_level: str = "error"
    sources: tuple[str, ...] = ()
    event_cache: str = ""


# per worker process: the log level it was configured at (None: not yet)
_LOGGING: list[str] = []


def run_task(task: RunTask, recordings: Sequence[Recording]) -> dict[str, Any]:
    """Execute ``task`` against ``recordings`` (the sweep's shipped files, in its order)
    and return its row: ``run``, ``set``, ``error``, the parameters by key, then every
    figure (see :func:`flatten`). Never raises for a run that fails: its row says why. A
    run that decided no quote at all (the book never synced: a recording of another
    instrument, a tick size that does not fit) evaluated nothing: its row has its figures
    and an ``error`` too, so that its zeros rank as no configuration's result."""
    from mmdaemon import log
    from mmdaemon.commands.run import DryRunFailed, dry_run
    from mmdaemon.commands.usage import UsageError

    if [task.log_level] != _LOGGING:  # once per worker process, not per run
        log.configure(task.log_level, sys.stderr.buffer, log_format="json")
        _LOGGING[:] = [task.log_level]
    row: dict[str, Any] = {"run": task.run, "set": task.set, "error": "", **dict(task.params)}
    shipped = materialize(recordings)
    paths = [unpacked(path) for path in shipped]
    try:
        summary = dry_run(task.config, [str(paths[i]) for i in task.recordings],
                          reference=[str(paths[i]) for i in task.reference] or None,
                          log_level=task.log_level, whole=True,
                          cache="use" if task.event_cache else "off",
                          cache_path=Path(task.event_cache) if task.event_cache else None)
    except DryRunFailed as exc:
        row["error"] = f"exit {exc.code}: {exc.why}"
    except UsageError as exc:
        row["error"] = str(exc)
    except Exception as exc:  # a run that breaks the code: its row says how, the rest go on
        row["error"] = f"{type(exc).__name__}: {exc}"
    else:
        row.update(flatten(summary))
        if summary["quotes"] == 0:
            row["error"] = summary["warnings"][0]  # "no quote was decided: ..."
    sources = task.sources or tuple(map(str, shipped))  # none given: the copies' own names
    renames = [(str(copy), source) for local, source in zip(shipped, sources, strict=True)
               for copy in dict.fromkeys([unpacked(local), local])]
    return {key: _renamed(value, renames) for key, value in row.items()}


def _renamed(value: Any, renames: Sequence[tuple[str, str]]) -> Any:
    """``value`` with every worker-side path of a recording replaced by the path the
    command line gave (text only)."""
    if isinstance(value, str):
        for copy, source in renames:
            value = value.replace(copy, source)
    return value


# per worker process: a shipped recording -> the file its runs read
_UNPACKED: dict[Path, Path] = {}


def unpacked(path: Path) -> Path:
    """The recording at ``path`` as its runs read it: a gzip file decompressed once per
    process (into ``plain/`` beside it, the file name kept), so that every run does not
    pay for the decompression again (a tenth of a run on the bundled recording). A gzip
    file that does not decompress whole (cut short, corrupt) is read as it is, so its
    runs meet the damage the way any replay does."""
    done = _UNPACKED.get(path)
    if done is not None and done.exists():
        return done
    data = path.read_bytes()
    out = path
    if data[:2] == GZIP_MAGIC:
        try:
            plain = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):  # damaged: the codec reports it per run
            plain = None
        if plain is not None:
            out = path.parent / "plain" / path.name
            out.parent.mkdir(exist_ok=True)
            out.write_bytes(plain)
    _UNPACKED[path] = out
    return out


def flatten(summary: dict[str, Any]) -> dict[str, Any]:
    """A dry run's summary as one level of named figures: its metrics (the journal's,
    :func:`mmdaemon.analytics.compute_metrics`) merged in at the top (where both name a
    figure they agree: the metrics' is kept), tables as ``table.key``, lists of tables by
    their first field (``markouts.1s.markout_bps``, ``by_day.2024-08-08.pnl``), warnings
    joined by "; ", wall-clock fields and the provenance (version, config, feed: the same
    for every run, on the page once, and naming each worker's own copies of the
    recordings) left out."""
    merged = {k: v for k, v in summary.items()
              if k != "metrics" and k not in WALL_CLOCK and k not in IN_SUMMARY}
    merged.update(summary.get("metrics") or {})
    if isinstance(merged.get("warnings"), list):
        merged["warnings"] = "; ".join(merged["warnings"])
    out: dict[str, Any] = {}
    _into(out, merged, "")
    return out


def _into(out: dict[str, Any], value: Any, key: str) -> None:
    if isinstance(value, dict):
        for name, item in value.items():
            _into(out, item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, list) and value and all(isinstance(v, dict) and v for v in value):
        for item in value:
            first, ident = next(iter(item.items()))
            label = f"{ident:g}s" if first == "horizon_s" else str(ident)
            _into(out, {k: v for k, v in item.items() if k != first}, f"{key}.{label}")
    else:
        out[key] = value
