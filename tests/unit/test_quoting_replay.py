"""Replay the bundled real Binance recording through MarketState + Quoter and check the
quote invariants on every quote, for several parameter sets at once (one decoding pass).

Inventory follows a synthetic triangle wave over the whole limit range, and a synthetic fill
at our quote every 97th quote feeds the markout machinery with real mid paths.
"""

from __future__ import annotations

from decimal import ROUND_CEILING
from pathlib import Path

import pytest

from mmdaemon.book import OrderBook
from mmdaemon.feed.recording import read_recording
from mmdaemon.market import MarketState
from mmdaemon.model import (
    BINANCE_SPOT_BTCUSDT,
    BookUpdate,
    Fill,
    Malformed,
    Quote,
    Side,
    TopOfBook,
    Trade,
)
from mmdaemon.quoting import (
    AdverseParams,
    FairValueParams,
    Quoter,
    QuoterParams,
    SizingParams,
    SkewParams,
    SpreadParams,
    VolatilityParams,
)
from mmdaemon.venues.binance import BinanceCodec

DATA = Path(__file__).resolve().parents[2] / "data" / "binance-spot-btcusdt"
FILES = [DATA / "btcusdt_20240808.gz", DATA / "btcusdt_20240809.gz"]
INST = BINANCE_SPOT_BTCUSDT
MIN_NOTIONAL_UNITS = int(
    (INST.min_notional / (INST.tick_size * INST.lot_size)).to_integral_value(ROUND_CEILING)
)

CONFIGS = {
    "default": QuoterParams(),
    "touch_as_pause": QuoterParams(
        fair_value=FairValueParams(mode="l1_imbalance"),
        spread=SpreadParams(base_bps=0.0, vol_mult=0.05, market_spread_fraction=1.0),
        skew=SkewParams(mode="avellaneda_stoikov", gamma=1e-4),
        adverse=AdverseParams(toxic_action="pause", toxic_min_markouts=3),
    ),
    "depth_glft_rolling": QuoterParams(
        fair_value=FairValueParams(mode="depth_imbalance", depth_levels=10),
        volatility=VolatilityParams(estimator="rolling", window_samples=100),
        spread=SpreadParams(base_bps=0.5, maker_fee_bps=-0.1),
        skew=SkewParams(mode="glft"),
        adverse=AdverseParams(toxic_action="widen", toxic_threshold_bps=0.05),
    ),
    "small_size_linear": QuoterParams(
        fair_value=FairValueParams(mode="mid"),
        spread=SpreadParams(base_bps=0.0, vol_mult=0.0),
        skew=SkewParams(linear_coef_bps=0.01),
        # 10,000 lots = 0.0001 BTC ~ 6.2 USDT: the halved side falls under the 5 USDT minimum
        sizing=SizingParams(base_size_lots=10_000, max_inventory_lots=100_000),
    ),
}


def triangle(k: int, period: int, limit: int) -> int:
    """Inventory sweeping -limit .. +limit .. -limit every ``period`` steps."""
    phase = k % period
    half = period // 2
    x = phase if phase < half else period - phase
    return -limit + (2 * limit * x) // half


@pytest.fixture(scope="module")
def replay() -> dict[str, tuple[int, int, int]]:
    """Run the replay once; per config: (quotes, two-sided sized quotes, markouts)."""
    state = MarketState(BinanceCodec(INST, "spot"))
    book = state.book
    quoters = {name: Quoter(INST, params) for name, params in CONFIGS.items()}
    counts = dict.fromkeys(CONFIGS, 0)
    sized = dict.fromkeys(CONFIGS, 0)
    tob: TopOfBook | None = None
    k = 0
    for item in read_recording(FILES):
        if isinstance(item, Malformed):
            state.on_malformed(item)
            continue
        recv_ns, frame = item
        for event in state.on_frame(recv_ns, frame):
            if type(event) is TopOfBook:
                tob = event
            if type(event) is not BookUpdate and type(event) is not Trade:
                for quoter in quoters.values():
                    quoter.on_event(event, book)
                continue
            k += 1
            for name, quoter in quoters.items():
                limit = quoter.params.sizing.max_inventory_lots
                inv = triangle(k, 4_000, limit)
                quoter.set_inventory(inv)
                quote = quoter.on_event(event, book)
                assert quote is not None
                counts[name] += 1
                check(name, quote, book, tob, quoter, inv)
                if quote.bid_size and quote.ask_size:
                    sized[name] += 1
                if k % 97 == 0 and book.synced:
                    mid = book.mid()
                    assert mid is not None
                    side = Side.BUY if k % 2 else Side.SELL
                    price = quote.bid if side is Side.BUY else quote.ask
                    quoter.on_fill(Fill(k, side, price, 1_000, 0, True, event.recv_ns), mid)
    assert state.gaps == 0 and state.crossed == 0
    return {name: (counts[name], sized[name], q.adverse.markouts[0]) for name, q in quoters.items()}


def check(
    name: str, quote: Quote, book: OrderBook, tob: TopOfBook | None, quoter: Quoter, inv: int
) -> None:
    """The invariants of one quote; the message names the config and the quote."""
    best_bid, best_ask = book.best_bid(), book.best_ask()
    if not book.synced or best_bid is None or best_ask is None:
        assert quote.bid_size == 0 and quote.ask_size == 0, (name, quote)
        return
    assert type(quote.bid) is int and type(quote.ask) is int, (name, quote)
    assert quote.bid <= best_ask - 1 and quote.ask >= best_bid + 1, (name, quote)
    assert quote.bid < quote.ask, (name, quote)
    if tob is not None and tob.update_id > book.last_id:  # the fresher venue BBO too
        assert quote.bid < tob.ask and quote.ask > tob.bid, (name, quote, tob)
    sizing = quoter.params.sizing
    limit = sizing.max_inventory_lots
    for size, price, room in (
        (quote.bid_size, quote.bid, limit - inv),
        (quote.ask_size, quote.ask, limit + inv),
    ):
        assert 0 <= size <= min(sizing.base_size_lots, max(room, 0)), (name, quote, inv)
        assert size % INST.size_step_lots == 0, (name, quote)
        if size:
            assert size >= INST.min_size_lots and price * size >= MIN_NOTIONAL_UNITS
    if inv >= limit:
        assert quote.bid_size == 0, (name, quote, inv)
    if inv <= -limit:
        assert quote.ask_size == 0, (name, quote, inv)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_replay_invariants(replay: dict[str, tuple[int, int, int]], name: str) -> None:
    quotes, sized, markouts = replay[name]
    assert quotes > 20_000
    assert sized > 0  # the replay did produce real two-sided quotes
    assert markouts > 0  # and the synthetic fills were marked out on the real mid path


def test_replay_quotes_respond_to_the_market(replay: dict[str, tuple[int, int, int]]) -> None:
    # the default config quotes both sides on most events (inventory sweeps the whole range,
    # so near the limits one side is legitimately 0)
    quotes, sized, _ = replay["default"]
    assert sized > quotes // 2
