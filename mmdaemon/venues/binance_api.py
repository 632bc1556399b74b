"""Binance spot WebSocket API (order entry and user data), sans-I/O: the client side.

What the daemon's gateway needs at its end of ``/ws-api/v3``: the protocol's vocabulary
(methods, error codes, limits), signing, request builders, and the parsers of responses
and user-data events, with the value types both ends share. The server side (answers,
events, the standard error messages, the signature and timing checks) is the sim's,
:mod:`mmdaemon.sim.wire`, which builds on this module; nothing here imports from
:mod:`mmdaemon.sim`. Nothing here does I/O, reads a clock or touches asyncio: timestamps
are passed in.

Units, as in the core: prices integer ticks, sizes integer lots of the
:class:`~mmdaemon.model.Instrument`, fees integer notional units (ticks x lots; for BTCUSDT
spot 1e-10 USDT). Venue timestamps are integer ms since the epoch; our events carry ns
(``ms x 1,000,000``). Decimal text is converted exactly, through the instrument's
:class:`~mmdaemon.model.DecimalScaler` s or :class:`fractions.Fraction`, never through float.

Frames
------
- request: ``{"id", "method", "params"}``; a SIGNED request (TRADE, USER_DATA) carries
  ``apiKey``, ``timestamp`` (ms), optionally ``recvWindow`` (ms, at most 60,000, 5,000 when
  absent) and ``signature``: the hex HMAC-SHA256, keyed with the API secret, of every other
  parameter sorted by name and written ``key=value`` joined by ``&`` (:func:`sign`).
- response: ``{"id", "status", "result" | "error": {"code", "msg"[, "data"]},
  "rateLimits"?}``; ``status`` follows HTTP (200 ok, 400 rejected, 409 cancel-replace half
  done, 429 rate limited).
- event: ``{"subscriptionId", "event": {...}}`` on a connection that subscribed to the user
  data stream.

User data subscription
----------------------
We subscribe with ``userDataStream.subscribe.signature`` (a signed request carrying
``apiKey``, ``timestamp`` and ``signature``) on the same connection as order entry. It needs
no ``session.logon`` (so it works with HMAC keys, which cannot log a session on) and no
listenKey (deprecated REST bootstrap plus a second connection and keep-alives): order acks
and execution reports then travel one connection in the order the venue produced them.

Client order ids
----------------
Our order ids are integers (``run_id << 32 | seq``). :func:`client_order_id` writes one as
``<prefix>-<lowercase hex>`` (``mm-300000001`` is run 3, seq 1), which fits Binance's
``^[a-zA-Z0-9-_]{1,36}$`` for any 64-bit id and a prefix of up to 19 characters;
:func:`order_id_of` inverts it and returns None for ids that are not ours.

Parsing responses, user-data events and trade history is :mod:`mmdaemon.venues.binance_parse`.
Builders raise ``ValueError`` for arguments we should never have produced.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final, NamedTuple

import orjson

from mmdaemon.model import Fill, Instrument, OrderUpdate, Side

WS_API_PATH: Final = "/ws-api/v3"
MAX_RECV_WINDOW_MS: Final = 60_000  # the venue refuses a larger recvWindow
DEFAULT_RECV_WINDOW_MS: Final = 5_000  # what the venue assumes when recvWindow is absent

# ---- methods -------------------------------------------------------------------------------

ORDER_PLACE: Final = "order.place"
ORDER_CANCEL: Final = "order.cancel"
ORDER_CANCEL_REPLACE: Final = "order.cancelReplace"
OPEN_ORDERS_STATUS: Final = "openOrders.status"
OPEN_ORDERS_CANCEL_ALL: Final = "openOrders.cancelAll"
ACCOUNT_STATUS: Final = "account.status"
ORDER_STATUS: Final = "order.status"
MY_TRADES: Final = "myTrades"
USER_DATA_SUBSCRIBE: Final = "userDataStream.subscribe.signature"
USER_DATA_UNSUBSCRIBE: Final = "userDataStream.unsubscribe"
PING: Final = "ping"
TIME: Final = "time"

LIMIT_MAKER: Final = "LIMIT_MAKER"
STOP_ON_FAILURE: Final = "STOP_ON_FAILURE"
ALLOW_FAILURE: Final = "ALLOW_FAILURE"

# ---- error codes (Binance "Error codes for Binance", errors.md) ------------------------------

UNKNOWN: Final = -1000
TOO_MANY_REQUESTS: Final = -1003
INVALID_MESSAGE: Final = -1013  # filter failures: PRICE_FILTER, LOT_SIZE, NOTIONAL
UNSUPPORTED_OPERATION: Final = -1020
INVALID_TIMESTAMP: Final = -1021
INVALID_SIGNATURE: Final = -1022
ILLEGAL_CHARS: Final = -1100
MANDATORY_PARAM_EMPTY_OR_MALFORMED: Final = -1102
TIF_NOT_REQUIRED: Final = -1114
INVALID_ORDER_TYPE: Final = -1116
INVALID_SIDE: Final = -1117
BAD_SYMBOL: Final = -1121
INVALID_INTERVAL: Final = -1127
OPTIONAL_PARAMS_BAD_COMBO: Final = -1128
INVALID_PARAMETER: Final = -1130
INVALID_JSON: Final = -1135
NEW_ORDER_REJECTED: Final = -2010
CANCEL_REJECTED: Final = -2011
NO_SUCH_ORDER: Final = -2013
BAD_API_KEY_FMT: Final = -2014
REJECTED_MBX_KEY: Final = -2015
CANCEL_REPLACE_PARTIALLY_FAILED: Final = -2021
CANCEL_REPLACE_FAILED: Final = -2022

# executionReport ``r`` (order reject reason) values.
REJECT_NONE: Final = "NONE"
REJECT_WOULD_MATCH: Final = "WOULD_MATCH_IMMEDIATELY"
REJECT_INSUFFICIENT_BALANCES: Final = "INSUFFICIENT_BALANCES"


# ---- value types ---------------------------------------------------------------------------


class ApiError(NamedTuple):
    """An ``error`` object: Binance code, message and (cancel-replace) ``data``."""

    code: int
    msg: str
    data: Any = None


class RateLimit(NamedTuple):
    """One ``rateLimits`` entry: ``used`` (the venue's ``count``) of ``limit`` per
    ``interval_num`` x ``interval``."""

    rate_limit_type: str  # REQUEST_WEIGHT, ORDERS, RAW_REQUESTS
    interval: str  # SECOND, MINUTE, HOUR, DAY
    interval_num: int
    limit: int
    used: int


class Response(NamedTuple):
    """A decoded response. ``result`` is set when the request succeeded, else ``error``."""

    id: str | int | None
    status: int
    result: Any
    error: ApiError | None
    rate_limits: tuple[RateLimit, ...]

    @property
    def ok(self) -> bool:
        """True for a successful response (status 2xx with a result)."""
        return self.error is None and 200 <= self.status < 300


class ProtocolError(NamedTuple):
    """A frame or object we could not decode; it changed nothing."""

    reason: str


class Credentials(NamedTuple):
    """An API key, its HMAC secret and the ``recvWindow`` (ms) to send, None: venue default.

    ``repr``/``str`` never show the secret and only the head of the key: credentials end up
    in tracebacks and structured logs more easily than anyone intends.
    """

    api_key: str
    secret: str
    recv_window_ms: int | None = None

    def __repr__(self) -> str:
        return (f"Credentials(api_key={redact_key(self.api_key)!r}, secret='<redacted>', "
                f"recv_window_ms={self.recv_window_ms!r})")


def redact_key(api_key: str) -> str:
    """The first 4 characters of an API key and ``...``: enough to tell keys apart in logs."""
    return f"{api_key[:4]}..." if len(api_key) > 4 else "..."


class Assets(NamedTuple):
    """The base and quote asset of a spot symbol (BTCUSDT: BTC, USDT)."""

    base: str
    quote: str


class ExecutionReport(NamedTuple):
    """A decoded ``executionReport`` of one of our orders.

    ``update`` is the order's state after the event; ``fill`` is set for execution type
    TRADE. ``exchange_order_id`` is Binance's ``i``; ``client_order_id`` (``c``) and
    ``orig_client_order_id`` (``C``, set on cancels) are the raw texts. ``commission`` is
    ``n`` in ``commission_asset`` (``N``); ``fee_converted`` False means the fill's fee is 0
    because ``N`` could not be valued (see the module docstring). ``event_ms`` is ``E``.
    """

    update: OrderUpdate
    fill: Fill | None
    subscription_id: int | None
    execution_type: str
    order_status: str
    exchange_order_id: int
    client_order_id: str
    orig_client_order_id: str
    commission: Decimal
    commission_asset: str | None
    fee_converted: bool
    event_ms: int


class ForeignOrder(NamedTuple):
    """An ``executionReport`` of an order that is not ours (other prefix or symbol)."""

    subscription_id: int | None
    symbol: str
    client_order_id: str
    exchange_order_id: int
    execution_type: str
    reason: str


class AccountPosition(NamedTuple):
    """An ``outboundAccountPosition``: ``balances`` maps asset -> (free, locked), exact."""

    subscription_id: int | None
    event_ms: int
    update_ms: int
    balances: dict[str, tuple[Decimal, Decimal]]


class OtherEvent(NamedTuple):
    """Any other user-data event (``balanceUpdate``, ``eventStreamTerminated``, ...)."""

    subscription_id: int | None
    kind: str
    event_ms: int
    data: dict[str, Any]


UserEvent = ExecutionReport | ForeignOrder | AccountPosition | OtherEvent


class AccountTrade(NamedTuple):
    """One trade of the account as ``myTrades`` lists it, in core units.

    ``trade_id`` is the venue's trade id (``id``: an executionReport's ``t``), ``order_id``
    the venue ``orderId``; ``price`` ticks, ``qty`` lots; ``quote_qty`` the quote amount as
    the venue wrote it (exact decimal: the venue may round it, so it is not turned into
    notional units); ``commission`` in ``commission_asset``; ``time_ms`` ms since the epoch.
    """

    trade_id: int
    order_id: int
    order_list_id: int
    price: int
    qty: int
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    time_ms: int
    is_buyer: bool
    is_maker: bool
    is_best_match: bool


# ---- client order ids ----------------------------------------------------------------------

CLIENT_ORDER_ID_RE: Final = re.compile(r"[a-zA-Z0-9_-]{1,36}")
"""Binance's ``^[a-zA-Z0-9-_]{1,36}$`` for ``newClientOrderId`` (use ``fullmatch``)."""
CLIENT_ORDER_ID_LEGAL: Final = "^[a-zA-Z0-9-_]{1,36}$"
_HEX = frozenset("0123456789abcdef")


