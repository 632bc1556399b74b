"""The live path on Binance USD-M futures, as processes (issue #21's Must show): ``mmdaemon
sim --venue binance-usdm`` replaying the real USD-M recording and ``mmdaemon run`` trading
it through its futures order entry, with real signals.

Orders are placed, fill with the sim's fees, funding is paid and journaled; SIGKILL leaves
the orders resting at the venue, where the tape may fill them; the restart reconciles (the
crashed run's orders cancelled as strays, its missed fills and funding recovered from
``userTrades``/``income``, nothing twice); the kill switch leaves no order open at the venue.
The test asks the venue itself (signed REST) what is open and what traded.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import signal
import sqlite3
import time
import urllib.request
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import orjson
import pytest

from mmdaemon.clock import SystemClock
from tests.conftest import REPO, USDM_FILE
from tests.daemon_process import Daemon
from tests.helpers import wait_for
from tests.process.test_record_sim_cli import free_port, mmdaemon, wait_for_line

KEY, SECRET = "usdmProcKey1", "usdm-proc-secret-never-in-logs"
T = TypeVar("T")
PREFIX = "mmbtcf"  # config/example-live-usdm.toml's client_id_prefix


def rest(port: int, method: str, path: str, **params: Any) -> Any:
    """A signed REST request to the sim, as Binance's docs sign one."""
    query = {**params, "timestamp": SystemClock().wall_ns() // 1_000_000}
    text = urlencode(query)
    text += "&signature=" + hmac.new(SECRET.encode(), text.encode(), hashlib.sha256).hexdigest()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}?{text}", method=method,
                                     headers={"X-MBX-APIKEY": KEY})
    with urllib.request.urlopen(request, timeout=5) as response:
        return orjson.loads(response.read())


def open_orders(port: int) -> list[dict[str, Any]]:
    orders: list[dict[str, Any]] = rest(port, "GET", "/fapi/v1/openOrders", symbol="BTCUSDT")
    return orders


def trade_ids(port: int) -> set[int]:
    return {t["id"] for t in rest(port, "GET", "/fapi/v1/userTrades", symbol="BTCUSDT",
                                  fromId=1, limit=1000)}


def funding_paid(port: int) -> dict[int, Decimal]:
    """The venue's FUNDING_FEE income of our account: time (the funding id) -> USDT."""
    return {i["time"]: Decimal(i["income"]) for i in rest(
        port, "GET", "/fapi/v1/income", symbol="BTCUSDT", incomeType="FUNDING_FEE",
        startTime=1, limit=1000)}


def funding_ids(port: int) -> set[int]:
    return set(funding_paid(port))


def paced(get: Callable[[], T], every_s: float) -> Callable[[], T]:
    """``get``, asked at most every ``every_s`` seconds (its last answer in between): the
    venue's request weight (2,400 a minute; ``income`` weighs 30) is the daemon's too."""
    last: list[tuple[float, T]] = []

    def ask() -> T:
        now = time.monotonic()
        if not last or now - last[0][0] >= every_s:
            last[:] = [(now, get())]
        return last[0][1]
    return ask


def journal(state: Path) -> tuple[list[str], dict[int, int]]:
    """The journal's fill keys (order id:exec id) and funding (id -> notional units)."""
    db = sqlite3.connect(state / "journal.sqlite")
    try:
        fills = [row[0] for row in db.execute("SELECT exec_key FROM fills")]
        funding = dict(db.execute("SELECT funding_id, amount FROM funding").fetchall())
    finally:
        db.close()
    return fills, funding


