"""The USD-M futures sim's matching for one symbol: glue between the futures ledger and the
PaperVenue.

The matching itself is :class:`~mmdaemon.exchange.fill_model.PaperVenue`'s (latency,
post-only, queue position, maker fees), the model the daemon's paper mode and the spot sim
use, so paper and sim agree by construction. :class:`FuturesMatching` checks an order as
Binance USD-M does before handing it over (reduce-only -2022, GTX -5022, margin -2019),
turns what the PaperVenue decides into the :class:`~mmdaemon.sim.futures_accounts.
FuturesLedger`'s state and queues the user-data events (``ORDER_TRADE_UPDATE``,
``ACCOUNT_UPDATE``) for each account's listeners (:attr:`FuturesMatching.outbox`). No I/O.

Time. The PaperVenue runs on the tape's model time (``now_ns`` of the last market event);
every time the venue prints (event ``E``/``T``, order times) is ``now_ms()``, the sim's one
clock, injected.

Synchronous answers. A GTX order that would cross is refused in the response at request time
against the last book and the resting orders of the venue (every account's); with a
positive latency the PaperVenue's own check at arrival stays and an acknowledged order can
end EXPIRED (Binance's word for a GTX order that would have taken). ``order.modify`` is
:meth:`PaperVenue.amend`: same orderId, a size decrease at the same price keeps its queue
place, a price change (or increase) goes to the back of the queue.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

from mmdaemon.book import OrderBook
from mmdaemon.exchange.fill_model import POST_ONLY_CROSS, PaperVenue
from mmdaemon.model import ExecutionEvent, Fill, Instrument, OrderStatus, OrderUpdate, Side, Trade
from mmdaemon.sim import futures_wire as fw
from mmdaemon.sim.futures_accounts import FuturesLedger, FuturesOrder, usdt
from mmdaemon.sim.futures_wire import Reject
from mmdaemon.sim.matching import would_take

UserDataEvent = tuple[str, dict[str, Any]]
"""(API key, event object): a user-data event for that account's listeners."""


