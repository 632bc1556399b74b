"""A replay refused for a bad queue model: exit 2 naming the key. The model itself, and the
config errors in process, are tests/unit/test_queue_models.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.helpers import write_config


def test_bad_queue_model_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"exchange": {"queue_model": "fifo"}})
    proc = subprocess.run(
        [sys.executable, "-m", "mmdaemon", "replay",
         str(REPO / "data" / "binance-spot-btcusdt" / "btcusdt_20240808.gz"), "--config",
         str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "exchange.queue_model: expected one of 'conservative', 'power', 'log'" in proc.stderr
