"""Value types shared by every layer.

Units inside the core, everywhere:
- prices are integer **ticks** of the instrument (price = ticks x tick_size);
- sizes are integer **lots** (size = lots x lot_size);
- timestamps are integer **ns** since the Unix epoch.

Venue decimal strings become ticks and lots exactly once, in the codec, through
:class:`DecimalScaler` (no float ever touches a price or a size on the way in).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from enum import Enum, IntEnum
from typing import NamedTuple


class Side(IntEnum):
    """Side of an order or of a trade's aggressor. The value is the sign of a position change."""

    BUY = 1
    SELL = -1


NS_PER_MS = 1_000_000  # time in the core is integer ns (venues speak ms)
NS_PER_S = 1_000_000_000
MAX_DECIMAL_CHARS = 40  # longer than any price or size a venue sends
MAX_FRAME_BYTES = 1 << 26
"""The longest frame anything here takes (64 MiB, the largest message or snapshot limit a
config may set): a longer recording line is malformed, skipped in pieces, never held whole."""
MAX_UNITS = 2**62 - 1
"""The most ticks or lots a price or size may be: far beyond any market, and what the
journal (SQLite's 64-bit integers) and the compiled book hold with room for a sign."""
Level = tuple[int, int]
"""One book level: (price_ticks, size_lots)."""


class DecimalScaler:
    """Exact conversion between decimal strings and integer multiples of a unit.

    ``to_units("61837.63000000")`` with unit ``0.01`` is exactly ``6183763``. A string that
    is not a plain non-negative decimal, or that is not a whole multiple of the unit, raises
    ``ValueError`` with the reason. Results are memoised per string because venue feeds
    repeat the same price and size strings constantly; the memo is bounded.
    """

    __slots__ = ("_as_written", "_exp", "_max_cache", "_steps", "_unit_int", "memo", "unit")

    def __init__(self, unit: str | Decimal, max_cache: int = 1 << 17) -> None:
        try:
            unit_dec = Decimal(unit)
        except InvalidOperation as exc:
            raise ValueError(f"unit {unit!r} is not a decimal number") from exc
        if not unit_dec.is_finite() or unit_dec <= 0:
            raise ValueError(f"unit {unit!r} must be a positive decimal")
        _, digits, exponent = unit_dec.normalize().as_tuple()
        assert isinstance(exponent, int)
        self.unit = unit_dec
        # the unit as written (``0.01000000``: 1000000 x 10^-8): what to_decimal scales by,
        # so that its text keeps the places the unit was given with
        written = unit_dec.as_tuple()
        assert isinstance(written.exponent, int)
        self._as_written = (int("".join(map(str, written.digits))), written.exponent)
        # unit = _unit_int x 10^-_exp, with _exp >= 0
        unit_int = int("".join(map(str, digits)))
        if exponent > 0:
            unit_int *= 10**exponent
            exponent = 0
        self._unit_int = unit_int
        self._exp = -exponent
        # per number of fraction digits n: (multiplier, divisor) so that
        # units = int(digits) * multiplier / divisor, which must divide exactly
        self._steps: dict[int, tuple[int, int]] = {}
        # Hot callers may read ``memo.get(text)`` themselves and call :meth:`to_units` only
        # on a miss: it saves a Python call per field, which is most of the cost.
        self.memo: dict[str, int] = {}
        self._max_cache = max_cache

    @property
    def parts(self) -> tuple[int, int]:
        """``(unit_int, exp)`` with ``unit == unit_int x 10**-exp`` and ``exp >= 0``."""
        return self._unit_int, self._exp

    def _step(self, ndigits: int) -> tuple[int, int]:
        step = self._steps.get(ndigits)
        if step is None:
            shift = self._exp - ndigits
            mult = 10**shift if shift > 0 else 1
            div = self._unit_int * (10**-shift if shift < 0 else 1)
            step = self._steps[ndigits] = (mult, div)
        return step

    def to_units(self, text: str) -> int:
        """Convert a non-negative decimal string to an exact integer number of units."""
        cached = self.memo.get(text)
        if cached is not None:
            return cached
        return self.parse(text)

    def parse(self, text: object) -> int:
        """:meth:`to_units` without the memo lookup, for hot callers that looked already.

        Anything but a ``str`` is a ``ValueError`` too (a JSON number or list in a field
        that must be decimal text). The result is memoised.
        """
        if type(text) is not str:
            raise ValueError(f"price or size is not a string: {type(text).__name__}")
        n = len(text)
        if n > MAX_DECIMAL_CHARS:  # before any arithmetic: 10**len is not free
            raise ValueError(f"decimal text of {n} characters (at most {MAX_DECIMAL_CHARS})")
        dot = text.find(".")
        if dot < 0:
            digits, places = text, 0
        else:
            digits, places = text[:dot] + text[dot + 1 :], n - dot - 1
        # int() alone would accept "1_000", " 7" and non-ASCII digits: be strict. A second
        # dot stays in ``digits`` and fails here too.
        if not (digits.isascii() and digits.isdigit()):
            if text.startswith("-"):
                raise ValueError(f"negative value {text!r}")
            raise ValueError(f"not a plain decimal number: {text!r}")
        mult, div = self._steps.get(places) or self._step(places)
        if div == 1:
            units = int(digits) * mult
        else:
            units, rest = divmod(int(digits) * mult, div)
            if rest:
                raise ValueError(f"{text!r} is not a multiple of {self.unit}")
        if units > MAX_UNITS:
            raise ValueError(f"{text!r} is more than {MAX_UNITS} units of {self.unit}")
        memo = self.memo
        if len(memo) >= self._max_cache:
            memo.clear()  # bounded: a cold restart of the memo is cheap, growth is not
        memo[text] = units
        return units

    def to_decimal(self, units: int) -> Decimal:
        """The exact decimal value of ``units`` (for the edges: reports, order entry).

        Built from the integer and an exponent, not multiplied: a Decimal product rounds to
        the context's 28 digits, and a fine unit times a large count has more."""
        coefficient, exponent = self._as_written
        return Decimal(f"{units * coefficient}E{exponent}")

    def to_str(self, units: int, places: int) -> str:
        """Fixed-point text of ``units`` with ``places`` decimals, as venues expect it."""
        return f"{self.to_decimal(units):.{places}f}"


