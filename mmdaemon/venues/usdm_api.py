"""Binance USD-M futures order entry, sans-I/O: requests, REST calls and user-data parsing.

The subset the daemon speaks (the contract: ``/work/briefs/usdm-wire.md``, Binance's
``binance-sdk-derivatives-trading-usds-futures`` models): the futures WebSocket API at
``/ws-fapi/v1`` for order entry (same frames and HMAC-SHA256 signing as spot's, so the
value types, :func:`~mmdaemon.venues.binance_api.signed_request` and the cancel and status
builders are :mod:`mmdaemon.venues.binance_api`'s), signed REST for the listings
(``openOrders``, ``allOpenOrders``, ``userTrades``, ``income``, ``positionSide/dual``), and
the user-data stream ``<user_stream_url>/<listenKey>`` (bare events: ``ORDER_TRADE_UPDATE``,
``ACCOUNT_UPDATE``, ``listenKeyExpired``).

Units as in the core: prices integer ticks, sizes integer lots, money in notional units
(ticks x lots: 1e-4 USDT for BTCUSDT USD-M). Fees are converted like spot's
(:func:`~mmdaemon.venues.binance_parse.commission_units`: half up, never flattered);
funding and balances are rounded toward -inf (a payment or a margin is never flattered
either). Venue times are ms since the epoch, ours ns. Nothing here does I/O or reads a
clock; parsers never raise (they return :class:`~mmdaemon.venues.binance_api.ProtocolError`).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Final, NamedTuple

import orjson

from mmdaemon.model import NS_PER_MS, Balances, Fill, Funding, Instrument, OrderUpdate, Side
from mmdaemon.venues import binance_api as api
from mmdaemon.venues import binance_parse as parse
from mmdaemon.venues.binance_order_io import RestCall

DEFAULT_REST_URL: Final = "https://fapi.binance.com"
# Binance's private route: the legacy wss://fstream.binance.com/ws was retired on 2026-04-23
DEFAULT_USER_STREAM_URL: Final = "wss://fstream.binance.com/private/ws"

# ---- WebSocket API methods ------------------------------------------------------------------

ORDER_PLACE: Final = "order.place"
ORDER_MODIFY: Final = "order.modify"
ACCOUNT_STATUS: Final = "v2/account.status"
ACCOUNT_POSITION: Final = "account.position"  # v1: carries the symbol's leverage
USER_DATA_START: Final = "userDataStream.start"
USER_DATA_PING: Final = "userDataStream.ping"

# ---- REST paths -----------------------------------------------------------------------------

OPEN_ORDERS: Final = "/fapi/v1/openOrders"
ALL_OPEN_ORDERS: Final = "/fapi/v1/allOpenOrders"
USER_TRADES: Final = "/fapi/v1/userTrades"
INCOME: Final = "/fapi/v1/income"
POSITION_MODE: Final = "/fapi/v1/positionSide/dual"
USED_WEIGHT_HEADER: Final = "X-MBX-USED-WEIGHT-1M"
MAX_USER_TRADES_LIMIT: Final = 1_000
MAX_INCOME_LIMIT: Final = 1_000
FUNDING_FEE: Final = "FUNDING_FEE"

# ---- error codes beyond spot's (Binance futures "Error Codes") -------------------------------

MARGIN_INSUFFICIENT: Final = -2019
REDUCE_ONLY_REJECTED: Final = -2022
POST_ONLY_REJECTED: Final = -5022  # GTX would have taken
NO_NEED_TO_MODIFY: Final = -5027

_STATUS_TEXT: Final = frozenset({"NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "EXPIRED",
                                 "EXPIRED_IN_MATCH", "REJECTED"})


class AccountUpdate(NamedTuple):
    """An ``ACCOUNT_UPDATE``: why (``m``), when (``T`` ms), and the quote asset's balance
    change ``bc`` (exact; 0 when the asset is not listed). A FUNDING_FEE one of a cross
    position does not say which symbol paid: funding is booked from ``income``."""

    reason: str
    time_ms: int
    quote_change: Decimal


class Income(NamedTuple):
    """One ``income`` entry of the symbol: ``tran_id``, ``amount`` (exact, in ``asset``)
    and ``time_ms`` (ms since the epoch)."""

    tran_id: int
    income_type: str
    amount: Decimal
    asset: str
    time_ms: int


UsdmEvent = api.ExecutionReport | api.ForeignOrder | AccountUpdate | api.OtherEvent


# ---- requests -------------------------------------------------------------------------------


def _positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def gtx_params(instrument: Instrument, side: Side, price: int, size: int,
               reduce_only: bool) -> dict[str, object]:
    """``symbol``, ``side``, LIMIT GTX (post-only), ``price`` and ``quantity`` as exact
    text, ``reduceOnly``; ``price`` ticks and ``size`` lots > 0 (``ValueError``)."""
    side = Side(side)
    _positive("price", price)
    _positive("size", size)
    return {"symbol": instrument.symbol, "side": side.name, "type": "LIMIT",
            "timeInForce": "GTX", "price": instrument.price_str(price),
            "quantity": instrument.size_str(size),
            "reduceOnly": "true" if reduce_only else "false"}


def order_place(instrument: Instrument, side: Side, price: int, size: int, client_id: str,
                *, reduce_only: bool, request_id: int, creds: api.Credentials,
                timestamp_ms: int) -> bytes:
    """Signed ``order.place`` of a post-only LIMIT GTX order with our client order id."""
    if not api.CLIENT_ORDER_ID_RE.fullmatch(client_id):
        raise ValueError(f"newClientOrderId {client_id!r} does not match "
                         f"{api.CLIENT_ORDER_ID_LEGAL}")
    params = gtx_params(instrument, side, price, size, reduce_only)
    params["newClientOrderId"] = client_id
    params["newOrderRespType"] = "RESULT"
    return api.signed_request(ORDER_PLACE, params, request_id, creds, timestamp_ms)


def order_modify(instrument: Instrument, venue_order_id: int, side: Side, price: int,
                 size: int, *, request_id: int, creds: api.Credentials,
                 timestamp_ms: int) -> bytes:
    """Signed ``order.modify`` in place (same ``orderId``): ``size`` is the new TOTAL
    quantity in lots (what executed counts toward it), ``price`` ticks."""
    _positive("price", price)
    _positive("size", size)
    params: dict[str, object] = {"symbol": instrument.symbol, "orderId": venue_order_id,
                                 "side": Side(side).name, "price": instrument.price_str(price),
                                 "quantity": instrument.size_str(size)}
    return api.signed_request(ORDER_MODIFY, params, request_id, creds, timestamp_ms)


def user_data_start(*, request_id: int, creds: api.Credentials) -> bytes:
    """``userDataStream.start`` (API key only): the result's ``listenKey`` names the stream."""
    return api.request(USER_DATA_START, {}, request_id, api_key=creds.api_key)


