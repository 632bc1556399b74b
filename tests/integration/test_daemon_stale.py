"""A feed that goes silent while connected trips the staleness breaker and recovers."""

from __future__ import annotations

import gzip
from pathlib import Path

import uvloop

from mmdaemon.clock import SystemClock
from mmdaemon.config_file import load_config
from mmdaemon.daemon import Service
from tests.conftest import SPOT_FILES
from tests.helpers import write_config
from tests.recorder import Recorder


def test_silent_feed_halts_cancels_and_resumes(tmp_path: Path) -> None:
    with gzip.open(SPOT_FILES[0], "rb") as f:
        lines = f.read().splitlines()[:2500]
    hole_ns = 6_000_000_000  # 6 s with no frame at all, then the feed resumes
    shifted = []
    for line in lines[1500:]:
        ns, frame = line.split(b" ", 1)
        shifted.append(str(int(ns) + hole_ns).encode() + b" " + frame)
    path = tmp_path / "hole.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\n".join(lines[:1500] + shifted) + b"\n")

    config = load_config(write_config(tmp_path, {
        "feed": {"recordings": [str(path)], "speed": "10"},
        "risk": {"stale_feed_ms": 1000, "supervisor_interval_ms": 20},
    }))
    log = Recorder()
    service = Service(config, SystemClock(), log)
    uvloop.run(service.run())

    names = [(e["event"], e.get("reason")) for e in log.events]
    halted = names.index(("state_changed", "feed_stale"))
    stale = log.events[halted]
    assert stale["new"] == "HALTED" and stale["silent_ms"] > 1000
    # quotes pulled while silent, and trading resumed when frames came back
    pulled = names.index(("orders_cancelled", "halted"), halted)
    assert log.events[pulled]["cancelled"] >= 1 and log.events[pulled]["open_after"] == 0
    resumed = names.index(("state_changed", "feed_stale_cleared"), halted)
    assert log.events[resumed]["new"] == "ACTIVE"
    assert service.engine.market.frames == 2500
