"""Binance USD-M's split WebSocket routes (since 2026-04-23: depth and bookTicker only under
``/public``, trades under ``/market``, nothing on the legacy ``/stream``), as processes over
loopback: ``mmdaemon sim --venue binance-usdm --binance-routes`` serves market data only
there, and the daemon (paper adapter, live feed) and ``mmdaemon record`` get every stream;
a legacy production URL is refused at config time, naming the root to use."""

from __future__ import annotations

import gzip
import itertools
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from mmdaemon.config import ConfigError
from mmdaemon.config_file import load_config
from tests.daemon_process import Daemon
from tests.helpers import gz_lines, wait_for, write_config, write_gz
from tests.process.test_metrics_daemon import scrape, value
from tests.process.test_record_sim_cli import free_port, mmdaemon, wait_for_line, wait_recorded

USDM = {"venue": "binance-usdm", "symbol": "BTCUSDT", "tick_size": "0.1", "lot_size": "0.001"}
# the perpetual's grids, as the sim's exchangeInfo states them (checked at start)
USDM_GRIDS = {**USDM, "size_step_lots": 1, "min_size_lots": 1, "min_notional": "100"}


def usdm_config(tmp_path: Path, port: int, **sections: dict[str, Any]) -> Path:
    """The dry-run config trading BTCUSDT perpetual on the paper adapter, its market data
    live from the sim on ``port``."""
    return write_config(tmp_path, {
        "instrument": USDM_GRIDS,
        "feed": {"recordings": [], "url": f"ws://127.0.0.1:{port}",
                 "rest_url": f"http://127.0.0.1:{port}"}, **sections})


@pytest.fixture
def routes_sim(tmp_path: Path, usdm_file: Path) -> Iterator[int]:
    """`mmdaemon sim` serving a slice of the USD-M recording on Binance's routes only."""
    with gzip.open(usdm_file, "rb") as f:
        usdm = write_gz(tmp_path / "usdm.gz",
                        [line.rstrip(b"\n") for line in itertools.islice(f, 60_000)])
    port = free_port()
    sim = mmdaemon("sim", "--venue", "binance-usdm", str(usdm), "--port", str(port),
                   "--speed", "5", "--binance-routes")
    try:
        wait_for_line(sim, b"sim_listening")
        yield port
    finally:
        sim.send_signal(signal.SIGTERM)
        assert sim.wait(20) == 0


@pytest.mark.parametrize("legacy", ["wss://fstream.binance.com/stream",
                                    "wss://fstream.binance.com/ws",
                                    "wss://fstream.binance.com/public/stream"])
def test_a_legacy_usdm_market_data_url_is_refused_naming_the_root(
        tmp_path: Path, legacy: str) -> None:
    rest = {"rest_url": "https://fapi.binance.com"}
    for section, key in (("feed", "feed.url"), ("reference", "reference.url")):
        overrides: dict[str, dict[str, Any]] = {"instrument": USDM, "feed": {
            "recordings": [], "url": "wss://fstream.binance.com", **rest}}
        if section == "reference":
            overrides["reference"] = {**USDM, "url": legacy, **rest}
        else:
            overrides["feed"]["url"] = legacy
        with pytest.raises(ConfigError) as err:
            load_config(write_config(tmp_path, overrides))
        assert (f"{key}: {legacy!r} is a legacy USD-M market-data URL, retired by Binance on "
                f"2026-04-23: use \"wss://fstream.binance.com\"") in str(err.value)
    # the root, and a relay's or the sim's URL with a path of its own, stay accepted
    for url in ("wss://fstream.binance.com", "wss://fstream.binance.com/",
                "ws://127.0.0.1:9443/relay"):
        config = load_config(write_config(tmp_path, {"instrument": USDM, "feed": {
            "recordings": [], "url": url, **rest}}))
        assert config.feed.url == url


def test_daemon_on_binance_usdm_routes_builds_its_book_and_sees_trades(
        tmp_path: Path, routes_sim: int) -> None:
    metrics = free_port()
    d = Daemon(usdm_config(tmp_path, routes_sim, metrics={"port": metrics}))
    try:
        d.wait_event("metrics_listening")

        def every_stream_seen() -> str:
            text = scrape(metrics)
            kinds = [value(text, f'mmdaemon_feed_events_total{{kind="{kind}"}}')
                     for kind in ("snapshot", "depth_update", "trade", "ticker")]
            return text if all(kinds) and value(text, "mmdaemon_book_synced") == 1 else ""

        text = wait_for(every_stream_seen, 60, "depth, snapshot, trades and tickers decoded")
        assert value(text, "mmdaemon_book_gaps_total") == 0
        connected = [e for e in d.events if e.get("event") == "feed_connected"]
        assert connected and "/public/stream?streams=btcusdt@depth@0ms/btcusdt@bookTicker" in \
            connected[0]["url"] and "/market/stream?streams=btcusdt@trade" in connected[0]["url"]
        assert d.stop() == 0
    finally:
        if d.proc.poll() is None:
            d.kill()


def test_record_on_binance_usdm_routes_writes_a_recording_verify_book_accepts(
        tmp_path: Path, routes_sim: int) -> None:
    out = tmp_path / "recorded"
    rec = mmdaemon("record", "--config", str(usdm_config(tmp_path, routes_sim)), str(out))
    try:
        wait_recorded(out, 3_000)
        rec.send_signal(signal.SIGTERM)
        assert rec.wait(20) == 0
    finally:
        if rec.poll() is None:
            rec.kill()
    files = sorted(out.glob("btcusdt_*.gz"))
    lines = [line for p in files for line in gz_lines(p)]
    # one line format for frames of both connections, in one receive-time order
    streams = {m.group(1) for line in lines
               if (m := re.search(rb'"stream":"btcusdt@([A-Za-z0-9@]+)"', line))}
    assert streams == {b"depth@0ms", b"trade", b"bookTicker"}
    stamps = [int(line.split(b" ", 1)[0]) for line in lines if line[:1].isdigit()]
    assert stamps == sorted(stamps)
    verify = subprocess.run([sys.executable, "-m", "mmdaemon", "verify-book", *map(str, files),
                             "--venue", "binance-usdm", "--json"],
                            capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stdout + verify.stderr[-2000:]
    v = orjson.loads(verify.stdout)
    assert v["gaps"] == 0 and v["mismatches"] == 0 and v["compared"] > 20
    assert v["synced_at_end"]
