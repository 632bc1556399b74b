"""The firm risk bus over Redis: the async shell around :mod:`mmdaemon.risk.firm`.

One task of the daemon (:meth:`FirmBus.run`), two loops inside it:

- the heartbeat loop, every ``firm.heartbeat_ms`` and at once after a fill: one pipeline
  writes our heartbeat (``SET ... PX ttl``), adds us to the desk's instance set and reads
  the global kill key and the set; one ``MGET`` reads the peers' heartbeats. Then the pure
  core aggregates and evaluates the firm limits, and the host is told: REDUCING
  conditions, kills, the global latch. Each round trip is abandoned after ``timeout_ms``;
  none succeeding for ``grace_ms`` raises the ``firm_bus_unreachable`` HALTED condition
  (or kills, as configured), which clears on the next success.
- the control listener: ``SUBSCRIBE`` to the desk's channel, so a ``kill`` reaches every
  instance in one network hop instead of a heartbeat period. The poll of the latched key
  stays the source of truth: a message lost while the listener reconnects is caught at
  the next heartbeat, and an instance started later reads the key before it may quote.

Peers are read from a set of instance ids + ``MGET``, not ``SCAN``: the cost is this
desk's instances, not the whole keyspace of a Redis that may be shared, SCAN can repeat
keys and needs several round trips, and an expired heartbeat shows up as a member whose
key is gone, which is logged (``firm_instance_expired``) instead of silently vanishing.

Until the first round trip succeeds the instance is HALTED (``firm_bus_not_ready``): the
latch is acted on *before* that condition clears, so a latched kill takes effect before
the first order can go out, and an instance that cannot reach Redis at start never quotes.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import socket
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any, NamedTuple, Protocol

import orjson
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from mmdaemon.aio import first_of
from mmdaemon.clock import Clock, SystemClock
from mmdaemon.config import FirmConfig
from mmdaemon.risk.firm import (
    FIRM_NOT_READY,
    FIRM_UNREACHABLE,
    GLOBAL_KILL_REASON,
    KILL_MESSAGE,
    REARM_MESSAGE,
    AssetLimit,
    BadHeartbeat,
    DeskPeak,
    Exposure,
    FirmLimits,
    Heartbeat,
    Identity,
    Keys,
    LinkHealth,
    aggregate,
    decode,
    encode,
    evaluate,
)
from mmdaemon.risk.state import TradingState

BUS_ERRORS = (RedisError, OSError, TimeoutError)
"""What a Redis round trip raises when Redis is down, slow or refusing us."""


def stop_if_cancelled() -> None:
    """Raise CancelledError when this task has been asked to stop.

    Called where a Redis error is handled. A cancellation that lands in the middle of a
    request can come out as a connection or timeout error: redis-py tears the connection
    down, and Python 3.11's ``asyncio.timeout`` can turn it into ``TimeoutError``. Handled
    as a Redis error, it was lost, and the loops ran on. A daemon then never finished
    stopping; a stress test cancelled it at random points and it hung 4 times in 60.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class FirmHost(Protocol):
    """What the bus needs from the daemon (:class:`~mmdaemon.daemon.Service`): our numbers,
    and commands; never the engine's objects."""

    def firm_exposure(self) -> Exposure: ...

    def killed(self) -> bool: ...

    def set_condition(self, severity: TradingState, name: str, active: bool,
                      **values: Any) -> None:
        """Raise or clear a HALTED or REDUCING condition of the firm's."""

    def kill(self, reason: str, **values: Any) -> None: ...

    def rearm_global(self) -> None: ...


def firm_limits(firm: FirmConfig) -> FirmLimits:
    """The pure core's limits from the ``[firm]`` section."""

    def amount(text: str) -> Fraction | None:
        return Fraction(Decimal(text)) if text else None

    return FirmLimits(
        assets=tuple(AssetLimit(a.asset, Fraction(Decimal(a.max_notional)), a.action)
                     for a in firm.asset_limits),
        currency=firm.quote_asset,
        max_loss=amount(firm.desk_max_loss), max_loss_action=firm.desk_max_loss_action,
        max_drawdown=amount(firm.desk_max_drawdown),
        max_drawdown_action=firm.desk_max_drawdown_action)


