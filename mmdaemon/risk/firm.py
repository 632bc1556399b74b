"""Firm-wide risk across instances: the pure core of the risk bus.

Pure, synchronous and deterministic: no I/O and no clock reads (times are passed in).
The async adapter (:mod:`mmdaemon.risk.redis_bus`) moves these records in and out of
Redis; everything that decides lives here:

- :class:`Heartbeat`: what one instance publishes about itself, and its wire form
  (:func:`encode` / :func:`decode`, orjson). Money is exact: the position is an integer
  number of lots with the lot's decimal size beside it, notional and PnL are exact decimal
  strings in the quote currency; no float ever carries money.
- :func:`aggregate`: the desk's exposure from the heartbeats it can see: per base asset
  the gross notional (sum of each instance's absolute notional) and net position, and the
  desk's PnL in its currency.
- :func:`evaluate`: the firm limits against an aggregate, returning each breached limit
  with its action and the aggregate values that tripped it.
- :class:`DeskPeak`: the desk PnL's running peak, for the drawdown limit.
- :class:`LinkHealth`: when the bus last worked, and whether the grace period is over.

Units: positions in lots (signed, long > 0) or base-asset amounts; notional and PnL in
the quote currency; times in integer nanoseconds (``ts_ms`` on the wire: ms since the
epoch).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Literal, NamedTuple

import orjson

HEARTBEAT_VERSION = 1
MAX_RECORD_BYTES = 4096
"""A heartbeat is about 250 bytes; anything much larger is not one of ours."""
MAX_DECIMAL_CHARS = 64
"""Longest decimal text accepted: enough for any real amount, and it keeps a hostile record
from making us build a huge exact number."""
ROUNDING_PLACES = 18
"""Decimal places kept if a value ever has no finite decimal form (the daemon's money is
ticks x lots with half-tick marks, which always has one)."""
STATES = frozenset({"ACTIVE", "REDUCING", "HALTED", "KILLED"})

Action = Literal["reduce", "kill"]


class BadHeartbeat(ValueError):
    """A record that is not a valid heartbeat; the message says which field is wrong."""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """One instance's exposure at ``ts_ms`` (ms since the epoch).

    ``position_lots`` x ``lot_size`` (a decimal string: base-asset amount of one lot) is the
    position in ``base``; ``notional`` is ``|position| x mark`` in ``quote`` (None when the
    instance has no mark yet); ``pnl`` is realised + mark-to-market - fees in ``quote`` (None
    when it holds a position but has no mark yet: cash - fees alone would count the whole
    cost of the position as a loss);
    ``state`` the instance's trading state; ``seq`` counts its heartbeats since it started.
    """

    instance: str
    desk: str
    base: str
    quote: str
    position_lots: int
    lot_size: str
    notional: Fraction | None
    pnl: Fraction | None
    state: str
    seq: int
    ts_ms: int

    @property
    def position(self) -> Fraction:
        """The position in the base asset (signed)."""
        return self.position_lots * Fraction(Decimal(self.lot_size))


def decimal_text(value: Fraction) -> str:
    """``value`` as decimal text: exact whenever it has a finite decimal form (every
    amount the daemon produces has: ticks x lots at half-tick marks), else rounded half
    even to :data:`ROUNDING_PLACES` places."""
    den = value.denominator
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    if den == 1:
        places = max(twos, fives)
        scaled = value * 10**places  # an integer now
        text = str(abs(scaled.numerator))
        if places:
            text = text.rjust(places + 1, "0")
            text = f"{text[:-places]}.{text[-places:]}".rstrip("0").rstrip(".")
        return f"-{text}" if value < 0 else text
    rounded = round(value * 10**ROUNDING_PLACES)
    return decimal_text(Fraction(rounded, 10**ROUNDING_PLACES))


def parse_decimal(text: object, field: str) -> Fraction:
    """Exact value of decimal ``text``; :class:`BadHeartbeat` naming ``field`` otherwise."""
    if not isinstance(text, str) or not 0 < len(text) <= MAX_DECIMAL_CHARS:
        raise BadHeartbeat(f"{field}: expected decimal text of 1..{MAX_DECIMAL_CHARS} chars")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise BadHeartbeat(f"{field}: not a decimal: {text!r}") from None
    if not value.is_finite():
        raise BadHeartbeat(f"{field}: not a finite decimal: {text!r}")
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    if abs(exponent) > MAX_DECIMAL_CHARS:  # 1e-999999 is short text but a huge Fraction
        raise BadHeartbeat(f"{field}: exponent out of range: {text!r}")
    return Fraction(value)


def encode(hb: Heartbeat) -> bytes:
    """The wire form: one JSON object, money as decimal strings."""
    return orjson.dumps({
        "v": HEARTBEAT_VERSION,
        "instance": hb.instance,
        "desk": hb.desk,
        "base": hb.base,
        "quote": hb.quote,
        "position_lots": hb.position_lots,
        "lot_size": hb.lot_size,
        "notional": None if hb.notional is None else decimal_text(hb.notional),
        "pnl": None if hb.pnl is None else decimal_text(hb.pnl),
        "state": hb.state,
        "seq": hb.seq,
        "ts_ms": hb.ts_ms,
    })


def _field(record: dict[str, Any], name: str, kind: type) -> Any:
    value = record.get(name)
    # bool is an int in Python; a JSON true is never a count
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BadHeartbeat(f"{name}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def decode(data: bytes | str) -> Heartbeat:
    """A heartbeat from its wire form; :class:`BadHeartbeat` says what is wrong.

    Unknown extra fields are ignored, so a newer instance's record still reads.
    """
    if len(data) > MAX_RECORD_BYTES:
        raise BadHeartbeat(f"record of {len(data)} bytes > {MAX_RECORD_BYTES}")
    try:
        record = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadHeartbeat(f"not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise BadHeartbeat(f"expected a JSON object, got {type(record).__name__}")
    if record.get("v") != HEARTBEAT_VERSION:
        raise BadHeartbeat(f"v: expected {HEARTBEAT_VERSION}, got {record.get('v')!r}")
    text = {name: _field(record, name, str)
            for name in ("instance", "desk", "base", "quote", "state")}
    if text["state"] not in STATES:
        raise BadHeartbeat(f"state: expected one of {sorted(STATES)}, got {text['state']!r}")
    lot_size = parse_decimal(record.get("lot_size"), "lot_size")
    if lot_size <= 0:
        raise BadHeartbeat("lot_size: expected a positive decimal")
    raw_notional = record.get("notional")
    notional = None if raw_notional is None else parse_decimal(raw_notional, "notional")
    if notional is not None and notional < 0:
        raise BadHeartbeat("notional: expected an absolute (non-negative) amount")
    raw_pnl = record.get("pnl")
    return Heartbeat(
        instance=text["instance"], desk=text["desk"], base=text["base"], quote=text["quote"],
        position_lots=_field(record, "position_lots", int),
        lot_size=record["lot_size"], notional=notional,
        pnl=None if raw_pnl is None else parse_decimal(raw_pnl, "pnl"), state=text["state"],
        seq=_field(record, "seq", int), ts_ms=_field(record, "ts_ms", int),
    )


@dataclass(frozen=True, slots=True)
class AssetExposure:
    """One base asset across the desk: ``gross_notional`` = sum of |notional| in the desk's
    currency, ``net_position`` = sum of positions (base asset), the instances counted,
    those whose notional is unknown (no mark yet: counted in nothing but this), and those
    whose non-zero notional is in another quote currency (``not_comparable``: no
    conversion rates here, so it is not in ``gross_notional``; a flat one is, as zero)."""

    gross_notional: Fraction
    net_position: Fraction
    instances: tuple[str, ...]
    unknown: tuple[str, ...]
    not_comparable: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Aggregate:
    """The desk as seen from the heartbeats: exposure per base asset; PnL in ``currency``
    summed over ``instances``; instances whose PnL is in another currency are listed in
    ``other_currency`` and left out of the sum (no conversion rates here), those whose PnL
    is unknown (a position but no mark yet) in ``unknown_pnl``, also left out.

    ``pnl`` is therefore the PnL of ``instances`` only; ``complete`` says whether that is
    every instance in ``currency`` (only then may it move the desk's peak)."""

    assets: dict[str, AssetExposure]
    currency: str
    pnl: Fraction
    instances: tuple[str, ...]
    other_currency: tuple[str, ...]
    unknown_pnl: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.unknown_pnl


def aggregate(heartbeats: list[Heartbeat], currency: str) -> Aggregate:
    """Sum ``heartbeats`` (one per instance, the caller's freshest) per asset and desk.

    Gross, not net, notional: instances may sit at different venues and accounts, where a
    long here does not offset a short there, and every instance can only shrink its own
    |position| (REDUCING), which shrinks the gross sum but may grow a net one.

    Notional and PnL are summed only in ``currency``: an ETHBTC instance's notional is in
    BTC and is listed as ``not_comparable`` under its base asset instead (unless it is flat:
    zero is zero in any currency). Unknown PnL (a position, no mark) is in ``unknown_pnl``.
    """
    gross: dict[str, Fraction] = {}
    net: dict[str, Fraction] = {}
    members: dict[str, list[str]] = {}
    unknown: dict[str, list[str]] = {}
    foreign: dict[str, list[str]] = {}
    pnl, counted, other, unknown_pnl = Fraction(0), [], [], []
    for hb in sorted(heartbeats, key=lambda h: h.instance):
        members.setdefault(hb.base, []).append(hb.instance)
        net[hb.base] = net.get(hb.base, Fraction(0)) + hb.position
        if hb.notional is None:
            unknown.setdefault(hb.base, []).append(hb.instance)
        elif hb.quote == currency or hb.notional == 0:
            gross[hb.base] = gross.get(hb.base, Fraction(0)) + hb.notional
        else:
            foreign.setdefault(hb.base, []).append(hb.instance)
        if hb.quote != currency:
            other.append(hb.instance)
        elif hb.pnl is None:
            unknown_pnl.append(hb.instance)
        else:
            pnl += hb.pnl
            counted.append(hb.instance)
    assets = {
        base: AssetExposure(gross.get(base, Fraction(0)), net[base], tuple(names),
                            tuple(unknown.get(base, ())), tuple(foreign.get(base, ())))
        for base, names in members.items()
    }
    return Aggregate(assets, currency, pnl, tuple(counted), tuple(other), tuple(unknown_pnl))


@dataclass(frozen=True, slots=True)
class AssetLimit:
    """Gross notional of ``asset`` across the desk, in the desk's currency
    (:attr:`FirmLimits.currency`)."""

    asset: str
    max_notional: Fraction
    action: Action


@dataclass(frozen=True, slots=True)
class FirmLimits:
    """The firm limits: per base asset, and for the desk (loss and drawdown from the peak,
    in ``currency``; None = no such limit)."""

    assets: tuple[AssetLimit, ...] = ()
    currency: str = ""
    max_loss: Fraction | None = None
    max_loss_action: Action = "kill"
    max_drawdown: Fraction | None = None
    max_drawdown_action: Action = "kill"

    def names(self) -> list[tuple[str, Action]]:
        """Every limit's condition name and action, breached or not."""
        names: list[tuple[str, Action]] = [
            (f"firm_notional_{a.asset}", a.action) for a in self.assets]
        if self.max_loss is not None:
            names.append(("firm_loss", self.max_loss_action))
        if self.max_drawdown is not None:
            names.append(("firm_drawdown", self.max_drawdown_action))
        return names


@dataclass(frozen=True, slots=True)
class Breach:
    """A limit reached: its condition ``name``, ``action``, and the values that tripped it
    (decimal strings, quote currency, for the log)."""

    name: str
    action: Action
    values: dict[str, Any]


def evaluate(agg: Aggregate, limits: FirmLimits, peak: Fraction | None) -> list[Breach]:
    """Every limit ``agg`` reaches (``>=``), given the desk PnL ``peak`` so far.

    A notional limit on an asset that an instance holds in another quote currency
    (``not_comparable``) is breached whatever the sum: the limit cannot be checked, and a
    limit that cannot be checked fails closed rather than silently under-counting. The fix
    is in the configuration (a desk per quote currency, or no limit on that asset).

    Loss and drawdown are judged on the PnL that is known (``agg.instances``); instances
    with unknown PnL are listed beside it (``unknown_pnl``) so the log says what is missing.
    """
    breaches = []
    for limit in limits.assets:
        exposure = agg.assets.get(limit.asset)
        if exposure is None:
            continue
        if exposure.gross_notional >= limit.max_notional or exposure.not_comparable:
            breaches.append(Breach(f"firm_notional_{limit.asset}", limit.action, {
                "asset": limit.asset,
                "gross_notional": decimal_text(exposure.gross_notional),
                "currency": agg.currency,
                "net_position": decimal_text(exposure.net_position),
                "limit": decimal_text(limit.max_notional),
                "instances": list(exposure.instances),
                "unknown_notional": list(exposure.unknown),
                "not_comparable": list(exposure.not_comparable),
            }))
    desk = {"desk_pnl": decimal_text(agg.pnl), "currency": agg.currency,
            "instances": list(agg.instances), "unknown_pnl": list(agg.unknown_pnl)}
    if limits.max_loss is not None and -agg.pnl >= limits.max_loss:
        breaches.append(Breach("firm_loss", limits.max_loss_action,
                               {**desk, "limit": decimal_text(limits.max_loss)}))
    if limits.max_drawdown is not None and peak is not None:
        drawdown = peak - agg.pnl
        if drawdown >= limits.max_drawdown:
            breaches.append(Breach("firm_drawdown", limits.max_drawdown_action, {
                **desk, "peak": decimal_text(peak), "drawdown": decimal_text(drawdown),
                "limit": decimal_text(limits.max_drawdown)}))
    return breaches


class DeskPeak:
    """The highest desk PnL seen by this instance since it started (or was re-armed).

    Each instance keeps its own: the peak is a view of what it observed, not shared state,
    so instances started at different times may measure drawdown from different peaks.
    """

    def __init__(self) -> None:
        self.peak: Fraction | None = None

    def observe(self, pnl: Fraction) -> Fraction:
        """Note ``pnl`` (quote currency) and return the peak including it."""
        if self.peak is None or pnl > self.peak:
            self.peak = pnl
        return self.peak

    def observe_desk(self, agg: Aggregate) -> Fraction | None:
        """Note the desk PnL of ``agg`` if it is complete, and return the peak.

        An incomplete sum (some instance's PnL unknown) never moves the peak: it may be
        above the real desk PnL (the missing instance is losing), and a peak set from it
        would later read as a drawdown that never happened.
        """
        return self.observe(agg.pnl) if agg.complete else self.peak

    def reset(self) -> None:
        """A re-arm acknowledges the drawdown so far: measure from the next observation."""
        self.peak = None


class LinkHealth:
    """Whether the bus works, on the caller's clock (monotonic ns).

    ``ready`` once a round trip has succeeded; ``lost(now)`` once one has not succeeded
    for longer than ``grace_ns``, counted from the last success.
    """

    def __init__(self, grace_ns: int) -> None:
        self.grace_ns = grace_ns
        self.last_ok_ns: int | None = None
        self.failures = 0

    @property
    def ready(self) -> bool:
        return self.last_ok_ns is not None

    def ok(self, now_ns: int) -> None:
        self.last_ok_ns = now_ns
        self.failures = 0

    def failed(self) -> None:
        self.failures += 1

    def silent_ns(self, now_ns: int) -> int:
        """How long since the last success (0 before the first)."""
        return 0 if self.last_ok_ns is None else now_ns - self.last_ok_ns

    def lost(self, now_ns: int) -> bool:
        return self.last_ok_ns is not None and now_ns - self.last_ok_ns > self.grace_ns


GLOBAL_KILL_REASON = "global_kill_switch"
"""The kill reason of a global kill: a global re-arm re-arms only instances killed so."""
KILL_MESSAGE, REARM_MESSAGE = "kill", "rearm"
FIRM_NOT_READY = "firm_bus_not_ready"
"""HALTED condition from start until the bus has read the global kill latch once."""
FIRM_UNREACHABLE = "firm_bus_unreachable"
"""HALTED condition (or kill reason) while Redis is unreachable beyond the grace period."""
"""What is published on the control channel."""


@dataclass(frozen=True, slots=True)
class Keys:
    """Where a desk's state lives in Redis.

    ``{namespace}:{{{desk}}}:...``: the desk name in braces is a Redis Cluster hash tag, so
    all of a desk's keys share one slot and a multi-key read (MGET) works on a cluster too.
    """

    namespace: str
    desk: str

    @property
    def prefix(self) -> str:
        return f"{self.namespace}:{{{self.desk}}}"

    def heartbeat(self, instance: str) -> str:
        """The instance's heartbeat (expires after the TTL)."""
        return f"{self.prefix}:hb:{instance}"

    @property
    def instances(self) -> str:
        """The set of instance ids that have ever sent a heartbeat."""
        return f"{self.prefix}:instances"

    @property
    def kill(self) -> str:
        """The latched global kill switch: set = killed (any value), no TTL."""
        return f"{self.prefix}:kill"

    @property
    def channel(self) -> str:
        """Pub/sub channel for ``kill`` / ``rearm`` messages."""
        return f"{self.prefix}:control"


class Exposure(NamedTuple):
    """The local instance's numbers, in its own units: position lots, mark in ticks (None
    without a book), PnL in notional units (ticks x lots; None when unknown: a position and
    no mark), trading state."""

    position_lots: int
    mark_ticks: Fraction | None
    pnl_units: Fraction | None
    state: str


@dataclass(frozen=True, slots=True)
class Identity:
    """Who this instance is on the bus and how its units convert to the desk's: one tick is
    ``tick_size`` quote currency, one lot ``lot_size`` base asset (decimal strings)."""

    instance: str
    desk: str
    base: str
    quote: str
    tick_size: str
    lot_size: str

    def heartbeat(self, exposure: Exposure, seq: int, ts_ms: int) -> Heartbeat:
        """This instance's heartbeat from its local ``exposure``."""
        tick, lot = Fraction(Decimal(self.tick_size)), Fraction(Decimal(self.lot_size))
        lots = exposure.position_lots
        notional: Fraction | None
        if lots == 0:
            notional = Fraction(0)
        elif exposure.mark_ticks is None:
            notional = None
        else:
            notional = abs(lots) * lot * exposure.mark_ticks * tick
        # a position without a mark has no PnL yet, whatever the caller passed: cash - fees
        # would count its whole cost as a loss (flat, cash - fees is the PnL, and known)
        pnl: Fraction | None = None
        if exposure.pnl_units is not None and (lots == 0 or exposure.mark_ticks is not None):
            pnl = exposure.pnl_units * tick * lot
        return Heartbeat(self.instance, self.desk, self.base, self.quote, lots, self.lot_size,
                         notional, pnl, exposure.state, seq, ts_ms)
