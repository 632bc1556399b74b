"""The Python side of the hot loops: the book keeps the quoter's depth sorted whatever its
size, and hostile input (a LOBSTER price beyond the integer grid, a crossed snapshot that
releases buffered diffs in the fuzz harness) is a malformed row or a reported gap, not a
crash.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import types
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from mmdaemon import book as book_module
from mmdaemon import log
from mmdaemon.book import SIDE, TOP_LEAST, BookSide, OrderBook, region_for
from mmdaemon.clock import SystemClock
from mmdaemon.config_file import load_config
from mmdaemon.daemon import Service
from mmdaemon.feed.lobster import LOBSTER_AMZN, read_lobster
from mmdaemon.market import Decoded, MarketState, NoCodec
from mmdaemon.model import MAX_UNITS, BookUpdate, Malformed
from mmdaemon.quoting.fair_value import FairValue, FairValueParams

REPO = Path(__file__).resolve().parents[2]


# ---- fuzz/fuzz_codec.py: its Python reference book applies what MarketState did not ----------


def _load_fuzz_codec(monkeypatch: pytest.MonkeyPatch) -> Any:
    """fuzz/fuzz_codec.py imported with a stand-in for atheris (only its import wrapper is
    used at import time), so that its TestOneInput can run without libFuzzer."""
    fake = types.ModuleType("atheris")
    fake.instrument_imports = lambda **_: contextlib.nullcontext()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "atheris", fake)
    monkeypatch.syspath_prepend(str(REPO / "fuzz"))
    path = REPO / "fuzz" / "fuzz_codec.py"
    spec = importlib.util.spec_from_file_location("review_fuzz_codec", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fuzz_codec_harness_accepts_a_crossed_snapshot_that_releases_buffered_diffs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A crossed snapshot stops MarketState.apply: the buffered diffs it releases are
    returned but not applied (the book is invalidated, the codec reset). The harness's
    Python reference book applied them all, so it reported "compiled book side differs from
    the Python one" for an input where the compiled and Python code agree exactly."""
    fuzz_codec = _load_fuzz_codec(monkeypatch)
    diff = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 101, "u": 101,
            "b": [["5.00", "1.00000000"]], "a": []}
    snapshot = {"lastUpdateId": 100, "bids": [["3.00", "1.00000000"]],
                "asks": [["2.00", "1.00000000"]]}  # crossed: bid 3.00 >= ask 2.00
    data = orjson.dumps(diff) + b"\n" + orjson.dumps(snapshot)
    fuzz_codec.TestOneInput(data)  # raised AssertionError


# ---- LOBSTER: a row beyond MAX_UNITS reaches the book, which the compiled side refuses --------


def test_lobster_price_beyond_max_units_is_a_malformed_row_not_a_crash(tmp_path: Path) -> None:
    """Binance text beyond MAX_UNITS is refused by DecimalScaler.parse (a Malformed frame);
    the LOBSTER reader converts with its own arithmetic and has no such bound. The row
    became a BookUpdate with a price of 2**62 ticks: the Python book took it, the compiled
    one raised OverflowError out of MarketState.apply (the replay service dies with
    service_failed) instead of the reader's usual "file:line: reason" Malformed."""
    big = (MAX_UNITS + 1) * 100  # LOBSTER price units ($0.0001) of 2**62 ticks of $0.01
    book_rows = ["2239500,100,2231800,100", f"{big},100,2231800,100", "2239500,100,2231800,100"]
    msg_rows = ["34200.5,1,7,100,2238100,1"] * 3
    msg = tmp_path / "TEST_2012-06-21_34200000_57600000_message_1.csv"
    ob = tmp_path / "TEST_2012-06-21_34200000_57600000_orderbook_1.csv"
    msg.write_text("".join(r + "\n" for r in msg_rows))
    ob.write_text("".join(r + "\n" for r in book_rows))
    events = list(read_lobster(msg, ob, LOBSTER_AMZN))
    market = MarketState(NoCodec())
    for event in events:  # what the daemon does with each LOBSTER event
        market.on_decoded(Decoded(event.recv_ns, [event]))
    bad = [e for e in events if isinstance(e, Malformed)]
    assert len(bad) == 1 and "orderbook_1.csv:2" in bad[0].reason, events
    assert all(p <= MAX_UNITS for e in events if isinstance(e, BookUpdate)
               for p, _ in [*e.bids, *e.asks])


# ---- top-N reads beyond the sorted region sort (or scan) the whole side ----------------------


def _deep_book(side: type[BookSide], depth: int) -> OrderBook:
    """A book sized for reads of ``depth`` levels (as MarketState sizes it for the quoter):
    5,000 levels a side, then the best 90 bids and asks deleted one diff at a time (the
    touch moving away on both sides), which leaves a default-sized region (32..256) with 38
    levels."""
    book = OrderBook(*region_for(depth), side=side)
    book.apply(BookUpdate(True, [(p, 1) for p in range(10_000, 5_000, -1)],
                          [(p, 1) for p in range(10_001, 15_001)], 1, 1, 0, 0))
    for i in range(90):
        book.apply(BookUpdate(False, [(10_000 - i, 0)], [(10_001 + i, 0)], 2 + i, 2 + i, 0, 0))
    return book


@pytest.mark.parametrize("side", [BookSide, SIDE], ids=["python", "compiled-when-built"])
def test_a_book_sized_for_the_quoters_depth_keeps_that_depth_sorted(
    side: type[BookSide], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``depth_levels`` is any int >= 1, so depth_imbalance may read 40 levels per side on
    every event. A region of the default size (at least 32) would then sort (or scan) the
    whole side on every read; sized for 40, the region always holds the 40 best levels."""
    book = _deep_book(side, 40)
    for s in (book.bids, book.asks):
        assert s.least >= 40 and len(s._keys) >= 40
        s.check()
    sorted_sizes: list[int] = []

    def counting_sorted(iterable: Any, **kw: Any) -> list[Any]:
        out = sorted(iterable, **kw)
        sorted_sizes.append(len(out))
        return out

    monkeypatch.setattr(book_module, "sorted", counting_sorted, raising=False)
    fair = FairValue(FairValueParams(mode="depth_imbalance", depth_levels=40))
    assert fair.from_book(book) is not None
    assert sorted_sizes == []  # no read sorted the side (the Python side's fallback)
    assert book.bids.top(40) == [(p, 1) for p in range(9_910, 9_870, -1)]


def test_market_state_and_the_daemon_size_the_book_for_the_quoters_depth() -> None:
    assert MarketState(NoCodec(), depth=0).book.bids.least == TOP_LEAST
    assert MarketState(NoCodec(), depth=40).book.asks.least == 40
    config = load_config(REPO / "config" / "dryrun.toml")
    service = Service(replace(config, strategy=replace(
        config.strategy, fair_value=replace(config.strategy.fair_value, depth_levels=50))),
        SystemClock(), log.get_logger())
    assert service.engine.book.bids.least == 50 and service.engine.book.asks.least == 50
