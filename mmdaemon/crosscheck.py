"""Cross-check of the paper exchange's fills against hftbacktest (issue #17, item 8).

hftbacktest (PyPI ``hftbacktest``, a dev-only dependency, imported lazily: the runtime
package never needs it) is a backtester written by others with queue and latency models.
This module replays *our own* order log through it on the same recording and compares
the fills it gives with ours, one to one.

The timeline (both backtesters on one clock)
--------------------------------------------
Our paper exchange (:mod:`mmdaemon.exchange.paper`) runs on the daemon's event clock: the
recorded receive time ``recv``. The venue's market is the recorded market ``feed`` earlier,
and a request sent at ``t`` takes effect at ``t + entry + feed`` on that clock, against the
book as it stood then; a request due exactly at an event's time acts before it.

hftbacktest has an exchange clock (``exch_ts``) and a local clock (``local_ts``) and an
order reaches the exchange ``entry`` after it was sent on the local clock. So the converted
events carry ``local_ts = recv`` and ``exch_ts = recv - feed``: an event the daemon sees at
``recv`` happened at the venue ``feed`` before, on the same axis, and a request sent at
``t`` (local) reaches hftbacktest's exchange at ``t + entry``, when it has processed exactly
the events with ``recv - feed < t + entry``: the events our venue has applied before a
request due at ``t + entry + feed``. hftbacktest breaks a tie between an exchange event
and an arriving order in favour of the event, ours in favour of the request, so its entry
latency is ``entry - 1`` ns (all times are integers: ``d <= e`` iff ``d - 1 < e``). Its
response latency is 0: it does not change any fill (the exchange side never waits for
the local side), and it keeps hftbacktest's local side informed no later than our daemon
was, so every cancel or amend we sent finds the order's state known there (hftbacktest
refuses a request on an order with one in flight). A fill hftbacktest makes at exchange
time ``x`` is at ``x + feed`` on our clock, the event time our venue reports (``venue_ns``).

What is compared
----------------
- Events: depth diffs and the REST snapshot, and trades, exactly as our codec applies them
  to our book (the bookTicker stream does not change our book and is left out); a
  snapshot clears both sides first. Diffs buffered before the snapshot take effect at the
  snapshot's time, as in the daemon.
- Orders: every ``place``, ``amend`` and ``cancel`` of our order log (``mmdaemon export``'s
  ``orders.csv``) at its ``ts_ns``, as post-only (GTX) limit orders. An amend goes to the
  remaining size (new total - filled there) as our venue takes it: a smaller size at the
  same price keeps the queue place (hftbacktest's ``modify``), a price change or a larger
  size rejoins the back. hftbacktest's ``modify`` that rejoins the queue keeps the old
  remaining size, so such an amend is sent as its ``modify`` only when the remaining size
  is unchanged, else as a cancel and a new order (under an id of its own, mapped back to
  ours); if the old order had filled before they arrived, our venue would have refused the
  amend, so the new order is pulled and its fills are left out (``ghost``).
- Models: hftbacktest's ``partial_fill_exchange`` (a trade at our price fills the excess
  over the queue ahead, like ours) with ``risk_adverse_queue_model`` (join the back,
  queue capped at the displayed size, trades at our price eat the queue first): the same
  conservative queue as ours.
- Fills (``fills.csv``, at ``venue_ns``) are compared per (order, event time): fills of
  one order at one instant (one event) are summed on both sides. A fill matches when
  order, side, price, size and time are all equal: the time tolerance is 0 ns, because
  both replays run on one clock, and a fill at any other time was made by a different
  market event, a difference of model to be explained, not a rounding. What is left over
  is classified (:func:`compare`): the differences of rule between the two models
  (:data:`RULE_CLASSES`), and anything else, which is unexplained.
"""

from __future__ import annotations

import csv
import importlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from mmdaemon.model import BookUpdate, Gap, Instrument, Side, Trade

ACTION_EVENTS = ("place", "amend", "cancel")


class CrossCheckError(ValueError):
    """Input the cross-check cannot use: names the file or setting and the fix."""


class Action(NamedTuple):
    """One order action we sent: ``kind`` place / amend / cancel, at ``ts_ns`` (daemon
    clock); ``price`` ticks and ``size`` lots (total size) for place and amend."""

    ts_ns: int
    kind: str
    order_id: int
    side: Side
    price: int
    size: int


class FillKey(NamedTuple):
    """A fill as compared: order, side, price (ticks), size (lots), venue time (ns, our
    clock). Fills of one order at one time are summed into one."""

    order_id: int
    side: Side
    price: int
    size: int
    ts_ns: int


# ---- our order log (the contract's CSV) ----------------------------------------------------


def _int(row: dict[str, str], key: str, path: Path, line: int) -> int:
    text = row.get(key) or ""
    try:
        return int(text)
    except ValueError:
        raise CrossCheckError(f"{path}:{line}: column {key!r}: expected an integer, got "
                              f"{text!r} (write it with 'mmdaemon export')") from None


