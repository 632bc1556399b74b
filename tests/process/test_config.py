"""Config validation: every error names the key and the expected form; exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mmdaemon.config import ConfigError
from mmdaemon.config_file import load_config
from tests.conftest import REPO
from tests.helpers import write_config


def test_shipped_configs_load(tmp_path: Path) -> None:
    dry = load_config(REPO / "config" / "dryrun.toml")
    assert dry.instrument.symbol == "BTCUSDT" and dry.exchange.adapter == "paper"
    assert all(Path(p).is_file() for p in dry.feed.recordings)
    assert dry.strategy.sizing.base_size_lots == 100000
    live = load_config(REPO / "config" / "example-live.toml")
    assert live.feed.url.startswith("wss://") and live.state.durable
    # the spread prices in the exchange's maker fee unless told otherwise
    rebate = load_config(write_config(tmp_path, {"exchange": {"maker_fee_bps": "-0.5"}}))
    assert rebate.strategy.spread.maker_fee_bps == -0.5
    # the whole graceful stop: the runbook's 10 s, within the unit's TimeoutStopSec
    assert dry.exchange.stop_timeout_ms == live.exchange.stop_timeout_ms == 10_000


@pytest.mark.parametrize(
    ("overrides", "drop", "message"),
    [
        ({}, ("risk.max_loss",), "risk.max_loss: missing"),
        ({}, ("instrument",), "instrument: missing (expected a table)"),
        ({"risk": {"max_order_lots": "many"}}, (), "risk.max_order_lots: expected an integer"),
        ({"risk": {"inventory_hard_lots": -5}}, (),
         "risk.inventory_hard_lots: expected a positive"),
        ({"risk": {"max_loss": "-5"}}, (), "risk.max_loss: expected a positive decimal"),
        ({"risk": {"max_drawdown": "0"}}, (), "risk.max_drawdown: expected a positive decimal"),
        ({"risk": {"price_band_bps": float("nan")}}, (),
         "risk.price_band_bps: expected a finite number"),
        ({"strategy.sizing": {"base_size_lots": 2_000_000}}, (),
         "strategy.sizing.base_size_lots: expected <= risk.max_order_lots"),
        ({"exchange": {"maker_fee_bps": "20000"}}, (), "exchange.maker_fee_bps: expected"),
        ({"feed": {"recordings": [], "url": "ws://127.0.0.1:1"}}, (),
         "feed.rest_url: expected an http(s):// URL"),
        ({"feed": {"recordings": [], "url": "http://x", "rest_url": "http://x"}}, (),
         "feed.url: expected a ws:// or wss:// URL"),
        ({"exchange": {"adapter": "ftx"}}, (),
         "exchange.adapter: expected one of 'paper', 'binance'"),
        ({"exchange": {"adapter": "binance"}}, (),
         "exchange.ws_api_url: expected a ws:// or wss:// URL"),
        ({"exchange": {"client_id_prefix": "my_prefix!"}}, (),
         "exchange.client_id_prefix: expected 1-19 letters or digits"),
        ({"exchange": {"latency_ms": -1}}, (), "exchange.latency_ms: expected 0..60000 ms"),
        ({"exchange": {"stop_timeout_ms": 2999}}, (),
         "exchange.stop_timeout_ms: expected 3000..600000 ms"),
        ({"exchange": {"stop_timeout_ms": 600_001}}, (),
         "exchange.stop_timeout_ms: expected 3000..600000 ms"),
        ({"risk": {"stale_feed_ms": True}}, (), "risk.stale_feed_ms: expected an integer"),
        ({"risk": {"colour": 1}}, (), "risk.colour: unknown key"),
        # checked less often than the limit, a silent feed outlives it (60 s: never halted
        # in a 6 s silence with a 1 s limit)
        ({"risk": {"stale_feed_ms": 1000, "supervisor_interval_ms": 1001}}, (),
         "risk.supervisor_interval_ms: expected at most risk.stale_feed_ms (1000), got 1001: "
         "the breakers are checked this often, a silent feed would outlive its limit"),
        ({"feed": {"speed": "fast"}}, (), "feed.speed: speed must be a positive number"),
        ({"strategy.skew": {"mode": "sideways"}}, (), "strategy.skew"),
        ({"strategy.adverse": {"horizons_s": ["a"]}}, (),
         "strategy.adverse.horizons_s[0]: expected a finite number"),
        ({"strategy.adverse": {"recent_half_life_s": 7200.0}}, (),
         "AdverseParams.recent_half_life_s: expected seconds <= baseline_half_life_s"),
        ({"strategy.spread": {"adverse_rate_threshold": 0.6}}, (),
         "strategy.spread.adverse_rate_threshold: unknown key"),
        ({"instrument": {"tick_size": "abc"}}, (),
         "instrument.tick_size: expected a positive decimal, got 'abc'"),
        ({"risk": {"inventory_soft_lots": 10**9}}, (), "risk.inventory_soft_lots: expected <="),
        ({"strategy.spread": {"maker_fee_bps": 1.0}}, (),
         "strategy.spread.maker_fee_bps: expected the same as exchange.maker_fee_bps"),
        # another Binance venue's URL: futures quoted off the spot book, or the reverse
        ({"instrument": {"venue": "binance-usdm"}, "feed": {
            "recordings": [], "url": "wss://stream.binance.com:9443",
            "rest_url": "https://fapi.binance.com"}}, (),
         "feed.url: 'wss://stream.binance.com:9443' is binance-spot's, but instrument.venue "
         "is 'binance-usdm'"),
        ({"feed": {"recordings": [], "url": "wss://stream.binance.com:9443",
                   "rest_url": "https://fapi.binance.com"}}, (),
         "feed.rest_url: 'https://fapi.binance.com' is binance-usdm's"),
        ({"instrument": {"venue": "binance-usdm"}, "exchange": {
            "adapter": "binance", "ws_api_url": "ws://127.0.0.1:1/ws-api/v3"}}, (),
         "exchange.ws_api_url: 'ws://127.0.0.1:1/ws-api/v3' is binance-spot's"),
        ({"exchange": {"adapter": "binance",
                       "ws_api_url": "wss://ws-fapi.binance.com/ws-fapi/v1"}}, (),
         "exchange.ws_api_url: 'wss://ws-fapi.binance.com/ws-fapi/v1' is binance-usdm's"),
        ({"exchange": {"adapter": "binance", "ws_api_url": "ws://127.0.0.1:1/ws-api/v3",
                       "user_stream_url": "wss://fstream.binance.com/private/ws"}}, (),
         "exchange.user_stream_url: only USD-M futures use it"),
        # Binance split the USD-M WebSocket URLs (/public, /market, /private) and retired
        # the legacy ones on 2026-04-23: user data is at /private only
        ({"instrument": {"venue": "binance-usdm"}, "exchange": {
            "adapter": "binance", "ws_api_url": "ws://127.0.0.1:1/ws-fapi/v1",
            "user_stream_url": "wss://fstream.binance.com/ws"}}, (),
         "exchange.user_stream_url: 'wss://fstream.binance.com/ws' is a legacy USD-M "
         "WebSocket URL, retired by Binance on 2026-04-23: use "
         "\"wss://fstream.binance.com/private/ws\""),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, overrides: dict[str, Any],
                                  drop: tuple[str, ...], message: str) -> None:
    path = write_config(tmp_path, overrides, drop=drop)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value)


@pytest.mark.parametrize("command", ["run", "replay"])
def test_bad_config_exits_2_with_the_key_in_the_message(tmp_path: Path, command: str) -> None:
    path = write_config(tmp_path, {"risk": {"max_open_orders": -1}})
    args = [command, "--config", str(path)]
    if command == "replay":
        args.insert(1, str(REPO / "data" / "binance-spot-btcusdt" / "btcusdt_20240808.gz"))
    proc = subprocess.run([sys.executable, "-m", "mmdaemon", *args], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert "risk.max_open_orders: expected a positive number, got -1" in proc.stderr


@pytest.mark.parametrize("venue", ["lobster"])
def test_a_venue_the_adapter_cannot_trade_is_refused_listing_what_is_supported(
        tmp_path: Path, venue: str) -> None:
    path = write_config(tmp_path, {"instrument": {"venue": venue}, "exchange": {
        "adapter": "binance", "ws_api_url": "ws://127.0.0.1:1/ws-api/v3"}})
    proc = subprocess.run([sys.executable, "-m", "mmdaemon", "run", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert (f"exchange.adapter: 'binance' cannot trade instrument.venue {venue!r} (not "
            f"implemented); the supported venue and adapter combinations are binance-spot: "
            f"paper or binance; binance-usdm: paper or binance; lobster: paper") in proc.stderr
    # the same venue with the paper adapter is a valid config
    assert load_config(write_config(tmp_path, {"instrument": {"venue": venue}})).exchange.adapter \
        == "paper"


@pytest.mark.parametrize(("venue", "symbol"), [("binance-spot", "btcusdt"),
                                               ("binance-usdm", "BTC-USDT"),
                                               ("binance-spot", "BTCUSDT ")])
def test_a_symbol_binance_cannot_name_is_refused_at_config_time(
        tmp_path: Path, venue: str, symbol: str) -> None:
    """Binance names symbols in upper case, letters and digits (USD-M delivery contracts
    add '_'): another spelling matches no frame, no exchangeInfo entry, and a replay of it
    ran to 'no frame decoded' where check-config had said OK."""
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path, {"instrument": {"venue": venue, "symbol": symbol}}))
    assert str(err.value) == (f"instrument.symbol: expected Binance's name of the symbol, "
                              f"upper-case letters and digits such as 'BTCUSDT', got {symbol!r}")
    delivery = write_config(tmp_path, {"instrument": {"venue": "binance-usdm",
                                                      "symbol": "BTCUSDT_240927"}})
    assert load_config(delivery).instrument.symbol == "BTCUSDT_240927"


def test_unreadable_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[risk\nmax_loss = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


@pytest.mark.parametrize("command", ["run", "check-config"])
def test_a_config_that_is_not_a_regular_file_is_refused_without_reading_it(
        tmp_path: Path, command: str) -> None:
    """A FIFO is refused, not waited on for a writer; a device (``/dev/zero``) is refused,
    not read until memory runs out. (Run in a subprocess: before, either never returned.)"""
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        args = [str(path)] if command == "check-config" else ["--config", str(path)]
        proc = subprocess.run([sys.executable, "-m", "mmdaemon", command, *args],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2
        assert f"{path}: cannot read config: not a regular file" in proc.stderr


def test_kill_refuses_a_stale_pid_file(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "mmdaemon.pid").write_text("1\n")  # init, not us
    proc = subprocess.run([sys.executable, "-m", "mmdaemon", "kill", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "(stale pid file names pid 1)" in proc.stderr
