"""``mmdaemon status``: what one instance is doing, as one plain dict, and as text.

Pure: the running daemon's control socket (:mod:`mmdaemon.control`) answers with
:func:`running_status` of a :class:`~mmdaemon.snapshot.Snapshot` and the facts only the
shell knows (:class:`RunFacts`); a stopped instance's status is :func:`stopped_status` of
what its journal and kill latch hold (:class:`StoppedFacts`). Both dicts have the same
keys, so ``status --json`` reads the same way whether the instance runs or not; values
that only a running instance has (uptime, last frame age, pid) are None when stopped.

Units in the dict: position in lots and in base currency (lots x lot_size, a decimal
string: exact); money in quote currency (notional units x tick_size x lot_size, the float
nearest the exact figure); ages and uptime in seconds; times in ns since the epoch, with an ISO
8601 UTC rendering beside each.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from mmdaemon.model import Fill
from mmdaemon.orders.position import Position
from mmdaemon.snapshot import Snapshot

RUNNING, STOPPED = "running", "stopped"
KILLED = "KILLED"


@dataclass(frozen=True, slots=True)
class Versions:
    """What is running: the package's version, Python's, and the config it read (its path
    and the SHA-256 of its bytes at start, so an edit since shows as a different hash)."""

    mmdaemon: str
    python: str
    config: str
    config_sha256: str


@dataclass(frozen=True, slots=True)
class LatchView:
    """The kill latch file as read from disk: whether it says killed, why, and when it was
    last written (the daemon's event time, ns; wall time on a live feed; None without a
    file or a readable record)."""

    latched: bool
    reason: str
    since_ns: int | None


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What a running instance's shell adds to the engine's snapshot."""

    pid: int
    kill_reason: str  # the risk state's, "" unless KILLED
    kill_journaled: bool  # the journal's state row says killed
    # the adapter's view of the venue (paper: the paper venue's); None until order entry
    # has reconciled with the venue once: before, orders the venue holds for us from an
    # earlier run are not counted, so a 0 would be a guess
    venue_open_orders: int | None
    last_frame_age_s: float | None  # None before the first frame
    uptime_s: float
    latch: LatchView
    versions: Versions


@dataclass(frozen=True, slots=True)
class StoppedFacts:
    """What a stopped instance left: its journal's rows and its kill latch."""

    symbol: str
    venue: str
    adapter: str
    currency: str  # the quote currency money is in
    tick_size: Decimal
    lot_size: Decimal
    fills: list[Fill]
    funding: Iterable[int]  # the payments' amounts, notional units (received > 0)
    last_mid_x2: int | None  # best bid + best ask of the last sample, ticks; None if none
    trading_state: str  # the journal's last trading state, "" if none recorded
    kill_journaled: bool
    kill_reason: str
    last_record_ns: int | None  # the newest row's time in the journal, None if empty
    latch: LatchView
    versions: Versions


def _iso(ns: int | None) -> str | None:
    if ns is None or ns <= 0:
        return None
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds")


def _base(lots: int, lot_size: Decimal) -> str:
    """A position in base currency, exact and plain: ``0.00000005``, never ``5E-8``
    (``str`` of a Decimal product switches to an exponent for small values, 0 included)."""
    return format(lots * lot_size, "f")


def _money(units: Fraction | None, money: Fraction) -> float | None:
    # the float nearest the exact value, never rounded to a fixed 1e-8: an ETHBTC notional
    # unit is 1e-13 BTC, and figures rounded one by one stop adding up to the total
    return None if units is None else float(units * money)


def _pnl(realized: Fraction, fees: Fraction, funding: Fraction, unrealized: Fraction | None,
         total: Fraction | None, mark: Fraction | None, tick: Decimal,
         lot: Decimal) -> dict[str, float | None]:
    money = Fraction(tick) * Fraction(lot)
    return {"total": _money(total, money), "realized": _money(realized, money),
            "unrealized": _money(unrealized, money), "fees": _money(fees, money),
            "funding": _money(funding, money),
            "mark": None if mark is None else float(mark * Fraction(tick))}


