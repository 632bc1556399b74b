"""A real `mmdaemon run` subprocess whose JSON log lines are collected as they come."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

Event = dict[str, Any]


class Daemon:
    """Start ``mmdaemon run --config``; read its stdout log in a thread."""

    def __init__(self, config: Path, *args: str) -> None:
        self.config = config
        self.events: list[Event] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mmdaemon", "run", "--config", str(config), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                self.events.append({"event": "unparsed", "line": line.decode(errors="replace")})

    def wait_for(self, pred: Callable[[Event], bool], timeout: float = 30.0,
                 start: int = 0) -> tuple[int, Event]:
        """Index and event of the first event from ``start`` on that satisfies ``pred``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # taken before the scan: the last lines of a process that exits during it are
            # appended after the scan's range, and must get one more scan
            ended = self.proc.poll() is not None and not self._reader.is_alive()
            for i in range(start, len(self.events)):
                if pred(self.events[i]):
                    return i, self.events[i]
            if ended:
                break
            time.sleep(0.02)  # the poll interval
        tail = [e.get("event") for e in self.events[-20:]]
        stderr = self.proc.stderr.read().decode()[-2000:] if self.proc.poll() is not None else ""
        raise AssertionError(f"no matching event within {timeout}s; last events {tail} {stderr}")

    def wait_event(self, name: str, timeout: float = 30.0, start: int = 0, **fields: Any
                   ) -> tuple[int, Event]:
        return self.wait_for(
            lambda e: e.get("event") == name and all(e.get(k) == v for k, v in fields.items()),
            timeout, start)

    def signal(self, sig: signal.Signals) -> None:
        os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait for the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._reader.join(5)


def reload_fails_and_a_kill_still_works(d: Daemon, error: str) -> None:
    """SIGHUP to ``d``: ``reload_failed`` with ``error`` in its text; then a SIGUSR1 is acted
    on and the stop exits 0, so the failed read never blocked the event loop."""
    d.signal(signal.SIGHUP)
    i, failed = d.wait_event("reload_failed", timeout=15)
    assert error in failed["error"], failed
    d.signal(signal.SIGUSR1)
    d.wait_event("kill_switch_tripped", start=i)
    assert d.stop() == 0
