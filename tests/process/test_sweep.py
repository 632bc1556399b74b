"""``mmdaemon sweep`` end to end: the real command in a subprocess, worker processes, the
bundled recording (and the shared USD-M one as a holdout on another instrument)."""

from __future__ import annotations

import csv
import gzip
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import REPO, SPOT_FILES
from tests.helpers import DRYRUN, wait_for
from tests.process.test_disk_full import fill, tmpfs

GRID = """[grid]
"strategy.spread.base_bps" = [0.5, 2.0]
"strategy.skew.linear_coef_bps" = [0.5, 4.0]
"""


# the bundled recordings are swept as they are: no decoded-event cache written beside them
# (tests/process/test_event_cache.py sweeps copies with the cache)
NO_CACHE = ("--cache", "off")


def sweep(tmp_path: Path, *args: str, grid: str = GRID, files: list[Path] = SPOT_FILES,
          out: str = "out") -> tuple[subprocess.CompletedProcess[str], Path]:
    """``mmdaemon sweep --json`` of ``grid`` over ``files``; the process and its --out."""
    grid_file = tmp_path / "grid.toml"
    grid_file.write_text(grid)
    proc = subprocess.run(
        [sys.executable, "-m", "mmdaemon", "sweep", "--config", str(DRYRUN), "--grid",
         str(grid_file), *map(str, files), "--out", str(tmp_path / out), "--json",
         *NO_CACHE, *args],
        capture_output=True, text=True, timeout=300)
    return proc, tmp_path / out


def rows(out: Path) -> list[dict[str, str]]:
    with open(out / "runs.csv", newline="") as file:
        return list(csv.DictReader(file))


