"""Binance spot WebSocket API protocol module: signing, requests, responses, user-data events.

Expected values are computed independently in the tests (hmac/hashlib on the documented
payload string, fee arithmetic by hand in the comments).
"""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmdaemon.model import BINANCE_SPOT_BTCUSDT, Fill, Instrument, OrderStatus, OrderUpdate, Side
from mmdaemon.sim import wire
from mmdaemon.venues import binance_api as api
from mmdaemon.venues import binance_parse as parse

INSTR = BINANCE_SPOT_BTCUSDT  # tick 0.01 USDT, lot 1e-8 BTC: one notional unit is 1e-10 USDT
PREFIX = "mm"
OID = (3 << 32) | 1  # run 3, seq 1
CID = "mm-300000001"
CREDS = api.Credentials("vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A",
                        "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j")


def hmac_hex(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def params_of(frame: bytes) -> dict[str, Any]:
    obj = orjson.loads(frame)
    params: dict[str, Any] = obj["params"]
    return params


# ---- signing -----------------------------------------------------------------------------------


def test_signature_matches_hand_computed_hmac_of_the_documented_payload() -> None:
    # Binance's own HMAC example (web-socket-api.md, "SIGNED request example (HMAC)")
    params = {
        "symbol": "BTCUSDT",
        "side": "SELL",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.01000000",
        "price": "52000.00",
        "newOrderRespType": "ACK",
        "recvWindow": 100,
        "timestamp": 1645423376532,
        "apiKey": CREDS.api_key,
    }
    payload = (
        f"apiKey={CREDS.api_key}&newOrderRespType=ACK&price=52000.00&quantity=0.01000000"
        "&recvWindow=100&side=SELL&symbol=BTCUSDT&timeInForce=GTC&timestamp=1645423376532"
        "&type=LIMIT"
    )
    assert api.signature_payload(params) == payload
    expected = hmac_hex(CREDS.secret, payload)
    assert api.sign(CREDS.secret, params) == expected
    # the value the documentation prints for this example
    assert expected == "cc15477742bd704c29492d96c7ead9414dfd8e0ec4a00f947bb5bb454ddbd08a"
    # a signature already present is not part of its own payload
    assert api.sign(CREDS.secret, {**params, "signature": "x"}) == expected


def test_signature_payload_writes_booleans_lowercase_and_numbers_plain() -> None:
    params = {"b": True, "a": False, "n": 5000, "d": Decimal("0.00100000"), "s": "X"}
    payload = "a=false&b=true&d=0.00100000&n=5000&s=X"
    assert api.signature_payload(params) == payload
    assert api.sign("secret", params) == hmac_hex("secret", payload)


def test_verify_signature_accepts_any_hex_case_and_refuses_tampering() -> None:
    params: dict[str, object] = {"apiKey": "k", "timestamp": 1, "symbol": "BTCUSDT"}
    params["signature"] = api.sign("s", params)
    assert wire.verify_signature("s", params)
    assert wire.verify_signature("s", {**params, "signature": str(params["signature"]).upper()})
    assert not wire.verify_signature("other", params)
    assert not wire.verify_signature("s", {**params, "symbol": "ETHUSDT"})
    assert not wire.verify_signature("s", {**params, "signature": None})
    assert not wire.verify_signature("s", {k: v for k, v in params.items() if k != "signature"})


def test_timestamp_rule() -> None:
    server = 1_000_000
    assert wire.timestamp_error(server, 5000, server) is None
    assert wire.timestamp_error(server - 5000, 5000, server) is None
    assert wire.timestamp_error(server - 5001, 5000, server) == wire.ERROR_MESSAGES[
        api.INVALID_TIMESTAMP
    ]
    assert wire.timestamp_error(server + 999, 5000, server) is None
    assert wire.timestamp_error(server + 1000, 5000, server) == wire.MSG_TIMESTAMP_AHEAD


# ---- requests ----------------------------------------------------------------------------------


def test_request_unsigned_and_signed() -> None:
    assert orjson.loads(api.request("ping", {}, "p1")) == {"id": "p1", "method": "ping"}
    frame = orjson.loads(api.request("x", {"a": 1, "gone": None}, 7, api_key="K"))
    assert frame == {"id": 7, "method": "x", "params": {"a": 1, "apiKey": "K"}}
    signed = orjson.loads(api.request("order.cancel", {"symbol": "BTCUSDT"}, "r", api_key="K",
                                      secret="S", timestamp_ms=123, recv_window_ms=2000))
    params = signed["params"]
    assert params["apiKey"] == "K" and params["timestamp"] == 123
    assert params["recvWindow"] == 2000
    payload = "apiKey=K&recvWindow=2000&symbol=BTCUSDT&timestamp=123"
    assert params["signature"] == hmac_hex("S", payload)
    with pytest.raises(ValueError, match="timestamp"):
        api.request("order.cancel", {}, "r", api_key="K", secret="S")


def test_order_place_builder() -> None:
    frame = api.order_place(INSTR, Side.BUY, 6183763, 100_000, CID, request_id="r1",
                            creds=CREDS, timestamp_ms=1723161254000)
    obj = orjson.loads(frame)
    assert obj["id"] == "r1" and obj["method"] == "order.place"
    params = obj["params"]
    assert {k: v for k, v in params.items() if k != "signature"} == {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT_MAKER",
        "price": "61837.63",
        "quantity": "0.00100000",
        "newClientOrderId": CID,
        "newOrderRespType": "RESULT",
        "apiKey": CREDS.api_key,
        "timestamp": 1723161254000,
    }
    assert "timeInForce" not in params  # LIMIT_MAKER takes none
    assert wire.verify_signature(CREDS.secret, params)
    with pytest.raises(ValueError):
        api.order_place(INSTR, Side.BUY, 0, 100_000, CID, request_id=1, creds=CREDS,
                        timestamp_ms=1)
    with pytest.raises(ValueError):
        api.order_place(INSTR, Side.SELL, 1, 100_000, "bad id!", request_id=1, creds=CREDS,
                        timestamp_ms=1)


def test_cancel_and_cancel_replace_builders() -> None:
    creds = api.Credentials("K", "S", recv_window_ms=3000)
    cancel = params_of(api.order_cancel(INSTR, CID, request_id=1, creds=creds, timestamp_ms=5))
    assert cancel["origClientOrderId"] == CID and cancel["symbol"] == "BTCUSDT"
    assert cancel["recvWindow"] == 3000
    assert wire.verify_signature("S", cancel)
    frame = orjson.loads(api.order_cancel_replace(
        INSTR, CID, Side.SELL, 6183800, 200_000, request_id=2, creds=creds, timestamp_ms=6))
    assert frame["method"] == "order.cancelReplace"
    params = frame["params"]
    assert params["cancelReplaceMode"] == "STOP_ON_FAILURE"
    assert params["cancelOrigClientOrderId"] == CID
    assert params["newClientOrderId"] == CID  # our order id survives the replace
    assert (params["side"], params["type"]) == ("SELL", "LIMIT_MAKER")
    assert (params["price"], params["quantity"]) == ("61838.00", "0.00200000")
    assert wire.verify_signature("S", params)
    other = params_of(api.order_cancel_replace(INSTR, CID, Side.SELL, 1, 1, new_client_id="mm-2",
                                               request_id=3, creds=creds, timestamp_ms=6))
    assert other["newClientOrderId"] == "mm-2"


def test_other_builders() -> None:
    kw: dict[str, Any] = {"request_id": "q", "creds": CREDS, "timestamp_ms": 9}
    cases: list[tuple[bytes, str, dict[str, object]]] = [
        (api.open_orders_status(INSTR, **kw), "openOrders.status", {"symbol": "BTCUSDT"}),
        (api.open_orders_cancel_all(INSTR, **kw), "openOrders.cancelAll", {"symbol": "BTCUSDT"}),
        (api.account_status(**kw), "account.status", {}),
        (api.account_status(omit_zero_balances=True, **kw), "account.status",
         {"omitZeroBalances": True}),
        (api.user_data_subscribe(**kw), "userDataStream.subscribe.signature", {}),
    ]
    for frame, method, extra in cases:
        obj = orjson.loads(frame)
        assert obj["method"] == method
        params = obj["params"]
        assert {k: params[k] for k in extra} == extra
        assert params["apiKey"] == CREDS.api_key and params["timestamp"] == 9
        assert wire.verify_signature(CREDS.secret, params)
    assert orjson.loads(api.user_data_unsubscribe(None, request_id=1)) == {
        "id": 1, "method": "userDataStream.unsubscribe"}
    assert orjson.loads(api.server_time("t"))["method"] == "time"
    # a signed boolean is signed as lowercase text
    params = orjson.loads(cases[3][0])["params"]
    payload = f"apiKey={CREDS.api_key}&omitZeroBalances=true&timestamp=9"
    assert params["signature"] == hmac_hex(CREDS.secret, payload)


# ---- client order ids --------------------------------------------------------------------------


@pytest.mark.parametrize("order_id", [0, 1, OID, (1 << 32) - 1, (1 << 64) - 1, 255])
def test_client_order_id_round_trip(order_id: int) -> None:
    text = api.client_order_id(PREFIX, order_id)
    assert api.CLIENT_ORDER_ID_RE.fullmatch(text)
    assert len(text) <= 36
    assert api.order_id_of(PREFIX, text) == order_id


def test_client_order_id_format_and_limits() -> None:
    assert api.client_order_id(PREFIX, OID) == CID
    long_prefix = "p" * 19  # 19 + "-" + 16 hex digits = 36 characters
    assert len(api.client_order_id(long_prefix, (1 << 64) - 1)) == 36
    with pytest.raises(ValueError):
        api.client_order_id("p" * 20, (1 << 64) - 1)
    for bad_prefix in ("", "a b", "ü"):
        with pytest.raises(ValueError):
            api.client_order_id(bad_prefix, 1)
    for bad_id in (-1, True, 1.0, "1"):
        with pytest.raises(ValueError):
            api.client_order_id(PREFIX, bad_id)  # type: ignore[arg-type]
    assert api.client_order_id("a-b_C", 10) == "a-b_C-a"
    assert api.order_id_of("a-b_C", "a-b_C-a") == 10


@pytest.mark.parametrize(
    "text", ["xx-300000001", "mm-0300000001", "mm-30000000A", "mm-", "mm300000001", "mm-g",
             "web_abc", "", None, 12, "mm-1-2"]
)
def test_order_id_of_refuses_what_is_not_ours(text: object) -> None:
    assert api.order_id_of(PREFIX, text) is None


# ---- responses ---------------------------------------------------------------------------------


def test_parse_response_ok_with_rate_limits() -> None:
    frame = orjson.dumps({
        "id": "r1", "status": 200,
        "result": {"symbol": "BTCUSDT", "orderId": 12, "clientOrderId": CID},
        "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                        "intervalNum": 1, "limit": 6000, "count": 3}],
    })
    resp = parse.parse_response(frame)
    assert isinstance(resp, api.Response)
    assert resp.ok and resp.id == "r1" and resp.status == 200 and resp.error is None
    assert resp.result["orderId"] == 12
    assert resp.rate_limits == (api.RateLimit("REQUEST_WEIGHT", "MINUTE", 1, 6000, 3),)
    plain = parse.parse_response('{"id":5,"status":200,"result":{}}')
    assert isinstance(plain, api.Response) and plain.id == 5 and plain.rate_limits == ()


def test_parse_response_errors() -> None:
    resp = parse.parse_response(orjson.dumps({
        "id": "r2", "status": 400,
        "error": {"code": -2010, "msg": "Order would immediately match and take."},
    }))
    assert isinstance(resp, api.Response) and not resp.ok
    assert resp.error == api.ApiError(api.NEW_ORDER_REJECTED, wire.MSG_WOULD_TAKE)
    data = {"cancelResult": "SUCCESS", "newOrderResult": "FAILURE"}
    partial = parse.parse_response(orjson.dumps({
        "id": None, "status": 409,
        "error": {"code": -2021, "msg": "Order cancel-replace partially failed.", "data": data},
    }))
    assert isinstance(partial, api.Response) and partial.id is None
    assert partial.error is not None and partial.error.data == data


@pytest.mark.parametrize(
    "frame",
    [
        b"{not json",
        b"[1,2]",
        b'"text"',
        b"",
        b'{"id":"a","result":{}}',  # no status
        b'{"id":"a","status":"200","result":{}}',
        b'{"id":"a","status":200}',  # neither result nor error
        b'{"id":"a","status":400,"result":{}}',  # failure without an error
        b'{"id":"a","status":400,"error":{"msg":"x"}}',
        b'{"id":"a","status":400,"error":"x"}',
        b'{"id":[1],"status":200,"result":{}}',
        b'{"id":"a","status":200,"result":{},"rateLimits":{}}',
        b'{"id":"a","status":200,"result":{},"rateLimits":[{"rateLimitType":"X"}]}',
        b'{"subscriptionId":0,"event":{"e":"executionReport"}}',
    ],
)
def test_parse_response_malformed(frame: bytes) -> None:
    assert isinstance(parse.parse_response(frame), api.ProtocolError)


# ---- events ------------------------------------------------------------------------------------


def report(**overrides: Any) -> dict[str, Any]:
    """A TRADE executionReport of our buy: 0.001 BTC at 61837.63, maker, fee in USDT."""
    event = {
        "e": "executionReport", "E": 1723161254348, "s": "BTCUSDT", "c": CID, "S": "BUY",
        "o": "LIMIT_MAKER", "f": "GTC", "q": "0.00200000", "p": "61837.63000000",
        "P": "0.00000000", "F": "0.00000000", "g": -1, "C": "", "x": "TRADE",
        "X": "PARTIALLY_FILLED", "r": "NONE", "i": 4293153, "l": "0.00100000",
        "z": "0.00100000", "L": "61837.63000000", "n": "0.06183763", "N": "USDT",
        "T": 1723161254347, "t": 77, "I": 8641984, "w": True, "m": True, "M": False,
        "O": 1723161254206, "Z": "61.83763000", "Y": "61.83763000", "Q": "0.00000000",
    }
    event.update(overrides)
    return event


def wrap(event: dict[str, Any], sid: int = 0) -> bytes:
    return orjson.dumps({"subscriptionId": sid, "event": event})


def test_trade_report_gives_update_and_fill_with_exact_quote_fee() -> None:
    got = parse.parse_event(wrap(report(), sid=3), INSTR, PREFIX)
    assert isinstance(got, api.ExecutionReport)
    ts = 1723161254347 * 1_000_000
    assert got.update == OrderUpdate(OID, OrderStatus.PARTIALLY_FILLED, Side.BUY, 6183763,
                                     200_000, 100_000, "", ts)
    # 0.06183763 USDT / (0.01 x 1e-8) = 618,376,300 notional units
    assert got.fill == Fill(OID, Side.BUY, 6183763, 100_000, 618_376_300, True, ts, 77)
    assert got.subscription_id == 3 and got.fee_converted
    assert (got.execution_type, got.order_status, got.exchange_order_id) == (
        "TRADE", "PARTIALLY_FILLED", 4293153)
    assert got.commission == Decimal("0.06183763") and got.commission_asset == "USDT"


def test_fee_in_base_asset_other_asset_and_rounding() -> None:
    # 0.000001 BTC = 100 lots, valued at the fill price 6,183,763 ticks: 618,376,300 units
    # (= 0.000001 x 61837.63 = 0.06183763 USDT)
    base = parse.parse_event(wrap(report(n="0.00000100", N="BTC")), INSTR, PREFIX)
    assert isinstance(base, api.ExecutionReport) and base.fill is not None
    assert base.fill.fee == 618_376_300 and base.fee_converted
    # BNB at 500 USDT: 0.0001 BNB = 0.05 USDT = 500,000,000 units
    bnb = parse.parse_event(wrap(report(n="0.00010000", N="BNB")), INSTR, PREFIX,
                          asset_prices={"BNB": "500"})
    assert isinstance(bnb, api.ExecutionReport) and bnb.fill is not None
    assert bnb.fill.fee == 500_000_000 and bnb.fee_converted
    # without a price the fee cannot be valued: 0, flagged, the raw commission kept
    unknown = parse.parse_event(wrap(report(n="0.00010000", N="BNB")), INSTR, PREFIX)
    assert isinstance(unknown, api.ExecutionReport) and unknown.fill is not None
    assert unknown.fill.fee == 0 and not unknown.fee_converted
    assert unknown.commission == Decimal("0.0001") and unknown.commission_asset == "BNB"
    # half a unit (5e-11 USDT) rounds up to 1; a rebate of half a unit rounds to 0
    half = parse.parse_event(wrap(report(n="0.00000000005")), INSTR, PREFIX)
    assert isinstance(half, api.ExecutionReport) and half.fill is not None
    assert half.fill.fee == 1
    rebate = parse.parse_event(wrap(report(n="-0.00000000015")), INSTR, PREFIX)
    assert isinstance(rebate, api.ExecutionReport) and rebate.fill is not None
    assert rebate.fill.fee == -1  # -1.5 units: half up gives -1
    zero = parse.parse_event(wrap(report(n="0", N=None)), INSTR, PREFIX)
    assert isinstance(zero, api.ExecutionReport) and zero.fill is not None
    assert zero.fill.fee == 0 and zero.fee_converted


def test_fee_conversion_on_a_coarser_instrument() -> None:
    inst = Instrument("ETHBTC", "0.00001", "0.0001")  # one notional unit: 1e-9 BTC
    got = parse.parse_event(wrap(report(s="ETHBTC", p="0.05000", L="0.05000", q="1.0000",
                                      z="0.5000", l="0.5000", n="0.000025", N="BTC")),
                          inst, PREFIX)
    assert isinstance(got, api.ExecutionReport) and got.fill is not None
    # 0.000025 BTC / 1e-9 = 25,000 units; the fill is 5,000 lots at 5,000 ticks
    assert got.fill.fee == 25_000
    assert (got.fill.price, got.fill.size) == (5000, 5000)
    eth = parse.parse_event(wrap(report(s="ETHBTC", p="0.05000", L="0.05000", q="1.0000",
                                      z="0.5000", l="0.5000", n="0.0005", N="ETH")),
                          inst, PREFIX)
    # 0.0005 ETH = 5 lots at 5,000 ticks = 25,000 units
    assert isinstance(eth, api.ExecutionReport) and eth.fill is not None
    assert eth.fill.fee == 25_000


def test_status_mapping_and_cancel_ids() -> None:
    new = parse.parse_event(wrap(report(x="NEW", X="NEW", l="0.00000000", z="0.00000000",
                                      L="0.00000000", n="0", N=None, t=-1)), INSTR, PREFIX)
    assert isinstance(new, api.ExecutionReport) and new.fill is None
    assert new.update.status is OrderStatus.NEW and new.update.filled == 0
    # a cancel reports its own new id in c and our id in C
    cancel = parse.parse_event(wrap(report(x="CANCELED", X="CANCELED", c="cxl-7", C=CID,
                                         t=-1)), INSTR, PREFIX)
    assert isinstance(cancel, api.ExecutionReport)
    assert cancel.update.order_id == OID and cancel.update.status is OrderStatus.CANCELED
    assert (cancel.client_order_id, cancel.orig_client_order_id) == ("cxl-7", CID)
    expired = parse.parse_event(wrap(report(x="EXPIRED", X="EXPIRED", t=-1)), INSTR, PREFIX)
    assert isinstance(expired, api.ExecutionReport)
    assert expired.update.status is OrderStatus.CANCELED and expired.update.reason == "expired"
    rejected = parse.parse_event(wrap(report(x="REJECTED", X="REJECTED",
                                           r="WOULD_MATCH_IMMEDIATELY", t=-1)), INSTR, PREFIX)
    assert isinstance(rejected, api.ExecutionReport)
    assert rejected.update.status is OrderStatus.REJECTED
    assert rejected.update.reason == "WOULD_MATCH_IMMEDIATELY"
    filled = parse.parse_event(wrap(report(X="FILLED", z="0.00200000")), INSTR, PREFIX)
    assert isinstance(filled, api.ExecutionReport)
    assert filled.update.status is OrderStatus.FILLED and filled.update.filled == 200_000
    # "C": "null" in older payloads means no original id
    old = parse.parse_event(report(C="null"), INSTR, PREFIX)  # a bare event (no wrapper)
    assert isinstance(old, api.ExecutionReport) and old.subscription_id is None
    assert old.update.order_id == OID


def test_foreign_orders() -> None:
    other = parse.parse_event(wrap(report(c="web_1234")), INSTR, PREFIX)
    assert isinstance(other, api.ForeignOrder) and other.client_order_id == "web_1234"
    symbol = parse.parse_event(wrap(report(s="ETHUSDT")), INSTR, PREFIX)
    assert isinstance(symbol, api.ForeignOrder) and symbol.symbol == "ETHUSDT"


def test_account_position_and_other_events() -> None:
    frame = wrap({"e": "outboundAccountPosition", "E": 5, "u": 4,
                  "B": [{"a": "BTC", "f": "1.00100000", "l": "0.00000000"},
                        {"a": "USDT", "f": "938.16", "l": "61.83"}]}, sid=1)
    got = parse.parse_event(frame, INSTR, PREFIX)
    assert got == api.AccountPosition(1, 5, 4, {
        "BTC": (Decimal("1.001"), Decimal("0")), "USDT": (Decimal("938.16"), Decimal("61.83"))})
    ended = parse.parse_event(wrap({"e": "eventStreamTerminated", "E": 9}), INSTR, PREFIX)
    assert isinstance(ended, api.OtherEvent) and ended.kind == "eventStreamTerminated"


@pytest.mark.parametrize(
    "frame",
    [
        b"garbage",
        b"[]",
        b'{"subscriptionId":0,"event":[]}',
        b'{"subscriptionId":"0","event":{"e":"executionReport"}}',
        b'{"subscriptionId":0,"event":{"E":1}}',
        wrap(report(t=-1)),  # a TRADE must carry a trade id > 0
        wrap(report(t=0)),
        wrap(report(t="77")),
        wrap(report(p="61837.631")),  # off the tick grid
        wrap(report(q="-1")),
        wrap(report(X="WEIRD")),
        wrap(report(S="HOLD")),
        wrap(report(m="true")),
        wrap(report(l="0.00000000")),
        wrap(report(n="lots")),
        wrap(report(n="NaN")),
        wrap(report(N=5)),
        wrap({k: v for k, v in report().items() if k != "z"}),
        wrap({"e": "outboundAccountPosition", "E": 5, "u": 4, "B": [{"a": "BTC"}]}),
    ],
)
def test_parse_event_malformed(frame: bytes) -> None:
    assert isinstance(parse.parse_event(frame, INSTR, PREFIX), api.ProtocolError)


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(report())), json_values, st.booleans())
def test_parse_event_never_raises(key: str, value: object, drop: bool) -> None:
    event = report()
    if drop:
        del event[key]
    else:
        event[key] = value
    for frame in (wrap(event), {"subscriptionId": 0, "event": event}):
        result = parse.parse_frame(frame, INSTR, PREFIX)
        if key == "e" and isinstance(value, str) and value != "executionReport":
            # another event type is another event: decoded as such, or refused
            assert isinstance(result, api.OtherEvent | api.AccountPosition | api.ProtocolError)
        else:
            assert isinstance(result, api.ExecutionReport | api.ForeignOrder | api.ProtocolError)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_parsers_never_raise_on_random_bytes(frame: bytes) -> None:
    parse.parse_response(frame)
    parse.parse_event(frame, INSTR, PREFIX)
    parse.parse_frame(frame, INSTR, PREFIX)


