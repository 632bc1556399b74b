# mypy: disable-error-code="import-not-found,import-untyped"
# (the anchors' libraries are in their own venv, not in the one mypy runs in)
"""The anchors of bench/command.py: other engines on the same recording, each as a process of
its own in the anchors' venv (bench/anchors/pyproject.toml, uv.lock).

Run: ``bench/anchors/.venv/bin/python bench/anchors/run.py {hftbacktest,nautilus} FILE...``
(prints one JSON object: what it did, and the seconds of each phase).

Both read the recording as ``mmdaemon replay`` does (``<recv_ns> <frame>`` lines, gzip), the
depth stream with its REST snapshot (the updates it already holds dropped, by Binance's
rule) and the trades (the bookTicker stream is not used: neither
engine's book takes it), and run a strategy that quotes like ours at its simplest: one
post-only bid at the best bid and one ask at the best ask, 0.001 BTC each, moved when the
best prices move.

- **hftbacktest**: the frames converted to its event array (as its own
  ``hftbacktest.data.utils.binancefutures.convert`` does for futures, in numpy rows; spot
  frames have no ``T`` on depth updates nor ``X`` on trades, so that converter cannot read
  them), its ``correct_local_timestamp`` / ``correct_event_order`` / ``validate_event_order``,
  then a ``HashMapMarketDepthBacktest`` (risk-averse queue model, no partial fills, 10 us
  order latency) driven by a numba strategy (bench/anchors/hbt_quoter.py) that re-quotes
  every 100 ms of market time (its examples' pattern: ``elapse``, then act). numba compiles
  it in every process (a function of hftbacktest's backtest object cannot be cached): its
  own phase in the result.
- **nautilus**: NautilusTrader's ``BacktestEngine`` on a Binance venue (cash account, L2 book
  by price level), the frames as ``OrderBookDeltas`` (one per frame, the snapshot a clear
  then adds) and ``TradeTick``; a ``Strategy`` that on each book update cancels and
  re-places its two orders when the best prices moved. Logging is bypassed.
"""

from __future__ import annotations

import contextlib
import gzip
import sys
import time
from collections.abc import Iterator
from typing import Any

import orjson

LOT_BTC = 0.001  # each quote's size
PRICE_DP = 2  # BTCUSDT's tick 0.01
SIZE_DP = 5  # BTCUSDT's lot 0.00001