class Instrument:
    """A tradable instrument and its exact grids.

    ``tick_size`` is the price grid; ``lot_size`` is the size unit used inside the core and
    must divide every size the venue reports (Binance spot's aggregated depth carries legacy
    sizes finer than the order step, so for BTCUSDT the lot is 1e-8 BTC, not the 1e-5 step).
    ``size_step_lots`` is the order-entry size increment and ``min_size_lots`` the minimum
    order size, both in lots; ``min_notional`` is in quote currency.
    """

    __slots__ = (
        "lot_size",
        "lots",
        "min_notional",
        "min_notional_units",
        "min_size_lots",
        "price_precision",
        "size_precision",
        "size_step_lots",
        "symbol",
        "tick_size",
        "ticks",
    )

    def __init__(
        self,
        symbol: str,
        tick_size: str,
        lot_size: str,
        *,
        size_step_lots: int = 1,
        min_size_lots: int = 1,
        min_notional: str = "0",
    ) -> None:
        self.symbol = symbol
        self.ticks = DecimalScaler(tick_size)
        self.lots = DecimalScaler(lot_size)
        self.tick_size = self.ticks.unit
        self.lot_size = self.lots.unit
        self.price_precision = _places(self.tick_size)
        self.size_precision = _places(self.lot_size)
        if size_step_lots < 1 or min_size_lots < 1:
            raise ValueError("size_step_lots and min_size_lots must be >= 1")
        self.size_step_lots = size_step_lots
        self.min_size_lots = min_size_lots
        self.min_notional = Decimal(min_notional)
        # in (tick x lot) units, rounded up: price_ticks x size_lots >= min_notional_units
        # is exactly "notional >= min_notional"
        self.min_notional_units = int((self.min_notional / (self.tick_size * self.lot_size))
                                      .to_integral_value(rounding=ROUND_CEILING))

    def price_str(self, ticks: int) -> str:
        """Venue text of a price in ticks."""
        return self.ticks.to_str(ticks, self.price_precision)

    def size_str(self, lots: int) -> str:
        """Venue text of a size in lots."""
        return self.lots.to_str(lots, self.size_precision)

    def notional(self, price_ticks: int, size_lots: int) -> Decimal:
        """Price x size in the quote currency, exactly."""
        return (self.tick_size * price_ticks * self.lot_size * size_lots).normalize()

    def __repr__(self) -> str:
        return f"Instrument({self.symbol!r}, tick={self.tick_size}, lot={self.lot_size})"


