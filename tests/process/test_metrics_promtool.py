"""The metrics exposition of a real service on a real recording passes Prometheus's own
checker (``promtool check metrics``, a process of its own); the scrapes themselves are
tests/integration/test_metrics.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mmdaemon.latency_histogram import LatencyHistogram
from mmdaemon.metrics import MetricsServer
from mmdaemon.wire_latency import WIRE_TO_WIRE_BUCKETS_S
from tests.integration.test_metrics import fed_histogram, replayed_service, scrape


async def test_exposition_passes_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian/Ubuntu package 'prometheus')")
    service = await replayed_service(tmp_path)
    wire = LatencyHistogram(WIRE_TO_WIRE_BUCKETS_S)  # a live run's, fed as one would be
    for ns in (40_000, 180_000, 260_000, 2_000_000):
        wire.observe_ns(ns)
    async with MetricsServer(service, latency=fed_histogram(), wire=wire) as server:
        _, _, text = await scrape(server.port)
    assert "mmdaemon_wire_to_wire_seconds_count 4.0" in text
    proc = subprocess.run([promtool, "check", "metrics"], input=text,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stdout and not proc.stderr, \
        (proc.returncode, proc.stdout, proc.stderr)
