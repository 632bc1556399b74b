"""Stoikov's micro-price end to end: ``mmdaemon fit-microprice`` on the bundled recording,
the mode ``stoikov`` in a replay, the table file refused when it is not one for the
config's instrument, and the old mode name ``microprice``."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mmdaemon.config import ConfigError
from mmdaemon.config_file import load_config
from tests.conftest import REPO, SPOT_FILES
from tests.daemon_process import Daemon, reload_fails_and_a_kill_still_works
from tests.helpers import write_config

SHIPPED_TABLE = REPO / "config" / "stoikov-btcusdt-spot.json"
KEY = "strategy.fair_value.stoikov_table"


def mmdaemon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmdaemon", *args], capture_output=True,
                          text=True, timeout=300)


def test_fit_microprice_writes_the_shipped_table_and_prints_its_counts(tmp_path: Path) -> None:
    out = tmp_path / "table.json"
    proc = mmdaemon("fit-microprice", *map(str, SPOT_FILES), "--config",
                    str(REPO / "config" / "dryrun.toml"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    # the shipped table is what the command makes of the bundled recording, byte for byte
    assert out.read_bytes() == SHIPPED_TABLE.read_bytes()
    table = json.loads(out.read_text())
    assert table["samples"][0] == [597, 961, 876, 898, 595]
    lines = proc.stdout.splitlines()
    assert "  spread 1         597       961       876       898       595" in lines
    assert any(line.startswith("  spread 1     -0.4487   -0.2722") for line in lines)
    assert "converged after" in proc.stdout and "larger mid moves dropped" in proc.stdout
    # spread 2 is rare on a one-tick book: its middle buckets are noted
    assert ("note: spread 2 bucket I1: 16 samples (< 100): its g* rests on few mid changes"
            in lines)


@pytest.mark.parametrize(("args", "message"), [
    (["--buckets", "4"], "buckets: expected an odd integer from 1 to 21"),
    (["--spreads", "0"], "spreads: expected an integer from 1 to 10"),
    (["--max-move-ticks", "0"], "max_move_ticks: expected an integer >= 1"),
])
def test_fit_microprice_refuses_a_bad_grid(tmp_path: Path, args: list[str],
                                           message: str) -> None:
    out = tmp_path / "t.json"
    proc = mmdaemon("fit-microprice", str(SPOT_FILES[0]), "--config",
                    str(REPO / "config" / "dryrun.toml"), "--out", str(out), *args)
    assert proc.returncode == 2 and message in proc.stderr and not out.exists()


def test_fit_microprice_refuses_input_it_cannot_fit(tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    lobster = mmdaemon("fit-microprice", str(SPOT_FILES[0]), "--config",
                       str(REPO / "config" / "lobster-amzn.toml"), "--out", str(out))
    assert lobster.returncode == 2 and "instrument.venue: expected binance-spot" in (
        lobster.stderr)
    missing = mmdaemon("fit-microprice", str(tmp_path / "nope.gz"), "--config",
                       str(REPO / "config" / "dryrun.toml"), "--out", str(out))
    assert missing.returncode == 2 and "no such recording" in missing.stderr
    assert not out.exists()


def samples(state: Path) -> dict[int, tuple[int, int, float]]:
    """ts_ns -> (best bid, best ask, fair) of the journal's report samples with a quote."""
    db = sqlite3.connect(state / "journal.sqlite")
    rows = db.execute("SELECT ts_ns, best_bid, best_ask, fair FROM samples "
                      "WHERE best_bid IS NOT NULL AND fair != 0").fetchall()
    db.close()
    return {ts: (bid, ask, fair) for ts, bid, ask, fair in rows}


def replay(config: Path, state: Path) -> dict[str, Any]:
    proc = mmdaemon("replay", "--config", str(config), "--state-dir", str(state), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary: dict[str, Any] = json.loads(proc.stdout)
    return summary


def test_a_replay_in_mode_stoikov_prices_from_the_table(tmp_path: Path) -> None:
    stoikov = replay(REPO / "config" / "dryrun-stoikov.toml", tmp_path / "stoikov")
    weighted = replay(REPO / "config" / "dryrun.toml", tmp_path / "weighted")
    assert stoikov["fills"] > 0 and stoikov["state"] == "ACTIVE"
    assert stoikov["frames"] == weighted["frames"] == 99574  # the same market, all of it
    ours, theirs = samples(tmp_path / "stoikov"), samples(tmp_path / "weighted")
    assert len(ours) > 2000 and ours.keys() == theirs.keys()
    g = {round(v, 6) for row in json.loads(SHIPPED_TABLE.read_text())["g_ticks"] for v in row}
    inside = [(bid, ask, fair) for bid, ask, fair in ours.values() if ask - bid <= 2]
    # a fair value on a book the table covers is the mid plus one of its entries; a sample
    # pairs the book at its time with the latest quote, which may come from an earlier book
    priced = sum(round(fair - (bid + ask) / 2, 6) in g for bid, ask, fair in inside)
    assert len(inside) > 2000 and priced > 0.95 * len(inside), (priced, len(inside))
    differ = sum(ours[ts][2] != theirs[ts][2] for ts in ours)
    assert differ > 0.9 * len(ours), (differ, len(ours))


def stoikov_config(tmp_path: Path, table: str) -> Path:
    return write_config(tmp_path, {"strategy.fair_value": {"mode": "stoikov",
                                                           "stoikov_table": table}})


def test_the_table_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "t.json").write_bytes(SHIPPED_TABLE.read_bytes())
    config = load_config(stoikov_config(tmp_path, "tables/t.json"))
    fair = config.strategy.fair_value
    assert fair.stoikov_table == str(tmp_path / "tables" / "t.json")
    assert fair.stoikov is not None and fair.stoikov.buckets == 5


