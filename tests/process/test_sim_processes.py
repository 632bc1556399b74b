"""`mmdaemon sim` and `mmdaemon run --config config/sim.toml` as real processes: the kill
switch (SIGUSR1) through the Binance gateway empties the venue, and nothing is placed after.
The test asks the venue itself, over its WebSocket API, which orders are open."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from mmdaemon.model import BINANCE_SPOT_BTCUSDT
from mmdaemon.venues import binance_api as api
from mmdaemon.venues import binance_parse as parse
from tests.conftest import REPO, SPOT_FILES
from tests.daemon_process import Daemon
from tests.helpers import SIM_BALANCES, wait_for
from tests.process.test_record_sim_cli import free_port, mmdaemon, wait_for_line

KEY, SECRET = "proc-key", "proc-secret-never-in-logs"


def open_orders(port: int, key: str = KEY, secret: str = SECRET) -> list[object]:
    """``openOrders.status`` for an account (ours by default), asked of the sim directly."""

    async def ask() -> list[object]:
        async with connect(f"ws://127.0.0.1:{port}/ws-api/v3", proxy=None) as ws:
            await ws.send(api.open_orders_status(
                BINANCE_SPOT_BTCUSDT, request_id=1, creds=api.Credentials(key, secret),
                timestamp_ms=time.time_ns() // 1_000_000).decode())
            response = parse.parse_response(await ws.recv())
            assert isinstance(response, api.Response) and response.error is None, response
            assert isinstance(response.result, list)
            return response.result

    return asyncio.run(ask())


def sim_config(tmp_path: Path, port: int, state: Path, monkeypatch: pytest.MonkeyPatch,
               extra: str = "") -> Path:
    """``config/sim.toml`` for the sim on ``port``, state in ``state``, ``extra`` TOML
    appended; the sim's made-up credentials in the environment (both processes inherit
    them)."""
    monkeypatch.setenv("MMDAEMON_API_KEY", KEY)
    monkeypatch.setenv("MMDAEMON_API_SECRET", SECRET)
    text = (REPO / "config" / "sim.toml").read_text().replace("9443", str(port))
    config = tmp_path / "sim.toml"
    config.write_text(text.replace('dir = "../state/sim"', f'dir = "{state}"') + extra)
    return config


def assert_quoting_at(port: int, timeout: float, why: str) -> None:
    """Until our account has open orders at the sim on ``port`` (``why`` if never)."""
    wait_for(lambda: open_orders(port), timeout, why)


# feed.busy_poll: the loop never sleeps; signals and the gateway are served all the same
@pytest.mark.parametrize("busy_poll", [False, True], ids=["asleep", "busy_poll"])
def test_kill_switch_through_the_gateway_empties_the_sim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, busy_poll: bool
) -> None:
    port = free_port()
    config = sim_config(tmp_path, port, tmp_path / "state", monkeypatch,
                        '\n[logging]\nlevel = "debug"\n')
    if busy_poll:
        config.write_text(config.read_text().replace("[feed]\n", "[feed]\nbusy_poll = true\n", 1))
    sim = mmdaemon("sim", *SIM_BALANCES, *map(str, SPOT_FILES), "--port", str(port), "--speed", "5")
    try:
        wait_for_line(sim, b"sim_listening")
        d = Daemon(config)
        try:
            d.wait_event("venue_status", ready=True, timeout=30)
            d.wait_for(lambda e: e.get("event") == "order_sent" and e["kind"] == "place",
                       timeout=30)
            assert_quoting_at(port, 10, "our quotes rest at the venue")
            assert any(e.get("event") == "event_loop_busy_polling"
                       for e in d.events) == busy_poll
            d.signal(signal.SIGUSR1)
            i, _ = d.wait_event("kill_switch_tripped")
            d.wait_event("orders_cancelled", start=i)
            wait_for(lambda: open_orders(port) == [], 5, "our orders gone from the venue")
            # 5 s of market at speed 5 with no quote. Kept: an absence over a span of
            # market, and a daemon process logs nothing per frame to wait for instead
            time.sleep(1.0)
            assert open_orders(port) == []
            assert not [e for e in d.events[i:] if e.get("event") == "order_sent"
                        and e.get("kind") != "cancel"]
            assert d.stop() == 0
        finally:
            if d.proc.poll() is None:
                d.kill()
        assert not [e for e in d.events if SECRET in repr(e)]
    finally:
        sim.send_signal(signal.SIGTERM)
        assert sim.wait(20) == 0