def _side(text: str, path: Path, line: int) -> Side:
    try:
        return Side[text.strip().upper()]
    except KeyError:
        raise CrossCheckError(f"{path}:{line}: column 'side': expected BUY or SELL, got "
                              f"{text!r}") from None


def _rows(path: Path, needed: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        handle = path.open(newline="")
    except OSError as exc:
        raise CrossCheckError(f"{path}: cannot read it: {exc.strerror}") from None
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in needed if c not in (reader.fieldnames or [])]
        if missing:
            raise CrossCheckError(f"{path}: no column {', '.join(missing)}: expected the CSV "
                                  "that 'mmdaemon export' writes")
        yield from enumerate(reader, start=2)


def read_actions(path: Path) -> list[Action]:
    """Our ``place`` / ``amend`` / ``cancel`` rows of an ``orders.csv``, in file order (the
    journal's, which is sending order)."""
    out: list[Action] = []
    for line, row in _rows(path, ("ts_ns", "event", "order_id", "side", "price_ticks",
                                  "size_lots")):
        kind = row["event"]
        if kind not in ACTION_EVENTS:
            continue  # a venue answer
        priced = kind != "cancel"
        out.append(Action(
            _int(row, "ts_ns", path, line), kind, _int(row, "order_id", path, line),
            _side(row["side"], path, line),
            _int(row, "price_ticks", path, line) if priced else 0,
            _int(row, "size_lots", path, line) if priced else 0))
    return out


def read_self_crosses(path: Path) -> dict[int, int]:
    """Orders of an ``orders.csv`` that our venue ended as crossing *our own* resting order:
    a post-only place rejected, or an amend that would cross cancelled, while an order of
    ours on the other side rested at or through the price asked (as the log's answers show
    it: acknowledged and not yet filled or closed). Order id -> the time of that answer
    (ns, our clock)."""
    out: dict[int, int] = {}
    asked: dict[int, tuple[Side, int]] = {}  # order: side and price of its last request
    resting: dict[int, tuple[Side, int]] = {}  # acknowledged, open orders: side, price
    for line, row in _rows(path, ("ts_ns", "event", "order_id", "side", "price_ticks",
                                  "reason")):
        kind, order_id = row["event"], _int(row, "order_id", path, line)
        if kind in ("place", "amend"):
            asked[order_id] = (_side(row["side"], path, line),
                               _int(row, "price_ticks", path, line))
        elif kind == "ack":
            resting[order_id] = (_side(row["side"], path, line),
                                 _int(row, "price_ticks", path, line))
        elif kind in ("filled", "canceled", "reject", "expired"):
            resting.pop(order_id, None)
            if "would cross" in row["reason"] and order_id in asked:
                side, price = asked[order_id]
                if any(other is not side and (o_price <= price if side is Side.BUY
                                              else o_price >= price)
                       for other, o_price in resting.values()):
                    out.setdefault(order_id, _int(row, "ts_ns", path, line))
    return out


def read_fills(path: Path) -> list[FillKey]:
    """The fills of a ``fills.csv``, at the venue's time (``venue_ns``, ours: the event
    that filled us), summed per (order, time)."""
    sums: dict[tuple[int, Side, int, int], int] = defaultdict(int)
    for line, row in _rows(path, ("venue_ns", "order_id", "side", "price_ticks",
                                  "size_lots")):
        key = (_int(row, "order_id", path, line), _side(row["side"], path, line),
               _int(row, "price_ticks", path, line), _int(row, "venue_ns", path, line))
        sums[key] += _int(row, "size_lots", path, line)
    return sorted((FillKey(o, s, p, lots, t) for (o, s, p, t), lots in sums.items()),
                  key=lambda f: (f.ts_ns, f.order_id))


# ---- the recording in hftbacktest's event format --------------------------------------------


