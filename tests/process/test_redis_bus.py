"""The firm risk bus against a real redis-server: what it writes, what it reads, what it
tells the daemon. The daemon side is a small host with the real RiskState; time for the
grace period comes from a ManualClock so the outage test is exact."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import orjson
import pytest

from mmdaemon.clock import ManualClock, SystemClock
from mmdaemon.config import AssetLimitConfig, FirmConfig
from mmdaemon.config_file import load_config
from mmdaemon.daemon import Service
from mmdaemon.model import Fill, Side
from mmdaemon.risk.firm import Exposure, Identity, Keys
from mmdaemon.risk.redis_bus import FirmBus, connect, global_kill, global_rearm
from mmdaemon.risk.state import RiskState, TradingState
from tests.helpers import SteppedClock, until, write_config
from tests.recorder import Recorder
from tests.redis_server import RedisServer

S = 1_000_000_000  # ns per second
IDENTITY = Identity("btc-a", "desk1", "BTC", "USDT", tick_size="0.01", lot_size="0.00000001")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


class Host:
    """The daemon's side of the bus: a real RiskState, kills and re-arms recorded."""

    def __init__(self, position_lots: int = 0) -> None:
        self.calls: list[tuple[str, str]] = []
        self.risk = RiskState(lambda old, new, why, values: self.calls.append(
            ("state", f"{new.value}:{why}")), halts={"firm_bus_not_ready": {}})
        self.position_lots = position_lots
        self.mark: Fraction | None = Fraction(6_000_000)
        self.pnl_units: Fraction | None = Fraction(0)

    def firm_exposure(self) -> Exposure:
        # 1 BTC = 100,000,000 lots at a mark of 60,000.00 (6,000,000 ticks)
        return Exposure(self.position_lots, self.mark, self.pnl_units, self.risk.state.value)

    def killed(self) -> bool:
        return self.risk.killed

    def set_condition(self, severity: TradingState, name: str, active: bool,
                      **values: Any) -> None:
        self.risk.set_condition(severity, name, active, **values)

    def kill(self, reason: str, **values: Any) -> None:
        self.calls.append(("kill", f"{reason} halted_for={sorted(self.risk.halts)}"))
        self.risk.kill(reason, **values)

    def rearm_global(self) -> None:
        self.calls.append(("rearm_global", ""))
        self.risk.rearm()


def firm(server: RedisServer, **overrides: Any) -> FirmConfig:
    values: dict[str, Any] = {
        "enabled": True, "redis_url": server.url, "desk": "desk1", "instance": "btc-a",
        "base_asset": "BTC", "quote_asset": "USDT", "heartbeat_ms": 100, "ttl_ms": 1000,
        "timeout_ms": 500, "grace_ms": 1000, **overrides}
    return FirmConfig(**values)


def peer(instance: str, lots: int, notional: str) -> bytes:
    return orjson.dumps({"v": 1, "instance": instance, "desk": "desk1", "base": "BTC",
                         "quote": "USDT", "position_lots": lots, "lot_size": "0.00000001",
                         "notional": notional, "pnl": "0", "state": "ACTIVE", "seq": 1,
                         "ts_ms": 0})


