"""The first pass of verify-book: symbols, grids and snapshot owners from the frames alone."""

from __future__ import annotations

import orjson
import pytest

from mmdaemon.venues.binance_survey import (
    RecordingSurvey,
    SurveyError,
    decimal_places,
    grid,
)


@pytest.mark.parametrize(("text", "places"), [
    ("61837.63000000", 2), ("25.42618900", 6), ("0.00000000", 0), ("25", 0), ("7.", 0),
    (".5", 1), ("1.005", 3),
    # refused by the codec whatever the grid: no say in it
    ("-1.5", 0), ("1.2.3", 0), ("1e-9", 0), ("1_0.5", 0), (" 1.5", 0), ("1.5" + "0" * 40, 0),
    (1.5, 0), (None, 0),
])
def test_decimal_places_counts_significant_fraction_digits_of_plain_text(
    text: object, places: int,
) -> None:
    assert decimal_places(text) == places


def test_grid_is_the_decimal_text_of_a_power_of_ten() -> None:
    assert [grid(p) for p in (0, 1, 2, 8)] == ["1", "0.1", "0.01", "0.00000001"]


def diff(symbol: str, first: int, last: int, price: str = "10.00", size: str = "1.0") -> bytes:
    return orjson.dumps({"stream": f"{symbol.lower()}@depth@100ms", "data": {
        "e": "depthUpdate", "E": 1, "s": symbol, "U": first, "u": last,
        "b": [[price, size]], "a": []}})


def ticker(symbol: str, price: str = "10.5", size: str = "2") -> bytes:
    return orjson.dumps({"stream": f"{symbol.lower()}@bookTicker", "data": {
        "u": 1, "s": symbol, "b": price, "B": size, "a": price, "A": size}})


def snapshot(update_id: int, price: str = "10.00", size: str = "1.0") -> bytes:
    return orjson.dumps({"lastUpdateId": update_id, "bids": [[price, size]], "asks": []})


def survey(files: list[list[bytes]], symbol: str | None = None) -> RecordingSurvey:
    s = RecordingSurvey(symbol)
    for i, frames in enumerate(files):
        s.start_file(f"f{i}.gz")
        for frame in frames:
            s.on_frame(frame)
    return s


def test_the_grid_is_the_finest_of_the_symbols_own_frames_and_snapshots() -> None:
    s = survey([
        [snapshot(100, "10.125", "1"), diff("AAAUSDT", 100, 101), ticker("AAAUSDT", "10.5"),
         diff("BBBUSDT", 5, 6, "1.0000001", "0.0000000001")],  # BBB's finer text: not AAA's
        [ticker("AAAUSDT", size="2.0001")],
    ], symbol="AAAUSDT")
    plan = s.plan()
    # the snapshot is AAA's: its file names AAA and BBB, and only AAA's diff ids span 100
    assert str(plan.instrument.tick_size) == "0.001"  # 10.125, in the snapshot only
    assert f"{plan.instrument.lot_size:f}" == "0.0001"  # 2.0001, in the second file only
    assert list(plan.skip) == [0, 0, 0, 1, 0]


def test_snapshot_owners_by_file_then_by_diff_ids_else_unused() -> None:
    by_file = survey([[diff("AAAUSDT", 1, 2)], [snapshot(7), diff("BBBUSDT", 9, 9)]], "AAAUSDT")
    plan = by_file.plan()
    assert list(plan.skip) == [0, 1, 1] and plan.unattributed == []

    # one file, both symbols, and update ids that span the snapshot for both: no owner
    both = survey([[diff("AAAUSDT", 1, 50), diff("BBBUSDT", 40, 60), snapshot(45, "1.001")]],
                  "AAAUSDT")
    plan = both.plan()
    assert [s.update_id for s in plan.unattributed] == [45]
    assert plan.skip[2] == 1
    assert str(plan.instrument.tick_size) == "1"  # the unused snapshot's 1.001 shapes nothing


def test_the_plan_needs_a_decodable_frame_and_one_symbol() -> None:
    with pytest.raises(SurveyError, match=r"f0\.gz: no decodable frame \(2 frames"):
        survey([[b"not json", b'{"hello":1}']]).plan()
    with pytest.raises(SurveyError, match=r"several symbols \(AAAUSDT, BBBUSDT\).*--symbol"):
        survey([[ticker("BBBUSDT"), ticker("AAAUSDT")]]).plan()
    with pytest.raises(SurveyError, match=r"no frame of CCCUSDT \(symbols: AAAUSDT\)"):
        survey([[ticker("AAAUSDT")]], "CCCUSDT").plan()
    # snapshots only: decodable, no symbol; the book can be built, nothing compared
    plan = survey([[snapshot(1, "3.5")]]).plan()
    assert plan.instrument.symbol == "" and str(plan.instrument.tick_size) == "0.1"
