"""`mmdaemon sim` (spot) serves a recording of any symbol: the symbol and its grids come from
the frames, as verify-book and the USD-M sim find them, not from BTCUSDT's constants.

The other symbol is the bundled recording rewritten (tests.helpers.rewrite: renamed, prices
/ 25, sizes x 1,000) as ETHBTC, a pair whose quote asset is not USDT.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from tests.conftest import SPOT_FILES
from tests.helpers import gz_lines, rewrite, write_gz
from tests.process.test_record_sim_cli import free_port, mmdaemon, wait_for_line


@pytest.fixture(scope="module")
def ethbtc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ethbtc")
    return write_gz(folder / "ethbtc_20240808.gz", rewrite(gz_lines(SPOT_FILES[0]), "ETHBTC"))


def get(port: int, path: str) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
        body: dict[str, object] = orjson.loads(answer.read())
        return body


def depth(port: int, symbol: str) -> dict[str, object]:
    """The sim's book once it has one (503 "not ready yet" until the tape reaches the
    recording's snapshot)."""
    for _ in range(200):
        try:
            return get(port, f"/api/v3/depth?symbol={symbol}&limit=5")
        except urllib.error.HTTPError as exc:
            if exc.code != 503:
                raise
            time.sleep(0.05)
    raise AssertionError("the sim's book never became ready")


def test_the_spot_sim_serves_another_symbol_on_the_grids_of_its_frames(ethbtc: Path) -> None:
    port = free_port()
    sim = mmdaemon("sim", str(ethbtc), "--port", str(port), "--speed", "5")
    try:
        wait_for_line(sim, b"sim_listening")
        info = get(port, "/api/v3/exchangeInfo?symbol=ETHBTC")
        (symbol,) = info["symbols"]  # type: ignore[misc]
        assert (symbol["symbol"], symbol["baseAsset"], symbol["quoteAsset"]) == (
            "ETHBTC", "ETH", "BTC")
        filters = {f["filterType"]: f for f in symbol["filters"]}
        # 61837.63 / 25 = 2473.5052: four decimals; sizes x 1000 have at most three
        assert filters["PRICE_FILTER"]["tickSize"] == "0.00010000"
        assert filters["LOT_SIZE"]["stepSize"] == "0.00100000"
        book = depth(port, "ETHBTC")
        assert book["lastUpdateId"] >= 50093239218  # type: ignore[operator]
        assert book["bids"] and book["asks"]
    finally:
        sim.kill()
        sim.wait()


def test_the_spot_sim_refuses_a_symbol_its_recording_does_not_hold(ethbtc: Path) -> None:
    """Asked for BTCUSDT (the old default) on ETHBTC frames: exit 2 naming the symbols,
    never a venue that serves no frame."""
    proc = subprocess.run([sys.executable, "-m", "mmdaemon", "sim", str(ethbtc), "--symbol",
                           "btcusdt", "--port", str(free_port())],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "no frame of BTCUSDT (symbols: ETHBTC)" in proc.stderr