def _latch(latch: LatchView) -> dict[str, Any]:
    return {"latched": latch.latched, "reason": latch.reason, "since_ns": latch.since_ns,
            "since": _iso(latch.since_ns)}


def _versions(v: Versions) -> dict[str, str]:
    return {"mmdaemon": v.mmdaemon, "python": v.python, "config": v.config,
            "config_sha256": v.config_sha256}


def _reason(state: str, kill_reason: str, halts: Iterable[str],
            reducing: Iterable[str]) -> str:
    """Why the instance is in ``state``: the kill's reason, else the halts, else what has it
    reducing; "" when ACTIVE."""
    if state == KILLED:
        return kill_reason or "killed"
    return ", ".join(halts) or ", ".join(reducing)


def running_status(snap: Snapshot, facts: RunFacts) -> dict[str, Any]:
    """The status of a running instance (``instance: running``). Before its journal is
    open (no trading view yet) the trading fields are None and the state is STARTING."""
    t = snap.trading
    base = {"instance": RUNNING, "pid": facts.pid, "symbol": snap.symbol,
            "venue": snap.venue, "adapter": snap.adapter, "currency": snap.currency,
            "last_frame_age_s": (None if facts.last_frame_age_s is None
                                 else round(facts.last_frame_age_s, 3)),
            "uptime_s": round(facts.uptime_s, 3), "last_record_ns": None,
            "last_record": None, "kill_latch": _latch(facts.latch),
            "kill_journaled": facts.kill_journaled, "versions": _versions(facts.versions)}
    if t is None:
        return {**base, "state": "STARTING", "reason": "journal not open yet", "halts": [],
                "reducing": [], "position": None, "pnl": None,
                "open_orders": {"ours": 0, "venue": facts.venue_open_orders}}
    return {**base, "state": t.state,
            "reason": _reason(t.state, facts.kill_reason, t.halts, t.reducing),
            "halts": list(t.halts), "reducing": list(t.reducing),
            "position": {"lots": t.position_lots,
                         "base": _base(t.position_lots, snap.lot_size)},
            "pnl": _pnl(t.realized_units, t.fees_units, t.funding_units, t.unrealized_units,
                        t.total_units, t.mark_ticks, snap.tick_size, snap.lot_size),
            "open_orders": {"ours": t.open_orders, "venue": facts.venue_open_orders}}


def stopped_status(facts: StoppedFacts) -> dict[str, Any]:
    """The status of an instance that is not running (``instance: stopped``), from its
    journal: the position and PnL its fills and funding add up to (the same arithmetic
    the daemon restores with, :class:`~mmdaemon.orders.position.Position`), marked at the
    last sampled mid. Its state is the latch's KILLED if latched (a start would be
    KILLED), else the journal's last trading state; its open orders are unknown (None)."""
    position = Position()
    for fill in facts.fills:
        position.apply(fill)
    for amount in facts.funding:
        position.apply_funding(amount)
    mark = None if facts.last_mid_x2 is None else Fraction(facts.last_mid_x2, 2)
    unrealized = None if mark is None else position.unrealized(mark)
    total = (position.total(mark) if mark is not None else
             None if position.position else
             Fraction(position.cash - position.fees + position.funding))
    killed = facts.latch.latched or facts.kill_journaled
    state = KILLED if killed else (facts.trading_state or "unknown")
    reason = (facts.latch.reason or facts.kill_reason or "killed") if killed else ""
    return {"instance": STOPPED, "pid": None, "symbol": facts.symbol, "venue": facts.venue,
            "adapter": facts.adapter, "currency": facts.currency, "last_frame_age_s": None,
            "uptime_s": None, "last_record_ns": facts.last_record_ns,
            "last_record": _iso(facts.last_record_ns), "kill_latch": _latch(facts.latch),
            "kill_journaled": facts.kill_journaled, "versions": _versions(facts.versions),
            "state": state, "reason": reason, "halts": [], "reducing": [],
            "position": {"lots": position.position,
                         "base": _base(position.position, facts.lot_size)},
            "pnl": _pnl(position.realized, Fraction(position.fees),
                        Fraction(position.funding), unrealized, total, mark,
                        facts.tick_size, facts.lot_size),
            "open_orders": {"ours": None, "venue": None}}


