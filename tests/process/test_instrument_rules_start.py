"""The instrument's rules at start, as real processes: ``mmdaemon run`` reads the sim's
``/api/v3/exchangeInfo`` (the sim serves it as it is) and refuses a config that disagrees
(exit 2, the key and both values) or fills in what the config left out and trades;
``mmdaemon record`` saves the venue's exchangeInfo beside its recording and ``mmdaemon
replay`` checks a config against it, for BTCUSDT and for another symbol (the bundled
recording rewritten as ETHUSDT on other grids, with a constructed exchangeInfo)."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from mmdaemon.venues.binance_rules import parse_exchange_info
from tests.conftest import SPOT_FILES, USDM_FILE
from tests.daemon_process import Daemon
from tests.exchange_info import spot_body, spot_symbol
from tests.helpers import gz_lines, rewrite, write_config, write_gz
from tests.process.test_record_sim_cli import (
    free_port,
    live_config,
    mmdaemon,
    sim_serving,
    wait_for_line,
    wait_recorded,
)
from tests.process.test_sim_processes import open_orders, sim_config
from tests.process.test_strategy_plugins import daemon_quoting_at_the_sim
from tests.process.test_usdm_live import KEY, SECRET
from tests.process.test_usdm_live import live_config as usdm_live_config
from tests.process.test_usdm_live import open_orders as usdm_open_orders

GRID_LINES = re.compile(r"^(tick_size|lot_size|size_step_lots|min_size_lots|min_notional) = .*\n",
                        re.MULTILINE)
LINES = 30_000  # ~4 minutes of market: snapshots, diffs and trades enough to quote and fill


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmdaemon", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def sim_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """``mmdaemon sim`` on the bundled recording with order entry (the test credentials in
    the environment, which the daemons inherit), on a free port."""
    port = free_port()
    sim_config(tmp_path, port, tmp_path / "unused", monkeypatch)  # sets the credentials
    sim = mmdaemon("sim", *map(str, SPOT_FILES), "--port", str(port), "--speed", "5")
    try:
        wait_for_line(sim, b"sim_listening")
        yield port
    finally:
        sim.send_signal(signal.SIGTERM)
        assert sim.wait(20) == 0


def _edited(config: Path, old: str, new: str) -> Path:
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new))
    return config


def test_a_config_typed_with_a_wrong_tick_size_is_refused_at_start_against_the_sim(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sim_port: int) -> None:
    state = tmp_path / "state"
    config = _edited(sim_config(tmp_path, sim_port, state, monkeypatch),
                     'tick_size = "0.01"', 'tick_size = "0.1"')
    proc = run_cli("run", "--config", str(config), timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert ("instrument.tick_size: the config says 0.1, Binance BTCUSDT's PRICE_FILTER "
            "tickSize is 0.01 (the venue's exchangeInfo: "
            f"http://127.0.0.1:{sim_port}/api/v3/exchangeInfo?symbol=BTCUSDT)") in proc.stderr
    # HALTED until the rules agreed, so they never did: nothing was sent to the venue
    db = sqlite3.connect(state / "journal.sqlite")
    assert db.execute("SELECT count(*) FROM order_log").fetchone() == (0,)
    db.close()
    assert '"event":"instrument_rules_refused"' in proc.stdout
    assert open_orders(sim_port) == []


def test_a_usdm_config_typed_with_a_wrong_tick_size_is_refused_at_start_against_the_sim(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Must show on the futures venue: ``mmdaemon sim --venue binance-usdm`` serves
    ``/fapi/v1/exchangeInfo`` (BTCUSDT perpetual: tick 0.1) and config/example-live-usdm.toml
    typed with spot's 0.01 is refused, exit 2, nothing sent to the venue."""
    if not USDM_FILE.exists():
        pytest.skip(f"{USDM_FILE} not present: the USD-M recording lives in ../shared only")
    monkeypatch.setenv("MMDAEMON_API_KEY", KEY)
    monkeypatch.setenv("MMDAEMON_API_SECRET", SECRET)
    port, state = free_port(), tmp_path / "state"
    sim = mmdaemon("sim", "--venue", "binance-usdm", str(USDM_FILE), "--port", str(port),
                   "--speed", "5", "--balance", "USDT=100000")
    try:
        wait_for_line(sim, b"sim_listening")
        config = _edited(usdm_live_config(tmp_path, port, state),
                         'tick_size = "0.1"', 'tick_size = "0.01"')
        proc = run_cli("run", "--config", str(config), timeout=60)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert ("mmdaemon run: config error: instrument.tick_size: the config says 0.01, "
                "Binance BTCUSDT's PRICE_FILTER tickSize is 0.1 (the venue's exchangeInfo: "
                f"http://127.0.0.1:{port}/fapi/v1/exchangeInfo)") in proc.stderr
        assert '"event":"instrument_rules_refused"' in proc.stdout
        db = sqlite3.connect(state / "journal.sqlite")
        assert db.execute("SELECT count(*) FROM order_log").fetchone() == (0,)
        db.close()
        assert usdm_open_orders(port) == []
    finally:
        sim.send_signal(signal.SIGTERM)
        assert sim.wait(20) == 0