def convert(recordings: Sequence[str | Path], instrument: Instrument, venue: str,
            feed_ns: int) -> Any:
    """The recording as hftbacktest events (a numpy array of its ``event_dtype``): depth
    and trades as our codec applies them, ``local_ts = recv``, ``exch_ts = recv - feed_ns``.

    Raises :class:`CrossCheckError` if the book loses sync (a gap or a crossed book): our
    venue then stops modelling fills until the next snapshot, which hftbacktest's events
    cannot express, so such a recording cannot be compared.
    """
    import numpy as np

    from mmdaemon.feed.recording import read_recording
    from mmdaemon.market import MarketState
    from mmdaemon.model import Malformed
    from mmdaemon.venues.binance import BinanceCodec

    hbt = _hftbacktest()
    # exchange events only: the local side's book is not used (our actions are fixed), and
    # without its feed hftbacktest's wait returns on order responses alone
    flags = int(hbt.EXCH_EVENT)
    bid, ask = flags | int(hbt.BUY_EVENT), flags | int(hbt.SELL_EVENT)
    depth, snap = int(hbt.DEPTH_EVENT), int(hbt.DEPTH_SNAPSHOT_EVENT)
    clear = flags | int(hbt.DEPTH_CLEAR_EVENT)
    buy_trade = bid | int(hbt.TRADE_EVENT)
    sell_trade = ask | int(hbt.TRADE_EVENT)
    tick, lot = float(instrument.tick_size), float(instrument.lot_size)
    market = MarketState(BinanceCodec(instrument, "usdm" if venue == "binance-usdm" else "spot"))
    rows: list[tuple[int, int, int, float, float, int, int, float]] = []
    for item in read_recording(recordings):
        if isinstance(item, Malformed):
            continue
        recv_ns, frame = item
        exch_ns = recv_ns - feed_ns
        for event in market.on_frame(recv_ns, frame):
            if type(event) is BookUpdate:
                if event.snapshot:
                    rows.append((clear, exch_ns, recv_ns, 0.0, 0.0, 0, 0, 0.0))
                kind = snap if event.snapshot else depth
                rows.extend((kind | bid, exch_ns, recv_ns, p * tick, s * lot, 0, 0, 0.0)
                            for p, s in event.bids)
                rows.extend((kind | ask, exch_ns, recv_ns, p * tick, s * lot, 0, 0, 0.0)
                            for p, s in event.asks)
            elif type(event) is Trade:
                rows.append((buy_trade if event.aggressor is Side.BUY else sell_trade,
                             exch_ns, recv_ns, event.price * tick, event.size * lot, 0, 0,
                             0.0))
            elif type(event) is Gap:
                raise CrossCheckError(
                    f"{', '.join(map(str, recordings))}: the book lost sync at {recv_ns} "
                    f"({event.reason}): the cross-check needs a recording without gaps")
    if not rows:
        raise CrossCheckError(f"{', '.join(map(str, recordings))}: no depth or trade of "
                              f"{instrument.symbol} in it")
    return np.array(rows, dtype=hbt.binding.event_dtype)


# ---- our actions through hftbacktest --------------------------------------------------------


@dataclass
class _TheirOrder:
    """One order in hftbacktest (quantities in lots, as it last reported them)."""

    our_id: int  # the order of ours it stands for (an amend may need a new one there)
    side: Side
    qty: int = 0
    leaves: int = 0
    status: int = 0
    exch_ns: int = 0  # its last report's exchange time (hftbacktest's clock)
    ghost: bool = False  # replaces an order that had filled before the amend arrived
    purged: bool = False  # our size is filled: the cancel of its surplus was sent


@dataclass
class TheirRun:
    """hftbacktest's side of the comparison: its fills (by our order ids), what became of
    each of our orders there, the actions it could not take (by reason), and how many
    responses were ambiguous (a fill and a modify of one order at one instant)."""

    fills: list[FillKey] = field(default_factory=list)
    history: dict[int, list[tuple[int, str]]] = field(default_factory=dict)  # our id: (ns, what)
    filled: Counter[int] = field(default_factory=Counter)  # our id: lots filled there
    skipped: Counter[str] = field(default_factory=Counter)
    ghost_fills: list[FillKey] = field(default_factory=list)
    merged: int = 0


_STATUS = {0: "none", 1: "new", 2: "expired", 3: "filled", 4: "canceled",
           5: "partially_filled", 6: "rejected"}
_ACTIVE = (1, 5)  # NEW, PARTIALLY_FILLED
_FILLED = 3
_REPLACEMENT_IDS = 1 << 62  # hftbacktest's ids for amends that need a new order: above ours


def _hftbacktest() -> Any:
    """The hftbacktest module; :class:`CrossCheckError` names the fix when it is absent."""
    try:
        return importlib.import_module("hftbacktest")
    except ImportError as exc:
        raise CrossCheckError(
            f"hftbacktest is not importable ({exc}): it is a dev dependency of mmdaemon; "
            "install the dev environment (make .venv/.installed) or pip install hftbacktest"
        ) from None


