"""Structured logs: JSON lines (orjson) for machines, console text for people; stable
event names.

Built from small structlog processors; nothing is formatted unless the level is enabled
(``make_filtering_bound_logger`` drops disabled calls before any processor runs).

Two formats share the chain up to the timestamp (so the rate limit is the same in both).
JSON lines are the interface (journald, jq, the tests): one object per line, stable event
names and fields, and their chain is the hot path's, with nothing added for the console.
The console format is for people at a terminal: structlog's ``ConsoleRenderer`` (aligned
columns, coloured on a terminal), with integer prices and sizes followed by their decimal
text at the instrument's precision (:class:`DecimalText`). ``auto``, the default, picks
the console exactly when the log's stream is a terminal.

Log volume is bounded (issue #7): a :class:`RateLimiter` in the chain lets at most ``N``
lines of one ``(event, level)`` through per window and counts the rest, so a storm of
one repeated warning (malformed frames, a flapping connection) cannot make journald
throttle the daemon and lose the lines that matter. The next line of that key after the
window carries ``suppressed=<count>``; :func:`flush_suppressed` writes counts that no
later line picked up, one ``log_suppressed`` line per key.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, MutableMapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO

import orjson
import structlog

from mmdaemon.clock import Clock, SystemClock

if TYPE_CHECKING:
    from mmdaemon.model import Instrument

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

ALWAYS_LOGGED: frozenset[str] = frozenset({
    # the lines an operator reconstructs an incident from: never rate-limited
    "kill_switch_tripped",
    "state_changed",
    "fill",
    "orders_cancelled",
    "stopped",
    "service_started",
    "journal_restored",
    "kill_switch_rearmed",
    "rearm_refused",
    "venue_status",
    "firm_bus_ready",
    "firm_bus_lost",
    "firm_bus_restored",
    "firm_limit_breached",
    "firm_limit_cleared",
    "global_kill_received",
    "global_rearm_received",
    # limited already, by event time (mmdaemon.risk.unsendable): a wall-clock limit on top
    # would drop them during a fast replay, where their cadence is the point
    "quote_unsendable",
    "order_blocked",
})
"""Events that are never rate-limited, whatever their level."""

LIMITED_LEVELS: frozenset[str] = frozenset({"info", "warning", "error"})
"""Levels the limiter applies to. Errors are limited like the rest: an error that repeats
(a write failing on every supervisor tick) says nothing new after its first lines, and
the count of the rest is reported. ``critical`` always passes. Debug is left alone: it is
off in production (where journald's budget is at stake) and whoever turns it on wants the
full trace (the tests reconstruct order flow from ``order_sent`` debug lines)."""

DEFAULT_RATE_LIMIT: tuple[int, float] = (10, 10.0)
"""At most 10 lines per ``(event, level)`` per 10 s: far below journald's default burst
(10,000 messages per 30 s per service), while a steady stream stays visible."""

SUPPRESSED_EVENT = "log_suppressed"
"""The event :func:`flush_suppressed` writes; never limited itself (one line per key)."""

FORMATS = ("auto", "json", "console")
"""``--log-format``: ``json`` lines, ``console`` text, or ``auto`` (console on a terminal)."""

PRICE_FIELDS: frozenset[str] = frozenset({"price", "best_bid", "best_ask"})
"""Fields the daemon logs as prices in integer ticks (orders, fills, a crossed book); so is
any field named ``*_ticks``."""

SIZE_FIELDS: frozenset[str] = frozenset({"size", "position"})
"""Fields the daemon logs as sizes in integer lots (orders, fills, the position in the
inventory limits' ``state_changed``); so is any field named ``*_lots`` (``position_lots``
of ``fill``, ``journal_restored``, ``stopped``, ...)."""


class _Window:
    """One key's state: its window start, the lines let through in it, the dropped count."""

    __slots__ = ("emitted", "start_ns", "suppressed")

    def __init__(self, start_ns: int) -> None:
        self.start_ns = start_ns
        self.emitted = 0
        self.suppressed = 0  # dropped and not yet reported, across windows


class RateLimiter:
    """A structlog processor: at most ``limit`` events per ``(event, level)`` per window.

    Windows are fixed per key and start at the key's first event after the previous
    window ended. An event over the limit raises :class:`structlog.DropEvent` (so it is
    never rendered: a storm costs less than normal logging) and is counted. The first
    event let through after that carries ``suppressed=<count>`` and the count restarts;
    :meth:`drain` hands out counts no later event picked up. Every dropped event is
    reported exactly once, by one of those two routes.

    ``clock``'s monotonic nanoseconds time the windows (the system's clock by default):
    the budget that matters is journald's, which is counted in wall time, so a replay at
    full speed is limited in wall time too.

    Not locked: the daemon logs from one event-loop thread. Should threads log one day,
    a race can only miscount by a line, never raise.
    """

    def __init__(self, limit: int = DEFAULT_RATE_LIMIT[0],
                 window_s: float = DEFAULT_RATE_LIMIT[1],
                 always_logged: Iterable[str] = ALWAYS_LOGGED,
                 clock: Clock | None = None) -> None:
        if limit < 1:
            raise ValueError(f"rate limit must allow at least 1 event per window, got {limit}")
        if not window_s > 0:
            raise ValueError(f"rate limit window must be positive, got {window_s!r} s")
        self.limit = limit
        self.window_ns = round(window_s * 1e9)
        self.exempt = frozenset(always_logged) | {SUPPRESSED_EVENT}
        self.clock = (clock or SystemClock()).monotonic_ns
        self._windows: dict[tuple[str, str], _Window] = {}

    def __call__(self, logger: Any, method_name: str,
                 event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        """Pass, annotate or drop one event (runs after ``add_log_level``)."""
        event = event_dict.get("event")
        # a non-string event (structlog allows any) may be unhashable: let it through
        if type(event) is not str or event in self.exempt:
            return event_dict
        level = event_dict.get("level", method_name)
        if level not in LIMITED_LEVELS:
            return event_dict
        now = self.clock()
        key = (event, level)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(now)
        elif now - window.start_ns >= self.window_ns:
            window.start_ns = now
            window.emitted = 0
        if window.emitted >= self.limit:
            window.suppressed += 1
            raise structlog.DropEvent
        window.emitted += 1
        if window.suppressed:
            event_dict["suppressed"] = window.suppressed
            window.suppressed = 0
        return event_dict

    def drain(self) -> list[tuple[str, str, int]]:
        """``(event, level, count)`` for every key with unreported drops; resets them.

        Also forgets keys whose window is over and that owe nothing, so a caller that
        logs ever-new event names cannot grow the table without bound.
        """
        now = self.clock()
        owed: list[tuple[str, str, int]] = []
        for key, window in list(self._windows.items()):
            if window.suppressed:
                owed.append((key[0], key[1], window.suppressed))
                window.suppressed = 0
            elif now - window.start_ns >= self.window_ns:
                del self._windows[key]
        return owed


class _Verbatim:
    """A value the console renderer shows as it is. It would quote a string with spaces
    (``price='6183763 (61837.63)'``) but shows any other object by its ``repr``: the text."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


class DecimalText:
    """A structlog processor for the console: ``price=6183763`` becomes
    ``price=6183763 (61837.63)``.

    Integer values of prices in ticks (:data:`PRICE_FIELDS`, ``*_ticks``) and sizes in lots
    (:data:`SIZE_FIELDS`, ``*_lots``) get the instrument's venue text next to them
    (``Instrument.price_str``/``size_str``: exact, at the grid's precision); anything else
    (None, a bool, a float, text) is left alone. Console only: it turns numbers into text,
    which the JSON interface must never see.
    """

    def __init__(self, instrument: Instrument) -> None:
        self._price = instrument.price_str
        self._size = instrument.size_str

    def __call__(self, logger: Any, method_name: str,
                 event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in event_dict.items():  # values replaced in place: no resize
            if type(value) is not int:  # not bool either, whose type is bool
                continue
            if key in PRICE_FIELDS or key.endswith("_ticks"):
                text = self._price(value)
            elif key in SIZE_FIELDS or key.endswith("_lots"):
                text = self._size(value)
            else:
                continue
            event_dict[key] = _Verbatim(f"{value} ({text})")
        return event_dict


class UtcStamp:
    """The time stamp of a line: wall time, UTC, ISO 8601, as structlog's
    ``TimeStamper(fmt="iso", utc=True)`` writes it (``2026-12-07T16:56:11.274377Z``, no
    fraction when the microsecond is 0), with the date and time of day formatted once per
    second rather than once per line."""

    __slots__ = ("_prefix", "_second", "_wall_ns")

    def __init__(self, wall_ns: Callable[[], int] = time.time_ns) -> None:
        self._wall_ns = wall_ns  # ns since the epoch
        self._second = -1
        self._prefix = ""  # the current second: "YYYY-MM-DDTHH:MM:SS"

    def __call__(self) -> str:
        second, ns = divmod(self._wall_ns(), 1_000_000_000)
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, UTC).isoformat()[:-6]
        micros = ns // 1000
        return f"{self._prefix}.{micros:06d}Z" if micros else f"{self._prefix}Z"


class JsonLine:
    """The JSON chain after the context in one processor: the level, the rate limit, the
    time stamp, an exception as a dict, and the line rendered by orjson.

    What structlog's ``add_log_level``, :class:`RateLimiter`, ``TimeStamper(fmt="iso",
    utc=True)``, ``dict_tracebacks`` and ``JSONRenderer(serializer=orjson.dumps)`` did one
    after the other, in that order, so every line is the same bytes (the time stamp's value
    aside), in one call instead of five: a fill's line is written on the way to the next
    quote, and each processor was a Python call with its own look-ups and, on a cold
    cache, misses."""

    __slots__ = ("_limiter", "_render", "_stamp")

    def __init__(self, limiter: RateLimiter | None, stamp: UtcStamp | None = None) -> None:
        self._limiter = limiter
        self._stamp = stamp or UtcStamp()
        self._render = structlog.processors.JSONRenderer(serializer=orjson.dumps)

    def __call__(self, logger: Any, method_name: str,
                 event_dict: MutableMapping[str, Any]) -> str | bytes:
        event_dict = structlog.processors.add_log_level(logger, method_name, event_dict)
        if self._limiter is not None:
            event_dict = self._limiter(logger, method_name, event_dict)
        event_dict["timestamp"] = self._stamp()
        if "exc_info" in event_dict:  # the renderer pops it, a false one included
            event_dict = structlog.processors.dict_tracebacks(logger, method_name, event_dict)
        return self._render(logger, method_name, event_dict)  # orjson: bytes


def _utf8(logger: Any, method_name: str, rendered: str) -> bytes:
    """The console renderer's text as the bytes the logger writes (JSON is bytes already)."""
    return rendered.encode("utf-8", "backslashreplace")


def _is_terminal(stream: BinaryIO) -> bool:
    """Whether a person may be reading ``stream``."""
    try:
        return stream.isatty()
    except ValueError:  # closed: nobody is reading it, let alone a person
        return False


def _console_wanted(log_format: str, stream: BinaryIO) -> bool:
    """Whether ``log_format`` (one of :data:`FORMATS`) renders console text on ``stream``."""
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {list(FORMATS)}, got {log_format!r}")
    return _is_terminal(stream) if log_format == "auto" else log_format == "console"


# the limiter the current configuration installed, for flush_suppressed
_limiter: RateLimiter | None = None
_atexit_registered = False


def configure(level: str = "info", stream: BinaryIO | None = None,
              rate_limit: tuple[int, float] | None = DEFAULT_RATE_LIMIT,
              always_logged: Iterable[str] = ALWAYS_LOGGED,
              clock: Clock | None = None,
              log_format: str = "auto", instrument: Instrument | None = None) -> None:
    """Send log lines to ``stream`` (stderr's buffer by default) at ``level`` and up.

    ``rate_limit`` is ``(events, window_s)`` per ``(event, level)``, or None for no
    limit; ``always_logged`` names events never limited; ``clock``'s monotonic time
    times the limiter's windows (the system's by default). ``log_format`` is one of
    :data:`FORMATS`: ``json`` lines, ``console`` text (coloured only on a terminal and
    without ``NO_COLOR`` set), ``auto`` = console when ``stream`` is a terminal.
    ``instrument`` is the process's instrument (one per daemon): the console shows prices
    and sizes in its decimals too; the JSON lines never change with it.
    """
    global _limiter, _atexit_registered
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {sorted(LEVELS)}, got {level!r}")
    out = stream or sys.stderr.buffer
    console = _console_wanted(log_format, out)
    limiter = None if rate_limit is None else RateLimiter(*rate_limit, always_logged, clock)
    processors: list[Any] = [structlog.contextvars.merge_contextvars]
    if not console:
        processors.append(JsonLine(limiter))
    else:
        processors.append(structlog.processors.add_log_level)
        if limiter is not None:
            # before the timestamp and the renderer: a dropped event costs no formatting
            processors.append(limiter)
        processors.append(structlog.processors.TimeStamper(fmt="iso", utc=True))
        if instrument is not None:
            processors.append(DecimalText(instrument))
        # the renderer formats tracebacks itself; colours only for a person's terminal
        colors = _is_terminal(out) and not os.environ.get("NO_COLOR")
        processors += [structlog.dev.ConsoleRenderer(colors=colors), _utf8]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.BytesLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    _limiter = limiter
    if limiter is not None and not _atexit_registered:
        # every command's exit, not only the daemon's own shutdown, reports what it owes
        atexit.register(_flush_at_exit)
        _atexit_registered = True


def get_logger(**context: Any) -> Any:
    """A bound logger carrying ``context`` on every event."""
    return structlog.get_logger().bind(**context)


def flush_suppressed(logger: Any = None) -> int:
    """Log the counts of rate-limited events that no later line has reported yet.

    One ``log_suppressed`` line per ``(event, level)``, at that level, with
    ``suppressed_event``, ``suppressed_level`` and ``suppressed`` (the count); through
    ``logger`` (say the daemon's, to keep its bound context) or a plain one. Returns the
    number of lines written; 0 when nothing is owed or no limiter is configured. Call it
    periodically (a count nobody picks up would otherwise wait for the next line of its
    key, maybe forever) and at shutdown.
    """
    if _limiter is None:
        return 0
    owed = _limiter.drain()
    if owed:
        out = logger if logger is not None else structlog.get_logger()
        for event, level, count in owed:
            getattr(out, level)(SUPPRESSED_EVENT, suppressed_event=event,
                                suppressed_level=level, suppressed=count)
    return len(owed)


def _flush_at_exit() -> None:
    """Last chance for owed counts when the process ends."""
    # the stream may be closed or gone by now (a closed pipe): nowhere left to write
    with contextlib.suppress(ValueError, OSError):
        flush_suppressed()
