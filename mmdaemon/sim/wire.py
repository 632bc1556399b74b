"""The server side of Binance's spot WebSocket API, sans-I/O: what a venue writes and checks.

The other end of :mod:`mmdaemon.venues.binance_api` (the client side the daemon's gateway
uses: vocabulary, signing, request builders, response and event parsers, shared value
types). This module adds what only a server does, for the sim's order entry
(:mod:`mmdaemon.sim.protocol`, :mod:`mmdaemon.sim.matching`): the standard error messages
and the matching engine's texts, the signature and timing checks of a SIGNED request,
response and user-data event frames, ``executionReport`` and ``myTrades`` entries, and
:class:`Reject`, a request refused with a Binance error. It imports the client module,
never the other way round. Nothing here does I/O or reads a clock: times are passed in.

Units as in the client module: prices ticks, sizes lots, notional units ticks x lots,
venue times ms since the epoch; decimal text is written exactly, never through float.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final, NamedTuple

import orjson

from mmdaemon.model import Instrument, Side
from mmdaemon.venues import binance_api as api

FUTURE_TOLERANCE_MS: Final = 1_000  # a timestamp this far ahead of the server is refused
MAX_PRICE: Final = Decimal(1_000_000)  # the PRICE_FILTER's maxPrice (Binance's BTCUSDT)
MAX_QTY: Final = Decimal(9000)  # the LOT_SIZE filter's maxQty
MAX_NOTIONAL: Final = Decimal(9_000_000)  # the NOTIONAL filter's maxNotional
PLACES: Final = 8
"""Binance spot prints every price, quantity and amount with 8 decimals (``"0.00100000"``)."""

UNKNOWN_METHOD: Final = api.ILLEGAL_CHARS
"""What we answer to a method we do not serve. Binance documents no code for it; -1100
(illegal value in a parameter, here ``method``) is the closest documented one."""

ERROR_MESSAGES: Final[Mapping[int, str]] = {
    api.UNKNOWN: "An unknown error occurred while processing the request.",
    api.TOO_MANY_REQUESTS: "Too many requests queued.",
    api.INVALID_MESSAGE: "The request is rejected by the API.",
    api.UNSUPPORTED_OPERATION: "This operation is not supported.",
    api.INVALID_TIMESTAMP: "Timestamp for this request is outside of the recvWindow.",
    api.INVALID_SIGNATURE: "Signature for this request is not valid.",
    api.ILLEGAL_CHARS: "Illegal characters found in a parameter.",
    api.MANDATORY_PARAM_EMPTY_OR_MALFORMED: (
        "A mandatory parameter was not sent, was empty/null, or malformed."
    ),
    api.TIF_NOT_REQUIRED: "TimeInForce parameter sent when not required.",
    api.INVALID_ORDER_TYPE: "Invalid orderType.",
    api.INVALID_SIDE: "Invalid side.",
    api.BAD_SYMBOL: "Invalid symbol.",
    api.INVALID_INTERVAL: "Lookup interval is too big.",
    api.OPTIONAL_PARAMS_BAD_COMBO: "Combination of optional parameters invalid.",
    api.INVALID_PARAMETER: "Invalid data sent for a parameter.",
    api.INVALID_JSON: "Invalid JSON Request",
    api.NEW_ORDER_REJECTED: "New order rejected.",
    api.CANCEL_REJECTED: "Unknown order sent.",
    api.NO_SUCH_ORDER: "Order does not exist.",
    api.BAD_API_KEY_FMT: "API-key format invalid.",
    api.REJECTED_MBX_KEY: "Invalid API-key, IP, or permissions for action.",
    api.CANCEL_REPLACE_PARTIALLY_FAILED: "Order cancel-replace partially failed.",
    api.CANCEL_REPLACE_FAILED: "Order cancel-replace failed.",
}
"""The standard message of each code. -2010/-2011 carry the matching engine's own text."""

# Matching-engine messages sent with -2010 NEW_ORDER_REJECTED / -2011 CANCEL_REJECTED.
MSG_WOULD_TAKE: Final = "Order would immediately match and take."
MSG_UNKNOWN_ORDER: Final = "Unknown order sent."
MSG_DUPLICATE_ORDER: Final = "Duplicate order sent."
MSG_MARKET_CLOSED: Final = "Market is closed."
MSG_INSUFFICIENT_BALANCE: Final = "Account has insufficient balance for requested action."
MSG_TIMESTAMP_AHEAD: Final = "Timestamp for this request was 1000ms ahead of the server's time."


# ---- messages ------------------------------------------------------------------------------


def mandatory_param_msg(name: str) -> str:
    """The -1102 message for a missing, empty or malformed parameter."""
    return f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."


def either_param_msg(first: str, second: str) -> str:
    """The -1102 message when neither of two alternative parameters was sent."""
    return f"Param '{first}' or '{second}' must be sent, but both were empty/null!"


def illegal_chars_msg(name: str, legal: str) -> str:
    """The -1100 message for a parameter outside its legal range."""
    return f"Illegal characters found in parameter '{name}'; legal range is '{legal}'."


