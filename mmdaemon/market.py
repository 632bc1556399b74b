"""Market state: a venue codec feeding an order book, with the counters operators watch.

This is the pure, synchronous step every frame goes through, live or replayed:
frame bytes -> codec (decode + sequence) -> book. It fails closed: a gap or a crossed
book leaves ``book.synced`` False until a snapshot resyncs it, and nothing here raises on
bad input. Problems are reported through the injected ``report`` callback (the shell logs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from mmdaemon.book import OrderBook, region_for
from mmdaemon.model import BookUpdate, Gap, Malformed, MarketEvent, TopOfBook, Trade

Reporter = Callable[..., None]
"""``report(event_name, **fields)``: where the core tells the shell about problems."""


class Codec(Protocol):
    """What a venue codec offers the market state (see :mod:`mmdaemon.venues`)."""

    def decode(self, recv_ns: int, frame: bytes | str) -> list[MarketEvent]: ...

    def reset(self) -> None: ...


MALFORMED_SNAPSHOT = "snapshot:"
"""How a codec's :class:`~mmdaemon.model.Malformed` reason names a snapshot it could not
decode."""


def snapshot_lost(event: Malformed, book: OrderBook) -> bool:
    """``event`` is the snapshot the unsynced ``book`` waited for, and it did not decode:
    without another the book would wait for ever, so another must be fetched (a live feed
    backs off if they keep coming bad)."""
    return event.reason.startswith(MALFORMED_SNAPSHOT) and not book.synced


def _ignore(event: str, **fields: Any) -> None:
    """Default reporter: drop reports."""


class Decoded(NamedTuple):
    """Events a source decoded itself (LOBSTER files): they skip the codec."""

    recv_ns: int
    events: list[MarketEvent]


class NoCodec:
    """The codec of a market fed only :class:`Decoded` events."""

    def decode(self, recv_ns: int, frame: bytes | str) -> list[MarketEvent]:
        raise TypeError("this market takes decoded events, not frames")

    def reset(self) -> None:
        """Nothing to resynchronise: every LOBSTER row is a whole top of book."""


class MarketState:
    """Book + codec + counters for one instrument."""

    def __init__(self, codec: Codec, report: Reporter = _ignore, depth: int = 0) -> None:
        """``depth``: the most levels per side read on every event (the quoter's), which
        the book keeps sorted (see :func:`~mmdaemon.book.region_for`)."""
        self.codec = codec
        self.book = OrderBook(*region_for(depth))
        self.report = report
        self.frames = 0
        self.depth_updates = 0  # diffs applied to the book
        self.snapshots = 0
        self.resyncs = 0  # snapshots applied after the book had lost sync
        self.trades = 0
        self.tickers = 0
        self.gaps = 0
        self.crossed = 0
        self.malformed = 0  # recording lines and frames that changed nothing
        self.undecodable = 0  # frames (LOBSTER: rows) among them; the rest decoded
        self.first_malformed = ""  # the first one's reason, for a summary that must say why
        self._lost_sync = False

    def on_frame(self, recv_ns: int, frame: bytes | str) -> list[MarketEvent]:
        """Decode ``frame`` and apply it; returns the events it produced, in order."""
        self.frames += 1
        return self.apply(self.codec.decode(recv_ns, frame))

    def on_decoded(self, item: Decoded) -> list[MarketEvent]:
        """Apply events a source decoded itself, counted like one frame."""
        self.frames += 1
        return self.apply(item.events)

    def apply(self, events: list[MarketEvent]) -> list[MarketEvent]:
        """Apply decoded events (from a codec, or a source that decodes itself, such as
        LOBSTER files) to the book and the counters; returns them, plus a Gap if the book
        crossed."""
        book = self.book
        for event in events:
            kind = type(event)
            if kind is BookUpdate:
                book.apply(event)  # type: ignore[arg-type]
                if event.snapshot:  # type: ignore[union-attr]
                    self._on_snapshot(event)  # type: ignore[arg-type]
                else:
                    self.depth_updates += 1
                if book.is_crossed():
                    return [*events, self._on_crossed(event)]  # type: ignore[arg-type]
            elif kind is TopOfBook:
                self.tickers += 1
            elif kind is Trade:
                self.trades += 1
            elif kind is Gap:
                self._on_gap(event)  # type: ignore[arg-type]
            elif kind is Malformed:  # at most one per frame (the codec's contract)
                self.undecodable += 1
                self.on_malformed(event)  # type: ignore[arg-type]
        return events

    def on_malformed(self, event: Malformed) -> None:
        """Count and report a frame that changed nothing (also used for bad recording lines)."""
        self.malformed += 1
        if not self.first_malformed:
            self.first_malformed = event.reason
        self.report("frame_malformed", reason=event.reason, recv_ns=event.recv_ns)

    def _on_snapshot(self, update: BookUpdate) -> None:
        self.snapshots += 1
        if self._lost_sync:
            self.resyncs += 1
            self._lost_sync = False
            self.report("book_resynced", update_id=update.last_id, recv_ns=update.recv_ns)

    def _on_gap(self, gap: Gap) -> None:
        self.gaps += 1
        self._lost_sync = True
        self.book.invalidate()
        self.report(
            "book_gap",
            reason=gap.reason,
            expected_id=gap.expected_id,
            got_id=gap.got_id,
            recv_ns=gap.recv_ns,
        )

    def _on_crossed(self, update: BookUpdate) -> Gap:
        self.crossed += 1
        self._lost_sync = True
        self.book.invalidate()
        self.codec.reset()
        self.report(
            "book_crossed",
            update_id=update.last_id,
            best_bid=self.book.best_bid(),
            best_ask=self.book.best_ask(),
            recv_ns=update.recv_ns,
        )
        return Gap("crossed book", update.last_id, update.last_id, update.recv_ns)
