"""The sim venue's book-keeping on its own (mmdaemon.sim.accounts) and its fault rules
(mmdaemon.sim.faults): no websocket, no matching engine.

Units as in the module: prices ticks (0.01 USDT), sizes lots (1e-8 BTC), quote amounts
notional units (1e-10 USDT).
"""

from __future__ import annotations

from decimal import Decimal

import orjson

from mmdaemon.model import BINANCE_SPOT_BTCUSDT, Fill, Side
from mmdaemon.sim.accounts import Account, Ledger, OpenOrder, VenueOrder
from mmdaemon.sim.faults import Faults
from mmdaemon.venues import binance_api as api

INSTR = BINANCE_SPOT_BTCUSDT
ASSETS = api.Assets("BTC", "USDT")
BASE_LOTS = 50_000_000  # 0.5 BTC
QUOTE_UNITS = 30_000 * 10**10  # 30,000 USDT
PX = 6_000_000  # 60,000.00 USDT
MS = 1_723_161_254_000


def ledger() -> Ledger:
    return Ledger(INSTR, ASSETS, {key: Account(BASE_LOTS, QUOTE_UNITS) for key in ("k1", "k2")})


def opened(book: Ledger, key: str, order_id: int, client_id: str, side: Side,
           price: int = PX, size: int = 100_000) -> VenueOrder:
    order = VenueOrder(key, order_id, client_id, side, price, size, MS)
    book.add_open(order)
    book.remember(order)
    return order


def fill(order: VenueOrder, size: int, fee: int, price: int = PX) -> Fill:
    return Fill(order.order_id, order.side, price, size, fee, True, MS * 1_000_000, 0)


def test_fills_move_balances_exactly_and_number_trades_across_accounts() -> None:
    book = ledger()
    buy = opened(book, "k1", 1, "mm-1", Side.BUY)  # 0.001 BTC at 60,000: 60 USDT
    sell = opened(book, "k2", 2, "mm-1", Side.SELL)
    first = book.record_fill(buy, fill(buy, 40_000, fee=24_000_000), MS + 1)
    assert (buy.executed, buy.cum_quote, buy.status) == (40_000, PX * 40_000, "PARTIALLY_FILLED")
    book.record_fill(buy, fill(buy, 60_000, fee=36_000_000), MS + 2)
    assert (buy.executed, buy.status, buy.update_ms) == (100_000, "FILLED", MS + 2)
    third = book.record_fill(sell, fill(sell, 100_000, fee=-6_000_000), MS + 3)  # a rebate
    k1, k2 = book.accounts["k1"], book.accounts["k2"]
    assert (k1.base_lots, k1.position_lots) == (BASE_LOTS + 100_000, 100_000)
    assert k1.quote_units == QUOTE_UNITS - PX * 100_000 - 60_000_000
    assert (k2.base_lots, k2.position_lots) == (BASE_LOTS - 100_000, -100_000)
    assert k2.quote_units == QUOTE_UNITS + PX * 100_000 + 6_000_000
    assert book.position_lots == 0
    assert [t.trade_id for t in book.trades["k1"]] == [1, 2]  # ids shared by all accounts
    assert third.trade_id == 3 and book.trades["k2"] == [third]
    assert first == api.AccountTrade(1, 1, -1, PX, 40_000, Decimal("24.00000000"),
                                     Decimal("0.0024000000"), "USDT", MS + 1, True, True, True)
    assert third.commission == Decimal("-0.0006000000") and not third.is_buyer


def test_a_fill_after_the_client_was_told_final_keeps_the_final_status() -> None:
    book = ledger()
    order = opened(book, "k1", 1, "mm-1", Side.BUY)
    book.close(order, "CANCELED", MS + 5)
    book.record_fill(order, fill(order, 30_000, fee=0), MS + 6)  # it was still travelling
    assert order.status == "CANCELED" and order.executed == 30_000
    assert book.accounts["k1"].position_lots == 30_000


def test_open_orders_lock_balance_and_decide_what_is_affordable() -> None:
    book = ledger()
    bid = opened(book, "k1", 1, "mm-1", Side.BUY, PX, 100_000)
    opened(book, "k1", 2, "mm-2", Side.SELL, PX + 100, 20_000_000)
    book.record_fill(bid, fill(bid, 40_000, fee=0), MS)
    locked_quote = PX * 60_000  # what is left of the bid
    assert book.locked("k1") == (20_000_000, locked_quote)
    assert book.locked("k2") == (0, 0)
    free_quote = QUOTE_UNITS - PX * 40_000 - locked_quote
    free_base = BASE_LOTS + 40_000 - 20_000_000
    assert book.affordable("k1", Side.BUY, 1, free_quote)
    assert not book.affordable("k1", Side.BUY, 1, free_quote + 1)
    assert book.affordable("k1", Side.SELL, PX, free_base)
    assert not book.affordable("k1", Side.SELL, PX, free_base + 1)
    assert book.balances("k1") == [
        ("BTC", "0.30040000", "0.20000000"),
        ("USDT", "29940.00000000", "36.00000000"),  # 30,000 - 24 paid - 36 locked
    ]


def test_the_ledger_reports_a_free_balance_as_it_is_the_matching_enforces_it() -> None:
    # the ledger only books: an order opened without the matching's check shows negative
    book = Ledger(INSTR, ASSETS, {"k1": Account(0, 0)})
    opened(book, "k1", 1, "mm-1", Side.SELL, PX, 100_000)
    assert not book.affordable("k1", Side.SELL, PX, 1)
    assert book.balances("k1")[0] == ("BTC", "-0.00100000", "0.00100000")


