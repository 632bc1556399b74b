"""The sans-I/O USD-M futures order-entry protocol on its own: no socket, no event loop.

Each test plays the venue by hand with frames and bodies in the shapes of Binance's USD-M
futures WebSocket API, REST and user-data stream (the contract, and the official SDK's
models), and checks the requests asked for next and the events emitted. Time is passed in.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from mmdaemon.exchange.base import VenueRefused
from mmdaemon.model import (
    BINANCE_USDM_BTCUSDT,
    Balances,
    Fill,
    Funding,
    OrderStatus,
    OrderUpdate,
    Side,
)
from mmdaemon.sim import wire
from mmdaemon.venues import binance_api as api
from mmdaemon.venues import usdm_api as usdm
from mmdaemon.venues.binance_order_io import (
    Answered,
    Done,
    HangUp,
    Hold,
    Output,
    Procedure,
    Request,
    RequestFailed,
)
from mmdaemon.venues.usdm_orders import HEDGE_MODE_FIX, UsdmProtocol

INSTR = BINANCE_USDM_BTCUSDT  # tick 0.1 USDT, lot 0.001 BTC: a notional unit is 1e-4 USDT
KEY = "k" * 64
SECRET = "s" * 64
MS = 1_000_000
WALL_MS = 1_723_075_200_000
WALL = WALL_MS * MS
MONO = 7 * 10**9
PRICE = 600_000  # 60,000.0 USDT
LOTS = 10  # 0.010 BTC
VID = 8_000_001


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def _add(self, event: str, **values: Any) -> None:
        self.events.append((event, values))

    debug = info = warning = error = _add


def cid(order_id: int) -> str:
    return api.client_order_id("mm", order_id)


def order_obj(order_id: int, vid: int, status: str, qty: int = LOTS, executed: int = 0, *,
              price: int = PRICE, ms: int = WALL_MS - 5, client_id: str | None = None
              ) -> dict[str, Any]:
    """A futures order object (``order.place`` RESULT, ``order.modify``, ``openOrders``)."""
    return {"orderId": vid, "symbol": "BTCUSDT", "status": status,
            "clientOrderId": client_id or cid(order_id), "price": INSTR.price_str(price),
            "avgPrice": "0.00", "origQty": INSTR.size_str(qty),
            "executedQty": INSTR.size_str(executed), "cumQty": INSTR.size_str(executed),
            "cumQuote": "0.00000", "timeInForce": "GTX", "type": "LIMIT",
            "reduceOnly": False, "closePosition": False, "side": "BUY",
            "positionSide": "BOTH", "stopPrice": "0.00", "workingType": "CONTRACT_PRICE",
            "priceProtect": False, "origType": "LIMIT", "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0, "updateTime": ms}


def otu(order_id: int, execution: str, status: str, qty: int, executed: int, *,
        last: int = 0, trade_id: int = 0, ms: int = WALL_MS) -> bytes:
    """An ``ORDER_TRADE_UPDATE`` of our BUY order (bare, as the raw stream sends it)."""
    return orjson.dumps({"e": "ORDER_TRADE_UPDATE", "E": ms + 1, "T": ms, "o": {
        "s": "BTCUSDT", "c": cid(order_id), "S": "BUY", "o": "LIMIT", "f": "GTX",
        "q": INSTR.size_str(qty), "p": INSTR.price_str(PRICE), "ap": "0", "sp": "0",
        "x": execution, "X": status, "i": VID, "l": INSTR.size_str(last),
        "z": INSTR.size_str(executed), "L": INSTR.price_str(PRICE if last else 0),
        "N": "USDT", "n": "0.12000000" if last else "0", "T": ms, "t": trade_id,
        "b": "0", "a": "0", "m": True, "R": False, "wt": "CONTRACT_PRICE", "ot": "LIMIT",
        "ps": "BOTH", "cp": False, "rp": "0", "pP": False, "si": 0, "ss": 0,
        "V": "EXPIRE_MAKER", "pm": "NONE", "gtd": 0}})


def funding_event(bc: str, ms: int) -> bytes:
    return orjson.dumps({"e": "ACCOUNT_UPDATE", "E": ms + 2, "T": ms, "a": {
        "m": "FUNDING_FEE", "B": [{"a": "USDT", "wb": "9999.9", "cw": "9999.9", "bc": bc}],
        "P": []}})


def user_trade(trade_id: int, vid: int, qty: int, commission: str = "0.12000000"
               ) -> dict[str, Any]:
    return {"buyer": True, "commission": commission, "commissionAsset": "USDT",
            "id": trade_id, "maker": True, "orderId": vid, "price": INSTR.price_str(PRICE),
            "qty": INSTR.size_str(qty), "quoteQty": "600.0", "realizedPnl": "0",
            "side": "BUY", "positionSide": "BOTH", "symbol": "BTCUSDT",
            "time": WALL_MS - 100}


def income(ms: int, amount: str, tran_id: int) -> dict[str, Any]:
    return {"symbol": "BTCUSDT", "incomeType": "FUNDING_FEE", "income": amount,
            "asset": "USDT", "info": "", "time": ms, "tranId": tran_id, "tradeId": ""}


class Venue:
    """Plays the venue for one protocol: WebSocket API frames and REST calls alike."""

    def __init__(self) -> None:
        self.log = Log()
        self.proto = UsdmProtocol(INSTR, api.Credentials(KEY, SECRET), "mm", self.log,
                                  rng=lambda: 0.5, backoff_initial_s=0.1, backoff_max_s=30.0)
        self.sent: list[dict[str, Any]] = []  # WebSocket API frames
        self.rest: list[tuple[str, str, dict[str, object]]] = []  # method, path, params

    def step(self, proc: Procedure[Any], answer: api.Response | None
             ) -> Request | Done[Any]:
        return self.proto.step(proc, answer, WALL)

    def ws(self, proc: Procedure[Any], request: Request | Done[Any],
           body: dict[str, Any]) -> tuple[list[Output], Request | Done[Any]]:
        """Answer a WebSocket API request with ``body`` (``status``, ``result``/``error``)."""
        assert isinstance(request, Request) and request.rest is None, request
        request_id, frame = self.proto.send(request, WALL)
        self.sent.append(orjson.loads(frame))
        self.proto.receive(orjson.dumps({"id": request_id, **body}), MONO, WALL)
        out = self.proto.outputs()
        answered = [o for o in out if isinstance(o, Answered)]
        assert answered and answered[0].response is not None
        step = self.step(proc, answered[0].response)
        return out + self.proto.outputs(), step

    def http(self, proc: Procedure[Any], request: Request | Done[Any], body: object,
             status: int = 200, retry_after: str | None = None
             ) -> tuple[list[Output], Request | Done[Any]]:
        """Answer a REST call with ``body`` (JSON) and ``status``."""
        assert isinstance(request, Request) and request.rest is not None, request
        call = request.rest
        query = usdm.rest_query(call, self.proto._creds, WALL_MS)
        params = dict(p.split("=", 1) for p in query.split("&")) if query else {}
        if call.signed:
            assert wire.verify_signature(SECRET, params)
        self.rest.append((call.method, call.path, params))
        response = usdm.rest_response(status, orjson.dumps(body), "12", retry_after, WALL_MS)
        self.proto.rest_answered(response, MONO)
        step = self.step(proc, response)
        return self.proto.outputs(), step

    def place_and_ack(self, order_id: int = 1, qty: int = LOTS) -> None:
        proc = self.proto.place(order_id, Side.BUY, PRICE, qty, blocked="")
        out, step = self.ws(proc, self.step(proc, None),
                            {"status": 200, "result": order_obj(order_id, VID, "NEW", qty)})
        assert step == Done(None)
        assert [o for o in out if isinstance(o, OrderUpdate)][-1].status is OrderStatus.NEW


def updates(out: list[Output]) -> list[OrderUpdate]:
    return [o for o in out if isinstance(o, OrderUpdate)]


def test_place_sends_a_signed_post_only_gtx_order_with_our_client_id_and_reduce_only() -> None:
    venue = Venue()
    for order_id, reduce_only in ((1, False), (2, True)):
        proc = venue.proto.place(order_id, Side.BUY, PRICE, LOTS, "", reduce_only)
        out, step = venue.ws(proc, venue.step(proc, None),
                             {"status": 200, "result": order_obj(order_id, VID + order_id,
                                                                 "NEW")})
        params = venue.sent[-1]["params"]
        assert venue.sent[-1]["method"] == "order.place" and step == Done(None)
        assert (params["type"], params["timeInForce"], params["side"]) == ("LIMIT", "GTX", "BUY")
        assert (params["price"], params["quantity"]) == ("60000.0", "0.010")
        assert params["newClientOrderId"] == cid(order_id)
        assert params["reduceOnly"] == ("true" if reduce_only else "false")
        assert wire.verify_signature(SECRET, params) and params["apiKey"] == KEY
        assert updates(out) == [OrderUpdate(order_id, OrderStatus.NEW, Side.BUY, PRICE, LOTS,
                                            0, "", (WALL_MS - 5) * MS)]


@pytest.mark.parametrize(("code", "msg"), [
    (usdm.POST_ONLY_REJECTED, "Due to the order could not be executed as maker, the Post "
                              "Only order will be rejected."),
    (usdm.MARGIN_INSUFFICIENT, "Margin is insufficient."),
    (usdm.REDUCE_ONLY_REJECTED, "ReduceOnly Order is rejected."),
])
def test_a_refused_place_is_rejected_with_the_futures_code(code: int, msg: str) -> None:
    venue = Venue()
    proc = venue.proto.place(1, Side.BUY, PRICE, LOTS, "", True)
    out, step = venue.ws(proc, venue.step(proc, None),
                         {"status": 400, "error": {"code": code, "msg": msg}})
    assert updates(out) == [OrderUpdate(1, OrderStatus.REJECTED, Side.BUY, PRICE, LOTS, 0,
                                        f"{code} {msg}", WALL)]
    assert venue.proto.open_order_count() == 0 and step == Done(None)


def test_amend_modifies_in_place_with_the_total_size_including_what_filled() -> None:
    venue = Venue()
    venue.place_and_ack()
    venue.proto.receive_user(otu(1, "TRADE", "PARTIALLY_FILLED", LOTS, 4, last=4,
                                 trade_id=501), MONO, WALL)
    out = venue.proto.outputs()
    # 0.12 USDT commission = 1,200 notional units of 1e-4 USDT; exec id = trade id t
    assert out[0] == Fill(1, Side.BUY, PRICE, 4, 1_200, True, WALL, 501)
    proc = venue.proto.amend(1, PRICE + 3, 8, "", True)
    out, step = venue.ws(proc, venue.step(proc, None), {"status": 200, "result": order_obj(
        1, VID, "PARTIALLY_FILLED", 8, 4, price=PRICE + 3, ms=WALL_MS + 10)})
    params = venue.sent[-1]["params"]
    assert venue.sent[-1]["method"] == "order.modify" and step == Done(None)
    assert (params["orderId"], params["quantity"], params["price"]) == (VID, "0.008", "60000.3")
    assert updates(out) == [OrderUpdate(1, OrderStatus.PARTIALLY_FILLED, Side.BUY, PRICE + 3,
                                        8, 4, "", (WALL_MS + 10) * MS)]
    # the stream's older report (before the modify) does not bring the old size back
    venue.proto.receive_user(otu(1, "TRADE", "PARTIALLY_FILLED", LOTS, 4, last=4,
                                 trade_id=501), MONO, WALL)
    assert venue.proto.outputs() == []
    assert venue.proto.orders[1].total_size() == 8
    # an amend to what already filled cancels the rest
    proc = venue.proto.amend(1, PRICE, 4, "", True)
    venue.ws(proc, venue.step(proc, None),
             {"status": 200, "result": order_obj(1, VID, "CANCELED", 8, 4)})
    assert venue.sent[-1]["method"] == "order.cancel"


def test_no_need_to_modify_reports_the_order_as_it_stands() -> None:
    venue = Venue()
    venue.place_and_ack()
    proc = venue.proto.amend(1, PRICE, LOTS, "", True)
    out, _ = venue.ws(proc, venue.step(proc, None), {"status": 400, "error": {
        "code": usdm.NO_NEED_TO_MODIFY, "msg": "No need to modify the order."}})
    assert [u.status for u in updates(out)] == [OrderStatus.NEW]


def test_funding_fee_is_a_funding_event_rounded_toward_minus_infinity_and_delivered_once(
        ) -> None:
    venue = Venue()
    venue.proto.resume_funding_after(WALL_MS - 8 * 3_600_000)
    listed = [income(WALL_MS - 60_000, "-0.01234567", 1), income(WALL_MS, "0.00009999", 2)]
    for _ in range(2):  # the same payments listed again: delivered once
        venue.proto.receive_user(funding_event("-0.01224568", WALL_MS), MONO, WALL)
        proc = venue.proto.read_account()
        _, step = venue.http(proc, venue.step(proc, None), listed)
        _, step = venue.ws(proc, step, {"status": 200, "result": {"assets": [],
                                                                  "positions": []}})
        _, step = venue.ws(proc, step, {"status": 200, "result": []})
        assert step == Done(None)
    # -123.4567 units -> -124 (never flattered); 0.9999 -> 0
    assert [e for e in venue.proto.drain_account() if isinstance(e, Funding)] == [
        Funding(-124, (WALL_MS - 60_000) * MS, WALL_MS - 60_000), Funding(0, WALL, WALL_MS)]
    assert venue.proto.max_funding_id == WALL_MS
    assert venue.rest[-1][2]["startTime"] == str(WALL_MS + 1)


def test_a_funding_fee_event_is_booked_from_the_symbols_income_not_the_accounts_balance(
        ) -> None:
    """Binance's FUNDING_FEE ``ACCOUNT_UPDATE`` of a cross position carries the balance
    alone (no ``P``: it does not say which symbol paid), so its ``bc`` may be another
    symbol's payment on the same account: the payment is booked from ``income`` of our
    symbol, where the amount and its time are the symbol's own."""
    venue = Venue()
    venue.proto.resume_funding_after(WALL_MS - 8 * 3_600_000)
    # ETHUSDT's payment on the account, as Binance sends it for a cross position
    venue.proto.receive_user(funding_event("-3.00000000", WALL_MS), MONO, WALL)
    assert venue.proto.drain_account() == []  # not booked: the event names no symbol
    assert venue.proto.account_stale
    proc = venue.proto.read_account()
    _, step = venue.http(proc, venue.step(proc, None), [income(WALL_MS, "-0.25000001", 9)])
    assert venue.rest[-1][1] == usdm.INCOME and venue.rest[-1][2]["symbol"] == "BTCUSDT"
    assert venue.rest[-1][2]["startTime"] == str(WALL_MS - 8 * 3_600_000 + 1)
    _, step = venue.ws(proc, step, {"status": 200, "result": {"assets": [
        {"asset": "USDT", "walletBalance": "1.0", "availableBalance": "1.0"}],
        "positions": []}})
    _, step = venue.ws(proc, step, {"status": 200, "result": []})
    assert step == Done(None)
    assert venue.proto.drain_account() == [Funding(-2_501, WALL, WALL_MS),
                                           Balances(None, 10_000, 0, WALL)]
    # the next refresh without a funding event does not ask for income again
    venue.proto.receive_user(orjson.dumps({"e": "ACCOUNT_UPDATE", "E": WALL_MS + 9,
                                           "T": WALL_MS + 9, "a": {"m": "ORDER", "B": [],
                                                                   "P": []}}), MONO, WALL)
    proc = venue.proto.read_account()
    step = venue.step(proc, None)
    assert isinstance(step, Request) and step.rest is None  # account.status first


