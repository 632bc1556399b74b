"""Quotes that cannot become orders are counted by reason and reported, never silent.

The instrument's rules (minimum size and notional after rounding to the size step) and the
pre-trade checks (size, price band, open orders, rate) are the two places a quote side can
stop; both count into one table by reason, shown in the summary, the human summary and the
metrics endpoint, and logged with the figures at the first occurrence of a reason.
"""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from mmdaemon.clock import SystemClock
from mmdaemon.config_file import load_config
from mmdaemon.daemon import Service
from mmdaemon.metrics import ServiceCollector
from mmdaemon.model import Instrument, Side
from mmdaemon.quoting.sizing import MIN_NOTIONAL, MIN_SIZE, SizeRule, SizingParams
from mmdaemon.risk.unsendable import REASONS, Unsendable
from tests.conftest import SPOT_FILES
from tests.helpers import first_lines, gz_lines, rewrite, write_config, write_gz
from tests.recorder import Recorder

ETH = Instrument("ETHUSDT", "0.01", "0.0001", size_step_lots=10, min_size_lots=10,
                 min_notional="5")


@given(inventory=st.integers(-2_000, 2_000), bid=st.integers(-5, 400_000),
       ask=st.integers(-5, 400_000), base=st.integers(1, 3_000),
       grow=st.sampled_from([0.0, 0.3, 0.5, 1.0]))
def test_a_cut_is_exactly_a_wanted_side_the_grid_and_minimums_zeroed(
        inventory: int, bid: int, ask: int, base: int, grow: float) -> None:
    rule = SizeRule(ETH, SizingParams(base_size_lots=base, max_inventory_lots=1_000,
                                      growing_side_fraction=grow))
    sizes = rule.sizes(inventory, bid, ask)
    cuts = {c.side: c for c in rule.cuts(inventory, bid, ask)}
    for side, wanted, size, price in zip((Side.BUY, Side.SELL), rule.wanted(inventory), sizes,
                                         (bid, ask), strict=True):
        cut_expected = wanted > 0 and price > 0 and size == 0
        assert (side in cuts) == cut_expected, (side, wanted, size, price)
        if side in cuts:
            cut = cuts[side]
            rounded = wanted - wanted % ETH.size_step_lots
            assert (cut.wanted_lots, cut.size_lots, cut.price_ticks) == (wanted, rounded, price)
            notional = ETH.notional(price, rounded)
            if rounded < ETH.min_size_lots:
                assert cut.reason == MIN_SIZE
            else:
                assert cut.reason == MIN_NOTIONAL and notional < ETH.min_notional


def test_a_reason_is_logged_first_then_once_per_interval_with_the_count() -> None:
    tracker = Unsendable(interval_ns=1_000)
    assert tracker.record(MIN_NOTIONAL, 10) == 1  # the first one is always reported
    assert [tracker.record(MIN_NOTIONAL, t) for t in (11, 500, 1_009)] == [0, 0, 0]
    assert tracker.record(MIN_SIZE, 12) == 1  # reasons keep their own cadence
    assert tracker.record(MIN_NOTIONAL, 1_010) == 4  # the 3 held back and this one
    assert tracker.record(MIN_NOTIONAL, 1_011) == 0
    assert tracker.counts[MIN_NOTIONAL] == 6 and tracker.counts[MIN_SIZE] == 1
    assert tracker.total() == 7 and set(tracker.counts) == set(REASONS)


