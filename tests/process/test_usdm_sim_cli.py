"""``mmdaemon sim --venue binance-usdm`` as a real process: two recordings of two symbols on
one port, accounts with the ``--balance`` they were given, SIGTERM ends it with 0; a
command line it cannot serve is exit 2 naming the option and the fix."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.client import connect

from mmdaemon.venues import binance_api as api
from tests.conftest import SPOT_FILES
from tests.helpers import gz_lines, rewrite, write_gz
from tests.process.test_record_sim_cli import free_port, wait_for_line

KEY, SECRET = "usdmProcKey", "usdm-proc-secret-never-in-logs"


def usdm_sim(*args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MMDAEMON_API_KEY": KEY, "MMDAEMON_API_SECRET": SECRET}
    return subprocess.Popen([sys.executable, "-m", "mmdaemon", "sim", "--venue",
                             "binance-usdm", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)


def account_status(port: int) -> dict[str, object]:
    async def ask() -> dict[str, object]:
        async with connect(f"ws://127.0.0.1:{port}/ws-fapi/v1", proxy=None) as ws:
            params: dict[str, object] = {"apiKey": KEY, "timestamp": time.time_ns() // 10**6}
            params["signature"] = api.sign(SECRET, params)
            await ws.send(orjson.dumps({"id": "a", "method": "v2/account.status",
                                        "params": params}).decode())
            answer: dict[str, object] = orjson.loads(await ws.recv())
            return answer

    return asyncio.run(ask())


def test_two_symbols_with_their_balances_on_one_port_until_sigterm(
        usdm_file: Path, tmp_path: Path) -> None:
    eth = write_gz(tmp_path / "ethusdt.gz", rewrite(gz_lines(usdm_file), "ETHUSDT"))
    port = free_port()
    proc = usdm_sim(str(usdm_file), str(eth), "--port", str(port), "--speed", "10",
                    "--balance", "USDT=5000", "--funding-interval", "1s")
    try:
        wait_for_line(proc, b"sim_listening")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/fapi/v1/exchangeInfo",
                                    timeout=5) as response:
            info = orjson.loads(response.read())
            assert int(response.headers["X-MBX-USED-WEIGHT-1M"]) >= 1
        assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "ETHUSDT"]
        answer = account_status(port)
        assert answer["status"] == 200, answer
        result = answer["result"]
        assert isinstance(result, dict)
        assert Decimal(result["totalWalletBalance"]) == 5000
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        out = proc.stdout.read() if proc.stdout else b""
        assert SECRET.encode() not in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(("args", "says"), [
    (["--funding-rate", "0.001"], "--funding-interval, --funding-rate: only with --venue "
                                  "binance-usdm"),
    (["--funding-interval", "30s"], "--funding-interval, --funding-rate: only with --venue "
                                    "binance-usdm"),
])
def test_futures_options_on_the_spot_sim_are_exit_2_not_ignored(
        args: list[str], says: str) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "mmdaemon", "sim",
                             str(SPOT_FILES[0]), "--port", str(free_port()), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert says in err.decode()


@pytest.mark.parametrize(("args", "says"), [
    (["--balance", "BTC=1"], "--balance: a USD-M account holds USDT only, not BTC"),
    (["--balance", "USDT=-5"], "expected a non-negative decimal amount"),
    (["--funding-interval", "0"], "--funding-interval: expected a positive duration"),
    (["--funding-interval", "8 hours"], "--funding-interval: expected a positive duration"),
    (["--funding-rate", "lots"], "--funding-rate: expected a fraction such as 0.0001"),
    (["--reference", "x.gz"], "--reference: only with --venue binance-spot"),
])
def test_a_command_line_the_usdm_sim_cannot_serve_is_exit_2_naming_the_fix(
        usdm_file: Path, args: list[str], says: str) -> None:
    proc = usdm_sim(str(usdm_file), "--port", str(free_port()), *args)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert says in err.decode()


def test_a_symbol_the_usdt_margined_sim_cannot_settle_is_exit_2_not_served_as_usdt(
        usdm_file: Path, tmp_path: Path) -> None:
    """ETHUSDC (a USDC-margined contract at Binance): the sim's accounts hold USDT only, and
    its exchangeInfo named baseAsset 'ETHUSDC', quoteAsset 'USDT' for it."""
    usdc = write_gz(tmp_path / "ethusdc.gz", rewrite(gz_lines(usdm_file), "ETHUSDC"))
    proc = usdm_sim(str(usdc), "--port", str(free_port()))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert "ETHUSDC: the futures sim serves USDT-margined symbols only" in err.decode()
