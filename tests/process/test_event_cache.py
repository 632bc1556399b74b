"""The decoded-event cache (mmdaemon/feed/event_cache.py) through the real command:
``mmdaemon replay --json`` gives the same summary with the cache as without it, on the
real spot recordings (both clocks), the real USD-M recording (from ../shared, where it
lives) and another symbol made of them; a stale, a damaged and a cut-short cache are found
and not used; a reference feed replays without it; a sweep's rows are the same with it."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import REPO, SPOT_FILES
from tests.helpers import DRYRUN, gz_lines, rewrite, write_config, write_gz

MMDAEMON = [sys.executable, "-m", "mmdaemon"]
WALL_CLOCK = ("wall_s", "frames_per_s")  # measured on the wall clock: differ run to run


def replay(args: list[str], cache: str, env: dict[str, str] | None = None
           ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``mmdaemon replay ARGS --json --cache CACHE``: the summary without its wall-clock
    figures, and the log's event_cache_* lines."""
    done = subprocess.run([*MMDAEMON, "replay", *args, "--json", "--cache", cache],
                          capture_output=True, timeout=300, cwd=REPO,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    summary = orjson.loads(done.stdout)
    for key in WALL_CLOCK:
        del summary[key]
    events = [orjson.loads(line) for line in done.stderr.splitlines()
              if line.startswith(b"{") and b'"event":"event_cache_' in line]
    return summary, events


def names(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in events]


def copies(tmp_path: Path, files: list[Path]) -> list[str]:
    """The recordings copied where a cache can be written beside them."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    return [str(shutil.copy(f, tmp_path / f.name)) for f in files]


def same_with_and_without(args: list[str]) -> dict[str, Any]:
    """Parsed, built and read back: three equal summaries; the parsed one."""
    parsed, none = replay(args, "off")
    assert none == []
    built, events = replay(args, "build")
    assert names(events) == ["event_cache_unused", "event_cache_built", "event_cache_used"]
    assert "no cache at" in events[0]["reason"]
    cached, events = replay(args, "use")
    assert names(events) == ["event_cache_used"]
    assert events[0]["items"] == parsed["frames"] + parsed["malformed"]
    assert built == parsed
    assert cached == parsed
    return parsed


def test_spot_replay_from_the_cache_is_the_parsed_replay_on_both_clocks(
        tmp_path: Path) -> None:
    files = copies(tmp_path, SPOT_FILES)
    parsed = same_with_and_without(files)
    assert parsed["frames"] == 99_574 and parsed["fills"] > 0  # a run that traded
    exchange = same_with_and_without([*files, "--clock", "exchange"])
    assert exchange["clock"] == "exchange"
    # one cache per clock, beside the first recording, neither replacing the other
    assert len(list(tmp_path.glob("*.mmevents"))) == 2


def test_usdm_replay_from_the_cache_is_the_parsed_replay(
        tmp_path: Path, usdm_file: Path) -> None:
    # ../shared is read-only: the cache goes to the user's cache directory
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    args = [str(usdm_file), "--config", str(REPO / "config" / "dryrun-usdm.toml")]
    parsed, _ = replay(args, "off", env)
    built, events = replay(args, "build", env)
    assert names(events)[-2:] == ["event_cache_built", "event_cache_used"]
    cached, again = replay(args, "use", env)
    assert built == cached == parsed and parsed["frames"] == 93_954
    assert names(again) == ["event_cache_used"]
    assert again[0]["path"].startswith(str(tmp_path / "xdg" / "mmdaemon" / "events"))


def test_another_symbol_from_the_cache_is_the_parsed_replay(tmp_path: Path) -> None:
    eth = write_gz(tmp_path / "ethusdt.gz", rewrite(gz_lines(SPOT_FILES[0])[:20_000],
                                                    "ETHUSDT", id_shift=7))
    config = write_config(tmp_path, {"instrument": {
        "symbol": "ETHUSDT", "tick_size": "0.0004", "lot_size": "0.00001",
        "size_step_lots": 1000, "min_size_lots": 1000}})
    parsed = same_with_and_without([str(eth), "--config", str(config)])
    assert parsed["quotes"] > 0


def test_a_changed_recording_makes_the_cache_stale(tmp_path: Path) -> None:
    lines = gz_lines(SPOT_FILES[0])[:12_000]
    rec = write_gz(tmp_path / "short.gz", lines)
    replay([str(rec)], "build")
    write_gz(rec, lines[:10_000])  # the recording changed under its cache
    parsed, _ = replay([str(rec)], "off")
    stale, events = replay([str(rec)], "use")
    assert names(events) == ["event_cache_unused"]
    assert "is not the recording it was built from" in events[0]["reason"]
    assert stale == parsed
    rebuilt, events = replay([str(rec)], "build")
    assert names(events) == ["event_cache_unused", "event_cache_built", "event_cache_used"]
    assert rebuilt == parsed


def test_a_cache_of_another_grid_is_stale(tmp_path: Path) -> None:
    rec = copies(tmp_path, SPOT_FILES[:1])
    replay(rec, "build")
    fine_grid = next(tmp_path.glob("*.mmevents"))
    finer = write_config(tmp_path, {"instrument": {"tick_size": "0.001"}})
    parsed, events = replay([*rec, "--config", str(finer)], "build")
    finer_cache = Path(events[-1]["path"])
    assert finer_cache != fine_grid and fine_grid.exists()  # each grid its own file
    shutil.copy(fine_grid, finer_cache)  # the other grid's integers under this one's name
    summary, events = replay([*rec, "--config", str(finer)], "use")
    assert names(events) == ["event_cache_unused"]
    assert "built for tick_size '0.01', not '0.001'" in events[0]["reason"]
    assert summary == parsed


def test_a_damaged_or_cut_short_cache_is_not_trusted(tmp_path: Path) -> None:
    rec = copies(tmp_path, SPOT_FILES[:1])
    parsed, _ = replay(rec, "build")
    cache = next(tmp_path.glob("*.mmevents"))
    whole = cache.read_bytes()
    damaged = bytearray(whole)
    damaged[len(whole) // 2] ^= 0x01  # one bit inside a chunk of integers
    cache.write_bytes(bytes(damaged))
    summary, events = replay(rec, "use")
    assert names(events) == ["event_cache_corrupt"]
    assert "damaged (crc32)" in events[0]["reason"] and events[0]["level"] == "warning"
    assert summary == parsed
    cache.write_bytes(whole[:len(whole) * 2 // 3])
    summary, events = replay(rec, "use")
    assert names(events) == ["event_cache_corrupt"] and "cut short" in events[0]["reason"]
    assert summary == parsed
    cache.write_bytes(b"")
    summary, events = replay(rec, "use")
    assert names(events) == ["event_cache_corrupt"] and summary == parsed


def test_a_reference_feed_replays_without_the_cache(tmp_path: Path, usdm_file: Path) -> None:
    rec = copies(tmp_path, SPOT_FILES[:1])
    config = write_config(tmp_path, {"reference": {
        "venue": "binance-usdm", "symbol": "BTCUSDT", "tick_size": "0.1",
        "lot_size": "0.001", "recordings": [str(usdm_file)]}})
    summary, events = replay([*rec, "--config", str(config)], "build")
    assert names(events) == ["event_cache_unused"]
    assert "reference feed" in events[0]["reason"]
    assert summary["reference"]["frames"] == 93_954
    assert not list(tmp_path.glob("*.mmevents"))


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_a_sweep_builds_the_cache_once_and_its_rows_are_the_same(tmp_path: Path) -> None:
    rec = copies(tmp_path / "rec", SPOT_FILES[:1])
    grid = tmp_path / "grid.toml"
    grid.write_text('[grid]\n"strategy.spread.base_bps" = [0.5, 2.0]\n')
    out = {}
    for cache in ("off", "build"):
        done = subprocess.run([*MMDAEMON, "--log-level", "info", "sweep", *rec, "--config",
                               str(DRYRUN), "--grid", str(grid), "--out",
                               str(tmp_path / cache), "--workers", "2", "--cache", cache,
                               "--json"], capture_output=True, timeout=600, cwd=REPO)
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        out[cache] = done.stderr
    assert b"event cache: built" in out["build"] and b"event cache" not in out["off"]
    assert out["build"].count(b'"event":"event_cache_used"') == 2  # each run read it
    assert rows(tmp_path / "off" / "runs.csv") == rows(tmp_path / "build" / "runs.csv")
