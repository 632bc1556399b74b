"""``verify-book``: rebuild the book from a recording and check it against the venue.

The venue's own statement of the top of book is a ``bookTicker`` whose update id equals
the final id ``u`` of an applied diff. In real recordings such a ticker usually arrives
*before* the diff carrying the same change, so it is held until the book reaches its id;
one whose id the book passes without landing on it is not comparable. A ticker that
arrives *after* its diff is compared against the top the book had at that id (a short
history is kept). Prices and sizes are both compared.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from mmdaemon.market import MarketState, Reporter, _ignore
from mmdaemon.model import BookUpdate, Gap, Malformed, TopOfBook
from mmdaemon.venues.binance import BinanceCodec

Top = tuple[int, int, int, int]  # bid, bid_size, ask, ask_size
HISTORY = 512  # applied diffs whose top of book is remembered for late tickers


class BookVerifier:
    """Feed frames with :meth:`on_frame`; read the result with :meth:`summary`."""

    def __init__(self, codec: BinanceCodec, report: Reporter = _ignore) -> None:
        self.market = MarketState(codec, report)
        self.report = report
        self.compared = 0
        self.mismatches = 0
        self.not_comparable = 0
        self._pending: deque[TopOfBook] = deque()
        self._history: OrderedDict[int, Top] = OrderedDict()

    def on_frame(self, recv_ns: int, frame: bytes) -> None:
        for event in self.market.on_frame(recv_ns, frame):
            kind = type(event)
            if kind is TopOfBook:
                self._on_ticker(event)  # type: ignore[arg-type]
            elif kind is BookUpdate:
                if not event.snapshot:  # type: ignore[union-attr]
                    self._on_diff(event.last_id)  # type: ignore[union-attr]
            elif kind is Gap:
                self.not_comparable += len(self._pending)
                self._pending.clear()
                self._history.clear()

    def on_malformed(self, event: Malformed) -> None:
        self.market.on_malformed(event)

    def _top(self) -> Top | None:
        book = self.market.book
        bid, ask = book.bids.best_level(), book.asks.best_level()
        if bid is None or ask is None:
            return None
        return bid[0], bid[1], ask[0], ask[1]

    def _on_ticker(self, ticker: TopOfBook) -> None:
        book = self.market.book
        if not book.synced:
            self.not_comparable += 1
        elif ticker.update_id > book.last_id:
            self._pending.append(ticker)
        else:
            seen = self._history.get(ticker.update_id)
            if seen is None:
                self.not_comparable += 1
            else:
                self._compare(ticker, seen)

    def _on_diff(self, last_id: int) -> None:
        top = self._top()
        if top is None:
            return
        history = self._history
        history[last_id] = top
        if len(history) > HISTORY:
            history.popitem(last=False)
        pending = self._pending
        while pending and pending[0].update_id <= last_id:
            ticker = pending.popleft()
            if ticker.update_id == last_id:
                self._compare(ticker, top)
            else:
                self.not_comparable += 1

    def _compare(self, ticker: TopOfBook, top: Top) -> None:
        self.compared += 1
        venue = (ticker.bid, ticker.bid_size, ticker.ask, ticker.ask_size)
        if venue != top:
            self.mismatches += 1
            self.report(
                "book_mismatch",
                update_id=ticker.update_id,
                book=list(top),
                venue=list(venue),
                recv_ns=ticker.recv_ns,
            )

    def summary(self) -> dict[str, Any]:
        """Counts for the report; ``ok`` is the exit-0 condition."""
        m = self.market
        book = m.book
        return {
            "frames": m.frames,
            "depth_updates": m.depth_updates,
            "trades": m.trades,
            "tickers": m.tickers,
            "snapshots": m.snapshots,
            "compared": self.compared,
            "mismatches": self.mismatches,
            "not_comparable": self.not_comparable + len(self._pending),
            "gaps": m.gaps,
            "resyncs": m.resyncs,
            "crossed": m.crossed,
            "malformed": m.malformed,
            "dropped_stale": m.codec.dropped_stale,  # type: ignore[attr-defined]
            "synced_at_end": book.synced,
            "last_update_id": book.last_id,
            "best_bid": book.best_bid(),
            "best_ask": book.best_ask(),
            "ok": self.mismatches == 0 and m.crossed == 0,
        }