class Phases:
    """Wall and CPU seconds of each phase of a run, by name."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def mark(self, name: str) -> None:
        """The phase ``name`` ends now."""
        wall, cpu = time.perf_counter(), time.process_time()
        self.phases[f"{name}_s"] = round(wall - self._wall, 3)
        self.phases[f"{name}_cpu_s"] = round(cpu - self._cpu, 3)
        self._wall, self._cpu = wall, cpu


def frames(paths: list[str]) -> Iterator[tuple[int, Any]]:
    """``(recv_ns, decoded frame)`` of every line of the recordings, in order."""
    loads = orjson.loads
    for path in paths:
        with open(path, "rb") as f:
            data = gzip.decompress(f.read())
        for line in data.splitlines():
            cut = line.index(b" ")
            yield int(line[:cut]), loads(line[cut + 1:])


# ---- hftbacktest ---------------------------------------------------------------------------


def hftbacktest_events(paths: list[str]) -> Any:
    """The recording as hftbacktest's event array, exchange times from the frames (depth:
    ``E``, trades: ``T``, the snapshot: its receive time), corrected and validated."""
    import numpy as np
    from hftbacktest import (
        BUY_EVENT,
        DEPTH_CLEAR_EVENT,
        DEPTH_EVENT,
        DEPTH_SNAPSHOT_EVENT,
        SELL_EVENT,
        TRADE_EVENT,
    )
    from hftbacktest.binding import event_dtype
    from hftbacktest.data.validation import (
        correct_event_order,
        correct_local_timestamp,
        validate_event_order,
    )

    rows: list[tuple[int, int, int, float, float, int, int, float]] = []
    add = rows.append
    synced = 0  # the last snapshot's update id: older updates are in it (Binance's rule)
    for recv_ns, msg in frames(paths):
        data = msg.get("data")
        if data is None:
            if "lastUpdateId" in msg:  # the REST snapshot: the book replaced from here
                synced = msg["lastUpdateId"]
                for side, levels in ((BUY_EVENT, msg["bids"]), (SELL_EVENT, msg["asks"])):
                    if levels:
                        add((DEPTH_CLEAR_EVENT | side, recv_ns, recv_ns, float(levels[-1][0]),
                             0.0, 0, 0, 0.0))
                        for px, qty in levels:
                            add((DEPTH_SNAPSHOT_EVENT | side, recv_ns, recv_ns, float(px),
                                 float(qty), 0, 0, 0.0))
            continue
        kind = data.get("e")
        if kind == "depthUpdate" and data["u"] > synced:
            exch_ns = data["E"] * 1_000_000
            for px, qty in data["b"]:
                add((DEPTH_EVENT | BUY_EVENT, exch_ns, recv_ns, float(px), float(qty), 0, 0, 0.0))
            for px, qty in data["a"]:
                add((DEPTH_EVENT | SELL_EVENT, exch_ns, recv_ns, float(px), float(qty), 0, 0,
                     0.0))
        elif kind == "trade":
            add((TRADE_EVENT | (SELL_EVENT if data["m"] else BUY_EVENT), data["T"] * 1_000_000,
                 recv_ns, float(data["p"]), float(data["q"]), 0, 0, 0.0))
    events = np.array(rows, dtype=event_dtype)
    events = correct_local_timestamp(events, 0)
    events = correct_event_order(events, np.argsort(events["exch_ts"], kind="mergesort"),
                                 np.argsort(events["local_ts"], kind="mergesort"))
    validate_event_order(events)
    return events


def _backtest(events: Any) -> Any:
    """hftbacktest's backtest of ``events``: Binance spot's grids, no fees, 10 us each way."""
    from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest

    asset = (BacktestAsset().data([events]).linear_asset(1.0)
             .constant_order_latency(10_000, 10_000).risk_adverse_queue_model()
             .no_partial_fill_exchange().trading_value_fee_model(0.0, 0.0)
             .tick_size(10 ** -PRICE_DP).lot_size(10 ** -SIZE_DP).last_trades_capacity(0))
    return HashMapMarketDepthBacktest([asset])


def run_hftbacktest(paths: list[str]) -> dict[str, Any]:
    clock = Phases()
    events = hftbacktest_events(paths)
    clock.mark("convert")
    # numba cannot cache a function taking hftbacktest's backtest (it holds pointers): it
    # compiles in every process, here on the first thousand events so its cost shows apart
    from hbt_quoter import quote

    warm = _backtest(events[:1000])
    quote(warm, 100_000_000, LOT_BTC)
    warm.close()
    clock.mark("compile")
    hbt = _backtest(events)
    steps, sent = quote(hbt, 100_000_000, LOT_BTC)
    fills = int(hbt.state_values(0).num_trades)
    position = float(hbt.position(0))
    hbt.close()
    clock.mark("backtest")
    return {"engine": "hftbacktest", "events": len(events), "steps": steps,
            "orders_sent": sent, "fills": fills, "position_btc": round(position, 6),
            **clock.phases}


# ---- NautilusTrader ------------------------------------------------------------------------


def nautilus_data(paths: list[str], instrument_id: Any) -> tuple[list[Any], int]:
    """The recording as NautilusTrader data: ``OrderBookDeltas`` per depth frame (the
    snapshot: a clear, then every level added), ``TradeTick`` per trade; and how many
    deltas."""
    from nautilus_trader.model.book import OrderBook
    from nautilus_trader.model.data import (
        BookOrder,
        OrderBookDelta,
        OrderBookDeltas,
        TradeTick,
    )
    from nautilus_trader.model.enums import (
        AggressorSide,
        BookAction,
        BookType,
        OrderSide,
        RecordFlag,
    )
    from nautilus_trader.model.identifiers import TradeId
    from nautilus_trader.model.objects import Price, Quantity

    book = OrderBook(instrument_id, BookType.L2_MBP)  # to see where the diffs cross
    last = RecordFlag.F_LAST
    buy, sell = OrderSide.BUY, OrderSide.SELL
    add, update, delete = BookAction.ADD, BookAction.UPDATE, BookAction.DELETE
    out: list[Any] = []
    count = 0
    synced = 0  # the last snapshot's update id: older updates are in it (Binance's rule)
    for recv_ns, msg in frames(paths):
        data = msg.get("data")
        if data is None:
            if "lastUpdateId" not in msg:
                continue
            seq = synced = msg["lastUpdateId"]
            deltas = [OrderBookDelta.clear(instrument_id, seq, recv_ns, recv_ns)]
            for side, levels in ((buy, msg["bids"]), (sell, msg["asks"])):
                for px, qty in levels:
                    deltas.append(OrderBookDelta(
                        instrument_id, add,
                        BookOrder(side, Price.from_str(px[:-8 + PRICE_DP]),
                                  Quantity.from_str(qty[:-8 + SIZE_DP]), 0),
                        0, seq, recv_ns, recv_ns))
        else:
            kind = data.get("e")
            if kind == "trade":
                ts = data["T"] * 1_000_000
                out.append(TradeTick(
                    instrument_id, Price.from_str(data["p"][:-8 + PRICE_DP]),
                    Quantity.from_str(data["q"][:-8 + SIZE_DP]),
                    AggressorSide.SELLER if data["m"] else AggressorSide.BUYER,
                    TradeId(str(data["t"])), ts, recv_ns))
                continue
            if kind != "depthUpdate" or data["u"] <= synced:
                continue
            seq, ts = data["u"], data["E"] * 1_000_000
            deltas = []
            for side, levels in ((buy, data["b"]), (sell, data["a"])):
                for px, qty in levels:
                    size = Quantity.from_str(qty[:-8 + SIZE_DP])
                    deltas.append(OrderBookDelta(
                        instrument_id, delete if size.as_double() == 0 else update,
                        BookOrder(side, Price.from_str(px[:-8 + PRICE_DP]), size, 0),
                        0, seq, ts, recv_ns))
        if not deltas:
            continue
        uncross(book, deltas, instrument_id)
        # the frame's last delta carries F_LAST: the book is whole again after it
        end = deltas[-1]
        deltas[-1] = OrderBookDelta(instrument_id, end.action, end.order, last, end.sequence,
                                    end.ts_event, end.ts_init)
        count += len(deltas)
        out.append(OrderBookDeltas(instrument_id, deltas))
    return out, count


def uncross(book: Any, deltas: list[Any], instrument_id: Any) -> None:
    """``deltas`` applied to ``book``, with deletes added of the levels they cross.

    A level that changes side (a bid price now offered) comes in Binance's diffs as the new
    side's update alone: the venue's book has no crossed levels, so the old side's is gone.
    Our book (mmdaemon.book) and hftbacktest's drop them as the new level comes; the
    NautilusTrader book keeps them, so the recording's deltas say it here: the side this
    frame set at the crossing price stands, the other side's crossing levels are deleted."""
    from nautilus_trader.model.data import BookOrder, OrderBookDelta
    from nautilus_trader.model.enums import BookAction, OrderSide

    for delta in deltas:
        book.apply_delta(delta)
    while True:
        bid, ask = book.best_bid_price(), book.best_ask_price()
        if bid is None or ask is None or bid < ask:
            return
        last = deltas[-1]
        asks_set = any(d.order.side == OrderSide.SELL and d.order.price == ask
                       and d.action != BookAction.DELETE for d in deltas)
        side, price = (OrderSide.BUY, bid) if asks_set else (OrderSide.SELL, ask)
        size = book.best_bid_size() if side == OrderSide.BUY else book.best_ask_size()
        gone = OrderBookDelta(instrument_id, BookAction.DELETE, BookOrder(side, price, size, 0),
                              0, last.sequence, last.ts_event, last.ts_init)
        book.apply_delta(gone)
        deltas.append(gone)


