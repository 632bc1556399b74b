"""A 3-level ladder against the sim (``mmdaemon sim``'s venue over loopback, the Binance
gateway and live feed): six orders rest at the venue, an amend only ever moves a level that
moved, no side holds more orders than levels, and a kill empties the venue."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest

from mmdaemon.clock import SystemClock
from mmdaemon.config_file import load_config
from mmdaemon.daemon import Service
from mmdaemon.exchange.fill_model import PaperVenue
from mmdaemon.model import BINANCE_SPOT_BTCUSDT, Side
from mmdaemon.sim.orders import OrderEntry
from mmdaemon.sim.server import SimVenue
from tests.helpers import first_lines, until, write_config
from tests.recorder import Recorder

KEY, SECRET = "ladder-key", "ladder-secret-never-logged"
LEVELS, SPACING, PRICE_TOL, SIZE_TOL = 3, 300, 5, 1000


async def test_a_three_level_ladder_rests_amends_moved_levels_and_a_kill_empties_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recording = first_lines(tmp_path / "short.gz", 12000)  # ~100 s of market
    entry = OrderEntry(BINANCE_SPOT_BTCUSDT, PaperVenue(BINANCE_SPOT_BTCUSDT, 0, "0", "0"),
                       {KEY: SECRET}, lambda: time.time_ns() // 1_000_000,
                       base_balance="1", quote_balance="100000")
    sim = SimVenue([recording], BINANCE_SPOT_BTCUSDT, speed=10.0, clock=SystemClock(),
                   order_entry=entry)
    monkeypatch.setenv("MMDAEMON_API_KEY", KEY)
    monkeypatch.setenv("MMDAEMON_API_SECRET", SECRET)
    async with sim:
        config = write_config(tmp_path, {
            "feed": {"recordings": [], "url": sim.ws_url, "rest_url": sim.rest_url},
            "exchange": {"adapter": "binance", "ws_api_url": f"{sim.ws_url}/ws-api/v3",
                         "client_id_prefix": "mmladder"},
            "strategy.ladder": {"levels": LEVELS, "spacing_ticks": SPACING},
            "orders": {"price_tolerance_ticks": PRICE_TOL, "size_tolerance_lots": SIZE_TOL},
            "risk": {"max_open_orders": 2 * LEVELS + 2, "max_orders_per_s": 100.0,
                     "order_burst": 30},
            "logging": {"level": "debug"},  # order_sent events
        })
        log = Recorder()
        service = Service(load_config(config), SystemClock(), log)
        run = asyncio.create_task(service.run())
        most = {Side.BUY: 0, Side.SELL: 0}

        def six_resting() -> bool:
            orders = entry.open_orders()
            for side in most:
                most[side] = max(most[side], sum(1 for o in orders if o.side is side))
            return len(orders) == 2 * LEVELS

        try:
            await until(six_resting, timeout=20)
            resting = entry.open_orders()
            for side in (Side.BUY, Side.SELL):
                prices = sorted(o.price for o in resting if o.side is side)
                assert len(prices) == LEVELS
                assert [b - a for a, b in itertools.pairwise(prices)] == \
                    [SPACING] * (LEVELS - 1)
            # the market moves for a while: amends follow it
            await until(lambda: len([e for e in log.named("order_sent")
                                     if e["kind"] == "amend"]) >= 10, timeout=30)
            service.kill("operator_kill_switch")  # what SIGUSR1 calls
            await until(lambda: entry.open_orders() == [], timeout=5)
        finally:
            service.stop()
            await asyncio.wait_for(run, 15)
    assert most[Side.BUY] <= LEVELS and most[Side.SELL] <= LEVELS
    assert service.engine.risk.state.value == "KILLED"
    sent = log.named("order_sent")
    places = [e for e in sent if e["kind"] == "place"]
    assert len(places) >= 2 * LEVELS
    last: dict[int, tuple[int, int]] = {}
    amends = 0
    for e in sent:
        if e["kind"] == "amend":
            price, size = last[e["order_id"]]
            # only a level that moved is touched: by the price or the size tolerance
            assert abs(e["price"] - price) >= PRICE_TOL or abs(e["size"] - size) >= SIZE_TOL
            amends += 1
        last[e["order_id"]] = (e["price"], e["size"])
    # amending moved levels, not cancelling and placing them: every place beyond the first
    # ladder replaced an order that filled
    assert amends >= 10
    assert len(places) - 2 * LEVELS <= service.engine.position.fills
