"""``mmdaemon check-config`` and ``--version``: a config judged before it runs.

Run as the real command (a subprocess), on the shipped configs and on variants of the
dry-run config built by ``tests.helpers.write_config``.
"""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from mmdaemon import config_check
from mmdaemon.config_file import load_config
from mmdaemon.model import Instrument
from tests.conftest import REPO, SHARED_DATA, SPOT_FILES
from tests.helpers import gz_lines, rewrite, systemd_credential, write_config, write_gz

LOBSTER_DIR = SHARED_DATA / "lobster-amzn-l1"


def check(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmdaemon", "check-config", *args],
                          capture_output=True, text=True, timeout=60, cwd=cwd)


def review(config: Path, *args: str) -> dict[str, Any]:
    proc = check(str(config), "--json", *args)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = orjson.loads(proc.stdout)
    return result


def warned(result: dict[str, Any]) -> dict[str, str]:
    return {w["key"]: w["message"] for w in result["warnings"]}


def test_the_dry_run_config_is_valid_and_priced_from_its_recording(tmp_path: Path) -> None:
    result = review(REPO / "config" / "dryrun.toml")
    assert result["warnings"] == []
    # the first price of the bundled recording: the mid of its first bookTicker
    assert Decimal(result["price"]) == Decimal("61837.635")
    assert result["price_source"] == \
        f"first price of {SPOT_FILES[0]} (the config's feed.recordings)"
    effective = result["effective"]
    assert effective["strategy.sizing.base_size_lots"] == {
        "value": 100_000, "unit": "lots = 0.001 base"}
    assert effective["risk.max_loss"] == {"value": "50", "unit": "quote"}
    assert effective["feed.stale_after_ms"]["unit"] == "ms"
    assert effective["risk.max_orders_per_s"]["unit"] == "per second"
    # defaults the file leaves out are shown too
    assert effective["risk.supervisor_interval_ms"]["value"] == 100
    derived = result["derived"]
    assert derived["order size"] == "100,000 lots = 0.001 base = 61.84 quote"
    # 5 USDT / 61837.635 = 8,086 lots of 1e-8, up to the step of 1,000
    assert derived["smallest order"].startswith("9,000 lots = 0.00009 base")
    assert derived["price band (risk.price_band_bps)"] == "50 bps = 309.19 quote"


def test_the_human_output_ends_with_the_warnings(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"strategy.sizing": {"base_size_lots": 5000}})
    proc = check(str(config))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{config}: valid, 1 warning (at the end)"
    assert lines[-1].startswith("WARNING strategy.sizing.base_size_lots: 5,000 lots = "
                                "0.00005 base = 3.09 quote is below the instrument's "
                                "smallest order")
    assert "set it to at least 9000 lots" in lines[-1]
    assert "  strategy.sizing.base_size_lots = 5000  # lots = 0.00005 base" in lines


def test_an_order_below_min_notional_on_another_symbol_is_warned(tmp_path: Path) -> None:
    """The dry-run config moved to ETHUSDT: 0.001 ETH is about 2.5 USDT."""
    config = write_config(tmp_path, {"instrument": {"symbol": "ETHUSDT"}})
    messages = warned(review(config, "--price", "2534.17"))
    assert "no quote can become an order" in messages["strategy.sizing.base_size_lots"]
    assert "198000 lots" in messages["strategy.sizing.base_size_lots"]
    assert review(config, "--price", "25000")["warnings"] == []


def test_sides_that_shrink_below_the_minimum_are_warned(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"strategy.sizing": {"base_size_lots": 10000}})
    messages = warned(review(config))
    assert "strategy.sizing.base_size_lots" not in messages  # 6.18 USDT: above 5
    assert "the side that would grow it is not quoted" in messages[
        "strategy.sizing.growing_side_fraction"]
    assert "the side that reduces it is not quoted" in messages[
        "strategy.sizing.reduce_side_min_fraction"]


def test_a_size_off_the_step_is_warned(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"strategy.sizing": {"base_size_lots": 100_500}})
    assert "rounded down to 100000 lots" in warned(review(config))[
        "strategy.sizing.base_size_lots"]


def test_limits_that_clash(tmp_path: Path) -> None:
    at = write_config(tmp_path / "at", {"risk": {"inventory_soft_lots": 1_500_000}})
    assert "never REDUCING first" in warned(review(at))["risk.inventory_soft_lots"]
    above = write_config(tmp_path / "above", {"risk": {"inventory_soft_lots": 1_600_000}})
    proc = check(str(above))
    assert proc.returncode == 2
    assert "risk.inventory_soft_lots: expected <= risk.inventory_hard_lots" in proc.stderr


