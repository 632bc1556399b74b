"""LOBSTER reader: full AMZN day against the order-book file, exact times, aggressor, bad rows.

The full-day tests read LOBSTER's free AMZN 2012-06-21 level-1 sample from
``../shared/data/lobster-amzn-l1`` (next to the repo, not shipped in it) and skip without it.
They check every row against the CSV files parsed here independently (csv module, plain
int arithmetic); the expected totals are those of the data's SOURCE.md.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mmdaemon.book import OrderBook
from mmdaemon.feed.lobster import LOBSTER_AMZN, parse_seconds, read_lobster
from mmdaemon.feed.recording import RecordingError
from mmdaemon.model import BookUpdate, Instrument, Malformed, Side, Trade

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "lobster-amzn-l1"
STEM = "AMZN_2012-06-21_34200000_57600000"
MESSAGES = DATA / f"{STEM}_message_1.csv"
ORDERBOOK = DATA / f"{STEM}_orderbook_1.csv"

NY = ZoneInfo("America/New_York")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# 2012-06-21 00:00 EDT (UTC-4) in ns since the epoch, from datetime arithmetic
MIDNIGHT_NS = (datetime(2012, 6, 21, tzinfo=NY) - EPOCH) // timedelta(microseconds=1) * 1000

HALF_CENT = Instrument("AMZN", "0.005", "1")

Event = BookUpdate | Trade | Malformed


@pytest.fixture(scope="module")
def sample() -> tuple[Path, Path]:
    if not (MESSAGES.is_file() and ORDERBOOK.is_file()):
        pytest.skip("../shared/data not present: LOBSTER sample is not shipped in the repo")
    return MESSAGES, ORDERBOOK


def _exact_ns(seconds: str) -> int:
    """Independent of the reader: seconds-after-midnight text -> ns since the epoch."""
    whole, _, frac = seconds.partition(".")
    return MIDNIGHT_NS + int(whole) * 10**9 + int((frac + "000000000")[:9])


def _replay_full_day(instrument: Instrument, units_per_tick: int) -> dict[str, int]:
    """Replay the whole day into an OrderBook, checking every row; return the counts.

    ``units_per_tick``: LOBSTER price units ($0.0001) per tick of ``instrument``.
    """
    with MESSAGES.open(newline="") as f:
        messages = list(csv.reader(f))
    with ORDERBOOK.open(newline="") as f:
        books = list(csv.reader(f))
    assert len(messages) == len(books) == 57_515

    book = OrderBook()
    pending: list[Trade] = []
    malformed: list[Malformed] = []
    next_row = 1
    counts = dict.fromkeys(("updates", "trades", "shares", "type4", "type5", "off_grid"), 0)
    off_grid_lines: set[int] = set()
    for event in read_lobster(MESSAGES, ORDERBOOK, instrument):
        if isinstance(event, Trade):
            pending.append(event)
            continue
        if isinstance(event, Malformed):
            malformed.append(event)
            continue
        k = event.last_id
        assert event.snapshot and event.first_id == k == next_row, "every row, in order"
        next_row += 1
        counts["updates"] += 1
        time_text, kind, _, size, price, direction = messages[k - 1]
        ask_price, ask_size, bid_price, bid_size = (int(x) for x in books[k - 1][:4])
        ns = _exact_ns(time_text)
        assert event.exch_ns == event.recv_ns == ns

        book.apply(event)
        assert bid_price % units_per_tick == 0 and ask_price % units_per_tick == 0
        assert book.bids.best_level() == (bid_price // units_per_tick, int(bid_size)), k
        assert book.asks.best_level() == (ask_price // units_per_tick, int(ask_size)), k
        assert len(book.bids) == len(book.asks) == 1
        best_bid, best_ask = book.best_bid(), book.best_ask()
        assert best_bid is not None and best_ask is not None and best_bid < best_ask, k
        assert not book.is_crossed() and book.last_id == k

        if kind in ("4", "5") and int(price) % units_per_tick:
            counts["off_grid"] += int(size)
            off_grid_lines.add(k)
            assert not pending, k
        elif kind in ("4", "5"):
            assert len(pending) == 1, k
            trade = pending.pop()
            counts["trades"] += 1
            counts["shares"] += trade.size
            counts["type" + kind] += 1
            assert trade.trade_id == counts["trades"]
            assert trade.price == int(price) // units_per_tick
            assert trade.size == int(size)
            assert trade.aggressor == (Side.BUY if direction == "-1" else Side.SELL)
            assert trade.exch_ns == trade.recv_ns == ns
        else:
            assert not pending, k
    assert next_row == 57_516 and not pending

    # Malformed only for the off-grid executions, naming the message file and the line.
    assert {m.reason.split(": ", 1)[0] for m in malformed} == {
        f"{MESSAGES.name}:{k}" for k in off_grid_lines
    }
    assert all("is not a multiple of the tick" in m.reason for m in malformed)
    counts["malformed"] = len(malformed)
    counts["off_grid_rows"] = len(off_grid_lines)
    return counts


def test_full_day_half_cent_tick_every_row_and_every_execution(sample: tuple[Path, Path]) -> None:
    """With a $0.005 tick every execution is a Trade: SOURCE.md's totals exactly."""
    counts = _replay_full_day(HALF_CENT, 50)
    assert counts["updates"] == 57_515
    assert counts["malformed"] == 0
    assert (counts["type4"], counts["type5"]) == (8_974, 2_445)
    assert counts["trades"] == 8_974 + 2_445 == 11_419
    assert counts["shares"] == 810_755


