"""`mmdaemon sim --balance` and a credentials file's ``balances`` table, as a real process:
each account starts with what it was given, and bad input is refused at start (exit 2)
naming the argument and the form it takes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from mmdaemon.venues import binance_api as api
from mmdaemon.venues import binance_parse as parse
from tests.conftest import SPOT_FILES
from tests.process.test_record_sim_cli import free_port, mmdaemon, wait_for_line


def balances_of(port: int, key: str, secret: str) -> dict[str, tuple[str, str]]:
    """``account.status``'s balances of one account, asked of the sim."""

    async def ask() -> Any:
        async with connect(f"ws://127.0.0.1:{port}/ws-api/v3", proxy=None) as ws:
            await ws.send(api.account_status(
                request_id=1, creds=api.Credentials(key, secret),
                timestamp_ms=time.time_ns() // 1_000_000).decode())
            response = parse.parse_response(await ws.recv())
            assert isinstance(response, api.Response) and response.error is None, response
            return response.result

    result = asyncio.run(ask())
    return {b["asset"]: (b["free"], b["locked"]) for b in result["balances"]}


def credentials(path: Path, key: str, extra: str = "") -> Path:
    path.write_text(f'api_key = "{key}"\napi_secret = "{key}-secret"\n{extra}')
    path.chmod(0o600)
    return path


def test_every_account_starts_with_the_balances_given_and_a_file_overrides_its_own(
        tmp_path: Path) -> None:
    plain = credentials(tmp_path / "a.toml", "plainKey")
    own = credentials(tmp_path / "b.toml", "ownKey",
                      'balances = { BTC = "0.5", USDT = "250.25", BNB = "3" }\n')
    port = free_port()
    sim = mmdaemon("sim", str(SPOT_FILES[0]), "--port", str(port), "--speed", "5",
                   "--balance", "BTC=1", "--balance", "usdt=100000",
                   "--credentials", str(plain), "--credentials", str(own))
    try:
        wait_for_line(sim, b"sim_listening")
        assert balances_of(port, "plainKey", "plainKey-secret") == {
            "BTC": ("1.00000000", "0.00000000"), "USDT": ("100000.00000000", "0.00000000")}
        assert balances_of(port, "ownKey", "ownKey-secret") == {
            "BTC": ("0.50000000", "0.00000000"), "USDT": ("250.25000000", "0.00000000"),
            "BNB": ("3.00000000", "0.00000000")}
    finally:
        sim.kill()
        sim.wait()


def test_no_balance_is_zero_as_at_binance_and_the_log_says_how_to_give_one(
        tmp_path: Path) -> None:
    plain = credentials(tmp_path / "a.toml", "plainKey")
    port = free_port()
    sim = mmdaemon("sim", str(SPOT_FILES[0]), "--port", str(port), "--speed", "5",
                   "--credentials", str(plain))
    try:
        wait_for_line(sim, b"sim_account_empty")
        wait_for_line(sim, b"sim_listening")
        assert balances_of(port, "plainKey", "plainKey-secret") == {
            "BTC": ("0.00000000", "0.00000000"), "USDT": ("0.00000000", "0.00000000")}
    finally:
        sim.kill()
        sim.wait()


def refused(*args: str) -> str:
    """``mmdaemon sim`` with ``args``: it must exit 2 at once; its stderr."""
    run = subprocess.run([sys.executable, "-m", "mmdaemon", "sim", str(SPOT_FILES[0]),
                          "--port", str(free_port()), *args],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, (run.returncode, run.stderr[-2000:])
    return run.stderr


def test_bad_balances_are_refused_at_start_naming_the_fix(tmp_path: Path) -> None:
    assert "expected ASSET=AMOUNT such as USDT=100000, got 'BTC'" in refused(
        "--balance", "BTC")
    assert "balance of BTC given twice" in refused("--balance", "BTC=1", "--balance", "btc=2")
    assert "balance of USDT: expected a non-negative decimal amount" in refused(
        "--balance", "USDT=-5")
    # off the instrument's grid: BTCUSDT's lot is 0.00000001 BTC
    plain = credentials(tmp_path / "a.toml", "plainKey")
    assert "balance of BTC 0.000000001: expected a non-negative whole number of " \
        "0.00000001" in refused("--balance", "BTC=0.000000001", "--credentials", str(plain))
    floaty = credentials(tmp_path / "f.toml", "floatKey", "balances = { BTC = 0.1 }\n")
    assert "balances.BTC: expected the amount as a string such as \"0.5\"" in refused(
        "--credentials", str(floaty))