async def test_heartbeat_peers_limits_and_bad_records(redis_server: RedisServer) -> None:
    config = firm(redis_server, asset_limits=(AssetLimitConfig("BTC", "100000"),))
    host, log = Host(position_lots=100_000_000), Recorder()  # 1 BTC: 60,000 USDT
    bus = FirmBus(config, IDENTITY, host, ManualClock(), log, None)
    keys = Keys("mmdaemon", "desk1")
    with redis_server.client() as r:
        r.set(keys.heartbeat("btc-b"), peer("btc-b", -50_000_000, "30000"))
        r.set(keys.heartbeat("btc-c"), b"{not a heartbeat")
        r.set(keys.heartbeat("btc-d"), peer("somebody-else", 1, "1"))
        r.sadd(keys.instances, "btc-b", "btc-c", "btc-d", "btc-gone")
        client = connect(config, None)
        try:
            await bus.cycle(client)
            own = orjson.loads(r.get(keys.heartbeat("btc-a")))  # type: ignore[arg-type]
            assert own["notional"] == "60000" and own["position_lots"] == 100_000_000
            assert 0 < r.pttl(keys.heartbeat("btc-a")) <= 1000
            assert host.risk.state is TradingState.ACTIVE  # 90,000 < 100,000; ready now
            ignored = {e["peer"]: e["reason"] for e in log.named("firm_heartbeat_ignored")}
            assert set(ignored) == {"btc-c", "btc-d"}
            assert "not JSON" in ignored["btc-c"] and "somebody-else" in ignored["btc-d"]
            assert [e["peer"] for e in log.named("firm_instance_expired")] == ["btc-gone"]
            # a peer grows: 60,000 + 45,000 >= 100,000 -> REDUCING, with the aggregate
            r.set(keys.heartbeat("btc-b"), peer("btc-b", -75_000_000, "45000"))
            await bus.cycle(client)
            assert host.risk.state is TradingState.REDUCING
            (breach,) = log.named("firm_limit_breached")
            assert breach["gross_notional"] == "105000" and breach["limit"] == "100000"
            assert breach["net_position"] == "0.25" and breach["action"] == "reduce"
            assert host.risk.reducing["firm_notional_BTC"]["instances"] == ["btc-a", "btc-b"]
            # its heartbeat expires: its contribution goes, visibly, and the limit clears
            r.delete(keys.heartbeat("btc-b"))
            await bus.cycle(client)
            assert host.risk.state is TradingState.ACTIVE
            assert [e["peer"] for e in log.named("firm_instance_expired")] == [
                "btc-gone", "btc-b"]
            assert log.named("firm_limit_cleared")
        finally:
            await client.aclose()


async def test_latched_kill_is_in_force_before_the_not_ready_halt_clears(
    redis_server: RedisServer
) -> None:
    config = firm(redis_server)
    await global_kill(config, None, "test")
    host = Host()
    bus = FirmBus(config, IDENTITY, host, ManualClock(), Recorder(), None)
    client = connect(config, None)
    try:
        await bus.cycle(client)
    finally:
        await client.aclose()
    # KILLED while still HALTED for the bus: there was never a moment to quote in
    assert host.calls == [("kill", "global_kill_switch halted_for=['firm_bus_not_ready']"),
                          ("state", "KILLED:global_kill_switch")]
    assert bus.latched and bus.holding() == ["global kill switch latched"]
    assert host.risk.state is TradingState.KILLED and not host.risk.halts


async def test_redis_lost_halts_after_the_grace_period_and_clears_when_back(
    redis_server: RedisServer
) -> None:
    clock, host, log = ManualClock(), Host(), Recorder()
    config = firm(redis_server, grace_ms=1000)
    bus = FirmBus(config, IDENTITY, host, clock, log, None)
    client = connect(config, None)
    try:
        await bus.cycle(client)
        assert host.risk.state is TradingState.ACTIVE
        redis_server.stop()
        clock.now_ns += 900_000_000
        await bus.cycle(client)
        assert host.risk.state is TradingState.ACTIVE  # within the grace period
        clock.now_ns += 100_000_001  # 1 ns over the grace period: reported over it
        await bus.cycle(client)
        assert host.risk.state is TradingState.HALTED
        assert host.risk.halts["firm_bus_unreachable"]["silent_ms"] == 1001
        (lost,) = log.named("firm_bus_lost")
        assert lost["action"] == "halt" and lost["grace_ms"] == 1000
        redis_server.start()
        await bus.cycle(client)
        assert host.risk.state is TradingState.ACTIVE and log.named("firm_bus_restored")
    finally:
        await client.aclose()
    # configured to kill instead
    redis_server.stop()
    killer = Host()
    bus = FirmBus(firm(redis_server, on_redis_lost="kill"), IDENTITY, killer, clock,
                  Recorder(), None)
    bus.health.ok(clock.now_ns)  # it had been connected
    clock.now_ns += 2_000_000_000
    client = connect(bus.firm, None)
    try:
        await bus.cycle(client)
    finally:
        await client.aclose()
    assert ("kill", "firm_bus_unreachable halted_for=['firm_bus_not_ready']") in killer.calls
    redis_server.start()