def test_listen_key_expired_hangs_up_and_a_bad_event_makes_the_connection_suspect() -> None:
    venue = Venue()
    venue.proto.receive_user(orjson.dumps({"e": "listenKeyExpired", "E": WALL_MS,
                                           "listenKey": "x"}), MONO, WALL)
    assert venue.proto.outputs() == [HangUp("listenKey expired")]
    venue.proto.receive_user(b'{"e":"ORDER_TRADE_UPDATE","E":1,"o":{}}', MONO, WALL)
    assert [type(o).__name__ for o in venue.proto.outputs()] == ["Suspect"]


def test_hedge_mode_is_refused_naming_the_fix() -> None:
    venue = Venue()
    proc = venue.proto.reconcile()
    with pytest.raises(VenueRefused, match="hedge mode") as exc:
        venue.http(proc, venue.step(proc, None), {"dualSidePosition": True})
    assert str(exc.value) == HEDGE_MODE_FIX and "dualSidePosition=false" in HEDGE_MODE_FIX


@pytest.mark.parametrize(("venue_amount", "mismatch"), [("0.002", False), ("-0.003", True)])
def test_reconcile_cancels_strays_recovers_missed_fills_and_funding_and_reads_the_account(
        venue_amount: str, mismatch: bool) -> None:
    """... and compares the venue's position with ours (the journal's 0 and the 2 lots
    recovered): a difference is logged as an error naming both."""
    venue = Venue()
    venue.proto.expect_position(0)
    venue.proto.resume_fills_after(700)
    venue.proto.resume_funding_after(WALL_MS - 8 * 3_600_000)
    proc = venue.proto.reconcile()
    _, step = venue.http(proc, venue.step(proc, None), {"dualSidePosition": False})
    # a crashed run's order (ours by prefix, unknown to us) and another client's order
    stray = order_obj(7, VID + 7, "PARTIALLY_FILLED", LOTS, 2)
    other = order_obj(0, 99, "NEW", client_id="web_abc")
    _, step = venue.http(proc, step, [stray, other])
    assert venue.rest[-1][:2] == ("GET", usdm.OPEN_ORDERS)
    _, step = venue.http(proc, step, [user_trade(701, VID + 7, 2)])
    assert venue.rest[-1][1] == usdm.USER_TRADES and venue.rest[-1][2]["fromId"] == "701"
    # whose trade: order.status by venue id tells (ours, by its client id)
    out, step = venue.ws(proc, step, {"status": 200, "result": stray})
    assert venue.sent[-1]["method"] == "order.status"
    assert [o for o in out if isinstance(o, Fill)] == [
        Fill(7, Side.BUY, PRICE, 2, 1_200, True, (WALL_MS - 100) * MS, 701)]
    # the stray goes: cancelled by venue id (another client's order is left alone)
    out, step = venue.ws(proc, step, {"status": 200, "result": order_obj(
        7, VID + 7, "CANCELED", LOTS, 2)})
    assert venue.sent[-1]["method"] == "order.cancel"
    assert venue.sent[-1]["params"]["orderId"] == VID + 7
    # funding since the journal's last payment: one missed, one already known
    _, step = venue.http(proc, step, [income(WALL_MS - 8 * 3_600_000, "-0.5", 1),
                                      income(WALL_MS, "-0.25000001", 2)])
    assert venue.rest[-1][2]["incomeType"] == "FUNDING_FEE"
    assert venue.rest[-1][2]["startTime"] == str(WALL_MS - 8 * 3_600_000 + 1)
    _, step = venue.ws(proc, step, {"status": 200, "result": {"assets": [
        {"asset": "USDT", "walletBalance": "10000.0", "availableBalance": "9700.12345"}],
        "positions": []}})
    assert venue.sent[-1]["method"] == "v2/account.status"
    _, step = venue.ws(proc, step, {"status": 200, "result": [
        {"symbol": "BTCUSDT", "positionAmt": venue_amount, "leverage": "20",
         "positionSide": "BOTH"}]})
    assert venue.sent[-1]["method"] == "account.position" and step == Done(None)
    errors = [values for event, values in venue.log.events
              if event == "gateway_position_mismatch"]
    assert errors == ([{"venue_lots": -3, "our_lots": 2, "symbol": "BTCUSDT"}] if mismatch
                      else [])
    assert venue.proto.drain_account() == [
        Funding(-2_501, WALL, WALL_MS), Balances(None, 97_001_234, 20, WALL)]
    assert venue.proto.open_order_count() == 0 and venue.proto.fills_recovered == 1


