"""The USD-M futures sim's requests, sans-I/O: a WebSocket API frame or a REST request in,
its answer out (the contract: /work/briefs/usdm-wire.md).

:class:`FuturesProtocol` serves, for every symbol of the sim, the WebSocket API subset at
``/ws-fapi/v1`` (``order.place``, ``order.modify``, ``order.cancel``, ``order.status``,
``account.status``, ``account.position``, ``account.balance`` (each also as ``v2/...``),
``userDataStream.start``/``ping``/``stop``) and the signed REST endpoints
(:data:`REST_ROUTES`). Both run the same handlers; they differ in how a request is signed:
the WebSocket API signs the sorted parameters with ``apiKey`` among them, REST signs the
query string as sent, with the key in the ``X-MBX-APIKEY`` header.

Checks, in the venue's order: request shape, method, request weight per minute (-1003,
status 429; REST and the WebSocket API share the budget, as for one IP), the API key
(-2014 malformed, -2015 unknown), ``timestamp``/``recvWindow`` (-1102), ``signature``
(-1022), timing against ``signing_ms()`` (-1021), the method's parameters (-1102 missing,
-1100 malformed, -1121 symbol, -1117 side, -1116 type, -1115 timeInForce, -1111
precision, -1013 LOT_SIZE, -4164 notional, -4016/-4024 PERCENT_PRICE) and the matching
(-2022, -5022, -2019, -2011, -2013, -5027).

Listen keys: one per account (``userDataStream.start`` or ``POST /fapi/v1/listenKey``
again returns the same key and keeps it alive), valid for 60 minutes after the last
keep-alive; :meth:`FuturesProtocol.expire_listen_keys` ends the stale ones.

Time: ``now_ms`` is the sim's clock (ms since the epoch) for what the venue stamps and
schedules (listen-key expiry); ``signing_ms`` (default: the same) the clock a signed
request's ``timestamp`` is checked against and the request-weight minute runs on, the one a
client signs with (the wall clock when the replay runs faster than 1x).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Final, NamedTuple
from urllib.parse import parse_qsl

import orjson

from mmdaemon.model import Side
from mmdaemon.sim import futures_wire as fw
from mmdaemon.sim import wire
from mmdaemon.sim.futures_accounts import FuturesLedger, FuturesOrder
from mmdaemon.sim.futures_matching import FuturesMatching, UserDataEvent
from mmdaemon.sim.futures_wire import Reject
from mmdaemon.venues import binance_api as api

LISTEN_KEY_TTL_MS: Final = 60 * 60 * 1000  # a listen key not kept alive for 60 min expires
MAX_RECV_WINDOW_MS: Final = 60_000
DEFAULT_RECV_WINDOW_MS: Final = 5_000
_API_KEY_RE: Final = re.compile(r"[A-Za-z0-9]{1,128}")
_INT_RE: Final = re.compile(r"-?[0-9]{1,20}")
_DECIMAL_RE: Final = re.compile(r"[0-9]{1,20}(\.[0-9]{1,20})?")

Handler = Callable[[dict[str, Any], str], Any]


class _Method(NamedTuple):
    handler: Handler
    weight: int
    security: str  # "SIGNED" or "KEY" (the API key only)


class Answer(NamedTuple):
    """A REST answer: HTTP ``status``, JSON ``body``, the request weight used this minute."""

    status: int
    body: Any
    used_weight: int


class FuturesProtocol:
    """Requests of the futures sim's accounts, run on ``matchings`` (symbol -> matching,
    all on one ``ledger``). ``api_keys`` maps API key -> HMAC secret."""

    def __init__(self, matchings: Mapping[str, FuturesMatching], ledger: FuturesLedger,
                 api_keys: Mapping[str, str], now_ms: Callable[[], int], *,
                 signing_ms: Callable[[], int] | None = None,
                 weight_limit: int = fw.WEIGHT_LIMIT) -> None:
        self.matchings = dict(matchings)
        self.ledger = ledger
        self._api_keys = dict(api_keys)
        self._now_ms = now_ms
        self.signing_ms = now_ms if signing_ms is None else signing_ms
        self.weight_limit = weight_limit
        self._weight_minute = -1
        self._weight_used = 0
        self.internal_errors = 0  # requests answered -1000 (a bug: should stay 0)
        self.listen_keys: dict[str, str] = {}  # listen key -> API key
        self._key_of: dict[str, str] = {}  # API key -> its listen key
        self._key_expiry: dict[str, int] = {}  # listen key -> ms it expires at
        account = _Method(self._account, 5, "SIGNED")
        position = _Method(self._positions, 5, "SIGNED")
        balance = _Method(self._balance, 5, "SIGNED")
        self.ws_methods: dict[str, _Method] = {
            "order.place": _Method(self._order_place, 0, "SIGNED"),
            "order.modify": _Method(self._order_modify, 1, "SIGNED"),
            "order.cancel": _Method(self._order_cancel, 1, "SIGNED"),
            "order.status": _Method(self._order_status, 1, "SIGNED"),
            "account.status": account, "v2/account.status": account,
            "account.position": position, "v2/account.position": position,
            "account.balance": balance, "v2/account.balance": balance,
            "userDataStream.start": _Method(self._stream_start, 2, "KEY"),
            "userDataStream.ping": _Method(self._stream_ping, 2, "KEY"),
            "userDataStream.stop": _Method(self._stream_stop, 2, "KEY"),
        }
        self.rest_routes: dict[tuple[str, str], _Method] = {
            ("GET", "/fapi/v1/openOrders"): _Method(self._open_orders, 1, "SIGNED"),
            ("DELETE", "/fapi/v1/allOpenOrders"): _Method(self._cancel_all, 1, "SIGNED"),
            ("GET", "/fapi/v1/order"): _Method(self._order_status, 1, "SIGNED"),
            ("DELETE", "/fapi/v1/order"): _Method(self._order_cancel, 1, "SIGNED"),
            ("GET", "/fapi/v1/userTrades"): _Method(self._user_trades, 5, "SIGNED"),
            ("GET", "/fapi/v1/income"): _Method(self._income, 30, "SIGNED"),
            ("GET", "/fapi/v1/positionSide/dual"): _Method(self._dual, 30, "SIGNED"),
            ("GET", "/fapi/v2/positionRisk"): position, ("GET", "/fapi/v3/positionRisk"): position,
            ("GET", "/fapi/v2/account"): account, ("GET", "/fapi/v3/account"): account,
            ("GET", "/fapi/v2/balance"): balance, ("GET", "/fapi/v3/balance"): balance,
            ("POST", "/fapi/v1/listenKey"): _Method(self._stream_start, 1, "KEY"),
            ("PUT", "/fapi/v1/listenKey"): _Method(self._stream_ping, 1, "KEY"),
            ("DELETE", "/fapi/v1/listenKey"): _Method(self._stream_stop, 1, "KEY"),
        }

    # ---- the WebSocket API ------------------------------------------------------------------

    def handle(self, message: str | bytes) -> bytes:
        """One ``/ws-fapi/v1`` request frame -> its response frame. Never raises."""
        try:
            msg = orjson.loads(message)
        except orjson.JSONDecodeError:
            msg = None
        if type(msg) is not dict:
            # not a JSON object: nothing to answer by id, so id null
            return wire.response_error(None, 400, api.ApiError(fw.UNKNOWN, "Invalid JSON Request"))
        request_id = msg.get("id")
        if request_id is not None and not isinstance(request_id, str | int):
            request_id = None
        method = msg.get("method")
        params = msg.get("params") or {}
        if not isinstance(method, str) or type(params) is not dict:
            return wire.response_error(request_id, 400, api.ApiError(
                fw.MANDATORY_PARAM, fw.mandatory_msg("method" if not isinstance(
                    method, str) else "params")))
        spec = self.ws_methods.get(method)
        if spec is None:
            return wire.response_error(request_id, 400, api.ApiError(
                fw.ILLEGAL_CHARS, f"Illegal characters found in parameter 'method'; legal "
                                  f"range is '{', '.join(self.ws_methods)}'."))
        used = self._charge(spec.weight)
        limits: tuple[api.RateLimit, ...] = (
            api.RateLimit("REQUEST_WEIGHT", "MINUTE", 1, self.weight_limit, used),)
        try:
            if used > self.weight_limit:
                raise Reject(fw.TOO_MANY_REQUESTS, status=429)
            api_key = self._ws_auth(params, spec.security)
            result = spec.handler(params, api_key)
        except Reject as rej:
            return wire.response_error(request_id, rej.status,
                                       api.ApiError(rej.code, rej.msg), limits)
        except Exception:  # a bug answers, it does not take the connection down
            self.internal_errors += 1
            return wire.response_error(request_id, 500, api.ApiError(
                fw.UNKNOWN, fw.MESSAGES[fw.UNKNOWN]), limits)
        if params.get("returnRateLimits") in (False, "false"):
            limits = ()  # the client asked for no rateLimits in the answer
        return wire.response_ok(request_id, result, limits)

    def _ws_auth(self, params: dict[str, Any], security: str) -> str:
        key = self._known_key(params.get("apiKey"))
        if security == "SIGNED":
            self._check_signed(params, key, wire.verify_signature(self._api_keys[key], params))
        return key

    # ---- REST ---------------------------------------------------------------------------------

    def rest(self, method: str, path: str, query: str, api_key_header: str | None) -> Answer:
        """One signed REST request (``query`` the raw query string) -> its answer: 405 for
        a path of :attr:`rest_routes` with another method, None in ``body`` for any other
        path (not order entry's: the caller routes it)."""
        spec = self.rest_routes.get((method, path))
        if spec is None:
            if any(p == path for _, p in self.rest_routes):
                return Answer(405, {"code": -1000, "msg": f"{method} not allowed on {path}"},
                              self._weight_used)
            return Answer(404, None, self._weight_used)
        used = self._charge(spec.weight)
        try:
            if used > self.weight_limit:
                raise Reject(fw.TOO_MANY_REQUESTS, status=429)
            params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
            if not api_key_header:  # REST answers a missing key header as a malformed key
                raise Reject(fw.BAD_API_KEY_FMT)
            key = self._known_key(api_key_header)
            if spec.security == "SIGNED":
                # Binance signs the query string as sent, signature left out
                payload, sep, signature = query.rpartition("&signature=")
                if not sep:
                    payload, signature = query, params.get("signature", "")
                expected = hmac.new(self._api_keys[key].encode(), payload.encode(),
                                    hashlib.sha256).hexdigest()
                self._check_signed(params, key, hmac.compare_digest(
                    expected.encode(), str(signature).lower().encode()))
            return Answer(200, spec.handler(params, key), used)
        except Reject as rej:
            status = 401 if rej.code in (fw.BAD_API_KEY_FMT, fw.REJECTED_MBX_KEY) else rej.status
            return Answer(status, {"code": rej.code, "msg": rej.msg}, used)
        except Exception:
            self.internal_errors += 1
            return Answer(500, {"code": fw.UNKNOWN, "msg": fw.MESSAGES[fw.UNKNOWN]}, used)

    def market_weight(self, weight: int) -> int:
        """Charge an unsigned market-data request ``weight``; the weight used this minute
        (the caller answers 429 when it is over :attr:`weight_limit`)."""
        return self._charge(weight)

    # ---- authentication ---------------------------------------------------------------------

    def _charge(self, weight: int) -> int:
        minute = self.signing_ms() // 60_000
        if minute != self._weight_minute:
            self._weight_minute, self._weight_used = minute, 0
        self._weight_used += weight
        return self._weight_used

    def _known_key(self, key: object) -> str:
        if key is None or key == "":
            raise Reject(fw.MANDATORY_PARAM, fw.mandatory_msg("apiKey"))
        if not isinstance(key, str) or not _API_KEY_RE.fullmatch(key):
            raise Reject(fw.BAD_API_KEY_FMT)
        if key not in self._api_keys:
            raise Reject(fw.REJECTED_MBX_KEY)
        return key

    def _check_signed(self, params: Mapping[str, Any], key: str, signature_ok: bool) -> None:
        timestamp = _int(params, "timestamp", required=True)
        assert timestamp is not None
        window = _int(params, "recvWindow", required=False)
        if window is None:
            window = DEFAULT_RECV_WINDOW_MS
        elif not 0 < window <= MAX_RECV_WINDOW_MS:
            raise Reject(fw.MANDATORY_PARAM, fw.mandatory_msg("recvWindow"))
        if not params.get("signature"):
            raise Reject(fw.MANDATORY_PARAM, fw.mandatory_msg("signature"))
        if not signature_ok:
            raise Reject(fw.SIGNATURE)
        late = wire.timestamp_error(timestamp, window, self.signing_ms())
        if late is not None:
            raise Reject(fw.TIMESTAMP, late)

    # ---- parameters -------------------------------------------------------------------------

    def _matching(self, params: Mapping[str, Any], required: bool = True) -> FuturesMatching:
        symbol = _str(params, "symbol", required)
        matching = self.matchings.get(symbol or "")
        if matching is None:
            raise Reject(fw.BAD_SYMBOL)
        return matching

    def _order_of(self, params: Mapping[str, Any], api_key: str, symbol: str,
                  missing: int) -> FuturesOrder:
        order_id = _int(params, "orderId", required=False)
        client_id = _client_id(params, "origClientOrderId")
        if order_id is None and client_id is None:
            raise Reject(fw.MANDATORY_PARAM, fw.either_msg("orderId", "origClientOrderId"))
        order = self.ledger.find(api_key, symbol, order_id, client_id)
        if order is None:
            raise Reject(missing)
        return order

    def _price_size(self, params: Mapping[str, Any], matching: FuturesMatching,
                    reduce_only: bool) -> tuple[int, int]:
        """price (ticks) and quantity (lots), checked against the symbol's filters."""
        inst = matching.instrument
        price = _units(params, "price", inst.ticks.to_units)
        size = _units(params, "quantity", inst.lots.to_units)
        if size % inst.size_step_lots or size < inst.min_size_lots:
            raise Reject(fw.FILTER_FAILURE, fw.filter_msg("LOT_SIZE"))
        if size > inst.lots.to_units(fw.MAX_QTY):
            raise Reject(fw.FILTER_FAILURE, fw.filter_msg("LOT_SIZE"))
        if not reduce_only and price * size < inst.min_notional_units:
            raise Reject(fw.MIN_NOTIONAL, fw.MESSAGES[fw.MIN_NOTIONAL].format(
                notional=format(inst.min_notional.normalize(), "f")))
        mark = self.ledger.marks[inst.symbol]
        if mark and price > mark * fw.PERCENT_UP:
            raise Reject(fw.PRICE_TOO_HIGH, fw.MESSAGES[fw.PRICE_TOO_HIGH].format(
                limit=inst.price_str(int(mark * fw.PERCENT_UP))))
        if mark and price < mark * fw.PERCENT_DOWN:
            raise Reject(fw.PRICE_TOO_LOW, fw.MESSAGES[fw.PRICE_TOO_LOW].format(
                limit=inst.price_str(-int(-mark * fw.PERCENT_DOWN))))
        return price, size

    # ---- methods ----------------------------------------------------------------------------

    def _order_place(self, params: dict[str, Any], api_key: str) -> Any:
        matching = self._matching(params)
        side = _side(params)
        order_type = _str(params, "type", required=True)
        if order_type != "LIMIT":
            raise Reject(fw.INVALID_ORDER_TYPE)  # the sim's matching takes limit orders only
        tif = _str(params, "timeInForce", required=True)
        if tif != "GTX":
            raise Reject(fw.INVALID_TIF)  # ... and post-only ones only
        position_side = _str(params, "positionSide", required=False)
        if position_side not in (None, "BOTH"):
            raise Reject(-4061, "Order's position side does not match user's setting.")
        reduce_only = _bool(params, "reduceOnly")
        resp_type = _str(params, "newOrderRespType", required=False) or "ACK"
        if resp_type not in ("ACK", "RESULT"):
            raise Reject(fw.ILLEGAL_CHARS, fw.illegal_msg("newOrderRespType"))
        price, size = self._price_size(params, matching, reduce_only)
        client_id = _client_id(params, "newClientOrderId")
        order = matching.place(api_key, side, price, size, client_id, reduce_only)
        return fw.order_json(matching.instrument, order)

    def _order_modify(self, params: dict[str, Any], api_key: str) -> Any:
        matching = self._matching(params)
        side = _side(params)
        order = self._order_of(params, api_key, matching.symbol, fw.NO_SUCH_ORDER)
        if order.closed:
            raise Reject(fw.NO_SUCH_ORDER)
        if side is not order.side:
            raise Reject(fw.INVALID_SIDE)
        price, size = self._price_size(params, matching, order.reduce_only)
        matching.modify(order, price, size)
        return fw.order_json(matching.instrument, order)

    def _order_cancel(self, params: dict[str, Any], api_key: str) -> Any:
        matching = self._matching(params)
        order = self._order_of(params, api_key, matching.symbol, fw.CANCEL_REJECTED)
        if order.closed:
            raise Reject(fw.CANCEL_REJECTED)
        matching.cancel(order)
        return fw.order_json(matching.instrument, order)

    def _order_status(self, params: dict[str, Any], api_key: str) -> Any:
        matching = self._matching(params)
        order = self._order_of(params, api_key, matching.symbol, fw.NO_SUCH_ORDER)
        return fw.order_json(matching.instrument, order, status_fields=True)

    def _open_orders(self, params: dict[str, Any], api_key: str) -> Any:
        symbol = None
        if params.get("symbol"):
            symbol = self._matching(params).symbol
        return [fw.order_json(self.ledger.instruments[o.symbol], o, status_fields=True)
                for o in self.ledger.open_orders(api_key, symbol)]

    def _cancel_all(self, params: dict[str, Any], api_key: str) -> Any:
        matching = self._matching(params)
        for order in self.ledger.open_orders(api_key, matching.symbol):
            matching.cancel(order)
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def _user_trades(self, params: dict[str, Any], api_key: str) -> Any:
        matching = self._matching(params)
        from_id = _int(params, "fromId", required=False)
        start = _int(params, "startTime", required=False)
        end = _int(params, "endTime", required=False)
        order_id = _int(params, "orderId", required=False)
        limit = _limit(params, 500, 1000)
        trades = [t for t in self.ledger.trades[api_key] if t.symbol == matching.symbol
                  and (order_id is None or t.order_id == order_id)]
        if from_id is not None:
            trades = [t for t in trades if t.trade_id >= from_id][:limit]
        elif start is not None or end is not None:
            trades = [t for t in trades if (start is None or t.time_ms >= start)
                      and (end is None or t.time_ms <= end)][:limit]
        else:
            trades = trades[-limit:]
        return [fw.trade_json(matching.instrument, t) for t in trades]

    def _income(self, params: dict[str, Any], api_key: str) -> Any:
        symbol = self._matching(params).symbol if params.get("symbol") else None
        kind = _str(params, "incomeType", required=False)
        start = _int(params, "startTime", required=False)
        end = _int(params, "endTime", required=False)
        limit = _limit(params, 100, 1000)
        entries = [e for e in self.ledger.income[api_key]
                   if (symbol is None or e.symbol == symbol)
                   and (kind is None or e.income_type == kind)
                   and (start is None or e.time_ms >= start)
                   and (end is None or e.time_ms <= end)]
        return [fw.income_json(e) for e in entries[:limit]]

    def _dual(self, params: dict[str, Any], api_key: str) -> Any:
        return {"dualSidePosition": False}

    def _account(self, params: dict[str, Any], api_key: str) -> Any:
        return fw.account_json(self.ledger, api_key)

    def _positions(self, params: dict[str, Any], api_key: str) -> Any:
        symbols = [self._matching(params).symbol] if params.get("symbol") else list(
            self.matchings)
        return [fw.position_json(self.ledger, api_key, s) for s in symbols]

    def _balance(self, params: dict[str, Any], api_key: str) -> Any:
        return [fw.balance_json(self.ledger, api_key, f"sim{self.ledger.api_keys.index(api_key)}")]

    def _stream_start(self, params: dict[str, Any], api_key: str) -> Any:
        listen_key = self._key_of.get(api_key)
        if listen_key is None:
            listen_key = secrets.token_hex(32)  # Binance's keys: 64 alphanumerics
            self._key_of[api_key] = listen_key
            self.listen_keys[listen_key] = api_key
        self._key_expiry[listen_key] = self._now_ms() + LISTEN_KEY_TTL_MS
        return {"listenKey": listen_key}

    def _stream_ping(self, params: dict[str, Any], api_key: str) -> Any:
        listen_key = self._key_of.get(api_key)
        if listen_key is None:
            raise Reject(fw.INVALID_LISTEN_KEY)
        self._key_expiry[listen_key] = self._now_ms() + LISTEN_KEY_TTL_MS
        return {"listenKey": listen_key}

    def _stream_stop(self, params: dict[str, Any], api_key: str) -> Any:
        listen_key = self._key_of.pop(api_key, None)
        if listen_key is not None:
            self.listen_keys.pop(listen_key, None)
            self._key_expiry.pop(listen_key, None)
        return {}

    def expire_listen_keys(self) -> list[str]:
        """End every listen key not kept alive in time; the keys that ended."""
        now = self._now_ms()
        gone = [k for k, t in self._key_expiry.items() if t <= now]
        for listen_key in gone:
            api_key = self.listen_keys.pop(listen_key)
            del self._key_expiry[listen_key]
            self._key_of.pop(api_key, None)
        return gone

    def take_events(self) -> list[UserDataEvent]:
        """Every symbol's user-data events since the last call, in the order they were
        queued per symbol."""
        out: list[UserDataEvent] = []
        for matching in self.matchings.values():
            if matching.outbox:
                out.extend(matching.take_events())
        return out


# ---- parameters --------------------------------------------------------------------------------


def _str(params: Mapping[str, Any], name: str, required: bool) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise Reject(fw.MANDATORY_PARAM, fw.mandatory_msg(name))
        return None
    if not isinstance(value, str):
        raise Reject(fw.ILLEGAL_CHARS, fw.illegal_msg(name))
    return value


def _int(params: Mapping[str, Any], name: str, required: bool) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise Reject(fw.MANDATORY_PARAM, fw.mandatory_msg(name))
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INT_RE.fullmatch(value):
        return int(value)
    raise Reject(fw.ILLEGAL_CHARS, fw.illegal_msg(name))


def _limit(params: Mapping[str, Any], default: int, most: int) -> int:
    limit = _int(params, "limit", required=False)
    if limit is None:
        return default
    if not 1 <= limit <= most:
        raise Reject(fw.ILLEGAL_CHARS, fw.illegal_msg("limit"))
    return limit


def _bool(params: Mapping[str, Any], name: str) -> bool:
    value = params.get(name)
    if value in (None, "", False, "false", "FALSE"):
        return False
    if value in (True, "true", "TRUE"):
        return True
    raise Reject(fw.ILLEGAL_CHARS, fw.illegal_msg(name))


def _side(params: Mapping[str, Any]) -> Side:
    text = _str(params, "side", required=True)
    if text not in ("BUY", "SELL"):
        raise Reject(fw.INVALID_SIDE)
    return Side.BUY if text == "BUY" else Side.SELL


def _units(params: Mapping[str, Any], name: str, to_units: Callable[[str], int]) -> int:
    """A positive decimal parameter in ticks or lots: -1100 when it is not a decimal,
    -1111 when it has more decimals than the grid."""
    raw = params.get(name)
    if raw is None or raw == "":
        raise Reject(fw.MANDATORY_PARAM, fw.mandatory_msg(name))
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str) or not _DECIMAL_RE.fullmatch(raw):
        raise Reject(fw.ILLEGAL_CHARS, fw.illegal_msg(name))
    try:
        units = to_units(raw)
    except (ValueError, InvalidOperation):
        raise Reject(fw.BAD_PRECISION) from None
    if units <= 0:
        raise Reject(fw.FILTER_FAILURE,
                     fw.filter_msg("PRICE_FILTER" if name == "price" else "LOT_SIZE"))
    return units


def _client_id(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not api.CLIENT_ORDER_ID_RE.fullmatch(value):
        raise Reject(fw.ILLEGAL_CHARS, fw.illegal_msg(name))
    return value


def rate_fraction(text: str) -> Fraction:
    """A funding rate's text (``0.0001``) as an exact fraction; ValueError naming it."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or abs(value) >= 1:
        raise ValueError(f"--funding-rate: expected a fraction such as 0.0001 (between -1 and 1), "
                         f"got {text!r}")
    return Fraction(value)