@pytest.mark.parametrize(("band", "expected"), [
    (0.5, "every order is blocked"),  # the half-spread alone is 1.39 bps
    (2.0, "near the limit"),  # half-spread 1.39 + shift 1.0 at the limit = 2.39 bps
])
def test_a_price_band_narrower_than_the_spread_is_warned(tmp_path: Path, band: float,
                                                         expected: str) -> None:
    config = write_config(tmp_path, {"risk": {"price_band_bps": band}})
    assert expected in warned(review(config))["risk.price_band_bps"]


def test_the_warned_half_spread_is_the_quoters_own(tmp_path: Path) -> None:
    """The figure the band is judged against comes from the quoting components, not a
    formula of its own: a wider base spread moves it by exactly half the change."""
    narrow = config_check.review(load_config(write_config(tmp_path / "a", {})),
                                 Decimal("61837.635"))
    wide = config_check.review(load_config(write_config(
        tmp_path / "b", {"strategy.spread": {"base_bps": 3.0}})), Decimal("61837.635"))

    def bps(r: config_check.Review) -> float:
        return float(r.derived["half-spread at start (prior volatility)"].split()[0])

    assert bps(wide) - bps(narrow) == pytest.approx(1.0, abs=1e-3)


def test_named_files_that_are_missing_are_warned(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"feed": {"recordings": [str(tmp_path / "gone.gz")]}})
    result = review(config, "--price", "60000")
    assert warned(result)["feed.recordings[0]"] == f"no such file: {tmp_path / 'gone.gz'}"


def test_a_latency_file_a_dry_run_would_refuse_is_warned(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"exchange": {"latency_file": "gone.json"}})
    message = warned(review(config, "--price", "60000"))["exchange.latency_file"]
    assert str(tmp_path / "gone.json") in message and "cannot read it" in message
    (tmp_path / "lat.json").write_text('{"format": "mmdaemon-latency", "version": 1, '
                                       '"entry_ns": [1000000, 2000000]}')
    config = write_config(tmp_path, {"exchange": {"latency_file": "lat.json"}})
    result = review(config, "--price", "60000")
    assert "exchange.latency_file" not in warned(result)
    assert "draws entry from 2 samples" in result["derived"]["exchange.latency_file"]


def test_without_a_price_the_notional_rules_are_not_claimed_checked(tmp_path: Path) -> None:
    result = review(REPO / "config" / "sim.toml")
    assert result["price"] is None
    assert "not checked" in warned(result)["--price"]
    assert "order size" in result["derived"]


def test_a_recording_gives_the_reference_price(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"feed": {"recordings": [str(tmp_path / "gone.gz")]}})
    result = review(config, "--recording", str(SPOT_FILES[1]))
    # the second file has no snapshot: its first price is a ticker's mid
    assert 61_000 < Decimal(result["price"]) < 62_000
    assert result["price_source"] == f"first price of {SPOT_FILES[1]}"


def test_lobster_config_priced_from_a_lobster_pair() -> None:
    if not LOBSTER_DIR.exists():
        pytest.skip(f"{LOBSTER_DIR} not present: the LOBSTER sample lives in ../shared only")
    message, orderbook = sorted(LOBSTER_DIR.glob("*_message_1.csv"))[0], sorted(
        LOBSTER_DIR.glob("*_orderbook_1.csv"))[0]
    result = review(REPO / "config" / "lobster-amzn.toml", "--recording", str(message),
                    "--recording", str(orderbook))
    assert Decimal("200") < Decimal(result["price"]) < Decimal("250")
    assert result["warnings"] == []


@pytest.mark.parametrize(("args", "message"), [
    (["--price", "abc"], "--price: expected a plain decimal number in the quote currency, "
                         "from one tick (0.01) to 4,611,686,018,427,387,903 ticks, got 'abc'"),
    (["--price", "-3"], "got '-3'"),
    (["--price", "0.001"], "got '0.001'"),  # below one tick
    (["--price", "1e400"], "got '1e400'"),
    (["--price", "1e-400"], "got '1e-400'"),
    (["--price", "60_000"], "got '60_000'"),
    (["--price", " 60000"], "got ' 60000'"),
    (["--price", "NaN"], "got 'NaN'"),
    (["--price", "99999999999999999999"], "got '99999999999999999999'"),  # beyond MAX_UNITS
    (["--recording", "/nonexistent.gz"], "--recording: no such file: /nonexistent.gz"),
])
def test_unusable_arguments_exit_2(args: list[str], message: str) -> None:
    proc = check(str(REPO / "config" / "dryrun.toml"), *args)
    assert proc.returncode == 2
    assert message in proc.stderr and proc.stdout == ""


def test_an_invalid_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"risk": {"max_loss": "-5"}})
    proc = check(str(config))
    assert proc.returncode == 2 and proc.stdout == ""
    assert "risk.max_loss: expected a positive decimal (quote currency), got '-5'" in \
        proc.stderr


