"""REST depth snapshots that fail: the daemon stays HALTED without a book, says why, retries
with backoff (no sooner than the venue's Retry-After) and quotes once a snapshot works.

Over loopback: the sim venue serves a real recording; its depth endpoint fails on request
(:meth:`~mmdaemon.sim.server.SimVenue.fail_depth`) with HTTP 5xx, rate limits with
Binance's error body, bodies that are not snapshots, a snapshot whose levels do not decode,
and a request held past the client's timeout."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from mmdaemon.clock import SystemClock
from mmdaemon.config_file import load_config
from mmdaemon.daemon import Service
from mmdaemon.feed.websocket import snapshot_problem
from mmdaemon.model import BINANCE_SPOT_BTCUSDT
from mmdaemon.sim.server import SimVenue
from tests.helpers import first_lines, until, write_config
from tests.recorder import Recorder

TIMEOUT_MS = 300  # feed.snapshot_timeout_ms here; the sim holds a "hang" request 2 s


def failures(events: list[dict[str, Any]]) -> list[tuple[str, object]]:
    """(reason, status, error's first words or timeout) of every ``feed_snapshot_failed``."""
    return [(e["reason"], e.get("status", str(e.get("error")).partition(":")[0]
                                if "error" in e else e.get("timeout_s")))
            for e in events if e["event"] == "feed_snapshot_failed"]


def places(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == "order_sent" and e["kind"] != "cancel"]


async def test_failing_snapshots_keep_the_daemon_halted_until_one_works(tmp_path: Path) -> None:
    recording = first_lines(tmp_path / "short.gz", 7000)  # ~60 s of market, 15 s at speed 4
    async with SimVenue([recording], BINANCE_SPOT_BTCUSDT, speed=4.0,
                        clock=SystemClock()) as sim:
        sim.depth_hang_s = 2.0
        sim.fail_depth("503", "500", "429", "418", "truncated", "html", "bad_levels", "hang")
        config = load_config(write_config(tmp_path, {
            "feed": {"recordings": [], "url": sim.ws_url, "rest_url": sim.rest_url,
                     "backoff_initial_ms": 50, "backoff_max_ms": 400,
                     "snapshot_timeout_ms": TIMEOUT_MS},
            "logging": {"level": "debug"},  # order_sent events
        }))
        log = Recorder()
        service = Service(config, SystemClock(), log)
        assert service.live is not None
        run = asyncio.create_task(service.run())
        try:
            # 1. at start: eight bad answers, then a snapshot that works
            await until(lambda: service.engine.opened())  # the journal is open
            await until(lambda: service.engine.risk.state.value == "ACTIVE", timeout=20)
            synced_at = next(i for i, e in enumerate(log.events) if e["event"] ==
                             "state_changed" and e["new"] == "ACTIVE") + 1
            assert sim.depth_requests == 9  # eight faults, then the good one
            assert failures(log.events) == [
                ("http_error", 503), ("http_error", 500), ("rate_limited", 429),
                ("rate_limited", 418), ("malformed", "bad JSON"), ("malformed", "bad JSON"),
                ("timeout", TIMEOUT_MS / 1000),
            ] or _explain(log)
            failed = [e for e in log.events if e["event"] == "feed_snapshot_failed"]
            limited = [e for e in failed if e["reason"] == "rate_limited"]
            assert all(e["retry_after_s"] == 1.0 and e["retry_in_s"] >= 1.0 for e in limited)
            assert "-1003" in limited[0]["body"]  # Binance's error body, logged
            # the snapshot that passed for one but did not decode was reported and replaced
            bad = [e for e in log.events if e["event"] == "frame_malformed"]
            assert len(bad) == 1 and bad[0]["reason"].startswith("snapshot:"), bad
            # halted the whole time: nothing was placed before the book was in sync
            states = [(e["new"], e["reason"]) for e in log.events[:synced_at]
                      if e["event"] == "state_changed"]
            assert states[-1] == ("ACTIVE", "book_out_of_sync_cleared"), states
            assert all(new == "HALTED" for new, _ in states[:-1]), states
            assert places(log.events[:synced_at]) == []
            await until(lambda: service.engine.counters.orders > 0)

            # 2. a gap, and the snapshots that should resync it fail: halted, quotes pulled,
            # nothing placed until a snapshot works
            await until(lambda: service.exchange.open_order_count() > 0)
            mark = len(log.events)
            sim.fail_depth("hang", "503", "truncated")
            gaps = service.engine.market.gaps
            sim.tape.skip_depth_updates(1)
            await until(lambda: service.engine.market.gaps > gaps)
            await until(lambda: len(failures(log.events[mark:])) == 3, timeout=10)
            assert [r for r, _ in failures(log.events[mark:])] == [
                "timeout", "http_error", "malformed"]
            assert not service.engine.book.synced and service.engine.risk.state.value == "HALTED"
            assert service.exchange.open_order_count() == 0  # the halt pulled the quotes
            await until(lambda: service.engine.risk.state.value == "ACTIVE", timeout=10)
            back = next(i for i in range(len(log.events) - 1, mark, -1)
                        if log.events[i]["event"] == "state_changed")
            assert places(log.events[mark:back]) == [] or _explain(log, mark)
            halts = [(e["new"], e["reason"]) for e in log.events[mark:back]
                     if e["event"] == "state_changed"]
            assert ("HALTED", "book_out_of_sync") in halts
            await until(lambda: service.exchange.open_order_count() > 0)  # quoting again
            assert not run.done()
        finally:
            service.stop()
            await asyncio.wait_for(run, 10)
    assert service.exit_code == 0
    assert log.named("stopped")[-1]["open_orders"] == 0


def _explain(log: Recorder, start: int = 0) -> bool:
    """Fail with the interesting part of the log."""
    names = ("feed_snapshot_failed", "feed_snapshot", "state_changed", "frame_malformed",
             "order_sent")
    raise AssertionError([e for e in log.events[start:] if e["event"] in names])


def test_only_bodies_that_look_like_snapshots_pass() -> None:
    assert snapshot_problem(b'{"lastUpdateId": 5, "bids": [], "asks": []}') is None
    assert snapshot_problem(b'{"lastUpdateId": 5, "bids": [["1", "2"]]') is not None
    assert snapshot_problem(b"<html>502</html>") is not None
    assert snapshot_problem(b"[1, 2]") == "not a JSON object"
    assert snapshot_problem(b'{"lastUpdateId": "5", "bids": [], "asks": []}') == (
        "no integer lastUpdateId")
    assert snapshot_problem(b'{"code": -1003, "msg": "Too much request weight"}') == (
        "no integer lastUpdateId")
    assert snapshot_problem(b'{"lastUpdateId": 5, "bids": {}, "asks": []}') == (
        "no bids or asks list")
