"""The sim's one clock: the replay clock mapped onto the wall clock.

A recording's venue times (``E``, ``T``) are years old; a client signs its requests with
today's wall clock. :class:`SimClock` puts both on one time line: when the tape plays its
first timed frame, the offset ``wall now - that frame's venue time`` is fixed, and from then
on every venue time the sim shows is a recorded venue time plus that offset: the market
frames' ``E``/``T`` (rewritten by :meth:`SimClock.shift_frame`; ``lastUpdateId`` and the
recorded price text are untouched), the REST depth's ``E``/``T``, order entry, user-data
events, ``myTrades`` and the ``time`` method.

The replay clock runs at the tape's speed: at ``--speed 1`` it is the wall clock (to the
pacing's jitter), at ``--speed N`` it runs N x, at ``--speed max`` it is the position of the
tape (the latest venue time played). It never runs behind what the tape has played, so a
fill, stamped when the trade that filled it is played, is never earlier than that trade.

Signed requests: a client's clock runs at 1x, so ``timestamp``/``recvWindow`` checks (and
``time``, which a client may sync its signing clock to) read :meth:`SimClock.signing_ms`:
the replay clock at speed 1, the wall clock at any other speed (a replay clock running N x
moves away from every client's clock, and no offset a client learns keeps it in
``recvWindow``). Event times are on the replay clock at every speed.

Units: ns (``*_ns``) and ms (``*_ms``) since the epoch. Invariants: :meth:`SimClock.now_ns`
never decreases and is >= every venue time already played.
"""

from __future__ import annotations

import re
from typing import Final

from mmdaemon.clock import Clock
from mmdaemon.model import NS_PER_MS

_VENUE_TIME: Final = re.compile(rb'"([ET])":([0-9]{1,13})(?=[,}])')
"""A venue time in a frame as Binance prints it (compact JSON: only a key can match)."""


class SimClock:
    """The sim's time line on ``clock`` (the wall and monotonic clocks), the tape playing at
    ``speed`` (None: as fast as possible). Before :meth:`start` it is the wall clock."""

    def __init__(self, clock: Clock, speed: float | None) -> None:
        if speed is not None and not speed > 0:
            raise ValueError(f"SimClock: speed must be > 0 or None (max), got {speed}")
        self.clock = clock
        self.speed = speed
        self.offset_ns = 0  # wall - recorded venue time, fixed by start()
        self.started = False
        self._wall0_ns = 0  # the wall clock at start()
        self._mono0_ns = 0  # the monotonic clock at start()
        self._position_ns = 0  # the latest venue time played (mapped), ns

    def start(self, recorded_ns: int) -> None:
        """The tape plays its first timed frame, of recorded venue time ``recorded_ns``: the
        offset is fixed now (later calls change nothing)."""
        if self.started:
            return
        self._wall0_ns = self.clock.wall_ns()
        self._mono0_ns = self.clock.monotonic_ns()
        # whole ms: a frame's times are ms, and shifted they must stay exact
        self.offset_ns = (self._wall0_ns - recorded_ns) // NS_PER_MS * NS_PER_MS
        self._position_ns = self._wall0_ns
        self.started = True

    def venue_ns(self, recorded_ns: int) -> int:
        """A recorded venue time on the sim's time line (ns)."""
        return recorded_ns + self.offset_ns

    def played(self, venue_ns: int) -> None:
        """The tape has played up to ``venue_ns`` (already mapped): the clock is not behind it."""
        if venue_ns > self._position_ns:
            self._position_ns = venue_ns

    @property
    def position_ns(self) -> int:
        """The latest venue time played (ns, mapped); the wall clock before start."""
        return self._position_ns if self.started else self.clock.wall_ns()

    def now_ns(self) -> int:
        """The replay clock now (see the module docstring); the wall clock before start."""
        if not self.started:
            return self.clock.wall_ns()
        if self.speed is None:
            return self._position_ns
        paced = self._wall0_ns + round((self.clock.monotonic_ns() - self._mono0_ns) * self.speed)
        return max(paced, self._position_ns)

    def now_ms(self) -> int:
        """:meth:`now_ns` in ms."""
        return self.now_ns() // NS_PER_MS

    def signing_ms(self) -> int:
        """The clock a signed request's ``timestamp`` is checked against, and ``time`` tells:
        the replay clock at speed 1 (and before start), the wall clock at any other speed."""
        if self.speed == 1 or not self.started:
            return self.now_ms()
        return self.clock.wall_ns() // NS_PER_MS

    def shift_frame(self, frame: bytes) -> bytes:
        """``frame`` with its venue times ``E`` and ``T`` (ms) on the sim's time line; every
        other byte as recorded."""
        offset_ms = self.offset_ns // NS_PER_MS
        if not offset_ms:
            return frame
        return _VENUE_TIME.sub(
            lambda m: b'"%s":%d' % (m[1], int(m[2]) + offset_ms), frame)