def user_data_ping(*, request_id: int, creds: api.Credentials) -> bytes:
    """``userDataStream.ping``: keeps the listen key alive another 60 minutes."""
    return api.request(USER_DATA_PING, {}, request_id, api_key=creds.api_key)


def account_status(*, request_id: int, creds: api.Credentials, timestamp_ms: int) -> bytes:
    """Signed ``v2/account.status`` (assets with ``availableBalance``)."""
    return api.signed_request(ACCOUNT_STATUS, {}, request_id, creds, timestamp_ms)


def account_position(instrument: Instrument, *, request_id: int, creds: api.Credentials,
                     timestamp_ms: int) -> bytes:
    """Signed ``account.position`` of the symbol (``positionAmt``, ``leverage``)."""
    return api.signed_request(ACCOUNT_POSITION, {"symbol": instrument.symbol}, request_id,
                              creds, timestamp_ms)


def open_orders(instrument: Instrument) -> RestCall:
    """``GET /fapi/v1/openOrders``: every open order of the account in the symbol."""
    return RestCall("GET", OPEN_ORDERS, (("symbol", instrument.symbol),))


def cancel_all_orders(instrument: Instrument) -> RestCall:
    """``DELETE /fapi/v1/allOpenOrders``: cancel everything open in the symbol."""
    return RestCall("DELETE", ALL_OPEN_ORDERS, (("symbol", instrument.symbol),))


