"""Order entry on Binance USD-M futures, sans I/O: the protocol object behind
:class:`~mmdaemon.exchange.usdm_gateway.UsdmGateway` (issue #21).

It is spot's :class:`~mmdaemon.venues.binance_orders.OrderEntryProtocol` where the two
venues agree (the WebSocket API's frames, signing, ``order.cancel`` and ``order.status``, the
per-order state machine, fill de-duplication by trade id, the reconciliation rules, the
rate-limit hold) and its own where they differ:

- orders are LIMIT GTX (post-only) with ``reduceOnly``; ``amend`` is ``order.modify``, in
  place: the venue order keeps its ``orderId``, and its quantity becomes the new total (what
  executed counts toward it), so one of our orders is ONE venue order whose quantity
  changes (the latest word on it, by venue time, is kept: :meth:`UsdmProtocol._see_leg`);
- the listings are REST (:class:`~mmdaemon.venues.binance_order_io.RestCall`):
  ``openOrders``, ``userTrades`` (fills missed while down, above the highest trade id seen,
  as spot's ``myTrades``), ``income`` FUNDING_FEE (funding missed while down, above the
  highest funding id seen), ``allOpenOrders`` (cancel-all, confirmed by listing the open
  orders again: :meth:`UsdmProtocol.cancel_all` reports confirmed only when the venue lists
  none and no order of ours is in doubt);
- user data comes on a separate stream (``userDataStream.start`` gives its listen key;
  :meth:`UsdmProtocol.receive_user` reads it): ``ORDER_TRADE_UPDATE`` as spot's execution
  reports, ``ACCOUNT_UPDATE`` as a balance refresh (``account_stale``) which, for
  m=FUNDING_FEE, first reads the symbol's ``income`` (Binance's event of a cross position
  carries the account's balance change alone, not which symbol paid: another symbol's
  payment would be booked as ours), ``listenKeyExpired`` as a hang-up (a new
  connection starts a new key and reconciles);
- every reconcile first refuses hedge mode (``dualSidePosition`` true:
  :class:`~mmdaemon.exchange.base.VenueRefused` naming the fix) and ends with the account's
  :class:`~mmdaemon.model.Balances` (available margin, the symbol's leverage).

Account events (:class:`~mmdaemon.model.Funding`, :class:`~mmdaemon.model.Balances`) are
drained from :attr:`UsdmProtocol.account_out` by the shell, after :meth:`outputs`.
Prices ticks, sizes lots (totals, filled part included), money notional units, our times ns.
"""

from __future__ import annotations

from typing import Any, Final

from mmdaemon.model import (
    NS_PER_MS,
    AccountEvent,
    Fill,
    Funding,
    OrderUpdate,
    Side,
    VenueRefused,
)
from mmdaemon.venues import binance_api as api
from mmdaemon.venues import binance_parse as parse
from mmdaemon.venues import usdm_api as usdm
from mmdaemon.venues.binance_order_io import (
    UNKNOWN_ORDER,
    HangUp,
    Hold,
    Procedure,
    Request,
    RequestFailed,
    RestCall,
    reason,
    rest_request,
)
from mmdaemon.venues.binance_order_state import Leg, OpenOrder, OrderRecord, Phase
from mmdaemon.venues.binance_orders import OrderEntryProtocol, refused_for_good

_SEEN_FUNDING: Final = 10_000  # funding ids remembered for de-duplication (3 a day)

HEDGE_MODE_FIX: Final = (
    "the account is in hedge mode (dualSidePosition true); the daemon trades one-way "
    "mode: switch the account to one-way position mode at the venue (POST "
    "/fapi/v1/positionSide/dual dualSidePosition=false, with no open position or order) "
    "and start again")

KEY_FIX: Final = (
    "check the API key and secret (exchange.credentials), that the key may trade USD-M "
    "futures, and its IP restriction at the venue")


