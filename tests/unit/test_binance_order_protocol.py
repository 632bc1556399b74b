"""The sans-I/O Binance order-entry protocol on its own: no socket, no event loop, no clock.

Each test plays the venue by hand: it takes the frames the protocol asks to send, answers
with frames in the shapes Binance's ``/ws-api/v3`` (and the sim) use, feeds user-data
events, and checks the frames asked for next and the execution events emitted. Time is
passed in as integers, so every figure (round trips, the rate-limit hold) is exact.
"""

from __future__ import annotations

from typing import Any

import orjson

from mmdaemon.model import (
    BINANCE_SPOT_BTCUSDT,
    ExecutionEvent,
    Fill,
    OrderStatus,
    OrderUpdate,
    Side,
)
from mmdaemon.sim import wire
from mmdaemon.venues import binance_api as api
from mmdaemon.venues.binance_order_io import (
    Answered,
    CancelStrays,
    Done,
    Hold,
    Output,
    Procedure,
    Request,
    RequestFailed,
    Suspect,
)
from mmdaemon.venues.binance_orders import OrderEntryProtocol

INSTR = BINANCE_SPOT_BTCUSDT
KEY = "k" * 64
SECRET = "s" * 64
MS = 1_000_000
WALL_MS = 28_333_333 * 60_000 + 59_700  # 300 ms before a minute of the venue's ends
WALL = WALL_MS * MS  # wall ns since the epoch
MONO = 7 * 10**9  # monotonic ns
RTT = 3 * MS  # every answer comes this long after its request
PRICE = 6_500_000  # 65,000.00 USDT
LOTS = 10_000  # 0.0001 BTC: 6.5 USDT, above the 5 USDT minimum notional
VID = 4242  # the venue's orderId of our first order