async def test_control_channel_kills_and_rearms(redis_server: RedisServer) -> None:
    config = firm(redis_server)
    host, log = Host(), Recorder()
    # the period never elapses on its own: the round trips are the ones the test causes
    bus = FirmBus(config, IDENTITY, host, SteppedClock(), log, None)
    task = asyncio.create_task(bus.run())
    try:
        await until(lambda: host.risk.state is TradingState.ACTIVE
                    and subscribers(redis_server) >= 1)
        assert (await global_kill(config, None, "test")).receivers == 1
        await until(lambda: host.risk.killed)
        assert ("kill", "global_kill_switch halted_for=[]") in host.calls
        assert log.named("global_kill_received")
        assert await global_rearm(config, None) == (True, 1)
        await until(lambda: not host.risk.killed)
        assert host.calls[-2:] == [("rearm_global", ""), ("state", "ACTIVE:rearmed")]
        assert not bus.latched
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def subscribers(server: RedisServer) -> int:
    """Clients subscribed to the desk's control channel now."""
    with server.client() as r:
        return int(r.pubsub_numsub(Keys("mmdaemon", "desk1").channel)[0][1])


async def test_a_fill_heartbeats_at_once_not_at_the_next_period(
    redis_server: RedisServer
) -> None:
    config = firm(redis_server, heartbeat_ms=60_000, ttl_ms=120_000, grace_ms=60_000)
    host = Host()
    clock = SteppedClock()  # the 60 s period cannot elapse while the test runs
    bus = FirmBus(config, IDENTITY, host, clock, Recorder(), None)
    key = Keys("mmdaemon", "desk1").heartbeat("btc-a")
    task = asyncio.create_task(bus.run())
    try:
        with redis_server.client() as r:
            def beat() -> dict[str, Any]:
                raw = r.get(key)
                return orjson.loads(raw) if raw else {}  # type: ignore[arg-type]

            await until(lambda: beat().get("seq") == 1 and 60 * S in clock.deadlines)
            host.position_lots = 200_000  # what the daemon does on a fill:
            bus.publish_soon()
            await until(lambda: beat().get("seq") == 2)
            assert beat()["position_lots"] == 200_000 and beat()["notional"] == "120"
            assert clock.now_ns == 0  # sooner than the period: no time passed at all
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_heartbeat_period_and_stamp_are_the_clocks(redis_server: RedisServer) -> None:
    """The next heartbeat is due ``heartbeat_ms`` later on the bus's clock, and carries the
    clock's wall time."""
    config = firm(redis_server, heartbeat_ms=60_000, ttl_ms=120_000, grace_ms=60_000)
    clock = SteppedClock(start_ns=7 * S)
    bus = FirmBus(config, IDENTITY, Host(), clock, Recorder(), None)
    key = Keys("mmdaemon", "desk1").heartbeat("btc-a")
    task = asyncio.create_task(bus.run())
    try:
        with redis_server.client() as r:
            def beat() -> dict[str, Any]:
                raw = r.get(key)
                return orjson.loads(raw) if raw else {}  # type: ignore[arg-type]

            await until(lambda: beat().get("seq") == 1 and 67 * S in clock.deadlines)
            assert beat()["ts_ms"] == clock.wall_ns() // 1_000_000
            clock.advance(59.999)  # the loop still waits for its period: one beat so far
            assert 67 * S in clock.deadlines and beat()["seq"] == 1
            clock.advance(0.001)
            await until(lambda: beat().get("seq") == 2)
            assert beat()["ts_ms"] == (clock.wall_offset_ns + 67 * S) // 1_000_000
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_global_kill_is_stamped_with_the_given_clocks_wall_time(
    redis_server: RedisServer
) -> None:
    clock = ManualClock(start_ns=3 * S)
    sent = await global_kill(firm(redis_server), None, "test", clock)
    assert sent.sent_ns == clock.wall_ns()
    with redis_server.client() as r:
        latch = orjson.loads(r.get(Keys("mmdaemon", "desk1").kill))  # type: ignore[arg-type]
    assert latch["ts_ms"] == clock.wall_ns() // 1_000_000 and latch["note"] == "test"