def test_min_order_lots_is_the_smallest_size_every_rule_accepts() -> None:
    inst = Instrument("X", "0.01", "0.001", size_step_lots=5, min_size_lots=7,
                      min_notional="10")
    for price in (Decimal("0.5"), Decimal("3"), Decimal("1000"), Decimal("123.45")):
        lots = config_check.min_order_lots(inst, price)
        assert lots % 5 == 0 and lots >= 7
        assert price * inst.lot_size * lots >= 10
        smaller = lots - 5
        assert smaller < 7 or price * inst.lot_size * smaller < 10


def test_version_names_the_package_python_and_hot_loops() -> None:
    from importlib.metadata import version

    proc = subprocess.run([sys.executable, "-m", "mmdaemon", "--version"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"mmdaemon {version('mmdaemon')} (Python ")
    assert "hot loops: " in proc.stdout


def test_the_default_config_is_found_from_any_directory(tmp_path: Path) -> None:
    """``replay`` without ``--config`` takes the shipped dry-run config wherever it runs."""
    proc = subprocess.run(
        [sys.executable, "-m", "mmdaemon", "replay", str(SPOT_FILES[0]), "--json"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert orjson.loads(proc.stdout)["quotes"] > 0


def _review_env(config: Path, env: dict[str, str]) -> dict[str, Any]:
    import os

    base = {k: v for k, v in os.environ.items()
            if k not in ("MMDAEMON_API_KEY", "MMDAEMON_API_SECRET", "CREDENTIALS_DIRECTORY")}
    proc = subprocess.run([sys.executable, "-m", "mmdaemon", "check-config", str(config),
                           "--price", "60000", "--json"], capture_output=True, text=True,
                          timeout=60, env={**base, **env})
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = orjson.loads(proc.stdout)
    return result


def test_credentials_that_cannot_be_read_are_warned_and_never_shown(tmp_path: Path) -> None:
    sim = REPO / "config" / "sim.toml"
    assert "MMDAEMON_API_KEY is not set" in warned(_review_env(sim, {}))["exchange.credentials"]
    found = _review_env(sim, {"MMDAEMON_API_KEY": "k-visible", "MMDAEMON_API_SECRET": "s3cr3t"})
    assert "exchange.credentials" not in warned(found)
    assert "s3cr3t" not in orjson.dumps(found).decode()


def test_a_credentials_file_for_the_service_is_judged_only_where_it_exists(
        tmp_path: Path) -> None:
    live = REPO / "config" / "example-live.toml"  # credentials = "binance", for LoadCredential=
    outside = _review_env(live, {})
    assert "exchange.credentials" not in warned(outside)
    assert "not checked here" in outside["derived"]["exchange.credentials"]
    (tmp_path / "creds").mkdir()
    inside = _review_env(live, {"CREDENTIALS_DIRECTORY": str(tmp_path / "creds")})
    assert "would stop at start" in warned(inside)["exchange.credentials"]
    systemd_credential(tmp_path / "creds", "binance", 'api_key = "k"\napi_secret = "hidden-s"\n')
    readable = _review_env(live, {"CREDENTIALS_DIRECTORY": str(tmp_path / "creds")})
    assert "exchange.credentials" not in warned(readable)
    assert "hidden-s" not in orjson.dumps(readable).decode()


def test_a_recording_option_does_not_swallow_the_config(tmp_path: Path) -> None:
    """``--recording R FILE`` judges FILE, not the default config."""
    config = write_config(tmp_path, {"strategy.sizing": {"base_size_lots": 5000}})
    proc = check("--recording", str(SPOT_FILES[0]), str(config), "--json")
    assert proc.returncode == 0, proc.stderr
    result = orjson.loads(proc.stdout)
    assert result["config"] == str(config)
    assert "strategy.sizing.base_size_lots" in warned(result)


def test_parameters_out_of_range_are_a_warning_not_a_crash(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"strategy.volatility": {"prior_annual_vol": 1e300}})
    result = review(config)
    assert "the quoter would quote nothing" in warned(result)["strategy"]


def test_a_recording_that_does_not_fit_the_instrument_is_warned(tmp_path: Path) -> None:
    """A USD-M grid (tick 0.1) against the spot recording (prices in cents): the frames whose
    prices are off the grid do not decode, and check-config says so."""
    config = write_config(tmp_path, {"instrument": {"venue": "binance-usdm",
                                                    "tick_size": "0.1"}})
    message = warned(review(config, "--recording", str(SPOT_FILES[0])))["instrument"]
    assert "frames of the recording do not decode with this instrument" in message
    assert "not a multiple of 0.1" in message


def test_no_price_on_the_grid_exits_2_saying_why(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"instrument": {"tick_size": "1000"}})
    proc = check(str(config), "--recording", str(SPOT_FILES[0]))
    assert proc.returncode == 2
    assert "no price in" in proc.stderr and "not a multiple of 1000" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_another_symbols_recording_is_warned(tmp_path: Path) -> None:
    """The config trades BTCUSDT; the recording is of ETHUSDT (the bundled one rewritten)."""
    recording = write_gz(tmp_path / "eth.gz", rewrite(gz_lines(SPOT_FILES[0])[:2000],
                                                      "ETHUSDT"))
    proc = check(str(REPO / "config" / "dryrun.toml"), "--recording", str(recording))
    assert proc.returncode == 2  # nothing of BTCUSDT: no price at all
    assert "symbol 'ETHUSDT', expected 'BTCUSDT'" in proc.stderr


FIRM = {"enabled": True, "redis_url": "rediss://redis.internal:6380/0", "desk": "d1",
        "instance": "i1", "base_asset": "BTC", "quote_asset": "USDT"}


def test_a_password_typed_where_its_source_belongs_is_not_shown(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"firm": {**FIRM, "password": "Tr0ub4dor&3-horse"}})
    proc = check(str(config), "--json")
    assert proc.returncode == 0, proc.stderr
    assert "Tr0ub4dor" not in proc.stdout
    result = orjson.loads(proc.stdout)
    assert "may be the secret itself" in warned(result)["firm.password"]
    assert result["effective"]["firm.password"]["value"].startswith("<hidden")
    human = check(str(config))
    assert "Tr0ub4dor" not in human.stdout + human.stderr


