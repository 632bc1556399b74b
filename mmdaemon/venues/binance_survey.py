"""What a Binance recording holds, read before ``verify-book`` checks it (pure, no I/O).

``verify-book`` works on a recording of any symbol, so the instrument it verifies comes from
the frames themselves:

- the **symbol** is the ``s`` field of depth diffs, bookTickers and trades;
- the **price grid** (tick, in the quote currency) is ``10**-P`` and the **size grid**
  (lot, in the base currency) ``10**-S``, where P and S are the most significant decimal
  places (trailing zeros do not count: ``"61837.63000000"`` has 2) of any price,
  respectively size, text of that symbol's frames: diff and snapshot levels, bookTicker bids
  and asks, trades. The book then holds integer ticks and lots (:mod:`mmdaemon.model`).

Why every frame and not the first snapshot: the codec converts decimal text to integer
ticks and lots exactly, and refuses (as malformed) text that is not a whole multiple of the
grid. A grid taken from one snapshot would turn a later, finer level (a legacy size, a
price level the snapshot did not reach) into a malformed diff, that is a gap, and the
verdict would be about the grid rather than the book. Reading every frame first costs one
more pass over the files (decompression and a JSON parse per frame: on the bundled
recording about two thirds of the verification's own time); in exchange the grid is exact
by construction (no value of the symbol is finer than it), and the symbols, a recording with
nothing decodable in it and a corrupt gzip are all known before anything is verified or
printed. The one way left for the grid to hurt is a value so fine that others exceed
:data:`~mmdaemon.model.MAX_UNITS` on it (one price with 18 decimals among prices of 60,000):
the codec refuses those as malformed, so the verification fails loudly, never silently.

The grid is the coarsest power of ten that holds every value, not necessarily the venue's
tick (a market quoted in steps of 0.05 gets 0.01): comparisons between the book and the
venue's bookTicker are exact on any grid that holds both.

REST depth snapshots carry no symbol. A snapshot belongs to the only symbol the recording
names; with several, to the only symbol other frames of its file name; failing that, to the
only symbol whose depth diffs' update ids span its ``lastUpdateId`` (``first U - 1 <= id <=
last u``, which holds for the diff that bridges it under the spot and the USD-M rule alike).
A snapshot none of these rules places is not used for any symbol.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from mmdaemon.model import MAX_DECIMAL_CHARS, Instrument
from mmdaemon.venues.binance import FrameError, raw_kind, stream_kind

FOLD_AT = 1 << 16  # distinct price and size texts a symbol collects before counting them


class SurveyError(Exception):
    """The recordings cannot be verified as given (no decodable frame, a symbol to pick)."""


def decimal_places(text: object) -> int:
    """Significant fraction digits of plain decimal text: ``"61837.63000000"`` -> 2,
    ``"25"`` -> 0, ``"0.00000000"`` -> 0.

    Anything the codec would refuse whatever the grid (not a string, not plain ASCII
    digits with at most one dot, longer than :data:`~mmdaemon.model.MAX_DECIMAL_CHARS`)
    counts 0: it does not shape the grid, and the codec reports it as malformed.
    """
    if type(text) is not str or len(text) > MAX_DECIMAL_CHARS:
        return 0
    whole, _, fraction = text.partition(".")
    if not (whole + fraction).isascii() or not (whole + fraction).isdigit():
        return 0
    return len(fraction.rstrip("0"))


def finest(texts: Iterable[object]) -> int:
    """The most :func:`decimal_places` of ``texts``, 0 for none."""
    return max(map(decimal_places, texts), default=0)


def grid(places: int) -> str:
    """The decimal text of ``10**-places``: 0 -> ``"1"``, 2 -> ``"0.01"``."""
    return "1" if places <= 0 else "0." + "0" * (places - 1) + "1"


@dataclass
class SymbolSurvey:
    """One symbol's frames: how many, the finest decimals of its prices and sizes, and the
    update-id span of its depth diffs (None without any).

    Price and size texts are collected in sets and folded into the decimal counts when the
    sets grow large and at the end: venues repeat the same strings constantly, and a set
    update per frame costs far less than looking at every string.
    """

    frames: int = 0
    first_id: int | None = None  # the smallest first update id ``U`` of its diffs
    last_id: int | None = None  # the largest final update id ``u``
    prices: set[object] = field(default_factory=set)  # texts not yet folded
    sizes: set[object] = field(default_factory=set)
    _price_places: int = 0
    _size_places: int = 0

    @property
    def price_places(self) -> int:
        """The most significant decimal places of any price text (0: integers only)."""
        self.fold()
        return self._price_places

    @property
    def size_places(self) -> int:
        """The most significant decimal places of any size text."""
        self.fold()
        return self._size_places

    def fold(self) -> None:
        """Count the collected texts into the decimal places and forget them."""
        self._price_places = max(self._price_places, finest(self.prices))
        self._size_places = max(self._size_places, finest(self.sizes))
        self.prices.clear()
        self.sizes.clear()

    def spans(self, update_id: int) -> bool:
        """True when a snapshot at ``update_id`` falls in this symbol's diff ids."""
        return (self.first_id is not None and self.last_id is not None
                and self.first_id - 1 <= update_id <= self.last_id)