USDT_UNITS = 10**10
"""Notional units (ticks x lots) in one USDT at tick 0.01 and lot 1e-8."""


async def test_a_position_without_a_mark_publishes_no_pnl_and_trips_no_loss(
    redis_server: RedisServer
) -> None:
    # restarted holding 0.1 BTC bought at 60,000, no book yet: cash - fees = -6,000 USDT
    config = firm(redis_server, desk_max_loss="1000", desk_max_drawdown="1000")
    host, log = Host(position_lots=10_000_000), Recorder()
    host.mark, host.pnl_units = None, Fraction(-6_000 * USDT_UNITS)
    bus = FirmBus(config, IDENTITY, host, ManualClock(), log, None)
    keys = Keys("mmdaemon", "desk1")
    client = connect(config, None)
    try:
        with redis_server.client() as r:
            r.set(keys.heartbeat("btc-b"), peer("btc-b", 0, "0"))
            r.sadd(keys.instances, "btc-b")
            await bus.cycle(client)
            own = orjson.loads(r.get(keys.heartbeat("btc-a")))  # type: ignore[arg-type]
        assert own["pnl"] is None and own["notional"] is None
        assert not host.risk.killed and host.risk.state is TradingState.ACTIVE
        assert not log.named("firm_limit_breached")
        assert bus.peak.peak is None  # an incomplete desk sum never sets the peak
        # the book arrives: the PnL is known (here -1 USDT of fees), the peak starts there
        host.mark, host.pnl_units = Fraction(6_000_000), Fraction(-USDT_UNITS)
        await bus.cycle(client)
        assert bus.peak.peak == -1 and not host.risk.killed
    finally:
        await client.aclose()


async def test_a_desk_drawdown_kill_can_be_rearmed_and_measures_afresh(
    redis_server: RedisServer
) -> None:
    config = firm(redis_server, desk_max_drawdown="10")
    host, log = Host(), Recorder()
    bus = FirmBus(config, IDENTITY, host, ManualClock(), log, None)
    client = connect(config, None)
    try:
        await bus.cycle(client)  # peak 0
        host.pnl_units = Fraction(-20 * USDT_UNITS)
        await bus.cycle(client)
        assert host.risk.killed and host.risk.kill_reason == "firm_drawdown"
        assert bus.holding() == []  # a re-arm acknowledges the drawdown, as locally
        bus.rearmed()  # what Service.rearm() does once nothing holds
        host.risk.rearm()
        await bus.cycle(client)
        assert not host.risk.killed and bus.peak.peak == -20
        assert [e["condition"] for e in log.named("firm_limit_cleared")] == ["firm_drawdown"]
    finally:
        await client.aclose()


async def test_killed_for_a_lost_redis_stays_off_the_market_until_it_is_back(
    redis_server: RedisServer
) -> None:
    clock, host = ManualClock(), Host()
    config = firm(redis_server, on_redis_lost="kill", grace_ms=1000)
    bus = FirmBus(config, IDENTITY, host, clock, Recorder(), None)
    client = connect(config, None)
    try:
        await bus.cycle(client)
        redis_server.stop()
        clock.now_ns += 2_000_000_000
        await bus.cycle(client)
        assert host.risk.killed and host.risk.kill_reason == "firm_bus_unreachable"
        (held,) = bus.holding()
        assert "firm bus unreachable" in held  # SIGUSR2 is refused with this reason
        host.risk.rearm()  # and even re-armed anyway, it could not quote blind:
        assert host.risk.state is TradingState.HALTED
        assert "firm_bus_unreachable" in host.risk.halts
        redis_server.start()
        await bus.cycle(client)
        assert bus.holding() == [] and host.risk.state is TradingState.ACTIVE
    finally:
        await client.aclose()


