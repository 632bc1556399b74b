"""Asking Binance about our orders and reconciling our view with its (sans I/O).

The half of spot order entry that reads the venue's side of the story: open orders
(``openOrders.status``), the account's trades (``myTrades``, paged by trade id), one order's
status, and what follows from them (see "Reconciliation" in
:mod:`mmdaemon.venues.binance_orders`, whose :class:`~mmdaemon.venues.binance_orders.
OrderEntryProtocol` builds on :class:`Reconciler`). Every multi-step question is a
:data:`~mmdaemon.venues.binance_order_io.Procedure`; nothing here does I/O or reads a clock.
Prices integer ticks, sizes integer lots, times ns since the epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mmdaemon.model import Instrument, OrderUpdate
from mmdaemon.venues import binance_api as api
from mmdaemon.venues import binance_parse as parse
from mmdaemon.venues.binance_balances import Holdings
from mmdaemon.venues.binance_order_io import (
    UNKNOWN_ORDER,
    Procedure,
    Request,
    RequestFailed,
    reason,
    venue_id_of,
)
from mmdaemon.venues.binance_order_state import OpenOrder, OrderRecord, OrderStates, Phase


class Reconciler(OrderStates):
    """Our orders' records plus the venue queries that settle them (see the module doc).

    ``credentials`` sign every query; ``prefix`` starts our client order ids (an order
    without it is another client's, never touched); ``assets``/``asset_prices`` convert
    fees of recovered trades (see :func:`~mmdaemon.venues.binance_parse.parse_event`).
    """

    balances_at_reconcile = True  # spot's account.status (USD-M reads its account its way)

    def __init__(self, instrument: Instrument, credentials: api.Credentials, prefix: str,
                 log: Any, assets: api.Assets | None = None,
                 asset_prices: dict[str, str] | None = None) -> None:
        super().__init__(log)
        self.instrument = instrument
        self._creds = credentials
        self._prefix = prefix
        self._assets = assets or parse.assets_of(instrument.symbol)
        self._asset_prices = asset_prices
        self._cancelling: set[int] = set()  # stray venue orders with a cancel in flight
        self._foreign: set[int] = set()  # venue orderIds known not to be ours
        self.watermark_known = False  # max_trade_id is where myTrades resumes
        self.fills_recovered = 0
        self.holdings = Holdings(instrument, self._assets)  # Balances for the daemon

    # ---- asking the venue ---------------------------------------------------------------------

    def _call(self, build: Callable[[int, int], bytes]) -> Procedure[api.Response]:
        """One request whose answer the procedure reads itself; an error response raises
        :class:`RequestFailed` with its reason."""
        response = yield Request(build)
        if not response.ok:
            raise RequestFailed(reason(response))
        return response

    def _open_orders(self) -> Procedure[list[OpenOrder]]:
        """``openOrders.status``: every open order of the account in the symbol."""
        response = yield from self._call(
            lambda rid, ts: api.open_orders_status(self.instrument, request_id=rid,
                                                   creds=self._creds, timestamp_ms=ts))
        if not isinstance(response.result, list):
            raise RequestFailed("openOrders.status: the result is not a list")
        out: list[OpenOrder] = []
        for entry in response.result:
            update = parse.order_update_from_result(entry, self.instrument, self._prefix)
            if isinstance(update, api.ProtocolError):
                raise RequestFailed(f"openOrders.status: {update.reason}")
            if isinstance(update, OrderUpdate):
                out.append(OpenOrder(update, venue_id_of(entry), str(entry["clientOrderId"])))
            else:
                out.append(OpenOrder(None, update.exchange_order_id, update.client_order_id))
        return out

    def _recover_fills(self) -> Procedure[None]:
        """Deliver every trade of the account after the highest trade id seen before the
        stream's last gap (``myTrades`` from ``fromId``, paged).

        The first time (at start) there is nothing to recover yet: the account's newest
        trade id becomes the starting point instead. Trade ids, not times: they are what the
        venue orders trades by, and they do not depend on our clock agreeing with its.
        """
        if not self.watermark_known:
            latest = yield from self._my_trades(limit=1)
            if latest:
                self.max_trade_id = max(self.max_trade_id, latest[-1].trade_id)
            self.watermark_known = True
            self._gap_after = None  # a failed first attempt's gap: nothing to recover yet
            return
        after = self.max_trade_id if self._gap_after is None else self._gap_after
        self._gap_after = None  # a gap that opens while this runs is the next recovery's
        from_id = after + 1
        touched: set[int] = set()
        try:
            while True:
                trades = yield from self._my_trades(from_id=from_id)
                for trade in trades:
                    order_id = yield from self._on_account_trade(trade)
                    if order_id is not None:
                        touched.add(order_id)
                if len(trades) < api.MAX_MY_TRADES_LIMIT:
                    break
                from_id = trades[-1].trade_id + 1
        except BaseException:  # failed or abandoned: the gap is still to recover
            self._gap_after = after if self._gap_after is None else min(after, self._gap_after)
            raise
        for order_id in touched:
            order = self.orders.get(order_id)
            if order is not None:
                self._sync(order)

    def _my_trades(self, *, from_id: int | None = None, order_id: int | None = None,
                   limit: int = api.MAX_MY_TRADES_LIMIT) -> Procedure[list[api.AccountTrade]]:
        response = yield from self._call(
            lambda rid, ts: api.my_trades(
                self.instrument, from_id=from_id, order_id=order_id, limit=limit,
                request_id=rid, creds=self._creds, timestamp_ms=ts))
        trades = parse.parse_my_trades(response.result, self.instrument)
        if isinstance(trades, api.ProtocolError):
            raise RequestFailed(f"myTrades: {trades.reason}")
        return trades

    def _on_account_trade(self, trade: api.AccountTrade) -> Procedure[int | None]:
        """Deliver one ``myTrades`` trade (once); the order id it belongs to, None if the
        trade is not one of our orders'."""
        if trade.trade_id in self._seen or trade.order_id in self._foreign:
            self._remember(trade.trade_id)
            return None
        order_id = self._owner.get(trade.order_id)
        if order_id is None:
            order_id = yield from self._whose(trade.order_id)
            if order_id is None:
                self._remember(trade.trade_id)
                return None
        order = self.orders[order_id]
        leg = order.legs[trade.order_id]
        fill, converted = parse.fill_from_trade(trade, order_id, self.instrument,
                                              assets=self._assets,
                                              asset_prices=self._asset_prices)
        if not converted:
            self.log.warning("gateway_fee_unconverted", order_id=order_id,
                             commission=str(trade.commission), asset=trade.commission_asset)
        if self._deliver(fill):
            leg.see(order, leg.executed, leg.traded + trade.qty)
            self.fills_recovered += 1
            self.log.info("gateway_fill_recovered", order_id=order_id, exec_id=trade.trade_id,
                          size=trade.qty)
        return order_id

    def _whose(self, vid: int) -> Procedure[int | None]:
        """Our order id of venue order ``vid`` (``order.status``); None if not ours."""
        response = yield from self._call(
            lambda rid, ts: api.order_status(self.instrument, order_id=vid, request_id=rid,
                                             creds=self._creds, timestamp_ms=ts))
        update = parse.order_update_from_result(response.result, self.instrument, self._prefix)
        if isinstance(update, api.ProtocolError):
            raise RequestFailed(f"order.status: {update.reason}")
        if not isinstance(update, OrderUpdate):
            self._foreign.add(vid)
            return None
        result = response.result
        assert isinstance(result, dict)
        order = self._record_for(update.order_id, update.side, str(result["clientOrderId"]))
        self._see_leg(order, vid, update, adopt=order.venue_id == 0)
        return order.order_id

    # ---- reconciliation -----------------------------------------------------------------------

    def reconcile(self) -> Procedure[None]:
        """Make our view the venue's (see the module doc); raises :class:`RequestFailed`."""
        orders, strays = self._settled_candidates()
        if self.balances_at_reconcile:
            status = yield from self._call(lambda rid, ts: api.account_status(
                request_id=rid, creds=self._creds, timestamp_ms=ts))
            self._out.extend(self.holdings.status(status.result))
        listed = yield from self._open_orders()
        yield from self._recover_fills()  # after the snapshot: every fill before it is in here
        open_ids: set[int] = set()
        open_vids: set[int] = set()
        for entry in listed:
            update = entry.update
            if update is None:
                continue  # another client's order on the account: not ours to touch
            order = self._record_for(update.order_id, update.side, entry.client_id)
            leg = self._see_leg(order, entry.venue_id, update)
            self._apply_status(order, entry.venue_id, update)
            open_ids.add(order.order_id)
            open_vids.add(entry.venue_id)
            if entry.venue_id in self._stray and leg.executed > leg.traded:
                yield from self._fill_history(order, entry.venue_id)  # a crashed run's fills
        self._settle_absent(orders, strays, open_ids, open_vids)
        yield from self.cancel_strays()

    def _settled_candidates(self) -> tuple[set[int], set[int]]:
        """Before a snapshot of the open orders: the orders (live or in doubt, no request in
        flight) and stray venue orders that its absence from the snapshot may settle. An
        order acknowledged after the snapshot was taken is not absent from the venue, only
        from the snapshot."""
        orders = {o.order_id for o in self.orders.values()
                  if o.phase in (Phase.LIVE, Phase.DOUBTFUL) and not o.busy}
        return orders, set(self._stray)

    def _settle_absent(self, orders: set[int], strays: set[int], open_ids: set[int],
                       open_vids: set[int]) -> None:
        """Candidates the snapshot did not list ended while we were not looking."""
        for order_id in orders - open_ids:
            order = self.orders.get(order_id)
            if order is None or order.busy:
                continue  # a request in flight will tell
            if order.phase is Phase.LIVE:
                self._close_as_ended(order, "not open at the venue")
            elif order.phase is Phase.DOUBTFUL:
                self._set_phase(order, Phase.GONE)
        for vid in strays - open_vids:
            self._stray.pop(vid, None)

    def _fill_history(self, order: OrderRecord, vid: int) -> Procedure[None]:
        """Every trade of venue order ``vid`` (``myTrades`` by ``orderId``), delivered once."""
        trades = yield from self._my_trades(order_id=vid)
        for trade in trades:
            yield from self._on_account_trade(trade)
        self._sync(order)

    def cancel_strays(self) -> Procedure[None]:
        """Cancel every open venue order of ours that nobody wants (one by one)."""
        for vid in list(self._stray):
            if vid in self._cancelling or vid not in self._stray:
                continue
            self._cancelling.add(vid)
            try:
                yield from self._cancel_venue_order(vid)
            except RequestFailed as exc:
                self.log.warning("gateway_unwanted_cancel_failed", venue_order_id=vid,
                                 reason=exc.reason)
            finally:
                self._cancelling.discard(vid)

    def _cancel_venue_order(self, vid: int) -> Procedure[bool]:
        """``order.cancel`` by venue id; True if the venue cancelled it now. Unknown to the
        venue (-2011) means it is closed already."""
        response = yield Request(
            lambda rid, ts: api.order_cancel(self.instrument, order_id=vid, request_id=rid,
                                             creds=self._creds, timestamp_ms=ts),
            self._on_venue_cancel_response)
        if response.ok:
            self._stray.pop(vid, None)
            order_id = self._owner.get(vid)
            order = self.orders.get(order_id) if order_id is not None else None
            leg = order.legs.get(vid) if order is not None else None
            if order is not None and leg is not None and leg.executed > leg.traded:
                yield from self._fill_history(order, vid)
            return True
        error = response.error
        if error is not None and error.code in UNKNOWN_ORDER:
            self._stray.pop(vid, None)
            return False
        raise RequestFailed(reason(response))

    def _on_venue_cancel_response(self, response: api.Response) -> None:
        if not response.ok:
            return
        update = parse.order_update_from_result(response.result, self.instrument, self._prefix)
        if not isinstance(update, OrderUpdate):
            return
        vid = venue_id_of(response.result)
        order = self._record_for(update.order_id, update.side, "")
        self._see_leg(order, vid, update, adopt=False)
        self._apply_status(order, vid, update)

    def _resolve_missing(self, order: OrderRecord, why: str) -> Procedure[None]:
        """The venue did not know the order we cancelled or replaced: is it open there?"""
        try:
            listed = yield from self._open_orders()
            yield from self._recover_fills()
        except RequestFailed as exc:
            if order.phase is Phase.LIVE:
                self._reject_request(order, f"{why}; status unknown: {exc.reason}")
            return
        for entry in listed:
            if entry.update is not None and entry.update.order_id == order.order_id:
                self._see_leg(order, entry.venue_id, entry.update)
                self._apply_status(order, entry.venue_id, entry.update)
                if order.phase is Phase.LIVE:
                    self._reject_request(order, why)  # open after all: the request failed
                return
        if order.phase is Phase.LIVE:
            self._close_as_ended(order, f"not open at the venue ({why})")

    def sweep_one_by_one(self) -> Procedure[int]:
        """List the open orders, cancel each; when none is listed, settle our view. How
        many the venue cancelled now; raises :class:`RequestFailed`."""
        orders, strays = self._settled_candidates()
        listed = yield from self._open_orders()
        yield from self._recover_fills()
        if not listed:
            self._settle_absent(orders, strays, set(), set())
            return 0
        count = 0
        for entry in listed:
            if entry.update is not None:
                order = self._record_for(entry.update.order_id, entry.update.side,
                                         entry.client_id)
                self._see_leg(order, entry.venue_id, entry.update)
            if (yield from self._cancel_venue_order(entry.venue_id)):
                count += 1
        return count
