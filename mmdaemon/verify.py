"""``verify-book``: rebuild the book from a recording and check it against the venue.

The venue's own statement of the top of book is a ``bookTicker`` whose update id equals
the final id ``u`` of an applied diff. In real recordings such a ticker usually arrives
*before* the diff carrying the same change, so it is held until the book reaches its id;
one whose id the book passes without landing on it is not comparable. A ticker that
arrives *after* its diff is compared against the top the book had at that id (a short
history is kept). Prices and sizes are both compared.

:func:`verify_recordings` reads the recordings twice: first to learn the instrument from the
frames (:mod:`mmdaemon.venues.binance_survey`: symbol, price and size grids), then to
verify. The verdict is ``ok`` (exit 0) only when something was verified and nothing is
wrong: at least one bookTicker compared, no mismatch, no crossed book, and the book synced
at the end (which a gap after which no snapshot resynced the book leaves unmet). Otherwise
``reasons`` says why.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmdaemon.feed.recording import RecordingError, read_recording
from mmdaemon.market import MarketState, Reporter, _ignore
from mmdaemon.model import BookUpdate, Gap, Malformed, TopOfBook
from mmdaemon.venues.binance import BinanceCodec, Market
from mmdaemon.venues.binance_survey import RecordingSurvey, VerifyPlan

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

    def reasons(self) -> list[str]:
        """Why the verification fails, in words; empty when it passes (exit 0)."""
        m = self.market
        book = m.book
        reasons = []
        if self.compared == 0:
            reasons.append(f"nothing verified: no bookTicker was compared with the book "
                           f"({m.tickers} bookTickers, {m.depth_updates} diffs applied)")
        if self.mismatches:
            reasons.append(f"{self.mismatches} of {self.compared} compared bookTickers "
                           f"disagree with the book")
        if m.crossed:
            reasons.append(f"the book crossed {m.crossed} times")
        if not book.synced:
            # only a gap or a crossed book unsyncs a book that a snapshot synced
            reasons.append("the book is not synced at the end: " + (
                "no depth snapshot was applied, it never synced" if m.snapshots == 0 else
                f"it lost sync ({m.gaps} gaps, {m.crossed} crossed) and no later snapshot "
                f"resynced it"))
        if reasons and m.malformed:  # frames that did not decode may be why
            reasons.append(f"{m.malformed} frames did not decode (first: {m.first_malformed})")
        return reasons

    def summary(self) -> dict[str, Any]:
        """Counts for the report; ``ok`` is the exit-0 condition, ``reasons`` why not."""
        m = self.market
        book = m.book
        reasons = self.reasons()
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
            "ok": not reasons,
            "reasons": reasons,
        }


def survey_recordings(paths: Sequence[str | Path], symbol: str | None = None
                      ) -> tuple[RecordingSurvey, VerifyPlan]:
    """Every frame of ``paths`` once through a :class:`RecordingSurvey` for ``symbol``
    (None: the one they name): the survey and its plan. How ``verify-book`` and the sims
    learn a recording's symbol and grids. Raises
    :class:`~mmdaemon.feed.recording.RecordingError`,
    :class:`~mmdaemon.venues.binance_survey.SurveyError` or OSError."""
    survey = RecordingSurvey(symbol)
    for path in paths:
        survey.start_file(str(path))
        for item in read_recording([Path(path)]):
            if isinstance(item, Malformed):
                survey.on_bad_line()
            else:
                survey.on_frame(item[1])
    return survey, survey.plan()


def verify_recordings(paths: Sequence[str | Path], market: Market, symbol: str | None = None,
                      report: Reporter = _ignore) -> dict[str, Any]:
    """Verify the book of ``symbol`` (None: the one the recordings name) in ``paths`` on the
    ``market``'s sync rules; returns :meth:`BookVerifier.summary` with the instrument
    (``instrument``, None when no frame names a symbol; ``tick_size`` and ``lot_size`` as
    decimal text) and ``other_symbol_frames``, the frames skipped as another symbol's
    (snapshots that no rule places included, each reported as ``snapshot_unattributed``).

    Raises :class:`~mmdaemon.feed.recording.RecordingError` when a file cannot be read (or
    changed between the two passes) and
    :class:`~mmdaemon.venues.binance_survey.SurveyError` when the recordings cannot be
    verified as given; both are unusable input.
    """
    survey, plan = survey_recordings(paths, symbol)
    for snap in plan.unattributed:
        report("snapshot_unattributed", file=survey.files[snap.file], frame=snap.index,
               update_id=snap.update_id)
    instrument = plan.instrument
    verifier = BookVerifier(BinanceCodec(instrument, market), report=report)
    skip, index = plan.skip, 0
    for item in read_recording(paths):
        if isinstance(item, Malformed):
            verifier.on_malformed(item)
            continue
        if index == plan.frames:
            break  # a file still being written: verify it as the survey read it
        if not skip[index]:
            verifier.on_frame(*item)
        index += 1
    if index < plan.frames:
        raise RecordingError(f"{', '.join(survey.files)}: changed while being verified "
                             f"({plan.frames} frames, then {index})")
    summary = verifier.summary()
    summary["instrument"] = instrument.symbol or None
    summary["tick_size"] = f"{instrument.tick_size:f}"
    summary["lot_size"] = f"{instrument.lot_size:f}"
    summary["other_symbol_frames"] = sum(skip)
    return summary