def test_full_day_cent_tick_half_cent_prints_are_malformed(sample: tuple[Path, Path]) -> None:
    """With LOBSTER_AMZN ($0.01) 63 hidden half-cent executions cannot be Trades.

    They come out as Malformed (price off the tick grid); their rows' book snapshots still
    come out, so the book matches the order-book file on all 57,515 rows.
    """
    counts = _replay_full_day(LOBSTER_AMZN, 100)
    assert counts["updates"] == 57_515
    assert counts["malformed"] == counts["off_grid_rows"] == 63
    assert counts["type4"] == 8_974  # every visible execution is on the cent grid
    assert counts["type5"] == 2_445 - 63
    assert counts["trades"] + counts["malformed"] == 11_419
    assert counts["off_grid"] == 8_239
    assert counts["shares"] + counts["off_grid"] == 810_755


def test_first_row_time_is_exact(sample: tuple[Path, Path]) -> None:
    # first row: 34200.017459617,5,0,1,2238200,-1 -> a buyer-initiated hidden execution
    events = read_lobster(MESSAGES, ORDERBOOK, LOBSTER_AMZN)
    first = next(events)
    ny_time = datetime(2012, 6, 21, 9, 30, 0, 17_459, tzinfo=NY)
    assert ny_time.utcoffset() == timedelta(hours=-4)  # EDT
    expected = (ny_time - EPOCH) // timedelta(microseconds=1) * 1000 + 617
    assert expected == 1_340_285_400_017_459_617
    assert first == Trade(22_382, 1, Side.BUY, 1, expected, expected)
    update = next(events)
    assert isinstance(update, BookUpdate)
    assert update.exch_ns == update.recv_ns == expected
    assert (update.bids, update.asks) == ([(22_318, 100)], [(22_395, 100)])


# --- small files written here -------------------------------------------------------------

BOOK = "2239500,100,2231800,100"


def _pair(tmp_path: Path, messages: list[str], books: list[str]) -> tuple[Path, Path]:
    msg = tmp_path / "TEST_2012-06-21_34200000_57600000_message_1.csv"
    book = tmp_path / "TEST_2012-06-21_34200000_57600000_orderbook_1.csv"
    msg.write_bytes("".join(line + "\n" for line in messages).encode("latin-1"))
    book.write_bytes("".join(line + "\n" for line in books).encode("latin-1"))
    return msg, book


def _read(tmp_path: Path, messages: list[str], books: list[str]) -> list[Event]:
    return list(read_lobster(*_pair(tmp_path, messages, books), LOBSTER_AMZN))


