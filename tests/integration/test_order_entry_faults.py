"""Order entry answering late, over loopback: the sim venue (market data and order entry)
and the daemon with its live feed and the Binance gateway.

- Held responses: every place and cancel-replace runs at once at the sim (its NEW and
  TRADE execution reports go out on the user-data stream) but its response comes 0.4 s
  later. Orders fill before their place is answered; halts cancel orders whose place answer
  has not come yet; the late answers then carry an older state than the reports did.
- Delayed requests: places run 1.5 s after they reach the sim, and requests sent meanwhile
  overtake them. The gateway's request timeout (1 s) passes first: the place is reported
  failed, the connection suspected and reconciled, HALTED meanwhile; the halt's cancel-all
  reaches the matching engine before the place it should have cancelled; then the place
  lands at the sim, late, for an order the daemon already gave up.

Either way: every fill is journaled once and attributed to its order and side, the position
equals the sim's account, no order is left at the venue that the daemon does not hold, and
the daemon's view of its orders converges with the venue's (``openOrders.status``)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from mmdaemon.clock import SystemClock
from mmdaemon.config_file import load_config
from mmdaemon.daemon import Service
from mmdaemon.exchange.fill_model import PaperVenue
from mmdaemon.model import BINANCE_SPOT_BTCUSDT
from mmdaemon.sim.orders import OrderEntry
from mmdaemon.sim.server import SimVenue
from mmdaemon.venues import binance_api as api
from mmdaemon.venues import binance_parse as parse
from tests.helpers import first_lines, until, write_config
from tests.recorder import Recorder

KEY, SECRET = "faults-key", "faults-secret-never-logged"
PREFIX = "mmfault"
HOLD_S = 0.4
QUOTE_BALANCE = 100_000  # USDT the sim's account starts with (and 1 BTC)


class Loopback:
    """The sim (speed 10 on ~250 s of the real recording) and its order entry, watched:
    the most orders it ever held open on one side at once, sampled at every frame."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        recording = first_lines(tmp_path / "short.gz", 30000)
        # a maker fee, so that fees are journaled and checked too
        self.entry = OrderEntry(
            BINANCE_SPOT_BTCUSDT, PaperVenue(BINANCE_SPOT_BTCUSDT, 0, "0.15", "0"),
            {KEY: SECRET}, lambda: time.time_ns() // 1_000_000,
            base_balance="1", quote_balance=str(QUOTE_BALANCE))
        self.sim = SimVenue([recording], BINANCE_SPOT_BTCUSDT, speed=10.0,
                            clock=SystemClock(), order_entry=self.entry)
        self.most_per_side = 0
        self.sim.tape.on_frame = self._sample
        monkeypatch.setenv("MMDAEMON_API_KEY", KEY)
        monkeypatch.setenv("MMDAEMON_API_SECRET", SECRET)
        self.tmp_path = tmp_path

    def _sample(self, recv_ns: int, frame: bytes) -> None:
        sides = Counter(o.side for o in self.entry.open_orders())
        self.most_per_side = max(self.most_per_side, *sides.values(), 0)

    def service(self, log: Recorder, request_timeout_ms: int) -> Service:
        sim = self.sim
        return Service(load_config(write_config(self.tmp_path, {
            "feed": {"recordings": [], "url": sim.ws_url, "rest_url": sim.rest_url},
            "exchange": {"adapter": "binance", "ws_api_url": f"{sim.ws_url}/ws-api/v3",
                         "client_id_prefix": PREFIX, "request_timeout_ms": request_timeout_ms},
            # amend often: cancel-replaces are late too
            "orders": {"price_tolerance_ticks": 5},
        })), SystemClock(), log)


def views(service: Service, entry: OrderEntry) -> tuple[set[Any], set[Any]]:
    """(the daemon's orders, the venue's open orders) as (client id, side, price); the
    daemon's only when none waits for an answer."""
    venue = {(o.client_order_id, o.side, o.price) for o in entry.open_orders()}
    orders = service.engine.manager.orders.values()
    if any(o.pending is not None for o in orders):
        return {None}, venue
    return {(api.client_order_id(PREFIX, o.order_id), o.side, o.price) for o in orders}, venue


def converged(service: Service, entry: OrderEntry) -> bool:
    """The daemon's orders are the venue's open orders, and the gateway counts no other."""
    if not service.engine.opened():
        return False  # the journal is not open yet
    ours, venue = views(service, entry)
    return ours == venue and service.exchange.open_order_count() == len(venue)


async def halt_and_resume(service: Service, sim: SimVenue, log: Recorder) -> None:
    """A depth gap: HALTED, every order cancelled, resynced, ACTIVE."""
    mark = len(log.events)
    sim.tape.skip_depth_updates(1)
    await until(lambda: ("HALTED", "book_out_of_sync") in [
        (e.get("new"), e.get("reason")) for e in log.events[mark:]], timeout=10)
    await until(lambda: service.engine.risk.state.value == "ACTIVE", timeout=15)