def client_order_id(prefix: str, order_id: int) -> str:
    """``<prefix>-<order_id in lowercase hex>``: our integer order id as a client order id.

    Raises ``ValueError`` for a negative or non-integer id, an empty prefix, characters
    outside ``[a-zA-Z0-9-_]`` or a result longer than 36 characters.
    """
    if isinstance(order_id, bool) or not isinstance(order_id, int) or order_id < 0:
        raise ValueError(f"order id must be an integer >= 0, got {order_id!r}")
    if not prefix:
        raise ValueError("client order id prefix must not be empty")
    text = f"{prefix}-{order_id:x}"
    if not CLIENT_ORDER_ID_RE.fullmatch(text):
        raise ValueError(
            f"client order id {text!r} does not match {CLIENT_ORDER_ID_LEGAL} "
            "(prefix too long or illegal characters)"
        )
    return text


def order_id_of(prefix: str, client_id: object) -> int | None:
    """The order id :func:`client_order_id` encoded in ``client_id``; None if not ours.

    Only the canonical form is accepted (no leading zeros, lowercase hex), so the mapping is
    one to one. Never raises.
    """
    if not isinstance(client_id, str) or not prefix:
        return None
    head, sep, tail = client_id.rpartition("-")
    if not sep or head != prefix or not tail or not _HEX.issuperset(tail):
        return None
    if len(tail) > 1 and tail[0] == "0":
        return None
    return int(tail, 16)


