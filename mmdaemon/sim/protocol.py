"""The sim's order-entry protocol, sans-I/O: a request frame in, its response frame out.

:class:`OrderEntryProtocol` serves a subset of Binance's spot WebSocket API for ONE symbol:
``order.place`` (LIMIT_MAKER only), ``order.cancel``, ``order.cancelReplace``,
``order.status``, ``openOrders.status``, ``openOrders.cancelAll``, ``account.status``,
``myTrades``, ``userDataStream.subscribe.signature``, ``userDataStream.unsubscribe``,
``ping``, ``time``; a ``v3/`` prefix on the method name is accepted, as at the venue. It
parses and checks a request, runs it on the :class:`~mmdaemon.sim.matching.Matching` and
the :class:`~mmdaemon.sim.accounts.Ledger`, and writes the answer with
:mod:`mmdaemon.sim.wire`; the events a request causes wait in the matching's outbox. No
I/O: the connection shell (:mod:`mmdaemon.sim.orders`) moves the frames.

Checks, in the venue's order: request shape (bad JSON or a non-object: -1135 with id null),
method (-1100), request weight per minute (-1003, status 429, with ``data.retryAfter`` =
the start of the next minute in ms, as the venue sends it), then for SIGNED methods the
API key (-1102 missing, -2014 malformed, -2015 unknown), ``timestamp``/``recvWindow``
(-1102/-1100), ``signature`` (-1022) and timing against ``now_ms()`` (-1021, the venue's
rule: ``timestamp < now + 1000`` and ``now - timestamp <= recvWindow``), then the method's
parameters (-1102 missing, -1100 malformed, -1121 symbol, -1117 side, -1116/-1020 type,
-1114 timeInForce, -1013 filters) and finally the matching engine (-2010, -2011).

``now_ms()`` is the server clock clients sign against: timing checks, rate-limit windows,
the ``time`` method. Only the REQUEST_WEIGHT rate limit is modelled (orders per 10 s are
not), for all connections together, as for one IP.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Final, NamedTuple

import orjson

from mmdaemon.model import Instrument, Side
from mmdaemon.sim import wire
from mmdaemon.sim.accounts import WORKING, Ledger, VenueOrder
from mmdaemon.sim.matching import Matching
from mmdaemon.sim.wire import Reject
from mmdaemon.venues import binance_api as api
from mmdaemon.venues import binance_parse as parse

_API_KEY_RE: Final = re.compile(r"[A-Za-z0-9]{1,128}")
_INT_RE: Final = re.compile(r"-?[0-9]{1,20}")
_DECIMAL_RE: Final = re.compile(r"[0-9]{1,20}(\.[0-9]{1,20})?")
_DECIMAL_LEGAL: Final = "^([0-9]{1,20})(\\.[0-9]{1,20})?$"
_OTHER_TYPES: Final = frozenset(
    {"LIMIT", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"}
)
_RESP_TYPES: Final = ("ACK", "RESULT", "FULL")


class Subscriptions:
    """One connection's user-data subscriptions: API key -> ``subscriptionId``."""

    __slots__ = ("_next", "by_key")

    def __init__(self) -> None:
        self.by_key: dict[str, int] = {}
        self._next = 0

    def get(self, api_key: str) -> int | None:
        """The subscription of ``api_key``'s account on this connection, if any."""
        return self.by_key.get(api_key)

    def subscribe(self, api_key: str) -> int:
        """Subscribe ``api_key``'s account; one subscription per account and connection,
        so subscribing again gives the same id."""
        sid = self.by_key.get(api_key)
        if sid is None:
            sid = self.by_key[api_key] = self._next
            self._next += 1
        return sid

    def unsubscribe(self, subscription_id: int | None) -> None:
        """End subscription ``subscription_id``, or every one when None."""
        for key, value in list(self.by_key.items()):
            if subscription_id is None or value == subscription_id:
                del self.by_key[key]


Handler = Callable[[Subscriptions, dict[str, Any], str], Any]


class _Method(NamedTuple):
    handler: Handler
    weight: int
    signed: bool