class _Replay:
    """Our actions through one hftbacktest backtest (see :func:`replay_hftbacktest`).

    Every order goes to hftbacktest with a surplus of ``surplus`` lots, more than all the
    recording's trades together, that never counts: its fills are capped at our size, and
    once our size is filled the order is cancelled there. The surplus works around a bug of
    hftbacktest 2.4.4's partial-fill exchange: an order that a trade at its own price fills
    completely stays in its book, and the next trade at that price stops the backtest
    (InvalidOrderStatus, code 14). With the surplus a trade at our price never completes the
    order; what it fills is the excess over the queue ahead (capped by the trade's size),
    as before, and the queue does not depend on the order's size.
    """

    def __init__(self, events: Any, instrument: Instrument, entry_ns: int, feed_ns: int,
                 surplus: int):
        hbt = _hftbacktest()
        self.tick, self.lot = float(instrument.tick_size), float(instrument.lot_size)
        asset = (hbt.BacktestAsset().data([events]).linear_asset(1.0)
                 .constant_order_latency(entry_ns - 1, 0)
                 .risk_adverse_queue_model().partial_fill_exchange()
                 .trading_value_fee_model(0.0, 0.0).tick_size(self.tick).lot_size(self.lot))
        self.bt = hbt.HashMapMarketDepthBacktest([asset])
        self.gtx, self.limit = hbt.GTX, hbt.LIMIT
        self.arrival_ns = entry_ns - 1  # hftbacktest's clock: sent + this
        self.feed_ns = feed_ns
        self.surplus = surplus
        self.run = TheirRun()
        self.orders: dict[int, _TheirOrder] = {}  # by hftbacktest id
        self.current: dict[int, int] = {}  # our id: the hftbacktest id standing for it now
        self.sizes: dict[int, list[tuple[int, int]]] = {}  # our id: (from ns, total size)
        self.replacing: dict[int, tuple[int, int]] = {}  # old id: (new id, arrival ns)
        self.next_id = _REPLACEMENT_IDS

    def lots(self, qty: float) -> int:
        return round(qty / self.lot)

    def size_at(self, our_id: int, when: int) -> int:
        """Our order's total size (lots) at the venue at ``when`` (our clock)."""
        size = 0
        for since, total in self.sizes[our_id]:
            if since > when:
                break
            size = total
        return size

    def observe(self) -> None:
        """Fold every order's latest response into fills and history."""
        run, orders, bt = self.run, self.orders, self.bt
        view = bt.orders(0).values()
        while view.has_next():
            o = view.get()
            mine = orders.get(o.order_id)
            if mine is None or (o.exch_timestamp == mine.exch_ns and o.status == mine.status):
                continue
            qty, leaves = self.lots(o.qty), self.lots(o.leaves_qty)
            if qty == mine.qty:
                done = mine.leaves - leaves
            else:  # a modify set a new quantity: what it did since is qty - leaves
                done = qty - leaves
                if done > 0:
                    run.merged += 1
            when = o.exch_timestamp + self.feed_ns
            our_id = mine.our_id
            done = min(done, self.size_at(our_id, when) - run.filled[our_id])
            if done > 0:
                fill = FillKey(our_id, mine.side, o.price_tick, done, when)
                (run.ghost_fills if mine.ghost else run.fills).append(fill)
                run.filled[our_id] += done
                if run.filled[our_id] >= self.size_at(our_id, when):
                    run.history.setdefault(our_id, []).append((when, "filled"))
            if o.status != mine.status and o.status not in (*_ACTIVE, _FILLED):
                run.history.setdefault(our_id, []).append(
                    (when, _STATUS.get(o.status, str(o.status))))
            mine.qty, mine.leaves, mine.status = qty, leaves, o.status
            mine.exch_ns = o.exch_timestamp
        for old, (new, arrival) in list(self.replacing.items()):
            before = orders[old]
            if before.status == _FILLED and before.exch_ns <= arrival:
                # our venue would have refused the amend (the order was gone when it
                # arrived): the new order must not trade; it is pulled below
                orders[new].ghost = True
            if before.status not in _ACTIVE:
                del self.replacing[old]
        for order_id, order in orders.items():
            if order.status not in _ACTIVE or order.purged:
                continue
            done = run.filled[order.our_id] >= self.size_at(order.our_id, order.exch_ns
                                                            + self.feed_ns)
            if order.ghost or done:
                local = bt.orders(0).get(order_id)
                if local is not None and local.req == 0:
                    bt.cancel(0, order_id, False)
                    order.purged = True
        bt.clear_inactive_orders(0)

    def run_until(self, ts_ns: int) -> bool:
        """Advance to ``ts_ns`` (local clock), folding in every response on the way; False
        at the end of the data."""
        bt = self.bt
        while (left := ts_ns - bt.current_timestamp) > 0:
            code = bt.wait_next_feed(True, left)
            if code == 3:
                self.observe()
            elif code == 1:
                return False
            elif code != 0:
                raise CrossCheckError(f"hftbacktest failed (code {code}) at {ts_ns} ns")
        return True

    def place(self, their_id: int, our_id: int, side: Side, price: int, size: int) -> bool:
        bt = self.bt
        submit = bt.submit_buy_order if side is Side.BUY else bt.submit_sell_order
        qty = size + self.surplus
        code = submit(0, their_id, price * self.tick, qty * self.lot, self.gtx, self.limit,
                      False)
        if code:
            self.run.skipped[f"place refused (code {code})"] += 1
            return False
        self.orders[their_id] = _TheirOrder(our_id, side, qty, qty)
        self.current[our_id] = their_id
        return True

    def act(self, action: Action) -> None:
        """One of our actions, as our venue would take it (see the module docstring)."""
        bt, run, our_id = self.bt, self.run, action.order_id
        if action.kind != "cancel":
            arrival = action.ts_ns + self.arrival_ns + self.feed_ns
            self.sizes.setdefault(our_id, []).append((arrival, action.size))
        if action.kind == "place":
            self.place(our_id, our_id, action.side, action.price, action.size)
            return
        their_id = self.current.get(our_id, -1)
        order = self.orders.get(their_id)
        local = bt.orders(0).get(their_id) if order is not None else None
        if order is None or local is None or order.status not in _ACTIVE or order.purged:
            run.skipped[f"{action.kind} of an order already closed there"] += 1
            return
        if local.req != 0:
            run.skipped[f"{action.kind} while a request is in flight there"] += 1
            return
        remaining = action.size - run.filled[our_id]
        left = order.leaves - self.surplus  # of our size, there
        if action.kind == "cancel" or remaining <= 0:
            code = bt.cancel(0, their_id, False)
        elif (remaining < left and action.price == local.price_tick) or remaining == left:
            # hftbacktest's modify is right here: a smaller size at the same price keeps
            # the place; any price with the same remaining size rejoins the back
            code = bt.modify(0, their_id, action.price * self.tick,
                             (remaining + self.surplus) * self.lot, False)
        else:
            # a new remaining size that rejoins the queue: hftbacktest's modify would keep
            # the old remaining size (leaves_qty) there, so cancel and place a new order
            code = bt.cancel(0, their_id, False)
            if not code:
                self.next_id += 1
                if self.place(self.next_id, our_id, action.side, action.price, remaining):
                    self.replacing[their_id] = (self.next_id, action.ts_ns + self.arrival_ns)
        if code:
            run.skipped[f"{action.kind} refused (code {code})"] += 1