def run_nautilus(paths: list[str]) -> dict[str, Any]:
    from decimal import Decimal

    from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
    from nautilus_trader.config import LoggingConfig, StrategyConfig
    from nautilus_trader.model.currencies import BTC, USDT
    from nautilus_trader.model.enums import AccountType, BookType, OmsType, OrderSide
    from nautilus_trader.model.identifiers import TraderId, Venue
    from nautilus_trader.model.instruments import CurrencyPair
    from nautilus_trader.model.objects import Money, Price, Quantity
    from nautilus_trader.test_kit.providers import TestInstrumentProvider
    from nautilus_trader.trading.strategy import Strategy

    clock = Phases()
    base = TestInstrumentProvider.btcusdt_binance()
    # the venue's real grids: price 0.01, size 0.00001 (the kit's is 0.000001)
    instrument = CurrencyPair(
        base.id, base.raw_symbol, BTC, USDT, PRICE_DP, SIZE_DP,
        Price.from_str("0.01"), Quantity.from_str("0.00001"), 0, 0,
        maker_fee=Decimal(0), taker_fee=Decimal(0),
        min_quantity=Quantity.from_str("0.00001"))
    data, deltas = nautilus_data(paths, instrument.id)
    clock.mark("convert")

    class QuoterConfig(StrategyConfig, frozen=True):  # type: ignore[call-arg,misc]
        """What the quoter needs: nothing but the instrument."""

    class Quoter(Strategy):  # type: ignore[misc]
        """One post-only order at each best price, moved when the best prices move."""

        def __init__(self) -> None:
            super().__init__(QuoterConfig())
            self.quoted: tuple[Any, Any] = (None, None)
            self.qty = Quantity.from_str(f"{LOT_BTC:.{SIZE_DP}f}")
            self.sent = self.fills = self.updates = 0

        def on_start(self) -> None:
            self.subscribe_order_book_deltas(instrument.id, BookType.L2_MBP)

        def on_order_book_deltas(self, deltas: Any) -> None:
            self.updates += 1
            book = self.cache.order_book(instrument.id)
            bid, ask = book.best_bid_price(), book.best_ask_price()
            if bid is None or ask is None or bid >= ask or (bid, ask) == self.quoted:
                return
            self.quoted = (bid, ask)
            self.cancel_all_orders(instrument.id)
            for side, price in ((OrderSide.BUY, bid), (OrderSide.SELL, ask)):
                self.submit_order(self.order_factory.limit(
                    instrument.id, side, self.qty, price, post_only=True))
                self.sent += 1

        def on_order_filled(self, event: Any) -> None:
            self.fills += 1

    engine = BacktestEngine(BacktestEngineConfig(
        trader_id=TraderId("BENCH-001"),
        logging=LoggingConfig(log_level="ERROR", bypass_logging=True)))
    engine.add_venue(venue=Venue("BINANCE"), oms_type=OmsType.NETTING,
                     account_type=AccountType.CASH, base_currency=None,
                     starting_balances=[Money(10_000_000, USDT), Money(100, BTC)],
                     book_type=BookType.L2_MBP)
    engine.add_instrument(instrument)
    engine.add_data(data)
    strategy = Quoter()
    engine.add_strategy(strategy)
    engine.run()
    clock.mark("backtest")
    result = {"engine": "nautilus_trader", "deltas": deltas, "data": len(data),
              "book_updates": strategy.updates, "orders_sent": strategy.sent,
              "fills": strategy.fills, **clock.phases}
    engine.dispose()
    return result


def main() -> None:
    which, paths = sys.argv[1], sys.argv[2:]
    with contextlib.redirect_stdout(sys.stderr):  # the engines' own prints: not the result
        result = run_hftbacktest(paths) if which == "hftbacktest" else run_nautilus(paths)
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")


if __name__ == "__main__":
    main()