# ---- signing -------------------------------------------------------------------------------


def param_text(value: object) -> str:
    """How a parameter value is written in the signature payload.

    Strings as they are, booleans ``true``/``false``, integers in decimal, Decimals as plain
    fixed-point text; anything else (floats, lists, objects, null) as its JSON text, which
    is what a server sees after decoding the request's JSON and re-encoding the value.
    """
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    return orjson.dumps(value).decode()


def signature_payload(params: Mapping[str, object]) -> str:
    """Every parameter except ``signature``, sorted by name, ``key=value`` joined by ``&``."""
    return "&".join(
        f"{key}={param_text(params[key])}" for key in sorted(params) if key != "signature"
    )


def sign(secret: str, params: Mapping[str, object]) -> str:
    """Binance's HMAC-SHA256 signature (lowercase hex) of :func:`signature_payload`."""
    return hmac.new(
        secret.encode(), signature_payload(params).encode(), hashlib.sha256
    ).hexdigest()


# ---- requests ------------------------------------------------------------------------------


def request(
    method: str,
    params: Mapping[str, object],
    request_id: str | int,
    *,
    api_key: str | None = None,
    secret: str | None = None,
    timestamp_ms: int | None = None,
    recv_window_ms: int | None = None,
) -> bytes:
    """A request frame ``{"id", "method", "params"}`` as JSON bytes (send it as text).

    Parameters whose value is None are left out; Decimals are sent as fixed-point strings.
    With ``api_key`` the frame carries ``apiKey``; with ``secret`` it is SIGNED: it also
    carries ``timestamp`` (ms, required then), ``recvWindow`` (ms) when given, and the
    ``signature`` of all of them. ``params`` is omitted when empty.
    """
    out: dict[str, object] = {}
    for key, value in params.items():
        if value is not None:
            out[key] = format(value, "f") if isinstance(value, Decimal) else value
    if api_key is not None:
        out["apiKey"] = api_key
    if secret is not None:
        if timestamp_ms is None:
            raise ValueError("a signed request needs timestamp_ms")
        out["timestamp"] = timestamp_ms
        if recv_window_ms is not None:
            out["recvWindow"] = recv_window_ms
        out["signature"] = sign(secret, out)
    frame: dict[str, object] = {"id": request_id, "method": method}
    if out:
        frame["params"] = out
    return orjson.dumps(frame)