def _replay(tmp_path: Path, overrides: dict[str, dict[str, Any]], *extra: str,
            files: list[Path] = SPOT_FILES) -> tuple[subprocess.CompletedProcess[str], Path]:
    config = write_config(tmp_path, overrides)
    proc = subprocess.run(
        [sys.executable, "-m", "mmdaemon", "replay", *map(str, files), "--config", str(config),
         *extra],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, config


def test_orders_below_min_notional_are_counted_and_explained(tmp_path: Path) -> None:
    """base_size_lots = 5000 on BTCUSDT is 0.00005 BTC, about 3.09 USDT: below the 5 USDT
    minimum notional, so no quote of the bundled recording can become an order."""
    proc, _ = _replay(tmp_path, {"strategy.sizing": {"base_size_lots": 5000}}, "--json")
    summary = orjson.loads(proc.stdout)
    assert summary["orders"] == 0 and summary["quotes"] > 0
    # flat all along: every quote wanted both sides, and both were cut
    assert summary["unsendable"][MIN_NOTIONAL] == 2 * summary["quotes"]
    assert sum(summary["unsendable"].values()) == 2 * summary["quotes"]
    logs = [orjson.loads(line) for line in proc.stderr.splitlines()]
    lines = [e for e in logs if e["event"] == "quote_unsendable"]
    assert lines, "not one log line says why nothing was sent"
    first = lines[0]
    assert first["reason"] == MIN_NOTIONAL and first["level"] == "warning"
    assert first["wanted_lots"] == first["size_lots"] == 5000 and first["count"] == 1
    assert Decimal(first["wanted_notional"]) < Decimal(first["min_notional"]) == 5
    assert Decimal(first["wanted_notional"]) == Decimal(first["price"]) * Decimal(
        "0.01") * 5000 * Decimal("0.00000001")
    # one reason: its first occurrence, then a line per minute of event time (10 min 50 s
    # of market), each with the count since the line before; none lost to the wall-clock
    # log limiter of a replay at full speed
    assert 10 <= len(lines) <= 11
    assert lines[-1]["total"] == sum(e["count"] for e in lines)
    assert lines[-1]["total"] <= summary["unsendable"][MIN_NOTIONAL]
    assert not [e for e in logs if e["event"] == "log_suppressed"]


def test_the_human_summary_shows_the_unsendable_quotes(tmp_path: Path) -> None:
    proc, _ = _replay(tmp_path, {"strategy.sizing": {"base_size_lots": 5000}},
                      files=[first_lines(tmp_path / "short.gz", 3000)])
    out = proc.stdout
    assert "unsendable min_notional" in out
    assert "not one order was sent" in out and "WARNING" in out


def test_pre_trade_blocks_are_counted_by_reason_and_rate_limited_in_the_log(
        tmp_path: Path) -> None:
    """A price band narrower than the quoted spread blocks every place."""
    proc, _ = _replay(tmp_path, {"risk": {"price_band_bps": 0.05}}, "--json")
    summary = orjson.loads(proc.stdout)
    blocked = summary["unsendable"]["price_band"]
    assert summary["orders"] == 0 and blocked > 100
    assert summary["blocked"] == sum(summary["unsendable"][r] for r in (
        "max_order_size", "price_band", "max_open_orders", "order_rate"))
    logs = [orjson.loads(line) for line in proc.stderr.splitlines()]
    lines = [e for e in logs if e["event"] == "order_blocked"]
    assert 1 <= len(lines) <= 12 < blocked
    assert lines[0]["code"] == "price_band" and "bps from fair" in lines[0]["reason"]


async def test_the_metrics_endpoint_counts_unsendable_quotes_by_reason(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, {"strategy.sizing": {"base_size_lots": 5000}}))
    service = Service(config, SystemClock(), Recorder(),
                      recordings=[str(first_lines(tmp_path / "short.gz", 3000))], speed=None)
    await service.run()
    registry = CollectorRegistry()
    registry.register(ServiceCollector(service))
    text = generate_latest(registry).decode()
    count = service.engine.unsendable.counts[MIN_NOTIONAL]
    assert count > 0
    assert f'mmdaemon_quotes_unsendable_total{{reason="min_notional"}} {float(count)}' in text
    assert 'mmdaemon_quotes_unsendable_total{reason="price_band"} 0.0' in text


ETH_CONFIG = {
    # the dry-run config moved to another symbol, on that symbol's own grids
    "instrument": {"symbol": "ETHUSDT", "tick_size": "0.0001", "lot_size": "0.00001",
                   "size_step_lots": 100, "min_size_lots": 100, "min_notional": "5"},
    "strategy.sizing": {"max_inventory_lots": 20_000},
    "orders": {"size_tolerance_lots": 500},
    "risk": {"max_order_lots": 20_000, "inventory_soft_lots": 16_000,
             "inventory_hard_lots": 30_000},
}


def test_another_symbol_replays_and_reports_what_it_cannot_send(tmp_path: Path) -> None:
    """The bundled recording rewritten as ETHUSDT (prices / 25, about 2,470 USDT, on a
    0.0001 grid; sizes x 1,000): 0.001 ETH is below its 5 USDT minimum notional, 0.02 ETH
    is not. Nothing here is BTCUSDT's."""
    recording = write_gz(tmp_path / "ethusdt.gz",
                         rewrite(gz_lines(first_lines(tmp_path / "btc.gz", 4000)), "ETHUSDT"))
    small, _ = _replay(tmp_path / "small", {**ETH_CONFIG, "strategy.sizing": {
        **ETH_CONFIG["strategy.sizing"], "base_size_lots": 100}}, "--json", files=[recording])
    summary = orjson.loads(small.stdout)
    assert summary["orders"] == 0 and summary["quotes"] > 0
    assert summary["unsendable"][MIN_NOTIONAL] == 2 * summary["quotes"]
    first = next(orjson.loads(line) for line in small.stderr.splitlines()
                 if b'"quote_unsendable"' in line.encode())
    assert first["instrument"] == "ETHUSDT"
    assert Decimal("2") < Decimal(first["wanted_notional"]) < Decimal("3")
    enough, _ = _replay(tmp_path / "enough", {**ETH_CONFIG, "strategy.sizing": {
        **ETH_CONFIG["strategy.sizing"], "base_size_lots": 2_000}}, "--json", files=[recording])
    summary = orjson.loads(enough.stdout)
    assert summary["orders"] > 0 and summary["unsendable"][MIN_NOTIONAL] == 0


@pytest.mark.parametrize(("rate", "burst", "starved"), [(4.0, 4, False), (0.2, 2, True)])
def test_rate_limited_actions_are_a_note_unless_they_starve_the_quoting(
        tmp_path: Path, rate: float, burst: int, starved: bool) -> None:
    """Actions the order rate limit held back are retried by the next quote: a note, not the
    warning for quotes that cannot trade; unless more are held back than go out."""
    proc, _ = _replay(tmp_path, {"risk": {"max_orders_per_s": rate, "order_burst": burst}},
                      files=[first_lines(tmp_path / "short.gz", 3000)])
    out = proc.stdout
    assert "unsendable order_rate" in out
    assert "could not become orders" not in out
    assert ("waited for the order rate limit" in out) is not starved
    assert ("WARNING: the order rate limit held back" in out) is starved