def replay_hftbacktest(events: Any, actions: Sequence[Action], instrument: Instrument,
                       entry_ns: int, feed_ns: int) -> TheirRun:
    """Send ``actions`` through hftbacktest on ``events`` (see :func:`convert`) and return
    its fills, by our order ids, at their time on our clock (exchange time + ``feed_ns``).

    ``entry_ns`` (>= 1) is our order-entry latency; see the module docstring for why
    hftbacktest gets ``entry_ns - 1`` and a response latency of 0.
    """
    if entry_ns < 1:
        raise CrossCheckError(f"entry latency {entry_ns} ns: the cross-check needs at least "
                              "1 ns (exchange.latency_ms > 0)")
    traded = events["qty"][(events["ev"] & 0xFF) == int(_hftbacktest().TRADE_EVENT)].sum()
    replay = _Replay(events, instrument, entry_ns, feed_ns,
                     surplus=round(float(traded) / float(instrument.lot_size)) + 1)
    bt, run = replay.bt, replay.run
    bt.elapse(0)  # starts the clock at the first event
    live = True
    for action in actions:
        if live:
            live = replay.run_until(action.ts_ns)
        if live:
            replay.act(action)
        else:
            run.skipped["after the end of the data"] += 1
    if live:
        while bt.wait_next_feed(True, 1 << 62) == 3:
            replay.observe()
    bt.close()
    run.fills.sort(key=lambda f: (f.ts_ns, f.order_id))
    return run


# ---- the comparison -------------------------------------------------------------------------

TRADE_THROUGH = "trade through our price: we fill the print's size, hftbacktest the whole order"
REST_OF_ORDER = "rest of an order hftbacktest had filled whole on a trade through"
SELF_CROSS = ("post-only against our own resting order: we refuse it, hftbacktest (our "
              "orders are not in its book) accepts it")
RULE_CLASSES = (TRADE_THROUGH, REST_OF_ORDER, SELF_CROSS)
"""Differences of rule, not of implementation:

- A public trade printed at a price worse than ours (a buy above our ask) means the market
  went through our order: our venue fills us up to that print's size, print by print (the
  sweep's prints add up to what really traded through us), where hftbacktest's
  partial-fill exchange fills the whole order on the first print (its documented "full
  execution" condition). Our order log goes on as our daemon reacted to the partial fill
  (it requotes the rest), so the rest of that order fills later on our side only.
- A post-only order (or amend) at or through our own resting opposite order would trade
  with it on the venue: our venue refuses it as crossing, as the venue would. hftbacktest
  keeps our orders out of its book and checks the public book only, so it accepts it and
  may fill it. Counted so only when our log shows such an order of ours resting then
  (:func:`read_self_crosses`)."""

Pair = tuple[FillKey | None, FillKey | None]


class Print(NamedTuple):
    """A public trade: price (ticks), size (lots), aggressor."""

    price: int
    size: int
    aggressor: Side


def trade_prints(events: Any, instrument: Instrument) -> dict[int, list[Print]]:
    """The public trades of converted ``events`` by receive time (ns, our clock)."""
    hbt = _hftbacktest()
    trade, buy = int(hbt.TRADE_EVENT), int(hbt.BUY_EVENT)
    tick, lot = float(instrument.tick_size), float(instrument.lot_size)
    prints: dict[int, list[Print]] = defaultdict(list)
    for ev, local_ns, px, qty in zip(events["ev"].tolist(), events["local_ts"].tolist(),
                                     events["px"].tolist(), events["qty"].tolist(),
                                     strict=True):
        if ev & 0xFF == trade:
            prints[local_ns].append(Print(round(px / tick), round(qty / lot),
                                          Side.BUY if ev & buy else Side.SELL))
    return dict(prints)


