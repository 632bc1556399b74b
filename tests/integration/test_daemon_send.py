"""Order actions that went stale while they waited for the send lock are dropped.

Found by the crash matrix's long run: a halt's cancel-all held the send lock while the feed
task, having decided an amend of the bid, waited for it; the cancel-all's confirmation
removed the order, and the amend then failed with a KeyError that took the daemon down
(exit 1). The test below replays that interleaving on a real service (journal, order
manager, paper exchange)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mmdaemon.clock import SystemClock
from mmdaemon.config_file import load_config
from mmdaemon.daemon import Service
from mmdaemon.model import Ladder, OrderStatus, OrderUpdate, Side
from mmdaemon.orders.manager import OrderAction, OrderManager
from mmdaemon.risk.state import TradingState
from tests.helpers import until, write_config
from tests.recorder import Recorder


def bid_only(bid: int) -> Ladder:
    """One bid of 1,000 lots, no ask."""
    return Ladder(((bid, 1000),), (), float(bid), 0)


def live_bid(manager: OrderManager, price: int) -> OrderAction:
    """A bid placed and acknowledged; its place action."""
    (place,) = manager.decide(bid_only(price))
    manager.sent(place)
    manager.on_update(OrderUpdate(place.order_id, OrderStatus.NEW, Side.BUY, place.price,
                                  place.size, 0, "", 0))
    return place


def test_applies_knows_stale_actions() -> None:
    m = OrderManager(run_id=1, price_tolerance_ticks=1, size_tolerance_lots=1)
    place = live_bid(m, 100)
    assert not m.applies(place)  # the side has its order now
    (amend,) = m.decide(bid_only(105))
    cancel = m.cancel(place.order_id)
    assert m.applies(amend) and m.applies(cancel)
    m.sent(cancel)
    assert not m.applies(amend) and not m.applies(cancel)  # a cancel is in flight
    m.on_update(OrderUpdate(place.order_id, OrderStatus.CANCELED, Side.BUY, 100, 1000, 0,
                            "", 0))
    assert not m.applies(amend) and not m.applies(cancel)  # the order is gone
    assert m.applies(place._replace(order_id=place.order_id + 1))  # the side is free again


async def test_an_amend_of_an_order_closed_while_it_waited_for_the_lock_is_dropped(
    tmp_path: Path,
) -> None:
    service = Service(load_config(write_config(tmp_path)), SystemClock(), Recorder(),
                      speed=None)
    service._open()
    try:
        for halt in ("book_out_of_sync", "venue_not_ready"):
            service.engine.risk.set_condition(TradingState.HALTED, halt, False)
        assert service.engine.risk.state is TradingState.ACTIVE
        service.engine.venue_ready = True
        service.engine._fair = 6_200_000.0  # ticks: the price band's centre
        manager = service.engine.manager
        place = live_bid(manager, 6_199_990)
        (amend,) = manager.decide(bid_only(6_200_050))
        assert amend.kind == "amend"
        async with service.sender.lock:  # a cancel-all holds the lock ...
            sender = asyncio.create_task(service.sender.send([amend]))  # ... the feed waits
            lock = service.sender.lock
            await until(lambda: bool(lock._waiters))  # the sender reached the lock
            assert not sender.done()
            # ... and the cancel-all's confirmation closes the order
            service.engine.on_execution(OrderUpdate(
                place.order_id, OrderStatus.CANCELED, Side.BUY, place.price, place.size, 0, "",
                0))
        await sender  # no KeyError: the stale amend is dropped
        assert service.engine.counters.amends == 0 and manager.orders == {}
    finally:
        service.journal.close()