class UsdmProtocol(OrderEntryProtocol):
    """The state and decisions of USD-M futures order entry for one instrument (see the
    module doc); arguments as spot's :class:`OrderEntryProtocol`."""

    subscribe_method = usdm.USER_DATA_START
    balances_at_reconcile = False  # read_account, after funding: v2/account.status differs

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.listen_key = ""  # of the current connection; never logged
        self.account_out: list[AccountEvent] = []
        self.account_stale = False  # an ACCOUNT_UPDATE came: re-read the balances
        self.funding_stale = False  # a FUNDING_FEE came: read the symbol's income too
        self.max_funding_id = 0
        self.funding_known = False  # max_funding_id is where income recovery resumes
        self._funding_after: int | None = None  # max_funding_id at the stream's last gap
        self._funding_seen: dict[int, None] = {}  # insertion-ordered: oldest first
        self._qty_ns: dict[int, int] = {}  # venue orderId -> venue time of its quantity
        self.funding_recovered = 0
        # our position (lots) as the journal and the fills delivered since make it; None:
        # not told (no check). The venue's is read with the account (``venue_position``).
        self.position: int | None = None
        self.venue_position: int | None = None

    # ---- the daemon's requests ----------------------------------------------------------------

    def _check_place(self, side: Side, price: int, size: int, reduce_only: bool) -> None:
        """A post-only LIMIT GTX order (``reduce_only``: it may only shrink the position)."""
        usdm.gtx_params(self.instrument, side, price, size, reduce_only)

    def _place_frame(self, side: Side, price: int, size: int, client_id: str,
                     reduce_only: bool, request_id: int, timestamp_ms: int) -> bytes:
        return usdm.order_place(self.instrument, side, price, size, client_id,
                                reduce_only=reduce_only, request_id=request_id,
                                creds=self._creds, timestamp_ms=timestamp_ms)

    def amend(self, order_id: int, price: int, size: int, blocked: str, connected: bool
              ) -> Procedure[None]:
        """``order.modify`` in place to ``price`` ticks and total ``size`` lots (filled part
        included); a size the order has already filled cancels the rest instead."""
        order = self._amendable(order_id, price, size)
        if order is None:
            return
        if blocked or not connected:
            self._reject_request(order, blocked or "disconnected")
            return
        if size <= order.filled():
            yield from self.cancel(order_id, connected)
            return
        try:
            usdm.gtx_params(self.instrument, order.side, price, size, False)
        except ValueError as exc:
            self._reject_request(order, str(exc))
            return
        order.want = size
        vid = order.venue_id
        yield from self._order_request(
            order, Request(
                lambda rid, ts: usdm.order_modify(
                    self.instrument, vid, order.side, price, size, request_id=rid,
                    creds=self._creds, timestamp_ms=ts),
                lambda response: self._on_modify_response(order, response)), "amend")

    def _on_modify_response(self, order: OrderRecord, response: api.Response) -> None:
        if response.ok:
            applied = self._apply_current(order, response.result, "modify")
            if applied and order.phase is Phase.LIVE and order.total_size() != order.want:
                self._reject_request(order, f"amend gave total size {order.total_size()}, "
                                            f"not {order.want}")
            return
        error = response.error
        if error is not None and error.code == usdm.NO_NEED_TO_MODIFY:
            order.last = None  # already as asked: say so, the order manager waits for it
            self._sync(order)
        elif error is not None and error.code in UNKNOWN_ORDER:
            order.resolve = reason(response)
        elif order.phase is Phase.LIVE:
            self._reject_request(order, reason(response))

    def cancel_all(self) -> Procedure[tuple[int, bool]]:
        """``DELETE allOpenOrders`` (everything in the symbol, ours or not), then list the
        open orders: how many the venue had that are now gone, and whether it is confirmed
        (none listed, none of ours in doubt). What is still listed is cancelled one by one;
        the shell calls again until confirmed."""
        before = yield from self._open_orders()
        if before:
            try:
                yield from self._rest(usdm.cancel_all_orders(self.instrument))
            except RequestFailed as exc:
                self.log.warning("gateway_cancel_all_refused", reason=exc.reason)
        orders, strays = self._settled_candidates()
        after = yield from self._open_orders()
        yield from self._recover_fills()  # fills just before the cancel: not lost
        left = {entry.venue_id for entry in after}
        gone = len({entry.venue_id for entry in before} - left)
        if after:
            for entry in after:
                if entry.update is not None:
                    self._see_leg(self._record_for(entry.update.order_id, entry.update.side,
                                                   entry.client_id),
                                  entry.venue_id, entry.update)
                if (yield from self._cancel_venue_order(entry.venue_id)):
                    gone += 1
            return gone, False
        self._settle_absent(orders, strays, set(), set())
        return gone, self.open_order_count() == 0

    def subscribe(self) -> Request:
        """``userDataStream.start``: its ``listenKey`` (kept in :attr:`listen_key`) names
        this connection's user-data stream."""
        self.listen_key = ""
        return Request(lambda rid, ts: usdm.user_data_start(request_id=rid, creds=self._creds),
                       self._on_listen_key)

    def _on_listen_key(self, response: api.Response) -> None:
        key = response.result.get("listenKey") if isinstance(response.result, dict) else None
        if response.ok and isinstance(key, str) and key:
            self.listen_key = key

    def keepalive(self) -> Request:
        """``userDataStream.ping``: the listen key lives 60 more minutes."""
        return Request(lambda rid, ts: usdm.user_data_ping(request_id=rid, creds=self._creds))

    def expect_position(self, lots: int) -> None:
        """Our position in lots (the journal's) before the first reconcile: every
        reconcile compares the venue's ``positionAmt`` with it and the fills since."""
        self.position = lots

    def _deliver(self, fill: Fill) -> bool:
        fresh = super()._deliver(fill)
        if fresh and self.position is not None:
            self.position += fill.size * int(fill.side)
        return fresh

    def resume_funding_after(self, funding_id: int) -> None:
        """Deliver funding with an id (ms) above ``funding_id`` at the next reconcile."""
        self.max_funding_id = max(0, funding_id)
        self._funding_after = self.max_funding_id
        self.funding_known = True

    def rest_answered(self, response: api.Response, mono_ns: int) -> None:
        """Account for a REST answer read at ``mono_ns`` (rate limits, as the WebSocket
        API's: -1003, 429, 418 hold places and amends back)."""
        delay_s = self.limits.on_response(response, mono_ns, self._now_ns // NS_PER_MS)
        if delay_s is not None:
            self.log.warning("gateway_rate_limited", status=response.status,
                             reason=reason(response), retry_in_s=round(delay_s, 3))
            self._out.append(Hold(self.limits.until_ns))

    # ---- user-data stream ---------------------------------------------------------------------

    def receive_user(self, frame: bytes, mono_ns: int, wall_ns: int) -> None:
        """Apply one event read from the user-data stream at ``mono_ns``."""
        self._now_ns = wall_ns
        event = usdm.parse_user_event(frame, self.instrument, self._prefix,
                                      assets=self._assets, asset_prices=self._asset_prices)
        if isinstance(event, api.ExecutionReport):
            self._on_report(event)
        elif isinstance(event, api.ProtocolError):
            self._undecodable(event.reason)
        elif isinstance(event, usdm.AccountUpdate):
            # a cross position's FUNDING_FEE event names no symbol (its ``bc`` may be another
            # symbol's payment on the account): ours is read from the symbol's income
            if event.reason == usdm.FUNDING_FEE:
                self.funding_stale = True
            self.account_stale = True
        elif isinstance(event, api.OtherEvent) and event.kind == "listenKeyExpired":
            self.log.warning("gateway_listen_key_expired")
            self._out.append(HangUp("listenKey expired"))

    def _deliver_funding(self, funding: Funding) -> bool:
        """Hand ``funding`` to the daemon unless its id was delivered already."""
        fid = funding.funding_id
        if fid in self._funding_seen:
            return False
        self._funding_seen[fid] = None
        if len(self._funding_seen) > _SEEN_FUNDING:
            del self._funding_seen[next(iter(self._funding_seen))]
        self.max_funding_id = max(self.max_funding_id, fid)
        self.account_out.append(funding)
        return True

    def _stream_gap(self) -> None:
        super()._stream_gap()
        if self._funding_after is None:
            self._funding_after = self.max_funding_id

    # ---- leg quantity and price: modify changes them in place -------------------------------

    def _see_leg(self, order: OrderRecord, vid: int, update: OrderUpdate,
                 adopt: bool | None = None) -> Leg:
        leg = super()._see_leg(order, vid, update, adopt)
        # reports from the stream and answers from the API race: the venue's time orders them
        if update.size > 0 and update.ts_ns >= self._qty_ns.get(vid, 0):
            leg.qty = update.size
            self._qty_ns[vid] = update.ts_ns
            if vid == order.venue_id:
                order.price = update.price  # modify moves the price of the same orderId
        return leg

    def _forget(self, order_id: int) -> None:
        order = self.orders.get(order_id)
        super()._forget(order_id)
        if order is not None and order_id not in self.orders:
            for vid in order.legs:
                self._qty_ns.pop(vid, None)

    # ---- asking the venue ---------------------------------------------------------------------

    def _rest(self, call: RestCall) -> Procedure[api.Response]:
        """One REST call; an error answer raises :class:`RequestFailed` with its reason, one
        that names our key or signature :class:`VenueRefused` (retrying cannot help)."""
        response = yield rest_request(call)
        if refused_for_good(response):
            raise VenueRefused(f"{call.path} refused: {reason(response)}: {KEY_FIX}")
        if not response.ok:
            raise RequestFailed(f"{call.path}: {reason(response)}")
        return response

    def _open_orders(self) -> Procedure[list[OpenOrder]]:
        """``GET openOrders``: every open order of the account in the symbol."""
        response = yield from self._rest(usdm.open_orders(self.instrument))
        if not isinstance(response.result, list):
            raise RequestFailed("openOrders: the result is not a list")
        out: list[OpenOrder] = []
        for entry in response.result:
            update = parse.order_update_from_result(entry, self.instrument, self._prefix)
            if isinstance(update, api.ProtocolError):
                raise RequestFailed(f"openOrders: {update.reason}")
            if isinstance(update, OrderUpdate):
                assert isinstance(entry, dict)
                out.append(OpenOrder(update, int(entry["orderId"]), str(entry["clientOrderId"])))
            else:
                out.append(OpenOrder(None, update.exchange_order_id, update.client_order_id))
        return out

    def _my_trades(self, *, from_id: int | None = None, order_id: int | None = None,
                   limit: int = api.MAX_MY_TRADES_LIMIT) -> Procedure[list[api.AccountTrade]]:
        """``GET userTrades`` (spot's ``myTrades``): the same trades, the same fills."""
        response = yield from self._rest(usdm.user_trades(
            self.instrument, from_id=from_id, order_id=order_id, limit=limit))
        trades = usdm.parse_user_trades(response.result, self.instrument)
        if isinstance(trades, api.ProtocolError):
            raise RequestFailed(trades.reason)
        return trades

    def reconcile(self) -> Procedure[None]:
        """Refuse hedge mode, then spot's reconciliation (open orders, missed fills,
        strays), then missed funding and the account's balances."""
        response = yield from self._rest(usdm.position_mode())
        dual = usdm.parse_dual_side(response.result)
        if isinstance(dual, api.ProtocolError):
            raise RequestFailed(dual.reason)
        if dual:
            raise VenueRefused(HEDGE_MODE_FIX)
        yield from super().reconcile()
        yield from self._recover_funding()
        yield from self.read_account()
        venue, ours = self.venue_position, self.position
        if venue is not None and ours is not None and venue == ours:
            self.log.info("gateway_position_agrees", lots=venue)
        elif venue is not None and ours is not None:
            # fills we never saw (another client or instance on the account and symbol, a
            # position from before this journal, a liquidation or ADL, whose orders are not
            # ours): our inventory limits and PnL do not cover the difference
            self.log.error("gateway_position_mismatch", venue_lots=venue, our_lots=ours,
                           symbol=self.instrument.symbol)

    def _recover_funding(self) -> Procedure[None]:
        """Deliver every FUNDING_FEE income of the symbol above the highest funding id seen
        before the stream's last gap. The first time (no id given), the newest payment
        becomes the starting point instead, as for trades."""
        self.funding_stale = False
        if not self.funding_known:
            entries = yield from self._income(None)
            for entry in entries:
                self.max_funding_id = max(self.max_funding_id, entry.time_ms)
            self.funding_known = True
            self._funding_after = None
            return
        after = self.max_funding_id if self._funding_after is None else self._funding_after
        self._funding_after = None
        start = after + 1
        try:
            while True:
                entries = yield from self._income(start)
                for entry in entries:
                    if entry.time_ms > after and entry.asset == self._assets.quote and (
                            self._deliver_funding(usdm.funding_from_income(entry,
                                                                            self.instrument))):
                        self.funding_recovered += 1
                        self.log.info("gateway_funding_recovered", funding_id=entry.time_ms)
                if len(entries) < usdm.MAX_INCOME_LIMIT:
                    break
                start = entries[-1].time_ms  # same-ms entries again: de-duplicated by id
        except BaseException:
            self._funding_after = after if self._funding_after is None else min(
                after, self._funding_after)
            self.funding_stale = True
            raise

    def _income(self, start_ms: int | None) -> Procedure[list[usdm.Income]]:
        response = yield from self._rest(usdm.funding_income(self.instrument,
                                                              start_time_ms=start_ms))
        entries = usdm.parse_income(response.result)
        if isinstance(entries, api.ProtocolError):
            raise RequestFailed(entries.reason)
        return [e for e in entries if e.income_type == usdm.FUNDING_FEE]

    def read_account(self) -> Procedure[None]:
        """The symbol's funding income when a FUNDING_FEE event came since the last read
        (once the starting point is known: reconcile sets it), then ``v2/account.status``
        and ``account.position``: a :class:`Balances` out."""
        self.account_stale = False
        if self.funding_stale and self.funding_known:
            yield from self._recover_funding()
        status = yield from self._call(lambda rid, ts: usdm.account_status(
            request_id=rid, creds=self._creds, timestamp_ms=ts))
        position = yield from self._call(lambda rid, ts: usdm.account_position(
            self.instrument, request_id=rid, creds=self._creds, timestamp_ms=ts))
        balances = usdm.balances_of(status.result, position.result, self.instrument,
                                    self._assets.quote)
        if isinstance(balances, api.ProtocolError):
            raise RequestFailed(balances.reason)
        lots = usdm.position_of(position.result, self.instrument)
        if isinstance(lots, api.ProtocolError):
            raise RequestFailed(lots.reason)
        self.venue_position = lots
        if not balances.ts_ns:  # the venue did not say when: as of our reading
            balances = balances._replace(ts_ns=self._now_ns)
        self.account_out.append(balances)

    def drain_account(self) -> list[AccountEvent]:
        """The account events since the last call, in order."""
        out, self.account_out = self.account_out, []
        return out

