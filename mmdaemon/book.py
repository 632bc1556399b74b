"""Exact L2 order book.

Each side maps ``price_ticks -> size_lots`` for every level (a dict here; a hash table of
64-bit integers in the compiled twin), plus a sorted list of the keys of its *top region*,
arranged so that the best price is the last element: bids keyed by ``price``, asks by
``-price``. Best-price and top-N reads are O(1) / O(N).

Only the top region is kept sorted because venues' depth streams change levels all through
the book (a Binance diff touches hundreds of levels, most of them deep): sorting every one
of them into one long list moved kilobytes of memory per change. Now a change below the
region's floor touches the map only. The region holds every level at or above ``floor``
(in key units), so its levels are exactly the side's best ones; it is trimmed back to
``keep`` levels when it grows beyond ``most``, and refilled from the map to ``keep`` when
it falls below ``least`` levels while deeper ones exist.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Sequence

from mmdaemon import speedups
from mmdaemon.model import BookUpdate, Level

TOP_LEAST = 32  # levels the sorted region holds at least, when the side has them
TOP_KEEP = 128  # levels kept by a refill or a trim
TOP_MOST = 256  # a region beyond this is trimmed back to TOP_KEEP


def region_for(depth: int) -> tuple[int, int, int]:
    """(least, keep, most) of a sorted region that always holds ``depth`` levels when the
    side has them, so that reads of the quoter's depth never sort the whole side."""
    least = max(TOP_LEAST, depth)
    keep = max(TOP_KEEP, 4 * least)
    return least, keep, 2 * keep


class BookSide:
    """One side of the book. ``sign`` is +1 for bids, -1 for asks.

    ``least``/``keep``/``most`` size the sorted top region (see the module docstring);
    reads of up to ``least`` levels never need more than the region. This class is the
    reference; :class:`OrderBook` uses the compiled twin (``mmdaemon._speedups.BookSide``,
    same interface, prices and sizes of at most 62 bits) when it is built.
    """

    __slots__ = ("_floor", "_keep", "_keys", "_least", "_most", "levels", "sign")

    def __init__(
        self, sign: int, least: int = TOP_LEAST, keep: int = TOP_KEEP, most: int = TOP_MOST
    ) -> None:
        if not 1 <= least <= keep < most:
            raise ValueError(f"top region sizes need 1 <= least <= keep < most, got "
                             f"{least}, {keep}, {most}")
        self.sign = sign
        self.levels: dict[int, int] = {}
        self._keys: list[int] = []  # price * sign of the region, best last
        self._floor: int | None = None  # None: the region holds every level
        self._least, self._keep, self._most = least, keep, most

    @property
    def least(self) -> int:
        """Levels the sorted region holds at least (when the side has them): reads of up
        to this many levels never sort the whole side."""
        return self._least

    def clear(self) -> None:
        self.levels.clear()
        self._keys.clear()
        self._floor = None

    def set(self, price: int, size: int) -> None:
        """Set the absolute size (lots) at ``price`` (ticks); 0 deletes, absent is fine."""
        self.update([(price, size)])

    def update(self, changes: Sequence[Level]) -> None:
        """Apply absolute (price ticks, size lots) changes; size 0 deletes.

        A change below the region's floor touches the dict only.
        """
        levels, keys, sign, floor = self.levels, self._keys, self.sign, self._floor
        for price, size in changes:
            if floor is not None and price * sign < floor:
                if size:
                    levels[price] = size
                else:
                    levels.pop(price, None)
            elif size:
                if price not in levels:
                    insort(keys, price * sign)
                levels[price] = size
            elif levels.pop(price, None) is not None:
                del keys[bisect_left(keys, price * sign)]
        n = len(keys)
        if n > self._most:
            del keys[: n - self._keep]  # the deepest of the region: the dict still has them
            self._floor = keys[0]
        elif n < self._least and floor is not None:
            self._refill()

    def load(self, levels: Sequence[Level]) -> None:
        """Replace the side with ``levels``; zero sizes are skipped."""
        self.levels = {p: s for p, s in levels if s}
        self._refill()

    def _refill(self) -> None:
        """Rebuild the region from the dict: its best ``keep`` levels (all, if fewer)."""
        levels, keep = self.levels, self._keep
        prices = sorted(levels)  # the dict's ints sort in C; keys are made for ``keep`` only
        if self.sign > 0:
            self._keys = prices[-keep:]
        else:  # asks: the lowest prices, keyed -price ascending
            self._keys = [-p for p in reversed(prices[:keep])]
        self._floor = self._keys[0] if len(levels) > keep else None

    def best(self) -> int | None:
        """Best price in ticks, or None when the side is empty."""
        keys = self._keys
        return keys[-1] * self.sign if keys else None

    def best_level(self) -> Level | None:
        keys = self._keys
        if not keys:
            return None
        price = keys[-1] * self.sign
        return price, self.levels[price]

    def size_at(self, price: int) -> int:
        """Size in lots at ``price`` (ticks), 0 when there is no level."""
        return self.levels.get(price, 0)

    def top(self, n: int) -> list[Level]:
        """Up to ``n`` levels, best first."""
        if n <= 0:
            return []
        sign, levels = self.sign, self.levels
        if n > len(self._keys) and self._floor is not None:  # deeper than the region
            best = sorted(levels, reverse=sign > 0)[:n]
            return [(p, levels[p]) for p in best]
        return [(k * sign, levels[k * sign]) for k in self._keys[: -n - 1 : -1]]

    def weighted_size(self, n: int) -> float:
        """Sum over the best ``n`` levels of size / (i + 1), i = 0 at the best level."""
        total = 0.0
        for i, (_, size) in enumerate(self.top(n)):
            total += size / (i + 1)
        return total

    def check(self) -> None:
        """Raise AssertionError unless the side's invariants hold (tests, fuzzing)."""
        levels, keys, floor, sign = self.levels, self._keys, self._floor, self.sign
        if any(type(s) is not int or s <= 0 for s in levels.values()):
            raise AssertionError("a level of size <= 0")
        region = sorted(p * sign for p in levels if floor is None or p * sign >= floor)
        if keys != region:
            raise AssertionError("the sorted region is not the levels at or above its floor")
        if floor is not None and len(keys) < self._least:
            raise AssertionError(f"region of {len(keys)} levels, below {self._least}")
        if len(keys) > self._most:
            raise AssertionError(f"region of {len(keys)} levels, beyond {self._most}")

    def __len__(self) -> int:
        return len(self.levels)


