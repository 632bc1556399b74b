"""Binance spot WebSocket API, client side: responses, user-data events and trade history
parsed into our values (the requests and the protocol's vocabulary are
:mod:`mmdaemon.venues.binance_api`). Sans-I/O: nothing here does I/O or reads a clock.

Fees
----
An ``executionReport`` carries its commission ``n`` in asset ``N``. :func:`parse_event`
converts it to notional units exactly and rounds half up (toward +inf, so a fee is never
flattered), like :func:`mmdaemon.exchange.fill_model.fee_units`:

- quote asset (USDT for BTCUSDT): ``fee = n / (tick_size x lot_size)``;
- base asset (BTC, what Binance charges a buyer by default): valued at the fill price,
  ``fee = n / lot_size x L_ticks``;
- any other asset (BNB discounts): converted at ``asset_prices[N]`` (quote currency per unit
  of ``N``) when the caller gives one, ``fee = n x price / (tick_size x lot_size)``;
  otherwise the :class:`~mmdaemon.model.Fill` carries fee 0 and the
  :class:`ExecutionReport` says ``fee_converted=False`` with the raw ``commission`` and
  ``commission_asset``, so the caller accounts for it instead of it silently vanishing.

Trade history
-------------
``myTrades`` lists the account's own trades (:class:`AccountTrade`); a client that was
disconnected recovers the executions it missed from it (``fromId`` = the last trade id it
saw + 1) and turns them into :class:`~mmdaemon.model.Fill` s with :func:`fill_from_trade`
(``exec_id`` = the trade id, as for an ``executionReport``, so both routes deduplicate
against each other). A trade names the venue's ``orderId`` but not the client order id:
``order.status`` by ``orderId`` tells whose order it was.

Malformed input never raises out of the parsers: they return :class:`ProtocolError` with
the reason. Builders raise ``ValueError`` for arguments we should never have produced.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Final

import orjson

from mmdaemon.model import NS_PER_MS, Fill, Instrument, OrderStatus, OrderUpdate, Side
from mmdaemon.venues.binance_api import (
    REJECT_NONE,
    TOO_MANY_REQUESTS,
    AccountPosition,
    AccountTrade,
    ApiError,
    Assets,
    ExecutionReport,
    ForeignOrder,
    OtherEvent,
    ProtocolError,
    RateLimit,
    Response,
    UserEvent,
    order_id_of,
)

# ---- parsing -------------------------------------------------------------------------------


def decode(frame: bytes | str | Mapping[str, Any]) -> dict[str, Any] | ProtocolError:
    """The JSON object of a frame (a mapping passes through); never raises."""
    if isinstance(frame, Mapping):
        return dict(frame)
    try:
        obj = orjson.loads(frame)
    except (orjson.JSONDecodeError, TypeError) as exc:
        return ProtocolError(f"bad JSON: {exc}")
    if type(obj) is not dict:
        return ProtocolError("frame is not a JSON object")
    return obj


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _rate_limits(raw: object) -> tuple[RateLimit, ...] | ProtocolError:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        return ProtocolError("'rateLimits' is not a list")
    out: list[RateLimit] = []
    for item in raw:
        if not isinstance(item, dict):
            return ProtocolError("a 'rateLimits' entry is not an object")
        kind, interval = item.get("rateLimitType"), item.get("interval")
        num, limit, count = item.get("intervalNum"), item.get("limit"), item.get("count")
        if not (isinstance(kind, str) and isinstance(interval, str)):
            return ProtocolError("a 'rateLimits' entry lacks rateLimitType/interval")
        if not (_is_int(num) and _is_int(limit) and _is_int(count)):
            return ProtocolError("a 'rateLimits' entry has non-integer counts")
        assert isinstance(num, int) and isinstance(limit, int) and isinstance(count, int)
        out.append(RateLimit(kind, interval, num, limit, count))
    return tuple(out)


def parse_response(frame: bytes | str | Mapping[str, Any]) -> Response | ProtocolError:
    """Decode a response frame: id, status, result or error, rate limits; never raises."""
    obj = decode(frame)
    if isinstance(obj, ProtocolError):
        return obj
    if "event" in obj:
        return ProtocolError("a user-data event, not a response")
    request_id = obj.get("id")
    if request_id is not None and not (isinstance(request_id, str) or _is_int(request_id)):
        return ProtocolError(f"'id' must be a string, an integer or null, got {request_id!r}")
    status = obj.get("status")
    if not _is_int(status):
        return ProtocolError(f"'status' must be an integer, got {status!r}")
    assert isinstance(status, int)
    limits = _rate_limits(obj.get("rateLimits"))
    if isinstance(limits, ProtocolError):
        return limits
    raw_error = obj.get("error")
    if raw_error is not None:
        if not isinstance(raw_error, dict):
            return ProtocolError("'error' is not an object")
        code, msg = raw_error.get("code"), raw_error.get("msg")
        if not _is_int(code) or not isinstance(msg, str):
            return ProtocolError("'error' lacks an integer 'code' or a string 'msg'")
        assert isinstance(code, int)
        error = ApiError(code, msg, raw_error.get("data"))
        return Response(request_id, status, None, error, limits)
    if "result" not in obj:
        return ProtocolError("a response with neither 'result' nor 'error'")
    if not 200 <= status < 300:
        return ProtocolError(f"status {status} without an 'error'")
    return Response(request_id, status, obj["result"], None, limits)


_STATUS: Final[Mapping[str, tuple[OrderStatus, str]]] = {
    "PENDING_NEW": (OrderStatus.PENDING_NEW, ""),
    "NEW": (OrderStatus.NEW, ""),
    "PARTIALLY_FILLED": (OrderStatus.PARTIALLY_FILLED, ""),
    "FILLED": (OrderStatus.FILLED, ""),
    "PENDING_CANCEL": (OrderStatus.PENDING_CANCEL, ""),
    "CANCELED": (OrderStatus.CANCELED, ""),
    "REJECTED": (OrderStatus.REJECTED, ""),
    # the venue cancelled it (order-type rules, maintenance, self-trade prevention)
    "EXPIRED": (OrderStatus.CANCELED, "expired"),
    "EXPIRED_IN_MATCH": (OrderStatus.CANCELED, "expired in match"),
}
"""Binance order status ``X`` -> our status and the reason an expiry implies."""

_QUOTE_ASSETS: Final = (
    "FDUSD", "USDT", "USDC", "TUSD", "BUSD", "USDP", "DAI", "EURI", "AEUR", "BTC", "ETH",
    "BNB", "EUR", "TRY", "BRL", "GBP", "JPY", "AUD", "MXN", "PLN", "RON", "ZAR", "UAH",
    "ARS", "COP", "IDR", "XRP", "TRX", "DOGE",
)  # fmt: skip


def assets_of(symbol: str) -> Assets:
    """Base and quote asset of a spot ``symbol`` by its quote suffix (BTCUSDT: BTC, USDT).

    Raises ``ValueError`` for a symbol without a known quote asset: pass :class:`Assets`
    explicitly then.
    """
    for quote in _QUOTE_ASSETS:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return Assets(symbol[: -len(quote)], quote)
    raise ValueError(f"cannot tell the quote asset of {symbol!r}: give the assets explicitly")


def notional_unit(instrument: Instrument) -> Fraction:
    """One notional unit in quote currency, exactly: ``tick_size x lot_size``."""
    return Fraction(instrument.tick_size) * Fraction(instrument.lot_size)


def _half_up(value: Fraction) -> int:
    """``floor(value + 1/2)`` exactly."""
    return (2 * value.numerator + value.denominator) // (2 * value.denominator)


def commission_units(
    instrument: Instrument,
    commission: Decimal,
    asset: str | None,
    price: int,
    assets: Assets,
    asset_prices: Mapping[str, str | Decimal | Fraction] | None = None,
) -> int | None:
    """A commission in notional units (rounded half up), or None when it cannot be valued.

    ``price`` is the fill price in ticks (values a base-asset commission); ``asset_prices``
    gives quote currency per unit of any other asset. See the module docstring.
    """
    amount = Fraction(commission)
    if amount == 0:
        return 0
    unit = notional_unit(instrument)
    if asset == assets.quote:
        return _half_up(amount / unit)
    if asset == assets.base:
        return _half_up(amount / Fraction(instrument.lot_size) * price)
    if asset is not None and asset_prices is not None and asset in asset_prices:
        rate = asset_prices[asset]
        rate_q = rate if isinstance(rate, Fraction) else Fraction(Decimal(rate))
        return _half_up(amount * rate_q / unit)
    return None


class _Bad(Exception):
    """Internal: a field that does not decode (becomes a ProtocolError)."""


def _field(event: Mapping[str, Any], key: str) -> Any:
    if key not in event:
        raise _Bad(f"missing field {key!r}")
    return event[key]


def _str(event: Mapping[str, Any], key: str) -> str:
    value = _field(event, key)
    if not isinstance(value, str):
        raise _Bad(f"field {key!r} is not a string")
    return value


def _int(event: Mapping[str, Any], key: str) -> int:
    value = _field(event, key)
    if not _is_int(value):
        raise _Bad(f"field {key!r} is not an integer")
    assert isinstance(value, int)
    return value


def _units(convert: Any, event: Mapping[str, Any], key: str) -> int:
    text = _str(event, key)
    try:
        units: int = convert(text)
    except ValueError as exc:
        raise _Bad(f"field {key!r}: {exc}") from None
    return units


def _side(text: str) -> Side:
    if text == "BUY":
        return Side.BUY
    if text == "SELL":
        return Side.SELL
    raise _Bad(f"unknown side {text!r}")


_DECIMAL_LIMIT = 100
"""Largest decimal exponent (either way) of a decimal field. Binance sends 8 decimals; an
exponent like ``1e-999999999`` is a finite Decimal whose exact Fraction (the fee
conversion) would take minutes and gigabytes."""


def _decimal(text: object, key: str) -> Decimal:
    if not isinstance(text, str):
        raise _Bad(f"field {key!r} is not a string")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise _Bad(f"field {key!r} is not a decimal: {text!r}") from None
    if not value.is_finite():
        raise _Bad(f"field {key!r} is not finite: {text!r}")
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    if value and not (exponent >= -_DECIMAL_LIMIT and value.adjusted() <= _DECIMAL_LIMIT):
        raise _Bad(f"field {key!r} is out of range: {text[:40]!r}")
    return value


def _optional_text(value: object) -> str:
    """``C`` is "" (or null, or "null" in older payloads) when no order was replaced."""
    if value is None or value == "null" or not isinstance(value, str):
        return ""
    return value


def parse_event(
    frame: bytes | str | Mapping[str, Any],
    instrument: Instrument,
    prefix: str,
    *,
    assets: Assets | None = None,
    asset_prices: Mapping[str, str | Decimal | Fraction] | None = None,
) -> UserEvent | ProtocolError:
    """Decode a user-data event frame (``{"subscriptionId", "event"}`` or a bare event).

    ``executionReport`` of our orders (client ids made with ``prefix``, our symbol) becomes
    an :class:`ExecutionReport`: ``X`` maps to :class:`~mmdaemon.model.OrderStatus`
    (EXPIRED and EXPIRED_IN_MATCH to CANCELED with the reason), ``p``/``q``/``z`` to price,
    size and cumulative filled, ``r`` (unless NONE) to the reason, ``T`` ms to ``ts_ns``;
    the order id comes from ``C`` when set (a cancel: ``c`` is then the cancel's own id),
    else from ``c``. Execution type TRADE adds a :class:`~mmdaemon.model.Fill` of ``l`` lots
    at ``L`` ticks, ``exec_id`` = trade id ``t`` (> 0), maker flag ``m``, fee from
    ``n``/``N``. Reports of other orders are :class:`ForeignOrder`. Never raises.
    """
    obj = decode(frame)
    if isinstance(obj, ProtocolError):
        return obj
    subscription_id: int | None = None
    event: Any = obj
    if "event" in obj:
        event = obj["event"]
        raw_sid = obj.get("subscriptionId")
        if raw_sid is not None:
            if not _is_int(raw_sid):
                return ProtocolError(f"'subscriptionId' is not an integer: {raw_sid!r}")
            subscription_id = raw_sid
    if not isinstance(event, dict):
        return ProtocolError("'event' is not an object")
    kind = event.get("e")
    if not isinstance(kind, str):
        return ProtocolError("event without a string type 'e'")
    try:
        if kind == "executionReport":
            if assets is None:
                try:
                    assets = assets_of(instrument.symbol)
                except ValueError as exc:
                    return ProtocolError(str(exc))
            return _execution_report(event, subscription_id, instrument, prefix, assets,
                                     asset_prices)
        event_ms = _int(event, "E")
        if kind == "outboundAccountPosition":
            return _account_position(event, subscription_id, event_ms)
        return OtherEvent(subscription_id, kind, event_ms, event)
    except _Bad as exc:
        return ProtocolError(f"{kind}: {exc}")


def _account_position(
    event: Mapping[str, Any], subscription_id: int | None, event_ms: int
) -> AccountPosition:
    update_ms = _int(event, "u")
    raw = _field(event, "B")
    if not isinstance(raw, list):
        raise _Bad("field 'B' is not a list")
    balances: dict[str, tuple[Decimal, Decimal]] = {}
    for item in raw:
        if not isinstance(item, dict):
            raise _Bad("a balance is not an object")
        asset = _str(item, "a")
        balances[asset] = (_decimal(item.get("f"), "f"), _decimal(item.get("l"), "l"))
    return AccountPosition(subscription_id, event_ms, update_ms, balances)


def _execution_report(
    event: Mapping[str, Any],
    subscription_id: int | None,
    instrument: Instrument,
    prefix: str,
    assets: Assets,
    asset_prices: Mapping[str, str | Decimal | Fraction] | None,
) -> ExecutionReport | ForeignOrder:
    symbol = _str(event, "s")
    client_id = _str(event, "c")
    orig_client_id = _optional_text(event.get("C"))
    execution_type = _str(event, "x")
    exchange_order_id = _int(event, "i")
    our_id_text = orig_client_id or client_id
    if symbol != instrument.symbol:
        return ForeignOrder(subscription_id, symbol, our_id_text, exchange_order_id,
                            execution_type, f"symbol {symbol!r} is not {instrument.symbol!r}")
    order_id = order_id_of(prefix, our_id_text)
    if order_id is None:
        return ForeignOrder(subscription_id, symbol, our_id_text, exchange_order_id,
                            execution_type, f"client order id not made with prefix {prefix!r}")
    order_status = _str(event, "X")
    mapped = _STATUS.get(order_status)
    if mapped is None:
        raise _Bad(f"unknown order status {order_status!r}")
    status, implied_reason = mapped
    side = _side(_str(event, "S"))
    price = _units(instrument.ticks.to_units, event, "p")
    size = _units(instrument.lots.to_units, event, "q")
    filled = _units(instrument.lots.to_units, event, "z")
    raw_reason = event.get("r")
    reason = raw_reason if isinstance(raw_reason, str) and raw_reason != REJECT_NONE else ""
    reason = reason or implied_reason
    event_ms = _int(event, "E")
    transact_ms = _int(event, "T") if "T" in event else event_ms
    ts_ns = transact_ms * NS_PER_MS
    commission = _decimal(event.get("n", "0"), "n")
    raw_asset = event.get("N")
    if raw_asset is not None and not isinstance(raw_asset, str):
        raise _Bad("field 'N' is not a string or null")
    asset: str | None = raw_asset
    fill: Fill | None = None
    converted = True
    if execution_type == "TRADE":
        trade_id = _int(event, "t")
        if trade_id <= 0:
            raise _Bad(f"TRADE with trade id {trade_id}: must be > 0")
        last_qty = _units(instrument.lots.to_units, event, "l")
        last_price = _units(instrument.ticks.to_units, event, "L")
        if last_qty <= 0 or last_price <= 0:
            raise _Bad("TRADE with a zero last quantity or price")
        maker = _field(event, "m")
        if not isinstance(maker, bool):
            raise _Bad("field 'm' is not a boolean")
        fee = commission_units(instrument, commission, asset, last_price, assets, asset_prices)
        if fee is None:
            converted = False
            fee = 0
        fill = Fill(order_id, side, last_price, last_qty, fee, maker, ts_ns, trade_id)
    update = OrderUpdate(order_id, status, side, price, size, filled, reason, ts_ns)
    return ExecutionReport(
        update,
        fill,
        subscription_id,
        execution_type,
        order_status,
        exchange_order_id,
        client_id,
        orig_client_id,
        commission,
        asset,
        converted,
        event_ms,
    )


def order_update_from_result(
    result: object, instrument: Instrument, prefix: str
) -> OrderUpdate | ForeignOrder | ProtocolError:
    """Our order's state from an order object in a response result.

    Works for ``order.place`` (RESULT/FULL), ``order.cancel``, ``order.status`` and the
    entries of ``openOrders.status``/``openOrders.cancelAll``: ``status``, ``side``,
    ``price``, ``origQty``, ``executedQty``; the id from ``origClientOrderId`` when present
    (a cancel), else ``clientOrderId``; the time from ``transactTime``, ``updateTime``,
    ``workingTime`` or ``time`` (ms), the first present. Never raises.
    """
    if not isinstance(result, dict):
        return ProtocolError("order result is not an object")
    try:
        symbol = _str(result, "symbol")
        client_id = _optional_text(result.get("origClientOrderId")) or _str(
            result, "clientOrderId"
        )
        exchange_order_id = _int(result, "orderId")
        if symbol != instrument.symbol:
            return ForeignOrder(None, symbol, client_id, exchange_order_id, "",
                                f"symbol {symbol!r} is not {instrument.symbol!r}")
        order_id = order_id_of(prefix, client_id)
        if order_id is None:
            return ForeignOrder(None, symbol, client_id, exchange_order_id, "",
                                f"client order id not made with prefix {prefix!r}")
        order_status = _str(result, "status")
        mapped = _STATUS.get(order_status)
        if mapped is None:
            raise _Bad(f"unknown order status {order_status!r}")
        side = _side(_str(result, "side"))
        price = _units(instrument.ticks.to_units, result, "price")
        size = _units(instrument.lots.to_units, result, "origQty")
        filled = _units(instrument.lots.to_units, result, "executedQty")
        ms = 0
        for key in ("transactTime", "updateTime", "workingTime", "time"):
            if key in result:
                ms = _int(result, key)
                break
    except _Bad as exc:
        return ProtocolError(f"order result: {exc}")
    status, reason = mapped
    return OrderUpdate(order_id, status, side, price, size, filled, reason, ms * NS_PER_MS)


def parse_frame(
    frame: bytes | str | Mapping[str, Any],
    instrument: Instrument,
    prefix: str,
    *,
    assets: Assets | None = None,
    asset_prices: Mapping[str, str | Decimal | Fraction] | None = None,
) -> Response | UserEvent | ProtocolError:
    """Any frame of the connection: an event (it has ``event``) or a response. Never raises."""
    obj = decode(frame)
    if isinstance(obj, ProtocolError):
        return obj
    if "event" in obj:
        return parse_event(obj, instrument, prefix, assets=assets, asset_prices=asset_prices)
    return parse_response(obj)


# ---- trade history and rate limits (client side) -------------------------------------------


def _bool(obj: Mapping[str, Any], key: str) -> bool:
    value = _field(obj, key)
    if not isinstance(value, bool):
        raise _Bad(f"field {key!r} is not a boolean")
    return value


def parse_account_trade(obj: object, instrument: Instrument) -> AccountTrade | ProtocolError:
    """One ``myTrades`` entry of ``instrument``'s symbol as an :class:`AccountTrade`.

    Never raises: a malformed entry, another symbol or a trade id <= 0 is a
    :class:`ProtocolError`.
    """
    if not isinstance(obj, dict):
        return ProtocolError("trade is not an object")
    try:
        symbol = _str(obj, "symbol")
        if symbol != instrument.symbol:
            raise _Bad(f"symbol {symbol!r} is not {instrument.symbol!r}")
        trade_id = _int(obj, "id")
        if trade_id <= 0:
            raise _Bad(f"trade id {trade_id}: must be > 0")
        trade = AccountTrade(
            trade_id,
            _int(obj, "orderId"),
            _int(obj, "orderListId") if "orderListId" in obj else -1,
            _units(instrument.ticks.to_units, obj, "price"),
            _units(instrument.lots.to_units, obj, "qty"),
            _decimal(obj.get("quoteQty"), "quoteQty"),
            _decimal(obj.get("commission"), "commission"),
            _str(obj, "commissionAsset"),
            _int(obj, "time"),
            _bool(obj, "isBuyer"),
            _bool(obj, "isMaker"),
            _bool(obj, "isBestMatch") if "isBestMatch" in obj else True,
        )
    except _Bad as exc:
        return ProtocolError(f"trade: {exc}")
    if trade.price <= 0 or trade.qty <= 0:
        return ProtocolError("trade: zero price or quantity")
    return trade


def parse_my_trades(result: object, instrument: Instrument) -> list[AccountTrade] | ProtocolError:
    """A ``myTrades`` result: its trades sorted by trade id; one bad entry fails it all
    (a partial list would let a caller advance past a trade it never saw)."""
    if not isinstance(result, list):
        return ProtocolError("myTrades result is not a list")
    trades: list[AccountTrade] = []
    for item in result:
        trade = parse_account_trade(item, instrument)
        if isinstance(trade, ProtocolError):
            return trade
        trades.append(trade)
    trades.sort(key=lambda t: t.trade_id)
    return trades


def fill_from_trade(
    trade: AccountTrade,
    order_id: int,
    instrument: Instrument,
    *,
    assets: Assets | None = None,
    asset_prices: Mapping[str, str | Decimal | Fraction] | None = None,
) -> tuple[Fill, bool]:
    """``trade`` of our order ``order_id`` as a :class:`~mmdaemon.model.Fill`, and whether
    its fee could be converted (False: the fill carries fee 0, as in :func:`parse_event`).

    The fill is the one the trade's ``executionReport`` would have given: same ``exec_id``
    (the trade id), side from ``isBuyer``, maker flag, fee rounded half up.
    """
    if assets is None:
        assets = assets_of(instrument.symbol)
    fee = commission_units(instrument, trade.commission, trade.commission_asset, trade.price,
                           assets, asset_prices)
    side = Side.BUY if trade.is_buyer else Side.SELL
    fill = Fill(order_id, side, trade.price, trade.qty, fee or 0, trade.is_maker,
                trade.time_ms * NS_PER_MS, trade.trade_id)
    return fill, fee is not None


RATE_LIMIT_STATUSES: Final = frozenset({429, 418})
"""HTTP-like statuses of a refused request for rate limits: 429 slow down, 418 IP banned."""


def is_rate_limited(response: Response) -> bool:
    """True when the venue refused ``response``'s request for a rate limit (-1003, 429, 418)."""
    if response.status in RATE_LIMIT_STATUSES:
        return True
    return response.error is not None and response.error.code == TOO_MANY_REQUESTS


def retry_after_ms(response: Response) -> int | None:
    """When a rate-limited request may be retried: the error's ``data.retryAfter`` (ms since
    the epoch), else None (the caller falls back on its own backoff)."""
    error = response.error
    if error is None or not isinstance(error.data, dict):
        return None
    value = error.data.get("retryAfter")
    return value if _is_int(value) else None
