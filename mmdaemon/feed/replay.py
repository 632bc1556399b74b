"""Paced replay of recordings: the dry-run feed source.

``speed`` 1 replays in real time, N replays N times faster, ``None`` (``--speed max``) as
fast as the consumer takes frames. Pacing follows the frames' times against an injected
:class:`~mmdaemon.clock.Clock`, so tests can run it without waiting.

A frame's time is what the daemon's clock reads while it handles the frame, by one of two
replay clocks:

- ``receive`` (the default): the recorded receive time, as it was live;
- ``exchange``: the venue's own event time in the frame (:func:`exchange_timed`). A
  recording made by another machine, or from the sim, receives the same frames at other
  (jittered) times; their event times are the same, and so is a replay on them.

A reference feed's recordings (:mod:`mmdaemon.reference`) are merged with the traded ones
by that time (:func:`merged`), streaming: one line of each is read ahead, never a file.
"""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from itertools import chain, islice
from pathlib import Path
from typing import TypeVar

from mmdaemon.clock import Clock
from mmdaemon.feed.recording import (
    CONFIRM_LINES,
    MAX_AHEAD_NS,
    MAX_BACK_NS,
    MAX_RECV_NS,
    MIN_RECV_NS,
    RecordedFrame,
    RecordingError,
    read_recording,
)
from mmdaemon.model import Malformed
from mmdaemon.reference import ReferenceFrame, ReferenceMalformed

# At --speed max, hand the loop back this often so other tasks (supervisor, signals) run.
YIELD_EVERY = 256
# Frames held back until the first event time: a Binance stream has one every 100 ms (depth)
# at most, so this many without one means the recording carries none.
MAX_UNTIMED = 10_000
T = TypeVar("T")
EventTime = Callable[[bytes], int]
"""A venue's event time of a raw frame in ns since the epoch, 0 when it carries none."""


async def paced(items: Iterable[T], time_of: Callable[[T], int | None], speed: float | None,
                clock: Clock) -> AsyncIterator[list[T]]:
    """``items`` in lists: the ones due now by ``time_of`` (ns; None: not timed), paced at
    ``speed`` against ``clock``, or ``YIELD_EVERY`` at a time at ``speed`` None (max).

    One await per batch rather than per item: at ``--speed max`` the loop's own cost per
    item is a visible share of the whole replay.
    """
    if speed is None:  # whole batches by islice, in C: no per-item step in Python here
        source = iter(items)
        while batch := list(islice(source, YIELD_EVERY)):
            yield batch
            if len(batch) < YIELD_EVERY:
                return
            await clock.sleep(0)  # let other tasks (supervisor, signals) run
        return
    batch = []
    first_ns = start_ns = -1
    for item in items:
        ts = time_of(item)
        if ts is not None:
            if first_ns < 0:
                first_ns, start_ns = ts, clock.monotonic_ns()
            wait_ns = start_ns + (ts - first_ns) / speed - clock.monotonic_ns()
            if wait_ns > 0:
                if batch:
                    yield batch
                    batch = []
                await clock.sleep(wait_ns / 1e9)
        batch.append(item)
        if len(batch) >= YIELD_EVERY:
            yield batch
            batch = []
    if batch:
        yield batch