SIDE: type[BookSide] = BookSide if speedups.compiled is None else speedups.compiled.BookSide
"""The book side class :class:`OrderBook` uses: compiled when built."""


class OrderBook:
    """L2 book of one instrument, in ticks and lots.

    ``last_id`` is the venue update id the book reflects. ``synced`` is False until a
    snapshot is applied and again after :meth:`invalidate` (a gap): an unsynced book must
    not be quoted from.
    """

    __slots__ = ("asks", "bids", "last_id", "synced")

    def __init__(self, least: int = TOP_LEAST, keep: int = TOP_KEEP, most: int = TOP_MOST,
                 side: type[BookSide] = SIDE) -> None:
        self.bids = side(1, least, keep, most)
        self.asks = side(-1, least, keep, most)
        self.last_id = 0
        self.synced = False

    def apply(self, update: BookUpdate) -> None:
        """Apply a snapshot or a delta. Sequence checks belong to the codec's sync machine."""
        if update.snapshot:
            self.bids.load(update.bids)
            self.asks.load(update.asks)
            self.synced = True
        else:
            self.bids.update(update.bids)
            self.asks.update(update.asks)
        self.last_id = update.last_id

    def invalidate(self) -> None:
        """Mark the book unusable (sequence lost); levels are kept only for inspection."""
        self.synced = False

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self.last_id = 0
        self.synced = False

    def best_bid(self) -> int | None:
        return self.bids.best()

    def best_ask(self) -> int | None:
        return self.asks.best()

    def mid(self) -> float | None:
        """Mid price in ticks (may be a half tick), None if a side is empty."""
        bid, ask = self.bids.best(), self.asks.best()
        if bid is None or ask is None:
            return None
        return (bid + ask) / 2

    def weighted_mid(self) -> float | None:
        """Size-weighted mid in ticks, (bid x A + ask x B) / (A + B): leans toward the side
        with *less* size at the top (not Stoikov's micro-price: see
        :mod:`mmdaemon.quoting.microprice_fit`)."""
        bid_level, ask_level = self.bids.best_level(), self.asks.best_level()
        if bid_level is None or ask_level is None:
            return None
        (bid, bid_size), (ask, ask_size) = bid_level, ask_level
        return (bid * ask_size + ask * bid_size) / (bid_size + ask_size)

    def imbalance(self, depth: int) -> float:
        """Depth-weighted imbalance in [-1, 1] over ``depth`` levels, weights 1/(i+1).

        Positive means more resting size on the bid (buying pressure); 0 for an empty book.
        """
        bid_weight = self.bids.weighted_size(depth)
        ask_weight = self.asks.weighted_size(depth)
        total = bid_weight + ask_weight
        return (bid_weight - ask_weight) / total if total else 0.0

    def is_crossed(self) -> bool:
        """True when best bid >= best ask (crossed or locked): the book cannot be right."""
        bid, ask = self.bids.best(), self.asks.best()
        return bid is not None and ask is not None and bid >= ask