class OrderEntryProtocol:
    """Requests of the sim's order entry for ``instrument``, run on ``matching``.

    ``api_keys`` maps API key -> HMAC secret; ``now_ms`` is the server clock in ms since the
    epoch; ``recv_window_max_ms`` the largest ``recvWindow`` accepted; ``weight_limit`` the
    request weight per minute.
    """

    def __init__(self, instrument: Instrument, matching: Matching, api_keys: dict[str, str],
                 now_ms: Callable[[], int], *, recv_window_max_ms: int,
                 weight_limit: int) -> None:
        self.instrument = instrument
        self.matching = matching
        self.ledger: Ledger = matching.ledger
        self._api_keys = dict(api_keys)
        self._now_ms = now_ms
        self.recv_window_max_ms = recv_window_max_ms
        self.weight_limit = weight_limit
        self._min_notional = (  # notional units
            Fraction(instrument.min_notional) / parse.notional_unit(instrument))
        self._max_notional = Fraction(wire.MAX_NOTIONAL) / parse.notional_unit(instrument)
        self._weight_minute = -1
        self._weight_used = 0
        self.internal_errors = 0  # requests answered -1000 (a bug: should stay 0)
        self._methods: dict[str, _Method] = {
            api.ORDER_PLACE: _Method(self._order_place, 1, True),
            api.ORDER_CANCEL: _Method(self._order_cancel, 1, True),
            api.ORDER_CANCEL_REPLACE: _Method(self._order_cancel_replace, 1, True),
            api.OPEN_ORDERS_STATUS: _Method(self._open_orders_status, 6, True),
            api.OPEN_ORDERS_CANCEL_ALL: _Method(self._open_orders_cancel_all, 1, True),
            api.ACCOUNT_STATUS: _Method(self._account_status, 20, True),
            api.USER_DATA_SUBSCRIBE: _Method(self._subscribe, 2, True),
            api.USER_DATA_UNSUBSCRIBE: _Method(self._unsubscribe, 2, False),
            api.PING: _Method(self._ping, 1, False),
            api.TIME: _Method(self._time, 1, False),
            api.ORDER_STATUS: _Method(self._order_status, 4, True),
            api.MY_TRADES: _Method(self._my_trades, 20, True),
        }

    def use_clock(self, now_ms: Callable[[], int]) -> None:
        """Check timing, count weight and answer ``time`` with ``now_ms()`` from now on."""
        self._now_ms = now_ms

    # ---- requests ---------------------------------------------------------------------------

    def handle(self, subs: Subscriptions, message: str | bytes) -> bytes:
        """One request frame of the connection whose subscriptions are ``subs`` -> its
        response frame. Never raises: a bug in a method is answered -1000 (status 500)."""
        try:
            msg = orjson.loads(message)
        except orjson.JSONDecodeError:
            return wire.error_frame(None, api.INVALID_JSON, wire.ERROR_MESSAGES[api.INVALID_JSON])
        if type(msg) is not dict:
            return wire.error_frame(None, api.INVALID_JSON, wire.ERROR_MESSAGES[api.INVALID_JSON])
        request_id = msg.get("id")
        if request_id is not None and not (
            isinstance(request_id, str) or _is_int(request_id)
        ):
            return wire.error_frame(None, api.MANDATORY_PARAM_EMPTY_OR_MALFORMED,
                                    wire.mandatory_param_msg("id"))
        method = msg.get("method")
        if not isinstance(method, str) or not method:
            return wire.error_frame(request_id, api.MANDATORY_PARAM_EMPTY_OR_MALFORMED,
                                    wire.mandatory_param_msg("method"))
        method = method.removeprefix("v3/")
        params = msg.get("params")
        if params is None:
            params = {}
        elif type(params) is not dict:
            return wire.error_frame(request_id, api.INVALID_PARAMETER,
                                    "Data sent for parameter 'params' is not valid.")
        spec = self._methods.get(method)
        if spec is None:
            legal = ", ".join(self._methods)
            return wire.error_frame(request_id, wire.UNKNOWN_METHOD,
                                    wire.illegal_chars_msg("method", legal))
        weight = spec.weight
        if method == api.OPEN_ORDERS_STATUS and "symbol" not in params:
            weight = 80
        if method == api.MY_TRADES and params.get("orderId") not in (None, ""):
            weight = 5
        limits = self._charge(weight)
        if limits[0].used > self.weight_limit:
            now = self._now_ms()
            data = {"serverTime": now, "retryAfter": (now // 60_000 + 1) * 60_000}
            return wire.response_error(
                request_id, 429,
                api.ApiError(api.TOO_MANY_REQUESTS, wire.weight_limit_msg(self.weight_limit),
                             data),
                limits,
            )
        try:
            api_key = self._authenticate(params) if spec.signed else ""
            result = spec.handler(subs, params, api_key)
        except Reject as rej:
            error = api.ApiError(rej.code, rej.msg, rej.data)
            return wire.response_error(request_id, rej.status, error, limits)
        except Exception:  # a bug must answer, not take the connection down
            self.internal_errors += 1
            return wire.response_error(
                request_id, 500, api.ApiError(api.UNKNOWN, wire.ERROR_MESSAGES[api.UNKNOWN]),
                limits,
            )
        return wire.response_ok(request_id, result, limits)

    def charge(self, weight: int) -> int:
        """Charge ``weight`` to the minute's request weight (REST and WebSocket API count
        together, as one IP's at the venue); the weight used this minute, this included."""
        return self._charge(weight)[0].used

    def _charge(self, weight: int) -> tuple[api.RateLimit, ...]:
        minute = self._now_ms() // 60_000
        if minute != self._weight_minute:
            self._weight_minute = minute
            self._weight_used = 0
        self._weight_used += weight
        return (api.RateLimit("REQUEST_WEIGHT", "MINUTE", 1, self.weight_limit,
                              self._weight_used),)

    def _authenticate(self, params: dict[str, Any]) -> str:
        """The request's API key once key, timestamp, signature and timing are good."""
        key = params.get("apiKey")
        if key is None or key == "":
            raise Reject(api.MANDATORY_PARAM_EMPTY_OR_MALFORMED, wire.mandatory_param_msg("apiKey"))
        if not isinstance(key, str):
            raise Reject(api.BAD_API_KEY_FMT, wire.ERROR_MESSAGES[api.BAD_API_KEY_FMT])
        secret = self._api_keys.get(key)
        if secret is None:
            code = api.REJECTED_MBX_KEY if _API_KEY_RE.fullmatch(key) else api.BAD_API_KEY_FMT
            raise Reject(code, wire.ERROR_MESSAGES[code])
        timestamp = _int_param(params, "timestamp", required=True)
        assert timestamp is not None
        window = self._recv_window(params)
        signature = params.get("signature")
        if signature is None or signature == "":
            raise Reject(api.MANDATORY_PARAM_EMPTY_OR_MALFORMED,
                         wire.mandatory_param_msg("signature"))
        if not wire.verify_signature(secret, params):
            raise Reject(api.INVALID_SIGNATURE, wire.ERROR_MESSAGES[api.INVALID_SIGNATURE])
        late = wire.timestamp_error(timestamp, window, self._now_ms())
        if late is not None:
            raise Reject(api.INVALID_TIMESTAMP, late)
        return key

    def _recv_window(self, params: dict[str, Any]) -> float:
        raw = params.get("recvWindow")
        if raw is None:
            return float(api.DEFAULT_RECV_WINDOW_MS)
        try:
            if isinstance(raw, bool) or not isinstance(raw, int | float | str):
                raise InvalidOperation
            value = Decimal(str(raw))
        except InvalidOperation:
            raise Reject(api.MANDATORY_PARAM_EMPTY_OR_MALFORMED,
                         wire.mandatory_param_msg("recvWindow")) from None
        if not value.is_finite() or value <= 0:
            raise Reject(api.MANDATORY_PARAM_EMPTY_OR_MALFORMED,
                         wire.mandatory_param_msg("recvWindow"))
        if value > self.recv_window_max_ms:
            raise Reject(
                api.MANDATORY_PARAM_EMPTY_OR_MALFORMED,
                f"'recvWindow' contains unexpected value. Cannot be greater than "
                f"'{self.recv_window_max_ms}'.",
            )
        return float(value)

    # ---- parameters -------------------------------------------------------------------------

    def _symbol(self, params: dict[str, Any], required: bool) -> None:
        symbol = _str_param(params, "symbol", required)
        if symbol is not None and symbol != self.instrument.symbol:
            raise Reject(api.BAD_SYMBOL, wire.ERROR_MESSAGES[api.BAD_SYMBOL])

    def _order_params(self, params: dict[str, Any]) -> tuple[Side, int, int, str | None, str]:
        """side, price (ticks), size (lots), newClientOrderId, newOrderRespType."""
        inst = self.instrument
        self._symbol(params, required=True)
        side_text = _str_param(params, "side", required=True)
        if side_text not in ("BUY", "SELL"):
            raise Reject(api.INVALID_SIDE, wire.ERROR_MESSAGES[api.INVALID_SIDE])
        order_type = _str_param(params, "type", required=True)
        if order_type != api.LIMIT_MAKER:
            if order_type in _OTHER_TYPES:
                raise Reject(api.UNSUPPORTED_OPERATION,
                             wire.ERROR_MESSAGES[api.UNSUPPORTED_OPERATION])
            raise Reject(api.INVALID_ORDER_TYPE, wire.ERROR_MESSAGES[api.INVALID_ORDER_TYPE])
        if params.get("timeInForce") is not None:
            raise Reject(api.TIF_NOT_REQUIRED, wire.ERROR_MESSAGES[api.TIF_NOT_REQUIRED])
        price = _units_param(params, "price", inst.ticks.to_units, "PRICE_FILTER")
        size = _units_param(params, "quantity", inst.lots.to_units, "LOT_SIZE")
        if inst.ticks.to_decimal(price) > wire.MAX_PRICE:
            raise Reject(api.INVALID_MESSAGE, wire.filter_failure_msg("PRICE_FILTER"))
        if self.matching.venue.exchange_filters:
            if (size % inst.size_step_lots or size < inst.min_size_lots
                    or inst.lots.to_decimal(size) > wire.MAX_QTY):
                raise Reject(api.INVALID_MESSAGE, wire.filter_failure_msg("LOT_SIZE"))
            if not self._min_notional <= price * size <= self._max_notional:
                raise Reject(api.INVALID_MESSAGE, wire.filter_failure_msg("NOTIONAL"))
        client_id = _client_id_param(params, "newClientOrderId")
        resp_type = _str_param(params, "newOrderRespType", required=False) or "ACK"
        if resp_type not in _RESP_TYPES:
            raise Reject(api.ILLEGAL_CHARS,
                         wire.illegal_chars_msg("newOrderRespType", ", ".join(_RESP_TYPES)))
        return (Side.BUY if side_text == "BUY" else Side.SELL), price, size, client_id, resp_type

    def _lookup(self, api_key: str, params: dict[str, Any], id_name: str,
                client_name: str) -> VenueOrder | None:
        """The open order named by ``id_name`` and/or ``client_name``; None if unknown."""
        order_id = _int_param(params, id_name, required=False)
        client_id = _client_id_param(params, client_name)
        if order_id is None and client_id is None:
            raise Reject(api.MANDATORY_PARAM_EMPTY_OR_MALFORMED,
                         wire.either_param_msg(client_name, id_name))
        return self.ledger.find_open(api_key, order_id, client_id)

    # ---- methods ----------------------------------------------------------------------------

    def _order_place(self, subs: Subscriptions, params: dict[str, Any], api_key: str) -> Any:
        side, price, size, client_id, resp_type = self._order_params(params)
        order = self.matching.place(api_key, side, price, size, client_id)
        return self._place_result(order, resp_type)

    def _order_cancel(self, subs: Subscriptions, params: dict[str, Any], api_key: str) -> Any:
        self._symbol(params, required=True)
        new_client_id = _client_id_param(params, "newClientOrderId")
        order = self._lookup(api_key, params, "orderId", "origClientOrderId")
        if order is None:
            raise Reject(api.CANCEL_REJECTED, wire.MSG_UNKNOWN_ORDER)
        return self._cancel(order, new_client_id)

    def _order_cancel_replace(self, subs: Subscriptions, params: dict[str, Any],
                              api_key: str) -> Any:
        mode = _str_param(params, "cancelReplaceMode", required=True)
        if mode not in (api.STOP_ON_FAILURE, api.ALLOW_FAILURE):
            raise Reject(api.ILLEGAL_CHARS, wire.illegal_chars_msg(
                "cancelReplaceMode", f"{api.STOP_ON_FAILURE}, {api.ALLOW_FAILURE}"))
        # filters are evaluated before anything is cancelled or placed
        cancel_new_id = _client_id_param(params, "cancelNewClientOrderId")
        side, price, size, client_id, resp_type = self._order_params(params)
        order = self._lookup(api_key, params, "cancelOrderId", "cancelOrigClientOrderId")
        if order is None:
            cancel_error = {"code": api.CANCEL_REJECTED, "msg": wire.MSG_UNKNOWN_ORDER}
            if mode == api.STOP_ON_FAILURE:
                raise _replace_error(False, None, cancel_error, None)
            try:
                placed = self.matching.place(api_key, side, price, size, client_id)
            except Reject as rej:
                raise _replace_error(False, False, cancel_error,
                                     {"code": rej.code, "msg": rej.msg}) from None
            raise _replace_error(False, True, cancel_error,
                                 self._place_result(placed, resp_type))
        cancel_response = self._cancel(order, cancel_new_id)
        try:
            placed = self.matching.place(api_key, side, price, size, client_id)
        except Reject as rej:
            raise _replace_error(True, False, cancel_response,
                                 {"code": rej.code, "msg": rej.msg}) from None
        return {
            "cancelResult": "SUCCESS",
            "newOrderResult": "SUCCESS",
            "cancelResponse": cancel_response,
            "newOrderResponse": self._place_result(placed, resp_type),
        }

    def _open_orders_status(self, subs: Subscriptions, params: dict[str, Any],
                            api_key: str) -> Any:
        self._symbol(params, required=False)
        return [self._status_result(order) for order in self.ledger.open[api_key].values()]

    def _open_orders_cancel_all(self, subs: Subscriptions, params: dict[str, Any],
                                api_key: str) -> Any:
        self._symbol(params, required=True)
        orders = list(self.ledger.open[api_key].values())
        if not orders:
            raise Reject(api.CANCEL_REJECTED, wire.MSG_UNKNOWN_ORDER)
        return [self._cancel(order, None) for order in orders]

    def _account_status(self, subs: Subscriptions, params: dict[str, Any], api_key: str) -> Any:
        omit_zero = params.get("omitZeroBalances") in (True, "true")
        maker = self.matching.venue.maker_fee_bps
        taker = self.matching.venue.taker_fee_bps
        balances = [
            {"asset": asset, "free": free, "locked": locked}
            for asset, free, locked in self.ledger.balances(api_key)
            if not (omit_zero and Decimal(free) == 0 and Decimal(locked) == 0)
        ]
        return {
            "makerCommission": round(maker),
            "takerCommission": round(taker),
            "buyerCommission": 0,
            "sellerCommission": 0,
            "canTrade": True,
            "canWithdraw": False,
            "canDeposit": False,
            "commissionRates": {
                "maker": _rate_text(maker),
                "taker": _rate_text(taker),
                "buyer": "0.00000000",
                "seller": "0.00000000",
            },
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": self.ledger.accounts[api_key].update_ms,
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": self.ledger.uid(api_key),
        }

    def _subscribe(self, subs: Subscriptions, params: dict[str, Any], api_key: str) -> Any:
        return {"subscriptionId": subs.subscribe(api_key)}

    def _unsubscribe(self, subs: Subscriptions, params: dict[str, Any], api_key: str) -> Any:
        subs.unsubscribe(_int_param(params, "subscriptionId", required=False))
        return {}

    def _order_status(self, subs: Subscriptions, params: dict[str, Any], api_key: str) -> Any:
        """One order of the account, open or closed: by ``orderId`` (checked against
        ``origClientOrderId`` when both are given) or by the newest with the client id."""
        self._symbol(params, required=True)
        order_id = _int_param(params, "orderId", required=False)
        client_id = _client_id_param(params, "origClientOrderId")
        if order_id is None and client_id is None:
            raise Reject(api.MANDATORY_PARAM_EMPTY_OR_MALFORMED,
                         wire.either_param_msg("origClientOrderId", "orderId"))
        order = self.ledger.find(api_key, order_id, client_id)
        if order is None:
            raise Reject(api.NO_SUCH_ORDER, wire.ERROR_MESSAGES[api.NO_SUCH_ORDER])
        return self._status_result(order)

    def _my_trades(self, subs: Subscriptions, params: dict[str, Any], api_key: str) -> Any:
        """The account's trades, oldest first: from ``fromId``, in a time window, or the
        most recent ``limit``; optionally only one order's."""
        self._symbol(params, required=True)
        order_id = _int_param(params, "orderId", required=False)
        from_id = _int_param(params, "fromId", required=False)
        start = _int_param(params, "startTime", required=False)
        end = _int_param(params, "endTime", required=False)
        limit = _int_param(params, "limit", required=False)
        if limit is None:
            limit = api.DEFAULT_MY_TRADES_LIMIT
        elif not 1 <= limit <= api.MAX_MY_TRADES_LIMIT:
            raise Reject(api.INVALID_PARAMETER, "Data sent for parameter 'limit' is not valid.")
        if from_id is not None and (start is not None or end is not None):
            raise Reject(api.OPTIONAL_PARAMS_BAD_COMBO,
                         wire.ERROR_MESSAGES[api.OPTIONAL_PARAMS_BAD_COMBO])
        if start is not None and end is not None and not (
                0 <= end - start <= api.MAX_TRADE_LOOKUP_MS):
            raise Reject(api.INVALID_INTERVAL, wire.ERROR_MESSAGES[api.INVALID_INTERVAL])
        chosen = self.ledger.select_trades(api_key, order_id=order_id, from_id=from_id,
                                           start_ms=start, end_ms=end, limit=limit)
        return [wire.account_trade_json(self.instrument, t) for t in chosen]

    def _ping(self, subs: Subscriptions, params: dict[str, Any], api_key: str) -> Any:
        return {}

    def _time(self, subs: Subscriptions, params: dict[str, Any], api_key: str) -> Any:
        return {"serverTime": self._now_ms()}

    def _cancel(self, order: VenueOrder, new_client_id: str | None) -> dict[str, Any]:
        """Cancel an open order now; returns the ``order.cancel`` result."""
        self.matching.cancel(order, new_client_id)
        return self._cancel_result(order)

    # ---- result shapes ----------------------------------------------------------------------

    def _common(self, order: VenueOrder) -> dict[str, Any]:
        inst = self.instrument
        return {
            "price": wire.price_str(inst, order.price),
            "origQty": wire.qty_str(inst, order.size),
            "executedQty": wire.qty_str(inst, order.executed),
            "origQuoteOrderQty": wire.notional_str(inst, 0),
            "cummulativeQuoteQty": wire.notional_str(inst, order.cum_quote),
            "status": order.status,
            "timeInForce": "GTC",
            "type": api.LIMIT_MAKER,
            "side": order.side.name,
        }

    def _place_result(self, order: VenueOrder, resp_type: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "symbol": self.instrument.symbol,
            "orderId": order.order_id,
            "orderListId": -1,
            "clientOrderId": order.client_id,
            "transactTime": order.created_ms,
        }
        if resp_type == "ACK":
            return out
        out.update(self._common(order))
        out["workingTime"] = order.working_ms
        if resp_type == "FULL":
            out["fills"] = []  # a LIMIT_MAKER order never trades on arrival
        out["selfTradePreventionMode"] = "NONE"
        return out

    def _status_result(self, order: VenueOrder) -> dict[str, Any]:
        inst = self.instrument
        out: dict[str, Any] = {
            "symbol": inst.symbol,
            "orderId": order.order_id,
            "orderListId": -1,
            "clientOrderId": order.client_id,
        }
        out.update(self._common(order))
        out.update({
            "stopPrice": wire.price_str(inst, 0),
            "icebergQty": wire.qty_str(inst, 0),
            "time": order.created_ms,
            "updateTime": order.update_ms,
            "isWorking": order.status in WORKING,
            "workingTime": order.working_ms,
            "selfTradePreventionMode": "NONE",
        })
        return out

    def _cancel_result(self, order: VenueOrder) -> dict[str, Any]:
        out: dict[str, Any] = {
            "symbol": self.instrument.symbol,
            "origClientOrderId": order.client_id,
            "orderId": order.order_id,
            "orderListId": -1,
            "clientOrderId": order.cancel_client_id,
            "transactTime": order.update_ms,
        }
        out.update(self._common(order))
        out["selfTradePreventionMode"] = "NONE"
        return out


# ---- parameters --------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _replace_error(cancel_ok: bool, new_ok: bool | None, cancel_response: Any,
                   new_response: Any) -> Reject:
    """The cancel-replace failure: -2022 (400) when nothing succeeded, else -2021 (409)."""
    data = {
        "cancelResult": "SUCCESS" if cancel_ok else "FAILURE",
        "newOrderResult": "NOT_ATTEMPTED" if new_ok is None else (
            "SUCCESS" if new_ok else "FAILURE"),
        "cancelResponse": cancel_response,
        "newOrderResponse": new_response,
    }
    if cancel_ok or new_ok:
        code = api.CANCEL_REPLACE_PARTIALLY_FAILED
        return Reject(code, wire.ERROR_MESSAGES[code], 409, data)
    code = api.CANCEL_REPLACE_FAILED
    return Reject(code, wire.ERROR_MESSAGES[code], 400, data)


def _str_param(params: dict[str, Any], name: str, required: bool) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise Reject(api.MANDATORY_PARAM_EMPTY_OR_MALFORMED, wire.mandatory_param_msg(name))
        return None
    if not isinstance(value, str):
        raise Reject(api.MANDATORY_PARAM_EMPTY_OR_MALFORMED, wire.mandatory_param_msg(name))
    return value


def _int_param(params: dict[str, Any], name: str, required: bool) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise Reject(api.MANDATORY_PARAM_EMPTY_OR_MALFORMED, wire.mandatory_param_msg(name))
        return None
    if _is_int(value):
        assert isinstance(value, int)
        return value
    if isinstance(value, str) and _INT_RE.fullmatch(value):
        return int(value)
    raise Reject(api.ILLEGAL_CHARS, wire.illegal_chars_msg(name, "^[0-9]{1,20}$"))


def _units_param(params: dict[str, Any], name: str, to_units: Callable[[str], int],
                 filter_type: str) -> int:
    """A positive decimal parameter in units (``to_units``: ticks or lots); -1013 with
    ``filter_type`` when it is not a whole number of units or not > 0."""
    raw = params.get(name)
    if raw is None or raw == "":
        raise Reject(api.MANDATORY_PARAM_EMPTY_OR_MALFORMED, wire.mandatory_param_msg(name))
    if _is_int(raw):
        raw = str(raw)
    if not isinstance(raw, str) or not _DECIMAL_RE.fullmatch(raw):
        raise Reject(api.ILLEGAL_CHARS, wire.illegal_chars_msg(name, _DECIMAL_LEGAL))
    try:
        units = to_units(raw)
    except ValueError:
        raise Reject(api.INVALID_MESSAGE, wire.filter_failure_msg(filter_type)) from None
    if units <= 0:
        raise Reject(api.INVALID_MESSAGE, wire.filter_failure_msg(filter_type))
    return units


def _client_id_param(params: dict[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not api.CLIENT_ORDER_ID_RE.fullmatch(value):
        raise Reject(api.ILLEGAL_CHARS,
                     wire.illegal_chars_msg(name, api.CLIENT_ORDER_ID_LEGAL))
    return value


def _rate_text(bps: Fraction) -> str:
    """A fee rate in bps as Binance's commission-rate text (a fraction, 8 decimals)."""
    rate = bps / 10_000
    return f"{Decimal(rate.numerator) / Decimal(rate.denominator):.8f}"