def user_trades(instrument: Instrument, *, from_id: int | None = None,
                order_id: int | None = None, limit: int = MAX_USER_TRADES_LIMIT) -> RestCall:
    """``GET /fapi/v1/userTrades``: trades with id >= ``from_id`` (or of venue order
    ``order_id``, or the newest), oldest first, at most ``limit``."""
    params: list[tuple[str, object]] = [("symbol", instrument.symbol), ("limit", limit)]
    if from_id is not None:
        params.append(("fromId", from_id))
    if order_id is not None:
        params.append(("orderId", order_id))
    return RestCall("GET", USER_TRADES, tuple(params))


def funding_income(instrument: Instrument, *, start_time_ms: int | None = None) -> RestCall:
    """``GET /fapi/v1/income`` of type FUNDING_FEE, from ``start_time_ms`` (inclusive)."""
    params: list[tuple[str, object]] = [("symbol", instrument.symbol),
                                        ("incomeType", FUNDING_FEE),
                                        ("limit", MAX_INCOME_LIMIT)]
    if start_time_ms is not None:
        params.append(("startTime", start_time_ms))
    return RestCall("GET", INCOME, tuple(params))


def position_mode() -> RestCall:
    """``GET /fapi/v1/positionSide/dual``: ``dualSidePosition`` true is hedge mode."""
    return RestCall("GET", POSITION_MODE, ())


def rest_query(call: RestCall, creds: api.Credentials, timestamp_ms: int) -> str:
    """The query string of ``call``: its parameters, then for a signed call ``timestamp``,
    ``recvWindow`` (when set) and the ``signature`` of all of them as written (REST signs
    the query in the order it is sent; ours is sorted by name, as the WebSocket API's)."""
    params: dict[str, object] = dict(call.params)
    if call.signed:
        params["timestamp"] = timestamp_ms
        if creds.recv_window_ms is not None:
            params["recvWindow"] = creds.recv_window_ms
        payload = api.signature_payload(params)
        return f"{payload}&signature={api.sign(creds.secret, params)}"
    return api.signature_payload(params)


def rest_response(status: int, body: bytes, used_weight: str | None,
                  retry_after_s: str | None, wall_ms: int) -> api.Response:
    """An HTTP answer as a :class:`~mmdaemon.venues.binance_api.Response` (``id`` None):
    a body ``{"code" < 0, "msg"}`` or a non-2xx status is an error; ``Retry-After``
    (seconds) becomes the error's ``retryAfter`` (ms since the epoch, as the WebSocket API
    says it); ``X-MBX-USED-WEIGHT-1M`` a REQUEST_WEIGHT rate limit entry (limit unknown: 0).
    """
    limits: tuple[api.RateLimit, ...] = ()
    if used_weight is not None and used_weight.isdigit():
        limits = (api.RateLimit("REQUEST_WEIGHT", "MINUTE", 1, 0, int(used_weight)),)
    try:
        result: Any = orjson.loads(body) if body.strip() else None
    except orjson.JSONDecodeError:
        result = None  # an HTML error page of a proxy: the status tells
    code = result.get("code") if isinstance(result, dict) else None
    is_error = not 200 <= status < 300 or (isinstance(code, int) and code < 0)
    if not is_error:
        return api.Response(None, status, result, None, limits)
    msg = result.get("msg") if isinstance(result, dict) else None
    data: dict[str, object] | None = None
    if retry_after_s is not None and retry_after_s.isdigit():
        data = {"retryAfter": wall_ms + int(retry_after_s) * 1000}
    error = api.ApiError(code if isinstance(code, int) else 0,
                         msg if isinstance(msg, str) else f"HTTP {status}", data)
    return api.Response(None, status if status >= 300 else 400, None, error, limits)


