"""LOBSTER reader: a message file + level-1 order-book file pair as a feed of our events.

LOBSTER (lobsterdata.com) rebuilds NASDAQ books from TotalView-ITCH and ships one trading day
of one symbol as two header-less CSV files with the same number of rows:

- ``<SYM>_<YYYY-MM-DD>_<from>_<to>_message_<N>.csv``: ``time, type, order_id, size, price,
  direction``. ``time`` is seconds after midnight (exchange time zone) with up to 9
  decimals; ``type`` 1 new order, 2 partial cancel, 3 delete, 4 visible execution,
  5 hidden execution (order id 0), 6 cross/auction trade, 7 trading halt; ``size`` in shares;
  ``price`` in US dollars x 10,000; ``direction`` 1 buy / -1 sell, and for executions the
  side of the *resting* order, so the aggressor is the opposite side.
- ``<SYM>_<YYYY-MM-DD>_<from>_<to>_orderbook_<N>.csv``: per level ``ask_price, ask_size,
  bid_price, bid_size`` (same units). Row *k* is the book **after** message row *k*. An empty
  side is written as the dummy price +9999999999 (ask) / -9999999999 (bid) with size 0.

:func:`read_lobster` walks both files in lockstep, one line at a time (nothing is loaded
whole), and yields for every row *k* (1-based line number):

1. for an execution (type 4 or 5) a :class:`~mmdaemon.model.Trade`: execution price in
   ticks, executed size in lots, ``aggressor`` the opposite of ``direction``, and
   ``trade_id`` the running count of Trades this reader has yielded (1, 2, 3, ...; LOBSTER's
   order id cannot serve, it is 0 for every hidden execution);
2. a :class:`~mmdaemon.model.BookUpdate` snapshot built from order-book row *k* (the best
   level of each side; an empty side is an empty list) with ``first_id == last_id == k``.

Only the first level of the order-book file is read, so an ``orderbook_10`` file works too
and gives the same top-of-book feed. A full-book snapshot per row is deliberate: LOBSTER's
level-1 message file only keeps the events that move the top of book (order ids can first
appear in a deletion or execution), so the order-book file is the ground truth and the
messages alone cannot rebuild it.

Times: integer ns since the Unix epoch, computed exactly as midnight of the trading date in
the exchange time zone plus the seconds string (never through a float); ``exch_ns`` and
``recv_ns`` both get it. The seconds are added as elapsed time to that midnight, which is the
wall-clock time of day on every day a US exchange trades (clocks change on Sunday nights).
A time of 25 h (:data:`MAX_TIME_OF_DAY_NS`) or more after midnight is malformed, so the
whole feed lies within one trading day.

Type 6 (cross/auction trade) has no aggressor, which our ``Trade`` requires, so it yields
only its book snapshot; type 7 (halt: LOBSTER encodes the halt state in the price column)
likewise yields only its book snapshot. Neither occurs in the AMZN 2012-06-21 sample.

Bad input never raises from the iterator. A line that cannot be decoded (wrong column count,
non-numeric or out-of-range field, price off the tick grid, size off the lot grid) yields a
:class:`~mmdaemon.model.Malformed` naming the file and the line; its ``recv_ns`` is the row's
time when that could be read, else the last good row's (midnight before the first). The rest
of the row still comes out when it can: the order-book row is self-contained ground truth, so
its snapshot is yielded whenever the message row's ``time`` and the order-book row decode,
even if another message field (say an off-grid execution price) cost the row its Trade.
Without a time the snapshot is dropped; the next row's snapshot restores the whole top of
book. When one file ends before the other, one Malformed names both files and the line, and
the reader stops. Missing or unreadable files raise
:class:`~mmdaemon.feed.recording.RecordingError` when :func:`read_lobster` is called.

Off-grid prices are real in LOBSTER data: in the AMZN 2012-06-21 sample 63 hidden executions
(type 5, 8,239 shares) printed at half cents ($224.0750), which a $0.01 tick cannot hold. They
come out as Malformed with :data:`LOBSTER_AMZN`; an instrument with a $0.005 tick turns them
into Trades (and every book price into half-cent ticks).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from itertools import zip_longest
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mmdaemon.feed.recording import RecordingError
from mmdaemon.model import MAX_UNITS, BookUpdate, Instrument, Level, Malformed, Side, Trade

LOBSTER_AMZN = Instrument("AMZN", "0.01", "1")
"""NASDAQ AMZN as in the LOBSTER sample: tick $0.01, lot 1 share."""

PRICE_SCALE = 10_000
"""LOBSTER prices are integer US dollars x 10,000 (2238200 = $223.82)."""

DUMMY_ASK = 9_999_999_999
DUMMY_BID = -9_999_999_999
"""Prices LOBSTER writes (with size 0) for an empty ask / bid side."""

NEW_ORDER = 1
PARTIAL_CANCEL = 2
DELETE = 3
EXECUTE_VISIBLE = 4
EXECUTE_HIDDEN = 5
CROSS_TRADE = 6
HALT = 7

_EXECUTIONS = frozenset((EXECUTE_VISIBLE, EXECUTE_HIDDEN))
_BOOK_ORDER_TYPES = frozenset((NEW_ORDER, PARTIAL_CANCEL, DELETE))
_NS_PER_S = 1_000_000_000
MAX_TIME_OF_DAY_NS = 25 * 3600 * _NS_PER_S
"""Times of day at or beyond this (ns after midnight) are malformed: a trading date's
elapsed time from midnight ends at 24 h, 25 h on the day a clock goes back; a row stamped
later is corrupt, and taken as time it would stretch the replay (and whatever is laid out
over its span) without bound."""
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_DATE_IN_NAME = re.compile(r"_(\d{4}-\d{2}-\d{2})_")

_LobsterEvent = BookUpdate | Trade | Malformed


class _RowError(ValueError):
    """A field that cannot be decoded; the message is the reason (without file and line)."""


def read_lobster(
    message_path: str | Path,
    orderbook_path: str | Path,
    instrument: Instrument,
    date: dt.date | str | None = None,
    tz: str = "America/New_York",
) -> Iterator[_LobsterEvent]:
    """Yield the Trades, BookUpdates and Malformed events of a LOBSTER file pair, in order.

    ``date`` is the trading date (a ``datetime.date`` or ``"YYYY-MM-DD"``); by default it is
    taken from the message file name (``AMZN_2012-06-21_...``). ``tz`` is the exchange time
    zone whose midnight the ``time`` column counts from. Prices come out in ticks of
    ``instrument.tick_size``, sizes in lots of ``instrument.lot_size``, times in ns since the
    Unix epoch.

    Arguments are checked before the first event: raises :class:`RecordingError` when a file
    is missing or unreadable (or becomes unreadable mid-way), ``ValueError`` when the date is
    neither given (as a date or ``"YYYY-MM-DD"``) nor in the file name, the two file names
    carry different dates, or the time zone is unknown.
    """
    messages, orderbook = Path(message_path), Path(orderbook_path)
    for path in (messages, orderbook):
        _check_readable(path)
    trading_date = _trading_date(messages, orderbook, date)
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: "America" is a
        raise ValueError(f"unknown time zone {tz!r}") from exc  # directory, a key too long
    midnight = dt.datetime(trading_date.year, trading_date.month, trading_date.day, tzinfo=zone)
    midnight_ns = (midnight - _EPOCH) // dt.timedelta(seconds=1) * _NS_PER_S
    return _events(messages, orderbook, instrument, midnight_ns)


def parse_seconds(text: str) -> int:
    """Exact integer ns of a non-negative decimal seconds string with at most 9 decimals.

    ``"34200.017459617"`` -> ``34_200_017_459_617``. Pure string arithmetic: a float64
    cannot hold the ns digits of a time of day. Raises ``ValueError`` with the reason.
    """
    whole, dot, frac = text.partition(".")
    if not (whole.isascii() and whole.isdigit()):
        raise ValueError(f"time {text!r} is not a plain decimal number of seconds")
    if dot and not (frac.isascii() and frac.isdigit()):
        raise ValueError(f"time {text!r} is not a plain decimal number of seconds")
    if len(frac) > 9:
        raise ValueError(f"time {text!r} has more than 9 decimals (finer than 1 ns)")
    return int(whole) * _NS_PER_S + (int(frac.ljust(9, "0")) if frac else 0)


def _check_readable(path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise RecordingError(f"{path}: {exc.strerror or exc}") from exc


def _trading_date(messages: Path, orderbook: Path, given: dt.date | str | None) -> dt.date:
    if isinstance(given, dt.date):
        return given
    if isinstance(given, str):
        return dt.date.fromisoformat(given)
    found = _DATE_IN_NAME.search(messages.name)
    if found is None:
        raise ValueError(
            f"no YYYY-MM-DD trading date in the file name {messages.name!r}: pass date="
        )
    other = _DATE_IN_NAME.search(orderbook.name)
    if other is not None and other.group(1) != found.group(1):
        raise ValueError(
            f"{messages.name!r} and {orderbook.name!r} carry different dates: pass date="
        )
    return dt.date.fromisoformat(found.group(1))


def _int(text: str, what: str) -> int:
    """Strict integer: optional '-' then ASCII digits (``int`` alone takes ' 7', '1_0', '+1')."""
    digits = text[1:] if text.startswith("-") else text
    if not (digits.isascii() and digits.isdigit()):
        raise _RowError(f"{what} {text!r} is not an integer")
    try:
        return int(text)
    except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits)
        raise _RowError(f"{what} of {len(digits)} digits is out of range") from None


def _events(
    messages: Path, orderbook: Path, instrument: Instrument, midnight_ns: int
) -> Iterator[_LobsterEvent]:
    # LOBSTER price unit -> ticks: a tick is tick_size x 10,000 price units (100 for $0.01);
    # shares -> lots: a lot is lot_size shares. Both as exact fractions p/q, so that
    # ticks = price * q / p and lots = shares * q / p must come out whole.
    tick_units = Fraction(instrument.tick_size) * PRICE_SCALE
    price_mult, price_div = tick_units.denominator, tick_units.numerator
    lot_units = Fraction(instrument.lot_size)
    size_mult, size_div = lot_units.denominator, lot_units.numerator

    def ticks(text: str, what: str) -> int:
        raw = _int(text, what)
        if raw <= 0:
            raise _RowError(f"{what} {text!r} is not positive")
        value, rest = divmod(raw * price_mult, price_div)
        if rest:
            dollars = Decimal(raw).scaleb(-4)
            raise _RowError(
                f"{what} {text!r} (${dollars}) is not a multiple of the tick "
                f"${instrument.tick_size}"
            )
        if value > MAX_UNITS:
            raise _RowError(f"{what} {text!r} is more than {MAX_UNITS} ticks")
        return value

    def lots(text: str, what: str) -> int:
        raw = _int(text, what)
        if raw < 0:
            raise _RowError(f"negative {what} {text!r}")
        value, rest = divmod(raw * size_mult, size_div)
        if rest:
            raise _RowError(f"{what} {text!r} is not a multiple of the lot {instrument.lot_size}")
        if value > MAX_UNITS:
            raise _RowError(f"{what} {text!r} is more than {MAX_UNITS} lots")
        return value

    def side(price_text: str, size_text: str, dummy: int, name: str) -> list[Level]:
        """The side's best level, or [] for LOBSTER's empty-side marker (dummy price, size 0)."""
        size = lots(size_text, f"{name} size")
        if _int(price_text, f"{name} price") == dummy:
            if size:
                raise _RowError(f"{name} dummy price {price_text} with size {size_text}")
            return []
        if size == 0:
            raise _RowError(f"{name} size 0 at price {price_text} (empty side is {dummy},0)")
        return [(ticks(price_text, f"{name} price"), size)]

    def execution(fields: list[str]) -> tuple[int, int, Side] | None:
        """Check the message fields after ``time``; (price, size, aggressor) of an execution."""
        _, type_text, id_text, size_text, price_text, dir_text = fields
        kind = _int(type_text, "type")
        if _int(id_text, "order id") < 0:
            raise _RowError(f"negative order id {id_text!r}")
        size = lots(size_text, "size")
        if kind in _BOOK_ORDER_TYPES or kind in _EXECUTIONS:
            price = ticks(price_text, "price")
            direction = _int(dir_text, "direction")
            if direction not in (1, -1):
                raise _RowError(f"direction {dir_text!r} is neither 1 nor -1")
            if kind in _EXECUTIONS:
                if size == 0:
                    raise _RowError("execution of size 0")
                # direction is the resting order's side: the aggressor is the opposite side
                return price, size, Side.SELL if direction == 1 else Side.BUY
        elif kind == CROSS_TRADE:  # no aggressor: book snapshot only
            ticks(price_text, "price")
            _int(dir_text, "direction")
        elif kind == HALT:  # the price column holds the halt state, not a price
            _int(price_text, "halt code")
            _int(dir_text, "direction")
        else:
            raise _RowError(f"unknown message type {type_text!r}")
        return None

    def book(line: str) -> tuple[list[Level], list[Level]]:
        """(bids, asks) from the first level of an order-book row."""
        fields = line.rstrip("\r\n").split(",")
        if len(fields) < 4 or len(fields) % 4:
            raise _RowError(f"{len(fields)} columns, expected 4 (or a multiple of 4)")
        asks = side(fields[0], fields[1], DUMMY_ASK, "ask")
        return side(fields[2], fields[3], DUMMY_BID, "bid"), asks

    msg_name, book_name = messages.name, orderbook.name
    trade_id = 0
    last_ns = midnight_ns
    lineno = 0
    try:
        with (
            messages.open(encoding="ascii", errors="replace") as msg_file,
            orderbook.open(encoding="ascii", errors="replace") as book_file,
        ):
            for lineno, (msg_line, book_line) in enumerate(zip_longest(msg_file, book_file), 1):
                if msg_line is None or book_line is None:
                    short, long = (
                        (msg_name, book_name) if msg_line is None else (book_name, msg_name)
                    )
                    yield Malformed(
                        f"{long}:{lineno}: no matching row, {short} ends at line {lineno - 1}"
                        f"; rows from here on are dropped",
                        last_ns,
                    )
                    return
                ns: int | None = None
                executed: tuple[int, int, Side] | None = None
                try:
                    fields = msg_line.rstrip("\r\n").split(",")
                    if len(fields) != 6:
                        raise _RowError(f"{len(fields)} columns, expected 6")
                    try:
                        seconds_ns = parse_seconds(fields[0])
                    except ValueError as exc:
                        raise _RowError(str(exc)) from None
                    if seconds_ns >= MAX_TIME_OF_DAY_NS:
                        raise _RowError(f"time {fields[0]!r} is beyond the trading day (at "
                                        f"most {MAX_TIME_OF_DAY_NS // _NS_PER_S} s after "
                                        f"midnight)")
                    ns = midnight_ns + seconds_ns
                    executed = execution(fields)
                except _RowError as exc:
                    yield Malformed(f"{msg_name}:{lineno}: {exc}", last_ns if ns is None else ns)
                levels: tuple[list[Level], list[Level]] | None = None
                try:
                    levels = book(book_line)
                except _RowError as exc:
                    yield Malformed(f"{book_name}:{lineno}: {exc}", last_ns if ns is None else ns)
                if ns is None:  # no time for the snapshot: it is dropped, the next one heals
                    continue
                last_ns = ns
                if executed is not None:
                    trade_id += 1
                    price, size, aggressor = executed
                    yield Trade(price, size, aggressor, trade_id, ns, ns)
                if levels is not None:
                    yield BookUpdate(True, levels[0], levels[1], lineno, lineno, ns, ns)
    except OSError as exc:
        raise RecordingError(
            f"{messages} / {orderbook}: unreadable after line {lineno}: {exc}"
        ) from exc