def live_config(tmp_path: Path, port: int, state: Path) -> Path:
    """config/example-live-usdm.toml pointed at the sim on ``port``."""
    text = (REPO / "config" / "example-live-usdm.toml").read_text()
    for live, local in (("wss://fstream.binance.com", f"ws://127.0.0.1:{port}"),
                        ("https://fapi.binance.com", f"http://127.0.0.1:{port}"),
                        ("wss://ws-fapi.binance.com", f"ws://127.0.0.1:{port}"),
                        ('credentials = "binance"', 'credentials = "env"'),
                        ('dir = "/var/lib/mmdaemon/btcusdt-usdm"', f'dir = "{state}"'),
                        ("port = 9108", "port = 0"),
                        ("durable = true", "durable = false")):
        assert live in text, live
        text = text.replace(live, local)
    config = tmp_path / "live-usdm.toml"
    config.write_text(text)
    return config


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Any:
    if not USDM_FILE.exists():
        pytest.skip(f"{USDM_FILE} not present: the USD-M recording lives in ../shared only")
    monkeypatch.setenv("MMDAEMON_API_KEY", KEY)
    monkeypatch.setenv("MMDAEMON_API_SECRET", SECRET)
    port = free_port()
    proc = mmdaemon("sim", "--venue", "binance-usdm", str(USDM_FILE), "--port", str(port),
                    "--speed", "5", "--balance", "USDT=100000", "--funding-interval", "5s",
                    "--funding-rate", "0.0005", "--maker-fee-bps", "2")
    try:
        wait_for_line(proc, b"sim_listening")
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_usdm_live_fills_funding_sigkill_restart_reconciled_and_kill_switch_empties_the_venue(
        tmp_path: Path, sim: int) -> None:
    port, state = sim, tmp_path / "state"
    config = live_config(tmp_path, port, state)
    first = Daemon(config)
    try:
        first.wait_event("venue_status", ready=True, timeout=30)
        _, fill = first.wait_event("fill", timeout=90)
        assert fill["fee"] > 0 and fill["maker"]  # the sim charges 2 bps to makers
        first.wait_event("funding", timeout=90)
        wait_for(paced(lambda: open_orders(port), 0.5), 30, "quotes resting at the venue")
    finally:
        first.kill()  # SIGKILL: orders left resting, nothing cancelled
    fills_before, funding_before = journal(state)
    assert fills_before and funding_before
    db = sqlite3.connect(state / "journal.sqlite")
    try:  # where this instance's payments begin: a crash before the first resumes there
        (funding_from,), = db.execute("SELECT value FROM state WHERE key = 'funding_from'")
    finally:
        db.close()
    assert int(funding_from) < min(funding_before)
    crashed = {o["clientOrderId"] for o in open_orders(port)}
    assert crashed and all(c.startswith(f"{PREFIX}-") for c in crashed)
    journaled = {int(k.split(":")[1]) for k in fills_before}
    # the tape fills what the crashed run left, and funding is paid on its position (the
    # venue trades on without us)
    wait_for(paced(lambda: trade_ids(port) - journaled, 1.0), 90,
             "a fill while the daemon is down")
    wait_for(paced(lambda: funding_ids(port) - set(funding_before), 2.0), 90,
             "funding while the daemon is down")
    missed_funding = funding_ids(port) - set(funding_before)

    second = Daemon(config)
    try:
        second.wait_event("venue_status", ready=True, timeout=30)
        # the venue's position is the journal's and the fills recovered since the crash
        second.wait_event("gateway_position_agrees", timeout=5)
        assert second.wait_event("gateway_fill_recovered", timeout=5)
        assert second.wait_event("gateway_funding_recovered", timeout=5)
        # the crashed run's orders are strays: cancelled, and not quoted again
        wait_for(paced(lambda: not crashed & {o["clientOrderId"] for o in open_orders(port)},
                       0.5), 10, "the crashed run's orders cancelled")
        # quoting again, on new orders; then the kill switch
        wait_for(paced(lambda: open_orders(port), 0.5), 30, "the restarted run's quotes")
        second.signal(signal.SIGUSR1)
        i, _ = second.wait_event("kill_switch_tripped", timeout=10)
        _, cancelled = second.wait_event("orders_cancelled", start=i, timeout=10)
        assert cancelled["cancelled"] > 0 and cancelled["open_after"] == 0
        assert open_orders(port) == []  # cancel-all confirmed: nothing open at the venue
        venue_trades = trade_ids(port)
        assert second.stop() == 0
    finally:
        if second.proc.poll() is None:
            second.kill()
    assert [e for e in first.events + second.events
            if e.get("event") == "gateway_position_mismatch"] == []
    fills, funding = journal(state)
    exec_ids = [int(k.split(":")[1]) for k in fills]
    assert len(exec_ids) == len(set(exec_ids))  # no fill twice
    assert set(exec_ids) == venue_trades  # every trade of ours at the venue, none missed
    # funding: every payment the venue booked up to our last one is journaled (no gap)
    booked = funding_paid(port)
    assert missed_funding <= set(funding)  # recovered from income at the restart
    assert {f for f in booked if f <= max(funding)} == set(funding)
    # each payment as the venue booked it, in 1e-4 USDT units rounded toward -inf
    assert funding == {f: math.floor(booked[f] / Decimal("0.0001")) for f in funding}