def test_a_sweep_gives_one_row_per_run_with_its_parameters_and_every_figure(
        tmp_path: Path) -> None:
    # the second day alone has no depth snapshot (its book never syncs): the holdout is
    # both days, the in-sample the first
    proc, out = sweep(tmp_path, "--holdout", *map(str, SPOT_FILES), "--top", "2",
                      files=SPOT_FILES[:1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = orjson.loads(proc.stdout)  # stdout: exactly one JSON object
    assert doc["runs"] == 4 and doc["holdout_runs"] == 2 and doc["failed"] == 0
    table = rows(out)
    in_sample = [r for r in table if r["set"] == "in-sample"]
    assert [(r["run"], r["strategy.spread.base_bps"], r["strategy.skew.linear_coef_bps"])
            for r in in_sample] == [("0", "0.5", "0.5"), ("1", "0.5", "4.0"),
                                    ("2", "2.0", "0.5"), ("3", "2.0", "4.0")]
    assert all(r["error"] == "" and r["frames"] == "41249" for r in in_sample)
    # the runs differ: the parameters reached the quoting
    assert len({r["total_pnl"] for r in in_sample}) == 4
    # every figure of the summary and the metrics, markouts per horizon; no wall clock
    for name in ("fills", "max_drawdown", "avg_abs_inventory", "quote_uptime",
                 "markouts.1s.markout_bps", "markouts.60s.markout_bps",
                 "unsendable.order_rate"):
        assert name in table[0], name
    assert "wall_s" not in table[0] and "frames_per_s" not in table[0]
    # nor what produced the run (the page says it once): no column names a worker's file
    assert not [c for c in table[0] if c.split(".")[0] in ("version", "config", "feed")
                or "/" in c]
    # the best two by total_pnl re-run on the holdout recording, the same run numbers
    best = sorted(in_sample, key=lambda r: -float(r["total_pnl"]))[:2]
    assert [b["run"] for b in doc["best"]] == [int(r["run"]) for r in best]
    held = [r for r in table if r["set"] == "holdout"]
    assert [r["run"] for r in held] == [r["run"] for r in best]
    assert all(r["error"] == "" and r["frames"] == "99574" and int(r["fills"]) > 0
               for r in held)
    page = (out / "sweep.html").read_text()
    runs_table = re.search(r'<table id="runs".*?</table>', page, re.S)
    assert runs_table is not None and runs_table.group(0).count("<tr>") == 1 + 4 + 2
    best_table = re.search(r'<table id="best".*?</table>', page, re.S)
    assert best_table is not None and best_table.group(0).count("<tr>") == 1 + 2
    for div in ("pareto-inventory", "pareto-drawdown", "markouts"):
        assert f'id="{div}"' in page, div
    assert "objective: total_pnl (largest best)" in page and "mmdaemon " in page


def test_the_same_inputs_give_byte_identical_rows_on_one_worker_or_two(
        tmp_path: Path) -> None:
    results = []
    for name, workers in (("a", "2"), ("b", "2"), ("c", "1")):
        proc, out = sweep(tmp_path, "--workers", workers, out=name)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results.append((out / "runs.csv").read_bytes())
    assert results[0] == results[1] == results[2]
    assert results[0].count(b"\n") == 5


def test_a_run_that_fails_gives_a_row_with_its_error_and_the_sweep_goes_on(
        tmp_path: Path) -> None:
    # valid for the config (a path), unreadable when the run starts
    grid = ('[grid]\n"exchange.latency_file" = ["", "' + str(tmp_path / "absent.json")
            + '"]\n')
    proc, out = sweep(tmp_path, grid=grid)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert orjson.loads(proc.stdout)["failed"] == 1
    ok, failed = rows(out)
    assert ok["error"] == "" and ok["fills"] != ""
    assert failed["error"].startswith("exit 2: ") and "absent.json" in failed["error"]
    assert failed["fills"] == ""  # no figure made up for it
    assert "in-sample run 1 failed: exit 2: " in (out / "sweep.html").read_text()


@pytest.mark.parametrize(("grid", "says"), [
    ('[grid]\n"strategy.spread.base_bsp" = [1.0, 2.0]\n',
     "run 0 (strategy.spread.base_bsp = 1.0) on {config}: strategy.spread.base_bsp: "
     "unknown key"),
    ('[grid]\n"strategy.spread.base_bps" = [1.0, -2.0]\n',
     "run 1 (strategy.spread.base_bps = -2.0) on {config}: strategy.spread: "
     "SpreadParams.base_bps: expected a finite number >= 0"),
    ("[grid]\n", "grid.toml: [grid] is empty"),
    ('[grid]\n"feed.recordings" = [["a.gz"]]\n',
     "grid.toml: feed.recordings: a sweep's recordings are its command line's"),
    # keys a dry run does not use: varying one gives the same row under other names
    ('[grid]\n"feed.speed" = [1, "max"]\n',
     "grid.toml: feed.speed: every run replays as fast as it can, not a key to vary"),
    ('[grid]\n"metrics.port" = [9100, 9101]\n',
     "grid.toml: metrics.port: no run serves the metrics endpoint, not a key to vary"),
    ('[grid]\n"exchange.adapter" = ["paper", "binance"]\n',
     "grid.toml: exchange.adapter: every run trades with the paper exchange"),
    # a key inside a table also varied: one would silently replace the other
    ('[grid]\n"strategy.spread.base_bps" = [0.5, 2.0]\n'
     '"strategy.spread" = [{ vol_mult = 2.0 }]\n',
     "grid.toml: [grid] strategy.spread.base_bps: inside strategy.spread, also varied"),
])
def test_a_bad_grid_is_refused_before_any_run(tmp_path: Path, grid: str, says: str) -> None:
    proc, out = sweep(tmp_path, grid=grid)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("mmdaemon sweep: ")
    assert says.format(config=DRYRUN) in proc.stderr
    assert not out.exists()  # nothing ran, nothing written


def test_an_objective_that_is_no_column_is_refused_listing_the_columns(
        tmp_path: Path) -> None:
    proc, out = sweep(tmp_path, "--objective", "pnl", grid=GRID.replace(", 2.0]", "]")
                      .replace(", 4.0]", "]"))
    assert proc.returncode == 2
    assert "--objective/--require pnl: not a numeric column of the runs" in proc.stderr
    assert "total_pnl" in proc.stderr
    assert len(rows(out)) == 1  # the work is kept


def test_runs_that_miss_a_requirement_are_never_the_best_however_good_their_objective(
        tmp_path: Path) -> None:
    proc, out = sweep(tmp_path, "--require", "fills>=150", "--top", "4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = orjson.loads(proc.stdout)
    assert doc["requires"] == ["fills >= 150"]
    table = rows(out)
    eligible = sorted((r for r in table if int(r["fills"]) >= 150),
                      key=lambda r: -float(r["total_pnl"]))
    assert [b["run"] for b in doc["best"]] == [int(r["run"]) for r in eligible]
    # not vacuous: a run left out had a better objective than every eligible one
    left_out = [r for r in table if int(r["fills"]) < 150]
    assert left_out and max(float(r["total_pnl"]) for r in left_out) > float(
        eligible[0]["total_pnl"])
    assert "among runs with fills &gt;= 150" in (out / "sweep.html").read_text()


def test_the_holdout_can_be_another_instrument_with_the_same_keys_set(
        tmp_path: Path, usdm_file: Path) -> None:
    proc, out = sweep(tmp_path, "--holdout", str(usdm_file), "--holdout-config",
                      str(REPO / "config" / "dryrun-usdm.toml"), "--top", "1",
                      "--objective", "max_drawdown:min")
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc: dict[str, Any] = orjson.loads(proc.stdout)
    (held,) = [r for r in rows(out) if r["set"] == "holdout"]
    (best,) = doc["best"]
    assert int(held["run"]) == best["run"] and held["error"] == ""
    # the futures recording (fewer frames than the spot one), traded
    assert held["frames"] != "99574" and int(held["fills"]) > 0
    assert held["strategy.spread.base_bps"] == str(best["params"]["strategy.spread.base_bps"])
    assert float(held["max_drawdown"]) == best["holdout"]


def test_a_config_with_a_reference_feed_ships_its_recordings_to_the_runs(
        tmp_path: Path, usdm_file: Path) -> None:
    grid_file = tmp_path / "grid.toml"
    grid_file.write_text('[grid]\n"reference.stale_ms" = [20, 5000]\n')
    proc = subprocess.run(
        [sys.executable, "-m", "mmdaemon", "sweep", "--config",
         str(REPO / "config" / "dryrun-reference.toml"), "--grid", str(grid_file),
         str(SPOT_FILES[0]), "--out", str(tmp_path / "out"), "--json", *NO_CACHE],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fast, slow = rows(tmp_path / "out")
    # the reference venue's frames reached both runs; its staleness bound changed them (a
    # 20 ms bound finds the reference stale more often than a 5 s one)
    assert fast["reference.frames"] == slow["reference.frames"] != "0"
    assert float(fast["reference.unusable_s"]) > float(slow["reference.unusable_s"])
    assert int(fast["reference.lead_lag_quotes"]) > 0


def test_a_failed_runs_error_names_the_recording_as_given_and_repeats_byte_for_byte(
        tmp_path: Path) -> None:
    """The runs read the workers' temporary copies of the recordings; a row names the file
    the command line gave (it named a temporary directory of another name every time)."""
    garbage = tmp_path / "garbage.gz"
    garbage.write_bytes(gzip.compress(b"not a recording\n" * 20))
    tables = []
    for out in ("a", "b"):
        proc, done = sweep(tmp_path, grid=GRID.replace(", 2.0]", "]"), files=[garbage], out=out)
        assert proc.returncode == 1, proc.stderr[-3000:]
        tables.append((done / "runs.csv").read_bytes())
        errors = [row["error"] for row in rows(done)]
        assert all(f"mmdaemon replay: {garbage}: no frame of BTCUSDT decoded" in e
                   for e in errors), errors
    assert tables[0] == tables[1]
    assert b"mmdaemon-sweep-" not in tables[0]


def test_a_run_stopped_by_a_signal_gives_a_failed_row_not_the_figures_of_part_of_it(
        tmp_path: Path) -> None:
    """SIGTERM to a worker process in the middle of a run (an operator, a supervisor): its
    dry run stops gracefully, and its figures cover part of the recordings; they are no
    configuration's result (they used to be its row, exit 0)."""
    grid_file = tmp_path / "grid.toml"
    grid_file.write_text('[grid]\n"strategy.spread.base_bps" = [1.0, 2.0]\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmdaemon", "--log-level", "info", "sweep", "--config",
         str(DRYRUN), "--grid", str(grid_file), *map(str, SPOT_FILES), "--workers", "1",
         "--out", str(tmp_path / "out"), "--json", *NO_CACHE],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    stderr = proc.stderr
    try:
        # the first run's service is up, its signal handlers installed
        wait_for(lambda: b'"service_started"' in stderr.readline(), timeout=60,
                 what="the first run started")
        (worker,) = [w for child in children(proc.pid) for w in children(child)]
        os.kill(worker, signal.SIGTERM)  # the fork server's child, running the run
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 1
    assert orjson.loads(out)["failed"] == 1
    stopped, whole = rows(tmp_path / "out")
    assert stopped["error"].startswith("exit 1: stopped (SIGTERM or SIGINT to its process) "
                                       "after "), stopped["error"]
    assert stopped["total_pnl"] == ""
    assert whole["error"] == "" and whole["frames"] == "99574"


def test_a_base_config_with_a_metrics_port_sweeps_without_serving_it(tmp_path: Path) -> None:
    """A desk's config names its metrics port: runs in parallel (or beside the daemon that
    has the port) must not contend for it; they used to fail "address already in use"."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        config = tmp_path / "with-metrics.toml"
        config.write_text(DRYRUN.read_text().replace("../data/", f"{REPO}/data/")
                          + f"\n[metrics]\nport = {taken.getsockname()[1]}\n")
        grid_file = tmp_path / "grid.toml"
        grid_file.write_text(GRID)
        proc = subprocess.run(
            [sys.executable, "-m", "mmdaemon", "sweep", "--config", str(config), "--grid",
             str(grid_file), str(SPOT_FILES[0]), "--out", str(tmp_path / "out"), "--json",
             *NO_CACHE],
            capture_output=True, text=True, timeout=300)
    finally:
        taken.close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [row["error"] for row in rows(tmp_path / "out")] == [""] * 4


def test_a_run_that_decided_no_quote_fails_and_is_never_the_best(tmp_path: Path) -> None:
    """A tick size the recording's prices do not fit: the book never syncs and the run
    quotes nothing, so its PnL is 0; that beat every configuration that traded (and lost
    a little) as the "best", on a run that evaluated nothing."""
    proc, out = sweep(tmp_path, "--top", "2",
                      grid='[grid]\n"instrument.tick_size" = ["0.01", "0.1"]\n',
                      files=SPOT_FILES[:1])
    assert proc.returncode == 1, proc.stderr[-3000:]
    doc = orjson.loads(proc.stdout)
    assert doc["failed"] == 1
    traded, unsynced = rows(out)
    assert traded["error"] == "" and float(traded["total_pnl"]) < 0  # the premise
    assert unsynced["error"].startswith("no quote was decided: the book never synced")
    assert unsynced["quotes"] == "0" and unsynced["frames"] != ""  # its figures kept
    assert [best["run"] for best in doc["best"]] == [0]


def test_an_out_that_cannot_be_a_directory_is_refused_before_any_run(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    proc, out = sweep(tmp_path, out="file/sweep")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"mmdaemon sweep: --out {out}: {tmp_path / 'file'} is a "
                                  f"file, not a directory"), proc.stderr[-3000:]
    assert "sweep in-sample" not in proc.stderr  # no run started


def children(pid: int) -> list[int]:
    """The process ids of ``pid``'s children (Linux /proc)."""
    return [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()]


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, filled: a file system with no space left."""
    with tmpfs(tmp_path / "full", "1m") as mnt:
        fill(mnt)
        yield mnt


def test_results_the_disk_cannot_hold_are_exit_1_with_no_half_written_file(
        full_disk: Path) -> None:
    proc, out = sweep(full_disk.parent, files=SPOT_FILES[:1], out=str(full_disk / "out"))
    assert proc.returncode == 1
    assert "mmdaemon sweep: cannot write the results to " in proc.stderr
    assert "No space left on device" in proc.stderr and "Traceback" not in proc.stderr
    assert not (out / "runs.csv").exists() and not (out / "sweep.html").exists()


def test_workers_and_a_cluster_together_are_refused(tmp_path: Path) -> None:
    proc, out = sweep(tmp_path, "--cluster", "tcp://127.0.0.1:9", "--workers", "2")
    assert proc.returncode == 2
    assert proc.stderr.startswith("mmdaemon sweep: --workers: a sweep on --cluster runs on "
                                  "every worker thread of the cluster")
    assert not out.exists()