def test_position_event_lists_both_assets_with_the_last_fill_time() -> None:
    book = ledger()
    order = opened(book, "k2", 1, "mm-1", Side.SELL)
    book.record_fill(order, fill(order, 100_000, fee=0), MS + 9)
    event = book.position_event("k2", MS + 10)
    assert event == {
        "e": "outboundAccountPosition", "E": MS + 10, "u": MS + 9,
        "B": [{"a": "BTC", "f": "0.49900000", "l": "0.00000000"},
              {"a": "USDT", "f": "30060.00000000", "l": "0.00000000"}],
    }
    assert isinstance(orjson.dumps(event), bytes)


def test_orders_are_found_only_by_their_own_account_and_matching_ids() -> None:
    book = ledger()
    a = opened(book, "k1", 1, "mm-1", Side.BUY)
    opened(book, "k2", 2, "mm-1", Side.BUY)  # same client id, other account
    assert book.find_open("k1", 1, None) is a
    assert book.find_open("k1", None, "mm-1") is a
    assert book.find_open("k1", 1, "mm-1") is a
    assert book.find_open("k1", 1, "mm-9") is None  # ids name different orders
    assert book.find_open("k1", 2, None) is None  # k2's order
    assert book.find_open("k1", None, None) is None
    book.close(a, "CANCELED", MS + 1)
    assert book.find_open("k1", 1, None) is None
    assert book.find("k1", 1, None) is a  # order.status still sees it
    again = opened(book, "k1", 3, "mm-1", Side.SELL)  # the client id reused
    assert book.find("k1", None, "mm-1") is again  # the newest
    assert book.find("k1", 1, "mm-1") is a
    assert book.find("k2", 1, None) is None
    assert book.open_orders() == [
        OpenOrder("k2", 2, "mm-1", Side.BUY, PX, 100_000, 0, "NEW"),
        OpenOrder("k1", 3, "mm-1", Side.SELL, PX, 100_000, 0, "NEW"),
    ]
    assert book.order(1) == OpenOrder("k1", 1, "mm-1", Side.BUY, PX, 100_000, 0, "CANCELED")
    assert book.order(99) is None


def test_select_trades_by_id_window_order_and_limit() -> None:
    book = ledger()
    orders = [opened(book, "k1", i, f"mm-{i}", Side.BUY) for i in (1, 2)]
    hour = 3_600_000
    for n in range(6):  # trades 1..6, one an hour, alternating orders
        order = orders[n % 2]
        book.record_fill(order, fill(order, 1_000, fee=0), MS + n * hour)

    def ids(**kw: int | None) -> list[int]:
        args: dict[str, int | None] = {"order_id": None, "from_id": None, "start_ms": None,
                                       "end_ms": None}
        args.update(kw)
        limit = args.pop("limit", None) or 500
        return [t.trade_id for t in book.select_trades("k1", limit=limit, **args)]

    assert ids() == [1, 2, 3, 4, 5, 6]
    assert ids(limit=2) == [5, 6]  # the most recent
    assert ids(from_id=3, limit=2) == [3, 4]
    assert ids(order_id=2) == [2, 4, 6]
    assert ids(order_id=2, from_id=3) == [4, 6]
    assert ids(start_ms=MS + hour, end_ms=MS + 3 * hour) == [2, 3, 4]
    assert ids(start_ms=MS + 4 * hour) == [5, 6]  # 24 h from the start
    assert ids(end_ms=MS + hour) == [1, 2]  # 24 h up to the end
    assert ids(end_ms=MS - 25 * hour) == []
    assert book.select_trades("k2", order_id=None, from_id=None, start_ms=None, end_ms=None,
                              limit=500) == []


def test_user_ids_follow_the_order_of_the_keys() -> None:
    book = ledger()
    assert (book.uid("k1"), book.uid("k2")) == (1, 2)


# ---- faults ----------------------------------------------------------------------------------


def request(method: str) -> bytes:
    return orjson.dumps({"id": 1, "method": method, "params": {}})


def test_delays_and_holds_count_down_per_method() -> None:
    faults = Faults()
    assert not faults.timed and faults.due == 0
    faults.delay_requests("order.place", 1.5, count=2)
    faults.hold_responses("order.place", 0.4)
    faults.hold_responses("order.cancel", 0.2, count=3)
    assert faults.timed and faults.due == 6 and faults.delays_left("order.place") == 2
    assert faults.timing(request("order.status")) == (0.0, 0.0)  # no fault: nothing used
    assert faults.timing(request("v3/order.place")) == (1.5, 0.4)  # the prefix is ignored
    assert faults.delays_left("order.place") == 1
    assert faults.timing(request("order.place")) == (1.5, 0.0)  # the hold is used up
    assert faults.timing(request("order.place")) == (0.0, 0.0)
    assert faults.due == 3 and faults.delays_left("order.place") == 0
    faults.hold_responses("order.cancel", 0.2, count=0)  # lifted
    assert not faults.timed and faults.due == 0


def test_frames_that_are_not_requests_with_a_method_take_no_fault() -> None:
    faults = Faults()
    faults.delay_requests("ping", 1.0)
    for frame in (b"{not json", b"[1, 2]", b'{"id": 1}', b'{"method": 5}'):
        assert faults.timing(frame) == (0.0, 0.0)
    assert faults.due == 1


def test_only_fills_of_orders_with_a_held_response_are_counted() -> None:
    faults = Faults()
    faults.unanswered.update({7, 8})
    faults.note_fill(7)
    faults.note_fill(9)
    faults.note_fill(7)
    assert faults.fills_before_response == 2
