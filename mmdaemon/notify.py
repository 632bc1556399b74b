"""systemd's notify protocol without libsystemd: datagrams to ``$NOTIFY_SOCKET``.

``NOTIFY_SOCKET`` is a filesystem path, or an abstract socket written with a leading ``@``
(sent as a leading NUL byte). Messages are newline-separated ``KEY=value`` lines:
``READY=1``, ``STATUS=...``, ``WATCHDOG=1``, ``RELOADING=1`` with ``MONOTONIC_USEC=...``,
``STOPPING=1``, ``EXTEND_TIMEOUT_USEC=...`` (systemd >= 236). Without ``NOTIFY_SOCKET``
(not under systemd) every call is a no-op. Sending never blocks and never raises: a
notification that cannot be delivered is counted, because the service must not stop trading
safely just because systemd is gone.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping


class Notifier:
    """Send notifications to the service manager named by the environment."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        self._sock: socket.socket | None = None
        if address and (address.startswith("/") or address.startswith("@")):
            self.address = "\0" + address[1:] if address.startswith("@") else address
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        # the watchdog is ours unless systemd named another process
        mine = not pid or pid == str(os.getpid())
        self.watchdog_usec = int(usec) if usec.isdigit() and mine else 0
        self.failures = 0

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to ping: half the watchdog timeout, as systemd recommends."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec else None

    def send(self, *lines: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; False if there is no manager or it failed."""
        if self._sock is None or self.address is None:
            return False
        try:
            self._sock.sendto("\n".join(lines).encode(), self.address)
        except OSError:
            self.failures += 1
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def still_starting(self, status: str, extend_s: float) -> bool:
        """``STATUS=`` plus ``EXTEND_TIMEOUT_USEC=``: not READY yet, but alive and working
        on it; the start timeout then ends no sooner than ``extend_s`` seconds from now. A
        start that stops sending these still times out (``TimeoutStartSec=``, or the last
        extension, whichever ends later)."""
        return self.send(f"STATUS={status}", f"EXTEND_TIMEOUT_USEC={round(extend_s * 1e6)}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        # systemd matches the reload against its own clock: CLOCK_MONOTONIC in microseconds
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
