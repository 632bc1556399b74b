"""The log's rate limiter (bounded lines per event, exact counts, important lines untouched)
and its two formats (JSON lines, console text)."""

from __future__ import annotations

import io
import os
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from mmdaemon import log
from mmdaemon.clock import ManualClock
from mmdaemon.model import BINANCE_SPOT_BTCUSDT as BTCUSDT

N, WINDOW_S = 10, 10.0
WINDOW_NS = int(WINDOW_S * 1e9)


class CountingClock(ManualClock):
    """A manual clock that counts reads of its monotonic time."""

    def __init__(self, start_ns: int) -> None:
        super().__init__(start_ns)
        self.reads = 0

    def monotonic_ns(self) -> int:
        self.reads += 1
        return super().monotonic_ns()


class Captured:
    """A configured log writing to memory, on a clock that moves only when told."""

    def __init__(self, level: str = "info", rate_limit: tuple[int, float] | None = (N, WINDOW_S),
                 **options: Any) -> None:
        self.stream = io.BytesIO()
        self.clock = CountingClock(start_ns=1_000 * 10**9)
        log.configure(level, self.stream, rate_limit=rate_limit, clock=self.clock, **options)
        self.log = log.get_logger(instrument="BTCUSDT")

    def advance(self, seconds: float) -> None:
        self.clock.now_ns += round(seconds * 1e9)

    def lines(self) -> list[dict[str, Any]]:
        """Every line written so far, each checked to be exactly one JSON object."""
        raw = self.stream.getvalue()
        assert raw == b"" or raw.endswith(b"\n")
        out = []
        for line in raw.split(b"\n")[:-1]:
            obj = orjson.loads(line)  # one JSON value per line, nothing around it
            assert type(obj) is dict and "event" in obj and "level" in obj
            out.append(obj)
        return out

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.lines() if e["event"] == event]


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test configures the global structlog setup; leave it as it was found."""
    monkeypatch.setattr(log, "_limiter", None)
    yield
    structlog.reset_defaults()


def test_a_storm_gives_n_lines_then_the_count_on_the_next_line() -> None:
    c = Captured()
    for i in range(100):
        c.log.warning("frame_malformed", reason="bad JSON", recv_ns=i)
    lines = c.lines()
    assert len(lines) == N
    assert [e["recv_ns"] for e in lines] == list(range(N))  # the first N, in order
    assert not any("suppressed" in e for e in lines)
    c.advance(WINDOW_S)  # the window rolls
    c.log.warning("frame_malformed", reason="bad JSON", recv_ns=100)
    c.log.warning("frame_malformed", reason="bad JSON", recv_ns=101)
    first, second = c.lines()[N:]
    assert first["suppressed"] == 100 - N and first["recv_ns"] == 100
    assert first["instrument"] == "BTCUSDT" and first["level"] == "warning"
    assert "suppressed" not in second  # the count was reset once reported
    assert log.flush_suppressed() == 0  # nothing owed any more


def test_just_before_the_window_ends_is_still_the_same_window() -> None:
    c = Captured()
    for _ in range(N + 5):
        c.log.warning("book_gap")
    c.advance(WINDOW_S - 1e-9)
    c.log.warning("book_gap")
    assert len(c.lines()) == N
    c.advance(1e-9)
    c.log.warning("book_gap")
    assert c.lines()[-1]["suppressed"] == 6


def test_a_steady_rate_under_the_limit_loses_nothing() -> None:
    c = Captured()
    for _ in range(300):  # one per second: N per window exactly
        c.log.info("feed_snapshot", bytes=10)
        c.advance(WINDOW_S / N)
    assert len(c.named("feed_snapshot")) == 300
    assert not any("suppressed" in e for e in c.lines())


@pytest.mark.parametrize("event", sorted(log.ALWAYS_LOGGED))
def test_allow_listed_events_are_never_dropped(event: str) -> None:
    c = Captured()
    for _ in range(100):
        c.log.info(event)
        c.log.warning(event)
    assert len(c.named(event)) == 200
    assert log.flush_suppressed() == 0


def test_the_allow_list_holds_the_events_an_incident_is_read_from() -> None:
    assert {
        "kill_switch_tripped", "state_changed", "fill", "orders_cancelled", "stopped",
        "service_started", "journal_restored", "kill_switch_rearmed", "rearm_refused",
        "venue_status",
    } <= log.ALWAYS_LOGGED


def test_repeated_errors_are_limited_and_counted_and_criticals_never_dropped() -> None:
    c = Captured()
    for i in range(100):
        c.log.error("journal_write_failed", n=i)
        c.log.exception("journal_write_failed", n=i)  # "error" once rendered
        c.log.critical("gateway_handler_failed", n=i)
    assert len(c.named("journal_write_failed")) == N
    assert len(c.named("gateway_handler_failed")) == 100
    assert log.flush_suppressed() == 1
    assert c.named(log.SUPPRESSED_EVENT)[-1]["suppressed"] == 200 - N


def test_debug_is_a_full_trace_when_enabled() -> None:
    # debug is off in production; whoever turns it on wants every order_sent line
    c = Captured(level="debug")
    for _ in range(100):
        c.log.debug("order_sent", kind="amend")
    assert len(c.named("order_sent")) == 100


def test_event_names_and_levels_are_limited_independently() -> None:
    c = Captured()
    for _ in range(100):
        c.log.warning("frame_malformed")
        c.log.warning("book_gap")
        c.log.info("book_gap")
    counts = Counter((e["event"], e["level"]) for e in c.lines())
    assert counts == {("frame_malformed", "warning"): N, ("book_gap", "warning"): N,
                      ("book_gap", "info"): N}
    # one key's storm leaves another key's budget alone
    c.log.warning("feed_stale")
    assert c.lines()[-1]["event"] == "feed_stale"


def test_warn_is_the_same_key_as_warning() -> None:
    c = Captured()
    for _ in range(50):
        c.log.warn("feed_stale")
        c.log.warning("feed_stale")
    assert len(c.lines()) == N


def test_flush_suppressed_writes_one_summary_per_key() -> None:
    c = Captured()
    for _ in range(100):
        c.log.warning("frame_malformed")
    for _ in range(N + 3):
        c.log.info("gateway_status")
    c.log.warning("feed_stale")  # under the limit: owes nothing
    assert log.flush_suppressed() == 2
    summaries = {e["suppressed_event"]: e for e in c.named("log_suppressed")}
    assert summaries["frame_malformed"]["suppressed"] == 100 - N
    assert summaries["frame_malformed"]["level"] == "warning"
    assert summaries["frame_malformed"]["suppressed_level"] == "warning"
    assert summaries["gateway_status"]["suppressed"] == 3
    assert summaries["gateway_status"]["level"] == "info"
    # reported once: a second flush writes nothing, the next line carries no count
    assert log.flush_suppressed() == 0
    c.advance(WINDOW_S)
    c.log.warning("frame_malformed")
    assert "suppressed" not in c.lines()[-1]


def test_flush_through_a_bound_logger_keeps_its_context() -> None:
    c = Captured()
    for _ in range(N + 1):
        c.log.warning("book_crossed")
    assert log.flush_suppressed(log.get_logger(instrument="BTCUSDT", run_id=7)) == 1
    (summary,) = c.named("log_suppressed")
    assert summary["instrument"] == "BTCUSDT" and summary["run_id"] == 7
    assert summary["suppressed"] == 1


def test_summaries_are_not_limited_themselves() -> None:
    c = Captured()
    for round_ in range(3 * N):
        for _ in range(N + 1):
            c.log.warning(f"storm_{round_}")
    assert log.flush_suppressed() == 3 * N
    assert len(c.named("log_suppressed")) == 3 * N


def test_a_storm_during_the_flushes_is_still_counted_exactly() -> None:
    c = Captured()
    logged = 0
    for second in range(60):
        for _ in range(50):
            c.log.warning("frame_malformed")
            logged += 1
        if second % 7 == 0:  # the daemon's periodic flush, out of step with the windows
            log.flush_suppressed()
        c.advance(1)
    log.flush_suppressed()
    lines = c.named("frame_malformed")
    assert len(lines) == N * 6  # 60 s of 10 s windows
    reported = sum(e.get("suppressed", 0) for e in lines)
    reported += sum(e["suppressed"] for e in c.named("log_suppressed"))
    assert len(lines) + reported == logged


def test_disabled_levels_never_reach_the_limiter() -> None:
    c = Captured(level="warning")
    for _ in range(1000):
        c.log.info("book_resynced")
        c.log.debug("order_sent")
    assert c.clock.reads == 0 and c.lines() == []
    assert log.flush_suppressed() == 0


def test_allow_listed_events_and_criticals_do_not_read_the_clock() -> None:
    c = Captured()
    c.log.info("fill")
    c.log.critical("service_failed")
    assert c.clock.reads == 0


def test_the_allow_list_is_configurable() -> None:
    c = Captured(always_logged={"frame_malformed"})
    for _ in range(100):
        c.log.warning("frame_malformed")
        c.log.warning("fill")  # no longer special under this configuration
    assert len(c.named("frame_malformed")) == 100
    assert len(c.named("fill")) == N


def test_no_rate_limit() -> None:
    c = Captured(rate_limit=None)
    for _ in range(100):
        c.log.warning("frame_malformed")
    assert len(c.lines()) == 100
    assert log.flush_suppressed() == 0


@pytest.mark.parametrize("rate_limit", [(0, 10.0), (10, 0.0), (10, -1.0)])
def test_a_limit_that_would_silence_everything_is_refused(
        rate_limit: tuple[int, float]) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        log.configure("info", io.BytesIO(), rate_limit=rate_limit)


def test_lines_stay_one_json_object_each() -> None:
    c = Captured()
    for i in range(30):
        c.log.warning("frame_malformed", reason="line\nbreak \"quoted\" \u2028", frame=b"\x00",
                      n=i)
    c.advance(WINDOW_S)
    c.log.warning("frame_malformed", reason="x")
    log.flush_suppressed()
    c.log.info("fill", ts_ns=1)
    lines = c.lines()  # parses each line on its own
    assert len(lines) == N + 2
    assert lines[0]["reason"] == "line\nbreak \"quoted\" \u2028"
    assert lines[N]["suppressed"] == 30 - N


def test_non_string_events_pass_untouched() -> None:
    # structlog takes any object as the event; an unhashable one must not break logging
    c = Captured()
    for _ in range(20):
        c.log.warning({"unhashable": "event"})
    assert len(c.lines()) == 20


def test_forgotten_keys_do_not_accumulate() -> None:
    clock = ManualClock()
    limiter = log.RateLimiter(N, WINDOW_S, clock=clock)
    for i in range(1000):  # ever-new event names, each under its limit
        limiter(None, "warning", {"event": f"e{i}", "level": "warning"})
    assert limiter.drain() == []  # nothing owed; windows still open
    clock.now_ns = WINDOW_NS
    assert limiter.drain() == []
    assert not limiter._windows  # expired and owing nothing: forgotten


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "fill"]),
                          st.sampled_from(["info", "warning", "error"]),
                          st.integers(0, 4 * WINDOW_NS // N),
                          st.booleans()),
                max_size=300),
       st.integers(1, 5))
def test_every_event_is_logged_or_counted_exactly_once(
        steps: list[tuple[str, str, int, bool]], limit: int) -> None:
    clock = ManualClock()
    limiter = log.RateLimiter(limit, WINDOW_S, clock=clock)
    sent: Counter[tuple[str, str]] = Counter()
    accounted: Counter[tuple[str, str]] = Counter()
    emitted_at: dict[tuple[str, str], list[int]] = {}
    for event, level, wait_ns, flush in steps:
        clock.now_ns += wait_ns
        sent[event, level] += 1
        try:
            out = limiter(None, level, {"event": event, "level": level})
        except structlog.DropEvent:
            assert level in log.LIMITED_LEVELS and event not in log.ALWAYS_LOGGED
            continue
        accounted[event, level] += 1 + out.get("suppressed", 0)
        emitted_at.setdefault((event, level), []).append(clock.now_ns)
        if flush:
            for e, lv, count in limiter.drain():
                assert count > 0
                accounted[e, lv] += count
    for e, lv, count in limiter.drain():
        accounted[e, lv] += count
    assert accounted == sent
    # fixed windows: no 2 x limit + 1 lines of a limited key within one window's length
    for (event, level), times in emitted_at.items():
        if level in log.LIMITED_LEVELS and event not in log.ALWAYS_LOGGED:
            for i in range(len(times) - 2 * limit):
                assert times[i + 2 * limit] - times[i] >= WINDOW_NS


# -- the console format ------------------------------------------------------------------

CONSOLE_FILL = {"order_id": 3, "exec_id": 1, "side": "BUY", "price": 6183763, "size": 1000,
                "fee": -12, "maker": True, "ts_ns": 1_723_161_270_000_000_000,
                "position_lots": -2000}


def test_the_console_shows_prices_and_sizes_in_decimals_next_to_the_integers() -> None:
    stream = io.BytesIO()
    log.configure("info", stream, log_format="console", instrument=BTCUSDT)
    logger = log.get_logger(instrument="BTCUSDT")
    logger.info("fill", **CONSOLE_FILL)
    logger.warning("book_crossed", best_bid=None, best_ask=6183764, update_id=5)
    # fields named for their unit: *_lots, *_ticks
    logger.warning("quote_unsendable", price_ticks=6183700, wanted_lots=500, size_lots=0,
                   min_size_lots=1000, limit_ms=5)
    fill, crossed, unsendable = stream.getvalue().decode().splitlines()
    assert " fill " in fill and "\x1b[" not in fill  # not a terminal: no colours
    assert "price=6183763 (61837.63)" in fill
    assert "size=1000 (0.00001000)" in fill
    assert "position_lots=-2000 (-0.00002000)" in fill
    # what is not a price or a size in ticks/lots is left as it was
    assert "fee=-12 " in fill and "maker=True" in fill and "order_id=3 " in fill
    assert "best_ask=6183764 (61837.64)" in crossed and "best_bid=None" in crossed
    assert "price_ticks=6183700 (61837.00)" in unsendable
    assert "wanted_lots=500 (0.00000500)" in unsendable and "size_lots=0 (0.00000000)" in unsendable
    assert "min_size_lots=1000 (0.00001000)" in unsendable and "limit_ms=5" in unsendable


def test_json_lines_are_the_same_whether_the_instrument_is_known_or_not() -> None:
    """The JSON chain is the hot path and the interface: an instrument adds no processor
    and changes no byte (the timestamp aside)."""
    chains, lines = [], []
    for instrument in (None, BTCUSDT):
        stream = io.BytesIO()
        log.configure("info", stream, log_format="json", instrument=instrument)
        chains.append([getattr(p, "__name__", type(p).__name__)
                       for p in structlog.get_config()["processors"]])
        log.get_logger(instrument="BTCUSDT").info("fill", **CONSOLE_FILL)
        lines.append(re.sub(rb'"timestamp":"[^"]+"', b'"timestamp":"T"', stream.getvalue()))
    assert chains[0] == chains[1] == ["merge_contextvars", "JsonLine"]
    assert lines[0] == lines[1]
    assert orjson.loads(lines[1]) == {**CONSOLE_FILL, "instrument": "BTCUSDT",
                                      "event": "fill", "level": "info", "timestamp": "T"}


def test_the_limiter_and_flush_work_the_same_on_the_console() -> None:
    stream = io.BytesIO()
    clock = ManualClock(start_ns=10**12)
    log.configure("info", stream, rate_limit=(N, WINDOW_S), clock=clock,
                  log_format="console", instrument=BTCUSDT)
    logger = log.get_logger(instrument="BTCUSDT")
    for i in range(100):
        logger.warning("frame_malformed", n=i)
    clock.now_ns += WINDOW_NS
    logger.warning("frame_malformed", n=100)
    for _ in range(N + 3):
        logger.info("gateway_status")
    assert log.flush_suppressed() == 1
    lines = stream.getvalue().decode().splitlines()
    storm = [line for line in lines if " frame_malformed " in line]
    assert len(storm) == N + 1
    assert "suppressed=90" in storm[-1] and "n=100" in storm[-1]
    assert "suppressed" not in "".join(storm[:-1])
    (summary,) = [line for line in lines if " log_suppressed " in line]
    assert "suppressed=3 " in summary and "suppressed_event=gateway_status" in summary
    assert "[info" in summary  # at the level of the events it counts


def _on_a_terminal(log_format: str) -> str:
    """What one event looks like when the log's stream is a pseudo-terminal."""
    master, slave = os.openpty()
    with os.fdopen(slave, "wb") as terminal:
        log.configure("info", terminal, log_format=log_format, instrument=BTCUSDT)
        log.get_logger().info("fill", price=6183763)
    text = os.read(master, 65536).decode()
    os.close(master)
    return text