def filter_failure_msg(filter_type: str) -> str:
    """The -1013 message for a symbol filter (``PRICE_FILTER``, ``LOT_SIZE``, ``NOTIONAL``)."""
    return f"Filter failure: {filter_type}"


def weight_limit_msg(limit: int) -> str:
    """The -1003 message when the request weight per minute is used up."""
    return (
        f"Too much request weight used; current limit is {limit} request weight per 1 MINUTE."
        " Please use WebSocket Streams for live updates to avoid polling the API."
    )


# ---- checks of a SIGNED request ------------------------------------------------------------


def verify_signature(secret: str, params: Mapping[str, object]) -> bool:
    """True when ``params["signature"]`` is the HMAC of the other parameters (any hex case).

    Constant-time comparison; never raises.
    """
    given = params.get("signature")
    if not isinstance(given, str):
        return False
    try:
        expected = api.sign(secret, params)
    except (TypeError, ValueError):
        return False
    return hmac.compare_digest(expected.encode(), given.lower().encode())


def timestamp_error(timestamp_ms: int, recv_window_ms: float, server_ms: int) -> str | None:
    """The venue's timing rule: the -1021 message, or None when the request is in time.

    Accepted when ``timestamp < server + 1000`` and ``server - timestamp <= recvWindow``.
    """
    if timestamp_ms >= server_ms + FUTURE_TOLERANCE_MS:
        return MSG_TIMESTAMP_AHEAD
    if server_ms - timestamp_ms > recv_window_ms:
        return ERROR_MESSAGES[api.INVALID_TIMESTAMP]
    return None


# ---- answers and events ----------------------------------------------------------------------


class OrderView(NamedTuple):
    """What the venue knows of one order, in core units (the sim's side of the protocol).

    ``order_id`` is the venue's ``orderId``; ``price`` ticks; ``size`` (``origQty``) and
    ``executed`` lots; ``cum_quote`` the cumulative traded notional in notional units;
    ``status`` a Binance order status (``NEW``, ``PARTIALLY_FILLED``, ``FILLED``,
    ``CANCELED``, ``REJECTED``, ``EXPIRED``); times in ms, ``working_ms`` -1 when the order
    never rested on the book.
    """

    order_id: int
    client_order_id: str
    side: Side
    price: int
    size: int
    executed: int
    cum_quote: int
    status: str
    created_ms: int
    working_ms: int


def _rate_limits_json(rate_limits: tuple[api.RateLimit, ...]) -> list[dict[str, object]]:
    return [
        {
            "rateLimitType": r.rate_limit_type,
            "interval": r.interval,
            "intervalNum": r.interval_num,
            "limit": r.limit,
            "count": r.used,
        }
        for r in rate_limits
    ]


def response_ok(
    request_id: str | int | None, result: Any, rate_limits: tuple[api.RateLimit, ...] = ()
) -> bytes:
    """A successful response frame (status 200)."""
    frame: dict[str, object] = {"id": request_id, "status": 200, "result": result}
    if rate_limits:
        frame["rateLimits"] = _rate_limits_json(rate_limits)
    return orjson.dumps(frame)


def response_error(
    request_id: str | int | None,
    status: int,
    error: api.ApiError,
    rate_limits: tuple[api.RateLimit, ...] = (),
) -> bytes:
    """A failed response frame: ``status`` (400, 409, 429, ...) and the error object."""
    body: dict[str, object] = {"code": error.code, "msg": error.msg}
    if error.data is not None:
        body["data"] = error.data
    frame: dict[str, object] = {"id": request_id, "status": status, "error": body}
    if rate_limits:
        frame["rateLimits"] = _rate_limits_json(rate_limits)
    return orjson.dumps(frame)


def event_frame(subscription_id: int, event: Mapping[str, Any]) -> bytes:
    """A user-data event frame ``{"subscriptionId", "event"}``."""
    return orjson.dumps({"subscriptionId": subscription_id, "event": event})


def _int_exp(unit: Decimal) -> tuple[int, int]:
    """``unit`` as ``mantissa x 10^-places`` with integer mantissa and places >= 0."""
    sign_, digits, exponent = unit.normalize().as_tuple()
    assert isinstance(exponent, int)
    mantissa = int("".join(map(str, digits)))
    if sign_:
        mantissa = -mantissa
    if exponent > 0:
        return mantissa * 10**exponent, 0
    return mantissa, -exponent


def _fixed(numerator: int, places: int) -> str:
    """Exact text of ``numerator x 10^-places``."""
    digits = str(abs(numerator)).rjust(places + 1, "0")
    text = f"{digits[:-places]}.{digits[-places:]}" if places else digits
    return f"-{text}" if numerator < 0 else text