@dataclass(frozen=True)
class SnapshotSeen:
    """A REST snapshot: frame ``index`` (0-based over all files), the file it is in, its
    ``lastUpdateId`` and the finest decimals of its prices and sizes."""

    index: int
    file: int
    update_id: int
    price_places: int
    size_places: int


@dataclass(frozen=True)
class VerifyPlan:
    """What the second pass verifies: ``instrument`` (symbol "" when no frame names one),
    and ``skip[i]`` 1 for frame ``i`` (0-based over all files) of another symbol, or a
    snapshot that is not this symbol's (``unattributed``: no rule placed it)."""

    instrument: Instrument
    skip: bytearray
    frames: int  # frames the survey read: the second pass must read the same
    unattributed: list[SnapshotSeen] = field(default_factory=list)


class RecordingSurvey:
    """Feed every frame of every file (:meth:`start_file` before each file's first), then
    read the :meth:`plan`. ``symbol`` is the one to verify (``--symbol``); None: the
    recording must name exactly one (or none)."""

    def __init__(self, symbol: str | None = None) -> None:
        self.symbol = symbol
        self.files: list[str] = []
        self.frames = 0
        self.decodable = 0  # frames of a kind the codec handles
        self.bad_lines = 0  # recording lines that are not '<recv_ns> <frame>'
        self.symbols: dict[str, SymbolSurvey] = {}
        self._file_symbols: list[set[str]] = []
        self._snapshots: list[SnapshotSeen] = []
        # the symbol frames are judged against: the chosen one, else the first named; with
        # several named and none chosen there is no plan, so the flags are never read
        self._mine = symbol
        self._skip = bytearray()

    def start_file(self, name: str) -> None:
        """The frames that follow are in file ``name``."""
        self.files.append(name)
        self._file_symbols.append(set())

    def on_bad_line(self) -> None:
        """Count a recording line that carries no frame."""
        self.bad_lines += 1

    def on_frame(self, frame: bytes) -> None:
        """Take the next frame's bytes."""
        index = self.frames
        self.frames += 1
        self._skip.append(0)
        try:
            msg = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return
        if type(msg) is not dict:
            return
        try:
            stream = msg.get("stream")
            if stream is not None:
                kind, data = stream_kind(stream), msg.get("data")
            else:
                kind, data = raw_kind(msg), msg
        except FrameError:
            return
        if type(data) is not dict:
            return
        self.decodable += 1
        if kind == "snapshot":
            self._on_snapshot(index, data)
        elif kind != "control":
            self._on_symbol_frame(index, kind, data)

    def _on_symbol_frame(self, index: int, kind: str, data: dict[str, Any]) -> None:
        symbol = data.get("s")
        if type(symbol) is not str:
            return  # the codec reports it (missing or not a string)
        stats = self.symbols.get(symbol)
        if stats is None:
            stats = self.symbols[symbol] = SymbolSurvey()
            if self._mine is None:
                self._mine = symbol
        stats.frames += 1
        self._file_symbols[-1].add(symbol)
        if symbol != self._mine:
            self._skip[index] = 1
        prices, sizes = stats.prices, stats.sizes
        try:
            if kind == "depth":
                for levels in (data.get("b"), data.get("a")):
                    prices.update([p for p, _ in levels])  # type: ignore[union-attr]
                    sizes.update([q for _, q in levels])  # type: ignore[union-attr]
                first, last = data.get("U"), data.get("u")
                if type(first) is int and type(last) is int:
                    if stats.first_id is None or first < stats.first_id:
                        stats.first_id = first
                    if stats.last_id is None or last > stats.last_id:
                        stats.last_id = last
            elif kind == "bookTicker":
                prices.update((data.get("b"), data.get("a")))
                sizes.update((data.get("B"), data.get("A")))
            else:  # trade
                prices.add(data.get("p"))
                sizes.add(data.get("q"))
        except (TypeError, ValueError):
            # not [[price, size], ...] levels, or a list where text belongs: the codec
            # refuses the whole frame, so its values need no place on the grid
            pass
        if len(prices) + len(sizes) > FOLD_AT:
            stats.fold()

    def _on_snapshot(self, index: int, data: dict[str, Any]) -> None:
        update_id = data.get("lastUpdateId")
        if type(update_id) is not int:
            return  # the codec reports it
        prices: set[object] = set()
        sizes: set[object] = set()
        try:
            for levels in (data.get("bids"), data.get("asks")):
                prices.update([p for p, _ in levels])  # type: ignore[union-attr]
                sizes.update([q for _, q in levels])  # type: ignore[union-attr]
        except (TypeError, ValueError):
            return  # refused whole by the codec, as above
        self._snapshots.append(SnapshotSeen(index, len(self.files) - 1, update_id,
                                            finest(prices), finest(sizes)))

    def owner(self, snapshot: SnapshotSeen) -> str | None:
        """The symbol ``snapshot`` belongs to (module docstring), None when none fits;
        the recording names no symbol at all: None too, and the snapshot is its own."""
        if len(self.symbols) <= 1:
            return next(iter(self.symbols), None)
        in_file = self._file_symbols[snapshot.file]
        if len(in_file) == 1:
            return next(iter(in_file))
        candidates = [s for s in (in_file or self.symbols)
                      if self.symbols[s].spans(snapshot.update_id)]
        return candidates[0] if len(candidates) == 1 else None

    def plan(self) -> VerifyPlan:
        """The instrument to verify and the frames to skip; raises :class:`SurveyError`
        when there is nothing decodable, or the symbol is not known (several named and
        none chosen, or the chosen one not named)."""
        where = ", ".join(self.files)
        if not self.decodable:
            raise SurveyError(f"{where}: no decodable frame ({self.frames} frames, "
                              f"{self.bad_lines} lines not '<recv_ns> <frame>')")
        named = ", ".join(sorted(self.symbols))
        if self.symbol is None and len(self.symbols) > 1:
            raise SurveyError(f"{where}: frames of several symbols ({named}): "
                              f"pick one with --symbol")
        if self.symbol is not None and self.symbol not in self.symbols:
            raise SurveyError(f"{where}: no frame of {self.symbol} "
                              f"(symbols: {named or 'none named'})")
        mine = self._mine
        stats = self.symbols[mine] if mine is not None else SymbolSurvey()
        price, size = stats.price_places, stats.size_places
        skip = self._skip
        unattributed: list[SnapshotSeen] = []
        for snap in self._snapshots:
            owner = self.owner(snap)
            if owner == mine:
                price = max(price, snap.price_places)
                size = max(size, snap.size_places)
            else:
                skip[snap.index] = 1
                if owner is None:
                    unattributed.append(snap)
        instrument = Instrument(mine or "", grid(price), grid(size))
        return VerifyPlan(instrument, skip, self.frames, unattributed)


def served_instrument(grid: Instrument, known: Instrument, min_notional: str = "0"
                      ) -> Instrument:
    """The instrument a sim serves for frames that need ``grid`` (the survey's: symbol and
    the finest powers of ten of price and size): ``known``, whose venue filters the sim
    has, when it is that symbol and its frames fit its grid (the frames' grid is the
    venue's or coarser); else ``grid`` with steps of one lot and ``min_notional`` (quote
    currency)."""
    if grid.symbol == known.symbol and grid.tick_size >= known.tick_size and \
            grid.lot_size >= known.lot_size:
        return known
    return Instrument(grid.symbol, f"{grid.tick_size:f}", f"{grid.lot_size:f}",
                      min_notional=min_notional)