def test_nine_decimals_are_not_rounded(tmp_path: Path) -> None:
    times = ["34200.999999999", "34200.000000001", "34200.1", "34201"]
    events = _read(tmp_path, [f"{t},1,7,100,2238100,1" for t in times], [BOOK] * 4)
    got = [e.exch_ns for e in events if isinstance(e, BookUpdate)]
    base = MIDNIGHT_NS + 34_200 * 10**9
    assert got == [base + 999_999_999, base + 1, base + 100_000_000, base + 10**9]
    # the test bites: going through float seconds since the epoch would have rounded it
    assert round((MIDNIGHT_NS / 1e9 + 34_200.999999999) * 1e9) != got[0]
    assert parse_seconds("34200.017459617") == 34_200_017_459_617
    with pytest.raises(ValueError, match="more than 9 decimals"):
        parse_seconds("34200.0174596170")


def test_aggressor_is_opposite_of_resting_side(tmp_path: Path) -> None:
    messages = [
        "34200.1,4,11,10,2238100,-1",  # visible execution against a resting sell: buyer hit
        "34200.2,4,12,20,2238200,1",  # against a resting buy: seller hit
        "34200.3,5,0,30,2238300,-1",  # hidden execution, same rule, order id 0
    ]
    events = _read(tmp_path, messages, [BOOK] * 3)
    trades = [e for e in events if isinstance(e, Trade)]
    assert [(t.aggressor, t.price, t.size, t.trade_id) for t in trades] == [
        (Side.BUY, 22_381, 10, 1),
        (Side.SELL, 22_382, 20, 2),
        (Side.BUY, 22_383, 30, 3),
    ]
    # each Trade comes right before its row's snapshot
    assert [type(e).__name__ for e in events] == ["Trade", "BookUpdate"] * 3


def test_empty_side_is_an_empty_list(tmp_path: Path) -> None:
    books = ["9999999999,0,2231800,100", "2239500,100,-9999999999,0", "9999999999,0,-9999999999,0"]
    events = _read(tmp_path, ["34200.1,3,7,100,2238100,1"] * 3, books)
    assert [(e.bids, e.asks) for e in events if isinstance(e, BookUpdate)] == [
        ([(22_318, 100)], []),
        ([], [(22_395, 100)]),
        ([], []),
    ]


GOOD = "34200.5,1,7,100,2238100,1"
MSG = "TEST_2012-06-21_34200000_57600000_message_1.csv"
OB = "TEST_2012-06-21_34200000_57600000_orderbook_1.csv"


@pytest.mark.parametrize(
    ("message", "book", "reason", "kinds"),
    [
        # message line unusable, no time: the row's snapshot is dropped too
        ("34200.5,1,7,100,2238100", BOOK, f"{MSG}:2: 5 columns, expected 6", []),
        ("34200.5x,1,7,100,2238100,1", BOOK, f"{MSG}:2: time '34200.5x' is not", []),
        ("34200.1234567891,1,7,1,2238100,1", BOOK, f"{MSG}:2: time '34200.1234567891' has", []),
        # a time of day no trading date has: 25 h after midnight, or int64-max ns of it
        ("90000,1,7,100,2238100,1", BOOK, f"{MSG}:2: time '90000' is beyond the trading", []),
        ("9223372036.854775807,1,7,100,2238100,1", BOOK, f"{MSG}:2: time '9223372036", []),
        # message field bad but time good: Malformed, and the book row still comes out
        ("34200.5,4,7,100,22381OO,1", BOOK, f"{MSG}:2: price '22381OO' is not an integer", ["B"]),
        ("34200.5,4,7,-5,2238100,1", BOOK, f"{MSG}:2: negative size '-5'", ["B"]),
        (
            "34200.5,4,7,100,2238150,1",
            BOOK,
            f"{MSG}:2: price '2238150' ($223.8150) is not a multiple of the tick $0.01",
            ["B"],
        ),
        ("34200.5,9,7,100,2238100,1", BOOK, f"{MSG}:2: unknown message type '9'", ["B"]),
        ("34200.5,4,7,100,2238100,0", BOOK, f"{MSG}:2: direction '0' is neither", ["B"]),
        ("34200.5,4,7,0,2238100,1", BOOK, f"{MSG}:2: execution of size 0", ["B"]),
        ("34200.5,1,7,1\u00e9,2238100,1", BOOK, f"{MSG}:2: size '1\ufffd' is not an", ["B"]),
        # order-book line bad: no snapshot, but the execution's Trade still comes out
        ("34200.5,4,7,100,2238100,1", "2239500,100,2231800", f"{OB}:2: 3 columns", ["T"]),
        ("34200.5,4,7,100,2238100,1", "2239500,-1,2231800,100", f"{OB}:2: negative ask", ["T"]),
        ("34200.5,3,7,100,2238100,1", "2239550,100,2231800,100", f"{OB}:2: ask price", []),
        ("34200.5,3,7,100,2238100,1", "2239500,0,2231800,100", f"{OB}:2: ask size 0", []),
        ("34200.5,3,7,1,2238100,1", "9999999999,5,2231800,100", f"{OB}:2: ask dummy", []),
    ],
)
def test_bad_row_is_malformed_and_neighbours_survive(
    tmp_path: Path, message: str, book: str, reason: str, kinds: list[str]
) -> None:
    events = _read(tmp_path, [GOOD, message, GOOD], [BOOK, book, BOOK])
    bad = [e for e in events if isinstance(e, Malformed)]
    assert len(bad) == 1 and bad[0].reason.startswith(reason), bad
    rest = [e for e in events if not isinstance(e, Malformed)]
    short = {BookUpdate: "B", Trade: "T"}
    assert [short[type(e)] for e in rest] == ["B", *kinds, "B"]
    updates = [e for e in rest if isinstance(e, BookUpdate)]
    assert updates[0].last_id == 1 and updates[-1].last_id == 3
    # recv_ns of the Malformed: the row's time when readable, else the previous row's
    row_ns = MIDNIGHT_NS + 34_200_500_000_000
    assert bad[0].recv_ns == row_ns