def notional_str(instrument: Instrument, units: int) -> str:
    """Exact quote-currency text of ``units`` notional units (may be negative), in the
    venue's fixed-decimal format: :data:`PLACES` decimals, more only where the amount needs
    them to stay exact (0.001 BTC at 61837.63 is ``"61.83763000"``; a fee of 0.000000003
    USDT keeps its 9 decimals, where Binance would round it: the sim's accounts are exact)."""
    tick_m, tick_p = _int_exp(instrument.tick_size)
    lot_m, lot_p = _int_exp(instrument.lot_size)
    places = tick_p + lot_p
    numerator = units * tick_m * lot_m
    while places > PLACES and numerator % 10 == 0:
        numerator, places = numerator // 10, places - 1
    if places < PLACES:
        numerator, places = numerator * 10 ** (PLACES - places), PLACES
    return _fixed(numerator, places)


def price_str(instrument: Instrument, ticks: int) -> str:
    """A price as Binance spot prints it: ``"61800.20000000"`` (at least :data:`PLACES`
    decimals; more only for a tick finer than that)."""
    return instrument.ticks.to_str(ticks, max(PLACES, instrument.price_precision))


def qty_str(instrument: Instrument, lots: int) -> str:
    """A quantity as Binance spot prints it: ``"0.00100000"``."""
    return instrument.lots.to_str(lots, max(PLACES, instrument.size_precision))


def amount_str(amount: Decimal) -> str:
    """An asset amount (a balance) as Binance spot prints it: ``"100000.00000000"``."""
    exponent = amount.as_tuple().exponent
    places = max(PLACES, -exponent if isinstance(exponent, int) else 0)
    return f"{amount:.{places}f}"


def account_trade_json(instrument: Instrument, trade: api.AccountTrade) -> dict[str, Any]:
    """A ``myTrades`` entry for ``trade`` (the venue's field names and text formats)."""
    return {
        "symbol": instrument.symbol,
        "id": trade.trade_id,
        "orderId": trade.order_id,
        "orderListId": trade.order_list_id,
        "price": price_str(instrument, trade.price),
        "qty": qty_str(instrument, trade.qty),
        "quoteQty": format(trade.quote_qty, "f"),
        "commission": format(trade.commission, "f"),
        "commissionAsset": trade.commission_asset,
        "time": trade.time_ms,
        "isBuyer": trade.is_buyer,
        "isMaker": trade.is_maker,
        "isBestMatch": trade.is_best_match,
    }


def execution_report(
    instrument: Instrument,
    order: OrderView,
    *,
    execution_type: str,
    event_ms: int,
    transact_ms: int,
    execution_id: int,
    client_id: str | None = None,
    orig_client_id: str = "",
    reject_reason: str = api.REJECT_NONE,
    last_qty: int = 0,
    last_price: int = 0,
    commission: str = "0",
    commission_asset: str | None = None,
    trade_id: int = -1,
    is_maker: bool = False,
) -> dict[str, Any]:
    """The ``executionReport`` event of ``order`` (a LIMIT_MAKER order) as a JSON object.

    ``client_id`` overrides ``c`` (a cancel reports its own new id there, and the cancelled
    order's id in ``C`` = ``orig_client_id``). ``last_qty`` lots at ``last_price`` ticks
    for TRADE, with ``commission`` (decimal text) in ``commission_asset`` and ``trade_id``.
    """
    working = order.status in ("NEW", "PARTIALLY_FILLED")
    event: dict[str, Any] = {
        "e": "executionReport",
        "E": event_ms,
        "s": instrument.symbol,
        "c": order.client_order_id if client_id is None else client_id,
        "S": order.side.name,
        "o": api.LIMIT_MAKER,
        "f": "GTC",
        "q": qty_str(instrument, order.size),
        "p": price_str(instrument, order.price),
        "P": price_str(instrument, 0),
        "F": qty_str(instrument, 0),
        "g": -1,
        "C": orig_client_id,
        "x": execution_type,
        "X": order.status,
        "r": reject_reason,
        "i": order.order_id,
        "l": qty_str(instrument, last_qty),
        "z": qty_str(instrument, order.executed),
        "L": price_str(instrument, last_price),
        "n": commission,
        "N": commission_asset,
        "T": transact_ms,
        "t": trade_id,
        "I": execution_id,
        "w": working,
        "m": is_maker,
        "M": False,
        "O": order.created_ms,
        "Z": notional_str(instrument, order.cum_quote),
        "Y": notional_str(instrument, last_qty * last_price),
        "Q": notional_str(instrument, 0),
        "V": "NONE",
    }
    if working and order.working_ms >= 0:
        event["W"] = order.working_ms
    return event


class Reject(Exception):
    """A request refused with a Binance error: ``code``, ``msg``, the HTTP-like ``status``
    (400 unless said otherwise; 409 for a half-done cancel-replace) and the error's
    ``data`` (cancel-replace details), answered as :func:`response_error`."""

    def __init__(self, code: int, msg: str, status: int = 400, data: Any = None) -> None:
        super().__init__(code, msg)
        self.code = code
        self.msg = msg
        self.status = status
        self.data = data


def error_frame(request_id: str | int | None, code: int, msg: str) -> bytes:
    """A status-400 error frame without rate limits (refused before any weight is charged)."""
    return response_error(request_id, 400, api.ApiError(code, msg))