# ---- server-side shapes round trip -------------------------------------------------------------


def test_execution_report_builder_round_trips() -> None:
    view = wire.OrderView(42, CID, Side.SELL, 6183763, 200_000, 100_000, 6183763 * 100_000,
                         "PARTIALLY_FILLED", 1000, 1000)
    event = wire.execution_report(INSTR, view, execution_type="TRADE", event_ms=2000,
                                 transact_ms=2000, execution_id=9, last_qty=100_000,
                                 last_price=6183763, commission="0.0061837630",
                                 commission_asset="USDT", trade_id=5, is_maker=True)
    assert event["Z"] == "61.83763000" and event["W"] == 1000 and event["w"] is True
    got = parse.parse_event(wire.event_frame(4, event), INSTR, PREFIX)
    assert isinstance(got, api.ExecutionReport)
    assert got.update == OrderUpdate(OID, OrderStatus.PARTIALLY_FILLED, Side.SELL, 6183763,
                                     200_000, 100_000, "", 2_000_000_000)
    assert got.fill == Fill(OID, Side.SELL, 6183763, 100_000, 61_837_630, True, 2_000_000_000, 5)
    assert got.exchange_order_id == 42 and got.subscription_id == 4


def test_responses_round_trip() -> None:
    limits = (api.RateLimit("REQUEST_WEIGHT", "MINUTE", 1, 6000, 7),)
    ok = parse.parse_response(wire.response_ok("a", {"x": 1}, limits))
    assert ok == api.Response("a", 200, {"x": 1}, None, limits)
    error = api.ApiError(api.INVALID_SIGNATURE, wire.ERROR_MESSAGES[api.INVALID_SIGNATURE])
    bad = parse.parse_response(wire.response_error(3, 400, error))
    assert bad == api.Response(3, 400, None, error, ())