# ---- parsing --------------------------------------------------------------------------------


class _Bad(Exception):
    """Internal: a field that does not decode (becomes a ProtocolError)."""


def _get(obj: Mapping[str, Any], key: str, kind: type) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Bad(f"field {key!r} is missing or not {kind.__name__}")
    return value


def _decimal(obj: Mapping[str, Any], key: str) -> Decimal:
    text = _get(obj, key, str)
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise _Bad(f"field {key!r} is not a decimal: {text[:40]!r}") from None
    if not value.is_finite() or abs(value.adjusted()) > 40:
        raise _Bad(f"field {key!r} is out of range: {text[:40]!r}")
    return value


def _units(convert: Any, obj: Mapping[str, Any], key: str) -> int:
    try:
        value: int = convert(_get(obj, key, str))
    except ValueError as exc:
        raise _Bad(f"field {key!r}: {exc}") from None
    return value


def _side(text: str) -> Side:
    if text in ("BUY", "SELL"):
        return Side.BUY if text == "BUY" else Side.SELL
    raise _Bad(f"unknown side {text!r}")


def floor_units(instrument: Instrument, amount: Decimal) -> int:
    """An amount of the quote asset in notional units, rounded toward -inf."""
    value = Fraction(amount) / parse.notional_unit(instrument)
    return value.numerator // value.denominator


def parse_user_event(frame: bytes | str | Mapping[str, Any], instrument: Instrument,
                     prefix: str, *, assets: api.Assets,
                     asset_prices: Mapping[str, str] | None = None
                     ) -> UsdmEvent | api.ProtocolError:
    """One user-data stream event. ``ORDER_TRADE_UPDATE`` of our order (client id made with
    ``prefix``, our symbol) is an :class:`~mmdaemon.venues.binance_api.ExecutionReport`
    whose update is the order after the event (``q`` its total size, ``z`` filled) and, for
    execution type TRADE, a fill of ``l`` lots at ``L`` with ``exec_id`` = trade id ``t``
    and the fee from ``n``/``N``; other orders are ``ForeignOrder``. ``ACCOUNT_UPDATE`` is
    an :class:`AccountUpdate`; anything else ``OtherEvent``. Never raises."""
    obj = parse.decode(frame)
    if isinstance(obj, api.ProtocolError):
        return obj
    kind = obj.get("e")
    if not isinstance(kind, str):
        return api.ProtocolError("event without a string type 'e'")
    try:
        event_ms = _get(obj, "E", int)
        if kind == "ORDER_TRADE_UPDATE":
            order = _get(obj, "o", dict)
            return _order_trade_update(order, event_ms, instrument, prefix, assets,
                                       asset_prices)
        if kind == "ACCOUNT_UPDATE":
            return _account_update(obj, assets)
        return api.OtherEvent(None, kind, event_ms, dict(obj))
    except _Bad as exc:
        return api.ProtocolError(f"{kind}: {exc}")


