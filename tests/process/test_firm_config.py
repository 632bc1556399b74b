"""The [firm] section: validated like the rest (the key and the expected form in every
error, unknown keys refused), secrets never in the file; kill/rearm --global refuse to run
without it and fail clearly when Redis is unreachable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from mmdaemon.config import ConfigError
from mmdaemon.config_file import load_config
from mmdaemon.exchange.credentials import CredentialsError, load_redis_password
from tests.conftest import REPO
from tests.helpers import first_lines, systemd_credential, write_config, write_secret
from tests.process.test_record_sim_cli import free_port

FIRM: dict[str, Any] = {"enabled": True, "desk": "desk1", "instance": "btc-a",
                        "base_asset": "BTC", "quote_asset": "USDT"}


def test_example_and_enabled_firm_load(tmp_path: Path) -> None:
    assert not load_config(REPO / "config" / "example-live.toml").firm.enabled
    (tmp_path / "ca.pem").write_text("")
    config = load_config(write_config(tmp_path, {"firm": {
        **FIRM, "redis_url": "rediss://redis.internal:6380/2", "tls_ca_file": "ca.pem",
        "password": "env", "on_redis_lost": "kill", "desk_max_loss": "1000",
        "asset_limits": [{"asset": "BTC", "max_notional": "250000"},
                         {"asset": "ETH", "max_notional": "1e5", "action": "kill"}]}}))
    firm = config.firm
    assert firm.enabled and firm.on_redis_lost == "kill"
    assert firm.tls_ca_file == str(tmp_path / "ca.pem")  # relative to the config file
    assert [(a.asset, a.max_notional, a.action) for a in firm.asset_limits] == [
        ("BTC", "250000", "reduce"), ("ETH", "1e5", "kill")]


@pytest.mark.parametrize(("firm", "message"), [
    ({"colour": "red"}, "firm.colour: unknown key"),
    ({"redis_url": "http://x:1"}, "firm.redis_url: expected redis://host:port/db"),
    ({"redis_url": "redis://:hunter2@x:6379"}, "firm.redis_url: expected no user or password"),
    ({"redis_url": "redis://x:99999"}, "firm.redis_url: expected a port"),
    ({"redis_url": "redis://h:6379/0?password=hunter2"}, "firm.redis_url: expected redis://"
     "host:port/db or rediss://host:port/db with no query string"),
    ({"redis_url": "rediss://h:6380/0?username=u&password=hunter2"},
     "with no query string or fragment; give credentials as firm.username"),
    ({"redis_url": "redis://h:6379/0?socket_timeout=5"}, "with no query string"),
    ({"redis_url": "redis://h:6379/0?"}, "with no query string"),
    ({"tls_ca_file": "ca.pem"}, "firm.tls_ca_file: expected only with a rediss://"),
    ({"desk": ""}, "firm.desk: expected 1-64 letters"),
    ({"instance": "a:b"}, "firm.instance: expected 1-64 letters"),
    ({"base_asset": "B-T"}, "firm.base_asset: expected an asset code"),
    ({"heartbeat_ms": 0}, "firm.heartbeat_ms: expected 1..3600000 ms"),
    ({"heartbeat_ms": 1000, "ttl_ms": 1500}, "firm.ttl_ms: expected >= 2 x firm.heartbeat_ms"),
    ({"grace_ms": 100, "heartbeat_ms": 500}, "firm.grace_ms: expected >= firm.heartbeat_ms"),
    ({"on_redis_lost": "ignore"}, "firm.on_redis_lost: expected one of 'halt', 'kill'"),
    ({"desk_max_loss": "-1"}, "firm.desk_max_loss: expected a positive decimal"),
    ({"desk_max_drawdown": "0"}, "firm.desk_max_drawdown: expected a positive decimal"),
    ({"desk_max_loss_action": "panic"}, "firm.desk_max_loss_action: expected one of"),
    ({"asset_limits": [{"asset": "BTC"}]}, "firm.asset_limits[0].max_notional: missing"),
    ({"asset_limits": [{"asset": "BTC", "max_notional": "x"}]},
     "firm.asset_limits[0].max_notional: expected a positive decimal"),
    ({"asset_limits": [{"asset": "BTC", "max_notional": "1", "action": "halt"}]},
     "firm.asset_limits[0].action: expected one of 'reduce', 'kill'"),
    ({"asset_limits": [{"asset": "BTC", "max_notional": "1"},
                       {"asset": "BTC", "max_notional": "2"}]},
     "firm.asset_limits[1].asset: expected one limit per asset"),
    ({"asset_limits": [{"asset": "BTC", "max_notional": "1", "size": 3}]},
     "firm.asset_limits[0].size: unknown key"),
])
def test_bad_firm_config_names_the_key(tmp_path: Path, firm: dict[str, Any],
                                       message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path, {"firm": {**FIRM, **firm}}))
    assert message in str(err.value)
    assert "hunter2" not in str(err.value)


def test_redis_password_sources(tmp_path: Path) -> None:
    assert load_redis_password("", {}) is None
    assert load_redis_password("env", {"MMDAEMON_REDIS_PASSWORD": "s3cret"}) == "s3cret"
    with pytest.raises(CredentialsError, match="MMDAEMON_REDIS_PASSWORD is not set"):
        load_redis_password("env", {})
    systemd_credential(tmp_path, "redis.toml", 'password = "s3cret"\n')
    secret = load_redis_password("redis.toml", {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert secret == "s3cret" and "s3cret" not in repr(secret)
    write_secret(tmp_path / "empty.toml", "")
    with pytest.raises(CredentialsError, match="has no string 'password'") as err:
        load_redis_password(str(tmp_path / "empty.toml"), {})
    assert "s3cret" not in str(err.value)


def global_cli(command: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmdaemon", command, "--global", "--config",
                           str(config)], capture_output=True, text=True, timeout=60)


def test_global_switch_needs_the_firm_section_and_says_when_redis_is_unreachable(
    tmp_path: Path
) -> None:
    off = global_cli("kill", write_config(tmp_path, name="off.toml"))
    assert off.returncode == 2 and "firm.enabled: expected true" in off.stderr
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    down = write_config(tmp_path, {"firm": {**FIRM, "redis_url": url}}, name="down.toml")
    for command in ("kill", "rearm"):
        proc = global_cli(command, down)
        assert proc.returncode == 1, proc.stderr
        assert f"Redis at {url} unreachable" in proc.stderr
        assert "NOT confirmed" in proc.stderr and proc.stdout == ""


def test_a_dry_run_never_joins_the_desk(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # unreachable: a live instance would halt
    recording = first_lines(tmp_path / "short.gz", 3000)
    config = write_config(tmp_path, {"firm": {**FIRM, "redis_url": url}})
    proc = subprocess.run([sys.executable, "-m", "mmdaemon", "replay", str(recording),
                           "--config", str(config), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert orjson.loads(proc.stdout)["orders"] > 0
    assert "firm_bus" not in proc.stderr


@pytest.mark.parametrize(("firm", "message"), [
    ({"quote_asset": "USDT"}, "firm.quote_asset: expected 'BTC', the quote asset of ETHBTC "
                              "(instrument.symbol), got 'USDT'"),
    ({"base_asset": "BTC", "quote_asset": "BTC"},
     "firm.base_asset: expected 'ETH', the base asset of ETHBTC (instrument.symbol), got 'BTC'"),
])
def test_firm_assets_that_are_not_the_instruments_are_refused(
        tmp_path: Path, firm: dict[str, Any], message: str) -> None:
    """An ETHBTC instance with the BTCUSDT example's assets: its heartbeats would publish a
    PnL and notional in BTC as USDT (summed into the desk's USDT loss and a USDT notional
    limit it can then never reach) and its ETH position as BTC exposure."""
    eth = {"symbol": "ETHBTC", "tick_size": "0.00000001", "lot_size": "0.00001",
           "min_notional": "0.005"}
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path, {"instrument": eth, "firm": {
            **FIRM, "base_asset": "ETH", **firm}}))
    assert message in str(err.value)
    ok = load_config(write_config(tmp_path, {"instrument": eth, "firm": {
        **FIRM, "base_asset": "eth", "quote_asset": "BTC"}}))
    assert ok.firm.enabled