def test_order_update_from_results() -> None:
    placed = {"symbol": "BTCUSDT", "orderId": 1, "orderListId": -1, "clientOrderId": CID,
              "transactTime": 1500, "price": "61837.63", "origQty": "0.00100000",
              "executedQty": "0.00000000", "status": "NEW", "side": "BUY"}
    assert parse.order_update_from_result(placed, INSTR, PREFIX) == OrderUpdate(
        OID, OrderStatus.NEW, Side.BUY, 6183763, 100_000, 0, "", 1_500_000_000)
    cancelled = {**placed, "origClientOrderId": CID, "clientOrderId": "cxl", "status": "CANCELED"}
    got = parse.order_update_from_result(cancelled, INSTR, PREFIX)
    assert isinstance(got, OrderUpdate) and got.order_id == OID
    assert got.status is OrderStatus.CANCELED
    assert isinstance(parse.order_update_from_result({**placed, "clientOrderId": "x"}, INSTR,
                                                   PREFIX), api.ForeignOrder)
    assert isinstance(parse.order_update_from_result({**placed, "price": 1}, INSTR, PREFIX),
                      api.ProtocolError)
    assert isinstance(parse.order_update_from_result([], INSTR, PREFIX), api.ProtocolError)


def test_notional_text_is_exact() -> None:
    # Binance's 8 decimals, more only where the amount needs them to stay exact
    assert wire.notional_str(INSTR, 618_376_300) == "0.06183763"
    assert wire.notional_str(INSTR, 618_376_301) == "0.0618376301"
    assert wire.notional_str(INSTR, -5) == "-0.0000000005"
    assert wire.notional_str(INSTR, 0) == "0.00000000"
    coarse = Instrument("X", "10", "1")
    assert wire.notional_str(coarse, 3) == "30.00000000"
    assert parse.assets_of("BTCUSDT") == api.Assets("BTC", "USDT")
    assert parse.assets_of("ETHBTC") == api.Assets("ETH", "BTC")
    with pytest.raises(ValueError):
        parse.assets_of("XYZ")


