# mypy: disable-error-code="import-not-found,import-untyped"
# (the anchors' libraries are in their own venv, not in the one mypy runs in)
"""The hftbacktest anchor's strategy (bench/anchors/run.py), compiled by numba (in every
process: a function of hftbacktest's backtest object, which holds pointers, cannot be cached
on disk)."""

from __future__ import annotations

from typing import Any

from hftbacktest import GTX, LIMIT
from numba import njit

NO_PRICE = 2**62  # beyond any real tick: hftbacktest's empty side is at the int64 extremes


@njit
def quote(hbt: Any, step_ns: int, qty: float) -> tuple[int, int]:
    """Every ``step_ns`` of market time (hftbacktest's examples' pattern: ``elapse``, then
    act): a bid at the best bid and an ask at the best ask, each moved (cancel, then a new
    order) when its price moved. Returns the steps taken and the orders sent."""
    steps = sent = 0
    next_id = 1
    bid_id = ask_id = 0  # our live orders' ids, 0: none
    while hbt.elapse(step_ns) == 0:
        steps += 1
        hbt.clear_inactive_orders(0)
        depth = hbt.depth(0)
        bid_tick, ask_tick = depth.best_bid_tick, depth.best_ask_tick
        if bid_tick >= ask_tick or bid_tick <= -NO_PRICE or ask_tick >= NO_PRICE:
            continue  # no two-sided book
        orders = hbt.orders(0)
        if bid_id and bid_id in orders:
            o = orders.get(bid_id)
            if o.price_tick != bid_tick and o.cancellable:
                hbt.cancel(0, bid_id, False)
                bid_id = 0
        else:
            bid_id = 0
        if ask_id and ask_id in orders:
            o = orders.get(ask_id)
            if o.price_tick != ask_tick and o.cancellable:
                hbt.cancel(0, ask_id, False)
                ask_id = 0
        else:
            ask_id = 0
        tick = depth.tick_size
        if bid_id == 0:
            bid_id = next_id
            next_id += 1
            hbt.submit_buy_order(0, bid_id, bid_tick * tick, qty, GTX, LIMIT, False)
            sent += 1
        if ask_id == 0:
            ask_id = next_id
            next_id += 1
            hbt.submit_sell_order(0, ask_id, ask_tick * tick, qty, GTX, LIMIT, False)
            sent += 1
    return steps, sent