def test_cancel_all_deletes_then_confirms_none_open_through_open_orders() -> None:
    venue = Venue()
    venue.place_and_ack()
    proc = venue.proto.cancel_all()
    _, step = venue.http(proc, venue.step(proc, None), [order_obj(1, VID, "NEW")])
    _, step = venue.http(proc, step, {"code": 200, "msg": "The operation of cancel all open "
                                                          "order is done."})
    assert venue.rest[-1][:2] == ("DELETE", usdm.ALL_OPEN_ORDERS)
    # the venue still lists it (not cancelled yet): not confirmed, cancelled by id
    _, step = venue.http(proc, step, [order_obj(1, VID, "NEW")])
    _, step = venue.http(proc, step, [])  # userTrades: nothing missed
    out, step = venue.ws(proc, step, {"status": 200, "result": order_obj(1, VID, "CANCELED")})
    assert step == Done((1, False))
    assert updates(out)[-1].status is OrderStatus.CANCELED
    # the next round: nothing listed, confirmed
    proc = venue.proto.cancel_all()
    _, step = venue.http(proc, venue.step(proc, None), [])
    _, step = venue.http(proc, step, [])
    _, step = venue.http(proc, step, [])
    assert step == Done((0, True)) and venue.proto.open_order_count() == 0


def test_a_rate_limited_rest_answer_holds_order_entry_until_retry_after() -> None:
    venue = Venue()
    proc = venue.proto.reconcile()
    with pytest.raises(RequestFailed, match="-1003 Too many requests"):
        venue.http(proc, venue.step(proc, None), {"code": -1003, "msg": "Too many requests."},
                   status=429, retry_after="7")
    assert Hold(MONO + 7_000 * MS) in venue.proto.outputs()
    assert venue.proto.limits.held(MONO + 6_999 * MS)