# ---- trade history, order status, rate limits, redaction ---------------------------------------


def test_my_trades_order_status_and_cancel_by_id_builders() -> None:
    kw: dict[str, Any] = {"request_id": "t", "creds": CREDS, "timestamp_ms": 9}
    frame = orjson.loads(api.my_trades(INSTR, from_id=42, limit=1000, **kw))
    assert frame["method"] == "myTrades"
    params = frame["params"]
    assert (params["symbol"], params["fromId"], params["limit"]) == ("BTCUSDT", 42, 1000)
    assert "startTime" not in params and "orderId" not in params
    payload = f"apiKey={CREDS.api_key}&fromId=42&limit=1000&symbol=BTCUSDT&timestamp=9"
    assert params["signature"] == hmac_hex(CREDS.secret, payload)
    by_order = params_of(api.my_trades(INSTR, order_id=7, **kw))
    assert by_order["orderId"] == 7 and "limit" not in by_order
    window = params_of(api.my_trades(INSTR, start_time_ms=1, end_time_ms=86_400_001, **kw))
    assert (window["startTime"], window["endTime"]) == (1, 86_400_001)
    for bad in ({"from_id": 1, "start_time_ms": 1}, {"limit": 0}, {"limit": 1001},
                {"start_time_ms": 1, "end_time_ms": 86_400_002}):
        with pytest.raises(ValueError):
            api.my_trades(INSTR, **bad, **kw)
    status = params_of(api.order_status(INSTR, order_id=5, **kw))
    assert status["orderId"] == 5 and "origClientOrderId" not in status
    assert orjson.loads(api.order_status(INSTR, client_id=CID, **kw))["method"] == "order.status"
    cancel = params_of(api.order_cancel(INSTR, order_id=5, **kw))
    assert cancel["orderId"] == 5 and "origClientOrderId" not in cancel
    assert wire.verify_signature(CREDS.secret, cancel)
    with pytest.raises(ValueError):
        api.order_status(INSTR, **kw)
    with pytest.raises(ValueError):
        api.order_cancel(INSTR, **kw)


