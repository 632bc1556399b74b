"""`mmdaemon sim --reference` and `mmdaemon record` with a `[reference]` section, as real
processes over loopback with real signals: the recorder writes the traded feed to OUT and the
reference's to OUT/binance-usdm-btcusdt/; the reference's files verify by the futures rules
and replay with `replay --reference`."""

from __future__ import annotations

import gzip
import itertools
import signal
import subprocess
import sys
from pathlib import Path

import orjson

from tests.helpers import first_lines, gz_lines, write_config, write_gz
from tests.process.test_record_sim_cli import (
    free_port,
    mmdaemon,
    wait_for_line,
    wait_recorded,
)

SNAPSHOT = b'"lastUpdateId"'


def test_record_both_feeds_from_the_sim_then_verify_and_replay_with_the_reference(
        tmp_path: Path, usdm_file: Path) -> None:
    spot = first_lines(tmp_path / "spot.gz", 8_000)
    with gzip.open(usdm_file, "rb") as f:
        usdm = write_gz(tmp_path / "usdm.gz",
                        [line.rstrip(b"\n") for line in itertools.islice(f, 18_000)])
    port, ref_port = free_port(), free_port()
    sim = mmdaemon("sim", str(spot), "--port", str(port), "--speed", "10",
                   "--reference", str(usdm), "--reference-port", str(ref_port))
    out = tmp_path / "recorded"
    reference = {"venue": "binance-usdm", "symbol": "BTCUSDT", "tick_size": "0.1",
                 "lot_size": "0.001", "url": f"ws://127.0.0.1:{ref_port}",
                 "rest_url": f"http://127.0.0.1:{ref_port}"}
    config = write_config(tmp_path, {
        "feed": {"recordings": [], "url": f"ws://127.0.0.1:{port}",
                 "rest_url": f"http://127.0.0.1:{port}"},
        "reference": reference})
    try:
        wait_for_line(sim, b"sim_listening")
        rec = mmdaemon("record", "--config", str(config), str(out))
        ref_out = out / "binance-usdm-btcusdt"
        wait_recorded(out, 2_000)  # the traded feed's lines (OUT/btcusdt_*.gz)
        wait_recorded(ref_out, 4_000)  # and the reference's, in its own directory
        rec.send_signal(signal.SIGTERM)
        assert rec.wait(20) == 0
        stderr = rec.stderr.read().decode() if rec.stderr else ""
        stopped = [orjson.loads(line) for line in stderr.splitlines()
                   if '"event":"record_stopped"' in line][-1]
        assert stopped["frames"] > 0 and stopped["reference_frames"] > 0
        assert stopped["reference_snapshots"] >= 1
    finally:
        sim.send_signal(signal.SIGTERM)
        assert sim.wait(20) == 0
    traded = sorted(out.glob("btcusdt_*.gz"))
    ref_files = sorted(ref_out.glob("btcusdt_*.gz"))
    assert traded and ref_files and not (set(traded) & set(ref_files))
    # each file is one feed: the perpetual's frames and its /fapi/v1 snapshot, no spot
    ref_lines = [line for p in ref_files for line in gz_lines(p)]
    assert any(b"@depth@0ms" in line for line in ref_lines)
    assert not any(b"@depth@100ms" in line for line in ref_lines)
    assert any(SNAPSHOT in line and b'"T":' in line for line in ref_lines)

    verify = subprocess.run([sys.executable, "-m", "mmdaemon", "verify-book",
                             *map(str, ref_files), "--venue", "binance-usdm", "--json"],
                            capture_output=True, text=True, timeout=60)
    v = orjson.loads(verify.stdout)
    assert verify.returncode == 0, verify.stdout + verify.stderr[-2000:]
    assert v["gaps"] == 0 and v["mismatches"] == 0 and v["compared"] > 20
    assert v["instrument"] == "BTCUSDT" and v["synced_at_end"]

    # the recorder's config, pricing on the reference: what it recorded replays with it
    replay_config = write_config(tmp_path, {"strategy.fair_value": {"mode": "lead_lag"},
                                            "reference": reference}, name="replay.toml")
    replay = subprocess.run([sys.executable, "-m", "mmdaemon", "replay", *map(str, traded),
                             "--reference", *map(str, ref_files), "--config", str(replay_config),
                             "--json"], capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0, replay.stderr[-2000:]
    s = orjson.loads(replay.stdout)
    ref = s["reference"]
    assert ref["frames"] == v["frames"] and ref["gaps"] == 0 and ref["ever_usable"]
    assert ref["lead_lag_quotes"] > 0 and s["gaps"] == 0 and s["quotes"] > 0
