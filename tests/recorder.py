"""A logger that keeps every event in memory (the daemon's logger interface)."""

from __future__ import annotations

from typing import Any


class Recorder:
    """Collects log calls as dicts ``{"event": name, **fields}``."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.context: dict[str, Any] = {}

    def _log(self, event: str, **fields: Any) -> None:
        self.events.append({"event": event, **self.context, **fields})

    info = warning = error = debug = _log

    def bind(self, **fields: Any) -> Recorder:
        """A logger adding ``fields`` to every line, into the same events (structlog's
        ``bind``)."""
        bound = Recorder()
        bound.events, bound.context = self.events, {**self.context, **fields}
        return bound

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]