def test_a_missing_ca_file_is_warned(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"firm": {**FIRM, "tls_ca_file": "ca.pem"}})
    assert warned(review(config))["firm.tls_ca_file"] == f"no such file: {tmp_path / 'ca.pem'}"
    (tmp_path / "ca.pem").write_text("not checked beyond being there")
    assert "firm.tls_ca_file" not in warned(review(config))


def test_one_open_order_cannot_quote_two_sides(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"risk": {"max_open_orders": 1}})
    assert "the second side of every quote is blocked" in warned(review(config))[
        "risk.max_open_orders"]


def test_a_reader_that_goes_away_gets_no_traceback() -> None:
    """``mmdaemon check-config | head -2``: the pipe closes before the output ends."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    try:
        proc = subprocess.run([sys.executable, "-m", "mmdaemon", "check-config",
                               str(REPO / "config" / "dryrun.toml")], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr


def test_a_btc_quoted_orders_notional_is_shown_to_its_tick_not_to_the_cent(
        tmp_path: Path) -> None:
    """ETHBTC at 0.06183764 BTC (tick 1e-8): the order of 1 ETH is 0.06183764 BTC and the
    smallest order 0.09 ETH is 0.00556539 BTC, where rounding to the cent read 0.06 and
    0.01 quote (the smallest order shown above what it is, twice the minimum notional)."""
    config = write_config(tmp_path, {
        "instrument": {"symbol": "ETHBTC", "tick_size": "0.00000001", "lot_size": "0.00001",
                       "min_notional": "0.005"},
        "risk": {"max_loss": "0.05", "max_drawdown": "0.05"}})
    derived = review(config, "--price", "0.061837635")["derived"]
    assert derived["order size"] == "100,000 lots = 1 base = 0.06183764 quote"
    # 0.005 BTC / 0.061837635 = 0.0809 ETH, up to the step of 0.01 ETH
    assert derived["smallest order"] == "9,000 lots = 0.09 base = 0.00556539 quote"


def test_a_reference_quoted_in_another_currency_is_warned_about(tmp_path: Path) -> None:
    """ETHBTC (in BTC) priced off the BTCUSDT perpetual (in USDT): lead_lag adds the
    reference's mid, in USDT, to a basis in BTC; the replay halts on a negative fair value
    (strategy_error) at once. check-config said "valid, 0 warnings"."""
    usdm = SHARED_DATA / "binance-usdm-btcusdt" / "btcusdt_20240808.gz"
    config = write_config(tmp_path, {
        "instrument": {"symbol": "ETHBTC", "tick_size": "0.00000001", "lot_size": "0.00001",
                       "min_notional": "0.005"},
        "risk": {"max_loss": "0.05", "max_drawdown": "0.05"},
        "reference": {"venue": "binance-usdm", "symbol": "BTCUSDT", "tick_size": "0.1",
                      "lot_size": "0.001", "recordings": [str(usdm)]},
        "strategy.fair_value": {"mode": "lead_lag", "local_mode": "weighted_mid"}})
    message = warned(review(config, "--price", "0.061837635"))["reference.symbol"]
    assert message.startswith("'BTCUSDT' is quoted in USDT, the instrument 'ETHBTC' in BTC"), \
        message