def signed_request(
    method: str,
    params: Mapping[str, object],
    request_id: str | int,
    creds: Credentials,
    timestamp_ms: int,
) -> bytes:
    """:func:`request` signed with ``creds`` at ``timestamp_ms`` (ms since the epoch)."""
    return request(
        method,
        params,
        request_id,
        api_key=creds.api_key,
        secret=creds.secret,
        timestamp_ms=timestamp_ms,
        recv_window_ms=creds.recv_window_ms,
    )


def _check_client_id(name: str, value: str) -> None:
    if not CLIENT_ORDER_ID_RE.fullmatch(value):
        raise ValueError(f"{name} {value!r} does not match {CLIENT_ORDER_ID_LEGAL}")


def limit_maker_params(
    instrument: Instrument, side: Side, price: int, size: int
) -> dict[str, object]:
    """``symbol``, ``side``, ``type`` LIMIT_MAKER, ``price`` and ``quantity`` as exact text.

    ``price`` in ticks and ``size`` in lots, both > 0 (``ValueError`` otherwise). LIMIT_MAKER
    takes no ``timeInForce``: it is post-only by type.
    """
    side = Side(side)
    for name, value in (("price", price), ("size", size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return {
        "symbol": instrument.symbol,
        "side": side.name,
        "type": LIMIT_MAKER,
        "price": instrument.price_str(price),
        "quantity": instrument.size_str(size),
    }


def order_place(
    instrument: Instrument,
    side: Side,
    price: int,
    size: int,
    client_id: str,
    *,
    request_id: str | int,
    creds: Credentials,
    timestamp_ms: int,
    resp_type: str = "RESULT",
) -> bytes:
    """Signed ``order.place`` of a LIMIT_MAKER order: ``price`` ticks, ``size`` lots.

    ``resp_type`` RESULT (our default) answers with the order's status; the venue's default
    for LIMIT_MAKER is ACK (ids only).
    """
    _check_client_id("newClientOrderId", client_id)
    params = limit_maker_params(instrument, side, price, size)
    params["newClientOrderId"] = client_id
    params["newOrderRespType"] = resp_type
    return signed_request(ORDER_PLACE, params, request_id, creds, timestamp_ms)


def order_cancel(
    instrument: Instrument,
    client_id: str | None = None,
    *,
    order_id: int | None = None,
    request_id: str | int,
    creds: Credentials,
    timestamp_ms: int,
) -> bytes:
    """Signed ``order.cancel`` of the open order whose client order id is ``client_id``, or
    whose venue ``orderId`` is ``order_id`` (the venue uses ``orderId`` when both are sent;
    one is required, ``ValueError`` otherwise)."""
    if client_id is None and order_id is None:
        raise ValueError("order.cancel needs a client order id or a venue order id")
    if client_id is not None:
        _check_client_id("origClientOrderId", client_id)
    params: dict[str, object] = {"symbol": instrument.symbol, "orderId": order_id,
                                 "origClientOrderId": client_id}
    return signed_request(ORDER_CANCEL, params, request_id, creds, timestamp_ms)


def order_cancel_replace(
    instrument: Instrument,
    cancel_client_id: str,
    side: Side,
    price: int,
    size: int,
    *,
    new_client_id: str | None = None,
    request_id: str | int,
    creds: Credentials,
    timestamp_ms: int,
    resp_type: str = "RESULT",
) -> bytes:
    """Signed ``order.cancelReplace`` in STOP_ON_FAILURE mode.

    Cancels ``cancel_client_id`` and, only if that succeeded, places a new LIMIT_MAKER
    order of ``size`` lots at ``price`` ticks. ``new_client_id`` defaults to the cancelled
    order's id: the venue lets the replacement reuse it, so our order id survives the
    replace. The new order is a new venue order (new ``orderId``, back of the queue, its own
    executed quantity from 0): ``size`` is its whole quantity, not counting what the old
    order filled.
    """
    _check_client_id("cancelOrigClientOrderId", cancel_client_id)
    new_id = cancel_client_id if new_client_id is None else new_client_id
    _check_client_id("newClientOrderId", new_id)
    params = limit_maker_params(instrument, side, price, size)
    params["cancelReplaceMode"] = STOP_ON_FAILURE
    params["cancelOrigClientOrderId"] = cancel_client_id
    params["newClientOrderId"] = new_id
    params["newOrderRespType"] = resp_type
    return signed_request(ORDER_CANCEL_REPLACE, params, request_id, creds, timestamp_ms)


def open_orders_status(
    instrument: Instrument, *, request_id: str | int, creds: Credentials, timestamp_ms: int
) -> bytes:
    """Signed ``openOrders.status`` for the instrument's symbol."""
    params = {"symbol": instrument.symbol}
    return signed_request(OPEN_ORDERS_STATUS, params, request_id, creds, timestamp_ms)


def open_orders_cancel_all(
    instrument: Instrument, *, request_id: str | int, creds: Credentials, timestamp_ms: int
) -> bytes:
    """Signed ``openOrders.cancelAll`` for the instrument's symbol."""
    params = {"symbol": instrument.symbol}
    return signed_request(OPEN_ORDERS_CANCEL_ALL, params, request_id, creds, timestamp_ms)


def account_status(
    *,
    request_id: str | int,
    creds: Credentials,
    timestamp_ms: int,
    omit_zero_balances: bool = False,
) -> bytes:
    """Signed ``account.status`` (balances, commission rates)."""
    params: dict[str, object] = {}
    if omit_zero_balances:
        params["omitZeroBalances"] = True
    return signed_request(ACCOUNT_STATUS, params, request_id, creds, timestamp_ms)


def order_status(
    instrument: Instrument,
    *,
    client_id: str | None = None,
    order_id: int | None = None,
    request_id: str | int,
    creds: Credentials,
    timestamp_ms: int,
) -> bytes:
    """Signed ``order.status`` of one order (open or closed), by venue ``orderId`` and/or
    ``origClientOrderId``; at least one is required (``ValueError`` otherwise)."""
    if client_id is None and order_id is None:
        raise ValueError("order.status needs a client order id or a venue order id")
    if client_id is not None:
        _check_client_id("origClientOrderId", client_id)
    params: dict[str, object] = {"symbol": instrument.symbol, "orderId": order_id,
                                 "origClientOrderId": client_id}
    return signed_request(ORDER_STATUS, params, request_id, creds, timestamp_ms)


MAX_MY_TRADES_LIMIT: Final = 1_000  # the most trades one ``myTrades`` answer holds
DEFAULT_MY_TRADES_LIMIT: Final = 500  # when ``limit`` is absent
MAX_TRADE_LOOKUP_MS: Final = 24 * 3_600_000  # endTime - startTime may not exceed 24 h


def my_trades(
    instrument: Instrument,
    *,
    from_id: int | None = None,
    order_id: int | None = None,
    start_time_ms: int | None = None,
    end_time_ms: int | None = None,
    limit: int | None = None,
    request_id: str | int,
    creds: Credentials,
    timestamp_ms: int,
) -> bytes:
    """Signed ``myTrades``: the account's trades in the symbol, oldest first.

    ``from_id``: trades with id >= it; ``order_id``: only that venue order's trades;
    ``start_time_ms``/``end_time_ms`` (ms since the epoch, at most 24 h apart): a time
    window; none of them: the most recent. ``limit`` 1..1000 (venue default 500). The venue
    refuses ``from_id`` together with a time window, and so does this builder
    (``ValueError``), as it does for a bad limit or window.
    """
    if from_id is not None and (start_time_ms is not None or end_time_ms is not None):
        raise ValueError("myTrades: fromId cannot be combined with startTime/endTime")
    if limit is not None and not 1 <= limit <= MAX_MY_TRADES_LIMIT:
        raise ValueError(f"myTrades: limit must be 1..{MAX_MY_TRADES_LIMIT}, got {limit}")
    if (start_time_ms is not None and end_time_ms is not None
            and not 0 <= end_time_ms - start_time_ms <= MAX_TRADE_LOOKUP_MS):
        raise ValueError("myTrades: endTime must be within 24 h after startTime")
    params: dict[str, object] = {
        "symbol": instrument.symbol,
        "orderId": order_id,
        "fromId": from_id,
        "startTime": start_time_ms,
        "endTime": end_time_ms,
        "limit": limit,
    }
    return signed_request(MY_TRADES, params, request_id, creds, timestamp_ms)


def user_data_subscribe(
    *, request_id: str | int, creds: Credentials, timestamp_ms: int
) -> bytes:
    """Signed ``userDataStream.subscribe.signature``: events for ``creds``'s account then
    arrive on this connection as ``{"subscriptionId", "event"}``."""
    return signed_request(USER_DATA_SUBSCRIBE, {}, request_id, creds, timestamp_ms)


def user_data_unsubscribe(subscription_id: int | None, *, request_id: str | int) -> bytes:
    """``userDataStream.unsubscribe`` of one subscription, or of all when None."""
    return request(USER_DATA_UNSUBSCRIBE, {"subscriptionId": subscription_id}, request_id)


def ping(request_id: str | int) -> bytes:
    """``ping`` (test connectivity; the result is ``{}``)."""
    return request(PING, {}, request_id)


def server_time(request_id: str | int) -> bytes:
    """``time``: the result is ``{"serverTime": ms}``."""
    return request(TIME, {}, request_id)
