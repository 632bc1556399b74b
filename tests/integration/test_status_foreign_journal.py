"""`mmdaemon status` of a stopped instance reads its journal in the config's units (ticks
and lots): a journal that belongs to another instrument or instance (the config edited, a
state directory copied) must not be shown as this config's figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson

from mmdaemon.journal import Journal
from mmdaemon.model import Fill, Side
from tests.helpers import write_config


def test_status_refuses_to_show_a_foreign_journals_fills_as_this_configs_position(
        tmp_path: Path) -> None:
    config = write_config(tmp_path, {})  # BTCUSDT, lots of 0.00000001
    state = tmp_path / "state"
    state.mkdir()
    journal = Journal(state / "journal.sqlite")
    journal.put("identity", orjson.dumps({
        "venue": "binance-spot", "symbol": "ETHUSDT", "tick_size": "0.01",
        "lot_size": "0.0001", "adapter": "paper", "account": "paper",
        "instance": ""}).decode(), 1)
    journal.record_fill(Fill(1, Side.BUY, 300_000, 20, 0, True, 1, 1))  # 0.002 ETH
    journal.close()
    out = subprocess.run([sys.executable, "-m", "mmdaemon", "status", "--config",
                          str(config), "--json"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 3, out
    # no BTCUSDT position of 20 lots = 0.0000002 BTC: only why there is no status
    said = orjson.loads(out.stdout)
    assert set(said) == {"error", "instance", "state_dir"} and said["instance"] == "stopped"
    assert "belongs to another instance" in said["error"], said
    assert "belongs to another instance" in out.stderr, out.stderr
    assert "symbol 'ETHUSDT' (this config: 'BTCUSDT')" in out.stderr, out.stderr
    assert "lot_size '0.0001' (this config: '0.00000001')" in out.stderr, out.stderr
    # the same journal under its own instrument is shown
    ok = write_config(tmp_path, {"instrument": {"symbol": "ETHUSDT", "lot_size": "0.0001"}},
                      name="eth.toml")
    out = subprocess.run([sys.executable, "-m", "mmdaemon", "status", "--config", str(ok),
                          "--json"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 3, out
    assert json.loads(out.stdout)["position"] == {"lots": 20, "base": "0.0020"}