TRADE_JSON: dict[str, Any] = {
    "symbol": "BTCUSDT", "id": 28457, "orderId": 100234, "orderListId": -1,
    "price": "61837.63000000", "qty": "0.00100000", "quoteQty": "61.83763000",
    "commission": "0.00618376", "commissionAsset": "USDT", "time": 1723161254348,
    "isBuyer": True, "isMaker": True, "isBestMatch": True,
}


def test_account_trades_parse_round_trip_and_become_fills() -> None:
    trade = parse.parse_account_trade(TRADE_JSON, INSTR)
    assert trade == api.AccountTrade(28457, 100234, -1, 6183763, 100_000,
                                     Decimal("61.83763000"), Decimal("0.00618376"), "USDT",
                                     1723161254348, True, True, True)
    assert parse.parse_account_trade(wire.account_trade_json(INSTR, trade), INSTR) == trade
    fill, converted = parse.fill_from_trade(trade, OID, INSTR)
    # 0.00618376 USDT / 1e-10 = 61,837,600 notional units
    assert fill == Fill(OID, Side.BUY, 6183763, 100_000, 61_837_600, True,
                        1723161254348 * 1_000_000, 28457)
    assert converted
    bnb = trade._replace(commission_asset="BNB", is_buyer=False, is_maker=False)
    fill, converted = parse.fill_from_trade(bnb, OID, INSTR)
    assert (fill.side, fill.maker, fill.fee, converted) == (Side.SELL, False, 0, False)
    fill, converted = parse.fill_from_trade(bnb, OID, INSTR, asset_prices={"BNB": "500"})
    assert converted and fill.fee == 30_918_800_000  # 0.00618376 x 500 / 1e-10
    later = {**TRADE_JSON, "id": 28458}
    parsed = parse.parse_my_trades([later, TRADE_JSON], INSTR)
    assert isinstance(parsed, list) and [t.trade_id for t in parsed] == [28457, 28458]


