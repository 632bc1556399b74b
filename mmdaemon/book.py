"""Exact L2 order book.

Each side is a dict ``price_ticks -> size_lots`` plus a sorted list of keys arranged so
that the best price is always the *last* element: bids keyed by ``price``, asks keyed by
``-price``. Best-price reads are O(1), and since nearly all activity happens near the top
of the book, inserts and deletes touch the tail of the list and move little memory.
"""

from __future__ import annotations

from bisect import bisect_left, insort

from mmdaemon import speedups
from mmdaemon.model import BookUpdate, Level


def _update_side(levels: dict[int, int], keys: list[int], sign: int, changes: list[Level]) -> None:
    """Apply absolute (price ticks, size lots) changes to one side; size 0 deletes.

    The reference loop of :meth:`BookSide.update`; the compiled twin (see
    :mod:`mmdaemon.speedups`) hands anything but a list of 2-tuples back to it.
    """
    for price, size in changes:
        if size:
            if price not in levels:
                insort(keys, price * sign)
            levels[price] = size
        elif levels.pop(price, None) is not None:
            del keys[bisect_left(keys, price * sign)]


if speedups.compiled is not None:
    _compiled_update = speedups.compiled.update_side

    def _apply(levels: dict[int, int], keys: list[int], sign: int, changes: list[Level]) -> None:
        _compiled_update(levels, keys, sign, changes, _update_side)

else:
    _apply = _update_side


class BookSide:
    """One side of the book. ``sign`` is +1 for bids, -1 for asks."""

    __slots__ = ("_keys", "levels", "sign")

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self.levels: dict[int, int] = {}
        self._keys: list[int] = []

    def clear(self) -> None:
        self.levels.clear()
        self._keys.clear()

    def set(self, price: int, size: int) -> None:
        """Set the absolute size (lots) at ``price`` (ticks); 0 deletes, absent is fine."""
        levels = self.levels
        if size:
            if price not in levels:
                insort(self._keys, price * self.sign)
            levels[price] = size
        elif levels.pop(price, None) is not None:
            keys = self._keys
            del keys[bisect_left(keys, price * self.sign)]

    def update(self, changes: list[Level]) -> None:
        """Apply absolute (price ticks, size lots) changes; size 0 deletes."""
        _apply(self.levels, self._keys, self.sign, changes)

    def load(self, levels: list[Level]) -> None:
        """Replace the side with ``levels``; zero sizes are skipped."""
        self.levels = {p: s for p, s in levels if s}
        sign = self.sign
        self._keys = sorted(p * sign for p in self.levels)

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

    def top(self, n: int) -> list[Level]:
        """Up to ``n`` levels, best first."""
        sign, levels = self.sign, self.levels
        return [(k * sign, levels[k * sign]) for k in self._keys[: -n - 1 : -1]]

    def weighted_size(self, n: int) -> float:
        """Sum over the best ``n`` levels of size / (i + 1), i = 0 at the best level."""
        sign, levels = self.sign, self.levels
        total = 0.0
        for i, key in enumerate(self._keys[: -n - 1 : -1]):
            total += levels[key * sign] / (i + 1)
        return total

    def __len__(self) -> int:
        return len(self._keys)


class OrderBook:
    """L2 book of one instrument, in ticks and lots.

    ``last_id`` is the venue update id the book reflects. ``synced`` is False until a
    snapshot is applied and again after :meth:`invalidate` (a gap): an unsynced book must
    not be quoted from.
    """

    __slots__ = ("asks", "bids", "last_id", "synced")

    def __init__(self) -> None:
        self.bids = BookSide(1)
        self.asks = BookSide(-1)
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

    def microprice(self) -> float | None:
        """Size-weighted mid in ticks: leans toward the side with *less* size at the top."""
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