@pytest.mark.parametrize(("n_messages", "n_books"), [(3, 2), (2, 3)])
def test_row_count_mismatch(tmp_path: Path, n_messages: int, n_books: int) -> None:
    events = _read(tmp_path, [GOOD] * n_messages, [BOOK] * n_books)
    assert [type(e) for e in events] == [BookUpdate, BookUpdate, Malformed]
    reason = events[-1].reason if isinstance(events[-1], Malformed) else ""
    longer, shorter = (MSG, OB) if n_messages > n_books else (OB, MSG)
    assert reason.startswith(f"{longer}:3: no matching row, {shorter} ends at line 2")


def test_crlf_and_orderbook_10_are_read(tmp_path: Path) -> None:
    msg, book = _pair(tmp_path, [], [])
    msg.write_bytes(b"34200.5,1,7,100,2238100,1\r\n")
    book.write_bytes(b"2239500,100,2231800,100,2239600,5,2231700,6\r\n")
    assert list(read_lobster(msg, book, LOBSTER_AMZN)) == [
        BookUpdate(
            True, [(22_318, 100)], [(22_395, 100)], 1, 1, *[MIDNIGHT_NS + 34_200_500_000_000] * 2
        )
    ]


def test_missing_file_raises_recording_error_at_call(tmp_path: Path) -> None:
    msg, book = _pair(tmp_path, [GOOD], [BOOK])
    missing = tmp_path / "AMZN_2012-06-21_34200000_57600000_orderbook_1.csv"
    with pytest.raises(RecordingError, match=str(missing)):
        read_lobster(msg, missing, LOBSTER_AMZN)
    with pytest.raises(RecordingError, match="nope_message"):
        read_lobster(tmp_path / "nope_message.csv", book, LOBSTER_AMZN)


def test_date_from_name_or_argument(tmp_path: Path) -> None:
    msg, book = _pair(tmp_path, [GOOD], [BOOK])
    (update,) = read_lobster(msg, book, LOBSTER_AMZN, date="2012-12-21")  # EST, UTC-5
    expected = datetime(2012, 12, 21, 9, 30, 0, 500_000, tzinfo=NY)
    assert update.recv_ns == (expected - EPOCH) // timedelta(microseconds=1) * 1000
    undated = tmp_path / "messages.csv"
    undated.write_text(GOOD + "\n")
    with pytest.raises(ValueError, match="no YYYY-MM-DD trading date"):
        read_lobster(undated, book, LOBSTER_AMZN)
    (update,) = read_lobster(undated, book, LOBSTER_AMZN, date="2012-06-21")
    assert update.recv_ns == MIDNIGHT_NS + 34_200_500_000_000