@pytest.mark.parametrize("change", [
    {"id": 0}, {"symbol": "ETHUSDT"}, {"price": "61837.631"}, {"qty": "0"}, {"isBuyer": 1},
    {"commission": "x"}, {"time": "1"}, {"orderId": None},
])
def test_malformed_account_trades_are_refused(change: dict[str, Any]) -> None:
    bad = {**TRADE_JSON, **change}
    assert isinstance(parse.parse_account_trade(bad, INSTR), api.ProtocolError)
    assert isinstance(parse.parse_my_trades([TRADE_JSON, bad], INSTR), api.ProtocolError)
    assert isinstance(parse.parse_my_trades({"x": 1}, INSTR), api.ProtocolError)


def test_rate_limit_answers_and_retry_after() -> None:
    limits = (api.RateLimit("REQUEST_WEIGHT", "MINUTE", 1, 6000, 6001),)
    error = api.ApiError(api.TOO_MANY_REQUESTS, "Too much request weight used",
                         {"serverTime": 1_000, "retryAfter": 60_000})
    limited = parse.parse_response(wire.response_error(1, 429, error, limits))
    assert isinstance(limited, api.Response)
    assert parse.is_rate_limited(limited) and parse.retry_after_ms(limited) == 60_000
    banned = api.Response(2, 418, None, api.ApiError(-1003, "banned"), ())
    assert parse.is_rate_limited(banned) and parse.retry_after_ms(banned) is None
    other = api.Response(3, 400, None, api.ApiError(api.INVALID_SIGNATURE, "no"), ())
    assert not parse.is_rate_limited(other)
    assert not parse.is_rate_limited(api.Response(4, 200, {}, None, ()))


def test_credentials_never_show_the_secret() -> None:
    for text in (repr(CREDS), str(CREDS), f"{CREDS}", repr([CREDS])):
        assert CREDS.secret not in text and CREDS.api_key not in text
        assert "vmPU..." in text
    assert api.redact_key("abc") == "..."