def edited(**changes: Any) -> str:
    doc = json.loads(SHIPPED_TABLE.read_text())
    doc.update(changes)
    return json.dumps(doc)


@pytest.mark.parametrize(("content", "message"), [
    (None, f"{KEY}: cannot read"),
    ("{", f"{KEY}: .*: not JSON"),
    ('{"format": "something else"}', f"{KEY}: .*: not a micro-price table"),
    (edited(version=2), f"{KEY}: .*: table version 2, this mmdaemon reads version 1"),
    (edited(symbol="ETHUSDT"), f"{KEY}: .*: fitted for binance-spot ETHUSDT tick 0.01, but "
                               f"the instrument is binance-spot BTCUSDT tick 0.01"),
    (edited(tick_size="0.1", venue="binance-usdm"), f"{KEY}: .*: fitted for binance-usdm "
                                                    f"BTCUSDT tick 0.1"),
    (edited(g_ticks=[[0.1] * 5]), f"{KEY}: .*: g_ticks: expected 2 rows"),
])
def test_a_table_that_is_not_one_for_this_instrument_is_refused(
        tmp_path: Path, content: str | None, message: str) -> None:
    if content is not None:
        (tmp_path / "t.json").write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_config(stoikov_config(tmp_path, "t.json"))


def test_a_table_that_is_a_fifo_is_refused_at_check_and_on_reload_without_waiting(
        tmp_path: Path) -> None:
    """Before, opening a FIFO for the table waited for a writer: ``check-config`` hung, and
    a SIGHUP froze the running daemon's event loop (a kill not acted on) until one came."""
    (tmp_path / "t.json").write_bytes(SHIPPED_TABLE.read_bytes())
    os.mkfifo(tmp_path / "fifo.json")
    fifo_config = stoikov_config(tmp_path / "fifo", str(tmp_path / "fifo.json"))
    proc = subprocess.run([sys.executable, "-m", "mmdaemon", "check-config", str(fifo_config)],
                          capture_output=True, text=True, timeout=60)
    message = f"{KEY}: cannot read {tmp_path / 'fifo.json'}: not a regular file"
    assert proc.returncode == 2 and message in proc.stderr
    config = stoikov_config(tmp_path, "t.json")
    text = config.read_text().replace('speed = "max"', 'speed = "10"')
    config.write_text(text)
    d = Daemon(config)
    try:
        d.wait_event("ready")
        config.write_text(text.replace('"t.json"', '"fifo.json"'))
        reload_fails_and_a_kill_still_works(d, message)
    finally:
        if d.proc.poll() is None:
            d.kill()


def test_a_bad_table_stops_the_replay_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text(edited(version=0))
    proc = mmdaemon("replay", "--config", str(stoikov_config(tmp_path, "t.json")))
    assert proc.returncode == 2 and not proc.stdout
    assert f"config error: {KEY}: {tmp_path / 't.json'}: table version 0" in proc.stderr


def test_mode_stoikov_needs_a_table_and_the_table_is_no_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"strategy\.fair_value: FairValueParams\."
                                          r"stoikov_table: expected the path of a table"):
        load_config(write_config(tmp_path, {"strategy.fair_value": {"mode": "stoikov"}}))
    with pytest.raises(ConfigError, match=r"strategy\.fair_value\.stoikov: unknown key"):
        load_config(write_config(tmp_path, {"strategy.fair_value": {"stoikov": "x"}}))


def test_check_config_notes_the_old_mode_name(tmp_path: Path) -> None:
    old = write_config(tmp_path, {"strategy.fair_value": {"mode": "microprice"}})
    proc = mmdaemon("check-config", str(old))
    assert proc.returncode == 0
    assert ("WARNING strategy.fair_value.mode: 'microprice' is the old name of "
            "'weighted_mid'") in proc.stdout
    shipped = mmdaemon("check-config", str(REPO / "config" / "dryrun-stoikov.toml"))
    assert shipped.returncode == 0 and "valid, 0 warnings" in shipped.stdout
    assert "5 imbalance buckets x spreads 1..2 ticks, 10 of 10 states fitted" in shipped.stdout
    assert "strategy.fair_value.stoikov." not in shipped.stdout  # the table is no key
