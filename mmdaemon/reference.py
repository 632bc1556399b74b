"""The reference venue: a second, read-only market whose price leads the traded one, and the
lead-lag fair value built on it (issue #19: the USD-M perpetual usually moves before spot).

The reference is a market like the traded one: its own codec, book, sequence and gap rules
(:class:`~mmdaemon.market.MarketState` with the venue's
:class:`~mmdaemon.venues.binance.BinanceCodec`), never traded. What it adds:

- **its top of book**: the book's best bid and ask, or the venue's own ``bookTicker`` when
  that is newer (higher update id: the two streams share the venue's update ids), in the
  reference's ticks; none while its book is out of sync;
- **freshness on receive time**: the reference is stale when no book update or ticker has
  arrived for ``stale_ms`` of receive (event) time; it is *usable* when synced and fresh;
- **the reference mid in the traded instrument's ticks, exactly**: ``(bid + ask) x r / 2``
  with ``r`` = reference tick / traded tick as an exact fraction (0.1 / 0.01 = 10), computed
  in integers and divided once (one correctly rounded float);
- **the basis** ``B`` (traded price - reference mid, in traded ticks), an EWMA on event time
  with half-life ``basis_halflife_s``. It is updated at the *traded* feed's book events
  only (when the traded book's update id has changed since the last update): the traded
  price is then the local fair value (the fallback mode's, e.g. the size-weighted mid) of
  the book that just changed, and the reference mid the latest known. A reference frame
  never updates it: the traded book has not had the time to follow the reference yet, so
  sampling then would fold the very lag we want to trade on into the basis. Each update
  weighs the new difference by the event time since the previous one,
  ``B += (1 - 2^(-dt / halflife)) x (x - B)``; the first sets ``B = x``. The basis survives
  a reference outage (it is the slow part of the price);
- **the lead-lag fair value**: reference mid + ``B`` (traded ticks). A reference move is
  carried to the traded fair value at once; the basis adapts slowly.

Unusable (out of sync, stale, nothing yet): :meth:`Reference.fair` returns the local fair
value and counts the quote as a fallback. Episodes (usable -> unusable -> usable) are
tracked by :meth:`Reference.track`, which the engine calls on every quote and supervisor
tick: logged once per episode, counted, timed; with ``on_stale = "halt"`` the engine raises
the ``reference_stale`` halt condition from them.

Pure: no clock (times are the events' ns), no I/O; problems go to the injected ``log``.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, NamedTuple

from mmdaemon.config import ReferenceConfig
from mmdaemon.market import MarketState, snapshot_lost
from mmdaemon.model import NS_PER_MS, NS_PER_S, BookUpdate, Gap, Instrument, Malformed, TopOfBook
from mmdaemon.risk.state import RiskState, TradingState
from mmdaemon.venues.binance import BinanceCodec

REFERENCE_STALE = "reference_stale"
"""The halt condition a stale or out-of-sync reference raises with ``on_stale = "halt"``."""
_LN2 = math.log(2.0)


class ReferenceFrame(NamedTuple):
    """A raw frame of the reference feed: its receive time (ns since the epoch) and bytes."""

    recv_ns: int
    frame: bytes


class ReferenceMalformed(NamedTuple):
    """A line of a reference recording that was not a frame (counted by the reference)."""

    malformed: Malformed

    @property
    def recv_ns(self) -> int:
        return self.malformed.recv_ns


class Reference:
    """The reference market, its freshness, the basis and the lead-lag fair value.

    ``traded`` is the traded instrument (its tick is the unit of every price this returns);
    ``log`` hears of gaps, crossed books, malformed frames and the episodes of unusability.
    """

    def __init__(self, config: ReferenceConfig, traded: Instrument, log: Any) -> None:
        self.config = config
        self.instrument = inst = config.build()
        self.log = log
        self.market = MarketState(
            BinanceCodec(inst, "usdm" if config.venue == "binance-usdm" else "spot"),
            self._report)
        self.book = self.market.book
        ratio = Fraction(inst.tick_size) / Fraction(traded.tick_size)
        # reference ticks x2 -> traded ticks: mid = (bid + ask) * _num / _den2, exact ints
        self._num, self._den2 = ratio.numerator, 2 * ratio.denominator
        self.stale_ns = config.stale_ms * NS_PER_MS
        self.halt = config.on_stale == "halt"
        self._decay_per_ns = _LN2 / (config.basis_halflife_s * NS_PER_S)
        self.need_snapshot = False  # the codec lost sequence: a live feed must fetch one
        self.last_ns = 0  # receive time of the latest book update or ticker, 0: none yet
        self._tob_id = -1  # the venue's latest bookTicker: update id (-1 none), bid, ask
        self._tob_bid = self._tob_ask = 0
        self.basis_ticks = 0.0  # traded - reference price, traded ticks (EWMA)
        self.basis_updates = 0
        self._basis_ns = 0  # event time of the latest basis update
        self._basis_book_id = -1  # the traded book's update id at it
        self.ok = False  # usable at the latest track()
        self.ever_usable = False
        self.episodes = 0  # unusable spells, the wait for the first sync included
        self.unusable_ns = 0  # event time spent unusable, closed spells
        self._since = -1  # event time the current unusable spell began, -1: no track() yet
        self.fallback_quotes = 0  # quotes priced on the local fair value instead
        self.lead_lag_quotes = 0  # quotes priced on the reference

    # -- the feed ---------------------------------------------------------------------------

    def on_frame(self, recv_ns: int, frame: bytes) -> bool:
        """Decode one reference frame into its book. True when its top of book (or whether
        it has one) changed: the lead-lag fair value may have moved."""
        before = self.top()
        for event in self.market.on_frame(recv_ns, frame):
            kind = type(event)
            if kind is BookUpdate:
                self.last_ns = recv_ns
            elif kind is TopOfBook:
                self.last_ns = recv_ns
                if event.update_id > self._tob_id:  # type: ignore[union-attr]
                    self._tob_id = event.update_id  # type: ignore[union-attr]
                    self._tob_bid, self._tob_ask = event.bid, event.ask  # type: ignore[union-attr]
            elif kind is Gap or (kind is Malformed
                                 and snapshot_lost(event, self.book)):  # type: ignore[arg-type]
                self.need_snapshot = True  # a lost sequence, or the snapshot did not decode
        return self.top() != before

    def on_reconnected(self) -> None:
        """A new connection of the reference feed: its sequence is gone until a snapshot."""
        self.market.codec.reset()
        self.book.invalidate()
        self._tob_id = -1

    def top(self) -> tuple[int, int] | None:
        """Best bid and ask (reference ticks): the venue's ticker when newer than the book;
        None while the book is out of sync or a side is empty."""
        book = self.book
        if not book.synced:
            return None
        if self._tob_id > book.last_id:
            return self._tob_bid, self._tob_ask
        bid, ask = book.best_bid(), book.best_ask()
        if bid is None or ask is None:
            return None
        return bid, ask

    def mid_ticks(self) -> float | None:
        """The reference mid in the *traded* instrument's ticks (exact, rounded once), or
        None without a top of book."""
        top = self.top()
        if top is None:
            return None
        return (top[0] + top[1]) * self._num / self._den2

    def usable(self, now_ns: int) -> bool:
        """Synced, with a top of book, and fresh at event time ``now_ns``."""
        return now_ns - self.last_ns <= self.stale_ns and self.top() is not None

    # -- the fair value (the quoter's per-event call) ---------------------------------------

    def fair(self, local_ticks: float, traded_book_id: int, now_ns: int) -> float:
        """The lead-lag fair value (traded ticks) at event time ``now_ns``: reference mid +
        basis; ``local_ticks`` (the local fair value) when the reference is not usable.
        ``traded_book_id`` is the traded book's update id: when it changed since the last
        basis update, this is a traded book event and the basis takes its difference."""
        ref_mid = self.mid_ticks()
        if ref_mid is None or now_ns - self.last_ns > self.stale_ns:
            self.fallback_quotes += 1
            return local_ticks
        if traded_book_id != self._basis_book_id:
            self._basis_book_id = traded_book_id
            x = local_ticks - ref_mid
            if self.basis_updates:
                weight = -math.expm1((self._basis_ns - now_ns) * self._decay_per_ns)
                self.basis_ticks += weight * (x - self.basis_ticks)
            else:
                self.basis_ticks = x
            self.basis_updates += 1
            self._basis_ns = now_ns
        self.lead_lag_quotes += 1
        return ref_mid + self.basis_ticks

    # -- episodes ---------------------------------------------------------------------------

    def track(self, now_ns: int) -> bool:
        """Whether the reference is usable at ``now_ns``, kept in :attr:`ok`; True when that
        changed. A new unusable spell is logged (once) and counted, its end logged with its
        length; the first call opens the spell of the wait for the first sync."""
        ok = self.usable(now_ns)
        if self._since < 0:  # the first call: the wait for the first sync is a spell
            self._since = now_ns
            if not ok:
                self.episodes = 1
                self.log.warning("reference_unusable", **self.why(now_ns))
        if ok is self.ok:
            return False
        self.ok = ok
        if ok:
            self.ever_usable = True
            spell = now_ns - self._since
            self.unusable_ns += spell
            self.log.info("reference_usable", symbol=self.instrument.symbol,
                          after_ms=round(spell / 1e6, 3), basis_ticks=round(self.basis_ticks, 3))
        else:
            self.episodes += 1
            self._since = now_ns
            self.log.warning("reference_unusable", **self.why(now_ns))
        return True

    def check(self, now_ns: int, risk: RiskState) -> bool:
        """:meth:`track` at ``now_ns``, and with ``on_stale = "halt"`` the ``reference_stale``
        halt condition raised or cleared in ``risk`` with it. True when the usability
        changed: the fair value changed its source, the quote must be decided again."""
        if not self.track(now_ns):
            return False
        if self.halt:
            risk.set_condition(TradingState.HALTED, REFERENCE_STALE, not self.ok,
                               **self.why(now_ns))
        return True

    def why(self, now_ns: int) -> dict[str, Any]:
        """Why the reference is not usable now, for a log line or a halt condition."""
        book = self.book
        if not book.synced:
            reason = "out of sync" if self.market.snapshots else "no snapshot yet"
        elif self.top() is None:
            reason = "a side of its book is empty"
        else:
            reason = "stale"
        # not "reason": the state change's log line names its own reason beside these;
        # the age rounded up to the us, as the rule is strictly over stale_ms
        return {"symbol": self.instrument.symbol, "why": reason,
                "age_ms": -(-(now_ns - self.last_ns) // 1000) / 1000 if self.last_ns else None,
                "stale_ms": self.config.stale_ms, "on_stale": self.config.on_stale}

    def summary(self, now_ns: int, traded_tick: Fraction) -> dict[str, Any]:
        """The run's reference figures: frames and sync, how often and how long it could not
        be used, quotes priced on it or on the local fair value, the final basis (traded
        ticks and quote currency; None before any) and its age."""
        m = self.market
        open_spell = now_ns - self._since if not self.ok and self._since >= 0 else 0
        unusable = self.unusable_ns + open_spell
        return {
            "symbol": self.instrument.symbol, "venue": self.config.venue,
            "frames": m.frames, "snapshots": m.snapshots, "gaps": m.gaps,
            "resyncs": m.resyncs, "malformed": m.malformed, "synced": self.book.synced,
            "usable": self.ok, "ever_usable": self.ever_usable,
            "unusable_episodes": self.episodes, "unusable_s": round(unusable / 1e9, 3),
            "on_stale": self.config.on_stale,
            "lead_lag_quotes": self.lead_lag_quotes, "fallback_quotes": self.fallback_quotes,
            "basis_ticks": round(self.basis_ticks, 6) if self.basis_updates else None,
            "basis": (float(Fraction(self.basis_ticks) * traded_tick)
                      if self.basis_updates else None),
            "age_ms": round((now_ns - self.last_ns) / 1e6, 3) if self.last_ns else None,
        }

    def _report(self, event: str, **fields: Any) -> None:
        self.log.warning(f"reference_{event}", symbol=self.instrument.symbol, **fields)