def test_rest_response_shapes() -> None:
    ok = usdm.rest_response(200, b"[]", "3", None, WALL_MS)
    assert ok.ok and ok.result == [] and ok.rate_limits[0].used == 3
    bad = usdm.rest_response(400, b'{"code":-2011,"msg":"Unknown order sent."}', None, None, 0)
    assert not bad.ok and bad.error == api.ApiError(-2011, "Unknown order sent.", None)
    html = usdm.rest_response(502, b"<html>bad gateway</html>", None, None, 0)
    assert not html.ok and html.error is not None and html.error.msg == "HTTP 502"


def test_user_trades_and_income_parse_exactly() -> None:
    trades = usdm.parse_user_trades([user_trade(3, VID, 2), user_trade(2, VID, 1)], INSTR)
    assert not isinstance(trades, api.ProtocolError)
    assert [t.trade_id for t in trades] == [2, 3] and trades[0].commission == Decimal("0.12")
    assert isinstance(usdm.parse_user_trades([{"id": 1}], INSTR), api.ProtocolError)
    entries = usdm.parse_income([income(5, "0.1", 9)])
    assert entries == [usdm.Income(9, "FUNDING_FEE", Decimal("0.1"), "USDT", 5)]


def test_a_rest_call_refused_for_our_key_refuses_the_venue_naming_the_fix() -> None:
    venue = Venue()
    proc = venue.proto.reconcile()
    with pytest.raises(VenueRefused, match="may trade USD-M futures") as exc:
        venue.http(proc, venue.step(proc, None),
                   {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."},
                   status=401)
    assert str(exc.value).startswith("/fapi/v1/positionSide/dual refused: -2015 ")