def _order_trade_update(o: Mapping[str, Any], event_ms: int, instrument: Instrument,
                        prefix: str, assets: api.Assets,
                        asset_prices: Mapping[str, str] | None
                        ) -> api.ExecutionReport | api.ForeignOrder:
    symbol = _get(o, "s", str)
    client_id = _get(o, "c", str)
    venue_id = _get(o, "i", int)
    execution_type = _get(o, "x", str)
    if symbol != instrument.symbol:
        return api.ForeignOrder(None, symbol, client_id, venue_id, execution_type,
                                f"symbol {symbol!r} is not {instrument.symbol!r}")
    order_id = api.order_id_of(prefix, client_id)
    if order_id is None:
        return api.ForeignOrder(None, symbol, client_id, venue_id, execution_type,
                                f"client order id not made with prefix {prefix!r}")
    status_text = _get(o, "X", str)
    if status_text not in _STATUS_TEXT:
        raise _Bad(f"unknown order status {status_text!r}")
    # the spot parser's status table (EXPIRED -> CANCELED "expired") is the futures' too
    mapped = parse.order_update_from_result(
        {"symbol": symbol, "clientOrderId": client_id, "orderId": venue_id,
         "status": status_text, "side": _get(o, "S", str), "price": _get(o, "p", str),
         "origQty": _get(o, "q", str), "executedQty": _get(o, "z", str),
         "updateTime": _get(o, "T", int)}, instrument, prefix)
    if not isinstance(mapped, OrderUpdate):
        raise _Bad(mapped.reason)
    update = mapped
    commission = _decimal(o, "n") if "n" in o else Decimal(0)
    raw_asset = o.get("N")
    asset = raw_asset if isinstance(raw_asset, str) else None
    fill: Fill | None = None
    converted = True
    if execution_type == "TRADE":
        trade_id = _get(o, "t", int)
        last_qty = _units(instrument.lots.to_units, o, "l")
        last_price = _units(instrument.ticks.to_units, o, "L")
        if trade_id <= 0 or last_qty <= 0 or last_price <= 0:
            raise _Bad("TRADE with a trade id, last quantity or price <= 0")
        maker = _get(o, "m", bool)
        fee = parse.commission_units(instrument, commission, asset, last_price, assets,
                                     asset_prices)
        converted = fee is not None
        fill = Fill(order_id, update.side, last_price, last_qty, fee or 0, maker,
                    update.ts_ns, trade_id)
    return api.ExecutionReport(update, fill, None, execution_type, status_text, venue_id,
                               client_id, "", commission, asset, converted, event_ms)


def _account_update(obj: Mapping[str, Any], assets: api.Assets) -> AccountUpdate:
    body = _get(obj, "a", dict)
    reason = _get(body, "m", str)
    time_ms = _get(obj, "T", int)
    change = Decimal(0)
    for item in _get(body, "B", list):
        if not isinstance(item, dict):
            raise _Bad("a balance is not an object")
        if item.get("a") == assets.quote:
            change = _decimal(item, "bc")
    return AccountUpdate(reason, time_ms, change)


def parse_user_trades(result: object, instrument: Instrument
                      ) -> list[api.AccountTrade] | api.ProtocolError:
    """A ``userTrades`` answer as spot's :class:`~mmdaemon.venues.binance_api.AccountTrade`
    values (sorted by trade id; one bad entry fails it all, as spot's)."""
    if not isinstance(result, list):
        return api.ProtocolError("userTrades result is not a list")
    trades: list[api.AccountTrade] = []
    try:
        for item in result:
            if not isinstance(item, dict):
                raise _Bad("trade is not an object")
            if _get(item, "symbol", str) != instrument.symbol:
                raise _Bad(f"trade of symbol {item['symbol']!r}")
            trade = api.AccountTrade(
                _get(item, "id", int), _get(item, "orderId", int), -1,
                _units(instrument.ticks.to_units, item, "price"),
                _units(instrument.lots.to_units, item, "qty"),
                _decimal(item, "quoteQty"), _decimal(item, "commission"),
                _get(item, "commissionAsset", str), _get(item, "time", int),
                _get(item, "buyer", bool), _get(item, "maker", bool), True)
            if trade.trade_id <= 0 or trade.price <= 0 or trade.qty <= 0:
                raise _Bad("trade id, price or quantity <= 0")
            trades.append(trade)
    except _Bad as exc:
        return api.ProtocolError(f"userTrades: {exc}")
    trades.sort(key=lambda t: t.trade_id)
    return trades