@dataclass
class Agreement:
    """Our fills against hftbacktest's, one to one (see the module docstring)."""

    matched: list[FillKey]
    ours_only: list[FillKey]
    theirs_only: list[FillKey]
    classes: dict[str, list[Pair]]  # why, (ours, theirs)
    ghosts: int = 0  # hftbacktest fills of amend replacements our venue would have refused

    @staticmethod
    def volume(fills: Iterable[FillKey]) -> int:
        return sum(f.size for f in fills)

    @property
    def ours(self) -> int:
        return len(self.matched) + len(self.ours_only)

    @property
    def theirs(self) -> int:
        return len(self.matched) + len(self.theirs_only)

    @property
    def ours_volume(self) -> int:
        return self.volume(self.matched) + self.volume(self.ours_only)

    @property
    def theirs_volume(self) -> int:
        return self.volume(self.matched) + self.volume(self.theirs_only)

    @property
    def matched_share(self) -> float:
        """Matched fills / our fills (1.0 when neither side has any)."""
        return len(self.matched) / self.ours if self.ours else float(not self.theirs)

    @property
    def volume_gap(self) -> float:
        """(their volume - ours) / ours; 0.0 when both are 0."""
        ours = self.ours_volume
        if not ours:
            return 0.0 if not self.theirs_volume else float("inf")
        return (self.theirs_volume - ours) / ours

    @property
    def unexplained(self) -> int:
        """Fills (either side) left over by anything but a difference of rule."""
        return sum(len(pairs) for why, pairs in self.classes.items()
                   if why not in RULE_CLASSES)

    def _alike(self, fills: Iterable[FillKey]) -> list[FillKey]:
        ruled = {f.order_id for why in RULE_CLASSES for pair in self.classes.get(why, [])
                 for f in pair if f is not None}
        return [f for f in fills if f.order_id not in ruled]

    @property
    def alike_share(self) -> float:
        """Among the fills of orders both models treat by the same rules (no difference of
        :data:`RULE_CLASSES` on them): matched / (matched + either side's unmatched). This
        compares the implementations where the rules agree; 1.0 when there are none."""
        matched = len(self._alike(self.matched))
        total = matched + len(self._alike(self.ours_only)) + len(self._alike(self.theirs_only))
        return matched / total if total else 1.0

    @property
    def alike_volume_gap(self) -> float:
        """:attr:`volume_gap` over the fills of orders both models treat alike."""
        ours = self.volume(self._alike((*self.matched, *self.ours_only)))
        theirs = self.volume(self._alike((*self.matched, *self.theirs_only)))
        if not ours:
            return 0.0 if not theirs else float("inf")
        return (theirs - ours) / ours

    def goal_met(self, share: float = 0.95, volume: float = 0.05) -> bool:
        """The issue's goal: ``share`` of our fills matched one to one and the filled
        volumes within ``volume`` of each other."""
        return self.matched_share >= share and abs(self.volume_gap) <= volume


def compare(ours: Sequence[FillKey], their_run: TheirRun, prints: dict[int, list[Print]],
            self_crosses: dict[int, int] | None = None) -> Agreement:
    """Match fills exactly, then name why each one left over differs."""
    left = Counter(their_run.fills)
    matched: list[FillKey] = []
    ours_only: list[FillKey] = []
    for fill in ours:
        if left[fill]:
            left[fill] -= 1
            matched.append(fill)
        else:
            ours_only.append(fill)
    theirs_only = sorted(left.elements(), key=lambda f: (f.ts_ns, f.order_id))
    classes = _classify(ours_only, theirs_only, their_run, prints, self_crosses or {})
    return Agreement(matched, ours_only, theirs_only, classes, len(their_run.ghost_fills))


def _through(fill: FillKey, prints: dict[int, list[Print]]) -> bool:
    """A print at the fill's time traded through its price (beyond it, against it)."""
    for p in prints.get(fill.ts_ns, ()):
        if fill.side is Side.SELL and p.aggressor is Side.BUY and p.price > fill.price:
            return True
        if fill.side is Side.BUY and p.aggressor is Side.SELL and p.price < fill.price:
            return True
    return False


def _classify(ours_only: Sequence[FillKey], theirs_only: Sequence[FillKey],
              their_run: TheirRun, prints: dict[int, list[Print]],
              self_crosses: dict[int, int]) -> dict[str, list[Pair]]:
    """Pair the unmatched fills of one order at one time, then name each difference."""
    classes: dict[str, list[Pair]] = defaultdict(list)
    theirs_at = {(f.order_id, f.ts_ns): f for f in theirs_only}
    through_at: dict[int, int] = {}  # order: time of its first trade-through difference
    rest: list[FillKey] = []
    for fill in ours_only:
        other = theirs_at.pop((fill.order_id, fill.ts_ns), None)
        if other is None:
            rest.append(fill)
        elif fill.size < other.size and _through(fill, prints):
            classes[TRADE_THROUGH].append((fill, other))
            through_at.setdefault(fill.order_id, fill.ts_ns)
        else:
            why = "same event, we filled less" if fill.size < other.size else \
                "same event, we filled more"
            classes[why].append((fill, other))
    for fill in rest:
        since = through_at.get(fill.order_id)
        if since is not None and since < fill.ts_ns:
            classes[REST_OF_ORDER].append((fill, None))
        else:
            classes[_why_ours_only(fill, their_run)].append((fill, None))
    for fill in theirs_at.values():
        refused = self_crosses.get(fill.order_id)
        if refused is not None and refused <= fill.ts_ns:
            classes[SELF_CROSS].append((None, fill))
        else:
            classes["hftbacktest only"].append((None, fill))
    return dict(classes)