async def test_a_rearm_message_rearms_only_when_the_kill_key_is_gone(
    redis_server: RedisServer
) -> None:
    config = firm(redis_server)
    host, log = Host(), Recorder()
    bus = FirmBus(config, IDENTITY, host, ManualClock(), log, None)
    await global_kill(config, None, "test")
    client = connect(config, None)
    try:
        await bus.cycle(client)
        assert host.risk.killed
        await bus._on_control(client, b"rearm")  # a bare PUBLISH, the key still set
        assert host.risk.killed and bus.latched
        (refused,) = log.named("global_rearm_not_applied")
        assert refused["reason"] == "kill key still set" and "test" in refused["latch"]
        redis_server.stop()  # the key cannot be read: stay killed, and say why
        await bus._on_control(client, b"rearm")
        assert host.risk.killed
        assert log.named("global_rearm_not_applied")[-1]["reason"] == "kill key unreadable"
        redis_server.start()
        with redis_server.client() as r:
            r.delete(Keys("mmdaemon", "desk1").kill)  # what `rearm --global` does first
        await bus._on_control(client, b"rearm")
        assert not host.risk.killed and not bus.latched
        assert ("rearm_global", "") in host.calls
    finally:
        await client.aclose()


def test_the_daemon_has_no_pnl_for_a_position_without_a_mark(tmp_path: Path) -> None:
    """Service side: no book yet and a position (restored at a restart): the PnL is
    unknown, published as such, and a re-arm is refused rather than measuring the drawdown
    from cash - fees."""
    log = Recorder()
    service = Service(load_config(write_config(tmp_path)), SystemClock(), log, speed=None)
    service._open()
    try:
        assert service.engine.mark() is None
        assert service.engine.total_pnl_units() == 0  # flat: cash - fees is the PnL
        service.engine.position.apply(Fill(1, Side.BUY, 6_000_000, 10_000_000, 0, True, 1, 1))
        assert service.engine.total_pnl_units() is None
        assert service.firm_exposure().pnl_units is None
        assert "pnl=unknown" in service.status_line()
        service.engine.risk.kill("manual")
        service.rearm()
        assert service.engine.risk.killed and service.engine.breakers.peak is None
        (refused,) = log.named("rearm_refused")
        assert any("no mark yet" in reason for reason in refused["reasons"])
    finally:
        service.journal.close()


async def test_a_cancelled_bus_always_stops(redis_server: RedisServer) -> None:
    """Cancelled at random points of its round trips (Redis up, and Redis refusing), the bus
    task ends every time: a cancellation that redis-py or asyncio.timeout turns into a
    connection or timeout error must not be taken for a Redis failure and retried for ever
    (the daemon would never finish stopping)."""
    rng = random.Random(7)
    hung = []
    for trial in range(80):
        url = redis_server.url if trial % 4 else "redis://127.0.0.1:1/0"  # 1: refused
        config = firm(redis_server, redis_url=url, heartbeat_ms=20, timeout_ms=50)
        bus = FirmBus(config, IDENTITY, Host(), SystemClock(), Recorder(), None)
        task = asyncio.create_task(bus.run())
        await asyncio.sleep(rng.random() * 0.1)  # a random cancellation point, by design
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        if not done:
            hung.append(trial)
            with contextlib.suppress(BaseException):
                task.print_stack()
        elif not task.cancelled():
            hung.append((trial, task.exception()))
    assert not hung, f"the bus did not stop when cancelled: {hung}"


def test_client_is_built_without_warnings() -> None:
    """The client's retry policy is redis-py's asyncio one: a synchronous ``Retry`` handed
    to the asyncio client makes redis-py warn on stderr, in the middle of the JSON log."""
    import warnings

    from redis.asyncio.retry import Retry

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        client = connect(FirmConfig(enabled=True, redis_url="redis://127.0.0.1:1/0"), None)
    assert isinstance(client.get_retry(), Retry)
