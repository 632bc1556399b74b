"""Exact markouts: event-level mids, the mid before the fill, size weighting, one definition
everywhere (analytics, the metrics endpoint, the dry-run summary), old journals.

Expected values are worked out by hand in the comments. Mids are written as bid + ask in
ticks (twice the mid: exact), as the code keeps them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import subprocess
import sys
from bisect import bisect_right
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mmdaemon.analytics import compute_metrics
from mmdaemon.book import OrderBook
from mmdaemon.clock import SystemClock
from mmdaemon.config import ConfigError
from mmdaemon.config_file import load_config
from mmdaemon.daemon import Service
from mmdaemon.feed.recording import read_recording
from mmdaemon.journal import Journal
from mmdaemon.journal_reader import load_journal, load_markouts
from mmdaemon.market import MarketState
from mmdaemon.markouts import (
    NEVER,
    MarkoutTracker,
    book_mid_x2,
    journaled_stats,
    quote_currency,
)
from mmdaemon.metrics import serve_metrics
from mmdaemon.model import BINANCE_SPOT_BTCUSDT, BookUpdate, Fill, Instrument, Malformed, Side
from mmdaemon.venues.binance import BinanceCodec
from tests.conftest import REPO, SPOT_FILES
from tests.helpers import first_lines, write_config, write_gz
from tests.recorder import Recorder

S = 1_000_000_000  # ns per second
MS = 1_000_000
T0 = 1_723_161_300 * S
INST = Instrument("TESTUSDT", "0.01", "1")  # one notional unit (tick x lot) = 0.01 USDT


def fill(order_id: int, side: Side, price: int, size: int, t: int, mid_x2: int) -> Fill:
    return Fill(order_id, side, price, size, 0, True, t, order_id, mid_x2)


class Market:
    """A real order book moved by hand; ``events`` counts the book reads of the tracker."""

    def __init__(self, bid: int, ask: int) -> None:
        self.book = OrderBook()
        self.book.apply(BookUpdate(True, [(bid, 5)], [(ask, 5)], 1, 1, 0, 0))
        self.reads = 0

    def mid_x2(self) -> int:
        self.reads += 1
        return book_mid_x2(self.book)

    def move(self, bid: int, ask: int) -> None:
        """The whole book becomes one level a side (a snapshot: the simplest real event)."""
        self.book.apply(BookUpdate(True, [(bid, 5)], [(ask, 5)], 1, 1, 0, 0))


def tracker(market: Market, horizons_s: tuple[float, ...] = (1.0,)) -> MarkoutTracker:
    return MarkoutTracker(horizons_s, market.mid_x2)


def event(t: MarkoutTracker, market: Market, at: int, bid: int, ask: int) -> None:
    """One market event at ``at``: the tracker first (the book as it stood), then the book."""
    t.before_event(at)
    market.move(bid, ask)


# -- the tracker on hand-built event sequences ---------------------------------------------


def test_mid_at_the_horizon_is_the_last_event_at_or_before_it_not_a_250ms_sample() -> None:
    m = Market(9999, 10001)
    t = tracker(m, (1.0,))
    t.before_event(T0)  # the event that fills us (the book does not move)
    t.on_fill(fill(1, Side.BUY, 9999, 1, T0, 20000))
    # A 250 ms sampler takes the book at the first event of each 250 ms: T0, then 0.95 s.
    # The mid moves at 0.99 s, less than 250 ms later, so the last sample at or before
    # t + 1 s still shows 20000. The book then stays quiet until 1.6 s.
    event(t, m, T0 + 950 * MS, 9999, 10001)  # sampled: bid + ask 20000
    event(t, m, T0 + 990 * MS, 9995, 9997)  # not sampled: 19992
    assert t.take() == []  # t + 1 s not reached by any event yet
    event(t, m, T0 + 1600 * MS, 9990, 9992)
    (markout,) = t.take()
    # the book as it stood at t + 1 s: after the 0.99 s event, before the 1.6 s one
    assert markout.mid_x2 == 19992 != 20000
    assert markout.resolved_ns == T0 + 1600 * MS and markout.horizon_ns == S
    row = t.stats.rows(INST)[0]
    # bought at 9999 with the mid at 10000: move = 9996 - 10000 = -4 ticks (against us),
    # markout = 9996 - 9999 = -3 ticks; the sample would have said move 0, markout +1
    assert (row["adverse_move_rate"], row["negative_markout_rate"], row["win_rate"]) == (
        1.0, 1.0, 0.0)
    assert row["markout_pnl"] == pytest.approx(-3 * 0.01)
    assert row["markout_bps"] == pytest.approx(1e4 * -6 / 20000)  # half ticks / (2 x mid)


def test_an_event_exactly_at_the_horizon_counts_before_it() -> None:
    m = Market(9999, 10001)
    t = tracker(m)
    t.before_event(T0)
    t.on_fill(fill(1, Side.SELL, 10001, 1, T0, 20000))
    event(t, m, T0 + S, 10003, 10005)  # at exactly t + 1 s: part of the book at t + 1 s
    event(t, m, T0 + S, 10005, 10007)  # and so is a second event at the same time
    assert t.take() == []
    event(t, m, T0 + S + 1, 9000, 9002)  # the first event after: resolves, before it applies
    assert [x.mid_x2 for x in t.take()] == [20012]


def test_the_book_is_read_only_when_a_horizon_is_due() -> None:
    m = Market(9999, 10001)
    t = tracker(m, (1.0, 5.0))
    for k in range(100):  # nothing pending: no read at all
        event(t, m, T0 + k * MS, 9999, 10001)
    assert m.reads == 0 and t.next_due_ns == NEVER
    t.on_fill(fill(1, Side.BUY, 9999, 1, T0 + 100 * MS, 20000))
    assert t.next_due_ns == T0 + 1100 * MS
    for k in range(101, 1100):  # events up to the due time: still none
        event(t, m, T0 + k * MS, 9999, 10001)
    assert m.reads == 0
    event(t, m, T0 + 1101 * MS, 9999, 10001)
    assert m.reads == 1 and t.next_due_ns == T0 + 5100 * MS and t.pending == 1


def test_unresolved_late_report_no_mid_and_run_end_are_counted_not_guessed() -> None:
    m = Market(9999, 10001)
    t = tracker(m, (1.0, 5.0))
    event(t, m, T0, 9999, 10001)
    event(t, m, T0 + 2 * S, 9999, 10001)
    # a report of a fill at T0 arriving now: an event after T0 + 1 s is already applied,
    # so its 1 s mid is gone (late); its 5 s horizon is still ahead
    t.on_fill(fill(1, Side.BUY, 9999, 2, T0, 20000))
    t.on_fill(fill(2, Side.BUY, 9999, 3, T0 + 2 * S, 0))  # no mid before: nothing measurable
    event(t, m, T0 + 6 * S, 9999, 10001)
    rows = t.stats.rows(INST)
    assert t.late == 1 and t.no_mid == 2
    assert [(r["resolved_fills"], r["unresolved_fills"]) for r in rows] == [(0, 2), (1, 1)]
    assert rows[0]["win_rate"] is None and rows[0]["markout_bps"] is None
    t.on_fill(fill(3, Side.SELL, 10001, 1, T0 + 6 * S, 20000))  # the run ends before t + 1 s
    assert t.pending == 2
    assert [r["unresolved_fills"] for r in t.stats.rows(INST)] == [3, 2]


def test_rates_are_weighted_by_lots() -> None:
    # One big losing buy and three small winning sells, all resolved at one event at 1.5 s:
    #   buy 100 lots at 10000 (mid before 10001): mid at t+1 s 9998 -> markout -2, move -3
    #   sells of 1 lot at 10003, 10002, 10001 (mid before 10001.5): mid 9998 -> markouts
    #   +5, +4, +3; moves +3.5 each
    # by count 3 of 4 fills win; by lots 3 of 103
    m = Market(10000, 10002)
    t = tracker(m)
    t.before_event(T0)
    t.on_fill(fill(1, Side.BUY, 10000, 100, T0, 20002))
    for i, price in enumerate((10003, 10002, 10001), start=2):
        t.on_fill(fill(i, Side.SELL, price, 1, T0 + 100 * MS, 20003))
    event(t, m, T0 + 200 * MS, 9997, 9999)  # mid 9998
    event(t, m, T0 + 1500 * MS, 9997, 9999)
    row = t.stats.rows(INST)[0]
    assert (row["resolved_fills"], row["resolved_lots"]) == (4, 103)
    assert row["win_rate"] == pytest.approx(3 / 103)
    assert row["negative_markout_rate"] == pytest.approx(100 / 103)
    assert row["adverse_move_rate"] == pytest.approx(100 / 103)
    # money: 100 x -2 + 5 + 4 + 3 = -188 ticks x lots = -1.88 USDT
    assert row["markout_pnl"] == pytest.approx(-1.88)
    # bps of the notional at the mids before: half ticks -376 / (100 x 20002 + 3 x 20003)
    notional2 = 100 * 20002 + 3 * 20003
    assert row["markout_bps"] == pytest.approx(1e4 * -376 / notional2)
    # edge: 100 x (20002 - 20000) + (20006 - 20003) + (20004 - 20003) + (20002 - 20003) = 203
    assert row["edge_bps"] == pytest.approx(1e4 * 203 / notional2)
    assert row["markout_bps"] == pytest.approx(row["edge_bps"] + row["mid_move_bps"])


def test_money_is_named_by_the_quote_asset() -> None:
    assert quote_currency("BTCUSDT", "binance-spot") == "USDT"
    assert quote_currency("ETHBTC", "binance-spot") == "BTC"
    assert quote_currency("AMZN", "lobster") == "USD"
    assert quote_currency("BTCUSDT", "binance-usdm", configured="USDC") == "USDC"
    assert quote_currency("WEIRD", "binance-spot") == "quote currency of WEIRD"


def test_horizons_are_checked_where_configured(tmp_path: Path) -> None:
    for bad in ([5, 1], [], [0], [1, 1e9]):
        path = write_config(tmp_path, {"report": {"markout_horizons_s": bad}})
        with pytest.raises(ConfigError, match=r"report\.markout_horizons_s: markout horizons: "
                                              r"expected .* strictly increasing"):
            load_config(path)
    good = write_config(tmp_path, {"report": {"markout_horizons_s": [0.5, 2]}})
    assert load_config(good).report.markout_horizons_s == (0.5, 2.0)


# -- the daemon on a hand-built recording: a fill through the book -------------------------


def frame(t_ms: int, data: dict[str, Any]) -> bytes:
    return b"%d " % (T0 + t_ms * MS) + orjson.dumps(data)


def depth(t_ms: int, seq: int, bids: list[list[str]], asks: list[list[str]]) -> bytes:
    return frame(t_ms, {"stream": "btcusdt@depth@100ms", "data": {
        "e": "depthUpdate", "E": 0, "s": "BTCUSDT", "U": seq, "u": seq, "b": bids,
        "a": asks}})


def through_recording(path: Path) -> Path:
    """BTCUSDT at 60000.00 / 60000.02 while our quotes go out and rest; at 1 s the book
    drops through our bid to 58999.99 / 59000.00; at 1.9 s a size change (sampled), at
    1.99 s the mid slips one tick (too soon for the next 250 ms sample), at 2.1 s another
    half tick, then quiet updates past every horizon."""
    lines = [frame(0, {"lastUpdateId": 100, "bids": [["60000.00", "1.0"]],
                       "asks": [["60000.02", "1.0"]]})]
    seq = 101
    for t_ms in range(100, 1000, 100):  # the book unchanged: our orders arrive and rest
        lines.append(depth(t_ms, seq, [["60000.00", "1.0"]], []))
        seq += 1
    lines.append(depth(1000, seq, [["60000.00", "0"], ["58999.99", "1.0"]],
                       [["60000.02", "0"], ["59000.00", "1.0"]]))
    lines.append(depth(1900, seq + 1, [["58999.99", "2.0"]], []))
    lines.append(depth(1990, seq + 2, [["58999.99", "0"], ["58999.98", "1.0"]],
                       [["59000.00", "0"], ["58999.99", "1.0"]]))
    # at 2.1 s the mid slips again: the event that resolves t + 1 s must not be in it
    lines.append(depth(2100, seq + 3, [["58999.98", "0"], ["58999.97", "1.0"]], []))
    for k, t_ms in enumerate((6100, 31_100, 61_100, 62_000), start=4):
        lines.append(depth(t_ms, seq + k, [["58999.97", f"{k}.0"]], []))
    return write_gz(path, lines)


def test_a_fill_through_the_book_keeps_the_mid_before_it(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    service = Service(config, SystemClock(), Recorder(), recordings=[
        str(through_recording(tmp_path / "through.gz"))], speed=None)
    asyncio.run(service.run())
    assert service.exit_code == 0
    journal = tmp_path / "state" / "journal.sqlite"
    fills, samples = load_journal(journal)
    (f,) = fills
    assert f.side is Side.BUY and f.ts_ns == T0 + S
    before, after = 6_000_000 + 6_000_002, 5_899_999 + 5_900_000
    # the mid before the update that went through our bid, not the mid it left behind
    assert f.mid_x2 == before
    # so the edge is what we earned against the market we quoted in (> 0), where the mid
    # after the move would have made it a loss
    assert 2 * f.price < before and 2 * f.price > after
    # the mid at t + 1 s is the 1.99 s book (58999.98 + 58999.99); the journal's last
    # sample at or before t + 1 s (taken at 1.9 s) still shows the 1 s book
    rows = {h: (mid, at) for _, h, mid, at in load_markouts(journal)}
    assert rows[S] == (5_899_998 + 5_899_999, T0 + 2100 * MS)
    sampled = [s for s in samples if s.ts_ns <= T0 + 2 * S][-1]
    assert sampled.ts_ns == T0 + 1900 * MS
    assert sampled.best_bid + sampled.best_ask == after != rows[S][0]
    # every horizon reached: 5, 30, 60 s resolve on the quiet updates after them
    assert sorted(rows) == [S, 5 * S, 30 * S, 60 * S]
    metrics = compute_metrics(fills, samples, BINANCE_SPOT_BTCUSDT,
                              markouts=load_markouts(journal))
    lots = f.size
    assert metrics["spread_capture_pnl"] == pytest.approx(
        float((before - 2 * f.price) * lots) / 2 * 0.01 * 1e-8)
    one = metrics["markouts"][0]
    assert (one["adverse_move_rate"], one["negative_markout_rate"], one["win_rate"]) == (
        1.0, 1.0, 0.0)
    assert one == service.summary(1.0)["markouts"][0]


# -- one real replay: the same numbers everywhere ------------------------------------------


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The bundled recording through an in-process service (scraped after the run over
    HTTP) and through ``mmdaemon replay --json``, on the shipped dry-run config."""
    base = tmp_path_factory.mktemp("real")
    config = load_config(REPO / "config" / "dryrun.toml")
    config = dataclasses.replace(config, state=dataclasses.replace(config.state,
                                                                   dir=str(base / "state")))

    async def run() -> tuple[Service, str]:
        service = Service(config, SystemClock(), Recorder(), speed=None)
        await service.run()
        server = await serve_metrics(service, port=0)
        try:
            async with aiohttp.ClientSession() as session, session.get(
                    f"http://127.0.0.1:{server.port}/metrics") as response:
                return service, await response.text()
        finally:
            await server.stop()

    service, scraped = asyncio.run(run())
    proc = subprocess.run(
        [sys.executable, "-m", "mmdaemon", "replay", *map(str, SPOT_FILES), "--config",
         str(REPO / "config" / "dryrun.toml"), "--state-dir", str(base / "cli"), "--json"],
        capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    journal = base / "state" / "journal.sqlite"
    fills, samples = load_journal(journal)
    return {"service": service, "scraped": parse(scraped), "cli": orjson.loads(proc.stdout),
            "journal": journal, "metrics": compute_metrics(
                fills, samples, service.instrument, markouts=load_markouts(journal))}


def test_analytics_metrics_endpoint_and_summary_agree(real: dict[str, Any]) -> None:
    service, cli, metrics = real["service"], real["cli"], real["metrics"]
    summary = service.summary(1.0)
    rows = metrics["markouts"]
    assert [r["horizon_s"] for r in rows] == [1.0, 5.0, 30.0, 60.0]
    assert rows[0]["resolved_fills"] > 0 and metrics["fills"] == summary["fills"] > 0
    # the --json summary: its own markouts and its metrics' are the analytics rows
    assert cli["markouts"] == cli["metrics"]["markouts"] == summary["markouts"] == rows
    assert cli["currency"] == cli["metrics"]["currency"] == summary["currency"] == "USDT"
    for key in ("win_rate", "negative_markout_rate", "adverse_move_rate"):
        assert cli["metrics"][key] == metrics[key] == rows[0][key]
    # the metrics endpoint, per horizon
    s = real["scraped"]
    names = {"mmdaemon_markout_resolved_fills_total": "resolved_fills",
             "mmdaemon_markout_resolved_lots_total": "resolved_lots",
             "mmdaemon_markout_unresolved_fills": "unresolved_fills",
             "mmdaemon_markout_adverse_move_ratio": "adverse_move_rate",
             "mmdaemon_markout_negative_ratio": "negative_markout_rate",
             "mmdaemon_markout_win_ratio": "win_rate",
             "mmdaemon_markout_bps": "markout_bps"}
    for row in rows:
        label = f"{row['horizon_s']:g}"
        for name, key in names.items():
            assert s[(name, frozenset({("horizon_seconds", label)}))] == row[key], (name, label)
        money = s[("mmdaemon_markout_pnl_quote",
                   frozenset({("horizon_seconds", label), ("currency", "USDT")}))]
        assert money == row["markout_pnl"]
    assert not any("adverse_selection" in name for name, _ in s)
    assert "adverse_selection" not in orjson.dumps(cli).decode()


def test_real_markouts_match_an_independent_replay_of_the_book(real: dict[str, Any]) -> None:
    """The journaled mids at t + h against the book rebuilt from the recording by a second,
    independent pass: the mid after the last frame at or before t + h."""
    times: list[int] = []
    mids: list[int] = []
    market = MarketState(BinanceCodec(BINANCE_SPOT_BTCUSDT, "spot"))
    for item in read_recording(SPOT_FILES):
        if not isinstance(item, Malformed):  # the daemon skips these too: no event
            recv_ns, data = item
            market.on_frame(recv_ns, data)
            times.append(recv_ns)
            mids.append(book_mid_x2(market.book))
    fills, samples = load_journal(real["journal"])
    by_key = {f"{f.order_id}:{f.exec_id}": f for f in fills}
    for f in fills:  # the mid before one of the frames at the fill's time (the filling one)
        first, end = bisect_right(times, f.ts_ns - 1), bisect_right(times, f.ts_ns)
        assert end > first and f.mid_x2 in mids[first - 1:end - 1], f
    rows = load_markouts(real["journal"])
    # every horizon the recording outlasts is resolved (by the first frame after it); the
    # others, at the end of the run, are not guessed
    reached = sum(1 for f in fills for h in (1, 5, 30, 60) if f.ts_ns + h * 10**9 < times[-1])
    assert len(rows) == reached > 0
    stale = 0
    sample_t = [s.ts_ns for s in samples if s.best_bid is not None]
    sample_mid = [s.best_bid + s.best_ask for s in samples if s.best_bid is not None]
    for key, horizon, mid_x2, resolved_ns in rows:
        due = by_key[key].ts_ns + horizon
        k = bisect_right(times, due)
        assert mid_x2 == mids[k - 1] and resolved_ns == times[k], (key, horizon)
        stale += sample_mid[bisect_right(sample_t, due) - 1] != mid_x2
    # the 250 ms samples would have given another mid for some of them
    assert stale > 0


def test_a_restart_counts_the_markouts_journaled_before_it(tmp_path: Path) -> None:
    recording = str(first_lines(tmp_path / "minute.gz", 8000))  # a minute: a few fills
    config = load_config(write_config(tmp_path))

    def run() -> dict[str, Any]:
        service = Service(config, SystemClock(), Recorder(), recordings=[recording],
                          speed=None)
        asyncio.run(service.run())
        assert service.exit_code == 0
        return service.summary(1.0)

    first, second = run(), run()
    journal = tmp_path / "state" / "journal.sqlite"
    fills, samples = load_journal(journal)
    metrics = compute_metrics(fills, samples, BINANCE_SPOT_BTCUSDT,
                              markouts=load_markouts(journal))
    assert second["fills"] == len(fills) > first["fills"] > 0
    # the second run's figures cover both runs' fills, exactly as the journal does
    assert second["markouts"] == metrics["markouts"]
    assert second["markouts"][0]["resolved_fills"] > first["markouts"][0]["resolved_fills"]


# -- journals from before exact markouts ---------------------------------------------------

OLD_SCHEMA = """
CREATE TABLE fills (seq INTEGER PRIMARY KEY, exec_key TEXT NOT NULL UNIQUE,
    order_id INTEGER NOT NULL, side INTEGER NOT NULL, price INTEGER NOT NULL,
    size INTEGER NOT NULL, fee INTEGER NOT NULL, maker INTEGER NOT NULL,
    ts_ns INTEGER NOT NULL);
CREATE TABLE samples (run_id INTEGER NOT NULL, ts_ns INTEGER NOT NULL, best_bid INTEGER,
    best_ask INTEGER, fair REAL, bid INTEGER NOT NULL, bid_size INTEGER NOT NULL,
    ask INTEGER NOT NULL, ask_size INTEGER NOT NULL, position INTEGER NOT NULL,
    state TEXT NOT NULL, orders INTEGER NOT NULL, amends INTEGER NOT NULL,
    cancels INTEGER NOT NULL);
CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL, ts_ns INTEGER NOT NULL);
"""


def old_journal(state: Path) -> Path:
    """A journal as the previous version wrote it: no fills.mid_x2, no markouts table."""
    state.mkdir(parents=True)
    path = state / "journal.sqlite"
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    db.executemany("INSERT INTO fills (exec_key, order_id, side, price, size, fee, maker, "
                   "ts_ns) VALUES (?, ?, ?, ?, ?, 0, 1, ?)",
                   [("1:1", 1, 1, 9999, 2, T0 + S), ("2:2", 2, -1, 10003, 1, T0 + 3 * S)])
    db.executemany("INSERT INTO samples VALUES (1, ?, ?, ?, 0, 0, 0, 0, 0, 0, 'ACTIVE', 0, "
                   "0, 0)", [(T0 + k * S, 9999 + k, 10001 + k) for k in range(10)])
    db.execute("INSERT INTO state VALUES ('instrument', ?, 0)", (orjson.dumps(
        {"symbol": "TESTUSDT", "tick_size": "0.01", "lot_size": "1", "venue": "binance-spot"}
    ).decode(),))
    db.commit()
    db.close()
    return path


def test_an_old_journal_reports_its_fills_unresolved(tmp_path: Path) -> None:
    path = old_journal(tmp_path / "state")
    fills, samples = load_journal(path)
    assert [f.mid_x2 for f in fills] == [0, 0] and load_markouts(path) == []
    m = compute_metrics(fills, samples, INST, markouts=load_markouts(path))
    for row in m["markouts"]:
        assert (row["resolved_fills"], row["unresolved_fills"]) == (0, 2)
        assert row["win_rate"] is None and row["adverse_move_rate"] is None
    assert m["win_rate"] is None and m["fills_with_exact_mid"] == 0
    # the mids the split rests on say where they came from: samples after the fills' events
    assert (m["fills_with_sampled_mid"], m["fills_without_mid"]) == (2, 0)
    # the split of the PnL falls back to the samples' mids (at 1 s: 20002, at 3 s: 20006)
    assert m["spread_capture_pnl"] == pytest.approx((2 * (20002 - 2 * 9999) / 2
                                                     - (20006 - 2 * 10003) / 2) * 0.01)
    # the report command reads it as it is, without changing it
    proc = subprocess.run([sys.executable, "-m", "mmdaemon", "report", str(tmp_path / "state"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "negative markout" in page and "USDT" in page and "adverse_selection" not in page
    assert "Fills with a sampled mid (after the fill&#x27;s event)" in page or (
        "Fills with a sampled mid (after the fill's event)" in page)
    db = sqlite3.connect(path)
    assert "mid_x2" not in [r[1] for r in db.execute("PRAGMA table_info(fills)")]
    db.close()
    # the daemon opens it, gains the new column and table, and restores unresolved fills
    journal = Journal(path)
    try:
        restored = journal.fills()
        assert [f.mid_x2 for f in restored] == [0, 0] and journal.markouts() == []
        stats = journaled_stats((S,), restored, journal.markouts())
        assert stats.rows(INST)[0]["unresolved_fills"] == 2
        assert journal.record_fill(fill(3, Side.BUY, 10000, 1, T0 + 5 * S, 20009))
        assert journal.fills()[-1].mid_x2 == 20009
    finally:
        journal.close()