def _places(unit: Decimal) -> int:
    exponent = unit.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


# Binance BTCUSDT as recorded in data/: spot tick 0.01, order step 0.00001 BTC (1,000 lots of
# 1e-8), min notional 5 USDT; USD-M perpetual tick 0.1, step 0.001 BTC, min notional 100 USDT.
BINANCE_SPOT_BTCUSDT = Instrument(
    "BTCUSDT", "0.01", "0.00000001", size_step_lots=1000, min_size_lots=1000, min_notional="5"
)
BINANCE_USDM_BTCUSDT = Instrument(
    "BTCUSDT", "0.1", "0.001", size_step_lots=1, min_size_lots=1, min_notional="100"
)


class BookUpdate(NamedTuple):
    """A change to the L2 book. Sizes are absolute per level; size 0 deletes the level.

    ``snapshot`` True replaces the whole book. ``first_id``/``last_id`` are the venue's
    update-id range (equal for snapshots); ``exch_ns`` is 0 when the venue sends no time.
    """

    snapshot: bool
    bids: Sequence[Level]
    asks: Sequence[Level]
    first_id: int
    last_id: int
    exch_ns: int
    recv_ns: int


class Trade(NamedTuple):
    """A public trade. ``aggressor`` is the side that crossed the spread (the taker)."""

    price: int
    size: int
    aggressor: Side
    trade_id: int
    exch_ns: int
    recv_ns: int


class TopOfBook(NamedTuple):
    """The venue's own best bid/offer (Binance ``bookTicker``) at book update ``update_id``."""

    update_id: int
    bid: int
    bid_size: int
    ask: int
    ask_size: int
    exch_ns: int
    recv_ns: int


class Gap(NamedTuple):
    """The book lost sequence: it must not be used until a new snapshot resyncs it."""

    reason: str
    expected_id: int
    got_id: int
    recv_ns: int


class Malformed(NamedTuple):
    """A frame that could not be decoded; it changed nothing."""

    reason: str
    recv_ns: int


MarketEvent = BookUpdate | Trade | TopOfBook | Gap | Malformed


class Quote(NamedTuple):
    """A desired two-sided quote. Size 0 on a side means: do not quote that side.

    Prices in ticks, sizes in lots; ``fair`` is the fair value in (fractional) ticks it was
    built around; ``ts_ns`` the event time that produced it.
    """

    bid: int
    bid_size: int
    ask: int
    ask_size: int
    fair: float
    ts_ns: int


class Ladder(NamedTuple):
    """Desired quotes, several levels a side: what a strategy returns and the order manager
    works towards.

    ``bids`` and ``asks`` are ``(price ticks, size lots)`` levels, best first: bid prices
    strictly descending, ask prices strictly ascending, every size > 0 (a level not wanted is
    left out; an empty side quotes nothing on that side), the best bid below the best ask.
    ``fair`` is the fair value (fractional ticks) the ladder was built around, ``ts_ns`` the
    event time that produced it. A ladder with both sides empty pulls every quote.
    """

    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    fair: float
    ts_ns: int