class Log:
    """A structlog-style logger that keeps the events."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def _add(self, event: str, **values: Any) -> None:
        self.events.append((event, values))

    debug = info = warning = error = _add

    def named(self, event: str) -> list[dict[str, Any]]:
        return [values for name, values in self.events if name == event]


def protocol(log: Log) -> OrderEntryProtocol:
    return OrderEntryProtocol(INSTR, api.Credentials(KEY, SECRET), "mm", log,
                              rng=lambda: 0.5, backoff_initial_s=0.1, backoff_max_s=30.0)


def cid(order_id: int) -> str:
    return api.client_order_id("mm", order_id)


def order_obj(order_id: int, vid: int, status: str, executed: int = 0, *,
              client_id: str | None = None) -> dict[str, Any]:
    """An order object of a response (``order.place`` RESULT, ``openOrders.status``)."""
    return {"symbol": "BTCUSDT", "orderId": vid, "orderListId": -1,
            "clientOrderId": client_id or cid(order_id), "transactTime": WALL_MS - 5,
            "price": INSTR.price_str(PRICE), "origQty": INSTR.size_str(LOTS),
            "executedQty": INSTR.size_str(executed), "cummulativeQuoteQty": "0.0000000000",
            "status": status, "timeInForce": "GTC", "type": "LIMIT_MAKER", "side": "BUY",
            "workingTime": WALL_MS - 5, "selfTradePreventionMode": "NONE"}


def report(order_id: int, vid: int, execution: str, status: str, executed: int, *,
           last: int = 0, trade_id: int = -1, ms: int = WALL_MS) -> bytes:
    """An ``executionReport`` user-data event frame of our BUY order ``order_id``."""
    event = {"e": "executionReport", "E": ms, "s": "BTCUSDT", "c": cid(order_id), "S": "BUY",
             "o": "LIMIT_MAKER", "f": "GTC", "q": INSTR.size_str(LOTS),
             "p": INSTR.price_str(PRICE), "P": "0.00", "F": "0.00000000", "g": -1, "C": "",
             "x": execution, "X": status, "r": "NONE", "i": vid,
             "l": INSTR.size_str(last), "z": INSTR.size_str(executed),
             "L": INSTR.price_str(PRICE if last else 0),
             "n": "0.00260000" if last else "0", "N": "USDT" if last else None, "T": ms,
             "t": trade_id, "I": 1, "w": status in ("NEW", "PARTIALLY_FILLED"), "m": True,
             "M": False, "O": WALL_MS - 5, "Z": "0.0000000000", "Y": "0.0000000000",
             "Q": "0.0000000000", "V": "NONE"}
    return orjson.dumps({"subscriptionId": 0, "event": event})


def trade(trade_id: int, vid: int, qty: int) -> dict[str, Any]:
    """A ``myTrades`` entry: our BUY order ``vid`` made ``qty`` lots as maker."""
    return {"symbol": "BTCUSDT", "id": trade_id, "orderId": vid, "orderListId": -1,
            "price": INSTR.price_str(PRICE), "qty": INSTR.size_str(qty), "quoteQty": "0.26",
            "commission": "0.00260000", "commissionAsset": "USDT", "time": WALL_MS - 100,
            "isBuyer": True, "isMaker": True, "isBestMatch": True}


class Venue:
    """Plays the venue for one protocol: reads the frames it sends, answers them."""

    def __init__(self) -> None:
        self.log = Log()
        self.proto = protocol(self.log)
        self.sent: list[dict[str, Any]] = []  # every frame the protocol asked to send

    def start(self, proc: Procedure[Any]) -> Request | Done[Any]:
        return self.proto.step(proc, None, WALL)

    def reconciling(self, proc: Procedure[Any]) -> Request | Done[Any]:
        """Start reconciliation ``proc`` and answer its first request, the account's
        balances (``account.status``: an empty account): its next step."""
        _, step = self.answer(proc, self.start(proc), {"status": 200, "result": {
            "balances": []}})
        assert self.sent[-1]["method"] == api.ACCOUNT_STATUS
        return step

    def send(self, request: Request | Done[Any]) -> int:
        """The protocol's frame for ``request``, as the shell would write it; its id."""
        assert isinstance(request, Request), f"no request to send: {request}"
        request_id, frame = self.proto.send(request, WALL)
        self.sent.append(orjson.loads(frame))
        return request_id

    def receive(self, frame: bytes) -> list[Output]:
        self.proto.receive(frame, MONO + RTT, WALL)
        return self.proto.outputs()

    def answer(self, proc: Procedure[Any], request: Request | Done[Any],
               body: dict[str, Any]) -> tuple[list[Output], Request | Done[Any]]:
        """Send ``request``, answer it with ``body`` (``status`` and ``result``/``error``),
        resume ``proc`` with the response: what came out, and the procedure's next step."""
        request_id = self.send(request)
        out = self.receive(orjson.dumps({"id": request_id, **body}))
        answers = [o for o in out if isinstance(o, Answered)]
        assert [a.request_id for a in answers] == [request_id]
        assert answers[0].response is not None and answers[0].read_ns == MONO + RTT
        step = self.proto.step(proc, answers[0].response, WALL)
        return out + self.proto.outputs(), step

    def place_and_ack(self, order_id: int = 1, vid: int = VID) -> None:
        proc = self.proto.place(order_id, Side.BUY, PRICE, LOTS, blocked="")
        out, step = self.answer(proc, self.start(proc),
                                {"status": 200, "result": order_obj(order_id, vid, "NEW")})
        assert events(out) == [update(order_id, OrderStatus.NEW, 0, WALL - 5 * MS)]
        assert step == Done(None)


def events(out: list[Output]) -> list[ExecutionEvent]:
    return [o for o in out if isinstance(o, OrderUpdate | Fill)]


def update(order_id: int, status: OrderStatus, filled: int, ts_ns: int = WALL,
           reason: str = "") -> OrderUpdate:
    return OrderUpdate(order_id, status, Side.BUY, PRICE, LOTS, filled, reason, ts_ns)


def fill(order_id: int, size: int, trade_id: int, ts_ns: int = WALL) -> Fill:
    # commission 0.0026 USDT = 26,000,000 notional units of 1e-10 USDT
    return Fill(order_id, Side.BUY, PRICE, size, 26_000_000, True, ts_ns, trade_id)


