"""Order actions out to the venue: one at a time under one lock, each vetted by the engine
right before it leaves.

A kill or halt that lands while another task is sending stops the next request
(:meth:`mmdaemon.engine.Engine.vet` checks the state, that the order still applies, and
the pre-trade checks); an action decided before the lock was free may be about an order
the lock's holder (a cancel-all) has closed meanwhile: it is dropped.
"""

from __future__ import annotations

import asyncio

from mmdaemon.engine import Engine
from mmdaemon.exchange.base import ExchangeAdapter
from mmdaemon.orders.manager import OrderAction


class OrderSender:
    """The only way orders leave: the feed, the supervisor, a kill and the stop share it."""

    def __init__(self, engine: Engine, exchange: ExchangeAdapter) -> None:
        self.engine = engine
        self.exchange = exchange
        self.lock = asyncio.Lock()

    async def send(self, actions: list[OrderAction]) -> None:
        """The engine's order actions, each vetted as it leaves; a vetoed one never does."""
        async with self.lock:
            for action in actions:
                await self._emit(self.engine.vet(action))
            await self.exchange.flush()

    async def cancel_everything(self, why: str) -> None:
        """Pull every quote and wait for the venue to confirm (kill, halt, stop); ``why``
        is the order log's reason. Until the venue is ready nothing is sent: the engine's
        ``cancel_due`` stays set and this runs again once it is back."""
        engine, exchange = self.engine, self.exchange
        if not engine.venue_ready:
            return
        async with self.lock:
            for action in engine.cancel_all():
                await self._emit(engine.vet(action, why))
            open_before = exchange.open_order_count()
            if open_before:
                await exchange.cancel_all()
            open_after = exchange.open_order_count()
        engine.pulled(why, open_before, open_after)

    async def pull(self) -> None:
        """Pull every quote because the trading state says so (named for it in the log:
        halted, killed)."""
        await self.cancel_everything(self.engine.risk.state.value.lower())

    async def _emit(self, action: OrderAction | None) -> None:
        if action is None:
            return
        exchange = self.exchange
        if action.kind == "place":
            await exchange.place(action.order_id, action.side, action.price, action.size,
                                 action.reduce_only)
        elif action.kind == "amend":
            await exchange.amend(action.order_id, action.price, action.size)
        else:
            await exchange.cancel(action.order_id)
