"""Position, cash, fees and PnL, exact.

Units: position in lots (signed, long > 0); cash, fees and PnL in notional units
(ticks x lots; for BTCUSDT spot one unit is 1e-10 USDT). Cash and fees are integers;
realised PnL uses the average-cost method and is a Fraction (average cost is rarely a whole
number of ticks). Marks are the book's mid, which may be a half tick, so mark-to-market
values are Fractions too; nothing here rounds.

Funding payments (perpetual futures) are kept apart in ``funding`` (notional units, signed:
received > 0, paid < 0): they move neither the cash of trading nor the cost basis.

Invariant: ``realized + unrealized(mark) == cash + position * mark`` for every mark, so
``total(mark) = cash + position * mark - fees + funding`` whichever way it is computed. At
start the daemon applies every journaled fill and funding payment again, so a restart
changes none of these numbers.
"""

from __future__ import annotations

from fractions import Fraction

from mmdaemon.model import Fill


class Position:
    """Running position and PnL from fills and funding payments."""

    __slots__ = ("cash", "cost", "fees", "fills", "funding", "max_abs", "position", "volume")

    def __init__(self) -> None:
        self.position = 0
        self.cash = 0
        self.fees = 0
        self.funding = 0  # funding received (paid < 0), notional units
        self.volume = 0
        self.fills = 0
        self.max_abs = 0
        self.cost = Fraction(0)  # signed cost basis of the open position

    @property
    def realized(self) -> Fraction:
        """Realised PnL (average cost), notional units: ``cash + cost``.

        Closing ``closed`` lots of a long at price p realises ``closed * (p - avg)``, and
        that is exactly what the close moves ``cash + cost`` by (cash takes the proceeds,
        the cost basis gives up ``closed * avg``); opening moves neither. So it is kept by
        :meth:`apply` without arithmetic of its own: a fill's accounting is on its way to
        the next quote, and each Fraction operation normalises with a gcd."""
        return self.cash + self.cost

    def apply(self, fill: Fill) -> None:
        """Account one fill: side x size lots at ``price`` ticks, fee in notional units."""
        side = int(fill.side)
        signed = side * fill.size
        notional = fill.price * fill.size
        self.cash -= side * notional
        self.fees += fill.fee
        self.volume += fill.size
        self.fills += 1
        pos = self.position
        remaining = pos + signed
        if pos == 0 or (pos > 0) == (signed > 0):
            self.cost += side * notional
        elif remaining == 0 or (remaining > 0) == (pos > 0):
            # what is left keeps the average cost, cost / pos ticks per lot (one Fraction)
            cost = self.cost
            self.cost = Fraction(cost.numerator * remaining, cost.denominator * pos)
        else:  # flipped: the rest opens a new position at this price
            self.cost = Fraction(fill.price * remaining)
        self.position = remaining
        self.max_abs = max(self.max_abs, abs(remaining))

    def apply_funding(self, amount: int) -> None:
        """Account one funding payment, ``amount`` notional units (received > 0)."""
        self.funding += amount

    def unrealized(self, mark: Fraction) -> Fraction:
        """Mark-to-market of the open position at ``mark`` ticks."""
        return self.position * mark - self.cost

    def total(self, mark: Fraction) -> Fraction:
        """Everything, after fees and funding: ``cash + position * mark - fees + funding``
        (= realised + unrealised - fees + funding). One exact Fraction built over the mark's
        denominator, not several Fraction operations: a fill runs this on its way to the
        next quote (the loss breakers judge it)."""
        d = mark.denominator
        return Fraction((self.cash - self.fees + self.funding) * d + self.position * mark.numerator,
                        d)