def test_place_ack_partial_fill_fill_reports_each_state_once() -> None:
    venue = Venue()
    proc = venue.proto.place(1, Side.BUY, PRICE, LOTS, blocked="")
    request = venue.start(proc)
    out, step = venue.answer(proc, request, {"status": 200,
                                             "result": order_obj(1, VID, "NEW")})
    [frame] = venue.sent
    params = frame["params"]
    assert frame["method"] == api.ORDER_PLACE
    assert (params["symbol"], params["side"], params["type"]) == ("BTCUSDT", "BUY", "LIMIT_MAKER")
    assert (params["price"], params["quantity"]) == ("65000.00", "0.00010000")
    assert params["newClientOrderId"] == "mm-1" and params["timestamp"] == WALL_MS
    assert params["apiKey"] == KEY and SECRET not in orjson.dumps(frame).decode()
    assert wire.verify_signature(SECRET, params)
    assert events(out) == [update(1, OrderStatus.NEW, 0, WALL - 5 * MS)]
    assert step == Done(None) and venue.proto.open_order_count() == 1
    # the stream's NEW after the ack changes nothing the daemon sees
    assert venue.receive(report(1, VID, "NEW", "NEW", 0)) == []
    out = venue.receive(report(1, VID, "TRADE", "PARTIALLY_FILLED", 4_000, last=4_000,
                               trade_id=101))
    assert out == [fill(1, 4_000, 101), update(1, OrderStatus.PARTIALLY_FILLED, 4_000)]
    out = venue.receive(report(1, VID, "TRADE", "FILLED", LOTS, last=6_000, trade_id=102))
    assert out == [fill(1, 6_000, 102), update(1, OrderStatus.FILLED, LOTS)]
    assert venue.proto.open_order_count() == 0 and venue.proto.max_trade_id == 102


def test_a_venue_reject_closes_the_place_with_the_binance_code() -> None:
    venue = Venue()
    proc = venue.proto.place(1, Side.BUY, PRICE, LOTS, blocked="")
    out, step = venue.answer(proc, venue.start(proc), {
        "status": 400, "error": {"code": api.NEW_ORDER_REJECTED, "msg": wire.MSG_WOULD_TAKE}})
    rejected = OrderUpdate(1, OrderStatus.REJECTED, Side.BUY, PRICE, LOTS, 0,
                           "-2010 Order would immediately match and take.", WALL)
    assert events(out) == [rejected]
    assert step == Done(None) and venue.proto.open_order_count() == 0
    # an order id once used is not placed again
    again = venue.proto.place(1, Side.BUY, PRICE, LOTS, blocked="")
    assert venue.start(again) == Done(None)
    assert events(venue.proto.outputs()) == [rejected._replace(reason="duplicate order id")]
    assert len(venue.sent) == 1


def test_a_response_to_an_unknown_request_id_changes_nothing() -> None:
    venue = Venue()
    venue.place_and_ack()
    stray = {"status": 200, "result": order_obj(1, VID, "CANCELED")}
    assert venue.receive(orjson.dumps({"id": 999, **stray})) == []
    # nor does the late answer of a request the shell gave up on (timed out)
    cancel = venue.proto.cancel(1, connected=True)
    request_id = venue.send(venue.start(cancel))
    assert venue.sent[-1]["method"] == api.ORDER_CANCEL
    venue.proto.forget(request_id)
    out = venue.proto.step(cancel, RequestFailed("timeout"), WALL)
    assert out == Done(None)
    timed_out = OrderUpdate(1, OrderStatus.REJECTED, Side.BUY, PRICE, LOTS, 0, "timeout", WALL)
    assert venue.proto.outputs() == [timed_out, Suspect("cancel timed out")]
    assert venue.receive(orjson.dumps({"id": request_id, **stray})) == []
    assert venue.proto.open_order_count() == 1  # the stream, or a reconcile, will tell