def exchange_timed(items: Iterable[RecordedFrame | Malformed], event_ns: EventTime,
                   max_untimed: int = MAX_UNTIMED) -> Iterator[RecordedFrame | Malformed]:
    """The exchange clock: ``(time_ns, frame)`` with the venue's event time ``event_ns(frame)``
    (ns) in place of the receive time.

    Time never moves backwards: the venue's streams are each in order, not with one another.
    A frame without an event time (a spot ``bookTicker``, a REST snapshot) takes the latest
    one seen before it; the frames before the first event time take that first one, as they
    arrived just before it (they are held back until it comes). :class:`Malformed` lines pass
    through unchanged. Raises :class:`RecordingError` when ``max_untimed`` frames come
    without an event time, or the recording ends before one: this clock cannot time it.

    An event time that cannot be true does not move the clock (its frame takes the latest
    time, as one without any), by the receive times' bounds (:mod:`mmdaemon.feed.recording`):
    one before 2009 or from 2100 on never counts; one more than ``MAX_AHEAD_NS`` (60 s) ahead
    of the clock counts once ``CONFIRM_LINES`` frames in a row have event times that far
    ahead agreeing with one another (a recording with a break; the frames before the
    confirming one keep the old time). The first event time is one that the next agrees
    with (at most 60 s ahead, 5 s back); one that the next does not agree with is dropped.
    """
    items = iter(items)
    held: list[RecordedFrame | Malformed] = []
    first = 0  # the first plausible event time, until the next one agrees with it
    for item in items:
        if not isinstance(item, Malformed):
            ns = event_ns(item[1])
            if MIN_RECV_NS <= ns < MAX_RECV_NS:
                if first and -MAX_BACK_NS <= ns - first <= MAX_AHEAD_NS:
                    items = chain([item], items)  # timed from the first, in the loop below
                    break
                first = ns  # none yet, or the one before was an outlier
                if len(held) <= max_untimed:  # a candidate is not untimed: one more
                    held.append(item)
                    continue
        if len(held) >= max_untimed:
            raise RecordingError(f"no venue event time in the first {max_untimed} lines: "
                                 "replay this recording with the receive clock")
        held.append(item)
    else:
        if first:  # a single event time: nothing contradicts it
            yield from (item if isinstance(item, Malformed) else (first, item[1])
                        for item in held)
            return
        if not all(isinstance(item, Malformed) for item in held):
            raise RecordingError("no venue event time in the recording: replay it with the "
                                 "receive clock")
        yield from held  # malformed lines only: nothing to time
        return
    last = first
    for item in held:
        yield item if isinstance(item, Malformed) else (last, item[1])
    del held
    run = run_last = 0  # event times agreeing on a jump ahead, and the newest of them
    for item in items:
        if isinstance(item, Malformed):
            yield item
            continue
        frame = item[1]
        ns = event_ns(frame)
        if ns > last:
            if ns - last <= MAX_AHEAD_NS:
                last = ns
                if run:
                    run = 0
            elif ns < MAX_RECV_NS:
                run = run + 1 if run and -MAX_BACK_NS <= ns - run_last <= MAX_AHEAD_NS else 1
                run_last = ns
                if run >= CONFIRM_LINES:
                    last, run = ns, 0
        yield last, frame


ReplayItem = RecordedFrame | Malformed | ReferenceFrame | ReferenceMalformed
"""What a replay yields: the traded feed's frames and bad lines, and the reference's."""


def _time_ns(item: ReplayItem) -> int | None:
    """A frame's time (a traded or a reference frame), None for a line that was not one."""
    kind = type(item)
    return item[0] if kind is tuple or kind is ReferenceFrame else None  # type: ignore[return-value]


def _order_ns(item: ReplayItem) -> int:
    """The time two recordings merge by: a frame's, or a bad line's (the last good one's)."""
    return item[0] if type(item) is tuple else item.recv_ns  # type: ignore[union-attr,return-value]


def merged(traded: Iterable[RecordedFrame | Malformed],
           reference: Iterable[RecordedFrame | Malformed]) -> Iterator[ReplayItem]:
    """The traded and the reference feed's lines in one stream, by time (each recording's
    own order kept); the reference's wrapped as :class:`ReferenceFrame` and
    :class:`ReferenceMalformed`. On equal times the reference line comes first: a quote
    decided at that time has seen both. Streaming: one line of each is held at a time."""
    wrapped = (ReferenceMalformed(item) if type(item) is Malformed else ReferenceFrame(*item)
               for item in reference)
    return heapq.merge(wrapped, traded, key=_order_ns)


class ReplaySource:
    """Async iterator of recorded frames, paced by their times: receive times, or with
    ``event_ns`` (the venue's, see :func:`exchange_timed`) event times."""

    def __init__(self, paths: Iterable[str | Path], speed: float | None, clock: Clock,
                 event_ns: EventTime | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        self.speed = speed
        self.clock = clock
        self.event_ns = event_ns

    def lines(self) -> Iterable[RecordedFrame | Malformed]:
        """The recordings' lines on the replay's clock, not paced."""
        frames: Iterable[RecordedFrame | Malformed] = read_recording(self.paths)
        if self.event_ns is not None:  # chosen once: the receive clock pays nothing per frame
            frames = exchange_timed(frames, self.event_ns)
        return frames

    def batches(self) -> AsyncIterator[list[RecordedFrame | Malformed]]:
        """Frames in lists (see :func:`paced`)."""
        return paced(self.lines(), _time_ns, self.speed, self.clock)

    def merged_batches(self, reference: Iterable[str | Path]
                       ) -> AsyncIterator[list[ReplayItem]]:
        """:meth:`batches` with the ``reference`` recordings' lines merged in by the same
        clock (:func:`merged`), paced together."""
        ref = ReplaySource(reference, self.speed, self.clock, self.event_ns)
        return paced(merged(self.lines(), ref.lines()), _time_ns, self.speed, self.clock)

    async def frames(self) -> AsyncIterator[RecordedFrame | Malformed]:
        """The same frames one at a time."""
        async for batch in self.batches():
            for item in batch:
                yield item
