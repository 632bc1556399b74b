"""Position, cash, fees and PnL, exact.

Units: position in lots (signed, long > 0); cash, fees and PnL in notional units (ticks x
lots; for BTCUSDT spot one unit is 1e-10 USDT, for USD-M BTCUSDT 1e-4 USDT). Cash and fees
are integers; the cost basis is an integer of :data:`COST_SCALE` sub-units, so realised PnL
(average cost) is a Fraction over at most that denominator. Marks are the book's mid, which
may be a half tick, so mark-to-market values are Fractions.

One rounding, and only one: a reducing fill leaves the rest of the position at the average
cost, ``cost x remaining / position``, rounded to the nearest sub-unit (ties to even).
Kept exact, that basis is a Fraction whose denominator multiplies by the position at every
reduction that does not reach zero: 20,000 alternating fills around a standing long grew
it past 100,000 bits and took 53 s of CPU, each fill slower than the one before. The
rounding moves at most half a sub-unit a reducing fill between realised and unrealised
PnL, far below any figure shown; cash, fees, funding, the position and the total are
untouched by it.

Funding payments (perpetual futures) are kept apart in ``funding`` (notional units, signed:
received > 0, paid < 0): they move neither the cash of trading nor the cost basis.

Invariant: ``realized + unrealized(mark) == cash + position * mark`` for every mark, so
``total(mark) = cash + position * mark - fees + funding`` whichever way it is computed. At
start the daemon applies every journaled fill and funding payment again, in order, so a
restart changes none of these numbers (the rounding included).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Final

from mmdaemon.model import Fill

COST_SCALE: Final = 10**9
"""Sub-units of a notional unit in which a cost basis is kept (the grid of its one rounding:
1e-19 USDT on BTCUSDT spot, 1e-13 USDT on USD-M BTCUSDT)."""


def cost_share(cost: int, part: int, whole: int) -> int:
    """``cost x part / whole`` rounded to the nearest integer, ties to even: the cost basis
    of ``part`` lots out of a position of ``whole`` lots (``whole != 0``; both signed
    alike) at its average cost, in the units ``cost`` is in. Integer arithmetic only."""
    num = cost * part
    if whole < 0:
        num, whole = -num, -whole
    share, rest = divmod(num, whole)
    twice = 2 * rest
    if twice > whole or (twice == whole and share & 1):
        share += 1
    return share


class Position:
    """Running position and PnL from fills and funding payments."""

    __slots__ = ("cash", "cost_scaled", "fees", "fills", "funding", "max_abs", "position",
                 "volume")

    def __init__(self) -> None:
        self.position = 0
        self.cash = 0
        self.fees = 0
        self.funding = 0  # funding received (paid < 0), notional units
        self.volume = 0
        self.fills = 0
        self.max_abs = 0
        # signed cost basis of the open position, notional units x COST_SCALE
        self.cost_scaled = 0

    @property
    def cost(self) -> Fraction:
        """The signed cost basis of the open position, notional units."""
        return Fraction(self.cost_scaled, COST_SCALE)

    @property
    def realized(self) -> Fraction:
        """Realised PnL (average cost), notional units: ``cash + cost``.

        Closing ``closed`` lots of a long at price p realises ``closed * (p - avg)``, and
        that is what the close moves ``cash + cost`` by (cash takes the proceeds, the cost
        basis gives up ``closed * avg``, to the sub-unit: see the module's rounding);
        opening moves neither. So it is kept by :meth:`apply` without arithmetic of its
        own: a fill's accounting is on its way to the next quote."""
        return Fraction(self.cash * COST_SCALE + self.cost_scaled, COST_SCALE)

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
            self.cost_scaled += side * notional * COST_SCALE
        elif remaining == 0 or (remaining > 0) == (pos > 0):
            # what is left keeps the average cost, cost / pos ticks per lot
            self.cost_scaled = cost_share(self.cost_scaled, remaining, pos)
        else:  # flipped: the rest opens a new position at this price
            self.cost_scaled = fill.price * remaining * COST_SCALE
        self.position = remaining
        self.max_abs = max(self.max_abs, abs(remaining))

    def apply_funding(self, amount: int) -> None:
        """Account one funding payment, ``amount`` notional units (received > 0)."""
        self.funding += amount

    def unrealized(self, mark: Fraction) -> Fraction:
        """Mark-to-market of the open position at ``mark`` ticks."""
        d = mark.denominator
        return Fraction(self.position * mark.numerator * COST_SCALE - self.cost_scaled * d,
                        d * COST_SCALE)

    def total(self, mark: Fraction) -> Fraction:
        """Everything, after fees and funding: ``cash + position * mark - fees + funding``
        (= realised + unrealised - fees + funding). One exact Fraction built over the mark's
        denominator, not several Fraction operations: a fill runs this on its way to the
        next quote (the loss breakers judge it)."""
        d = mark.denominator
        return Fraction((self.cash - self.fees + self.funding) * d + self.position * mark.numerator,
                        d)