def connect(firm: FirmConfig, password: str | None, *, read_timeout: bool = True) -> Redis:
    """A client for ``firm.redis_url``; no retries of its own (the caller's loop retries)
    and every wait bounded by ``timeout_ms`` (``read_timeout=False`` leaves reads unbounded,
    for a subscriber that waits for messages)."""
    timeout_s = firm.timeout_ms / 1000
    options: dict[str, Any] = {
        "username": firm.username or None,
        "password": password,
        "socket_connect_timeout": timeout_s,
        "socket_timeout": timeout_s if read_timeout else None,
        "socket_keepalive": True,
        "retry": Retry(NoBackoff(), 0),
    }
    if firm.tls_ca_file:
        options["ssl_ca_certs"] = firm.tls_ca_file
    return Redis.from_url(firm.redis_url, **options)


@dataclass
class _Round:
    """What one heartbeat round trip read."""

    latch: bytes | None
    peers: list[str]
    records: list[bytes | str | None]


class FirmBus:
    """Publish our heartbeat, read the desk's, apply the firm limits and the global kill."""

    def __init__(self, firm: FirmConfig, identity: Identity, host: FirmHost, clock: Clock,
                 log: Any, password: str | None) -> None:
        self.firm = firm
        self.identity = identity
        self.keys = Keys(firm.namespace, firm.desk)
        self.limits = firm_limits(firm)
        self.host = host
        self.clock = clock
        self.log = log
        self._password = password
        self.health = LinkHealth(firm.grace_ms * 1_000_000)
        self.peak = DeskPeak()
        self.latched = False  # the global kill key was set when last read
        self.seq = 0
        self._lost = False
        self._breached: set[str] = set()
        self._expired: set[str] = set()
        self._not_comparable: set[str] = set()
        self._wake = asyncio.Event()
        # bumped by a re-arm message: a key read sent before it must not kill again
        self._generation = 0

    # -- the daemon's side ----------------------------------------------------------------

    def publish_soon(self) -> None:
        """A fill changed our exposure: heartbeat now, not at the next period."""
        self._wake.set()

    def holding(self) -> list[str]:
        """Why a re-arm must be refused now: the global latch, a firm kill limit reached,
        the link to Redis lost (re-armed then, the instance would trade with no firm limits
        and deaf to the global kill switch).

        Not the desk drawdown, as with the local breakers: a re-arm acknowledges the
        drawdown so far and :meth:`rearmed` measures it afresh; held, it never could be.
        """
        held = ["global kill switch latched"] if self.latched else []
        held += [f"firm limit {name} reached" for name, action in self.limits.names()
                 if action == "kill" and name in self._breached and name != "firm_drawdown"]
        if self._lost:
            held.append(f"firm bus unreachable: no Redis round trip for more than "
                        f"{self.firm.grace_ms} ms")
        return held

    def rearmed(self) -> None:
        """The instance was re-armed: desk drawdown is measured afresh from here."""
        self.peak.reset()

    # -- the task -------------------------------------------------------------------------

    async def run(self) -> None:
        """Heartbeats and the control listener until cancelled."""
        client = connect(self.firm, self._password)
        subscriber = connect(self.firm, self._password, read_timeout=False)
        self.log.info("firm_bus_started", url=self.firm.redis_url, desk=self.firm.desk,
                      instance=self.firm.instance, prefix=self.keys.prefix,
                      heartbeat_ms=self.firm.heartbeat_ms, ttl_ms=self.firm.ttl_ms,
                      grace_ms=self.firm.grace_ms, on_redis_lost=self.firm.on_redis_lost)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._heartbeat_loop(client), name="firm-heartbeat")
                tasks.create_task(self._listen_loop(subscriber), name="firm-listen")
        finally:
            for c in (client, subscriber):
                with contextlib.suppress(*BUS_ERRORS):  # already gone: nothing to close
                    await c.aclose()

    async def _heartbeat_loop(self, client: Redis) -> None:
        interval_s = self.firm.heartbeat_ms / 1000
        while True:
            self._wake.clear()
            await self.cycle(client)
            await self._next_beat(interval_s)
            stop_if_cancelled()  # a cancellation a round trip swallowed ends the loop here

    async def _next_beat(self, interval_s: float) -> None:
        """Return when the period (``interval_s`` on the clock) is up, or sooner when
        :meth:`publish_soon` asks."""
        await first_of(self.clock.sleep(interval_s), self._wake.wait())

    async def cycle(self, client: Redis) -> None:
        """One heartbeat round: publish, read, act; or note the failure."""
        self.seq += 1
        own = self.identity.heartbeat(self.host.firm_exposure(), self.seq,
                                      self.clock.wall_ns() // 1_000_000)
        generation = self._generation
        try:
            result = await self._round_trip(client, own)
        except BUS_ERRORS as exc:
            stop_if_cancelled()
            self._failed(exc)
            return
        if result.latch is not None and generation == self._generation:
            self._latched(result.latch)
        elif result.latch is None:
            self.latched = False  # cleared; re-arming is the operator's (rearm message)
        self._evaluate(own, result)
        self._ok()  # last: a latched kill is in force before a not-ready halt clears

    async def _round_trip(self, client: Redis, own: Heartbeat) -> _Round:
        keys, me = self.keys, self.identity.instance
        async with asyncio.timeout(self.firm.timeout_ms / 1000):
            pipe = client.pipeline(transaction=False)
            pipe.set(keys.heartbeat(me), encode(own), px=self.firm.ttl_ms)
            pipe.sadd(keys.instances, me)
            pipe.get(keys.kill)
            pipe.smembers(keys.instances)
            _, _, latch, members = await pipe.execute()
            peers = sorted(m.decode(errors="replace") for m in members if m != me.encode())
            records = await client.mget([keys.heartbeat(p) for p in peers]) if peers else []
        return _Round(latch, peers, records)

    def _ok(self) -> None:
        first = not self.health.ready
        self.health.ok(self.clock.monotonic_ns())
        host = self.host
        if first:
            self.log.info("firm_bus_ready", latched=self.latched)
            host.set_condition(TradingState.HALTED, FIRM_NOT_READY, False)
        if self._lost:
            self._lost = False
            self.log.warning("firm_bus_restored")
            host.set_condition(TradingState.HALTED, FIRM_UNREACHABLE, False)

    def _failed(self, exc: BaseException) -> None:
        now = self.clock.monotonic_ns()
        self.health.failed()
        error = repr(exc) or type(exc).__name__
        self.log.warning("firm_bus_error", error=error, failures=self.health.failures)
        if self._lost or not self.health.lost(now):
            return  # within the grace period, or already acted on
        self._lost = True
        # rounded up, as the rule is strictly over the grace period (see breakers.check_feed)
        values = {"silent_ms": -(-self.health.silent_ns(now) // 1_000_000),
                  "grace_ms": self.firm.grace_ms, "error": error}
        self.log.error("firm_bus_lost", action=self.firm.on_redis_lost, **values)
        if self.firm.on_redis_lost == "kill":
            self.host.kill(FIRM_UNREACHABLE, **values)
        # halted in kill mode too, until Redis is back: a re-arm (refused by holding() while
        # the link is lost, but this is the second lock) must never resume quoting blind
        self.host.set_condition(TradingState.HALTED, FIRM_UNREACHABLE, True, **values)

    def _latched(self, value: bytes | None) -> None:
        """The global kill switch is set (``value``: the key's, None for a channel message):
        trip ours through the SIGUSR1 path, once."""
        self.latched = True
        if self.host.killed():
            return
        if value is None:
            self.host.kill(GLOBAL_KILL_REASON, source="channel")
        else:
            self.host.kill(GLOBAL_KILL_REASON, source="key",
                           latch=value[:200].decode(errors="replace"))

    def _evaluate(self, own: Heartbeat, result: _Round) -> None:
        beats = [own]
        for name, record in zip(result.peers, result.records, strict=True):
            if record is None:
                if name not in self._expired:
                    self._expired.add(name)
                    self.log.warning("firm_instance_expired", peer=name)
                continue
            if name in self._expired:
                self._expired.discard(name)
                self.log.info("firm_instance_seen", peer=name)
            try:
                hb = decode(record)
                if hb.instance != name or hb.desk != self.identity.desk:
                    raise BadHeartbeat(f"record of {hb.instance!r} on desk {hb.desk!r}")
            except BadHeartbeat as exc:
                self.log.warning("firm_heartbeat_ignored", peer=name, reason=str(exc))
                continue
            beats.append(hb)
        agg = aggregate(beats, self.limits.currency)
        foreign = {name for a in agg.assets.values() for name in a.not_comparable}
        if foreign != self._not_comparable:
            self._not_comparable = foreign
            self.log.warning("firm_notional_not_comparable", currency=agg.currency,
                             instances=sorted(foreign))
        peak = self.peak.observe_desk(agg)
        breaches = {b.name: b for b in evaluate(agg, self.limits, peak)}
        host = self.host
        for name, action in self.limits.names():
            breach = breaches.get(name)
            if breach is not None and name not in self._breached:
                self.log.warning("firm_limit_breached", condition=name, action=action,
                                 **breach.values)
            elif breach is None and name in self._breached:
                self.log.info("firm_limit_cleared", condition=name)
            if action == "reduce":
                host.set_condition(TradingState.REDUCING, name, breach is not None,
                                   **(breach.values if breach else {}))
            elif breach is not None and not host.killed():
                host.kill(name, **breach.values)
        self._breached = set(breaches)

    async def _listen_loop(self, client: Redis) -> None:
        """Control messages as they are published; reconnects every heartbeat period."""
        retry_s = self.firm.heartbeat_ms / 1000
        while True:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.keys.channel)
                async for message in pubsub.listen():
                    await self._on_control(client, message.get("data"))
            except BUS_ERRORS as exc:
                stop_if_cancelled()
                self.log.info("firm_listener_reconnecting", error=repr(exc))
            finally:
                with contextlib.suppress(*BUS_ERRORS):  # the connection is gone already
                    await pubsub.aclose()
            await self.clock.sleep(retry_s)

    async def _on_control(self, client: Redis, data: object) -> None:
        """Act on a control message. ``client`` runs the GET on its own pooled connection
        (the subscribed one cannot)."""
        text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
        if text == KILL_MESSAGE:
            self.log.warning("global_kill_received", source="channel")
            self._latched(None)
        elif text == REARM_MESSAGE:
            self.log.warning("global_rearm_received")
            # the key is the source of truth: a bare PUBLISH of "rearm" (without the DEL of
            # `mmdaemon rearm --global`) must not re-arm a latched desk; unread, stay killed
            try:
                async with asyncio.timeout(self.firm.timeout_ms / 1000):
                    latch = await client.get(self.keys.kill)
            except BUS_ERRORS as exc:
                stop_if_cancelled()
                self.log.error("global_rearm_not_applied", reason="kill key unreadable",
                               error=repr(exc) or type(exc).__name__)
                return
            if latch is not None:
                self.log.error("global_rearm_not_applied", reason="kill key still set",
                               latch=(latch.decode(errors="replace")
                                      if isinstance(latch, bytes) else str(latch))[:200])
                return
            self._generation += 1
            self.latched = False
            self.host.rearm_global()
        else:
            self.log.warning("firm_control_ignored", message=text[:200])


# -- the operator's commands (`mmdaemon kill --global`, `mmdaemon rearm --global`) ----------

def latch_value(note: str, ts_ms: int) -> bytes:
    """What ``kill --global`` stores: who, when (``ts_ms``: ms since the epoch), why.
    Instances treat any value as latched, so ``redis-cli SET <key> 1`` works the same."""
    return orjson.dumps({"by": f"{getpass.getuser()}@{socket.gethostname()}",
                         "ts_ms": ts_ms, "note": note})


class Sent(NamedTuple):
    """What a global command did: subscribers that received the message, and the wall time
    (ns since the epoch) just before the command was written to Redis."""

    receivers: int
    sent_ns: int


async def global_kill(firm: FirmConfig, password: str | None, note: str,
                      clock: Clock | None = None) -> Sent:
    """Set the latched kill key and publish ``kill``, atomically (MULTI/EXEC); the stamps
    are ``clock``'s wall time (the system's by default)."""
    keys = Keys(firm.namespace, firm.desk)
    client = connect(firm, password)
    wall_ns = (clock or SystemClock()).wall_ns
    try:
        pipe = client.pipeline(transaction=True)
        pipe.set(keys.kill, latch_value(note, wall_ns() // 1_000_000))
        pipe.publish(keys.channel, KILL_MESSAGE)
        sent_ns = wall_ns()
        _, receivers = await pipe.execute()
        return Sent(int(receivers), sent_ns)
    finally:
        await client.aclose()


async def global_rearm(firm: FirmConfig, password: str | None) -> tuple[bool, int]:
    """Delete the kill key and publish ``rearm``; (whether it was set, subscribers)."""
    keys = Keys(firm.namespace, firm.desk)
    client = connect(firm, password)
    try:
        pipe = client.pipeline(transaction=True)
        pipe.delete(keys.kill)
        pipe.publish(keys.channel, REARM_MESSAGE)
        deleted, receivers = await pipe.execute()
        return bool(deleted), int(receivers)
    finally:
        await client.aclose()
