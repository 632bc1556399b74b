"""Order entry on Binance spot, sans I/O: the protocol object behind the gateway (issue #18).

:class:`OrderEntryProtocol` builds the request frames of ``/ws-api/v3`` (place, amend,
cancel, cancel-all, the queries), correlates responses with requests by id, turns
responses and user-data events into the daemon's execution events
(:mod:`mmdaemon.model`), runs the per-order state machine
(:mod:`mmdaemon.venues.binance_order_state`), the rate-limit accounting
(:mod:`mmdaemon.venues.binance_rate_limit`) and the reconciliation decisions. It does no
I/O, reads no clock and knows no event loop, the way ``websockets`` splits its protocol
from its asyncio layer; :mod:`mmdaemon.exchange.binance_gateway` is the shell that
connects, sends, receives and keeps the timers.

How a shell drives it
---------------------
- Multi-step work (a place, a reconciliation) is a :data:`Procedure`: a generator that
  yields each :class:`Request` it needs answered. The shell advances it with
  :meth:`OrderEntryProtocol.step`, sending the :class:`~mmdaemon.venues.binance_api.Response`
  in, or throwing :class:`RequestFailed` (``"disconnected"``, ``"timeout"``) in when none
  came; the procedure's value comes back as :class:`Done`.
- :meth:`~OrderEntryProtocol.send` gives a request its id and frame (the shell writes
  it); :meth:`~OrderEntryProtocol.receive` takes every frame read, in wire order: a
  response is applied *when it is read*, before any later frame, so it can never be
  applied after events the venue produced later (a NEW after the FILLED).
- :meth:`~OrderEntryProtocol.outputs` drains what happened, in order: execution events
  for the daemon, :class:`Answered` (complete the waiting request), :class:`Suspect`
  (reconcile now), :class:`CancelStrays`, :class:`HangUp`, :class:`Hold` (rate limited).
- Time comes in as integers: monotonic ns (when a frame was read, the rate-limit hold) and
  wall ns since the epoch (request ``timestamp``, the stamp of updates the venue did not
  stamp).

Orders
------
Our order ids are integers; at the venue they are client order ids
``client_order_id(prefix, order_id)``. Every order is LIMIT_MAKER (post-only). ``amend`` is
``order.cancelReplace`` (STOP_ON_FAILURE) reusing the client id, so our order id survives;
the venue reports the pair as CANCELED (old venue order) then NEW (new venue order, same
client id), which we report as one amend; sizes across legs: see
:mod:`~mmdaemon.venues.binance_order_state`. A fill that races the replace (the old leg
trades between our request and the cancel) makes the new total larger than asked: the order
is then reported as it is, followed by a REJECTED for the amend, which makes the order
manager adopt the venue's numbers instead of waiting for an exact match that will never come.

Failures, as the order manager reads them (REJECTED of an acknowledged order = the request
failed and the order stays; REJECTED before the acknowledgement = the place failed):

- error response: REJECTED ``"<code> <msg>"``;
- no answer (``"timeout"``): REJECTED, and the connection is suspect (:class:`Suspect`):
  the shell reconciles at once. A place that timed out may still have reached the venue:
  reconciliation cancels it;
- rate limited: REJECTED with the venue's reason and a :class:`Hold`; the shell refuses
  places and amends locally until it lifts, cancels still go out;
- cancel of an order the venue does not know (-2011/-2013): the venue is asked
  (``openOrders.status``, then ``myTrades`` for fills it may have missed); an order that is
  not open there is reported FILLED or CANCELED, never left waiting.

Reconciliation
--------------
After every (re)connect, and whenever the connection is suspect: ``openOrders.status``
first, then ``myTrades`` from the highest trade id seen (the account's fills while we were
not listening), then:

- an open order with our prefix that is not one of our live orders (left by a crashed
  previous run, a place we already reported failed, a replacement we already reported
  closed) is cancelled, and its fills are still delivered;
- one of our live orders that the venue no longer lists ended meanwhile: FILLED if its
  fills (now all known) cover its size, else CANCELED.

Fills go out once per venue trade id (``exec_id``), whether they came from an
``executionReport`` or from ``myTrades``; the journal deduplicates on (order id, exec id)
too, so a re-delivery is harmless, a lost fill would not be.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

from mmdaemon.model import NS_PER_MS, Instrument, OrderStatus, OrderUpdate, Side
from mmdaemon.venues import binance_api as api
from mmdaemon.venues import binance_parse as parse
from mmdaemon.venues.binance_balances import Holdings
from mmdaemon.venues.binance_order_io import (
    Answered,
    CancelStrays,
    Done,
    HangUp,
    Hold,
    Output,
    Procedure,
    Request,
    RequestFailed,
    Suspect,
)
from mmdaemon.venues.binance_order_state import OpenOrder, OrderRecord, OrderStates, Phase
from mmdaemon.venues.binance_rate_limit import RateLimitHold

_UNKNOWN_ORDER: Final = frozenset({api.CANCEL_REJECTED, api.NO_SUCH_ORDER})
_AUTH_ERRORS: Final = frozenset({
    api.INVALID_SIGNATURE, api.BAD_API_KEY_FMT, api.REJECTED_MBX_KEY,
    api.MANDATORY_PARAM_EMPTY_OR_MALFORMED,
})

T = TypeVar("T")


def reason(response: api.Response) -> str:
    """``"<code> <msg>"`` of an error response (the REJECTED reason the daemon logs)."""
    error = response.error
    if error is None:
        return f"status {response.status}"
    return f"{error.code} {error.msg}"


def refused_for_good(response: api.Response) -> bool:
    """Whether a failed subscription names our key or signature (retrying cannot help)."""
    return response.error is not None and response.error.code in _AUTH_ERRORS


def _venue_id(entry: object) -> int:
    """The ``orderId`` of an order object that :func:`order_update_from_result` accepted."""
    assert isinstance(entry, dict)
    value = entry["orderId"]
    assert isinstance(value, int)
    return value


class OrderEntryProtocol(OrderStates):
    """The state and decisions of Binance spot order entry for one instrument (see the
    module doc). Prices integer ticks, sizes integer lots (an order's size is its total
    size, including what already filled); our events' times ns since the epoch.

    ``credentials`` sign every request (with their ``recv_window_ms``); ``prefix`` starts
    our client order ids; ``log`` is a structlog-style logger; ``assets``/``asset_prices``
    convert fees (see :func:`~mmdaemon.venues.binance_api.parse_event`); ``rng`` and the
    backoff bounds (s) pace the rate-limit hold when the venue names no retry time.
    """

    subscribe_method = api.USER_DATA_SUBSCRIBE  # named when the venue refuses it
    balances_at_reconcile = True  # spot's account.status (USD-M reads its account its way)

    def __init__(self, instrument: Instrument, credentials: api.Credentials, prefix: str,
                 log: Any, *, rng: Callable[[], float], backoff_initial_s: float,
                 backoff_max_s: float, assets: api.Assets | None = None,
                 asset_prices: dict[str, str] | None = None) -> None:
        super().__init__(log)
        self.instrument = instrument
        self._creds = credentials
        self._prefix = prefix
        self._assets = assets or parse.assets_of(instrument.symbol)
        self._asset_prices = asset_prices
        self.limits = RateLimitHold(backoff_initial_s, backoff_max_s, rng)
        self._pending: dict[int, Callable[[api.Response], None] | None] = {}  # handlers
        self._next_request = 0
        self._cancelling: set[int] = set()  # stray venue orders with a cancel in flight
        self._foreign: set[int] = set()  # venue orderIds known not to be ours
        self.watermark_known = False  # max_trade_id is where myTrades resumes
        self.fills_recovered = 0
        self.holdings = Holdings(instrument, self._assets)  # Balances for the daemon

    # ---- driving ------------------------------------------------------------------------------

    def outputs(self) -> list[Output]:
        """What happened since the last call, in order (see the module doc)."""
        out, self._out = self._out, []
        return out

    def step(self, proc: Procedure[T], answer: api.Response | RequestFailed | None,
             wall_ns: int) -> Request | Done[T]:
        """Advance ``proc`` (first call: ``answer`` None) with the answer to the request it
        yielded last; its next request, or :class:`Done`. ``wall_ns``: now."""
        self._now_ns = wall_ns
        try:
            if answer is None:
                return next(proc)
            if isinstance(answer, RequestFailed):
                return proc.throw(answer)
            return proc.send(answer)
        except StopIteration as stop:
            return Done(stop.value)

    def send(self, request: Request, wall_ns: int) -> tuple[int, bytes]:
        """The request id and frame of ``request`` (stamped ``wall_ns``, whole ms), which
        the shell writes now; its response is expected from :meth:`receive` (or
        :meth:`forget` it)."""
        self._next_request += 1
        request_id = self._next_request
        frame = request.build(request_id, wall_ns // NS_PER_MS)
        self._pending[request_id] = request.handler
        return request_id, frame

    def forget(self, request_id: int) -> None:
        """No answer to ``request_id`` is wanted any more (timed out, not written)."""
        self._pending.pop(request_id, None)

    def disconnected(self) -> None:
        """The connection is gone: no request sent on it will be answered, and no event
        the venue produces from now on reaches us until a new subscription."""
        self._pending.clear()
        self._stream_gap()

    def resume_fills_after(self, trade_id: int) -> None:
        """Deliver fills with a venue trade id above ``trade_id`` at the next reconcile."""
        self.max_trade_id = max(0, trade_id)
        self._gap_after = self.max_trade_id
        self.watermark_known = True

    def receive(self, frame: bytes, mono_ns: int, wall_ns: int) -> None:
        """Apply one frame read from the connection at ``mono_ns`` (a response or a
        user-data event)."""
        self._now_ns = wall_ns
        obj = parse.decode(frame)
        if isinstance(obj, api.ProtocolError):
            self.log.warning("gateway_bad_frame", reason=obj.reason, frame=frame[:200])
            return
        if "event" in obj:
            self._on_event(parse.parse_event(obj, self.instrument, self._prefix,
                                           assets=self._assets,
                                           asset_prices=self._asset_prices))
            return
        response = parse.parse_response(obj)
        if isinstance(response, api.ProtocolError):
            self.log.warning("gateway_bad_response", reason=response.reason, frame=frame[:200])
            request_id = obj.get("id")
            if isinstance(request_id, int) and request_id in self._pending:
                del self._pending[request_id]
                self._out.append(Answered(request_id, None,
                                          f"malformed response: {response.reason}", mono_ns))
                self._suspect("malformed response")
            return
        self._on_response(response, mono_ns)

    # ---- the daemon's requests ----------------------------------------------------------------

    def place(self, order_id: int, side: Side, price: int, size: int, blocked: str
              ) -> Procedure[None]:
        """Place a LIMIT_MAKER order; the answer comes as an update (NEW or REJECTED).
        ``blocked``: why places may not go out now ("" when they may)."""
        side = Side(side)
        if order_id in self.orders:
            self._emit_state(order_id, OrderStatus.REJECTED, side, price, size, 0,
                             "duplicate order id")
            return
        try:
            client_id = api.client_order_id(self._prefix, order_id)
            api.limit_maker_params(self.instrument, side, price, size)
        except ValueError as exc:
            self._emit_state(order_id, OrderStatus.REJECTED, side, price, size, 0, str(exc))
            return
        order = OrderRecord(order_id, client_id, side, price, size, Phase.PLACING)
        self.orders[order_id] = order
        if blocked:
            self._close(order, OrderStatus.REJECTED, blocked)
            return
        order.busy += 1
        try:
            yield Request(
                lambda rid, ts: api.order_place(
                    self.instrument, side, price, size, client_id, request_id=rid,
                    creds=self._creds, timestamp_ms=ts),
                lambda response: self._on_place_response(order, response))
        except RequestFailed as exc:
            self._place_failed(order, exc.reason)
        finally:
            order.busy -= 1

    def is_placing(self, order_id: int) -> bool:
        """Whether a place of ``order_id`` waits for its answer (a cancel waits for it)."""
        order = self.orders.get(order_id)
        return order is not None and order.phase is Phase.PLACING

    def cancel(self, order_id: int, connected: bool) -> Procedure[None]:
        """Cancel an order; the answer comes as an update (CANCELED, FILLED or REJECTED).
        ``connected``: whether requests can go out now."""
        order = self.orders.get(order_id)
        if order is None or order.phase is not Phase.LIVE:
            self._answer_not_live(order_id, order)
            return
        if not connected:
            self._reject_request(order, "disconnected")
            return
        order.busy += 1
        order.resolve = ""
        try:
            yield Request(
                lambda rid, ts: api.order_cancel(
                    self.instrument, order.client_id, request_id=rid, creds=self._creds,
                    timestamp_ms=ts),
                lambda response: self._on_cancel_response(order, response))
        except RequestFailed as exc:
            if order.phase is Phase.LIVE:
                self._reject_request(order, exc.reason)
            if exc.reason == "timeout":
                self._suspect("cancel timed out")
            return
        finally:
            order.busy -= 1
        if order.resolve and order.phase is Phase.LIVE:
            yield from self._resolve_missing(order, order.resolve)

    def amend(self, order_id: int, price: int, size: int, blocked: str, connected: bool
              ) -> Procedure[None]:
        """Change price and total size (lots, including what filled) by cancel-replace;
        ``blocked`` and ``connected`` as for :meth:`place` and :meth:`cancel`."""
        order = self.orders.get(order_id)
        if order is None or order.phase is not Phase.LIVE:
            if order is not None and order.phase is Phase.CLOSED:
                self._report_again(order)
            else:
                self._emit_state(order_id, OrderStatus.REJECTED,
                                 order.side if order else Side.BUY, price, size, 0,
                                 "amend of an order that is not open")
            return
        if blocked:
            self._reject_request(order, blocked)
            return
        new_qty = size - order.filled()
        if new_qty <= 0:
            # it already filled what is now wanted: what is left must go
            yield from self.cancel(order_id, connected)
            return
        try:
            api.limit_maker_params(self.instrument, order.side, price, new_qty)
        except ValueError as exc:
            self._reject_request(order, str(exc))
            return
        order.replacing, order.adopted, order.held = True, False, None
        order.want = size
        order.resolve = ""
        order.busy += 1
        try:
            yield Request(
                lambda rid, ts: api.order_cancel_replace(
                    self.instrument, order.client_id, order.side, price, new_qty,
                    request_id=rid, creds=self._creds, timestamp_ms=ts),
                lambda response: self._on_replace_response(order, response))
        except RequestFailed as exc:
            self._replace_failed(order, exc.reason)
            if exc.reason == "timeout":
                self._suspect("amend timed out")
            return
        finally:
            order.busy -= 1
            order.replacing = False
        if order.resolve and order.phase is Phase.LIVE:
            yield from self._resolve_missing(order, order.resolve)

    def cancel_all(self) -> Procedure[tuple[int, bool]]:
        """``openOrders.cancelAll`` (everything in the symbol, ours or not): how many the
        venue cancelled, and whether it swept (False: ask it order by order)."""
        try:
            response = yield Request(
                lambda rid, ts: api.open_orders_cancel_all(
                    self.instrument, request_id=rid, creds=self._creds, timestamp_ms=ts),
                self._on_cancel_all_response)
        except RequestFailed as exc:
            self.log.warning("gateway_cancel_all_failed", reason=exc.reason)
            return 0, False
        if response.ok and isinstance(response.result, list):
            return len(response.result), True
        if response.error is not None and response.error.code == api.CANCEL_REJECTED:
            return 0, True  # the venue had nothing open
        self.log.warning("gateway_cancel_all_refused", reason=reason(response))
        return 0, False

    def subscribe(self) -> Request:
        """``userDataStream.subscribe.signature``: our executions on this connection."""
        return Request(lambda rid, ts: api.user_data_subscribe(
            request_id=rid, creds=self._creds, timestamp_ms=ts))

    # ---- frames -------------------------------------------------------------------------------

    def _on_response(self, response: api.Response, mono_ns: int) -> None:
        delay_s = self.limits.on_response(response, mono_ns, self._now_ns // NS_PER_MS)
        if delay_s is not None:
            self.log.warning("gateway_rate_limited", status=response.status,
                             reason=reason(response), retry_in_s=round(delay_s, 3))
            self._out.append(Hold(self.limits.until_ns))
        request_id = response.id
        if not (isinstance(request_id, int) and request_id in self._pending):
            return  # the answer to a request that already timed out: events tell the rest
        handler = self._pending.pop(request_id)
        if handler is not None:
            try:
                handler(response)
            except Exception as exc:  # a bug must not kill the reader
                self.log.error("gateway_handler_failed", error=repr(exc))
                self._suspect("handler failed")
        self._out.append(Answered(request_id, response, "", mono_ns))

    def _on_event(self, event: api.UserEvent | api.ProtocolError) -> None:
        if isinstance(event, api.ExecutionReport):
            self._on_report(event)
        elif isinstance(event, api.ProtocolError):
            # an execution report we could not read may have carried a fill: re-check
            self.log.warning("gateway_bad_event", reason=event.reason)
            self._stream_gap()
            self._suspect("undecodable event")
        elif isinstance(event, api.AccountPosition):
            self._out.extend(self.holdings.changed(event))
        elif isinstance(event, api.OtherEvent) and event.kind == "eventStreamTerminated":
            self.log.warning("gateway_stream_terminated")
            self._out.append(HangUp("stream terminated"))

    def _suspect(self, why: str) -> None:
        self._out.append(Suspect(why))

    # ---- the venue's word on orders -----------------------------------------------------------

    def _on_report(self, report: api.ExecutionReport) -> None:
        update = report.update
        client_id = report.orig_client_order_id or report.client_order_id
        order = self._record_for(update.order_id, update.side, client_id)
        vid = report.exchange_order_id
        leg = self._see_leg(order, vid, update)
        fill = report.fill
        if fill is not None:
            if not report.fee_converted:
                self.log.warning("gateway_fee_unconverted", order_id=order.order_id,
                                 commission=str(report.commission),
                                 asset=report.commission_asset)
            if self._deliver(fill):
                leg.see(order, leg.executed, leg.traded + fill.size)
        had_stray = len(self._stray)
        self._apply_status(order, vid, update)
        if len(self._stray) > had_stray:
            self._out.append(CancelStrays())  # a cancel already in flight is not repeated

    def _result_update(self, result: object) -> tuple[OrderUpdate, int] | None:
        """Our update and the venue id from an order object of a response; None (logged)
        when it is not ours or does not decode."""
        update = parse.order_update_from_result(result, self.instrument, self._prefix)
        if isinstance(update, OrderUpdate):
            return update, _venue_id(result)
        self.log.warning("gateway_unexpected_result", reason=update.reason
                         if isinstance(update, api.ProtocolError) else "not our order")
        return None

    def _on_place_response(self, order: OrderRecord, response: api.Response) -> None:
        if not response.ok:
            if order.phase is Phase.PLACING:
                self._close(order, OrderStatus.REJECTED, reason(response))
            return
        got = self._result_update(response.result)
        if got is None:
            self._suspect("unreadable place result")
            return
        update, vid = got
        self._see_leg(order, vid, update)
        self._apply_status(order, vid, update)

    def _place_failed(self, order: OrderRecord, why: str) -> None:
        """No answer to a place: failed for the daemon, in doubt for us (reconciliation
        cancels it if it did reach the venue)."""
        if why == "timeout":
            self._suspect("place timed out")
        if order.phase is not Phase.PLACING:
            return  # its execution report came first: the place did succeed
        self._emit_state(order.order_id, OrderStatus.REJECTED, order.side, order.price,
                         order.size, 0, why)
        self._set_phase(order, Phase.DOUBTFUL)

    def _on_cancel_response(self, order: OrderRecord, response: api.Response) -> None:
        if response.ok:
            got = self._result_update(response.result)
            if got is None:
                self._suspect("unreadable cancel result")
                return
            update, vid = got
            # cancelled by client id: whatever it cancelled was the current venue order
            self._see_leg(order, vid, update, adopt=True)
            self._apply_status(order, vid, update)
            return
        error = response.error
        if error is not None and error.code in _UNKNOWN_ORDER:
            order.resolve = reason(response)  # the procedure asks the venue
        elif order.phase is Phase.LIVE:
            self._reject_request(order, reason(response))

    def _on_replace_response(self, order: OrderRecord, response: api.Response) -> None:
        order.replacing = False
        held, order.held = order.held, None
        if response.ok:
            result = response.result
            parts = (result.get("newOrderResponse"), result.get("cancelResponse")) if isinstance(
                result, dict) else (None, None)
            new = self._result_update(parts[0])
            if new is None:
                self._suspect("unreadable cancel-replace result")
                return
            update, vid = new
            self._see_leg(order, vid, update, adopt=True)
            old = self._result_update(parts[1]) if parts[1] is not None else None
            if old is not None:
                self._see_leg(order, old[1], old[0], adopt=False)
            self._apply_status(order, vid, update)
            self._check_amend_size(order)
            return
        error = response.error
        data = error.data if error is not None and isinstance(error.data, dict) else {}
        if error is not None and error.code == api.CANCEL_REPLACE_PARTIALLY_FAILED and (
                data.get("cancelResult") == "SUCCESS"):
            # the old order is gone, the new one was refused: the order ended
            inner = data.get("newOrderResponse")
            why = reason(response)
            if isinstance(inner, dict) and "code" in inner:
                why = f"{inner.get('code')} {inner.get('msg')}"
            self._reject_request(order, why)
            cancelled = self._result_update(data.get("cancelResponse"))
            if cancelled is not None:
                self._see_leg(order, cancelled[1], cancelled[0], adopt=False)
            self._close(order, OrderStatus.CANCELED, f"amend failed: {why}")
            return
        cancel_part = data.get("cancelResponse")
        unknown = isinstance(cancel_part, dict) and cancel_part.get("code") in _UNKNOWN_ORDER
        why = reason(response)
        if isinstance(cancel_part, dict) and "code" in cancel_part:
            why = f"{why} (cancel: {cancel_part.get('code')} {cancel_part.get('msg')})"
        if held is not None:
            # the CANCELED we held was not the replace's: the order ended on its own
            self._reject_request(order, why)
            self._apply_status(order, order.venue_id, held)
        elif unknown:
            order.resolve = why
        elif order.phase is Phase.LIVE:
            self._reject_request(order, why)

    def _replace_failed(self, order: OrderRecord, why: str) -> None:
        order.replacing = False
        held, order.held = order.held, None
        if order.adopted:
            self._check_amend_size(order)  # the replacement's report came: it happened
            return
        if order.phase is not Phase.LIVE:
            return
        self._reject_request(order, why)
        if held is not None:
            # its cancel half happened; whether a replacement exists, reconciliation sees
            self._apply_status(order, order.venue_id, held)

    def _check_amend_size(self, order: OrderRecord) -> None:
        """A fill that raced the replace leaves a total other than the one asked for:
        REJECTED makes the order manager take the venue's numbers."""
        if order.phase is Phase.LIVE and order.total_size() != order.want:
            self._reject_request(order, f"amend overlapped a fill: total size is "
                                        f"{order.total_size()}, not {order.want}")

    def _on_cancel_all_response(self, response: api.Response) -> None:
        if not response.ok or not isinstance(response.result, list):
            return
        for entry in response.result:
            update = parse.order_update_from_result(entry, self.instrument, self._prefix)
            if not isinstance(update, OrderUpdate):
                continue
            vid = _venue_id(entry)
            order = self._record_for(update.order_id, update.side,
                                     str(entry.get("origClientOrderId") or ""))
            self._see_leg(order, vid, update, adopt=True)  # the open one of its client id
            self._apply_status(order, vid, update)
            self._stray.pop(vid, None)

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
                out.append(OpenOrder(update, _venue_id(entry), str(entry["clientOrderId"])))
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
        if error is not None and error.code in _UNKNOWN_ORDER:
            self._stray.pop(vid, None)
            return False
        raise RequestFailed(reason(response))

    def _on_venue_cancel_response(self, response: api.Response) -> None:
        if not response.ok:
            return
        update = parse.order_update_from_result(response.result, self.instrument, self._prefix)
        if not isinstance(update, OrderUpdate):
            return
        vid = _venue_id(response.result)
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
