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
(The queries and what their answers settle: :mod:`mmdaemon.venues.binance_reconcile`, the
base class.) After every (re)connect, and whenever the connection is suspect: ``openOrders.status``
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

import hashlib
import hmac
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final, TypeVar

import orjson

from mmdaemon.model import NS_PER_MS, Instrument, OrderStatus, OrderUpdate, Side
from mmdaemon.venues import binance_api as api
from mmdaemon.venues import binance_parse as parse
from mmdaemon.venues.binance_order_io import (
    UNKNOWN_ORDER,
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
    reason,
    venue_id_of,
)
from mmdaemon.venues.binance_order_state import OrderRecord, Phase
from mmdaemon.venues.binance_rate_limit import RateLimitHold
from mmdaemon.venues.binance_reconcile import Reconciler

_AUTH_ERRORS: Final = frozenset({
    api.INVALID_SIGNATURE, api.BAD_API_KEY_FMT, api.REJECTED_MBX_KEY,
    api.MANDATORY_PARAM_EMPTY_OR_MALFORMED,
})

T = TypeVar("T")


def refused_for_good(response: api.Response) -> bool:
    """Whether a failed subscription names our key or signature (retrying cannot help)."""
    return response.error is not None and response.error.code in _AUTH_ERRORS


def check_limit_maker(price: int, size: int) -> None:
    """``ValueError`` unless ``price`` (ticks) and ``size`` (lots) are positive integers:
    the check of :func:`~mmdaemon.venues.binance_api.limit_maker_params`, without writing
    their text (a place or an amend checks before its frame is built, #23)."""
    for name, value in (("price", price), ("size", size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def fixed_point(unit: Decimal, places: int) -> Callable[[int], str] | None:
    """``units -> text`` of ``units`` (>= 0) times ``unit`` with ``places`` decimals, in
    integer arithmetic: what ``f"{Decimal(units) * unit:.{places}f}"`` writes, where that
    is exact (``places`` at least ``unit``'s decimals); None where it would round."""
    _, digits, exponent = unit.as_tuple()
    if not isinstance(exponent, int) or places + exponent < 0:
        return None
    mult = int("".join(map(str, digits))) * 10 ** (places + exponent)
    if not places:
        return lambda units: str(units * mult)

    def text(units: int) -> str:
        scaled = str(units * mult).rjust(places + 1, "0")
        return f"{scaled[:-places]}.{scaled[-places:]}"

    return text


class QuoteFrames:
    """The signed frames of the requests a requote sends (``order.place`` and
    ``order.cancelReplace`` of LIMIT_MAKER orders), byte for byte what
    :func:`~mmdaemon.venues.binance_api.order_place` and
    :func:`~mmdaemon.venues.binance_api.order_cancel_replace` build, with what does not
    change between orders prepared once (#23: this is on the wire-to-wire path): the
    HMAC keyed with the secret, and each request's signature payload (its parameters
    sorted by name, ``key=value`` joined by ``&``) as a template with only the order's
    own values left to fill. Nothing is checked again: the protocol checked the price and
    size, and its client order ids are legal by construction. Holds the secret: its repr
    shows none of it.
    """

    _PLACE: Final = ("side", "price", "quantity", "newClientOrderId", "timestamp")
    _REPLACE: Final = ("side", "price", "quantity", "cancelOrigClientOrderId",
                       "newClientOrderId", "timestamp")

    def __init__(self, instrument: Instrument, creds: api.Credentials) -> None:
        self._symbol = instrument.symbol
        self._price_str = (fixed_point(instrument.tick_size, instrument.price_precision)
                           or instrument.price_str)
        self._size_str = (fixed_point(instrument.lot_size, instrument.size_precision)
                          or instrument.size_str)
        self._mac = hmac.new(creds.secret.encode(), digestmod=hashlib.sha256)
        self._api_key = creds.api_key
        self._window = creds.recv_window_ms
        fixed: dict[str, object] = {"symbol": instrument.symbol, "type": api.LIMIT_MAKER,
                                    "newOrderRespType": "RESULT", "apiKey": creds.api_key,
                                    "recvWindow": creds.recv_window_ms}
        self._place = self._template(fixed, self._PLACE)
        self._replace = self._template(fixed | {"cancelReplaceMode": api.STOP_ON_FAILURE},
                                       self._REPLACE)

    @staticmethod
    def _template(fixed: dict[str, object], filled: tuple[str, ...]) -> str:
        """The signature payload with ``{0}``, ``{1}``... where the values of ``filled``
        go, in that order (:func:`~mmdaemon.venues.binance_api.signature_payload`)."""
        fields = {key: api.param_text(value).replace("{", "{{").replace("}", "}}")
                  for key, value in fixed.items() if value is not None}
        fields |= {key: f"{{{i}}}" for i, key in enumerate(filled)}
        return "&".join(f"{key}={fields[key]}" for key in sorted(fields))

    def __repr__(self) -> str:
        return f"QuoteFrames({self._symbol!r})"

    def place(self, side: Side, price: int, size: int, client_id: str, request_id: int,
              timestamp_ms: int) -> bytes:
        """``order.place`` of ``size`` lots at ``price`` ticks, as ``client_id``."""
        side_name, price_text, size_text = side.name, self._price_str(price), self._size_str(size)
        return self._frame(api.ORDER_PLACE, {
            "symbol": self._symbol, "side": side_name, "type": api.LIMIT_MAKER,
            "price": price_text, "quantity": size_text, "newClientOrderId": client_id,
            "newOrderRespType": "RESULT"}, request_id, timestamp_ms,
            self._place.format(side_name, price_text, size_text, client_id, timestamp_ms))

    def cancel_replace(self, client_id: str, side: Side, price: int, size: int,
                       request_id: int, timestamp_ms: int) -> bytes:
        """``order.cancelReplace`` (STOP_ON_FAILURE) of ``client_id`` by ``size`` lots at
        ``price`` ticks under the same client id."""
        side_name, price_text, size_text = side.name, self._price_str(price), self._size_str(size)
        return self._frame(api.ORDER_CANCEL_REPLACE, {
            "symbol": self._symbol, "side": side_name, "type": api.LIMIT_MAKER,
            "price": price_text, "quantity": size_text,
            "cancelReplaceMode": api.STOP_ON_FAILURE, "cancelOrigClientOrderId": client_id,
            "newClientOrderId": client_id, "newOrderRespType": "RESULT"},
            request_id, timestamp_ms,
            self._replace.format(side_name, price_text, size_text, client_id, client_id,
                                 timestamp_ms))

    def _frame(self, method: str, params: dict[str, str | int], request_id: int,
               timestamp_ms: int, payload: str) -> bytes:
        """The frame of ``params`` (in the API module's order) signed over ``payload``."""
        mac = self._mac.copy()
        mac.update(payload.encode())
        params["apiKey"] = self._api_key
        params["timestamp"] = timestamp_ms
        if self._window is not None:
            params["recvWindow"] = self._window
        params["signature"] = mac.hexdigest()
        return orjson.dumps({"id": request_id, "method": method, "params": params})


class OrderEntryProtocol(Reconciler):
    """The state and decisions of Binance spot order entry for one instrument (see the
    module doc). Prices integer ticks, sizes integer lots (an order's size is its total
    size, including what already filled); our events' times ns since the epoch.

    ``credentials`` sign every request (with their ``recv_window_ms``); ``prefix`` starts
    our client order ids; ``log`` is a structlog-style logger; ``assets``/``asset_prices``
    convert fees (see :func:`~mmdaemon.venues.binance_api.parse_event`); ``rng`` and the
    backoff bounds (s) pace the rate-limit hold when the venue names no retry time.
    """

    subscribe_method = api.USER_DATA_SUBSCRIBE  # named when the venue refuses it

    def __init__(self, instrument: Instrument, credentials: api.Credentials, prefix: str,
                 log: Any, *, rng: Callable[[], float], backoff_initial_s: float,
                 backoff_max_s: float, assets: api.Assets | None = None,
                 asset_prices: dict[str, str] | None = None) -> None:
        super().__init__(instrument, credentials, prefix, log, assets, asset_prices)
        self.limits = RateLimitHold(backoff_initial_s, backoff_max_s, rng)
        self._frames = QuoteFrames(instrument, credentials)
        self._pending: dict[int, Callable[[api.Response], None] | None] = {}  # handlers
        self._next_request = 0

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

    def place(self, order_id: int, side: Side, price: int, size: int, blocked: str,
              reduce_only: bool = False) -> Procedure[None]:
        """Place a post-only order of ``size`` lots at ``price`` ticks; the answer comes as
        an update (NEW or REJECTED). ``blocked``: why places may not go out now ("" when
        they may); ``reduce_only``: it may only shrink the position (where the venue has
        positions: spot has none and ignores it)."""
        side = Side(side)
        if order_id in self.orders:
            self._emit_state(order_id, OrderStatus.REJECTED, side, price, size, 0,
                             "duplicate order id")
            return
        try:
            client_id = api.client_order_id(self._prefix, order_id)
            self._check_place(side, price, size, reduce_only)
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
                lambda rid, ts: self._place_frame(side, price, size, client_id, reduce_only,
                                                  rid, ts),
                lambda response: self._on_place_response(order, response))
        except RequestFailed as exc:
            self._place_failed(order, exc.reason)
        finally:
            order.busy -= 1

    def _check_place(self, side: Side, price: int, size: int, reduce_only: bool) -> None:
        """Raise ValueError if the venue would refuse this order's parameters (a LIMIT_MAKER
        on spot, where ``reduce_only`` has no meaning)."""
        check_limit_maker(price, size)

    def _place_frame(self, side: Side, price: int, size: int, client_id: str,
                     reduce_only: bool, request_id: int, timestamp_ms: int) -> bytes:
        """The signed place request frame (``order.place``, LIMIT_MAKER on spot)."""
        return self._frames.place(side, price, size, client_id, request_id, timestamp_ms)

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
        yield from self._order_request(
            order, Request(
                lambda rid, ts: api.order_cancel(
                    self.instrument, order.client_id, request_id=rid, creds=self._creds,
                    timestamp_ms=ts),
                lambda response: self._on_cancel_response(order, response)), "cancel")

    def _order_request(self, order: OrderRecord, request: Request, what: str
                       ) -> Procedure[None]:
        """``request`` about live ``order`` (a cancel, an in-place modify) whose failure
        fails only the request: the order stays LIVE and the daemon is told REJECTED; a
        timeout makes the connection suspect. An answer saying the venue does not know the
        order (its handler sets ``order.resolve``) asks the venue where it stands."""
        order.busy += 1
        order.resolve = ""
        try:
            yield request
        except RequestFailed as exc:
            if order.phase is Phase.LIVE:
                self._reject_request(order, exc.reason)
            if exc.reason == "timeout":
                self._suspect(f"{what} timed out")
            return
        finally:
            order.busy -= 1
        if order.resolve and order.phase is Phase.LIVE:
            yield from self._resolve_missing(order, order.resolve)

    def _amendable(self, order_id: int, price: int, size: int) -> OrderRecord | None:
        """The LIVE order ``order_id`` an amend may change; else None, the daemon told why
        (a closed order's final state again, or REJECTED)."""
        order = self.orders.get(order_id)
        if order is not None and order.phase is Phase.LIVE:
            return order
        if order is not None and order.phase is Phase.CLOSED:
            self._report_again(order)
        else:
            self._emit_state(order_id, OrderStatus.REJECTED,
                             order.side if order else Side.BUY, price, size, 0,
                             "amend of an order that is not open")
        return None

    def amend(self, order_id: int, price: int, size: int, blocked: str, connected: bool
              ) -> Procedure[None]:
        """Change price and total size (lots, including what filled) by cancel-replace;
        ``blocked`` and ``connected`` as for :meth:`place` and :meth:`cancel`."""
        order = self._amendable(order_id, price, size)
        if order is None:
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
            check_limit_maker(price, new_qty)
        except ValueError as exc:
            self._reject_request(order, str(exc))
            return
        order.replacing, order.adopted, order.held = True, False, None
        order.want = size
        order.resolve = ""
        order.busy += 1
        try:
            yield Request(
                lambda rid, ts: self._frames.cancel_replace(
                    order.client_id, order.side, price, new_qty, rid, ts),
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

    def _undecodable(self, why: str) -> None:
        """A user-data event we could not read (``why``): it may have carried a fill, so
        what the stream said since is re-checked (a gap, and reconcile now)."""
        self.log.warning("gateway_bad_event", reason=why)
        self._stream_gap()
        self._suspect("undecodable event")

    def _on_event(self, event: api.UserEvent | api.ProtocolError) -> None:
        if isinstance(event, api.ExecutionReport):
            self._on_report(event)
        elif isinstance(event, api.ProtocolError):
            self._undecodable(event.reason)
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
            return update, venue_id_of(result)
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

    def _apply_current(self, order: OrderRecord, result: object, what: str) -> bool:
        """Apply the order object of a successful ``what`` answer about ``order``, which
        names its current venue order; False (and the connection suspect) if unreadable."""
        got = self._result_update(result)
        if got is None:
            self._suspect(f"unreadable {what} result")
            return False
        update, vid = got
        self._see_leg(order, vid, update, adopt=True)
        self._apply_status(order, vid, update)
        return True

    def _on_cancel_response(self, order: OrderRecord, response: api.Response) -> None:
        if response.ok:
            # cancelled by client id: whatever it cancelled was the current venue order
            self._apply_current(order, response.result, "cancel")
            return
        error = response.error
        if error is not None and error.code in UNKNOWN_ORDER:
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
        unknown = isinstance(cancel_part, dict) and cancel_part.get("code") in UNKNOWN_ORDER
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
            vid = venue_id_of(entry)
            order = self._record_for(update.order_id, update.side,
                                     str(entry.get("origClientOrderId") or ""))
            self._see_leg(order, vid, update, adopt=True)  # the open one of its client id
            self._apply_status(order, vid, update)
            self._stray.pop(vid, None)