def test_a_duplicate_execution_report_is_not_a_second_fill() -> None:
    venue = Venue()
    venue.place_and_ack()
    partial = report(1, VID, "TRADE", "PARTIALLY_FILLED", 4_000, last=4_000, trade_id=101)
    assert venue.receive(partial) == [fill(1, 4_000, 101),
                                      update(1, OrderStatus.PARTIALLY_FILLED, 4_000)]
    assert venue.receive(partial) == []
    assert venue.proto.orders[1].filled() == 4_000


def test_a_rate_limited_answer_holds_places_until_the_venue_window_ends() -> None:
    venue = Venue()
    proc = venue.proto.place(1, Side.BUY, PRICE, LOTS, blocked="")
    out, step = venue.answer(proc, venue.start(proc), {
        "status": 429, "error": {"code": api.TOO_MANY_REQUESTS, "msg": "Too many requests."},
        "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                        "intervalNum": 1, "limit": 30, "count": 31}]})
    # the weight limit is per wall-clock minute: it lifts in 300 ms (monotonic, from receipt)
    until = MONO + RTT + 300 * MS
    assert out[0] == Hold(until)
    assert events(out) == [OrderUpdate(1, OrderStatus.REJECTED, Side.BUY, PRICE, LOTS, 0,
                                       "-1003 Too many requests.", WALL)]
    assert step == Done(None)
    assert venue.proto.limits.held(until - 1) and not venue.proto.limits.held(until)
    [warning] = venue.log.named("gateway_rate_limited")
    assert warning["retry_in_s"] == 0.3
    # while held the shell refuses places: the protocol sends nothing and says why
    held = venue.proto.place(2, Side.BUY, PRICE, LOTS, blocked="rate_limited")
    assert venue.start(held) == Done(None) and len(venue.sent) == 1
    assert events(venue.proto.outputs()) == [OrderUpdate(2, OrderStatus.REJECTED, Side.BUY,
                                                         PRICE, LOTS, 0, "rate_limited", WALL)]
    # a retryAfter from the venue extends the hold to it; a shorter one never shortens it
    proc = venue.proto.place(3, Side.BUY, PRICE, LOTS, blocked="")
    out, _ = venue.answer(proc, venue.start(proc), {
        "status": 418, "error": {"code": api.TOO_MANY_REQUESTS, "msg": "banned",
                                 "data": {"retryAfter": WALL_MS + 2_000}}})
    assert out[0] == Hold(MONO + RTT + 2_000 * MS)
    proc = venue.proto.place(4, Side.BUY, PRICE, LOTS, blocked="")
    out, _ = venue.answer(proc, venue.start(proc), {
        "status": 429, "error": {"code": api.TOO_MANY_REQUESTS, "msg": "slow down",
                                 "data": {"retryAfter": WALL_MS + 1_000}}})
    assert out[0] == Hold(MONO + RTT + 2_000 * MS)


def test_a_reconcile_recovers_a_fill_the_stream_missed() -> None:
    venue = Venue()
    venue.proto.resume_fills_after(100)  # the journal's highest exec id
    venue.place_and_ack()
    proc = venue.proto.reconcile()
    # the open orders first: the order is open there, 4,000 lots filled
    listed = order_obj(1, VID, "PARTIALLY_FILLED", executed=4_000)
    out, step = venue.answer(proc, venue.reconciling(proc), {"status": 200, "result": [listed]})
    assert venue.sent[-1]["method"] == api.OPEN_ORDERS_STATUS and events(out) == []
    # then the account's trades after the last one seen: one the stream never brought
    out, step = venue.answer(proc, step, {"status": 200, "result": [trade(101, VID, 4_000)]})
    asked = venue.sent[-1]
    assert asked["method"] == api.MY_TRADES and asked["params"]["fromId"] == 101
    assert events(out) == [fill(1, 4_000, 101, (WALL_MS - 100) * MS),
                           update(1, OrderStatus.PARTIALLY_FILLED, 4_000)]
    assert step == Done(None) and len(venue.sent) == 4  # nothing left to cancel
    assert venue.proto.fills_recovered == 1 and venue.proto.max_trade_id == 101
    # the stream's report of that trade, late, is not a second fill
    assert venue.receive(report(1, VID, "TRADE", "PARTIALLY_FILLED", 4_000, last=4_000,
                                trade_id=101)) == []


def test_a_reconcile_cancels_an_order_of_ours_nobody_holds_and_ends_one_gone() -> None:
    venue = Venue()
    venue.proto.resume_fills_after(100)
    venue.place_and_ack()  # order 1: live for the daemon, but gone from the venue meanwhile
    proc = venue.proto.reconcile()
    # order 2 has our prefix (a crashed run's, a place reported failed) and nobody holds it
    stray = order_obj(2, 77, "NEW")
    out, step = venue.answer(proc, venue.reconciling(proc), {"status": 200, "result": [stray]})
    out2, step = venue.answer(proc, step, {"status": 200, "result": []})  # myTrades
    # order 1 ended unseen with nothing filled: CANCELED; order 2 is cancelled at the venue
    assert events(out + out2) == [update(1, OrderStatus.CANCELED, 0,
                                         reason="not open at the venue")]
    [unwanted] = venue.log.named("gateway_unwanted_order")
    assert unwanted["venue_order_id"] == 77
    assert venue.proto.open_order_count() == 1
    cancel = dict(stray, status="CANCELED", origClientOrderId=cid(2), clientOrderId="x")
    out, step = venue.answer(proc, step, {"status": 200, "result": cancel})
    asked = venue.sent[-1]
    assert asked["method"] == api.ORDER_CANCEL and asked["params"]["orderId"] == 77
    assert step == Done(None) and venue.proto.open_order_count() == 0
    assert not [o for o in out if isinstance(o, CancelStrays)]


def test_a_fill_after_an_unreadable_event_does_not_skip_the_fill_it_may_have_carried() -> None:
    venue = Venue()
    venue.proto.resume_fills_after(100)
    venue.place_and_ack()
    # an execution report we cannot read (trade 101, say), then a readable one (trade 102)
    out = venue.receive(orjson.dumps({"subscriptionId": 0, "event": {"e": "executionReport"}}))
    assert Suspect("undecodable event") in out
    out = venue.receive(report(1, VID, "TRADE", "PARTIALLY_FILLED", 6_000, last=2_000,
                               trade_id=102))
    assert events(out)[0] == fill(1, 2_000, 102, WALL_MS * MS)
    proc = venue.proto.reconcile()
    listed = order_obj(1, VID, "PARTIALLY_FILLED", executed=6_000)
    _, step = venue.answer(proc, venue.reconciling(proc), {"status": 200, "result": [listed]})
    # myTrades from the last trade seen before the unreadable event, not from 103
    out, step = venue.answer(proc, step, {"status": 200, "result": [
        trade(101, VID, 4_000), trade(102, VID, 2_000)]})
    assert venue.sent[-1]["params"]["fromId"] == 101
    assert [(f.exec_id, f.size) for f in events(out) if isinstance(f, Fill)] == [(101, 4_000)]
    assert step == Done(None)


def test_a_failed_first_connection_does_not_recover_the_accounts_history_later() -> None:
    """Without a journal watermark the newest trade at start is where fills begin: a gap
    marked by a failed first attempt must not send a later recovery back to trade 1."""
    venue = Venue()
    venue.proto.disconnected()  # the first attempt failed
    proc = venue.proto.reconcile()
    _, step = venue.answer(proc, venue.reconciling(proc), {"status": 200, "result": []})
    _, step = venue.answer(proc, step, {"status": 200, "result": [trade(500, 99, 1_000)]})
    assert step == Done(None) and venue.proto.max_trade_id == 500
    venue.proto.disconnected()  # later, a lost connection
    proc = venue.proto.reconcile()
    _, step = venue.answer(proc, venue.reconciling(proc), {"status": 200, "result": []})
    venue.send(step)
    assert venue.sent[-1]["method"] == api.MY_TRADES
    assert venue.sent[-1]["params"]["fromId"] == 501