class FuturesMatching:
    """Orders of ``ledger``'s accounts in ``instrument``, matched in ``venue``.

    ``next_id`` gives order ids unique across the sim's symbols; ``now_ms`` is the sim's
    clock (ms since the epoch) for every time the venue prints.
    """

    def __init__(self, instrument: Instrument, venue: PaperVenue, ledger: FuturesLedger,
                 next_id: Callable[[], int], now_ms: Callable[[], int]) -> None:
        if venue.instrument.symbol != instrument.symbol:
            raise ValueError(f"FuturesMatching: the venue trades {venue.instrument.symbol}, "
                             f"not {instrument.symbol}")
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.venue = venue
        self.ledger = ledger
        self._next_id = next_id
        self._now_ms = now_ms
        self.book: OrderBook | None = None
        self.now_ns = 0  # model time: the last market event's
        self._in_venue: dict[int, FuturesOrder] = {}  # orders the PaperVenue holds open
        self._acked: set[int] = set()  # orders the client was told NEW
        self._refused: dict[int, str] = {}  # orders the venue refused on arrival: why
        self._filled_accounts: set[str] = set()  # accounts filled since the last check
        self.outbox: list[UserDataEvent] = []

    # ---- market side ------------------------------------------------------------------------

    def advance(self, now_ns: int) -> None:
        """Before the market event at ``now_ns``: requests due by then act on the book as
        it stood (strict time order)."""
        self.now_ns = max(self.now_ns, now_ns)
        self._apply(self.venue.advance(self.now_ns))

    def on_book(self, book: OrderBook, now_ns: int) -> None:
        """A book update: the mark price moves (the mid) and resting orders may fill."""
        self.book = book
        bid, ask = book.bids.best(), book.asks.best()
        if bid is not None and ask is not None:
            self.ledger.marks[self.symbol] = Fraction(bid + ask, 2)
        self.now_ns = max(self.now_ns, now_ns)
        self._apply(self.venue.on_book(book, self.now_ns))

    def on_trade(self, trade: Trade, now_ns: int) -> None:
        """A public trade: our orders at or through its price may fill."""
        self.now_ns = max(self.now_ns, now_ns)
        self._apply(self.venue.on_trade(trade, self.now_ns))

    def take_events(self) -> list[UserDataEvent]:
        """The events queued since the last call, oldest first; the queue empties."""
        outbox, self.outbox = self.outbox, []
        return outbox

    # ---- requests ---------------------------------------------------------------------------

    def place(self, api_key: str, side: Side, price: int, size: int, client_id: str | None,
              reduce_only: bool) -> FuturesOrder:
        """Place a GTX limit order, or raise :class:`Reject` with Binance's code."""
        ledger = self.ledger
        if client_id is not None and client_id in ledger.open[api_key]:
            raise Reject(fw.DUPLICATE_CLIENT_ID)
        if self.book is None:
            raise Reject(fw.NEW_ORDER_REJECTED)
        if reduce_only and not self._reduces(api_key, side, size):
            raise Reject(fw.REDUCE_ONLY_REJECT)
        if self._would_take(side, price):
            raise Reject(fw.GTX_WOULD_TAKE)
        if not reduce_only:
            account = ledger.accounts[api_key]
            margin = price * size * ledger.unit(self.symbol) / account.leverage[self.symbol]
            if margin > ledger.available(api_key):
                raise Reject(fw.MARGIN_INSUFFICIENT)
        order_id = self._next_id()
        ms = self._now_ms()
        order = FuturesOrder(api_key, self.symbol, order_id, client_id or f"sim-{order_id}",
                             side, price, size, reduce_only, ms)
        ledger.add(order)
        self._in_venue[order_id] = order
        now = self.now_ns
        self._apply([*self.venue.place(order_id, side, price, size, now),
                     *self.venue.advance(now)])
        reason = self._refused.pop(order_id, None)
        if reason is not None:  # refused by the venue on arrival: an error, not an event
            ledger.discard(order)
            if POST_ONLY_CROSS in reason:
                raise Reject(fw.GTX_WOULD_TAKE)
            raise Reject(fw.NEW_ORDER_REJECTED, reason)
        if order_id not in self._acked:  # in flight (latency): acknowledged now
            self._ack(order)
        return order

    def cancel(self, order: FuturesOrder) -> None:
        """Cancel an open order now; it is final (CANCELED, or FILLED if it filled first)
        for its client when this returns."""
        now = self.now_ns
        self._apply([*self.venue.cancel(order.order_id, now), *self.venue.advance(now)])
        if not order.closed:  # the cancel is still travelling: final for the client
            self.ledger.close(order, "CANCELED", self._now_ms())
            self._report(order, "CANCELED")

    def modify(self, order: FuturesOrder, price: int, size: int) -> None:
        """Modify an open order in place to ``price`` ticks and total ``size`` lots (the
        executed part counts toward it), or raise -5027 (nothing changes) / -2022 / -2019
        leaving the order as it was, or -5022 when the new price would take: then, as
        Binance cancels a GTX order so modified, the order ends EXPIRED."""
        if price == order.price and size == order.size:
            raise Reject(fw.NO_NEED_TO_MODIFY)
        if price != order.price and self._would_take(order.side, price, exclude=order):
            now = self.now_ns
            events = self.venue.cancel(order.order_id, now)
            self.ledger.close(order, "EXPIRED", self._now_ms())  # the cancel is final
            self._report(order, "EXPIRED")
            self._apply([*events, *self.venue.advance(now)])
            raise Reject(fw.GTX_WOULD_TAKE)
        api_key, ledger = order.api_key, self.ledger
        if order.reduce_only and not self._reduces(api_key, order.side,
                                                   size - order.executed, exclude=order):
            raise Reject(fw.REDUCE_ONLY_REJECT)
        if not order.reduce_only:
            unit = ledger.unit(self.symbol)
            leverage = ledger.accounts[api_key].leverage[self.symbol]
            extra = (price * max(size - order.executed, 0) - order.price * order.left) \
                * unit / leverage
            if extra > 0 and extra > ledger.available(api_key):
                raise Reject(fw.MARGIN_INSUFFICIENT)
        now = self.now_ns
        events = self.venue.amend(order.order_id, price, size, now)
        order.price, order.size = price, size
        order.update_ms = self._now_ms()
        if size <= order.executed:  # nothing left: the venue ends the order
            order.size = max(size, order.executed)
        else:
            self._report(order, "AMENDMENT")
        self._apply([*events, *self.venue.advance(now)])

    def settle_funding(self, rate: Fraction, ms: int) -> int:
        """Pay funding at ``rate`` (a fraction, positive: longs pay shorts) on every
        account's position at the mark price (the mid): ``amount x mark x rate`` USDT,
        rounded to Binance's 8 decimals, booked as income at the funding time ``ms`` with
        one ``ACCOUNT_UPDATE`` (m = FUNDING_FEE, the balance alone: no position) per
        account; returns how many accounts paid or received."""
        ledger = self.ledger
        mark = ledger.marks[self.symbol]
        if not mark:
            return 0  # no book yet: no mark price to settle at
        unit = ledger.unit(self.symbol)
        paid = 0
        for api_key, account in ledger.accounts.items():
            amount = account.positions[self.symbol].amount
            if not amount:
                continue
            payment = Fraction(Decimal(usdt(-amount * mark * unit * rate)))
            if not payment:
                continue
            ledger.pay_funding(api_key, self.symbol, payment, ms)
            # positions are cross margined: Binance's event then carries the balance alone,
            # no position (a client cannot tell from it which symbol paid)
            event = fw.account_update(ledger, api_key, "FUNDING_FEE", ms, payment, [])
            self.outbox.append((api_key, event))
            paid += 1
        return paid

    # ---- checks -----------------------------------------------------------------------------

    def _reduces(self, api_key: str, side: Side, size: int,
                 exclude: FuturesOrder | None = None) -> bool:
        """Whether ``size`` lots on ``side``, with the account's other open reduce-only
        orders on that side, only reduce the position."""
        amount = self.ledger.accounts[api_key].positions[self.symbol].amount
        if amount == 0 or (amount > 0) == (side is Side.BUY):
            return False
        pending = sum(o.left for o in self.ledger.open[api_key].values()
                      if o.symbol == self.symbol and o.reduce_only and o.side is side
                      and o is not exclude)
        return size + pending <= abs(amount)

    def _would_take(self, side: Side, price: int, exclude: FuturesOrder | None = None) -> bool:
        """Post-only check now: against the last book and the venue's resting orders."""
        assert self.book is not None
        return would_take(self.book, side, price, [
            o.price for o in self._in_venue.values()
            if o.side is not side and o is not exclude and o.order_id in self._acked])

    # ---- what the PaperVenue decided --------------------------------------------------------

    def _apply(self, events: list[ExecutionEvent]) -> None:
        for event in events:
            if type(event) is Fill:
                self._on_fill(event)
            else:
                assert isinstance(event, OrderUpdate)
                self._on_update(event)
        if self._filled_accounts:
            accounts, self._filled_accounts = self._filled_accounts, set()
            if self._expire_reduce_only(accounts):
                # the expiries' cancels reach the venue now, after the event that filled
                self._apply(self.venue.advance(self.now_ns))

    def _expire_reduce_only(self, api_keys: set[str]) -> bool:
        """Expire the open reduce-only orders of ``api_keys`` that would no longer reduce
        the position (it closed, or flipped to their side), as Binance does; whether any."""
        expired = False
        ms = self._now_ms()
        for api_key in sorted(api_keys):
            amount = self.ledger.accounts[api_key].positions[self.symbol].amount
            for order in self.ledger.open_orders(api_key, self.symbol):
                if order.reduce_only and (amount == 0 or (amount > 0) == (order.side is Side.BUY)):
                    self.venue.cancel(order.order_id, self.now_ns)
                    self.ledger.close(order, "EXPIRED", ms)
                    self._report(order, "EXPIRED")
                    expired = True
        return expired

    def _ack(self, order: FuturesOrder) -> None:
        self._acked.add(order.order_id)
        self._report(order, "NEW")

    def _on_update(self, update: OrderUpdate) -> None:
        order = self._in_venue.get(update.order_id)
        if order is None:
            return
        status = update.status
        if status is OrderStatus.NEW or status is OrderStatus.PARTIALLY_FILLED:
            if order.order_id not in self._acked:
                self._ack(order)
            return
        if status is OrderStatus.REJECTED:
            state = self.venue.order(update.order_id)
            if state is not None and state.status is not OrderStatus.REJECTED:
                return  # the venue refused a request about the order, not the order
        elif status is not OrderStatus.FILLED and status is not OrderStatus.CANCELED:
            return  # PENDING_NEW / PENDING_CANCEL: internal to the venue
        del self._in_venue[update.order_id]
        if order.closed:
            return
        ms = self._now_ms()
        if status is OrderStatus.FILLED:
            self.ledger.close(order, "FILLED", ms)  # its TRADE report already went out
        elif status is OrderStatus.CANCELED:
            crossed = POST_ONLY_CROSS in update.reason
            self.ledger.close(order, "EXPIRED" if crossed else "CANCELED", ms)
            self._report(order, "EXPIRED" if crossed else "CANCELED")
        elif order.order_id in self._acked:  # crossed on arrival after its ack (latency)
            self.ledger.close(order, "EXPIRED", ms)
            self._report(order, "EXPIRED")
        else:
            self._refused[order.order_id] = update.reason  # place() makes it the error

    def _on_fill(self, fill: Fill) -> None:
        order = self._in_venue.get(fill.order_id)
        if order is None:
            return
        ms = self._now_ms()
        trade = self.ledger.record_fill(order, fill.price, fill.size, fill.fee, fill.maker, ms)
        self._filled_accounts.add(order.api_key)
        self._report(order, "TRADE", last_qty=fill.size, last_price=fill.price,
                     commission=trade.commission, trade_id=trade.trade_id, maker=fill.maker,
                     realized=trade.realized)
        # bc is the balance change other than PnL and commission (Binance): none for a fill
        self.outbox.append((order.api_key, fw.account_update(
            self.ledger, order.api_key, "ORDER", ms, Fraction(0), [self.symbol])))

    def _report(self, order: FuturesOrder, execution: str, *, last_qty: int = 0,
                last_price: int = 0, commission: Fraction = Fraction(0), trade_id: int = 0,
                maker: bool = False, realized: Fraction = Fraction(0)) -> None:
        self.outbox.append((order.api_key, fw.order_trade_update(
            self.instrument, order, self.ledger, execution=execution, event_ms=self._now_ms(),
            last_qty=last_qty, last_price=last_price, commission=commission,
            trade_id=trade_id, maker=maker, realized=realized)))
