"""The dry run end to end: the same service, paper exchange, real recording."""

from __future__ import annotations

import gzip
import sqlite3
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import SPOT_FILES
from tests.helpers import write_config

TICK, LOT = Fraction(1, 100), Fraction(1, 10**8)


def replay(tmp_path: Path, overrides: dict[str, dict[str, Any]] | None = None,
           files: list[Path] = SPOT_FILES, level: str = "info",
           ) -> tuple[dict[str, Any], list[dict[str, Any]], Path]:
    """Run ``mmdaemon replay --json``; returns the summary, the log events and the state dir."""
    config = write_config(tmp_path, {"logging": {"level": level}, **(overrides or {})})
    state = tmp_path / "state"
    proc = subprocess.run(
        [sys.executable, "-m", "mmdaemon", "replay", *map(str, files), "--config", str(config),
         "--state-dir", str(state), "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = orjson.loads(proc.stdout)  # exactly one JSON object
    logs = [orjson.loads(line) for line in proc.stderr.splitlines()]
    return summary, logs, state


def journal_rows(state: Path) -> list[tuple[int, int, int, int, int]]:
    db = sqlite3.connect(state / "journal.sqlite")
    return db.execute("SELECT order_id, side, price, size, fee FROM fills ORDER BY seq").fetchall()


def test_dry_run_on_the_bundled_recording(tmp_path: Path) -> None:
    s, logs, state = replay(tmp_path)
    assert s["frames"] == 99574 and s["state"] == "ACTIVE" and s["gaps"] == 0
    assert s["fills"] > 10 and s["orders"] > 0 and s["quotes"] > 5000
    # inventory bounded by the quoting limit (0.01 BTC) plus at most one order's overshoot
    assert s["max_abs_position"] <= 0.01 + 0.001
    # PnL recomputed independently from the journal file: cash + position x mark - fees
    rows = journal_rows(state)
    assert len(rows) == s["fills"] == sum(1 for e in logs if e["event"] == "fill")
    position = sum(side * size for _, side, _, size, _ in rows)
    cash = sum(-side * price * size for _, side, price, size, _ in rows)
    fees = sum(fee for *_, fee in rows)
    mark_ticks = Fraction(str(s["mark"])) / TICK
    total = (cash + position * mark_ticks - fees) * TICK * LOT
    assert position == s["position_lots"]
    assert float(total) == pytest.approx(s["total_pnl"], abs=1e-9)
    assert float(fees * TICK * LOT) == pytest.approx(s["fees"], abs=1e-12)
    assert s["realized_pnl"] + s["unrealized_pnl"] - s["fees"] == pytest.approx(s["total_pnl"])
    # every order left was cancelled and confirmed at the end
    stopped = [e for e in logs if e["event"] == "stopped"][-1]
    assert stopped["open_orders"] == 0


def test_replay_is_deterministic(tmp_path: Path) -> None:
    first, _, _ = replay(tmp_path / "a", files=SPOT_FILES[:1])
    second, _, _ = replay(tmp_path / "b", files=SPOT_FILES[:1])
    for key in ("wall_s", "frames_per_s"):
        first.pop(key), second.pop(key)
    # what produced each names its own config file and state directory (a/ and b/)
    for key in ("config", "feed"):
        first.pop(key), second.pop(key)
    assert first == second and first["fills"] > 0


def events_after(logs: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    idx = next(i for i, e in enumerate(logs) if e["event"] == event)
    return logs[idx + 1 :]


def sent_after_kill(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events_after(logs, "kill_switch_tripped")
            if e["event"] == "order_sent" and e["kind"] != "cancel"]


def test_tiny_loss_limit_trips_the_kill_switch_on_real_data(tmp_path: Path) -> None:
    s, logs, _ = replay(tmp_path, {"risk": {"max_loss": "0.01", "max_drawdown": "1000"}},
                        level="debug")
    assert s["state"] == "KILLED" and s["breaker_trips"] >= 1
    (trip,) = [e for e in logs if e["event"] == "kill_switch_tripped"]
    assert trip["reason"] == "loss_limit" and -trip["pnl_units"] >= trip["limit_units"]
    assert sent_after_kill(logs) == []
    cancelled = [e for e in events_after(logs, "kill_switch_tripped")
                 if e["event"] == "orders_cancelled"]
    assert cancelled and cancelled[0]["open_after"] == 0


def test_drawdown_limit(tmp_path: Path) -> None:
    s, logs, _ = replay(tmp_path, {"risk": {"max_loss": "1000", "max_drawdown": "0.02"}},
                        level="debug")
    assert s["state"] == "KILLED"
    (trip,) = [e for e in logs if e["event"] == "kill_switch_tripped"]
    assert trip["reason"] == "drawdown_limit"
    assert trip["peak_units"] - trip["pnl_units"] >= trip["limit_units"]
    assert sent_after_kill(logs) == []


def test_inventory_soft_limit_reduces_and_hard_limit_kills(tmp_path: Path) -> None:
    s, logs, _ = replay(tmp_path / "soft", {"risk": {"inventory_soft_lots": 100000,
                                                     "inventory_hard_lots": 10**7}},
                        level="debug")
    changes = [(e["old"], e["new"], e["reason"]) for e in logs if e["event"] == "state_changed"]
    assert ("ACTIVE", "REDUCING", "inventory_soft_limit") in changes
    # while REDUCING only the side that shrinks the position is sent
    reducing = False
    position = 0
    for e in logs:
        if e["event"] == "fill":
            position = e["position_lots"]
        elif e["event"] == "state_changed":
            reducing = e["new"] == "REDUCING"
        elif reducing and e["event"] == "order_sent" and e["kind"] == "place":
            assert (e["side"] == "SELL") == (position > 0), e
    assert s["state"] in ("ACTIVE", "REDUCING") and s["breaker_trips"] >= 1
    # REDUCING stops the growth, so the hard limit needs to sit at the soft one to trip
    s, logs, _ = replay(tmp_path / "hard", {"risk": {"inventory_soft_lots": 100000,
                                                     "inventory_hard_lots": 100000}},
                        level="debug")
    assert s["state"] == "KILLED"
    (trip,) = [e for e in logs if e["event"] == "kill_switch_tripped"]
    assert trip["reason"] == "inventory_hard_limit" and abs(trip["position"]) >= 100000
    assert sent_after_kill(logs) == []


def test_reject_burst_halts(tmp_path: Path) -> None:
    # a slow order path (300 ms) makes post-only orders arrive after the market moved into
    # them: real rejects from real data
    s, logs, _ = replay(tmp_path, {"risk": {"reject_burst": 2, "reject_window_ms": 3_600_000},
                                   "exchange": {"latency_ms": 300.0}})
    assert s["rejects"] >= 2
    changes = [(e["new"], e["reason"]) for e in logs if e["event"] == "state_changed"]
    assert ("HALTED", "reject_burst") in changes
    assert s["state"] == "HALTED"  # the window outlasts the recording


def test_book_gap_halts_and_nothing_is_sent_while_out_of_sync(tmp_path: Path) -> None:
    with gzip.open(SPOT_FILES[0], "rb") as f:
        lines = f.read().splitlines()
    depth = [i for i, line in enumerate(lines) if b"@depth" in line[:80]]
    del lines[depth[800]]
    path = tmp_path / "gap.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    s, logs, _ = replay(tmp_path, files=[path], level="debug")
    assert s["gaps"] == 1 and s["state"] == "HALTED"
    after = events_after(logs, "book_gap")
    assert any(e["event"] == "state_changed" and e["reason"] == "book_out_of_sync" for e in after)
    assert not [e for e in after if e["event"] == "order_sent" and e["kind"] != "cancel"]
    assert [e for e in logs if e["event"] == "stopped"][-1]["open_orders"] == 0


def test_restart_beyond_the_hard_limit_is_killed_before_any_order(tmp_path: Path) -> None:
    first, _, _ = replay(tmp_path, files=SPOT_FILES[:1])
    held = abs(first["position_lots"])
    assert held >= 1000, "the first run must end with a position for this test to mean much"
    # same journal, a hard limit the restored position already breaks
    s, logs, _ = replay(tmp_path, {"risk": {"inventory_soft_lots": held // 2,
                                            "inventory_hard_lots": held // 2}},
                        files=SPOT_FILES[1:], level="debug")
    restored = next(e for e in logs if e["event"] == "journal_restored")
    assert restored["position_lots"] == first["position_lots"]
    assert restored["fills"] == first["fills"]
    trip = next(e for e in logs if e["event"] == "kill_switch_tripped")
    assert trip["reason"] == "inventory_hard_limit"
    assert s["state"] == "KILLED" and s["orders"] == 0 and s["amends"] == 0
    assert not [e for e in logs if e["event"] == "order_sent"]


def test_breakers_act_the_same_way_on_every_replay(tmp_path: Path) -> None:
    """Breakers run on event time, so even a run they stop is reproducible."""
    overrides = {"risk": {"max_loss": "0.05", "max_drawdown": "1000"}}
    first, _, _ = replay(tmp_path / "a", overrides)
    second, _, _ = replay(tmp_path / "b", overrides)
    # wall-clock figures, and what produced each run (its own config file and state dir)
    for key in ("wall_s", "frames_per_s", "config", "feed"):
        first.pop(key), second.pop(key)
    assert first == second and first["state"] == "KILLED"


def test_a_dry_run_never_trades_even_with_a_live_config(tmp_path: Path) -> None:
    """`replay` of a config whose adapter is the live gateway still uses the paper exchange:
    nothing dials the (here unreachable) venue, and the run completes with fills."""
    s, logs, _ = replay(tmp_path, {"exchange": {
        "adapter": "binance", "ws_api_url": "ws://127.0.0.1:9/ws-api/v3",
        "credentials": str(tmp_path / "no-such-credentials.toml")}}, files=SPOT_FILES[:1])
    assert s["fills"] > 0 and s["state"] == "ACTIVE"
    assert not [e for e in logs if str(e.get("event", "")).startswith("gateway")]


def test_the_pnl_peak_and_samples_reach_the_journal_off_the_hot_path(tmp_path: Path) -> None:
    """The peak and the report samples are written by the supervisor task and at stop, not
    on a frame's way to a quote; either way they are in the journal when the run ends, and
    the peak is the highest total PnL the breakers saw (at least the final one)."""
    from mmdaemon.journal import Journal

    s, _, state = replay(tmp_path)
    journal = Journal(state / "journal.sqlite")
    try:
        peak = journal.restore(0).pnl_peak_units
    finally:
        journal.close()
    db = sqlite3.connect(state / "journal.sqlite")
    samples = db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    db.close()
    assert peak is not None
    final = Fraction(str(s["total_pnl"])) / (TICK * LOT)
    assert peak >= final and peak > 0  # this day's run was ahead before it fell back
    assert samples == s["metrics"]["samples"] > 1000