def kill_confirmed(status: dict[str, Any]) -> bool:
    """A kill is done: the running instance is KILLED, the kill is on disk in both the
    latch file and the journal, and no order is open, by our count nor by the venue's
    (the adapter's view after its cancel-all; paper: the paper venue's book; an unknown
    view, None, is not 0)."""
    orders = status.get("open_orders") or {}
    latch = status.get("kill_latch") or {}
    return (status.get("instance") == RUNNING and status.get("state") == KILLED
            and bool(latch.get("latched")) and bool(status.get("kill_journaled"))
            and orders.get("ours") == 0 and orders.get("venue") == 0)


def _plain(v: float) -> str:
    """A money figure or price as a person reads it: the shortest decimal that reads back as
    ``v`` (the exact figure, at any instrument's scale), in fixed point, trailing zeros
    dropped (``1234567.89``, ``0.0000001234``, ``-3``): never an exponent, never cut to 8
    significant digits (which loses cents above 1e6) nor to 8 decimals (a half tick of
    1e-8, a BTC-quoted notional unit)."""
    text = format(Decimal(repr(v)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def render_text(status: dict[str, Any]) -> str:
    """``mmdaemon status`` without ``--json``: one fact per line, for a person."""
    s = status
    lines = [f"instance:    {s['instance']}"
             + (f" (pid {s['pid']})" if s.get("pid") else "")
             + (f", last journal record {s['last_record'] or 'none'}"
                if s["instance"] == STOPPED else ""),
             f"instrument:  {s['symbol']} on {s['venue']} ({s['adapter']} adapter)",
             f"state:       {s['state']}" + (f" ({s['reason']})" if s["reason"] else "")]
    pos = s.get("position")
    if pos is not None:
        lines.append(f"position:    {pos['lots']} lots = {pos['base']} base")
    pnl = s.get("pnl")
    if pnl is not None:
        cur = f" {s['currency']}" if s.get("currency") else ""

        def num(v: float | None) -> str:
            return "n/a (no mark)" if v is None else _plain(v)
        lines.append(f"pnl:         total {num(pnl['total'])}{cur} = realized "
                     f"{num(pnl['realized'])} + unrealized {num(pnl['unrealized'])} - fees "
                     f"{num(pnl['fees'])} + funding {num(pnl['funding'])}"
                     + (f" (mark {_plain(pnl['mark'])})" if pnl["mark"] is not None else ""))
    orders = s["open_orders"]
    if s["instance"] == RUNNING:
        venue = ("unknown (order entry has not reached the venue yet)"
                 if orders["venue"] is None else orders["venue"])
        lines.append(f"open orders: ours {orders['ours']}, venue {venue}")
    else:
        lines.append("open orders: unknown while stopped (a clean stop's log line `stopped` "
                     "says how many were left; after a crash, orders may still rest at the "
                     "venue until the next start's reconciliation cancels them)")
    if s["instance"] == RUNNING:
        age = s["last_frame_age_s"]
        lines.append("last frame:  " + ("none yet" if age is None else f"{age:.3f} s ago"))
        lines.append(f"uptime:      {s['uptime_s']:.1f} s")
    latch = s["kill_latch"]
    if latch["latched"]:
        lines.append(f"kill latch:  LATCHED since {latch['since'] or 'unknown'} by "
                     f"{latch['reason'] or 'unknown'}"
                     + ("" if s["kill_journaled"] else " (not in the journal)"))
    else:
        lines.append("kill latch:  armed" + (" (the journal says killed)"
                                             if s["kill_journaled"] else ""))
    v = s["versions"]
    lines.append(f"versions:    mmdaemon {v['mmdaemon']}, Python {v['python']}, config "
                 f"{v['config']} (sha256 {v['config_sha256'][:12]})")
    return "\n".join(lines) + "\n"