@pytest.mark.parametrize(("old", "new", "message"), [
    ("size_step_lots = 1000", "size_step_lots = 100",
     "instrument.size_step_lots: the config says 100 (x lot 0.00000001 = 0.000001), Binance "
     "BTCUSDT's LOT_SIZE stepSize is 0.00001 (1000 lots)"),
    ('min_notional = "5"', 'min_notional = "1"',
     "instrument.min_notional: the config says 1, below Binance BTCUSDT's minimum notional 5"),
    ('symbol = "BTCUSDT"', 'symbol = "ETHUSDT"',
     "instrument.symbol: http://127.0.0.1:{port}/api/v3/exchangeInfo?symbol=ETHUSDT answered "
     "HTTP 400: -1121 Invalid symbol."),
])
def test_a_config_that_disagrees_with_the_sims_rules_is_refused_naming_the_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sim_port: int, old: str, new: str,
        message: str) -> None:
    config = _edited(sim_config(tmp_path, sim_port, tmp_path / "state", monkeypatch), old, new)
    proc = run_cli("run", "--config", str(config), timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message.format(port=sim_port) in proc.stderr


def test_a_config_that_leaves_the_grids_out_gets_them_from_the_sim_and_trades(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    config = sim_config(tmp_path, port, tmp_path / "state", monkeypatch)
    config.write_text(GRID_LINES.sub("", config.read_text()))
    assert "tick_size" not in config.read_text()
    with daemon_quoting_at_the_sim(config, port) as d:
        _, rules = d.wait_event("instrument_rules")
        assert rules["filled"] == ["tick_size", "lot_size", "size_step_lots", "min_size_lots",
                                   "min_notional"]
        assert (rules["tick_size"], rules["lot_size"], rules["size_step_lots"],
                rules["min_size_lots"], rules["min_notional"]) == (
            "0.01", "0.00000001", 1000, 1000, "5")
        i, fill = d.wait_event("fill", timeout=60)
        assert fill["size"] % 1000 == 0  # on the venue's step, in lots of 1e-8
        # a reload of the file (grids still left out) keeps the venue's: no restart needed
        _edited(config, "base_bps = 1.0", "base_bps = 1.5")
        d.signal(signal.SIGHUP)
        _, done = d.wait_for(lambda e: e.get("event") in ("reloaded", "reload_refused",
                                                          "reload_failed"), start=i)
        assert done["event"] == "reloaded", done
        assert d.stop() == 0


def test_a_venue_down_at_start_is_waited_out_halted_until_its_rules_are_read(
        tmp_path: Path) -> None:
    port = free_port()  # nothing listens there yet
    config = write_config(tmp_path, {"feed": {
        "recordings": [], "url": f"ws://127.0.0.1:{port}", "rest_url": f"http://127.0.0.1:{port}",
        "backoff_initial_ms": 50, "backoff_max_ms": 200}})
    d = Daemon(config)
    sim: subprocess.Popen[bytes] | None = None
    try:
        _, first = d.wait_event("instrument_rules_unavailable")
        assert first["reason"].startswith("the venue's exchangeInfo: ")
        d.wait_for(lambda e: e.get("event") == "instrument_rules_unavailable"
                   and e["retry_in_s"] == 0.2)  # the feed's backoff, at its ceiling
        assert d.proc.poll() is None  # waiting it out, not exiting
        sim = mmdaemon("sim", *map(str, SPOT_FILES), "--port", str(port), "--speed", "5")
        wait_for_line(sim, b"sim_listening")
        i, rules = d.wait_event("instrument_rules")
        assert rules["filled"] == [] and rules["tick_size"] == "0.01"
        j, _ = d.wait_for(lambda e: e.get("event") == "state_changed" and e["new"] == "ACTIVE")
        assert j > i  # quoting only once the rules were read and agreed
        assert d.stop() == 0
    finally:
        if d.proc.poll() is None:
            d.kill()
        if sim is not None:
            sim.send_signal(signal.SIGTERM)
            assert sim.wait(20) == 0


def test_a_config_leaving_its_grids_out_with_the_venue_unreachable_exits_1_after_retries(
        tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    config = write_config(tmp_path, {"feed": {
        "recordings": [], "url": f"ws://127.0.0.1:{port}", "rest_url": f"http://127.0.0.1:{port}",
        "backoff_initial_ms": 50, "backoff_max_ms": 100}}, drop=("instrument.tick_size",))
    proc = run_cli("run", "--config", str(config), timeout=60)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert (f"mmdaemon run: the venue's exchangeInfo (http://127.0.0.1:{port}/api/v3/"
            f"exchangeInfo?symbol=BTCUSDT) could not be read in 5 tries: ") in proc.stderr
    assert not (tmp_path / "state" / "journal.sqlite").exists()


def test_record_saves_the_venues_exchange_info_and_a_replay_of_it_checks_the_config(
        tmp_path: Path) -> None:
    out = tmp_path / "recorded"
    with sim_serving(SPOT_FILES[0]) as port:
        rec = mmdaemon("record", "--config", str(live_config(tmp_path, port)), str(out))
        try:
            wait_recorded(out, 500)
        finally:
            rec.send_signal(signal.SIGTERM)
            _, stderr = rec.communicate(timeout=30)
        assert rec.returncode == 0, stderr[-2000:]
    saved = out / "exchangeInfo-BTCUSDT.json"
    assert b'"event":"instrument_rules"' in stderr and str(saved).encode() in stderr
    doc = orjson.loads(saved.read_bytes())
    assert [s["symbol"] for s in doc["symbols"]] == ["BTCUSDT"]
    rules = parse_exchange_info(saved.read_bytes(), "spot", "BTCUSDT")
    assert (str(rules.tick_size), str(rules.step_size)) == ("0.01000000", "0.00001000")
    recorded = sorted(str(p) for p in out.glob("*.gz"))
    wrong = write_config(tmp_path / "wrong", {"instrument": {"tick_size": "0.1"}})
    proc = run_cli("replay", "--config", str(wrong), *recorded, "--json")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert ("instrument.tick_size: the config says 0.1, Binance BTCUSDT's PRICE_FILTER "
            f"tickSize is 0.01 (the venue's exchangeInfo: {saved})") in proc.stderr


def test_record_into_a_place_it_cannot_write_says_so_exit_1_not_a_traceback(
        tmp_path: Path) -> None:
    out = tmp_path / "a-file"
    out.write_text("not a directory")
    with sim_serving(SPOT_FILES[0]) as port:
        proc = run_cli("record", "--config", str(live_config(tmp_path, port)), str(out),
                       timeout=60)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert (f"mmdaemon record: cannot save the venue's exchangeInfo in {out}: "
            "File exists") in proc.stderr


ETH_RULES = spot_symbol("ETHUSDT", tick="0.00040000", step="0.01000000",
                        min_qty="0.01000000", min_notional="5.00000000", base_precision=5)
"""The rewritten recording's grids (tests.helpers.rewrite: prices / 25, sizes x 1,000):
BTCUSDT's 0.01 tick is 0.0004, its 1e-8 size unit 1e-5 (5 decimals), its 1e-5 step 0.01."""


@pytest.fixture(scope="module")
def eth_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The start of the bundled recording as ETHUSDT, with its exchangeInfo beside it."""
    folder = tmp_path_factory.mktemp("ethusdt")
    path = write_gz(folder / "ethusdt_20240808.gz",
                    rewrite(gz_lines(SPOT_FILES[0])[:LINES], "ETHUSDT"))
    (folder / "exchangeInfo-ETHUSDT.json").write_bytes(orjson.dumps(spot_body(ETH_RULES)))
    return path


def _eth_config(tmp_path: Path, **stated: str) -> Path:
    return write_config(tmp_path, {"instrument": {"symbol": "ETHUSDT", **stated}}, drop=tuple(
        f"instrument.{key}" for key in ("tick_size", "lot_size", "size_step_lots",
                                        "min_size_lots", "min_notional") if key not in stated))


def test_a_replay_of_another_symbol_takes_its_grids_from_the_saved_exchange_info(
        tmp_path: Path, eth_recording: Path) -> None:
    proc = run_cli("replay", "--config", str(_eth_config(tmp_path)), str(eth_recording),
                   "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = orjson.loads(proc.stdout)
    assert summary["orders"] > 0 and summary["fills"] > 0
    events = [orjson.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    rules = next(e for e in events if e["event"] == "instrument_rules")
    assert rules["source"] == str(eth_recording.parent / "exchangeInfo-ETHUSDT.json")
    assert (rules["tick_size"], rules["lot_size"], rules["size_step_lots"],
            rules["min_size_lots"], rules["min_notional"]) == ("0.0004", "0.00001", 1000,
                                                               1000, "5")


def test_a_replay_of_another_symbol_refuses_a_config_that_disagrees_or_misses_a_grid(
        tmp_path: Path, eth_recording: Path) -> None:
    wrong = _eth_config(tmp_path / "wrong", tick_size="0.0001")
    proc = run_cli("replay", "--config", str(wrong), str(eth_recording), "--json")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert ("instrument.tick_size: the config says 0.0001, Binance ETHUSDT's PRICE_FILTER "
            "tickSize is 0.0004") in proc.stderr
    alone = tmp_path / "alone" / eth_recording.name  # no exchangeInfo beside this copy
    alone.parent.mkdir()
    alone.write_bytes(eth_recording.read_bytes())
    proc = run_cli("replay", "--config", str(_eth_config(tmp_path / "c")), str(alone), "--json")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "instrument.tick_size: missing, and no venue rules to take it from" in proc.stderr


def test_check_config_reviews_a_config_without_grids_on_the_saved_exchange_info(
        tmp_path: Path, eth_recording: Path) -> None:
    proc = run_cli("check-config", str(_eth_config(tmp_path)), "--recording",
                   str(eth_recording), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    effective = orjson.loads(proc.stdout)["effective"]
    assert [effective[f"instrument.{key}"]["value"] for key in (
        "tick_size", "lot_size", "size_step_lots", "min_size_lots", "min_notional")] == [
        "0.0004", "0.00001", 1000, 1000, "5"]


def test_crosscheck_of_another_symbol_takes_its_grids_from_the_saved_exchange_info(
        tmp_path: Path, eth_recording: Path) -> None:
    """crosscheck reloads the config itself: the grids it leaves out are the saved
    exchangeInfo's there too (they were a ValueError traceback)."""
    proc = run_cli("crosscheck", "--config", str(_eth_config(tmp_path)), str(eth_recording),
                   "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    result = orjson.loads(proc.stdout)
    assert result["ours"] > 0, result
