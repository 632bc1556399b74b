"""``mmdaemon replay TRADED... --reference REF...``: the reference feed merged by receive
time into the same dry run, on the real spot and USD-M recordings, and on a small
recording of another symbol (ETHUSDT made of them, the recorder's format) whose reference
stops or never syncs: the fallback and the halt per config, visible in the summary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import REPO, SPOT_FILES
from tests.helpers import gz_lines, rewrite, write_config, write_gz

MMDAEMON = [sys.executable, "-m", "mmdaemon"]
S = 1_000_000_000
REFERENCE_BTC = {"venue": "binance-usdm", "symbol": "BTCUSDT", "tick_size": "0.1",
                 "lot_size": "0.001"}


def replay(args: list[str], expect: int = 0) -> tuple[dict[str, Any], str]:
    """``mmdaemon replay ARGS --json``: the summary and the log (stderr)."""
    done = subprocess.run([*MMDAEMON, "replay", *args, "--json"], capture_output=True,
                          timeout=300, cwd=REPO)
    assert done.returncode == expect, done.stderr.decode()[-3000:]
    summary = orjson.loads(done.stdout) if expect == 0 else {}
    return summary, done.stderr.decode()


def test_replay_with_the_usdm_reference_prices_spot_off_the_perpetual(
        tmp_path: Path, usdm_file: Path) -> None:
    spot = str(SPOT_FILES[0])
    config = write_config(tmp_path, {"reference": {**REFERENCE_BTC,
                                                   "recordings": [str(usdm_file)]},
                                     "strategy.fair_value": {"mode": "lead_lag"}})
    lead, log = replay([spot, "--reference", str(usdm_file), "--config", str(config)])
    ref = lead["reference"]
    assert ref["frames"] == 93_954 and ref["snapshots"] == 1 and ref["gaps"] == 0
    assert ref["ever_usable"] and ref["lead_lag_quotes"] > 0.9 * lead["quotes"]
    # spot traded some 20-30 USDT above the perpetual over the overlap
    assert 10 < ref["basis"] < 40
    assert '"event":"reference_usable"' in log
    local_config = write_config(tmp_path / "local", {"reference": {
        **REFERENCE_BTC, "recordings": [str(usdm_file)]}})
    local, _ = replay([spot, "--config", str(local_config)])  # [reference].recordings
    assert local["reference"]["frames"] == 93_954  # read, but the fair value is the local one
    assert local["reference"]["lead_lag_quotes"] == 0
    # the fair value moved with the perpetual: other quotes, other fills
    assert (lead["fills"], lead["markouts"][0]["markout_bps"]) != (
        local["fills"], local["markouts"][0]["markout_bps"])


def test_reference_without_a_reference_section_is_a_usage_error(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    done = subprocess.run([*MMDAEMON, "replay", str(SPOT_FILES[0]), "--reference",
                           str(SPOT_FILES[1]), "--config", str(config)],
                          capture_output=True, timeout=60, cwd=REPO)
    assert done.returncode == 2
    assert b"--reference needs a [reference] section" in done.stderr
    assert b"venue" in done.stderr and b"tick_size" in done.stderr


ETH_TRADED = {"venue": "binance-spot", "symbol": "ETHUSDT", "tick_size": "0.0004",
              "lot_size": "0.00001", "size_step_lots": 1000, "min_size_lots": 1000,
              "min_notional": "5"}
ETH_REFERENCE = {"venue": "binance-usdm", "symbol": "ETHUSDT", "tick_size": "0.004",
                 "lot_size": "1"}


def eth_recordings(tmp_path: Path, usdm_file: Path, reference_s: float,
                   snapshot: bool = True) -> tuple[Path, Path]:
    """25 s of ETHUSDT spot and its perpetual (the BTCUSDT recordings with prices / 25 and
    sizes x 1,000): the reference stops ``reference_s`` after the spot's start, and without
    ``snapshot`` never gets its depth snapshot."""
    spot_lines = gz_lines(SPOT_FILES[0])[:3000]
    start, end = int(spot_lines[0].split(b" ")[0]), int(spot_lines[-1].split(b" ")[0])
    ref_lines = [line for line in gz_lines(usdm_file)
                 if int(line.split(b" ")[0]) <= min(end, start + int(reference_s * S))
                 and (snapshot or b"lastUpdateId" not in line)]
    return (write_gz(tmp_path / "ethusdt-spot.gz", rewrite(spot_lines, "ETHUSDT")),
            write_gz(tmp_path / "ethusdt-usdm.gz", rewrite(ref_lines, "ETHUSDT")))


def eth_config(tmp_path: Path, on_stale: str, spot: Path, ref: Path) -> Path:
    return write_config(tmp_path, {
        "instrument": ETH_TRADED, "feed": {"recordings": [str(spot)]},
        "reference": {**ETH_REFERENCE, "recordings": [str(ref)], "stale_ms": 500,
                      "on_stale": on_stale},
        "strategy.fair_value": {"mode": "lead_lag"}})


def test_another_symbol_whose_reference_stops_falls_back_to_the_local_fair_value(
        tmp_path: Path, usdm_file: Path) -> None:
    spot, ref = eth_recordings(tmp_path, usdm_file, reference_s=10)
    summary, log = replay(["--config", str(eth_config(tmp_path, "fallback", spot, ref))])
    r = summary["reference"]
    assert r["symbol"] == "ETHUSDT" and r["ever_usable"] and not r["usable"]
    assert r["unusable_episodes"] == 2  # the wait for the first sync, then the end
    assert r["lead_lag_quotes"] > 0 and r["fallback_quotes"] > 0
    assert summary["state"] == "ACTIVE" and summary["orders"] > 0
    assert '"why":"stale"' in log
    assert any("unusable 1 times after its first sync" in w for w in summary["warnings"])


def test_another_symbol_whose_reference_stops_halts_with_on_stale_halt(
        tmp_path: Path, usdm_file: Path) -> None:
    spot, ref = eth_recordings(tmp_path, usdm_file, reference_s=10)
    summary, log = replay(["--config", str(eth_config(tmp_path, "halt", spot, ref))])
    assert summary["state"] == "HALTED" and summary["orders"] > 0  # quoted while fresh
    changes = [orjson.loads(line) for line in log.splitlines()
               if '"event":"state_changed"' in line]
    # ACTIVE once the reference synced, HALTED when it went stale, and never back
    assert [(c["new"], c["reason"]) for c in changes][-2:] == [
        ("ACTIVE", "reference_stale_cleared"), ("HALTED", "reference_stale")]
    assert '"event":"orders_cancelled"' in log


def test_a_reference_that_never_syncs_keeps_the_daemon_halted(
        tmp_path: Path, usdm_file: Path) -> None:
    spot, ref = eth_recordings(tmp_path, usdm_file, reference_s=25, snapshot=False)
    summary, log = replay(["--config", str(eth_config(tmp_path, "halt", spot, ref))])
    r = summary["reference"]
    assert r["frames"] > 1000 and not r["ever_usable"] and r["lead_lag_quotes"] == 0
    assert summary["state"] == "HALTED" and summary["orders"] == 0
    assert any("was never usable" in w and "HALTED" in w for w in summary["warnings"])
    assert '"event":"reference_unusable"' in log and '"why":"no snapshot yet"' in log
    # the same with fallback: it quotes on the local fair value, and says so
    fallback, _ = replay(["--config", str(eth_config(tmp_path / "f", "fallback", spot, ref))])
    assert fallback["orders"] > 0 and fallback["reference"]["fallback_quotes"] > 0
    assert any("was never usable" in w and "local fair value" in w
               for w in fallback["warnings"])


def test_a_plugin_strategy_reads_the_reference_through_its_view(
        tmp_path: Path, usdm_file: Path) -> None:
    """A desk's strategy that quotes around the reference's mid (tests/strategies): with the
    USD-M reference it quotes and is filled; without a reference section its view has none
    and it quotes nothing, which the summary shows."""
    plugin = {"class": "reference_probe:ReferenceProbe",
              "path": [str(REPO / "tests" / "strategies")]}
    spot = str(SPOT_FILES[0])
    with_ref = write_config(tmp_path / "ref", {"strategy": plugin, "reference": {
        **REFERENCE_BTC, "recordings": [str(usdm_file)]}})
    quoted, log = replay([spot, "--config", str(with_ref)])
    assert '"event":"strategy_loaded"' in log and "strategy_error" not in log
    assert quoted["orders"] > 10 and quoted["fills"] > 0
    without = write_config(tmp_path / "none", {"strategy": plugin})
    idle, _ = replay([spot, "--config", str(without)])
    assert idle["quotes"] > 0 and idle["orders"] == 0


def test_reference_given_twice_replays_the_recordings_of_both(
        tmp_path: Path, usdm_file: Path) -> None:
    """``--reference A --reference B`` is A and B, as for ``sim --reference``: the second
    used to replace the first silently (here the part with the snapshot: never usable)."""
    lines = gz_lines(usdm_file)
    first = write_gz(tmp_path / "usdm-1.gz", lines[:40_000])  # the snapshot is in here
    second = write_gz(tmp_path / "usdm-2.gz", lines[40_000:])
    config = write_config(tmp_path, {"reference": {**REFERENCE_BTC,  # the flags replace it
                                                   "recordings": [str(usdm_file)]},
                                     "strategy.fair_value": {"mode": "lead_lag"}})
    summary, _ = replay([str(SPOT_FILES[0]), "--reference", str(first), "--reference",
                         str(second), "--config", str(config)])
    ref = summary["reference"]
    assert ref["frames"] == len(lines) and ref["snapshots"] == 1 and ref["ever_usable"]
