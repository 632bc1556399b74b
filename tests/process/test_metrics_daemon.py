"""`mmdaemon run` with `[metrics] port` serves Prometheus text on loopback while it runs."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from tests.daemon_process import Daemon
from tests.helpers import wait_for, write_config
from tests.process.test_record_sim_cli import free_port


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        return str(response.read().decode())


def value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not exposed")


def test_running_daemon_exposes_metrics(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, {"feed": {"speed": "20"}, "metrics": {"port": port}})
    d = Daemon(config)
    try:
        _, listening = d.wait_event("metrics_listening")
        assert listening["port"] == port and listening["host"] == "127.0.0.1"
        d.wait_for(lambda e: e.get("event") == "fill", timeout=60)
        first = value(scrape(port), "mmdaemon_feed_frames_total")

        def counted_on() -> str:
            text = scrape(port)
            return text if value(text, "mmdaemon_feed_frames_total") > first else ""

        second = wait_for(counted_on, 30, "frames counted on")
        assert value(second, "mmdaemon_feed_frames_total") > first
        assert value(second, "mmdaemon_fills_total") >= 1
        assert 'mmdaemon_trading_state{state="ACTIVE"} 1.0' in second
        assert value(second, "mmdaemon_tick_to_quote_seconds_count") > 0
        assert d.stop() == 0
    finally:
        if d.proc.poll() is None:
            d.kill()