def _why_ours_only(fill: FillKey, their_run: TheirRun) -> str:
    history = their_run.history.get(fill.order_id)
    if history is None:
        return "ours only: the order never reached hftbacktest"
    closed = [what for when, what in history if when <= fill.ts_ns]
    if closed and closed[-1] == "filled":
        return "ours only: hftbacktest had filled the order already"
    if closed and closed[-1] == "expired":
        return "ours only: hftbacktest refused the order (post-only cross)"
    if closed and closed[-1] == "canceled":
        return "ours only: hftbacktest had the order cancelled"
    return "ours only: resting in hftbacktest, not reached"


def table(agreement: Agreement, instrument: Instrument, title: str) -> str:
    """The agreement table and the classes of difference, as Markdown."""
    lot = instrument.lot_size

    def vol(lots: int) -> str:
        return f"{lots * lot:f}".rstrip("0").rstrip(".") or "0"

    a = agreement
    lines = [
        f"### {title}",
        "",
        "| | fills | volume |",
        "|---|---:|---:|",
        f"| ours | {a.ours} | {vol(a.ours_volume)} |",
        f"| hftbacktest | {a.theirs} | {vol(a.theirs_volume)} |",
        f"| matched one to one | {len(a.matched)} ({a.matched_share:.1%} of ours) | "
        f"{vol(a.volume(a.matched))} |",
        f"| ours only | {len(a.ours_only)} | {vol(a.volume(a.ours_only))} |",
        f"| hftbacktest only | {len(a.theirs_only)} | {vol(a.volume(a.theirs_only))} |",
        f"| volume, hftbacktest vs ours | | {a.volume_gap:+.2%} |",
        f"| orders both models treat alike: matched, volume gap | {a.alike_share:.1%} | "
        f"{a.alike_volume_gap:+.2%} |",
    ]
    if a.ghosts:
        lines.append(f"| hftbacktest fills of amends we would have refused (left out) | "
                     f"{a.ghosts} | |")
    if a.classes:
        lines += ["", "| difference | count | example: ours / hftbacktest (order, side, "
                      "price ticks, lots, ns) |", "|---|---:|---|"]
        for why, pairs in sorted(a.classes.items(), key=lambda kv: -len(kv[1])):
            ours, theirs = pairs[0]
            lines.append(f"| {why} | {len(pairs)} | {_fill_text(ours)} / "
                         f"{_fill_text(theirs)} |")
    return "\n".join(lines)


def _fill_text(fill: FillKey | None) -> str:
    if fill is None:
        return "-"
    return f"{fill.order_id} {fill.side.name} {fill.price} {fill.size} {fill.ts_ns}"


# ---- the dry run's order log -----------------------------------------------------------------


def dry_run_order_log(config_path: Path, recordings: Sequence[str], out_dir: Path
                      ) -> tuple[Path, Path]:
    """Run the dry run (``mmdaemon replay``) and export its order log (``mmdaemon
    export``), each in a process of its own, as a user would: ``(orders.csv, fills.csv)``
    in ``out_dir``."""
    import subprocess
    import sys

    state, orders, fills = out_dir / "state", out_dir / "orders.csv", out_dir / "fills.csv"
    me = [sys.executable, "-m", "mmdaemon", "--log-level", "warning"]
    for what, argv in (
        ("the dry run", [*me, "replay", *map(str, recordings), "--config", str(config_path),
                         "--state-dir", str(state), "--json"]),
        ("the export", [*me, "export", str(state), "--orders", str(orders), "--fills",
                        str(fills)]),
    ):
        proc = subprocess.run(argv, capture_output=True, check=False)
        if proc.returncode:
            tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise CrossCheckError(f"{what} failed (exit {proc.returncode}): "
                                  f"{' / '.join(tail)}")
    return orders, fills


# ---- the command ----------------------------------------------------------------------------


@dataclass
class Result:
    """One cross-check: what was compared and how it agreed."""

    title: str
    instrument: Instrument
    agreement: Agreement
    run: TheirRun
    actions: int

    def as_dict(self) -> dict[str, Any]:
        a = self.agreement
        return {
            "title": self.title,
            "actions": self.actions,
            "ours": a.ours, "theirs": a.theirs, "matched": len(a.matched),
            "ours_only": len(a.ours_only), "theirs_only": len(a.theirs_only),
            "ours_volume_lots": a.ours_volume, "theirs_volume_lots": a.theirs_volume,
            "matched_share": a.matched_share, "volume_gap": a.volume_gap,
            "alike_share": a.alike_share, "alike_volume_gap": a.alike_volume_gap,
            "unexplained": a.unexplained,
            "goal_met": a.goal_met(),
            "classes": {why: len(pairs) for why, pairs in a.classes.items()},
            "skipped_actions": dict(self.run.skipped), "ghost_fills": a.ghosts,
            "ambiguous_responses": self.run.merged,
        }


