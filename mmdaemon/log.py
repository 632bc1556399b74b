"""Structured logs: one JSON object per line, rendered by orjson, stable event names.

Built from small structlog processors; nothing is formatted unless the level is enabled
(``make_filtering_bound_logger`` drops disabled calls before any processor runs).

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
import sys
import time
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, BinaryIO

import orjson
import structlog

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
    "journal_write_failed",
    "firm_bus_ready",
    "firm_bus_lost",
    "firm_bus_restored",
    "firm_limit_breached",
    "firm_limit_cleared",
    "global_kill_received",
    "global_rearm_received",
})
"""Events that are never rate-limited, whatever their level."""

LIMITED_LEVELS: frozenset[str] = frozenset({"info", "warning"})
"""Levels the limiter applies to. Errors and above always pass: they are rare and each
one matters. Debug is left alone too: it is off in production (where journald's budget
is at stake) and whoever turns it on wants the full trace (the tests reconstruct order
flow from ``order_sent`` debug lines)."""

DEFAULT_RATE_LIMIT: tuple[int, float] = (10, 10.0)
"""At most 10 lines per ``(event, level)`` per 10 s: far below journald's default burst
(10,000 messages per 30 s per service), while a steady stream stays visible."""

SUPPRESSED_EVENT = "log_suppressed"
"""The event :func:`flush_suppressed` writes; never limited itself (one line per key)."""


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

    ``clock`` returns monotonic nanoseconds (``time.monotonic_ns``, or a test's fake):
    the budget that matters is journald's, which is counted in wall time, so a replay at
    full speed is limited in wall time too.

    Not locked: the daemon logs from one event-loop thread. Should threads log one day,
    a race can only miscount by a line, never raise.
    """

    def __init__(self, limit: int = DEFAULT_RATE_LIMIT[0],
                 window_s: float = DEFAULT_RATE_LIMIT[1],
                 always_logged: Iterable[str] = ALWAYS_LOGGED,
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        if limit < 1:
            raise ValueError(f"rate limit must allow at least 1 event per window, got {limit}")
        if not window_s > 0:
            raise ValueError(f"rate limit window must be positive, got {window_s!r} s")
        self.limit = limit
        self.window_ns = round(window_s * 1e9)
        self.exempt = frozenset(always_logged) | {SUPPRESSED_EVENT}
        self.clock = clock
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


# the limiter the current configuration installed, for flush_suppressed
_limiter: RateLimiter | None = None
_atexit_registered = False


def configure(level: str = "info", stream: BinaryIO | None = None,
              rate_limit: tuple[int, float] | None = DEFAULT_RATE_LIMIT,
              always_logged: Iterable[str] = ALWAYS_LOGGED,
              clock: Callable[[], int] = time.monotonic_ns) -> None:
    """Send JSON log lines to ``stream`` (stderr's buffer by default) at ``level`` and up.

    ``rate_limit`` is ``(events, window_s)`` per ``(event, level)``, or None for no
    limit; ``always_logged`` names events never limited; ``clock`` gives the limiter
    monotonic nanoseconds.
    """
    global _limiter, _atexit_registered
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {sorted(LEVELS)}, got {level!r}")
    limiter = None if rate_limit is None else RateLimiter(*rate_limit, always_logged, clock)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
    ]
    if limiter is not None:
        # before the timestamp and the renderer: a dropped event costs no formatting
        processors.append(limiter)
    processors += [
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.dict_tracebacks,
        structlog.processors.JSONRenderer(serializer=orjson.dumps),
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.BytesLoggerFactory(stream or sys.stderr.buffer),
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
