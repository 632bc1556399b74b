"""A logger that keeps every event in memory (the daemon's logger interface)."""

from __future__ import annotations

from typing import Any


class Recorder:
    """Collects log calls as dicts ``{"event": name, **fields}``."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def _log(self, event: str, **fields: Any) -> None:
        self.events.append({"event": event, **fields})

    info = warning = error = debug = _log

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]
