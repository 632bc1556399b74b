"""hftbacktest's side of the cross-check: the recording as its events, and our order
actions through one of its backtests on them (the timeline: :mod:`mmdaemon.crosscheck`).

hftbacktest is a dev-only dependency, imported when a function here runs."""

from __future__ import annotations

import importlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from mmdaemon.crosscheck.our_log import Action, CrossCheckError, FillKey
from mmdaemon.model import BookUpdate, Gap, Instrument, Side, Trade

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

    hbt = hftbacktest_module()
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


def hftbacktest_module() -> Any:
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
        hbt = hftbacktest_module()
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
        """One of our actions, as our venue would take it (see :mod:`mmdaemon.crosscheck`)."""
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

    ``entry_ns`` (>= 1) is our order-entry latency; see :mod:`mmdaemon.crosscheck` for
    why hftbacktest gets ``entry_ns - 1`` and a response latency of 0.
    """
    if entry_ns < 1:
        raise CrossCheckError(f"entry latency {entry_ns} ns: the cross-check needs at least "
                              "1 ns (exchange.latency_ms > 0)")
    traded = events["qty"][(events["ev"] & 0xFF) == int(hftbacktest_module().TRADE_EVENT)].sum()
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



class Print(NamedTuple):
    """A public trade: price (ticks), size (lots), aggressor."""

    price: int
    size: int
    aggressor: Side


def trade_prints(events: Any, instrument: Instrument) -> dict[int, list[Print]]:
    """The public trades of converted ``events`` by receive time (ns, our clock)."""
    hbt = hftbacktest_module()
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