def check_books(service: Service, entry: OrderEntry, log: Recorder) -> list[dict[str, Any]]:
    """After the stop: every trade at the sim is one fill of the daemon, of the order and
    side the venue says; nothing open; position, cash and fees equal the account's."""
    assert entry.open_orders() == []
    assert service.exit_code == 0
    trades = entry.trades(KEY)
    fills = log.named("fill")
    assert sorted(f["exec_id"] for f in fills) == [t.trade_id for t in trades]  # once each
    by_trade = {t.trade_id: t for t in trades}
    for f in fills:
        trade = by_trade[f["exec_id"]]
        order = entry.order(trade.order_id)
        assert order is not None
        assert api.order_id_of(PREFIX, order.client_order_id) == f["order_id"], (f, order)
        assert (f["side"], f["price"], f["size"]) == (
            order.side.name, trade.price, trade.qty), (f, trade)
    position = service.engine.position
    account = entry.account(KEY)
    assert position.position == account.position_lots == sum(
        t.qty if t.is_buyer else -t.qty for t in trades)
    inst = BINANCE_SPOT_BTCUSDT
    assert (position.cash - position.fees) * inst.ticks.unit * inst.lots.unit == (
        account.quote_units * parse.notional_unit(inst) - QUOTE_BALANCE)
    assert position.fees > 0 or not fills  # the sim charges a maker fee
    return fills


async def test_fills_and_cancels_before_the_place_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = Loopback(tmp_path, monkeypatch)
    entry, sim = loop.entry, loop.sim
    async with sim:
        for method in (api.ORDER_PLACE, api.ORDER_CANCEL_REPLACE):
            entry.hold_responses(method, HOLD_S, count=1_000_000)
        log = Recorder()
        service = loop.service(log, request_timeout_ms=3000)
        run = asyncio.create_task(service.run())
        try:
            # fills reported on the user-data stream before their order's place answer
            await until(lambda: entry.fills_before_response >= 2, timeout=40)
            # halts while answers are held: cancels of orders the venue has not answered for
            for _ in range(2):
                await until(lambda: entry.unanswered > 0, timeout=10)
                await halt_and_resume(service, sim, log)
            for method in (api.ORDER_PLACE, api.ORDER_CANCEL_REPLACE):
                entry.hold_responses(method, 0.0, count=0)  # lifted
            await until(lambda: converged(service, entry), timeout=10)
            assert service.engine.position.position == entry.position_lots
            assert not run.done()
        finally:
            service.stop()
            await asyncio.wait_for(run, 15)
    fills = check_books(service, entry, log)
    assert entry.fills_before_response >= 2 and len(fills) >= entry.fills_before_response
    assert loop.most_per_side == 1  # the venue never held two orders of ours on a side
    # a late answer is not news: no order of ours looked unwanted, nothing failed
    assert log.named("gateway_unwanted_order") == []
    assert not [e for e in log.events if e["event"] in (
        "gateway_handler_failed", "gateway_listener_failed", "service_failed")]
    assert not [e for e in log.events if SECRET in repr(e)]


async def test_places_overtaken_by_their_cancels_and_timed_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = Loopback(tmp_path, monkeypatch)
    entry, sim = loop.entry, loop.sim
    async with sim:
        log = Recorder()
        service = loop.service(log, request_timeout_ms=1000)
        run = asyncio.create_task(service.run())
        try:
            await until(lambda: converged(service, entry) and entry.open_orders() != [],
                        timeout=15)
            mark = len(log.events)
            entry.delay_requests(api.ORDER_PLACE, 1.5, count=4)
            entry.delay_requests(api.ORDER_CANCEL_REPLACE, 1.5, count=2)
            # the next places and amends time out: HALTED while the gateway reconciles
            await until(lambda: ("HALTED", "venue_not_ready") in [
                (e.get("new"), e.get("reason")) for e in log.events[mark:]], timeout=15)
            # a halt of its own while a delayed place is still on its way to the venue
            await until(lambda: service.engine.risk.state.value == "ACTIVE", timeout=15)
            await halt_and_resume(service, sim, log)
            # every delayed place went out (each lands late, after the daemon gave up on it)
            await until(lambda: entry.faults.delays_left(api.ORDER_PLACE) == 0, timeout=30)
            entry.delay_requests(api.ORDER_CANCEL_REPLACE, 0.0, count=0)  # lifted
            await until(lambda: entry.late_work == 0, timeout=15)
            await until(lambda: converged(service, entry), timeout=15)
            assert service.engine.position.position == entry.position_lots
            assert not run.done()
        finally:
            service.stop()
            await asyncio.wait_for(run, 15)
    check_books(service, entry, log)
    timeouts = [e for e in log.events[mark:] if e["event"] == "order_rejected"
                and e["reason"] == "timeout"]
    assert timeouts, "no request timed out"
    # the places that landed after the daemon gave up on them were found as unwanted (and,
    # as converged and check_books show, cancelled); a late place the venue refused (it
    # would have taken by then) left nothing to find
    late = entry.faults.late_placed.get(api.ORDER_PLACE, [])
    assert late, "no delayed place landed at the venue"
    unwanted = {e["venue_order_id"] for e in log.named("gateway_unwanted_order")}
    assert set(late) <= unwanted, (late, unwanted)
    assert not [e for e in log.events if e["event"] in (
        "gateway_handler_failed", "gateway_listener_failed", "service_failed")]