def test_auto_is_console_with_colours_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    text = _on_a_terminal("auto")
    assert "\x1b[" in text and not text.startswith("{")
    assert "6183763 (61837.63)" in re.sub(r"\x1b\[[0-9;]*m", "", text)
    # NO_COLOR (no-color.org) keeps the console format, without colours
    monkeypatch.setenv("NO_COLOR", "1")
    text = _on_a_terminal("auto")
    assert "\x1b[" not in text and "price=6183763 (61837.63)" in text
    # json on a terminal is json
    assert orjson.loads(_on_a_terminal("json"))["price"] == 6183763


def test_an_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log format must be one of"):
        log.configure("info", io.BytesIO(), log_format="text")


def _structlog_chain(limiter: log.RateLimiter) -> list[Any]:
    """The JSON chain before :class:`log.JsonLine` fused it: structlog's processors."""
    return [structlog.processors.add_log_level, limiter,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(serializer=orjson.dumps)]


def _caught() -> ValueError:
    """An exception with its traceback, whose frames (this one's) are the same each call."""
    try:
        raise ValueError("boom")
    except ValueError as error:
        return error


class _Opaque:
    """A value JSON cannot hold: both renderers must fall back to its repr."""

    def __repr__(self) -> str:
        return "<opaque>"


def test_the_fused_json_line_is_byte_for_byte_structlogs_chain() -> None:
    """JsonLine does in one call what five structlog processors did; the same events give
    the same bytes (the time stamp's value aside): a plain line, one carrying a rate
    limit's count, one with a traceback, one with a value only ``repr`` can show, and the
    same events dropped."""
    exc = _caught()
    events: list[tuple[str, dict[str, Any]]] = [
        ("info", {"instrument": "BTCUSDT", **CONSOLE_FILL, "event": "fill"}),
        ("warning", {"event": "frame_malformed", "n": 1}),
        ("error", {"event": "journal_write_failed", "exc_info": exc, "during": "fill"}),
        ("info", {"event": "odd", "value": _Opaque(), "none": None, "f": 0.5}),
    ] + [("warning", {"event": "frame_malformed", "n": i}) for i in range(2, 30)]
    outputs: list[list[bytes | None]] = []
    for fused in (True, False):
        clock = ManualClock(start_ns=10**12)
        limiter = log.RateLimiter(N, WINDOW_S, clock=clock)
        chain = [log.JsonLine(limiter)] if fused else _structlog_chain(limiter)
        lines: list[bytes | None] = []
        for i, (level, event) in enumerate(events):
            if i == len(events) - 1:
                clock.now_ns += WINDOW_NS  # the last carries the count of those dropped
            out: Any = dict(event)
            try:
                for processor in chain:
                    out = processor(None, level, out)
            except structlog.DropEvent:
                out = None
            lines.append(None if out is None else
                         re.sub(rb'"timestamp":"[^"]+"', b'"timestamp":"T"', out))
        outputs.append(lines)
    assert outputs[0] == outputs[1]
    assert outputs[0].count(None) == 28 - N and b'"suppressed":' in (outputs[0][-1] or b"")
    assert b'"exception":[' in (outputs[0][2] or b"") and b'"<opaque>"' in (outputs[0][3] or b"")


@pytest.mark.parametrize("wall_ns", [
    1_733_590_571_274_377_123,  # a fraction
    1_733_590_571_000_000_000,  # microsecond 0: no fraction, as datetime.isoformat
    1_733_590_571_000_000_999,  # under a microsecond past the second: still none
    1_733_590_571_999_999_999,  # the last microsecond of the second
    0,  # the epoch
], ids=["fraction", "whole_second", "sub_microsecond", "last_microsecond", "epoch"])
def test_the_line_stamp_is_structlogs_iso_utc_text(wall_ns: int) -> None:
    """UtcStamp formats the date once a second; the text is what structlog's
    ``TimeStamper(fmt="iso", utc=True)`` writes for the same microsecond."""
    from datetime import UTC, datetime, timedelta
    expected = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=wall_ns // 1000)
                ).isoformat().replace("+00:00", "Z")
    stamp = log.UtcStamp(lambda: wall_ns)
    assert stamp() == stamp() == expected
    later = log.UtcStamp(iter([wall_ns - 10**9, wall_ns]).__next__)  # the second before
    later()
    assert later() == expected
