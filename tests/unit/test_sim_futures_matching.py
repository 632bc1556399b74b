"""The futures sim's matching for one symbol, on synthetic books (no server): reduce-only
orders expire when the position they reduce is gone, funding's sign and amount."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

from mmdaemon.book import OrderBook
from mmdaemon.exchange.fill_model import PaperVenue
from mmdaemon.model import BINANCE_USDM_BTCUSDT, BookUpdate, Side
from mmdaemon.sim.futures_accounts import FuturesLedger
from mmdaemon.sim.futures_matching import FuturesMatching

BTC = BINANCE_USDM_BTCUSDT
T0 = 1_723_161_254_000_000_000
SIZE = 1_000_000  # displayed lots per level: far more than ours


class Market:
    """One account's matching on a book the test moves, one ns step at a time."""

    def __init__(self) -> None:
        self.ledger = FuturesLedger({"BTCUSDT": BTC}, ["k"], Fraction(100_000))
        ids: Iterator[int] = iter(range(1, 1_000))
        self.matching = FuturesMatching(BTC, PaperVenue(BTC, 0, "0", "0"), self.ledger,
                                        lambda: next(ids), lambda: 1_000)
        self.book = OrderBook()
        self.ns = T0
        self.move(600_000, 600_010)

    def move(self, bid: int, ask: int) -> None:
        self.ns += 1
        self.matching.advance(self.ns)
        self.book.apply(BookUpdate(True, [(bid, SIZE)], [(ask, SIZE)], self.ns, self.ns, 0,
                                   self.ns))
        self.matching.on_book(self.book, self.ns)

    def events(self, kind: str) -> list[dict[str, object]]:
        return [e["o"] for _, e in self.matching.outbox if e["e"] == kind]  # type: ignore[misc]


def test_a_reduce_only_order_expires_when_the_position_closes_without_it() -> None:
    m = Market()
    m.matching.place("k", Side.BUY, 600_000, 5, "open", False)
    m.move(599_990, 600_000)  # the ask comes down to our bid: bought 0.005
    assert m.ledger.accounts["k"].positions["BTCUSDT"].amount == 5
    reduce = m.matching.place("k", Side.SELL, 600_030, 5, "reduce", True)
    m.matching.place("k", Side.SELL, 600_015, 5, "close", False)
    m.move(600_015, 600_025)  # the bid comes up to the plain sell: flat
    assert m.ledger.accounts["k"].positions["BTCUSDT"].amount == 0
    assert reduce.status == "EXPIRED" and m.ledger.open_orders("k") == []
    expired = [o for o in m.events("ORDER_TRADE_UPDATE") if o["x"] == "EXPIRED"]
    assert [(o["c"], o["X"], o["R"]) for o in expired] == [("reduce", "EXPIRED", True)]
    m.move(600_030, 600_040)  # the market reaches its price: it is gone, nothing fills
    assert m.ledger.accounts["k"].positions["BTCUSDT"].amount == 0


def test_a_reduce_only_order_that_still_reduces_stays() -> None:
    m = Market()
    m.matching.place("k", Side.BUY, 600_000, 10, "open", False)
    m.move(599_990, 600_000)
    reduce = m.matching.place("k", Side.SELL, 600_030, 5, "reduce", True)
    m.matching.place("k", Side.SELL, 600_015, 5, "half", False)
    m.move(600_015, 600_025)  # half the position sold: the rest is still long
    assert reduce.status == "NEW" and reduce in m.ledger.open_orders("k")


def test_funding_longs_pay_and_shorts_receive_at_the_mark() -> None:
    m = Market()
    m.matching.place("k", Side.BUY, 600_000, 10, "open", False)
    m.move(599_990, 600_000)  # long 0.010; mark (59999.0 + 60000.0) / 2
    m.matching.outbox.clear()
    assert m.matching.settle_funding(Fraction(1, 10_000), 8 * 3_600_000) == 1
    (event,) = [e for _, e in m.matching.outbox if e["e"] == "ACCOUNT_UPDATE"]
    # 0.010 x 59999.5 x 0.0001 = 0.0599995 USDT, paid
    assert event["a"]["m"] == "FUNDING_FEE" and event["a"]["B"][0]["bc"] == "-0.05999950"
    assert event["T"] == 8 * 3_600_000
    (entry,) = m.ledger.income["k"]
    assert (entry.income_type, entry.amount) == ("FUNDING_FEE", Fraction(-599_995, 10**7))
    assert m.matching.settle_funding(Fraction(-1, 10_000), 16 * 3_600_000) == 1
    assert m.ledger.income["k"][-1].amount == Fraction(599_995, 10**7)  # negative rate: paid
