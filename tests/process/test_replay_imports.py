"""What a replay imports: the libraries of what it never does (a live feed's websockets, the
metrics server's prometheus-client and aiohttp, the verifier's and the venue survey's
commands) stay out of its process, which pays for every import at each start
(bench/command.py times the whole command)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from tests.helpers import first_lines

NOT_IMPORTED = ("websockets", "prometheus_client", "aiohttp", "mmdaemon.commands.recordings",
                "mmdaemon.verify", "mmdaemon.venues.binance_survey")

PROBE = """
import sys
import orjson
from mmdaemon.cli import main
code = main(sys.argv[1:])
sys.stderr.write(orjson.dumps({"code": code, "modules": sorted(sys.modules)}).decode())
"""


def test_a_replay_imports_no_live_feed_nor_metrics_library_nor_other_commands(
    tmp_path: Path,
) -> None:
    recording = first_lines(tmp_path / "short.gz", 2_000)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, "--log-level", "error", "replay", str(recording),
         "--json"], capture_output=True, timeout=120, check=False)
    probe = orjson.loads(proc.stderr.splitlines()[-1])
    assert probe["code"] == 0, proc.stderr[-2000:]
    assert orjson.loads(proc.stdout)["frames"] > 1_000  # it did replay
    modules = set(probe["modules"])
    assert "mmdaemon.feed.recording" in modules
    assert [m for m in NOT_IMPORTED if m in modules] == []