def crosscheck(config_path: Path, recordings: Sequence[str] = (),
               order_log: tuple[Path, Path] | None = None, work_dir: Path | None = None
               ) -> Result:
    """Run the dry run of ``config_path`` on ``recordings`` (default: the config's), or take
    its exported ``order_log`` (orders.csv, fills.csv), replay the actions through
    hftbacktest and compare the fills. :class:`CrossCheckError` for input it cannot use."""
    import tempfile

    from mmdaemon.config import ConfigError, load_config

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise CrossCheckError(f"{config_path}: {exc}") from None
    ex = config.exchange
    if config.instrument.venue not in ("binance-spot", "binance-usdm"):
        raise CrossCheckError(f"{config_path}: instrument.venue {config.instrument.venue!r}: "
                              "the cross-check reads Binance recordings only")
    if ex.adapter != "paper":
        raise CrossCheckError(f"{config_path}: exchange.adapter = {ex.adapter!r}: the "
                              "cross-check compares the paper exchange's fills; give a "
                              "config with adapter = \"paper\"")
    if ex.queue_model != "conservative" or ex.fill_through != "whole":
        raise CrossCheckError(f"{config_path}: exchange.queue_model = {ex.queue_model!r}, "
                              f"fill_through = {ex.fill_through!r}: the cross-check maps "
                              "the conservative queue and whole fills through the book to "
                              "hftbacktest's risk-averse queue and its fills on a cross; "
                              "set queue_model = \"conservative\", fill_through = \"whole\"")
    if ex.latency_file:
        raise CrossCheckError(f"{config_path}: exchange.latency_file is set: the cross-check "
                              "compares constant latencies (hftbacktest's constant model); "
                              "remove it (the constants latency_ms, feed_latency_ms apply)")
    if config.feed.clock != "receive":
        raise CrossCheckError(f"{config_path}: feed.clock = {config.feed.clock!r}: the "
                              "cross-check runs on the recorded receive times; set "
                              "clock = \"receive\"")
    recordings = list(recordings) or list(config.feed.recordings)
    missing = [p for p in recordings if not Path(p).is_file()]
    if not recordings or missing:
        raise CrossCheckError(f"no such recording: {missing[0]}" if missing else
                              f"{config_path}: no recordings: give RECORDING... or set "
                              "feed.recordings")
    _hftbacktest()  # its absence is said before the dry run, not after
    instrument = config.instrument.build()
    feed_ns = round(ex.feed_latency_ms * 1_000_000)
    entry_ns = round(ex.latency_ms * 1_000_000)
    with tempfile.TemporaryDirectory(prefix="mmdaemon-crosscheck-",
                                     dir=work_dir) as tmp:
        if order_log is None:
            order_log = dry_run_order_log(config_path, recordings, Path(tmp))
        actions = read_actions(order_log[0])
        refusals = read_self_crosses(order_log[0])
        ours = read_fills(order_log[1])
    events = convert(recordings, instrument, config.instrument.venue, feed_ns)
    run = replay_hftbacktest(events, actions, instrument, entry_ns, feed_ns)
    agreement = compare(ours, run, trade_prints(events, instrument), refusals)
    title = (f"{config.instrument.venue} {config.instrument.symbol}: "
             f"{', '.join(Path(p).name for p in recordings)} ({Path(config_path).name}; "
             f"entry {ex.latency_ms:g} ms, feed {ex.feed_latency_ms:g} ms)")
    return Result(title, instrument, agreement, run, len(actions))


def main(config_path: Path, recordings: Sequence[str], orders: str | None,
         fills: str | None, as_json: bool) -> int:
    """``mmdaemon crosscheck``: 0 when it ran (whatever the agreement), 2 on bad input."""
    import sys

    import orjson

    if (orders is None) != (fills is None):
        print("mmdaemon crosscheck: give both --orders and --fills (an exported order log) "
              "or neither (run the dry run)", file=sys.stderr)
        return 2
    log = (Path(orders), Path(fills)) if orders is not None and fills is not None else None
    try:
        result = crosscheck(config_path, recordings, log)
    except CrossCheckError as exc:
        print(f"mmdaemon crosscheck: {exc}", file=sys.stderr)
        return 2
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(result.as_dict()) + b"\n")
        return 0
    a = result.agreement
    print(table(a, result.instrument, result.title))
    skipped = ", ".join(f"{why}: {n}" for why, n in sorted(result.run.skipped.items()))
    print(f"\n{result.actions} actions replayed" + (f" (not taken there: {skipped})"
                                                   if skipped else ""))
    print(f"goal (>= 95% of our fills matched one to one, volume within 5%): "
          f"{'met' if a.goal_met() else 'not met'}; differences not explained by a rule: "
          f"{a.unexplained}")
    return 0