class Fill(NamedTuple):
    """One execution of our order.

    ``fee`` is in notional units (ticks x lots: for BTCUSDT spot 1e-10 USDT), negative for a
    rebate; ``maker`` True when our order was resting. ``exec_id`` is the venue's id of this
    execution (Binance: the trade id), unique for the order: the journal deduplicates on
    (order_id, exec_id), and refuses 0, which means "unknown". ``mid_x2`` is twice the mid
    (best bid + best ask, ticks: exact) of the market *before* the event that filled us, as
    the venue saw it; 0 when the venue cannot say (a live venue), and the daemon then uses
    its own book at the moment the report arrived. After a fill the mid has usually moved
    through our price already, so the mid after the event would flatter the fill's edge.
    """

    order_id: int
    side: Side
    price: int
    size: int
    fee: int
    maker: bool
    ts_ns: int
    exec_id: int = 0
    mid_x2: int = 0


class OrderStatus(Enum):
    """Life cycle of one of our orders, as the exchange adapter reports it."""

    PENDING_NEW = "pending_new"  # sent, not yet acknowledged
    NEW = "new"  # resting at the venue
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    PENDING_CANCEL = "pending_cancel"  # cancel sent, not yet confirmed
    CANCELED = "canceled"
    REJECTED = "rejected"

    @property
    def is_open(self) -> bool:
        """True while the order may still trade."""
        return self in _OPEN_STATUSES


_OPEN_STATUSES = frozenset(
    {
        OrderStatus.PENDING_NEW,
        OrderStatus.NEW,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.PENDING_CANCEL,
    }
)


class OrderUpdate(NamedTuple):
    """The exchange's word on an order: its status, current price/size and filled size.

    ``size`` is the order's current total size in lots (an amend can change it), ``filled``
    the cumulative filled lots, ``reason`` the venue's text for rejects (else "").
    """

    order_id: int
    status: OrderStatus
    side: Side
    price: int
    size: int
    filled: int
    reason: str
    ts_ns: int


ExecutionEvent = OrderUpdate | Fill


class Funding(NamedTuple):
    """A funding payment on our perpetual-futures position, as the venue booked it.

    ``amount`` is in notional units of the instrument (ticks x lots: for BTCUSDT USD-M
    0.1 x 0.001 = 1e-4 USDT), signed: positive received, negative paid. The venue's amount
    (USD-M: the wallet's balance change ``bc``, 8 decimals) is converted exactly when it can
    be and otherwise rounded toward -inf, so a payment is never flattered. ``ts_ns`` is the
    venue's time of the payment; ``funding_id`` identifies it for de-duplication (Binance
    USD-M: the transaction time in ms, one payment per symbol per funding time), never 0.
    """

    amount: int
    ts_ns: int
    funding_id: int


class Balances(NamedTuple):
    """What the account may trade with, as the venue last reported it (pre-trade checks).

    ``base_lots`` is the base asset the account holds, free plus locked in our own orders,
    in lots rounded down (spot: a market maker can only sell what it holds); None where the
    venue has no such balance (futures, where a position is margined instead).
    ``quote_units`` is the quote asset, in notional units rounded down: spot, free plus
    locked; futures, the margin balance available to open positions. ``leverage`` is the
    symbol's leverage on a futures venue (notional a margin unit may carry), 0 on spot.
    ``ts_ns`` is the venue's time of the report.
    """

    base_lots: int | None
    quote_units: int
    leverage: int
    ts_ns: int


AccountEvent = Funding | Balances


class VenueRefused(Exception):
    """The venue refused us for a reason that retrying cannot fix: our credentials, a URL
    or proxy that cannot work, an account set up in a way we cannot trade (USD-M hedge
    mode). The message names the cause and the fix; never a secret. Raised by adapters
    (:meth:`mmdaemon.exchange.base.ExchangeAdapter.start`) and by the sans-I/O order-entry
    protocols they drive."""

# everything an exchange adapter's listener receives, in the order the venue produced it
VenueEvent = ExecutionEvent | AccountEvent