def parse_income(result: object) -> list[Income] | api.ProtocolError:
    """An ``income`` answer, sorted by time then ``tranId``."""
    if not isinstance(result, list):
        return api.ProtocolError("income result is not a list")
    out: list[Income] = []
    try:
        for item in result:
            if not isinstance(item, dict):
                raise _Bad("income entry is not an object")
            out.append(Income(_get(item, "tranId", int), _get(item, "incomeType", str),
                              _decimal(item, "income"), _get(item, "asset", str),
                              _get(item, "time", int)))
    except _Bad as exc:
        return api.ProtocolError(f"income: {exc}")
    out.sort(key=lambda i: (i.time_ms, i.tran_id))
    return out


def funding_from_income(entry: Income, instrument: Instrument) -> Funding:
    """An income FUNDING_FEE entry as a :class:`~mmdaemon.model.Funding` (id: the
    payment's time in ms; the amount rounded toward -inf)."""
    return Funding(floor_units(instrument, entry.amount), entry.time_ms * NS_PER_MS,
                   entry.time_ms)


def parse_dual_side(result: object) -> bool | api.ProtocolError:
    """``dualSidePosition`` of a position-mode answer (True: hedge mode)."""
    value = result.get("dualSidePosition") if isinstance(result, dict) else None
    if not isinstance(value, bool):
        return api.ProtocolError("positionSide/dual: no boolean dualSidePosition")
    return value


def balances_of(status: object, positions: object, instrument: Instrument, quote: str
                ) -> Balances | api.ProtocolError:
    """:class:`~mmdaemon.model.Balances` from ``v2/account.status`` (``availableBalance``
    of the quote asset, rounded toward -inf; 0 when the asset is not listed) and
    ``account.position`` (the symbol's ``leverage``, 0 when the symbol is not listed: the
    checks then take 1, the most cautious); ``ts_ns`` the latest ``updateTime`` of either
    (0: none given). ``base_lots`` None: a futures position is margined, not held."""
    try:
        if not isinstance(status, dict):
            raise _Bad("account.status result is not an object")
        if not isinstance(positions, list):
            raise _Bad("account.position result is not a list")
        available, leverage, update_ms = Decimal(0), 0, 0
        for item in _get(status, "assets", list):
            if isinstance(item, dict) and item.get("asset") == quote:
                available = _decimal(item, "availableBalance")
                update_ms = max(update_ms, _optional_ms(item))
        for item in positions:
            if isinstance(item, dict) and item.get("symbol") == instrument.symbol:
                text = _get(item, "leverage", str)
                if not text.isdigit():
                    raise _Bad(f"leverage {text[:20]!r} is not a whole number")
                leverage = int(text)
                update_ms = max(update_ms, _optional_ms(item))
    except _Bad as exc:
        return api.ProtocolError(f"account: {exc}")
    return Balances(None, floor_units(instrument, available), leverage, update_ms * NS_PER_MS)


def position_of(positions: object, instrument: Instrument) -> int | api.ProtocolError:
    """The symbol's ``positionAmt`` in an ``account.position`` answer, in lots (signed:
    negative short; 0 when the symbol is not listed: no position)."""
    if not isinstance(positions, list):
        return api.ProtocolError("account.position result is not a list")
    lots = 0
    try:
        for item in positions:
            if isinstance(item, dict) and item.get("symbol") == instrument.symbol:
                text = _get(item, "positionAmt", str)
                sign, digits = (-1, text[1:]) if text.startswith("-") else (1, text)
                lots += sign * _units(instrument.lots.to_units, {"positionAmt": digits},
                                      "positionAmt")
    except _Bad as exc:
        return api.ProtocolError(f"account.position: {exc}")
    return lots


def _optional_ms(item: Mapping[str, Any]) -> int:
    value = item.get("updateTime")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
