"""Wire-to-wire latency inside the daemon (#23): from the receive stamp of the market-data
frame that caused an order frame to the moment that order frame was written to the
order-entry socket.

The start is the frame's receive stamp as the feed gave it
(:attr:`~mmdaemon.feed.websocket.WebsocketFeed.stamp_source`): on a plain ``ws://`` feed the
kernel's receive time of the last TCP segment of the read that completed the frame (frames
read together share it; :mod:`mmdaemon.feed.stamped_ws`), the wall time the
frame was handed over at otherwise (``wss://``: the kernel would stamp encrypted bytes; a
proxy). The end is when the order frame was handed to the websocket's transport: uvloop's
transport writes at once (one ``send`` syscall) when its buffer is empty, and the gateway
writes in the caller's step only while the buffer is far from its high-water mark.
Both are the system's wall clock (``CLOCK_REALTIME``), in ns.

Which frame caused an order frame: the one the feed task was handing to the engine when
the order's request was written (:attr:`~mmdaemon.feed_task.FeedTask.cause_ns`, set while
its order actions are sent); writes outside that (a cancel-all, a retry, a reconnect's
reconciliation) are not counted. Every order frame counts: a requote that moves both
sides writes two.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Any

from mmdaemon.latency_histogram import LatencyHistogram

WIRE_TO_WIRE_BUCKETS_S: tuple[float, ...] = (
    10e-6, 25e-6, 50e-6, 75e-6, 100e-6, 125e-6, 150e-6, 200e-6, 250e-6, 300e-6, 400e-6,
    500e-6, 750e-6, 1e-3, 2e-3, 5e-3, 10e-3, 50e-3, 250e-3, 1.0,
)
"""Upper bounds (seconds) of the wire-to-wire histogram; +Inf is implied. Fine around the
goal (p99 under 250 us)."""

RECENT = 1 << 16
"""How many of the latest latencies the run summary's percentiles are of (a bounded ring:
a day's run holds no more than this)."""


class WireToWire:
    """The histogram (for ``/metrics``) and the latest :data:`RECENT` values (for the run
    summary's exact percentiles), filled by :meth:`written`."""

    def __init__(self, cause_ns: Callable[[], int], wall_ns: Callable[[], int],
                 stamp_source: Callable[[], str]) -> None:
        self.histogram = LatencyHistogram(WIRE_TO_WIRE_BUCKETS_S)
        self._cause_ns = cause_ns  # 0 while no frame's order actions are being sent
        self._wall_ns = wall_ns
        self._stamp_source = stamp_source
        self._recent = array("q", bytes(8 * RECENT))
        self._n = 0  # values seen; the ring holds the latest min(n, RECENT)

    def written(self) -> None:
        """An order frame was written to the order-entry socket just now."""
        cause = self._cause_ns()
        if not cause:
            return
        ns = max(0, self._wall_ns() - cause)  # a clock stepped back: counted as 0
        self.histogram.observe_ns(ns)
        self._recent[self._n % RECENT] = ns
        self._n += 1

    def figures(self) -> dict[str, Any]:
        """The run summary's: how many, p50/p90/p99/p99.9/max in us of the latest
        :data:`RECENT`, and where the start stamp came from (kernel or userspace)."""
        values = sorted(self._recent[:min(self._n, RECENT)])
        if not values:
            return {"orders": 0, "stamp": self._stamp_source()}

        def pct(q: float) -> float:
            return round(values[min(len(values) - 1, int(q * len(values)))] / 1000, 1)

        return {"orders": self._n, "of_latest": len(values), "p50_us": pct(0.5),
                "p90_us": pct(0.9), "p99_us": pct(0.99), "p999_us": pct(0.999),
                "max_us": round(values[-1] / 1000, 1), "stamp": self._stamp_source()}
